//! Path values of the site file, checked as they are read (so a bad one is
//! refused with the file, line and key, before anything runs).

use std::ops::Deref;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// An absolute host path (`library`, `libs`, `plugin_dirs`, `bind_dir`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbsPath(PathBuf);

impl AbsPath {
    pub fn as_path(&self) -> &Path {
        &self.0
    }

    pub fn to_path_buf(&self) -> PathBuf {
        self.0.clone()
    }
}

impl Deref for AbsPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for AbsPath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl<'de> Deserialize<'de> for AbsPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<AbsPath, D::Error> {
        let text = String::deserialize(d)?;
        if !text.starts_with('/') {
            return Err(serde::de::Error::custom(format!(
                "{text:?} is not an absolute path: write it starting with /"
            )));
        }
        if text.contains('\0') {
            return Err(serde::de::Error::custom("a path cannot contain a NUL byte"));
        }
        Ok(AbsPath(PathBuf::from(text)))
    }
}

/// An absolute path that the runtimes can bind: no ':' or ',' (Singularity,
/// Apptainer and ch-run split bind specifications on them), no newline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindPath(AbsPath);

impl Deref for BindPath {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl BindPath {
    pub fn to_path_buf(&self) -> PathBuf {
        self.0.to_path_buf()
    }
}

impl<'de> Deserialize<'de> for BindPath {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<BindPath, D::Error> {
        let path = AbsPath::deserialize(d)?;
        let text = path.to_string_lossy();
        if let Some(c) = text.chars().find(|c| matches!(c, ':' | ',' | '\n')) {
            return Err(serde::de::Error::custom(format!(
                "{text:?} contains {c:?}: the runtimes split bind specifications on ':' and \
                 ',', so such a path cannot be bound; bind a parent directory without them"
            )));
        }
        Ok(BindPath(path))
    }
}

impl From<&AbsPath> for PathBuf {
    fn from(p: &AbsPath) -> PathBuf {
        p.0.clone()
    }
}

impl From<AbsPath> for PathBuf {
    fn from(p: AbsPath) -> PathBuf {
        p.0
    }
}

impl From<&BindPath> for PathBuf {
    fn from(p: &BindPath) -> PathBuf {
        p.to_path_buf()
    }
}

impl From<BindPath> for PathBuf {
    fn from(p: BindPath) -> PathBuf {
        p.0.0
    }
}

impl std::fmt::Display for AbsPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.display().fmt(f)
    }
}
