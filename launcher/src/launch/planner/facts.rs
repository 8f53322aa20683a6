//! What a rank adds to its plan where it runs ([`RankFacts`]): ch-run's join
//! from its node and job, the PMIx glue from its PMIx server, its node's image
//! mount, its GPUs from its local rank and its CPUs near them (or near the
//! fabric's NIC).
//!
//! Decided with the plan ([`of`]) and applied by the rank ([`apply`]): by a
//! stand-alone `hybrun exec` right after planning itself, and by the wrapper
//! of `hybrun run` to the plan it was handed ([`crate::launch::handoff`]), so
//! both give a rank the same plan. Everything here reads the rank's
//! environment, its node's `/sys` and `/proc`, never the image or the site
//! file.

use hybrun_core::placement::CpuBinding;
use hybrun_core::vocab::{LauncherKind, Mode};

use super::{Host, Notes, RankContext, Role, gpu, target_in_image};
use crate::launch::LaunchError;
use crate::launch::env::Changes;
use crate::launch::plan::{Bind, CpuBindRule, Join, RankFacts, RankPlan, Runtime};
use crate::launch::pmi;
use crate::launch::policy::{CheckedImage, ImageKind};

/// The facts a rank of this plan adds where it runs.
pub(super) fn of(
    ctx: &RankContext<'_>,
    rank: &RankPlan,
    image: Option<&CheckedImage>,
) -> RankFacts {
    let site = &ctx.site.config;
    let charliecloud = matches!(rank.runtime, Runtime::Charliecloud { .. });
    let cpu_binding = if ctx.req.no_cpu_bind {
        CpuBindRule::Off {
            why: "no binding: --no-cpu-bind".into(),
        }
    } else if !site.gpu.bind_cpus.unwrap_or(true) {
        CpuBindRule::Off {
            why: "no binding: [gpu] bind_cpus = false".into(),
        }
    } else {
        CpuBindRule::Near {
            nic: site.fabric.nic.clone(),
            fabric: site.fabric.kind,
            cpus_per_rank: ctx.req.geometry.cpus_per_task,
        }
    };
    // --gpus-per-task: asked for; else one per rank where the site says so.
    let gpus = match ctx.req.geometry.gpus_per_task {
        Some(n) => n,
        None if rank.nvidia && site.gpu.per_rank.unwrap_or(true) => 1,
        None => 0,
    };
    // ch-run ranks started by a launcher share their node's join and mount:
    // the job's plan names the launch they belong to.
    let launch = (charliecloud
        && ctx.role == Role::Job
        && ctx.launcher.is_some_and(|kind| kind != LauncherKind::None))
    .then(draw_launch_id)
    .flatten();
    RankFacts {
        image_root: image
            .filter(|img| charliecloud && img.kind == ImageKind::Directory)
            .map(|img| img.canonical.clone()),
        gpus,
        cpu_binding,
        launch,
    }
}

/// A launch's id: 12 random hex digits (None where the system has no random
/// source; then the ranks name their group as a stand-alone `hybrun exec` does).
fn draw_launch_id() -> Option<String> {
    let mut bytes = [0u8; 6];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Applies `facts` to `rank` on this node; returns the CPU binding to set
/// before the runtime starts.
pub(super) fn apply(
    facts: &RankFacts,
    rank: &mut RankPlan,
    host: &Host,
    notes: &mut Notes,
) -> Result<CpuBinding, LaunchError> {
    let runtime = rank.runtime.clone();
    let mut changes = Changes::resume(&runtime, std::mem::take(&mut rank.env));
    let charliecloud = matches!(rank.runtime, Runtime::Charliecloud { .. });
    // Any container: its PMIx client needs the server's directory and names.
    if rank.runtime != Runtime::None {
        pmix_glue(
            host,
            facts.image_root.as_deref(),
            &mut rank.binds,
            &mut changes,
            notes,
        )?;
    }
    // ch-run: one container per node and launch for the ranks started outside.
    let joined = charliecloud && matches!(rank.mode, Mode::Hybrid | Mode::Bind);
    if joined || rank.mount.is_some() {
        let group = node_group(host, facts.launch.as_deref());
        if joined {
            rank.join = join_from_env(host, &group);
        }
        if let Some(mount) = &mut rank.mount {
            mount.on_node(&group);
            notes.notes.push(mount.describe());
        }
    }
    if facts.gpus > 0 {
        gpu::per_rank(host, facts.gpus, &mut changes, notes)?;
    }
    rank.env = changes.into_vec();
    let binding = gpu::cpu_binding(&facts.cpu_binding, notes);
    if binding.warn {
        notes.warnings.push(binding.why.clone());
    }
    notes.notes.push(format!("CPU binding: {}", binding.why));
    Ok(binding)
}

/// Under a PMIx server: the server's directory bound (or the hash store, where
/// ch-run cannot bind it) and its variables mapped for the container's PMIx
/// client (see [`crate::launch::pmi`]). Under the user's `--env`/`--unset`.
fn pmix_glue(
    host: &Host,
    image_root: Option<&std::path::Path>,
    binds: &mut Vec<Bind>,
    changes: &mut Changes<'_>,
    notes: &mut Notes,
) -> Result<(), LaunchError> {
    let Some(glue) = pmi::pmix_glue(|k| host.var(k)) else {
        return Ok(());
    };
    for (name, value) in glue.env {
        changes.set_below_user(&name, value.into(), "PMIx glue")?;
    }
    for dir in glue.dirs {
        if image_root.is_none_or(|root| target_in_image(root, &dir)) {
            let bind = Bind {
                src: dir.clone(),
                dst: dir,
                ro: false,
                why: "PMIx server directory".into(),
            };
            bind.check()?;
            binds.push(bind);
        } else {
            // Without the server's directory the shared-memory stores
            // are out of reach: use the hash store, which needs none.
            changes.set_below_user("PMIX_MCA_gds", "hash".into(), "PMIx glue")?;
            notes.notes.push(format!(
                "PMIx: {} is not a directory in the image (ch-run cannot create bind \
                 targets): PMIX_MCA_gds=hash instead",
                dir.display()
            ));
        }
    }
    Ok(())
}

/// ch-run's join for this rank: how many ranks share its node, and the tag of
/// its node's group ([`node_group`]); None when alone on the node, or outside
/// a launcher.
pub fn join_from_env(host: &Host, group: &str) -> Option<Join> {
    let num = |name: &str| host.var(name).and_then(|v| v.trim().parse::<u32>().ok());
    let count = match (host.var("SLURM_STEP_TASKS_PER_NODE"), num("SLURM_NODEID")) {
        (Some(list), Some(node)) => tasks_on_node(&list, node),
        _ => num("MPI_LOCALNRANKS").or_else(|| num("OMPI_COMM_WORLD_LOCAL_SIZE")),
    }?;
    if count <= 1 {
        return None;
    }
    Some(Join {
        count,
        tag: Some(format!("hybrun.{group}")),
    })
}

/// The name that this node's ranks of one launch share, and no other ranks:
/// ch-run's join tag and the image mount's directory are keyed by it. In
/// letters, digits, `-`, `_` and `.` (safe in POSIX semaphore and file names).
///
/// - Handed a launch id by `hybrun run`: `ID.NODE`.
/// - Else (a stand-alone `hybrun exec`): Slurm's `JOB.STEP.NODE`, else the
///   launcher's process that started the node's ranks (their parent) as
///   `ppidPID.START.NODE`, its start time telling a reused pid apart.
///
/// Unique, because what ch-run leaves behind is keyed by it: a join that
/// fails leaves `/dev/shm/ch-run_shm-TAG`, and the next group under the same
/// tag (ch-run's own default is the parent's pid, which comes back) finds it,
/// takes a stale peer for its winner and fails in turn.
pub fn node_group(host: &Host, launch: Option<&str>) -> String {
    let node = || {
        host.var("SLURMD_NODENAME").unwrap_or_else(|| {
            rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned()
        })
    };
    if let Some(id) = launch {
        return crate::host::safe_name(&format!("{id}.{}", node()));
    }
    if let Some(step) = host.slurm_node_step() {
        return step;
    }
    let ppid = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
    let start = std::fs::read_to_string(format!("/proc/{ppid}/stat"))
        .ok()
        .and_then(|s| {
            let after = s.rsplit_once(')')?.1.to_owned();
            after.split_whitespace().nth(19).map(str::to_owned)
        })
        .unwrap_or_default();
    crate::host::safe_name(&format!("ppid{ppid}.{start}.{}", node()))
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
    fn join_per_node_and_launch() {
        let host = |pairs: &[(&str, &str)]| Host {
            vars: pairs
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect(),
        };
        let slurm = host(&[
            ("SLURM_STEP_TASKS_PER_NODE", "2(x2)"),
            ("SLURM_NODEID", "1"),
            ("SLURM_JOB_ID", "42"),
            ("SLURM_STEP_ID", "0"),
            ("SLURMD_NODENAME", "node2"),
        ]);
        // Handed a launch id: the launch's and the node's name.
        let group = node_group(&slurm, Some("0123abcd"));
        assert_eq!(group, "0123abcd.node2");
        assert_eq!(
            join_from_env(&slurm, &group),
            Some(Join {
                count: 2,
                tag: Some("hybrun.0123abcd.node2".into())
            })
        );
        // Planning itself under Slurm: the job step's ids.
        assert_eq!(node_group(&slurm, None), "42.0.node2");
        // Planning itself under mpiexec: its parent, the launcher's process
        // on this node, with the parent's start time and this node's name.
        let hydra = host(&[("MPI_LOCALNRANKS", "2")]);
        let group = node_group(&hydra, None);
        let ppid = rustix::process::getppid().map_or(0, |p| p.as_raw_nonzero().get());
        let node = rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned();
        assert!(group.starts_with(&format!("ppid{ppid}.")), "{group}");
        assert!(
            group.ends_with(&format!(".{}", crate::host::safe_name(&node))),
            "{group}"
        );
        let start = group.split('.').nth(1).expect("start time");
        assert!(
            !start.is_empty() && start.bytes().all(|b| b.is_ascii_digit()),
            "{group}"
        );
        assert_eq!(
            join_from_env(&hydra, "g").map(|j| (j.count, j.tag)),
            Some((2, Some("hybrun.g".into())))
        );
        // Alone on its node: no join.
        let alone = host(&[
            ("SLURM_STEP_TASKS_PER_NODE", "1(x2)"),
            ("SLURM_NODEID", "0"),
        ]);
        assert_eq!(join_from_env(&alone, "g"), None);
        // An odd node name is made safe for /dev/shm.
        let odd = host(&[("SLURMD_NODENAME", "n/1 x")]);
        assert_eq!(node_group(&odd, Some("ab")), "ab.n_1_x");
    }
}
