//! `hybrun image ...`: the command-line side of the [`hybrun_sif`] crate.

use std::io::{self, Write};
use std::path::PathBuf;

use clap::{Args, Subcommand};
use hybrun::store::cli as store;
use hybrun_sif::{SifImage, display};

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
    Wrap(hybrun::image::cli::WrapArgs),
    /// Judge whether an image (SIF, SquashFS or directory) runs on this host in native,
    /// hybrid and bind mode: MPI ABI, glibc, PMI plugins, fabric, CUDA driver. Exit
    /// status 1 when a requested mode FAILs.
    Check(hybrun::image::cli::CheckArgs),
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
        ImageCommand::Inspect(args) if args.contents => print_report(
            &hybrun::image::cli::inspect_contents(&args.image, args.json, args.list)?,
        ),
        ImageCommand::Inspect(args) => inspect(&args),
        ImageCommand::Wrap(args) => print_report(&hybrun::image::cli::wrap(&args)?),
        ImageCommand::Check(args) => {
            let outcome = hybrun::image::cli::check(&args)?;
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

fn inspect(args: &InspectArgs) -> anyhow::Result<()> {
    let image = SifImage::open(&args.image)?;
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
