//! `hybrun doctor`'s findings: what this host offers a launch, item by item (OK,
//! WARN or MISSING, with a fix), assembled into one [`Report`] from the probes of
//! [`crate::host`]. The binary prints it as text ([`text::text`]), as JSON, or as
//! a draft site file ([`site::site_draft`], the format of
//! launcher/site.example.toml).
//!
//! Everything is read, never guessed from names alone: the MPI libraries are found
//! as `hybrun image check` finds them (loader cache, mpicc -show, pkg-config) and
//! their closure and GLIBC_x.y needs are read from the ELF files by
//! [`crate::host::closure::library_closure`] (the resolver bind mode binds
//! with). GPUs come from /proc/driver/nvidia/version, /dev/nvidia* and NVML
//! ([`hybrun_core::nvml`], loaded at run time, so the binary links nothing of
//! CUDA). Topology comes from sysfs ([`crate::host::topology`]).
//!
//! Each section is a module that turns probe results into items: [`mpi`],
//! [`fabric`], [`slurm`], [`runtime`], [`gpu`], [`topology`]; [`Where`] names the
//! roots the probes read, so tests point them at fake trees.

pub mod fabric;
pub mod gpu;
pub mod mpi;
pub mod runtime;
pub mod site;
pub mod slurm;
pub mod text;
pub mod topology;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::elf::GlibcVersion;
use crate::host::closure::Closure;
use crate::host::loader::Loader;
use crate::host::mpi::Wrapper;
use crate::host::runtime::RuntimeFinding;
use crate::host::slurm::Slurm as SlurmFacts;
use crate::host::topology::Topology;
use crate::host::{Host, glibc};

hybrun_core::named_enum! {
    /// How an item fares; ordered OK < WARN < MISSING.
    pub enum Level ("level") {
        /// Present and usable.
        Ok = "OK",
        /// Present, with a caveat.
        Warn = "WARN",
        /// Absent: a launch that needs it fails.
        Missing = "MISSING",
    }
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Item {
    pub section: &'static str,
    pub name: String,
    pub status: Level,
    pub detail: String,
    /// What to do about a WARN or MISSING.
    pub fix: Option<String>,
}

/// A closure, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct ClosureSummary {
    pub files: Vec<ClosureEntry>,
    /// The highest GLIBC_x.y over the closure, and the file that needs it.
    pub glibc_max: Option<String>,
    pub glibc_max_by: Option<String>,
    pub unresolved: Vec<String>,
    pub plugin_dirs: Vec<String>,
    pub truncated: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ClosureEntry {
    pub path: String,
    pub soname: Option<String>,
    pub glibc: Option<String>,
    pub plugin: bool,
}

impl ClosureSummary {
    pub fn of(closure: Closure) -> ClosureSummary {
        let best = closure.glibc_max();
        ClosureSummary {
            glibc_max: best
                .and_then(|f| f.glibc.as_ref())
                .map(GlibcVersion::to_string),
            glibc_max_by: best.map(|f| f.path.display().to_string()),
            files: closure
                .files
                .iter()
                .map(|f| ClosureEntry {
                    path: f.path.display().to_string(),
                    soname: f.soname.clone(),
                    glibc: f.glibc.as_ref().map(ToString::to_string),
                    plugin: f.plugin,
                })
                .collect(),
            unresolved: closure.unresolved,
            plugin_dirs: closure
                .plugin_dirs
                .iter()
                .map(|p| p.display().to_string())
                .collect(),
            truncated: closure.truncated,
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub hybrun_version: &'static str,
    pub host: String,
    pub glibc: Option<String>,
    pub items: Vec<Item>,
    pub mpi_wrappers: Vec<Wrapper>,
    pub pkg_config: BTreeMap<String, String>,
    pub mpi: Vec<mpi::MpiFinding>,
    pub fabric: fabric::Fabric,
    pub slurm: SlurmFacts,
    pub runtimes: Vec<RuntimeFinding>,
    pub gpu: gpu::Gpu,
    pub topology: Topology,
    /// What every launch needs and this host lacks (`hybrun doctor` exits 1
    /// when there is any): a container runtime, and a program that starts
    /// ranks (srun, or an mpiexec). The other MISSING items are only needed
    /// for what they name (a GPU job, a fabric, bind mode).
    pub required_missing: Vec<String>,
}

impl Report {
    /// How many items have `level`.
    pub fn count(&self, level: Level) -> usize {
        self.items.iter().filter(|i| i.status == level).count()
    }
}

/// Where the probes read: the real system ([`Where::system`]) or a fake tree.
#[derive(Debug, Clone)]
pub struct Where {
    /// The environment (PATH for the programs asked, USER, LD_LIBRARY_PATH).
    pub host: Host,
    /// How libraries are resolved (loader cache, default directories).
    pub loader: Loader,
    /// The root libc.so.6 is looked for under ("/").
    pub root: PathBuf,
    /// /dev.
    pub dev: PathBuf,
    /// /sys.
    pub sys: PathBuf,
    /// /proc/driver/nvidia/version.
    pub nvidia_version: PathBuf,
    /// /etc/libibverbs.d.
    pub verbs_drivers: PathBuf,
}

impl Where {
    /// This host, as the process sees it.
    pub fn system() -> Where {
        let host = Host::current();
        Where {
            loader: Loader::host(&host),
            host,
            root: PathBuf::from("/"),
            dev: PathBuf::from("/dev"),
            sys: PathBuf::from("/sys"),
            nvidia_version: PathBuf::from(crate::host::driver::PROC_VERSION),
            verbs_drivers: PathBuf::from("/etc/libibverbs.d"),
        }
    }

    /// A fake tree under `root` (dev, sys, proc, etc inside it) with `host`'s
    /// environment.
    pub fn under(root: &Path, host: Host, loader: Loader) -> Where {
        Where {
            host,
            loader,
            root: root.to_owned(),
            dev: root.join("dev"),
            sys: root.join("sys"),
            nvidia_version: root.join("proc/driver/nvidia/version"),
            verbs_drivers: root.join("etc/libibverbs.d"),
        }
    }
}

fn glibc_item(glibc: Option<&String>) -> Item {
    Item {
        section: "host",
        name: "glibc".into(),
        status: if glibc.is_some() {
            Level::Ok
        } else {
            Level::Warn
        },
        detail: glibc.map_or("cannot read libc.so.6".into(), |v| {
            format!("{v} (images for bind mode need at least what the host MPI closure needs)")
        }),
        fix: glibc
            .is_none()
            .then(|| "not a glibc system? bind mode needs one".into()),
    }
}

/// Gathers everything from the roots in `at`; `hostname` names the host and
/// `nvml` is what NVML said (read by the caller: it loads a library).
pub fn gather_in(
    at: &Where,
    hostname: String,
    nvml: Result<hybrun_core::nvml::Inventory, String>,
) -> Report {
    let mut items = Vec::new();
    let glibc = glibc::version_under(&at.root).map(|v| v.to_string());
    items.push(glibc_item(glibc.as_ref()));
    let mpi = mpi::gather(&mut items, &at.host, &at.loader);
    let fabric = fabric::gather(&mut items, at);
    let slurm = slurm::gather(&mut items, &at.host);
    let runtimes = runtime::gather(&mut items, &at.host);
    let gpu = gpu::gather(&mut items, at, nvml);
    let topology = topology::gather(&mut items, at);
    let required_missing = required_missing(&items, &at.host);
    Report {
        hybrun_version: env!("CARGO_PKG_VERSION"),
        host: hostname,
        glibc,
        items,
        mpi_wrappers: mpi.wrappers,
        pkg_config: mpi.pkg_config,
        mpi: mpi.found,
        fabric,
        slurm,
        runtimes,
        gpu,
        topology,
        required_missing,
    }
}

/// The required items (see [`Report::required_missing`]) this host lacks.
fn required_missing(items: &[Item], host: &Host) -> Vec<String> {
    let missing = |section: &str| {
        items
            .iter()
            .any(|i| i.section == section && i.status == Level::Missing)
    };
    let mut out = Vec::new();
    if missing("runtime") {
        out.push("a container runtime (singularity, apptainer or ch-run)".to_owned());
    }
    let mpiexec = ["mpiexec", "mpiexec.hydra", "mpiexec.openmpi", "mpirun"]
        .iter()
        .any(|p| host.which(p).is_some());
    if missing("slurm") && !mpiexec {
        out.push("a program that starts ranks (srun, or an MPI's mpiexec)".to_owned());
    }
    out
}

/// Gathers everything about this host.
pub fn gather() -> Report {
    let hostname = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    gather_in(&Where::system(), hostname, hybrun_core::nvml::inventory())
}

#[cfg(test)]
mod tests;
