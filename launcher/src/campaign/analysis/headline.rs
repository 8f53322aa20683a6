//! The headline: per benchmark (or application), container mode and setting,
//! one ratio to native over every size, with its 95% CI, verdict and worst
//! size; beside it the A/A control, native' / native, which measures how far
//! apart two launches of the same thing land on this machine.
//!
//! The comparison is paired by round: a round launches every cell of a
//! setting back to back, and on these machines a launch's speed is set mostly
//! by when it runs (the host puts the VM in a fast or a slow state for
//! seconds at a time: 0.18 vs 0.67 us at 8 B here), so the two launches of a
//! round share it and their ratio cancels it. Each round gives one value,
//! its geometric mean over sizes of mode / native, trimmed to the middle half
//! (the sizes of one launch stay one event, less the few a state change
//! part-way through spoiled: `hybrun_core::stats::round_value`); the
//! headline is their location over rounds
//! ([`Options::location`]: the median by default, with the distribution-free
//! interval of a median; the trimmed mean with a bootstrap of whole rounds:
//! `hybrun_core::stats::paired_ratio`). The worst size is the size with the
//! worst median ratio. The stop rule asks this module which groups are still
//! too wide.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use serde::Serialize;

use super::{Options, RunData, entry_seed, native_of, unit_of};
use crate::campaign::results::StoredRow;
use crate::campaign::scenario::{Cell, Scenario, Workload};
use hybrun_core::schema::Unit;
use hybrun_core::stats::{self, HeadlineCi, Rng, Verdict};
use hybrun_core::vocab::Mode;

/// Bootstrap resamples of the stop rule's intervals: its question is only
/// whether a width is below a target, which 1000 resamples answer to well
/// under a tenth of a percent, at half the cost between rounds.
pub const STOP_RESAMPLES: u32 = 1000;

/// The fewest rounds (launches of each cell) an interval is given for. With
/// fewer than 6, not even [min, max] of the observations holds the median
/// with 95% probability (1 - 2 x 0.5^n < 0.95 for n <= 5), and a bootstrap
/// interval of so few values is only as wide as they happen to be.
pub const MIN_ROUNDS: usize = 6;

/// A ratio with its 95% CI and verdict.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub ratio: f64,
    pub ci_low: f64,
    pub ci_high: f64,
    pub verdict: Verdict,
}

impl Interval {
    fn of(ci: &HeadlineCi, tolerance: f64, higher_is_better: bool) -> Interval {
        Interval {
            ratio: ci.ratio,
            ci_low: ci.low,
            ci_high: ci.high,
            verdict: Verdict::of(&ci.as_ratio(), tolerance, higher_is_better),
        }
    }

    /// (high - low) / ratio: what the stop rule compares with its target.
    pub fn relative_width(&self) -> f64 {
        (self.ci_high - self.ci_low) / self.ratio.abs()
    }
}

/// The size at which a mode is furthest on the worse side of native.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Worst {
    pub size_bytes: u64,
    /// The ratio at that size (mode / native).
    pub ratio: f64,
}

/// One container mode of one benchmark setting, against native.
#[derive(Debug, Clone, Serialize)]
pub struct Headline {
    pub benchmark: Workload,
    pub mode: Mode,
    /// nodes x ranks per node, MPI profile, sizes, env, options.
    pub setting: String,
    pub image: String,
    pub cell_key: String,
    #[serde(skip)]
    pub group: String,
    pub unit: String,
    pub higher_is_better: bool,
    /// Geometric mean over sizes of mode / native; None without an interval.
    pub ratio: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub verdict: Option<Verdict>,
    /// Sizes in the mean (those measured in every launch of both cells).
    pub sizes: usize,
    /// Rounds with a launch of both (the pairs the ratio is made of).
    pub rounds: usize,
    pub launches: usize,
    pub native_launches: usize,
    /// Where it is worst, when there is more than one size.
    pub worst: Option<Worst>,
    /// The setting's A/A control (native' / native), when the run has one.
    pub control: Option<Interval>,
    /// Why there is no interval, when there is none.
    pub note: String,
}

/// The A/A control of one benchmark setting: native' / native.
#[derive(Debug, Clone, Serialize)]
pub struct Control {
    pub benchmark: Workload,
    pub setting: String,
    pub cell_key: String,
    #[serde(skip)]
    pub group: String,
    pub ratio: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub verdict: Option<Verdict>,
    /// Rounds with a launch of both.
    pub rounds: usize,
    pub launches: usize,
    pub native_launches: usize,
    pub note: String,
}

impl Control {
    pub fn interval(&self) -> Option<Interval> {
        Some(Interval {
            ratio: self.ratio?,
            ci_low: self.ci_low?,
            ci_high: self.ci_high?,
            verdict: self.verdict?,
        })
    }
}

/// Per cell: its stored unit and, per launch, the value at each size.
pub type Launches = BTreeMap<u32, BTreeMap<u64, f64>>;

/// Every cell's launches, by cell key.
pub fn per_launch(rows: &[StoredRow]) -> HashMap<&str, (Unit, Launches)> {
    let mut m: HashMap<&str, (Unit, Launches)> = HashMap::new();
    for r in rows {
        m.entry(r.cell_key.as_str())
            .or_insert_with(|| (r.row.unit, BTreeMap::new()))
            .1
            .entry(r.launch)
            .or_default()
            .insert(r.row.size_bytes, r.row.median);
    }
    m
}

/// Two cells compared over the sizes both measured in every launch used.
pub struct Compared {
    pub ci: HeadlineCi,
    pub sizes: Vec<u64>,
    /// Launches of each cell used (rounds, when paired).
    pub launches: usize,
}

/// The sizes measured in every one of `launches`.
fn common_sizes<'a>(launches: impl Iterator<Item = &'a BTreeMap<u64, f64>>) -> Vec<u64> {
    let mut common: Option<BTreeSet<u64>> = None;
    for launch in launches {
        let these: BTreeSet<u64> = launch.keys().copied().collect();
        common = Some(match common {
            None => these,
            Some(before) => before.intersection(&these).copied().collect(),
        });
    }
    common.unwrap_or_default().into_iter().collect()
}

fn rows(launches: &[&BTreeMap<u64, f64>], sizes: &[u64]) -> Vec<Vec<f64>> {
    launches
        .iter()
        .map(|launch| sizes.iter().map(|s| launch[s]).collect())
        .collect()
}

/// `num` against `den` of one run, paired by round: the rounds both cells
/// have a launch in, each round's two launches launched next to each other
/// (`hybrun_core::stats::paired_ratio`); over the sizes measured in every one
/// of those launches.
pub fn compare(
    num: &Launches,
    den: &Launches,
    opts: &Options,
    seed: u64,
) -> Result<Compared, String> {
    let rounds: Vec<u32> = num
        .keys()
        .filter(|r| den.contains_key(r))
        .copied()
        .collect();
    if rounds.len() < MIN_ROUNDS {
        return Err(format!(
            "no CI: {} round(s) with a launch of both (at least {MIN_ROUNDS}; add launches)",
            rounds.len()
        ));
    }
    let a: Vec<&BTreeMap<u64, f64>> = rounds.iter().map(|r| &num[r]).collect();
    let b: Vec<&BTreeMap<u64, f64>> = rounds.iter().map(|r| &den[r]).collect();
    over_sizes(&a, &b, stats::paired_ratio, opts, seed)
}

/// `num` against `den` of two different runs (nothing to pair): each
/// cell's location per size, resampling whole launches
/// (`hybrun_core::stats::bootstrap_geomean_ratio`).
pub fn compare_unpaired(
    num: &Launches,
    den: &Launches,
    opts: &Options,
    seed: u64,
) -> Result<Compared, String> {
    if num.len() < MIN_ROUNDS || den.len() < MIN_ROUNDS {
        return Err(format!(
            "no CI: {} and {} launches (at least {MIN_ROUNDS} each; add launches)",
            num.len(),
            den.len()
        ));
    }
    let a: Vec<&BTreeMap<u64, f64>> = num.values().collect();
    let b: Vec<&BTreeMap<u64, f64>> = den.values().collect();
    over_sizes(&a, &b, stats::bootstrap_geomean_ratio, opts, seed)
}

/// The signature of the two interval functions of `hybrun_core::stats`.
type Bootstrap = fn(
    &[Vec<f64>],
    &[Vec<f64>],
    stats::Location,
    f64,
    u32,
    &mut Rng,
) -> Result<HeadlineCi, stats::RatioError>;

/// `interval` of `a` against `b` over the sizes every launch of both measured.
fn over_sizes(
    a: &[&BTreeMap<u64, f64>],
    b: &[&BTreeMap<u64, f64>],
    interval: Bootstrap,
    opts: &Options,
    seed: u64,
) -> Result<Compared, String> {
    let sizes = common_sizes(a.iter().chain(b).copied());
    if sizes.is_empty() {
        return Err("no size was measured in every launch of both cells".into());
    }
    let ci = interval(
        &rows(a, &sizes),
        &rows(b, &sizes),
        opts.location,
        0.95,
        opts.resamples,
        &mut Rng::new(seed),
    )
    .map_err(|e| e.to_string())?;
    Ok(Compared {
        ci,
        sizes,
        launches: a.len().min(b.len()),
    })
}

/// The worst size of a comparison (only when there is more than one size).
fn worst(c: &Compared, higher_is_better: bool) -> Option<Worst> {
    if c.sizes.len() < 2 {
        return None;
    }
    let pairs = c.sizes.iter().copied().zip(c.ci.per_size.iter().copied());
    let pick = if higher_is_better {
        pairs.min_by(|a, b| a.1.total_cmp(&b.1))
    } else {
        pairs.max_by(|a, b| a.1.total_cmp(&b.1))
    };
    pick.map(|(size_bytes, ratio)| Worst { size_bytes, ratio })
}

/// The interval fields of a comparison, or why there are none.
struct Judged {
    interval: Option<Interval>,
    compared: Option<Compared>,
    note: String,
}

fn judge(result: Result<Compared, String>, opts: &Options, higher_is_better: bool) -> Judged {
    match result {
        Ok(c) => Judged {
            interval: Some(Interval::of(&c.ci, opts.tolerance, higher_is_better)),
            compared: Some(c),
            note: String::new(),
        },
        Err(note) => Judged {
            interval: None,
            compared: None,
            note,
        },
    }
}

/// Headlines and controls of a run; `only` limits them to some groups (the
/// stop rule's).
pub fn compute(
    data: &RunData,
    opts: &Options,
    only: Option<&HashSet<String>>,
) -> (Vec<Headline>, Vec<Control>) {
    let scenario = &data.scenario;
    let launches = per_launch(&data.rows);
    let natives = native_of(scenario);
    let none = (Unit::default(), Launches::new());
    let of = |cell: &Cell| launches.get(cell.key.as_str()).unwrap_or(&none);
    let wanted = |cell: &Cell| only.is_none_or(|g| g.contains(&cell.group_key()));
    let mut controls = Vec::new();
    let mut headlines = Vec::new();
    for cell in scenario.cells.iter().filter(|c| wanted(c)) {
        if cell.mode == Mode::Native && !cell.is_control() {
            continue;
        }
        let Some(native) = natives.get(&cell.group_key()) else {
            continue;
        };
        let (stored, mine) = of(cell);
        let (_, theirs) = of(native);
        let (unit, higher_is_better) = unit_of(scenario, cell, *stored);
        let seed = entry_seed(opts.seed, &cell.key, &native.key, u64::MAX);
        let judged = judge(compare(mine, theirs, opts, seed), opts, higher_is_better);
        let i = judged.interval;
        if cell.is_control() {
            controls.push(Control {
                benchmark: cell.benchmark.clone(),
                setting: cell.setting(),
                cell_key: cell.key.clone(),
                group: cell.group_key(),
                ratio: i.map(|i| i.ratio),
                ci_low: i.map(|i| i.ci_low),
                ci_high: i.map(|i| i.ci_high),
                verdict: i.map(|i| i.verdict),
                rounds: judged.compared.as_ref().map_or(0, |c| c.launches),
                launches: mine.len(),
                native_launches: theirs.len(),
                note: judged.note,
            });
            continue;
        }
        headlines.push(Headline {
            benchmark: cell.benchmark.clone(),
            mode: cell.mode,
            setting: cell.setting(),
            image: cell.image_label(),
            cell_key: cell.key.clone(),
            group: cell.group_key(),
            unit,
            higher_is_better,
            ratio: i.map(|i| i.ratio),
            ci_low: i.map(|i| i.ci_low),
            ci_high: i.map(|i| i.ci_high),
            verdict: i.map(|i| i.verdict),
            sizes: judged.compared.as_ref().map_or(0, |c| c.sizes.len()),
            rounds: judged.compared.as_ref().map_or(0, |c| c.launches),
            launches: mine.len(),
            native_launches: theirs.len(),
            worst: judged
                .compared
                .as_ref()
                .and_then(|c| worst(c, higher_is_better)),
            control: None,
            note: judged.note,
        });
    }
    for h in &mut headlines {
        h.control = controls
            .iter()
            .find(|c| c.group == h.group)
            .and_then(Control::interval);
    }
    (headlines, controls)
}

/// What the report says when a control is not equivalent (or has no
/// interval): two launches of the same thing differ this much here, so no
/// verdict of the run can be trusted.
pub fn noise_warning(controls: &[Control]) -> Option<String> {
    let noisy: Vec<String> = controls
        .iter()
        .filter(|c| c.verdict != Some(Verdict::Equivalent))
        .map(|c| {
            let what = match c.interval() {
                Some(i) => format!(
                    "{} {:.3}x [{:.3}, {:.3}]",
                    i.verdict, i.ratio, i.ci_low, i.ci_high
                ),
                None => c.note.clone(),
            };
            format!("{} ({}): {what}", c.benchmark, c.setting)
        })
        .collect();
    if noisy.is_empty() {
        return None;
    }
    Some(format!(
        "the A/A control (native' / native: two identical native cells, launched like the others) \
         is not equivalent for {}. Two launches of the same thing differ that much here, so this \
         run was too noisy to trust: add launches (raise [stop] budget and max_launches), run on a \
         quieter allocation (sbatch --exclusive, nothing else on the nodes), and run it again",
        noisy.join("; ")
    ))
}

/// The groups (by [`Cell::group_key`]) among `cells` whose headline or
/// control intervals are not all narrower than `target` yet: the stop rule's
/// "more launches" set.
pub fn groups_needing_launches(
    scenario: &Scenario,
    dir: &Path,
    cells: &[usize],
    target: f64,
) -> anyhow::Result<HashSet<String>> {
    let data = super::load(dir)?;
    let mut opts = Options::of(scenario);
    opts.resamples = STOP_RESAMPLES;
    let wanted: HashSet<String> = cells
        .iter()
        .map(|&c| scenario.cells[c].group_key())
        .collect();
    let (headlines, controls) = compute(&data, &opts, Some(&wanted));
    let widths = headlines
        .iter()
        .map(|h| {
            let i = h.ratio.zip(h.ci_low).zip(h.ci_high);
            (&h.group, i.map(|((r, lo), hi)| (hi - lo) / r.abs()))
        })
        .chain(
            controls
                .iter()
                .map(|c| (&c.group, c.interval().map(|i| i.relative_width()))),
        );
    let mut wide = HashSet::new();
    for (group, width) in widths {
        if width.is_none_or(|w| w > target) {
            wide.insert(group.clone());
        }
    }
    Ok(wide)
}
