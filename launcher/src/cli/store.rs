//! The command-line side of the store: the arguments of `hybrun image
//! cp|ls|rm|verify` and their reports, worded like the site's copy tool
//! ("1 file copied.", "2 file(s) found.").

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;

use hybrun::site::Site;
use hybrun::store::{self as library, Listed, Store, StoreError, Verified};
use hybrun_core::sys::utc_text;

/// Where the store is: the options every store subcommand takes.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The site configuration file (default: $HYBRUN_SITE, else /etc/hybrun/site.toml).
    /// Its [images] section sets the allowed directory, the image limit, the file
    /// mode and the scanner.
    #[arg(long, value_name = "FILE", long_help = SITE_HELP)]
    pub site: Option<PathBuf>,

    /// The allowed directory, overriding the site file and $SINGULARITY_ALLOWED_DIR
    /// (for tests and for sites without a site file). Must be canonical.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

/// The long help of `--site`: every key of the `[images]` section.
const SITE_HELP: &str = "\
The site configuration file, TOML. Found as: --site FILE, else $HYBRUN_SITE, else
/etc/hybrun/site.toml (optional). Unknown keys are refused. The [images] section:

  dir = \"/allowed/{user}\"      the allowed directory: absolute, canonical; {user} is the
                                login name, {uid} the user ID (default: $SINGULARITY_ALLOWED_DIR)
  max_images = 20               most images the directory may hold (default 20)
  mode = \"0640\"                 permission bits of admitted images (default \"0640\";
                                read bits and the owner's write bit only)
  scanner = [\"/usr/bin/scan\", \"{image}\"]
                                security scanner run on each candidate, no shell: {image} is
                                the candidate's path (appended when absent); exit 0 admits
                                (default: none)
  scanner_timeout_s = 600       seconds before the scanner's process group is killed and the
                                image refused (default 600)";

impl StoreArgs {
    fn open(&self) -> Result<Store, StoreError> {
        let site = Site::load(self.site.as_deref())?;
        library::open(&site, self.dir.as_deref())
    }
}

/// Arguments of `hybrun image cp`.
#[derive(Debug, Args)]
pub struct CpArgs {
    /// The SIF image to copy in: a regular file (not a link, FIFO or device).
    pub source: PathBuf,

    /// The name in the allowed directory (default: the source's file name); a
    /// plain name ending in .sif.
    #[arg(long)]
    pub name: Option<String>,

    #[command(flatten)]
    pub store: StoreArgs,
}

/// Arguments of `hybrun image ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    #[command(flatten)]
    pub store: StoreArgs,
}

/// Arguments of `hybrun image rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Names of the images to remove (as `hybrun image ls` lists them).
    #[arg(required = true, value_name = "NAME")]
    pub names: Vec<String>,

    #[command(flatten)]
    pub store: StoreArgs,
}

/// Arguments of `hybrun image verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    #[command(flatten)]
    pub store: StoreArgs,
}

/// `hybrun image cp`: the report to print.
pub fn cp(args: &CpArgs) -> Result<String, StoreError> {
    let store = args.store.open()?;
    store.copy_in(&args.source, args.name.as_deref())?;
    Ok("1 file copied.\n".to_owned())
}

/// `hybrun image ls`: the report to print.
pub fn ls(args: &LsArgs) -> Result<String, StoreError> {
    let store = args.store.open()?;
    Ok(ls_report(&store.list()?))
}

/// `hybrun image rm`: the report to print.
pub fn rm(args: &RmArgs) -> Result<String, StoreError> {
    let store = args.store.open()?;
    let mut report = String::new();
    // The site copy tool's words (its misspelling included): users' scripts
    // parse them.
    for removed in store.remove(&args.names)? {
        if removed.file {
            let _ = writeln!(report, "File '{}' was succesfully deleted.", removed.name);
        } else {
            let _ = writeln!(
                report,
                "Index entry '{}' removed (its file was already gone).",
                removed.name
            );
        }
    }
    Ok(report)
}

/// The outcome of `hybrun image verify`: a report to print in any case, and an
/// error when a file FAILED.
#[derive(Debug)]
pub struct VerifyOutcome {
    pub report: String,
    pub failure: Option<StoreError>,
}

/// `hybrun image verify`.
pub fn verify(args: &VerifyArgs) -> Result<VerifyOutcome, StoreError> {
    let store = args.store.open()?;
    let results = store.verify()?;
    let report = verify_report(&results);
    let failed = results.iter().filter(|r| r.problem.is_some()).count();
    let failure = (failed > 0).then(|| StoreError::VerifyFailed {
        failed,
        total: results.len(),
        dir: store.dir().display().to_string(),
    });
    Ok(VerifyOutcome { report, failure })
}

/// NAME, SIZE (bytes), DATE (UTC), SHA256 (first 12 digits) per image, then the count.
fn ls_report(images: &[Listed]) -> String {
    let width = images
        .iter()
        .map(|i| i.name.len())
        .max()
        .unwrap_or(4)
        .max(4);
    let mut text = String::new();
    if !images.is_empty() {
        let _ = writeln!(
            text,
            "{:<width$}  {:>12}  {:<17}  SHA256",
            "NAME", "SIZE", "DATE (UTC)"
        );
    }
    for image in images {
        let date = utc_text(image.mtime).replace('T', " ");
        let date = date.get(..16).unwrap_or(&date);
        let sha = match (&image.sha256, image.irregular) {
            (_, true) => "(not a regular file)",
            (Some(sha), false) => sha.get(..12).unwrap_or(sha),
            (None, false) => "(unindexed)",
        };
        let _ = writeln!(
            text,
            "{:<width$}  {:>12}  {:<17}  {sha}",
            image.name, image.size, date
        );
    }
    let _ = writeln!(text, "{} file(s) found.", images.len());
    text
}

/// "NAME: OK" or "NAME: FAILED (why)" per file, then a summary.
fn verify_report(results: &[Verified]) -> String {
    let mut text = String::new();
    for result in results {
        match &result.problem {
            None => {
                let _ = writeln!(text, "{}: OK", result.name);
            }
            Some(why) => {
                let _ = writeln!(text, "{}: FAILED ({why})", result.name);
            }
        }
    }
    let failed = results.iter().filter(|r| r.problem.is_some()).count();
    let _ = writeln!(
        text,
        "{} file(s) verified: {} OK, {failed} FAILED.",
        results.len(),
        results.len() - failed
    );
    text
}
