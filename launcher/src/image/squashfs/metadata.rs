//! Metadata blocks (the inode, directory and fragment tables are made of them):
//! a 2-byte header (bit 15: stored uncompressed; bits 0-14: stored size, at most
//! 8 KiB), then the data, at most 8 KiB once decompressed. A [`Cursor`] reads a
//! table as one byte stream across its blocks; blocks come through a bounded cache
//! and every decompression counts against the image's metadata budget.

use std::collections::HashMap;
use std::sync::Arc;

use super::compress::Failure;
use super::{CACHE_BLOCKS, SqError, Squashfs, corrupt};

/// Bytes of a metadata block once decompressed (SQUASHFS_METADATA_SIZE).
pub const METADATA_SIZE: usize = 8192;

/// A table of metadata blocks: positions `start..end` of the file system.
#[derive(Debug, Clone, Copy)]
pub struct Table {
    pub name: &'static str,
    pub start: u64,
    pub end: u64,
}

/// One decompressed metadata block and where the next one starts.
#[derive(Debug)]
pub struct Block {
    pub data: Box<[u8]>,
    pub next: u64,
}

/// Decompressed blocks by position, and the bytes decompressed so far.
#[derive(Debug)]
pub struct Cache {
    blocks: HashMap<u64, Arc<Block>>,
    decompressed: u64,
    budget: u64,
}

impl Cache {
    pub fn new(budget: u64) -> Cache {
        Cache {
            blocks: HashMap::new(),
            decompressed: 0,
            budget,
        }
    }
}

impl Squashfs {
    /// The metadata block at `pos` of `table`, from the cache or read now.
    pub(crate) fn metadata_block(&self, table: Table, pos: u64) -> Result<Arc<Block>, SqError> {
        if pos < table.start || pos.saturating_add(2) > table.end {
            return corrupt(format!(
                "a metadata block at offset {pos} lies outside the {} ({}..{})",
                table.name, table.start, table.end
            ));
        }
        let mut state = self.state();
        if let Some(block) = state.cache.blocks.get(&pos).filter(|b| b.next <= table.end) {
            return Ok(Arc::clone(block));
        }
        let mut header = [0u8; 2];
        self.source.read_exact(pos, &mut header)?;
        let header = u16::from_le_bytes(header);
        let stored = (header & 0x7fff) as usize;
        let compressed = header & 0x8000 == 0;
        let end = pos + 2 + stored as u64;
        if stored == 0 || stored > METADATA_SIZE || end > table.end {
            return corrupt(format!(
                "the metadata block at offset {pos} of the {} says it holds {stored} bytes \
                 (at most {METADATA_SIZE}, within the table's {} bytes)",
                table.name,
                table.end - table.start
            ));
        }
        let mut raw = vec![0u8; stored];
        self.source.read_exact(pos + 2, &mut raw)?;
        let data = if compressed {
            let mut out = vec![0u8; METADATA_SIZE + 1];
            let n = state
                .decompressor
                .decompress(&raw, &mut out)
                .map_err(|f| block_failure(f, pos, table))?;
            out.truncate(n);
            out
        } else {
            raw
        };
        if data.is_empty() {
            return corrupt(format!(
                "the metadata block at offset {pos} of the {} is empty",
                table.name
            ));
        }
        state.cache.decompressed += data.len() as u64;
        if state.cache.decompressed > state.cache.budget {
            return Err(SqError::Limit(format!(
                "reading the tables took more than {} MiB of metadata decompression \
                 (a decompression bomb, or tables read over and over)",
                state.cache.budget >> 20
            )));
        }
        if state.cache.blocks.len() >= CACHE_BLOCKS {
            state.cache.blocks.clear();
        }
        let block = Arc::new(Block {
            data: data.into_boxed_slice(),
            next: end,
        });
        state.cache.blocks.insert(pos, Arc::clone(&block));
        Ok(block)
    }
}

fn block_failure(f: Failure, pos: u64, table: Table) -> SqError {
    SqError::Corrupt(format!(
        "the metadata block at offset {pos} of the {} {}",
        table.name,
        match f {
            Failure::TooLarge => format!("decompresses to more than {METADATA_SIZE} bytes"),
            other => other.to_string(),
        }
    ))
}

/// Reads a table as one stream of bytes, from a block and an offset in it.
pub struct Cursor<'a> {
    fs: &'a Squashfs,
    table: Table,
    block: Arc<Block>,
    pos: u64,
    offset: usize,
}

impl<'a> Cursor<'a> {
    /// At byte `offset` of the block `block` bytes into `table` (an inode
    /// reference's or a directory's two halves).
    pub fn new(
        fs: &'a Squashfs,
        table: Table,
        block: u64,
        offset: usize,
    ) -> Result<Cursor<'a>, SqError> {
        let Some(pos) = table.start.checked_add(block).filter(|p| *p < table.end) else {
            return corrupt(format!(
                "a reference to block {block}, outside the {} ({} bytes)",
                table.name,
                table.end - table.start
            ));
        };
        let data = fs.metadata_block(table, pos)?;
        if offset >= data.data.len() {
            return corrupt(format!(
                "a reference to byte {offset}, outside its {}-byte block of the {}",
                data.data.len(),
                table.name
            ));
        }
        Ok(Cursor {
            fs,
            table,
            block: data,
            pos,
            offset,
        })
    }

    /// Where the cursor is: the block (relative to the table) and the offset in it.
    pub fn position(&self) -> (u64, usize) {
        (self.pos - self.table.start, self.offset)
    }

    /// Fills `buf`, moving on to the next blocks as needed.
    pub fn read(&mut self, buf: &mut [u8]) -> Result<(), SqError> {
        let mut got = 0;
        while got < buf.len() {
            if self.offset == self.block.data.len() {
                let next = self.block.next;
                if next >= self.table.end {
                    return corrupt(format!("reading past the end of the {}", self.table.name));
                }
                self.block = self.fs.metadata_block(self.table, next)?;
                self.pos = next;
                self.offset = 0;
            }
            let n = (buf.len() - got).min(self.block.data.len() - self.offset);
            buf[got..got + n].copy_from_slice(&self.block.data[self.offset..self.offset + n]);
            self.offset += n;
            got += n;
        }
        Ok(())
    }

    pub fn u16(&mut self) -> Result<u16, SqError> {
        let mut b = [0u8; 2];
        self.read(&mut b)?;
        Ok(u16::from_le_bytes(b))
    }

    pub fn u32(&mut self) -> Result<u32, SqError> {
        let mut b = [0u8; 4];
        self.read(&mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    pub fn u64(&mut self) -> Result<u64, SqError> {
        let mut b = [0u8; 8];
        self.read(&mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}
