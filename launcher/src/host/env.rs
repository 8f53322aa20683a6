//! The host's environment as hybrun sees it: a snapshot of the variables, the
//! program a name runs (`which`, the one PATH lookup of the crate), and hybrun's
//! home and cache directories. A snapshot, so the planner and its tests can give
//! their own.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// Environment variables, taken once.
#[derive(Debug, Clone, Default)]
pub struct Host {
    pub vars: HashMap<OsString, OsString>,
}

impl Host {
    /// This process's environment.
    pub fn current() -> Host {
        Host {
            vars: std::env::vars_os().collect(),
        }
    }

    /// A snapshot of exactly these variables (tests, fake trees).
    pub fn with_vars<K: AsRef<OsStr>, V: AsRef<OsStr>>(pairs: &[(K, V)]) -> Host {
        Host {
            vars: pairs
                .iter()
                .map(|(k, v)| (k.as_ref().to_owned(), v.as_ref().to_owned()))
                .collect(),
        }
    }

    /// A variable as UTF-8 text (others are treated as unset).
    pub fn var(&self, name: &str) -> Option<String> {
        self.vars
            .get(OsStr::new(name))
            .and_then(|v| v.to_str())
            .map(str::to_owned)
    }

    /// A variable as given (not necessarily UTF-8).
    pub fn var_os(&self, name: &str) -> Option<&OsStr> {
        self.vars.get(OsStr::new(name)).map(OsString::as_os_str)
    }

    /// The executable `program` would run: itself when it has a '/', else the
    /// first executable match in PATH's absolute directories.
    pub fn which(&self, program: &str) -> Option<PathBuf> {
        use std::os::unix::fs::PermissionsExt;
        let executable = |p: &Path| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        };
        if program.contains('/') {
            let path = PathBuf::from(program);
            return executable(&path).then_some(path);
        }
        let path = self.vars.get(OsStr::new("PATH"))?;
        std::env::split_paths(path)
            .filter(|dir| dir.is_absolute())
            .map(|dir| dir.join(program))
            .find(|p| executable(p))
    }

    /// `$HOME`, when it is an absolute path.
    pub fn home(&self) -> Option<PathBuf> {
        self.var("HOME")
            .filter(|h| h.starts_with('/'))
            .map(PathBuf::from)
    }

    /// `JOB.STEP.NODE` of a Slurm job step on this node (None outside one):
    /// unique per node and step, each part in [`safe_name`]'s characters with
    /// `.` made `_`. ch-run's join tag and the per-node image mount are keyed
    /// by it when a rank plans itself.
    pub fn slurm_node_step(&self) -> Option<String> {
        let part = |s: &str| safe_name(s).replace('.', "_");
        let job = self.var("SLURM_JOB_ID")?;
        let step = self.var("SLURM_STEP_ID").unwrap_or_else(|| "0".into());
        let node = self
            .var("SLURMD_NODENAME")
            .or_else(|| self.var("SLURM_NODEID"))
            .unwrap_or_else(|| "node".into());
        Some(format!("{}.{}.{}", part(&job), part(&step), part(&node)))
    }

    /// hybrun's cache directory (bind-mode closures and bundles).
    pub fn cache_dir(&self) -> Option<PathBuf> {
        self.var("XDG_CACHE_HOME")
            .filter(|h| h.starts_with('/'))
            .map(|d| PathBuf::from(d).join("hybrun"))
            .or_else(|| self.home().map(|h| h.join(".hybrun/cache")))
    }
}

/// `name` in characters safe in file and POSIX semaphore names: letters,
/// digits, `-`, `_` and `.`; anything else becomes `_`.
pub fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn program(dir: &Path, name: &str, mode: u32) -> PathBuf {
        std::fs::create_dir_all(dir).expect("mkdir");
        let path = dir.join(name);
        std::fs::write(&path, "#!/bin/sh\n").expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    #[test]
    fn which_takes_the_first_executable_in_path() {
        let tmp = tempfile::tempdir().expect("tmp");
        let a = tmp.path().join("a");
        let b = tmp.path().join("b");
        program(&a, "srun", 0o644); // not executable: skipped
        let wanted = program(&b, "srun", 0o755);
        program(&b, "mpicc", 0o755);
        let path =
            std::env::join_paths(["relative/bin".into(), a.clone(), b.clone()]).expect("join");
        let host = Host::with_vars(&[("PATH", path)]);
        assert_eq!(host.which("srun"), Some(wanted.clone()));
        assert_eq!(host.which("absent"), None);
        // A name with a '/' is the file itself.
        assert_eq!(host.which(wanted.to_str().expect("utf-8")), Some(wanted));
        assert_eq!(host.which(a.join("srun").to_str().expect("utf-8")), None);
        assert_eq!(Host::default().which("srun"), None, "no PATH");
    }

    #[test]
    fn cache_dir_prefers_xdg_then_home() {
        let host = Host::with_vars(&[("XDG_CACHE_HOME", "/x/cache"), ("HOME", "/home/u")]);
        assert_eq!(host.cache_dir(), Some(PathBuf::from("/x/cache/hybrun")));
        let host = Host::with_vars(&[("XDG_CACHE_HOME", "relative"), ("HOME", "/home/u")]);
        assert_eq!(
            host.cache_dir(),
            Some(PathBuf::from("/home/u/.hybrun/cache"))
        );
        let host = Host::with_vars(&[("HOME", "not/absolute")]);
        assert_eq!(host.cache_dir(), None);
        assert_eq!(host.var("HOME").as_deref(), Some("not/absolute"));
    }
}
