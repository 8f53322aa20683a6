//! `srun -K --export=ALL --mpi=PLUGIN [-N n] [-n n] [--ntasks-per-node=n]
//! [--gpus-per-node=n] [--gpus-per-task=n] [--gpu-bind=B] [--cpus-per-task=n]
//! [--exclusive] [--mem=M] [-t T] [-p P] [-A A] [-C C] [-q Q] [-J J]
//! [--srun-arg...] RANK-COMMAND...`
//!
//! The user's `--srun-arg` options come last, after hybrun's own, so that
//! srun reads them as given (hybrun refuses those that would change its own).
//!
//! - `-K` (`--kill-on-bad-exit`): a rank that dies ends the step, instead of its
//!   peers spinning in MPI until the time limit.
//! - `--export=ALL`: the rank command's environment (`SINGULARITYENV_*`, ...) is
//!   set in srun's environment and must reach the tasks even where the site or an
//!   `sbatch --export=NONE` made `SLURM_EXPORT_ENV` say otherwise.
//! - `--mpi=` always given: MPICH under the wrong plugin silently runs N
//!   one-rank jobs, so the choice is never left to the site's MpiDefault.

use std::ffi::OsString;

use crate::launch::LaunchError;
use crate::launch::plan::{LaunchPlan, Rendered};

/// Renders srun in front of the rank command.
pub fn render(plan: &LaunchPlan, per_rank: Rendered) -> Result<Rendered, LaunchError> {
    plan.geometry.check()?;
    let g = &plan.geometry;
    let program = plan
        .launcher
        .program
        .clone()
        .unwrap_or_else(|| "srun".into());
    let mut argv: Vec<OsString> = vec![program.into_os_string(), "-K".into()];
    argv.push("--export=ALL".into());
    if let Some(mpi) = plan.launcher.mpi {
        argv.push(format!("--mpi={}", mpi.name()).into());
    }
    let mut pair = |flag: &str, value: Option<String>| {
        if let Some(value) = value {
            argv.push(flag.into());
            argv.push(value.into());
        }
    };
    pair("-N", g.nodes.map(|n| n.to_string()));
    pair("-n", g.ntasks.map(|n| n.to_string()));
    if let Some(n) = g.ntasks_per_node {
        argv.push(format!("--ntasks-per-node={n}").into());
    }
    let long = [
        ("--gpus-per-node", g.gpus_per_node.map(|n| n.to_string())),
        ("--gpus-per-task", g.gpus_per_task.map(|n| n.to_string())),
        ("--gpu-bind", g.gpu_bind.clone()),
        ("--cpus-per-task", g.cpus_per_task.map(|n| n.to_string())),
    ];
    for (flag, value) in long {
        if let Some(value) = value {
            argv.push(format!("{flag}={value}").into());
        }
    }
    if g.exclusive {
        argv.push("--exclusive".into());
    }
    if let Some(mem) = &g.mem {
        argv.push(format!("--mem={mem}").into());
    }
    let mut pair = |flag: &str, value: &Option<String>| {
        if let Some(value) = value {
            argv.push(flag.into());
            argv.push(value.into());
        }
    };
    pair("-t", &g.time);
    pair("-p", &g.partition);
    pair("-A", &g.account);
    pair("-C", &g.constraint);
    pair("-q", &g.qos);
    pair("-J", &g.job_name);
    argv.extend(g.srun_args.iter().map(OsString::from));
    argv.extend(per_rank.argv);
    Ok(Rendered {
        env_unset: per_rank.env_unset,
        env_set: per_rank.env_set,
        argv,
        cwd: per_rank.cwd,
    })
}
