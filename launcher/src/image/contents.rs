//! One view of the three image kinds hybrun meets: a SIF file (its primary SquashFS
//! partition), a bare SquashFS file and an unpacked directory.
//!
//! SquashFS is read in place with `backhand`: the superblock, the inode, directory,
//! fragment and ID tables (a few hundred KiB even for a multi-GiB image) at open, and
//! a file's data blocks only when that file is read. Nothing is mounted or extracted,
//! so this works unprivileged and costs milliseconds. Symbolic links are resolved
//! inside the image (an absolute target means the image's root, not the host's).

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

use backhand::{FilesystemReader, InnerNode, SquashfsFileReader};

use super::ImageError;
use hybrun_sif::{FsType, Metadata, SifImage, format::MAGIC};

/// The most entries a directory image may have (a guard against pointing hybrun at `/`).
pub const MAX_DIR_ENTRIES: usize = 2_000_000;

/// Symlink hops allowed while resolving one path (Linux allows 40).
const MAX_SYMLINK_HOPS: usize = 40;

hybrun_core::named_enum! {
    /// What kind of image was opened.
    pub enum ImageKind ("image kind") {
        Sif = "sif",
        Squashfs = "squashfs",
        Directory = "directory",
    }
}

impl ImageKind {
    /// Its name in messages ("SIF", "SquashFS").
    pub fn label(self) -> &'static str {
        match self {
            ImageKind::Sif => "SIF",
            ImageKind::Squashfs => "SquashFS",
            ImageKind::Directory => "directory",
        }
    }
}

hybrun_core::named_enum! {
    /// What a path in the image is.
    pub enum EntryKind ("entry kind") {
        File = "file",
        Dir = "dir",
        Symlink = "symlink",
        Device = "device",
        Other = "other",
    }
}

impl EntryKind {
    /// Its name in messages ("regular file").
    pub fn label(self) -> &'static str {
        match self {
            EntryKind::File => "regular file",
            EntryKind::Dir => "directory",
            EntryKind::Symlink => "symbolic link",
            EntryKind::Device => "device",
            EntryKind::Other => "special file",
        }
    }

    fn letter(self) -> char {
        match self {
            EntryKind::File => '-',
            EntryKind::Dir => 'd',
            EntryKind::Symlink => 'l',
            EntryKind::Device => 'c',
            EntryKind::Other => 'p',
        }
    }
}

/// One path in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub kind: EntryKind,
    /// Permission bits (0o755, ...).
    pub mode: u32,
    /// Size in bytes of a regular file (0 otherwise).
    pub size: u64,
    /// Target of a symbolic link, as stored.
    pub target: Option<String>,
    /// Index of the SquashFS node (unused for directory images).
    node: usize,
}

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

enum Backend {
    Dir(PathBuf),
    Squashfs(Box<FilesystemReader<'static>>),
}

/// An opened image: its file index, and files read on demand.
pub struct Image {
    label: String,
    kind: ImageKind,
    index: BTreeMap<String, Entry>,
    backend: Backend,
    squashfs: Option<SquashfsInfo>,
    bytes_read: Arc<AtomicU64>,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("label", &self.label)
            .field("kind", &self.kind)
            .field("entries", &self.index.len())
            .finish_non_exhaustive()
    }
}

impl Image {
    /// Opens a SIF file, a SquashFS file or an image directory.
    pub fn open(path: impl AsRef<Path>) -> Result<Image, ImageError> {
        let path = path.as_ref();
        let label = path.display().to_string();
        let meta = fs::metadata(path).map_err(|e| io_error(&label, "open the image", e))?;
        if meta.is_dir() {
            return open_dir(path, label);
        }
        let mut head = [0u8; 64];
        let mut file = File::open(path).map_err(|e| io_error(&label, "open the image", e))?;
        let n =
            read_full(&mut file, &mut head).map_err(|e| io_error(&label, "read the image", e))?;
        let head = &head[..n];
        if head.starts_with(SQUASHFS_MAGIC) {
            let len = meta.len();
            return open_squashfs(path, label, ImageKind::Squashfs, 0, len);
        }
        if head.len() >= 32 + MAGIC.len() && head[32..32 + MAGIC.len()] == MAGIC {
            let sif = SifImage::open(path)?;
            let part = sif
                .primary_partition()
                .ok_or_else(|| ImageError::NoPrimaryPartition {
                    path: label.clone(),
                })?;
            if let Metadata::Partition { fs_type, .. } = part.metadata() {
                if fs_type != FsType::Squashfs {
                    return Err(ImageError::NotSquashfsPartition {
                        path: label,
                        fs: fs_type.name().to_owned(),
                    });
                }
            }
            // Validated by the SIF reader: both non-negative and inside the file.
            let (offset, size) = (part.offset.unsigned_abs(), part.size.unsigned_abs());
            return open_squashfs(path, label, ImageKind::Sif, offset, size);
        }
        Err(ImageError::UnknownKind { path: label })
    }

    /// The name the image was opened under.
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn kind(&self) -> ImageKind {
        self.kind
    }

    /// Where the SquashFS lies (None for directory images).
    pub fn squashfs(&self) -> Option<&SquashfsInfo> {
        self.squashfs.as_ref()
    }

    /// Bytes read from the image file(s) so far (for directory images: from files
    /// inside it; the directory walk itself reads only metadata).
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// Every path in the image ("/" first, then sorted), with what it is.
    pub fn entries(&self) -> impl Iterator<Item = (&str, &Entry)> {
        self.index.iter().map(|(p, e)| (p.as_str(), e))
    }

    /// Number of paths in the image.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The entry at `path` itself (a symlink is not followed).
    pub fn entry(&self, path: &str) -> Option<&Entry> {
        self.index.get(&normalize(path))
    }

    /// Resolves `path` inside the image, following every symbolic link on the way
    /// (absolute targets start at the image root); returns the final path.
    pub fn resolve(&self, path: &str) -> Result<String, ImageError> {
        let mut pending: Vec<String> = components(path).rev().map(str::to_owned).collect();
        let mut current: Vec<String> = Vec::new();
        let mut hops = 0;
        while let Some(part) = pending.pop() {
            match part.as_str() {
                "" | "." => continue,
                ".." => {
                    current.pop();
                    continue;
                }
                _ => {}
            }
            current.push(part);
            let joined = join(&current);
            let Some(entry) = self.index.get(&joined) else {
                return Err(self.not_found(path));
            };
            match entry.kind {
                EntryKind::Symlink => {
                    hops += 1;
                    if hops > MAX_SYMLINK_HOPS {
                        return Err(ImageError::SymlinkLoop {
                            image: self.label.clone(),
                            file: path.to_owned(),
                        });
                    }
                    current.pop();
                    let target = entry.target.as_deref().unwrap_or("");
                    if target.starts_with('/') {
                        current.clear();
                    }
                    pending.extend(components(target).rev().map(str::to_owned));
                }
                EntryKind::Dir => {}
                _ if pending.iter().any(|p| !p.is_empty() && p != ".") => {
                    // A file in the middle of a path.
                    return Err(self.not_found(path));
                }
                _ => {}
            }
        }
        Ok(join(&current))
    }

    /// Resolves `path` and returns the final path with its entry.
    pub fn resolve_entry(&self, path: &str) -> Result<(String, &Entry), ImageError> {
        let resolved = self.resolve(path)?;
        let entry = self
            .index
            .get(&resolved)
            .ok_or_else(|| self.not_found(path))?;
        Ok((resolved, entry))
    }

    /// Opens the regular file at `path` (symlinks followed) for reading.
    pub fn open_file(&self, path: &str) -> Result<FileReader<'_>, ImageError> {
        let (resolved, entry) = self.resolve_entry(path)?;
        if entry.kind != EntryKind::File {
            return Err(ImageError::NotAFile {
                image: self.label.clone(),
                file: path.to_owned(),
                kind: entry.kind.label(),
            });
        }
        let inner = match &self.backend {
            Backend::Dir(root) => {
                let host_path = root.join(resolved.trim_start_matches('/'));
                // The path was resolved against the index; O_NOFOLLOW keeps a link
                // swapped in since from leading out of the image.
                let file = fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&host_path)
                    .map_err(|e| self.read_error(path, e.to_string()))?;
                Inner::Dir(file)
            }
            Backend::Squashfs(fs) => {
                let Some(node) = fs.root.nodes.get(entry.node) else {
                    return Err(self.read_error(path, "inconsistent file index".into()));
                };
                let InnerNode::File(file) = &node.inner else {
                    return Err(self.read_error(path, "inconsistent file index".into()));
                };
                self.check_fragment(fs, file, path)?;
                let reader = guarded(|| fs.file(file).reader())
                    .map_err(|why| self.corrupt_file(path, &why))?;
                Inner::Squashfs(Box::new(reader))
            }
        };
        Ok(FileReader {
            inner,
            len: entry.size,
            pos: 0,
            counter: Arc::clone(&self.bytes_read),
            chunks: HashMap::new(),
        })
    }

    /// Reads the whole regular file at `path`, refusing files over `limit` bytes.
    pub fn read_file(&self, path: &str, limit: u64) -> Result<Vec<u8>, ImageError> {
        let mut file = self.open_file(path)?;
        if file.len() > limit {
            return Err(ImageError::TooLarge {
                image: self.label.clone(),
                file: path.to_owned(),
                size: file.len(),
                limit,
            });
        }
        let mut data = Vec::new();
        (&mut file)
            .take(limit)
            .read_to_end(&mut data)
            .map_err(|e| self.read_error(path, e.to_string()))?;
        Ok(data)
    }

    /// The first `n` bytes of the file at `path` (fewer for a shorter file).
    pub fn head(&self, path: &str, n: usize) -> Result<Vec<u8>, ImageError> {
        let mut file = self.open_file(path)?;
        let mut buf = vec![0u8; n];
        let got =
            read_full(&mut file, &mut buf).map_err(|e| self.read_error(path, e.to_string()))?;
        buf.truncate(got);
        Ok(buf)
    }

    /// `ls -l`-style listing of every path (symlink targets after "->").
    pub fn listing(&self) -> String {
        let mut out = String::new();
        for (path, e) in &self.index {
            let mut line = format!(
                "{}{:04o} {:>12} {path}",
                e.kind.letter(),
                e.mode & 0o7777,
                e.size
            );
            if let Some(t) = &e.target {
                line.push_str(" -> ");
                line.push_str(t);
            }
            out.push_str(&line);
            out.push('\n');
        }
        out
    }

    fn check_fragment(
        &self,
        fs: &FilesystemReader<'static>,
        file: &SquashfsFileReader,
        path: &str,
    ) -> Result<(), ImageError> {
        // backhand indexes the fragment table without a bounds check.
        let index = file.frag_index();
        if index == u32::MAX as usize {
            return Ok(());
        }
        let count = fs.fragments.as_ref().map_or(0, Vec::len);
        if index >= count {
            return Err(self.corrupt_file(
                path,
                &format!("fragment {index} outside the fragment table ({count} entries)"),
            ));
        }
        let block_size = u64::from(fs.block_size);
        let full_blocks = file.block_sizes().len() as u64;
        if (file.file_len() as u64) < full_blocks * block_size {
            return Err(self.corrupt_file(path, "file size smaller than its data blocks"));
        }
        Ok(())
    }

    fn not_found(&self, path: &str) -> ImageError {
        ImageError::NotFound {
            image: self.label.clone(),
            file: path.to_owned(),
        }
    }

    fn read_error(&self, path: &str, why: String) -> ImageError {
        ImageError::ReadFile {
            image: self.label.clone(),
            file: path.to_owned(),
            why,
        }
    }

    fn corrupt_file(&self, path: &str, why: &str) -> ImageError {
        let at = self
            .squashfs
            .as_ref()
            .map_or(String::new(), |s| format!(" at offset {}", s.offset));
        ImageError::CorruptSquashfs {
            path: self.label.clone(),
            at,
            why: format!("{path}: {why}"),
        }
    }
}

enum Inner<'a> {
    Dir(File),
    Squashfs(Box<backhand::SquashfsReadFile<'a, 'static>>),
}

/// A regular file of an image, readable and seekable. Reads go through a cache of
/// 64 KiB chunks: ELF parsing asks for many small pieces (one per symbol name), and
/// a SquashFS seek backwards re-decompresses a block, so each chunk is fetched once.
pub struct FileReader<'a> {
    inner: Inner<'a>,
    len: u64,
    pos: u64,
    counter: Arc<AtomicU64>,
    chunks: HashMap<u64, Vec<u8>>,
}

const CHUNK: u64 = 64 << 10;
/// At most this many chunks (16 MiB) are kept; then the cache starts over.
const MAX_CHUNKS: usize = 256;

impl FileReader<'_> {
    /// The file size in bytes.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn fetch(&mut self, index: u64) -> io::Result<&[u8]> {
        if !self.chunks.contains_key(&index) {
            if self.chunks.len() >= MAX_CHUNKS {
                self.chunks.clear();
            }
            let start = index * CHUNK;
            let want = CHUNK.min(self.len.saturating_sub(start)) as usize;
            let mut buf = vec![0u8; want];
            let got = match &mut self.inner {
                Inner::Dir(file) => {
                    file.seek(SeekFrom::Start(start))?;
                    let got = read_full(file, &mut buf)?;
                    self.counter.fetch_add(got as u64, Ordering::Relaxed);
                    got
                }
                Inner::Squashfs(reader) => guarded(|| -> io::Result<usize> {
                    reader.seek(SeekFrom::Start(start))?;
                    read_full(reader, &mut buf)
                })
                .map_err(|why| io::Error::new(io::ErrorKind::InvalidData, why))??,
            };
            buf.truncate(got);
            self.chunks.insert(index, buf);
        }
        Ok(self.chunks.get(&index).map_or(&[][..], Vec::as_slice))
    }
}

impl Read for FileReader<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if self.pos >= self.len || out.is_empty() {
            return Ok(0);
        }
        let index = self.pos / CHUNK;
        let offset = (self.pos - index * CHUNK) as usize;
        let chunk = self.fetch(index)?;
        if offset >= chunk.len() {
            // The data ended early: the file is shorter than its inode says.
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "file data ends before the size its inode records (corrupt image)",
            ));
        }
        let n = out.len().min(chunk.len() - offset);
        out[..n].copy_from_slice(&chunk[offset..offset + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl Seek for FileReader<'_> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let target = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => self.len.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        let target = target.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "seek before the start of the file",
            )
        })?;
        self.pos = target;
        Ok(target)
    }
}

const SQUASHFS_MAGIC: &[u8] = b"hsqs";
const SUPERBLOCK_LEN: usize = 96;

/// A file that counts the bytes read through it (the benchmark's proof that opening
/// a 2 GiB image reads kilobytes).
struct CountingFile {
    file: File,
    count: Arc<AtomicU64>,
}

impl Read for CountingFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.file.read(buf)?;
        self.count.fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

impl Seek for CountingFile {
    fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
        self.file.seek(pos)
    }
}

fn compression_name(id: u16) -> String {
    match id {
        1 => "gzip".into(),
        2 => "lzma".into(),
        3 => "lzo".into(),
        4 => "xz".into(),
        5 => "lz4".into(),
        6 => "zstd".into(),
        other => format!("unknown compression {other}"),
    }
}

fn le16(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn le32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

/// Checks the superblock before backhand parses the tables, for errors that say
/// what is wrong (backhand's say "corrupted or invalid squashfs image").
fn check_superblock(
    file: &mut File,
    label: &str,
    offset: u64,
    space: u64,
) -> Result<SquashfsInfo, ImageError> {
    let at = if offset == 0 {
        String::new()
    } else {
        format!(" at offset {offset}")
    };
    let corrupt = |why: String| ImageError::CorruptSquashfs {
        path: label.to_owned(),
        at: at.clone(),
        why,
    };
    let mut sb = [0u8; SUPERBLOCK_LEN];
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| io_error(label, "seek to the SquashFS superblock", e))?;
    let got =
        read_full(file, &mut sb).map_err(|e| io_error(label, "read the SquashFS superblock", e))?;
    if got < SUPERBLOCK_LEN || (space as usize) < SUPERBLOCK_LEN {
        return Err(corrupt(format!(
            "only {} bytes where the {SUPERBLOCK_LEN} byte superblock should be",
            got.min(space as usize)
        )));
    }
    if &sb[..4] != SQUASHFS_MAGIC {
        return Err(corrupt(format!(
            "bad magic {:02x?} (expected \"hsqs\")",
            &sb[..4]
        )));
    }
    let (major, minor) = (le16(&sb, 28), le16(&sb, 30));
    if (major, minor) != (4, 0) {
        return Err(corrupt(format!(
            "SquashFS version {major}.{minor}; hybrun reads version 4.0 (mksquashfs 4.x)"
        )));
    }
    let compression = le16(&sb, 20);
    if !matches!(compression, 1 | 4 | 5 | 6) {
        return Err(ImageError::UnsupportedCompression {
            path: label.to_owned(),
            compression: compression_name(compression),
        });
    }
    let block_size = le32(&sb, 12);
    let block_log = le16(&sb, 22);
    if !(4096..=1 << 20).contains(&block_size)
        || !block_size.is_power_of_two()
        || 1u32.checked_shl(u32::from(block_log)) != Some(block_size)
    {
        return Err(corrupt(format!(
            "block size {block_size} (log {block_log}) is not a power of two between 4 KiB and 1 MiB"
        )));
    }
    let bytes_used = le64(&sb, 40);
    if bytes_used > space {
        return Err(corrupt(format!(
            "the superblock says the file system uses {bytes_used} bytes but only {space} are there"
        )));
    }
    for (name, at) in [
        ("inode table", 64),
        ("directory table", 72),
        ("ID table", 48),
    ] {
        let table = le64(&sb, at);
        if table >= bytes_used {
            return Err(corrupt(format!(
                "the {name} starts at {table}, past the {bytes_used} bytes used"
            )));
        }
    }
    Ok(SquashfsInfo {
        offset,
        bytes_used,
        compression: compression_name(compression),
        block_size,
        inodes: le32(&sb, 4),
    })
}

fn open_squashfs(
    path: &Path,
    label: String,
    kind: ImageKind,
    offset: u64,
    space: u64,
) -> Result<Image, ImageError> {
    let mut file = File::open(path).map_err(|e| io_error(&label, "open the image", e))?;
    let info = check_superblock(&mut file, &label, offset, space)?;
    // backhand reads the superblock from the current position when the offset is 0.
    file.seek(SeekFrom::Start(offset))
        .map_err(|e| io_error(&label, "seek to the SquashFS superblock", e))?;
    let count = Arc::new(AtomicU64::new(SUPERBLOCK_LEN as u64));
    let reader = BufReader::new(CountingFile {
        file,
        count: Arc::clone(&count),
    });
    let corrupt = |why: String| ImageError::CorruptSquashfs {
        path: label.clone(),
        at: if offset == 0 {
            String::new()
        } else {
            format!(" at offset {offset}")
        },
        why,
    };
    let fs = guarded(|| FilesystemReader::from_reader_with_offset(reader, offset))
        .map_err(&corrupt)?
        .map_err(|e| corrupt(e.to_string()))?;
    let mut index = BTreeMap::new();
    for (i, node) in fs.root.nodes.iter().enumerate() {
        let path = node.fullpath.to_string_lossy();
        let path = normalize(&path);
        let (kind, size, target) = match &node.inner {
            InnerNode::File(f) => (EntryKind::File, f.file_len() as u64, None),
            InnerNode::Dir(_) => (EntryKind::Dir, 0, None),
            InnerNode::Symlink(s) => (
                EntryKind::Symlink,
                0,
                Some(s.link.to_string_lossy().into_owned()),
            ),
            InnerNode::CharacterDevice(_) | InnerNode::BlockDevice(_) => {
                (EntryKind::Device, 0, None)
            }
            InnerNode::NamedPipe | InnerNode::Socket => (EntryKind::Other, 0, None),
        };
        index.insert(
            path,
            Entry {
                kind,
                mode: u32::from(node.header.permissions),
                size,
                target,
                node: i,
            },
        );
    }
    Ok(Image {
        label,
        kind,
        index,
        backend: Backend::Squashfs(Box::new(fs)),
        squashfs: Some(info),
        bytes_read: count,
    })
}

fn open_dir(root: &Path, label: String) -> Result<Image, ImageError> {
    let mut index = BTreeMap::new();
    let root_meta =
        fs::metadata(root).map_err(|e| io_error(&label, "read the image directory", e))?;
    index.insert(
        "/".to_owned(),
        Entry {
            kind: EntryKind::Dir,
            mode: root_meta.permissions().mode() & 0o7777,
            size: 0,
            target: None,
            node: 0,
        },
    );
    let mut stack = vec![(root.to_path_buf(), String::new())];
    while let Some((dir, prefix)) = stack.pop() {
        let listing =
            fs::read_dir(&dir).map_err(|e| io_error(&label, "list a directory of the image", e))?;
        for item in listing {
            let item = item.map_err(|e| io_error(&label, "list a directory of the image", e))?;
            let name = item.file_name().to_string_lossy().into_owned();
            let image_path = format!("{prefix}/{name}");
            let meta = item
                .metadata()
                .map_err(|e| io_error(&label, "read file metadata in the image", e))?;
            let ft = meta.file_type();
            let (kind, size, target) = if ft.is_symlink() {
                let t = fs::read_link(item.path())
                    .map_err(|e| io_error(&label, "read a symbolic link in the image", e))?;
                (
                    EntryKind::Symlink,
                    0,
                    Some(t.to_string_lossy().into_owned()),
                )
            } else if ft.is_dir() {
                stack.push((item.path(), image_path.clone()));
                (EntryKind::Dir, 0, None)
            } else if ft.is_file() {
                (EntryKind::File, meta.len(), None)
            } else if ft.is_char_device() || ft.is_block_device() {
                (EntryKind::Device, 0, None)
            } else {
                (EntryKind::Other, 0, None)
            };
            index.insert(
                image_path,
                Entry {
                    kind,
                    mode: meta.permissions().mode() & 0o7777,
                    size,
                    target,
                    node: 0,
                },
            );
            if index.len() > MAX_DIR_ENTRIES {
                return Err(ImageError::TooManyEntries {
                    path: label,
                    limit: MAX_DIR_ENTRIES,
                });
            }
        }
    }
    Ok(Image {
        label,
        kind: ImageKind::Directory,
        index,
        backend: Backend::Dir(root.to_path_buf()),
        squashfs: None,
        bytes_read: Arc::new(AtomicU64::new(0)),
    })
}

/// "/a//b/" -> "/a/b"; "" -> "/".
fn normalize(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('/')
        .filter(|p| !p.is_empty() && *p != ".")
        .collect();
    if parts.is_empty() {
        "/".to_owned()
    } else {
        format!("/{}", parts.join("/"))
    }
}

fn components(path: &str) -> impl DoubleEndedIterator<Item = &str> {
    path.split('/')
}

fn join(parts: &[String]) -> String {
    if parts.is_empty() {
        "/".to_owned()
    } else {
        format!("/{}", parts.join("/"))
    }
}

fn io_error(path: &str, action: &'static str, source: io::Error) -> ImageError {
    ImageError::Io {
        path: path.to_owned(),
        action,
        source,
    }
}

/// Reads until `buf` is full or the end of the data; returns the bytes read.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

thread_local! {
    static QUIET_PANICS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, turning a panic into an error text. backhand trusts some table values
/// (slice indexes, subtractions) that a corrupt image can break; such an image must
/// give an error, not abort hybrun. The panic message is not printed while guarded
/// (only on this thread: other threads' panics are reported as usual).
fn guarded<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if !QUIET_PANICS.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let was = QUIET_PANICS.with(|q| q.replace(true));
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    QUIET_PANICS.with(|q| q.set(was));
    result.map_err(|payload| {
        let detail = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "internal consistency check failed".to_owned());
        format!("inconsistent file system tables ({detail})")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_normalize() {
        assert_eq!(normalize(""), "/");
        assert_eq!(normalize("/a//b/./c/"), "/a/b/c");
        assert_eq!(normalize("a"), "/a");
    }

    #[test]
    fn directory_images_resolve_links_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("usr/lib/x")).unwrap();
        fs::write(root.join("usr/lib/x/libfoo.so.1.2"), b"hello").unwrap();
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).unwrap();
        std::os::unix::fs::symlink("libfoo.so.1.2", root.join("usr/lib/x/libfoo.so.1")).unwrap();
        // Absolute: the image's /usr, not the host's.
        std::os::unix::fs::symlink("/usr/lib/x/libfoo.so.1", root.join("abs")).unwrap();
        std::os::unix::fs::symlink("loop2", root.join("loop1")).unwrap();
        std::os::unix::fs::symlink("loop1", root.join("loop2")).unwrap();
        let image = Image::open(root).unwrap();
        assert_eq!(image.kind(), ImageKind::Directory);
        assert_eq!(
            image.resolve("/lib/x/libfoo.so.1").unwrap(),
            "/usr/lib/x/libfoo.so.1.2"
        );
        assert_eq!(image.resolve("/abs").unwrap(), "/usr/lib/x/libfoo.so.1.2");
        assert_eq!(image.read_file("/abs", 100).unwrap(), b"hello");
        assert!(matches!(
            image.resolve("/loop1"),
            Err(ImageError::SymlinkLoop { .. })
        ));
        assert!(matches!(
            image.resolve("/nope"),
            Err(ImageError::NotFound { .. })
        ));
        assert!(matches!(
            image.open_file("/usr"),
            Err(ImageError::NotAFile { .. })
        ));
        assert!(matches!(
            image.read_file("/abs", 2),
            Err(ImageError::TooLarge { .. })
        ));
    }
}
