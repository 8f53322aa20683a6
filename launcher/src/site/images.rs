//! `[images]`: the allowed-directory store of `hybrun image cp|ls|rm|verify` (and
//! the image path policy of `hybrun run`).
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

use std::time::Duration;

use serde::Deserialize;

use super::SiteError;

/// The longest scan the site file may allow: a day.
pub const MAX_SCANNER_TIMEOUT_S: u64 = 86_400;

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

impl ImagesConfig {
    /// Checks the values that the types alone do not.
    pub(super) fn check(&self, label: &str) -> Result<(), SiteError> {
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
        if self.scanner_timeout_s == 0 || self.scanner_timeout_s > MAX_SCANNER_TIMEOUT_S {
            return Err(invalid(
                "scanner_timeout_s",
                self.scanner_timeout_s.to_string(),
                "it must be from 1 second to 86400 (a day)",
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
