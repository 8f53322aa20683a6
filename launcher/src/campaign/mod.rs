//! Campaigns: a matrix of benchmark launches (native and container modes),
//! run interleaved, stored append-only so a killed run resumes where it
//! stopped, and reported as ratios to native with confidence intervals.
//!
//! - [`scenario`]: the TOML file, checked and expanded into cells;
//! - [`runner`]: launching cells (directly or through `hybrun::launch`);
//! - [`submit`]: `--submit`, one sbatch allocation per node count;
//! - [`results`]: the append-only store and its recovery;
//! - [`report`], [`compare`], [`plots`]: what the numbers say.

pub mod compare;
pub mod plots;
pub mod report;
pub mod results;
pub mod runner;
pub mod scenario;
pub mod submit;
