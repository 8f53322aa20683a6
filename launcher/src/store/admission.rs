//! Which files of the allowed directory may be launched: exactly those `hybrun
//! image cp` admitted and nobody changed since.
//!
//! Being somewhere under the allowed directory is not enough: a SIF planted
//! there with plain `cp`, an admitted image modified afterwards, a file in a
//! subdirectory, a candidate still being scanned (`.hybrun-tmp-*`) or the index
//! itself would otherwise run, and the store's SIF-only rule, scanner, quota and
//! hash would be advisory. A launch is admitted when all of these hold, checked
//! on the file the launcher opened:
//!
//! 1. it is a direct child of the allowed directory, under that name (the
//!    entry's device and inode are the opened file's);
//! 2. it is a regular file with a valid image name;
//! 3. the index lists that name;
//! 4. its identity (device, inode, size, modification and change times) is the
//!    one recorded at admission; otherwise, where a re-hash is allowed (`hybrun
//!    run`, a stand-alone `hybrun exec`), its size and SHA-256 must be the
//!    recorded ones. The ranks of a job that `hybrun run` checked never re-hash:
//!    a changed identity there refuses the rank.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::path::Path;

use rustix::fs::FileType;

use super::index::{Identity, Index, IndexEntry};
use super::policy::check_name;
use super::{Store, copy};

/// Whether a launch may read the whole image again when its identity changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recheck {
    /// Re-hash (once per job: `hybrun run`, a stand-alone `hybrun exec`).
    Rehash,
    /// Identity only (the ranks of a job `hybrun run` already checked).
    IdentityOnly,
}

/// An image admitted for a launch.
#[derive(Debug, Clone)]
pub struct Admission {
    pub name: String,
    pub entry: IndexEntry,
    /// Whether its identity had changed and its content was re-hashed (equal).
    pub rehashed: bool,
}

/// Which rule refused a launch, said for people.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("it is not directly in the allowed directory")]
    NotDirectChild,
    #[error("it is not a regular file")]
    NotRegular,
    #[error("its name is not an image name ({0})")]
    BadName(String),
    #[error("the allowed directory's index does not list it: `hybrun image cp` did not admit it")]
    NotIndexed,
    #[error("it was modified after it was admitted ({0})")]
    Modified(String),
    #[error(
        "it changed after `hybrun run` checked it for this job (device, inode, size or times \
         differ): run the job again"
    )]
    ChangedSinceRun,
    #[error("hybrun cannot {0}")]
    Io(String),
}

impl Store {
    /// Whether the image opened as `file` at the canonical path `canonical` may
    /// be launched (see the module documentation).
    pub fn admits(
        &self,
        canonical: &Path,
        file: &File,
        recheck: Recheck,
    ) -> Result<Admission, Refusal> {
        let io = |what: &str, e: std::io::Error| Refusal::Io(format!("{what}: {e}"));
        let opened = rustix::fs::fstat(file).map_err(|e| io("look at the image", e.into()))?;
        let name = self.direct_child(canonical, &opened)?;
        if FileType::from_raw_mode(opened.st_mode) != FileType::RegularFile {
            return Err(Refusal::NotRegular);
        }
        check_name(&name).map_err(Refusal::BadName)?;
        let index = Index::load(&self.dir).map_err(|e| Refusal::Io(e.to_string()))?;
        let entry = index
            .images
            .get(&name)
            .cloned()
            .ok_or(Refusal::NotIndexed)?;
        if entry.identity == Some(Identity::of(&opened)) {
            return Ok(Admission {
                name,
                entry,
                rehashed: false,
            });
        }
        if recheck == Recheck::IdentityOnly {
            return Err(Refusal::ChangedSinceRun);
        }
        let mut reader = file.try_clone().map_err(|e| io("read the image", e))?;
        reader
            .seek(SeekFrom::Start(0))
            .map_err(|e| io("read the image", e))?;
        let (size, digest) = copy::hash_file(&mut reader).map_err(|e| io("read the image", e))?;
        let sha256 = hybrun_core::sys::hex(&digest);
        if size != entry.size || sha256 != entry.sha256 {
            return Err(Refusal::Modified(format!(
                "{size} bytes, sha256 {}..., where {} bytes, sha256 {}... were admitted",
                &sha256[..12],
                entry.size,
                entry.sha256.get(..12).unwrap_or(&entry.sha256)
            )));
        }
        Ok(Admission {
            name,
            entry,
            rehashed: true,
        })
    }

    /// The name under which the opened file is a direct child of the allowed
    /// directory: the canonical path's parent is the directory, and the entry
    /// of that name (not followed) is the opened file.
    fn direct_child(&self, canonical: &Path, opened: &rustix::fs::Stat) -> Result<String, Refusal> {
        let parent = canonical.parent().ok_or(Refusal::NotDirectChild)?;
        if parent.components().ne(self.dir.path().components()) {
            return Err(Refusal::NotDirectChild);
        }
        let name = canonical
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or(Refusal::NotDirectChild)?;
        match self.dir.stat(name) {
            Ok(Some(entry)) if (entry.st_dev, entry.st_ino) == (opened.st_dev, opened.st_ino) => {
                Ok(name.to_owned())
            }
            Ok(_) => Err(Refusal::NotDirectChild),
            Err(e) => Err(Refusal::Io(e.to_string())),
        }
    }
}
