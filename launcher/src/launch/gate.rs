//! The compatibility gate of `hybrun run` and `hybrun exec`: before anything is
//! launched, the image is judged by [`crate::image::check`] for the requested mode
//! (hybrid or bind) against the chosen MPI profile's host library, and a FAIL
//! refuses the launch with the reasons (an MPI ABI the host MPI cannot replace in
//! bind mode, host libraries that need a newer glibc than the image has, no MPI in
//! the image, an image MPI that does not start under the planned `srun --mpi=`).
//! `--force` launches anyway, with a warning that names what was overridden. The
//! verdict goes into the launch record either way.
//!
//! The gate fails closed: an image hybrun cannot read (a format it does not
//! know, a truncated or garbage file) is refused, since nothing says it can run
//! here; `--force` launches it anyway and the record says the gate could not
//! look. And in hybrid mode the container's MPI must be one the launcher can
//! start: hydra's mpiexec starts the MPICH family (PMI-2), Open MPI's mpiexec
//! starts Open MPI (PMIx); the wrong one runs N one-rank jobs or fails.

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::{LaunchError, cache};
use crate::elf::GlibcVersion;
use crate::host::driver::{Driver, nvidia_driver};
use crate::host::fabric::fabric_devices;
use crate::host::glibc::{HOST_LIBC, host_glibc};
use crate::host::loader::Loader;
use crate::image::ImageError;
use crate::image::abi::AbiMode;
use crate::image::check::facts::{self, HostFacts, HostMpiChoice, SrunChoice, SrunPmi};
use crate::image::check::{self, Reason, Status};
use crate::image::contents::Image;
use crate::image::detect;
use crate::site::fabric::FabricKind;
use hybrun_core::vocab::{LauncherKind, Mode, MpiAbi, MpiFlavour, MpiPlugin};

/// What the gate found, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct GateRecord {
    /// The mode judged (hybrid or bind).
    pub mode: Mode,
    /// OK, WARN or FAIL; None when the image could not be read.
    pub status: Option<Status>,
    pub reasons: Vec<Reason>,
    /// The image's MPI library, as detected.
    pub image_mpi: Option<String>,
    /// The host MPI library judged against (the profile's `library`).
    pub host_mpi: Option<String>,
    /// FAIL reasons that `--force` launched past.
    pub overridden: Vec<String>,
    /// Why the gate could not judge (unreadable image), if so.
    pub note: Option<String>,
}

/// An image's contents, opened on first use: a cached judgement needs none.
pub struct LazyImage<'a> {
    path: &'a Path,
    opened: std::cell::OnceCell<Result<Image, ImageError>>,
    /// The image's files, hashed once (a directory image is walked): every
    /// key of this launch starts from it.
    identity: std::cell::OnceCell<Option<String>>,
}

impl<'a> LazyImage<'a> {
    pub fn new(path: &'a Path) -> LazyImage<'a> {
        LazyImage {
            path,
            opened: std::cell::OnceCell::new(),
            identity: std::cell::OnceCell::new(),
        }
    }

    pub fn path(&self) -> &Path {
        self.path
    }

    pub fn get(&self) -> &Result<Image, ImageError> {
        self.opened.get_or_init(|| Image::open(self.path))
    }

    /// The cache key of what is derived from this image alone (`kind`).
    pub fn key(&self, kind: &str) -> Option<cache::Key> {
        let identity = self.identity.get_or_init(|| {
            let mut files = cache::Key::new("image");
            files.image(self.path).ok()?;
            Some(files.finish())
        });
        let mut key = cache::Key::new(kind);
        key.text(identity.as_deref()?);
        Some(key)
    }
}

/// What the gate needs to know about the launch.
pub struct GateInput<'a> {
    pub mode: Mode,
    /// The image, as checked by the path policy (canonical), opened on demand.
    pub image: &'a LazyImage<'a>,
    /// The MPI profile's host library, when it names one.
    pub host_library: Option<&'a Path>,
    /// srun's `--mpi=` plugin, when srun starts the ranks.
    pub plugin: Option<MpiPlugin>,
    /// What starts the ranks, when known (`hybrun run`).
    pub launcher: Option<LauncherKind>,
    /// The site's interconnect (`[fabric] kind`).
    pub site_fabric: Option<FabricKind>,
    pub force: bool,
    /// Where judgements are cached (none: judge every time).
    pub cache_dir: Option<&'a Path>,
}

/// What the image check found: cached, since it depends only on the files in the
/// key (`judge_cached`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Judgement {
    image_mpi: Option<String>,
    reasons: Vec<Reason>,
    /// Why the image could not be judged (hybrun cannot read it), if so.
    unreadable: Option<String>,
}

/// Judges the image; Ok with the record (and warnings for the user) when the launch
/// may go on, Err when it is refused.
pub fn gate(input: &GateInput<'_>) -> Result<Option<(GateRecord, Vec<String>)>, LaunchError> {
    let launch_mode = match input.mode {
        Mode::Hybrid | Mode::Bind => input.mode,
        // Native has no image; inside runs the image's own mpiexec, which the
        // runtime and the image decide alone.
        Mode::Native | Mode::Inside => return Ok(None),
    };
    let judged = judge_cached(input, launch_mode)?;
    let image = input.image.path();
    let mut record = GateRecord {
        mode: launch_mode,
        status: None,
        reasons: Vec::new(),
        image_mpi: judged.image_mpi,
        host_mpi: (input.mode == Mode::Bind)
            .then_some(input.host_library)
            .flatten()
            .map(|p| p.display().to_string()),
        overridden: Vec::new(),
        note: None,
    };
    let mut warnings = Vec::new();
    if let Some(e) = judged.unreadable {
        if !input.force {
            return Err(LaunchError::Refused {
                message: format!(
                    "refusing to launch: hybrun cannot read image {} ({e}), so nothing says it \
                     can run here in {} mode; nothing was launched: check the file (`hybrun \
                     image inspect {}`), or --force to launch it unchecked",
                    image.display(),
                    record.mode,
                    image.display()
                ),
            });
        }
        record.note = Some(format!(
            "compatibility not checked: hybrun cannot read the image: {e}"
        ));
        record.overridden = vec![format!("hybrun cannot read the image: {e}")];
        warnings.push(format!(
            "--force: launching an image hybrun cannot read, unchecked ({e})"
        ));
        return Ok(Some((record, warnings)));
    }
    let reasons = judged.reasons;
    let status = reasons.iter().map(|r| r.status).max().unwrap_or(Status::Ok);
    record.status = Some(status);
    let fails: Vec<String> = reasons
        .iter()
        .filter(|r| r.status == Status::Fail)
        .map(|r| r.text.clone())
        .collect();
    for r in reasons.iter().filter(|r| r.status == Status::Warn) {
        warnings.push(format!("image check ({} mode): {}", record.mode, r.text));
    }
    record.reasons = reasons;
    if !fails.is_empty() {
        if !input.force {
            return Err(LaunchError::Refused {
                message: format!(
                    "refusing to launch: image {} cannot run in {} mode here: {}; nothing was \
                     launched (`hybrun image check {}` shows every mode; --force launches anyway)",
                    image.display(),
                    record.mode,
                    fails.join("; "),
                    image.display()
                ),
            });
        }
        warnings.push(format!(
            "--force: launching despite the image check ({} mode): {}",
            record.mode,
            fails.join("; ")
        ));
        record.overridden = fails;
    }
    Ok(Some((record, warnings)))
}

/// The judgement from the cache, or made now and stored. The key: the image's
/// files, the host MPI library and what its closure resolves through (the loader
/// cache, LD_LIBRARY_PATH), the mode and srun plugin, and the host facts the
/// rules compare with (glibc, NVIDIA driver, fabric devices), which are cheap to
/// read each time.
fn judge_cached(input: &GateInput<'_>, mode: Mode) -> Result<Judgement, LaunchError> {
    let driver = nvidia_driver();
    let fabric = fabric_devices();
    let key = input.cache_dir.and_then(|_| {
        let mut key = input.image.key("gate")?;
        key.text(mode.name());
        key.text(input.plugin.map_or("", |p| p.name()));
        key.text(input.launcher.map_or("", |l| l.name()));
        key.text(input.site_fabric.map_or("", |f| f.name()));
        if let Some(lib) = input.host_library.filter(|_| mode == Mode::Bind) {
            key.file(lib);
            key.file(Path::new("/etc/ld.so.cache"));
            key.text(
                &std::env::var_os("LD_LIBRARY_PATH")
                    .unwrap_or_default()
                    .to_string_lossy(),
            );
        }
        // The host's glibc by its file (reading its version tables is the
        // judgement's work); the driver and fabric devices as found.
        for libc in HOST_LIBC {
            key.file(Path::new(libc));
        }
        key.text(&format!("{driver:?} {fabric:?}"));
        Some(key.finish())
    });
    cache::through(input.cache_dir, "gate", key.as_deref(), || {
        judge(input, mode, host_glibc(), driver, fabric)
    })
}

/// Reads the image and the host MPI and applies the image check's rules.
fn judge(
    input: &GateInput<'_>,
    launch_mode: Mode,
    glibc: Option<GlibcVersion>,
    driver: Option<Driver>,
    fabric: Vec<String>,
) -> Result<Judgement, LaunchError> {
    let detected = input
        .image
        .get()
        .as_ref()
        .map_err(ToString::to_string)
        .and_then(|image| detect::detect(image).map_err(|e| e.to_string()));
    let contents = match detected {
        Ok(contents) => contents,
        Err(e) => {
            return Ok(Judgement {
                image_mpi: None,
                reasons: Vec::new(),
                unreadable: Some(e),
            });
        }
    };
    let image_mpi = contents.primary_mpi().map(|m| m.describe());
    let contents_mpi = contents
        .primary_mpi()
        .and_then(|m| m.abi.map(|abi| (abi, m.implementation)));
    let mut reasons = Vec::new();
    // The host MPI matters in bind mode only (hybrid runs the image's own).
    let choice = match (launch_mode, input.host_library) {
        (Mode::Bind, Some(lib)) => HostMpiChoice::Path(lib.to_path_buf()),
        _ => HostMpiChoice::None,
    };
    let host_mpi = match facts::host_facts(&choice, &SrunChoice::None) {
        Ok(facts) => facts.mpi,
        Err(e) => {
            reasons.push(Reason {
                status: Status::Fail,
                text: format!("the MPI profile's library: {e}"),
            });
            Vec::new()
        }
    };
    let host = HostFacts {
        mpi: host_mpi,
        notes: Vec::new(),
        glibc,
        driver,
        // The plugin the plan chose stands in for `srun --mpi=list`: the rank's MPI
        // must start under it, whatever else this Slurm offers.
        srun: match input.plugin {
            Some(plugin) => SrunPmi::Launch {
                plugin: plugin.name().to_owned(),
            },
            None => SrunPmi::Absent,
        },
        fabric_devices: fabric,
        loader: Loader::current(),
        site_fabric: input.site_fabric,
    };
    let report = check::check(contents, host, &[launch_mode], AbiMode::Major);
    let mut verdict = report
        .verdicts
        .into_iter()
        .next()
        .ok_or_else(|| LaunchError::Refused {
            message: "internal: the image check gave no verdict".into(),
        })?;
    if input.plugin.is_none() {
        // Not an srun launch: the PMI rule's "srun not found" is no finding here.
        verdict
            .reasons
            .retain(|r| !r.text.starts_with("srun not found on this host"));
    }
    reasons.extend(verdict.reasons);
    if launch_mode == Mode::Hybrid {
        reasons.extend(launcher_reason(input.launcher, contents_mpi));
    }
    Ok(Judgement {
        image_mpi,
        reasons,
        unreadable: None,
    })
}

/// In hybrid mode the container's MPI talks to the launcher's process manager:
/// hydra's mpiexec serves PMI-2 (the MPICH family), Open MPI's mpiexec PMIx.
fn launcher_reason(
    launcher: Option<LauncherKind>,
    image_mpi: Option<(MpiAbi, Option<MpiFlavour>)>,
) -> Option<Reason> {
    let launcher = launcher
        .filter(|l| matches!(l, LauncherKind::MpiexecHydra | LauncherKind::MpiexecOpenmpi))?;
    let (abi, flavour) = image_mpi?;
    let fits = flavour.or_else(|| MpiFlavour::of_abi(abi))?.mpiexec();
    (fits != launcher).then(|| Reason {
        status: Status::Fail,
        text: format!(
            "the image's MPI ({}) cannot be started by --launcher {launcher} (its ranks would \
             run as one-rank jobs or fail): use --launcher {fits}, or srun",
            flavour.map_or(abi.label(), MpiFlavour::label)
        ),
    })
}
