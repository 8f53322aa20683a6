//! SVG plots of a report (plotters, SVG backend only: no font or image stack).
//!
//! Per benchmark and setting: the value of each mode against the message
//! size (log-log), and each container mode's ratio to native with its 95% CI
//! as a band, the tolerance band drawn around 1.

use std::path::{Path, PathBuf};

use anyhow::anyhow;
use plotters::prelude::*;

use super::size_label;
use crate::campaign::analysis::{Entry, Report};
use crate::campaign::scenario::Workload;

const COLORS: [RGBColor; 6] = [BLACK, BLUE, RED, GREEN, MAGENTA, CYAN];
const SIZE: (u32, u32) = (900, 540);

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plot: {e:?}")
}

// Macros rather than functions: the two charts have different coordinate
// types (log-log and log-linear), which plotters spells out in long generics.

/// A white chart on an SVG file with the size axis below, log-scaled.
macro_rules! chart {
    ($root:expr, $caption:expr, $x:expr, $y:expr, $ydesc:expr) => {{
        $root.fill(&WHITE).map_err(err)?;
        let mut chart = ChartBuilder::on(&$root)
            .caption($caption, ("sans-serif", 18))
            .margin(12)
            .x_label_area_size(45)
            .y_label_area_size(70)
            .build_cartesian_2d($x.log_scale(), $y)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("message size (bytes)")
            .y_desc($ydesc)
            .x_label_formatter(&|x| size_label(x.round() as u64))
            .draw()
            .map_err(err)?;
        chart
    }};
}

/// One series: line, points and its legend entry.
macro_rules! series_line {
    ($chart:expr, $xy:expr, $color:expr, $name:expr) => {{
        let color: RGBColor = $color;
        let xy: Vec<(f64, f64)> = $xy;
        $chart
            .draw_series(LineSeries::new(xy.clone(), color.stroke_width(2)))
            .map_err(err)?
            .label($name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
        $chart
            .draw_series(xy.into_iter().map(|p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
    }};
}

/// The legend, then the file.
macro_rules! finish {
    ($chart:expr, $root:expr) => {{
        $chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()
            .map_err(err)?;
        $root.present().map_err(err)?;
    }};
}

/// The sections (benchmark, setting) in report order, with their entries.
fn sections(report: &Report) -> Vec<((Workload, String), Vec<&Entry>)> {
    let mut out: Vec<((Workload, String), Vec<&Entry>)> = Vec::new();
    for e in &report.entries {
        let k = (e.benchmark.clone(), e.setting.clone());
        match out.iter_mut().find(|(key, _)| *key == k) {
            Some((_, v)) => v.push(e),
            None => out.push((k, vec![e])),
        }
    }
    out
}

/// The series of a section: one per mode and image, points sorted by size.
/// Sizes of 0 (barrier) have no place on a log axis and are left out.
fn series<'a>(entries: &[&'a Entry]) -> Vec<(String, Vec<&'a Entry>)> {
    let mut out: Vec<(String, Vec<&Entry>)> = Vec::new();
    for e in entries
        .iter()
        .filter(|e| e.size_bytes > 0 && e.value.is_finite() && e.value > 0.0)
    {
        let name = if e.image.is_empty() {
            e.mode_label()
        } else {
            format!("{} ({})", e.mode_label(), e.image)
        };
        match out.iter_mut().find(|(n, _)| *n == name) {
            Some((_, v)) => v.push(e),
            None => out.push((name, vec![e])),
        }
    }
    for (_, v) in &mut out {
        v.sort_by_key(|e| e.size_bytes);
    }
    out
}

fn x_range(entries: &[&Entry]) -> Option<std::ops::Range<f64>> {
    let xs: Vec<f64> = entries
        .iter()
        .filter(|e| e.size_bytes > 0)
        .map(|e| e.size_bytes as f64)
        .collect();
    let lo = xs.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = xs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    lo.is_finite().then(|| (lo / 1.5)..(hi * 1.5).max(lo * 2.0))
}

/// Writes `<stem>-value.svg` and `<stem>-ratio.svg` per section; returns the files.
pub fn write(dir: &Path, report: &Report) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).map_err(|e| anyhow!("cannot create {}: {e}", dir.display()))?;
    let mut written = Vec::new();
    for ((bench, setting), entries) in sections(report) {
        let Some(xr) = x_range(&entries) else {
            continue;
        };
        let stem = plot_stem(&bench, &setting);
        let s = series(&entries);
        let path = dir.join(format!("{stem}-value.svg"));
        let title = format!("{bench}: value per mode ({setting})");
        if value_plot(&path, title, xr.clone(), &s, &entries[0].unit)? {
            written.push(path);
        }
        let path = dir.join(format!("{stem}-ratio.svg"));
        let title = format!("{bench}: ratio to native, 95% CI ({setting})");
        if ratio_plot(&path, title, xr, &s, report.options.tolerance)? {
            written.push(path);
        }
    }
    Ok(written)
}

/// One section's series: a name (mode and image) and its points.
type Series<'a> = [(String, Vec<&'a Entry>)];

/// The median of each series against the size, log-log; false when there is
/// nothing to draw.
fn value_plot(
    path: &Path,
    title: String,
    xr: std::ops::Range<f64>,
    s: &Series<'_>,
    unit: &str,
) -> anyhow::Result<bool> {
    let ys: Vec<f64> = s
        .iter()
        .flat_map(|(_, v)| v.iter().map(|e| e.value))
        .collect();
    let ylo = ys.iter().copied().fold(f64::INFINITY, f64::min);
    let yhi = ys.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if !ylo.is_finite() {
        return Ok(false);
    }
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    let mut chart = chart!(
        root,
        title,
        xr,
        ((ylo / 1.3)..(yhi * 1.3)).log_scale(),
        unit
    );
    for (i, (name, points)) in s.iter().enumerate() {
        let xy = points
            .iter()
            .map(|e| (e.size_bytes as f64, e.value))
            .collect();
        series_line!(chart, xy, COLORS[i % COLORS.len()], name.as_str());
    }
    finish!(chart, root);
    Ok(true)
}

/// Each container mode's ratio to native against the size, with its 95% CI
/// as a band and the tolerance band around 1; false when no series has a ratio.
fn ratio_plot(
    path: &Path,
    title: String,
    xr: std::ops::Range<f64>,
    s: &Series<'_>,
    tol: f64,
) -> anyhow::Result<bool> {
    let ratios: Vec<&(String, Vec<&Entry>)> = s
        .iter()
        .filter(|(_, v)| v.iter().any(|e| e.ratio.is_some()))
        .collect();
    if ratios.is_empty() {
        return Ok(false);
    }
    let mut lo = 1.0 - 2.0 * tol;
    let mut hi = 1.0 + 2.0 * tol;
    for (_, v) in &ratios {
        for e in v.iter() {
            for y in [e.ratio, e.ci_low, e.ci_high].into_iter().flatten() {
                if y.is_finite() {
                    lo = lo.min(y);
                    hi = hi.max(y);
                }
            }
        }
    }
    let pad = (hi - lo) * 0.08;
    {
        let root = SVGBackend::new(path, SIZE).into_drawing_area();
        let mut chart = chart!(
            root,
            title,
            xr.clone(),
            (lo - pad)..(hi + pad),
            "mode / native"
        );
        let (x0, x1) = (xr.start, xr.end);
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(x0, 1.0 - tol), (x1, 1.0 + tol)],
                BLACK.mix(0.06).filled(),
            )))
            .map_err(err)?
            .label(format!("±{}% tolerance", tol * 100.0))
            .legend(|(x, y)| {
                Rectangle::new([(x, y - 5), (x + 20, y + 5)], BLACK.mix(0.15).filled())
            });
        chart
            .draw_series(LineSeries::new(vec![(x0, 1.0), (x1, 1.0)], BLACK.mix(0.5)))
            .map_err(err)?;
        for (i, (name, points)) in s.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            let with_ci: Vec<&&Entry> = points.iter().filter(|e| e.ci_low.is_some()).collect();
            if with_ci.len() >= 2 {
                let mut band: Vec<(f64, f64)> = with_ci
                    .iter()
                    .map(|e| (e.size_bytes as f64, e.ci_low.unwrap_or(f64::NAN)))
                    .collect();
                band.extend(
                    with_ci
                        .iter()
                        .rev()
                        .map(|e| (e.size_bytes as f64, e.ci_high.unwrap_or(f64::NAN))),
                );
                chart
                    .draw_series(std::iter::once(Polygon::new(
                        band,
                        color.mix(0.18).filled(),
                    )))
                    .map_err(err)?;
            }
            let xy: Vec<(f64, f64)> = points
                .iter()
                .filter_map(|e| e.ratio.map(|r| (e.size_bytes as f64, r)))
                .collect();
            if !xy.is_empty() {
                series_line!(chart, xy, color, name.as_str());
            }
        }
        finish!(chart, root);
    }
    Ok(true)
}

/// A file-name-safe stem for a benchmark and setting.
pub fn plot_stem(bench: &Workload, setting: &str) -> String {
    let mut s = format!("{bench}-{setting}").replace(
        |c: char| !(c.is_ascii_alphanumeric() || c == '-' || c == '.'),
        "_",
    );
    while s.contains("__") {
        s = s.replace("__", "_");
    }
    s.trim_matches('_').to_owned()
}
