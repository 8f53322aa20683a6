//! Reading SIF images: the global header, the descriptor table and object data.
//!
//! Only the header and the descriptor table are read when an image is opened, and
//! every count, offset and size they contain is checked against the file before it
//! is used, so a corrupt or hostile file yields a [`SifError`], never a panic or a
//! huge allocation.

use std::collections::HashSet;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use crate::SifError;
use crate::format::{
    ARCH_LEN, Arch, DESCRIPTOR_LEN, DataType, EXTRA_LEN, Fields, HEADER_LEN, ID_LEN, ImageId,
    LAUNCH_SCRIPT_LEN, Link, MAGIC, MAGIC_LEN, Metadata, NAME_LEN, PartType, VERSION, VERSION_LEN,
    group_from_raw, trim_nul,
};

/// The most descriptors this reader accepts. The reference creates 48; the cap keeps
/// a corrupt count from making us read (and keep) a huge table.
pub const MAX_DESCRIPTORS: i64 = 65_536;

/// The global header, field by field as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub launch_script: [u8; LAUNCH_SCRIPT_LEN],
    pub magic: [u8; MAGIC_LEN],
    pub version: [u8; VERSION_LEN],
    /// Architecture of the primary partition ("00" when there is none).
    pub arch: Arch,
    pub id: ImageId,
    /// Unix seconds; [`crate::format::ZERO_TIME`] means "not set".
    pub created_at: i64,
    pub modified_at: i64,
    pub descriptors_free: i64,
    pub descriptors_total: i64,
    pub descriptors_offset: i64,
    pub descriptors_size: i64,
    pub data_offset: i64,
    pub data_size: i64,
}

impl Header {
    /// Decodes the 128 header bytes (no validation: see [`SifImage`]).
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Self {
        let mut f = Fields::new(bytes);
        Header {
            launch_script: f.array(),
            magic: f.array(),
            version: f.array(),
            arch: Arch::from_code(f.array::<ARCH_LEN>()),
            id: ImageId(f.array::<ID_LEN>()),
            created_at: f.i64(),
            modified_at: f.i64(),
            descriptors_free: f.i64(),
            descriptors_total: f.i64(),
            descriptors_offset: f.i64(),
            descriptors_size: f.i64(),
            data_offset: f.i64(),
            data_size: f.i64(),
        }
    }

    /// Encodes the header into its 128 bytes.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = Vec::with_capacity(HEADER_LEN);
        out.extend_from_slice(&self.launch_script);
        out.extend_from_slice(&self.magic);
        out.extend_from_slice(&self.version);
        out.extend_from_slice(&self.arch.code());
        out.extend_from_slice(&self.id.0);
        for value in [
            self.created_at,
            self.modified_at,
            self.descriptors_free,
            self.descriptors_total,
            self.descriptors_offset,
            self.descriptors_size,
            self.data_offset,
            self.data_size,
        ] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        let mut bytes = [0u8; HEADER_LEN];
        bytes.copy_from_slice(&out);
        bytes
    }

    /// The launch script without its NUL padding.
    pub fn launch_script_text(&self) -> String {
        trim_nul(&self.launch_script)
    }

    /// The version text ("01").
    pub fn version_text(&self) -> String {
        trim_nul(&self.version)
    }
}

/// One descriptor: where a data object lies and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub data_type: DataType,
    pub used: bool,
    pub id: u32,
    /// Group field as stored (group number | 0xf0000000); see [`Descriptor::group`].
    pub raw_group: u32,
    /// Link field as stored; see [`Descriptor::link`].
    pub raw_link: u32,
    pub offset: i64,
    pub size: i64,
    /// Size plus the alignment padding written before the object.
    pub size_with_padding: i64,
    pub created_at: i64,
    pub modified_at: i64,
    /// Deprecated in the reference; old images carry the builder's UID/GID.
    pub uid: i64,
    pub gid: i64,
    pub name: [u8; NAME_LEN],
    pub extra: [u8; EXTRA_LEN],
}

impl Descriptor {
    /// Decodes one 585-byte descriptor.
    pub fn decode(bytes: &[u8; DESCRIPTOR_LEN]) -> Self {
        let mut f = Fields::new(bytes);
        Descriptor {
            data_type: DataType::from_code(f.i32()),
            // Go decodes a bool as "byte != 0".
            used: f.u8() != 0,
            id: f.u32(),
            raw_group: f.u32(),
            raw_link: f.u32(),
            offset: f.i64(),
            size: f.i64(),
            size_with_padding: f.i64(),
            created_at: f.i64(),
            modified_at: f.i64(),
            uid: f.i64(),
            gid: f.i64(),
            name: f.array(),
            extra: f.array(),
        }
    }

    /// Encodes the descriptor into its 585 bytes.
    pub fn encode(&self) -> [u8; DESCRIPTOR_LEN] {
        let mut out = Vec::with_capacity(DESCRIPTOR_LEN);
        out.extend_from_slice(&self.data_type.code().to_le_bytes());
        out.push(u8::from(self.used));
        for value in [self.id, self.raw_group, self.raw_link] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        for value in [
            self.offset,
            self.size,
            self.size_with_padding,
            self.created_at,
            self.modified_at,
            self.uid,
            self.gid,
        ] {
            out.extend_from_slice(&value.to_le_bytes());
        }
        out.extend_from_slice(&self.name);
        out.extend_from_slice(&self.extra);
        let mut bytes = [0u8; DESCRIPTOR_LEN];
        bytes.copy_from_slice(&out);
        bytes
    }

    /// The object group, or None when the object belongs to no group.
    pub fn group(&self) -> Option<u32> {
        group_from_raw(self.raw_group)
    }

    /// What the object is linked to.
    pub fn link(&self) -> Link {
        Link::from_raw(self.raw_link)
    }

    /// The object name without NUL padding ("" when unnamed).
    pub fn name_text(&self) -> String {
        trim_nul(&self.name)
    }

    /// The type-specific facts (partition type, hash, digest, ...).
    pub fn metadata(&self) -> Metadata {
        Metadata::decode(self.data_type, &self.extra)
    }

    /// Whether this is the primary system partition (the root file system that runs).
    pub fn is_primary_partition(&self) -> bool {
        matches!(
            self.metadata(),
            Metadata::Partition {
                part_type: PartType::PrimarySystem,
                ..
            }
        )
    }
}

/// An opened SIF image: its header and the descriptors in use, validated.
#[derive(Debug)]
pub struct SifImage<R> {
    source: R,
    path: String,
    file_len: u64,
    header: Header,
    descriptors: Vec<Descriptor>,
}

impl SifImage<File> {
    /// Opens and validates the image at `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, SifError> {
        let path = path.as_ref();
        let label = path.display().to_string();
        let file = File::open(path).map_err(|e| SifError::io(&label, "open the image", e))?;
        Self::from_reader(file, label)
    }
}

impl<R: Read + Seek> SifImage<R> {
    /// Reads and validates an image from any seekable source; `path` names it in errors.
    pub fn from_reader(mut source: R, path: impl Into<String>) -> Result<Self, SifError> {
        let path = path.into();
        let file_len = source
            .seek(SeekFrom::End(0))
            .map_err(|e| SifError::io(&path, "find the image size", e))?;
        let header = read_header(&mut source, &path, file_len)?;
        check_header(&header, &path, file_len)?;
        let descriptors = read_descriptors(&mut source, &path, &header)?;
        check_descriptors(&descriptors, &header, &path, file_len)?;
        Ok(SifImage {
            source,
            path,
            file_len,
            header,
            descriptors,
        })
    }

    /// Reads the data of object `id`, refusing objects larger than `limit` bytes.
    pub fn read_object(&mut self, id: u32, limit: u64) -> Result<Vec<u8>, SifError> {
        let (offset, size) = self.object_span(id)?;
        if size > limit {
            return Err(SifError::ObjectTooLarge {
                path: self.path.clone(),
                id,
                size,
                limit,
            });
        }
        let mut data = Vec::new();
        self.seek_to(offset)?;
        let read = (&mut self.source)
            .take(size)
            .read_to_end(&mut data)
            .map_err(|e| SifError::io(&self.path, "read object data", e))?;
        if read as u64 != size {
            return Err(self.truncated_object(id, offset, size));
        }
        Ok(data)
    }

    /// A reader over the data of object `id` (for streaming large partitions).
    pub fn object_reader(&mut self, id: u32) -> Result<impl Read + '_, SifError> {
        let (offset, size) = self.object_span(id)?;
        self.seek_to(offset)?;
        Ok((&mut self.source).take(size))
    }

    fn object_span(&self, id: u32) -> Result<(u64, u64), SifError> {
        let d = self
            .descriptor(id)
            .ok_or_else(|| SifError::ObjectNotFound {
                path: self.path.clone(),
                id,
            })?;
        // Validated at open: both are non-negative.
        Ok((d.offset.unsigned_abs(), d.size.unsigned_abs()))
    }

    fn seek_to(&mut self, offset: u64) -> Result<(), SifError> {
        self.source
            .seek(SeekFrom::Start(offset))
            .map(|_| ())
            .map_err(|e| SifError::io(&self.path, "seek to object data", e))
    }

    fn truncated_object(&self, id: u32, offset: u64, size: u64) -> SifError {
        SifError::ObjectOutsideFile {
            path: self.path.clone(),
            id,
            start: offset as i64,
            end: i128::from(offset) + i128::from(size),
            file_len: self.file_len,
        }
    }
}

impl<R> SifImage<R> {
    /// The global header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// The descriptors in use, in table order (the order siftool lists them).
    pub fn descriptors(&self) -> &[Descriptor] {
        &self.descriptors
    }

    /// The descriptor of object `id`.
    pub fn descriptor(&self, id: u32) -> Option<&Descriptor> {
        self.descriptors.iter().find(|d| d.id == id)
    }

    /// The primary system partition, if the image has one.
    pub fn primary_partition(&self) -> Option<&Descriptor> {
        self.descriptors.iter().find(|d| d.is_primary_partition())
    }

    /// The name the image was opened under (used in error messages).
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Size of the whole file in bytes.
    pub fn file_len(&self) -> u64 {
        self.file_len
    }

    /// Gives back the underlying reader.
    pub fn into_inner(self) -> R {
        self.source
    }
}

/// Reads the 128-byte header and checks the magic and version.
fn read_header<R: Read + Seek>(
    source: &mut R,
    path: &str,
    file_len: u64,
) -> Result<Header, SifError> {
    if file_len < HEADER_LEN as u64 {
        return Err(SifError::TooShort {
            path: path.to_owned(),
            len: file_len,
        });
    }
    let mut bytes = [0u8; HEADER_LEN];
    source
        .seek(SeekFrom::Start(0))
        .and_then(|_| source.read_exact(&mut bytes))
        .map_err(|e| SifError::io(path, "read the SIF header", e))?;
    let header = Header::decode(&bytes);
    if header.magic != MAGIC {
        return Err(SifError::BadMagic {
            path: path.to_owned(),
            found: quote_bytes(&header.magic),
        });
    }
    if header.version != VERSION {
        return Err(SifError::UnsupportedVersion {
            path: path.to_owned(),
            found: quote_bytes(&header.version),
        });
    }
    Ok(header)
}

/// Checks the header's counts and sections against each other and the file size.
fn check_header(h: &Header, path: &str, file_len: u64) -> Result<(), SifError> {
    let fields = [
        ("descriptors free", h.descriptors_free),
        ("descriptors total", h.descriptors_total),
        ("descriptors offset", h.descriptors_offset),
        ("descriptors size", h.descriptors_size),
        ("data offset", h.data_offset),
        ("data size", h.data_size),
    ];
    if let Some((field, value)) = fields.into_iter().find(|(_, v)| *v < 0) {
        return Err(SifError::NegativeHeaderField {
            path: path.to_owned(),
            field,
            value,
        });
    }
    if h.descriptors_free > h.descriptors_total {
        return Err(SifError::FreeExceedsTotal {
            path: path.to_owned(),
            free: h.descriptors_free,
            total: h.descriptors_total,
        });
    }
    if h.descriptors_total > MAX_DESCRIPTORS {
        return Err(SifError::TooManyDescriptors {
            path: path.to_owned(),
            total: h.descriptors_total,
            max: MAX_DESCRIPTORS,
        });
    }
    // Cannot overflow: total <= MAX_DESCRIPTORS.
    let needed = h.descriptors_total * DESCRIPTOR_LEN as i64;
    if needed > h.descriptors_size {
        return Err(SifError::DescriptorSectionTooSmall {
            path: path.to_owned(),
            total: h.descriptors_total,
            needed,
            size: h.descriptors_size,
        });
    }
    if needed > 0 && h.descriptors_offset < HEADER_LEN as i64 {
        return Err(SifError::DescriptorTableOverlapsHeader {
            path: path.to_owned(),
            offset: h.descriptors_offset,
        });
    }
    let sections = [
        (
            "descriptor section",
            h.descriptors_offset,
            h.descriptors_size,
        ),
        ("data section", h.data_offset, h.data_size),
    ];
    for (what, start, size) in sections {
        let end = i128::from(start) + i128::from(size);
        if end > i128::from(file_len) {
            return Err(SifError::SectionOutsideFile {
                path: path.to_owned(),
                what,
                start,
                end,
                file_len,
            });
        }
    }
    Ok(())
}

/// Reads the descriptor table (already checked to lie inside the file) and keeps
/// the descriptors in use.
fn read_descriptors<R: Read + Seek>(
    source: &mut R,
    path: &str,
    h: &Header,
) -> Result<Vec<Descriptor>, SifError> {
    let read_err = |e| SifError::io(path, "read the descriptor table", e);
    source
        .seek(SeekFrom::Start(h.descriptors_offset.unsigned_abs()))
        .map_err(read_err)?;
    let mut reader = std::io::BufReader::new(source);
    let mut used = Vec::new();
    let mut bytes = [0u8; DESCRIPTOR_LEN];
    for _ in 0..h.descriptors_total {
        reader.read_exact(&mut bytes).map_err(read_err)?;
        let descriptor = Descriptor::decode(&bytes);
        if descriptor.used {
            used.push(descriptor);
        }
    }
    Ok(used)
}

/// Checks the descriptors in use: count, unique IDs, data inside the file and
/// inside the data section.
fn check_descriptors(
    descriptors: &[Descriptor],
    h: &Header,
    path: &str,
    file_len: u64,
) -> Result<(), SifError> {
    let declared = h.descriptors_total - h.descriptors_free;
    let used = descriptors.len() as i64;
    if used != declared {
        return Err(SifError::UsedCountMismatch {
            path: path.to_owned(),
            declared,
            used,
        });
    }
    let mut ids = HashSet::new();
    for (slot, d) in descriptors.iter().enumerate() {
        if d.id == 0 {
            return Err(SifError::ZeroObjectId {
                path: path.to_owned(),
                slot,
            });
        }
        if !ids.insert(d.id) {
            return Err(SifError::DuplicateObjectId {
                path: path.to_owned(),
                id: d.id,
            });
        }
        check_object_span(d, h, path, file_len)?;
    }
    Ok(())
}

fn check_object_span(
    d: &Descriptor,
    h: &Header,
    path: &str,
    file_len: u64,
) -> Result<(), SifError> {
    for (field, value) in [("offset", d.offset), ("size", d.size)] {
        if value < 0 {
            return Err(SifError::NegativeObjectField {
                path: path.to_owned(),
                id: d.id,
                field,
                value,
            });
        }
    }
    let end = i128::from(d.offset) + i128::from(d.size);
    if end > i128::from(file_len) {
        return Err(SifError::ObjectOutsideFile {
            path: path.to_owned(),
            id: d.id,
            start: d.offset,
            end,
            file_len,
        });
    }
    // Both ends fit in the file, so these sums cannot overflow.
    let (end, data_end) = (d.offset + d.size, h.data_offset + h.data_size);
    if d.offset < h.data_offset || end > data_end {
        return Err(SifError::ObjectOutsideDataSection {
            path: path.to_owned(),
            id: d.id,
            start: d.offset,
            end,
            data_start: h.data_offset,
            data_end,
        });
    }
    Ok(())
}

/// Shows raw header bytes in a message: printable ASCII as is, the rest escaped.
fn quote_bytes(bytes: &[u8]) -> String {
    let text: String = bytes
        .iter()
        .flat_map(|&b| std::ascii::escape_default(b))
        .map(char::from)
        .collect();
    format!("\"{text}\"")
}
