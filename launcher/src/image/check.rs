//! Can this image run on this host, and how? One verdict per launch mode:
//!
//! - native: the app runs on the host, without the container; it needs the host MPI.
//! - hybrid: the container's own MPI, ranks started by `srun --mpi=<pmi>`; it needs
//!   an MPI in the image, a PMI plugin of this Slurm that the image's MPI speaks, and
//!   fabric libraries in the image to be fast across nodes.
//! - bind: the host's MPI (and its library closure, minus glibc) bound into the
//!   container; it needs an image MPI of the same ABI (Sarus's rules, see [`abi`]) and
//!   an image glibc at least as new as the host libraries need.
//!
//! The CUDA runtime of the image is checked against the host's NVIDIA driver for the
//! container modes.

use std::collections::{BTreeSet, HashSet, VecDeque};
use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::abi::{self, AbiMode};
use super::detect::{self, Contents, MpiLibrary, STANDARD_LIB_DIRS, base_name};
use super::elf::{ElfInfo, ElfReader, GlibcVersion};
use hybrun_core::vocab::{Mode, MpiAbi, MpiFlavour};

/// How a mode (or one reason) fares; ordered OK < WARN < FAIL.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Status::Ok => "OK",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One finding behind a verdict.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Reason {
    pub status: Status,
    pub text: String,
}

/// The verdict for one launch mode: the worst of its reasons.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verdict {
    pub mode: Mode,
    pub status: Status,
    pub reasons: Vec<Reason>,
}

impl Verdict {
    fn new(mode: Mode) -> Self {
        Verdict {
            mode,
            status: Status::Ok,
            reasons: Vec::new(),
        }
    }

    fn add(&mut self, status: Status, text: impl Into<String>) {
        self.status = self.status.max(status);
        self.reasons.push(Reason {
            status,
            text: text.into(),
        });
    }
}

/// The host's NVIDIA driver.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Driver {
    /// "550.54.15".
    pub version: String,
    /// Where it was read ("/proc/driver/nvidia/version" or the libcuda file).
    pub source: String,
}

/// What `srun --mpi=list` said.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum SrunPmi {
    /// No srun on this host (or `--srun none`).
    Absent,
    /// srun ran but failed (no slurm.conf, ...).
    Failed {
        srun: String,
        error: String,
    },
    Plugins {
        srun: String,
        plugins: Vec<String>,
    },
    /// Not asked: the `--mpi=` plugin a planned launch uses (`hybrun run`'s gate),
    /// judged against the MPI that will start under it.
    Launch {
        plugin: String,
    },
}

/// The glibc the host MPI's library closure needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GlibcRequirement {
    /// The highest GLIBC_x.y needed by any library that would be bound.
    pub max: Option<GlibcVersion>,
    /// The library that needs it.
    pub needed_by: Option<String>,
    /// How many library files were read (DT_NEEDED closure and plugin directories).
    pub files: usize,
    /// DT_NEEDED names not found in the library directories.
    pub unresolved: Vec<String>,
}

/// One MPI library of this host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostMpi {
    #[serde(flatten)]
    pub library: MpiLibrary,
    /// How it was found: "--host-mpi", "ldconfig -p", "mpicc -show", "pkg-config".
    pub found_by: String,
}

/// What the checks need to know about this host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostFacts {
    pub mpi: Vec<HostMpi>,
    /// Problems finding or reading host MPI libraries.
    pub notes: Vec<String>,
    pub glibc: Option<GlibcVersion>,
    pub driver: Option<Driver>,
    pub srun: SrunPmi,
    /// Fast-network devices present (/dev/infiniband, /dev/hfi1_0, /dev/cxi0).
    pub fabric_devices: Vec<String>,
}

/// Which host MPI to compare with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMpiChoice {
    /// Find them: ldconfig -p, mpicc -show, pkg-config.
    Detect,
    /// This library file only.
    Path(PathBuf),
    /// Behave as if the host had no MPI.
    None,
}

/// Which srun to ask for PMI plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SrunChoice {
    /// `srun` from PATH.
    Detect,
    Path(PathBuf),
    /// Behave as if there were no srun.
    None,
}

/// Errors of the host side that stop a check (an explicit `--host-mpi` that cannot be
/// read); everything merely missing becomes a reason instead.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(
        "--host-mpi {path}: cannot read it: {why}; give the path of the host's libmpi.so.N or libmpich.so.N"
    )]
    HostMpiUnreadable { path: String, why: String },
    #[error(
        "--host-mpi {path}: not an MPI C library (its name and SONAME are neither libmpi.so.N, \
         libmpich.so.N nor libmpi_abi.so); give the path of the host's MPI library"
    )]
    NotMpi { path: String },
}

/// Gathers the host facts.
pub fn host_facts(mpi: &HostMpiChoice, srun: &SrunChoice) -> Result<HostFacts, HostError> {
    let mut notes = Vec::new();
    let mpi = match mpi {
        HostMpiChoice::None => Vec::new(),
        HostMpiChoice::Path(p) => vec![explicit_host_mpi(p)?],
        HostMpiChoice::Detect => detect_host_mpi(&mut notes),
    };
    Ok(HostFacts {
        mpi,
        notes,
        glibc: host_glibc(),
        driver: nvidia_driver(),
        srun: srun_pmi(srun),
        fabric_devices: fabric_devices(),
    })
}

fn analyze_host_file(path: &Path) -> Result<MpiLibrary, String> {
    let real = fs::canonicalize(path).map_err(|e| e.to_string())?;
    let file = File::open(&real).map_err(|e| e.to_string())?;
    let elf = ElfReader::new(file);
    detect::analyze_mpi(
        &path.display().to_string(),
        &real.display().to_string(),
        &elf,
    )
    .map_err(|e| e.to_string())
}

fn explicit_host_mpi(path: &Path) -> Result<HostMpi, HostError> {
    let label = path.display().to_string();
    let library = analyze_host_file(path).map_err(|why| HostError::HostMpiUnreadable {
        path: label.clone(),
        why,
    })?;
    if library.abi.is_none() {
        return Err(HostError::NotMpi { path: label });
    }
    Ok(HostMpi {
        library,
        found_by: "--host-mpi".into(),
    })
}

/// Runs a command with a deadline; its stdout and stderr, or None when it cannot run.
pub fn run_with_timeout(program: &Path, args: &[&str], limit: Duration) -> Option<(bool, String)> {
    let mut command = Command::new(program);
    command.args(args);
    run_command_with_timeout(command, limit)
}

/// Runs a prepared command (stdin closed, output captured) with a deadline: its
/// exit success and stdout followed by stderr, or None when it cannot start.
pub fn run_command_with_timeout(mut command: Command, limit: Duration) -> Option<(bool, String)> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                // Ours to end: it was spawned just above.
                let _ = child.kill();
                let _ = child.wait();
                return Some((false, format!("timed out after {} s", limit.as_secs())));
            }
        }
    }
    let output = child.wait_with_output().ok()?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Some((output.status.success(), text))
}

/// Finds a program in PATH.
pub fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// `ldconfig -p` lines "\tlibmpich.so.12 (libc6,x86-64) => /lib/.../libmpich.so.12":
/// the paths of this architecture's libraries whose name `wanted` accepts.
pub fn parse_ldconfig(text: &str, wanted: impl Fn(&str) -> bool) -> Vec<PathBuf> {
    let arch_tag = match std::env::consts::ARCH {
        "x86_64" => "x86-64",
        "aarch64" => "AArch64",
        _ => "",
    };
    text.lines()
        .filter_map(|line| {
            let (left, path) = line.split_once(" => ")?;
            let mut words = left.split_whitespace();
            let name = words.next()?;
            let tags = words.collect::<Vec<_>>().join(" ");
            (wanted(name) && (arch_tag.is_empty() || tags.contains(arch_tag)))
                .then(|| PathBuf::from(path.trim()))
        })
        .collect()
}

fn is_versioned_mpi_name(name: &str) -> bool {
    matches!(
        abi::split_so_name(name),
        Some((_, Some(_))) | Some(("libmpi_abi", None))
    ) && abi::family_from_name(name).is_some()
}

fn detect_host_mpi(notes: &mut Vec<String>) -> Vec<HostMpi> {
    let mut candidates: Vec<(PathBuf, &str)> = Vec::new();
    let ldconfig = ["/sbin/ldconfig", "/usr/sbin/ldconfig"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .or_else(|| which("ldconfig"));
    if let Some(ldconfig) = ldconfig {
        if let Some((true, text)) = run_with_timeout(&ldconfig, &["-p"], Duration::from_secs(10)) {
            for p in parse_ldconfig(&text, is_versioned_mpi_name) {
                candidates.push((p, "ldconfig -p"));
            }
        }
    }
    let mut dirs: Vec<(PathBuf, &str)> = Vec::new();
    for mpicc in ["mpicc", "mpicc.mpich", "mpicc.openmpi"] {
        let Some(prog) = which(mpicc) else { continue };
        if let Some((true, text)) = run_with_timeout(&prog, &["-show"], Duration::from_secs(10)) {
            for word in text.split_whitespace() {
                if let Some(dir) = word.strip_prefix("-L") {
                    dirs.push((PathBuf::from(dir), "mpicc -show"));
                }
            }
        }
    }
    if let Some(pc) = which("pkg-config") {
        for package in ["mpich", "ompi", "mpi"] {
            if let Some((true, text)) = run_with_timeout(
                &pc,
                &["--variable=libdir", package],
                Duration::from_secs(10),
            ) {
                let dir = text.trim();
                if !dir.is_empty() {
                    dirs.push((PathBuf::from(dir), "pkg-config"));
                }
            }
        }
    }
    for (dir, how) in dirs {
        let Ok(listing) = fs::read_dir(&dir) else {
            continue;
        };
        let mut names: Vec<String> = listing
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| is_versioned_mpi_name(n))
            .collect();
        names.sort_by_key(String::len);
        if let Some(n) = names.first() {
            candidates.push((dir.join(n), how));
        }
    }
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    for (path, how) in candidates {
        let Ok(real) = fs::canonicalize(&path) else {
            continue;
        };
        if !seen.insert(real) {
            continue;
        }
        match analyze_host_file(&path) {
            Ok(library) if library.abi.is_some() => found.push(HostMpi {
                library,
                found_by: how.to_owned(),
            }),
            Ok(_) => {}
            Err(why) => notes.push(format!("{}: {why}", path.display())),
        }
    }
    found
}

/// The host's glibc version (the highest GLIBC_x.y its libc.so.6 defines).
/// Where the host's C library is looked for, in this order.
pub const HOST_LIBC: [&str; 4] = [
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/lib/aarch64-linux-gnu/libc.so.6",
    "/lib64/libc.so.6",
    "/usr/lib64/libc.so.6",
];

pub fn host_glibc() -> Option<GlibcVersion> {
    let libc = HOST_LIBC.iter().find(|p| Path::new(p).exists())?;
    let elf = ElfReader::new(File::open(libc).ok()?);
    elf.info().ok()?.max_glibc_defined()
}

/// The driver version in `/proc/driver/nvidia/version` text
/// ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar ...").
pub fn parse_nvidia_version(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("NVRM version:"))?;
    line.split_whitespace()
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() >= 2
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_owned)
}

/// The host's NVIDIA driver: /proc/driver/nvidia/version, else libcuda's file name.
pub fn nvidia_driver() -> Option<Driver> {
    let proc_file = "/proc/driver/nvidia/version";
    if let Ok(text) = fs::read_to_string(proc_file) {
        if let Some(version) = parse_nvidia_version(&text) {
            return Some(Driver {
                version,
                source: proc_file.into(),
            });
        }
    }
    // No kernel module visible (a container without /proc/driver): libcuda's file
    // name carries the driver version (libcuda.so.550.54.15).
    for dir in STANDARD_LIB_DIRS {
        let link = Path::new(dir).join("libcuda.so.1");
        let Ok(real) = fs::canonicalize(&link) else {
            continue;
        };
        let name = real.file_name()?.to_string_lossy().into_owned();
        if let Some(version) = name.strip_prefix("libcuda.so.") {
            if version.contains('.') {
                return Some(Driver {
                    version: version.to_owned(),
                    source: real.display().to_string(),
                });
            }
        }
    }
    None
}

/// Parses `srun --mpi=list`: Slurm 22+ prints "MPI plugin types are...", then one
/// plugin per line (tab-indented), then "specific pmix plugin versions available: ...";
/// older versions prefix every line with "srun: ".
pub fn parse_srun_mpi_list(text: &str) -> Vec<String> {
    let mut plugins = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let line = line.strip_prefix("srun:").map_or(line, str::trim);
        if line.is_empty() || line.contains(' ') || line.contains(':') {
            continue;
        }
        if line
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            plugins.push(line.to_owned());
        }
    }
    plugins.sort();
    plugins.dedup();
    plugins
}

fn srun_pmi(choice: &SrunChoice) -> SrunPmi {
    let srun = match choice {
        SrunChoice::None => return SrunPmi::Absent,
        SrunChoice::Path(p) => p.clone(),
        SrunChoice::Detect => match which("srun") {
            Some(p) => p,
            None => return SrunPmi::Absent,
        },
    };
    let label = srun.display().to_string();
    match run_with_timeout(&srun, &["--mpi=list"], Duration::from_secs(15)) {
        None => SrunPmi::Failed {
            srun: label,
            error: "cannot run it".into(),
        },
        Some((ok, text)) => {
            let plugins = parse_srun_mpi_list(&text);
            if ok && !plugins.is_empty() {
                SrunPmi::Plugins {
                    srun: label,
                    plugins,
                }
            } else {
                let error = text
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("no output")
                    .trim()
                    .to_owned();
                SrunPmi::Failed { srun: label, error }
            }
        }
    }
}

/// Fast-network device files present on this host.
pub fn fabric_devices() -> Vec<String> {
    let mut found = Vec::new();
    if Path::new("/dev/infiniband").is_dir() {
        found.push("/dev/infiniband".to_owned());
    }
    if let Ok(dev) = fs::read_dir("/dev") {
        let mut names: Vec<String> = dev
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("hfi1_") || n.starts_with("cxi"))
            .map(|n| format!("/dev/{n}"))
            .collect();
        names.sort();
        found.extend(names);
    }
    found
}

/// Libraries that come from the image's glibc in bind mode (never bound from the host).
pub fn is_glibc_library(name: &str) -> bool {
    const GLIBC: &[&str] = &[
        "libc.so.6",
        "libm.so.6",
        "libmvec.so.1",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "libresolv.so.2",
        "libutil.so.1",
        "libanl.so.1",
        "libBrokenLocale.so.1",
        "libc_malloc_debug.so.0",
        "libthread_db.so.1",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
        "ld-linux.so.2",
    ];
    GLIBC.contains(&name) || name.starts_with("libnss_")
}

/// The directories the host's loader searches: /etc/ld.so.conf (with its includes),
/// then the standard ones.
pub fn loader_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    read_ld_so_conf(Path::new("/etc/ld.so.conf"), &mut dirs, 0);
    for d in STANDARD_LIB_DIRS {
        dirs.push(PathBuf::from(d));
    }
    let mut seen = HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

fn read_ld_so_conf(path: &Path, dirs: &mut Vec<PathBuf>, depth: usize) {
    if depth > 8 {
        return;
    }
    let Ok(text) = fs::read_to_string(path) else {
        return;
    };
    for line in text.lines() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        if let Some(pattern) = line.strip_prefix("include") {
            let pattern = pattern.trim();
            // "include /etc/ld.so.conf.d/*.conf": the only glob form in use.
            let (dir, file_glob) = pattern.rsplit_once('/').unwrap_or((".", pattern));
            let (prefix, suffix) = file_glob.split_once('*').unwrap_or((file_glob, ""));
            if let Ok(listing) = fs::read_dir(dir) {
                let mut files: Vec<PathBuf> = listing
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| {
                        let n = p
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default();
                        n.starts_with(prefix) && n.ends_with(suffix)
                    })
                    .collect();
                files.sort();
                for f in files {
                    read_ld_so_conf(&f, dirs, depth + 1);
                }
            }
        } else if line.starts_with('/') {
            dirs.push(PathBuf::from(line));
        }
    }
}

/// At most this many files are read for one closure (Open MPI's plugin directory
/// has ~150).
const MAX_CLOSURE_FILES: usize = 1000;

/// One library file of a DT_NEEDED closure.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClosureFile {
    /// The canonical file.
    pub path: PathBuf,
    pub soname: Option<String>,
    /// Its DT_NEEDED names (glibc's own included, as the file lists them).
    pub needed: Vec<String>,
    /// The highest GLIBC_x.y it needs, and from which glibc library.
    pub glibc: Option<GlibcVersion>,
    /// Read from a plugin directory (dlopen()ed, not DT_NEEDED).
    pub plugin: bool,
}

/// The DT_NEEDED closure of some host libraries, glibc's own libraries excluded.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Closure {
    /// In the order found (breadth first from the roots).
    pub files: Vec<ClosureFile>,
    /// DT_NEEDED names not found in the library directories.
    pub unresolved: Vec<String>,
    /// Plugin directories whose files were added (UCX, libfabric, Open MPI, PMIx).
    pub plugin_dirs: Vec<PathBuf>,
    /// Whether the walk stopped at its file limit.
    pub truncated: bool,
}

/// The closure of the host libraries `roots` as the loader would resolve it (RUNPATH,
/// $ORIGIN, ld.so.conf and standard directories; read from the ELF files, no ldd),
/// plus the plugin directories its libraries load from (UCX transports, libfabric
/// providers, verbs drivers, Open MPI and PMIx components), glibc's own libraries
/// excluded (in bind mode they come from the image). Shared by bind mode's glibc rule
/// and `hybrun doctor`.
pub fn library_closure(roots: &[PathBuf]) -> Closure {
    let dirs = loader_dirs();
    let mut queue: VecDeque<(PathBuf, bool)> = VecDeque::new();
    let mut seen: HashSet<PathBuf> = HashSet::new();
    let mut unresolved = BTreeSet::new();
    let mut closure = Closure::default();
    for root in roots {
        if let Ok(real) = fs::canonicalize(root) {
            queue.push_back((real, false));
        }
    }
    let mut plugin_dirs_done: HashSet<PathBuf> = HashSet::new();
    while let Some((path, plugin)) = queue.pop_front() {
        if seen.contains(&path) {
            continue;
        }
        if closure.files.len() >= MAX_CLOSURE_FILES {
            closure.truncated = true;
            break;
        }
        seen.insert(path.clone());
        let Ok(file) = File::open(&path) else {
            continue;
        };
        let Ok(info) = ElfReader::new(file).info() else {
            continue;
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let origin = path.parent().map(Path::to_path_buf).unwrap_or_default();
        for needed in &info.needed {
            if is_glibc_library(needed) {
                continue;
            }
            match resolve_needed(needed, &info.runpath, &origin, &dirs) {
                Some(p) => queue.push_back((p, false)),
                None => {
                    unresolved.insert(needed.clone());
                }
            }
        }
        for plugin_dir in plugin_dirs_of(&name, &origin) {
            if !plugin_dirs_done.insert(plugin_dir.clone()) {
                continue;
            }
            if let Ok(listing) = fs::read_dir(&plugin_dir) {
                let mut plugins: Vec<PathBuf> = listing
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|p| p.is_file() && p.to_string_lossy().contains(".so"))
                    .filter_map(|p| fs::canonicalize(p).ok())
                    .collect();
                plugins.sort();
                closure.plugin_dirs.push(plugin_dir);
                queue.extend(plugins.into_iter().map(|p| (p, true)));
            }
        }
        closure.files.push(ClosureFile {
            path,
            glibc: max_glibc_from(&info).map(|(v, _)| v),
            soname: info.soname,
            needed: info.needed,
            plugin,
        });
    }
    closure.unresolved = unresolved.into_iter().collect();
    closure
}

/// The highest GLIBC_x.y that the host library `root` and everything bind mode would
/// bind with it need (its [`library_closure`]).
pub fn glibc_requirement(root: &Path) -> GlibcRequirement {
    let closure = library_closure(&[root.to_path_buf()]);
    let mut best: Option<(GlibcVersion, String)> = None;
    for f in &closure.files {
        if let Some(v) = &f.glibc {
            if best.as_ref().is_none_or(|(b, _)| v > b) {
                let name = f.soname.clone().unwrap_or_else(|| {
                    f.path
                        .file_name()
                        .map(|n| n.to_string_lossy().into_owned())
                        .unwrap_or_default()
                });
                best = Some((v.clone(), name));
            }
        }
    }
    GlibcRequirement {
        needed_by: best.as_ref().map(|(_, by)| by.clone()),
        max: best.map(|(v, _)| v),
        files: closure.files.len(),
        unresolved: closure.unresolved,
    }
}

fn max_glibc_from(info: &ElfInfo) -> Option<(GlibcVersion, String)> {
    info.version_needs
        .iter()
        .filter(|n| is_glibc_library(&n.file))
        .filter_map(|n| GlibcVersion::parse(&n.version).map(|v| (v, n.file.clone())))
        .max_by(|a, b| a.0.cmp(&b.0))
}

/// Where the library `name` in `dir` loads plugins from.
fn plugin_dirs_of(name: &str, dir: &Path) -> Vec<PathBuf> {
    let stem = abi::split_so_name(name).map_or(name, |(s, _)| s);
    match stem {
        "libucs" => vec![dir.join("ucx")],
        "libfabric" => vec![dir.join("libfabric")],
        "libibverbs" => vec![dir.join("libibverbs")],
        // Debian/Ubuntu keep the components one level deeper:
        // <libdir>/openmpi/lib/openmpi3 and <libdir>/pmix2/lib/pmix.
        "libmpi" | "libopen-pal" => vec![
            dir.join("openmpi"),
            dir.join("openmpi3"),
            dir.join("openmpi/lib/openmpi3"),
        ],
        "libpmix" => vec![
            dir.join("pmix"),
            dir.join("pmix2"),
            dir.join("pmix2/lib/pmix"),
        ],
        _ => Vec::new(),
    }
}

fn resolve_needed(
    needed: &str,
    runpath: &[String],
    origin: &Path,
    dirs: &[PathBuf],
) -> Option<PathBuf> {
    if needed.contains('/') {
        return fs::canonicalize(needed).ok();
    }
    let origin_text = origin.display().to_string();
    let expanded = runpath.iter().map(|r| {
        PathBuf::from(
            r.replace("${ORIGIN}", &origin_text)
                .replace("$ORIGIN", &origin_text),
        )
    });
    expanded
        .chain(dirs.iter().cloned())
        .map(|d| d.join(needed))
        .find(|p| p.is_file())
        .and_then(|p| fs::canonicalize(p).ok())
}

/// Slurm `--mpi=` plugins an MPI of `implementation` can start under, best first.
fn pmi_plugins_for(m: &MpiLibrary) -> Vec<&'static str> {
    let needs_pmix = m.needed.iter().any(|n| n.starts_with("libpmix"));
    match m.implementation.map(MpiFlavour::abi).or(m.abi) {
        Some(MpiAbi::Openmpi) => vec!["pmix"],
        Some(MpiAbi::Mpich) => {
            let mut v = vec!["pmi2"];
            if needs_pmix {
                v.insert(0, "pmix");
            }
            if m.implementation == Some(MpiFlavour::CrayMpich) {
                v.push("cray_shasta");
            }
            v
        }
        _ => Vec::new(),
    }
}

fn pmi_reason(verdict: &mut Verdict, m: &MpiLibrary, whose: &str, srun: &SrunPmi) {
    let wanted = pmi_plugins_for(m);
    if wanted.is_empty() {
        verdict.add(
            Status::Warn,
            format!("cannot tell which PMI {whose} {} needs", m.describe()),
        );
        return;
    }
    match srun {
        SrunPmi::Absent => verdict.add(
            Status::Warn,
            format!(
                "srun not found on this host: cannot check that Slurm offers --mpi={} for {whose} {} \
                 (run the check on a login node of the cluster)",
                wanted.join("|"),
                m.describe()
            ),
        ),
        SrunPmi::Failed { srun, error } => verdict.add(
            Status::Warn,
            format!(
                "`{srun} --mpi=list` failed ({error}): cannot check that Slurm offers --mpi={} \
                 (is SLURM_CONF set?)",
                wanted.join("|")
            ),
        ),
        SrunPmi::Launch { plugin } => {
            if wanted.iter().any(|w| w == plugin) {
                verdict.add(
                    Status::Ok,
                    format!("{whose} {} starts under srun --mpi={plugin}", m.describe()),
                );
            } else {
                verdict.add(
                    Status::Fail,
                    format!(
                        "{whose} {} needs srun --mpi={} but this launch uses --mpi={plugin}; \
                         use --mpi {} (or the MPI profile of that MPI)",
                        m.describe(),
                        wanted.join(" or "),
                        wanted[0]
                    ),
                );
            }
        }
        SrunPmi::Plugins { plugins, .. } => match wanted.iter().find(|w| plugins.iter().any(|p| p == *w)) {
            Some(w) => verdict.add(
                Status::Ok,
                format!("{whose} {} starts under srun --mpi={w}", m.describe()),
            ),
            None => verdict.add(
                Status::Fail,
                format!(
                    "{whose} {} needs srun --mpi={} but this Slurm offers {}",
                    m.describe(),
                    wanted.join(" or "),
                    plugins.join(", ")
                ),
            ),
        },
    }
}

/// Minimum Linux driver for a CUDA runtime major.minor.
///
/// CUDA >= 11 uses minor-version compatibility: any driver of the major's family
/// runs every minor release. Source: NVIDIA, "CUDA Compatibility", Minor Version
/// Compatibility table (CUDA 13.x >= 580, 12.x >= 525 [525.60.13], 11.x >= 450
/// [450.80.02]) and the CUDA Toolkit Release Notes' driver table for 10.x (10.2 >=
/// 440.33, 10.1 >= 418.39, 10.0 >= 410.48).
pub fn cuda_min_driver(major: u32, minor: u32) -> Option<&'static str> {
    match (major, minor) {
        (13.., _) => Some("580.65.06"),
        (12, _) => Some("525.60.13"),
        (11, 0) => Some("450.36.06"),
        (11, _) => Some("450.80.02"),
        (10, 2) => Some("440.33"),
        (10, 1) => Some("418.39"),
        (10, 0) => Some("410.48"),
        _ => None,
    }
}

fn version_numbers(v: &str) -> Vec<u32> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// The CUDA runtime rule for a container mode.
pub fn cuda_reason(contents: &Contents, driver: Option<&Driver>) -> Option<(Status, String)> {
    let cuda = contents.cuda.as_ref()?;
    let version = cuda.version.as_deref().unwrap_or("of unknown version");
    let Some(driver) = driver else {
        return Some((
            Status::Warn,
            format!(
                "the image has the CUDA runtime {version} but this host has no NVIDIA driver: GPU \
                 code fails here (check on a GPU node)"
            ),
        ));
    };
    let (Some(major), Some(minor)) = (cuda.major, cuda.minor) else {
        return Some((
            Status::Warn,
            format!("cannot tell the CUDA runtime version of {}", cuda.file),
        ));
    };
    let Some(min) = cuda_min_driver(major, minor) else {
        return Some((
            Status::Warn,
            format!(
                "no driver table entry for CUDA {major}.{minor}; cannot check driver {}",
                driver.version
            ),
        ));
    };
    if version_numbers(&driver.version) >= version_numbers(min) {
        Some((
            Status::Ok,
            format!(
                "NVIDIA driver {} runs the image's CUDA {major}.{minor} runtime (needs >= {min})",
                driver.version
            ),
        ))
    } else {
        Some((
            Status::Fail,
            format!(
                "the image's CUDA {major}.{minor} runtime needs NVIDIA driver >= {min}, this host has \
                 {}: use an image built with an older CUDA or a node with a newer driver",
                driver.version
            ),
        ))
    }
}

/// The whole check: one verdict per mode asked for.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CheckReport {
    pub image: Contents,
    pub abi_mode: AbiMode,
    pub host: HostFacts,
    /// The host MPI bind mode would use, and what its libraries need from glibc.
    pub bind_host_mpi: Option<HostMpi>,
    pub glibc_required: Option<GlibcRequirement>,
    pub verdicts: Vec<Verdict>,
}

impl CheckReport {
    /// The worst status over the verdicts (the exit status: 1 on FAIL).
    pub fn worst(&self) -> Status {
        self.verdicts
            .iter()
            .map(|v| v.status)
            .max()
            .unwrap_or(Status::Ok)
    }

    pub fn text(&self) -> String {
        let mut out = String::new();
        let c = &self.image;
        let mpi = c
            .primary_mpi()
            .map_or("no MPI".to_owned(), MpiLibrary::describe);
        let glibc = c
            .glibc
            .as_ref()
            .and_then(|g| g.version.as_ref())
            .map_or("no glibc".to_owned(), |v| format!("glibc {v}"));
        out.push_str(&format!(
            "Image: {} ({}): {mpi}, {glibc}, fabric: {}\n",
            c.image,
            c.kind.name(),
            c.fabric.describe()
        ));
        let host_mpi = if self.host.mpi.is_empty() {
            "no MPI".to_owned()
        } else {
            self.host
                .mpi
                .iter()
                .map(|m| format!("{} [{}]", m.library.describe(), m.found_by))
                .collect::<Vec<_>>()
                .join("; ")
        };
        let srun = match &self.host.srun {
            SrunPmi::Absent => "no srun".to_owned(),
            SrunPmi::Failed { .. } => "srun --mpi=list failed".to_owned(),
            SrunPmi::Plugins { plugins, .. } => format!("srun --mpi: {}", plugins.join(", ")),
            SrunPmi::Launch { plugin } => format!("launch with srun --mpi={plugin}"),
        };
        out.push_str(&format!(
            "Host:  {host_mpi}, glibc {}, NVIDIA driver {}, {srun}\n",
            self.host
                .glibc
                .as_ref()
                .map_or("?".to_owned(), ToString::to_string),
            self.host
                .driver
                .as_ref()
                .map_or("none".to_owned(), |d| d.version.clone()),
        ));
        out.push_str(&format!("ABI mode: {}\n\n", self.abi_mode.name()));
        for v in &self.verdicts {
            out.push_str(&format!("{:<7} {}\n", v.mode.name(), v.status.name()));
            for r in &v.reasons {
                out.push_str(&format!("  {:<4}  {}\n", r.status.name(), r.text));
            }
        }
        out
    }
}

/// Runs the rules for `modes` (host facts gathered by [`host_facts`]).
pub fn check(
    contents: Contents,
    host: HostFacts,
    modes: &[Mode],
    abi_mode: AbiMode,
) -> CheckReport {
    let image_mpi = contents.primary_mpi().cloned();
    let mut verdicts = Vec::new();
    let mut bind_host_mpi = None;
    let mut glibc_required = None;
    for &mode in modes {
        let mut v = Verdict::new(mode);
        match mode {
            Mode::Native => native(&mut v, image_mpi.as_ref(), &host),
            Mode::Hybrid => hybrid(&mut v, &contents, image_mpi.as_ref(), &host),
            Mode::Inside => inside(&mut v, image_mpi.as_ref()),
            Mode::Bind => {
                let (chosen, req) = bind(&mut v, &contents, image_mpi.as_ref(), &host, abi_mode);
                bind_host_mpi = chosen;
                glibc_required = req;
            }
        }
        if mode != Mode::Native {
            if let Some((status, text)) = cuda_reason(&contents, host.driver.as_ref()) {
                v.add(status, text);
            }
        }
        verdicts.push(v);
    }
    CheckReport {
        image: contents,
        abi_mode,
        host,
        bind_host_mpi,
        glibc_required,
        verdicts,
    }
}

fn host_mpi_list(host: &HostFacts) -> String {
    host.mpi
        .iter()
        .map(|m| m.library.describe())
        .collect::<Vec<_>>()
        .join(", ")
}

fn no_host_mpi(v: &mut Verdict, why: &str) {
    v.add(
        Status::Fail,
        format!(
            "no MPI library found on this host (ldconfig -p, mpicc -show, pkg-config): {why}; load \
             the site's MPI or pass --host-mpi PATH_TO_LIBMPI"
        ),
    );
}

fn native(v: &mut Verdict, image_mpi: Option<&MpiLibrary>, host: &HostFacts) {
    let Some(im) = image_mpi else {
        v.add(
            Status::Ok,
            "the image has no MPI library: a native run needs no host MPI, only a host build of \
             the program",
        );
        return;
    };
    if host.mpi.is_empty() {
        no_host_mpi(v, "native runs use the host's MPI");
        return;
    }
    match host.mpi.iter().find(|h| h.library.abi == im.abi) {
        Some(h) => v.add(
            Status::Ok,
            format!(
                "host MPI {} has the ABI of the image's {} (native runs use a host build of the app)",
                h.library.describe(),
                im.describe()
            ),
        ),
        None => v.add(
            Status::Warn,
            format!(
                "the image's app uses {} but the host MPI is {}: a native run needs the app \
                 rebuilt against the host MPI",
                im.describe(),
                host_mpi_list(host)
            ),
        ),
    }
}

/// The inside mode runs the image's own mpiexec on one node: it needs an MPI in
/// the image and nothing of the host's.
fn inside(v: &mut Verdict, image_mpi: Option<&MpiLibrary>) {
    match image_mpi {
        Some(im) => v.add(
            Status::Ok,
            format!(
                "the image has {} at {}: inside mode runs its own mpiexec, on one node",
                im.describe(),
                im.path
            ),
        ),
        None => v.add(
            Status::Fail,
            "no MPI library in the image: inside mode runs the image's own mpiexec and MPI",
        ),
    }
}

fn hybrid(v: &mut Verdict, contents: &Contents, image_mpi: Option<&MpiLibrary>, host: &HostFacts) {
    let Some(im) = image_mpi else {
        v.add(
            Status::Fail,
            "no MPI library in the image: hybrid mode runs the container's own MPI (libmpi.so.N, \
             libmpich.so.N or libmpi_abi.so), and this image has none",
        );
        return;
    };
    v.add(
        Status::Ok,
        format!("the image has {} at {}", im.describe(), im.path),
    );
    pmi_reason(v, im, "the image's", &host.srun);
    if contents.fabric.has_fast_path() {
        v.add(
            Status::Ok,
            format!(
                "fabric libraries in the image: {}",
                contents.fabric.describe()
            ),
        );
    } else {
        let devices = if host.fabric_devices.is_empty() {
            String::new()
        } else {
            format!(" (this host has {})", host.fabric_devices.join(", "))
        };
        v.add(
            Status::Warn,
            format!(
                "the container's MPI cannot use the fast fabric across nodes: the image has no \
                 libfabric, UCX InfiniBand transport, PSM2 or verbs library{devices}; inter-node \
                 traffic falls back to TCP (use bind mode, or add the fabric libraries to the image)"
            ),
        );
    }
}

fn bind(
    v: &mut Verdict,
    contents: &Contents,
    image_mpi: Option<&MpiLibrary>,
    host: &HostFacts,
    abi_mode: AbiMode,
) -> (Option<HostMpi>, Option<GlibcRequirement>) {
    let Some(im) = image_mpi else {
        v.add(
            Status::Fail,
            "no MPI library in the image: bind mode replaces the image's MPI with the host's, and \
             the image has none for its programs to link",
        );
        return (None, None);
    };
    if host.mpi.is_empty() {
        no_host_mpi(v, "bind mode binds the host's MPI into the container");
        return (None, None);
    }
    let Some(image_id) = im.abi_id() else {
        v.add(
            Status::Fail,
            format!("cannot tell the ABI of the image's {}", im.path),
        );
        return (None, None);
    };
    let mut refusals = Vec::new();
    let mut chosen = None;
    for h in &host.mpi {
        let Some(host_id) = h.library.abi_id() else {
            continue;
        };
        match abi::compatible(&image_id, &host_id, abi_mode) {
            Ok(()) => {
                chosen = Some(h.clone());
                break;
            }
            Err(why) => refusals.push((h, why)),
        }
    }
    let Some(chosen) = chosen else {
        let advice = "use hybrid mode or a matching host MPI profile (--host-mpi)";
        let mode_note = |h: &HostMpi| {
            if h.library.abi == im.abi {
                format!(" in abi mode {}", abi_mode.name())
            } else {
                String::new()
            }
        };
        let text = if let [(h, why)] = refusals.as_slice() {
            format!(
                "image has {} but the host MPI is {}: {why}{}; {advice}",
                im.describe(),
                h.library.describe(),
                mode_note(h)
            )
        } else {
            let detail = refusals
                .iter()
                .map(|(h, why)| format!("{}: {why}{}", h.library.describe(), mode_note(h)))
                .collect::<Vec<_>>()
                .join("; ");
            format!(
                "image has {} but no host MPI can replace it ({detail}); {advice}",
                im.describe()
            )
        };
        v.add(Status::Fail, text);
        return (None, None);
    };
    v.add(
        Status::Ok,
        format!(
            "host MPI {} can replace the image's {} ({} mode){}",
            chosen.library.describe(),
            im.describe(),
            abi_mode.name(),
            if host.mpi.len() > 1 {
                format!(
                    "; the host has {} MPI libraries: pin this one with --host-mpi {}",
                    host.mpi.len(),
                    chosen.library.path
                )
            } else {
                String::new()
            }
        ),
    );
    // glibc: the host libraries run on the image's glibc.
    let req = glibc_requirement(Path::new(&chosen.library.file));
    match (&contents.glibc, &contents.musl) {
        (None, Some(musl)) => v.add(
            Status::Fail,
            format!("the image uses musl ({musl}), not glibc: host MPI libraries built for glibc cannot load"),
        ),
        (None, None) => v.add(
            Status::Fail,
            "no glibc (libc.so.6) in the image: the host MPI libraries need one",
        ),
        (Some(g), _) => match (&g.version, &req.max) {
            (Some(have), Some(need)) if need > have => v.add(
                Status::Fail,
                format!(
                    "host libraries need GLIBC_{need} ({}), image has {have}: bind mode cannot run \
                     this image here; use hybrid mode or an image with glibc >= {need}",
                    req.needed_by.as_deref().unwrap_or("?")
                ),
            ),
            (Some(have), Some(need)) => v.add(
                Status::Ok,
                format!(
                    "host libraries need GLIBC_{need} ({}; {} files read), image has {have}",
                    req.needed_by.as_deref().unwrap_or("?"),
                    req.files
                ),
            ),
            (None, _) => v.add(
                Status::Warn,
                format!("cannot tell the glibc version of the image's {}", g.path),
            ),
            (Some(have), None) => v.add(
                Status::Ok,
                format!("the host MPI libraries need no versioned glibc symbols; image has {have}"),
            ),
        },
    }
    if !req.unresolved.is_empty() {
        v.add(
            Status::Warn,
            format!(
                "host libraries not found for {}: {} (the bind bundle would miss them)",
                base_name(&chosen.library.file),
                req.unresolved.join(", ")
            ),
        );
    }
    pmi_reason(v, &chosen.library, "the host's", &host.srun);
    (Some(chosen), Some(req))
}

/// Reads a whole small file (helper for tests and the CLI).
pub fn read_small(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    File::open(path)?.take(limit).read_to_end(&mut data)?;
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srun_list_parses_both_formats() {
        let new = "MPI plugin types are...\n\tpmix\n\tnone\n\tcray_shasta\n\tpmi2\nspecific pmix plugin versions available: pmix_v4\n";
        assert_eq!(
            parse_srun_mpi_list(new),
            vec!["cray_shasta", "none", "pmi2", "pmix"]
        );
        let old = "srun: MPI types are...\nsrun: none\nsrun: pmi2\n";
        assert_eq!(parse_srun_mpi_list(old), vec!["none", "pmi2"]);
    }

    #[test]
    fn nvidia_versions_parse() {
        let text = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\nGCC version:  gcc version 12.2.0\n";
        assert_eq!(parse_nvidia_version(text).as_deref(), Some("550.54.15"));
        let open =
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.124.06  Release Build\n";
        assert_eq!(parse_nvidia_version(open).as_deref(), Some("570.124.06"));
    }

    #[test]
    fn ldconfig_lines_parse() {
        let text = "\tlibmpich.so.12 (libc6,x86-64) => /lib/x86_64-linux-gnu/libmpich.so.12\n\tlibmpi.so.40 (libc6,x86-64) => /lib/x86_64-linux-gnu/libmpi.so.40\n\tlibmpi.so (libc6,x86-64) => /lib/x86_64-linux-gnu/libmpi.so\n\tlibmpi_cxx.so.40 (libc6,x86-64) => /x\n";
        let got = parse_ldconfig(text, is_versioned_mpi_name);
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(got.len(), 2);
        }
    }

    #[test]
    fn glibc_family_is_not_bound() {
        assert!(is_glibc_library("libc.so.6"));
        assert!(is_glibc_library("ld-linux-x86-64.so.2"));
        assert!(!is_glibc_library("libucs.so.0"));
    }
}
