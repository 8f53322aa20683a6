//! Step 1 of planning: what the user asked for ([`Request`]), independent of
//! how the command line spells it (the host it is asked on is
//! [`crate::host::Host`]).

use std::ffi::OsString;
use std::path::PathBuf;

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
    /// `--pwd DIR`: the ranks' working directory (absolute, existing).
    pub pwd: Option<PathBuf>,
    /// `--runtime-arg ARG` as given.
    pub runtime_args: Vec<OsString>,
    /// `hybrun shell`: the runtime's interactive shell.
    pub interactive: bool,
    pub dry_run: bool,
    pub image: Option<PathBuf>,
    pub command: Vec<OsString>,
}
