//! Opening a path a user named (an image, a site file) without being at its
//! mercy: the open never blocks (a FIFO would otherwise wait forever for a
//! writer), and what was opened is judged by `fstat` on the descriptor, so that a
//! FIFO, a socket or a device (`/dev/zero` is endless) is refused before a byte is
//! read, and what is read is the very file that was judged.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::fs::{FileType, OFlags};

/// What an opened path is.
#[derive(Debug)]
pub enum Opened {
    /// A regular file, and its size.
    File(File, u64),
    Dir(File),
}

/// Why a path could not be opened as a file or directory.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("{path}: it is a {kind}, not a regular file")]
    Special { path: String, kind: &'static str },
    #[error("{path}: cannot open it: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// How a file type is named in messages.
pub fn kind_name(kind: FileType) -> &'static str {
    match kind {
        FileType::RegularFile => "regular file",
        FileType::Directory => "directory",
        FileType::Fifo => "FIFO (named pipe)",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Socket => "socket",
        FileType::Symlink | FileType::Unknown => "special file",
    }
}

/// Opens `path` (symbolic links followed) read-only without blocking, and
/// returns it if it is a regular file or a directory.
pub fn open(path: &Path) -> Result<Opened, OpenError> {
    let label = || path.display().to_string();
    let io_error = |source| OpenError::Io {
        path: label(),
        source,
    };
    let flags = OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
    {
        Ok(file) => file,
        // Opening a socket fails with ENXIO: say what it is.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) => {
            let kind = rustix::fs::stat(path)
                .map(|st| kind_name(FileType::from_raw_mode(st.st_mode)))
                .unwrap_or("special file");
            return Err(OpenError::Special {
                path: label(),
                kind,
            });
        }
        Err(e) => return Err(io_error(e)),
    };
    let stat = rustix::fs::fstat(&file).map_err(|e| io_error(e.into()))?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => {
            // Regular files ignore O_NONBLOCK; clear it so reads behave as usual.
            rustix::fs::fcntl_setfl(&file, OFlags::empty()).map_err(|e| io_error(e.into()))?;
            Ok(Opened::File(file, stat.st_size.max(0) as u64))
        }
        FileType::Directory => Ok(Opened::Dir(file)),
        other => Err(OpenError::Special {
            path: label(),
            kind: kind_name(other),
        }),
    }
}

/// Opens `path` as [`open`] does, and requires a regular file.
pub fn open_file(path: &Path) -> Result<(File, u64), OpenError> {
    match open(path)? {
        Opened::File(file, len) => Ok((file, len)),
        Opened::Dir(_) => Err(OpenError::Special {
            path: path.display().to_string(),
            kind: "directory",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_and_devices_are_refused_without_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        rustix::fs::mknodat(
            rustix::fs::CWD,
            &fifo,
            FileType::Fifo,
            rustix::fs::Mode::from_raw_mode(0o600),
            0,
        )
        .unwrap();
        let err = open(&fifo).unwrap_err().to_string();
        assert!(err.contains("FIFO (named pipe)"), "{err}");
        let err = open(Path::new("/dev/zero")).unwrap_err().to_string();
        assert!(err.contains("character device"), "{err}");
        assert!(matches!(open(dir.path()), Ok(Opened::Dir(_))));
        let err = open_file(dir.path()).unwrap_err().to_string();
        assert!(err.contains("directory"), "{err}");
        let file = dir.path().join("f");
        std::fs::write(&file, b"abc").unwrap();
        assert!(matches!(open_file(&file), Ok((_, 3))));
    }
}
