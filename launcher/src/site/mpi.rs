//! `[mpi.<name>]`: the host's MPI installations, by profile name.

use std::collections::BTreeMap;

use hybrun_core::vocab::{MpiAbi, MpiFlavour, MpiPlugin};
use serde::Deserialize;

use super::paths::AbsPath;

/// One MPI installation of the host.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawProfile")]
pub struct MpiProfile {
    /// The binary interface of `library`: mpich (MPICH ABI: MPICH, Intel MPI,
    /// Cray MPICH, MVAPICH2), openmpi, or mpi-abi (the MPI 5 standard ABI).
    pub abi: MpiAbi,
    /// The implementation: it decides srun's default `--mpi=`, the mpiexec, and
    /// the fabric guard's variables. From the `flavour` key, else from `abi`
    /// (required for `abi = "mpi-abi"`, which several implementations provide).
    pub flavour: MpiFlavour,
    /// srun's `--mpi=` for this MPI. Default: the flavour's (pmi2 for the MPICH
    /// family, pmix for Open MPI).
    pub pmi: Option<MpiPlugin>,
    /// The host's MPI library (bind mode binds it and its closure), e.g.
    /// /usr/lib/x86_64-linux-gnu/libmpich.so.12.
    pub library: Option<AbsPath>,
    /// mpiexec on the host, for launches without Slurm.
    pub mpiexec: Option<String>,
    /// mpiexec inside the container, for the `inside` mode.
    /// Default: mpiexec.hydra (MPICH family), mpiexec (Open MPI).
    pub inside_mpiexec: Option<String>,
    /// Further host libraries bound with the MPI library in bind mode.
    pub libs: Vec<AbsPath>,
    /// Variables set in the ranks when this profile is used.
    pub env: BTreeMap<String, String>,
    /// Bind mode: directories of components the MPI dlopen()s (bound with the
    /// closure of every `*.so` in them), each with the variable that points the
    /// MPI at its container path. Default for Open MPI: its and PMIx's component
    /// directories, found next to `library` (see
    /// `hybrun::launch::bind::openmpi_layout`); none for the MPICH family.
    pub plugin_dirs: Option<Vec<PluginDir>>,
    /// Bind mode: directories of data files (help texts, MCA parameter files),
    /// bound whole, each with its variable. Default for Open MPI: Open MPI's and
    /// PMIx's help directories and Open MPI's configuration directory.
    pub data_dirs: Option<Vec<PluginDir>>,
}

impl MpiProfile {
    /// srun's `--mpi=` plugin the profile asks for (its `pmi`), else the
    /// flavour's default.
    pub fn plugin(&self) -> MpiPlugin {
        self.pmi.unwrap_or_else(|| self.flavour.default_plugin())
    }
}

/// A directory of dlopen()ed plugins bound beside the bind-mode libraries, with
/// the variable that tells the library where it is in the container.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PluginDir {
    /// The host directory, e.g. /usr/lib/x86_64-linux-gnu/libfabric.
    pub src: AbsPath,
    /// Variable set to its container path, e.g. FI_PROVIDER_PATH.
    pub env: Option<String>,
    /// Its name under the bind directory. Default: the last component of `src`.
    pub name: Option<String>,
}

/// The profile as written; [`MpiProfile`] after the checks between keys.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProfile {
    abi: MpiAbi,
    flavour: Option<MpiFlavour>,
    pmi: Option<MpiPlugin>,
    library: Option<AbsPath>,
    mpiexec: Option<String>,
    inside_mpiexec: Option<String>,
    #[serde(default)]
    libs: Vec<AbsPath>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    plugin_dirs: Option<Vec<PluginDir>>,
    data_dirs: Option<Vec<PluginDir>>,
}

impl TryFrom<RawProfile> for MpiProfile {
    type Error = String;

    fn try_from(raw: RawProfile) -> Result<MpiProfile, String> {
        let flavour = match (raw.flavour, MpiFlavour::of_abi(raw.abi)) {
            (Some(flavour), _) if raw.abi != MpiAbi::Standard && flavour.abi() != raw.abi => {
                return Err(format!(
                    "flavour {flavour} has the {} ({}), not abi = {:?}: fix one of the two",
                    flavour.abi().label(),
                    flavour.abi(),
                    raw.abi.name()
                ));
            }
            (Some(flavour), _) => flavour,
            (None, Some(flavour)) => flavour,
            (None, None) => {
                return Err(format!(
                    "abi = {:?} is provided by several implementations: add flavour = one of \
                     {} (it decides the PMI, the mpiexec and the fabric variables)",
                    raw.abi.name(),
                    MpiFlavour::accepted()
                ));
            }
        };
        Ok(MpiProfile {
            abi: raw.abi,
            flavour,
            pmi: raw.pmi,
            library: raw.library,
            mpiexec: raw.mpiexec,
            inside_mpiexec: raw.inside_mpiexec,
            libs: raw.libs,
            env: raw.env,
            plugin_dirs: raw.plugin_dirs,
            data_dirs: raw.data_dirs,
        })
    }
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
        let p: MpiProfile = toml::from_str(text).expect("valid");
        assert_eq!(p.abi, MpiAbi::Mpich);
        assert_eq!(p.flavour, MpiFlavour::Mpich);
        assert_eq!(p.pmi, Some(MpiPlugin::Pmi2));
        assert!(toml::from_str::<MpiProfile>("abi = \"lam\"").is_err());
        assert!(toml::from_str::<MpiProfile>("abi = \"mpich\"\nlibary = \"x\"").is_err());
    }

    #[test]
    fn keys_checked_against_each_other() {
        let err = |text: &str| {
            toml::from_str::<MpiProfile>(text)
                .expect_err(text)
                .to_string()
        };
        assert!(
            err("abi = \"openmpi\"\nflavour = \"intel\"")
                .contains("flavour intel has the MPICH ABI")
        );
        assert!(err("abi = \"mpi-abi\"").contains("add flavour"));
        assert!(err("abi = \"mpich\"\nlibrary = \"lib/libmpich.so.12\"").contains("absolute"));
        let p: MpiProfile = toml::from_str("abi = \"mpi-abi\"\nflavour = \"openmpi\"").expect("ok");
        assert_eq!(p.plugin(), MpiPlugin::Pmix);
        let p: MpiProfile = toml::from_str("abi = \"mpich\"\nflavour = \"impi\"").expect("ok");
        assert_eq!(p.flavour, MpiFlavour::Intel);
    }
}
