//! One view of the three image kinds hybrun meets: a SIF file (its primary SquashFS
//! partition), a bare SquashFS file and an unpacked directory.
//!
//! SquashFS is read in place by `image::squashfs`, a reader bounded in memory and
//! time by construction (hostile images are refused with an error, never let grow
//! without bound): the superblock and lookup tables at open, the inode and directory
//! tables block by block as the file index is built, and a file's data blocks only
//! when that file is read. Nothing is mounted or extracted, so this works
//! unprivileged and costs milliseconds. Symbolic links are resolved inside the
//! image (an absolute target means the image's root, not the host's).
//!
//! The image is opened without blocking and judged on the opened descriptor: a
//! FIFO, socket or device given as the image is refused before anything is read.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::ImageError;
use super::squashfs::file::FileData;
use super::squashfs::source::{ReadAt, Source};
use super::squashfs::{Limits, NodeKind, SqError, Squashfs};
use crate::fsopen::{self, OpenError, Opened};
use hybrun_sif::{FsType, Metadata, SifImage, format::MAGIC};

pub use super::squashfs::SquashfsInfo;

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
    /// The SquashFS inode reference (unused for directory images).
    inode: u64,
}

enum Backend {
    Dir(PathBuf),
    Squashfs(Box<Squashfs>),
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
        let (mut file, len) = match fsopen::open(path) {
            Ok(Opened::Dir(_)) => return open_dir(path, label),
            Ok(Opened::File(file, len)) => (file, len),
            Err(OpenError::Special { kind, .. }) => {
                return Err(ImageError::NotFileOrDirectory { path: label, kind });
            }
            Err(OpenError::Io { source, .. }) => {
                return Err(io_error(&label, "open the image", source));
            }
        };
        let mut head = [0u8; 64];
        let n =
            read_full(&mut file, &mut head).map_err(|e| io_error(&label, "read the image", e))?;
        let (offset, size, kind) = locate(&head[..n], &mut file, &label, len)?;
        open_squashfs(Box::new(file), label, kind, offset, size)
    }

    /// Opens an image held in memory (SIF or SquashFS), named `label` in errors:
    /// what the fuzz target feeds, with the same checks and limits as [`Image::open`].
    pub fn from_bytes(data: Arc<[u8]>, label: &str) -> Result<Image, ImageError> {
        let label = label.to_owned();
        let head = &data[..data.len().min(64)];
        let (offset, size, kind) = locate(
            head,
            &mut io::Cursor::new(&data[..]),
            &label,
            data.len() as u64,
        )?;
        open_squashfs(Box::new(data), label, kind, offset, size)
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
                let data = fs
                    .open_file(entry.inode)
                    .map_err(|e| self.squashfs_error(e.within(path)))?;
                Inner::Squashfs(Box::new(data))
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
                "{}{:04o} {:>12} {}",
                e.kind.letter(),
                e.mode & 0o7777,
                e.size,
                terminal_text(path)
            );
            if let Some(t) = &e.target {
                line.push_str(" -> ");
                line.push_str(&terminal_text(t));
            }
            out.push_str(&line);
            out.push('\n');
        }
        out
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

    fn squashfs_error(&self, e: SqError) -> ImageError {
        let offset = self.squashfs.as_ref().map_or(0, |s| s.offset);
        squashfs_error(&self.label, offset, e)
    }
}

enum Inner<'a> {
    Dir(File),
    Squashfs(Box<FileData<'a>>),
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
                Inner::Squashfs(data) => data
                    .read_at(start, &mut buf)
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, sq_text(e)))?,
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

/// Where the SquashFS root file system lies in the image open as `file` (`len`
/// bytes): `(offset, size)`, at 0 for a bare SquashFS, at the primary partition
/// for a SIF (its descriptors read by the bounded SIF reader). What a per-node
/// `squashfuse -o offset=N` mount needs, without opening the file system.
pub fn squashfs_extent<R: Read + Seek>(
    file: &mut R,
    label: &str,
    len: u64,
) -> Result<(u64, u64), ImageError> {
    let mut head = [0u8; 64];
    file.seek(SeekFrom::Start(0))
        .map_err(|e| io_error(label, "read the image", e))?;
    let n = read_full(file, &mut head).map_err(|e| io_error(label, "read the image", e))?;
    let (offset, size, _) = locate(&head[..n], file, label, len)?;
    Ok((offset, size))
}

/// Where the SquashFS is in an image that starts with `head` (`len` bytes in
/// all): at 0 for a bare SquashFS, at the primary partition for a SIF (whose
/// descriptors are read from `file`).
fn locate<R: Read + Seek>(
    head: &[u8],
    file: &mut R,
    label: &str,
    len: u64,
) -> Result<(u64, u64, ImageKind), ImageError> {
    if head.starts_with(SQUASHFS_MAGIC) {
        return Ok((0, len, ImageKind::Squashfs));
    }
    if head.len() < 32 + MAGIC.len() || head[32..32 + MAGIC.len()] != MAGIC {
        return Err(ImageError::UnknownKind {
            path: label.to_owned(),
        });
    }
    let sif = SifImage::from_reader(file, label)?;
    let part = sif
        .primary_partition()
        .ok_or_else(|| ImageError::NoPrimaryPartition {
            path: label.to_owned(),
        })?;
    if let Metadata::Partition { fs_type, .. } = part.metadata() {
        if fs_type != FsType::Squashfs {
            return Err(ImageError::NotSquashfsPartition {
                path: label.to_owned(),
                fs: fs_type.name().to_owned(),
            });
        }
    }
    // Validated by the SIF reader: both non-negative and inside the file.
    let (offset, size) = (part.offset.unsigned_abs(), part.size.unsigned_abs());
    Ok((offset, size, ImageKind::Sif))
}

/// The image error for a SquashFS error of the file system at `offset`.
fn squashfs_error(label: &str, offset: u64, e: SqError) -> ImageError {
    let path = label.to_owned();
    let at = if offset == 0 {
        String::new()
    } else {
        format!(" at offset {offset}")
    };
    match e {
        SqError::Corrupt(why) => ImageError::CorruptSquashfs { path, at, why },
        SqError::Limit(why) => ImageError::SquashfsLimit { path, at, why },
        SqError::Unsupported(compression) => {
            ImageError::UnsupportedCompression { path, compression }
        }
        SqError::Io(source) => ImageError::Io {
            path,
            action: "read the SquashFS",
            source,
        },
    }
}

/// A SquashFS error as the text of an I/O error (inside a file's reads).
fn sq_text(e: SqError) -> String {
    match e {
        SqError::Corrupt(why) => format!("corrupt SquashFS: {why}"),
        SqError::Limit(why) => why,
        SqError::Unsupported(c) => format!("unsupported compression {c}"),
        SqError::Io(e) => e.to_string(),
    }
}

/// Opens the SquashFS at `offset` of `file` (`space` bytes there) and builds the
/// file index with hybrun's limits.
fn open_squashfs(
    file: Box<dyn ReadAt>,
    label: String,
    kind: ImageKind,
    offset: u64,
    space: u64,
) -> Result<Image, ImageError> {
    let count = Arc::new(AtomicU64::new(0));
    let source = Source::new(file, offset, space, Arc::clone(&count));
    let fs = Squashfs::open(source, Limits::new(MAX_DIR_ENTRIES))
        .map_err(|e| squashfs_error(&label, offset, e))?;
    let mut index = BTreeMap::new();
    fs.walk(&mut |path, node| {
        let kind = match node.kind {
            NodeKind::File => EntryKind::File,
            NodeKind::Dir => EntryKind::Dir,
            NodeKind::Symlink => EntryKind::Symlink,
            NodeKind::Device => EntryKind::Device,
            NodeKind::Other => EntryKind::Other,
        };
        // Names are unique in a directory; two that read the same once made
        // valid UTF-8 keep the first.
        index.entry(path.to_owned()).or_insert(Entry {
            kind,
            mode: u32::from(node.mode),
            size: node.size,
            target: node.target.map(|t| String::from_utf8_lossy(t).into_owned()),
            inode: node.inode,
        });
        Ok(())
    })
    .map_err(|e| squashfs_error(&label, offset, e))?;
    Ok(Image {
        label,
        kind,
        index,
        squashfs: Some(fs.info().clone()),
        bytes_read: count,
        backend: Backend::Squashfs(Box::new(fs)),
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
            inode: 0,
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
                    inode: 0,
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

/// `text` safe to print: control characters (escape sequences, line breaks),
/// and the invisible ones that reorder or hide text (bidi overrides and
/// isolates, zero-width characters, line and paragraph separators), written
/// as `\u{..}` (and a backslash as `\\`), so that a name planted in an image
/// can neither drive the terminal nor forge another line of the listing.
/// Other Unicode prints as it is.
pub fn terminal_text(text: &str) -> std::borrow::Cow<'_, str> {
    let hidden = |c: char| {
        c.is_control()
            || matches!(c, '\\' | '\u{00ad}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}'
                | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{feff}')
    };
    if !text.chars().any(hidden) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if hidden(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}

#[cfg(test)]
mod terminal_text_tests {
    use super::terminal_text;

    #[test]
    fn planted_names_cannot_drive_the_terminal_or_forge_lines() {
        assert_eq!(terminal_text("usr/lib/libc.so.6"), "usr/lib/libc.so.6");
        assert_eq!(terminal_text("données/été"), "données/été");
        assert_eq!(
            terminal_text("a\u{1b}[2Jb\nsmall.sif: OK"),
            "a\\u{1b}[2Jb\\u{a}small.sif: OK"
        );
        assert_eq!(terminal_text("x\u{202e}fis.exe"), "x\\u{202e}fis.exe");
        assert_eq!(terminal_text("a\\b"), "a\\\\b");
    }
}
