//! The `[slurm]` section: srun, its version and its MPI plugins.

use super::{Item, Level};
use crate::host::Host;
use crate::host::slurm::Slurm;

/// The item for what srun said (None: no srun on PATH).
pub fn slurm_item(slurm: &Slurm) -> Item {
    let Some(label) = &slurm.srun else {
        return Item {
            section: "slurm",
            name: "srun".into(),
            status: Level::Missing,
            detail: "srun not on PATH".into(),
            fix: Some(
                "run the doctor on a login node of the cluster, or launch with --launcher \
                 mpiexec-hydra|mpiexec-openmpi"
                    .into(),
            ),
        };
    };
    let fits = ["pmi2", "pmix"]
        .iter()
        .filter(|p| slurm.mpi_plugins.iter().any(|q| q == *p))
        .count();
    match (&slurm.version, &slurm.error) {
        (Some(v), None) => Item {
            section: "slurm",
            name: "srun".into(),
            status: if fits == 2 { Level::Ok } else { Level::Warn },
            detail: format!(
                "{v} at {label}; --mpi plugins: {}",
                slurm.mpi_plugins.join(", ")
            ),
            fix: (fits < 2).then(|| {
                "MPICH needs --mpi=pmi2 and Open MPI --mpi=pmix: ask the admins for the \
                 missing Slurm MPI plugin (Debian: slurm-wlm, libpmix-dev)"
                    .into()
            }),
        },
        (_, error) => Item {
            section: "slurm",
            name: "srun".into(),
            status: Level::Warn,
            detail: format!(
                "{label} failed: {}",
                error.as_deref().unwrap_or("no version")
            ),
            fix: Some("export SLURM_CONF=/path/to/slurm.conf (or run on a cluster node)".into()),
        },
    }
}

/// The section: srun from PATH, asked.
pub fn gather(items: &mut Vec<Item>, host: &Host) -> Slurm {
    let slurm = host
        .which("srun")
        .map_or_else(Slurm::absent, |srun| Slurm::probe(&srun));
    items.push(slurm_item(&slurm));
    slurm
}
