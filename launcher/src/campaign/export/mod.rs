//! A run's analysis written out: `report.md` for people ([`markdown`]),
//! `report.csv` and `report.json` for programs ([`csv`], [`json`]), SVG plots
//! ([`plots`]), the headline lines ([`summary`]) and the comparison of two
//! runs ([`compare`]). Each format has
//! its own module; this one writes a run's files together.

pub mod compare;
pub mod csv;
pub mod json;
pub mod markdown;
pub mod plots;
pub mod summary;

use std::path::Path;

use super::analysis::{self, Options, Report};
use super::rundir::write_atomic;

/// A message size as people write it: `8`, `4K`, `1M`, `2G`.
pub fn size_label(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 && b % (1 << 30) == 0 => format!("{}G", b >> 30),
        b if b >= 1 << 20 && b % (1 << 20) == 0 => format!("{}M", b >> 20),
        b if b >= 1 << 10 && b % (1 << 10) == 0 => format!("{}K", b >> 10),
        b => b.to_string(),
    }
}

/// Writes report.md, report.csv, report.json and plots/ into the run directory.
pub fn write_all(dir: &Path, opts: Option<Options>) -> anyhow::Result<Report> {
    let data = analysis::load(dir)?;
    let opts = opts.unwrap_or_else(|| Options::of(&data.scenario));
    let report = analysis::build(&data, &opts)?;
    let plots = plots::write(&dir.join("plots"), &report)?;
    write_atomic(
        &dir.join("report.md"),
        markdown::report(&report, &plots).as_bytes(),
    )?;
    write_atomic(&dir.join("report.csv"), csv::report(&report)?.as_bytes())?;
    write_atomic(&dir.join("report.json"), &json::report(&report)?)?;
    Ok(report)
}
