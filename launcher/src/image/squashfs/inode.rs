//! Inodes: a 16-byte header (type, permissions, uid and gid index, mtime, inode
//! number), then the type's fields. Types 1-7 are the basic directory, file,
//! symlink, block and character device, FIFO and socket; 8-14 their extended forms
//! (wider fields, an xattr index). A file's block list, which follows its inode,
//! is read only when the file is opened ([`super::file`]).

use super::metadata::{Cursor, METADATA_SIZE};
use super::superblock::NO_FRAGMENT;
use super::{SqError, Squashfs, corrupt};

/// The longest symbolic link target read (Linux's PATH_MAX).
pub const MAX_LINK_TARGET: u32 = 4096;

/// Where a directory's listing is, and how long it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DirInode {
    /// The listing's metadata block, relative to the directory table.
    pub block: u32,
    /// Its offset in that block, once decompressed.
    pub offset: u16,
    /// The listing's size in bytes, plus 3 (SquashFS counts "." and "..").
    pub size: u32,
}

/// A regular file's data.
#[derive(Debug, Clone, Copy)]
pub struct FileInode {
    pub blocks_start: u64,
    pub size: u64,
    /// Index in the fragment table of its tail, or NO_FRAGMENT.
    pub fragment: u32,
    /// Offset of the tail in the fragment block.
    pub fragment_offset: u32,
    /// Where its block list starts: block (relative to the inode table), offset.
    pub list: (u64, usize),
}

impl FileInode {
    /// Full data blocks (the tail in a fragment is not one).
    pub fn block_count(&self, block_size: u32) -> u64 {
        if self.fragment == NO_FRAGMENT {
            self.size.div_ceil(u64::from(block_size))
        } else {
            self.size / u64::from(block_size)
        }
    }
}

#[derive(Debug, Clone)]
pub enum InodeKind {
    Dir(DirInode),
    File(FileInode),
    Symlink(Vec<u8>),
    Device,
    /// FIFO or socket.
    Other,
}

impl InodeKind {
    /// The basic type number (what directory entries record).
    pub fn basic_type(&self) -> u16 {
        match self {
            InodeKind::Dir(_) => 1,
            InodeKind::File(_) => 2,
            InodeKind::Symlink(_) => 3,
            InodeKind::Device => 4,
            InodeKind::Other => 6,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Inode {
    pub number: u32,
    /// Permission bits.
    pub mode: u16,
    pub kind: InodeKind,
}

impl Squashfs {
    /// Reads the inode at `reference` (its block, relative to the inode table, in
    /// the upper 48 bits; its offset in the block in the lower 16).
    pub(crate) fn inode(&self, reference: u64) -> Result<Inode, SqError> {
        let offset = (reference & 0xffff) as usize;
        if offset >= METADATA_SIZE {
            return corrupt(format!(
                "an inode reference with offset {offset} in its block (at most {})",
                METADATA_SIZE - 1
            ));
        }
        let mut c = Cursor::new(self, self.sb.inode_table(), reference >> 16, offset)?;
        let kind = c.u16()?;
        let mode = c.u16()? & 0o7777;
        let _ids = c.u32()?;
        let _mtime = c.u32()?;
        let number = c.u32()?;
        if number == 0 || number > self.sb.inode_count {
            return corrupt(format!(
                "inode number {number}, outside 1..{} (the superblock's inode count)",
                self.sb.inode_count
            ));
        }
        let kind = match kind {
            1 | 8 => InodeKind::Dir(directory(&mut c, kind == 8)?),
            2 | 9 => InodeKind::File(self.file(&mut c, kind == 9)?),
            3 | 10 => {
                let _links = c.u32()?;
                let len = c.u32()?;
                if len == 0 || len > MAX_LINK_TARGET {
                    return corrupt(format!(
                        "a symbolic link target of {len} bytes (1 to {MAX_LINK_TARGET})"
                    ));
                }
                let mut target = vec![0u8; len as usize];
                c.read(&mut target)?;
                InodeKind::Symlink(target)
            }
            4 | 5 | 11 | 12 => InodeKind::Device,
            6 | 7 | 13 | 14 => InodeKind::Other,
            other => {
                return corrupt(format!(
                    "inode at reference {reference:#x} has type {other}, not a SquashFS inode type"
                ));
            }
        };
        Ok(Inode { number, mode, kind })
    }

    /// A file inode's fields after the header; its block list must fit in the
    /// inode table (a metadata block holds at most 8 KiB, from at least 3 bytes).
    fn file(&self, c: &mut Cursor<'_>, extended: bool) -> Result<FileInode, SqError> {
        let (blocks_start, fragment, fragment_offset, size) = if extended {
            let start = c.u64()?;
            let size = c.u64()?;
            let _sparse = c.u64()?;
            let _links = c.u32()?;
            let fragment = c.u32()?;
            let offset = c.u32()?;
            let _xattr = c.u32()?;
            (start, fragment, offset, size)
        } else {
            (u64::from(c.u32()?), c.u32()?, c.u32()?, u64::from(c.u32()?))
        };
        let file = FileInode {
            blocks_start,
            size,
            fragment,
            fragment_offset,
            list: c.position(),
        };
        let table = self.sb.inode_table();
        let capacity = ((table.end - table.start) / 3 + 1).saturating_mul(METADATA_SIZE as u64);
        let blocks = file.block_count(self.sb.block_size);
        if blocks.saturating_mul(4) > capacity {
            return corrupt(format!(
                "a file of {size} bytes would need a block list of {blocks} entries, more than \
                 the inode table can hold"
            ));
        }
        if fragment != NO_FRAGMENT {
            let tail = size % u64::from(self.sb.block_size);
            if fragment >= self.sb.fragment_count
                || tail == 0
                || u64::from(fragment_offset) + tail > u64::from(self.sb.block_size)
            {
                return corrupt(format!(
                    "a file's tail of {tail} bytes at offset {fragment_offset} of fragment \
                     {fragment} (the fragment table has {} entries, blocks of {} bytes)",
                    self.sb.fragment_count, self.sb.block_size
                ));
            }
        }
        Ok(file)
    }
}

/// A directory inode's fields after the header (the extended form's index, for
/// lookups by name, is not needed: listings are read whole).
fn directory(c: &mut Cursor<'_>, extended: bool) -> Result<DirInode, SqError> {
    if extended {
        let _links = c.u32()?;
        let size = c.u32()?;
        let block = c.u32()?;
        let _parent = c.u32()?;
        let _index_count = c.u16()?;
        let offset = c.u16()?;
        Ok(DirInode {
            block,
            offset,
            size,
        })
    } else {
        let block = c.u32()?;
        let _links = c.u32()?;
        let size = u32::from(c.u16()?);
        let offset = c.u16()?;
        Ok(DirInode {
            block,
            offset,
            size,
        })
    }
}
