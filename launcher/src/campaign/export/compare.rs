//! `hybrun compare RUN_A RUN_B`: the same cells in two runs (e.g. before and
//! after a site change), per size: the median in each run, the ratio B / A
//! with its bootstrap 95% CI and a verdict.
//!
//! Cells match by what they measure, not by key: benchmark, mode, image file
//! name, nodes x ranks, MPI profile, sizes, extra environment and options (the
//! key also hashes image paths and hybench builds, which a comparison across
//! runs is free to change).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use super::size_label;
use crate::campaign::analysis::{self, Options, RunData};
use crate::campaign::scenario::{Cell, Resample};
use hybrun_core::schema::Unit;
use hybrun_core::stats::{self, Verdict};
use hybrun_core::vocab::{Benchmark, Mode};

/// One cell at one size, in both runs.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub benchmark: Benchmark,
    pub setting: String,
    pub mode: Mode,
    pub image: String,
    pub size_bytes: u64,
    pub unit: Unit,
    pub launches_a: usize,
    pub launches_b: usize,
    pub median_a: f64,
    pub median_b: f64,
    /// median(B) / median(A).
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
    pub rows: Vec<Row>,
    /// Cells present in one run only.
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
}

fn label(c: &Cell) -> String {
    format!("{} | {} {}", c.group_key(), c.mode, c.image_label())
}

/// Per-launch medians by (label, size).
fn table(data: &RunData) -> BTreeMap<(String, u64), (Vec<f64>, Unit)> {
    let mut t: BTreeMap<(String, u64), (Vec<f64>, Unit)> = BTreeMap::new();
    for r in &data.rows {
        if let Some(c) = data.scenario.cell(&r.cell_key) {
            t.entry((label(c), r.row.size_bytes))
                .or_insert_with(|| (Vec::new(), r.row.unit))
                .0
                .push(r.row.median);
        }
    }
    t
}

pub fn compare(a: &Path, b: &Path, opts: &Options) -> anyhow::Result<Comparison> {
    let da = analysis::load(a)?;
    let db = analysis::load(b)?;
    let ta = table(&da);
    let tb = table(&db);
    let cells_a: BTreeMap<String, &Cell> =
        da.scenario.cells.iter().map(|c| (label(c), c)).collect();
    let cells_b: BTreeMap<String, &Cell> =
        db.scenario.cells.iter().map(|c| (label(c), c)).collect();
    let mut rows = Vec::new();
    for ((lbl, size), (va, unit)) in &ta {
        let Some((vb, _)) = tb.get(&(lbl.clone(), *size)) else {
            continue;
        };
        let cell = cells_a[lbl];
        let higher = unit.higher_is_better();
        let (ma, mb) = (
            stats::median(va).unwrap_or(f64::NAN),
            stats::median(vb).unwrap_or(f64::NAN),
        );
        let mut row = Row {
            benchmark: cell.benchmark,
            setting: cell.setting(),
            mode: cell.mode,
            image: cell.image_label(),
            size_bytes: *size,
            unit: *unit,
            launches_a: va.len(),
            launches_b: vb.len(),
            median_a: ma,
            median_b: mb,
            ratio: mb / ma,
            ci_low: None,
            ci_high: None,
            verdict: None,
            note: String::new(),
        };
        let seed = opts.seed ^ size.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ lbl.len() as u64;
        match analysis::ratio(vb, va, opts, seed) {
            Ok(ci) => {
                row.ci_low = Some(ci.low);
                row.ci_high = Some(ci.high);
                row.verdict = Some(Verdict::of(&ci, opts.tolerance, higher));
            }
            Err(why) => row.note = why,
        }
        rows.push(row);
    }
    let only = |x: &BTreeMap<String, &Cell>, y: &BTreeMap<String, &Cell>| -> Vec<String> {
        x.keys().filter(|k| !y.contains_key(*k)).cloned().collect()
    };
    // The comparison resamples launches: per-iteration samples of two runs
    // come from different days, and only launches are independent between them.
    let method = Options {
        resample: Resample::Launches,
        ..*opts
    }
    .method();
    Ok(Comparison {
        run_a: a.display().to_string(),
        run_b: b.display().to_string(),
        method,
        rows,
        only_in_a: only(&cells_a, &cells_b),
        only_in_b: only(&cells_b, &cells_a),
    })
}

pub fn markdown(c: &Comparison) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Comparison\n\nA: `{}`\n\nB: `{}`\n", c.run_a, c.run_b);
    let _ = writeln!(md, "Ratio = B / A. Method: {}.\n", c.method);
    let _ = writeln!(
        md,
        "| benchmark | setting | mode | image | size | median A | median B | unit | B/A | 95% CI | verdict (B vs A) |"
    );
    let _ = writeln!(md, "|---|---|---|---|---:|---:|---:|---|---:|---|---|");
    for r in &c.rows {
        let ci = match (r.ci_low, r.ci_high) {
            (Some(a), Some(b)) => format!("[{a:.3}, {b:.3}]"),
            _ => r.note.clone(),
        };
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {:.4} | {:.4} | {} | {:.3} | {} | {} |",
            r.benchmark,
            r.setting,
            r.mode,
            r.image,
            size_label(r.size_bytes),
            r.median_a,
            r.median_b,
            r.unit,
            r.ratio,
            ci,
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
