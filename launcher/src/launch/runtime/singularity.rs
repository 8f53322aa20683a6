//! Singularity 3.x and Apptainer 1.x: `singularity|apptainer exec [--nv]
//! [-B src:dst[:ro]]... [--pwd DIR] [--env NAME=VALUE]... IMAGE CMD...`.
//!
//! Flags used, and why they are safe in every supported version:
//!
//! - `exec`, `-B`, `--nv` exist in every Singularity 3.x and Apptainer 1.x.
//! - Binds are written `src:dst` or `src:dst:ro`, never `:rw`: 3.6.0 and 3.6.1
//!   refuse `rw` as a bind option (accepted as a no-op from 3.6.2).
//! - One `-B` per bind (no comma lists), so each bind is one argument.
//! - Environment: `SINGULARITYENV_*` for Singularity (the only way in 3.x that
//!   also carries LD_LIBRARY_PATH); `--env` (or `APPTAINERENV_*`) for Apptainer.
//!   `APPTAINERENV_*`, `--mount`, `--nvccli` and `--sharens` are never emitted for
//!   Singularity 3.x (3.6.4 has none of them).
//! - Never `--cleanenv`/`--containall`: the ranks' PMI variables must pass.

use std::ffi::OsString;
use std::path::Path;

use super::apply_environment;
use crate::launch::LaunchError;
use crate::launch::plan::{Bind, Delivery, EnvOp, RankPlan, Rendered};

/// The `-B` value of a bind.
pub fn bind_spec(bind: &Bind) -> OsString {
    let mut spec = bind.src.as_os_str().to_owned();
    spec.push(":");
    spec.push(&bind.dst);
    if bind.ro {
        spec.push(":ro");
    }
    spec
}

/// Renders `program exec ...` for one rank.
pub fn render(rank: &RankPlan, program: &Path) -> Result<Rendered, LaunchError> {
    let image = rank.image.as_ref().ok_or(LaunchError::NoImage {
        runtime: rank.runtime.kind(),
    })?;
    let mut out = Rendered::default();
    // `shell` takes the same flags as `exec` and starts the image's shell.
    let subcommand = if rank.interactive { "shell" } else { "exec" };
    let mut argv: Vec<OsString> = vec![program.as_os_str().to_owned(), subcommand.into()];
    if rank.nvidia {
        argv.push("--nv".into());
    }
    for bind in &rank.binds {
        argv.push("-B".into());
        argv.push(bind_spec(bind));
    }
    if let Some(dir) = &rank.pwd {
        // `--pwd` exists in every 3.x and 1.x; without it the rank would start
        // in $PWD only where the site binds it.
        argv.push("--pwd".into());
        argv.push(dir.as_os_str().to_owned());
    }
    for change in &rank.env {
        if let (Delivery::Flag, EnvOp::Set(value)) = (&change.delivery, &change.op) {
            // Only Apptainer gets Flag deliveries (env::delivery).
            let mut assignment = OsString::from(&change.name);
            assignment.push("=");
            assignment.push(value);
            argv.push("--env".into());
            argv.push(assignment);
        }
    }
    apply_environment(&rank.runtime, &rank.env, &mut out);
    // The user's flags last, checked when planned (runtime::flags).
    argv.extend(rank.runtime_args.iter().cloned());
    argv.push(image.as_os_str().to_owned());
    if !rank.interactive {
        argv.extend(rank.payload());
    }
    out.argv = argv;
    Ok(out)
}
