//! What the numbers of a run say: first the headline (per benchmark or
//! application, mode and setting, one ratio to native over every size, with
//! its 95% CI, verdict and worst size, beside the A/A control's), then per
//! size the value of each mode and its ratio to native; which libmpi each
//! mode really mapped; the failed launches; and the stop rule's question,
//! which groups still need launches. [`super::export`] writes the result for
//! people and programs.
//!
//! - [`headline`]: the headline and control intervals, and the stop rule's question;
//! - [`calibration`]: A/A false-verdict rates and power, drawn from a run's launches.
//!
//! The statistics are `hybrun_core::stats`'s: the value of one launch at one
//! size is hybench's median over its iterations (or an application's metric);
//! a cell's value at a size is the scenario's [`Location`] over its launches;
//! a ratio to native is paired by round (see [`headline`]) and its CI
//! resamples whole rounds (see [`super::scenario::Resample`]); every output
//! says so.

pub mod calibration;
pub mod headline;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::results::{self, LaunchRecord, Outcome, SampleMap, StoredRow};
use super::rundir;
use super::scenario::{Cell, Resample, Scenario, Workload};
pub use headline::{Control, Headline, Interval, Worst, groups_needing_launches};
use hybrun_core::stats::{self, Location, RatioCi, Rng, Verdict};
use hybrun_core::vocab::Mode;

/// Bootstrap resamples per interval.
pub const RESAMPLES: u32 = 2000;
/// Per-iteration samples used per launch when resampling samples (evenly
/// spaced): bounds the bootstrap's cost at O(resamples x launches x this).
pub const SAMPLES_PER_LAUNCH: usize = 2000;

/// A run directory, read.
pub struct RunData {
    pub dir: PathBuf,
    pub scenario: Scenario,
    pub records: Vec<LaunchRecord>,
    pub rows: Vec<StoredRow>,
}

/// Reads a run directory (also while it is still running).
pub fn load(dir: &Path) -> anyhow::Result<RunData> {
    let scenario = rundir::read_scenario(dir)?;
    let records = results::read_records(dir)?;
    let ok: HashSet<(&str, u32)> = records
        .iter()
        .filter(|r| r.status == Outcome::Ok)
        .map(|r| (r.cell_key.as_str(), r.launch))
        .collect();
    // Only rows covered by an ok record count (a report of a run in progress
    // may see rows whose record is not written yet).
    let rows = results::read_results(dir)?
        .into_iter()
        .filter(|r| ok.contains(&(r.cell_key.as_str(), r.launch)))
        .collect();
    Ok(RunData {
        dir: dir.to_path_buf(),
        scenario,
        records,
        rows,
    })
}

/// How the report computes its intervals.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Options {
    pub tolerance: f64,
    pub resample: Resample,
    pub location: Location,
    pub resamples: u32,
    pub seed: u64,
}

impl Options {
    pub fn of(scenario: &Scenario) -> Options {
        Options {
            tolerance: scenario.tolerance,
            resample: scenario.resample,
            location: scenario.location,
            resamples: RESAMPLES,
            seed: scenario.seed,
        }
    }

    /// One sentence on the method, for every output.
    pub fn method(&self) -> String {
        let headline = match self.location {
            Location::Median => "the median over rounds of each round's geometric mean over sizes \
                                 of mode / native (the middle half of the sizes), with the \
                                 distribution-free 95% interval of a median (order statistics: \
                                 at least 95% coverage whatever the distribution)"
                .to_owned(),
            Location::TrimmedMean => format!(
                "the geometric mean over sizes of each size's 10%-trimmed mean over rounds of \
                 mode / native, with a 95% percentile bootstrap interval, {} resamples of whole \
                 rounds",
                self.resamples
            ),
        };
        let per_size = match self.resample {
            Resample::Launches => "per size, the same with that size alone".to_owned(),
            Resample::Samples => format!(
                "per size, the ratio of medians of per-iteration samples pooled over launches \
                 (at most {SAMPLES_PER_LAUNCH} evenly spaced per launch; narrower, and blind to \
                 launch-level state)"
            ),
        };
        format!(
            "paired by round (a round launches the cells of a setting back to back, so its two \
             launches share the machine's state): headline, {headline}; {per_size}; seed {}; \
             verdict `equivalent` only when the whole CI lies within ±{}% of 1",
            self.seed,
            fmt_pct(self.tolerance)
        )
    }
}

fn fmt_pct(x: f64) -> String {
    let p = x * 100.0;
    if (p - p.round()).abs() < 1e-9 {
        format!("{p:.0}")
    } else {
        format!("{p}")
    }
}

/// One mode at one size of one benchmark setting.
#[derive(Debug, Clone, Serialize)]
pub struct Entry {
    pub benchmark: Workload,
    /// The group: nodes x ranks per node, MPI profile, sizes, env, options.
    pub setting: String,
    #[serde(skip)]
    pub group: String,
    pub size_bytes: u64,
    /// The unit's name (hybench's, or the application metric's).
    pub unit: String,
    pub higher_is_better: bool,
    pub mode: Mode,
    /// The A/A control (`native'`): a second native cell.
    pub control: bool,
    pub image: String,
    /// The cell's CPUs per rank (`matrix.cpus_per_task`), when set: not
    /// written otherwise, so reports without it read as before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpus_per_task: Option<u32>,
    pub cell_key: String,
    /// Launches with a value at this size.
    pub launches: usize,
    /// The cell's value at this size: the location (see the method) of its
    /// launches' values.
    pub value: f64,
    /// value(mode) / value(native).
    pub ratio: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub verdict: Option<Verdict>,
    /// Why there is no ratio, when there is none.
    pub note: String,
}

impl Entry {
    /// The mode as reports name it: `native'` for the control.
    pub fn mode_label(&self) -> String {
        if self.control {
            format!("{}'", self.mode)
        } else {
            self.mode.to_string()
        }
    }
}

/// The unit's name and which way is better, for a cell: hybench's unit, or
/// the application metric's.
pub fn unit_of(
    scenario: &Scenario,
    cell: &Cell,
    stored: hybrun_core::schema::Unit,
) -> (String, bool) {
    match scenario.app_of(cell) {
        Some(app) => (app.metric.unit().to_owned(), app.metric.higher_is_better()),
        None => (stored.name().to_owned(), stored.higher_is_better()),
    }
}

/// The values of one cell at one size: per launch, the launch's value, and
/// (when resampling samples) its per-iteration samples.
struct CellSize<'a> {
    unit: hybrun_core::schema::Unit,
    per_launch: Vec<(u32, f64)>,
    rows: Vec<&'a StoredRow>,
}

fn by_cell_size(rows: &[StoredRow]) -> BTreeMap<(&str, u64), CellSize<'_>> {
    let mut m: BTreeMap<(&str, u64), CellSize> = BTreeMap::new();
    for r in rows {
        let e = m
            .entry((r.cell_key.as_str(), r.row.size_bytes))
            .or_insert_with(|| CellSize {
                unit: r.row.unit,
                per_launch: Vec::new(),
                rows: Vec::new(),
            });
        e.per_launch.push((r.launch, r.row.median));
        e.rows.push(r);
    }
    m
}

/// Per-iteration samples of one cell at one size (every launch's, evenly
/// thinned); None when the run kept none for it (an application's cell).
fn samples_of(cs: &CellSize, cell_key: &str, map: &SampleMap) -> Option<Vec<f64>> {
    let mut v = Vec::new();
    for &(launch, _) in &cs.per_launch {
        let s = map.get(&(cell_key.to_owned(), launch, cs.rows[0].row.size_bytes))?;
        let step = s.len().div_ceil(SAMPLES_PER_LAUNCH).max(1);
        v.extend(s.iter().step_by(step));
    }
    (!v.is_empty()).then_some(v)
}

/// A seed per (cell, reference, size), so an interval does not depend on
/// which other cells the run has.
fn entry_seed(seed: u64, a: &str, b: &str, size: u64) -> u64 {
    let mut h = seed ^ size.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for byte in a.bytes().chain([0]).chain(b.bytes()) {
        h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3);
    }
    h
}

/// One size's (launch, value) pairs as [`headline::Launches`].
fn one_size(values: &[(u32, f64)]) -> headline::Launches {
    values
        .iter()
        .map(|&(launch, v)| (launch, BTreeMap::from([(0, v)])))
        .collect()
}

/// The ratio of `num`'s launches to `den`'s of two different runs (nothing to
/// pair), located as `opts` says, with its interval; why not, when too few.
pub fn ratio_of_launches(
    num: &[(u32, f64)],
    den: &[(u32, f64)],
    opts: &Options,
    seed: u64,
) -> Result<RatioCi, String> {
    headline::compare_unpaired(&one_size(num), &one_size(den), opts, seed).map(|c| c.ci.as_ratio())
}

/// The ratio of `num` to `den` paired by round (launch number): the location
/// over rounds of the two launches' ratio, with its interval; why not, when
/// fewer than 2 rounds have both.
pub fn ratio_of_rounds(
    num: &[(u32, f64)],
    den: &[(u32, f64)],
    opts: &Options,
    seed: u64,
) -> Result<RatioCi, String> {
    headline::compare(&one_size(num), &one_size(den), opts, seed).map(|c| c.ci.as_ratio())
}

/// The ratio of medians of two pools of samples, with its interval.
fn ratio_of_samples(
    num: &[f64],
    den: &[f64],
    opts: &Options,
    seed: u64,
) -> Result<RatioCi, String> {
    if num.len() < 2 || den.len() < 2 {
        return Err(format!(
            "no CI: {} and {} samples (at least 2 each; add launches)",
            num.len(),
            den.len()
        ));
    }
    stats::bootstrap_ratio_of_medians(num, den, 0.95, opts.resamples, &mut Rng::new(seed))
        .map_err(|e| e.to_string())
}

/// The native cell (not the control) of every group.
pub fn native_of(scenario: &Scenario) -> HashMap<String, &Cell> {
    scenario
        .cells
        .iter()
        .filter(|c| c.mode == Mode::Native && !c.is_control())
        .map(|c| (c.group_key(), c))
        .collect()
}

/// Every per-size entry of a run, in the scenario's cell order.
pub fn analyse(data: &RunData, opts: &Options, samples: Option<&SampleMap>) -> Vec<Entry> {
    let table = by_cell_size(&data.rows);
    let native_of = native_of(&data.scenario);
    let mut out = Vec::new();
    for cell in &data.scenario.cells {
        let sizes: BTreeSet<u64> = table
            .keys()
            .filter(|(k, _)| *k == cell.key)
            .map(|(_, s)| *s)
            .collect();
        for size in sizes {
            let cs = &table[&(cell.key.as_str(), size)];
            let (unit, higher_is_better) = unit_of(&data.scenario, cell, cs.unit);
            let pool = match (opts.resample, samples) {
                (Resample::Samples, Some(map)) => samples_of(cs, &cell.key, map),
                _ => None,
            };
            let launches: Vec<f64> = cs.per_launch.iter().map(|&(_, v)| v).collect();
            let value = match &pool {
                Some(p) => stats::median(p).unwrap_or(f64::NAN),
                None => opts.location.of(&mut launches.clone()),
            };
            let mut e = Entry {
                benchmark: cell.benchmark.clone(),
                setting: cell.setting(),
                group: cell.group_key(),
                size_bytes: size,
                unit,
                higher_is_better,
                mode: cell.mode,
                control: cell.is_control(),
                image: cell.image_label(),
                cpus_per_task: cell.shape.cpus_per_task,
                cell_key: cell.key.clone(),
                launches: cs.per_launch.len(),
                value,
                ratio: None,
                ci_low: None,
                ci_high: None,
                verdict: None,
                note: String::new(),
            };
            let native = native_of
                .get(&cell.group_key())
                .filter(|n| n.key != cell.key)
                .and_then(|n| table.get(&(n.key.as_str(), size)).map(|t| (n, t)));
            if cell.mode == Mode::Native && !cell.is_control() {
                // The reference itself.
            } else if let Some((native, ncs)) = native {
                let seed = entry_seed(opts.seed, &cell.key, &native.key, size);
                let theirs_pool = match (&pool, samples) {
                    (Some(_), Some(map)) => samples_of(ncs, &native.key, map),
                    _ => None,
                };
                let result = match (&pool, &theirs_pool) {
                    (Some(mine), Some(theirs)) => ratio_of_samples(mine, theirs, opts, seed),
                    _ => ratio_of_rounds(&cs.per_launch, &ncs.per_launch, opts, seed),
                };
                match result {
                    Ok(ci) => {
                        e.ratio = Some(ci.ratio);
                        e.ci_low = Some(ci.low);
                        e.ci_high = Some(ci.high);
                        e.verdict = Some(Verdict::of(&ci, opts.tolerance, higher_is_better));
                    }
                    Err(why) => e.note = why,
                }
            } else {
                e.note = "no native result at this size".into();
            }
            out.push(e);
        }
    }
    out
}

/// Which libmpi a cell's ranks mapped.
#[derive(Debug, Clone, Serialize)]
pub struct Library {
    pub cell_key: String,
    pub benchmark: Workload,
    pub mode: Mode,
    pub image: String,
    pub mpi_profile: String,
    pub mpi_library: String,
    pub inode: u64,
    pub dev: String,
    /// Every rank mapped the same file, in every launch.
    pub uniform: bool,
    pub container: String,
    /// What the (dev, inode) says, against native's.
    pub meaning: String,
}

pub fn libraries(data: &RunData) -> Vec<Library> {
    let mut seen: BTreeMap<&str, Vec<&StoredRow>> = BTreeMap::new();
    for r in &data.rows {
        seen.entry(r.cell_key.as_str()).or_default().push(r);
    }
    let native_file: HashMap<String, (u64, String)> = data
        .scenario
        .cells
        .iter()
        .filter(|c| c.mode == Mode::Native && !c.is_control())
        .filter_map(|c| {
            let r = seen.get(c.key.as_str())?.first()?;
            Some((
                c.mpi.clone(),
                (r.row.mpi_library_inode, r.row.mpi_library_dev.clone()),
            ))
        })
        .collect();
    let mut out = Vec::new();
    for cell in &data.scenario.cells {
        // An application does not say which libmpi it mapped; the control maps
        // what native maps.
        if cell.is_control() || data.scenario.app_of(cell).is_some() {
            continue;
        }
        let Some(rows) = seen.get(cell.key.as_str()) else {
            continue;
        };
        let mut files: Vec<(String, u64, String, String)> = rows
            .iter()
            .map(|r| {
                (
                    r.row.mpi_library.clone(),
                    r.row.mpi_library_inode,
                    r.row.mpi_library_dev.clone(),
                    r.row
                        .container
                        .map_or_else(String::new, |c| c.name().to_owned()),
                )
            })
            .collect();
        files.sort();
        files.dedup();
        let uniform = rows.iter().all(|r| r.row.mpi_library_uniform) && files.len() == 1;
        for (lib, inode, dev, container) in files {
            let meaning = match (cell.mode, native_file.get(&cell.mpi)) {
                (Mode::Native, _) => "the host's library".to_owned(),
                (_, Some((ni, nd))) if *ni == inode && *nd == dev => {
                    "the host's library (same file as native)".to_owned()
                }
                (_, Some(_)) => "the image's own library (not native's file)".to_owned(),
                (_, None) => "unknown (no native cell to compare with)".to_owned(),
            };
            out.push(Library {
                cell_key: cell.key.clone(),
                benchmark: cell.benchmark.clone(),
                mode: cell.mode,
                image: cell.image_label(),
                mpi_profile: cell.mpi.clone(),
                mpi_library: lib,
                inode,
                dev,
                uniform,
                container,
                meaning,
            });
        }
    }
    out
}

/// A failed launch, for the report.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    pub cell_key: String,
    pub launch: u32,
    pub benchmark: Workload,
    pub mode: Mode,
    pub status: Outcome,
    pub reason: String,
    pub stderr_tail: String,
}

pub fn failures(data: &RunData) -> Vec<Failure> {
    data.records
        .iter()
        .filter(|r| r.status != Outcome::Ok)
        .map(|r| Failure {
            cell_key: r.cell_key.clone(),
            launch: r.launch,
            benchmark: r.benchmark.clone(),
            mode: r.mode,
            status: r.status,
            reason: r.reason.clone().unwrap_or_default(),
            stderr_tail: r.stderr_tail.clone().unwrap_or_default(),
        })
        .collect()
}

/// Everything a report holds.
#[derive(Debug, Serialize)]
pub struct Report {
    pub campaign: String,
    pub run_id: String,
    pub run_dir: String,
    pub method: String,
    pub options: Options,
    pub launches_ok: usize,
    pub launches_failed: usize,
    pub launches_planned: usize,
    /// Per benchmark (or application), mode and setting: one ratio over all sizes.
    pub headline: Vec<Headline>,
    /// Per setting: the A/A control, native' / native (the measured noise floor).
    pub controls: Vec<Control>,
    /// Set when a control is not equivalent: the run was too noisy to trust.
    pub noise_warning: Option<String>,
    pub entries: Vec<Entry>,
    pub libraries: Vec<Library>,
    pub failures: Vec<Failure>,
}

pub fn build(data: &RunData, opts: &Options) -> anyhow::Result<Report> {
    let samples = match opts.resample {
        Resample::Samples => Some(results::read_samples(&data.dir)?),
        Resample::Launches => None,
    };
    let entries = analyse(data, opts, samples.as_ref());
    let (headline, controls) = headline::compute(data, opts, None);
    let noise_warning = headline::noise_warning(&controls);
    let failures = failures(data);
    Ok(Report {
        campaign: data.scenario.name.clone(),
        run_id: data
            .dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        run_dir: data.dir.display().to_string(),
        method: opts.method(),
        options: *opts,
        launches_ok: data.records.len() - failures.len(),
        launches_failed: failures.len(),
        launches_planned: data.scenario.cells.len() * data.scenario.launches as usize,
        headline,
        controls,
        noise_warning,
        entries,
        libraries: libraries(data),
        failures,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::results::{Store, results_rows, test_record};
    use crate::campaign::rundir::store_scenario;
    use crate::campaign::scenario::{Environment, parse};
    use hybrun_core::schema::{ResultRow, SCHEMA_VERSION};
    use hybrun_core::vocab::MpiAbi;

    fn scenario(dir: &Path, control: bool) -> Scenario {
        std::fs::create_dir_all(dir.join("img")).unwrap();
        std::fs::write(dir.join("hybench"), "").unwrap();
        let mut env = Environment::default();
        env.hybench_override
            .insert(MpiAbi::Mpich, dir.join("hybench"));
        let text = format!(
            "name = \"t\"\ncontrol = {control}\n[stop]\nci_width = 0.05\nmax_launches = 9\n[matrix]\nbenchmark = [\"latency\"]\nmode = [\"native\", \"hybrid\"]\nimage = [\"img\"]\n"
        );
        parse(&text, &dir.join("s.toml"), &env).unwrap()
    }

    /// Stores, for each (cell, launches), one row per (size, value) per launch.
    /// Per launch, (size, value) pairs.
    type Launches = Vec<Vec<(u64, f64)>>;

    fn store_runs(dir: &Path, s: &Scenario, cells: &[(&Cell, Launches)]) {
        let run = dir.join("run");
        std::fs::create_dir_all(&run).unwrap();
        store_scenario(&run, s).unwrap();
        let mut store = Store::open(&run).unwrap();
        for (cell, launches) in cells {
            for (launch, values) in launches.iter().enumerate() {
                let rows: Vec<ResultRow> = values
                    .iter()
                    .map(|&(size, v)| ResultRow {
                        benchmark: "latency".into(),
                        size_bytes: size,
                        median: v,
                        schema_version: SCHEMA_VERSION,
                        ..Default::default()
                    })
                    .collect();
                let rows = results_rows(cell, launch as u32, &rows).unwrap();
                let record = test_record(&cell.key, launch as u32);
                store.append(&rows, b"", record).unwrap();
            }
        }
    }

    fn at8(values: &[f64]) -> Vec<Vec<(u64, f64)>> {
        values.iter().map(|&v| vec![(8, v)]).collect()
    }

    /// A run whose native launches measure `native` and hybrid ones `hybrid`.
    fn run_with(dir: &Path, native: &[f64], hybrid: &[f64]) -> Scenario {
        let s = scenario(dir, false);
        store_runs(
            dir,
            &s,
            &[(&s.cells[0], at8(native)), (&s.cells[1], at8(hybrid))],
        );
        s
    }

    #[test]
    fn stop_rule_asks_for_launches_until_the_ci_is_narrow() {
        let dir = tempfile::tempdir().unwrap();
        let s = run_with(
            dir.path(),
            &[1.0, 1.01, 0.99, 1.0, 1.01, 0.99],
            &[1.0, 1.5, 2.0, 0.7, 1.8, 1.2],
        );
        let wide = groups_needing_launches(&s, &dir.path().join("run"), &[0, 1], 0.05).unwrap();
        assert_eq!(wide, HashSet::from([s.cells[0].group_key()]));

        let dir = tempfile::tempdir().unwrap();
        let s = run_with(
            dir.path(),
            &[1.0, 1.001, 0.999, 1.0, 1.001, 0.999],
            &[1.1, 1.1, 1.101, 1.1, 1.1, 1.101],
        );
        let wide = groups_needing_launches(&s, &dir.path().join("run"), &[0, 1], 0.05).unwrap();
        assert!(wide.is_empty(), "{wide:?}");
        // And the report reads the same run: hybrid is 10% slower, beyond ±3%.
        let data = load(&dir.path().join("run")).unwrap();
        let entries = analyse(&data, &Options::of(&s), None);
        let hybrid = entries.iter().find(|e| e.mode == Mode::Hybrid).unwrap();
        assert_eq!(hybrid.verdict, Some(Verdict::Slower));
        assert!((hybrid.ratio.unwrap() - 1.1).abs() < 2e-3);
        // Five rounds are too few for a 95% interval at all.
        let dir = tempfile::tempdir().unwrap();
        let s = run_with(dir.path(), &[1.0; 5], &[1.1; 5]);
        let data = load(&dir.path().join("run")).unwrap();
        let report = build(&data, &Options::of(&s)).unwrap();
        assert!(report.headline[0].ratio.is_none());
        assert!(
            report.headline[0].note.contains("at least 6"),
            "{:?}",
            report.headline[0]
        );
    }

    #[test]
    fn the_headline_is_one_ratio_over_sizes_with_its_worst_size_and_the_control() {
        let dir = tempfile::tempdir().unwrap();
        let s = scenario(dir.path(), true);
        let (native, control, hybrid) = (&s.cells[0], &s.cells[1], &s.cells[2]);
        assert!(control.is_control() && hybrid.mode == Mode::Hybrid);
        // Hybrid: 2% slower at 8 B, 8% slower at 1 MiB; every launch alike
        // but for a small jitter. The control: native again.
        let launch = |a: f64, b: f64, j: f64| vec![(8, a * (1.0 + j)), (1 << 20, b * (1.0 + j))];
        let jit = [0.0, 0.001, -0.001, 0.002, -0.002, 0.0];
        let of = |a: f64, b: f64| jit.iter().map(|&j| launch(a, b, j)).collect::<Vec<_>>();
        store_runs(
            dir.path(),
            &s,
            &[
                (native, of(1.0, 100.0)),
                (control, of(1.0, 100.0)),
                (hybrid, of(1.02, 108.0)),
            ],
        );
        let data = load(&dir.path().join("run")).unwrap();
        let report = build(&data, &Options::of(&s)).unwrap();
        assert_eq!(report.headline.len(), 1, "one container mode");
        let h = &report.headline[0];
        let want = (1.02_f64 * 1.08).sqrt();
        assert!((h.ratio.unwrap() - want).abs() < 1e-3, "{h:?}");
        assert_eq!(h.verdict, Some(Verdict::Slower));
        assert_eq!(h.sizes, 2);
        let worst = h.worst.unwrap();
        assert_eq!(worst.size_bytes, 1 << 20);
        assert!((worst.ratio - 1.08).abs() < 1e-3);
        let c = h.control.expect("the control attached");
        assert_eq!(c.verdict, Verdict::Equivalent);
        assert_eq!(report.controls.len(), 1);
        assert!(report.noise_warning.is_none());
        // Per size, the control is an entry of its own, against native.
        let entries: Vec<&Entry> = report.entries.iter().filter(|e| e.control).collect();
        assert_eq!(entries.len(), 2);
        assert!(entries.iter().all(|e| e.mode_label() == "native'"));
        // report.json names what the issue asks for.
        let json = serde_json::to_value(&report).unwrap();
        let h = &json["headline"][0];
        for key in [
            "benchmark",
            "mode",
            "setting",
            "ratio",
            "ci_low",
            "ci_high",
            "verdict",
        ] {
            assert!(!h[key].is_null(), "headline.{key}: {h}");
        }
        for key in ["ratio", "ci_low", "ci_high", "verdict"] {
            assert!(!h["control"][key].is_null(), "headline.control.{key}: {h}");
        }
        assert_eq!(h["benchmark"], "latency");
        assert_eq!(h["mode"], "hybrid");
    }

    #[test]
    fn a_control_that_is_not_equivalent_warns_the_run_is_too_noisy() {
        let dir = tempfile::tempdir().unwrap();
        let s = scenario(dir.path(), true);
        let jit = [0.0, 0.001, -0.001, 0.002, -0.002, 0.0];
        let of = |a: f64| jit.iter().map(|&j| vec![(8, a + j)]).collect::<Vec<_>>();
        store_runs(
            dir.path(),
            &s,
            &[
                (&s.cells[0], of(1.0)),
                (&s.cells[1], of(1.1)),
                (&s.cells[2], of(1.0)),
            ],
        );
        let data = load(&dir.path().join("run")).unwrap();
        let report = build(&data, &Options::of(&s)).unwrap();
        let w = report.noise_warning.expect("a warning");
        assert!(
            w.contains("too noisy to trust") && w.contains("--exclusive"),
            "{w}"
        );
        assert_eq!(report.controls[0].verdict, Some(Verdict::Slower));
    }
}
