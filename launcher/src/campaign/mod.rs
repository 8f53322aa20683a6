//! Campaigns: a matrix of benchmark launches (native and container modes),
//! run interleaved, stored append-only so a killed run resumes where it
//! stopped, and reported as ratios to native with confidence intervals.
//!
//! - [`scenario`]: the TOML file, read as written, validated and expanded into cells;
//! - [`runner`]: launching cells, every mode through `hybrun::launch`'s planner;
//! - [`submit`]: `--submit`, one sbatch allocation per node count;
//! - [`rundir`]: the run directory (`scenario.json`, `manifest.json`, atomic writes);
//! - [`results`]: the append-only store and its recovery;
//! - [`analysis`]: ratios to native, confidence intervals, verdicts, the stop rule;
//! - [`export`]: what the numbers say, as Markdown, CSV, JSON, SVG plots, and
//!   the comparison of two runs.

pub mod analysis;
pub mod export;
pub mod results;
pub mod rundir;
pub mod runner;
pub mod scenario;
pub mod submit;

/// Whether this process runs inside a Slurm allocation (srun starts the ranks).
pub fn in_allocation() -> bool {
    std::env::var_os("SLURM_JOB_ID").is_some_and(|v| !v.is_empty())
}

/// CPUs this process may use: ranks beyond them oversubscribe the node.
fn cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}
