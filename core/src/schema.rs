//! The result schema hybench writes and the campaign runner reads.
//!
//! One row per benchmark x message size ([`ResultRow`]), statistics first, then
//! the metadata of the run that produced it ([`RunMetadata`], flattened). The
//! column list is documented in `bench-apps/README.md`; `SCHEMA_VERSION` is
//! bumped on any incompatible change so readers can refuse what they do not
//! understand instead of misreading it.

use serde::{Deserialize, Serialize};

use crate::stats::{OverRanks, Summary};
use crate::vocab::{MpiFlavour, RuntimeKind};

/// Version of the CSV/JSON schema below.
pub const SCHEMA_VERSION: u32 = 1;

crate::named_enum! {
    /// Unit of a benchmark's value column.
    pub enum Unit ("unit") {
        /// Microseconds (latency; one-way for point-to-point, per call for collectives).
        Micros = "us",
        /// 10^6 bytes per second, the OSU convention.
        MegabytesPerSec = "MB/s",
        /// 10^9 bytes per second (GPU memory and transfer benchmarks, STREAM convention).
        GigabytesPerSec = "GB/s",
        /// 10^12 floating-point operations per second (GPU matrix products, 2MNK per product).
        TeraflopsPerSec = "TFLOP/s",
        /// Seconds (an application's wall time, or a time it prints).
        Seconds = "s",
        /// An application's own metric: its unit and which way is better are the
        /// campaign scenario's `[app.NAME] metric`.
        AppDefined = "app",
    }
}

// named_enum! derives a fixed list of traits: the default is written out.
#[allow(clippy::derivable_impls)]
impl Default for Unit {
    fn default() -> Unit {
        Unit::Micros
    }
}

impl Unit {
    /// Whether a larger value is better (bandwidth, throughput) or worse (latency).
    /// [`Unit::AppDefined`] says neither: the scenario's metric does.
    pub fn higher_is_better(self) -> bool {
        !matches!(self, Unit::Micros | Unit::Seconds | Unit::AppDefined)
    }
}

/// Declares [`RunMetadata`] and [`ResultRow`] from one list of metadata
/// fields, so the flat CSV row (csv cannot serialize nested structs) and the
/// metadata struct cannot drift apart.
macro_rules! result_schema {
    ($( $(#[$doc:meta])* $name:ident : $ty:ty ),* $(,)?) => {
        /// Where and how the benchmark ran. Identical for every row of one run.
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        pub struct RunMetadata {
            $( $(#[$doc])* pub $name: $ty, )*
        }

        /// One benchmark at one message size: statistics, then the run's metadata.
        #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
        pub struct ResultRow {
            pub benchmark: String,
            pub size_bytes: u64,
            pub unit: Unit,
            /// Timed iterations per rank (after warm-up).
            pub iterations: u64,
            pub warmup: u64,
            /// Messages in flight per iteration (bw, bibw, mbw-mr); 1 otherwise.
            pub window: u32,
            /// Number of rank pairs doing the timed work (1 for latency/bw; pairs
            /// for multi-lat / mbw-mr; 0 for collectives).
            pub pairs: u32,
            /// The number osu_* would print for this size, computed the OSU way
            /// (total time over all timed iterations).
            pub osu_value: f64,
            /// Message rate in messages/s (mbw-mr only).
            pub message_rate: Option<f64>,
            /// Statistics over the per-iteration samples (pooled over timing ranks).
            pub n_samples: usize,
            pub min: f64,
            pub median: f64,
            pub mean: f64,
            pub p90: f64,
            pub p99: f64,
            pub max: f64,
            pub stddev: f64,
            pub ci95_low: Option<f64>,
            pub ci95_high: Option<f64>,
            /// Collectives: min / avg / max over ranks of each rank's mean latency (OSU's -f).
            pub rank_min: Option<f64>,
            pub rank_avg: Option<f64>,
            pub rank_max: Option<f64>,
            /// `pass` or `fail` with --validate, empty otherwise.
            pub validation: String,
            // GPU benchmarks (`gpu-*`): problem, device, peak, ceiling and
            // telemetry columns, empty for the MPI benchmarks. Plain fields, not
            // a nested struct, because csv cannot serialize nested structs;
            // `serde(default)` keeps CSV files written before they existed
            // readable. Documented in bench-apps/README.md ("GPU columns").
            /// gpu-gemm: the order N of the square product (M = N = K).
            #[serde(default)]
            pub matrix_n: Option<u64>,
            /// Device name as NVML/CUDA report it (rank 0's GPU).
            #[serde(default)]
            pub gpu_name: String,
            /// NVIDIA driver version (NVML).
            #[serde(default)]
            pub gpu_driver_version: String,
            /// CUDA version the driver supports (cuDriverGetVersion), e.g. `13.0`.
            #[serde(default)]
            pub cuda_version: String,
            /// Run-time libraries used (cuBLAS, NVRTC): version and path.
            #[serde(default)]
            pub gpu_libraries: String,
            /// Per rank: `rank@host:` + placement summary (local rank, GPU,
            /// bus id, NUMA node, CPUs near the GPU, CPUs allowed, binding), `;`-joined.
            #[serde(default)]
            pub gpu_placement: String,
            /// Known peak of the detected device for this benchmark, in `unit`.
            #[serde(default)]
            pub peak: Option<f64>,
            /// `median` as a percentage of `peak`.
            #[serde(default)]
            pub peak_pct: Option<f64>,
            /// Which peak: device, figure and source document.
            #[serde(default)]
            pub peak_source: String,
            /// A ceiling measured in the same run (e.g. device memcpy for
            /// stream kernels, the best matrix product for GEMM), in `unit`.
            #[serde(default)]
            pub ceiling: Option<f64>,
            /// `median` as a percentage of `ceiling`.
            #[serde(default)]
            pub ceiling_pct: Option<f64>,
            /// Which measurement the ceiling is.
            #[serde(default)]
            pub ceiling_source: String,
            /// NVML samples taken while this row was measured (all ranks).
            #[serde(default)]
            pub telemetry_samples: u64,
            #[serde(default)]
            pub sm_clock_mhz_min: Option<f64>,
            #[serde(default)]
            pub sm_clock_mhz_median: Option<f64>,
            #[serde(default)]
            pub sm_clock_mhz_max: Option<f64>,
            #[serde(default)]
            pub mem_clock_mhz_min: Option<f64>,
            #[serde(default)]
            pub mem_clock_mhz_median: Option<f64>,
            #[serde(default)]
            pub mem_clock_mhz_max: Option<f64>,
            #[serde(default)]
            pub power_w_min: Option<f64>,
            #[serde(default)]
            pub power_w_median: Option<f64>,
            #[serde(default)]
            pub power_w_max: Option<f64>,
            #[serde(default)]
            pub temp_c_min: Option<f64>,
            #[serde(default)]
            pub temp_c_median: Option<f64>,
            #[serde(default)]
            pub temp_c_max: Option<f64>,
            /// Median GPU utilisation (NVML, percent of time a kernel ran).
            #[serde(default)]
            pub gpu_util_pct_median: Option<f64>,
            /// Union of the clock throttle reasons seen, `+`-joined (`none` when none).
            #[serde(default)]
            pub throttle_reasons: String,
            /// Volatile ECC error counts at the end of the row,
            /// `corrected=N uncorrected=M` (empty where ECC is off or unsupported).
            #[serde(default)]
            pub ecc_errors: String,
            $( $(#[$doc])* pub $name: $ty, )*
        }

        impl ResultRow {
            /// Copy the run's metadata into this row.
            pub fn set_meta(&mut self, meta: &RunMetadata) {
                $( self.$name = meta.$name.clone(); )*
            }
            /// The run's metadata, as carried by this row.
            pub fn meta(&self) -> RunMetadata {
                RunMetadata { $( $name: self.$name.clone(), )* }
            }
        }
    };
}

result_schema! {
    schema_version: u32,
    hybench_version: String,
    /// Start of the run, RFC 3339 UTC.
    started_at: String,
    /// The MPI's implementation (`mpich`, `openmpi`, `intel`, `mvapich2`,
    /// `cray-mpich`), empty when its version string names none of them.
    mpi_flavour: Option<MpiFlavour>,
    /// First line of MPI_Get_library_version.
    mpi_version: String,
    /// Path of the libmpi mapped in rank 0 (from /proc/self/maps).
    mpi_library: String,
    /// Inode of that file as the process saw it (tells a bound host library
    /// from the container's copy even when both have the same path).
    mpi_library_inode: u64,
    /// Device of that file (major:minor), for the same reason.
    mpi_library_dev: String,
    /// True when every rank mapped the same library file (path and inode).
    mpi_library_uniform: bool,
    comm_size: u32,
    nodes: u32,
    /// Ranks per node as `a,b,c` in node order of first appearance.
    ranks_per_node: String,
    /// Per rank: `rank@host:cpulist`, joined with `;`.
    rank_placement: String,
    /// The container runtime the ranks ran in: `none`, `singularity`,
    /// `apptainer` or `charliecloud`.
    container: Option<RuntimeKind>,
    /// Transport-related environment of rank 0 (`UCX_*`, `FI_*`, `PSM2_*`,
    /// `OMPI_MCA_*`, `I_MPI_*`, `MPIR_CVAR_*`), `K=V` joined with `;`.
    transport_env: String,
    slurm_job_id: String,
    slurm_step_id: String,
}

impl ResultRow {
    /// Fill the statistics columns from a summary.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        benchmark: &str,
        size_bytes: u64,
        unit: Unit,
        iterations: u64,
        warmup: u64,
        window: u32,
        pairs: u32,
        osu_value: f64,
        summary: &Summary,
        over_ranks: Option<OverRanks>,
        meta: &RunMetadata,
    ) -> ResultRow {
        let mut row = ResultRow {
            benchmark: benchmark.to_string(),
            size_bytes,
            unit,
            iterations,
            warmup,
            window,
            pairs,
            osu_value,
            message_rate: None,
            n_samples: summary.n,
            min: summary.min,
            median: summary.median,
            mean: summary.mean,
            p90: summary.p90,
            p99: summary.p99,
            max: summary.max,
            stddev: summary.stddev,
            ci95_low: summary.ci95_low,
            ci95_high: summary.ci95_high,
            rank_min: over_ranks.map(|r| r.min),
            rank_avg: over_ranks.map(|r| r.avg),
            rank_max: over_ranks.map(|r| r.max),
            validation: String::new(),
            ..Default::default()
        };
        row.set_meta(meta);
        row
    }
}

/// One timed iteration of one rank (`--samples FILE`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRow {
    pub benchmark: String,
    pub size_bytes: u64,
    pub rank: u32,
    pub iteration: u64,
    pub value: f64,
    pub unit: Unit,
}

/// Read result rows from CSV text, refusing rows of another schema version.
pub fn read_results_csv<R: std::io::Read>(reader: R) -> anyhow::Result<Vec<ResultRow>> {
    let mut rdr = csv::Reader::from_reader(reader);
    let mut rows = Vec::new();
    for (i, rec) in rdr.deserialize::<ResultRow>().enumerate() {
        let row = rec.map_err(|e| anyhow::anyhow!("results CSV row {}: {e}", i + 2))?;
        if row.schema_version != SCHEMA_VERSION {
            anyhow::bail!(
                "results CSV row {} has schema_version {}, this hybrun reads {}; \
                 re-run the benchmark with a matching hybench",
                i + 2,
                row.schema_version,
                SCHEMA_VERSION
            );
        }
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_round_trip() {
        let meta = RunMetadata {
            schema_version: SCHEMA_VERSION,
            hybench_version: "0.1.0".into(),
            mpi_flavour: Some(MpiFlavour::Mpich),
            comm_size: 2,
            ..Default::default()
        };
        let s = Summary::of(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]).unwrap();
        let row = ResultRow::new("latency", 8, Unit::Micros, 7, 1, 1, 1, 4.0, &s, None, &meta);
        let mut w = csv::Writer::from_writer(vec![]);
        w.serialize(&row).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert!(text.starts_with("benchmark,size_bytes,unit,"));
        let back = read_results_csv(text.as_bytes()).unwrap();
        assert_eq!(back, vec![row]);
    }

    /// Files written before the GPU columns existed still read (the columns
    /// default to empty), and GPU units round-trip.
    #[test]
    fn reads_csv_without_gpu_columns() {
        let meta = RunMetadata {
            schema_version: SCHEMA_VERSION,
            ..Default::default()
        };
        let s = Summary::of(&[800.0, 790.0, 801.0]).unwrap();
        let mut gpu = ResultRow::new(
            "gpu-gemm-bf16",
            3 << 27,
            Unit::TeraflopsPerSec,
            3,
            1,
            1,
            0,
            800.0,
            &s,
            None,
            &meta,
        );
        gpu.matrix_n = Some(8192);
        gpu.throttle_reasons = "sw_power_cap".into();
        gpu.ceiling_pct = Some(99.5);
        let mut w = csv::Writer::from_writer(vec![]);
        w.serialize(&gpu).unwrap();
        let text = String::from_utf8(w.into_inner().unwrap()).unwrap();
        assert_eq!(
            read_results_csv(text.as_bytes()).unwrap(),
            vec![gpu.clone()]
        );
        assert!(text.contains("TFLOP/s"));

        // Drop every GPU column: an older file.
        let mut rdr = csv::Reader::from_reader(text.as_bytes());
        let header = rdr.headers().unwrap().clone();
        let first = header.iter().position(|h| h == "matrix_n").unwrap();
        let last = header.iter().position(|h| h == "ecc_errors").unwrap();
        let keep: Vec<usize> = (0..header.len())
            .filter(|i| *i < first || *i > last)
            .collect();
        let rec = rdr.records().next().unwrap().unwrap();
        let mut w = csv::Writer::from_writer(vec![]);
        w.write_record(keep.iter().map(|&i| &header[i])).unwrap();
        w.write_record(keep.iter().map(|&i| &rec[i])).unwrap();
        let old = String::from_utf8(w.into_inner().unwrap()).unwrap();
        let back = read_results_csv(old.as_bytes()).unwrap();
        assert_eq!(back[0].matrix_n, None);
        assert_eq!(back[0].median, gpu.median);
        assert!(back[0].throttle_reasons.is_empty());
    }
}
