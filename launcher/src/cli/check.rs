//! `hybrun image check`: its arguments and its report (the rules are
//! [`hybrun::image::check`]).

use std::path::PathBuf;

use clap::Args;
use hybrun::image::abi::AbiMode;
use hybrun::image::check::facts::{self, HostMpiChoice, SrunChoice};
use hybrun::image::check::{self, Status};
use hybrun::image::contents::Image;
use hybrun::image::detect;
use hybrun_core::vocab::Mode;

/// `--mode` of `hybrun image check`: one launch mode, or "all" (native, hybrid
/// and bind).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModeFilter(pub Option<Mode>);

impl std::str::FromStr for ModeFilter {
    type Err = String;
    fn from_str(text: &str) -> Result<ModeFilter, String> {
        match text {
            "all" => Ok(ModeFilter(None)),
            _ => text
                .parse::<Mode>()
                .map(|m| ModeFilter(Some(m)))
                .map_err(|e| format!("{e}, or all")),
        }
    }
}

impl ModeFilter {
    /// The modes to judge.
    pub fn modes(self) -> Vec<Mode> {
        match self.0 {
            Some(mode) => vec![mode],
            None => vec![Mode::Native, Mode::Hybrid, Mode::Bind],
        }
    }
}

/// Arguments of `hybrun image check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The image: a SIF file, a SquashFS file or an image directory.
    pub image: PathBuf,
    /// The launch mode to judge (native, hybrid, bind, inside), or all (native,
    /// hybrid and bind).
    #[arg(long, default_value = "all", value_name = "MODE")]
    pub mode: ModeFilter,
    /// How strictly the image's and the host's MPI library versions must agree in bind
    /// mode (Sarus's rules): major = same SONAME major, full = also host minor >=
    /// image minor, strict = same major.minor.patch.
    #[arg(long, value_enum, default_value = "major")]
    pub abi_mode: AbiMode,
    /// The host MPI library to compare with (e.g. /usr/lib/x86_64-linux-gnu/libmpich.so.12),
    /// or "none" for a host without MPI. Default: found through ldconfig -p, mpicc
    /// -show and pkg-config.
    #[arg(long, value_name = "PATH_TO_LIBMPI", conflicts_with = "mpi_profile")]
    pub host_mpi: Option<String>,
    /// Judge against the host library of this MPI profile of the site file
    /// (`[mpi.NAME] library`), as `hybrun run --mpi-profile NAME` would bind it.
    #[arg(long, value_name = "NAME")]
    pub mpi_profile: Option<String>,
    /// The site file (default: $HYBRUN_SITE, then /etc/hybrun/site.toml).
    #[arg(long, value_name = "FILE")]
    pub site: Option<PathBuf>,
    /// The srun to ask for PMI plugins (`srun --mpi=list`), or "none" to skip.
    /// Default: srun from PATH.
    #[arg(long, value_name = "PATH")]
    pub srun: Option<String>,
    /// Print one JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The outcome of `hybrun image check`: the report, and whether a mode failed.
#[derive(Debug)]
pub struct CheckOutcome {
    pub report: String,
    pub failed: bool,
}

/// The host MPI library that the site's profile `name` names.
fn profile_library(site: &hybrun::site::Site, name: &str) -> anyhow::Result<PathBuf> {
    let file = site
        .path
        .as_ref()
        .map_or_else(|| "no site file".to_string(), |p| p.display().to_string());
    let Some(profile) = site.config.mpi.get(name) else {
        let known: Vec<&str> = site.config.mpi.keys().map(String::as_str).collect();
        anyhow::bail!(
            "unknown MPI profile `{name}` ({file}); known profiles: {}; add a [mpi.{name}] section to the site file",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        );
    };
    let Some(lib) = &profile.library else {
        anyhow::bail!(
            "MPI profile `{name}` ({file}) names no `library`; set [mpi.{name}] library = \"/path/to/libmpi.so.N\""
        );
    };
    Ok(PathBuf::from(lib))
}

/// `hybrun image check`.
pub fn check(args: &CheckArgs) -> anyhow::Result<CheckOutcome> {
    let image = Image::open(&args.image)?;
    let contents = detect::detect(&image)?;
    // The site decides the host MPI profiles and the fabric the image must drive.
    let site = hybrun::site::Site::load(args.site.as_deref())?;
    let host_mpi = match (args.host_mpi.as_deref(), args.mpi_profile.as_deref()) {
        (_, Some(name)) => HostMpiChoice::Path(profile_library(&site, name)?),
        (None, None) => HostMpiChoice::Detect,
        (Some("none"), None) => HostMpiChoice::None,
        (Some(p), None) => HostMpiChoice::Path(PathBuf::from(p)),
    };
    let srun = match args.srun.as_deref() {
        None => SrunChoice::Detect,
        Some("none") => SrunChoice::None,
        Some(p) => SrunChoice::Path(PathBuf::from(p)),
    };
    let mut host = facts::host_facts(&host_mpi, &srun)?;
    host.site_fabric = site.config.fabric.kind;
    let report = check::check(contents, host, &args.mode.modes(), args.abi_mode);
    let failed = report.worst() == Status::Fail;
    let text = if args.json {
        let mut t = serde_json::to_string_pretty(&report)?;
        t.push('\n');
        t
    } else {
        report.text()
    };
    Ok(CheckOutcome {
        report: text,
        failed,
    })
}
