//! hybrun: correct, safe and measured container launches for HPC.
//!
//! The library behind the `hybrun` binary (whose `cli` modules hold only the
//! command-line definitions and printing). What hybench shares with it lives in
//! the `hybrun-core` crate (vocabulary, statistics, result schema, placement,
//! NVML); the SIF format is the `hybrun-sif` crate. The rooms:
//!
//! - [`site`]: the site file, every section typed and checked as it is read;
//! - [`host`]: what this host offers, probed from its files and programs (MPI,
//!   glibc, the loader and the one library-closure resolver, NVIDIA driver,
//!   Slurm, fabric, topology, runtimes);
//! - [`elf`]: the ELF facts of libraries, in images and on the host;
//! - [`image`]: what is inside an image, and whether it can run here;
//! - [`launch`]: planning and rendering a launch (`hybrun run`/`exec`);
//! - [`store`]: the allowed directory (`hybrun image cp|ls|rm|verify`);
//! - [`campaign`]: benchmark campaigns and their reports;
//! - [`doctor`]: `hybrun doctor`'s findings;
//! - [`quote`]: POSIX shell quoting of argv for text people paste.

pub mod campaign;
pub mod doctor;
pub mod elf;
pub mod fsopen;
pub mod host;
pub mod image;
pub mod launch;
pub mod quote;
pub mod site;
pub mod store;
