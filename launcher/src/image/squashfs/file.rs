//! A regular file's data: full blocks at `blocks_start`, one after another, each
//! stored compressed, uncompressed (bit 24 of its size word) or not at all (size
//! 0: a sparse block of zeros); the tail, if shorter than a block, either a short
//! last block or a piece of a fragment block shared with other files' tails.

use std::sync::Arc;

use super::inode::{FileInode, InodeKind};
use super::metadata::{Cursor, Table};
use super::{MAX_FILE_BLOCKS, SqError, Squashfs, corrupt};

const UNCOMPRESSED: u32 = 1 << 24;
const SIZE_MASK: u32 = UNCOMPRESSED - 1;
/// Fragment table entries per metadata block (16 bytes each).
const FRAGMENTS_PER_BLOCK: u64 = 512;

/// A stored block: where, and its size word.
#[derive(Debug, Clone, Copy)]
struct Stored {
    pos: u64,
    word: u32,
}

/// An opened regular file: its block positions, and the last block read.
#[derive(Debug)]
pub struct FileData<'a> {
    fs: &'a Squashfs,
    size: u64,
    /// Position of each full block (the positions of sparse blocks repeat).
    blocks: Vec<u64>,
    words: Vec<u32>,
    /// The tail's fragment block and the tail's offset in it.
    fragment: Option<(Stored, usize)>,
    /// The last block decompressed: its index (u64::MAX: the fragment) and data.
    cached: Option<(u64, Vec<u8>)>,
}

impl Squashfs {
    /// Opens the regular file whose inode is at `reference`.
    pub fn open_file(&self, reference: u64) -> Result<FileData<'_>, SqError> {
        let InodeKind::File(file) = self.inode(reference)?.kind else {
            return corrupt("not a regular file (inconsistent file index)");
        };
        let count = file.block_count(self.sb.block_size);
        if count > MAX_FILE_BLOCKS {
            return Err(SqError::Limit(format!(
                "{} bytes in {count} blocks; hybrun reads files of at most {MAX_FILE_BLOCKS} \
                 blocks",
                file.size
            )));
        }
        let (blocks, words) = self.block_list(&file, count as usize)?;
        let fragment = if file.fragment == super::superblock::NO_FRAGMENT {
            None
        } else {
            Some((
                self.fragment_entry(file.fragment)?,
                file.fragment_offset as usize,
            ))
        };
        Ok(FileData {
            fs: self,
            size: file.size,
            blocks,
            words,
            fragment,
            cached: None,
        })
    }

    /// The block list: positions and size words, checked to lie in the bytes used.
    fn block_list(&self, file: &FileInode, count: usize) -> Result<(Vec<u64>, Vec<u32>), SqError> {
        let mut c = Cursor::new(self, self.sb.inode_table(), file.list.0, file.list.1)?;
        let mut blocks = Vec::with_capacity(count);
        let mut words = Vec::with_capacity(count);
        let mut pos = file.blocks_start;
        for _ in 0..count {
            let word = c.u32()?;
            let stored = u64::from(word & SIZE_MASK);
            if stored > u64::from(self.sb.block_size) || word & !(SIZE_MASK | UNCOMPRESSED) != 0 {
                return corrupt(format!(
                    "a data block size word {word:#x} (at most the block size, {})",
                    self.sb.block_size
                ));
            }
            blocks.push(pos);
            words.push(word);
            pos = pos
                .checked_add(stored)
                .filter(|end| *end <= self.sb.bytes_used)
                .ok_or_else(|| {
                    SqError::Corrupt(format!(
                        "the file's data runs past the end of the file system ({} bytes)",
                        self.sb.bytes_used
                    ))
                })?;
        }
        Ok((blocks, words))
    }

    /// Entry `index` of the fragment table: where the fragment block is.
    fn fragment_entry(&self, index: u32) -> Result<Stored, SqError> {
        let index = u64::from(index);
        let table = self.sb.fragment_table;
        let slot = index / FRAGMENTS_PER_BLOCK;
        let block = self.source.u64_at(table + slot * 8)?;
        // The block ends before the next one (or before the lookup array).
        let last_slot = (u64::from(self.sb.fragment_count) - 1) / FRAGMENTS_PER_BLOCK;
        let end = if slot < last_slot {
            self.source.u64_at(table + (slot + 1) * 8)?
        } else {
            table
        };
        let span = Table {
            name: "fragment table",
            start: self.sb.fragment_blocks,
            end,
        };
        let offset = ((index % FRAGMENTS_PER_BLOCK) * 16) as usize;
        let Some(relative) = block.checked_sub(span.start) else {
            return corrupt(format!(
                "fragment {index}: its block at {block} lies before the fragment table"
            ));
        };
        let mut c = Cursor::new(self, span, relative, offset)
            .map_err(|e| e.within(format!("fragment {index}")))?;
        let pos = c.u64()?;
        let word = c.u32()?;
        let stored = u64::from(word & SIZE_MASK);
        if stored == 0
            || stored > u64::from(self.sb.block_size)
            || pos
                .checked_add(stored)
                .is_none_or(|e| e > self.sb.bytes_used)
        {
            return corrupt(format!(
                "fragment {index}: {stored} bytes at offset {pos} (at most a block, inside the \
                 {} bytes used)",
                self.sb.bytes_used
            ));
        }
        Ok(Stored { pos, word })
    }

    /// Reads and decompresses a stored block into exactly `want` bytes.
    fn data_block(&self, stored: Stored, want: usize) -> Result<Vec<u8>, SqError> {
        let data = self.stored_block(stored, want)?;
        if data.len() != want {
            return corrupt(format!(
                "the data block at offset {} holds {} bytes, not {want}",
                stored.pos,
                data.len()
            ));
        }
        Ok(data)
    }

    /// The fragment block at `stored` (at most a block), through a one-block
    /// cache: the small files detection reads often share one.
    fn fragment_block(&self, stored: Stored) -> Result<Arc<[u8]>, SqError> {
        if let Some((pos, data)) = &self.state().fragment {
            if *pos == stored.pos {
                return Ok(Arc::clone(data));
            }
        }
        let data: Arc<[u8]> = self
            .stored_block(stored, self.sb.block_size as usize)?
            .into();
        self.state().fragment = Some((stored.pos, Arc::clone(&data)));
        Ok(data)
    }

    /// A stored block, decompressed into at most `cap` bytes (zeros if sparse).
    fn stored_block(&self, stored: Stored, cap: usize) -> Result<Vec<u8>, SqError> {
        let len = (stored.word & SIZE_MASK) as usize;
        if len == 0 {
            return Ok(vec![0; cap]);
        }
        let mut raw = vec![0u8; len];
        self.source.read_exact(stored.pos, &mut raw)?;
        if stored.word & UNCOMPRESSED != 0 {
            if raw.len() > cap {
                return corrupt(format!(
                    "the data block at offset {} holds {len} bytes, more than {cap}",
                    stored.pos
                ));
            }
            return Ok(raw);
        }
        let mut out = vec![0u8; cap + 1];
        let n = self
            .state()
            .decompressor
            .decompress(&raw, &mut out)
            .map_err(|f| {
                SqError::Corrupt(format!("the data block at offset {} {f}", stored.pos))
            })?;
        out.truncate(n);
        Ok(out)
    }
}

impl FileData<'_> {
    /// Reads up to `buf.len()` bytes at `pos` (fewer at the end of the file).
    pub fn read_at(&mut self, pos: u64, buf: &mut [u8]) -> Result<usize, SqError> {
        let block_size = u64::from(self.fs.sb.block_size);
        let mut done = 0;
        while done < buf.len() {
            let at = pos + done as u64;
            if at >= self.size {
                break;
            }
            let index = at / block_size;
            let within = (at % block_size) as usize;
            let data = self.block(index)?;
            let Some(rest) = data.get(within..).filter(|r| !r.is_empty()) else {
                return corrupt("the file's data ends before its size");
            };
            let n = rest.len().min(buf.len() - done);
            buf[done..done + n].copy_from_slice(&rest[..n]);
            done += n;
        }
        Ok(done)
    }

    /// Block `index` of the file (the tail in the fragment for the last one).
    fn block(&mut self, index: u64) -> Result<&[u8], SqError> {
        if self.cached.as_ref().is_none_or(|(i, _)| *i != index) {
            let block_size = u64::from(self.fs.sb.block_size);
            let data = if let (Some(&pos), Some(&word)) = (
                self.blocks.get(index as usize),
                self.words.get(index as usize),
            ) {
                let want = (self.size - index * block_size).min(block_size) as usize;
                self.fs.data_block(Stored { pos, word }, want)?
            } else if let Some((stored, offset)) = self.fragment {
                let tail = (self.size % block_size) as usize;
                let block = self.fs.fragment_block(stored)?;
                let Some(piece) = block.get(offset..offset + tail) else {
                    return corrupt(format!(
                        "the file's tail ({tail} bytes at {offset}) lies outside its {}-byte \
                         fragment block",
                        block.len()
                    ));
                };
                piece.to_vec()
            } else {
                return corrupt("the file's data ends before its size");
            };
            self.cached = Some((index, data));
        }
        Ok(self.cached.as_ref().map_or(&[][..], |(_, d)| d.as_slice()))
    }
}
