//! `report.md`: the report for people. A header with the launches and the
//! method, the headline (one ratio per benchmark, setting and mode, and the
//! A/A control: [`super::summary`]), then per benchmark and setting the
//! verdict counts per mode, the table of every size and mode and links to the
//! plots; then which libmpi each mode mapped, and the failed launches with the
//! end of their output.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use super::plots::plot_stem;
use super::size_label;
use crate::campaign::analysis::{Entry, Report};
use crate::campaign::scenario::Workload;
use hybrun_core::vocab::Mode;

fn num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    let a = v.abs();
    if a >= 1000.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The Markdown report; `plots` are the files written (only those are linked).
pub fn report(r: &Report, plots: &[PathBuf]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Campaign `{}`, run `{}`\n", r.campaign, r.run_id);
    let _ = writeln!(
        md,
        "Launches: {} ok, {} failed ({} planned before any stop rule). Run directory: `{}`.\n",
        r.launches_ok, r.launches_failed, r.launches_planned, r.run_dir
    );
    let _ = writeln!(
        md,
        "Method: {}. Ratio = mode / native (for latency above 1 is slower, for bandwidth below 1 is slower).\n",
        r.method
    );
    super::summary::markdown(&mut md, r);
    // One section per benchmark and setting, in the order of the entries.
    let mut sections: Vec<(&Workload, &str)> = Vec::new();
    for e in &r.entries {
        let k = (&e.benchmark, e.setting.as_str());
        if !sections.contains(&k) {
            sections.push(k);
        }
    }
    for (bench, setting) in sections {
        let rows: Vec<&Entry> = r
            .entries
            .iter()
            .filter(|e| e.benchmark == *bench && e.setting == setting)
            .collect();
        section(&mut md, bench, setting, &rows, plots);
    }
    libraries(&mut md, r);
    failures(&mut md, r);
    md
}

/// One benchmark and setting: verdict counts, the table, the plot links.
fn section(md: &mut String, bench: &Workload, setting: &str, rows: &[&Entry], plots: &[PathBuf]) {
    let _ = writeln!(md, "## {bench} ({setting})\n");
    let unit = rows.first().map_or("", |e| e.unit.as_str());
    // Verdict counts per mode: the summary line people read first.
    let mut counts: BTreeMap<String, BTreeMap<&str, usize>> = BTreeMap::new();
    for e in rows {
        if e.mode != Mode::Native || e.control {
            let v = e.verdict.map_or("no CI", |v| v.name());
            *counts
                .entry(format!("{} {}", e.mode_label(), e.image))
                .or_default()
                .entry(v)
                .or_default() += 1;
        }
    }
    for (mode, c) in &counts {
        let parts: Vec<String> = c
            .iter()
            .map(|(v, n)| format!("{v} at {n} size{}", if *n == 1 { "" } else { "s" }))
            .collect();
        let _ = writeln!(md, "- **{}**: {}", mode.trim(), parts.join(", "));
    }
    if !counts.is_empty() {
        md.push('\n');
    }
    table(md, unit, rows);
    let has = |name: &str| {
        plots
            .iter()
            .any(|p| p.file_name().is_some_and(|f| f == name))
    };
    let stem = plot_stem(bench, setting);
    let links: Vec<String> = [
        ("value vs size", "value"),
        ("ratio to native vs size", "ratio"),
    ]
    .iter()
    .filter(|(_, k)| has(&format!("{stem}-{k}.svg")))
    .map(|(label, k)| format!("[{label}](plots/{stem}-{k}.svg)"))
    .collect();
    if !links.is_empty() {
        let _ = writeln!(md, "Plots: {}\n", links.join(", "));
    }
}

/// Every size and mode of a section.
fn table(md: &mut String, unit: &str, rows: &[&Entry]) {
    let _ = writeln!(
        md,
        "| size | mode | image | launches | value ({unit}) | ratio to native | 95% CI | verdict |"
    );
    let _ = writeln!(md, "|---:|---|---|---:|---:|---:|---|---|");
    let mut sizes: Vec<u64> = rows.iter().map(|e| e.size_bytes).collect();
    sizes.sort_unstable();
    sizes.dedup();
    for size in sizes {
        for e in rows.iter().filter(|e| e.size_bytes == size) {
            let native = e.mode == Mode::Native && !e.control;
            let ci = match (e.ci_low, e.ci_high) {
                (Some(a), Some(b)) => format!("[{:.3}, {:.3}]", a, b),
                _ if native => String::new(),
                _ => e.note.clone(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} | {} | {} |",
                size_label(size),
                e.mode_label(),
                e.image,
                e.launches,
                num(e.value),
                e.ratio
                    .map_or(if native { "1".into() } else { "-".into() }, |x| format!(
                        "{x:.3}"
                    )),
                ci,
                e.verdict.map_or("", |v| v.name())
            );
        }
    }
    md.push('\n');
}

fn libraries(md: &mut String, r: &Report) {
    let _ = writeln!(md, "## Which libmpi each mode mapped\n");
    let _ = writeln!(
        md,
        "From hybench's `mpi_library`, `mpi_library_inode` and `mpi_library_dev` (rank 0's /proc/self/maps; `uniform`: every rank mapped the same file).\n"
    );
    let _ = writeln!(
        md,
        "| benchmark | mode | image | MPI profile | library | inode | dev | uniform | container | meaning |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---:|---|---|---|---|");
    for l in &r.libraries {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | `{}` | {} | {} | {} | {} | {} |",
            l.benchmark,
            l.mode,
            l.image,
            l.mpi_profile,
            l.mpi_library,
            l.inode,
            l.dev,
            l.uniform,
            l.container,
            l.meaning
        );
    }
    md.push('\n');
}

fn failures(md: &mut String, r: &Report) {
    if r.failures.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Failed launches\n");
    for f in &r.failures {
        let _ = writeln!(
            md,
            "- `{}` launch {} ({} {}): {}",
            f.cell_key, f.launch, f.benchmark, f.mode, f.reason
        );
        let tail: Vec<&str> = f.stderr_tail.lines().rev().take(6).collect();
        if !tail.is_empty() {
            let _ = writeln!(md, "\n  ```");
            for line in tail.iter().rev() {
                let _ = writeln!(md, "  {line}");
            }
            let _ = writeln!(md, "  ```");
        }
    }
    md.push('\n');
}
