//! Writing SIF images the way the reference implementation does.
//!
//! The layout matches `sif.CreateContainer`: the global header, then (at 4096) a
//! descriptor table with room for 48 descriptors, then the objects in the order
//! they were added, each at the next offset that satisfies its alignment
//! (partitions: 4096 bytes, so that they can be mounted straight from the file).
//! The header's architecture is the primary partition's, as Singularity and
//! Apptainer expect.
//!
//! ```no_run
//! use hybrun_sif::{Arch, SifBuilder, ObjectInput};
//! # fn main() -> Result<(), hybrun_sif::SifError> {
//! SifBuilder::new(Arch::Amd64)
//!     .add_object(ObjectInput::deffile("Bootstrap: docker\nFrom: alpine\n"))
//!     .add_primary_squashfs("rootfs.squashfs")
//!     .write_to("image.sif")?;
//! # Ok(())
//! # }
//! ```
//!
//! The image is written to a temporary file next to the destination and renamed
//! into place, so a reader never sees a half-written image.

use std::collections::HashSet;
use std::fs::File;
use std::io::{self, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::SifError;
use crate::format::{
    Arch, DEFAULT_DESCRIPTOR_CAPACITY, DEFAULT_DESCRIPTORS_OFFSET, DEFAULT_GROUP,
    DEFAULT_LAUNCH_SCRIPT, DESCRIPTOR_LEN, DataType, EXTRA_LEN, FsType, GROUP_MASK, ImageId,
    LAUNCH_SCRIPT_LEN, Link, MAGIC, Metadata, NAME_LEN, PARTITION_ALIGNMENT, PartType, VERSION,
    ZERO_TIME, group_to_raw,
};
use crate::reader::{Descriptor, Header, MAX_DESCRIPTORS};

/// Where an object's data comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectSource {
    Bytes(Vec<u8>),
    /// Copied from this file when the image is written (a root file system can be
    /// large: it is streamed, never held in memory).
    File(PathBuf),
}

/// One data object to write, with its descriptor fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInput {
    data_type: DataType,
    source: ObjectSource,
    group: Option<u32>,
    link: Link,
    alignment: u64,
    name: String,
    metadata: Metadata,
    time: Option<i64>,
}

impl ObjectInput {
    /// An object of `data_type`, in group 1, unlinked, unnamed; partitions are
    /// aligned to 4096 bytes and other objects not at all (the reference defaults).
    pub fn new(data_type: DataType, source: ObjectSource) -> Self {
        ObjectInput {
            data_type,
            source,
            group: Some(DEFAULT_GROUP),
            link: Link::None,
            alignment: if data_type == DataType::Partition {
                PARTITION_ALIGNMENT
            } else {
                0
            },
            name: String::new(),
            metadata: Metadata::None,
            time: None,
        }
    }

    /// An object whose data is `bytes`.
    pub fn from_bytes(data_type: DataType, bytes: impl Into<Vec<u8>>) -> Self {
        Self::new(data_type, ObjectSource::Bytes(bytes.into()))
    }

    /// An object whose data is copied from the file at `path`.
    pub fn from_file(data_type: DataType, path: impl Into<PathBuf>) -> Self {
        Self::new(data_type, ObjectSource::File(path.into()))
    }

    /// A file system partition.
    pub fn partition(
        source: ObjectSource,
        fs_type: FsType,
        part_type: PartType,
        arch: Arch,
    ) -> Self {
        Self::new(DataType::Partition, source).metadata(Metadata::Partition {
            fs_type,
            part_type,
            arch,
        })
    }

    /// The definition file the image was built from.
    pub fn deffile(text: impl Into<String>) -> Self {
        Self::from_bytes(DataType::Deffile, text.into().into_bytes())
    }

    /// JSON labels.
    pub fn labels(json: impl Into<Vec<u8>>) -> Self {
        Self::from_bytes(DataType::Labels, json)
    }

    /// Generic JSON metadata, with a name (Singularity names them, e.g. "labels.json").
    pub fn generic_json(name: impl Into<String>, json: impl Into<Vec<u8>>) -> Self {
        Self::from_bytes(DataType::GenericJson, json).name(name)
    }

    /// Puts the object in group `group` (1 and up).
    pub fn group(mut self, group: u32) -> Self {
        self.group = Some(group);
        self
    }

    /// Puts the object in no group (as the reference does for signatures).
    pub fn no_group(mut self) -> Self {
        self.group = None;
        self
    }

    /// Links the object to another object or to a group.
    pub fn link(mut self, link: Link) -> Self {
        self.link = link;
        self
    }

    /// Aligns the object's data to `alignment` bytes (a power of two; 0: none).
    pub fn alignment(mut self, alignment: u64) -> Self {
        self.alignment = alignment;
        self
    }

    /// Names the object (at most 128 bytes).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the type-specific facts (partition type, hash, digest, ...).
    pub fn metadata(mut self, metadata: Metadata) -> Self {
        self.metadata = metadata;
        self
    }

    /// Sets the object's creation/modification time (default: the image's).
    pub fn time(mut self, unix_seconds: i64) -> Self {
        self.time = Some(unix_seconds);
        self
    }

    fn is_primary_partition(&self) -> bool {
        matches!(
            self.metadata,
            Metadata::Partition {
                part_type: PartType::PrimarySystem,
                ..
            }
        )
    }
}

/// Builds a new SIF image.
#[derive(Debug, Clone)]
pub struct SifBuilder {
    arch: Arch,
    launch_script: String,
    id: Option<ImageId>,
    time: Option<i64>,
    capacity: usize,
    objects: Vec<ObjectInput>,
}

impl SifBuilder {
    /// A builder for an image for `arch` (used by [`SifBuilder::add_primary_squashfs`];
    /// the header records the primary partition's architecture, as the reference does).
    ///
    /// Defaults: the `#!/usr/bin/env run-singularity` launch script, a random ID, the
    /// current time, 48 descriptors.
    pub fn new(arch: Arch) -> Self {
        SifBuilder {
            arch,
            launch_script: DEFAULT_LAUNCH_SCRIPT.to_owned(),
            id: None,
            time: None,
            capacity: DEFAULT_DESCRIPTOR_CAPACITY,
            objects: Vec::new(),
        }
    }

    /// Sets the launch script (at most 31 bytes; "" for none).
    pub fn launch_script(mut self, script: impl Into<String>) -> Self {
        self.launch_script = script.into();
        self
    }

    /// Sets the image ID (default: random).
    pub fn id(mut self, id: ImageId) -> Self {
        self.id = Some(id);
        self
    }

    /// Sets the image (and default object) time in Unix seconds (default: now).
    pub fn time(mut self, unix_seconds: i64) -> Self {
        self.time = Some(unix_seconds);
        self
    }

    /// Nil ID and unset times, like the reference's `OptCreateDeterministic`: the
    /// same inputs then give the same bytes.
    pub fn deterministic(self) -> Self {
        self.id(ImageId::NIL).time(ZERO_TIME)
    }

    /// Sets how many descriptors the table has room for (default 48).
    pub fn descriptor_capacity(mut self, capacity: usize) -> Self {
        self.capacity = capacity;
        self
    }

    /// Adds a data object; objects get IDs 1, 2, ... in the order they are added.
    pub fn add_object(mut self, object: ObjectInput) -> Self {
        self.objects.push(object);
        self
    }

    /// Adds the SquashFS file at `path` as the primary system partition (the root
    /// file system Singularity/Apptainer run), for the builder's architecture.
    pub fn add_primary_squashfs(self, path: impl Into<PathBuf>) -> Self {
        let arch = self.arch;
        self.add_object(ObjectInput::partition(
            ObjectSource::File(path.into()),
            FsType::Squashfs,
            PartType::PrimarySystem,
            arch,
        ))
    }

    /// Writes the image to `path` atomically (temporary file + rename) and returns
    /// the header written.
    pub fn write_to(&self, path: impl AsRef<Path>) -> Result<Header, SifError> {
        let path = path.as_ref();
        let label = path.display().to_string();
        self.validate(&label)?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let file_name = path
            .file_name()
            .ok_or_else(|| SifError::invalid(&label, "output path", "it names no file"))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{}.", file_name.to_string_lossy()))
            .suffix(".tmp")
            .tempfile_in(dir)
            .map_err(|e| SifError::io(&label, "create a temporary file next to the image", e))?;
        let header = self.write_image(tmp.as_file_mut(), &label)?;
        let file = tmp.as_file();
        make_executable(file).map_err(|e| SifError::io(&label, "set the image permissions", e))?;
        file.sync_all()
            .map_err(|e| SifError::io(&label, "flush the image to disk", e))?;
        tmp.persist(path)
            .map_err(|e| SifError::io(&label, "rename the new image into place", e.error))?;
        Ok(header)
    }

    /// Writes the whole image into `out` (which must be empty) and returns its header.
    pub fn write_image<W: Write + Seek>(
        &self,
        out: &mut W,
        label: &str,
    ) -> Result<Header, SifError> {
        self.validate(label)?;
        let id = match self.id {
            Some(id) => id,
            None => ImageId::random().map_err(|e| {
                SifError::invalid(label, "image ID", format!("no randomness to make one: {e}"))
            })?,
        };
        let time = self.time.unwrap_or_else(now);
        let descriptors_size = self.capacity * DESCRIPTOR_LEN;
        let data_offset = DEFAULT_DESCRIPTORS_OFFSET + descriptors_size as u64;

        let mut descriptors = Vec::with_capacity(self.objects.len());
        let mut data_end = data_offset;
        for (index, object) in self.objects.iter().enumerate() {
            let descriptor = write_object(out, label, index, object, data_end, time)?;
            data_end = (descriptor.offset + descriptor.size) as u64;
            descriptors.push(descriptor);
        }

        let header = Header {
            launch_script: fixed_bytes(&self.launch_script),
            magic: MAGIC,
            version: VERSION,
            arch: self.header_arch(),
            id,
            created_at: time,
            modified_at: time,
            descriptors_free: (self.capacity - self.objects.len()) as i64,
            descriptors_total: self.capacity as i64,
            descriptors_offset: DEFAULT_DESCRIPTORS_OFFSET as i64,
            descriptors_size: descriptors_size as i64,
            data_offset: data_offset as i64,
            data_size: (data_end - data_offset) as i64,
        };
        write_tables(out, &header, &descriptors, self.capacity, data_end)
            .map_err(|e| SifError::io(label, "write the image", e))?;
        Ok(header)
    }

    /// The header architecture: the primary partition's, or "00" when there is none.
    fn header_arch(&self) -> Arch {
        self.objects
            .iter()
            .find_map(|o| match o.metadata {
                Metadata::Partition {
                    part_type: PartType::PrimarySystem,
                    arch,
                    ..
                } => Some(arch),
                _ => None,
            })
            .unwrap_or(Arch::Unknown(Arch::UNKNOWN_CODE))
    }

    /// Refuses what the reference refuses, and what would make an inconsistent image.
    fn validate(&self, label: &str) -> Result<(), SifError> {
        if self.objects.len() > self.capacity {
            return Err(SifError::TooManyObjects {
                path: label.to_owned(),
                count: self.objects.len(),
                capacity: self.capacity,
            });
        }
        if self.capacity as i64 > MAX_DESCRIPTORS {
            let why = format!("at most {MAX_DESCRIPTORS} descriptors can be read back");
            return Err(SifError::invalid(label, "descriptor capacity", why));
        }
        if self.launch_script.len() >= LAUNCH_SCRIPT_LEN {
            let why = format!(
                "{} bytes; at most {} fit",
                self.launch_script.len(),
                LAUNCH_SCRIPT_LEN - 1
            );
            return Err(SifError::invalid(label, "launch script", why));
        }
        if self
            .objects
            .iter()
            .filter(|o| o.is_primary_partition())
            .count()
            > 1
        {
            return Err(SifError::invalid(
                label,
                "object list",
                "more than one primary system partition",
            ));
        }
        let groups: HashSet<u32> = self.objects.iter().filter_map(|o| o.group).collect();
        for (index, object) in self.objects.iter().enumerate() {
            validate_object(label, index, object, self.objects.len(), &groups)?;
        }
        Ok(())
    }
}

/// Checks one object's fields; `count` objects get IDs 1..=count.
fn validate_object(
    label: &str,
    index: usize,
    object: &ObjectInput,
    count: usize,
    groups: &HashSet<u32>,
) -> Result<(), SifError> {
    let what = format!("object {} ({})", index + 1, object.data_type);
    let fail = |why: String| Err(SifError::invalid(label, what.clone(), why));
    let max_id = !GROUP_MASK;
    if let Some(group) = object.group {
        if group == 0 || group > max_id {
            return fail(format!("group {group} is not in 1..={max_id}"));
        }
    }
    match object.link {
        Link::Object(id) if id == 0 || id as usize > count => {
            return fail(format!("it links to object {id}, which is not written"));
        }
        Link::Group(group) if !groups.contains(&group) => {
            return fail(format!("it links to group {group}, which has no objects"));
        }
        _ => {}
    }
    if object.name.len() > NAME_LEN {
        return fail(format!(
            "name is {} bytes; at most {NAME_LEN} fit",
            object.name.len()
        ));
    }
    if object.alignment > 1 && !object.alignment.is_power_of_two() {
        return fail(format!(
            "alignment {} is not a power of two",
            object.alignment
        ));
    }
    if !metadata_fits(object.data_type, &object.metadata) {
        return fail("its metadata is for another data type".to_owned());
    }
    if let Err(e) = object.metadata.encode() {
        return fail(e.to_string());
    }
    Ok(())
}

/// Whether `metadata` belongs in a descriptor of `data_type` (partitions need theirs).
fn metadata_fits(data_type: DataType, metadata: &Metadata) -> bool {
    match (data_type, metadata) {
        (DataType::Partition, m) => matches!(m, Metadata::Partition { .. }),
        (_, Metadata::None) => true,
        (DataType::Signature, Metadata::Signature { .. })
        | (DataType::CryptoMessage, Metadata::CryptoMessage { .. })
        | (DataType::Sbom, Metadata::Sbom { .. })
        | (DataType::OciRootIndex | DataType::OciBlob, Metadata::OciBlob { .. }) => true,
        _ => false,
    }
}

/// Writes object `index` at the first aligned offset from `data_end` and returns
/// its descriptor.
fn write_object<W: Write + Seek>(
    out: &mut W,
    label: &str,
    index: usize,
    object: &ObjectInput,
    data_end: u64,
    image_time: i64,
) -> Result<Descriptor, SifError> {
    let offset = align_up(data_end, object.alignment)
        .ok_or_else(|| SifError::invalid(label, "object layout", "offsets overflow"))?;
    out.seek(SeekFrom::Start(offset))
        .map_err(|e| SifError::io(label, "write the image", e))?;
    let size = match &object.source {
        ObjectSource::Bytes(bytes) => {
            out.write_all(bytes)
                .map_err(|e| SifError::io(label, "write the image", e))?;
            bytes.len() as u64
        }
        ObjectSource::File(path) => copy_file(out, path, label)?,
    };
    let time = object.time.unwrap_or(image_time);
    let mut name = [0u8; NAME_LEN];
    name[..object.name.len()].copy_from_slice(object.name.as_bytes());
    // validate() has encoded the metadata once already; this cannot fail.
    let extra = object.metadata.encode().unwrap_or([0; EXTRA_LEN]);
    Ok(Descriptor {
        data_type: object.data_type,
        used: true,
        id: index as u32 + 1,
        raw_group: group_to_raw(object.group),
        raw_link: object.link.to_raw(),
        offset: offset as i64,
        size: size as i64,
        size_with_padding: (offset - data_end + size) as i64,
        created_at: time,
        modified_at: time,
        uid: 0,
        gid: 0,
        name,
        extra,
    })
}

/// Streams the file at `path` into `out` and returns how many bytes it copied.
fn copy_file<W: Write>(out: &mut W, path: &Path, label: &str) -> Result<u64, SifError> {
    let source_label = path.display().to_string();
    let mut file =
        File::open(path).map_err(|e| SifError::io(&source_label, "open object data", e))?;
    io::copy(&mut file, out).map_err(|e| match e.kind() {
        // The source is read inside io::copy; tell which side failed when we can.
        io::ErrorKind::WriteZero | io::ErrorKind::StorageFull => {
            SifError::io(label, "write the image", e)
        }
        _ => SifError::io(&source_label, "copy object data into the image", e),
    })
}

/// Writes the descriptor table (every slot, unused ones zeroed) and the header, and
/// makes the file exactly `data_end` bytes long (an empty aligned last object must
/// still lie inside the file).
fn write_tables<W: Write + Seek>(
    out: &mut W,
    header: &Header,
    descriptors: &[Descriptor],
    capacity: usize,
    data_end: u64,
) -> io::Result<()> {
    out.seek(SeekFrom::Start(DEFAULT_DESCRIPTORS_OFFSET))?;
    let mut table = Vec::with_capacity(capacity * DESCRIPTOR_LEN);
    for d in descriptors {
        table.extend_from_slice(&d.encode());
    }
    table.resize(capacity * DESCRIPTOR_LEN, 0);
    out.write_all(&table)?;
    out.seek(SeekFrom::Start(0))?;
    out.write_all(&header.encode())?;
    // Extend the file when the data ends past what was written (zeros are holes).
    let end = out.seek(SeekFrom::End(0))?;
    if end < data_end {
        out.seek(SeekFrom::Start(data_end - 1))?;
        out.write_all(&[0])?;
    }
    out.flush()
}

/// The next offset at or after `offset` that is a multiple of `alignment`.
fn align_up(offset: u64, alignment: u64) -> Option<u64> {
    if alignment <= 1 {
        Some(offset)
    } else {
        offset.checked_next_multiple_of(alignment)
    }
}

/// `text` in a fixed NUL-padded field (validate() checked that it fits).
fn fixed_bytes<const N: usize>(text: &str) -> [u8; N] {
    let mut out = [0u8; N];
    let len = text.len().min(N);
    out[..len].copy_from_slice(&text.as_bytes()[..len]);
    out
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// Images are executable (they start with a launch script), as the reference makes them.
#[cfg(unix)]
fn make_executable(file: &File) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    file.set_permissions(std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn make_executable(_file: &File) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::SifImage;
    use std::io::Cursor;

    fn build(builder: &SifBuilder) -> SifImage<Cursor<Vec<u8>>> {
        let mut out = Cursor::new(Vec::new());
        builder.write_image(&mut out, "mem.sif").expect("writes");
        SifImage::from_reader(Cursor::new(out.into_inner()), "mem.sif").expect("reads back")
    }

    #[test]
    fn empty_image_matches_the_reference_layout() {
        let image = build(
            &SifBuilder::new(Arch::Amd64)
                .deterministic()
                .launch_script(""),
        );
        let h = image.header();
        assert_eq!(h.descriptors_total, 48);
        assert_eq!(h.descriptors_free, 48);
        assert_eq!(h.descriptors_offset, 4096);
        assert_eq!(h.descriptors_size, 28080);
        assert_eq!(h.data_offset, 32176);
        assert_eq!(h.data_size, 0);
        assert_eq!(h.arch.code(), *b"00\0");
        assert_eq!(image.file_len(), 32176);
    }

    #[test]
    fn partitions_are_aligned_and_set_the_header_arch() {
        let builder = SifBuilder::new(Arch::Arm64)
            .deterministic()
            .add_object(ObjectInput::deffile("Bootstrap: scratch\n"))
            .add_object(ObjectInput::partition(
                ObjectSource::Bytes(vec![7; 10]),
                FsType::Squashfs,
                PartType::PrimarySystem,
                Arch::Arm64,
            ));
        let image = build(&builder);
        let d = image.descriptors();
        assert_eq!(d[0].offset, 32176);
        assert_eq!(d[1].offset, 32768);
        assert_eq!(d[1].size_with_padding, 32768 - (32176 + 19) + 10);
        assert_eq!(image.header().arch, Arch::Arm64);
        assert_eq!(image.header().data_size, 32768 + 10 - 32176);
    }

    #[test]
    fn empty_aligned_last_object_stays_inside_the_file() {
        let builder = SifBuilder::new(Arch::Amd64).add_object(ObjectInput::partition(
            ObjectSource::Bytes(Vec::new()),
            FsType::Raw,
            PartType::Data,
            Arch::Amd64,
        ));
        let image = build(&builder);
        assert_eq!(image.file_len(), 32768);
    }

    #[test]
    fn invalid_inputs_are_refused() {
        let base = || SifBuilder::new(Arch::Amd64);
        let primary = || {
            ObjectInput::partition(
                ObjectSource::Bytes(vec![1]),
                FsType::Squashfs,
                PartType::PrimarySystem,
                Arch::Amd64,
            )
        };
        let cases = [
            base().launch_script("#".repeat(32)),
            base().add_object(primary()).add_object(primary()),
            base().add_object(ObjectInput::deffile("x").group(0)),
            base().add_object(ObjectInput::deffile("x").group(GROUP_MASK)),
            base().add_object(ObjectInput::deffile("x").link(Link::Object(2))),
            base().add_object(ObjectInput::deffile("x").link(Link::Group(9))),
            base().add_object(ObjectInput::deffile("x").name("n".repeat(129))),
            base().add_object(ObjectInput::deffile("x").alignment(3)),
            base().add_object(ObjectInput::from_bytes(DataType::Partition, vec![1])),
            base().add_object(ObjectInput::deffile("x").metadata(Metadata::Sbom {
                format: crate::SbomFormat::SpdxJson,
            })),
            base()
                .descriptor_capacity(0)
                .add_object(ObjectInput::deffile("x")),
        ];
        for builder in cases {
            let mut out = Cursor::new(Vec::new());
            assert!(
                builder.write_image(&mut out, "bad.sif").is_err(),
                "{builder:?}"
            );
        }
    }

    #[test]
    fn align_up_rounds_to_multiples() {
        assert_eq!(align_up(32176, 4096), Some(32768));
        assert_eq!(align_up(32768, 4096), Some(32768));
        assert_eq!(align_up(5, 0), Some(5));
        assert_eq!(align_up(u64::MAX, 4096), None);
    }
}
