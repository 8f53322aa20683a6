//! Opening the image of a launch, so that what is checked is what runs:
//!
//! 1. The image path is canonicalized (every symbolic link and `..` resolved), so
//!    a link inside the allowed directory that points out of it is judged by
//!    where it points.
//! 2. The canonical path is opened (`O_NOFOLLOW`: its last component is not a
//!    link, so a link appearing there is a swap in progress; `O_NONBLOCK`: a
//!    FIFO cannot hang the open) and the opened file's device and inode are
//!    compared with a fresh `stat` of the canonical path and of the path as
//!    given: the file checked is the file opened.
//!
//! The runtime then gets the canonical path. Whether an opened image may run on
//! this site (Singularity/Apptainer's allowed directory) is the store's rule:
//! [`crate::store::admission`].

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::LaunchError;

/// What an image is, as far as launching cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageKind {
    /// A SIF file (Singularity/Apptainer).
    Sif,
    /// A SquashFS file.
    Squashfs,
    /// Some other regular file (ext3, ...).
    File,
    /// A directory (sandbox / Charliecloud image).
    Directory,
}

/// An image that was opened and checked.
#[derive(Debug)]
pub struct CheckedImage {
    /// The path as the user gave it.
    pub given: PathBuf,
    /// The canonical path: what the runtime is given.
    pub canonical: PathBuf,
    /// The opened file (or directory): hashing reads this very file.
    pub file: File,
    pub kind: ImageKind,
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
}

/// Opens an image and checks it is what its path says (steps 1 and 2).
pub fn open_image(given: &Path) -> Result<CheckedImage, LaunchError> {
    let io = |action: &'static str, source: std::io::Error| LaunchError::ImageIo {
        path: given.display().to_string(),
        action,
        source,
    };
    let canonical = std::fs::canonicalize(given).map_err(|e| io("find", e))?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        // O_NONBLOCK: opening a FIFO planted as the image must not hang (it
        // is refused below as neither file nor directory).
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC | libc::O_NONBLOCK)
        .open(&canonical)
        .map_err(|e| io("open", e))?;
    let opened = file.metadata().map_err(|e| io("stat", e))?;
    let now = std::fs::metadata(&canonical).map_err(|e| io("stat", e))?;
    let via_given = std::fs::metadata(given).map_err(|e| io("stat", e))?;
    let same = |m: &std::fs::Metadata| m.dev() == opened.dev() && m.ino() == opened.ino();
    if !same(&now) || !same(&via_given) {
        return Err(LaunchError::ImageChanged {
            path: given.display().to_string(),
        });
    }
    let kind = if opened.is_dir() {
        ImageKind::Directory
    } else if opened.is_file() {
        sniff(&file)
    } else {
        return Err(LaunchError::ImageNotFile {
            path: given.display().to_string(),
        });
    };
    Ok(CheckedImage {
        given: given.to_owned(),
        canonical,
        kind,
        dev: opened.dev(),
        ino: opened.ino(),
        size: opened.len(),
        file,
    })
}

/// Tells SIF and SquashFS from other files by their first bytes (read through
/// a duplicate so the caller's offset stays at 0).
fn sniff(file: &File) -> ImageKind {
    let mut head = [0u8; 64];
    let n = file
        .try_clone()
        .and_then(|mut f| f.read(&mut head))
        .unwrap_or(0);
    let head = &head[..n];
    // SIF: the launch script line, then "SIF_MAGIC" at offset 32.
    if head.len() >= 41 && &head[32..41] == b"SIF_MAGIC" {
        ImageKind::Sif
    } else if head.starts_with(b"hsqs") {
        ImageKind::Squashfs
    } else {
        ImageKind::File
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opened_is_what_the_path_names() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = std::fs::canonicalize(tmp.path()).expect("canon");
        std::fs::write(root.join("a.sif"), b"x").expect("write");
        std::os::unix::fs::symlink(root.join("a.sif"), root.join("link.sif")).expect("ln");
        let good = open_image(&root.join("a.sif")).expect("open");
        assert_eq!(good.kind, ImageKind::File);
        let link = open_image(&root.join("link.sif")).expect("open");
        assert_eq!(link.canonical, root.join("a.sif"));
        assert_eq!((link.dev, link.ino), (good.dev, good.ino));
        assert!(open_image(&root.join("missing.sif")).is_err());
        rustix::fs::mknodat(
            rustix::fs::CWD,
            root.join("fifo.sif"),
            rustix::fs::FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .expect("mkfifo");
        let err = open_image(&root.join("fifo.sif")).expect_err("a FIFO is no image");
        assert!(err.to_string().contains("neither a regular file"), "{err}");
    }
}
