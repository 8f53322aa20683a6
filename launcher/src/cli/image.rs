//! `hybrun image ...`: inspect, wrap and check images, and the allowed
//! directory's `cp`, `ls`, `rm` and `verify` (in [`super::store`]).

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use hybrun::image::contents::{Image, ImageKind};
use hybrun::image::detect;
use hybrun_sif::{Arch, SifBuilder, SifImage, display};

use super::check::{self, CheckArgs};
use super::store;

/// Subcommands of `hybrun image`.
#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Show a SIF image's header, object list and each object's details (the facts
    /// of `siftool header`, `list` and `info`), reading only the header and the
    /// descriptor table.
    Inspect(InspectArgs),
    /// Copy a SIF image into the allowed directory: checked (regular file, SIF,
    /// name, image limit, site scanner), copied atomically, SHA-256 indexed.
    Cp(store::CpArgs),
    /// List the images in the allowed directory (name, size, date, SHA-256 prefix).
    Ls(store::LsArgs),
    /// Remove images from the allowed directory.
    Rm(store::RmArgs),
    /// Check every image in the allowed directory against its indexed SHA-256
    /// (missing, modified and unindexed files FAIL).
    Verify(store::VerifyArgs),
    /// Wrap a SquashFS file as the primary system partition of a new SIF image.
    Wrap(WrapArgs),
    /// Judge whether an image (SIF, SquashFS or directory) runs on this host in native,
    /// hybrid and bind mode: MPI ABI, glibc, PMI plugins, fabric, CUDA driver. Exit
    /// status 1 when a requested mode FAILs.
    Check(CheckArgs),
}

/// Arguments of `hybrun image inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The SIF image (Singularity/Apptainer) to inspect; with --contents also a
    /// SquashFS file or an image directory.
    pub image: PathBuf,

    /// Also look inside: OS, MPI (flavour, ABI, version), PMI, fabric, glibc and CUDA
    /// runtime, read from the root file system without mounting it.
    #[arg(long)]
    pub contents: bool,

    /// With --contents: also list every path (mode, size, symlink target).
    #[arg(long, requires = "contents")]
    pub list: bool,

    /// Print one JSON document (header, and each object's id, group, link, offset,
    /// size, type and type-specific fields) instead of text.
    #[arg(long)]
    pub json: bool,
}

/// Runs an `image` subcommand, writing its report to standard output.
pub fn run(command: ImageCommand) -> anyhow::Result<()> {
    match command {
        ImageCommand::Inspect(args) if args.contents => {
            print_report(&inspect_contents(&args.image, args.json, args.list)?)
        }
        ImageCommand::Inspect(args) => inspect(&args),
        ImageCommand::Wrap(args) => print_report(&wrap(&args)?),
        ImageCommand::Check(args) => {
            let outcome = check::check(&args)?;
            print_report(&outcome.report)?;
            if outcome.failed {
                // The report says why; exit 1 without a second message.
                std::process::exit(1);
            }
            Ok(())
        }
        ImageCommand::Cp(args) => print_report(&store::cp(&args)?),
        ImageCommand::Ls(args) => print_report(&store::ls(&args)?),
        ImageCommand::Rm(args) => print_report(&store::rm(&args)?),
        ImageCommand::Verify(args) => {
            let outcome = store::verify(&args)?;
            print_report(&outcome.report)?;
            outcome.failure.map_or(Ok(()), |e| Err(e.into()))
        }
    }
}

/// Opens the SIF image at `path` without blocking: a FIFO or a device given as the
/// image is refused before anything is read.
fn open_sif(path: &Path) -> anyhow::Result<SifImage<File>> {
    use hybrun::fsopen::{OpenError, open_file};
    let file = match open_file(path) {
        Ok((file, _)) => file,
        Err(OpenError::Io { path, source }) => {
            anyhow::bail!("{path}: cannot open the image: {source}")
        }
        Err(OpenError::Special { path, kind }) => {
            anyhow::bail!("{path}: cannot read it as a SIF image: it is a {kind}, not a file")
        }
    };
    Ok(SifImage::from_reader(file, path.display().to_string())?)
}

fn inspect(args: &InspectArgs) -> anyhow::Result<()> {
    let image = open_sif(&args.image)?;
    let report = if args.json {
        let value = display::inspect_json(image.path(), image.header(), image.descriptors());
        let mut text = serde_json::to_string_pretty(&value)?;
        text.push('\n');
        text
    } else {
        display::inspect_text(image.header(), image.descriptors())
    };
    print_report(&report)
}

/// Prints to standard output; a closed pipe (`| head`) is not an error.
fn print_report(text: &str) -> anyhow::Result<()> {
    let mut out = io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(()),
        other => Ok(other.map_err(|e| anyhow::anyhow!("cannot write to standard output: {e}"))?),
    }
}

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
fn wrap(args: &WrapArgs) -> anyhow::Result<String> {
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
fn inspect_contents(path: &PathBuf, json: bool, list: bool) -> anyhow::Result<String> {
    let image = Image::open(path)?;
    let contents = detect::detect(&image)?;
    let sif = if image.kind() == ImageKind::Sif {
        Some(open_sif(path)?)
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
