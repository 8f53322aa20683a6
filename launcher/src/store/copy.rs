//! Opening the source image safely and copying it with its SHA-256 in one pass.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use rustix::fs::{FileType, OFlags};
use sha2::{Digest, Sha256};

use super::StoreError;
use crate::sif::SifImage;

/// Bytes per read/hash/write step: large enough that system calls cost nothing
/// next to the copy and the hash, small enough to stay in the CPU caches.
const CHUNK: usize = 1 << 20;

/// The source image, opened and checked to be a regular file.
#[derive(Debug)]
pub(crate) struct Source {
    pub file: File,
    pub label: String,
    pub len: u64,
}

/// Opens `path` for reading without following a final symbolic link and without
/// blocking (a FIFO or a device must not hang the open), then checks on the
/// opened descriptor, not on the path, that it is a regular file.
pub(crate) fn open_source(path: &Path) -> Result<Source, StoreError> {
    let label = path.display().to_string();
    let io_err = |action, source| StoreError::SourceIo {
        path: label.clone(),
        action,
        source,
    };
    let flags = OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY;
    let file = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(flags.bits() as i32)
        .open(path)
    {
        Ok(file) => file,
        // O_NOFOLLOW on a symbolic link fails with ELOOP.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::LOOP.raw_os_error()) => {
            return Err(StoreError::SourceSymlink { path: label });
        }
        // Opening a socket fails with ENXIO.
        Err(e) if e.raw_os_error() == Some(rustix::io::Errno::NXIO.raw_os_error()) => {
            return Err(StoreError::SourceNotRegular {
                path: label,
                kind: "socket",
            });
        }
        Err(e) => return Err(io_err("open", e)),
    };
    let stat = rustix::fs::fstat(&file).map_err(|e| io_err("look at", e.into()))?;
    let kind = match FileType::from_raw_mode(stat.st_mode) {
        FileType::RegularFile => None,
        FileType::Directory => Some("directory"),
        FileType::Fifo => Some("FIFO (named pipe)"),
        FileType::CharacterDevice => Some("character device"),
        FileType::BlockDevice => Some("block device"),
        FileType::Socket => Some("socket"),
        FileType::Symlink | FileType::Unknown => Some("special file"),
    };
    if let Some(kind) = kind {
        return Err(StoreError::SourceNotRegular { path: label, kind });
    }
    // Regular files ignore O_NONBLOCK, but clear it so reads behave as usual.
    rustix::fs::fcntl_setfl(&file, OFlags::empty()).map_err(|e| io_err("open", e.into()))?;
    Ok(Source {
        file,
        label,
        len: stat.st_size.max(0) as u64,
    })
}

/// Checks that `file` holds a SIF image (magic, header and descriptor table, all
/// offsets within the file), then rewinds it.
pub(crate) fn check_sif(file: &mut File, label: &str) -> Result<(), StoreError> {
    SifImage::from_reader(&mut *file, label).map_err(|source| StoreError::NotSif {
        path: label.to_owned(),
        source,
    })?;
    file.seek(SeekFrom::Start(0))
        .map(|_| ())
        .map_err(|source| StoreError::SourceIo {
            path: label.to_owned(),
            action: "rewind",
            source,
        })
}

/// Why a copy stopped.
#[derive(Debug)]
pub(crate) enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `from` into `to` in one pass, each chunk read, hashed and written
/// before the next is read, and returns the bytes copied and their SHA-256.
pub(crate) fn copy_hashing(from: &mut File, to: &mut File) -> Result<(u64, [u8; 32]), CopyError> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        let chunk = &buffer[..n];
        hasher.update(chunk);
        to.write_all(chunk).map_err(CopyError::Write)?;
        total += n as u64;
    }
    Ok((total, hasher.finalize().into()))
}

/// SHA-256 of everything `file` holds from its current position, with its length.
pub(crate) fn hash_file(file: &mut File) -> io::Result<(u64, [u8; 32])> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        match file.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                hasher.update(&buffer[..n]);
                total += n as u64;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok((total, hasher.finalize().into()))
}

/// Lower-case hexadecimal.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
