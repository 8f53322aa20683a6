//! hybrun: correct, safe and measured container launches for HPC.
//!
//! The library behind the `hybrun` binary (whose `cli` modules hold only the
//! command-line definitions and printing). What hybench shares with it lives in
//! the `hybrun-core` crate (vocabulary, statistics, result schema, placement,
//! NVML); the SIF format is the `hybrun-sif` crate. The rooms:
//!
//! - [`site`]: the site file, every section typed and checked as it is read;
//! - [`launch`]: planning and rendering a launch (`hybrun run`/`exec`);
//! - [`image`]: what is inside an image, and whether it can run here;
//! - [`store`]: the allowed directory (`hybrun image cp|ls|rm|verify`);
//! - [`campaign`]: benchmark campaigns and their reports;
//! - [`quote`]: POSIX shell quoting of argv for text people paste.

pub mod campaign;
pub mod image;
pub mod launch;
pub mod quote;
pub mod site;
pub mod store;
