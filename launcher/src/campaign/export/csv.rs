//! `report.csv`: one row per mode, size and setting, with the method on every
//! row (a row read alone still says how its interval was computed).

use super::super::analysis::Report;

/// The entries as CSV.
pub fn report(r: &Report) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "benchmark",
        "setting",
        "size_bytes",
        "unit",
        "mode",
        "image",
        "cell_key",
        "launches",
        "value",
        "ratio",
        "ci_low",
        "ci_high",
        "verdict",
        "note",
        "method",
    ])?;
    let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    for e in &r.entries {
        w.write_record([
            e.benchmark.to_string(),
            e.setting.clone(),
            e.size_bytes.to_string(),
            e.unit.clone(),
            e.mode_label(),
            e.image.clone(),
            e.cell_key.clone(),
            e.launches.to_string(),
            e.value.to_string(),
            opt(e.ratio),
            opt(e.ci_low),
            opt(e.ci_high),
            e.verdict.map(|v| v.name().to_owned()).unwrap_or_default(),
            e.note.clone(),
            r.method.clone(),
        ])?;
    }
    Ok(String::from_utf8(
        w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?,
    )?)
}
