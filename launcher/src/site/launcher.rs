//! `[launcher]`: how jobs start.

use hybrun_core::named_enum;
use hybrun_core::vocab::LauncherKind;
use serde::Deserialize;

named_enum! {
    /// What the job launcher starts on each rank.
    pub enum PerRankChoice ("per-rank choice") {
        /// `hybrun exec` only where per-rank facts are needed (ch-run's join, PMIx glue).
        Auto = "auto",
        /// Always `hybrun exec` on each rank.
        Wrapper = "wrapper",
        /// Always the runtime command itself.
        Direct = "direct",
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LauncherSection {
    /// srun, mpiexec-hydra, mpiexec-openmpi or none. Default: srun.
    pub kind: Option<LauncherKind>,
    /// The launcher program. Default: srun, mpiexec.hydra, mpiexec.openmpi.
    pub program: Option<String>,
    /// The MPI profile used when `--mpi-profile` is not given.
    pub mpi_profile: Option<String>,
    /// Where launch records go. "{home}" is replaced by $HOME.
    /// Default: $HOME/.hybrun/records.
    pub record_dir: Option<String>,
    /// The hybrun program the ranks run as the per-rank wrapper (`hybrun exec`),
    /// as seen from the compute nodes. Default: this hybrun's own path.
    pub hybrun: Option<String>,
    /// Default: auto.
    pub per_rank: Option<PerRankChoice>,
    /// false: containers run only inside a Slurm allocation (SLURM_JOB_ID
    /// set); `run`, `exec` and `shell` on a login node are refused, naming
    /// salloc/sbatch. Default: true (no rule).
    pub login_nodes: Option<bool>,
}
