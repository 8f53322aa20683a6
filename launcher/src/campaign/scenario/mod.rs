//! Scenario files: what a campaign measures, as TOML.
//!
//! A scenario is a matrix of axes (benchmark, mode, nodes, ranks per node,
//! sizes, image, MPI profile, extra environment) minus exclusions; every point
//! is a *cell*, launched `launches` times. Everything that can be checked
//! without running anything is checked here, so a bad scenario fails before
//! the first launch: unknown keys (with the file, line and key), unknown
//! benchmarks and modes, images that do not exist, rank counts a benchmark
//! cannot run with, exclusions that match nothing.
//!
//! Reading is three steps, one module each: [`raw`] (the TOML as written, with
//! spans), [`validate`] (settings and axes checked, words typed into the
//! vocabulary's enums), [`expand`] (the matrix into keyed cells, and the hybench
//! builds native cells need). The result is a [`Scenario`], which the run
//! directory stores as `scenario.json`.
//!
//! Relative paths (images, hybench builds, the site file) are relative to the
//! scenario file's directory, so a scenario means the same from any working
//! directory.

mod expand;
mod raw;
mod validate;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::launch::plan::Geometry;
use hybrun_core::named_enum;
use hybrun_core::stats::Location;
use hybrun_core::vocab::{Benchmark, Mode, MpiAbi, MpiFlavour, RankRule, RuntimeKind};

pub use validate::parse_duration;

named_enum! {
    /// The order in which launches run.
    pub enum Order ("order") {
        /// Launch i of every cell, then launch i + 1 (A/B/A/B): slow drifts of the machine hit every mode alike.
        Interleaved = "interleaved",
        /// Every (cell, launch) in a random order drawn from `seed`.
        Shuffled = "shuffled",
    }
}

named_enum! {
    /// What the bootstrap resamples for a ratio's confidence interval.
    pub enum Resample ("resampling") {
        /// Each launch's median is one value: the launch is the unit that varies (placement, memory layout, start-up), so this is the honest default.
        Launches = "launches",
        /// Per-iteration samples of all launches, pooled (narrower: assumes the iterations are independent, which consecutive iterations are not quite).
        Samples = "samples",
    }
}

named_enum! {
    /// How the ranks are placed on cores, in every mode alike.
    pub enum Binding ("binding") {
        /// Each rank bound to a core (HYDRA_BINDING, OMPI_MCA_hwloc_base_binding_policy, SLURM_CPU_BIND).
        Core = "core",
        /// The launcher's and the kernel's choice.
        None = "none",
    }
}

/// More launches, round by round, until every headline's 95% CI is narrow
/// enough, or the time budget is spent, or a cell has `max_launches`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StopRule {
    /// Target relative width of every headline CI, (high - low) / ratio.
    pub ci_width: f64,
    /// Never more launches per cell than this.
    pub max_launches: u32,
    /// Seconds of launches (the whole run's, base rounds included) after which
    /// no further round starts.
    pub budget_s: f64,
}

named_enum! {
    /// Which way a metric is better.
    pub enum Better ("direction") {
        /// Smaller is better (a time, a latency).
        Lower = "lower",
        /// Larger is better (a rate, a bandwidth).
        Higher = "higher",
    }
}

/// How an application's launch is measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Metric {
    /// A number in its output: the regular expression's `value` group.
    Regex {
        pattern: String,
        unit: String,
        better: Better,
    },
    /// The launch's wall time, in seconds (lower is better).
    Wall,
}

impl Metric {
    pub fn unit(&self) -> &str {
        match self {
            Metric::Regex { unit, .. } => unit,
            Metric::Wall => "s",
        }
    }

    pub fn higher_is_better(&self) -> bool {
        matches!(
            self,
            Metric::Regex {
                better: Better::Higher,
                ..
            }
        )
    }
}

/// `[app.NAME]`: an application run as a cell, inside and outside alike.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct App {
    /// The argv every rank runs (in the launch's own working directory).
    pub command: Vec<String>,
    /// Files copied into that directory first (absolute).
    pub inputs: Vec<PathBuf>,
    pub metric: Metric,
    /// A regular expression the output must match for the launch to count.
    pub success: Option<String>,
}

/// What a cell runs: one of hybench's benchmarks, or an application of the
/// scenario. Serialized as its name, the benchmark's or the application's (so
/// the keys of hybench cells are those of scenarios without applications):
/// the scenario refuses an application named like a benchmark, so the name
/// reads back as what it was.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Workload {
    Bench(Benchmark),
    App { app: String },
}

impl Serialize for Workload {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Workload {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Workload, D::Error> {
        let name = String::deserialize(d)?;
        Ok(match name.parse::<Benchmark>() {
            Ok(b) => Workload::Bench(b),
            Err(_) => Workload::App { app: name },
        })
    }
}

impl Workload {
    /// The hybench benchmark, when it is one.
    pub fn bench(&self) -> Option<Benchmark> {
        match self {
            Workload::Bench(b) => Some(*b),
            Workload::App { .. } => None,
        }
    }

    /// The rank counts it runs on (an application decides its own).
    pub fn rank_rule(&self) -> RankRule {
        self.bench().map_or(RankRule::Any, Benchmark::rank_rule)
    }
}

impl std::fmt::Display for Workload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Workload::Bench(b) => f.write_str(b.name()),
            Workload::App { app } => f.write_str(app),
        }
    }
}

/// sbatch options for `--submit`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitOptions {
    pub partition: Option<String>,
    pub account: Option<String>,
    /// sbatch `-t`; default: from the cells' timeouts.
    pub time: Option<String>,
    // The job-shape keys below are skipped when unset, so that the run id (a
    // hash of the scenario's JSON) of a scenario without them stays the same.
    /// sbatch `--cpus-per-task`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_per_task: Option<u32>,
    /// sbatch `--exclusive`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exclusive: bool,
    /// sbatch `--mem`, e.g. "64G".
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    /// sbatch `--constraint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
    /// sbatch `--qos`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    /// sbatch `--gpus-per-node`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus_per_node: Option<u32>,
    /// sbatch `--gpus-per-task`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus_per_task: Option<u32>,
    /// sbatch `--gpu-bind`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_bind: Option<String>,
    /// sbatch options hybrun does not model, after its own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sbatch_args: Vec<String>,
}

/// sbatch options `--submit` sets itself (it finds its jobs and their output
/// by them), which `sbatch_args` must not change.
const SBATCH_OWNED: &[&str] = &[
    "--parsable",
    "-J",
    "--job-name",
    "-N",
    "--nodes",
    "--ntasks-per-node",
    "-o",
    "--output",
];

impl SubmitOptions {
    /// Refuses values sbatch would misread, with the key to fix.
    pub fn check(&self) -> Result<(), String> {
        if self.cpus_per_task == Some(0) || self.gpus_per_task == Some(0) {
            return Err("[submit] cpus_per_task and gpus_per_task must be at least 1".into());
        }
        if let (Some(t), Some(n)) = (self.gpus_per_task, self.gpus_per_node) {
            return Err(format!(
                "[submit] gpus_per_task = {t} with gpus_per_node = {n}: give one of them \
                 (Slurm counts GPUs either per rank or per node)"
            ));
        }
        for (key, value) in [
            ("partition", &self.partition),
            ("account", &self.account),
            ("time", &self.time),
            ("mem", &self.mem),
            ("constraint", &self.constraint),
            ("qos", &self.qos),
            ("gpu_bind", &self.gpu_bind),
        ] {
            if let Some(v) = value {
                if v.is_empty() || v.chars().any(char::is_control) {
                    return Err(format!(
                        "[submit] {key} = {v:?}: give a non-empty value without control \
                         characters"
                    ));
                }
            }
        }
        for arg in &self.sbatch_args {
            let name = arg.split('=').next().unwrap_or(arg);
            if !arg.starts_with('-') || arg.chars().any(char::is_control) {
                return Err(format!(
                    "[submit] sbatch_args {arg:?}: not an option; write it with its dashes, \
                     e.g. \"--mail-type=END\""
                ));
            }
            if SBATCH_OWNED.contains(&name) {
                return Err(format!(
                    "[submit] sbatch_args {arg:?}: hybrun sets {name} itself (it finds each \
                     node count's job and output by it)"
                ));
            }
        }
        Ok(())
    }

    /// The sbatch options these keys ask for, after hybrun's own.
    pub fn sbatch_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        let values = [
            ("--partition", self.partition.clone()),
            ("--account", self.account.clone()),
            ("--cpus-per-task", self.cpus_per_task.map(|n| n.to_string())),
            ("--mem", self.mem.clone()),
            ("--constraint", self.constraint.clone()),
            ("--qos", self.qos.clone()),
            ("--gpus-per-node", self.gpus_per_node.map(|n| n.to_string())),
            ("--gpus-per-task", self.gpus_per_task.map(|n| n.to_string())),
            ("--gpu-bind", self.gpu_bind.clone()),
        ];
        for (flag, value) in values {
            if let Some(value) = value {
                flags.push(format!("{flag}={value}"));
            }
        }
        if self.exclusive {
            flags.push("--exclusive".into());
        }
        flags.extend(self.sbatch_args.iter().cloned());
        flags
    }
}

/// The job shape of a cell's launch: what `hybrun run`'s `-c`, `--exclusive`,
/// `--mem`, `-C`, `-q`, `--gpus-per-task`, `--gpu-bind` and `--srun-arg` ask
/// for, the same fields as [`Geometry`]'s. `cpus_per_task` is a matrix axis
/// (one cell per value); the others are the scenario's `[job]`, the same in
/// every cell. Unset fields are not serialized, so that a cell without them
/// has the JSON, and so the key, it had before they existed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobShape {
    /// srun `-c` (mpiexec: each rank bound to that many cores); the ranks'
    /// OMP_NUM_THREADS follows it as under `hybrun run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus_per_task: Option<u32>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exclusive: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mem: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qos: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpus_per_task: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_bind: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub srun_args: Vec<String>,
}

impl JobShape {
    /// The first `[job]` key set that only srun can honour (mpiexec has an
    /// equivalent of `-c` only).
    pub fn srun_only(&self) -> Option<&'static str> {
        [
            ("exclusive", self.exclusive),
            ("mem", self.mem.is_some()),
            ("constraint", self.constraint.is_some()),
            ("qos", self.qos.is_some()),
            ("gpus_per_task", self.gpus_per_task.is_some()),
            ("gpu_bind", self.gpu_bind.is_some()),
            ("srun_args", !self.srun_args.is_empty()),
        ]
        .into_iter()
        .find_map(|(key, set)| set.then_some(key))
    }

    /// `base` (the node and rank counts) with this shape.
    pub fn geometry(&self, base: Geometry) -> Geometry {
        Geometry {
            cpus_per_task: self.cpus_per_task,
            exclusive: self.exclusive,
            mem: self.mem.clone(),
            constraint: self.constraint.clone(),
            qos: self.qos.clone(),
            gpus_per_task: self.gpus_per_task,
            gpu_bind: self.gpu_bind.clone(),
            srun_args: self.srun_args.clone(),
            ..base
        }
    }
}

/// One point of the matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Stable key: readable prefix plus a hash of everything below.
    pub key: String,
    pub benchmark: Workload,
    pub mode: Mode,
    /// 1 for the A/A control: a second native cell, launched like every other
    /// cell, whose ratio to native is the run's measured noise floor (shown as
    /// `native'`). 0 for every other cell (and then not written, so keys stay).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replica: u32,
    pub nodes: u32,
    pub ranks_per_node: u32,
    /// hybench `-m` value; None: hybench's default sizes.
    pub sizes: Option<String>,
    /// Absolute image path (container modes only).
    pub image: Option<PathBuf>,
    /// MPI profile name (the site file's `[mpi.NAME]`, or `mpich`/`openmpi`).
    pub mpi: String,
    /// The MPI implementation of that profile.
    pub flavour: MpiFlavour,
    pub env: BTreeMap<String, String>,
    pub iterations: Option<u64>,
    pub warmup: Option<u64>,
    /// Extra hybench arguments.
    pub args: Vec<String>,
    /// The job shape (nothing written when it is unset, so keys stay).
    #[serde(flatten)]
    pub shape: JobShape,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

impl Cell {
    /// The A/A control cell (a second native).
    pub fn is_control(&self) -> bool {
        self.replica > 0
    }

    /// The mode as reports name it: `native'` for the control.
    pub fn mode_label(&self) -> String {
        if self.is_control() {
            format!("{}'", self.mode)
        } else {
            self.mode.to_string()
        }
    }

    pub fn ranks(&self) -> u32 {
        self.nodes * self.ranks_per_node
    }

    /// Everything but the mode and the image: cells with the same group key
    /// measure the same thing, and the native one is the others' reference.
    pub fn group_key(&self) -> String {
        let mut g = format!(
            "{} {}x{} {}",
            self.benchmark, self.nodes, self.ranks_per_node, self.mpi
        );
        // The one shape key that varies between cells; the [job] rest is the
        // same in all of them.
        if let Some(c) = self.shape.cpus_per_task {
            let _ = write!(g, " -c {c}");
        }
        if let Some(s) = &self.sizes {
            let _ = write!(g, " -m {s}");
        }
        for (k, v) in &self.env {
            let _ = write!(g, " {k}={v}");
        }
        if let Some(i) = self.iterations {
            let _ = write!(g, " -i {i}");
        }
        if let Some(x) = self.warmup {
            let _ = write!(g, " -x {x}");
        }
        for a in &self.args {
            let _ = write!(g, " {a}");
        }
        g
    }

    /// The group key without the benchmark (for titles).
    pub fn setting(&self) -> String {
        self.group_key()
            .split_once(' ')
            .map(|(_, rest)| rest.to_owned())
            .unwrap_or_default()
    }

    /// Image label for tables: the file name.
    pub fn image_label(&self) -> String {
        self.image
            .as_ref()
            .and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// hybench's arguments for this cell, before the output options (none for
    /// an application).
    pub fn hybench_args(&self) -> Vec<String> {
        let Workload::Bench(bench) = &self.benchmark else {
            return Vec::new();
        };
        let mut a = vec![bench.name().to_owned()];
        if let Some(s) = &self.sizes {
            if bench.takes_sizes() {
                a.push("-m".into());
                a.push(s.clone());
            }
        }
        if let Some(i) = self.iterations {
            a.push("-i".into());
            a.push(i.to_string());
        }
        if let Some(x) = self.warmup {
            a.push("-x".into());
            a.push(x.to_string());
        }
        a.extend(self.args.iter().cloned());
        a
    }

    fn compute_key(&mut self) {
        self.key.clear();
        let json = serde_json::to_vec(&*self).unwrap_or_default();
        let hash = hybrun_core::sys::hex(&Sha256::digest(&json));
        let cpus = self
            .shape
            .cpus_per_task
            .map(|c| format!("c{c}"))
            .unwrap_or_default();
        self.key = format!(
            "{}.{}.{}x{}{cpus}.{}.{}",
            self.benchmark,
            if self.is_control() {
                "native-control"
            } else {
                self.mode.name()
            },
            self.nodes,
            self.ranks_per_node,
            self.mpi,
            &hash[..8]
        );
    }
}

/// A resolved scenario: what `hybrun campaign run` executes and stores as
/// `scenario.json` in the run directory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scenario {
    pub name: String,
    pub description: String,
    /// The file it came from (absolute).
    pub source: PathBuf,
    pub launches: u32,
    pub order: Order,
    pub seed: u64,
    /// Per launch of a cell, seconds.
    pub timeout_s: f64,
    pub tolerance: f64,
    pub resample: Resample,
    /// How a cell's launches are summarised per size for the headline.
    pub location: Location,
    pub stop: Option<StopRule>,
    /// Per launch, the known launch-level bias sources drawn at random and
    /// recorded: the environment's size, the ranks' core order, the cells'
    /// order within a round (Mytkowicz et al., ASPLOS 2009).
    pub randomize: bool,
    /// Rank placement, the same in every mode.
    pub bind: Binding,
    /// Site file of every cell's launch plan (`[env]`, MPI profiles, runtime).
    pub site: Option<PathBuf>,
    /// Container runtime (default: the site's).
    pub runtime: Option<RuntimeKind>,
    /// hybench builds for native cells, by MPI ABI.
    pub hybench: BTreeMap<MpiAbi, PathBuf>,
    /// hybench inside the images.
    pub container_hybench: String,
    pub submit: SubmitOptions,
    /// `[app.NAME]`: the applications the matrix names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub apps: BTreeMap<String, App>,
    pub cells: Vec<Cell>,
}

impl Scenario {
    /// The application a cell runs, when it runs one.
    pub fn app_of(&self, cell: &Cell) -> Option<&App> {
        match &cell.benchmark {
            Workload::App { app } => self.apps.get(app),
            Workload::Bench(_) => None,
        }
    }

    /// Identity of the campaign: its name and a hash of its resolved content
    /// (not of the file's bytes: comments and layout do not start a new run).
    pub fn run_id(&self) -> String {
        let mut copy = self.clone();
        copy.source = PathBuf::new();
        let json = serde_json::to_vec(&copy).unwrap_or_default();
        format!(
            "{}-{}",
            self.name,
            &hybrun_core::sys::hex(&Sha256::digest(&json))[..12]
        )
    }

    pub fn cell(&self, key: &str) -> Option<&Cell> {
        self.cells.iter().find(|c| c.key == key)
    }
}

/// The variable that overrides the hybench build of an MPI ABI.
fn hybench_variable(abi: MpiAbi) -> Option<&'static str> {
    match abi {
        MpiAbi::Mpich => Some("HYBENCH_MPICH"),
        MpiAbi::Openmpi => Some("HYBENCH_OPENMPI"),
        MpiAbi::Standard => None,
    }
}

/// Facts about this machine that the checks need (injected by tests).
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `$HYBENCH_MPICH` / `$HYBENCH_OPENMPI`: hybench builds that override the
    /// scenario's (the test suite builds them elsewhere).
    pub hybench_override: BTreeMap<MpiAbi, PathBuf>,
}

impl Environment {
    pub fn current() -> Environment {
        let mut hybench_override = BTreeMap::new();
        for &abi in MpiAbi::ALL {
            let Some(var) = hybench_variable(abi) else {
                continue;
            };
            if let Some(p) = std::env::var_os(var).filter(|v| !v.is_empty()) {
                hybench_override.insert(abi, PathBuf::from(p));
            }
        }
        Environment { hybench_override }
    }
}

/// Reads, checks and expands a scenario file.
pub fn load(file: &Path, env: &Environment) -> anyhow::Result<Scenario> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read scenario {}", file.display()))?;
    let file = std::path::absolute(file).unwrap_or_else(|_| file.to_path_buf());
    parse(&text, &file, env)
}

/// Parses scenario text (`file` names it in messages and anchors relative
/// paths): raw, validate, expand.
pub fn parse(text: &str, file: &Path, env: &Environment) -> anyhow::Result<Scenario> {
    let src = raw::Source { file, text };
    let raw = raw::read(&src)?;
    raw.submit
        .check()
        .map_err(|why| anyhow::anyhow!("{}: {why}", file.display()))?;
    let settings = validate::settings(&raw, &src)?;
    let axes = validate::axes(&raw, &src, &settings)?;
    let mut cells = expand::cells(&axes, &src)?;
    if settings.control {
        cells = expand::with_controls(cells);
    }
    let hybench = expand::hybench_builds(&cells, &raw.hybench, env, &src)?;
    Ok(Scenario {
        name: settings.name,
        description: raw.description,
        source: file.to_path_buf(),
        launches: settings.launches,
        order: settings.order,
        seed: raw.seed.unwrap_or(1),
        timeout_s: settings.timeout_s,
        tolerance: settings.tolerance,
        resample: settings.resample,
        location: settings.location,
        stop: settings.stop,
        randomize: settings.randomize,
        bind: settings.bind,
        site: settings.site,
        runtime: settings.runtime,
        hybench,
        container_hybench: raw
            .hybench
            .container
            .unwrap_or_else(|| "/app/hybench".into()),
        submit: raw.submit,
        apps: axes.apps,
        cells,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with_fake_hybench(dir: &Path) -> Environment {
        let fake = dir.join("hybench");
        std::fs::write(&fake, "").unwrap();
        let mut e = Environment::default();
        e.hybench_override.insert(MpiAbi::Mpich, fake.clone());
        e.hybench_override.insert(MpiAbi::Openmpi, fake);
        e
    }

    fn parse_in(dir: &Path, text: &str) -> anyhow::Result<Scenario> {
        parse(text, &dir.join("s.toml"), &env_with_fake_hybench(dir))
    }

    #[test]
    fn expands_matrix_and_keys_are_stable() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("img")).unwrap();
        let text = r#"
name = "t"
[matrix]
benchmark = ["latency", "allreduce"]
mode = ["native", "hybrid"]
image = ["img"]
[[exclude]]
benchmark = "allreduce"
mode = "hybrid"
"#;
        let s = parse_in(dir.path(), text).unwrap();
        let modes: Vec<String> = s.cells.iter().map(Cell::mode_label).collect();
        assert_eq!(
            modes,
            ["native", "native'", "hybrid", "native", "native'"],
            "each native cell followed by its A/A control"
        );
        assert_eq!(s.cells[0].group_key(), s.cells[1].group_key());
        assert!(
            s.cells[1]
                .key
                .starts_with("latency.native-control.1x2.mpich.")
        );
        let again = parse_in(dir.path(), &format!("# a comment\n{text}")).unwrap();
        assert_eq!(s.run_id(), again.run_id(), "comments do not change the run");
        assert!(s.cells[0].key.starts_with("latency.native.1x2.mpich."));
        assert_eq!(
            s.cells[2].image.as_deref(),
            Some(dir.path().join("img").as_path())
        );
    }

    #[test]
    fn keys_are_those_of_earlier_versions() {
        // A cell's key hashes its JSON: the typed fields print the same words
        // as the strings they replaced, so runs started before keep resuming.
        let dir = tempfile::tempdir().unwrap();
        let text = "name = \"b\"\n[matrix]\nbenchmark = [\"latency\"]\nmode = [\"native\"]\nmpi = [\"mpich\", \"openmpi\"]\n";
        let s = parse_in(dir.path(), text).unwrap();
        let keys: Vec<&str> = s
            .cells
            .iter()
            .filter(|c| !c.is_control())
            .map(|c| c.key.as_str())
            .collect();
        assert_eq!(
            keys,
            [
                "latency.native.1x2.mpich.b81c1b53",
                "latency.native.1x2.openmpi.03771453"
            ]
        );
    }

    #[test]
    fn submit_job_shape_keys_reach_sbatch_and_leave_the_run_id() {
        let dir = tempfile::tempdir().unwrap();
        let base = "name = \"b\"\n[matrix]\nbenchmark = [\"latency\"]\nmode = [\"native\"]\n";
        let plain = parse_in(dir.path(), base).unwrap();
        let with_partition =
            parse_in(dir.path(), &format!("{base}[submit]\npartition = \"p\"\n")).unwrap();
        let text = format!(
            "{base}[submit]\npartition = \"p\"\ncpus_per_task = 4\nexclusive = true\n\
             mem = \"64G\"\nconstraint = \"ib\"\nqos = \"debug\"\ngpus_per_task = 1\n\
             gpu_bind = \"closest\"\nsbatch_args = [\"--mail-type=END\"]\n"
        );
        let s = parse_in(dir.path(), &text).unwrap();
        assert_eq!(
            s.submit.sbatch_flags(),
            [
                "--partition=p",
                "--cpus-per-task=4",
                "--mem=64G",
                "--constraint=ib",
                "--qos=debug",
                "--gpus-per-task=1",
                "--gpu-bind=closest",
                "--exclusive",
                "--mail-type=END"
            ]
        );
        // Unset keys are not serialized: the run ids of scenarios that do not
        // use them stay as they were (same cells, same key hashes).
        let json = serde_json::to_string(&with_partition.submit).unwrap();
        assert_eq!(json, r#"{"partition":"p","account":null,"time":null}"#);
        assert_eq!(plain.cells, s.cells);
        let err = |extra: &str| {
            format!(
                "{:#}",
                parse_in(dir.path(), &format!("{base}[submit]\n{extra}\n")).unwrap_err()
            )
        };
        let e = err("gpus_per_task = 1\ngpus_per_node = 4");
        assert!(
            e.contains("gpus_per_task = 1 with gpus_per_node = 4: give one"),
            "{e}"
        );
        let e = err("sbatch_args = [\"--nodes=3\"]");
        assert!(e.contains("hybrun sets --nodes itself"), "{e}");
        let e = err("sbatch_args = [\"hostname\"]");
        assert!(e.contains("not an option"), "{e}");
        let e = err("cpus_per_task = 0");
        assert!(e.contains("at least 1"), "{e}");
    }

    #[test]
    fn cpus_per_task_is_an_axis_and_job_keys_reach_every_cell() {
        let dir = tempfile::tempdir().unwrap();
        let text = "name = \"b\"\ncontrol = false\n[job]\nexclusive = true\nmem = \"8G\"\n\
                    constraint = \"ib\"\nqos = \"debug\"\ngpus_per_task = 1\n\
                    gpu_bind = \"closest\"\nsrun_args = [\"--cpu-freq=high\"]\n[matrix]\n\
                    benchmark = [\"latency\"]\nmode = [\"native\"]\nmpi = [\"mpich\", \"openmpi\"]\n\
                    cpus_per_task = [1, 4]\n";
        let s = parse_in(dir.path(), text).unwrap();
        let keys: Vec<&str> = s.cells.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys.len(), 4, "{keys:?}");
        // The axis is the innermost one: each profile's cells at -c 1, then 4.
        assert!(
            keys[0].starts_with("latency.native.1x2c1.mpich."),
            "{keys:?}"
        );
        assert!(
            keys[1].starts_with("latency.native.1x2c4.mpich."),
            "{keys:?}"
        );
        assert!(
            keys[3].starts_with("latency.native.1x2c4.openmpi."),
            "{keys:?}"
        );
        assert_eq!(s.cells[1].setting(), "1x2 mpich -c 4");
        assert_ne!(s.cells[0].group_key(), s.cells[1].group_key());
        let want = JobShape {
            cpus_per_task: Some(4),
            exclusive: true,
            mem: Some("8G".into()),
            constraint: Some("ib".into()),
            qos: Some("debug".into()),
            gpus_per_task: Some(1),
            gpu_bind: Some("closest".into()),
            srun_args: vec!["--cpu-freq=high".into()],
        };
        assert_eq!(s.cells[1].shape, want);
        let g = s.cells[1].shape.geometry(Geometry {
            nodes: Some(1),
            ..Geometry::default()
        });
        assert_eq!(
            (g.nodes, g.cpus_per_task, g.exclusive),
            (Some(1), Some(4), true)
        );
        assert_eq!(g.srun_args, ["--cpu-freq=high"]);
        // scenario.json reads back as it was written (the resumed run's cells).
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["cells"][1]["cpus_per_task"], 4);
        assert_eq!(json["cells"][1]["mem"], "8G");
        let back: Scenario = serde_json::from_value(json).unwrap();
        assert_eq!(back, s);
        // Without the keys, a cell's JSON has none of them (its key stays:
        // keys_are_those_of_earlier_versions).
        let plain = parse_in(
            dir.path(),
            "name = \"b\"\n[matrix]\nbenchmark = [\"latency\"]\nmode = [\"native\"]\n",
        )
        .unwrap();
        let json = serde_json::to_value(&plain.cells[0]).unwrap();
        let fields: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        for absent in ["cpus_per_task", "exclusive", "mem", "srun_args", "shape"] {
            assert!(!fields.contains(&absent), "{fields:?}");
        }
        // An exclusion by CPUs per rank.
        let s = parse_in(
            dir.path(),
            &format!("{text}[[exclude]]\ncpus_per_task = 4\nmpi = \"openmpi\"\n"),
        )
        .unwrap();
        assert_eq!(s.cells.len(), 3);
        assert!(
            s.cells
                .iter()
                .all(|c| !(c.mpi == "openmpi" && c.shape.cpus_per_task == Some(4)))
        );
    }

    #[test]
    fn bad_job_shapes_are_refused_with_the_key_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let base = "name = \"b\"\n[matrix]\nbenchmark = [\"latency\"]\nmode = [\"native\"]\n";
        let err = |extra: &str| {
            format!(
                "{:#}",
                parse_in(dir.path(), &format!("{base}{extra}")).unwrap_err()
            )
        };
        let e = err("cpus_per_task = [2, 0]\n");
        assert!(
            e.contains("s.toml:5:21: matrix.cpus_per_task") && e.contains("must be at least 1"),
            "{e}"
        );
        let e = err("cpus_per_task = []\n");
        assert!(e.contains("matrix.cpus_per_task: the list is empty"), "{e}");
        let e = err("[job]\nmem = \"\"\n");
        assert!(
            e.contains("s.toml:6:7: job.mem") && e.contains("give a non-empty value"),
            "{e}"
        );
        let e = err("[job]\nconstraint = \"ib\\u0007\"\n");
        assert!(
            e.contains("job.constraint") && e.contains("without control characters"),
            "{e}"
        );
        let e = err("[job]\ngpus_per_task = 0\n");
        assert!(
            e.contains("job.gpus_per_task") && e.contains("at least 1"),
            "{e}"
        );
        for (arg, why) in [
            ("--mpi=pmix", "chooses the PMI plugin"),
            ("--export=NONE", "--export=ALL"),
            ("-K", "--kill-on-bad-exit"),
            ("hostname", "not an option"),
        ] {
            let e = err(&format!(
                "[job]\nsrun_args = [\"--cpu-freq=high\", \"{arg}\"]\n"
            ));
            assert!(
                e.contains("s.toml:6:33: job.srun_args") && e.contains(why),
                "{arg}: {e}"
            );
        }
        let e = err("[job]\nthreads = 4\n");
        assert!(e.contains("unknown field `threads`"), "{e}");
        // Against [submit]: the cells' steps run inside its sbatch job.
        let e = err("[job]\ngpus_per_task = 1\n[submit]\ngpus_per_node = 4\n");
        assert!(
            e.contains("job.gpus_per_task") && e.contains("give one of them"),
            "{e}"
        );
        let e = err("cpus_per_task = [4, 8]\n[submit]\ncpus_per_task = 4\n");
        assert!(
            e.contains("s.toml:5:21: matrix.cpus_per_task: 8 CPUs per rank")
                && e.contains("raise [submit] cpus_per_task"),
            "{e}"
        );
        let e = err("[job]\ngpus_per_task = 2\n[submit]\ngpus_per_task = 1\n");
        assert!(e.contains("raise [submit] gpus_per_task"), "{e}");
        let e = err("[job]\nqos = \"long\"\n[submit]\nqos = \"debug\"\n");
        assert!(
            e.contains("job.qos: \"long\", and [submit] qos = \"debug\"")
                && e.contains("give one value"),
            "{e}"
        );
        // Within the job, or the same value: accepted.
        let ok = format!(
            "{base}cpus_per_task = [1, 4]\n[job]\nqos = \"debug\"\ngpus_per_task = 1\n\
             [submit]\ncpus_per_task = 4\nqos = \"debug\"\ngpus_per_task = 2\n"
        );
        parse_in(dir.path(), &ok).unwrap();
    }

    #[test]
    fn errors_name_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let err = |text: &str| format!("{:#}", parse_in(dir.path(), text).unwrap_err());
        let e = err(
            "name = \"t\"\nbogus = 1\n[matrix]\nbenchmark = [\"latency\"]\nmode = [\"native\"]\n",
        );
        assert!(e.contains("s.toml:2:1") && e.contains("bogus"), "{e}");
        let e = err("name = \"t\"\n[matrix]\nbenchmark = [\"latencyy\"]\nmode = [\"native\"]\n");
        assert!(
            e.contains("s.toml:3:14")
                && e.contains("unknown benchmark \"latencyy\": hybench has latency")
                && e.contains("[app.latencyy]"),
            "{e}"
        );
        let e = err("name = \"t\"\n[matrix]\nbenchmark = [\"latency\"]\nmode = [\"nativ\"]\n");
        assert!(e.contains("s.toml:4:9: matrix.mode: unknown mode"), "{e}");
        let e = err(
            "name = \"t\"\n[matrix]\nbenchmark = [\"latency\"]\nmode = [\"native\"]\nranks_per_node = [3]\n",
        );
        assert!(
            e.contains("s.toml:5:19") && e.contains("exactly 2 ranks"),
            "{e}"
        );
        let e = err(
            "name = \"t\"\n[matrix]\nbenchmark = [\"mbw-mr\"]\nmode = [\"native\"]\nranks_per_node = [3]\n",
        );
        assert!(e.contains("even number of ranks"), "{e}");
        let e = err(
            "name = \"t\"\n[matrix]\nbenchmark = [\"latency\"]\nmode = [\"hybrid\"]\nimage = [\"nope.sif\"]\n",
        );
        assert!(
            e.contains("s.toml:5:10: matrix.image: image \"nope.sif\" not found"),
            "{e}"
        );
        let e = err(
            "name = \"t\"\n[matrix]\nbenchmark = [\"latency\"]\nmode = [\"native\"]\n[[exclude]]\nmode = \"bind\"\n",
        );
        assert!(e.contains("matches no cell"), "{e}");
        let e = err(
            "name = \"t\"\ntimeout = \"soon\"\n[matrix]\nbenchmark = [\"latency\"]\nmode = [\"native\"]\n",
        );
        assert!(e.contains("s.toml:2:11: timeout"), "{e}");
        let e = err("name = \"a/b\"\n[matrix]\nbenchmark = [\"latency\"]\nmode = [\"native\"]\n");
        assert!(e.contains("s.toml:1:8: name"), "{e}");
    }

    #[test]
    fn words_are_typed_and_a_bad_one_lists_the_accepted_ones() {
        let dir = tempfile::tempdir().unwrap();
        let err = |text: &str| format!("{:#}", parse_in(dir.path(), text).unwrap_err());
        let matrix = "[matrix]\nbenchmark = [\"latency\"]\nmode = [\"native\"]\n";
        let e = err(&format!("name = \"t\"\norder = \"random\"\n{matrix}"));
        assert!(
            e.contains("s.toml:2:9: order: unknown order \"random\"; write interleaved, shuffled"),
            "{e}"
        );
        let e = err(&format!("name = \"t\"\nbind = \"socket\"\n{matrix}"));
        assert!(
            e.contains("s.toml:2:8: bind: unknown binding \"socket\"; write core, none"),
            "{e}"
        );
        let e = err(&format!("name = \"t\"\nruntime = \"docker\"\n{matrix}"));
        assert!(
            e.contains("runtime: unknown runtime \"docker\"; write singularity, apptainer, charliecloud, none"),
            "{e}"
        );
        // GPU benchmarks are cells too (where a GPU exists, at launch).
        let s = parse_in(
            dir.path(),
            "name = \"t\"\n[matrix]\nbenchmark = [\"gpu-gemm\"]\nmode = [\"native\"]\n",
        )
        .unwrap();
        assert_eq!(s.cells[0].benchmark, Workload::Bench(Benchmark::GpuGemm));
        let e = err(&format!(
            "name = \"t\"\n{matrix}[[exclude]]\nmode = \"nativ\"\n"
        ));
        assert!(e.contains("exclude.mode: unknown mode \"nativ\""), "{e}");
        let s = parse_in(
            dir.path(),
            &format!("name = \"t\"\norder = \"shuffled\"\nresample = \"samples\"\nbind = \"none\"\n{matrix}"),
        )
        .unwrap();
        assert_eq!(
            (s.order, s.resample, s.bind),
            (Order::Shuffled, Resample::Samples, Binding::None)
        );
        assert_eq!(s.cells[0].flavour, MpiFlavour::Mpich);
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["order"], "shuffled");
        assert_eq!(json["cells"][0]["flavour"], "mpich");
        assert_eq!(json["cells"][0]["mode"], "native");
    }

    #[test]
    fn applications_are_cells_and_bad_app_tables_name_file_line_and_key() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("inputs")).unwrap();
        std::fs::write(dir.path().join("inputs/in.lj"), "run 100\n").unwrap();
        let head =
            "name = \"t\"\n[matrix]\nbenchmark = [\"latency\", \"lj\"]\nmode = [\"native\"]\n";
        let good = format!(
            "{head}[app.lj]\ncommand = [\"lmp\", \"-in\", \"in.lj\"]\ninputs = [\"inputs/in.lj\"]\n\
             metric = {{ regex = 'Loop time of (?P<value>[0-9.eE+-]+)', unit = \"s\", better = \"lower\" }}\n\
             success = 'Total wall time'\n"
        );
        let s = parse_in(dir.path(), &good).unwrap();
        let lj = s
            .cells
            .iter()
            .find(|c| c.benchmark == Workload::App { app: "lj".into() })
            .unwrap();
        assert!(lj.key.starts_with("lj.native.1x2.mpich."), "{}", lj.key);
        assert!(lj.hybench_args().is_empty());
        let app = s.app_of(lj).unwrap();
        assert_eq!(app.command, ["lmp", "-in", "in.lj"]);
        assert_eq!(app.inputs, [dir.path().join("inputs/in.lj")]);
        assert!(!app.metric.higher_is_better());
        // The workload reads back from scenario.json as what it was.
        let back: Scenario = serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(back, s);
        let wall = format!("{head}[app.lj]\ncommand = [\"lmp\"]\nmetric = \"wall\"\n");
        assert_eq!(
            parse_in(dir.path(), &wall).unwrap().apps["lj"].metric,
            Metric::Wall
        );

        let err = |text: &str| format!("{:#}", parse_in(dir.path(), text).unwrap_err());
        let e = err(&format!(
            "{head}[app.lj]\ncommand = [\"lmp\"]\nmetric = {{ regex = 'Loop time of ([0-9.]+)' }}\n"
        ));
        assert!(
            e.contains("s.toml:7:10: app.lj.metric") && e.contains("no group named value"),
            "{e}"
        );
        let e = err(head);
        assert!(
            e.contains("s.toml:3:25: matrix.benchmark") && e.contains("[app.lj]"),
            "an app named but not defined: {e}"
        );
        let e = err(&format!("{head}[app.lj]\nmetric = \"wall\"\n"));
        assert!(e.contains("s.toml:5:1: app.lj.command: missing"), "{e}");
        let e = err(&format!(
            "{head}[app.lj]\ncommand = [\"lmp\"]\ninputs = [\"inputs/nope.lj\"]\nmetric = \"wall\"\n"
        ));
        assert!(
            e.contains("s.toml:7:11: app.lj.inputs")
                && e.contains("nope.lj is not a readable file"),
            "{e}"
        );
        let e = err(&format!(
            "{head}[app.lj]\ncommand = [\"lmp\"]\nmetric = \"fast\"\n"
        ));
        assert!(e.contains("app.lj.metric") && e.contains("\"wall\""), "{e}");
        let e = err(&format!(
            "{head}[app.latency]\ncommand = [\"lmp\"]\nmetric = \"wall\"\n[app.lj]\ncommand = [\"lmp\"]\nmetric = \"wall\"\n"
        ));
        assert!(e.contains("not as one of hybench's benchmarks"), "{e}");
    }

    #[test]
    fn the_stop_rule_and_the_control_are_on_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let matrix = "[matrix]\nbenchmark = [\"latency\"]\nmode = [\"native\"]\n";
        let s = parse_in(dir.path(), &format!("name = \"t\"\n{matrix}")).unwrap();
        let stop = s.stop.expect("on by default");
        assert_eq!(stop.ci_width, validate::DEFAULT_CI_WIDTH);
        assert_eq!(stop.budget_s, validate::DEFAULT_BUDGET_S);
        assert!(s.randomize);
        assert_eq!(s.location, Location::Median);
        assert_eq!(s.cells.len(), 2, "native and its control");
        let s = parse_in(
            dir.path(),
            &format!("name = \"t\"\ncontrol = false\n[stop]\nenabled = false\n{matrix}"),
        )
        .unwrap();
        assert!(s.stop.is_none());
        assert_eq!(s.cells.len(), 1);
        let s = parse_in(
            dir.path(),
            &format!("name = \"t\"\n[stop]\nci_width = 0.02\nbudget = \"4m\"\n{matrix}"),
        )
        .unwrap();
        assert_eq!(s.stop.unwrap().budget_s, 240.0);
        let e = format!(
            "{:#}",
            parse_in(
                dir.path(),
                &format!("name = \"t\"\n[stop]\nbudget = \"soon\"\n{matrix}")
            )
            .unwrap_err()
        );
        assert!(e.contains("s.toml:3:10: stop.budget"), "{e}");
    }

    /// A native-only matrix of `sizes` x `envs` allreduce cells.
    fn big_matrix(sizes: usize, envs: usize) -> String {
        let sizes: Vec<String> = (1..=sizes).map(|s| format!("\"{s}\"")).collect();
        let envs: Vec<String> = (0..envs).map(|e| format!("{{ E = \"{e}\" }}")).collect();
        format!(
            "name = \"big\"\ncontrol = false\n[matrix]\nbenchmark = [\"allreduce\"]\nmode = [\"native\"]\nsizes = [{}]\nenv = [{}]\n",
            sizes.join(", "),
            envs.join(", ")
        )
    }

    /// Parses in a thread, failing after `limit` (a runaway expansion must
    /// fail the test, not hang it).
    fn parse_within(text: String, limit: std::time::Duration) -> anyhow::Result<Scenario> {
        let dir = tempfile::tempdir().unwrap();
        let env = env_with_fake_hybench(dir.path());
        let file = dir.path().join("s.toml");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let _ = tx.send(parse(&text, &file, &env));
        });
        rx.recv_timeout(limit)
            .unwrap_or_else(|_| panic!("parsing took more than {limit:?}"))
    }

    #[test]
    fn a_huge_matrix_is_refused_at_once_naming_the_line() {
        let t0 = std::time::Instant::now();
        let e = parse_within(big_matrix(1000, 1000), std::time::Duration::from_secs(5))
            .unwrap_err()
            .to_string();
        let took = t0.elapsed();
        assert!(
            e.contains("s.toml:3:1: matrix: 1000000 cells") && e.contains("at most 100000"),
            "{e}"
        );
        assert!(took < std::time::Duration::from_secs(1), "{took:?}");
    }

    #[test]
    fn a_large_matrix_expands_in_linear_time() {
        // 60,000 cells: about 2 s in a debug build; a quadratic
        // de-duplication took 5 s for 20,000 and about 45 s for these.
        let s = parse_within(big_matrix(600, 100), std::time::Duration::from_secs(15)).unwrap();
        assert_eq!(s.cells.len(), 60_000);
        // Cells that come out the same are kept once (two equal env sets).
        let text = big_matrix(2, 1).replace(
            "env = [{ E = \"0\" }]",
            "env = [{ E = \"0\" }, { E = \"0\" }]",
        );
        let s = parse_within(text, std::time::Duration::from_secs(5)).unwrap();
        assert_eq!(s.cells.len(), 2);
    }

    #[test]
    fn missing_hybench_is_an_error_naming_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let text = "name = \"t\"\n[hybench]\nmpich = \"nothere\"\n[matrix]\nbenchmark = [\"latency\"]\nmode = [\"native\"]\n";
        let e = format!(
            "{:#}",
            parse(text, &dir.path().join("s.toml"), &Environment::default()).unwrap_err()
        );
        assert!(
            e.contains("s.toml:3:9: hybench.mpich") && e.contains("scripts/build-hybench mpich"),
            "{e}"
        );
    }
}
