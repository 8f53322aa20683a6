//! `report.csv`: one row per mode, size and setting, with the method on every
//! row (a row read alone still says how its interval was computed).

use super::super::analysis::Report;

/// The entries as CSV. A `cpus_per_task` column only when some cell sets
/// it, last, so that the files of scenarios without it keep their columns.
pub fn report(r: &Report) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let cpus = r.entries.iter().any(|e| e.cpus_per_task.is_some());
    let mut header = vec![
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
    ];
    if cpus {
        header.push("cpus_per_task");
    }
    w.write_record(&header)?;
    let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    for e in &r.entries {
        let mut row = vec![
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
        ];
        if cpus {
            row.push(e.cpus_per_task.map(|c| c.to_string()).unwrap_or_default());
        }
        w.write_record(&row)?;
    }
    Ok(String::from_utf8(
        w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?,
    )?)
}
