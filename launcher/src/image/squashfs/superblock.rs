//! The superblock (the first 96 bytes) and the checks of the tables it points at,
//! made before anything else is read: the same sanity checks the Linux kernel makes
//! at mount (fs/squashfs/super.c, id.c, export.c, fragment.c), so that a count in
//! the superblock can never make hybrun read or keep more than the file holds.

use super::compress::Compression;
use super::metadata::{METADATA_SIZE, Table};
use super::source::Source;
use super::{SqError, corrupt};

pub const SUPERBLOCK_LEN: usize = 96;
const MAGIC: &[u8] = b"hsqs";
/// "No such table" in a superblock position field.
pub const NO_TABLE: u64 = u64::MAX;
/// "No fragment" in a file inode.
pub const NO_FRAGMENT: u32 = u32::MAX;

/// What the superblock says, checked.
#[derive(Debug, Clone)]
pub struct Superblock {
    pub inode_count: u32,
    pub block_size: u32,
    pub fragment_count: u32,
    pub compression: Compression,
    pub id_count: u16,
    pub root_inode: u64,
    pub bytes_used: u64,
    pub id_table: u64,
    pub xattr_table: u64,
    pub inode_table: u64,
    pub directory_table: u64,
    pub fragment_table: u64,
    pub export_table: u64,
    /// Where the directory table ends: the first block of the table after it
    /// (set by [`Superblock::check_tables`]).
    pub directory_end: u64,
    /// Where the fragment table's blocks start (its first lookup entry).
    pub fragment_blocks: u64,
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

impl Superblock {
    /// Reads and checks the superblock at the start of `source`.
    pub fn read(source: &Source) -> Result<Superblock, SqError> {
        let space = source.len();
        if space < SUPERBLOCK_LEN as u64 {
            return corrupt(format!(
                "only {space} bytes where the {SUPERBLOCK_LEN} byte superblock should be"
            ));
        }
        let mut sb = [0u8; SUPERBLOCK_LEN];
        source.read_exact(0, &mut sb)?;
        if &sb[..4] != MAGIC {
            return corrupt(format!("bad magic {:02x?} (expected \"hsqs\")", &sb[..4]));
        }
        let (major, minor) = (le16(&sb, 28), le16(&sb, 30));
        if (major, minor) != (4, 0) {
            return corrupt(format!(
                "SquashFS version {major}.{minor}; hybrun reads version 4.0 (mksquashfs 4.x)"
            ));
        }
        let compression = Compression::from_id(le16(&sb, 20)).map_err(SqError::Unsupported)?;
        let block_size = le32(&sb, 12);
        let block_log = le16(&sb, 22);
        if !(4096..=1 << 20).contains(&block_size)
            || !block_size.is_power_of_two()
            || 1u32.checked_shl(u32::from(block_log)) != Some(block_size)
        {
            return corrupt(format!(
                "block size {block_size} (log {block_log}) is not a power of two between 4 KiB \
                 and 1 MiB"
            ));
        }
        let bytes_used = le64(&sb, 40);
        if bytes_used > space {
            return corrupt(format!(
                "the superblock says the file system uses {bytes_used} bytes but only {space} \
                 are there"
            ));
        }
        let s = Superblock {
            inode_count: le32(&sb, 4),
            block_size,
            fragment_count: le32(&sb, 16),
            compression,
            id_count: le16(&sb, 26),
            root_inode: le64(&sb, 32),
            bytes_used,
            id_table: le64(&sb, 48),
            xattr_table: le64(&sb, 56),
            inode_table: le64(&sb, 64),
            directory_table: le64(&sb, 72),
            fragment_table: le64(&sb, 80),
            export_table: le64(&sb, 88),
            directory_end: bytes_used,
            fragment_blocks: bytes_used,
        };
        for (name, at) in [
            ("inode table", s.inode_table),
            ("directory table", s.directory_table),
            ("ID table", s.id_table),
        ] {
            if at >= bytes_used {
                return corrupt(format!(
                    "the {name} starts at {at}, past the {bytes_used} bytes used"
                ));
            }
        }
        if s.inode_count == 0 {
            return corrupt("the superblock counts 0 inodes");
        }
        Ok(s)
    }

    /// Checks the tables after the directory table, last to first as the kernel
    /// does: each must fit before the one after it, for the count the superblock
    /// gives; then the directory and inode tables must come before them.
    pub fn check_tables(&mut self, source: &Source) -> Result<(), SqError> {
        let mut next = self.bytes_used;
        if self.xattr_table != NO_TABLE {
            // The xattr ID table's header names where the xattr data starts.
            if self
                .xattr_table
                .checked_add(16)
                .is_none_or(|end| end > next)
            {
                return corrupt(format!(
                    "the xattr table starts at {}, past the {next} bytes used",
                    self.xattr_table
                ));
            }
            let data = source.u64_at(self.xattr_table)?;
            if data > self.xattr_table {
                return corrupt(format!(
                    "the xattr data starts at {data}, after its ID table at {}",
                    self.xattr_table
                ));
            }
            next = data;
        }
        if self.id_count == 0 {
            return corrupt("the superblock counts 0 user/group IDs (there is always one)");
        }
        next = lookup(
            source,
            Lookup {
                name: "ID table",
                entries: "IDs",
                count: u64::from(self.id_count),
                entry_len: 4,
            },
            self.id_table,
            next,
        )?;
        if self.export_table != NO_TABLE {
            next = lookup(
                source,
                Lookup {
                    name: "export table",
                    entries: "inodes",
                    count: u64::from(self.inode_count),
                    entry_len: 8,
                },
                self.export_table,
                next,
            )?;
        }
        if self.fragment_count > 0 {
            next = lookup(
                source,
                Lookup {
                    name: "fragment table",
                    entries: "fragments",
                    count: u64::from(self.fragment_count),
                    entry_len: 16,
                },
                self.fragment_table,
                next,
            )?;
            self.fragment_blocks = next;
        }
        if self.directory_table > next {
            return corrupt(format!(
                "the directory table starts at {}, after the tables that follow it (at {next})",
                self.directory_table
            ));
        }
        if self.inode_table >= self.directory_table || self.inode_table < SUPERBLOCK_LEN as u64 {
            return corrupt(format!(
                "the inode table starts at {}, not between the superblock and the directory \
                 table (at {})",
                self.inode_table, self.directory_table
            ));
        }
        self.directory_end = next;
        Ok(())
    }

    pub fn inode_table(&self) -> Table {
        Table {
            name: "inode table",
            start: self.inode_table,
            end: self.directory_table,
        }
    }

    pub fn directory_table(&self) -> Table {
        Table {
            name: "directory table",
            start: self.directory_table,
            end: self.directory_end,
        }
    }
}

/// A table reached through a lookup array, as the superblock counts it.
struct Lookup {
    name: &'static str,
    /// What its entries are ("fragments").
    entries: &'static str,
    /// How many the superblock says there are.
    count: u64,
    entry_len: u64,
}

/// Checks a lookup table (an array of u64 positions of the metadata blocks that
/// hold its entries) at `start`, which must end by `next`: the array fits; its
/// positions increase by at most one stored metadata block each; the last block
/// ends before the array. Returns the first position, where the table's blocks
/// start (the end of whatever precedes it). Reads the array once, in pieces: at
/// most the file's size, never more memory than a piece.
fn lookup(source: &Source, table: Lookup, start: u64, next: u64) -> Result<u64, SqError> {
    let name = table.name;
    let blocks = (table.count * table.entry_len).div_ceil(METADATA_SIZE as u64);
    let length = blocks * 8;
    if start.checked_add(length).is_none_or(|end| end > next) {
        return corrupt(format!(
            "the {name} needs {blocks} block positions ({length} bytes) for {} {} at offset \
             {start}, but only {} bytes are there before the next table",
            table.count,
            table.entries,
            next.saturating_sub(start)
        ));
    }
    const MAX_GAP: u64 = METADATA_SIZE as u64 + 2;
    let mut first = 0;
    let mut previous: Option<u64> = None;
    let mut piece = [0u8; 4096];
    let mut done = 0u64;
    while done < blocks {
        let n = (blocks - done).min(piece.len() as u64 / 8) as usize;
        source.read_exact(start + done * 8, &mut piece[..n * 8])?;
        for chunk in piece[..n * 8].chunks_exact(8) {
            let at = u64::from_le_bytes(chunk.try_into().unwrap_or([0xff; 8]));
            match previous {
                None => first = at,
                Some(p) if at <= p || at - p > MAX_GAP => {
                    return corrupt(format!(
                        "the {name}'s block positions go from {p} to {at} (they must increase \
                         by at most one block)"
                    ));
                }
                Some(_) => {}
            }
            previous = Some(at);
        }
        done += n as u64;
    }
    if let Some(last) = previous {
        if last >= start || start - last > MAX_GAP {
            return corrupt(format!(
                "the {name}'s last block at {last} does not end right before its lookup array \
                 at {start}"
            ));
        }
    }
    Ok(first)
}
