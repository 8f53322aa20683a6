//! Step 1 of planning: what the user asked for ([`Request`]) and the host it is
//! asked on ([`Host`]), independent of how the command line spells them.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use hybrun_core::vocab::{LauncherKind, Mode, MpiPlugin, RuntimeKind, Version};

use crate::launch::plan::Geometry;
use crate::site::launcher::PerRankChoice;

/// What the user asked for, independent of how the command line spells it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub site: Option<PathBuf>,
    pub mode: Option<Mode>,
    pub runtime: Option<RuntimeKind>,
    pub runtime_version: Option<Version>,
    pub launcher: Option<LauncherKind>,
    pub mpi_profile: Option<String>,
    pub mpi: Option<MpiPlugin>,
    pub geometry: Geometry,
    /// `-B SRC[:DST[:ro|rw]]` as given.
    pub binds: Vec<OsString>,
    /// `--env NAME=VALUE` as given.
    pub env: Vec<OsString>,
    pub unset: Vec<String>,
    /// `--nv`: NVIDIA GPUs in the container even without `--gpus-per-node`.
    pub nv: bool,
    pub per_rank: Option<PerRankChoice>,
    pub bind_dir: Option<PathBuf>,
    pub oversubscribe: bool,
    pub force: bool,
    /// `--allow-tcp`: no fabric guard (see [`super::fabric_guard`]).
    pub allow_tcp: bool,
    /// The per-rank wrapper of `hybrun run`, which judged the image before the job
    /// started: no second image check on every rank.
    pub skip_gate: bool,
    /// `--no-cpu-bind`: `hybrun exec` leaves the rank's CPU affinity alone.
    pub no_cpu_bind: bool,
    pub dry_run: bool,
    pub image: Option<PathBuf>,
    pub command: Vec<OsString>,
}

/// The host as the planner sees it: environment variables and PATH lookups.
/// A snapshot, so tests can give their own.
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

    /// A variable as UTF-8 text (others are treated as unset).
    pub fn var(&self, name: &str) -> Option<String> {
        self.vars
            .get(OsStr::new(name))
            .and_then(|v| v.to_str())
            .map(str::to_owned)
    }

    /// The executable `program` would run: itself when it has a '/', else the
    /// first match on PATH.
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

    fn home(&self) -> Option<PathBuf> {
        self.var("HOME")
            .filter(|h| h.starts_with('/'))
            .map(PathBuf::from)
    }

    /// hybrun's cache directory (bind-mode closures and bundles).
    pub fn cache_dir(&self) -> Option<PathBuf> {
        self.var("XDG_CACHE_HOME")
            .filter(|h| h.starts_with('/'))
            .map(|d| PathBuf::from(d).join("hybrun"))
            .or_else(|| self.home().map(|h| h.join(".hybrun/cache")))
    }
}
