//! What is inside a container image, and whether it can run on this host.
//!
//! ELF files are read by [`crate::elf`], for images and host libraries alike.
//!
//! - [`contents`]: one view of SIF, SquashFS and directory images: the file list,
//!   symlinks resolved inside the image, single files read on demand. SquashFS is read
//!   in place (at the SIF partition's offset for SIF) without mounting or extracting.
//! - `squashfs`: the SquashFS reader behind [`contents`], bounded in memory and time
//!   by construction (hostile images get an error).
//! - [`detect`]: MPI, PMI, fabric, glibc, CUDA runtime and OS of an image.
//! - [`env`](mod@env): the `LD_LIBRARY_PATH` an image's Singularity/Apptainer environment
//!   scripts set (bind mode keeps it behind the host MPI directory).
//! - [`abi`]: the MPI ABI rules (MPICH ABI, Open MPI, MPI 5 standard ABI; Sarus's
//!   major/full/strict modes).
//! - [`check`]: a verdict per launch mode (native, hybrid, inside, bind) from the
//!   image's contents and this host's facts (probed by [`crate::host`]).
//! - [`cli`]: `hybrun image wrap`, `inspect --contents` and `check`.

pub mod abi;
pub mod check;
pub mod contents;
pub mod detect;
pub mod env;
mod squashfs;

use std::io;

use hybrun_sif::SifError;

/// Everything that can go wrong reading an image's contents. Each message names the
/// image (and the file inside it) and, where there is one, the fix.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{path}: cannot {action}: {source}")]
    Io {
        path: String,
        action: &'static str,
        #[source]
        source: io::Error,
    },

    #[error(transparent)]
    Sif(#[from] SifError),

    #[error(
        "{path}: it is a {kind}, not a file or a directory; give a .sif, a .sqfs or an \
         unpacked image directory"
    )]
    NotFileOrDirectory { path: String, kind: &'static str },

    #[error(
        "{path}: not a container image hybrun can read (not a SIF file, not a SquashFS file, \
         not a directory); give a .sif, a .sqfs or an unpacked image directory"
    )]
    UnknownKind { path: String },

    #[error(
        "{path}: the SIF image has no primary system partition (no root file system to look \
         into); `hybrun image inspect {path}` lists its objects"
    )]
    NoPrimaryPartition { path: String },

    #[error(
        "{path}: the primary partition is {fs}, not SquashFS; hybrun reads SquashFS root file \
         systems only (rebuild the image with Singularity/Apptainer's default SquashFS)"
    )]
    NotSquashfsPartition { path: String, fs: String },

    #[error(
        "{path}: truncated or corrupt SquashFS{at}: {why}; if the image was downloaded or \
         copied, do it again (`unsquashfs -s` shows what the superblock says)"
    )]
    CorruptSquashfs {
        path: String,
        at: String,
        why: String,
    },

    #[error(
        "{path}: SquashFS{at} refused: {why}; hybrun bounds the memory and time it spends on \
         an image, and this one goes past them (a hostile or damaged image?)"
    )]
    SquashfsLimit {
        path: String,
        at: String,
        why: String,
    },

    #[error(
        "{path}: SquashFS compressed with {compression}, which hybrun cannot read; rebuild it \
         with `mksquashfs ... -comp gzip` (or xz, zstd, lz4)"
    )]
    UnsupportedCompression { path: String, compression: String },

    #[error("{image}: {file} does not exist in the image")]
    NotFound { image: String, file: String },

    #[error("{image}: {file} is a {kind}, not a regular file")]
    NotAFile {
        image: String,
        file: String,
        kind: &'static str,
    },

    #[error("{image}: too many levels of symbolic links resolving {file} (a loop in the image?)")]
    SymlinkLoop { image: String, file: String },

    #[error(
        "{image}: {file} is {size} bytes, more than the {limit} bytes hybrun reads for this \
         purpose"
    )]
    TooLarge {
        image: String,
        file: String,
        size: u64,
        limit: u64,
    },

    #[error("{image}: cannot read {file}: {why}")]
    ReadFile {
        image: String,
        file: String,
        why: String,
    },

    #[error(
        "{path}: the directory tree has more than {limit} entries; is this really an image \
         root?"
    )]
    TooManyEntries { path: String, limit: usize },
}
