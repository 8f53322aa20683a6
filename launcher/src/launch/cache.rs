//! The on-disk cache of what a launch derives from files that did not change:
//! the compatibility gate's judgement of an image against this host's MPI, the
//! `LD_LIBRARY_PATH` an image sets for itself. `hybrun exec` runs on every rank
//! of a job, and reading an MPI library's ELF tables and strings each time
//! (some 10 ms) would cost more than the launch itself.
//!
//! A key hashes everything the answer depends on, each file by its identity
//! (device, inode, size, modification and change times: a copy, a rewrite or a
//! package upgrade changes at least one), and hybrun's own executable (a new
//! build may judge differently). A directory image is keyed by every entry in
//! it. Entries are JSON files `KIND-KEY.json` in the cache directory; one that
//! cannot be read or written only costs time, never an error.

use std::fs::Metadata;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;
use serde::de::DeserializeOwned;
use sha2::{Digest, Sha256};

/// A cache key being built.
pub struct Key(Sha256);

impl Key {
    /// A key of entries of `kind` ("gate", "image-env", ...), for this build of
    /// hybrun.
    pub fn new(kind: &str) -> Key {
        let mut key = Key(Sha256::new());
        key.text(kind);
        match std::env::current_exe().and_then(std::fs::metadata) {
            Ok(m) => key.metadata(&m),
            // Without knowing which build this is, never share entries.
            Err(_) => key.text(&format!("pid {}", std::process::id())),
        }
        key
    }

    pub fn text(&mut self, text: &str) {
        self.0.update((text.len() as u64).to_le_bytes());
        self.0.update(text.as_bytes());
    }

    /// A file (or directory itself) by identity; a missing one counts as such.
    /// Without its ctime: bind mode hard-links the host's libraries into its
    /// bundle, which changes their ctime (the link count), so a key with it
    /// would miss the entry the first launch just wrote; a library replaced or
    /// rewritten still changes its inode, size or mtime.
    pub fn file(&mut self, path: &Path) {
        self.text(&path.to_string_lossy());
        match std::fs::metadata(path) {
            Ok(m) => self.numbers(&identity(&m)),
            Err(_) => self.text("absent"),
        }
    }

    /// An image: a file by identity, a directory by every entry in it (an image
    /// directory's own times do not change when a file deep inside does).
    pub fn image(&mut self, path: &Path) -> std::io::Result<()> {
        let top = std::fs::metadata(path)?;
        self.text(&path.to_string_lossy());
        self.metadata(&top);
        if !top.is_dir() {
            return Ok(());
        }
        let mut stack = vec![path.to_path_buf()];
        while let Some(dir) = stack.pop() {
            // In the file system's own order: stable while the directory does
            // not change (and a change is a new key anyway).
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let meta = entry.metadata()?; // the entry itself, links not followed
                self.text(&entry.path().to_string_lossy());
                self.metadata(&meta);
                if meta.is_dir() {
                    stack.push(entry.path());
                } else if meta.is_symlink() {
                    self.text(&std::fs::read_link(entry.path())?.to_string_lossy());
                }
            }
        }
        Ok(())
    }

    fn metadata(&mut self, m: &Metadata) {
        self.numbers(&identity(m));
        self.numbers(&[m.ctime() as u64, m.ctime_nsec() as u64]);
    }

    fn numbers(&mut self, numbers: &[u64]) {
        for n in numbers {
            self.0.update(n.to_le_bytes());
        }
    }

    pub fn finish(self) -> String {
        hybrun_core::sys::hex(&self.0.finalize())
    }
}

/// A file's identity: device, inode, size, mode and modification time.
fn identity(m: &Metadata) -> [u64; 6] {
    [
        m.dev(),
        m.ino(),
        m.len(),
        u64::from(m.mode()),
        m.mtime() as u64,
        m.mtime_nsec() as u64,
    ]
}

fn entry(dir: &Path, kind: &str, key: &str) -> std::path::PathBuf {
    dir.join(format!("{kind}-{key}.json"))
}

/// The entry of `kind` under `key`, if there is a readable one.
pub fn read<T: DeserializeOwned>(dir: &Path, kind: &str, key: &str) -> Option<T> {
    let bytes = std::fs::read(entry(dir, kind, key)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Stores an entry (atomically: a temporary file renamed into place, so a
/// reader on another rank never sees half of one). Failures are ignored.
pub fn write<T: Serialize>(dir: &Path, kind: &str, key: &str, value: &T) {
    let store = || -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut temp = tempfile::NamedTempFile::new_in(dir)?;
        temp.write_all(&serde_json::to_vec(value).map_err(std::io::Error::other)?)?;
        temp.persist(entry(dir, kind, key)).map_err(|e| e.error)?;
        Ok(())
    };
    let _ = store();
}

/// The entry of `kind` under `key` in `dir`, or `compute`'s answer, stored
/// there when it is Ok. Without a directory or a key, `compute` alone.
pub fn through<T, E>(
    dir: Option<&Path>,
    kind: &str,
    key: Option<&str>,
    compute: impl FnOnce() -> Result<T, E>,
) -> Result<T, E>
where
    T: Serialize + DeserializeOwned,
{
    let Some((dir, key)) = dir.zip(key) else {
        return compute();
    };
    if let Some(hit) = read(dir, kind, key) {
        return Ok(hit);
    }
    let value = compute()?;
    write(dir, kind, key, &value);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image_key(path: &Path) -> String {
        let mut k = Key::new("test");
        k.image(path).unwrap();
        k.finish()
    }

    #[test]
    fn a_change_deep_in_a_directory_image_changes_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("usr/lib");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::write(lib.join("libmpi.so.12"), b"one").unwrap();
        let before = image_key(dir.path());
        assert_eq!(
            image_key(dir.path()),
            before,
            "stable while nothing changes"
        );
        std::fs::write(lib.join("libmpi.so.12"), b"two").unwrap();
        let rewritten = image_key(dir.path());
        assert_ne!(rewritten, before);
        std::fs::write(lib.join("libother.so.1"), b"").unwrap();
        assert_ne!(image_key(dir.path()), rewritten);
    }

    #[test]
    fn entries_round_trip_and_missing_ones_are_none() {
        let dir = tempfile::tempdir().unwrap();
        let mut k = Key::new("test");
        k.file(Path::new("/nonexistent/file"));
        let key = k.finish();
        assert_eq!(read::<Vec<String>>(dir.path(), "test", &key), None);
        write(dir.path(), "test", &key, &vec!["a".to_owned()]);
        assert_eq!(
            read::<Vec<String>>(dir.path(), "test", &key),
            Some(vec!["a".to_owned()])
        );
        // An unwritable directory is no error.
        write(Path::new("/proc/hybrun-no"), "test", &key, &1);
    }
}
