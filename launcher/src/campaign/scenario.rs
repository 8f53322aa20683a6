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
//! Relative paths (images, hybench builds, the site file) are relative to the
//! scenario file's directory, so a scenario means the same from any working
//! directory.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use toml::Spanned;

/// hybench's MPI benchmarks and the rank counts they accept.
const BENCHMARKS: &[(&str, RankRule)] = &[
    ("latency", RankRule::ExactlyTwo),
    ("bw", RankRule::ExactlyTwo),
    ("bibw", RankRule::ExactlyTwo),
    ("multi-lat", RankRule::Even),
    ("mbw-mr", RankRule::Even),
    ("barrier", RankRule::AtLeastTwo),
    ("bcast", RankRule::AtLeastTwo),
    ("allgather", RankRule::AtLeastTwo),
    ("alltoall", RankRule::AtLeastTwo),
    ("gather", RankRule::AtLeastTwo),
    ("scatter", RankRule::AtLeastTwo),
    ("reduce", RankRule::AtLeastTwo),
    ("allreduce", RankRule::AtLeastTwo),
];

pub const MODES: &[&str] = &["native", "hybrid", "bind", "inside"];

/// The built-in MPI profiles for native cells when no site file names them.
const BUILTIN_FLAVOURS: &[&str] = &["mpich", "openmpi"];

#[derive(Debug, Clone, Copy)]
enum RankRule {
    ExactlyTwo,
    Even,
    AtLeastTwo,
}

impl RankRule {
    fn check(self, ranks: u32) -> Result<(), String> {
        match self {
            RankRule::ExactlyTwo if ranks != 2 => Err(format!(
                "runs on exactly 2 ranks, and this cell has {ranks}"
            )),
            RankRule::Even if ranks < 2 || ranks % 2 != 0 => Err(format!(
                "needs an even number of ranks (pairs), at least 2, and this cell has {ranks}"
            )),
            RankRule::AtLeastTwo if ranks < 2 => {
                Err(format!("needs at least 2 ranks, and this cell has {ranks}"))
            }
            _ => Ok(()),
        }
    }
}

/// The order in which launches run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Order {
    /// Launch i of every cell, then launch i + 1 (A/B/A/B): slow drifts of the
    /// machine hit every mode alike.
    Interleaved,
    /// Every (cell, launch) in a random order drawn from `seed`.
    Shuffled,
}

/// What the bootstrap resamples for a ratio's confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Resample {
    /// Each launch's median is one value: the launch is the unit that varies
    /// (placement, memory layout, start-up), so this is the honest default.
    Launches,
    /// Per-iteration samples of all launches, pooled (narrower: assumes the
    /// iterations are independent, which consecutive iterations are not quite).
    Samples,
}

impl Resample {
    pub fn name(self) -> &'static str {
        match self {
            Resample::Launches => "launches",
            Resample::Samples => "samples",
        }
    }

    pub fn parse(text: &str) -> Option<Resample> {
        match text {
            "launches" => Some(Resample::Launches),
            "samples" => Some(Resample::Samples),
            _ => None,
        }
    }
}

/// Repeat launches until the 95% CI of the median ratio is narrow enough.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StopRule {
    /// Target relative width (high - low) / ratio, e.g. 0.02.
    pub ci_width: f64,
    /// Never more launches per cell than this.
    pub max_launches: u32,
}

/// sbatch options for `--submit`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SubmitOptions {
    pub partition: Option<String>,
    pub account: Option<String>,
    /// sbatch `-t`; default: from the cells' timeouts.
    pub time: Option<String>,
}

/// One point of the matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cell {
    /// Stable key: readable prefix plus a hash of everything below.
    pub key: String,
    pub benchmark: String,
    pub mode: String,
    pub nodes: u32,
    pub ranks_per_node: u32,
    /// hybench `-m` value; None: hybench's default sizes.
    pub sizes: Option<String>,
    /// Absolute image path (container modes only).
    pub image: Option<PathBuf>,
    /// MPI profile name (the site file's `[mpi.NAME]`, or `mpich`/`openmpi`).
    pub mpi: String,
    /// The MPI ABI family of that profile: `mpich` or `openmpi`.
    pub flavour: String,
    pub env: BTreeMap<String, String>,
    pub iterations: Option<u64>,
    pub warmup: Option<u64>,
    /// Extra hybench arguments.
    pub args: Vec<String>,
}

impl Cell {
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

    /// hybench's arguments for this cell, before the output options.
    pub fn hybench_args(&self) -> Vec<String> {
        let mut a = vec![self.benchmark.clone()];
        if let Some(s) = &self.sizes {
            if self.benchmark != "barrier" {
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
        self.key = format!(
            "{}.{}.{}x{}.{}.{}",
            self.benchmark,
            self.mode,
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
    pub stop: Option<StopRule>,
    /// `core` (hydra/Open MPI/srun bind each rank to a core, in every mode
    /// alike) or `none`.
    pub bind: String,
    /// Site file for the container modes (hybrun::launch).
    pub site: Option<PathBuf>,
    /// Container runtime (default: the site's).
    pub runtime: Option<String>,
    /// hybench builds for native cells, by MPI flavour.
    pub hybench: BTreeMap<String, PathBuf>,
    /// hybench inside the images.
    pub container_hybench: String,
    pub submit: SubmitOptions,
    pub cells: Vec<Cell>,
}

impl Scenario {
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

// ---- The file as written ----

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: Spanned<String>,
    #[serde(default)]
    description: String,
    launches: Option<Spanned<u32>>,
    order: Option<Spanned<String>>,
    seed: Option<u64>,
    timeout: Option<Spanned<String>>,
    tolerance: Option<Spanned<f64>>,
    resample: Option<Spanned<String>>,
    bind: Option<Spanned<String>>,
    site: Option<Spanned<String>>,
    runtime: Option<Spanned<String>>,
    matrix: Spanned<RawMatrix>,
    #[serde(default)]
    benchmark: BTreeMap<Spanned<String>, RawBenchmark>,
    #[serde(default)]
    exclude: Vec<Spanned<RawExclude>>,
    stop: Option<Spanned<RawStop>>,
    #[serde(default)]
    hybench: RawHybench,
    #[serde(default)]
    submit: SubmitOptions,
}

type List<T> = Option<Spanned<Vec<Spanned<T>>>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatrix {
    benchmark: Spanned<Vec<Spanned<String>>>,
    mode: Spanned<Vec<Spanned<String>>>,
    nodes: List<u32>,
    ranks_per_node: List<u32>,
    sizes: List<String>,
    image: List<String>,
    mpi: List<String>,
    env: List<BTreeMap<String, String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBenchmark {
    /// Overrides matrix.sizes for this benchmark (hybench's -m).
    sizes: Option<Spanned<String>>,
    iterations: Option<u64>,
    warmup: Option<u64>,
    #[serde(default)]
    args: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawExclude {
    benchmark: Option<String>,
    mode: Option<String>,
    nodes: Option<u32>,
    ranks_per_node: Option<u32>,
    sizes: Option<String>,
    image: Option<String>,
    mpi: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStop {
    ci_width: f64,
    max_launches: u32,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHybench {
    mpich: Option<Spanned<String>>,
    openmpi: Option<Spanned<String>>,
    container: Option<String>,
}

/// Where the scenario's text is, for messages that name the line and key.
struct Source<'a> {
    file: &'a Path,
    text: &'a str,
}

impl Source<'_> {
    fn at(
        &self,
        span: std::ops::Range<usize>,
        key: &str,
        message: impl std::fmt::Display,
    ) -> anyhow::Error {
        let (line, column) = line_column(self.text, span.start);
        anyhow::anyhow!("{}:{line}:{column}: {key}: {message}", self.file.display())
    }

    fn path(&self, value: &str) -> PathBuf {
        let p = Path::new(value);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            self.file.parent().unwrap_or(Path::new(".")).join(p)
        }
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Facts about this machine that the checks need (injected by tests).
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// `$HYBENCH_MPICH` / `$HYBENCH_OPENMPI`: hybench builds that override the
    /// scenario's (the test suite builds them elsewhere).
    pub hybench_override: BTreeMap<String, PathBuf>,
}

impl Environment {
    pub fn current() -> Environment {
        let mut hybench_override = BTreeMap::new();
        for (flavour, var) in [("mpich", "HYBENCH_MPICH"), ("openmpi", "HYBENCH_OPENMPI")] {
            if let Some(p) = std::env::var_os(var).filter(|v| !v.is_empty()) {
                hybench_override.insert(flavour.to_owned(), PathBuf::from(p));
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

/// Parses scenario text (`file` names it in messages and anchors relative paths).
pub fn parse(text: &str, file: &Path, env: &Environment) -> anyhow::Result<Scenario> {
    let src = Source { file, text };
    let raw: RawScenario = toml::from_str(text).map_err(|e| {
        let (line, column) = e.span().map_or((1, 1), |s| line_column(text, s.start));
        anyhow::anyhow!(
            "{}:{line}:{column}: {}; see scenarios/README.md for the keys",
            file.display(),
            e.message()
        )
    })?;

    let name = raw.name.get_ref();
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        || name.starts_with('.')
    {
        return Err(src.at(
            raw.name.span(),
            "name",
            format!(
                "{name:?}: use letters, digits, '-', '_' and '.' (it names the results directory)"
            ),
        ));
    }
    let launches = raw.launches.as_ref().map_or(3, |l| *l.get_ref());
    if launches == 0 {
        let span = raw.launches.as_ref().map(|l| l.span()).unwrap_or(0..0);
        return Err(src.at(span, "launches", "must be at least 1"));
    }
    let order = match raw.order.as_ref().map(|o| (o.get_ref().as_str(), o.span())) {
        None | Some(("interleaved", _)) => Order::Interleaved,
        Some(("shuffled", _)) => Order::Shuffled,
        Some((other, span)) => {
            return Err(src.at(
                span,
                "order",
                format!("{other:?}: write \"interleaved\" or \"shuffled\""),
            ));
        }
    };
    let timeout_s = match &raw.timeout {
        None => 600.0,
        Some(t) => parse_duration(t.get_ref()).ok_or_else(|| {
            src.at(
                t.span(),
                "timeout",
                format!("{:?}: write e.g. \"90s\", \"10m\" or \"1h\"", t.get_ref()),
            )
        })?,
    };
    let tolerance = match &raw.tolerance {
        None => 0.03,
        Some(t) if *t.get_ref() > 0.0 && *t.get_ref() < 1.0 => *t.get_ref(),
        Some(t) => {
            return Err(src.at(
                t.span(),
                "tolerance",
                "a fraction in (0, 1), e.g. 0.03 for ±3%",
            ));
        }
    };
    let resample = match &raw.resample {
        None => Resample::Launches,
        Some(r) => Resample::parse(r.get_ref())
            .ok_or_else(|| src.at(r.span(), "resample", "write \"launches\" or \"samples\""))?,
    };
    let bind = match &raw.bind {
        None => "core".to_owned(),
        Some(b) if matches!(b.get_ref().as_str(), "core" | "none") => b.get_ref().clone(),
        Some(b) => return Err(src.at(b.span(), "bind", "write \"core\" or \"none\"")),
    };
    let stop = match &raw.stop {
        None => None,
        Some(s) => {
            let r = s.get_ref();
            if !(r.ci_width > 0.0 && r.ci_width < 1.0) {
                return Err(src.at(
                    s.span(),
                    "stop.ci_width",
                    "a relative width in (0, 1), e.g. 0.02",
                ));
            }
            if r.max_launches < launches {
                return Err(src.at(
                    s.span(),
                    "stop.max_launches",
                    format!(
                        "{} is below launches = {launches}; raise it",
                        r.max_launches
                    ),
                ));
            }
            Some(StopRule {
                ci_width: r.ci_width,
                max_launches: r.max_launches,
            })
        }
    };
    let site = raw.site.as_ref().map(|s| (src.path(s.get_ref()), s.span()));
    if let Some((path, span)) = &site {
        if !path.is_file() {
            return Err(src.at(
                span.clone(),
                "site",
                format!("{} does not exist", path.display()),
            ));
        }
    }
    // Profiles the site file defines (name -> ABI), for native cells and checks.
    let site_profiles = match &site {
        Some((path, span)) => crate::site::Site::read(path, "scenario")
            .map_err(|e| src.at(span.clone(), "site", e))
            .map(|s| site_profiles(&s))?,
        None => BTreeMap::new(),
    };
    if let Some(r) = &raw.runtime {
        if !matches!(
            r.get_ref().as_str(),
            "singularity" | "apptainer" | "charliecloud" | "none"
        ) {
            return Err(src.at(
                r.span(),
                "runtime",
                "write singularity, apptainer, charliecloud or none",
            ));
        }
    }

    // Axes.
    let m = raw.matrix.get_ref();
    let check_nonempty = |v: &Spanned<Vec<Spanned<String>>>, key: &str| {
        if v.get_ref().is_empty() {
            Err(src.at(v.span(), key, "the list is empty"))
        } else {
            Ok(())
        }
    };
    check_nonempty(&m.benchmark, "matrix.benchmark")?;
    check_nonempty(&m.mode, "matrix.mode")?;
    for b in m.benchmark.get_ref() {
        if !BENCHMARKS.iter().any(|(n, _)| n == b.get_ref()) {
            let known: Vec<&str> = BENCHMARKS.iter().map(|(n, _)| *n).collect();
            return Err(src.at(
                b.span(),
                "matrix.benchmark",
                format!(
                    "unknown benchmark {:?}; hybench has {}",
                    b.get_ref(),
                    known.join(", ")
                ),
            ));
        }
    }
    for mode in m.mode.get_ref() {
        if !MODES.contains(&mode.get_ref().as_str()) {
            return Err(src.at(
                mode.span(),
                "matrix.mode",
                format!(
                    "unknown mode {:?}; write {}",
                    mode.get_ref(),
                    MODES.join(", ")
                ),
            ));
        }
    }
    let numbers = |list: &List<u32>,
                   key: &str,
                   default: u32|
     -> anyhow::Result<Vec<Spanned<u32>>> {
        match list {
            None => Ok(vec![Spanned::new(0..0, default)]),
            Some(l) if l.get_ref().is_empty() => Err(src.at(l.span(), key, "the list is empty")),
            Some(l) => {
                for v in l.get_ref() {
                    if *v.get_ref() == 0 {
                        return Err(src.at(v.span(), key, "must be at least 1"));
                    }
                }
                Ok(l.get_ref().clone())
            }
        }
    };
    let nodes = numbers(&m.nodes, "matrix.nodes", 1)?;
    let rpns = numbers(&m.ranks_per_node, "matrix.ranks_per_node", 2)?;
    let strings = |list: &List<String>,
                   key: &str|
     -> anyhow::Result<Option<Vec<Spanned<String>>>> {
        match list {
            None => Ok(None),
            Some(l) if l.get_ref().is_empty() => Err(src.at(l.span(), key, "the list is empty")),
            Some(l) => Ok(Some(l.get_ref().clone())),
        }
    };
    let sizes = strings(&m.sizes, "matrix.sizes")?;
    if let Some(sizes) = &sizes {
        for s in sizes {
            if !valid_sizes(s.get_ref()) {
                return Err(src.at(
                    s.span(),
                    "matrix.sizes",
                    format!(
                        "{:?}: write hybench's -m form, MAX, MIN:MAX or MIN: (K/M/G suffixes)",
                        s.get_ref()
                    ),
                ));
            }
        }
    }
    let images = strings(&m.image, "matrix.image")?;
    let mpis = strings(&m.mpi, "matrix.mpi")?
        .unwrap_or_else(|| vec![Spanned::new(0..0, "mpich".to_owned())]);
    let mut flavours = BTreeMap::new();
    for p in &mpis {
        let name = p.get_ref();
        let abi = match site_profiles.get(name) {
            Some(abi) => abi.clone(),
            None if BUILTIN_FLAVOURS.contains(&name.as_str()) => name.clone(),
            None => {
                let mut known: BTreeSet<String> = site_profiles.keys().cloned().collect();
                known.extend(BUILTIN_FLAVOURS.iter().map(|s| s.to_string()));
                return Err(src.at(
                    p.span(),
                    "matrix.mpi",
                    format!(
                        "unknown MPI profile {name:?}; known: {} (a site file's [mpi.NAME] adds more)",
                        known.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                ));
            }
        };
        flavours.insert(name.clone(), abi);
    }
    let envs = match &m.env {
        None => vec![Spanned::new(0..0, BTreeMap::new())],
        Some(l) if l.get_ref().is_empty() => {
            return Err(src.at(l.span(), "matrix.env", "the list is empty"));
        }
        Some(l) => l.get_ref().clone(),
    };
    for e in &envs {
        for name in e.get_ref().keys() {
            if name.is_empty()
                || name.starts_with(|c: char| c.is_ascii_digit())
                || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            {
                return Err(src.at(
                    e.span(),
                    "matrix.env",
                    format!("{name:?} is not a variable name"),
                ));
            }
        }
    }
    let mut images_abs = Vec::new();
    if let Some(images) = &images {
        for i in images {
            let p = src.path(i.get_ref());
            images_abs.push((i.get_ref().clone(), p, i.span()));
        }
    }
    for name in raw.benchmark.keys() {
        if !BENCHMARKS.iter().any(|(n, _)| n == name.get_ref()) {
            return Err(src.at(
                name.span(),
                "benchmark",
                format!("[benchmark.{}]: no such benchmark", name.get_ref()),
            ));
        }
    }
    for opts in raw.benchmark.values() {
        if let Some(s) = &opts.sizes {
            if !valid_sizes(s.get_ref()) {
                return Err(src.at(
                    s.span(),
                    "benchmark.sizes",
                    format!(
                        "{:?}: write hybench's -m form, MAX, MIN:MAX or MIN:",
                        s.get_ref()
                    ),
                ));
            }
        }
    }
    let bench_opts = |b: &str| {
        raw.benchmark
            .iter()
            .find(|(n, _)| n.get_ref() == b)
            .map(|(_, o)| o)
    };

    // Expand.
    let mut cells: Vec<Cell> = Vec::new();
    let mut exclude_hits = vec![0usize; raw.exclude.len()];
    let container_modes: Vec<&Spanned<String>> = m
        .mode
        .get_ref()
        .iter()
        .filter(|m| m.get_ref() != "native")
        .collect();
    if !container_modes.is_empty() && images_abs.is_empty() {
        return Err(src.at(
            container_modes[0].span(),
            "matrix.mode",
            format!(
                "mode {:?} runs in a container: add matrix.image = [\"IMAGE\"]",
                container_modes[0].get_ref()
            ),
        ));
    }
    for b in m.benchmark.get_ref() {
        let (_, rule) = BENCHMARKS
            .iter()
            .find(|(n, _)| n == b.get_ref())
            .expect("checked");
        let opts = bench_opts(b.get_ref());
        for mode in m.mode.get_ref() {
            let native = mode.get_ref() == "native";
            let image_choices: Vec<Option<&(String, PathBuf, std::ops::Range<usize>)>> = if native {
                vec![None]
            } else {
                images_abs.iter().map(Some).collect()
            };
            for n in &nodes {
                for r in &rpns {
                    let size_choices: Vec<Option<String>> =
                        match (opts.and_then(|o| o.sizes.as_ref()), &sizes) {
                            (Some(own), _) => vec![Some(own.get_ref().clone())],
                            (None, None) => vec![None],
                            (None, Some(s)) => {
                                s.iter().map(|x| Some(x.get_ref().clone())).collect()
                            }
                        };
                    for size in &size_choices {
                        for img in &image_choices {
                            for p in &mpis {
                                for e in &envs {
                                    let mut cell = Cell {
                                        key: String::new(),
                                        benchmark: b.get_ref().clone(),
                                        mode: mode.get_ref().clone(),
                                        nodes: *n.get_ref(),
                                        ranks_per_node: *r.get_ref(),
                                        sizes: size.clone(),
                                        image: img.map(|i| i.1.clone()),
                                        mpi: p.get_ref().clone(),
                                        flavour: flavours[p.get_ref()].clone(),
                                        env: e.get_ref().clone(),
                                        iterations: opts.and_then(|o| o.iterations),
                                        warmup: opts.and_then(|o| o.warmup),
                                        args: opts.map(|o| o.args.clone()).unwrap_or_default(),
                                    };
                                    let mut excluded = false;
                                    for (i, x) in raw.exclude.iter().enumerate() {
                                        if excludes(x.get_ref(), &cell, img.map(|i| i.0.as_str())) {
                                            exclude_hits[i] += 1;
                                            excluded = true;
                                        }
                                    }
                                    if excluded {
                                        continue;
                                    }
                                    if let Err(why) = rule.check(cell.ranks()) {
                                        // Point at the rank count as written, else the node count, else the benchmark.
                                        let span = [r.span(), n.span()]
                                            .into_iter()
                                            .find(|s| s.end > 0)
                                            .unwrap_or(b.span());
                                        return Err(src.at(
                                            span,
                                            "matrix",
                                            format!(
                                                "impossible cell: {} {why} ({} nodes x {} ranks per node); change matrix.nodes / matrix.ranks_per_node or add an [[exclude]]",
                                                cell.benchmark, cell.nodes, cell.ranks_per_node
                                            ),
                                        ));
                                    }
                                    if cell.mode == "inside" && cell.nodes > 1 {
                                        return Err(src.at(
                                            mode.span(),
                                            "matrix.mode",
                                            format!("mode inside runs mpiexec in one container on one node, and a cell has {} nodes; exclude it", cell.nodes),
                                        ));
                                    }
                                    if let Some((given, path, span)) = img {
                                        if !path.exists() {
                                            return Err(src.at(
                                                span.clone(),
                                                "matrix.image",
                                                format!("image {given:?} not found ({}); build it (scripts/make-test-images) or fix the path (relative to the scenario file)", path.display()),
                                            ));
                                        }
                                    }
                                    cell.compute_key();
                                    if !cells.iter().any(|c| c.key == cell.key) {
                                        cells.push(cell);
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    for (i, hits) in exclude_hits.iter().enumerate() {
        if *hits == 0 {
            return Err(src.at(
                raw.exclude[i].span(),
                "exclude",
                "this exclusion matches no cell (a typo?); fix or remove it",
            ));
        }
    }
    if cells.is_empty() {
        return Err(src.at(
            raw.matrix.span(),
            "matrix",
            "no cell is left after the exclusions",
        ));
    }

    // hybench builds for native cells.
    let mut hybench = BTreeMap::new();
    let needed: BTreeSet<&str> = cells
        .iter()
        .filter(|c| c.mode == "native")
        .map(|c| c.flavour.as_str())
        .collect();
    for flavour in needed {
        let (path, span) = if let Some(p) = env.hybench_override.get(flavour) {
            (p.clone(), None)
        } else {
            let given = match flavour {
                "mpich" => raw.hybench.mpich.as_ref(),
                _ => raw.hybench.openmpi.as_ref(),
            };
            match given {
                Some(g) => (src.path(g.get_ref()), Some(g.span())),
                None => (default_hybench(file, flavour), None),
            }
        };
        if !path.is_file() {
            let message = format!(
                "native {flavour} cells need hybench built against {flavour}, and {} is missing; run scripts/build-hybench {flavour}, or set [hybench] {flavour} = PATH (or ${})",
                path.display(),
                if flavour == "mpich" {
                    "HYBENCH_MPICH"
                } else {
                    "HYBENCH_OPENMPI"
                }
            );
            return Err(match span {
                Some(s) => src.at(s, &format!("hybench.{flavour}"), message),
                None => anyhow::anyhow!("{}: {message}", file.display()),
            });
        }
        hybench.insert(flavour.to_owned(), path);
    }

    Ok(Scenario {
        name: name.clone(),
        description: raw.description,
        source: file.to_path_buf(),
        launches,
        order,
        seed: raw.seed.unwrap_or(1),
        timeout_s,
        tolerance,
        resample,
        stop,
        bind,
        site: site.map(|(p, _)| p),
        runtime: raw.runtime.map(|r| r.into_inner()),
        hybench,
        container_hybench: raw
            .hybench
            .container
            .unwrap_or_else(|| "/app/hybench".into()),
        submit: raw.submit,
        cells,
    })
}

/// `target/<flavour>/release/hybench` of the repository the scenario sits in
/// (the scenario's directory's parent: scenarios/ is at the root), else of
/// the current directory.
fn default_hybench(file: &Path, flavour: &str) -> PathBuf {
    let rel = Path::new("target").join(flavour).join("release/hybench");
    file.parent()
        .and_then(|d| d.parent())
        .map(|root| root.join(&rel))
        .filter(|p| p.is_file())
        .unwrap_or(rel)
}

fn site_profiles(site: &crate::site::Site) -> BTreeMap<String, String> {
    // The launch module owns the [mpi.NAME] sections: read its typed view, so
    // the campaign and the launcher never disagree on a profile's ABI.
    site.config
        .mpi
        .iter()
        .map(|(name, profile)| (name.clone(), profile.abi.name().to_owned()))
        .collect()
}

fn excludes(x: &RawExclude, cell: &Cell, image_as_written: Option<&str>) -> bool {
    x.benchmark.as_ref().is_none_or(|v| *v == cell.benchmark)
        && x.mode.as_ref().is_none_or(|v| *v == cell.mode)
        && x.nodes.is_none_or(|v| v == cell.nodes)
        && x.ranks_per_node.is_none_or(|v| v == cell.ranks_per_node)
        && x.sizes
            .as_ref()
            .is_none_or(|v| Some(v) == cell.sizes.as_ref())
        && x.image
            .as_ref()
            .is_none_or(|v| Some(v.as_str()) == image_as_written)
        && x.mpi.as_ref().is_none_or(|v| *v == cell.mpi)
}

/// `90`, `90s`, `10m`, `1h`, `1.5m` -> seconds.
pub fn parse_duration(text: &str) -> Option<f64> {
    let t = text.trim();
    let (num, mult) = match t.char_indices().last()? {
        (i, 's') => (&t[..i], 1.0),
        (i, 'm') => (&t[..i], 60.0),
        (i, 'h') => (&t[..i], 3600.0),
        _ => (t, 1.0),
    };
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v > 0.0).then_some(v * mult)
}

/// hybench's `-m` syntax: `MAX`, `MIN:MAX`, `MIN:`, with K/M/G suffixes.
fn valid_sizes(text: &str) -> bool {
    let one = |s: &str| {
        let s = s.trim_end_matches(['K', 'M', 'G', 'k', 'm', 'g']);
        !s.is_empty() && s.chars().all(|c| c.is_ascii_digit())
    };
    match text.split_once(':') {
        Some((a, "")) => one(a),
        Some((a, b)) => one(a) && one(b),
        None => one(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_with_fake_hybench(dir: &Path) -> Environment {
        let fake = dir.join("hybench");
        std::fs::write(&fake, "").unwrap();
        let mut e = Environment::default();
        e.hybench_override.insert("mpich".into(), fake.clone());
        e.hybench_override.insert("openmpi".into(), fake);
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
        assert_eq!(s.cells.len(), 3);
        let again = parse_in(dir.path(), &format!("# a comment\n{text}")).unwrap();
        assert_eq!(s.run_id(), again.run_id(), "comments do not change the run");
        assert!(s.cells[0].key.starts_with("latency.native.1x2.mpich."));
        assert_eq!(
            s.cells[1].image.as_deref(),
            Some(dir.path().join("img").as_path())
        );
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
            e.contains("s.toml:3:14") && e.contains("unknown benchmark \"latencyy\""),
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

    #[test]
    fn durations_and_sizes() {
        assert_eq!(parse_duration("90"), Some(90.0));
        assert_eq!(parse_duration("2m"), Some(120.0));
        assert_eq!(parse_duration("0.5h"), Some(1800.0));
        assert_eq!(parse_duration("-1s"), None);
        assert!(valid_sizes("1:4M") && valid_sizes("8") && valid_sizes("4K:"));
        assert!(!valid_sizes("1-8") && !valid_sizes(":8"));
    }
}
