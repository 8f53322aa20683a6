//! Charliecloud: `ch-run [--join-ct=N [--join-tag=T]] [-b src:dst]...
//! [--cd=DIR] [--env-no-expand] [--set-env=NAME=VALUE]... [--unset-env=NAME]... IMAGE -- CMD...`
//! (flags of ch-run 0.31).
//!
//! - `--join-ct`/`--join-tag`: the ranks of a node share one container, so MPI
//!   shared memory works between them (in separate user namespaces UCX fails in
//!   MPI_Init). The tag must be unique per node and job: nodes can share
//!   /dev/shm, where ch-run keeps its join semaphore.
//! - ch-run 0.31 has no read-only binds: `ro` cannot be expressed (the planner
//!   notes it), and bind targets must exist in the image.
//! - `--set-env` expands `$NAME` in its value; `--env-no-expand` is added when a
//!   value contains `$`, so values arrive as given.

use std::ffi::OsString;
use std::path::Path;

use crate::launch::LaunchError;
use crate::launch::plan::{Delivery, EnvOp, RankPlan, Rendered};
use hybrun_core::vocab::RuntimeKind;

/// Renders `ch-run ...` for one rank.
pub fn render(rank: &RankPlan, program: &Path) -> Result<Rendered, LaunchError> {
    let image = rank.image.as_ref().ok_or(LaunchError::NoImage {
        runtime: RuntimeKind::Charliecloud,
    })?;
    let mut argv: Vec<OsString> = vec![program.as_os_str().to_owned()];
    if let Some(join) = &rank.join {
        argv.push(format!("--join-ct={}", join.count).into());
        if let Some(tag) = &join.tag {
            argv.push(format!("--join-tag={tag}").into());
        }
    }
    for bind in &rank.binds {
        let mut spec = bind.src.as_os_str().to_owned();
        spec.push(":");
        spec.push(&bind.dst);
        argv.push("-b".into());
        argv.push(spec);
    }
    if let Some(dir) = &rank.pwd {
        // ch-run starts in / unless told (the host's cwd is not kept).
        let mut arg = OsString::from("--cd=");
        arg.push(dir);
        argv.push(arg);
    }
    let expands = rank.env.iter().any(|c| match &c.op {
        EnvOp::Set(v) => v.as_encoded_bytes().contains(&b'$'),
        EnvOp::Unset => false,
    });
    if expands {
        argv.push("--env-no-expand".into());
    }
    let mut out = Rendered::default();
    for change in &rank.env {
        match (&change.delivery, &change.op) {
            (Delivery::Flag, EnvOp::Set(value)) => {
                let mut arg = OsString::from(format!("--set-env={}=", change.name));
                arg.push(value);
                argv.push(arg);
            }
            (Delivery::Flag, EnvOp::Unset) => {
                argv.push(format!("--unset-env={}", change.name).into());
            }
            (_, EnvOp::Set(value)) => out.set(&change.name, value),
            (_, EnvOp::Unset) => out.unset(&change.name),
        }
    }
    // The user's flags last, checked when planned (runtime::flags).
    argv.extend(rank.runtime_args.iter().cloned());
    // A SquashFS image runs from its per-node mount (ch-run cannot open a
    // SquashFS at an offset).
    let image = rank
        .mount
        .as_ref()
        .map_or(image.as_path(), |m| &m.mountpoint);
    argv.push(image.as_os_str().to_owned());
    argv.push("--".into());
    argv.extend(rank.payload());
    out.argv = argv;
    Ok(out)
}
