//! THE launch plan: everything `hybrun run` decided, as data, before anything runs.
//!
//! A [`LaunchPlan`] is built once (by [`super::planner`]) and then *rendered* by
//! the backends ([`super::render`] for the launcher, [`super::runtime`] for each
//! rank; this module knows neither) into a [`Rendered`] command: an environment change plus an argv
//! vector, never a shell string. `--dry-run` prints that command quoted for a POSIX
//! shell, `--json` prints the plan, the launch record stores both, and a real run
//! executes exactly the rendered argv.
//!
//! The plan has two levels, because the job and each rank are launched by
//! different programs:
//!
//! - the job: geometry and the launcher (`srun`, `mpiexec.hydra`, `mpiexec.openmpi`
//!   or none) that starts the ranks;
//! - the rank ([`RankPlan`]): runtime, mode, image, binds, environment and the
//!   user's command, rendered by the runtime backend (`singularity exec`,
//!   `apptainer exec`, `ch-run`, or the bare command).
//!
//! What sits between them is [`PerRank`]: either the runtime command itself
//! (direct) or `hybrun exec` (the wrapper), which takes the rank plan `hybrun
//! run` hands it ([`Handoff`]) and adds on the compute node the facts only the
//! node knows ([`RankFacts`]: node and job for `ch-run --join-tag`, the PMIx
//! server's directory, the local rank's GPUs and CPUs).

use std::ffi::{OsStr, OsString};

use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use hybrun_core::vocab::{
    Dialect, LauncherKind, Mode, MpiFlavour, MpiPlugin, RuntimeKind, Version,
};

use super::LaunchError;
use crate::quote;
use crate::site::fabric::FabricKind;

/// Job geometry, in srun's own terms; `None` leaves the choice to the launcher
/// (and to the allocation when run inside one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Geometry {
    pub nodes: Option<u32>,
    pub ntasks: Option<u32>,
    pub ntasks_per_node: Option<u32>,
    pub gpus_per_node: Option<u32>,
    /// srun's `-t` value, passed through (srun checks its format).
    pub time: Option<String>,
    pub partition: Option<String>,
    pub account: Option<String>,
    // The job-shape fields below are skipped when unset, so that a plan that
    // does not use them serializes (and is recorded) exactly as before.
    /// srun `-c`/`--cpus-per-task`: CPUs per rank (threads of an MPI+OpenMP job).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus_per_task: Option<u32>,
    /// srun `--exclusive`: no other job on the nodes.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub exclusive: bool,
    /// srun `--mem`, passed through (srun checks its format).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    /// srun `-C`/`--constraint`: node features.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
    /// srun `-q`/`--qos`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    /// srun `-J`/`--job-name`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_name: Option<String>,
    /// srun `--gpus-per-task`: GPUs per rank.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpus_per_task: Option<u32>,
    /// srun `--gpu-bind`, passed through.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpu_bind: Option<String>,
    /// `--srun-arg`: srun options hybrun does not model, in order, after its own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub srun_args: Vec<String>,
}

/// srun options hybrun sets itself, which an `--srun-arg` must not change, and why.
const SRUN_OWNED: &[(&str, &str)] = &[
    (
        "--mpi",
        "hybrun chooses the PMI plugin from the MPI flavour: use --mpi",
    ),
    (
        "--export",
        "hybrun passes the rank environment with --export=ALL",
    ),
    ("-K", "hybrun always sets --kill-on-bad-exit"),
    (
        "--kill-on-bad-exit",
        "hybrun always sets --kill-on-bad-exit",
    ),
];

impl Geometry {
    /// The number of ranks when it is known without asking Slurm.
    pub fn total_tasks(&self) -> Option<u32> {
        self.ntasks.or_else(|| {
            self.nodes
                .zip(self.ntasks_per_node)
                .and_then(|(n, p)| n.checked_mul(p))
        })
    }

    /// Checks that the numbers agree with each other.
    pub fn check(&self) -> Result<(), LaunchError> {
        let bad = |why: String| Err(LaunchError::Geometry { why });
        for (name, value) in [
            ("--nodes", self.nodes),
            ("--ntasks", self.ntasks),
            ("--ntasks-per-node", self.ntasks_per_node),
        ] {
            if value == Some(0) {
                return bad(format!("{name} 0: it must be at least 1"));
            }
        }
        if let (Some(n), Some(t)) = (self.nodes, self.ntasks) {
            if t < n {
                return bad(format!(
                    "--ntasks {t} is fewer than --nodes {n}: every node needs at least one task"
                ));
            }
        }
        if let (Some(n), Some(p), Some(t)) = (self.nodes, self.ntasks_per_node, self.ntasks) {
            if u64::from(n) * u64::from(p) < u64::from(t) {
                return bad(format!(
                    "--ntasks {t} does not fit in --nodes {n} x --ntasks-per-node {p}"
                ));
            }
        }
        if self.cpus_per_task == Some(0) || self.gpus_per_task == Some(0) {
            return bad("--cpus-per-task and --gpus-per-task must be at least 1".into());
        }
        if let (Some(t), Some(n)) = (self.gpus_per_task, self.gpus_per_node) {
            return bad(format!(
                "--gpus-per-task {t} with --gpus-per-node {n}: give one of them (Slurm \
                 counts GPUs either per rank or per node)"
            ));
        }
        for (name, value) in [
            ("--time", &self.time),
            ("--partition", &self.partition),
            ("--account", &self.account),
            ("--mem", &self.mem),
            ("--constraint", &self.constraint),
            ("--qos", &self.qos),
            ("--job-name", &self.job_name),
            ("--gpu-bind", &self.gpu_bind),
        ] {
            if let Some(v) = value {
                if v.is_empty() || v.chars().any(char::is_control) {
                    return bad(format!(
                        "{name} {v:?}: give a non-empty value without control characters"
                    ));
                }
            }
        }
        self.check_srun_args()
    }

    /// `--srun-arg`: an option (a bare word would be taken for the program),
    /// none of those hybrun sets itself.
    fn check_srun_args(&self) -> Result<(), LaunchError> {
        for arg in &self.srun_args {
            let why = if !arg.starts_with('-') {
                Some("not an option: give it with its dashes, e.g. --srun-arg=--cpu-freq=high")
            } else if arg.chars().any(char::is_control) {
                Some("it has control characters")
            } else {
                let name = arg.split('=').next().unwrap_or(arg);
                let short = arg.get(..2).unwrap_or(arg);
                SRUN_OWNED
                    .iter()
                    .find(|(flag, _)| *flag == name || (flag.len() == 2 && *flag == short))
                    .map(|(_, why)| *why)
            };
            if let Some(why) = why {
                return Err(LaunchError::Geometry {
                    why: format!("--srun-arg {arg:?}: {why}"),
                });
            }
        }
        Ok(())
    }
}

/// The container runtime that runs each rank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Runtime {
    Singularity {
        #[serde(serialize_with = "ser_path")]
        program: PathBuf,
        version: Version,
        dialect: Dialect,
    },
    Apptainer {
        #[serde(serialize_with = "ser_path")]
        program: PathBuf,
        version: Version,
    },
    Charliecloud {
        #[serde(serialize_with = "ser_path")]
        program: PathBuf,
        /// Given (`--runtime-version`, `[runtime] version`) or asked when
        /// `--runtime-arg`s are checked; None: not needed, not asked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        version: Option<Version>,
    },
    None,
}

impl Runtime {
    /// The runtime's kind (its name on the command line and in messages).
    pub fn kind(&self) -> RuntimeKind {
        match self {
            Runtime::Singularity { .. } => RuntimeKind::Singularity,
            Runtime::Apptainer { .. } => RuntimeKind::Apptainer,
            Runtime::Charliecloud { .. } => RuntimeKind::Charliecloud,
            Runtime::None => RuntimeKind::None,
        }
    }

    /// The runtime's program, when there is one.
    pub fn program(&self) -> Option<&Path> {
        match self {
            Runtime::Singularity { program, .. }
            | Runtime::Apptainer { program, .. }
            | Runtime::Charliecloud { program, .. } => Some(program),
            Runtime::None => None,
        }
    }

    /// Whether the site's allowed-directory image policy applies (it is a rule
    /// of the setuid Singularity/Apptainer installation, not of ch-run).
    pub fn has_image_policy(&self) -> bool {
        matches!(
            self,
            Runtime::Singularity { .. } | Runtime::Apptainer { .. }
        )
    }
}

/// One bind mount: host `src` at container `dst`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bind {
    #[serde(serialize_with = "ser_path")]
    pub src: PathBuf,
    #[serde(serialize_with = "ser_path")]
    pub dst: PathBuf,
    pub ro: bool,
    /// Why it is there: "user", "site", "host MPI", "pmix", ...
    pub why: String,
}

impl Bind {
    /// Refuses paths the runtimes cannot express: relative ones, and ones with
    /// `:` or `,`, which Singularity/Apptainer split `-B` on (`src:dst:opts`,
    /// comma lists) and ch-run splits `-b` on.
    pub fn check(&self) -> Result<(), LaunchError> {
        for (path, which) in [(&self.src, "source"), (&self.dst, "destination")] {
            let bytes = path.as_os_str().as_encoded_bytes();
            if let Some(&c) = bytes.iter().find(|&&b| b == b':' || b == b',') {
                return Err(LaunchError::BindSeparator {
                    path: path.display().to_string(),
                    which,
                    separator: c as char,
                });
            }
            if !path.is_absolute() {
                return Err(LaunchError::BindRelative {
                    path: path.display().to_string(),
                    which,
                });
            }
            if bytes.iter().any(|&b| b == b'\n' || b == 0) {
                return Err(LaunchError::BindSeparator {
                    path: path.display().to_string(),
                    which,
                    separator: '\n',
                });
            }
        }
        Ok(())
    }
}

/// What an environment change does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EnvOp {
    Set(#[serde(serialize_with = "ser_os", deserialize_with = "de_os")] OsString),
    Unset,
}

/// How a variable reaches the process inside the container. Chosen per runtime
/// when the plan is built (see [`super::env`]), so rendering is mechanical.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Delivery {
    /// Set or removed in the launcher's own environment and inherited through
    /// srun/mpiexec and the runtime (native; unsets for Singularity/Apptainer,
    /// which pass the host environment through).
    Launcher,
    /// `SINGULARITYENV_NAME` / `APPTAINERENV_NAME` in the launcher's environment:
    /// the runtime sets NAME inside, even LD_LIBRARY_PATH, which it never passes
    /// from the host.
    Prefixed,
    /// A runtime flag: `--env NAME=VALUE` (Apptainer), `--set-env=NAME=VALUE` /
    /// `--unset-env=NAME` (ch-run).
    Flag,
}

/// One environment change of the rank's process.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnvChange {
    pub name: String,
    pub op: EnvOp,
    pub delivery: Delivery,
    /// Who asked for it: "user", "site", "mpi profile", "fabric", "bind mode", ...
    pub why: String,
}

/// For `ch-run`: join the ranks of a node into one container (shared user and
/// mount namespace, so MPI shared memory works between them).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Join {
    /// `--join-ct`: ranks on this node.
    pub count: u32,
    /// `--join-tag`: unique per node and launch (nodes may share /dev/shm, and a failed join leaves its files there).
    pub tag: Option<String>,
}

/// ch-run with a SquashFS image: the per-node mount of the image (made and
/// held by [`crate::launch::image_mount`]), as the plan and the record show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMount {
    #[serde(serialize_with = "ser_path")]
    pub image: PathBuf,
    /// Where the SquashFS starts in the image (0 for a `.sqfs`).
    pub offset: u64,
    pub size: u64,
    /// The node's and job's directory (locks, holder, mount point).
    #[serde(serialize_with = "ser_path")]
    pub dir: PathBuf,
    /// What ch-run is given: the mounted root file system.
    #[serde(serialize_with = "ser_path")]
    pub mountpoint: PathBuf,
}

/// For the `inside` mode: the mpiexec that runs in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InsideLauncher {
    #[serde(serialize_with = "ser_path")]
    pub program: PathBuf,
    pub flavour: MpiFlavour,
    pub ntasks: u32,
    pub oversubscribe: bool,
}

/// Everything one rank needs; rendered by the runtime backend.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankPlan {
    pub runtime: Runtime,
    pub mode: Mode,
    #[serde(serialize_with = "ser_opt_path")]
    pub image: Option<PathBuf>,
    pub binds: Vec<Bind>,
    pub env: Vec<EnvChange>,
    /// `--nv` (NVIDIA GPUs) for Singularity/Apptainer.
    pub nvidia: bool,
    /// ch-run `--join-ct`/`--join-tag`, once known (per rank, by `hybrun exec`).
    pub join: Option<Join>,
    /// ch-run with a SquashFS image (SIF or `.sqfs`): the per-node mount it
    /// runs from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mount: Option<ImageMount>,
    pub inside: Option<InsideLauncher>,
    /// The working directory the rank starts in (`--pwd`); None: the
    /// launcher's, or the runtime's default in a container.
    #[serde(
        serialize_with = "ser_opt_path",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub pwd: Option<PathBuf>,
    /// `--runtime-arg`: flags for the runtime hybrun does not model, before
    /// the image (checked against the version's flags by
    /// [`super::runtime::flags`]).
    #[serde(
        serialize_with = "ser_os_vec",
        deserialize_with = "de_os_vec",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub runtime_args: Vec<OsString>,
    /// `hybrun shell`: the runtime's interactive shell (`singularity shell`,
    /// `apptainer shell`; ch-run runs the command, /bin/sh) instead of `exec`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interactive: bool,
    #[serde(serialize_with = "ser_os_vec", deserialize_with = "de_os_vec")]
    pub command: Vec<OsString>,
}

/// What a rank adds to its plan where it runs, from its node and its
/// environment (`hybrun exec`): decided with the plan, applied by each rank.
/// ch-run's join and the PMIx glue follow from the rank plan itself (its
/// runtime and mode); these are what the plan does not say.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RankFacts {
    /// ch-run with a directory image: its root. ch-run cannot create bind
    /// targets, so the PMIx server's directory is bound only where it exists.
    #[serde(
        serialize_with = "ser_opt_path",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub image_root: Option<PathBuf>,
    /// GPUs per rank the rank takes from its local rank: 1 with `[gpu]
    /// per_rank` and NVIDIA GPUs, N with `--gpus-per-task N`; 0: none.
    pub gpus: u32,
    /// The rank's CPU binding: near its GPU or the fabric's NIC, or off.
    pub cpu_binding: CpuBindRule,
    /// ch-run: this launch's id, drawn by `hybrun run`, so that a node's
    /// ranks of this launch, and no others, share one join tag and one image
    /// mount (see [`crate::launch::planner::node_group`]). None: each rank
    /// names its group from Slurm's ids or from its parent process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<String>,
}

/// Whether and near what a rank's CPUs are bound (see
/// [`crate::launch::planner::cpu_binding_in`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum CpuBindRule {
    /// Left as the launcher set it.
    Off { why: String },
    /// Near the rank's GPU when hybrun chose one, else the fabric's NIC.
    Near {
        /// `[fabric] nic`.
        nic: Option<String>,
        /// `[fabric] kind`.
        fabric: Option<FabricKind>,
        /// `-c N`: at least N CPUs, one per thread.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cpus_per_rank: Option<u32>,
    },
}

/// What `hybrun run` hands each rank's `hybrun exec` (see
/// [`super::handoff`]): the rank as planned once for the job, and what each
/// rank still adds on its node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Handoff {
    /// The format; a rank whose hybrun reads another plans itself instead.
    pub format: u32,
    pub rank: RankPlan,
    pub facts: RankFacts,
}

/// What the job launcher starts on every rank.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum PerRank {
    /// The runtime command itself.
    Direct,
    /// `hybrun exec ARGS`: adds the rank's own facts where it runs, to the
    /// plan it is handed (or plans the rank from ARGS without one).
    Wrapper {
        #[serde(serialize_with = "ser_path")]
        program: PathBuf,
        #[serde(serialize_with = "ser_os_vec")]
        args: Vec<OsString>,
        /// Why the wrapper is needed.
        why: Vec<String>,
        /// The rank's plan, encoded for the ranks ([`super::handoff`]): in the
        /// launcher's environment, which reaches every rank. None: each rank
        /// plans itself from `args`.
        #[serde(skip)]
        handoff: Option<String>,
        /// This launch's id in the plan handed over ([`RankFacts::launch`]):
        /// ch-run's join tags are `hybrun.ID.NODE`. None when no plan is
        /// handed over.
        #[serde(skip_serializing_if = "Option::is_none")]
        launch: Option<String>,
    },
}

impl PerRank {
    /// The launch id handed to the ranks, if any.
    pub fn launch(&self) -> Option<&str> {
        match self {
            PerRank::Wrapper { launch, .. } => launch.as_deref(),
            PerRank::Direct => None,
        }
    }
}

/// The job launcher.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Launcher {
    pub kind: LauncherKind,
    #[serde(serialize_with = "ser_opt_path")]
    pub program: Option<PathBuf>,
    /// srun `--mpi=`; None for other launchers.
    pub mpi: Option<MpiPlugin>,
    /// mpiexec.openmpi `--oversubscribe`.
    pub oversubscribe: bool,
}

/// THE launch plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LaunchPlan {
    pub geometry: Geometry,
    pub launcher: Launcher,
    pub per_rank: PerRank,
    pub rank: RankPlan,
    /// The decisions and their reasons, in order, for `--dry-run` and the record.
    pub notes: Vec<String>,
}

/// A rendered command: environment changes for the program plus its argv.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Rendered {
    #[serde(serialize_with = "ser_os_vec")]
    pub env_unset: Vec<OsString>,
    #[serde(serialize_with = "ser_os_pairs")]
    pub env_set: Vec<(OsString, OsString)>,
    #[serde(serialize_with = "ser_os_vec")]
    pub argv: Vec<OsString>,
    /// The directory the program starts in (`--pwd`); None: the caller's.
    #[serde(
        serialize_with = "ser_opt_path",
        skip_serializing_if = "Option::is_none"
    )]
    pub cwd: Option<PathBuf>,
}

impl Rendered {
    /// The command as one POSIX shell line (paste-able): `cd DIR && ` first
    /// when it starts in a directory of its own.
    pub fn shell_line(&self) -> String {
        String::from_utf8_lossy(&self.shell_line_bytes()).into_owned()
    }

    /// The same, byte-exact.
    pub fn shell_line_bytes(&self) -> Vec<u8> {
        let mut line = Vec::new();
        if let Some(dir) = &self.cwd {
            line.extend_from_slice(b"cd ");
            line.extend(quote::quote_line_bytes(
                &[],
                &[],
                &[dir.as_os_str().to_owned()],
            ));
            line.extend_from_slice(b" && ");
        }
        line.extend(quote::quote_line_bytes(
            &self.env_unset,
            &self.env_set,
            &self.argv,
        ));
        line
    }

    /// A `std::process::Command` that runs exactly this (no shell).
    pub fn command(&self) -> Result<std::process::Command, LaunchError> {
        let (program, args) = self.argv.split_first().ok_or(LaunchError::EmptyCommand)?;
        let mut command = std::process::Command::new(program);
        command.args(args);
        for name in &self.env_unset {
            command.env_remove(name);
        }
        for (name, value) in &self.env_set {
            command.env(name, value);
        }
        if let Some(dir) = &self.cwd {
            command.current_dir(dir);
        }
        Ok(command)
    }

    /// Adds a variable, replacing an earlier setting of the same name.
    pub fn set(&mut self, name: impl Into<OsString>, value: impl Into<OsString>) {
        let name = name.into();
        self.env_unset.retain(|n| *n != name);
        self.env_set.retain(|(n, _)| *n != name);
        self.env_set.push((name, value.into()));
    }

    /// Removes a variable, replacing an earlier setting of the same name.
    pub fn unset(&mut self, name: impl Into<OsString>) {
        let name = name.into();
        self.env_set.retain(|(n, _)| *n != name);
        if !self.env_unset.contains(&name) {
            self.env_unset.push(name);
        }
    }
}

impl RankPlan {
    /// The command run in the container (with the `inside` mpiexec in front).
    pub fn payload(&self) -> Vec<OsString> {
        let Some(inside) = &self.inside else {
            return self.command.clone();
        };
        let mut argv = vec![inside.program.as_os_str().to_owned()];
        argv.push("-n".into());
        argv.push(inside.ntasks.to_string().into());
        if inside.oversubscribe && inside.flavour == MpiFlavour::Openmpi {
            argv.push("--oversubscribe".into());
        }
        argv.extend(self.command.iter().cloned());
        argv
    }
}

/// Serializes an OS string as JSON text: exact when it is UTF-8, else with the
/// invalid bytes replaced and a `\u{fffd}` marking them (the plan is for people
/// and records; the argv itself is executed from the plan's bytes, not its JSON).
pub fn ser_os<S: Serializer>(value: &OsStr, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&value.to_string_lossy())
}

pub fn ser_path<S: Serializer>(value: &Path, s: S) -> Result<S::Ok, S::Error> {
    ser_os(value.as_os_str(), s)
}

pub fn ser_opt_path<S: Serializer>(value: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
    match value {
        Some(path) => ser_path(path, s),
        None => s.serialize_none(),
    }
}

pub fn ser_os_vec<S: Serializer>(value: &[OsString], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(value.iter().map(|v| v.to_string_lossy()))
}

/// The inverse of [`ser_os`] for text that was UTF-8 (a plan handed to the
/// ranks is checked to come back unchanged, see [`super::handoff`]).
pub fn de_os<'de, D: Deserializer<'de>>(d: D) -> Result<OsString, D::Error> {
    String::deserialize(d).map(OsString::from)
}

/// The inverse of [`ser_os_vec`] (see [`de_os`]).
pub fn de_os_vec<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<OsString>, D::Error> {
    Vec::<String>::deserialize(d).map(|v| v.into_iter().map(OsString::from).collect())
}

pub fn ser_os_pairs<S: Serializer>(
    value: &[(OsString, OsString)],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(
        value
            .iter()
            .map(|(k, v)| [k.to_string_lossy(), v.to_string_lossy()]),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn geometry_checks() {
        let g = Geometry {
            nodes: Some(2),
            ntasks: Some(1),
            ..Geometry::default()
        };
        assert!(g.check().is_err());
        let g = Geometry {
            nodes: Some(2),
            ntasks_per_node: Some(2),
            ntasks: Some(5),
            ..Geometry::default()
        };
        assert!(g.check().is_err());
        let g = Geometry {
            nodes: Some(2),
            ntasks_per_node: Some(2),
            ..Geometry::default()
        };
        assert_eq!(g.total_tasks(), Some(4));
        assert!(g.check().is_ok());
    }

    #[test]
    fn bind_paths_checked() {
        let bind = |src: &str, dst: &str| Bind {
            src: src.into(),
            dst: dst.into(),
            ro: false,
            why: "user".into(),
        };
        assert!(bind("/a", "/b").check().is_ok());
        assert!(bind("/a:b", "/b").check().is_err());
        assert!(bind("/a", "/b,c").check().is_err());
        assert!(bind("a", "/b").check().is_err());
    }
}
