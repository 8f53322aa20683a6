//! Command line of hybench and the OSU defaults per benchmark.

use std::path::PathBuf;

use clap::{Args, Parser, ValueEnum};
pub use hybrun_core::vocab::Benchmark;

/// OSU's threshold between "small" and "large" messages (LARGE_MESSAGE_SIZE).
pub const LARGE_MESSAGE_SIZE: u64 = 8192;
/// Largest message hybench accepts (buffers are allocated up front).
pub const MAX_ACCEPTED_SIZE: u64 = 1 << 30;

/// MPI micro-benchmarks with the OSU method and real statistics.
///
/// Every benchmark follows the OSU Micro-Benchmarks 7.x method by default
/// (sizes, iterations, warm-up, window, timing points, units); see
/// bench-apps/README.md for the formulas.
#[derive(Parser, Debug)]
#[command(name = "hybench", version, about, long_about = None)]
pub struct Cli {
    /// The benchmark (the catalogue is `hybrun_core::vocab::Benchmark`, shared
    /// with campaign scenarios).
    #[arg(value_enum, value_name = "BENCHMARK")]
    pub bench: Benchmark,
    #[command(flatten)]
    pub common: Common,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// hybench's table: the OSU value and the statistics of every iteration.
    Table,
    /// One row per size, every column (the result schema).
    Csv,
    /// The run's metadata, each rank's placement and every row.
    Json,
    /// The text of OSU Micro-Benchmarks 7.2, for scripts that parse OSU's output
    /// (the MPI benchmarks and gpu-mpi).
    Osu,
}

#[derive(Args, Debug, Clone)]
pub struct Common {
    /// Message sizes as OSU's -m: `[MIN:]MAX` or `MIN:`, bytes with optional
    /// K/M/G suffix (powers of 1024). Sizes double from MIN up to MAX.
    #[arg(short = 'm', long = "sizes", value_name = "[MIN:]MAX", global = true)]
    pub sizes: Option<String>,
    /// Timed iterations per size (small and large messages alike when given).
    #[arg(short = 'i', long, global = true)]
    pub iterations: Option<u64>,
    /// Warm-up iterations per size, not timed (small and large alike when given).
    #[arg(short = 'x', long, global = true)]
    pub warmup: Option<u64>,
    /// Timed iterations for sizes above 8 KiB (overrides -i there).
    #[arg(long, global = true)]
    pub iterations_large: Option<u64>,
    /// Warm-up iterations for sizes above 8 KiB (overrides -x there).
    #[arg(long, global = true)]
    pub warmup_large: Option<u64>,
    /// Messages in flight per iteration for bw, bibw and mbw-mr (OSU: 64).
    #[arg(short = 'W', long, global = true)]
    pub window: Option<u32>,
    /// Number of rank pairs for multi-lat and mbw-mr (default: ranks / 2).
    #[arg(short = 'p', long, global = true)]
    pub pairs: Option<u32>,
    /// Check received data after each size's timed loop; a corrupt byte fails the run.
    #[arg(short = 'c', long, global = true)]
    pub validate: bool,
    /// Output format of the results.
    #[arg(long, value_enum, default_value_t = Format::Table, global = true)]
    pub format: Format,
    /// Write the results to FILE instead of standard output.
    #[arg(short = 'o', long, value_name = "FILE", global = true)]
    pub output: Option<PathBuf>,
    /// Also write the results as CSV to FILE, whatever --format says (the full
    /// statistics next to a table or OSU's text).
    #[arg(long, value_name = "FILE", global = true)]
    pub csv: Option<PathBuf>,
    /// Write every per-iteration timing to FILE (CSV, one row per sample).
    #[arg(long, value_name = "FILE", global = true)]
    pub samples: Option<PathBuf>,
    /// Testing aid: corrupt one received byte before validation, to prove that
    /// --validate catches it.
    #[arg(long, hide = true, global = true)]
    pub debug_corrupt: bool,
    /// gpu-gemm: element types, comma-separated: fp64, fp32, tf32, bf16, fp16
    /// (default: all).
    #[arg(long, value_name = "LIST", global = true)]
    pub dtype: Option<String>,
    /// gpu-gemm: orders N of the square products (M = N = K), comma-separated
    /// (default 8192).
    #[arg(long = "size", value_name = "N[,N...]", global = true)]
    pub gemm_size: Option<String>,
    /// GPU benchmarks: device ordinal (default: local rank modulo the visible GPUs).
    #[arg(long, value_name = "ORDINAL", global = true)]
    pub gpu: Option<u32>,
    /// GPU benchmarks: bind the rank to the CPUs near its GPU before measuring.
    #[arg(long, global = true)]
    pub bind_near_gpu: bool,
    /// GPU benchmarks: NVML sampling interval in milliseconds (0: no telemetry).
    #[arg(long, value_name = "MS", default_value_t = 50, global = true)]
    pub telemetry_ms: u64,
}

/// Iteration counts of one benchmark family (OSU defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub iterations: u64,
    pub warmup: u64,
    pub iterations_large: u64,
    pub warmup_large: u64,
}

impl Counts {
    /// (iterations, warm-up) for a message size.
    pub fn for_size(&self, size: u64) -> (u64, u64) {
        if size > LARGE_MESSAGE_SIZE {
            (self.iterations_large, self.warmup_large)
        } else {
            (self.iterations, self.warmup)
        }
    }
}

/// What a benchmark needs, resolved from OSU defaults and the options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub bench: Benchmark,
    pub sizes: Vec<u64>,
    pub counts: Counts,
    pub window: u32,
    pub pairs: u32,
}

/// hybench's OSU defaults and rank checks per benchmark (the catalogue itself
/// is shared: `hybrun_core::vocab::Benchmark`).
pub trait OsuDefaults {
    fn default_sizes(self) -> (u64, u64);
    fn default_counts(self) -> Counts;
    fn check_ranks(self, ranks: i32, pairs: u32) -> Result<(), String>;
}

impl OsuDefaults for Benchmark {
    /// OSU default size range (min, max).
    fn default_sizes(self) -> (u64, u64) {
        match self {
            Benchmark::Latency
            | Benchmark::Bw
            | Benchmark::Bibw
            | Benchmark::MultiLat
            | Benchmark::MbwMr => (1, 1 << 22),
            Benchmark::Barrier => (0, 0),
            // osu_reduce/osu_allreduce skip sizes with zero floats: first size is 4 B.
            Benchmark::Reduce | Benchmark::Allreduce => (4, 1 << 20),
            _ => (1, 1 << 20),
        }
    }

    /// OSU default iteration counts (osu_util.h, OMB 7.x).
    fn default_counts(self) -> Counts {
        match self {
            Benchmark::Latency | Benchmark::MultiLat => Counts {
                iterations: 10_000,
                warmup: 100,
                iterations_large: 1000,
                warmup_large: 10,
            },
            Benchmark::Bw | Benchmark::Bibw => Counts {
                iterations: 100,
                warmup: 10,
                iterations_large: 20,
                warmup_large: 2,
            },
            // osu_mbw_mr (7.x) keeps 100/10 for every size.
            Benchmark::MbwMr => Counts {
                iterations: 100,
                warmup: 10,
                iterations_large: 100,
                warmup_large: 10,
            },
            _ => Counts {
                iterations: 1000,
                warmup: 100,
                iterations_large: 100,
                warmup_large: 10,
            },
        }
    }

    /// Check the rank count; the message names the rule and the fix.
    fn check_ranks(self, ranks: i32, pairs: u32) -> Result<(), String> {
        match self {
            Benchmark::Latency | Benchmark::Bw | Benchmark::Bibw if ranks != 2 => Err(format!(
                "{} needs exactly 2 ranks, got {ranks}; launch it with `-n 2` (use multi-lat or mbw-mr for more pairs)",
                self.name()
            )),
            Benchmark::MultiLat | Benchmark::MbwMr if ranks < 2 || ranks % 2 != 0 => Err(format!(
                "{} pairs rank i with rank i + n/2 and needs an even number of ranks >= 2, got {ranks}",
                self.name()
            )),
            Benchmark::MultiLat | Benchmark::MbwMr if pairs == 0 || pairs as i32 > ranks / 2 => {
                Err(format!(
                    "--pairs {pairs} is out of range for {ranks} ranks (1..={})",
                    ranks / 2
                ))
            }
            _ if ranks < 1 => Err("no ranks".into()),
            Benchmark::Barrier
            | Benchmark::Bcast
            | Benchmark::Reduce
            | Benchmark::Allreduce
            | Benchmark::Allgather
            | Benchmark::Alltoall
            | Benchmark::Gather
            | Benchmark::Scatter
            | Benchmark::GpuMpi
                if ranks < 2 =>
            {
                Err(format!(
                    "{} needs at least 2 ranks, got {ranks}",
                    self.name()
                ))
            }
            _ => Ok(()),
        }
    }
}

/// Parse one size: digits with an optional K, M or G suffix (powers of 1024;
/// `KiB`, `MiB`, `GiB` and `KB`-style spellings accepted).
pub fn parse_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (digits, suffix) = t.split_at(split);
    if digits.is_empty() {
        return Err(format!(
            "`{text}` is not a size: expected bytes like 8, 64K or 4M"
        ));
    }
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("`{text}` is too large"))?;
    let mult: u64 = match suffix.to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        _ => {
            return Err(format!(
                "`{text}` has an unknown unit `{suffix}`: use K, M or G"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("`{text}` is too large"))
}

/// Expand `[MIN:]MAX` / `MIN:` (OSU -m) into the size sweep: MIN, 2 MIN, ... <= MAX.
pub fn parse_size_range(spec: &str, default: (u64, u64)) -> Result<Vec<u64>, String> {
    let (min, max) = match spec.split_once(':') {
        Some((a, b)) => {
            let min = if a.trim().is_empty() {
                default.0
            } else {
                parse_size(a)?
            };
            let max = if b.trim().is_empty() {
                default.1
            } else {
                parse_size(b)?
            };
            (min, max)
        }
        None => (default.0, parse_size(spec)?),
    };
    if max > MAX_ACCEPTED_SIZE {
        return Err(format!(
            "size range `{spec}`: {max} bytes is above the 1 GiB limit"
        ));
    }
    if min > max {
        return Err(format!(
            "size range `{spec}`: MIN ({min}) is larger than MAX ({max})"
        ));
    }
    Ok(sweep(min, max))
}

fn sweep(min: u64, max: u64) -> Vec<u64> {
    let mut sizes = Vec::new();
    // OSU starts at MIN and doubles; a MIN of 0 is followed by 1.
    let mut s = min;
    while s <= max {
        sizes.push(s);
        s = if s == 0 { 1 } else { s * 2 };
    }
    sizes
}

impl Cli {
    /// Resolve OSU defaults and the options into a plan for `ranks` ranks.
    pub fn plan(&self, ranks: i32) -> Result<Plan, String> {
        let b = self.bench;
        let c = &self.common;
        if b.is_gpu() {
            return Err(format!("{} is a GPU benchmark (src/gpu/)", b.name()));
        }
        for (set, opt) in [
            (c.dtype.is_some(), "--dtype"),
            (c.gemm_size.is_some(), "--size"),
            (c.gpu.is_some(), "--gpu"),
            (c.bind_near_gpu, "--bind-near-gpu"),
            (c.telemetry_ms != 50, "--telemetry-ms"),
        ] {
            if set {
                return Err(format!(
                    "{opt} applies to the GPU benchmarks (gpu-*), not {}",
                    b.name()
                ));
            }
        }
        let default = b.default_sizes();
        let sizes = match (&c.sizes, b) {
            (Some(_), Benchmark::Barrier) => {
                return Err("barrier has no message size; drop --sizes".into());
            }
            (Some(spec), _) => parse_size_range(spec, default)?,
            (None, _) => sweep(default.0, default.1),
        };
        let sizes: Vec<u64> = match b {
            // Float reductions need at least one float (as OSU, sizes with zero elements are skipped).
            Benchmark::Reduce | Benchmark::Allreduce => {
                sizes.into_iter().filter(|s| *s >= 4).collect()
            }
            Benchmark::Barrier => sizes,
            _ => sizes.into_iter().filter(|s| *s >= 1).collect(),
        };
        if sizes.is_empty() {
            return Err(format!(
                "size range leaves no message size for {} (it needs at least {} bytes)",
                b.name(),
                if matches!(b, Benchmark::Reduce | Benchmark::Allreduce) {
                    4
                } else {
                    1
                }
            ));
        }
        let mut counts = b.default_counts();
        if let Some(i) = c.iterations {
            counts.iterations = i;
            counts.iterations_large = i;
        }
        if let Some(x) = c.warmup {
            counts.warmup = x;
            counts.warmup_large = x;
        }
        if let Some(i) = c.iterations_large {
            counts.iterations_large = i;
        }
        if let Some(x) = c.warmup_large {
            counts.warmup_large = x;
        }
        if counts.iterations == 0 || counts.iterations_large == 0 {
            return Err("--iterations must be at least 1".into());
        }
        if counts.iterations > 100_000_000 || counts.iterations_large > 100_000_000 {
            return Err(
                "--iterations above 100000000 would not fit the per-iteration samples in memory"
                    .into(),
            );
        }
        let window = c.window.unwrap_or(64);
        if c.window.is_some() && !b.is_bandwidth() {
            return Err(format!(
                "--window applies to bw, bibw and mbw-mr, not {}",
                b.name()
            ));
        }
        if window == 0 || window > 4096 {
            return Err(format!("--window {window} is out of range (1..=4096)"));
        }
        if c.pairs.is_some() && !matches!(b, Benchmark::MultiLat | Benchmark::MbwMr) {
            return Err(format!(
                "--pairs applies to multi-lat and mbw-mr, not {}",
                b.name()
            ));
        }
        let pairs = match b {
            Benchmark::MultiLat | Benchmark::MbwMr => c.pairs.unwrap_or((ranks / 2).max(0) as u32),
            Benchmark::Latency | Benchmark::Bw | Benchmark::Bibw => 1,
            _ => 0,
        };
        b.check_ranks(ranks, pairs)?;
        Ok(Plan {
            bench: b,
            sizes,
            counts,
            window: if b.is_bandwidth() { window } else { 1 },
            pairs,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("64K"), Ok(65536));
        assert_eq!(parse_size("4MiB"), Ok(4 << 20));
        assert!(parse_size("abc").is_err());
        assert!(parse_size("4X").is_err());
        assert_eq!(
            parse_size_range("8", (1, 1 << 22)).unwrap(),
            vec![1, 2, 4, 8]
        );
        assert_eq!(
            parse_size_range("4:16", (1, 1 << 22)).unwrap(),
            vec![4, 8, 16]
        );
        assert_eq!(
            parse_size_range("2M:", (1, 1 << 22)).unwrap(),
            vec![2 << 20, 4 << 20]
        );
        assert!(parse_size_range("16:4", (1, 8)).is_err());
        assert!(parse_size_range("1:2G", (1, 8)).is_err());
        assert!(parse_size_range("1::4", (1, 8)).is_err());
    }

    fn cli(args: &[&str]) -> Cli {
        Cli::try_parse_from(std::iter::once("hybench").chain(args.iter().copied())).unwrap()
    }

    #[test]
    fn osu_defaults() {
        let p = cli(&["latency"]).plan(2).unwrap();
        assert_eq!(p.sizes.len(), 23); // 1 B .. 4 MiB
        assert_eq!(p.counts.for_size(8192), (10_000, 100));
        assert_eq!(p.counts.for_size(16384), (1000, 10));
        let p = cli(&["bw"]).plan(2).unwrap();
        assert_eq!(
            (p.window, p.counts.for_size(1), p.counts.for_size(1 << 20)),
            (64, (100, 10), (20, 2))
        );
        let p = cli(&["allreduce"]).plan(4).unwrap();
        assert_eq!((p.sizes[0], *p.sizes.last().unwrap()), (4, 1 << 20));
        assert_eq!(cli(&["barrier"]).plan(3).unwrap().sizes, vec![0]);
    }

    #[test]
    fn rank_rules() {
        assert!(
            cli(&["latency"])
                .plan(1)
                .unwrap_err()
                .contains("exactly 2 ranks")
        );
        assert!(cli(&["latency"]).plan(3).is_err());
        assert!(
            cli(&["multi-lat"])
                .plan(3)
                .unwrap_err()
                .contains("even number")
        );
        assert_eq!(cli(&["mbw-mr"]).plan(4).unwrap().pairs, 2);
        assert!(cli(&["mbw-mr", "-p", "3"]).plan(4).is_err());
        assert!(cli(&["latency", "--window", "8"]).plan(2).is_err());
    }
}
