//! Opening the source image safely and copying it with its SHA-256 in one pass.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};

use rustix::fs::{FileType, OFlags};
use sha2::{Digest, Sha256};

use super::StoreError;
use hybrun_sif::SifImage;

/// Bytes per read/hash/write step: large enough that system calls cost nothing
/// next to the copy and the hash, small enough to stay in the CPU caches.
const CHUNK: usize = 1 << 20;

/// The source image, opened and checked to be a regular file.
#[derive(Debug)]
pub(crate) struct Source {
    pub file: File,
    pub label: String,
    /// The opened file's path when it was opened (`/proc/self/fd/N`'s target).
    pub canonical: std::path::PathBuf,
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
    let canonical = std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
        .or_else(|_| std::fs::canonicalize(path))
        .unwrap_or_else(|_| path.to_owned());
    Ok(Source {
        file,
        label,
        canonical,
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

/// Buffers in flight between the copying thread and the hashing thread.
const BUFFERS: usize = 8;

/// Alignment of buffers, lengths and offsets for direct I/O (`O_DIRECT`): the
/// page size, a multiple of every usual logical block size.
const ALIGN: usize = 4096;

/// Write-back of a buffered copy is started every this many bytes, so that the
/// disk works while the copy and the hash go on and the final fsync has little left.
const WRITEBACK_WINDOW: u64 = 64 << 20;

/// Copies `from` into `to` in one pass and returns the bytes copied and their
/// SHA-256. Each chunk is read once into a buffer; a writer thread writes it and
/// a hasher thread hashes it, both from that same buffer, while the next chunks
/// are read: the digest is of exactly the bytes written, and reading, writing and
/// hashing (the slowest, ~1.8 GB/s with SHA-NI) overlap instead of adding up.
///
/// `to` is written with direct I/O where the file system allows it: the data goes
/// from the buffer to the disk without a second copy into the page cache, and the
/// fsync that follows has only the tail and the metadata left. Elsewhere (or after
/// a short direct write) the copy is buffered, with write-back started as it goes.
/// `to` is left in buffered mode.
pub(crate) fn copy_hashing(from: &mut File, to: &mut File) -> Result<(u64, [u8; 32]), CopyError> {
    copy_hashing_with(from, to, true)
}

/// A chunk in flight: the buffer, where its page-aligned part starts, how many
/// bytes it holds. Shared by the writer and the hasher; back to the reader when
/// both are done with it.
type Chunk = Arc<(Vec<u8>, usize, usize)>;

/// [`copy_hashing`], trying direct I/O only when `try_direct` (tests use both ways).
fn copy_hashing_with(
    from: &mut File,
    to: &mut File,
    try_direct: bool,
) -> Result<(u64, [u8; 32]), CopyError> {
    let direct = try_direct && set_direct(to, true).is_ok();
    let (to_write, write_rx) = mpsc::sync_channel::<Chunk>(BUFFERS);
    let (to_hash, hash_rx) = mpsc::sync_channel::<Chunk>(BUFFERS);
    let (returned, free_rx) = mpsc::channel::<Chunk>();
    let write_failed = AtomicBool::new(false);
    let (read, written, digest) = std::thread::scope(|scope| {
        let returned_by_writer = returned.clone();
        let write_failed = &write_failed;
        let writer = scope.spawn(move || {
            let mut direct = direct;
            let mut total = 0u64;
            let mut result = Ok(());
            for chunk in write_rx {
                let (buffer, start, n) = &*chunk;
                if result.is_ok() {
                    result = write_chunk(to, &buffer[*start..start + n], &mut direct);
                    if result.is_err() {
                        // Tell the reader to stop; keep taking chunks so that it
                        // never waits on a full channel.
                        write_failed.store(true, Ordering::Relaxed);
                    }
                    let before = total;
                    total += *n as u64;
                    if !direct && total / WRITEBACK_WINDOW > before / WRITEBACK_WINDOW {
                        let end = total / WRITEBACK_WINDOW * WRITEBACK_WINDOW;
                        start_writeback(to, end - WRITEBACK_WINDOW, WRITEBACK_WINDOW);
                    }
                }
                let _ = returned_by_writer.send(chunk);
            }
            if direct {
                // Later reads of `to` (the SIF check) use small unaligned buffers.
                result = result.and_then(|()| set_direct(to, false));
            }
            result
        });
        let hasher = scope.spawn(move || {
            let mut hasher = Sha256::new();
            for chunk in hash_rx {
                let (buffer, start, n) = &*chunk;
                hasher.update(&buffer[*start..start + n]);
                // The reader may have stopped on an error: then nobody takes it back.
                let _ = returned.send(chunk);
            }
            <[u8; 32]>::from(hasher.finalize())
        });

        let mut total = 0u64;
        let mut fresh = BUFFERS;
        let read = loop {
            if write_failed.load(Ordering::Relaxed) {
                break Ok(());
            }
            let mut buffer = if fresh > 0 {
                fresh -= 1;
                vec![0u8; CHUNK + ALIGN]
            } else {
                // Each chunk comes back twice (writer, hasher); the second is the
                // only holder left and gets the buffer back.
                match free_rx.recv().map(Arc::try_unwrap) {
                    Ok(Ok((buffer, _, _))) => buffer,
                    Ok(Err(_still_shared)) => continue,
                    // A worker is gone: it can only have panicked; join says so.
                    Err(_) => break Ok(()),
                }
            };
            // Where the buffer's memory is page aligned (the same for each use).
            let start = buffer.as_ptr().align_offset(ALIGN).min(ALIGN);
            let n = match read_full(from, &mut buffer[start..start + CHUNK]) {
                Ok(0) => break Ok(()),
                Ok(n) => n,
                Err(e) => break Err(CopyError::Read(e)),
            };
            total += n as u64;
            let chunk = Arc::new((buffer, start, n));
            if to_write.send(chunk.clone()).is_err() || to_hash.send(chunk).is_err() {
                break Ok(());
            }
        };
        // Ends the workers' loops.
        drop((to_write, to_hash));
        let failed = || CopyError::Read(io::Error::other("a copying thread failed"));
        let written = writer.join().map_err(|_| failed())?;
        let digest = hasher.join().map_err(|_| failed())?;
        Ok::<_, CopyError>((read.map(|()| total), written, digest))
    })?;
    written.map_err(CopyError::Write)?;
    Ok((read?, digest))
}

/// Writes all of `data`, directly while `direct` holds and `data` is aligned,
/// otherwise (the tail of the file, the rest after a short or refused direct
/// write) buffered, switching `to` and `direct` to buffered for good.
fn write_chunk(to: &mut File, data: &[u8], direct: &mut bool) -> io::Result<()> {
    let mut rest = data;
    while !rest.is_empty() {
        let aligned = rest.len() % ALIGN == 0 && (rest.as_ptr() as usize) % ALIGN == 0;
        if *direct && !aligned {
            set_direct(to, false)?;
            *direct = false;
        }
        match to.write(rest) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => rest = &rest[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Some file systems accept O_DIRECT at open but not the write.
            Err(e)
                if *direct && e.raw_os_error() == Some(rustix::io::Errno::INVAL.raw_os_error()) =>
            {
                set_direct(to, false)?;
                *direct = false;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Turns direct I/O on `file` on or off (fails where the file system has none).
fn set_direct(file: &File, on: bool) -> io::Result<()> {
    let flags = rustix::fs::fcntl_getfl(file)?;
    let flags = if on {
        flags | OFlags::DIRECT
    } else {
        flags - OFlags::DIRECT
    };
    rustix::fs::fcntl_setfl(file, flags).map_err(Into::into)
}

/// Reads until `buffer` is full or the file ends (a short read in the middle
/// would make the next direct write unaligned); returns the bytes read.
fn read_full(from: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buffer.len() {
        match read_retrying(from, &mut buffer[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

/// Starts writing `len` bytes at `offset` of `file` to disk without waiting
/// (`sync_file_range(SYNC_FILE_RANGE_WRITE)`). A hint only: errors are ignored
/// here, the fsync that follows the copy reports real ones.
fn start_writeback(file: &File, offset: u64, len: u64) {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: a system call on a descriptor that `file` keeps open; no memory is
    // passed to the kernel.
    let _ = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
}

/// `read`, retried when interrupted by a signal.
fn read_retrying(from: &mut File, buffer: &mut [u8]) -> io::Result<usize> {
    loop {
        match from.read(buffer) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}

/// SHA-256 of everything `file` holds from its current position, with its length.
pub(crate) fn hash_file(file: &mut File) -> io::Result<(u64, [u8; 32])> {
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; CHUNK];
    let mut total = 0u64;
    loop {
        let n = read_retrying(file, &mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        total += n as u64;
    }
    Ok((total, hasher.finalize().into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The digest is of exactly the bytes copied, across chunk and buffer-reuse
    /// boundaries (more chunks than buffers in flight), written directly and buffered.
    #[test]
    fn copy_hashing_matches_content() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let lens = [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, (BUFFERS + 3) * CHUNK + 5];
        for (len, direct) in lens.into_iter().flat_map(|l| [(l, true), (l, false)]) {
            let data: Vec<u8> = (0..len).map(|i| (i * 7 % 251) as u8).collect();
            let src_path = dir.path().join("src");
            std::fs::write(&src_path, &data).expect("write source");
            let mut src = File::open(&src_path).expect("open source");
            let dst_path = dir.path().join("dst");
            let mut dst = File::create(&dst_path).expect("create destination");
            let (copied, digest) = copy_hashing_with(&mut src, &mut dst, direct)
                .unwrap_or_else(|e| panic!("copy of {len} bytes (direct: {direct}): {e:?}"));
            assert_eq!(copied, len as u64);
            assert_eq!(
                digest,
                <[u8; 32]>::from(Sha256::digest(&data)),
                "{len} bytes"
            );
            assert_eq!(std::fs::read(&dst_path).expect("read copy"), data);
            let mut copy = File::open(&dst_path).expect("open copy");
            assert_eq!(
                hash_file(&mut copy).expect("hash copy"),
                (len as u64, digest)
            );
        }
    }
}
