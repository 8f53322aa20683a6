//! Singularity Image Format (SIF): read, inspect and write the images that
//! Singularity and Apptainer run.
//!
//! A SIF file is a 128-byte global header, a table of fixed-size descriptors (one
//! per data object: definition file, JSON metadata, file system partitions,
//! signatures, OCI blobs, ...) and the objects' data. The layout and every code
//! follow the reference implementation, `github.com/sylabs/sif/v2` (see
//! [`format`](mod@format)).
//!
//! - [`reader::SifImage`] reads only the header and the descriptor table, with
//!   every offset and count checked against the file, so inspecting a multi-GiB
//!   image costs two small reads; object data is read on request.
//! - [`writer::SifBuilder`] writes a new image (for example a SquashFS root file
//!   system as the primary partition) atomically.
//! - [`display`] prints the facts the way `siftool header`, `list` and `info` do,
//!   and as JSON.
//!
//! A crate of its own (no MPI, no launcher code) so that `hybrun image`, the image
//! store and the fuzz target (`sif/fuzz`, cargo-fuzz on nightly) share one parser,
//! and a fuzz build compiles nothing else. Tests: `sif/tests/` (conformance with the
//! reference corpus, round trips, typed errors, a mutation test on stable Rust).

pub mod display;
pub mod format;
pub mod reader;
pub mod writer;

pub use format::{
    Arch, DataType, FormatType, FsType, HashType, ImageId, Link, MessageType, Metadata, PartType,
    SbomFormat,
};
pub use reader::{Descriptor, Header, SifImage};
pub use writer::{ObjectInput, SifBuilder};

use std::io;

/// Everything that can go wrong reading or writing a SIF image.
///
/// Each message starts with the file it is about and, where there is one, says
/// what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum SifError {
    #[error("{path}: cannot {action}: {source}")]
    Io {
        path: String,
        action: &'static str,
        #[source]
        source: io::Error,
    },

    #[error(
        "{path}: not a SIF file (it is {len} bytes, shorter than the {} byte SIF header); \
         hybrun reads Singularity/Apptainer SIF images",
        format::HEADER_LEN
    )]
    TooShort { path: String, len: u64 },

    #[error(
        "{path}: not a SIF file (magic is {found}, expected \"SIF_MAGIC\"); \
         hybrun reads Singularity/Apptainer SIF images"
    )]
    BadMagic { path: String, found: String },

    #[error(
        "{path}: unsupported SIF version {found} (hybrun reads version \"01\", the only one \
         Singularity/Apptainer write)"
    )]
    UnsupportedVersion { path: String, found: String },

    #[error("{path}: corrupt SIF header: {field} is negative ({value})")]
    NegativeHeaderField {
        path: String,
        field: &'static str,
        value: i64,
    },

    #[error(
        "{path}: corrupt SIF header: {free} free descriptors but only {total} in total \
         (more descriptors used than exist)"
    )]
    FreeExceedsTotal { path: String, free: i64, total: i64 },

    #[error(
        "{path}: corrupt SIF header: {total} descriptors declared; hybrun accepts at most \
         {max} (images from Singularity/Apptainer have 48)"
    )]
    TooManyDescriptors { path: String, total: i64, max: i64 },

    #[error(
        "{path}: corrupt SIF header: {total} descriptors need {needed} bytes but the \
         descriptor section is {size} bytes"
    )]
    DescriptorSectionTooSmall {
        path: String,
        total: i64,
        needed: i64,
        size: i64,
    },

    #[error(
        "{path}: corrupt SIF header: the descriptor table at offset {offset} overlaps \
         the {} byte global header",
        format::HEADER_LEN
    )]
    DescriptorTableOverlapsHeader { path: String, offset: i64 },

    #[error(
        "{path}: truncated or corrupt SIF: the {what} (bytes {start}..{end}) lies outside \
         the {file_len} byte file; if the image was downloaded or copied, do it again"
    )]
    SectionOutsideFile {
        path: String,
        what: &'static str,
        start: i64,
        end: i128,
        file_len: u64,
    },

    #[error(
        "{path}: inconsistent SIF: the header says {declared} objects (total - free \
         descriptors) but {used} descriptors are in use"
    )]
    UsedCountMismatch {
        path: String,
        declared: i64,
        used: i64,
    },

    #[error("{path}: corrupt SIF: descriptor {slot} is in use but has object ID 0")]
    ZeroObjectId { path: String, slot: usize },

    #[error("{path}: corrupt SIF: two descriptors in use have object ID {id}")]
    DuplicateObjectId { path: String, id: u32 },

    #[error("{path}: corrupt SIF: object {id} has a negative {field} ({value})")]
    NegativeObjectField {
        path: String,
        id: u32,
        field: &'static str,
        value: i64,
    },

    #[error(
        "{path}: truncated or corrupt SIF: object {id} (bytes {start}..{end}) lies outside \
         the {file_len} byte file; if the image was downloaded or copied, do it again"
    )]
    ObjectOutsideFile {
        path: String,
        id: u32,
        start: i64,
        end: i128,
        file_len: u64,
    },

    #[error(
        "{path}: inconsistent SIF: object {id} (bytes {start}..{end}) lies outside the \
         data section (bytes {data_start}..{data_end}) the header declares"
    )]
    ObjectOutsideDataSection {
        path: String,
        id: u32,
        start: i64,
        end: i64,
        data_start: i64,
        data_end: i64,
    },

    #[error("{path}: no object with ID {id}; `hybrun image inspect {path}` lists the objects")]
    ObjectNotFound { path: String, id: u32 },

    #[error("{path}: object {id} is {size} bytes, more than the {limit} bytes asked for")]
    ObjectTooLarge {
        path: String,
        id: u32,
        size: u64,
        limit: u64,
    },

    #[error(
        "{path}: {count} objects do not fit in {capacity} descriptors; raise the \
         descriptor capacity"
    )]
    TooManyObjects {
        path: String,
        count: usize,
        capacity: usize,
    },

    #[error("{path}: {what} is invalid: {why}")]
    InvalidInput {
        path: String,
        what: String,
        why: String,
    },
}

impl SifError {
    /// An I/O error on `path` while doing `action` ("read the header", ...).
    pub(crate) fn io(path: &str, action: &'static str, source: io::Error) -> Self {
        SifError::Io {
            path: path.to_owned(),
            action,
            source,
        }
    }

    /// A builder input that cannot be written.
    pub(crate) fn invalid(path: &str, what: impl Into<String>, why: impl Into<String>) -> Self {
        SifError::InvalidInput {
            path: path.to_owned(),
            what: what.into(),
            why: why.into(),
        }
    }
}
