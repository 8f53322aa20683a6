//! One rank's plan: runtime, image (checked and judged), binds, environment,
//! bind mode's bundle, the image mount, GPUs and the inside mode's mpiexec; the
//! same for the job and for a rank, which then adds its own facts
//! ([`super::facts`]).

use hybrun_core::vocab::{LauncherKind, Mode};

use super::{Notes, RankContext, Role};
use super::{bind_mode, binds, environment, gpu, image, launcher, runtime};
use crate::launch::LaunchError;
use crate::launch::bind::Bundle;
use crate::launch::env::Changes;
use crate::launch::gate::LazyImage;
use crate::launch::image_mount::{ImageMount, MountKey};
use crate::launch::plan::{InsideLauncher, RankPlan, Runtime};
use crate::launch::policy::{CheckedImage, ImageKind};

/// A rank's plan and what was checked on the way.
pub(super) struct Parts {
    pub rank: RankPlan,
    pub image: Option<CheckedImage>,
    pub bundle: Option<Bundle>,
}

/// Plans one rank.
pub(super) fn plan(ctx: &RankContext<'_>, notes: &mut Notes) -> Result<Parts, LaunchError> {
    let req = ctx.req;
    if req.command.is_empty() {
        return Err(LaunchError::EmptyCommand);
    }
    if let Some(dir) = &req.pwd {
        let why = if !dir.is_absolute() {
            Some("not an absolute path; write it starting with /")
        } else if !dir.is_dir() {
            Some("no such directory here (the ranks start in it: create it first)")
        } else {
            None
        };
        if let Some(why) = why {
            return Err(LaunchError::Pwd {
                path: dir.display().to_string(),
                why,
            });
        }
    }
    let runtime = runtime::resolve(ctx, notes)?;
    if let Some(warning) = crate::launch::runtime::flags::check_args(&runtime, &req.runtime_args)? {
        notes.warnings.push(warning);
    }
    let image = image::checked(ctx, &runtime, notes)?;
    // The image's contents, opened at most once and only when a cache entry is
    // missing: by the gate, and by bind mode (its LD_LIBRARY_PATH).
    let contents = image.as_ref().map(|img| LazyImage::new(&img.canonical));
    image::gate(ctx, contents.as_ref(), notes)?;

    let mut binds = binds::site_and_user(ctx, &runtime)?;
    let mut changes = Changes::new(&runtime);
    environment::site_and_profile(ctx, &mut changes)?;
    environment::fabric_guard(ctx, &mut changes, notes)?;
    let mut bundle = None;
    if ctx.mode == Mode::Bind {
        let bound = bind_mode::plan(ctx, &runtime, image.as_ref(), contents.as_ref(), notes)?;
        binds.extend(bound.binds);
        for (name, value) in bound.vars {
            changes.set(&name, value, "bind mode")?;
        }
        bundle = Some(bound.bundle);
    }
    environment::threads(ctx, &mut changes, notes)?;
    let mount = match (&runtime, &image) {
        (Runtime::Charliecloud { .. }, Some(img))
            if matches!(img.kind, ImageKind::Sif | ImageKind::Squashfs) =>
        {
            // The ranks' node and job are known where they run: each rank
            // moves the mount there ([`super::facts`]).
            let alone = ctx.role == Role::Job && ctx.launcher == Some(LauncherKind::None);
            let key = if alone {
                MountKey::Alone
            } else {
                MountKey::NotYet
            };
            let m = ImageMount::plan(img, key)?;
            if ctx.role == Role::Job {
                notes.notes.push(m.describe());
            }
            Some(m)
        }
        _ => None,
    };
    environment::user(ctx, &mut changes)?;
    let nvidia = gpu::nvidia(ctx, &runtime, notes)?;
    let inside = inside(ctx, notes)?;

    for bind in &binds {
        bind.check()?;
    }
    if matches!(runtime, Runtime::Charliecloud { .. }) && binds.iter().any(|b| b.ro) {
        notes.notes.push(
            "ch-run 0.31 has no read-only binds: binds asked read-only are read-write".into(),
        );
    }
    if runtime != Runtime::None {
        notes.notes.push(
            "SLURM_*, PMI_*, PMIX_* pass into the container: hybrun never uses \
             --cleanenv/--containall"
                .into(),
        );
    }
    let env = changes.into_vec();
    let rank = RankPlan {
        runtime,
        mode: ctx.mode,
        image: image.as_ref().map(|i| i.canonical.clone()),
        binds,
        env,
        nvidia,
        join: None,
        mount,
        inside,
        pwd: req.pwd.clone(),
        runtime_args: req.runtime_args.clone(),
        interactive: req.interactive,
        command: req.command.clone(),
    };
    Ok(Parts {
        rank,
        image,
        bundle,
    })
}

/// The inside mode's mpiexec, run in the container on one node.
fn inside(ctx: &RankContext<'_>, notes: &mut Notes) -> Result<Option<InsideLauncher>, LaunchError> {
    if ctx.mode != Mode::Inside {
        return Ok(None);
    }
    let req = ctx.req;
    if req.geometry.nodes.is_some_and(|n| n > 1) {
        return Err(LaunchError::Refused {
            message: "--mode inside runs on one node: use --nodes 1 (or --mode hybrid|bind \
                      for several nodes)"
                .into(),
        });
    }
    let (pname, p) = ctx.profile.as_ref().ok_or_else(|| LaunchError::Refused {
        message: "--mode inside needs to know the container's MPI: pass --mpi-profile NAME".into(),
    })?;
    let ntasks = req.geometry.total_tasks().unwrap_or(1);
    let program = p.inside_mpiexec.clone().unwrap_or_else(|| {
        match p.flavour.mpiexec() {
            LauncherKind::MpiexecOpenmpi => "mpiexec",
            _ => "mpiexec.hydra",
        }
        .into()
    });
    notes.notes.push(format!(
        "inside: {program} -n {ntasks} in the container (profile {pname}, {})",
        p.flavour
    ));
    Ok(Some(InsideLauncher {
        program: program.into(),
        flavour: p.flavour,
        ntasks,
        oversubscribe: req.oversubscribe || launcher::exceeds_cores(&req.geometry),
    }))
}
