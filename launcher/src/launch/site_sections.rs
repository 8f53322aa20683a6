//! The site file's launch sections: `[runtime]`, `[launcher]`, `[mpi.<profile>]`,
//! `[fabric]`, `[gpu]`, `[binds]`, `[env]`. They are fields of
//! [`crate::site::SiteConfig`]; `launcher/site.example.toml` documents every key
//! with a worked example. Every key is optional; unknown keys are refused (with
//! file, line and key) like the rest of the site file.
//!
//! Values are checked where they are used (when a launch is planned), with the
//! site file named in the message.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::plan::{MpiAbi, MpiPlugin};

/// `[runtime]`: the container runtime of the site.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// `singularity`, `apptainer`, `charliecloud` or `none`. Default: singularity.
    pub kind: Option<String>,
    /// The runtime's program (a name looked up on PATH, or an absolute path).
    /// Default: `singularity`, `apptainer` or `ch-run`.
    pub program: Option<String>,
    /// The runtime's version, e.g. "3.6.4". When absent, hybrun asks the program
    /// (`--version`, tens of milliseconds per call): set it on production sites.
    pub version: Option<String>,
    /// The container directory where bind mode puts the host MPI libraries (and
    /// which goes on LD_LIBRARY_PATH). Default: /opt/hybrun/host-mpi/lib.
    /// For ch-run it must exist in the image (ch-run cannot create bind targets
    /// in a read-only image).
    pub bind_dir: Option<String>,
}

/// `[launcher]`: how jobs start.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LauncherSection {
    /// `srun`, `mpiexec-hydra`, `mpiexec-openmpi` or `none`. Default: srun.
    pub kind: Option<String>,
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
    /// `auto` (the wrapper only where per-rank facts are needed), `wrapper` or
    /// `direct`. Default: auto.
    pub per_rank: Option<String>,
}

/// `[mpi.<name>]`: one MPI installation of the host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MpiProfileSection {
    /// `mpich` (MPICH ABI: MPICH, Intel MPI, Cray MPICH, MVAPICH2) or `openmpi`.
    pub abi: MpiAbi,
    /// The implementation, where the ABI does not say it: `mpich` (also MVAPICH2,
    /// Cray MPICH), `openmpi` or `intel` (Intel MPI). It decides the fabric guard's
    /// variables. Default: from `abi`.
    pub flavour: Option<String>,
    /// srun's `--mpi=` for this MPI: `pmi2`, `pmix` or `none`. Default: pmi2 for
    /// the MPICH ABI, pmix for Open MPI.
    pub pmi: Option<MpiPlugin>,
    /// The host's MPI library (bind mode binds it and its closure), e.g.
    /// /usr/lib/x86_64-linux-gnu/libmpich.so.12.
    pub library: Option<String>,
    /// mpiexec on the host, for launches without Slurm.
    pub mpiexec: Option<String>,
    /// mpiexec inside the container, for the `inside` mode.
    /// Default: mpiexec.hydra (MPICH ABI), mpiexec (Open MPI).
    pub inside_mpiexec: Option<String>,
    /// Further host libraries bound with the MPI library in bind mode.
    #[serde(default)]
    pub libs: Vec<String>,
    /// Variables set in the ranks when this profile is used.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Bind mode: directories of components the MPI dlopen()s (bound with the
    /// closure of every `*.so` in them), each with the variable that points the
    /// MPI at its container path. Default for `abi = "openmpi"`: Open MPI's and
    /// PMIx's component directories, found next to `library` (see
    /// `hybrun::launch::bind::openmpi_layout`); none for the MPICH ABI.
    pub plugin_dirs: Option<Vec<PluginDir>>,
    /// Bind mode: directories of data files (help texts, MCA parameter files),
    /// bound whole, each with its variable. Default for `abi = "openmpi"`: Open
    /// MPI's and PMIx's help directories and Open MPI's configuration directory.
    pub data_dirs: Option<Vec<PluginDir>>,
}

/// A directory of dlopen()ed plugins bound beside the bind-mode libraries, with
/// the variable that tells the library where it is in the container.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginDir {
    /// The host directory, e.g. /usr/lib/x86_64-linux-gnu/libfabric.
    pub src: String,
    /// Variable set to its container path, e.g. FI_PROVIDER_PATH.
    pub env: Option<String>,
    /// Its name under the bind directory. Default: the last component of `src`.
    pub name: Option<String>,
}

/// `[fabric]`: the interconnect's user-space side.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FabricSection {
    /// A name for records and messages: psm2, opx, ucx, verbs, tcp, ...
    pub kind: Option<String>,
    /// Host libraries bound in bind mode (e.g. libpsm2.so.2), with their closure.
    #[serde(default)]
    pub libs: Vec<String>,
    /// Plugin directories bound in bind mode.
    #[serde(default)]
    pub plugin_dirs: Vec<PluginDir>,
    /// Device files the fabric needs (globs, e.g. /dev/hfi1_*): recorded; the
    /// runtimes bind the host /dev by default.
    #[serde(default)]
    pub devices: Vec<String>,
    /// Variables set in every rank (e.g. FI_PROVIDER = "psm2").
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The network adapter the ranks use (`hfi1_0`, `mlx5_0`: a name under
    /// /sys/class/infiniband, else /sys/class/net): `hybrun exec` binds a rank
    /// without a GPU to the CPUs near it. Default: the only RDMA device of the
    /// node, when `kind` is a fast fabric and there is exactly one.
    pub nic: Option<String>,
}

/// `[gpu]`: the GPUs of the site.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GpuSection {
    /// `nvidia` (Singularity/Apptainer `--nv` when GPUs are requested) or `none`.
    /// Default: nvidia.
    pub vendor: Option<String>,
    /// Whether `hybrun exec` gives each rank one GPU of those it sees (local rank
    /// modulo their number, as `hybrun::placement` rules), by narrowing
    /// CUDA_VISIBLE_DEVICES. Default: true.
    pub per_rank: Option<bool>,
    /// Whether `hybrun exec` binds each rank to the CPUs near its GPU (or, with
    /// no GPU chosen, near the `[fabric]` NIC), within the CPUs Slurm or mpiexec
    /// allowed it (`--no-cpu-bind` for one launch). Default: true.
    pub bind_cpus: Option<bool>,
}

/// One site bind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindEntry {
    pub src: String,
    /// Default: the same as `src`.
    pub dst: Option<String>,
    #[serde(default)]
    pub ro: bool,
}

/// `[binds]`: host paths bound into every container.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BindsSection {
    #[serde(default)]
    pub always: Vec<BindEntry>,
}

/// `[env]`: variables set in or removed from every rank.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvSection {
    #[serde(default)]
    pub set: BTreeMap<String, String>,
    #[serde(default)]
    pub unset: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_parses() {
        let text = r#"
            abi = "mpich"
            pmi = "pmi2"
            library = "/usr/lib/x86_64-linux-gnu/libmpich.so.12"
            env = { UCX_TLS = "self,sm" }
        "#;
        let p: MpiProfileSection = toml::from_str(text).expect("valid");
        assert_eq!(p.abi, MpiAbi::Mpich);
        assert_eq!(p.pmi, Some(MpiPlugin::Pmi2));
        assert!(toml::from_str::<MpiProfileSection>("abi = \"lam\"").is_err());
        assert!(toml::from_str::<MpiProfileSection>("abi = \"mpich\"\nlibary = \"x\"").is_err());
    }
}
