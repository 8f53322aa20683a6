//! The launch record: one JSON file per `hybrun run`, written before the job
//! starts (so a launch that never returns is still recorded) and rewritten with
//! the exit status when it ends. Both writes are atomic (a temporary file in the
//! same directory, flushed, renamed over the name).
//!
//! It holds the plan, the exact command, the image (path, canonical path, device
//! and inode, SHA-256 of the file; directory images are not hashed and the record
//! says so), the binds, the environment changes, the host libraries bind mode
//! mapped (path, name it is loaded by, canonical file, inode), and the Slurm job
//! and step when the launch ran inside an allocation.
//!
//! Directory: `[launcher] record_dir` of the site file ("{home}" is $HOME), else
//! `$HOME/.hybrun/records`.

use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use super::LaunchError;
use super::bind::Bundle;
use super::fabric_guard::FabricGuard;
use super::gate::GateRecord;
use super::plan::{Bind, LaunchPlan, Rendered};
use super::planner::Planned;
use super::policy::{CheckedImage, ImageKind};
use crate::elf::ElfReader;
use crate::host::Host;
use hybrun_core::sys::hex;

/// Format version of the record.
pub const FORMAT: u32 = 1;

/// The image, as recorded.
#[derive(Debug, Clone, Serialize)]
pub struct ImageRecord {
    pub path: String,
    pub canonical: String,
    pub kind: ImageKind,
    pub size: u64,
    pub dev: u64,
    pub ino: u64,
    /// SHA-256 of the file; None for directories.
    pub sha256: Option<String>,
    pub note: Option<String>,
}

/// One host library: mapped into the container (bind mode) or the profile's.
#[derive(Debug, Clone, Serialize)]
pub struct HostLibrary {
    /// "mpi" (bind mode's MPI library), "closure" (bound with it) or
    /// "profile-mpi" (the profile's library, not bound in this mode).
    pub role: &'static str,
    /// The name it is loaded by (as DT_NEEDED names it).
    pub name: String,
    /// The canonical host file (its name carries the full version).
    pub path: String,
    /// DT_SONAME read from the file (hybrun::image::elf).
    pub soname: Option<String>,
    pub ino: Option<u64>,
}

/// Slurm's view, when inside an allocation.
#[derive(Debug, Clone, Serialize)]
pub struct SlurmIds {
    pub job_id: String,
    pub step_id: Option<String>,
    pub nodelist: Option<String>,
    pub cluster: Option<String>,
}

/// The whole record.
#[derive(Debug, Clone, Serialize)]
pub struct Record {
    pub format: u32,
    pub started: String,
    pub finished: Option<String>,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub hybrun_version: &'static str,
    pub host: String,
    pub uid: u32,
    pub cwd: String,
    pub hybrun_argv: Vec<String>,
    pub site: Option<String>,
    pub mpi_profile: Option<String>,
    pub plan: LaunchPlan,
    /// The command as one shell line and as data.
    pub shell: String,
    pub command: Rendered,
    pub image: Option<ImageRecord>,
    pub binds: Vec<Bind>,
    /// Variables set in and removed from the launcher's environment.
    pub environment: EnvironmentDiff,
    pub host_libraries: Vec<HostLibrary>,
    pub slurm: Option<SlurmIds>,
    /// The image check before the launch (hybrid and bind mode), with what
    /// `--force` overrode.
    pub compatibility: Option<GateRecord>,
    /// The fabric guard: the variables it set, the user's values it kept, or why
    /// it is off.
    pub fabric_guard: Option<FabricGuard>,
}

/// The launcher's environment change, plus the rank's changes by delivery.
#[derive(Debug, Clone, Serialize)]
pub struct EnvironmentDiff {
    pub set: BTreeMap<String, String>,
    pub unset: Vec<String>,
}

/// The record's directory for this site and host.
pub fn record_dir(planned: &Planned, host: &Host) -> Result<PathBuf, LaunchError> {
    let home = host.var("HOME").filter(|h| h.starts_with('/'));
    let configured = planned.site.config.launcher.record_dir.clone();
    let missing_home = || LaunchError::Record {
        path: "$HOME/.hybrun/records".into(),
        source: std::io::Error::other("HOME is not set"),
    };
    match configured {
        Some(dir) if dir.contains("{home}") => {
            let home = home.ok_or_else(missing_home)?;
            Ok(PathBuf::from(dir.replace("{home}", &home)))
        }
        Some(dir) => Ok(PathBuf::from(dir)),
        None => Ok(PathBuf::from(home.ok_or_else(missing_home)?).join(".hybrun/records")),
    }
}

/// SHA-256 of an opened image file, read from its start.
pub fn image_record(image: &CheckedImage) -> Result<ImageRecord, LaunchError> {
    let (sha256, note) = if image.kind == ImageKind::Directory {
        (
            None,
            Some("directory image: not hashed (a tree has no single digest)".to_owned()),
        )
    } else {
        let io = |source| LaunchError::ImageIo {
            path: image.given.display().to_string(),
            action: "hash",
            source,
        };
        let mut file = image.file.try_clone().map_err(io)?;
        file.rewind().map_err(io)?;
        let mut hash = Sha256::new();
        let mut buffer = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buffer).map_err(io)?;
            if n == 0 {
                break;
            }
            hash.update(&buffer[..n]);
        }
        (Some(hex(&hash.finalize())), None)
    };
    Ok(ImageRecord {
        path: image.given.display().to_string(),
        canonical: image.canonical.display().to_string(),
        kind: image.kind,
        size: image.size,
        dev: image.dev,
        ino: image.ino,
        sha256,
        note,
    })
}

fn host_library(role: &'static str, name: String, path: &Path) -> HostLibrary {
    let canonical = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let soname = std::fs::File::open(&canonical)
        .ok()
        .and_then(|f| ElfReader::new(f).info().ok())
        .and_then(|info| info.soname);
    HostLibrary {
        role,
        name,
        soname,
        ino: std::fs::metadata(&canonical).ok().map(|m| m.ino()),
        path: canonical.display().to_string(),
    }
}

fn host_libraries(bundle: Option<&Bundle>, profile_library: Option<&Path>) -> Vec<HostLibrary> {
    match (bundle, profile_library) {
        (Some(bundle), _) => bundle
            .libs
            .iter()
            .enumerate()
            .map(|(i, lib)| {
                let role = if i == 0 { "mpi" } else { "closure" };
                host_library(role, lib.name.clone(), &lib.host)
            })
            .collect(),
        (None, Some(path)) => {
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            vec![host_library("profile-mpi", name, path)]
        }
        (None, None) => Vec::new(),
    }
}

impl Record {
    /// A record of `planned` about to run `command`.
    pub fn new(planned: &Planned, command: &Rendered, host: &Host) -> Result<Record, LaunchError> {
        let image = planned.image.as_ref().map(image_record).transpose()?;
        let slurm = host.var("SLURM_JOB_ID").map(|job_id| SlurmIds {
            job_id,
            step_id: host.var("SLURM_STEP_ID"),
            nodelist: host.var("SLURM_JOB_NODELIST"),
            cluster: host.var("SLURM_CLUSTER_NAME"),
        });
        let lossy = |s: &std::ffi::OsString| s.to_string_lossy().into_owned();
        Ok(Record {
            format: FORMAT,
            started: hybrun_core::sys::now_utc(),
            finished: None,
            exit_code: None,
            signal: None,
            hybrun_version: env!("CARGO_PKG_VERSION"),
            host: rustix::system::uname()
                .nodename()
                .to_string_lossy()
                .into_owned(),
            uid: rustix::process::getuid().as_raw(),
            cwd: std::env::current_dir()
                .map(|d| d.display().to_string())
                .unwrap_or_default(),
            hybrun_argv: std::env::args_os().map(|a| lossy(&a)).collect(),
            site: planned.site.path.as_ref().map(|p| p.display().to_string()),
            mpi_profile: planned.profile.clone(),
            plan: planned.plan.clone(),
            shell: command.shell_line(),
            command: command.clone(),
            image,
            binds: planned.plan.rank.binds.clone(),
            environment: EnvironmentDiff {
                set: command
                    .env_set
                    .iter()
                    .map(|(k, v)| (lossy(k), lossy(v)))
                    .collect(),
                unset: command.env_unset.iter().map(lossy).collect(),
            },
            host_libraries: host_libraries(
                planned.bundle.as_ref(),
                planned.profile_library.as_deref(),
            ),
            slurm,
            compatibility: planned.gate.clone(),
            fabric_guard: planned.fabric_guard.clone(),
        })
    }

    /// Writes the record atomically into `dir` as `name`.
    pub fn write(&self, dir: &Path, name: &str) -> Result<PathBuf, LaunchError> {
        let path = dir.join(name);
        let err = |source| LaunchError::Record {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(err)?;
        let mut text =
            serde_json::to_vec_pretty(self).map_err(|e| err(std::io::Error::other(e)))?;
        text.push(b'\n');
        let mut temp = tempfile::Builder::new()
            .prefix(".record-tmp-")
            .tempfile_in(dir)
            .map_err(err)?;
        temp.write_all(&text).map_err(err)?;
        temp.as_file().sync_all().map_err(err)?;
        temp.persist(&path).map_err(|e| err(e.error))?;
        Ok(path)
    }

    /// The file name: time, host, process, so that records sort by time and
    /// never collide.
    pub fn file_name(&self) -> String {
        let stamp: String = self
            .started
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect();
        let job = self
            .slurm
            .as_ref()
            .map_or_else(|| "nojob".to_owned(), |s| format!("job{}", s.job_id));
        let host = crate::host::safe_name(&self.host);
        format!("{stamp}-{host}-{job}-{}.json", std::process::id())
    }
}
