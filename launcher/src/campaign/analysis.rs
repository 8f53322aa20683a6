//! What the numbers of a run say: per benchmark, setting and size, the median
//! of each mode, its ratio to native with a bootstrap 95% CI and a verdict
//! against a tolerance band; which libmpi each mode really mapped; the failed
//! launches; and the stop rule's question, which groups still need launches.
//! [`super::export`] writes the result for people and programs.
//!
//! The statistics are `hybrun_core::stats`'s: the value of one launch at one
//! size is hybench's median over its iterations; a mode's value is the median
//! over its launches; the CI resamples launches by default (see
//! [`super::scenario::Resample`]), and says so in every output.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::results::{self, LaunchRecord, Outcome, SampleMap, StoredRow};
use super::rundir;
use super::scenario::{Cell, Resample, Scenario};
use hybrun_core::schema::Unit;
use hybrun_core::stats::{self, RatioCi, Rng, Verdict};
use hybrun_core::vocab::{Benchmark, Mode};

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
    pub resamples: u32,
    pub seed: u64,
}

impl Options {
    pub fn of(scenario: &Scenario) -> Options {
        Options {
            tolerance: scenario.tolerance,
            resample: scenario.resample,
            resamples: RESAMPLES,
            seed: scenario.seed,
        }
    }

    /// One sentence on the method, for every output.
    pub fn method(&self) -> String {
        let unit = match self.resample {
            Resample::Launches => {
                "resampling launches (each launch's median at that size is one value)".to_owned()
            }
            Resample::Samples => format!(
                "resampling per-iteration samples pooled over launches (at most {SAMPLES_PER_LAUNCH} evenly spaced per launch)"
            ),
        };
        format!(
            "95% percentile bootstrap CI of the ratio of medians, {} resamples, {unit}, seed {}; \
             verdict `equivalent` only when the whole CI lies within ±{}% of 1",
            self.resamples,
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
    pub benchmark: Benchmark,
    /// The group: nodes x ranks per node, MPI profile, sizes, env, options.
    pub setting: String,
    #[serde(skip)]
    pub group: String,
    pub size_bytes: u64,
    pub unit: Unit,
    pub higher_is_better: bool,
    pub mode: Mode,
    pub image: String,
    pub cell_key: String,
    /// Launches with a value at this size.
    pub launches: usize,
    /// Median over launches of each launch's median.
    pub median: f64,
    /// value(mode) / value(native), median of medians.
    pub ratio: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub verdict: Option<Verdict>,
    /// Why there is no ratio, when there is none.
    pub note: String,
}

/// The values of one cell at one size: per launch, the launch's median, and
/// (when resampling samples) its per-iteration samples.
struct CellSize<'a> {
    unit: Unit,
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

/// Values to resample for one cell at one size.
fn values(
    cs: &CellSize,
    cell_key: &str,
    resample: Resample,
    samples: Option<&SampleMap>,
) -> Vec<f64> {
    match (resample, samples) {
        (Resample::Samples, Some(map)) => {
            let mut v = Vec::new();
            for &(launch, _) in &cs.per_launch {
                if let Some(s) = map.get(&(cell_key.to_owned(), launch, cs.rows[0].row.size_bytes))
                {
                    let step = s.len().div_ceil(SAMPLES_PER_LAUNCH).max(1);
                    v.extend(s.iter().step_by(step));
                }
            }
            v
        }
        _ => cs.per_launch.iter().map(|&(_, m)| m).collect(),
    }
}

/// A seed per (cell, size), so an interval does not depend on which other
/// cells the run has.
fn entry_seed(seed: u64, a: &str, b: &str, size: u64) -> u64 {
    let mut h = seed ^ size.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for byte in a.bytes().chain([0]).chain(b.bytes()) {
        h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3);
    }
    h
}

/// The ratio of `num` to `den` with its interval; None and why when too few.
pub fn ratio(num: &[f64], den: &[f64], opts: &Options, seed: u64) -> Result<RatioCi, String> {
    if num.len() < 2 || den.len() < 2 {
        return Err(format!(
            "no CI: {} and {} values (at least 2 each; add launches)",
            num.len(),
            den.len()
        ));
    }
    stats::bootstrap_ratio_of_medians(num, den, 0.95, opts.resamples, &mut Rng::new(seed))
        .map_err(|e| e.to_string())
}

/// Every entry of a run, in the scenario's cell order.
pub fn analyse(data: &RunData, opts: &Options, samples: Option<&SampleMap>) -> Vec<Entry> {
    let table = by_cell_size(&data.rows);
    let cells = &data.scenario.cells;
    let native_of: HashMap<String, &Cell> = cells
        .iter()
        .filter(|c| c.mode == Mode::Native)
        .map(|c| (c.group_key(), c))
        .collect();
    let mut out = Vec::new();
    for cell in cells {
        let sizes: BTreeSet<u64> = table
            .keys()
            .filter(|(k, _)| *k == cell.key)
            .map(|(_, s)| *s)
            .collect();
        for size in sizes {
            let cs = &table[&(cell.key.as_str(), size)];
            let mine = values(cs, &cell.key, opts.resample, samples);
            let mut e = Entry {
                benchmark: cell.benchmark,
                setting: cell.setting(),
                group: cell.group_key(),
                size_bytes: size,
                unit: cs.unit,
                higher_is_better: cs.unit.higher_is_better(),
                mode: cell.mode,
                image: cell.image_label(),
                cell_key: cell.key.clone(),
                launches: cs.per_launch.len(),
                // The median of what the CI resamples, so the ratio shown is
                // the ratio of the medians shown.
                median: stats::median(&mine).unwrap_or(f64::NAN),
                ratio: None,
                ci_low: None,
                ci_high: None,
                verdict: None,
                note: String::new(),
            };
            if cell.mode != Mode::Native {
                match native_of
                    .get(&cell.group_key())
                    .and_then(|n| table.get(&(n.key.as_str(), size)).map(|t| (n, t)))
                {
                    None => e.note = "no native result at this size".into(),
                    Some((native, ncs)) => {
                        let theirs = values(ncs, &native.key, opts.resample, samples);
                        let seed = entry_seed(opts.seed, &cell.key, &native.key, size);
                        match ratio(&mine, &theirs, opts, seed) {
                            Ok(ci) => {
                                e.ratio = Some(ci.ratio);
                                e.ci_low = Some(ci.low);
                                e.ci_high = Some(ci.high);
                                e.verdict =
                                    Some(Verdict::of(&ci, opts.tolerance, e.higher_is_better));
                            }
                            Err(why) => {
                                e.ratio = stats::median(&theirs).map(|n| e.median / n);
                                e.note = why;
                            }
                        }
                    }
                }
            }
            out.push(e);
        }
    }
    out
}

/// The groups (by [`Cell::group_key`]) among `cells` whose ratio CIs are not
/// all narrower than `target` yet: the stop rule's "more launches" set.
pub fn groups_needing_launches(
    scenario: &Scenario,
    dir: &Path,
    cells: &[usize],
    target: f64,
) -> anyhow::Result<HashSet<String>> {
    let data = load(dir)?;
    let opts = Options::of(scenario);
    let samples = match opts.resample {
        Resample::Samples => Some(results::read_samples(dir)?),
        Resample::Launches => None,
    };
    let wanted: HashSet<String> = cells
        .iter()
        .map(|&c| scenario.cells[c].group_key())
        .collect();
    let with_native: HashSet<String> = scenario
        .cells
        .iter()
        .filter(|c| c.mode == Mode::Native)
        .map(|c| c.group_key())
        .collect();
    let mut wide = HashSet::new();
    for e in analyse(&data, &opts, samples.as_ref()) {
        if e.mode == Mode::Native || !wanted.contains(&e.group) || !with_native.contains(&e.group) {
            continue;
        }
        let narrow = match (e.ratio, e.ci_low, e.ci_high) {
            (Some(r), Some(lo), Some(hi)) => (hi - lo) / r.abs() <= target,
            _ => false,
        };
        if !narrow {
            wide.insert(e.group.clone());
        }
    }
    Ok(wide)
}

/// Which libmpi a cell's ranks mapped.
#[derive(Debug, Clone, Serialize)]
pub struct Library {
    pub cell_key: String,
    pub benchmark: Benchmark,
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
        .filter(|c| c.mode == Mode::Native)
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
                benchmark: cell.benchmark,
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
    pub benchmark: Benchmark,
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
            benchmark: r.benchmark,
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

    fn scenario(dir: &Path) -> Scenario {
        std::fs::create_dir_all(dir.join("img")).unwrap();
        std::fs::write(dir.join("hybench"), "").unwrap();
        let mut env = Environment::default();
        env.hybench_override
            .insert(MpiAbi::Mpich, dir.join("hybench"));
        let text = "name = \"t\"\n[stop]\nci_width = 0.05\nmax_launches = 9\n[matrix]\nbenchmark = [\"latency\"]\nmode = [\"native\", \"hybrid\"]\nimage = [\"img\"]\n";
        parse(text, &dir.join("s.toml"), &env).unwrap()
    }

    /// A run whose native launches measure `native` and hybrid ones `hybrid`.
    fn run_with(dir: &Path, native: &[f64], hybrid: &[f64]) -> Scenario {
        let s = scenario(dir);
        let run = dir.join("run");
        std::fs::create_dir_all(&run).unwrap();
        store_scenario(&run, &s).unwrap();
        let mut store = Store::open(&run).unwrap();
        for (cell, values) in [(&s.cells[0], native), (&s.cells[1], hybrid)] {
            for (launch, &v) in values.iter().enumerate() {
                let row = ResultRow {
                    benchmark: "latency".into(),
                    size_bytes: 8,
                    median: v,
                    schema_version: SCHEMA_VERSION,
                    ..Default::default()
                };
                let rows = results_rows(cell, launch as u32, &[row]).unwrap();
                let record = test_record(&cell.key, launch as u32);
                store.append(&rows, b"", record).unwrap();
            }
        }
        s
    }

    #[test]
    fn stop_rule_asks_for_launches_until_the_ci_is_narrow() {
        let dir = tempfile::tempdir().unwrap();
        let s = run_with(dir.path(), &[1.0, 1.01, 0.99], &[1.0, 1.5, 2.0]);
        let wide = groups_needing_launches(&s, &dir.path().join("run"), &[0, 1], 0.05).unwrap();
        assert_eq!(wide, HashSet::from([s.cells[0].group_key()]));

        let dir = tempfile::tempdir().unwrap();
        let s = run_with(dir.path(), &[1.0, 1.001, 0.999], &[1.1, 1.1, 1.101]);
        let wide = groups_needing_launches(&s, &dir.path().join("run"), &[0, 1], 0.05).unwrap();
        assert!(wide.is_empty(), "{wide:?}");
        // And the report reads the same run: hybrid is 10% slower, beyond ±3%.
        let data = load(&dir.path().join("run")).unwrap();
        let entries = analyse(&data, &Options::of(&s), None);
        let hybrid = entries.iter().find(|e| e.mode == Mode::Hybrid).unwrap();
        assert_eq!(hybrid.verdict, Some(Verdict::Slower));
        assert!((hybrid.ratio.unwrap() - 1.1).abs() < 1e-9);
    }
}
