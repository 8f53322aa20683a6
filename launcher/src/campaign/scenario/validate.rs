//! Every setting and axis of a [`RawScenario`] checked and typed, before any
//! cell exists: words become the vocabulary's enums (a bad one is refused
//! with the file, line, key and the accepted words), numbers are in range,
//! paths are anchored at the scenario file, the site file is read for its MPI
//! profiles. [`super::expand`] then only combines what is known to be valid.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Range;
use std::path::PathBuf;
use std::str::FromStr;

use toml::Spanned;

use super::raw::{List, RawApp, RawExclude, RawJob, RawScenario, Source};
use super::{
    App, Better, Binding, JobShape, Metric, Order, Resample, StopRule, SubmitOptions, Workload,
};
use crate::launch::plan::Geometry;
use hybrun_core::stats::Location;
use hybrun_core::vocab::{Benchmark, Mode, MpiFlavour, RuntimeKind};

/// The stop rule's defaults: a headline CI of at most ±1.5% (so that an
/// equivalence within ±3% can be shown), launches for at most 10 minutes, at
/// most 200 launches per cell.
pub const DEFAULT_CI_WIDTH: f64 = 0.03;
pub const DEFAULT_BUDGET_S: f64 = 600.0;
pub const DEFAULT_MAX_LAUNCHES: u32 = 200;

/// The scenario's scalar settings, checked.
pub(super) struct Settings {
    pub name: String,
    pub launches: u32,
    pub order: Order,
    pub timeout_s: f64,
    pub tolerance: f64,
    pub resample: Resample,
    pub location: Location,
    pub bind: Binding,
    pub stop: Option<StopRule>,
    pub control: bool,
    pub randomize: bool,
    pub site: Option<PathBuf>,
    pub runtime: Option<RuntimeKind>,
    /// The MPI profiles the site file defines: name -> flavour.
    pub site_profiles: BTreeMap<String, MpiFlavour>,
}

/// An image of the matrix: as written (exclusions match that), where it is.
pub(super) struct Image {
    pub given: String,
    pub path: PathBuf,
    pub span: Range<usize>,
}

/// An MPI profile of the matrix and its implementation.
pub(super) struct Profile {
    pub name: String,
    pub flavour: MpiFlavour,
}

/// `[benchmark.NAME]`: per-benchmark options.
#[derive(Default)]
pub(super) struct Options {
    pub sizes: Option<String>,
    pub iterations: Option<u64>,
    pub warmup: Option<u64>,
    pub args: Vec<String>,
}

/// One `[[exclude]]`, typed.
pub(super) struct Exclude {
    pub benchmark: Option<Workload>,
    pub mode: Option<Mode>,
    pub nodes: Option<u32>,
    pub ranks_per_node: Option<u32>,
    pub sizes: Option<String>,
    /// The image as written in the matrix.
    pub image: Option<String>,
    pub mpi: Option<String>,
    pub cpus_per_task: Option<u32>,
    pub span: Range<usize>,
}

/// The matrix's axes, checked. Entries keep their spans for the messages of
/// the expansion (an impossible cell points at the rank count as written).
pub(super) struct Axes {
    pub benchmarks: Vec<Spanned<Workload>>,
    pub modes: Vec<Spanned<Mode>>,
    pub nodes: Vec<Spanned<u32>>,
    pub ranks_per_node: Vec<Spanned<u32>>,
    pub sizes: Option<Vec<String>>,
    pub images: Vec<Image>,
    pub mpis: Vec<Profile>,
    pub envs: Vec<BTreeMap<String, String>>,
    /// `matrix.cpus_per_task`, else one unset value.
    pub cpus: Vec<Spanned<Option<u32>>>,
    /// `[job]`: the shape of every cell (its `cpus_per_task` unset: the axis
    /// gives it).
    pub shape: JobShape,
    pub options: BTreeMap<Benchmark, Options>,
    /// `[app.NAME]`, checked.
    pub apps: BTreeMap<String, App>,
    pub excludes: Vec<Exclude>,
    /// The matrix table, for messages about the whole of it.
    pub span: Range<usize>,
}

/// A word of the vocabulary, or an error naming the key and the accepted words.
fn word<T: FromStr>(
    src: &Source<'_>,
    value: &Spanned<String>,
    key: &str,
    what: &str,
    names: &[&str],
) -> anyhow::Result<T> {
    value.get_ref().parse().map_err(|_| {
        src.at(
            value.span(),
            key,
            format!(
                "unknown {what} {:?}; write {}",
                value.get_ref(),
                names.join(", ")
            ),
        )
    })
}

/// hybench's benchmarks, as "a, b, c".
fn benchmark_names() -> String {
    Benchmark::NAMES.join(", ")
}

/// A benchmark name of a `[benchmark.NAME]` table: one of hybench's.
fn benchmark(src: &Source<'_>, value: &Spanned<String>, key: &str) -> anyhow::Result<Benchmark> {
    value.get_ref().parse().map_err(|_| {
        src.at(
            value.span(),
            key,
            format!(
                "unknown benchmark {:?}; hybench has {}",
                value.get_ref(),
                benchmark_names()
            ),
        )
    })
}

/// What the matrix names: one of hybench's benchmarks (GPU ones included:
/// they need a GPU where the campaign runs), or an application of `[app.NAME]`.
fn workload(
    src: &Source<'_>,
    value: &Spanned<String>,
    key: &str,
    apps: &BTreeMap<String, App>,
) -> anyhow::Result<Workload> {
    if let Ok(b) = value.get_ref().parse::<Benchmark>() {
        return Ok(Workload::Bench(b));
    }
    if apps.contains_key(value.get_ref()) {
        return Ok(Workload::App {
            app: value.get_ref().clone(),
        });
    }
    Err(src.at(
        value.span(),
        key,
        format!(
            "unknown benchmark {:?}: hybench has {}; an application of your own needs an \
             [app.{}] table with its command and metric",
            value.get_ref(),
            benchmark_names(),
            value.get_ref()
        ),
    ))
}

/// The scalar settings.
pub(super) fn settings(raw: &RawScenario, src: &Source<'_>) -> anyhow::Result<Settings> {
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
    let launches = raw.launches.as_ref().map_or(6, |l| *l.get_ref());
    if launches == 0 {
        let span = raw.launches.as_ref().map(|l| l.span()).unwrap_or(0..0);
        return Err(src.at(span, "launches", "must be at least 1"));
    }
    let order = match &raw.order {
        None => Order::Interleaved,
        Some(o) => word(src, o, "order", "order", Order::NAMES)?,
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
        Some(r) => word(src, r, "resample", "resampling", Resample::NAMES)?,
    };
    let bind = match &raw.bind {
        None => Binding::Core,
        Some(b) => word(src, b, "bind", "binding", Binding::NAMES)?,
    };
    let stop = stop_rule(raw, src, launches)?;
    let location = match &raw.location {
        None => Location::Median,
        Some(l) => word(src, l, "location", "location estimator", Location::NAMES)?,
    };
    let (site, site_profiles) = site(raw, src)?;
    let runtime = match &raw.runtime {
        None => None,
        Some(r) => Some(word(src, r, "runtime", "runtime", RuntimeKind::NAMES)?),
    };
    Ok(Settings {
        name: name.clone(),
        launches,
        order,
        timeout_s,
        tolerance,
        resample,
        location,
        bind,
        stop,
        control: raw.control.unwrap_or(true),
        randomize: raw.randomize.unwrap_or(true),
        site,
        runtime,
        site_profiles,
    })
}

/// The stop rule: on unless `[stop] enabled = false`, with the defaults for
/// what `[stop]` does not say.
fn stop_rule(
    raw: &RawScenario,
    src: &Source<'_>,
    launches: u32,
) -> anyhow::Result<Option<StopRule>> {
    let Some(s) = &raw.stop else {
        return Ok(Some(StopRule {
            ci_width: DEFAULT_CI_WIDTH,
            max_launches: DEFAULT_MAX_LAUNCHES.max(launches),
            budget_s: DEFAULT_BUDGET_S,
        }));
    };
    let r = s.get_ref();
    if r.enabled == Some(false) {
        return Ok(None);
    }
    let ci_width = match &r.ci_width {
        None => DEFAULT_CI_WIDTH,
        Some(w) if *w.get_ref() > 0.0 && *w.get_ref() < 1.0 => *w.get_ref(),
        Some(w) => {
            return Err(src.at(
                w.span(),
                "stop.ci_width",
                "a relative width in (0, 1), e.g. 0.03",
            ));
        }
    };
    let max_launches = match &r.max_launches {
        None => DEFAULT_MAX_LAUNCHES.max(launches),
        Some(m) if *m.get_ref() >= launches => *m.get_ref(),
        Some(m) => {
            return Err(src.at(
                m.span(),
                "stop.max_launches",
                format!("{} is below launches = {launches}; raise it", m.get_ref()),
            ));
        }
    };
    let budget_s = match &r.budget {
        None => DEFAULT_BUDGET_S,
        Some(b) => parse_duration(b.get_ref()).ok_or_else(|| {
            src.at(
                b.span(),
                "stop.budget",
                format!("{:?}: write e.g. \"4m\", \"90s\" or \"1h\"", b.get_ref()),
            )
        })?,
    };
    Ok(Some(StopRule {
        ci_width,
        max_launches,
        budget_s,
    }))
}

/// `[app.NAME]` tables: a command, readable inputs, a metric whose regular
/// expression has a `value` group (or `"wall"`), an optional success pattern.
pub(super) fn apps(raw: &RawScenario, src: &Source<'_>) -> anyhow::Result<BTreeMap<String, App>> {
    let mut out = BTreeMap::new();
    for (name, app) in &raw.app {
        let n = name.get_ref();
        let valid = !n.is_empty()
            && n.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
        if !valid || n.parse::<Benchmark>().is_ok() {
            return Err(src.at(
                name.span(),
                "app",
                format!(
                    "[app.{n}]: name it with letters, digits, '-', '_' and '.', and not as one \
                     of hybench's benchmarks"
                ),
            ));
        }
        out.insert(n.clone(), app_of(n, app, src)?);
    }
    Ok(out)
}

fn app_of(name: &str, app: &Spanned<RawApp>, src: &Source<'_>) -> anyhow::Result<App> {
    let key = |k: &str| format!("app.{name}.{k}");
    let raw: &RawApp = app.get_ref();
    let command = match &raw.command {
        Some(c) if !c.get_ref().is_empty() && !c.get_ref()[0].is_empty() => c.get_ref().clone(),
        Some(c) => return Err(src.at(c.span(), &key("command"), "the command is empty")),
        None => {
            return Err(src.at(
                app.span(),
                &key("command"),
                "missing: write the argv every rank runs, e.g. command = [\"lmp\", \"-in\", \"in.lj\"]",
            ));
        }
    };
    let mut inputs: Vec<PathBuf> = Vec::new();
    for i in &raw.inputs {
        let path = src.path(i.get_ref());
        let readable = path.is_file() && std::fs::File::open(&path).is_ok();
        if !readable {
            return Err(src.at(
                i.span(),
                &key("inputs"),
                format!(
                    "{} is not a readable file (inputs are relative to the scenario file)",
                    path.display()
                ),
            ));
        }
        // Every input lands in the launch directory under its file name.
        if inputs.iter().any(|p| p.file_name() == path.file_name()) {
            return Err(src.at(
                i.span(),
                &key("inputs"),
                format!(
                    "two inputs are named {:?}: they would land on one file in the launch \
                     directory",
                    path.file_name().unwrap_or_default()
                ),
            ));
        }
        inputs.push(path);
    }
    let metric = match &raw.metric {
        Some(m) => metric(m, &key("metric"), src)?,
        None => {
            return Err(src.at(
                app.span(),
                &key("metric"),
                "missing: write metric = \"wall\" or metric = { regex = '...(?P<value>[0-9.eE+-]+)', \
                 unit = \"s\", better = \"lower\" }",
            ));
        }
    };
    let success = match &raw.success {
        None => None,
        Some(p) => {
            regex::Regex::new(p.get_ref()).map_err(|e| {
                src.at(
                    p.span(),
                    &key("success"),
                    format!("not a regular expression: {e}"),
                )
            })?;
            Some(p.get_ref().clone())
        }
    };
    Ok(App {
        command,
        inputs,
        metric,
        success,
    })
}

fn metric(m: &Spanned<toml::Value>, key: &str, src: &Source<'_>) -> anyhow::Result<Metric> {
    let bad = |why: String| src.at(m.span(), key, why);
    match m.get_ref() {
        toml::Value::String(w) if w == "wall" => Ok(Metric::Wall),
        toml::Value::Table(t) => {
            if let Some(k) = t
                .keys()
                .find(|k| !matches!(k.as_str(), "regex" | "unit" | "better"))
            {
                return Err(bad(format!(
                    "unknown key {k:?}: write regex, unit and better"
                )));
            }
            let text = |k: &str| t.get(k).and_then(toml::Value::as_str);
            let pattern = text("regex")
                .ok_or_else(|| bad("needs regex = '...(?P<value>[0-9.eE+-]+)...'".into()))?;
            let re = regex::Regex::new(pattern)
                .map_err(|e| bad(format!("regex: not a regular expression: {e}")))?;
            if !re.capture_names().any(|n| n == Some("value")) {
                return Err(bad(format!(
                    "regex {pattern:?} has no group named value: write (?P<value>...) around the \
                     number"
                )));
            }
            let better = match text("better") {
                None => Better::Lower,
                Some(b) => b.parse().map_err(|e| bad(format!("better: {e}")))?,
            };
            Ok(Metric::Regex {
                pattern: pattern.to_owned(),
                unit: text("unit").unwrap_or("").to_owned(),
                better,
            })
        }
        _ => Err(bad(
            "write \"wall\" or { regex = '...', unit = \"...\", better = \"lower\" }".into(),
        )),
    }
}

/// The site file (checked to exist and to parse) and the profiles it defines.
fn site(
    raw: &RawScenario,
    src: &Source<'_>,
) -> anyhow::Result<(Option<PathBuf>, BTreeMap<String, MpiFlavour>)> {
    let Some(given) = &raw.site else {
        return Ok((None, BTreeMap::new()));
    };
    let path = src.path(given.get_ref());
    if !path.is_file() {
        return Err(src.at(
            given.span(),
            "site",
            format!("{} does not exist", path.display()),
        ));
    }
    // The site module owns the [mpi.NAME] sections: read its typed view, so
    // the campaign and the launcher never disagree on a profile's flavour.
    let site =
        crate::site::Site::read(&path, "scenario").map_err(|e| src.at(given.span(), "site", e))?;
    let profiles = site
        .config
        .mpi
        .iter()
        .map(|(name, profile)| (name.clone(), profile.flavour))
        .collect();
    Ok((Some(path), profiles))
}

/// A list of numbers, each at least 1; `default` when the key is absent.
fn numbers(
    src: &Source<'_>,
    list: &List<u32>,
    key: &str,
    default: u32,
) -> anyhow::Result<Vec<Spanned<u32>>> {
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
}

/// An optional list of strings, not empty when given.
fn strings(
    src: &Source<'_>,
    list: &List<String>,
    key: &str,
) -> anyhow::Result<Option<Vec<Spanned<String>>>> {
    match list {
        None => Ok(None),
        Some(l) if l.get_ref().is_empty() => Err(src.at(l.span(), key, "the list is empty")),
        Some(l) => Ok(Some(l.get_ref().clone())),
    }
}

/// A list of words, each parsed by `parse`.
fn words<T>(
    list: &Spanned<Vec<Spanned<String>>>,
    parse: impl Fn(&Spanned<String>) -> anyhow::Result<T>,
) -> anyhow::Result<Vec<Spanned<T>>> {
    list.get_ref()
        .iter()
        .map(|w| Ok(Spanned::new(w.span(), parse(w)?)))
        .collect()
}

/// The matrix's axes, `[benchmark.NAME]` options and exclusions.
pub(super) fn axes(
    raw: &RawScenario,
    src: &Source<'_>,
    settings: &Settings,
) -> anyhow::Result<Axes> {
    let m = raw.matrix.get_ref();
    for (list, key) in [(&m.benchmark, "matrix.benchmark"), (&m.mode, "matrix.mode")] {
        if list.get_ref().is_empty() {
            return Err(src.at(list.span(), key, "the list is empty"));
        }
    }
    let apps = apps(raw, src)?;
    let benchmarks = words(&m.benchmark, |w| {
        workload(src, w, "matrix.benchmark", &apps)
    })?;
    let modes = words(&m.mode, |w| {
        word(src, w, "matrix.mode", "mode", Mode::NAMES)
    })?;
    let nodes = numbers(src, &m.nodes, "matrix.nodes", 1)?;
    let ranks_per_node = numbers(src, &m.ranks_per_node, "matrix.ranks_per_node", 2)?;
    let sizes = strings(src, &m.sizes, "matrix.sizes")?;
    for s in sizes.iter().flatten() {
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
    let images = strings(src, &m.image, "matrix.image")?
        .unwrap_or_default()
        .into_iter()
        .map(|i| Image {
            path: src.path(i.get_ref()),
            span: i.span(),
            given: i.into_inner(),
        })
        .collect();
    let mpis = profiles(src, &m.mpi, &settings.site_profiles)?;
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
    Ok(Axes {
        cpus: cpus_axis(raw, src)?,
        shape: job(raw, src)?,
        benchmarks,
        modes,
        nodes,
        ranks_per_node,
        sizes: sizes.map(|s| s.into_iter().map(Spanned::into_inner).collect()),
        images,
        mpis,
        envs: envs.into_iter().map(Spanned::into_inner).collect(),
        options: options(raw, src)?,
        excludes: excludes(raw, src, &apps)?,
        apps,
        span: raw.matrix.span(),
    })
}

/// The matrix's MPI profiles: the site file's, else the built-in `mpich` and
/// `openmpi` (native cells only: the container modes read the profile from the
/// site file when they are planned).
fn profiles(
    src: &Source<'_>,
    list: &List<String>,
    site_profiles: &BTreeMap<String, MpiFlavour>,
) -> anyhow::Result<Vec<Profile>> {
    let builtin = [MpiFlavour::Mpich, MpiFlavour::Openmpi];
    let names = strings(src, list, "matrix.mpi")?
        .unwrap_or_else(|| vec![Spanned::new(0..0, MpiFlavour::Mpich.name().to_owned())]);
    names
        .iter()
        .map(|p| {
            let name = p.get_ref();
            let flavour = match site_profiles.get(name) {
                Some(flavour) => *flavour,
                None => match builtin.iter().find(|f| f.name() == name.as_str()) {
                    Some(flavour) => *flavour,
                    None => {
                        let mut known: BTreeSet<&str> =
                            site_profiles.keys().map(String::as_str).collect();
                        known.extend(builtin.iter().map(|f| f.name()));
                        return Err(src.at(
                            p.span(),
                            "matrix.mpi",
                            format!(
                                "unknown MPI profile {name:?}; known: {} (a site file's [mpi.NAME] adds more)",
                                known.into_iter().collect::<Vec<_>>().join(", ")
                            ),
                        ));
                    }
                },
            };
            Ok(Profile {
                name: name.clone(),
                flavour,
            })
        })
        .collect()
}

/// `matrix.cpus_per_task`: each value checked as `hybrun run -c` checks it,
/// and within what `[submit]` asks sbatch for: a cell's step runs inside that
/// job, and a step cannot have more CPUs per rank than its job.
fn cpus_axis(raw: &RawScenario, src: &Source<'_>) -> anyhow::Result<Vec<Spanned<Option<u32>>>> {
    let key = "matrix.cpus_per_task";
    let Some(list) = &raw.matrix.get_ref().cpus_per_task else {
        return Ok(vec![Spanned::new(0..0, None)]);
    };
    if list.get_ref().is_empty() {
        return Err(src.at(list.span(), key, "the list is empty"));
    }
    let mut out = Vec::new();
    for c in list.get_ref() {
        let cpus = *c.get_ref();
        shape_check(
            src,
            c.span(),
            key,
            Geometry {
                cpus_per_task: Some(cpus),
                ..Geometry::default()
            },
        )?;
        if let Some(job) = raw.submit.cpus_per_task.filter(|&job| cpus > job) {
            return Err(src.at(
                c.span(),
                key,
                format!(
                    "{cpus} CPUs per rank, and [submit] cpus_per_task = {job} gives the sbatch \
                     job only {job}: a cell's srun step cannot have more than its job; raise \
                     [submit] cpus_per_task to the largest value here, or remove it (--submit \
                     then asks for the largest)"
                ),
            ));
        }
        out.push(Spanned::new(c.span(), Some(cpus)));
    }
    Ok(out)
}

/// Refuses a job shape `hybrun run` would refuse (zero counts, empty values,
/// control characters, srun options hybrun sets itself), with its reason.
fn shape_check(
    src: &Source<'_>,
    span: Range<usize>,
    key: &str,
    geometry: Geometry,
) -> anyhow::Result<()> {
    geometry.check().map_err(|e| {
        src.at(
            span,
            key,
            format!("{e} (the [job] keys and matrix.cpus_per_task are hybrun run's options)"),
        )
    })
}

/// `[job]`: every key checked alone by [`Geometry::check`] (so that a refusal
/// points at it), then against `[submit]`.
fn job(raw: &RawScenario, src: &Source<'_>) -> anyhow::Result<JobShape> {
    let Some(table) = &raw.job else {
        return Ok(JobShape::default());
    };
    let j: &RawJob = table.get_ref();
    let text = |v: &Option<Spanned<String>>| v.as_ref().map(|s| s.get_ref().clone());
    let shape = JobShape {
        cpus_per_task: None,
        exclusive: j.exclusive.unwrap_or(false),
        mem: text(&j.mem),
        constraint: text(&j.constraint),
        qos: text(&j.qos),
        gpus_per_task: j.gpus_per_task.as_ref().map(|g| *g.get_ref()),
        gpu_bind: text(&j.gpu_bind),
        srun_args: j.srun_args.iter().map(|a| a.get_ref().clone()).collect(),
    };
    let d = Geometry::default;
    type Field = fn(&mut Geometry) -> &mut Option<String>;
    let texts: [(&str, &Option<Spanned<String>>, Field); 4] = [
        ("job.mem", &j.mem, |g| &mut g.mem),
        ("job.constraint", &j.constraint, |g| &mut g.constraint),
        ("job.qos", &j.qos, |g| &mut g.qos),
        ("job.gpu_bind", &j.gpu_bind, |g| &mut g.gpu_bind),
    ];
    for (key, given, field) in texts {
        if let Some(v) = given {
            let mut geometry = d();
            *field(&mut geometry) = Some(v.get_ref().clone());
            shape_check(src, v.span(), key, geometry)?;
        }
    }
    for a in &j.srun_args {
        let srun_args = vec![a.get_ref().clone()];
        shape_check(
            src,
            a.span(),
            "job.srun_args",
            Geometry { srun_args, ..d() },
        )?;
    }
    if let Some(g) = &j.gpus_per_task {
        // With [submit]'s GPUs per node: Slurm counts GPUs one way or the other.
        let geometry = Geometry {
            gpus_per_task: Some(*g.get_ref()),
            gpus_per_node: raw.submit.gpus_per_node,
            ..d()
        };
        shape_check(src, g.span(), "job.gpus_per_task", geometry)?;
    }
    against_submit(j, &raw.submit, src)?;
    Ok(shape)
}

/// `[job]` against `[submit]`: the cells' steps run inside the sbatch job, so
/// a step asking for more GPUs per rank than the job, or for another memory,
/// constraint or QOS than the job's, would fail (or be silently the job's) at
/// run time: refused here, naming both.
fn against_submit(j: &RawJob, submit: &SubmitOptions, src: &Source<'_>) -> anyhow::Result<()> {
    if let (Some(g), Some(job)) = (&j.gpus_per_task, submit.gpus_per_task) {
        if *g.get_ref() > job {
            return Err(src.at(
                g.span(),
                "job.gpus_per_task",
                format!(
                    "{} GPUs per rank, and [submit] gpus_per_task = {job} gives the sbatch job \
                     only {job}: raise [submit] gpus_per_task, or lower this",
                    g.get_ref()
                ),
            ));
        }
    }
    for (key, cell, job) in [
        ("mem", &j.mem, &submit.mem),
        ("constraint", &j.constraint, &submit.constraint),
        ("qos", &j.qos, &submit.qos),
    ] {
        if let (Some(c), Some(s)) = (cell, job) {
            if c.get_ref() != s {
                return Err(src.at(
                    c.span(),
                    &format!("job.{key}"),
                    format!(
                        "{:?}, and [submit] {key} = {s:?}: the cells' steps run inside the \
                         sbatch job, which has the [submit] value; give one value (write it \
                         once, in [submit] for the job or in [job] for the steps)",
                        c.get_ref()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// `[benchmark.NAME]` tables, by benchmark.
fn options(raw: &RawScenario, src: &Source<'_>) -> anyhow::Result<BTreeMap<Benchmark, Options>> {
    let mut names = Vec::new();
    for name in raw.benchmark.keys() {
        if name.get_ref().parse::<Benchmark>().is_err() {
            return Err(src.at(
                name.span(),
                "benchmark",
                format!("[benchmark.{}]: no such benchmark", name.get_ref()),
            ));
        }
        names.push(benchmark(src, name, "benchmark")?);
    }
    let mut out = BTreeMap::new();
    for (b, opts) in names.into_iter().zip(raw.benchmark.values()) {
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
        out.insert(
            b,
            Options {
                sizes: opts.sizes.as_ref().map(|s| s.get_ref().clone()),
                iterations: opts.iterations,
                warmup: opts.warmup,
                args: opts.args.clone(),
            },
        );
    }
    Ok(out)
}

/// `[[exclude]]` tables, their words typed.
fn excludes(
    raw: &RawScenario,
    src: &Source<'_>,
    apps: &BTreeMap<String, App>,
) -> anyhow::Result<Vec<Exclude>> {
    raw.exclude
        .iter()
        .map(|x| {
            let RawExclude {
                benchmark: b,
                mode,
                nodes,
                ranks_per_node,
                sizes,
                image,
                mpi,
                cpus_per_task,
            } = x.get_ref();
            Ok(Exclude {
                benchmark: b
                    .as_ref()
                    .map(|b| workload(src, b, "exclude.benchmark", apps))
                    .transpose()?,
                mode: mode
                    .as_ref()
                    .map(|m| word(src, m, "exclude.mode", "mode", Mode::NAMES))
                    .transpose()?,
                nodes: *nodes,
                ranks_per_node: *ranks_per_node,
                sizes: sizes.clone(),
                image: image.clone(),
                mpi: mpi.clone(),
                cpus_per_task: *cpus_per_task,
                span: x.span(),
            })
        })
        .collect()
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
