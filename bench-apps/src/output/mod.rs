//! What hybench writes, on rank 0 only: the result rows in the chosen format
//! (hybench's table, [`table`]; CSV; JSON; OSU's text, [`osu`]), optionally a CSV
//! copy of the same rows (`--csv`), and the per-iteration samples (`--samples`).
//! Every file is opened before anything is measured, so a bad path costs no time.

mod osu;
mod table;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use hybrun_core::schema::{ResultRow, RunMetadata, SampleRow, Unit};
use hybrun_core::stats::Summary;
use serde::Serialize;

use crate::bench::SizeResult;
use crate::cli::{Benchmark, Common, Format, Plan};
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

/// Where results go in one format: a file opened before the run, or standard
/// output.
pub struct Sink {
    out: Box<dyn Write>,
    format: Format,
    csv_header_done: bool,
    /// The rows so far (JSON is written whole at the end).
    rows: Vec<ResultRow>,
    /// `--format osu`: the OSU blocks written so far.
    osu: Option<osu::OsuText>,
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
    /// Results of `bench` in `format`, to `path` (`what` names it in errors) or
    /// standard output; `validate` is `--validate` (OSU's Validation column).
    fn open(
        format: Format,
        path: Option<&Path>,
        what: &str,
        bench: Benchmark,
        validate: bool,
    ) -> Result<Sink> {
        let out: Box<dyn Write> = match path {
            Some(p) => Box::new(BufWriter::new(create(p, what)?)),
            None => Box::new(io::stdout()),
        };
        Ok(Sink {
            out,
            format,
            csv_header_done: false,
            rows: Vec::new(),
            osu: (format == Format::Osu).then(|| osu::OsuText::new(bench, validate)),
            path: path.map(Path::to_path_buf),
        })
    }

    /// The table's context lines and column names (the other formats have none
    /// before the first row).
    fn header(&mut self, plan: &Plan, meta: &RunMetadata, clock: &str) -> Result<()> {
        if self.format != Format::Table {
            return Ok(());
        }
        self.out
            .write_all(table::header(plan, meta, clock).as_bytes())?;
        self.out.flush()?;
        Ok(())
    }

    /// Table header of a GPU run: `#`-prefixed context lines, then the columns
    /// (nothing for CSV and JSON, whose columns say it all, nor OSU's text).
    fn gpu_header(&mut self, lines: &[String]) -> Result<()> {
        if self.format != Format::Table {
            return Ok(());
        }
        for l in lines {
            writeln!(self.out, "# {l}")?;
        }
        writeln!(self.out, "{}", table::GPU_HEADER)?;
        self.out.flush()?;
        Ok(())
    }

    /// Notes after a GPU table (where each peak and ceiling comes from).
    fn gpu_footer(&mut self, lines: &[String]) -> Result<()> {
        if self.format != Format::Table {
            return Ok(());
        }
        for l in lines {
            writeln!(self.out, "# {l}")?;
        }
        Ok(())
    }

    /// Emit one row now (table, CSV and OSU stream; JSON collects until `finish`).
    fn push(&mut self, row: ResultRow) -> Result<()> {
        match self.format {
            Format::Table if row.benchmark.starts_with("gpu-") => {
                writeln!(self.out, "{}", table::gpu_line(&row))?;
                self.out.flush()?;
            }
            Format::Table => {
                writeln!(self.out, "{}", table::line(&row))?;
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
            Format::Osu => {
                if let Some(osu) = self.osu.as_mut() {
                    let text = osu.row(&row).map_err(anyhow::Error::msg)?;
                    self.out.write_all(text.as_bytes())?;
                    self.out.flush()?;
                }
            }
            Format::Json => {}
        }
        self.rows.push(row);
        Ok(())
    }

    fn finish(mut self, meta: &RunMetadata, ranks: &[RankInfo], clock: &str) -> Result<()> {
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

/// Everything one run writes (rank 0): the results in the chosen format, a CSV
/// copy of the same rows (`--csv`), the samples (`--samples`).
pub struct Outputs {
    results: Sink,
    csv: Option<Sink>,
    pub samples: Option<SamplesSink>,
}

impl Outputs {
    /// Open every output the options name for a run of `bench`.
    pub fn open(bench: Benchmark, c: &Common) -> Result<Outputs> {
        let files = [
            ("--output", &c.output),
            ("--csv", &c.csv),
            ("--samples", &c.samples),
        ];
        for (i, (a, path_a)) in files.iter().enumerate() {
            for (b, path_b) in &files[i + 1..] {
                if let (Some(x), Some(y)) = (path_a, path_b) {
                    if x == y {
                        anyhow::bail!(
                            "{a} and {b} both name {}: give each a file of its own",
                            x.display()
                        );
                    }
                }
            }
        }
        let results = Sink::open(c.format, c.output.as_deref(), "output", bench, c.validate)?;
        let csv = c
            .csv
            .as_deref()
            .map(|p| Sink::open(Format::Csv, Some(p), "CSV", bench, c.validate))
            .transpose()?;
        let samples = c.samples.as_deref().map(SamplesSink::open).transpose()?;
        Ok(Outputs {
            results,
            csv,
            samples,
        })
    }

    fn each(&mut self, mut f: impl FnMut(&mut Sink) -> Result<()>) -> Result<()> {
        f(&mut self.results)?;
        self.csv.as_mut().map_or(Ok(()), f)
    }

    /// Before the first row of an MPI benchmark.
    pub fn header(&mut self, plan: &Plan, meta: &RunMetadata, clock: &str) -> Result<()> {
        self.each(|s| s.header(plan, meta, clock))
    }

    /// Before the first row of a GPU benchmark.
    pub fn gpu_header(&mut self, lines: &[String]) -> Result<()> {
        self.each(|s| s.gpu_header(lines))
    }

    /// After the last row of a GPU benchmark.
    pub fn gpu_footer(&mut self, lines: &[String]) -> Result<()> {
        self.each(|s| s.gpu_footer(lines))
    }

    /// One result row, to the results and the CSV copy.
    pub fn push(&mut self, row: ResultRow) -> Result<()> {
        if let Some(csv) = self.csv.as_mut() {
            csv.push(row.clone())?;
        }
        self.results.push(row)
    }

    /// Write what waits for the end (JSON) and flush every file.
    pub fn finish(self, meta: &RunMetadata, ranks: &[RankInfo], clock: &str) -> Result<()> {
        self.results.finish(meta, ranks, clock)?;
        match self.csv {
            Some(csv) => csv.finish(meta, ranks, clock),
            None => Ok(()),
        }
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

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::Cli;

    #[test]
    fn two_outputs_in_one_file_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let file = dir.path().join("out.txt");
        let file = file.to_str().expect("UTF-8");
        for (a, b) in [("-o", "--csv"), ("--csv", "--samples"), ("-o", "--samples")] {
            let cli =
                Cli::try_parse_from(["hybench", "latency", a, file, b, file]).expect("parses");
            let err = Outputs::open(cli.bench, &cli.common)
                .err()
                .expect("refused")
                .to_string();
            assert!(err.contains("both name") && err.contains(file), "{err}");
        }
        assert!(!dir.path().join("out.txt").exists());
    }
}
