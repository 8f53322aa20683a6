//! Rank 0's side of a GPU run: every rank's samples, validity and telemetry are
//! gathered onto rank 0, which turns each measured row into a result row
//! (statistics pooled over ranks, min/avg/max of the per-rank medians, the
//! vendor peak, the ceiling measured in the same run, NVML telemetry) and writes
//! them with the run's header lines and notes. Every rank exits with rank 0's
//! verdict.

use std::process::ExitCode;

use anyhow::Result;
use hybrun_core::schema::{ResultRow, RunMetadata, SCHEMA_VERSION};
use hybrun_core::stats::{OverRanks, Summary};

use super::{Ceiling, EXIT_FAILED, EXIT_USAGE, Measured, Ranks, Setup, driver, telemetry};
use crate::cli::Benchmark;
use crate::meta::{self, RankInfo};
use crate::output::Outputs;

/// What one GPU run measured on this rank, and what its report needs.
pub struct Run<'a> {
    pub ranks: &'a Ranks<'a>,
    pub bench: Benchmark,
    pub setup: &'a Setup,
    /// The rows this rank measured (the same rows, in the same order, on every rank).
    pub rows: Vec<Measured>,
    /// The CUDA libraries the rows used, one description each.
    pub libs: Vec<String>,
    /// NVML samples taken on this rank while measuring.
    pub samples: Vec<telemetry::Sample>,
    /// How telemetry was taken, or why there is none.
    pub telemetry_note: String,
    pub started_at: String,
}

/// Gather every rank's rows onto rank 0, which adds peaks, ceilings and
/// telemetry and writes them; every rank returns rank 0's exit status.
pub fn report(run: &Run, outputs: Option<Outputs>) -> ExitCode {
    let ranks = run.ranks;
    let (meta, rank_infos) = match ranks {
        Ranks::Solo => solo_metadata(run.started_at.clone()),
        Ranks::Mpi(w) => {
            let c = meta::collect(w, run.started_at.clone());
            (c.meta, c.ranks)
        }
    };
    let placements = placements(run, &rank_infos);
    // Per row, gather samples, validity and telemetry summaries (collectives:
    // every rank makes the same calls in the same order).
    let gathered: Vec<Gathered> = run
        .rows
        .iter()
        .map(|r| Gathered {
            samples: ranks.gather(&r.samples),
            valid: ranks.gather(&[match r.valid {
                Some(true) => 1.0,
                Some(false) => 0.0,
                None => -1.0,
            }]),
            telemetry: ranks.gather(&telemetry::summarise(&run.samples, r.start, r.end)),
        })
        .collect();
    // Rank 0 writes; every rank exits with rank 0's verdict.
    let code = if ranks.rank() == 0 {
        let report = Report {
            run,
            meta: &meta,
            rank_infos: &rank_infos,
            placements: &placements,
        };
        report.write(gathered, outputs)
    } else {
        0
    };
    let code = match ranks {
        Ranks::Solo => code,
        Ranks::Mpi(w) => w.bcast_u64(code as u64) as u8,
    };
    ExitCode::from(code)
}

/// Metadata of a run without MPI_Init (one process). MPI_Get_library_version
/// may be called before MPI_Init (MPI 3.1, section 8.1.1).
fn solo_metadata(started_at: String) -> (RunMetadata, Vec<RankInfo>) {
    let me = RankInfo::collect(0);
    let version = crate::comm::library_version();
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let meta = RunMetadata {
        schema_version: SCHEMA_VERSION,
        hybench_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at,
        mpi_flavour: meta::flavour(&version),
        mpi_version: version,
        mpi_library: me.mpi_library.clone(),
        mpi_library_inode: me.mpi_library_inode,
        mpi_library_dev: me.mpi_library_dev.clone(),
        mpi_library_uniform: true,
        comm_size: 1,
        nodes: 1,
        ranks_per_node: "1".into(),
        rank_placement: format!("0@{}:{}", me.host, me.cpus),
        container: Some(meta::container()),
        transport_env: meta::transport_env(),
        slurm_job_id: env("SLURM_JOB_ID"),
        slurm_step_id: env("SLURM_STEP_ID"),
    };
    (meta, vec![me])
}

/// `rank@host:placement` of every rank (on rank 0). Each rank sends its own
/// placement; host names of other ranks come from the metadata's rank list.
fn placements(run: &Run, rank_infos: &[RankInfo]) -> Vec<String> {
    let ranks = run.ranks;
    let host = rank_infos
        .first()
        .map(|r| r.host.clone())
        .unwrap_or_default();
    let mine = format!(
        "{}@{}:{}",
        ranks.rank(),
        if ranks.rank() == 0 {
            host
        } else {
            String::new()
        },
        run.setup.placement.summary()
    );
    ranks
        .gather_strings(&mine)
        .iter()
        .enumerate()
        .map(|(i, p)| match rank_infos.get(i) {
            Some(r) if i > 0 => p.replacen(&format!("{i}@:"), &format!("{i}@{}:", r.host), 1),
            _ => p.clone(),
        })
        .collect()
}

/// One row's values from every rank, one Vec per rank (on rank 0).
struct Gathered {
    samples: Vec<Vec<f64>>,
    /// 1: validated, 0: validation failed, -1: not validated.
    valid: Vec<Vec<f64>>,
    /// `telemetry::summarise` of the row's time window.
    telemetry: Vec<Vec<f64>>,
}

/// The device columns every row of a run shares.
struct Device {
    name: String,
    driver_version: String,
    cuda_version: String,
    libraries: String,
    placement: String,
}

/// Rank 0's report of one run.
struct Report<'a> {
    run: &'a Run<'a>,
    meta: &'a RunMetadata,
    rank_infos: &'a [RankInfo],
    placements: &'a [String],
}

impl Report<'_> {
    /// Build the rows, add ceilings, write everything; returns the exit status.
    fn write(&self, gathered: Vec<Gathered>, outputs: Option<Outputs>) -> u8 {
        let device = self.device();
        let mut out: Vec<ResultRow> = Vec::with_capacity(self.run.rows.len());
        for (r, g) in self.run.rows.iter().zip(gathered) {
            match result_row(r, g, &device, self.meta) {
                Ok(row) => out.push(row),
                Err(msg) => {
                    eprintln!("hybench: error: {msg}");
                    return EXIT_FAILED;
                }
            }
        }
        add_ceilings(&self.run.rows, &mut out);

        let Some(mut outputs) = outputs else {
            return EXIT_FAILED;
        };
        let written = self.emit(&device, &out, &mut outputs);
        if let Err(e) =
            written.and_then(|_| outputs.finish(self.meta, self.rank_infos, "cuda-events"))
        {
            eprintln!("hybench: error: {e:#}");
            return EXIT_USAGE;
        }
        if out.iter().any(|r| r.validation == "fail") {
            eprintln!(
                "hybench: error: DATA VALIDATION FAILED for {} (rows with validation = fail)",
                self.run.bench.name()
            );
            return EXIT_FAILED;
        }
        0
    }

    fn device(&self) -> Device {
        let setup = self.run.setup;
        let nvml = setup.nvml.as_ref().ok();
        Device {
            name: nvml
                .map(|i| i.name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| setup.cuda.info.name.clone()),
            driver_version: nvml.map(|i| i.driver_version.clone()).unwrap_or_default(),
            cuda_version: driver::version_string(setup.driver_version),
            libraries: self.run.libs.join("; "),
            placement: self.placements.join(";"),
        }
    }

    /// Header lines, rows (and their samples), then the notes.
    fn emit(&self, device: &Device, out: &[ResultRow], outputs: &mut Outputs) -> Result<()> {
        outputs.gpu_header(&self.header_lines(device))?;
        for (row, r) in out.iter().zip(&self.run.rows) {
            outputs.push(row.clone())?;
            if let Some(s) = outputs.samples.as_mut() {
                s.push_values(
                    &r.benchmark,
                    r.size_bytes,
                    self.run.ranks.rank() as u32,
                    &r.samples,
                    r.unit,
                )?;
            }
        }
        outputs.gpu_footer(&notes(out))
    }

    /// The `#` lines above the table: the run, the GPU, libraries, placement,
    /// binding, MPI and telemetry.
    fn header_lines(&self, device: &Device) -> Vec<String> {
        let (run, meta) = (self.run, self.meta);
        let setup = run.setup;
        let info = &setup.cuda.info;
        let mut header = vec![
            format!(
                "hybench {} v{} ({} rank{})",
                run.bench.name(),
                meta.hybench_version,
                run.ranks.size(),
                if run.ranks.size() == 1 { "" } else { "s" }
            ),
            format!(
                "GPU {}: {} [{}], cc {}.{}, {} SMs, {:.0} GiB; driver {}, CUDA {}",
                info.ordinal,
                device.name,
                setup
                    .peaks
                    .map(|p| format!("peaks: {} ({})", p.model, p.source))
                    .unwrap_or_else(|| "no known peaks".into()),
                info.cc_major,
                info.cc_minor,
                info.sms,
                info.total_mem as f64 / (1u64 << 30) as f64,
                setup
                    .nvml
                    .as_ref()
                    .map(|i| i.driver_version.as_str())
                    .unwrap_or("?"),
                device.cuda_version,
            ),
        ];
        if !run.libs.is_empty() {
            header.push(format!("libraries: {}", device.libraries));
        }
        header.push(format!("placement: {}", self.placements.join("; ")));
        if let Some(note) = &setup.bind_note {
            header.push(format!("binding: {note} (--bind-near-gpu)"));
        }
        header.push(format!(
            "MPI: {} [{}]; telemetry: {}; timing: CUDA events",
            meta.mpi_version,
            meta.mpi_flavour.map_or("unknown", |f| f.name()),
            run.telemetry_note
        ));
        if let Err(e) = &setup.nvml {
            header.push(format!("NVML: {e}"));
        }
        header
    }
}

fn pct(v: f64, of: Option<f64>) -> Option<f64> {
    of.filter(|p| *p > 0.0).map(|p| 100.0 * v / p)
}

/// One result row from one measured row and what every rank sent for it:
/// statistics pooled over the ranks that count, min/avg/max of the per-rank
/// medians, validation, device columns, peak and telemetry. An error names the
/// row.
fn result_row(
    r: &Measured,
    g: Gathered,
    device: &Device,
    meta: &RunMetadata,
) -> Result<ResultRow, String> {
    let all: Vec<Vec<f64>> = if r.rank0_only {
        g.samples.into_iter().take(1).collect()
    } else {
        g.samples
    };
    let pooled: Vec<f64> = all.iter().flatten().copied().collect();
    let summary =
        Summary::of(&pooled).map_err(|e| format!("{} size {}: {e}", r.benchmark, r.size_bytes))?;
    let per_rank: Vec<f64> = all
        .iter()
        .filter_map(|v| hybrun_core::stats::median(v))
        .collect();
    let over = (all.len() > 1).then(|| OverRanks {
        min: per_rank.iter().copied().fold(f64::INFINITY, f64::min),
        avg: hybrun_core::stats::mean(&per_rank),
        max: per_rank.iter().copied().fold(f64::NEG_INFINITY, f64::max),
    });
    let mut row = ResultRow::new(
        &r.benchmark,
        r.size_bytes,
        r.unit,
        r.iterations,
        r.warmup,
        r.window,
        r.pairs,
        r.osu_value.unwrap_or(summary.median),
        &summary,
        over,
        meta,
    );
    let flags: Vec<f64> = g.valid.iter().flatten().copied().collect();
    row.validation = if flags.contains(&0.0) {
        "fail".into()
    } else if flags.iter().all(|v| *v == 1.0) {
        "pass".into()
    } else {
        String::new()
    };
    row.matrix_n = r.matrix_n;
    row.gpu_name = device.name.clone();
    row.gpu_driver_version = device.driver_version.clone();
    row.cuda_version = device.cuda_version.clone();
    row.gpu_libraries = device.libraries.clone();
    row.gpu_placement = device.placement.clone();
    if let Some((p, src)) = &r.peak {
        row.peak = Some(*p);
        row.peak_pct = pct(row.median, Some(*p));
        row.peak_source = src.clone();
    }
    let t = telemetry::combine(
        &g.telemetry
            .iter()
            .filter_map(|v| <[f64; telemetry::SUMMARY_LEN]>::try_from(v.as_slice()).ok())
            .collect::<Vec<_>>(),
    );
    row.telemetry_samples = t.samples;
    [
        row.sm_clock_mhz_min,
        row.sm_clock_mhz_median,
        row.sm_clock_mhz_max,
    ] = t.sm;
    [
        row.mem_clock_mhz_min,
        row.mem_clock_mhz_median,
        row.mem_clock_mhz_max,
    ] = t.mem;
    [row.power_w_min, row.power_w_median, row.power_w_max] = t.power;
    [row.temp_c_min, row.temp_c_median, row.temp_c_max] = t.temp;
    row.gpu_util_pct_median = t.util_median;
    row.throttle_reasons = t.throttle;
    row.ecc_errors = t.ecc;
    Ok(row)
}

/// Ceilings measured in the same run: each row's `ceiling` column from the
/// rows its [`Ceiling`] names.
fn add_ceilings(rows: &[Measured], out: &mut [ResultRow]) {
    for (i, r) in rows.iter().enumerate() {
        let found = match &r.ceiling {
            Ceiling::None => None,
            Ceiling::SameSize(b) => out
                .iter()
                .find(|o| &o.benchmark == b && o.size_bytes == out[i].size_bytes)
                .map(|o| {
                    (
                        o.median,
                        format!("{} at {} B, same run", o.benchmark, o.size_bytes),
                    )
                }),
            Ceiling::BestOf(prefix) => out
                .iter()
                .filter(|o| o.benchmark.starts_with(prefix))
                .max_by(|a, b| a.median.total_cmp(&b.median))
                .map(|o| {
                    (
                        o.median,
                        format!(
                            "best in run: {}{}",
                            o.benchmark,
                            o.matrix_n.map(|n| format!(" N={n}")).unwrap_or_default()
                        ),
                    )
                }),
        };
        if let Some((v, src)) = found {
            out[i].ceiling = Some(v);
            out[i].ceiling_pct = pct(out[i].median, Some(v));
            out[i].ceiling_source = src;
        }
    }
}

/// The notes under the table: where each row's peak and ceiling come from.
fn notes(out: &[ResultRow]) -> Vec<String> {
    out.iter()
        .filter(|r| !r.ceiling_source.is_empty() || !r.peak_source.is_empty())
        .map(|r| {
            format!(
                "{} {}: peak {}; ceiling {}",
                r.benchmark,
                r.matrix_n
                    .map(|n| format!("N={n}"))
                    .unwrap_or_else(|| format!("{} B", r.size_bytes)),
                if r.peak_source.is_empty() {
                    "-"
                } else {
                    &r.peak_source
                },
                if r.ceiling_source.is_empty() {
                    "-"
                } else {
                    &r.ceiling_source
                }
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use hybrun_core::schema::Unit;

    use super::*;

    fn measured(benchmark: &str, samples: &[f64], ceiling: Ceiling) -> Measured {
        let now = Instant::now();
        Measured {
            benchmark: benchmark.into(),
            size_bytes: 1 << 20,
            matrix_n: None,
            unit: Unit::GigabytesPerSec,
            iterations: samples.len() as u64,
            warmup: 1,
            window: 1,
            pairs: 0,
            rank0_only: false,
            samples: samples.to_vec(),
            osu_value: None,
            valid: None,
            start: now,
            end: now,
            peak: Some((200.0, "vendor sheet".into())),
            ceiling,
        }
    }

    fn device() -> Device {
        Device {
            name: "H100".into(),
            driver_version: "550.1".into(),
            cuda_version: "12.4".into(),
            libraries: "cuBLAS 12".into(),
            placement: "0@n1:gpu0".into(),
        }
    }

    /// What two ranks sent for one row: `samples` each, validity flags.
    fn gathered(samples: [&[f64]; 2], valid: [f64; 2]) -> Gathered {
        Gathered {
            samples: samples.iter().map(|s| s.to_vec()).collect(),
            valid: valid.iter().map(|v| vec![*v]).collect(),
            telemetry: vec![Vec::new(); 2],
        }
    }

    #[test]
    fn rows_pool_ranks_and_take_min_avg_max_of_their_medians() {
        let meta = RunMetadata::default();
        let r = measured("gpu-copy-htod", &[1.0, 2.0, 3.0], Ceiling::None);
        let g = gathered([&[1.0, 2.0, 3.0], &[5.0, 6.0, 7.0]], [1.0, 1.0]);
        let row = result_row(&r, g, &device(), &meta).expect("row");
        assert_eq!(row.n_samples, 6);
        assert_eq!((row.rank_min, row.rank_max), (Some(2.0), Some(6.0)));
        assert_eq!(row.rank_avg, Some(4.0));
        assert_eq!(row.osu_value, row.median, "no OSU value: the median");
        assert_eq!(row.validation, "pass");
        assert_eq!(row.peak_pct, Some(100.0 * row.median / 200.0));
        assert_eq!(
            (row.gpu_name.as_str(), row.gpu_placement.as_str()),
            ("H100", "0@n1:gpu0")
        );
        assert_eq!(row.telemetry_samples, 0);

        // Rank 0 alone counts (gpu-mpi), and one failing rank fails the row.
        let mut r0 = r.clone();
        r0.rank0_only = true;
        let g = gathered([&[1.0, 2.0, 3.0], &[5.0, 6.0, 7.0]], [1.0, 0.0]);
        let row = result_row(&r0, g, &device(), &meta).expect("row");
        assert_eq!((row.n_samples, row.rank_min), (3, None));
        assert_eq!(row.validation, "fail");

        // Not validated anywhere: empty; no samples at all: an error naming the row.
        let g = gathered([&[1.0], &[2.0]], [-1.0, -1.0]);
        assert_eq!(
            result_row(&r, g, &device(), &meta).expect("row").validation,
            ""
        );
        let err = result_row(&r, gathered([&[], &[]], [1.0, 1.0]), &device(), &meta)
            .expect_err("no samples");
        assert!(err.starts_with("gpu-copy-htod size 1048576: "), "{err}");
    }

    #[test]
    fn ceilings_come_from_the_same_run() {
        let meta = RunMetadata::default();
        let rows = vec![
            measured("gpu-stream-memcpy", &[100.0], Ceiling::None),
            measured(
                "gpu-stream-copy",
                &[80.0],
                Ceiling::SameSize("gpu-stream-memcpy".into()),
            ),
            measured("gpu-gemm-fp16", &[50.0], Ceiling::BestOf("gpu-stream-")),
        ];
        let mut out: Vec<ResultRow> = rows
            .iter()
            .map(|r| {
                let g = Gathered {
                    samples: vec![r.samples.clone()],
                    valid: vec![vec![-1.0]],
                    telemetry: vec![Vec::new()],
                };
                result_row(r, g, &device(), &meta).expect("row")
            })
            .collect();
        add_ceilings(&rows, &mut out);
        assert_eq!(out[0].ceiling, None);
        assert_eq!(out[1].ceiling, Some(100.0));
        assert_eq!(out[1].ceiling_pct, Some(80.0));
        assert_eq!(
            out[1].ceiling_source,
            "gpu-stream-memcpy at 1048576 B, same run"
        );
        assert_eq!(out[2].ceiling, Some(100.0));
        assert_eq!(out[2].ceiling_source, "best in run: gpu-stream-memcpy");
        assert_eq!(
            notes(&out),
            vec![
                "gpu-stream-memcpy 1048576 B: peak vendor sheet; ceiling -",
                "gpu-stream-copy 1048576 B: peak vendor sheet; ceiling gpu-stream-memcpy at \
                 1048576 B, same run",
                "gpu-gemm-fp16 1048576 B: peak vendor sheet; ceiling best in run: gpu-stream-memcpy",
            ]
        );
    }
}
