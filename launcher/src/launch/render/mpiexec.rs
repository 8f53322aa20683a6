//! mpiexec where there is no Slurm: MPICH's hydra (`mpiexec.hydra -n N [-ppn K]`)
//! and Open MPI (`mpiexec.openmpi -n N [--npernode K] [--oversubscribe]
//! [-x NAME]...`).
//!
//! Environment: hydra passes its whole environment to every rank, so the rank
//! command's variables only need to be in mpiexec's environment. Open MPI passes
//! it to local ranks only; each variable the rank command sets is also exported
//! by name with `-x NAME` so that ranks on other nodes get it.
//!
//! Geometry that mpiexec cannot honour (time, partition, account, GPUs per
//! node, GPU binding, memory, constraints, QOS, job name, exclusive nodes, srun
//! options) is refused rather than dropped: those need srun. CPUs per rank have
//! an equivalent in both: hydra `-bind-to core:N`, Open MPI `--map-by
//! slot:PE=N` (each rank bound to N cores, as srun `-c N` gives it N CPUs).
//! GPUs per rank (`--gpus-per-task N`) are given by `hybrun exec` on each rank
//! (its local rank's N GPUs, CPUs near them), so they need the wrapper, not
//! mpiexec.

use std::ffi::OsString;
use std::path::PathBuf;

use crate::launch::LaunchError;
use crate::launch::plan::{LaunchPlan, Rendered};

fn common(plan: &LaunchPlan, launcher: &'static str) -> Result<(u32, PathBuf), LaunchError> {
    plan.geometry.check()?;
    let g = &plan.geometry;
    for (flag, given) in [
        ("--time", g.time.is_some()),
        ("--partition", g.partition.is_some()),
        ("--account", g.account.is_some()),
        ("--gpus-per-node", g.gpus_per_node.is_some()),
        ("--gpu-bind", g.gpu_bind.is_some()),
        ("--exclusive", g.exclusive),
        ("--mem", g.mem.is_some()),
        ("--constraint", g.constraint.is_some()),
        ("--qos", g.qos.is_some()),
        ("--job-name", g.job_name.is_some()),
        ("--srun-arg", !g.srun_args.is_empty()),
    ] {
        if given {
            return Err(LaunchError::LauncherFlag { launcher, flag });
        }
    }
    let ntasks = g.total_tasks().ok_or(LaunchError::Geometry {
        why: format!(
            "{launcher} needs the number of ranks: give -n/--ntasks (or --nodes with \
             --ntasks-per-node)"
        ),
    })?;
    let program = plan
        .launcher
        .program
        .clone()
        .unwrap_or_else(|| PathBuf::from(launcher));
    Ok((ntasks, program))
}

/// MPICH's hydra.
pub fn render_hydra(plan: &LaunchPlan, per_rank: Rendered) -> Result<Rendered, LaunchError> {
    let (ntasks, program) = common(plan, "mpiexec.hydra")?;
    let mut argv: Vec<OsString> = vec![program.into_os_string()];
    argv.push("-n".into());
    argv.push(ntasks.to_string().into());
    if let Some(ppn) = plan.geometry.ntasks_per_node {
        argv.push("-ppn".into());
        argv.push(ppn.to_string().into());
    }
    if let Some(cpus) = plan.geometry.cpus_per_task {
        argv.push("-bind-to".into());
        argv.push(format!("core:{cpus}").into());
    }
    argv.extend(per_rank.argv);
    Ok(Rendered {
        env_unset: per_rank.env_unset,
        env_set: per_rank.env_set,
        argv,
        cwd: per_rank.cwd,
    })
}

/// Open MPI's mpiexec.
pub fn render_openmpi(plan: &LaunchPlan, per_rank: Rendered) -> Result<Rendered, LaunchError> {
    let (ntasks, program) = common(plan, "mpiexec.openmpi")?;
    let mut argv: Vec<OsString> = vec![program.into_os_string()];
    argv.push("-n".into());
    argv.push(ntasks.to_string().into());
    if let Some(ppn) = plan.geometry.ntasks_per_node {
        argv.push("--npernode".into());
        argv.push(ppn.to_string().into());
    }
    if let Some(cpus) = plan.geometry.cpus_per_task {
        argv.push("--map-by".into());
        argv.push(format!("slot:PE={cpus}").into());
    }
    if plan.launcher.oversubscribe {
        argv.push("--oversubscribe".into());
    }
    for (name, _) in &per_rank.env_set {
        argv.push("-x".into());
        argv.push(name.clone());
    }
    argv.extend(per_rank.argv);
    Ok(Rendered {
        env_unset: per_rank.env_unset,
        env_set: per_rank.env_set,
        argv,
        cwd: per_rank.cwd,
    })
}
