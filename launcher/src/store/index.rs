//! The index: the SHA-256, size, time, source and scan of every admitted image,
//! in `.hybrun-index.json` in the allowed directory, rewritten atomically.

use std::collections::BTreeMap;
use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use super::StoreError;
use super::dir::{StoreDir, TempFile};
use super::scan::ScanRecord;

/// The index file's name in the allowed directory.
pub const INDEX_FILE: &str = ".hybrun-index.json";

/// Format version written; a newer one is refused rather than half-understood.
const VERSION: u32 = 1;

/// The whole index.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Index {
    pub version: u32,
    /// By image name, so that the file is sorted and diffs stay small.
    pub images: BTreeMap<String, IndexEntry>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            version: VERSION,
            images: BTreeMap::new(),
        }
    }
}

/// What was recorded when an image was admitted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// SHA-256 of the image, lower-case hexadecimal, computed while copying.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// When it was admitted, UTC, RFC 3339.
    pub admitted: String,
    /// The path it was copied from.
    pub source: String,
    /// The scanner's run, when the site has a scanner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scan: Option<ScanRecord>,
    /// The admitted file's identity, recorded after it was renamed into place:
    /// a launch whose file still has it needs no re-hash (see
    /// [`super::admission`]). Absent in indexes written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
}

/// What identifies a file's content without reading it: the same device and
/// inode, size, and modification and change times. Writing the file, or setting
/// its times back, changes the change time (`st_ctime`), which only the kernel
/// sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

impl Identity {
    pub fn of(stat: &rustix::fs::Stat) -> Identity {
        Identity {
            dev: stat.st_dev,
            ino: stat.st_ino,
            size: stat.st_size.max(0) as u64,
            mtime: (stat.st_mtime, stat.st_mtime_nsec as i64),
            ctime: (stat.st_ctime, stat.st_ctime_nsec as i64),
        }
    }
}

impl Index {
    /// Reads the index of `dir`; an absent index is an empty one.
    pub(crate) fn load(dir: &StoreDir) -> Result<Index, StoreError> {
        let corrupt = |why: String| StoreError::IndexCorrupt {
            path: dir.path().join(INDEX_FILE).display().to_string(),
            why,
        };
        let mut file = match dir.open_regular(INDEX_FILE) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Index::default()),
            Err(e) => return Err(corrupt(format!("cannot open it: {e}"))),
        };
        let mut text = String::new();
        file.read_to_string(&mut text)
            .map_err(|e| corrupt(format!("cannot read it: {e}")))?;
        let index: Index = serde_json::from_str(&text).map_err(|e| corrupt(e.to_string()))?;
        if index.version != VERSION {
            return Err(corrupt(format!(
                "format version {} (this hybrun reads version {VERSION}; use a newer hybrun)",
                index.version
            )));
        }
        Ok(index)
    }

    /// Writes the index into a flushed temporary file of `dir`, to be renamed into
    /// place with [`TempFile::persist`] as `INDEX_FILE`: written first, so that a
    /// full disk shows before the image is renamed into place, not after.
    pub(crate) fn prepare<'a>(
        &self,
        dir: &'a StoreDir,
        mode: u32,
    ) -> Result<TempFile<'a>, StoreError> {
        let write_err = |source| StoreError::WriteIo {
            dir: dir.label().to_owned(),
            action: "write the index .hybrun-index.json in",
            source,
        };
        let mut text =
            serde_json::to_string_pretty(self).map_err(|e| write_err(std::io::Error::other(e)))?;
        text.push('\n');
        let mut temp = dir.create_temp()?;
        temp.file.write_all(text.as_bytes()).map_err(write_err)?;
        rustix::fs::fchmod(&temp.file, rustix::fs::Mode::from_raw_mode(mode))
            .map_err(|e| write_err(e.into()))?;
        temp.file.sync_all().map_err(write_err)?;
        Ok(temp)
    }
}
