//! Can this image run on this host, and how? One verdict per launch mode:
//!
//! - native: the app runs on the host, without the container; it needs the host MPI.
//! - hybrid: the container's own MPI, ranks started by `srun --mpi=<pmi>`; it needs
//!   an MPI in the image, a PMI plugin of this Slurm that the image's MPI speaks, and
//!   fabric libraries in the image to be fast across nodes.
//! - inside: the image's own mpiexec on one node; it needs an MPI in the image.
//! - bind: the host's MPI (and its library closure, minus glibc) bound into the
//!   container; it needs an image MPI of the same ABI (Sarus's rules, see
//!   [`crate::image::abi`]) and an image glibc at least as new as the host
//!   libraries need.
//!
//! The CUDA runtime of the image is checked against the host's NVIDIA driver for the
//! container modes.
//!
//! - [`facts`]: what the rules know of this host ([`facts::HostFacts`]).
//! - [`rules`]: the per-mode rules.
//! - [`pmi`]: the PMI rule (hybrid and bind mode).
//! - [`cuda`]: the CUDA runtime rule (container modes).
//! - here: verdicts, the report and [`check`], which runs the rules.

pub mod cuda;
pub mod facts;
pub mod pmi;
pub mod rules;

use self::facts::{GlibcRequirement, HostFacts, HostMpi, SrunPmi};
use super::abi::AbiMode;
use super::detect::{Contents, MpiLibrary};
use hybrun_core::vocab::Mode;

hybrun_core::named_enum! {
    /// How a mode (or one reason) fares; ordered OK < WARN < FAIL.
    pub enum Status ("status") {
        /// It runs.
        Ok = "OK",
        /// It runs, with a caveat.
        Warn = "WARN",
        /// It does not run.
        Fail = "FAIL",
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
            .map_or("no glibc".to_owned(), |g| format!("glibc {}", g.label()));
        out.push_str(&format!(
            "Image: {} ({}): {mpi}, {glibc}, fabric: {}\n",
            c.image,
            c.kind.label(),
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
            SrunPmi::NotAsked => "srun not asked (--srun none)".to_owned(),
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

/// Runs the rules for `modes` (host facts gathered by [`facts::host_facts`]).
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
            Mode::Native => rules::native(&mut v, image_mpi.as_ref(), &host),
            Mode::Hybrid => rules::hybrid(&mut v, &contents, image_mpi.as_ref(), &host),
            Mode::Inside => rules::inside(&mut v, image_mpi.as_ref()),
            Mode::Bind => {
                let (chosen, req) =
                    rules::bind(&mut v, &contents, image_mpi.as_ref(), &host, abi_mode);
                bind_host_mpi = chosen;
                glibc_required = req;
            }
        }
        if mode != Mode::Native {
            if let Some((status, text)) = cuda::cuda_reason(&contents, host.driver.as_ref()) {
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
