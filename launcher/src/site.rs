//! The site configuration: what the HPC site decides, in one TOML file.
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
//! # Keys
//!
//! Today the file has one section, `[images]`, the allowed-directory store of
//! `hybrun image cp|ls|rm|verify`. Later sections (runtime, launcher, MPI profiles,
//! fabric, GPU) are added as further fields of [`SiteConfig`]. Every key not
//! listed here is refused, with the file, line and key named, so that a typo never
//! silently falls back to a default.
//!
//! ```toml
//! [images]
//! # The allowed directory: the only place Singularity/Apptainer run images from on
//! # this site. Absolute and canonical (no symbolic link anywhere in it).
//! # "{user}" is replaced by the user's login name and "{uid}" by the numeric user ID.
//! # Default: $SINGULARITY_ALLOWED_DIR.
//! dir = "/allowed/{user}"
//!
//! # How many images the directory may hold (the site's limit). Default: 20.
//! max_images = 20
//!
//! # Permission bits of admitted images (octal, a string). Default: "0640".
//! # Only read bits and the owner's write bit may be set.
//! mode = "0640"
//!
//! # A security scanner run on each candidate image before it is admitted: the
//! # program and its arguments, run directly (no shell). An argument "{image}" is
//! # replaced by the candidate's path; without one, the path is appended. Exit
//! # status 0 admits the image, anything else refuses it. Default: no scanner.
//! scanner = ["/usr/bin/clamscan", "--no-summary", "{image}"]
//!
//! # Seconds the scanner may run before it (its whole process group) is killed and
//! # the image refused. Default: 600.
//! scanner_timeout_s = 600
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

/// The environment variable that names the site file when `--site` is not given.
pub const SITE_ENV: &str = "HYBRUN_SITE";

/// The site file read when neither `--site` nor `$HYBRUN_SITE` is given.
pub const DEFAULT_SITE_FILE: &str = "/etc/hybrun/site.toml";

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
        "{path}:{line}:{column}: {message}; `hybrun image cp --help` lists the site file's keys"
    )]
    Parse {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },

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
    pub images: ImagesConfig,

    // The launch sections (`hybrun run`/`hybrun exec`); documented in
    // crate::launch::site_sections and launcher/site.example.toml.
    /// `[runtime]`: the container runtime.
    #[serde(default)]
    pub runtime: crate::launch::site_sections::RuntimeSection,
    /// `[launcher]`: srun/mpiexec, records, the per-rank wrapper.
    #[serde(default)]
    pub launcher: crate::launch::site_sections::LauncherSection,
    /// `[mpi.<name>]`: the host's MPI installations, by profile name.
    #[serde(default)]
    pub mpi: std::collections::BTreeMap<String, crate::launch::site_sections::MpiProfileSection>,
    /// `[fabric]`: interconnect libraries, plugins, devices and variables.
    #[serde(default)]
    pub fabric: crate::launch::site_sections::FabricSection,
    /// `[gpu]`: the GPU vendor.
    #[serde(default)]
    pub gpu: crate::launch::site_sections::GpuSection,
    /// `[binds]`: host paths bound into every container.
    #[serde(default)]
    pub binds: crate::launch::site_sections::BindsSection,
    /// `[env]`: variables set in or removed from every rank.
    #[serde(default)]
    pub env: crate::launch::site_sections::EnvSection,
}

/// The `[images]` section, as written in the file (see the module documentation).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagesConfig {
    /// The allowed directory, with `{user}`/`{uid}` not yet replaced.
    pub dir: Option<String>,
    /// Most images the directory may hold.
    #[serde(default = "default_max_images")]
    pub max_images: u32,
    /// Permission bits of admitted images, octal text.
    #[serde(default = "default_mode")]
    pub mode: String,
    /// The scanner's argv; empty for none.
    #[serde(default)]
    pub scanner: Vec<String>,
    /// The scanner's time limit in seconds.
    #[serde(default = "default_scanner_timeout_s")]
    pub scanner_timeout_s: u64,
}

impl Default for ImagesConfig {
    fn default() -> Self {
        ImagesConfig {
            dir: None,
            max_images: default_max_images(),
            mode: default_mode(),
            scanner: Vec::new(),
            scanner_timeout_s: default_scanner_timeout_s(),
        }
    }
}

fn default_max_images() -> u32 {
    20
}

fn default_mode() -> String {
    "0640".to_owned()
}

fn default_scanner_timeout_s() -> u64 {
    600
}

/// A site file that was read, and where from (for error messages).
#[derive(Debug, Clone)]
pub struct Site {
    /// The file it was read from; None when no file exists (all defaults).
    pub path: Option<PathBuf>,
    pub config: SiteConfig,
}

impl Site {
    /// Finds and reads the site file: `cli` (`--site`), else `$HYBRUN_SITE`, else
    /// `/etc/hybrun/site.toml` if it exists, else the defaults.
    pub fn load(cli: Option<&Path>) -> Result<Site, SiteError> {
        if let Some(path) = cli {
            return Self::read(path, "--site");
        }
        if let Some(path) = std::env::var_os(SITE_ENV).filter(|p| !p.is_empty()) {
            return Self::read(Path::new(&path), "$HYBRUN_SITE");
        }
        match Self::read(Path::new(DEFAULT_SITE_FILE), "the default location") {
            Err(SiteError::Read { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                Ok(Site {
                    path: None,
                    config: SiteConfig::default(),
                })
            }
            other => other,
        }
    }

    /// Reads and checks the site file at `path`; `from` says who named it.
    pub fn read(path: &Path, from: &'static str) -> Result<Site, SiteError> {
        let label = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| SiteError::Read {
            path: label.clone(),
            from,
            source,
        })?;
        let config = Self::parse(&text, &label)?;
        Ok(Site {
            path: Some(path.to_owned()),
            config,
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

    /// How to name this site file in messages.
    pub fn label(&self) -> String {
        self.path.as_ref().map_or_else(
            || format!("none found: no --site, no ${SITE_ENV}, no {DEFAULT_SITE_FILE}"),
            |p| p.display().to_string(),
        )
    }
}

impl ImagesConfig {
    /// Checks the values that the types alone do not.
    fn check(&self, label: &str) -> Result<(), SiteError> {
        let invalid = |key, value: String, why: &str| SiteError::Invalid {
            path: label.to_owned(),
            key,
            value,
            why: why.to_owned(),
        };
        if let Some(dir) = &self.dir {
            if !dir.starts_with('/') {
                return Err(invalid(
                    "dir",
                    dir.clone(),
                    "it must be an absolute path (it starts with /)",
                ));
            }
        }
        if self.max_images == 0 {
            return Err(invalid(
                "max_images",
                "0".into(),
                "it must be at least 1 (20 is the usual site limit)",
            ));
        }
        self.mode_bits()
            .map_err(|why| invalid("mode", self.mode.clone(), &why))?;
        if let Some(first) = self.scanner.first() {
            if !first.starts_with('/') {
                return Err(invalid(
                    "scanner",
                    first.clone(),
                    "the program must be an absolute path (no $PATH search), e.g. \
                     [\"/usr/bin/clamscan\", \"{image}\"]",
                ));
            }
        }
        if self.scanner_timeout_s == 0 {
            return Err(invalid(
                "scanner_timeout_s",
                "0".into(),
                "it must be at least 1 second",
            ));
        }
        Ok(())
    }

    /// The `mode` key as permission bits.
    pub fn mode_bits(&self) -> Result<u32, String> {
        let bits = u32::from_str_radix(&self.mode, 8)
            .map_err(|_| "write it as octal text, e.g. \"0640\"".to_owned())?;
        // Images that others can write, or that run set-ID, defeat the store's
        // point; the owner must be able to read them to run them.
        if bits & !0o644 != 0 {
            return Err(
                "only read bits and the owner's write bit may be set (e.g. \"0640\")".into(),
            );
        }
        if bits & 0o400 == 0 {
            return Err("the owner must be able to read images (e.g. \"0640\")".into());
        }
        Ok(bits)
    }

    /// The scanner time limit.
    pub fn scanner_timeout(&self) -> Duration {
        Duration::from_secs(self.scanner_timeout_s)
    }
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
        ] {
            let err = Site::parse(text, "s.toml").expect_err(text);
            assert!(err.to_string().contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn wrong_type_refused() {
        let err = Site::parse("[images]\nmax_images = \"20\"\n", "s.toml").expect_err("type");
        assert!(err.to_string().starts_with("s.toml:2:"), "{err}");
    }
}
