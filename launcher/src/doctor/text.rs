//! The human report: one line per item under its section, fixes indented.

use std::fmt::Write as _;

use super::{Level, Report};

/// The report as text.
pub fn text(report: &Report) -> String {
    let mut out = format!("hybrun doctor on {}\n", report.host);
    let mut section = "";
    for item in &report.items {
        if item.section != section {
            section = item.section;
            let _ = writeln!(out, "\n[{section}]");
        }
        let _ = writeln!(
            out,
            "{:<7} {}: {}",
            item.status.name(),
            item.name,
            item.detail
        );
        if let Some(fix) = &item.fix {
            let _ = writeln!(out, "        fix: {fix}");
        }
    }
    let worst = report.items.iter().map(|i| i.status).max();
    let _ = writeln!(
        out,
        "\n{} items: {} OK, {} WARN, {} MISSING{}",
        report.items.len(),
        report.count(Level::Ok),
        report.count(Level::Warn),
        report.count(Level::Missing),
        if worst == Some(Level::Ok) {
            ""
        } else {
            " (MISSING items are only needed for what they name)"
        }
    );
    if !report.required_missing.is_empty() {
        let _ = writeln!(
            out,
            "every launch needs, and this host lacks: {}",
            report.required_missing.join("; ")
        );
    }
    out
}
