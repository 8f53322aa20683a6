//! A SquashFS 4.0 reader whose time and memory are bounded by construction, for
//! images that may be hostile: what `hybrun image inspect --contents`, `image
//! check` and the launch gate need (the file list, symbolic links, the data of a
//! few small files), read in place (at the SIF partition's offset for SIF) without
//! mounting or extracting anything.
//!
//! # Why not a general SquashFS crate
//!
//! `backhand`, used before, reads the whole inode, directory and fragment tables
//! into memory at open, decompresses each metadata block without an output cap and
//! builds the tree recursively: a 650 KB image of compressed zeros grew hybrun to
//! hundreds of MB, a 10 MB one to several GB, and a directory entry pointing back
//! up the tree overflowed the stack. Its API offers no way to bound any of that.
//! This reader is small (it needs no writing, xattrs or export lookups), reads
//! tables lazily through a bounded cache, and states every bound below.
//!
//! # Bounds
//!
//! - **Per block**: a metadata block is decompressed into a buffer of 8 KiB + 1
//!   byte, a data or fragment block into one of the superblock's block size (at
//!   most 1 MiB) + 1 byte; output that reaches the extra byte is refused as too
//!   large, and a decompressor never writes past its buffer ([`compress`]). The
//!   compressed size is checked first (at most 8 KiB, resp. the block size). The
//!   xz decoder runs under a 16 MiB memory limit (its dictionary); zstd
//!   decompresses in one pass into the buffer (no window allocation); zlib and
//!   lz4 keep a fixed-size state.
//! - **Tables** ([`superblock`]): checked like the Linux kernel checks them at
//!   mount (fs/squashfs/super.c, id.c, export.c, fragment.c): the ID, export and
//!   fragment lookup tables must fit, for the superblock's ID, inode and fragment
//!   counts, between their start and the next table; their block positions must
//!   increase by at most one metadata block each and end before the lookup table;
//!   the directory table must end before the first of them and start after the
//!   inode table. Every read is checked against the bytes used (and the file).
//!   Tables are never read whole: a metadata block is read when the walk needs it.
//! - **Metadata work**: at most [`Limits::metadata`] bytes (256 MiB) are
//!   decompressed from the metadata tables per image, through a cache of at most
//!   [`CACHE_BLOCKS`] blocks (8 MiB).
//! - **The walk** ([`walk`]): iterative (no recursion), every directory inode is
//!   entered once (by reference, by inode number and by listing position: a cycle
//!   of any length, or a directory listed twice, is an error), at most
//!   [`Limits::max_depth`] levels (256), [`Limits::max_entries`] entries and
//!   [`Limits::memory`] bytes of file index (128 MiB, counted per entry as its path
//!   and link target plus a fixed overhead). Names are at most 256 bytes (the
//!   kernel's limit) and never empty, `.`, `..` or containing `/` or NUL; symbolic
//!   link targets at most 4096 bytes.
//! - **File data** ([`file`]): a file's block list is read when the file is opened,
//!   at most [`MAX_FILE_BLOCKS`] blocks (12 MiB of list); its blocks must lie inside
//!   the bytes used, and each decompresses to exactly the size the file needs.
//!
//! So opening an image holds at most: the file index (128 MiB), the metadata cache
//! (8 MiB), the last fragment block (1 MiB), one decompression buffer and decoder
//! state (about 17 MiB for xz, less for the others), and nothing that grows with
//! the tables' claimed sizes. An open file adds its block list (at most 12 MiB)
//! and its last block (1 MiB).
//! The work is at most 256 MiB of metadata decompression plus reading each byte
//! of the lookup tables once.

pub(crate) mod compress;
pub(crate) mod file;
pub(crate) mod inode;
pub(crate) mod metadata;
pub(crate) mod source;
pub(crate) mod superblock;
pub(crate) mod walk;

use std::fmt;
use std::io;
use std::sync::Mutex;

use compress::Decompressor;
use metadata::Cache;
use source::Source;
use superblock::Superblock;

pub use walk::NodeKind;

/// Metadata blocks kept decompressed (8 KiB each).
pub const CACHE_BLOCKS: usize = 1024;

/// The most data blocks of one file that hybrun reads the block list of (4 GiB
/// of file at 4 KiB blocks, 128 GiB at mksquashfs's default 128 KiB).
pub const MAX_FILE_BLOCKS: u64 = 1 << 20;

/// Where a SquashFS file system lies and how it is compressed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SquashfsInfo {
    /// Byte offset of the SquashFS in the file (the SIF partition's offset).
    pub offset: u64,
    /// Bytes the SquashFS uses (from its superblock).
    pub bytes_used: u64,
    pub compression: String,
    pub block_size: u32,
    pub inodes: u32,
}

/// How far a walk may go (see the module documentation).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Entries in the file index (the root included).
    pub max_entries: usize,
    /// Directory levels below the root.
    pub max_depth: usize,
    /// Bytes of file index (paths, link targets and per-entry overhead).
    pub memory: usize,
    /// Bytes decompressed from metadata blocks while opening.
    pub metadata: u64,
}

impl Limits {
    /// The limits hybrun opens images with; `max_entries` is the caller's.
    pub const fn new(max_entries: usize) -> Limits {
        Limits {
            max_entries,
            max_depth: 256,
            memory: 128 << 20,
            metadata: 256 << 20,
        }
    }
}

/// Why a SquashFS could not be read.
#[derive(Debug)]
pub enum SqError {
    /// The bytes contradict the format or each other.
    Corrupt(String),
    /// Within the format, but beyond what hybrun reads (hostile or absurd).
    Limit(String),
    /// Compressed with a method hybrun does not read (its name).
    Unsupported(String),
    /// The image file could not be read.
    Io(io::Error),
}

impl SqError {
    /// The same error, its text prefixed with what was being read.
    pub fn within(self, what: impl fmt::Display) -> SqError {
        match self {
            SqError::Corrupt(why) => SqError::Corrupt(format!("{what}: {why}")),
            SqError::Limit(why) => SqError::Limit(format!("{what}: {why}")),
            other => other,
        }
    }
}

pub(crate) fn corrupt<T>(why: impl Into<String>) -> Result<T, SqError> {
    Err(SqError::Corrupt(why.into()))
}

/// What the reader keeps between reads: the decompressor, the metadata cache and
/// the last fragment block (position and data, at most a block).
pub(crate) struct State {
    pub decompressor: Decompressor,
    pub cache: Cache,
    pub fragment: Option<(u64, std::sync::Arc<[u8]>)>,
}

/// An opened SquashFS: its superblock and the means to read its tables and files.
pub struct Squashfs {
    source: Source,
    sb: Superblock,
    info: SquashfsInfo,
    limits: Limits,
    state: Mutex<State>,
}

impl fmt::Debug for Squashfs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Squashfs")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

impl Squashfs {
    /// Opens the SquashFS at `offset` of `source`, which has `space` bytes from
    /// there on for it: the superblock and the lookup tables are checked; nothing
    /// else is read yet.
    pub fn open(mut source: Source, limits: Limits) -> Result<Squashfs, SqError> {
        let mut sb = Superblock::read(&source)?;
        source.narrow(sb.bytes_used);
        sb.check_tables(&source)?;
        let info = SquashfsInfo {
            offset: source.base(),
            bytes_used: sb.bytes_used,
            compression: sb.compression.name().to_owned(),
            block_size: sb.block_size,
            inodes: sb.inode_count,
        };
        let state = State {
            decompressor: Decompressor::new(sb.compression),
            cache: Cache::new(limits.metadata),
            fragment: None,
        };
        Ok(Squashfs {
            source,
            sb,
            info,
            limits,
            state: Mutex::new(state),
        })
    }

    pub fn info(&self) -> &SquashfsInfo {
        &self.info
    }

    /// The reader's state; a panic elsewhere while it was held leaves nothing
    /// half-done that matters (a cache entry at worst), so a poisoned lock is taken.
    pub(crate) fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::sync::atomic::AtomicU64;

    /// A SquashFS made by mksquashfs from what `fill` writes; None without it.
    fn mksquashfs(fill: impl FnOnce(&Path)) -> Option<(tempfile::TempDir, PathBuf)> {
        let tmp = tempfile::tempdir().ok()?;
        let root = tmp.path().join("root");
        std::fs::create_dir(&root).ok()?;
        fill(&root);
        let out = tmp.path().join("t.sqfs");
        let ok = std::process::Command::new("mksquashfs")
            .arg(&root)
            .arg(&out)
            .args(["-noappend", "-quiet", "-no-progress", "-comp", "gzip"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            eprintln!("SKIPPED: mksquashfs not available");
            return None;
        }
        Some((tmp, out))
    }

    fn walk(path: &Path, limits: Limits) -> Result<usize, SqError> {
        let file = std::fs::File::open(path).unwrap();
        let len = file.metadata().unwrap().len();
        let source = Source::new(Box::new(file), 0, len, Arc::new(AtomicU64::new(0)));
        let fs = Squashfs::open(source, limits)?;
        let mut n = 0;
        fs.walk(&mut |_, _| {
            n += 1;
            Ok(())
        })?;
        Ok(n)
    }

    fn limit_text(r: Result<usize, SqError>) -> String {
        match r {
            Err(SqError::Limit(why)) => why,
            other => panic!("expected a limit, got {other:?}"),
        }
    }

    #[test]
    fn each_limit_stops_the_walk() {
        let Some((_tmp, image)) = mksquashfs(|root| {
            let mut deep = root.to_path_buf();
            for i in 0..8 {
                deep.push(format!("d{i}"));
            }
            std::fs::create_dir_all(&deep).unwrap();
            for i in 0..3000 {
                std::fs::write(root.join(format!("file-{i:05}")), []).unwrap();
            }
        }) else {
            return;
        };
        let full = Limits::new(1_000_000);
        assert_eq!(walk(&image, full).unwrap(), 1 + 8 + 3000);
        let text = limit_text(walk(
            &image,
            Limits {
                max_entries: 100,
                ..full
            },
        ));
        assert!(text.contains("more than 100 entries"), "{text}");
        let text = limit_text(walk(
            &image,
            Limits {
                memory: 16 << 10,
                ..full
            },
        ));
        assert!(text.contains("file index would take more than"), "{text}");
        let text = limit_text(walk(
            &image,
            Limits {
                max_depth: 5,
                ..full
            },
        ));
        assert!(text.contains("more than 5 levels deep"), "{text}");
        let text = limit_text(walk(
            &image,
            Limits {
                metadata: 8 << 10,
                ..full
            },
        ));
        assert!(text.contains("metadata decompression"), "{text}");
    }
}
