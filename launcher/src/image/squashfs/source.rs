//! Where a SquashFS's bytes come from: an opened file (at the SIF partition's
//! offset for SIF) or memory (the fuzz target). Every read is positioned (no
//! shared file offset), checked against the file system's extent and counted.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::SqError;

/// Positioned reads.
pub trait ReadAt: Send + Sync {
    /// Reads up to `buf.len()` bytes at `pos`; 0 at the end.
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize>;
}

impl ReadAt for File {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        FileExt::read_at(self, buf, pos)
    }
}

impl ReadAt for Arc<[u8]> {
    fn read_at(&self, buf: &mut [u8], pos: u64) -> io::Result<usize> {
        let Ok(start) = usize::try_from(pos) else {
            return Ok(0);
        };
        let Some(rest) = self.get(start..) else {
            return Ok(0);
        };
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        Ok(n)
    }
}

/// The bytes of one SquashFS: `len` bytes at `base` of the underlying file.
pub struct Source {
    inner: Box<dyn ReadAt>,
    base: u64,
    len: u64,
    count: Arc<AtomicU64>,
}

impl Source {
    /// The `space` bytes at `base` of `inner`; reads are added to `count`.
    pub fn new(inner: Box<dyn ReadAt>, base: u64, space: u64, count: Arc<AtomicU64>) -> Source {
        Source {
            inner,
            base,
            len: space,
            count,
        }
    }

    /// Where the file system starts in the file.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Bytes of the file system.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// From now on, only the first `len` bytes (the bytes the superblock says are
    /// used) are read.
    pub fn narrow(&mut self, len: u64) {
        self.len = self.len.min(len);
    }

    /// Fills `buf` from position `pos` of the file system; an error if any of it
    /// lies past the end.
    pub fn read_exact(&self, pos: u64, buf: &mut [u8]) -> Result<(), SqError> {
        let end = pos.checked_add(buf.len() as u64);
        if end.is_none_or(|end| end > self.len) {
            return super::corrupt(format!(
                "{} bytes at offset {pos} lie past the end of the file system ({} bytes)",
                buf.len(),
                self.len
            ));
        }
        let mut got = 0;
        while got < buf.len() {
            let at = self.base + pos + got as u64;
            match self.inner.read_at(&mut buf[got..], at) {
                Ok(0) => {
                    return super::corrupt(format!(
                        "the file ends at offset {at}, inside the file system (truncated?)"
                    ));
                }
                Ok(n) => {
                    got += n;
                    self.count.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(SqError::Io(e)),
            }
        }
        Ok(())
    }

    /// The little-endian u64 at `pos`.
    pub fn u64_at(&self, pos: u64) -> Result<u64, SqError> {
        let mut b = [0u8; 8];
        self.read_exact(pos, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}
