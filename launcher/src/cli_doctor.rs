//! `hybrun doctor`: what this host offers a launch, item by item (OK, WARN or
//! MISSING, with a fix), as text, as JSON (`--json`), or as a draft site file
//! (`--emit-site`, the format of launcher/site.example.toml).
//!
//! Everything is read, never guessed from names alone: the MPI libraries are found
//! as `hybrun image check` finds them (ldconfig -p, mpicc -show, pkg-config) and
//! their DT_NEEDED closure and GLIBC_x.y needs are read from the ELF files by
//! [`hybrun::image::check::library_closure`] (no ldd, which would run the loader on
//! the files). GPUs come from /proc/driver/nvidia/version, /dev/nvidia* and NVML
//! ([`hybrun_core::nvml`], loaded at run time, so the binary links nothing of CUDA). Topology comes
//! from sysfs (/sys/devices/system/node, cpu lists, PCI numa_node), which is what
//! `hybrun_core::placement` reads too; hwlocality would add a C library and libudev-dev
//! to the build for facts sysfs already gives.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use clap::Args;
use hybrun::image::check::{
    self, Closure, HostMpiChoice, SrunChoice, library_closure, parse_ldconfig,
    parse_nvidia_version, parse_srun_mpi_list,
};
use hybrun_core::vocab::{MpiAbi, MpiFlavour};
use serde::Serialize;

/// Arguments of `hybrun doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long, conflicts_with = "emit_site")]
    pub json: bool,
    /// Print a draft site file for this host (review it, then install it as
    /// /etc/hybrun/site.toml or pass it with --site).
    #[arg(long)]
    pub emit_site: bool,
}

/// How an item fares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Level {
    Ok,
    Warn,
    Missing,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Ok => "OK",
            Level::Warn => "WARN",
            Level::Missing => "MISSING",
        }
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

/// What `mpicc -show` said.
#[derive(Debug, Clone, Serialize)]
pub struct Wrapper {
    pub program: String,
    pub show: Option<String>,
}

/// One host MPI with its closure.
#[derive(Debug, Clone, Serialize)]
pub struct MpiFinding {
    pub library: String,
    pub file: String,
    pub soname: Option<String>,
    pub abi: Option<MpiAbi>,
    pub implementation: Option<MpiFlavour>,
    pub version: Option<String>,
    pub found_by: String,
    /// The profile name a drafted site file gives it.
    pub profile: String,
    pub closure: ClosureSummary,
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

fn summarize(closure: Closure) -> ClosureSummary {
    let mut best: Option<(hybrun::image::elf::GlibcVersion, String)> = None;
    for f in &closure.files {
        if let Some(v) = &f.glibc {
            if best.as_ref().is_none_or(|(b, _)| v > b) {
                best = Some((v.clone(), f.path.display().to_string()));
            }
        }
    }
    ClosureSummary {
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
        glibc_max: best.as_ref().map(|(v, _)| v.to_string()),
        glibc_max_by: best.map(|(_, by)| by),
        unresolved: closure.unresolved,
        plugin_dirs: closure
            .plugin_dirs
            .iter()
            .map(|p| p.display().to_string())
            .collect(),
        truncated: closure.truncated,
    }
}

/// A fabric library found through `ldconfig -p`.
#[derive(Debug, Clone, Serialize)]
pub struct FabricLibrary {
    pub name: String,
    pub path: Option<String>,
    /// Its plugin directory (UCX transports, libfabric providers, verbs drivers).
    pub plugin_dir: Option<String>,
    pub plugins: Vec<String>,
    pub closure: Option<ClosureSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fabric {
    pub devices: Vec<String>,
    /// Driver files in /etc/libibverbs.d.
    pub verbs_drivers: Vec<String>,
    pub libraries: Vec<FabricLibrary>,
    /// The `[fabric] kind` a drafted site file gets (None: no fast fabric seen).
    pub kind: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Slurm {
    pub srun: Option<String>,
    pub version: Option<String>,
    pub mpi_plugins: Vec<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RuntimeFinding {
    pub kind: &'static str,
    pub program: String,
    pub path: Option<String>,
    pub version: Option<String>,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Gpu {
    pub driver: Option<String>,
    pub devices: Vec<String>,
    /// What NVML says (None when it could not be loaded: see `nvml_error`).
    pub nvml: Option<hybrun_core::nvml::Inventory>,
    pub nvml_error: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NumaNode {
    pub node: u32,
    pub cpus: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct PciGpu {
    pub bus_id: String,
    pub numa_node: Option<i64>,
    pub local_cpus: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Topology {
    pub source: &'static str,
    pub cpus_online: Option<String>,
    pub cpus_allowed: Option<String>,
    pub sockets: usize,
    pub cores: usize,
    pub numa_nodes: Vec<NumaNode>,
    pub gpus: Vec<PciGpu>,
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
    pub mpi: Vec<MpiFinding>,
    pub fabric: Fabric,
    pub slurm: Slurm,
    pub runtimes: Vec<RuntimeFinding>,
    pub gpu: Gpu,
    pub topology: Topology,
}

/// Runs a program with a deadline (a hung `srun` must not hang the doctor): its
/// exit success and stdout+stderr, or None when it cannot start.
fn probe(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Option<(bool, String)> {
    let mut command = Command::new(program);
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    let (ok, text) =
        hybrun::image::check::run_command_with_timeout(command, Duration::from_secs(15))?;
    Some((ok, text.trim().to_owned()))
}

fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .trim()
        .to_owned()
}

fn ldconfig_text() -> String {
    let ldconfig = ["/sbin/ldconfig", "/usr/sbin/ldconfig"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| check::which("ldconfig"));
    ldconfig
        .and_then(|p| probe(&p, &["-p"], &[]))
        .filter(|(ok, _)| *ok)
        .map(|(_, text)| text)
        .unwrap_or_default()
}

fn profile_name(implementation: Option<MpiFlavour>, abi: Option<MpiAbi>) -> String {
    match (implementation, abi) {
        (Some(MpiFlavour::Intel), _) => "intel",
        (Some(MpiFlavour::CrayMpich), _) => "cray-mpich",
        (Some(MpiFlavour::Mvapich2), _) => "mvapich2",
        (Some(MpiFlavour::Openmpi), _) | (None, Some(MpiAbi::Openmpi)) => "openmpi",
        _ => "mpich",
    }
    .to_owned()
}

fn gather_mpi(items: &mut Vec<Item>) -> (Vec<Wrapper>, BTreeMap<String, String>, Vec<MpiFinding>) {
    let mut wrappers = Vec::new();
    for name in ["mpicc.mpich", "mpicc.openmpi", "mpicc"] {
        if let Some(path) = check::which(name) {
            let show = probe(&path, &["-show"], &[])
                .filter(|(ok, _)| *ok)
                .map(|(_, t)| t);
            wrappers.push(Wrapper {
                program: path.display().to_string(),
                show,
            });
        }
    }
    let mut pkg = BTreeMap::new();
    if let Some(pc) = check::which("pkg-config") {
        for package in ["mpich", "ompi", "mpi"] {
            if let Some((true, dir)) = probe(&pc, &["--variable=libdir", package], &[]) {
                if !dir.is_empty() {
                    pkg.insert(package.to_owned(), dir);
                }
            }
        }
    }
    // The same search as `hybrun image check` (ldconfig -p, mpicc -show, pkg-config).
    let facts = check::host_facts(&HostMpiChoice::Detect, &SrunChoice::None);
    let mut found = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for m in facts.map(|f| f.mpi).unwrap_or_default() {
        let lib = m.library;
        let mut profile = profile_name(lib.implementation, lib.abi);
        let n = names.entry(profile.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            profile = format!("{profile}{n}");
        }
        let closure = summarize(library_closure(&[PathBuf::from(&lib.file)]));
        let status = if closure.unresolved.is_empty() {
            Level::Ok
        } else {
            Level::Warn
        };
        items.push(Item {
            section: "mpi",
            name: lib.describe(),
            status,
            detail: format!(
                "{} (found by {}); closure {} files{}, needs GLIBC_{} ({}){}",
                lib.path,
                m.found_by,
                closure.files.len(),
                if closure.plugin_dirs.is_empty() {
                    String::new()
                } else {
                    format!(" incl. plugins of {}", closure.plugin_dirs.join(", "))
                },
                closure.glibc_max.as_deref().unwrap_or("?"),
                closure
                    .glibc_max_by
                    .as_deref()
                    .map_or("?", |p| p.rsplit('/').next().unwrap_or(p)),
                if closure.unresolved.is_empty() {
                    String::new()
                } else {
                    format!("; not found: {}", closure.unresolved.join(", "))
                }
            ),
            fix: (!closure.unresolved.is_empty()).then(|| {
                "install the packages that provide the missing libraries (bind mode would \
                 miss them), or add their directory to /etc/ld.so.conf.d"
                    .to_owned()
            }),
        });
        found.push(MpiFinding {
            library: lib.path.clone(),
            file: lib.file.clone(),
            soname: lib.soname.clone(),
            abi: lib.abi,
            implementation: lib.implementation,
            version: lib.version.clone(),
            found_by: m.found_by,
            profile,
            closure,
        });
    }
    if found.is_empty() {
        items.push(Item {
            section: "mpi",
            name: "host MPI".into(),
            status: Level::Missing,
            detail: "no MPI library through ldconfig -p, mpicc -show or pkg-config".into(),
            fix: Some(
                "load the site's MPI (module load ...) or install one (Debian: libmpich-dev, \
                 libopenmpi-dev); native and bind mode need it"
                    .into(),
            ),
        });
    }
    if wrappers.is_empty() {
        items.push(Item {
            section: "mpi",
            name: "mpicc".into(),
            status: Level::Warn,
            detail: "no mpicc, mpicc.mpich or mpicc.openmpi on PATH".into(),
            fix: Some("load the MPI's compiler wrappers to build native programs".into()),
        });
    }
    (wrappers, pkg, found)
}

fn list_dir(dir: &Path, keep: impl Fn(&str) -> bool) -> Vec<String> {
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

fn gather_fabric(items: &mut Vec<Item>, ldconfig: &str) -> Fabric {
    let mut devices = check::fabric_devices();
    if Path::new("/dev/infiniband").is_dir() {
        devices.extend(
            list_dir(Path::new("/dev/infiniband"), |_| true)
                .into_iter()
                .map(|n| format!("/dev/infiniband/{n}")),
        );
    }
    let verbs_drivers = list_dir(Path::new("/etc/libibverbs.d"), |n| n.ends_with(".driver"));
    let libs = [
        ("libpsm2.so.2", None, "PSM2 (Omni-Path)", "libpsm2-2"),
        (
            "libfabric.so.1",
            Some("libfabric"),
            "libfabric (OFI)",
            "libfabric1",
        ),
        ("libucp.so.0", Some("ucx"), "UCX", "libucx0"),
        (
            "libibverbs.so.1",
            Some("libibverbs"),
            "verbs",
            "libibverbs1",
        ),
    ];
    let mut libraries = Vec::new();
    for (name, plugin_sub, what, package) in libs {
        let path = parse_ldconfig(ldconfig, |n| n == name).into_iter().next();
        // UCX's transports sit next to libucs, not libucp; the same directory on
        // every distribution seen.
        let plugin_dir = match (&path, plugin_sub) {
            (Some(p), Some(sub)) => p.parent().map(|d| d.join(sub)).filter(|d| d.is_dir()),
            _ => None,
        };
        let plugins = plugin_dir
            .as_deref()
            .map(|d| list_dir(d, |n| n.ends_with(".so")))
            .unwrap_or_default();
        let closure = path
            .as_ref()
            .map(|p| summarize(library_closure(std::slice::from_ref(p))));
        items.push(match (&path, &closure) {
            (Some(p), Some(c)) => Item {
                section: "fabric",
                name: what.into(),
                status: if c.unresolved.is_empty() {
                    Level::Ok
                } else {
                    Level::Warn
                },
                detail: format!(
                    "{} ({} files in its closure, needs GLIBC_{}{}){}",
                    p.display(),
                    c.files.len(),
                    c.glibc_max.as_deref().unwrap_or("?"),
                    if plugins.is_empty() {
                        String::new()
                    } else {
                        format!("; plugins: {}", plugins.join(" "))
                    },
                    if c.unresolved.is_empty() {
                        String::new()
                    } else {
                        format!("; not found: {}", c.unresolved.join(", "))
                    }
                ),
                fix: (!c.unresolved.is_empty())
                    .then(|| "install the packages of the missing libraries".to_owned()),
            },
            _ => Item {
                section: "fabric",
                name: what.into(),
                status: Level::Missing,
                detail: format!("{name} not in ldconfig -p"),
                fix: Some(format!(
                    "only needed for that fabric: install it (Debian: {package}), or load the \
                     site's fabric stack"
                )),
            },
        });
        libraries.push(FabricLibrary {
            name: name.to_owned(),
            path: path.map(|p| p.display().to_string()),
            plugin_dir: plugin_dir.map(|d| d.display().to_string()),
            plugins,
            closure,
        });
    }
    let has = |lib: &str| libraries.iter().any(|l| l.name == lib && l.path.is_some());
    let hfi = devices.iter().any(|d| d.starts_with("/dev/hfi1_"));
    let ib = devices.iter().any(|d| d.starts_with("/dev/infiniband"));
    let kind = if hfi && has("libpsm2.so.2") {
        Some("psm2")
    } else if hfi && has("libfabric.so.1") {
        Some("opx")
    } else if ib && has("libucp.so.0") {
        Some("ucx")
    } else if ib && has("libfabric.so.1") {
        Some("verbs")
    } else {
        None
    };
    items.push(Item {
        section: "fabric",
        name: "devices".into(),
        status: if devices.is_empty() {
            Level::Warn
        } else {
            Level::Ok
        },
        detail: if devices.is_empty() {
            "no /dev/hfi1_*, /dev/infiniband/*, /dev/cxi*: MPI between nodes goes over TCP".into()
        } else {
            format!(
                "{}{}",
                devices.join(" "),
                kind.map_or(String::new(), |k| format!(" (fabric kind {k})"))
            )
        },
        fix: devices.is_empty().then(|| {
            "on a cluster with a fast network, load its driver (hfi1, mlx5_ib) or run the doctor \
             on a compute node; fine on a test machine"
                .into()
        }),
    });
    items.push(Item {
        section: "fabric",
        name: "/etc/libibverbs.d".into(),
        status: if verbs_drivers.is_empty() {
            Level::Missing
        } else {
            Level::Ok
        },
        detail: if verbs_drivers.is_empty() {
            "no verbs provider drivers".into()
        } else {
            format!(
                "{} drivers ({})",
                verbs_drivers.len(),
                verbs_drivers.join(" ")
            )
        },
        fix: verbs_drivers
            .is_empty()
            .then(|| "only for InfiniBand/RoCE: install rdma-core (ibverbs-providers)".into()),
    });
    Fabric {
        devices,
        verbs_drivers,
        libraries,
        kind: kind.map(str::to_owned),
    }
}

fn gather_slurm(items: &mut Vec<Item>) -> Slurm {
    let Some(srun) = check::which("srun") else {
        items.push(Item {
            section: "slurm",
            name: "srun".into(),
            status: Level::Missing,
            detail: "srun not on PATH".into(),
            fix: Some(
                "run the doctor on a login node of the cluster, or launch with --launcher \
                 mpiexec-hydra|mpiexec-openmpi"
                    .into(),
            ),
        });
        return Slurm {
            srun: None,
            version: None,
            mpi_plugins: Vec::new(),
            error: None,
        };
    };
    let label = srun.display().to_string();
    let version = probe(&srun, &["--version"], &[]);
    let list = probe(&srun, &["--mpi=list"], &[]);
    let mut slurm = Slurm {
        srun: Some(label.clone()),
        version: None,
        mpi_plugins: Vec::new(),
        error: None,
    };
    match version {
        Some((true, text)) => slurm.version = Some(last_line(&text)),
        Some((false, text)) => slurm.error = Some(last_line(&text)),
        None => slurm.error = Some("cannot run it".into()),
    }
    if let Some((true, text)) = &list {
        slurm.mpi_plugins = parse_srun_mpi_list(text);
    } else if slurm.error.is_none() {
        slurm.error = Some(list.map_or("cannot run it".into(), |(_, t)| last_line(&t)));
    }
    let fits = ["pmi2", "pmix"]
        .iter()
        .filter(|p| slurm.mpi_plugins.iter().any(|q| q == *p))
        .count();
    items.push(match (&slurm.version, &slurm.error) {
        (Some(v), None) => Item {
            section: "slurm",
            name: "srun".into(),
            status: if fits == 2 { Level::Ok } else { Level::Warn },
            detail: format!(
                "{v} at {label}; --mpi plugins: {}",
                slurm.mpi_plugins.join(", ")
            ),
            fix: (fits < 2).then(|| {
                "MPICH needs --mpi=pmi2 and Open MPI --mpi=pmix: ask the admins for the \
                 missing Slurm MPI plugin (Debian: slurm-wlm, libpmix-dev)"
                    .into()
            }),
        },
        (_, error) => Item {
            section: "slurm",
            name: "srun".into(),
            status: Level::Warn,
            detail: format!(
                "{label} failed: {}",
                error.as_deref().unwrap_or("no version")
            ),
            fix: Some("export SLURM_CONF=/path/to/slurm.conf (or run on a cluster node)".into()),
        },
    });
    slurm
}

fn gather_runtimes(items: &mut Vec<Item>) -> Vec<RuntimeFinding> {
    // ch-run refuses to start without $USER, even for --version.
    let user = std::env::var("USER").unwrap_or_else(|_| "hybrun-doctor".into());
    let mut found = Vec::new();
    for (kind, program) in [
        ("singularity", "singularity"),
        ("apptainer", "apptainer"),
        ("charliecloud", "ch-run"),
    ] {
        let path = check::which(program);
        let mut finding = RuntimeFinding {
            kind,
            program: program.to_owned(),
            path: path.as_ref().map(|p| p.display().to_string()),
            version: None,
            error: None,
        };
        if let Some(p) = &path {
            match probe(p, &["--version"], &[("USER", &user)]) {
                Some((true, text)) => {
                    // "singularity version 3.6.4", "apptainer version 1.3.0", "0.31".
                    finding.version = text.split_whitespace().last().map(str::to_owned);
                }
                Some((false, text)) => finding.error = Some(last_line(&text)),
                None => finding.error = Some("cannot run it".into()),
            }
        }
        found.push(finding);
    }
    let usable: Vec<String> = found
        .iter()
        .filter_map(|f| {
            f.version
                .as_ref()
                .map(|v| format!("{} {v} ({})", f.program, f.path.as_deref().unwrap_or("?")))
        })
        .collect();
    let broken: Vec<String> = found
        .iter()
        .filter_map(|f| f.error.as_ref().map(|e| format!("{}: {e}", f.program)))
        .collect();
    items.push(Item {
        section: "runtime",
        name: "container runtime".into(),
        status: match (usable.is_empty(), broken.is_empty()) {
            (true, true) => Level::Missing,
            (false, true) => Level::Ok,
            _ => Level::Warn,
        },
        detail: if usable.is_empty() && broken.is_empty() {
            "no singularity, apptainer or ch-run on PATH".into()
        } else {
            usable
                .iter()
                .chain(broken.iter())
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        },
        fix: (usable.is_empty() || !broken.is_empty()).then(|| {
            "install or load Singularity/Apptainer (or Charliecloud: ch-run); native mode \
             needs none"
                .into()
        }),
    });
    found
}

fn gather_gpu(items: &mut Vec<Item>) -> Gpu {
    let driver = std::fs::read_to_string("/proc/driver/nvidia/version")
        .ok()
        .and_then(|t| parse_nvidia_version(&t));
    let devices: Vec<String> = list_dir(Path::new("/dev"), |n| {
        n.strip_prefix("nvidia")
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
    })
    .into_iter()
    .map(|n| format!("/dev/{n}"))
    .collect();
    let (nvml, nvml_error) = match hybrun_core::nvml::inventory() {
        Ok(inv) => (Some(inv), None),
        Err(e) => (None, Some(e)),
    };
    let gpus = nvml.as_ref().map_or(0, |inv| inv.gpus.len());
    let listed = match (&nvml, &nvml_error) {
        (Some(inv), _) => format!(
            "; NVML{}: {}",
            inv.cuda_driver_version
                .as_deref()
                .map_or(String::new(), |c| format!(" (driver supports CUDA {c})")),
            if inv.gpus.is_empty() {
                "no GPU".to_owned()
            } else {
                inv.gpus
                    .iter()
                    .map(describe_gpu)
                    .collect::<Vec<_>>()
                    .join(" | ")
            }
        ),
        (None, Some(e)) => format!("; {e}"),
        (None, None) => String::new(),
    };
    items.push(match (&driver, devices.is_empty()) {
        (None, true) if nvml.is_none() => Item {
            section: "gpu",
            name: "NVIDIA GPUs".into(),
            status: Level::Missing,
            detail: "no /proc/driver/nvidia/version, no /dev/nvidiaN, no NVML".into(),
            fix: Some("only for GPU jobs: run on a GPU node with the NVIDIA driver loaded".into()),
        },
        (Some(v), false) => Item {
            section: "gpu",
            name: "NVIDIA GPUs".into(),
            status: if gpus == 0 { Level::Warn } else { Level::Ok },
            detail: format!("driver {v}; {} device files{listed}", devices.len()),
            fix: (gpus == 0).then(|| {
                if nvml.is_none() {
                    "the driver is loaded but NVML (libnvidia-ml.so.1) is not: install the \
                     driver's user-space libraries, or add their directory to the loader path"
                        .into()
                } else {
                    "NVML lists no GPU: check the driver (dmesg, nvidia-smi)".into()
                }
            }),
        },
        (driver, _) => Item {
            section: "gpu",
            name: "NVIDIA GPUs".into(),
            status: Level::Warn,
            detail: format!(
                "driver {}, {} /dev/nvidiaN files: one without the other{listed}",
                driver.as_deref().unwrap_or("absent"),
                devices.len()
            ),
            fix: Some(
                "the kernel module and the device files disagree: load nvidia and create the \
                 device files (nvidia-modprobe), or bind /dev in the container"
                    .into(),
            ),
        },
    });
    Gpu {
        driver,
        devices,
        nvml,
        nvml_error,
    }
}

/// "GPU 0 NVIDIA H200 (0000:1b:00.0, 141 GiB, MIG on)", with what NVML gave.
fn describe_gpu(g: &hybrun_core::nvml::GpuInfo) -> String {
    let mut facts = Vec::new();
    facts.extend(g.pci_bus_id.clone());
    facts.extend(
        g.memory_total_bytes
            .map(|b| format!("{:.0} GiB", b as f64 / (1u64 << 30) as f64)),
    );
    if g.mig_enabled == Some(true) {
        facts.push("MIG on: jobs see MIG devices".into());
    }
    format!(
        "GPU {} {} ({})",
        g.index,
        g.name.as_deref().unwrap_or("(name unreadable)"),
        facts.join(", ")
    )
}

fn read_trim(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|t| t.trim().to_owned())
}

fn gather_topology(items: &mut Vec<Item>) -> Topology {
    let sys = Path::new("/sys/devices/system");
    let mut numa_nodes = Vec::new();
    for name in list_dir(&sys.join("node"), |n| n.starts_with("node")) {
        let Ok(node) = name["node".len()..].parse::<u32>() else {
            continue;
        };
        if let Some(cpus) = read_trim(sys.join("node").join(&name).join("cpulist")) {
            numa_nodes.push(NumaNode { node, cpus });
        }
    }
    numa_nodes.sort_by_key(|n| n.node);
    let cpus_online = read_trim(sys.join("cpu/online"));
    let mut packages = std::collections::BTreeSet::new();
    let mut cores = std::collections::BTreeSet::new();
    if let Some(online) = &cpus_online {
        for cpu in hybrun_core::placement::parse_cpulist(online).unwrap_or_default() {
            let topo = sys.join(format!("cpu/cpu{cpu}/topology"));
            let package = read_trim(topo.join("physical_package_id"));
            let core = read_trim(topo.join("core_id"));
            if let (Some(p), Some(c)) = (package, core) {
                packages.insert(p.clone());
                cores.insert((p, c));
            }
        }
    }
    let mut gpus = Vec::new();
    for bus_id in list_dir(Path::new("/sys/bus/pci/devices"), |_| true) {
        let dev = Path::new("/sys/bus/pci/devices").join(&bus_id);
        let vendor = read_trim(dev.join("vendor"));
        let class = read_trim(dev.join("class"));
        // NVIDIA (0x10de), display controllers (class 0x03xxxx: VGA and 3D).
        if vendor.as_deref() == Some("0x10de") && class.is_some_and(|c| c.starts_with("0x03")) {
            gpus.push(PciGpu {
                numa_node: read_trim(dev.join("numa_node")).and_then(|n| n.parse().ok()),
                local_cpus: read_trim(dev.join("local_cpulist")),
                bus_id,
            });
        }
    }
    let cpus_allowed = hybrun_core::placement::current_affinity()
        .ok()
        .map(|c| hybrun_core::placement::format_cpulist(&c));
    items.push(Item {
        section: "topology",
        name: "CPUs and NUMA (sysfs)".into(),
        status: if numa_nodes.is_empty() || cpus_online.is_none() {
            Level::Warn
        } else {
            Level::Ok
        },
        detail: format!(
            "{} socket(s), {} core(s), CPUs {} (this process may use {}), NUMA: {}{}",
            packages.len(),
            cores.len(),
            cpus_online.as_deref().unwrap_or("?"),
            cpus_allowed.as_deref().unwrap_or("?"),
            numa_nodes
                .iter()
                .map(|n| format!("node{}={}", n.node, n.cpus))
                .collect::<Vec<_>>()
                .join(" "),
            gpus.iter()
                .map(|g| format!(
                    "; GPU {} near NUMA {} (CPUs {})",
                    g.bus_id,
                    g.numa_node.map_or("?".into(), |n| n.to_string()),
                    g.local_cpus.as_deref().unwrap_or("?")
                ))
                .collect::<String>()
        ),
        fix: numa_nodes.is_empty().then(|| {
            "/sys/devices/system/node is not readable (a container without /sys?): run on the \
             host"
                .into()
        }),
    });
    Topology {
        source: "sysfs",
        cpus_online,
        cpus_allowed,
        sockets: packages.len(),
        cores: cores.len(),
        numa_nodes,
        gpus,
    }
}

/// Gathers everything.
pub fn gather() -> Report {
    let mut items = Vec::new();
    let ldconfig = ldconfig_text();
    let glibc = check::host_glibc().map(|v| v.to_string());
    items.push(Item {
        section: "host",
        name: "glibc".into(),
        status: if glibc.is_some() {
            Level::Ok
        } else {
            Level::Warn
        },
        detail: glibc.as_ref().map_or("cannot read libc.so.6".into(), |v| {
            format!("{v} (images for bind mode need at least what the host MPI closure needs)")
        }),
        fix: glibc
            .is_none()
            .then(|| "not a glibc system? bind mode needs one".into()),
    });
    let (mpi_wrappers, pkg_config, mpi) = gather_mpi(&mut items);
    let fabric = gather_fabric(&mut items, &ldconfig);
    let slurm = gather_slurm(&mut items);
    let runtimes = gather_runtimes(&mut items);
    let gpu = gather_gpu(&mut items);
    let topology = gather_topology(&mut items);
    Report {
        hybrun_version: env!("CARGO_PKG_VERSION"),
        host: rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
        glibc,
        items,
        mpi_wrappers,
        pkg_config,
        mpi,
        fabric,
        slurm,
        runtimes,
        gpu,
        topology,
    }
}

/// The human report: one line per item, fixes indented under it.
pub fn text(report: &Report) -> String {
    let mut out = format!("hybrun doctor on {}\n", report.host);
    let mut section = "";
    for item in &report.items {
        if item.section != section {
            section = item.section;
            let _ = writeln!(out, "\n[{section}]");
        }
        let _ = writeln!(
            out,
            "{:<7} {}: {}",
            item.status.name(),
            item.name,
            item.detail
        );
        if let Some(fix) = &item.fix {
            let _ = writeln!(out, "        fix: {fix}");
        }
    }
    let worst = report.items.iter().map(|i| i.status).max();
    let _ = writeln!(
        out,
        "\n{} items: {} OK, {} WARN, {} MISSING{}",
        report.items.len(),
        count(report, Level::Ok),
        count(report, Level::Warn),
        count(report, Level::Missing),
        if worst == Some(Level::Ok) {
            ""
        } else {
            " (MISSING items are only needed for what they name)"
        }
    );
    out
}

fn count(report: &Report, level: Level) -> usize {
    report.items.iter().filter(|i| i.status == level).count()
}

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A draft site file in the format of launcher/site.example.toml.
pub fn site_draft(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# hybrun site file drafted by `hybrun doctor --emit-site` on {} (hybrun {}).\n\
         # Review every value; launcher/site.example.toml documents each key. Install it as\n\
         # /etc/hybrun/site.toml, or pass it with --site / $HYBRUN_SITE.",
        report.host, report.hybrun_version
    );
    let runtime = report
        .runtimes
        .iter()
        .find(|r| r.version.is_some())
        .or_else(|| report.runtimes.iter().find(|r| r.path.is_some()));
    out.push_str("\n[runtime]\n");
    match runtime {
        Some(r) => {
            let _ = writeln!(out, "kind = {}", quote(r.kind));
            if let Some(path) = &r.path {
                let _ = writeln!(out, "program = {}", quote(path));
            }
            // The planner reads the version of Singularity/Apptainer (which flags
            // exist); ch-run's is not used.
            if let (Some(v), "singularity" | "apptainer") = (&r.version, r.kind) {
                let _ = writeln!(out, "version = {}", quote(v));
            }
        }
        None => out.push_str("# no container runtime found on this host\nkind = \"none\"\n"),
    }
    out.push_str("bind_dir = \"/opt/hybrun/host-mpi/lib\"\n");

    out.push_str("\n[launcher]\n");
    let first = report.mpi.first();
    if report.slurm.srun.is_some() {
        out.push_str("kind = \"srun\"\n");
    } else if let Some(m) = first {
        let kind = if m.abi == Some(MpiAbi::Openmpi) {
            "mpiexec-openmpi"
        } else {
            "mpiexec-hydra"
        };
        let _ = writeln!(out, "# no srun on this host\nkind = {}", quote(kind));
    } else {
        out.push_str("kind = \"none\"\n");
    }
    if let Some(m) = first {
        let _ = writeln!(out, "mpi_profile = {}", quote(&m.profile));
    }
    out.push_str("record_dir = \"{home}/.hybrun/records\"\n");

    for m in &report.mpi {
        let abi = if m.abi == Some(MpiAbi::Openmpi) {
            "openmpi"
        } else {
            "mpich"
        };
        let _ = writeln!(
            out,
            "\n# {} {} (found by {}); its closure needs GLIBC_{}",
            m.implementation.map_or("MPI", MpiFlavour::label),
            m.version.as_deref().unwrap_or(""),
            m.found_by,
            m.closure.glibc_max.as_deref().unwrap_or("?")
        );
        let _ = writeln!(out, "[mpi.{}]", quote(&m.profile));
        let _ = writeln!(out, "abi = {}", quote(abi));
        let flavour = match m.implementation {
            Some(MpiFlavour::Intel) => "intel",
            Some(MpiFlavour::Openmpi) => "openmpi",
            _ if abi == "openmpi" => "openmpi",
            _ => "mpich",
        };
        let _ = writeln!(out, "flavour = {}", quote(flavour));
        let pmi = if abi == "openmpi" { "pmix" } else { "pmi2" };
        if !report.slurm.mpi_plugins.is_empty()
            && !report.slurm.mpi_plugins.iter().any(|p| p == pmi)
        {
            let _ = writeln!(out, "# this Slurm has no --mpi={pmi}: ask the admins");
        }
        let _ = writeln!(out, "pmi = {}", quote(pmi));
        let _ = writeln!(out, "library = {}", quote(&m.library));
        let mpiexec = match m.profile.as_str() {
            "openmpi" => "mpiexec.openmpi",
            _ => "mpiexec.mpich",
        };
        if let Some(p) = check::which(mpiexec) {
            let _ = writeln!(out, "mpiexec = {}", quote(&p.display().to_string()));
        }
    }

    out.push_str("\n[fabric]\n");
    match &report.fabric.kind {
        Some(kind) => {
            let _ = writeln!(out, "kind = {}", quote(kind));
            let lib = match kind.as_str() {
                "psm2" => Some("libpsm2.so.2"),
                "opx" | "verbs" => Some("libfabric.so.1"),
                _ => None,
            };
            let libs: Vec<String> = lib
                .and_then(|l| report.fabric.libraries.iter().find(|f| f.name == l))
                .and_then(|f| f.path.clone())
                .map(|p| vec![quote(&p)])
                .unwrap_or_default();
            let _ = writeln!(out, "libs = [{}]", libs.join(", "));
            let ofi = report
                .fabric
                .libraries
                .iter()
                .find(|f| f.name == "libfabric.so.1")
                .and_then(|f| f.plugin_dir.clone());
            if let ("psm2" | "opx" | "verbs", Some(dir)) = (kind.as_str(), ofi) {
                let _ = writeln!(
                    out,
                    "plugin_dirs = [{{ src = {}, env = \"FI_PROVIDER_PATH\" }}]",
                    quote(&dir)
                );
            }
            let devices = match kind.as_str() {
                "psm2" | "opx" => "[\"/dev/hfi1_*\"]",
                _ => "[\"/dev/infiniband/*\"]",
            };
            let _ = writeln!(out, "devices = {devices}");
        }
        None => out.push_str(
            "# no fast-network device on this host: no fabric kind, so no fabric guard\n\
             # (MPI between nodes uses TCP). On Omni-Path: kind = \"psm2\"; InfiniBand: \"ucx\".\n",
        ),
    }

    out.push_str("\n[gpu]\n");
    let vendor = if report.gpu.driver.is_some() || !report.gpu.devices.is_empty() {
        "nvidia"
    } else {
        "none"
    };
    let _ = writeln!(out, "vendor = {}", quote(vendor));
    out
}

/// `hybrun doctor`.
pub fn run(args: DoctorArgs) -> anyhow::Result<()> {
    let report = gather();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if args.emit_site {
        print!("{}", site_draft(&report));
    } else {
        print!("{}", text(&report));
    }
    Ok(())
}
