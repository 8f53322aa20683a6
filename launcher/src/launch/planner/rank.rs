//! One rank's plan: runtime, image (checked and judged), binds, environment,
//! bind mode's bundle, per-rank facts (PMIx glue, ch-run's join; `hybrun exec`
//! only), GPUs and the inside mode's mpiexec.

use hybrun_core::vocab::{LauncherKind, Mode};

use super::{Host, Notes, RankContext, Role, target_in_image};
use super::{bind_mode, binds, environment, gpu, image, launcher, runtime};
use crate::launch::LaunchError;
use crate::launch::bind::Bundle;
use crate::launch::env::Changes;
use crate::launch::gate::LazyImage;
use crate::launch::image_mount::{ImageMount, MountKey};
use crate::launch::plan::{Bind, InsideLauncher, Join, RankPlan, Runtime};
use crate::launch::pmi;
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
    let mut join = None;
    if ctx.role == Role::Rank && runtime != Runtime::None {
        pmix_glue(
            ctx,
            &runtime,
            image.as_ref(),
            &mut binds,
            &mut changes,
            notes,
        )?;
        if matches!(runtime, Runtime::Charliecloud { .. })
            && matches!(ctx.mode, Mode::Hybrid | Mode::Bind)
        {
            join = join_from_env(ctx.host);
        }
    }
    environment::threads(ctx, &mut changes, notes)?;
    let mount = match (&runtime, &image) {
        (Runtime::Charliecloud { .. }, Some(img))
            if matches!(img.kind, ImageKind::Sif | ImageKind::Squashfs) =>
        {
            let key = match (ctx.role, ctx.launcher) {
                (Role::Rank, _) => MountKey::Rank,
                (_, Some(LauncherKind::None)) => MountKey::Alone,
                _ => MountKey::NotYet,
            };
            let m = ImageMount::plan(img, ctx.host, key)?;
            notes.notes.push(m.describe());
            Some(m)
        }
        _ => None,
    };
    environment::user(ctx, &mut changes)?;
    let nvidia = gpu::nvidia(ctx, &runtime, notes)?;
    gpu::one_per_rank(ctx, nvidia, &mut changes, notes)?;
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
        join,
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

/// Under a PMIx server (`hybrun exec`): the server's directory bound (or the
/// hash store, where ch-run cannot bind it) and its variables mapped for the
/// container's PMIx client (see [`crate::launch::pmi`]).
fn pmix_glue(
    ctx: &RankContext<'_>,
    runtime: &Runtime,
    image: Option<&CheckedImage>,
    binds: &mut Vec<Bind>,
    changes: &mut Changes<'_>,
    notes: &mut Notes,
) -> Result<(), LaunchError> {
    let Some(glue) = pmi::pmix_glue(|k| ctx.host.var(k)) else {
        return Ok(());
    };
    for (name, value) in glue.env {
        changes.set(&name, value.into(), "PMIx glue")?;
    }
    for dir in glue.dirs {
        let reachable = match (runtime, image) {
            (Runtime::Charliecloud { .. }, Some(img)) => {
                img.kind == ImageKind::Directory && target_in_image(&img.canonical, &dir)
            }
            _ => true,
        };
        if reachable {
            binds.push(Bind {
                src: dir.clone(),
                dst: dir,
                ro: false,
                why: "PMIx server directory".into(),
            });
        } else {
            // Without the server's directory the shared-memory stores
            // are out of reach: use the hash store, which needs none.
            changes.set("PMIX_MCA_gds", "hash".into(), "PMIx glue")?;
            notes.notes.push(format!(
                "PMIx: {} is not a directory in the image (ch-run cannot create bind \
                 targets): PMIX_MCA_gds=hash instead",
                dir.display()
            ));
        }
    }
    Ok(())
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

/// ch-run's join for this rank: how many ranks share its node, and a tag unique
/// per node and job (None when alone on the node, or outside a launcher).
pub fn join_from_env(host: &Host) -> Option<Join> {
    let num = |name: &str| host.var(name).and_then(|v| v.trim().parse::<u32>().ok());
    let count = match (host.var("SLURM_STEP_TASKS_PER_NODE"), num("SLURM_NODEID")) {
        (Some(list), Some(node)) => tasks_on_node(&list, node),
        _ => num("MPI_LOCALNRANKS").or_else(|| num("OMPI_COMM_WORLD_LOCAL_SIZE")),
    }?;
    if count <= 1 {
        return None;
    }
    // Only characters that are safe in a POSIX semaphore name.
    let tag = host.slurm_node_step().map(|key| format!("hybrun.{key}"));
    Some(Join { count, tag })
}

/// Slurm's compressed task counts (`2(x3),1`), for node index `node`.
pub fn tasks_on_node(list: &str, node: u32) -> Option<u32> {
    let mut index = 0u32;
    for part in list.split(',') {
        let (count, repeat) = match part.split_once("(x") {
            Some((count, rest)) => (count, rest.trim_end_matches(')')),
            None => (part, "1"),
        };
        let count: u32 = count.trim().parse().ok()?;
        let repeat: u32 = repeat.trim().parse().ok()?;
        if node < index + repeat {
            return Some(count);
        }
        index += repeat;
    }
    None
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    #[test]
    fn slurm_task_lists() {
        assert_eq!(tasks_on_node("2(x3),1", 0), Some(2));
        assert_eq!(tasks_on_node("2(x3),1", 2), Some(2));
        assert_eq!(tasks_on_node("2(x3),1", 3), Some(1));
        assert_eq!(tasks_on_node("2(x3),1", 4), None);
        assert_eq!(tasks_on_node("4", 0), Some(4));
    }

    #[test]
    fn join_per_node_and_job() {
        let host = |pairs: &[(&str, &str)]| Host {
            vars: pairs
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect(),
        };
        let h = host(&[
            ("SLURM_STEP_TASKS_PER_NODE", "2(x2)"),
            ("SLURM_NODEID", "1"),
            ("SLURM_JOB_ID", "42"),
            ("SLURM_STEP_ID", "0"),
            ("SLURMD_NODENAME", "node2"),
        ]);
        assert_eq!(
            join_from_env(&h),
            Some(Join {
                count: 2,
                tag: Some("hybrun.42.0.node2".into())
            })
        );
        let h = host(&[("MPI_LOCALNRANKS", "2")]);
        assert_eq!(
            join_from_env(&h),
            Some(Join {
                count: 2,
                tag: None
            })
        );
        let h = host(&[
            ("SLURM_STEP_TASKS_PER_NODE", "1(x2)"),
            ("SLURM_NODEID", "0"),
        ]);
        assert_eq!(join_from_env(&h), None);
    }
}
