//! The walk of the directory tree that builds the file index: iterative, each
//! directory entered once, within the depth, entry and memory limits.
//!
//! A listing is a run of headers (entry count - 1, the inode block the entries
//! share, a base inode number), each followed by its entries (offset of the inode
//! in that block, inode number delta, basic type, name size - 1, name). The kernel
//! allows at most 256 entries per header and 256 bytes per name.

use std::collections::HashSet;

use super::inode::{DirInode, InodeKind};
use super::metadata::Cursor;
use super::{Limits, SqError, Squashfs, corrupt};

/// Longest name (SQUASHFS_NAME_LEN) and most entries per header (SQUASHFS_DIR_COUNT).
const MAX_NAME: usize = 256;
const MAX_HEADER_ENTRIES: u32 = 256;
/// Bytes of a listing header and of an entry before its name.
const HEADER_LEN: u32 = 12;
const ENTRY_LEN: u32 = 8;
/// Memory an index entry costs besides its path and target: the map's node share,
/// the entry, the string headers and the allocator's rounding (measured: about
/// 120 bytes on x86_64 glibc).
const ENTRY_COST: usize = 160;
/// What a directory costs the walk while it waits on the stack, and in the visited
/// sets (three hash sets).
const DIR_COST: usize = 160;

/// What an index entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeKind {
    File,
    Dir,
    Symlink,
    Device,
    Other,
}

/// One path of the file system, as the walk reports it.
#[derive(Debug)]
pub struct Node<'a> {
    pub kind: NodeKind,
    pub mode: u16,
    /// Size in bytes of a regular file (0 otherwise).
    pub size: u64,
    /// Target of a symbolic link, as stored.
    pub target: Option<&'a [u8]>,
    /// The inode reference (for opening the file later).
    pub inode: u64,
}

/// A directory waiting to be listed.
struct Pending {
    path: String,
    dir: DirInode,
    depth: usize,
}

/// The directories entered so far, three ways: a second way in to any of them is
/// a cycle or a directory listed twice.
#[derive(Default)]
struct Visited {
    references: HashSet<u64>,
    numbers: HashSet<u32>,
    listings: HashSet<(u32, u16)>,
}

impl Visited {
    /// Records a directory; false if it was entered before.
    fn enter(&mut self, reference: u64, number: u32, dir: DirInode) -> bool {
        let fresh_ref = self.references.insert(reference);
        let fresh_number = self.numbers.insert(number);
        // An empty directory has no listing; its position may be anyone's.
        let fresh_listing = dir.size <= 3 || self.listings.insert((dir.block, dir.offset));
        fresh_ref && fresh_number && fresh_listing
    }
}

/// The walk's running totals against its limits.
struct Budget {
    limits: Limits,
    entries: usize,
    memory: usize,
}

impl Budget {
    fn charge(&mut self, path: &str, bytes: usize) -> Result<(), SqError> {
        self.entries += 1;
        self.memory = self.memory.saturating_add(bytes);
        if self.entries > self.limits.max_entries {
            return Err(SqError::Limit(format!(
                "more than {} entries (at {})",
                self.limits.max_entries,
                shorten(path)
            )));
        }
        if self.memory > self.limits.memory {
            return Err(SqError::Limit(format!(
                "the file index would take more than {} MiB ({} entries so far, at {})",
                self.limits.memory >> 20,
                self.entries,
                shorten(path)
            )));
        }
        Ok(())
    }
}

/// The first 120 bytes of a path (a hostile one may be 64 KiB long).
fn shorten(path: &str) -> String {
    if path.len() <= 120 {
        return path.to_owned();
    }
    let mut end = 120;
    while !path.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &path[..end])
}

impl Squashfs {
    /// Walks the tree from the root, calling `visit` with each path ("/" first,
    /// then parents before their entries, in no other order).
    pub fn walk(
        &self,
        visit: &mut dyn FnMut(&str, Node<'_>) -> Result<(), SqError>,
    ) -> Result<(), SqError> {
        let root_ref = self.sb.root_inode;
        let root = self
            .inode(root_ref)
            .map_err(|e| e.within("the root inode"))?;
        let InodeKind::Dir(dir) = root.kind else {
            return corrupt(format!(
                "the root inode is of type {}, not a directory",
                root.kind.basic_type()
            ));
        };
        let mut budget = Budget {
            limits: self.limits,
            entries: 0,
            memory: 0,
        };
        budget.charge("/", ENTRY_COST + DIR_COST)?;
        visit("/", node(&root.kind, root.mode, root_ref))?;
        let mut visited = Visited::default();
        visited.enter(root_ref, root.number, dir);
        let mut stack = vec![Pending {
            path: String::new(),
            dir,
            depth: 0,
        }];
        while let Some(p) = stack.pop() {
            budget.memory = budget.memory.saturating_sub(p.path.len() + DIR_COST);
            self.list(&p, &mut |name, reference| {
                let path = format!("{}/{name}", p.path);
                let inode = self
                    .inode(reference)
                    .map_err(|e| e.within(shorten(&path)))?;
                let target = match &inode.kind {
                    InodeKind::Symlink(t) => t.len(),
                    _ => 0,
                };
                budget.charge(&path, path.len() + target + ENTRY_COST)?;
                visit(&path, node(&inode.kind, inode.mode, reference))?;
                let InodeKind::Dir(dir) = inode.kind else {
                    return Ok(());
                };
                if !visited.enter(reference, inode.number, dir) {
                    return corrupt(format!(
                        "{} is a directory (inode {}) already in the tree: a cycle, or a \
                         directory listed twice",
                        shorten(&path),
                        inode.number
                    ));
                }
                if p.depth + 1 > budget.limits.max_depth {
                    return Err(SqError::Limit(format!(
                        "{} is more than {} levels deep",
                        shorten(&path),
                        budget.limits.max_depth
                    )));
                }
                budget.memory = budget.memory.saturating_add(path.len() + DIR_COST);
                stack.push(Pending {
                    path,
                    dir,
                    depth: p.depth + 1,
                });
                Ok(())
            })?;
        }
        Ok(())
    }

    /// Reads the listing of `p`, calling `entry` with each name and inode reference.
    fn list(
        &self,
        p: &Pending,
        entry: &mut dyn FnMut(&str, u64) -> Result<(), SqError>,
    ) -> Result<(), SqError> {
        let shown = if p.path.is_empty() { "/" } else { &p.path };
        let within = |e: SqError| e.within(format!("the listing of {}", shorten(shown)));
        let Some(mut left) = p.dir.size.checked_sub(3) else {
            return Err(within(SqError::Corrupt(format!(
                "a directory size of {} (at least 3)",
                p.dir.size
            ))));
        };
        if left == 0 {
            return Ok(());
        }
        let table = self.sb.directory_table();
        let mut c = Cursor::new(
            self,
            table,
            u64::from(p.dir.block),
            usize::from(p.dir.offset),
        )
        .map_err(within)?;
        let mut name = [0u8; MAX_NAME];
        while left > 0 {
            let (count, block) = header(&mut c, &mut left).map_err(within)?;
            for _ in 0..count {
                let (len, offset) = entry_head(&mut c, &mut left).map_err(within)?;
                c.read(&mut name[..len]).map_err(within)?;
                let text = check_name(&name[..len]).map_err(within)?;
                entry(&text, (u64::from(block) << 16) | u64::from(offset))?;
            }
        }
        Ok(())
    }
}

/// Reads a listing header; returns its entry count and inode block.
fn header(c: &mut Cursor<'_>, left: &mut u32) -> Result<(u32, u32), SqError> {
    take(left, HEADER_LEN)?;
    let count = c.u32()?;
    let block = c.u32()?;
    let _base = c.u32()?;
    if count >= MAX_HEADER_ENTRIES {
        return corrupt(format!(
            "a header claims {} entries (at most {MAX_HEADER_ENTRIES})",
            u64::from(count) + 1
        ));
    }
    Ok((count + 1, block))
}

/// Reads an entry up to its name; returns the name's length and the inode's
/// offset in its block.
fn entry_head(c: &mut Cursor<'_>, left: &mut u32) -> Result<(usize, u16), SqError> {
    take(left, ENTRY_LEN)?;
    let offset = c.u16()?;
    let _number_delta = c.u16()?;
    let kind = c.u16()?;
    let len = usize::from(c.u16()?) + 1;
    if !(1..=7).contains(&kind) {
        return corrupt(format!("an entry of type {kind} (1 to 7)"));
    }
    if len > MAX_NAME {
        return corrupt(format!("a name of {len} bytes (at most {MAX_NAME})"));
    }
    take(left, len as u32)?;
    Ok((len, offset))
}

/// Takes `n` bytes from what is left of the listing.
fn take(left: &mut u32, n: u32) -> Result<(), SqError> {
    *left = left.checked_sub(n).ok_or_else(|| {
        SqError::Corrupt("it ends in the middle of an entry (its directory size is wrong)".into())
    })?;
    Ok(())
}

/// A name as hybrun prints it; refuses the ones that would alias other paths.
fn check_name(raw: &[u8]) -> Result<String, SqError> {
    if raw == b"." || raw == b".." || raw.contains(&b'/') || raw.contains(&0) {
        return corrupt(format!(
            "an entry named {:?} (names cannot be \".\", \"..\" or hold '/' or NUL)",
            String::from_utf8_lossy(raw)
        ));
    }
    Ok(String::from_utf8_lossy(raw).into_owned())
}

fn node<'a>(kind: &'a InodeKind, mode: u16, inode: u64) -> Node<'a> {
    let (kind, size, target) = match kind {
        InodeKind::Dir(_) => (NodeKind::Dir, 0, None),
        InodeKind::File(f) => (NodeKind::File, f.size, None),
        InodeKind::Symlink(t) => (NodeKind::Symlink, 0, Some(t.as_slice())),
        InodeKind::Device => (NodeKind::Device, 0, None),
        InodeKind::Other => (NodeKind::Other, 0, None),
    };
    Node {
        kind,
        mode,
        size,
        target,
        inode,
    }
}
