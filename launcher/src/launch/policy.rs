//! The image path policy at launch: on a site whose Singularity/Apptainer runs
//! images only from an allowed directory (`limit container paths`), refuse any
//! other image before the job starts, with the runtime's own words and the fix.
//!
//! How the check is made, and why:
//!
//! 1. The image path is canonicalized (every symbolic link and `..` resolved), so
//!    a link inside the allowed directory that points out of it is judged by
//!    where it points.
//! 2. The canonical path is opened (`O_NOFOLLOW`: its last component is not a
//!    link, so a link appearing there is a swap in progress) and the opened
//!    file's device and inode are compared with a fresh `stat` of the canonical
//!    path and of the path as given: the file checked is the file opened.
//! 3. The canonical path is compared with the canonical allowed directory
//!    component by component (`Path::starts_with`), so `/x/allowed` does not
//!    admit `/x/allowed_evil/...`.
//!
//! The runtime then gets the canonical path. It applies the same rule itself;
//! this check makes the refusal early (before srun allocates nodes), clear, and
//! recorded. It applies to Singularity/Apptainer only; ch-run and native skip it.

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

/// The allowed directory, as configured, and where that came from.
#[derive(Debug, Clone)]
pub struct AllowedDir {
    pub dir: PathBuf,
    pub from: String,
}

/// Step 3: refuses `image` unless it is inside `allowed`.
pub fn check_allowed(image: &CheckedImage, allowed: &AllowedDir) -> Result<(), LaunchError> {
    let refuse = |why: String| LaunchError::ImageNotAllowed {
        image: image.given.display().to_string(),
        canonical: image.canonical.display().to_string(),
        allowed: allowed.dir.display().to_string(),
        from: allowed.from.clone(),
        why,
    };
    let dir = std::fs::canonicalize(&allowed.dir)
        .map_err(|e| refuse(format!("the allowed directory cannot be resolved: {e}")))?;
    if !image.canonical.starts_with(&dir) || image.canonical == dir {
        let why = if image.canonical != image.given {
            format!(
                "it resolves to {} (symbolic links and '..' followed)",
                image.canonical.display()
            )
        } else {
            format!("it is at {}", image.canonical.display())
        };
        return Err(refuse(why));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(dir: &Path) -> AllowedDir {
        AllowedDir {
            dir: dir.to_owned(),
            from: "test".into(),
        }
    }

    #[test]
    fn inside_outside_sibling_and_link() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = std::fs::canonicalize(tmp.path()).expect("canon");
        let ok_dir = root.join("allowed");
        let evil = root.join("allowed_evil");
        std::fs::create_dir_all(&ok_dir).expect("mkdir");
        std::fs::create_dir_all(&evil).expect("mkdir");
        std::fs::write(ok_dir.join("a.sif"), b"x").expect("write");
        std::fs::write(evil.join("b.sif"), b"x").expect("write");
        std::os::unix::fs::symlink(evil.join("b.sif"), ok_dir.join("link.sif")).expect("ln");
        let policy = allowed(&ok_dir);

        let good = open_image(&ok_dir.join("a.sif")).expect("open");
        assert!(check_allowed(&good, &policy).is_ok());
        assert_eq!(good.kind, ImageKind::File);

        let sibling = open_image(&evil.join("b.sif")).expect("open");
        let err = check_allowed(&sibling, &policy).expect_err("sibling refused");
        assert!(
            err.to_string()
                .contains("not in an allowed configured path"),
            "{err}"
        );

        let link = open_image(&ok_dir.join("link.sif")).expect("open");
        let err = check_allowed(&link, &policy).expect_err("link refused");
        assert!(err.to_string().contains("resolves to"), "{err}");

        let dotdot = open_image(&ok_dir.join("../allowed_evil/b.sif")).expect("open");
        assert!(check_allowed(&dotdot, &policy).is_err());

        assert!(open_image(&ok_dir.join("missing.sif")).is_err());
    }
}
