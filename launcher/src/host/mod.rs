//! What this host offers a launch, probed from its files and programs: one
//! concern per module, each reading from roots and paths it is given (so tests
//! point it at fake trees: a temporary directory standing in for /sys, /proc,
//! /dev or /etc/ld.so.cache, a PATH of fake programs), with a thin wrapper for
//! the real system. Used by the image check ([`crate::image::check`]), the launch
//! planner ([`crate::launch`]) and `hybrun doctor` ([`crate::doctor`]).
//!
//! - [`env`](mod@env): the environment snapshot ([`Host`]), `which`, hybrun's cache dir.
//! - [`command`]: running a probe program with a deadline.
//! - [`ldcache`]: `/etc/ld.so.cache` (what `ldconfig -p` lists).
//! - [`loader`]: the dynamic loader's search rules and the glibc family.
//! - [`closure`]: the one library-closure resolver (bind mode, the image check,
//!   the doctor).
//! - [`mpi`]: finding the host MPI libraries (loader cache, `mpicc -show`,
//!   `pkg-config`).
//! - [`glibc`]: the host's glibc version.
//! - [`driver`]: the NVIDIA driver and GPU device files.
//! - [`slurm`]: `srun --version` and `srun --mpi=list`.
//! - [`fabric`]: fast-network devices, verbs drivers, fabric libraries.
//! - [`topology`]: CPUs, NUMA nodes and PCI GPUs from sysfs.
//! - [`runtime`]: the container runtimes on PATH and their versions.

pub mod closure;
pub mod command;
pub mod driver;
pub mod env;
pub mod fabric;
pub mod glibc;
pub mod ldcache;
pub mod loader;
pub mod mpi;
pub mod runtime;
pub mod slurm;
pub mod topology;

pub use env::{Host, safe_name};

use std::path::Path;

/// The names in `dir` that `keep` accepts, sorted; none when `dir` cannot be
/// read (a probe finds nothing there).
pub fn list_dir(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| keep(n))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[cfg(test)]
pub mod fake_elf;
