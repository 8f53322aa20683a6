//! GPU benchmarks: `gpu-gemm`, `gpu-stream`, `gpu-copy`, `gpu-mpi`.
//!
//! Everything CUDA is loaded at run time (the driver through cudarc, cuBLAS
//! and NVRTC through libloading, NVML through nvml-wrapper), so hybench builds
//! and runs on machines without CUDA, and a GPU subcommand there exits with
//! one line: `no NVIDIA driver found: libcuda.so.1 could not be loaded`.
//!
//! Ranks: run directly, a GPU subcommand is one process and does not
//! initialise MPI (so it needs no MPI runtime, only the library hybench links);
//! started by a launcher (mpiexec, srun: PMI/PMIx variables present) it
//! initialises MPI and each rank measures its own GPU (local rank -> GPU, see
//! `hybrun_core::placement`); rank 0 pools the samples and reports min/avg/max over
//! ranks ([`report`]). `gpu-mpi` always initialises MPI.
//!
//! Each rank measures every row locally first, then the ranks agree on
//! errors, and only then exchange results: a failure on one rank cannot leave
//! the others waiting in a collective.

mod copy;
mod driver;
mod gemm;
mod libs;
mod mpi_gpu;
mod peaks;
mod report;
mod stream;
mod telemetry;

use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Result;
use hybrun_core::placement::{self, Placement};
use hybrun_core::schema::Unit;

use crate::cli::{Benchmark, Cli, Common, Format, parse_size_range};
use crate::comm::World;
use crate::output::Outputs;

/// Exit status when the GPU environment is missing: no driver, no GPU, no
/// cuBLAS/NVRTC, or an MPI that is not CUDA-aware (README: exit status).
pub const EXIT_GPU_ENV: u8 = 3;
const EXIT_USAGE: u8 = 2;
const EXIT_FAILED: u8 = 1;

/// Why a GPU run stopped.
#[derive(Debug)]
pub enum GpuError {
    /// Bad options (exit 2).
    Usage(String),
    /// Something the machine lacks (exit 3).
    Environment(String),
    /// A CUDA/cuBLAS/NVRTC call failed or the results were wrong (exit 1).
    Failed(anyhow::Error),
}

impl GpuError {
    fn code(&self) -> u8 {
        match self {
            GpuError::Usage(_) => EXIT_USAGE,
            GpuError::Environment(_) => EXIT_GPU_ENV,
            GpuError::Failed(_) => EXIT_FAILED,
        }
    }
    fn message(&self) -> String {
        match self {
            GpuError::Usage(m) | GpuError::Environment(m) => m.clone(),
            GpuError::Failed(e) => format!("{e:#}"),
        }
    }
}

impl From<anyhow::Error> for GpuError {
    fn from(e: anyhow::Error) -> Self {
        GpuError::Failed(e)
    }
}

/// The ranks taking part: this process alone, or MPI_COMM_WORLD.
pub enum Ranks<'a> {
    Solo,
    Mpi(&'a World),
}

impl Ranks<'_> {
    pub fn rank(&self) -> i32 {
        match self {
            Ranks::Solo => 0,
            Ranks::Mpi(w) => w.rank,
        }
    }
    pub fn size(&self) -> i32 {
        match self {
            Ranks::Solo => 1,
            Ranks::Mpi(w) => w.size,
        }
    }
    fn any(&self, flag: bool) -> bool {
        match self {
            Ranks::Solo => flag,
            Ranks::Mpi(w) => w.any(flag),
        }
    }
    fn barrier(&self) {
        if let Ranks::Mpi(w) = self {
            w.barrier();
        }
    }
    /// Every rank's `values` (equal lengths) on rank 0, one Vec per rank.
    fn gather(&self, values: &[f64]) -> Vec<Vec<f64>> {
        match self {
            Ranks::Solo => vec![values.to_vec()],
            Ranks::Mpi(w) => {
                let all = w.gather_f64(values, 0);
                if values.is_empty() {
                    return vec![Vec::new(); w.size as usize];
                }
                all.chunks(values.len()).map(<[f64]>::to_vec).collect()
            }
        }
    }
    fn gather_strings(&self, s: &str) -> Vec<String> {
        match self {
            Ranks::Solo => vec![s.to_string()],
            Ranks::Mpi(w) => w.gather_strings(s, 1024),
        }
    }
}

/// True when a launcher started this process (it then expects MPI_Init).
fn launched_by_mpi() -> bool {
    [
        "PMI_RANK",
        "PMI_FD",
        "PMI_SIZE",
        "PMIX_RANK",
        "OMPI_COMM_WORLD_SIZE",
        "MPI_LOCALNRANKS",
    ]
    .iter()
    .any(|k| std::env::var_os(k).is_some())
}

/// Entry point of every GPU subcommand (called before MPI is touched).
pub fn main(cli: &Cli) -> ExitCode {
    let use_mpi = cli.bench == Benchmark::GpuMpi || launched_by_mpi();
    let universe = if use_mpi {
        match mpi::initialize() {
            Some(u) => Some(u),
            None => {
                eprintln!("hybench: error: MPI was already initialised");
                return ExitCode::from(EXIT_USAGE);
            }
        }
    } else {
        None
    };
    let world = universe.as_ref().map(|_| World::new());
    let ranks = match &world {
        Some(w) => Ranks::Mpi(w),
        None => Ranks::Solo,
    };
    let code = guarded(cli, &ranks);
    drop(universe); // MPI_Finalize on every rank before exiting
    code
}

/// Run, turning a panic anywhere below (a CUDA library missing a symbol, say)
/// into one error line instead of a backtrace.
fn guarded(cli: &Cli, ranks: &Ranks) -> ExitCode {
    let caught: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let slot = caught.clone();
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = match (
            info.payload().downcast_ref::<&str>(),
            info.payload().downcast_ref::<String>(),
        ) {
            (Some(s), _) => s.to_string(),
            (_, Some(s)) => s.clone(),
            _ => "unknown panic".to_string(),
        };
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        if let Ok(mut c) = slot.lock() {
            *c = Some(format!("{msg}{at}"));
        }
    }));
    let out = std::panic::catch_unwind(AssertUnwindSafe(|| run(cli, ranks)));
    std::panic::set_hook(previous);
    match out {
        Ok(code) => code,
        Err(_) => {
            let msg = caught
                .lock()
                .ok()
                .and_then(|c| c.clone())
                .unwrap_or_default();
            eprintln!("hybench: error: internal error in the GPU code: {msg}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

/// Agree on a per-rank outcome; print one message (rank 0's, else the first
/// failing rank's, tagged with its rank) and return the exit code if any failed.
fn agree<T>(ranks: &Ranks, r: Result<T, GpuError>) -> Result<T, ExitCode> {
    let failed = r.is_err();
    if !ranks.any(failed) {
        // Unreachable Err: no rank failed, so this one did not either.
        return r.map_err(|_| ExitCode::from(EXIT_FAILED));
    }
    // Rank 0's verdict decides whose message is printed.
    let rank0_failed = match ranks {
        Ranks::Solo => failed,
        Ranks::Mpi(w) => w.bcast_u64(failed as u64) == 1,
    };
    let (msg, code) = match &r {
        Err(e) => (e.message(), e.code()),
        Ok(_) => (String::new(), EXIT_FAILED),
    };
    if failed && (ranks.rank() == 0 || !rank0_failed) {
        if ranks.rank() == 0 {
            eprintln!("hybench: error: {msg}");
        } else {
            eprintln!("hybench: error: rank {}: {msg}", ranks.rank());
        }
    }
    // The exit code is the same everywhere: the highest any rank has.
    let code = match ranks {
        Ranks::Solo => code,
        Ranks::Mpi(w) => {
            let mine = if failed { code } else { 0 };
            let all = w.gather_f64(&[mine as f64], 0);
            let max = all.iter().fold(0.0f64, |a, b| a.max(*b));
            w.bcast_u64(max as u64) as u8
        }
    };
    Err(ExitCode::from(code.max(1)))
}

/// What the GPU subcommands read from the command line.
#[derive(Debug, Clone)]
pub struct GpuOptions {
    pub sizes: Vec<u64>,
    /// gpu-gemm: element types and matrix orders.
    pub dtypes: Vec<gemm::Dtype>,
    pub orders: Vec<u64>,
    pub iterations: u64,
    pub warmup: u64,
    pub corrupt: bool,
}

/// Check options every rank parses alike (usage errors, exit 2).
fn options(bench: Benchmark, c: &Common) -> Result<GpuOptions, GpuError> {
    let usage = |m: String| GpuError::Usage(m);
    let reject = |set: bool, opt: &str| {
        if set {
            Err(usage(format!("{opt} does not apply to {}", bench.name())))
        } else {
            Ok(())
        }
    };
    if c.format == Format::Osu && bench.osu_name().is_none() {
        return Err(usage(format!(
            "--format osu: {} has no OSU Micro-Benchmarks equivalent (of the GPU benchmarks \
             only gpu-mpi has one, osu_latency/osu_bw -d cuda D D); use --format table, csv \
             or json",
            bench.name()
        )));
    }
    reject(c.pairs.is_some(), "--pairs")?;
    if bench != Benchmark::GpuMpi {
        reject(c.window.is_some(), "--window")?;
        reject(c.iterations_large.is_some(), "--iterations-large")?;
        reject(c.warmup_large.is_some(), "--warmup-large")?;
    }
    if bench != Benchmark::GpuGemm {
        reject(c.dtype.is_some(), "--dtype")?;
        reject(c.gemm_size.is_some(), "--size")?;
    }
    let (default_sizes, iters, warm) = match bench {
        Benchmark::GpuGemm => ((0, 0), 20, 5),
        // STREAM: arrays far larger than any L2 (60 MB on H200).
        Benchmark::GpuStream => ((1 << 30, 1 << 30), 50, 5),
        Benchmark::GpuCopy => ((1 << 20, 1 << 30), 20, 3),
        _ => ((1, 1 << 22), 1000, 100),
    };
    let sizes = match (&c.sizes, bench) {
        (Some(_), Benchmark::GpuGemm) => {
            return Err(usage(
                "gpu-gemm takes matrix orders with --size N[,N...], not --sizes".into(),
            ));
        }
        // gpu-stream/gpu-copy: `-m SIZE` is that one size (there is no OSU
        // default sweep to extend); `-m MIN:MAX` doubles from MIN to MAX.
        (Some(spec), Benchmark::GpuStream | Benchmark::GpuCopy) if !spec.contains(':') => {
            let one = crate::cli::parse_size(spec).map_err(usage)?;
            if one > crate::cli::MAX_ACCEPTED_SIZE {
                return Err(usage(format!("size `{spec}` is above the 1 GiB limit")));
            }
            vec![one]
        }
        (Some(spec), _) => parse_size_range(spec, default_sizes).map_err(usage)?,
        (None, Benchmark::GpuGemm) => Vec::new(),
        (None, _) => {
            let mut v = vec![default_sizes.0];
            while let Some(&last) = v.last() {
                if last >= default_sizes.1 {
                    break;
                }
                v.push(last * 2);
            }
            v
        }
    };
    if bench == Benchmark::GpuStream && sizes.iter().any(|s| *s < 4096 || s % 16 != 0) {
        return Err(usage(
            "gpu-stream array sizes must be multiples of 16 bytes and at least 4K".into(),
        ));
    }
    if bench == Benchmark::GpuCopy && sizes.contains(&0) {
        return Err(usage("gpu-copy sizes must be at least 1 byte".into()));
    }
    let iterations = c.iterations.unwrap_or(iters);
    let warmup = c.warmup.unwrap_or(warm);
    if iterations == 0 || iterations > 1_000_000 {
        return Err(usage(format!(
            "--iterations {iterations} is out of range (1..=1000000)"
        )));
    }
    let (dtypes, orders) = if bench == Benchmark::GpuGemm {
        (
            gemm::parse_dtypes(c.dtype.as_deref()).map_err(usage)?,
            gemm::parse_orders(c.gemm_size.as_deref()).map_err(usage)?,
        )
    } else {
        (Vec::new(), Vec::new())
    };
    Ok(GpuOptions {
        sizes,
        dtypes,
        orders,
        iterations,
        warmup,
        corrupt: c.debug_corrupt,
    })
}

/// What a ceiling of a row is.
#[derive(Debug, Clone, PartialEq)]
pub enum Ceiling {
    None,
    /// The row of this benchmark at the same size.
    SameSize(String),
    /// The best median among rows whose benchmark starts with this prefix.
    BestOf(&'static str),
}

/// One row measured on one rank.
#[derive(Debug, Clone)]
pub struct Measured {
    pub benchmark: String,
    pub size_bytes: u64,
    pub matrix_n: Option<u64>,
    pub unit: Unit,
    pub iterations: u64,
    pub warmup: u64,
    pub window: u32,
    pub pairs: u32,
    /// Only rank 0's samples count (gpu-mpi: rank 0 times, as OSU).
    pub rank0_only: bool,
    /// Per-iteration values, in `unit`.
    pub samples: Vec<f64>,
    /// The OSU-style aggregate where one exists (gpu-mpi); else the median.
    pub osu_value: Option<f64>,
    pub valid: Option<bool>,
    pub start: Instant,
    pub end: Instant,
    /// Vendor peak for this row and where it comes from.
    pub peak: Option<(f64, String)>,
    pub ceiling: Ceiling,
}

/// A selected, opened GPU with everything the benchmarks share.
pub struct Setup {
    pub cuda: driver::Cuda,
    pub driver_version: i32,
    pub placement: Placement,
    pub nvml: Result<telemetry::NvmlInfo, String>,
    pub peaks: Option<peaks::DevicePeaks>,
    pub bind_note: Option<String>,
}

/// Load the driver, pick this rank's GPU, place the rank, open the device.
fn setup(c: &Common) -> Result<Setup, GpuError> {
    let driver_version = driver::init_driver()?;
    let count = driver::device_count()?;
    let local = placement::local_rank();
    let ordinal = match c.gpu {
        Some(g) if g >= count => {
            return Err(GpuError::Usage(format!(
                "--gpu {g}: this process sees {count} GPU(s) (ordinals 0..{})",
                count - 1
            )));
        }
        Some(g) => g,
        None => placement::gpu_for_local_rank(local.rank, count).unwrap_or(0),
    };
    let bus = driver::pci_bus_id(ordinal)?;
    let mut placement = Placement::describe(local, ordinal, &bus);
    // Bind before the context exists, so the driver's threads inherit it.
    let bind_note = if c.bind_near_gpu {
        Some(placement.bind_near().map_err(GpuError::Environment)?)
    } else {
        None
    };
    let cuda = driver::Cuda::open(ordinal)?;
    let nvml = telemetry::device_info(&cuda.info.bus_id);
    let name = match &nvml {
        Ok(i) if !i.name.is_empty() => i.name.clone(),
        _ => cuda.info.name.clone(),
    };
    Ok(Setup {
        peaks: peaks::detect(&name),
        cuda,
        driver_version,
        placement,
        nvml,
        bind_note,
    })
}

/// Run one GPU subcommand on every rank.
fn run(cli: &Cli, ranks: &Ranks) -> ExitCode {
    let c = &cli.common;
    let bench = cli.bench;
    let opts = match agree(ranks, options(bench, c)) {
        Ok(o) => o,
        Err(code) => return code,
    };
    // Outputs are opened on rank 0 before anything is measured.
    let mut outputs = None;
    let opened: Result<(), GpuError> = if ranks.rank() == 0 {
        Outputs::open(bench, c)
            .map(|o| outputs = Some(o))
            .map_err(|e| GpuError::Usage(format!("{e:#}")))
    } else {
        Ok(())
    };
    if let Err(code) = agree(ranks, opened) {
        return code;
    }
    let started_at = hybrun_core::sys::now_utc();
    let setup = match agree(ranks, setup(c)) {
        Ok(s) => s,
        Err(code) => return code,
    };
    // gpu-mpi: the driver is checked first (the same first line on every GPU
    // subcommand without a GPU), then the rank count, then the MPI library.
    if bench == Benchmark::GpuMpi {
        if let Err(code) = agree(ranks, mpi_gpu::check_ranks(ranks)) {
            return code;
        }
        if let Err(code) = agree(ranks, mpi_gpu::check_cuda_aware()) {
            return code;
        }
    }
    // Telemetry: optional; its absence is reported, never fatal.
    let sampler = if c.telemetry_ms == 0 {
        Err("off (--telemetry-ms 0)".to_string())
    } else {
        telemetry::Sampler::start(
            &setup.cuda.info.bus_id,
            Duration::from_millis(c.telemetry_ms),
        )
    };
    let telemetry_note = match &sampler {
        Ok(s) => format!("NVML every {} ms", s.interval.as_millis()),
        Err(e) => format!("none: {e}"),
    };
    ranks.barrier();
    let measured: Result<(Vec<Measured>, Vec<String>), GpuError> = match bench {
        Benchmark::GpuGemm => gemm::run(&setup, &opts),
        Benchmark::GpuStream => stream::run(&setup, &opts),
        Benchmark::GpuCopy => copy::run(&setup, &opts),
        Benchmark::GpuMpi => mpi_gpu::run(&setup, ranks, c, &opts),
        _ => Err(GpuError::Usage(format!(
            "{} is not a GPU benchmark",
            bench.name()
        ))),
    };
    let samples = sampler.map(|s| s.finish()).unwrap_or_default();
    let (rows, libs) = match agree(ranks, measured) {
        Ok(m) => m,
        Err(code) => return code,
    };
    let run = report::Run {
        ranks,
        bench,
        setup: &setup,
        rows,
        libs,
        samples,
        telemetry_note,
        started_at,
    };
    report::report(&run, outputs)
}

/// Deterministic pseudo-random numbers (SplitMix64): inputs must be random
/// (never zeros: they hide unwritten outputs and run faster than real data),
/// and reproducible so a failure can be rerun.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f64, hi: f64) -> f64 {
        lo + (hi - lo) * ((self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn opts(args: &[&str]) -> Result<GpuOptions, GpuError> {
        let cli = Cli::try_parse_from(std::iter::once("hybench").chain(args.iter().copied()))
            .expect("parses");
        options(cli.bench, &cli.common)
    }

    #[test]
    fn gpu_options() {
        let o = opts(&["gpu-stream"]).unwrap();
        assert_eq!(o.sizes, vec![1 << 30]);
        assert_eq!((o.iterations, o.warmup), (50, 5));
        assert_eq!(opts(&["gpu-copy"]).unwrap().sizes.len(), 11);
        assert_eq!(
            opts(&["gpu-copy", "-m", "4M:16M"]).unwrap().sizes,
            vec![4 << 20, 8 << 20, 16 << 20]
        );
        assert!(matches!(
            opts(&["gpu-stream", "--dtype", "bf16"]),
            Err(GpuError::Usage(_))
        ));
        assert!(matches!(
            opts(&["gpu-gemm", "-m", "1M"]),
            Err(GpuError::Usage(_))
        ));
        assert!(matches!(
            opts(&["gpu-stream", "-m", "1000"]),
            Err(GpuError::Usage(_))
        ));
        assert_eq!(
            opts(&["gpu-stream", "-m", "256M"]).unwrap().sizes,
            vec![256 << 20]
        );
        assert!(matches!(
            opts(&["gpu-copy", "-m", "2G"]),
            Err(GpuError::Usage(_))
        ));
        assert!(matches!(
            opts(&["gpu-copy", "--window", "8"]),
            Err(GpuError::Usage(_))
        ));
        assert!(opts(&["gpu-mpi", "--window", "8"]).is_ok());
        assert!(matches!(
            opts(&["gpu-gemm", "-i", "0"]),
            Err(GpuError::Usage(_))
        ));
        for bench in ["gpu-gemm", "gpu-stream", "gpu-copy"] {
            let Err(GpuError::Usage(message)) = opts(&[bench, "--format", "osu"]) else {
                panic!("{bench} --format osu is a usage error");
            };
            assert!(
                message.contains(&format!("{bench} has no OSU Micro-Benchmarks equivalent")),
                "{message}"
            );
        }
        assert!(opts(&["gpu-mpi", "--format", "osu"]).is_ok());
    }

    #[test]
    fn rng() {
        let mut r = Rng::new(1);
        let v: Vec<f64> = (0..1000).map(|_| r.uniform(-1.0, 1.0)).collect();
        assert!(v.iter().all(|x| (-1.0..1.0).contains(x)));
        assert!(v.iter().any(|x| *x < -0.9) && v.iter().any(|x| *x > 0.9));
    }
}
