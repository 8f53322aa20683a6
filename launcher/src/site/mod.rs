//! The site configuration: what the HPC site decides, in one TOML file. This
//! module owns every section of it, typed and checked as the file is read: a
//! bad value (an unknown runtime, a relative library path, a profile whose
//! flavour contradicts its ABI) fails at load with the file, line, key and
//! what is accepted, before anything is planned or run.
//!
//! # Where it is found
//!
//! The first of these that is given is read; the others are not looked at:
//!
//! 1. `--site FILE` on the command line (the file must exist);
//! 2. `$HYBRUN_SITE` (the file must exist);
//! 3. `/etc/hybrun/site.toml` (optional: when it does not exist, every key takes
//!    its default).
//!
//! # Sections
//!
//! One module each: [`images`] (the allowed-directory store), [`runtime`],
//! [`launcher`], [`mpi`] (the host's MPI profiles), [`fabric`], [`gpu`] and
//! [`binds`] (`[binds]` and `[env]`). `launcher/site.example.toml` documents
//! every key with a worked example. Every key not known is refused, with the
//! file, line and key named, so that a typo never silently falls back to a
//! default.

pub mod binds;
pub mod fabric;
pub mod gpu;
pub mod images;
pub mod launcher;
pub mod mpi;
pub mod paths;
pub mod runtime;

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// The environment variable that names the site file when `--site` is not given.
pub const SITE_ENV: &str = "HYBRUN_SITE";

/// The site file read when neither `--site` nor `$HYBRUN_SITE` is given.
pub const DEFAULT_SITE_FILE: &str = "/etc/hybrun/site.toml";

/// The largest site file read (1 MiB; a real one is a few KiB): a log file or a
/// device named by mistake is refused, not read whole.
pub const MAX_SITE_BYTES: u64 = 1 << 20;

/// Everything that can go wrong finding or reading the site file.
#[derive(Debug, thiserror::Error)]
pub enum SiteError {
    #[error("{path}: cannot read the site configuration ({from}): {source}")]
    Read {
        path: String,
        from: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{path}: cannot read the site configuration ({from}): it is a {kind}, not a regular \
         file"
    )]
    NotRegular {
        path: String,
        from: &'static str,
        kind: &'static str,
    },

    #[error(
        "{path}: the site configuration ({from}) is {size} bytes, more than the 1 MiB hybrun \
         reads of a site file"
    )]
    TooLarge {
        path: String,
        from: &'static str,
        size: u64,
    },

    #[error(
        "{path}:{line}:{column}: {message}; `hybrun image cp --help` lists the site file's keys"
    )]
    Parse {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },

    #[error(
        "{path}: refused as a site file: {why}; it decides what runs and what is scanned: \
         `chmod go-w {path}` (and `chown` it to root or yourself)"
    )]
    Untrusted { path: String, why: String },

    #[error("{path}: [images] {key} = {value:?} is invalid: {why}")]
    Invalid {
        path: String,
        key: &'static str,
        value: String,
        why: String,
    },
}

/// The whole site file. Each section is optional and has defaults.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    /// `[images]`: the allowed-directory store.
    #[serde(default)]
    pub images: images::ImagesConfig,

    /// `[runtime]`: the container runtime.
    #[serde(default)]
    pub runtime: runtime::RuntimeSection,
    /// `[launcher]`: srun/mpiexec, records, the per-rank wrapper.
    #[serde(default)]
    pub launcher: launcher::LauncherSection,
    /// `[mpi.<name>]`: the host's MPI installations, by profile name.
    #[serde(default)]
    pub mpi: BTreeMap<String, mpi::MpiProfile>,
    /// `[fabric]`: interconnect libraries, plugins, devices and variables.
    #[serde(default)]
    pub fabric: fabric::FabricSection,
    /// `[gpu]`: the GPU vendor and per-rank placement.
    #[serde(default)]
    pub gpu: gpu::GpuSection,
    /// `[binds]`: host paths bound into every container.
    #[serde(default)]
    pub binds: binds::BindsSection,
    /// `[env]`: variables set in or removed from every rank.
    #[serde(default)]
    pub env: binds::EnvSection,
}

/// A site file that was read, and where from (for error messages).
#[derive(Debug, Clone)]
pub struct Site {
    /// The file it was read from; None when no file exists (all defaults).
    pub path: Option<PathBuf>,
    pub config: SiteConfig,
    /// Where `config.images` came from when it is not `path`: the system site
    /// file's `[images]` wins over a user's `--site` or `$HYBRUN_SITE` (see
    /// [`Site::load`]).
    pub images_from: Option<PathBuf>,
}

impl Site {
    /// Finds and reads the site file: `cli` (`--site`), else `$HYBRUN_SITE`, else
    /// `/etc/hybrun/site.toml` if it exists, else the defaults.
    ///
    /// The `[images]` policy is the site's, not the user's: when
    /// `/etc/hybrun/site.toml` exists, its `[images]` replaces the one of a file
    /// named by `--site` or `$HYBRUN_SITE` (as Singularity's root-owned
    /// configuration decides where images run, whatever the user passes).
    pub fn load(cli: Option<&Path>) -> Result<Site, SiteError> {
        let named = match cli {
            Some(path) => Some((path.to_owned(), "--site")),
            None => std::env::var_os(SITE_ENV)
                .filter(|p| !p.is_empty())
                .map(|p| (PathBuf::from(p), "$HYBRUN_SITE")),
        };
        if let Some((path, from)) = named {
            let mut site = Self::read(&path, from)?;
            site.take_system_images(Path::new(DEFAULT_SITE_FILE))?;
            return Ok(site);
        }
        match Self::read(Path::new(DEFAULT_SITE_FILE), "the default location") {
            Err(SiteError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(Site {
                    path: None,
                    config: SiteConfig::default(),
                    images_from: None,
                })
            }
            other => other,
        }
    }

    /// Reads and checks the site file at `path`; `from` says who named it. It is
    /// opened without blocking and must be a regular file of at most
    /// [`MAX_SITE_BYTES`]: a FIFO or a device is refused before anything is read.
    pub fn read(path: &Path, from: &'static str) -> Result<Site, SiteError> {
        let label = path.display().to_string();
        let text = read_capped(path, &label, from)?;
        check_trusted(path, &label)?;
        let config = Self::parse(&text, &label)?;
        Ok(Site {
            path: Some(path.to_owned()),
            config,
            images_from: None,
        })
    }

    /// Parses site-file text; `label` names it in errors.
    pub fn parse(text: &str, label: &str) -> Result<SiteConfig, SiteError> {
        let config: SiteConfig = toml::from_str(text).map_err(|e| {
            // The span gives the line of the offending key, so the message names
            // both the file and the place, in the compiler's FILE:LINE:COL habit.
            let (line, column) = e
                .span()
                .map_or((1, 1), |span| line_column(text, span.start));
            SiteError::Parse {
                path: label.to_owned(),
                line,
                column,
                message: e.message().trim_end().to_owned(),
            }
        })?;
        config.images.check(label)?;
        Ok(config)
    }

    /// Replaces `[images]` with the one of the system site file `system`, when
    /// it exists and is not the file already read.
    pub fn take_system_images(&mut self, system: &Path) -> Result<(), SiteError> {
        let same = match (&self.path, std::fs::canonicalize(system)) {
            (_, Err(e)) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            (Some(path), Ok(system)) => std::fs::canonicalize(path).is_ok_and(|p| p == system),
            _ => false,
        };
        if same {
            return Ok(());
        }
        let site = Self::read(system, "the system site file")?;
        self.config.images = site.config.images;
        self.images_from = Some(system.to_owned());
        Ok(())
    }

    /// How to name where the `[images]` policy came from in messages.
    pub fn images_label(&self) -> String {
        match &self.images_from {
            Some(path) => format!("{} (the system site file)", path.display()),
            None => self.label(),
        }
    }

    /// How to name this site file in messages.
    pub fn label(&self) -> String {
        self.path.as_ref().map_or_else(
            || format!("none found: no --site, no ${SITE_ENV}, no {DEFAULT_SITE_FILE}"),
            |p| p.display().to_string(),
        )
    }
}

/// Refuses a site file that someone other than root or this user could have
/// written: owned by another user, or writable by its group or by others. Its
/// scanner runs with this user's rights (root's, for a site's copy tool), and
/// its policy decides what runs.
fn check_trusted(path: &Path, label: &str) -> Result<(), SiteError> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).map_err(|source| SiteError::Read {
        path: label.to_owned(),
        from: "its owner and mode",
        source,
    })?;
    let me = rustix::process::geteuid().as_raw();
    let why = if meta.uid() != 0 && meta.uid() != me {
        format!(
            "it is owned by user ID {}, neither root nor you (user ID {me})",
            meta.uid()
        )
    } else if meta.mode() & 0o022 != 0 {
        format!(
            "its mode {:04o} lets its group or others write it",
            meta.mode() & 0o7777
        )
    } else {
        return Ok(());
    };
    Err(SiteError::Untrusted {
        path: label.to_owned(),
        why,
    })
}

/// The text of the site file at `path`, at most MAX_SITE_BYTES of it.
fn read_capped(path: &Path, label: &str, from: &'static str) -> Result<String, SiteError> {
    let read_error = |source| SiteError::Read {
        path: label.to_owned(),
        from,
        source,
    };
    let too_large = |size| SiteError::TooLarge {
        path: label.to_owned(),
        from,
        size,
    };
    let (file, len) = crate::fsopen::open_file(path).map_err(|e| match e {
        crate::fsopen::OpenError::Special { kind, .. } => SiteError::NotRegular {
            path: label.to_owned(),
            from,
            kind,
        },
        crate::fsopen::OpenError::Io { source, .. } => read_error(source),
    })?;
    if len > MAX_SITE_BYTES {
        return Err(too_large(len));
    }
    let mut text = String::new();
    // The file may have grown since fstat: read one byte past the cap to tell.
    file.take(MAX_SITE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(read_error)?;
    if text.len() as u64 > MAX_SITE_BYTES {
        return Err(too_large(text.len() as u64));
    }
    Ok(text)
}

/// 1-based line and column of byte `offset` in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_when_empty() {
        let config = Site::parse("", "site.toml").expect("empty file is valid");
        assert_eq!(config.images.max_images, 20);
        assert_eq!(config.images.mode_bits(), Ok(0o640));
        assert!(config.images.scanner.is_empty());
        assert!(config.images.dir.is_none());
    }

    #[test]
    fn unknown_key_named_with_place() {
        let text = "[images]\nmax_images = 3\nmax_imagez = 4\n";
        let err = Site::parse(text, "/etc/site.toml").expect_err("typo refused");
        let message = err.to_string();
        assert!(message.starts_with("/etc/site.toml:3:1: "), "{message}");
        assert!(message.contains("max_imagez"), "{message}");
    }

    #[test]
    fn unknown_section_refused() {
        let err = Site::parse("[runtimes]\nx = 1\n", "s.toml").expect_err("refused");
        assert!(err.to_string().contains("runtimes"), "{err}");
    }

    #[test]
    fn bad_values_refused() {
        for (text, key) in [
            ("[images]\ndir = \"relative/dir\"\n", "dir"),
            ("[images]\nmax_images = 0\n", "max_images"),
            ("[images]\nmode = \"0666\"\n", "mode"),
            ("[images]\nmode = \"4640\"\n", "mode"),
            ("[images]\nmode = \"rw\"\n", "mode"),
            ("[images]\nscanner = [\"clamscan\"]\n", "scanner"),
            ("[images]\nscanner_timeout_s = 0\n", "scanner_timeout_s"),
            (
                "[images]\nscanner_timeout_s = 18446744073709551615\n",
                "scanner_timeout_s",
            ),
        ] {
            let err = Site::parse(text, "s.toml").expect_err(text);
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn site_files_others_could_write_are_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tmp");
        let path = dir.path().join("site.toml");
        std::fs::write(&path, "[images]\nmax_images = 3\n").expect("write");
        for mode in [0o644, 0o600, 0o444] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            assert!(Site::read(&path, "--site").is_ok(), "{mode:o}");
        }
        for mode in [0o664, 0o646, 0o666] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
            let err = Site::read(&path, "--site").expect_err("refused");
            assert!(err.to_string().contains("chmod go-w"), "{mode:o}: {err}");
        }
        if rustix::process::geteuid().is_root() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            std::os::unix::fs::chown(&path, Some(12345), None).expect("chown");
            let err = Site::read(&path, "--site").expect_err("refused");
            assert!(err.to_string().contains("owned by user ID 12345"), "{err}");
        }
    }

    #[test]
    fn wrong_type_refused() {
        let err = Site::parse("[images]\nmax_images = \"20\"\n", "s.toml").expect_err("type");
        assert!(err.to_string().starts_with("s.toml:2:"), "{err}");
    }
}
