//! Slurm as this host's `srun` describes it: its version (`srun --version`) and
//! the MPI plugins it offers (`srun --mpi=list`), each run with a deadline (an
//! `srun` without a reachable controller can hang).

use std::path::Path;

use super::command::{last_line, probe};

/// Parses `srun --mpi=list`: Slurm 22+ prints "MPI plugin types are...", then one
/// plugin per line (tab-indented), then "specific pmix plugin versions available: ...";
/// older versions prefix every line with "srun: ".
pub fn parse_srun_mpi_list(text: &str) -> Vec<String> {
    let mut plugins = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("srun:").map_or(line, str::trim);
        if line.is_empty() || line.contains(' ') || line.contains(':') {
            continue;
        }
        if line
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            plugins.push(line.to_owned());
        }
    }
    plugins.sort();
    plugins.dedup();
    plugins
}

/// What one `srun --mpi=list` said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpiList {
    /// Whether srun exited with success.
    pub ok: bool,
    pub plugins: Vec<String>,
    /// The last line of its output (the error, when it failed).
    pub last_line: String,
}

/// Runs `srun --mpi=list`; None when srun cannot be started.
pub fn mpi_list(srun: &Path) -> Option<MpiList> {
    let (ok, text) = probe(srun, &["--mpi=list"], &[])?;
    Some(MpiList {
        ok,
        plugins: parse_srun_mpi_list(&text),
        last_line: last_line(&text),
    })
}

/// Slurm, as the doctor reports it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Slurm {
    pub srun: Option<String>,
    /// The last line of `srun --version` ("slurm 22.05.8").
    pub version: Option<String>,
    pub mpi_plugins: Vec<String>,
    /// Why srun could not tell (its last line, or "cannot run it").
    pub error: Option<String>,
}

impl Slurm {
    /// No srun on this host.
    pub fn absent() -> Slurm {
        Slurm {
            srun: None,
            version: None,
            mpi_plugins: Vec::new(),
            error: None,
        }
    }

    /// Asks `srun` its version and MPI plugins; the first failure is the error.
    pub fn probe(srun: &Path) -> Slurm {
        let mut slurm = Slurm {
            srun: Some(srun.display().to_string()),
            ..Slurm::absent()
        };
        match probe(srun, &["--version"], &[]) {
            Some((true, text)) => slurm.version = Some(last_line(&text)),
            Some((false, text)) => slurm.error = Some(last_line(&text)),
            None => slurm.error = Some("cannot run it".into()),
        }
        match mpi_list(srun) {
            Some(list) if list.ok => slurm.mpi_plugins = list.plugins,
            list if slurm.error.is_none() => {
                slurm.error = Some(list.map_or("cannot run it".into(), |l| l.last_line));
            }
            _ => {}
        }
        slurm
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn srun_list_parses_both_formats() {
        let new = "MPI plugin types are...\n\tpmix\n\tnone\n\tcray_shasta\n\tpmi2\nspecific pmix plugin versions available: pmix_v4\n";
        assert_eq!(
            parse_srun_mpi_list(new),
            vec!["cray_shasta", "none", "pmi2", "pmix"]
        );
        let old = "srun: MPI types are...\nsrun: none\nsrun: pmi2\n";
        assert_eq!(parse_srun_mpi_list(old), vec!["none", "pmi2"]);
    }

    fn fake_srun(dir: &Path, body: &str) -> std::path::PathBuf {
        let path = dir.join("srun");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    #[test]
    fn a_working_and_a_broken_srun() {
        let tmp = tempfile::tempdir().expect("tmp");
        let srun = fake_srun(
            tmp.path(),
            "case \"$1\" in --version) echo 'slurm 22.05.8';; \
             --mpi=list) printf 'MPI plugin types are...\\n\\tpmi2\\n\\tpmix\\n';; esac",
        );
        let s = Slurm::probe(&srun);
        assert_eq!(s.version.as_deref(), Some("slurm 22.05.8"));
        assert_eq!(s.mpi_plugins, ["pmi2", "pmix"]);
        assert_eq!(s.error, None);
        assert_eq!(s.srun, Some(srun.display().to_string()));
        let srun = fake_srun(
            tmp.path(),
            "echo 'srun: fatal: Could not establish a configuration source' >&2; exit 1",
        );
        let s = Slurm::probe(&srun);
        assert_eq!(
            s.error.as_deref(),
            Some("srun: fatal: Could not establish a configuration source")
        );
        assert_eq!((s.version, s.mpi_plugins.len()), (None, 0));
        let list = mpi_list(&srun).expect("ran");
        assert!(!list.ok);
        let s = Slurm::probe(&tmp.path().join("absent"));
        assert_eq!(s.error.as_deref(), Some("cannot run it"));
    }
}
