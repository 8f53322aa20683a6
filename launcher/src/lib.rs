//! hybrun: correct, safe and measured container launches for HPC.
//!
//! The library behind the `hybrun` binary (the command-line files only parse
//! arguments and print):
//!
//! - [`site`]: the site file, typed at load.
//! - [`host`]: what this host offers, probed from its files and programs (MPI,
//!   glibc, the loader and the one library-closure resolver, NVIDIA driver,
//!   Slurm, fabric, topology, runtimes).
//! - [`elf`]: the ELF facts of libraries, in images and on the host.
//! - [`image`]: what is inside an image, and whether it can run here.
//! - [`launch`]: planning and rendering `hybrun run` and `hybrun exec`.
//! - [`campaign`]: benchmark campaigns and their reports.
//! - [`doctor`]: `hybrun doctor`'s findings.
//! - [`sif`], [`store`]: SIF images; the allowed-directory image store.

pub mod campaign;
pub mod doctor;
pub mod elf;
pub mod host;
pub mod image;
pub mod launch;
pub mod sif;
pub mod site;
pub mod store;
