//! Rows, tables, CSV, JSON and the samples file. Only rank 0 writes.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hybrun_core::schema::{ResultRow, RunMetadata, SampleRow, Unit};
use hybrun_core::stats::Summary;
use serde::Serialize;

use crate::bench::SizeResult;
use crate::cli::{Benchmark, Format, Plan};
use crate::meta::RankInfo;

pub fn unit_of(bench: Benchmark) -> Unit {
    if bench.is_bandwidth() {
        Unit::MegabytesPerSec
    } else {
        Unit::Micros
    }
}

/// Turn one size's result into a row (rank 0).
pub fn row(plan: &Plan, r: &SizeResult, meta: &RunMetadata) -> Result<ResultRow> {
    let pooled: Vec<f64> = r
        .samples
        .iter()
        .flat_map(|(_, v)| v.iter().copied())
        .collect();
    let summary = Summary::of(&pooled)
        .with_context(|| format!("{} size {}: summarising samples", plan.bench.name(), r.size))?;
    let mut row = ResultRow::new(
        plan.bench.name(),
        r.size,
        unit_of(plan.bench),
        r.iterations,
        r.warmup,
        plan.window,
        plan.pairs,
        r.osu_value,
        &summary,
        r.over_ranks,
        meta,
    );
    row.message_rate = r.message_rate;
    row.validation = match r.valid {
        Some(true) => "pass".into(),
        Some(false) => "fail".into(),
        None => String::new(),
    };
    Ok(row)
}

/// Where results go: a file opened before the run (so an unwritable path fails
/// before any time is spent), or standard output.
pub struct Sink {
    out: Box<dyn Write>,
    format: Format,
    csv_header_done: bool,
    rows: Vec<ResultRow>,
    path: Option<PathBuf>,
}

fn create(path: &Path, what: &str) -> Result<File> {
    File::create(path).with_context(|| {
        format!(
            "cannot write the {what} file {}: check that its directory exists and is writable",
            path.display()
        )
    })
}

impl Sink {
    pub fn open(format: Format, path: Option<&Path>) -> Result<Sink> {
        let out: Box<dyn Write> = match path {
            Some(p) => Box::new(BufWriter::new(create(p, "output")?)),
            None => Box::new(io::stdout()),
        };
        Ok(Sink {
            out,
            format,
            csv_header_done: false,
            rows: Vec::new(),
            path: path.map(Path::to_path_buf),
        })
    }

    pub fn header(&mut self, plan: &Plan, meta: &RunMetadata, clock: &str) -> Result<()> {
        if self.format != Format::Table {
            return Ok(());
        }
        let w = &mut self.out;
        writeln!(
            w,
            "# hybench {} ({} method) v{}",
            plan.bench.name(),
            plan.bench.osu_name().unwrap_or("no OSU equivalent"),
            meta.hybench_version
        )?;
        writeln!(w, "# MPI: {} [{}]", meta.mpi_version, meta.mpi_flavour)?;
        writeln!(
            w,
            "# libmpi: {} (inode {}, dev {})",
            meta.mpi_library, meta.mpi_library_inode, meta.mpi_library_dev
        )?;
        writeln!(
            w,
            "# ranks: {} on {} node(s) ({} per node); container: {}; per-iteration clock: {}",
            meta.comm_size, meta.nodes, meta.ranks_per_node, meta.container, clock
        )?;
        if plan.bench.is_bandwidth() {
            writeln!(
                w,
                "# window: {}{}",
                plan.window,
                if plan.pairs > 1 {
                    format!("; pairs: {}", plan.pairs)
                } else {
                    String::new()
                }
            )?;
        }
        let osu_col = if plan.bench.is_bandwidth() {
            "OSU MB/s"
        } else {
            "OSU lat(us)"
        };
        writeln!(
            w,
            "{:<10} {:>12} {:>11} {:>11} {:>11} {:>11} {:>11} {:>23} {:>8}{}",
            "# Size",
            osu_col,
            "median",
            "min",
            "p90",
            "p99",
            "max",
            "95% CI of median",
            "n",
            if plan.bench.is_collective() {
                "   min/max over ranks"
            } else {
                ""
            }
        )?;
        w.flush()?;
        Ok(())
    }

    /// Table header of a GPU run: `#`-prefixed context lines, then the columns
    /// (nothing for CSV and JSON, whose columns say it all).
    pub fn gpu_header(&mut self, lines: &[String]) -> Result<()> {
        if self.format != Format::Table {
            return Ok(());
        }
        for l in lines {
            writeln!(self.out, "# {l}")?;
        }
        writeln!(self.out, "{}", GPU_TABLE_HEADER)?;
        self.out.flush()?;
        Ok(())
    }

    /// Notes after a GPU table (where each peak and ceiling comes from).
    pub fn gpu_footer(&mut self, lines: &[String]) -> Result<()> {
        if self.format != Format::Table {
            return Ok(());
        }
        for l in lines {
            writeln!(self.out, "# {l}")?;
        }
        Ok(())
    }

    /// Emit one row now (table and CSV stream; JSON collects until `finish`).
    pub fn push(&mut self, row: ResultRow) -> Result<()> {
        match self.format {
            Format::Table if row.benchmark.starts_with("gpu-") => {
                writeln!(self.out, "{}", gpu_table_line(&row))?;
                self.out.flush()?;
            }
            Format::Table => {
                let ci = match (row.ci95_low, row.ci95_high) {
                    (Some(l), Some(h)) => format!("[{}, {}]", num(l), num(h)),
                    _ => "-".into(),
                };
                let extra = match (row.rank_min, row.rank_max) {
                    (Some(a), Some(b)) => format!("   {} / {}", num(a), num(b)),
                    _ => String::new(),
                };
                let rate = row
                    .message_rate
                    .map(|r| format!("   {r:.0} msg/s"))
                    .unwrap_or_default();
                let valid = if row.validation.is_empty() {
                    String::new()
                } else {
                    format!("   {}", row.validation)
                };
                writeln!(
                    self.out,
                    "{:<10} {:>12} {:>11} {:>11} {:>11} {:>11} {:>11} {:>23} {:>8}{extra}{rate}{valid}",
                    row.size_bytes,
                    num(row.osu_value),
                    num(row.median),
                    num(row.min),
                    num(row.p90),
                    num(row.p99),
                    num(row.max),
                    ci,
                    row.n_samples
                )?;
                self.out.flush()?;
            }
            Format::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .has_headers(!self.csv_header_done)
                    .from_writer(vec![]);
                w.serialize(&row)?;
                self.out
                    .write_all(&w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?;
                self.out.flush()?;
                self.csv_header_done = true;
            }
            Format::Json => {}
        }
        self.rows.push(row);
        Ok(())
    }

    pub fn finish(mut self, meta: &RunMetadata, ranks: &[RankInfo], clock: &str) -> Result<()> {
        if self.format == Format::Json {
            #[derive(Serialize)]
            struct Doc<'a> {
                metadata: &'a RunMetadata,
                clock: &'a str,
                ranks: &'a [RankInfo],
                results: &'a [ResultRow],
            }
            serde_json::to_writer_pretty(
                &mut self.out,
                &Doc {
                    metadata: meta,
                    clock,
                    ranks,
                    results: &self.rows,
                },
            )?;
            writeln!(self.out)?;
        }
        self.out.flush().with_context(|| match &self.path {
            Some(p) => format!("writing {}", p.display()),
            None => "writing standard output".into(),
        })
    }
}

/// Per-iteration samples, streamed as CSV (one tidy row per sample).
pub struct SamplesSink {
    w: csv::Writer<BufWriter<File>>,
}

impl SamplesSink {
    pub fn open(path: &Path) -> Result<SamplesSink> {
        Ok(SamplesSink {
            w: csv::Writer::from_writer(BufWriter::new(create(path, "samples")?)),
        })
    }

    /// One rank's samples of one GPU row.
    pub fn push_values(
        &mut self,
        benchmark: &str,
        size_bytes: u64,
        rank: u32,
        values: &[f64],
        unit: Unit,
    ) -> Result<()> {
        for (i, v) in values.iter().enumerate() {
            self.w.serialize(SampleRow {
                benchmark: benchmark.to_string(),
                size_bytes,
                rank,
                iteration: i as u64,
                value: *v,
                unit,
            })?;
        }
        self.w.flush()?;
        Ok(())
    }

    pub fn push(&mut self, bench: Benchmark, r: &SizeResult) -> Result<()> {
        let unit = unit_of(bench);
        for (rank, values) in &r.samples {
            for (i, v) in values.iter().enumerate() {
                self.w.serialize(SampleRow {
                    benchmark: bench.name().to_string(),
                    size_bytes: r.size,
                    rank: *rank,
                    iteration: i as u64,
                    value: *v,
                    unit,
                })?;
            }
        }
        self.w.flush()?;
        Ok(())
    }
}

/// Columns of the GPU table: value statistics in the row's unit, percent of
/// the device's vendor peak and of the ceiling measured in the same run, and
/// the median clocks, peak power and temperature NVML saw during the row.
const GPU_TABLE_HEADER: &str = "# benchmark             size       unit       median        min        max      n  %peak  %ceil  SM MHz  mem MHz  W max  C max  throttle          valid";

fn gpu_table_line(row: &ResultRow) -> String {
    let size = match row.matrix_n {
        Some(n) => format!("N={n}"),
        None => human_bytes(row.size_bytes),
    };
    let opt = |v: Option<f64>, digits: usize| match v {
        Some(x) => format!("{x:.digits$}"),
        None => "-".into(),
    };
    format!(
        "{:<23} {:>10} {:<8} {:>10} {:>10} {:>10} {:>6} {:>6} {:>6} {:>7} {:>8} {:>6} {:>6}  {:<17} {}",
        row.benchmark,
        size,
        row.unit.as_str(),
        num(row.median),
        num(row.min),
        num(row.max),
        row.n_samples,
        opt(row.peak_pct, 1),
        opt(row.ceiling_pct, 1),
        opt(row.sm_clock_mhz_median, 0),
        opt(row.mem_clock_mhz_median, 0),
        opt(row.power_w_max, 0),
        opt(row.temp_c_max, 0),
        if row.throttle_reasons.is_empty() {
            "-"
        } else {
            &row.throttle_reasons
        },
        if row.validation.is_empty() {
            "-"
        } else {
            &row.validation
        }
    )
}

/// Two decimals like OSU, more for sub-unit values so 0.19 us stays readable.
fn num(v: f64) -> String {
    if v.abs() < 10.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.2}")
    }
}

/// Bytes as `1 GiB`, `256 MiB`, `4 KiB`, `17 B`.
fn human_bytes(b: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if b >= 1 << shift && b % (1 << shift) == 0 {
            return format!("{} {unit}", b >> shift);
        }
    }
    format!("{b} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(1 << 30), "1 GiB");
        assert_eq!(human_bytes(3 << 20), "3 MiB");
        assert_eq!(human_bytes(1000), "1000 B");
    }
}
