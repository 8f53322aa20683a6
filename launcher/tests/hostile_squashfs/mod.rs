//! Builds SquashFS 4.0 images byte by byte, including ones no honest tool writes:
//! directory entries that point back up the tree or twice at one child, trees
//! thousands of levels deep, tables of compressed zeros (decompression bombs),
//! tables and counts that reach past the end of the file.
//!
//! The layout is mksquashfs's (superblock, data, inode table, directory table, ID
//! table) with uncompressed metadata blocks, so that every inode reference is known
//! before anything is written: the byte at position `p` of the inode table lies in
//! block `p / 8192`, which starts at `(p / 8192) * 8194` (two bytes of header per
//! block). Bombs put blocks of zlib-compressed zeros in front of a table.
//!
//! Used by `image_hostile.rs`; `scripts/make-hostile-images DIR` writes every
//! fixture to DIR, bare and wrapped in a SIF (the fuzz corpus seeds, see
//! launcher/fuzz/README.md).

#![allow(dead_code)]

use std::io::Write;

/// Data block size (the smallest SquashFS allows, so that multi-block files and
/// the fixtures stay a few KiB: small fuzz seeds) and its log.
pub const BLOCK_SIZE: u32 = 1 << 12;
const BLOCK_LOG: u16 = 12;
/// Bytes of a metadata block once decompressed.
const META: usize = 8192;
const SUPERBLOCK: usize = 96;
const UNCOMPRESSED_META: u16 = 0x8000;
const UNCOMPRESSED_DATA: u32 = 1 << 24;
const NO_FRAGMENT: u32 = u32::MAX;
const NONE: u64 = u64::MAX;
/// Superblock flags: no fragments, duplicates removed, no xattrs (as mksquashfs
/// -no-fragments -no-xattrs -no-exports writes).
const FLAGS: u16 = 0x0010 | 0x0040 | 0x0200;

/// Byte offsets of superblock fields (for patching).
pub mod sb {
    pub const INODE_COUNT: usize = 4;
    pub const FRAGMENT_COUNT: usize = 16;
    pub const FLAGS: usize = 24;
    pub const ID_COUNT: usize = 26;
    pub const ROOT_INODE: usize = 32;
    pub const BYTES_USED: usize = 40;
    pub const ID_TABLE: usize = 48;
    pub const INODE_TABLE: usize = 64;
    pub const DIRECTORY_TABLE: usize = 72;
    pub const FRAGMENT_TABLE: usize = 80;
    pub const EXPORT_TABLE: usize = 88;
}

/// What a node of the tree is.
#[derive(Debug, Clone)]
pub enum Body {
    /// A directory: its entries, in the order written (sorted by the builder's user).
    Dir(Vec<(String, usize)>),
    File(Vec<u8>),
    /// A regular file that claims `size` bytes (extended inode, no data blocks
    /// stored: a hostile block count).
    ClaimedFile(u64),
    Symlink(String),
}

/// A tree of nodes; node 0 is the root. An entry may name any node, so a node can
/// be listed twice (a hard link, or for a directory, a hostile image).
#[derive(Debug, Clone)]
pub struct Tree {
    pub nodes: Vec<Body>,
}

impl Default for Tree {
    fn default() -> Self {
        Tree {
            nodes: vec![Body::Dir(Vec::new())],
        }
    }
}

impl Tree {
    /// Adds `body` as `name` in directory `parent`; returns its node.
    pub fn add(&mut self, parent: usize, name: &str, body: Body) -> usize {
        self.nodes.push(body);
        let node = self.nodes.len() - 1;
        self.link(parent, name, node);
        node
    }

    /// Lists the existing `node` as `name` in directory `parent`.
    pub fn link(&mut self, parent: usize, name: &str, node: usize) {
        match &mut self.nodes[parent] {
            Body::Dir(entries) => entries.push((name.to_owned(), node)),
            other => panic!("node {parent} is not a directory: {other:?}"),
        }
    }
}

/// How the bomb's zero blocks are compressed (the superblock says so too).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Compressor {
    #[default]
    Gzip,
    Zstd,
}

impl Compressor {
    fn id(self) -> u16 {
        match self {
            Compressor::Gzip => 1,
            Compressor::Zstd => 6,
        }
    }
}

/// Decompression bombs: blocks of compressed zeros put in front of a table.
#[derive(Debug, Clone, Copy, Default)]
pub struct Bomb {
    pub compressor: Compressor,
    /// Zero blocks in front of the inode table.
    pub inode_blocks: usize,
    /// Zero blocks in front of the directory table.
    pub directory_blocks: usize,
    /// The root inode reference points at the first zero block.
    pub root_in_bomb: bool,
}

/// A built image, open to patching before it is padded.
#[derive(Debug, Clone)]
pub struct Built {
    pub bytes: Vec<u8>,
    /// Where each node's inode starts in the uncompressed inode table.
    inode_at: Vec<usize>,
    /// Where the first uncompressed inode block starts in the file.
    inode_blocks_at: usize,
}

impl Built {
    /// Overwrites bytes at `at` in the file.
    pub fn poke(&mut self, at: usize, value: &[u8]) {
        self.bytes[at..at + value.len()].copy_from_slice(value);
    }

    /// Overwrites bytes of `node`'s inode, `field` bytes after its start (block
    /// headers skipped).
    pub fn poke_inode(&mut self, node: usize, field: usize, value: &[u8]) {
        for (i, b) in value.iter().enumerate() {
            let p = self.inode_at[node] + field + i;
            let at = self.inode_blocks_at + (p / META) * (META + 2) + 2 + p % META;
            self.bytes[at] = *b;
        }
    }

    /// The image, padded to 4 KiB as mksquashfs pads it.
    pub fn finish(mut self) -> Vec<u8> {
        let len = self.bytes.len().next_multiple_of(4096);
        self.bytes.resize(len, 0);
        self.bytes
    }
}

fn le16(v: u16) -> [u8; 2] {
    v.to_le_bytes()
}

/// One metadata block of 8 KiB of zeros, compressed: 33 bytes with zlib, 13 with
/// zstd (a frame of one RLE block, RFC 8878: magic, a single-segment header with
/// a 2-byte content size of 8192 - 256, a last RLE block of 8192 bytes, the byte).
pub fn zero_block(compressor: Compressor) -> Vec<u8> {
    let data = match compressor {
        Compressor::Gzip => {
            let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
            z.write_all(&[0u8; META]).expect("compress");
            z.finish().expect("compress")
        }
        Compressor::Zstd => {
            let block = 1 | (1 << 1) | ((META as u32) << 3);
            let mut f = vec![0x28, 0xb5, 0x2f, 0xfd, 0x60];
            f.extend_from_slice(&((META - 256) as u16).to_le_bytes());
            f.extend_from_slice(&block.to_le_bytes()[..3]);
            f.push(0);
            f
        }
    };
    let mut block = le16(data.len() as u16).to_vec();
    block.extend_from_slice(&data);
    block
}

/// `table` as uncompressed metadata blocks.
fn metadata_blocks(table: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(table.len() + table.len() / META * 2 + 2);
    for chunk in table.chunks(META) {
        out.extend_from_slice(&le16(UNCOMPRESSED_META | chunk.len() as u16));
        out.extend_from_slice(chunk);
    }
    out
}

/// The reference (block start << 16 | offset) of uncompressed position `p` of a
/// table whose uncompressed blocks start `prefix` bytes into it.
fn reference(prefix: usize, p: usize) -> u64 {
    (((prefix + (p / META) * (META + 2)) as u64) << 16) | (p % META) as u64
}

fn basic_type(body: &Body) -> u16 {
    match body {
        Body::Dir(_) => 1,
        Body::File(_) | Body::ClaimedFile(_) => 2,
        Body::Symlink(_) => 3,
    }
}

fn inode_len(body: &Body) -> usize {
    match body {
        Body::Dir(_) => 40,
        Body::File(data) => 32 + 4 * data.len().div_ceil(BLOCK_SIZE as usize),
        Body::ClaimedFile(_) => 56,
        Body::Symlink(t) => 24 + t.len(),
    }
}

/// A directory listing: headers of up to 256 entries that share an inode block.
fn listing(tree: &Tree, entries: &[(String, usize)], refs: &[u64]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < entries.len() {
        let block = refs[entries[i].1] >> 16;
        let base = entries[i].1 as u32 + 1;
        let run = entries[i..]
            .iter()
            .take(256)
            .take_while(|(_, n)| refs[*n] >> 16 == block)
            .count();
        out.extend_from_slice(&(run as u32 - 1).to_le_bytes());
        out.extend_from_slice(&(block as u32).to_le_bytes());
        out.extend_from_slice(&base.to_le_bytes());
        for (name, node) in &entries[i..i + run] {
            out.extend_from_slice(&le16((refs[*node] & 0xffff) as u16));
            out.extend_from_slice(&((*node as u32 + 1).wrapping_sub(base) as u16).to_le_bytes());
            out.extend_from_slice(&le16(basic_type(&tree.nodes[*node])));
            out.extend_from_slice(&le16(name.len() as u16 - 1));
            out.extend_from_slice(name.as_bytes());
        }
        i += run;
    }
    out
}

fn inode_header(kind: u16, mode: u16, number: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(16);
    out.extend_from_slice(&le16(kind));
    out.extend_from_slice(&le16(mode));
    out.extend_from_slice(&[0; 4]); // uid and gid index 0
    out.extend_from_slice(&0u32.to_le_bytes()); // mtime
    out.extend_from_slice(&number.to_le_bytes());
    out
}

/// Where each directory's listing is (reference, size + 3) and its parent's
/// inode number (the root's parent: inode count + 1).
struct Directories {
    listed: Vec<(u64, u32)>,
    parents: Vec<u32>,
}

/// The inodes of `tree`, in node order (inode number = node + 1).
fn inode_table(tree: &Tree, data_at: &[usize], dirs: &Directories) -> Vec<u8> {
    let mut inodes = Vec::new();
    for (n, body) in tree.nodes.iter().enumerate() {
        let number = n as u32 + 1;
        let mut put = |v: &[u8]| inodes.extend_from_slice(v);
        match body {
            Body::Dir(entries) => {
                let subdirs = entries
                    .iter()
                    .filter(|(_, c)| matches!(tree.nodes[*c], Body::Dir(_)))
                    .count();
                let (at, size) = dirs.listed[n];
                put(&inode_header(8, 0o755, number));
                put(&(2 + subdirs as u32).to_le_bytes());
                put(&size.to_le_bytes());
                put(&((at >> 16) as u32).to_le_bytes());
                put(&dirs.parents[n].to_le_bytes());
                put(&le16(0)); // no directory index
                put(&le16((at & 0xffff) as u16));
                put(&u32::MAX.to_le_bytes()); // no xattrs
            }
            Body::File(data) => {
                put(&inode_header(2, 0o644, number));
                put(&(data_at[n] as u32).to_le_bytes());
                put(&NO_FRAGMENT.to_le_bytes());
                put(&0u32.to_le_bytes());
                put(&(data.len() as u32).to_le_bytes());
                for chunk in data.chunks(BLOCK_SIZE as usize) {
                    put(&(UNCOMPRESSED_DATA | chunk.len() as u32).to_le_bytes());
                }
            }
            Body::ClaimedFile(size) => {
                put(&inode_header(9, 0o644, number));
                put(&(SUPERBLOCK as u64).to_le_bytes());
                put(&size.to_le_bytes());
                put(&0u64.to_le_bytes()); // sparse bytes
                put(&1u32.to_le_bytes());
                put(&NO_FRAGMENT.to_le_bytes());
                put(&0u32.to_le_bytes());
                put(&u32::MAX.to_le_bytes());
            }
            Body::Symlink(target) => {
                put(&inode_header(3, 0o777, number));
                put(&1u32.to_le_bytes());
                put(&(target.len() as u32).to_le_bytes());
                put(target.as_bytes());
            }
        }
    }
    inodes
}

/// Table positions the superblock records.
struct Positions {
    root: u64,
    used: u64,
    id_table: u64,
    inode_table: u64,
    directory_table: u64,
    id_block: u64,
}

fn superblock(inodes: u32, compressor: Compressor, at: &Positions) -> Vec<u8> {
    let mut sb = Vec::with_capacity(SUPERBLOCK);
    sb.extend_from_slice(b"hsqs");
    sb.extend_from_slice(&inodes.to_le_bytes());
    sb.extend_from_slice(&0u32.to_le_bytes()); // mtime
    sb.extend_from_slice(&BLOCK_SIZE.to_le_bytes());
    sb.extend_from_slice(&0u32.to_le_bytes()); // fragments
    sb.extend_from_slice(&le16(compressor.id()));
    sb.extend_from_slice(&le16(BLOCK_LOG));
    sb.extend_from_slice(&le16(FLAGS));
    sb.extend_from_slice(&le16(1)); // one ID
    sb.extend_from_slice(&le16(4));
    sb.extend_from_slice(&le16(0));
    for v in [
        at.root,
        at.used,
        at.id_table,
        NONE, // xattrs
        at.inode_table,
        at.directory_table,
        at.id_block, // no fragments: the (empty) lookup table ends where IDs start
        NONE,        // no export table
    ] {
        sb.extend_from_slice(&v.to_le_bytes());
    }
    sb
}

/// Builds `tree` into a SquashFS image (gzip or zstd, 4 KiB blocks, metadata
/// stored uncompressed except for `bomb`'s zero blocks).
pub fn build(tree: &Tree, bomb: Bomb) -> Built {
    let count = tree.nodes.len();
    let mut bytes = vec![0u8; SUPERBLOCK];
    // File data: uncompressed blocks, no fragments.
    let mut data_at = vec![0usize; count];
    for (n, body) in tree.nodes.iter().enumerate() {
        if let Body::File(data) = body {
            data_at[n] = bytes.len();
            bytes.extend_from_slice(data);
        }
    }
    let zero = zero_block(bomb.compressor);
    let mut inode_at = Vec::with_capacity(count);
    let mut p = 0;
    for body in &tree.nodes {
        inode_at.push(p);
        p += inode_len(body);
    }
    let inode_prefix = zero.len() * bomb.inode_blocks;
    let refs: Vec<u64> = inode_at
        .iter()
        .map(|&p| reference(inode_prefix, p))
        .collect();
    // Directory listings, then the inodes that point at them.
    let mut listings = Vec::new();
    let mut dirs = Directories {
        listed: vec![(0, 0); count],
        parents: vec![count as u32 + 1; count],
    };
    for (n, body) in tree.nodes.iter().enumerate() {
        if let Body::Dir(entries) = body {
            let at = reference(zero.len() * bomb.directory_blocks, listings.len());
            let list = listing(tree, entries, &refs);
            dirs.listed[n] = (at, list.len() as u32 + 3);
            listings.extend_from_slice(&list);
            for (_, child) in entries {
                dirs.parents[*child] = n as u32 + 1;
            }
        }
    }
    let inodes = inode_table(tree, &data_at, &dirs);
    let inode_table = bytes.len();
    bytes.extend(zero.iter().cycle().take(inode_prefix));
    let inode_blocks_at = bytes.len();
    bytes.extend_from_slice(&metadata_blocks(&inodes));
    let directory_table = bytes.len();
    bytes.extend(zero.iter().cycle().take(zero.len() * bomb.directory_blocks));
    bytes.extend_from_slice(&metadata_blocks(&listings));
    // The ID table: one ID (0), its block, then the one-entry lookup table.
    let id_block = bytes.len();
    bytes.extend_from_slice(&metadata_blocks(&0u32.to_le_bytes()));
    let id_table = bytes.len();
    bytes.extend_from_slice(&(id_block as u64).to_le_bytes());
    let at = Positions {
        root: if bomb.root_in_bomb { 0 } else { refs[0] },
        used: bytes.len() as u64,
        id_table: id_table as u64,
        inode_table: inode_table as u64,
        directory_table: directory_table as u64,
        id_block: id_block as u64,
    };
    bytes[..SUPERBLOCK].copy_from_slice(&superblock(count as u32, bomb.compressor, &at));
    Built {
        bytes,
        inode_at,
        inode_blocks_at,
    }
}

/// A small honest tree: /etc/os-release, /bin/sh -> busybox, /usr/lib/x (three
/// blocks).
pub fn small_tree() -> Tree {
    let mut t = Tree::default();
    let bin = t.add(0, "bin", Body::Dir(Vec::new()));
    let etc = t.add(0, "etc", Body::Dir(Vec::new()));
    let usr = t.add(0, "usr", Body::Dir(Vec::new()));
    t.add(bin, "busybox", Body::File(b"\x7fELF not really".to_vec()));
    t.add(bin, "sh", Body::Symlink("busybox".into()));
    t.add(
        etc,
        "os-release",
        Body::File(b"ID=hostile\nVERSION_ID=1\n".to_vec()),
    );
    let lib = t.add(usr, "lib", Body::Dir(Vec::new()));
    t.add(lib, "x", Body::File(vec![b'x'; 9000]));
    t
}

/// A hostile image: its file name stem, what the test expects the error to say,
/// and its bytes.
pub struct Fixture {
    pub name: &'static str,
    /// Words the one error line must contain (any of them).
    pub says: &'static [&'static str],
    pub bytes: Vec<u8>,
}

/// Metadata bomb: `blocks` zstd blocks of 8 KiB of zeros (13 bytes each) as the
/// inode table, the root inode in the first of them, and a quarter as many in front
/// of the directory table. 40,000 blocks make a 650 KB image whose tables
/// decompress to 410 MB; 620,000 make 10 MB that decompress to 6.3 GB.
pub fn metadata_bomb(blocks: usize) -> Vec<u8> {
    let bomb = Bomb {
        compressor: Compressor::Zstd,
        inode_blocks: blocks,
        directory_blocks: blocks / 4,
        root_in_bomb: true,
    };
    let mut t = Tree::default();
    t.add(0, "f", Body::File(b"data".to_vec()));
    build(&t, bomb).finish()
}

/// /a/b/up is the directory /a (the grandparent of the entry).
pub fn grandparent_cycle() -> Vec<u8> {
    let mut t = Tree::default();
    let a = t.add(0, "a", Body::Dir(Vec::new()));
    let b = t.add(a, "b", Body::Dir(Vec::new()));
    t.add(b, "f", Body::File(b"data".to_vec()));
    t.link(b, "up", a);
    build(&t, Bomb::default()).finish()
}

/// `levels` directories, each listing the next twice (as `x` and `y`): 2^levels
/// paths from a few KiB.
pub fn doubled_children(levels: usize) -> Vec<u8> {
    let mut t = Tree::default();
    let mut dir = 0;
    for _ in 0..levels {
        t.nodes.push(Body::Dir(Vec::new()));
        let child = t.nodes.len() - 1;
        t.link(dir, "x", child);
        t.link(dir, "y", child);
        dir = child;
    }
    t.add(dir, "leaf", Body::File(b"leaf".to_vec()));
    build(&t, Bomb::default()).finish()
}

/// A chain of `depth` nested directories named `d`.
pub fn deep_tree(depth: usize) -> Vec<u8> {
    let mut t = Tree::default();
    let mut dir = 0;
    for _ in 0..depth {
        dir = t.add(dir, "d", Body::Dir(Vec::new()));
    }
    build(&t, Bomb::default()).finish()
}

/// The root directory's listing starts far past the end of the directory table.
pub fn listing_past_end() -> Vec<u8> {
    let mut b = build(&small_tree(), Bomb::default());
    // Extended directory inode: block_index is 8 bytes after the 16-byte header.
    b.poke_inode(0, 16 + 8, &0x7fff_0000u32.to_le_bytes());
    b.finish()
}

/// The root directory says its listing is 4 GiB long.
pub fn listing_size_overflow() -> Vec<u8> {
    let mut b = build(&small_tree(), Bomb::default());
    b.poke_inode(0, 16 + 4, &u32::MAX.to_le_bytes());
    b.finish()
}

/// 2^32-1 fragments: their lookup table (64 MiB) would reach far past the file.
pub fn fragment_count_overflow() -> Vec<u8> {
    let mut b = build(&small_tree(), Bomb::default());
    b.poke(sb::FRAGMENT_COUNT, &u32::MAX.to_le_bytes());
    b.poke(sb::FLAGS, &le16(FLAGS & !0x0010));
    b.finish()
}

/// 2^32-1 inodes and an export table for all of them, past the end of the file.
pub fn inode_count_overflow() -> Vec<u8> {
    let mut b = build(&small_tree(), Bomb::default());
    let id_block = u64::from_le_bytes(
        b.bytes[sb::FRAGMENT_TABLE..sb::FRAGMENT_TABLE + 8]
            .try_into()
            .expect("8 bytes"),
    );
    b.poke(sb::INODE_COUNT, &u32::MAX.to_le_bytes());
    b.poke(sb::EXPORT_TABLE, &id_block.to_le_bytes());
    b.poke(sb::FLAGS, &le16(FLAGS | 0x0080));
    b.finish()
}

/// /usr/lib/y claims 2^64-1 bytes: a block list of 2^52 entries.
pub fn file_size_overflow() -> Vec<u8> {
    let mut t = small_tree();
    let lib = t
        .nodes
        .iter()
        .position(|b| matches!(b, Body::Dir(e) if e.iter().any(|(n, _)| n == "x")))
        .expect("/usr/lib");
    t.add(lib, "y", Body::ClaimedFile(u64::MAX));
    build(&t, Bomb::default()).finish()
}

/// A directory header that claims 2^32 entries.
pub fn header_count_overflow() -> Vec<u8> {
    let mut b = build(&small_tree(), Bomb::default());
    let dir_table = u64::from_le_bytes(
        b.bytes[sb::DIRECTORY_TABLE..sb::DIRECTORY_TABLE + 8]
            .try_into()
            .expect("8 bytes"),
    ) as usize;
    // The root's listing is the first one: its first header's count.
    b.poke(dir_table + 2, &u32::MAX.to_le_bytes());
    b.finish()
}

/// One directory listing `n` names for one file (hard links): a few bytes per
/// entry on disk, a path and an index entry each in memory.
pub fn wide_directory(n: usize) -> Vec<u8> {
    let mut t = Tree::default();
    let dir = t.add(0, "wide", Body::Dir(Vec::new()));
    let file = t.add(dir, "0000000", Body::File(b"x".to_vec()));
    for i in 1..n {
        t.link(dir, &format!("{i:07}"), file);
    }
    build(&t, Bomb::default()).finish()
}

/// Every hostile fixture, with what its error must name.
pub fn fixtures() -> Vec<Fixture> {
    vec![
        Fixture {
            name: "bomb-650k",
            says: &["inode"],
            bytes: metadata_bomb(40_000),
        },
        Fixture {
            name: "bomb-10m",
            says: &["inode"],
            bytes: metadata_bomb(620_000),
        },
        Fixture {
            name: "cycle-grandparent",
            says: &["cycle", "twice"],
            bytes: grandparent_cycle(),
        },
        Fixture {
            name: "doubled-40",
            says: &["cycle", "twice"],
            bytes: doubled_children(40),
        },
        Fixture {
            name: "deep-20000",
            says: &["levels deep", "deeper"],
            bytes: deep_tree(20_000),
        },
        Fixture {
            name: "listing-past-end",
            says: &["past the end", "outside"],
            bytes: listing_past_end(),
        },
        Fixture {
            name: "listing-size-overflow",
            says: &["past the end", "outside"],
            bytes: listing_size_overflow(),
        },
        Fixture {
            name: "fragment-count-overflow",
            says: &["fragment"],
            bytes: fragment_count_overflow(),
        },
        Fixture {
            name: "inode-count-overflow",
            says: &["export", "inode count"],
            bytes: inode_count_overflow(),
        },
        Fixture {
            name: "file-size-overflow",
            says: &["block list", "size"],
            bytes: file_size_overflow(),
        },
        Fixture {
            name: "header-count-overflow",
            says: &["entries", "header"],
            bytes: header_count_overflow(),
        },
    ]
}
