//! `report.json`: the whole report, as the analysis holds it.

use super::super::analysis::Report;

/// The report as pretty-printed JSON.
pub fn report(r: &Report) -> anyhow::Result<Vec<u8>> {
    Ok(serde_json::to_vec_pretty(r)?)
}
