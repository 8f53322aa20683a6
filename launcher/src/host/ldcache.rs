//! `/etc/ld.so.cache`, read as the dynamic loader reads it: the library names
//! `ldconfig` found in the directories of `/etc/ld.so.conf`, each with its path.
//! This is what `ldconfig -p` prints; reading the file directly costs no program
//! run and works on a fake tree.
//!
//! Format (glibc `sysdeps/generic/dl-cache.h`): the "new" format, magic
//! `glibc-ld.so.cache1.1`, a 48-byte header (entry count, string table length,
//! flags, extension offset), then 24-byte entries (flags, key and value string
//! offsets, OS version, hwcap); string offsets count from the start of the new
//! header. Old glibc wrote the "old" format (`ld.so-1.7.0`, 12-byte entries)
//! first, with the new one after it: then the new part is read.

use std::path::{Path, PathBuf};

const NEW_MAGIC: &[u8] = b"glibc-ld.so.cache1.1";
const OLD_MAGIC: &[u8] = b"ld.so-1.7.0";
const NEW_HEADER: usize = 48;
const NEW_ENTRY: usize = 24;
const OLD_HEADER: usize = 16;
const OLD_ENTRY: usize = 12;

/// The largest cache read (a real one is a few hundred KiB).
const MAX_CACHE_BYTES: u64 = 64 << 20;

/// `FLAG_ELF_LIBC6` with this machine's required flag: the entries the loader of
/// this machine takes (`_DL_CACHE_DEFAULT_ID`); None where hybrun does not know it.
pub fn host_flags() -> Option<i32> {
    match std::env::consts::ARCH {
        "x86_64" => Some(0x0303),
        "aarch64" => Some(0x0a03),
        "powerpc64" => Some(0x0503),
        _ => None,
    }
}

/// One entry: a library name and its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub flags: i32,
    /// "libmpich.so.12".
    pub name: String,
    /// "/lib/x86_64-linux-gnu/libmpich.so.12" (as ldconfig found it: not
    /// canonical).
    pub path: PathBuf,
    /// Non-zero for entries of hwcap subdirectories (`glibc-hwcaps/x86-64-v3`).
    pub hwcap: u64,
}

/// The loader cache's entries, in the file's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LdCache {
    pub entries: Vec<Entry>,
}

/// Why a cache file could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LdCacheError {
    #[error("not a glibc loader cache (unknown magic)")]
    Magic,
    #[error("truncated loader cache: {0}")]
    Truncated(&'static str),
}

fn u32_at(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at + 4)?.try_into().ok()?))
}

fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

fn string_at(data: &[u8], at: usize) -> Option<String> {
    let tail = data.get(at..)?;
    let end = tail.iter().position(|&b| b == 0)?;
    Some(String::from_utf8_lossy(&tail[..end]).into_owned())
}

impl LdCache {
    /// Reads a cache file; None when it does not exist or cannot be read (the
    /// loader then searches its default directories only).
    pub fn read(path: &Path) -> Option<LdCache> {
        use std::io::Read;
        let mut data = Vec::new();
        std::fs::File::open(path)
            .ok()?
            .take(MAX_CACHE_BYTES)
            .read_to_end(&mut data)
            .ok()?;
        LdCache::parse(&data).ok()
    }

    /// Parses a cache's bytes (little-endian, as on every machine hybrun runs on).
    pub fn parse(data: &[u8]) -> Result<LdCache, LdCacheError> {
        let start = if data.starts_with(NEW_MAGIC) {
            0
        } else if data.starts_with(OLD_MAGIC) {
            let old = u32_at(data, 12).ok_or(LdCacheError::Truncated("old header"))?;
            let end = OLD_HEADER + OLD_ENTRY * old as usize;
            // The new header follows, aligned like its 8-byte fields.
            let start = end.next_multiple_of(8);
            if !data.get(start..).is_some_and(|d| d.starts_with(NEW_MAGIC)) {
                return Err(LdCacheError::Magic);
            }
            start
        } else {
            return Err(LdCacheError::Magic);
        };
        let new = &data[start..];
        let count = u32_at(new, 20).ok_or(LdCacheError::Truncated("header"))? as usize;
        if new.len() < NEW_HEADER + count.saturating_mul(NEW_ENTRY) {
            return Err(LdCacheError::Truncated("entries"));
        }
        let mut entries = Vec::with_capacity(count);
        for i in 0..count {
            let at = NEW_HEADER + i * NEW_ENTRY;
            let flags = u32_at(new, at).ok_or(LdCacheError::Truncated("entry"))? as i32;
            let key = u32_at(new, at + 4).ok_or(LdCacheError::Truncated("entry"))?;
            let value = u32_at(new, at + 8).ok_or(LdCacheError::Truncated("entry"))?;
            let hwcap = u64_at(new, at + 16).ok_or(LdCacheError::Truncated("entry"))?;
            let (Some(name), Some(path)) =
                (string_at(new, key as usize), string_at(new, value as usize))
            else {
                return Err(LdCacheError::Truncated("string table"));
            };
            entries.push(Entry {
                flags,
                name,
                path: PathBuf::from(path),
                hwcap,
            });
        }
        Ok(LdCache { entries })
    }

    /// Entries for this machine (all of them where its flags are not known), as
    /// `ldconfig -p` lists them with this machine's tag.
    pub fn for_host(&self) -> impl Iterator<Item = &Entry> {
        let wanted = host_flags();
        self.entries
            .iter()
            .filter(move |e| wanted.is_none_or(|f| e.flags == f))
    }

    /// The path the loader takes from the cache for `name`: the first entry of
    /// this machine for that name outside hwcap subdirectories.
    pub fn lookup(&self, name: &str) -> Option<&Path> {
        self.for_host()
            .find(|e| e.name == name && e.hwcap == 0)
            .map(|e| e.path.as_path())
    }

    /// The paths of this machine's libraries whose name `wanted` accepts.
    pub fn paths(&self, wanted: impl Fn(&str) -> bool) -> Vec<PathBuf> {
        self.for_host()
            .filter(|e| wanted(&e.name))
            .map(|e| e.path.clone())
            .collect()
    }
}

/// Test helper: a cache file in the new format.
#[cfg(test)]
pub fn write_fake(path: &Path, entries: &[(i32, &str, &str)]) {
    let mut strings: Vec<u8> = Vec::new();
    let base = NEW_HEADER + NEW_ENTRY * entries.len();
    let mut add = |s: &str| {
        let at = base + strings.len();
        strings.extend_from_slice(s.as_bytes());
        strings.push(0);
        u32::try_from(at).expect("small")
    };
    let mut body = Vec::new();
    for (flags, name, file) in entries {
        body.extend(flags.to_le_bytes());
        body.extend(add(name).to_le_bytes());
        body.extend(add(file).to_le_bytes());
        body.extend(0u32.to_le_bytes());
        body.extend(0u64.to_le_bytes());
    }
    let mut out = NEW_MAGIC.to_vec();
    out.extend(u32::try_from(entries.len()).expect("few").to_le_bytes());
    out.extend(u32::try_from(strings.len()).expect("small").to_le_bytes());
    out.extend([2u8, 0, 0, 0]);
    out.extend([0u8; 16]);
    out.extend(body);
    out.extend(strings);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).expect("mkdir");
    }
    std::fs::write(path, out).expect("write cache");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_written_cache_reads_back() {
        let Some(flags) = host_flags() else { return };
        let tmp = tempfile::tempdir().expect("tmp");
        let file = tmp.path().join("etc/ld.so.cache");
        write_fake(
            &file,
            &[
                (flags, "libmpich.so.12", "/lib/x/libmpich.so.12"),
                (0x0001, "libold.so.1", "/lib/libold.so.1"),
                (flags, "libmpi.so.40", "/usr/lib/x/libmpi.so.40"),
                (flags, "libmpi.so.40", "/second/libmpi.so.40"),
            ],
        );
        let cache = LdCache::read(&file).expect("read");
        assert_eq!(cache.entries.len(), 4);
        assert_eq!(
            cache.lookup("libmpi.so.40"),
            Some(Path::new("/usr/lib/x/libmpi.so.40")),
            "the first entry wins"
        );
        assert_eq!(cache.lookup("libold.so.1"), None, "another machine's entry");
        assert_eq!(
            cache.paths(|n| n.starts_with("libmpi")),
            [
                PathBuf::from("/lib/x/libmpich.so.12"),
                "/usr/lib/x/libmpi.so.40".into(),
                "/second/libmpi.so.40".into()
            ]
        );
        assert_eq!(LdCache::read(&tmp.path().join("absent")), None);
        assert_eq!(LdCache::parse(b"garbage"), Err(LdCacheError::Magic));
        let bytes = std::fs::read(&file).expect("bytes");
        assert!(LdCache::parse(&bytes[..60]).is_err(), "truncated");
    }

    #[test]
    fn old_format_with_the_new_one_after_it() {
        let tmp = tempfile::tempdir().expect("tmp");
        let new_file = tmp.path().join("new");
        write_fake(&new_file, &[(0x0303, "liba.so.1", "/l/liba.so.1")]);
        let new = std::fs::read(&new_file).expect("bytes");
        // One old entry (12 bytes) after the 16-byte header: 28, aligned to 32.
        let mut data = OLD_MAGIC.to_vec();
        data.push(0);
        data.extend(1u32.to_le_bytes());
        data.extend([0u8; 12]);
        data.extend([0u8; 4]);
        // String offsets of the new part count from its own header.
        data.extend(&new);
        let cache = LdCache::parse(&data).expect("parsed");
        assert_eq!(cache.entries[0].name, "liba.so.1");
    }

    #[test]
    fn this_hosts_cache_lists_what_ldconfig_lists() {
        let Some(cache) = LdCache::read(Path::new("/etc/ld.so.cache")) else {
            return; // no loader cache on this machine
        };
        let Some(ldconfig) = ["/sbin/ldconfig", "/usr/sbin/ldconfig"]
            .iter()
            .find(|p| Path::new(p).is_file())
        else {
            return;
        };
        let out = std::process::Command::new(ldconfig)
            .arg("-p")
            .output()
            .expect("ldconfig -p runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let listed: Vec<(String, PathBuf)> = text
            .lines()
            .filter_map(|l| {
                let (left, path) = l.split_once(" => ")?;
                let name = left.split_whitespace().next()?;
                Some((name.to_owned(), PathBuf::from(path.trim())))
            })
            .collect();
        let read: Vec<(String, PathBuf)> = cache
            .entries
            .iter()
            .map(|e| (e.name.clone(), e.path.clone()))
            .collect();
        assert_eq!(read, listed);
    }
}
