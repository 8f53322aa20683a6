//! The job's launcher: srun, hydra's mpiexec, Open MPI's mpiexec or none; its
//! program, srun's `--mpi=` plugin and Open MPI's `--oversubscribe`.

use std::path::PathBuf;

use hybrun_core::vocab::{LauncherKind, Mode, MpiFlavour, MpiPlugin};

use super::{Host, Notes, Profile, Request};
use crate::launch::LaunchError;
use crate::launch::plan::{Geometry, Launcher};
use crate::launch::pmi;
use crate::site::Site;

/// The launcher of a job (`hybrun run`).
pub(super) fn plan(
    req: &Request,
    site: &Site,
    mode: Mode,
    profile: &Profile,
    host: &Host,
    notes: &mut Notes,
) -> Result<Launcher, LaunchError> {
    let kind = launcher_kind(req, site, mode, profile, host, notes)?;
    let mpi = match kind {
        LauncherKind::Srun => {
            let choice = pmi::choose(req.mpi, profile_pmi(profile), req.force)?;
            notes
                .notes
                .push(format!("srun --mpi={}: {}", choice.plugin, choice.why));
            Some(choice.plugin)
        }
        _ => {
            if let Some(plugin) = req.mpi {
                notes.warnings.push(format!(
                    "--mpi {plugin} only applies to srun; {kind} ignores it"
                ));
            }
            None
        }
    };
    check_launcher_abi(kind, profile, req.force)?;
    let program = launcher_program(kind, site, profile, host, req.dry_run, notes)?;
    let oversubscribe =
        kind == LauncherKind::MpiexecOpenmpi && (req.oversubscribe || exceeds_cores(&req.geometry));
    if oversubscribe && !req.oversubscribe {
        notes
            .notes
            .push("mpiexec.openmpi --oversubscribe: more ranks than this node's cores".into());
    }
    Ok(Launcher {
        kind,
        program,
        mpi,
        oversubscribe,
    })
}

fn profile_pmi(profile: &Profile) -> Option<(&str, MpiFlavour, Option<MpiPlugin>)> {
    profile
        .as_ref()
        .map(|(name, p)| (name.as_str(), p.flavour, p.pmi))
}

fn launcher_kind(
    req: &Request,
    site: &Site,
    mode: Mode,
    profile: &Profile,
    host: &Host,
    notes: &mut Notes,
) -> Result<LauncherKind, LaunchError> {
    if mode == Mode::Inside {
        if let Some(kind) = req.launcher.filter(|k| *k != LauncherKind::None) {
            return Err(LaunchError::Refused {
                message: format!(
                    "--mode inside runs mpiexec inside the container, on this node: drop \
                     --launcher {}",
                    kind.name()
                ),
            });
        }
        return Ok(LauncherKind::None);
    }
    if let Some(kind) = req.launcher.or(site.config.launcher.kind) {
        return Ok(kind);
    }
    Ok(without_slurm(site, profile, host, notes).unwrap_or(LauncherKind::Srun))
}

/// Where there is no Slurm (no srun on PATH, and no srun program named by
/// the site), the MPI profile's own mpiexec: hydra for the MPICH family, Open
/// MPI's for Open MPI, which is what a user would type there. Without a
/// profile the flavour is unknown, so srun stays and its absence is the error
/// that asks for `--launcher`.
fn without_slurm(
    site: &Site,
    profile: &Profile,
    host: &Host,
    notes: &mut Notes,
) -> Option<LauncherKind> {
    let srun = site.config.launcher.program.as_deref().unwrap_or("srun");
    if host.which(srun).is_some() {
        return None;
    }
    let (name, p) = profile.as_ref()?;
    let kind = p.flavour.mpiexec();
    notes.notes.push(format!(
        "launcher {kind}: no Slurm here ({srun} not on PATH) and no --launcher or site \
         [launcher] kind, so the MPI profile {name}'s ({}) own mpiexec starts the ranks",
        p.flavour
    ));
    Some(kind)
}

/// hydra cannot start Open MPI ranks (no PMIx server) and Open MPI's mpiexec
/// cannot start MPICH ranks (no PMI-2 server).
fn check_launcher_abi(
    kind: LauncherKind,
    profile: &Profile,
    force: bool,
) -> Result<(), LaunchError> {
    let Some((name, p)) = profile else {
        return Ok(());
    };
    let fits = p.flavour.mpiexec();
    let is_mpiexec = matches!(
        kind,
        LauncherKind::MpiexecHydra | LauncherKind::MpiexecOpenmpi
    );
    if is_mpiexec && kind != fits && !force {
        return Err(LaunchError::Refused {
            message: format!(
                "--launcher {kind} cannot start ranks of profile {name} ({}): use --launcher \
                 {fits} or srun (--force to try anyway)",
                p.flavour
            ),
        });
    }
    Ok(())
}

fn launcher_program(
    kind: LauncherKind,
    site: &Site,
    profile: &Profile,
    host: &Host,
    dry_run: bool,
    notes: &mut Notes,
) -> Result<Option<PathBuf>, LaunchError> {
    let configured = site.config.launcher.program.clone().or_else(|| match kind {
        LauncherKind::MpiexecHydra | LauncherKind::MpiexecOpenmpi => {
            profile.as_ref().and_then(|(_, p)| p.mpiexec.clone())
        }
        _ => None,
    });
    let (program, hint) = match kind {
        LauncherKind::None => return Ok(None),
        LauncherKind::Srun => (
            configured.unwrap_or_else(|| "srun".into()),
            "this machine has no Slurm client: run inside a Slurm cluster, or start the ranks \
             with --launcher mpiexec-hydra|mpiexec-openmpi",
        ),
        LauncherKind::MpiexecHydra => (
            configured.unwrap_or_else(|| {
                ["mpiexec.hydra", "mpiexec.mpich"]
                    .into_iter()
                    .find(|p| host.which(p).is_some())
                    .unwrap_or("mpiexec.hydra")
                    .into()
            }),
            "install MPICH's hydra (Debian: mpich) or set `mpiexec` in the MPI profile",
        ),
        LauncherKind::MpiexecOpenmpi => (
            configured.unwrap_or_else(|| "mpiexec.openmpi".into()),
            "install Open MPI (Debian: openmpi-bin) or set `mpiexec` in the MPI profile",
        ),
    };
    if host.which(&program).is_none() {
        let what = "launcher";
        if dry_run {
            notes.warnings.push(format!(
                "{what} {program:?} not found on PATH: printing the command anyway ({hint})"
            ));
        } else {
            return Err(LaunchError::ProgramNotFound {
                what,
                program,
                hint: hint.to_owned(),
            });
        }
    }
    Ok(Some(PathBuf::from(program)))
}

pub(super) fn exceeds_cores(g: &Geometry) -> bool {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    g.nodes.is_none_or(|n| n <= 1) && g.total_tasks().is_some_and(|t| t > cores)
}
