//! Calibration shown, not assumed: how often would this run's method give a
//! false verdict, and does it see a real difference?
//!
//! Both questions are answered from a run's own recorded launches. A draw
//! picks some rounds (launch numbers) at random, takes the two cells'
//! launches of those rounds (launched next to each other, so the interleaving
//! stays what it was), and computes the headline and the per-size intervals
//! and verdicts exactly as the report does ([`super::headline::compare`],
//! [`super::ratio_of_launches`], the run's tolerance and location).
//!
//! - A/A: every control (native') against its native. Both are the same
//!   thing, so `slower` and `faster` are false verdicts; their rate is what a
//!   user of this machine should expect, and must stay within the CI's 5%.
//! - Power: a cell with a known, real difference against its reference (e.g.
//!   a transport disabled through its environment): the expected verdict's
//!   rate.

use std::collections::BTreeMap;

use anyhow::{Context, bail};
use serde::Serialize;

use super::headline::{self, Launches};
use super::{Options, RunData, native_of, ratio_of_rounds, unit_of};
use crate::campaign::scenario::Cell;
use hybrun_core::stats::{Rng, Verdict};

/// How often each verdict came out.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Tally {
    pub equivalent: usize,
    pub slower: usize,
    pub faster: usize,
    pub inconclusive: usize,
    /// Comparisons without an interval (too few launches or sizes).
    pub no_ci: usize,
}

impl Tally {
    fn add(&mut self, verdict: Option<Verdict>) {
        match verdict {
            Some(Verdict::Equivalent) => self.equivalent += 1,
            Some(Verdict::Slower) => self.slower += 1,
            Some(Verdict::Faster) => self.faster += 1,
            Some(Verdict::Inconclusive) => self.inconclusive += 1,
            None => self.no_ci += 1,
        }
    }

    pub fn total(&self) -> usize {
        self.equivalent + self.slower + self.faster + self.inconclusive + self.no_ci
    }

    /// The share of `verdict` among all comparisons.
    pub fn rate(&self, verdict: Verdict) -> f64 {
        let n = match verdict {
            Verdict::Equivalent => self.equivalent,
            Verdict::Slower => self.slower,
            Verdict::Faster => self.faster,
            Verdict::Inconclusive => self.inconclusive,
        };
        n as f64 / self.total().max(1) as f64
    }

    /// The share of `slower` and `faster`: false verdicts when the two cells
    /// are the same thing.
    pub fn false_rate(&self) -> f64 {
        (self.slower + self.faster) as f64 / self.total().max(1) as f64
    }
}

/// One pair of cells, drawn many times.
#[derive(Debug, Clone, Serialize)]
pub struct Calibration {
    pub cell: String,
    pub reference: String,
    pub benchmark: String,
    pub setting: String,
    /// Rounds both cells have a launch in (what the draws pick from).
    pub rounds: usize,
    pub launches_per_draw: usize,
    pub draws: usize,
    /// The headline's verdicts, one per draw.
    pub headline: Tally,
    /// The per-size verdicts, one per draw and size.
    pub per_size: Tally,
}

/// What to draw.
#[derive(Debug, Clone, Copy)]
pub struct Draws {
    /// Rounds (launches of each cell) per comparison.
    pub launches: usize,
    pub draws: usize,
    pub seed: u64,
}

/// The pairs of an A/A calibration: every control and its native.
pub fn controls(data: &RunData) -> Vec<(&Cell, &Cell)> {
    let natives = native_of(&data.scenario);
    data.scenario
        .cells
        .iter()
        .filter(|c| c.is_control())
        .filter_map(|c| Some((c, *natives.get(&c.group_key())?)))
        .collect()
}

/// A cell of the run by key (or a unique key prefix).
pub fn cell_by_key<'a>(data: &'a RunData, key: &str) -> anyhow::Result<&'a Cell> {
    let found: Vec<&Cell> = data
        .scenario
        .cells
        .iter()
        .filter(|c| c.key.starts_with(key))
        .collect();
    match found.as_slice() {
        [one] => Ok(one),
        [] => bail!(
            "no cell of {} has a key starting with {key:?}; `hybrun campaign check` lists them",
            data.dir.display()
        ),
        many => bail!(
            "{} cells have a key starting with {key:?} ({}); give more of it",
            many.len(),
            many.iter()
                .map(|c| c.key.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// (round, value) of one cell at one size.
type Rounds = Vec<(u32, f64)>;

/// `launches`, restricted to `rounds`.
fn only(launches: &Launches, rounds: &[u32]) -> Launches {
    rounds
        .iter()
        .filter_map(|r| Some((*r, launches.get(r)?.clone())))
        .collect()
}

/// Draws `draws.draws` comparisons of `cell` against `reference`.
pub fn calibrate(
    data: &RunData,
    opts: &Options,
    cell: &Cell,
    reference: &Cell,
    draws: Draws,
) -> anyhow::Result<Calibration> {
    let by_cell = headline::per_launch(&data.rows);
    let empty = Default::default();
    let (stored, mine) = by_cell.get(cell.key.as_str()).unwrap_or(&empty);
    let (_, theirs) = by_cell.get(reference.key.as_str()).unwrap_or(&empty);
    let (_, higher_is_better) = unit_of(&data.scenario, cell, *stored);
    let mut rounds: Vec<u32> = mine
        .keys()
        .filter(|r| theirs.contains_key(r))
        .copied()
        .collect();
    if rounds.len() < draws.launches || draws.launches < headline::MIN_ROUNDS {
        bail!(
            "{} and {} share {} rounds; a draw of {} launches each needs at least that many \
             (and at least {}): run more launches, or draw fewer (--launches)",
            cell.key,
            reference.key,
            rounds.len(),
            draws.launches,
            headline::MIN_ROUNDS
        );
    }
    let mut rng = Rng::new(draws.seed);
    let mut result = Calibration {
        cell: cell.key.clone(),
        reference: reference.key.clone(),
        benchmark: cell.benchmark.to_string(),
        setting: cell.setting(),
        rounds: rounds.len(),
        launches_per_draw: draws.launches,
        draws: draws.draws,
        headline: Tally::default(),
        per_size: Tally::default(),
    };
    for _ in 0..draws.draws {
        rng.shuffle(&mut rounds);
        let picked = &rounds[..draws.launches];
        let (num, den) = (only(mine, picked), only(theirs, picked));
        let seed = rng.next_u64();
        let verdict = headline::compare(&num, &den, opts, seed)
            .ok()
            .map(|c| Verdict::of(&c.ci.as_ratio(), opts.tolerance, higher_is_better));
        result.headline.add(verdict);
        let mut sizes: BTreeMap<u64, (Rounds, Rounds)> = BTreeMap::new();
        for (side, cell) in [(0, &num), (1, &den)] {
            for (&round, values) in cell {
                for (&size, &v) in values {
                    let e = sizes.entry(size).or_default();
                    if side == 0 {
                        e.0.push((round, v));
                    } else {
                        e.1.push((round, v));
                    }
                }
            }
        }
        for (size, (a, b)) in sizes {
            let verdict = ratio_of_rounds(&a, &b, opts, seed ^ size)
                .ok()
                .map(|ci| Verdict::of(&ci, opts.tolerance, higher_is_better));
            result.per_size.add(verdict);
        }
    }
    Ok(result)
}

/// Every control of a run against its native.
pub fn calibrate_controls(
    data: &RunData,
    opts: &Options,
    draws: Draws,
) -> anyhow::Result<Vec<Calibration>> {
    let pairs = controls(data);
    if pairs.is_empty() {
        bail!(
            "{} has no A/A control (native') cells: run the scenario with control = true (the \
             default)",
            data.dir.display()
        );
    }
    pairs
        .into_iter()
        .map(|(c, n)| {
            calibrate(data, opts, c, n, draws).with_context(|| format!("the control {}", c.key))
        })
        .collect()
}

/// The calibrations as a Markdown table.
pub fn markdown(list: &[Calibration], opts: &Options) -> String {
    use std::fmt::Write as _;
    let mut md = String::new();
    let _ = writeln!(
        md,
        "Verdicts of random draws of rounds from the run's own launches; method: {}.\n",
        opts.method()
    );
    let _ = writeln!(
        md,
        "| cell | against | launches per draw | draws | headline: equivalent, slower, faster, inconclusive, no CI | headline slower+faster | per size: equivalent, slower, faster, inconclusive, no CI | per size slower+faster |"
    );
    let _ = writeln!(md, "|---|---|---:|---:|---|---:|---|---:|");
    let t = |t: &Tally| {
        format!(
            "{}, {}, {}, {}, {}",
            t.equivalent, t.slower, t.faster, t.inconclusive, t.no_ci
        )
    };
    for c in list {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.1}% | {} | {:.1}% |",
            c.cell,
            c.reference,
            c.launches_per_draw,
            c.draws,
            t(&c.headline),
            c.headline.false_rate() * 100.0,
            t(&c.per_size),
            c.per_size.false_rate() * 100.0
        );
    }
    md
}
