//! The headline, as people read it: one line per benchmark (or application),
//! setting and mode, "bind 1.004x native [0.991, 1.017] equivalent, at worst
//! +2.1% at 8", then the A/A control of the setting and, when the control is
//! not equivalent, the warning that the run was too noisy to trust. The same
//! lines end the terminal output of `hybrun campaign run` (like hyperfine's
//! summary) and open `report.md`.

use std::fmt::Write as _;

use super::size_label;
use crate::campaign::analysis::{Control, Headline, Report};
use crate::campaign::scenario::Workload;
use hybrun_core::stats::Verdict;

/// "1.004x native [0.991, 1.017] equivalent", or why there is no interval.
fn judged(
    ratio: Option<f64>,
    low: Option<f64>,
    high: Option<f64>,
    verdict: Option<Verdict>,
    note: &str,
) -> String {
    match (ratio, low, high, verdict) {
        (Some(r), Some(lo), Some(hi), Some(v)) => {
            format!("{r:.3}x native [{lo:.3}, {hi:.3}] {v}")
        }
        (Some(r), ..) => format!("{r:.3}x native (no CI: {note})"),
        _ => format!("no ratio: {note}"),
    }
}

/// ", at worst +6.1% at 32" (sizes in bytes as the tables write them).
fn worst(h: &Headline) -> String {
    match (&h.worst, h.benchmark.bench()) {
        (Some(w), Some(_)) => format!(
            ", at worst {:+.1}% at {}",
            (w.ratio - 1.0) * 100.0,
            size_label(w.size_bytes)
        ),
        _ => String::new(),
    }
}

/// Which way is better, for the setting's heading.
fn direction(higher_is_better: bool) -> &'static str {
    if higher_is_better {
        "higher is better, a ratio below 1 is slower"
    } else {
        "lower is better, a ratio above 1 is slower"
    }
}

/// The settings in report order: (benchmark, setting).
fn settings(r: &Report) -> Vec<(&Workload, &str)> {
    let mut out: Vec<(&Workload, &str)> = Vec::new();
    let all = r
        .headline
        .iter()
        .map(|h| (&h.benchmark, h.setting.as_str()))
        .chain(
            r.controls
                .iter()
                .map(|c| (&c.benchmark, c.setting.as_str())),
        );
    for k in all {
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

fn control_line(c: &Control) -> String {
    let what = judged(c.ratio, c.ci_low, c.ci_high, c.verdict, &c.note);
    format!(
        "{:<8} {what} (A/A control: native against itself, the noise floor; {} rounds)",
        "native'", c.rounds
    )
}

/// The headline as terminal lines.
pub fn lines(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    for (bench, setting) in settings(r) {
        let mine: Vec<&Headline> = r
            .headline
            .iter()
            .filter(|h| h.benchmark == *bench && h.setting == setting)
            .collect();
        let control = r
            .controls
            .iter()
            .find(|c| c.benchmark == *bench && c.setting == setting);
        let unit = mine.first().map(|h| (h.unit.as_str(), h.higher_is_better));
        let heading = match unit {
            Some((unit, higher)) => format!("{bench} ({setting}; {unit}, {})", direction(higher)),
            None => format!("{bench} ({setting})"),
        };
        out.push(heading);
        for h in mine {
            out.push(format!(
                "  {:<8} {}{} ({} rounds)",
                h.mode.name(),
                judged(h.ratio, h.ci_low, h.ci_high, h.verdict, &h.note),
                worst(h),
                h.rounds
            ));
        }
        if let Some(c) = control {
            out.push(format!("  {}", control_line(c)));
        }
    }
    if let Some(w) = &r.noise_warning {
        out.push(format!("warning: {w}"));
    }
    out
}

/// The headline section of `report.md`.
pub fn markdown(md: &mut String, r: &Report) {
    if r.headline.is_empty() && r.controls.is_empty() {
        return;
    }
    let _ = writeln!(md, "## Headline: how far inside is from outside\n");
    let _ = writeln!(
        md,
        "One ratio to native per benchmark, setting and mode over every size (the geometric \
         mean of the per-size ratios), its 95% CI and verdict, and the size where the mode is \
         furthest on the worse side; `native'` is the A/A control, native against itself: the \
         noise floor of this run.\n"
    );
    if let Some(w) = &r.noise_warning {
        let _ = writeln!(md, "> **Too noisy to trust:** {w}.\n");
    }
    let _ = writeln!(
        md,
        "| benchmark | setting | unit | mode | ratio to native | 95% CI | verdict | worst size | rounds |"
    );
    let _ = writeln!(md, "|---|---|---|---|---:|---|---|---|---|");
    let ci = |lo: Option<f64>, hi: Option<f64>, note: &str| match (lo, hi) {
        (Some(a), Some(b)) => format!("[{a:.3}, {b:.3}]"),
        _ => note.to_owned(),
    };
    let ratio = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |x| format!("{x:.3}"));
    for (bench, setting) in settings(r) {
        for h in r
            .headline
            .iter()
            .filter(|h| h.benchmark == *bench && h.setting == setting)
        {
            let _ = writeln!(
                md,
                "| {bench} | {setting} | {} | **{}** | {} | {} | **{}** | {} | {} |",
                h.unit,
                h.mode,
                ratio(h.ratio),
                ci(h.ci_low, h.ci_high, &h.note),
                h.verdict.map_or("-", |v| v.name()),
                worst(h).trim_start_matches(", at worst "),
                h.rounds
            );
        }
        for c in r
            .controls
            .iter()
            .filter(|c| c.benchmark == *bench && c.setting == setting)
        {
            let _ = writeln!(
                md,
                "| {bench} | {setting} | | native' (control) | {} | {} | {} | | {} |",
                ratio(c.ratio),
                ci(c.ci_low, c.ci_high, &c.note),
                c.verdict.map_or("-", |v| v.name()),
                c.rounds
            );
        }
    }
    md.push('\n');
}
