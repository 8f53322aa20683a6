//! `hybrun compare RUN_A RUN_B`: the same cells in two runs (e.g. before and
//! after a site change): per cell, the headline ratio B / A over every size
//! with its bootstrap 95% CI and verdict; then per size, each run's value and
//! the ratio B / A with its interval.
//!
//! Cells match by what they measure, not by key: benchmark, mode (the control
//! is `native'`), image file name, nodes x ranks, MPI profile, sizes, extra
//! environment and options (the key also hashes image paths and hybench
//! builds, which a comparison across runs is free to change).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::size_label;
use crate::campaign::analysis::headline::{self, Launches};
use crate::campaign::analysis::{self, Options, RunData, unit_of};
use crate::campaign::scenario::{Cell, Resample, Workload};
use hybrun_core::stats::Verdict;

/// One cell over every size, in both runs.
#[derive(Debug, Clone, Serialize)]
pub struct CellComparison {
    pub benchmark: Workload,
    pub setting: String,
    pub mode: String,
    pub image: String,
    pub unit: String,
    pub sizes: usize,
    pub launches_a: usize,
    pub launches_b: usize,
    /// Geometric mean over sizes of B / A.
    pub ratio: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub verdict: Option<Verdict>,
    pub note: String,
}

/// One cell at one size, in both runs.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub benchmark: Workload,
    pub setting: String,
    pub mode: String,
    pub image: String,
    pub size_bytes: u64,
    pub unit: String,
    pub launches_a: usize,
    pub launches_b: usize,
    /// Each run's value: the location (see the method) of its launches.
    pub value_a: f64,
    pub value_b: f64,
    /// value(B) / value(A).
    pub ratio: f64,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    pub verdict: Option<Verdict>,
    pub note: String,
}

#[derive(Debug, Serialize)]
pub struct Comparison {
    pub run_a: String,
    pub run_b: String,
    pub method: String,
    pub headline: Vec<CellComparison>,
    pub rows: Vec<Row>,
    /// Cells present in one run only.
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
}

fn label(c: &Cell) -> String {
    format!("{} | {} {}", c.group_key(), c.mode_label(), c.image_label())
}

/// Every cell of a run with its launches, by label.
fn cells_of(data: &RunData) -> BTreeMap<String, (&Cell, String, bool, Launches)> {
    let mut by_key = headline::per_launch(&data.rows);
    let mut out = BTreeMap::new();
    for cell in &data.scenario.cells {
        let (stored, launches) = by_key.remove(cell.key.as_str()).unwrap_or_default();
        let (unit, higher) = unit_of(&data.scenario, cell, stored);
        out.insert(label(cell), (cell, unit, higher, launches));
    }
    out
}

/// A seed per label and size, so an interval does not depend on the others.
fn seed_of(seed: u64, label: &str, size: u64) -> u64 {
    let mut h = seed ^ size.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for byte in label.bytes() {
        h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3);
    }
    h
}

/// Each launch's value at `size`.
fn at(launches: &Launches, size: u64) -> Vec<(u32, f64)> {
    launches
        .iter()
        .filter_map(|(&launch, l)| Some((launch, *l.get(&size)?)))
        .collect()
}

pub fn compare(a: &Path, b: &Path, opts: &Options) -> anyhow::Result<Comparison> {
    // Only launches are independent between two runs (per-iteration samples
    // of two days are not one population): the comparison resamples launches.
    let opts = Options {
        resample: Resample::Launches,
        ..*opts
    };
    let da = analysis::load(a)?;
    let db = analysis::load(b)?;
    let ca = cells_of(&da);
    let cb = cells_of(&db);
    let mut headline = Vec::new();
    let mut rows = Vec::new();
    for (lbl, (cell, unit, higher, la)) in &ca {
        let Some((_, _, _, lb)) = cb.get(lbl) else {
            continue;
        };
        let mut h = CellComparison {
            benchmark: cell.benchmark.clone(),
            setting: cell.setting(),
            mode: cell.mode_label(),
            image: cell.image_label(),
            unit: unit.clone(),
            sizes: 0,
            launches_a: la.len(),
            launches_b: lb.len(),
            ratio: None,
            ci_low: None,
            ci_high: None,
            verdict: None,
            note: String::new(),
        };
        match headline::compare_unpaired(lb, la, &opts, seed_of(opts.seed, lbl, u64::MAX)) {
            Ok(c) => {
                h.sizes = c.sizes.len();
                h.ratio = Some(c.ci.ratio);
                h.ci_low = Some(c.ci.low);
                h.ci_high = Some(c.ci.high);
                h.verdict = Some(Verdict::of(&c.ci.as_ratio(), opts.tolerance, *higher));
            }
            Err(why) => h.note = why,
        }
        headline.push(h);
        let mut sizes: Vec<u64> = la.values().flat_map(|l| l.keys().copied()).collect();
        sizes.sort_unstable();
        sizes.dedup();
        for size in sizes {
            let (va, vb) = (at(la, size), at(lb, size));
            if vb.is_empty() {
                continue;
            }
            let location = |v: &[(u32, f64)]| {
                opts.location
                    .of(&mut v.iter().map(|&(_, x)| x).collect::<Vec<_>>())
            };
            let (value_a, value_b) = (location(&va), location(&vb));
            let mut row = Row {
                benchmark: cell.benchmark.clone(),
                setting: cell.setting(),
                mode: cell.mode_label(),
                image: cell.image_label(),
                size_bytes: size,
                unit: unit.clone(),
                launches_a: va.len(),
                launches_b: vb.len(),
                value_a,
                value_b,
                ratio: value_b / value_a,
                ci_low: None,
                ci_high: None,
                verdict: None,
                note: String::new(),
            };
            match analysis::ratio_of_launches(&vb, &va, &opts, seed_of(opts.seed, lbl, size)) {
                Ok(ci) => {
                    row.ci_low = Some(ci.low);
                    row.ci_high = Some(ci.high);
                    row.verdict = Some(Verdict::of(&ci, opts.tolerance, *higher));
                }
                Err(why) => row.note = why,
            }
            rows.push(row);
        }
    }
    let only = |x: &BTreeMap<String, _>, y: &BTreeMap<String, _>| -> Vec<String> {
        x.keys().filter(|k| !y.contains_key(*k)).cloned().collect()
    };
    Ok(Comparison {
        run_a: a.display().to_string(),
        run_b: b.display().to_string(),
        method: opts.method(),
        headline,
        rows,
        only_in_a: only(&ca, &cb),
        only_in_b: only(&cb, &ca),
    })
}

fn interval(lo: Option<f64>, hi: Option<f64>, note: &str) -> String {
    match (lo, hi) {
        (Some(a), Some(b)) => format!("[{a:.3}, {b:.3}]"),
        _ => note.to_owned(),
    }
}

pub fn markdown(c: &Comparison) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Comparison\n\nA: `{}`\n\nB: `{}`\n", c.run_a, c.run_b);
    let _ = writeln!(md, "Ratio = B / A. Method: {}.\n", c.method);
    let _ = writeln!(md, "## Per cell, over every size\n");
    let _ = writeln!(
        md,
        "| benchmark | setting | mode | image | unit | sizes | launches A, B | B/A | 95% CI | verdict (B vs A) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---:|---|---:|---|---|");
    for h in &c.headline {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {}, {} | {} | {} | {} |",
            h.benchmark,
            h.setting,
            h.mode,
            h.image,
            h.unit,
            h.sizes,
            h.launches_a,
            h.launches_b,
            h.ratio.map_or_else(|| "-".into(), |r| format!("{r:.3}")),
            interval(h.ci_low, h.ci_high, &h.note),
            h.verdict.map_or("", |v| v.name())
        );
    }
    let _ = writeln!(md, "\n## Per size\n");
    let _ = writeln!(
        md,
        "| benchmark | setting | mode | image | size | value A | value B | unit | B/A | 95% CI | verdict (B vs A) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---:|---:|---:|---|---:|---|---|");
    for r in &c.rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.4} | {:.4} | {} | {:.3} | {} | {} |",
            r.benchmark,
            r.setting,
            r.mode,
            r.image,
            size_label(r.size_bytes),
            r.value_a,
            r.value_b,
            r.unit,
            r.ratio,
            interval(r.ci_low, r.ci_high, &r.note),
            r.verdict.map_or("", |v| v.name())
        );
    }
    for (name, list) in [("A", &c.only_in_a), ("B", &c.only_in_b)] {
        if !list.is_empty() {
            let _ = writeln!(md, "\nCells only in {name}:\n");
            for l in list {
                let _ = writeln!(md, "- {l}");
            }
        }
    }
    md
}

pub fn csv(c: &Comparison) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    for r in &c.rows {
        w.serialize(r)?;
    }
    Ok(String::from_utf8(
        w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?,
    )?)
}
