//! `[gpu]`: the GPUs of the site.

use hybrun_core::named_enum;
use serde::Deserialize;

named_enum! {
    /// Who made the site's GPUs.
    pub enum GpuVendor ("GPU vendor") {
        /// NVIDIA: Singularity/Apptainer `--nv` when GPUs are requested.
        Nvidia = "nvidia",
        /// No GPUs: never `--nv`.
        None = "none",
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSection {
    /// Default: nvidia.
    pub vendor: Option<GpuVendor>,
    /// Whether `hybrun exec` gives each rank one GPU of those it sees (local rank
    /// modulo their number, as `hybrun_core::placement` rules), by narrowing
    /// CUDA_VISIBLE_DEVICES. Default: true.
    pub per_rank: Option<bool>,
    /// Whether `hybrun exec` binds each rank to the CPUs near its GPU (or, with
    /// no GPU chosen, near the `[fabric]` NIC), within the CPUs Slurm or mpiexec
    /// allowed it (`--no-cpu-bind` for one launch). Default: true.
    pub bind_cpus: Option<bool>,
}
