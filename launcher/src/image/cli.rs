//! The command-line side of [`crate::image`]: `hybrun image wrap`, `hybrun image
//! inspect --contents` and `hybrun image check`. Each returns its report as text;
//! the binary prints it.

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;

use clap::Args;

use super::abi::AbiMode;
use super::check::facts::{self, HostMpiChoice, SrunChoice};
use super::check::{self, Status};
use super::contents::Image;
use super::detect;
use hybrun_core::vocab::Mode;
use hybrun_sif::{Arch, SifBuilder, SifImage, display};

/// Arguments of `hybrun image wrap`.
#[derive(Debug, Args)]
pub struct WrapArgs {
    /// The SquashFS file (mksquashfs output) to wrap.
    pub squashfs: PathBuf,
    /// The SIF image to write (replaced atomically if it exists).
    pub output: PathBuf,
    /// Architecture recorded for the partition and header (Go names: amd64, arm64,
    /// ppc64le, ...); default: this machine's.
    #[arg(long)]
    pub arch: Option<String>,
}

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

/// Errors of the commands that are not image errors (bad arguments).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error(
        "--arch {0}: unknown architecture; use a Go name: 386, amd64, arm, arm64, ppc64, \
         ppc64le, mips, mipsle, mips64, mips64le, s390x, riscv64"
    )]
    UnknownArch(String),
    #[error(
        "{path}: not a SquashFS file (no \"hsqs\" magic); `hybrun image wrap` takes mksquashfs \
         output"
    )]
    NotSquashfs { path: String },
    #[error("{path}: cannot read it: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("this machine's architecture has no SIF code; pass --arch")]
    NoHostArch,
}

/// `hybrun image wrap`: SquashFS -> SIF with it as the primary system partition.
pub fn wrap(args: &WrapArgs) -> anyhow::Result<String> {
    let arch = match &args.arch {
        Some(name) => {
            Arch::from_go_name(name).ok_or_else(|| CliError::UnknownArch(name.clone()))?
        }
        None => Arch::host().ok_or(CliError::NoHostArch)?,
    };
    let label = args.squashfs.display().to_string();
    let mut magic = [0u8; 4];
    File::open(&args.squashfs)
        .and_then(|mut f| f.read_exact(&mut magic))
        .map_err(|source| CliError::Read {
            path: label.clone(),
            source,
        })?;
    if &magic != b"hsqs" {
        return Err(CliError::NotSquashfs { path: label }.into());
    }
    let header = SifBuilder::new(arch)
        .add_primary_squashfs(&args.squashfs)
        .write_to(&args.output)?;
    let sif = SifImage::open(&args.output)?;
    let size = sif.primary_partition().map_or(0, |d| d.size);
    Ok(format!(
        "{}: SIF {} with {label} ({} bytes) as its primary system partition (squashfs, {}), id {}\n",
        args.output.display(),
        header.version_text(),
        size,
        arch.go_name(),
        header.id,
    ))
}

/// `hybrun image inspect --contents`: the detected contents (and for SIF, the header
/// and objects first); `list` adds every path.
pub fn inspect_contents(path: &PathBuf, json: bool, list: bool) -> anyhow::Result<String> {
    let image = Image::open(path)?;
    let contents = detect::detect(&image)?;
    let sif = if image.kind() == super::contents::ImageKind::Sif {
        Some(SifImage::open(path)?)
    } else {
        None
    };
    if json {
        let mut value = serde_json::json!({ "contents": contents });
        if let Some(sif) = &sif {
            value["sif"] = display::inspect_json(sif.path(), sif.header(), sif.descriptors());
        }
        if list {
            let files: Vec<serde_json::Value> = image
                .entries()
                .map(|(p, e)| {
                    serde_json::json!({
                        "path": p, "kind": e.kind, "mode": e.mode, "size": e.size, "target": e.target,
                    })
                })
                .collect();
            value["files"] = serde_json::Value::Array(files);
        }
        let mut text = serde_json::to_string_pretty(&value)?;
        text.push('\n');
        return Ok(text);
    }
    let mut text = String::new();
    if let Some(sif) = &sif {
        text.push_str(&display::inspect_text(sif.header(), sif.descriptors()));
        text.push('\n');
    }
    text.push_str(&contents.text());
    if list {
        text.push('\n');
        text.push_str(&image.listing());
    }
    Ok(text)
}

/// The host MPI library that the site's profile `name` names.
fn profile_library(site: &crate::site::Site, name: &str) -> anyhow::Result<PathBuf> {
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
    let site = crate::site::Site::load(args.site.as_deref())?;
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
