//! PMI glue: which `srun --mpi=` plugin, and what a rank needs under PMIx.
//!
//! # The plugin
//!
//! From the MPI flavour: the MPICH family speaks PMI-2 (`--mpi=pmi2`), Open
//! MPI speaks PMIx (`--mpi=pmix`), unless the site's profile (`pmi = ...`) or
//! `--mpi` says otherwise. The wrong plugin does not always fail: MPICH under
//! `pmix` or `none` runs N independent one-rank jobs, and Open MPI under `pmi2`
//! dies with "OPAL ERROR: Unreachable". So `--mpi` contradicting the flavour is
//! refused unless `--force`.
//!
//! # PMIx, per rank (`hybrun exec`)
//!
//! Slurm's PMIx server keeps its rendezvous files (the `ds21`/`ds12` shared-memory
//! stores) in `PMIX_SERVER_TMPDIR`, a directory in slurmd's spool
//! (`<SlurmdSpoolDir>/pmix.<job>.<step>/`), which is not in the container. The
//! rank binds it at the same path (and `PMIX_SYSTEM_TMPDIR` when it is not /tmp).
//! And the server announces its components as `PMIX_PTL_MODULE`,
//! `PMIX_SECURITY_MODE`, `PMIX_GDS_MODULE`, which a container's PMIx client of
//! another release does not read: they are mapped to the client's MCA variables
//! `PMIX_MCA_ptl`, `PMIX_MCA_psec`, `PMIX_MCA_gds` (unless already set), so the
//! client picks only components the server offers.
//!
//! # Open MPI 4's session directory
//!
//! Slurm's PMIx plugin publishes job-level `PMIX_TMPDIR`/`PMIX_NSDIR`/
//! `PMIX_PROCDIR` (`<TmpFS>/spmix_appdir_<uid>_<job>.<step>[/<rank>]`, host paths),
//! and Open MPI 4.1's `ess/pmi` adopts them as its session directories unless
//! `orte_top_session_dir` is already set (`ess_pmi_module.c`: an MCA value
//! overrides the RM's; `orte_tmpdir_base` and `TMPDIR` do not). In a container
//! that host directory does not exist and the read-only image refuses the mkdir
//! (strace: `mkdir("/work") = EROFS`), so MPI_Init aborts with `ORTE_ERROR_LOG
//! session_dir.c:107`. The rank therefore gets
//! `OMPI_MCA_orte_top_session_dir=/tmp/hybrun-ompi.<uid>` (the runtimes bind the
//! host's /tmp; Open MPI creates the rest with mode 0700 and removes its job
//! directories at MPI_Finalize), unless the user set it.

use std::path::{Path, PathBuf};

use super::LaunchError;
use hybrun_core::vocab::{MpiFlavour, MpiPlugin};

/// The plugin chosen, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PmiChoice {
    pub plugin: MpiPlugin,
    pub why: String,
}

/// Chooses `srun --mpi=`: `cli` (`--mpi`) first, then the profile's `pmi`, then
/// the flavour's default. `profile` is (name, flavour, the profile's `pmi`).
pub fn choose(
    cli: Option<MpiPlugin>,
    profile: Option<(&str, MpiFlavour, Option<MpiPlugin>)>,
    force: bool,
) -> Result<PmiChoice, LaunchError> {
    match (cli, profile) {
        (Some(plugin), None) => Ok(PmiChoice {
            plugin,
            why: format!("--mpi {plugin}"),
        }),
        (Some(plugin), Some((name, flavour, _))) => {
            let fits = flavour.default_plugin();
            if plugin != fits && !force {
                return Err(LaunchError::PmiMismatch {
                    plugin,
                    profile: name.to_owned(),
                    flavour,
                    fits,
                });
            }
            Ok(PmiChoice {
                plugin,
                why: if plugin == fits {
                    format!("--mpi {plugin} (fits profile {name}, {flavour})")
                } else {
                    format!("--mpi {plugin} forced against profile {name} ({flavour} needs {fits})")
                },
            })
        }
        (None, Some((name, _, Some(plugin)))) => Ok(PmiChoice {
            plugin,
            why: format!("profile {name}: pmi = {plugin}"),
        }),
        (None, Some((name, flavour, None))) => Ok(PmiChoice {
            plugin: flavour.default_plugin(),
            why: format!(
                "profile {name}: {flavour} speaks {}",
                flavour.default_plugin()
            ),
        }),
        (None, None) => Err(LaunchError::NoMpi),
    }
}

/// What one rank adds under a PMIx server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PmixGlue {
    /// `PMIX_MCA_*` (and Open MPI's session directory) variables to set (name,
    /// value).
    pub env: Vec<(String, String)>,
    /// Host directories to bind at the same path.
    pub dirs: Vec<PathBuf>,
}

/// The server variable and the client MCA variable it maps to.
pub const PMIX_MCA_MAP: [(&str, &str); 3] = [
    ("PMIX_PTL_MODULE", "PMIX_MCA_ptl"),
    ("PMIX_SECURITY_MODE", "PMIX_MCA_psec"),
    ("PMIX_GDS_MODULE", "PMIX_MCA_gds"),
];

/// Open MPI 4's session directory root; set, it wins over the directories the
/// PMIx server announces (see the module documentation).
pub const OMPI_TOP_SESSION_DIR: &str = "OMPI_MCA_orte_top_session_dir";

/// The PMIx glue of this rank, from its environment (`lookup`); None when the
/// rank was not started by a PMIx server (no `PMIX_NAMESPACE`/`PMIX_RANK`).
pub fn pmix_glue(lookup: impl Fn(&str) -> Option<String>) -> Option<PmixGlue> {
    lookup("PMIX_NAMESPACE").or_else(|| lookup("PMIX_RANK"))?;
    let mut glue = PmixGlue::default();
    for (server, client) in PMIX_MCA_MAP {
        if let Some(value) = lookup(server).filter(|v| !v.is_empty()) {
            if lookup(client).is_none() {
                glue.env.push((client.to_owned(), value));
            }
        }
    }
    if lookup(OMPI_TOP_SESSION_DIR).is_none() {
        glue.env.push((
            OMPI_TOP_SESSION_DIR.to_owned(),
            format!("/tmp/hybrun-ompi.{}", rustix::process::getuid().as_raw()),
        ));
    }
    let mut add = |dir: PathBuf| {
        if dir.is_absolute() && dir.is_dir() && !glue.dirs.iter().any(|d| dir.starts_with(d)) {
            glue.dirs.retain(|d| !d.starts_with(&dir));
            glue.dirs.push(dir);
        }
    };
    if let Some(dir) = lookup("PMIX_SERVER_TMPDIR") {
        add(trim_slashes(&dir));
    }
    if let Some(dir) = lookup("PMIX_SYSTEM_TMPDIR") {
        let dir = trim_slashes(&dir);
        if dir != Path::new("/tmp") {
            add(dir);
        }
    }
    // The shared-memory stores normally sit inside the server directory; bind
    // their parents when they do not.
    for var in ["PMIX_DSTORE_21_BASE_PATH", "PMIX_DSTORE_ESH_BASE_PATH"] {
        if let Some(parent) = lookup(var)
            .map(|p| trim_slashes(&p))
            .and_then(|p| p.parent().map(Path::to_path_buf))
        {
            add(parent);
        }
    }
    Some(glue)
}

/// `/a//b/` as `/a/b` (Slurm writes the spool directory with a trailing slash
/// and doubles slashes; the runtimes compare bind paths textually).
fn trim_slashes(path: &str) -> PathBuf {
    path.split('/')
        .filter(|c| !c.is_empty())
        .fold(PathBuf::from("/"), |mut p, c| {
            p.push(c);
            p
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn plugin_choice() {
        let mpich = Some(("mpich", MpiFlavour::Mpich, None));
        assert_eq!(
            choose(None, mpich, false).expect("ok").plugin,
            MpiPlugin::Pmi2
        );
        let ompi = Some(("openmpi", MpiFlavour::Openmpi, None));
        assert_eq!(
            choose(None, ompi, false).expect("ok").plugin,
            MpiPlugin::Pmix
        );
        let site = Some(("cray", MpiFlavour::CrayMpich, Some(MpiPlugin::Pmix)));
        assert_eq!(
            choose(None, site, false).expect("ok").plugin,
            MpiPlugin::Pmix
        );
        assert!(choose(Some(MpiPlugin::Pmix), mpich, false).is_err());
        assert!(choose(Some(MpiPlugin::Pmix), mpich, true).is_ok());
        assert!(choose(Some(MpiPlugin::Pmi2), ompi, false).is_err());
        assert_eq!(
            choose(Some(MpiPlugin::None), None, false)
                .expect("ok")
                .plugin,
            MpiPlugin::None
        );
        assert!(choose(None, None, false).is_err());
    }

    #[test]
    fn pmix_mapping_and_dirs() {
        let tmp = tempfile::tempdir().expect("tmp");
        let server = tmp.path().join("spool/node1/pmix.2.0");
        std::fs::create_dir_all(&server).expect("mkdir");
        let env: HashMap<&str, String> = [
            ("PMIX_NAMESPACE", "slurm.pmix.2.0".to_owned()),
            ("PMIX_SECURITY_MODE", "native".to_owned()),
            ("PMIX_GDS_MODULE", "ds21,ds12,hash".to_owned()),
            ("PMIX_MCA_psec", "munge".to_owned()),
            ("PMIX_SERVER_TMPDIR", format!("{}/", server.display())),
            ("PMIX_SYSTEM_TMPDIR", "/tmp".to_owned()),
            (
                "PMIX_DSTORE_21_BASE_PATH",
                format!("{}//pmix_dstor_ds21_1", server.display()),
            ),
        ]
        .into_iter()
        .collect();
        let glue = pmix_glue(|k| env.get(k).cloned()).expect("pmix");
        // psec is already set by the user: kept. Open MPI's session directory
        // moves off the server's host path.
        let uid = rustix::process::getuid().as_raw();
        assert_eq!(
            glue.env,
            vec![
                ("PMIX_MCA_gds".to_owned(), "ds21,ds12,hash".to_owned()),
                (
                    OMPI_TOP_SESSION_DIR.to_owned(),
                    format!("/tmp/hybrun-ompi.{uid}")
                ),
            ]
        );
        // The user's choice stands.
        let mine = |k: &str| match k {
            OMPI_TOP_SESSION_DIR => Some("/scratch/me".to_owned()),
            _ => env.get(k).cloned(),
        };
        let glue = pmix_glue(mine).expect("pmix");
        assert!(glue.env.iter().all(|(k, _)| k != OMPI_TOP_SESSION_DIR));
        assert_eq!(glue.dirs, vec![server]);
        assert!(pmix_glue(|_| None).is_none());
    }
}
