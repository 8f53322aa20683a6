//! The allowed directory as an open descriptor: every file operation of the store
//! is relative to it (`openat`, `renameat`, `unlinkat`, `statat`), so a directory
//! swapped for a symbolic link after it was checked cannot redirect a write.

use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

use rustix::fs::{AtFlags, FileType, FlockOperation, Mode, OFlags, RenameFlags, Stat};

use super::StoreError;

/// Name prefix of every temporary file the store writes (images being copied, the
/// index being rewritten). Hidden, so never counted or listed as an image.
pub const TEMP_PREFIX: &str = ".hybrun-tmp-";

/// The lock file: an exclusive `flock` on it serializes the count check, the
/// rename and the index update of concurrent `hybrun image` processes.
pub const LOCK_FILE: &str = ".hybrun-lock";

/// Temporary files left by another host (the directory may be on a shared file
/// system, where this host may not see that host's locks) are removed once
/// they are this old and unlocked.
const FOREIGN_TEMP_AGE: Duration = Duration::from_secs(24 * 3600);

/// Temporary files younger than this are never removed: their creator may not
/// have taken its lock yet.
const NEW_TEMP_AGE: Duration = Duration::from_secs(10);

/// The allowed directory, open.
#[derive(Debug)]
pub(crate) struct StoreDir {
    path: PathBuf,
    label: String,
    fd: OwnedFd,
}

/// One entry of the directory, not followed if it is a symbolic link.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The name as stored (any bytes but '/' and NUL).
    pub raw: Vec<u8>,
    /// The name as UTF-8, invalid bytes replaced (for comparisons with names
    /// hybrun writes, which are always valid).
    pub name: String,
    pub stat: Stat,
}

impl Entry {
    pub fn file_type(&self) -> FileType {
        FileType::from_raw_mode(self.stat.st_mode)
    }
}

/// Held while the store is locked; dropping it (closing the descriptor) unlocks.
#[derive(Debug)]
pub(crate) struct Lock {
    _file: File,
}

/// A temporary file in the store directory, removed when dropped unless it was
/// renamed into place.
#[derive(Debug)]
pub(crate) struct TempFile<'a> {
    dir: &'a StoreDir,
    name: String,
    pub file: File,
    live: bool,
}

impl StoreDir {
    /// Opens the allowed directory `path`, refusing a symbolic link, a path that is
    /// not canonical (a link or `..` anywhere in it) and anything not a directory.
    pub fn open(path: &Path) -> Result<StoreDir, StoreError> {
        let label = path.display().to_string();
        let io_err = |action, source| StoreError::DirIo {
            dir: label.clone(),
            action,
            source,
        };
        let meta = std::fs::symlink_metadata(path).map_err(|e| io_err("look at", e))?;
        if meta.file_type().is_symlink() {
            let target = std::fs::canonicalize(path).map_or_else(
                |_| "a missing target".to_owned(),
                |t| t.display().to_string(),
            );
            return Err(StoreError::DirSymlink { dir: label, target });
        }
        if !meta.is_dir() {
            return Err(StoreError::DirNotDirectory { dir: label });
        }
        // Path equality is component by component: "/x/allowed/" equals
        // "/x/allowed", while "/x/allowed_evil" and "/x/link/../allowed" do not.
        let canonical = std::fs::canonicalize(path).map_err(|e| io_err("resolve", e))?;
        if canonical != path {
            return Err(StoreError::DirNotCanonical {
                dir: label,
                canonical: canonical.display().to_string(),
            });
        }
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io_err("open", e.into()))?;
        // The directory opened must be the one checked above, not one swapped in
        // between.
        let opened = rustix::fs::fstat(&fd).map_err(|e| io_err("look at", e.into()))?;
        if opened.st_dev != meta.dev() || opened.st_ino != meta.ino() {
            return Err(StoreError::DirChanged { dir: label });
        }
        Ok(StoreDir {
            path: canonical,
            label,
            fd,
        })
    }

    /// Fails unless the directory's path still leads to this very directory
    /// (not renamed away, not replaced): what is admitted must land where
    /// the runtimes look.
    pub fn check_still_at_path(&self) -> Result<(), StoreError> {
        let opened = rustix::fs::fstat(&self.fd).map_err(|e| self.io_err("look at", e))?;
        match std::fs::symlink_metadata(&self.path) {
            Ok(now) if now.is_dir() && (now.dev(), now.ino()) == (opened.st_dev, opened.st_ino) => {
                Ok(())
            }
            _ => Err(StoreError::DirChanged {
                dir: self.label.clone(),
            }),
        }
    }

    /// The directory's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The directory's path as text, for messages.
    pub fn label(&self) -> &str {
        &self.label
    }

    fn io_err(&self, action: &'static str, source: impl Into<io::Error>) -> StoreError {
        StoreError::DirIo {
            dir: self.label.clone(),
            action,
            source: source.into(),
        }
    }

    /// Takes the store's exclusive lock, waiting for another holder to finish.
    pub fn lock(&self) -> Result<Lock, StoreError> {
        let fd = rustix::fs::openat(
            &self.fd,
            LOCK_FILE,
            OFlags::RDWR | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(|e| self.io_err("open the lock file .hybrun-lock in", e))?;
        rustix::fs::flock(&fd, FlockOperation::LockExclusive)
            .map_err(|e| self.io_err("lock", e))?;
        Ok(Lock {
            _file: File::from(fd),
        })
    }

    /// Every entry but `.` and `..`, sorted by name; entries whose name is not
    /// UTF-8 are given with the invalid bytes replaced.
    pub fn entries(&self) -> Result<Vec<Entry>, StoreError> {
        // A fresh descriptor of "." each time: a duplicate would share the read
        // position and see no entries the second time.
        let dir = rustix::fs::Dir::read_from(&self.fd)
            .map_err(|e| self.io_err("read the entries of", e))?;
        let mut entries = Vec::new();
        for entry in dir {
            let entry = entry.map_err(|e| self.io_err("read the entries of", e))?;
            let raw = entry.file_name().to_bytes();
            if raw == b"." || raw == b".." {
                continue;
            }
            let stat =
                match rustix::fs::statat(&self.fd, entry.file_name(), AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(stat) => stat,
                    // Removed since the listing (a concurrent rm or cleanup).
                    Err(rustix::io::Errno::NOENT) => continue,
                    Err(e) => return Err(self.io_err("look at an entry of", e)),
                };
            entries.push(Entry {
                name: String::from_utf8_lossy(raw).into_owned(),
                raw: raw.to_vec(),
                stat,
            });
        }
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// The entry `name`, not followed; None if there is none.
    pub fn stat(&self, name: &str) -> Result<Option<Stat>, StoreError> {
        match rustix::fs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => Ok(Some(stat)),
            Err(rustix::io::Errno::NOENT) => Ok(None),
            Err(e) => Err(self.io_err("look at an entry of", e)),
        }
    }

    /// Opens the regular file `name` for reading, refusing a symbolic link or a
    /// special file (opened without blocking, so a FIFO cannot hang the open).
    pub fn open_regular(&self, name: &str) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let stat = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile {
            return Err(io::Error::other("not a regular file"));
        }
        Ok(File::from(fd))
    }

    /// Creates a new temporary file (`O_EXCL`, mode 0600) named after this
    /// process and host, and holds an exclusive `flock` on it for its life, so
    /// that a later operation can tell whether its owner died (see
    /// [`Self::clean_stale_temps`]).
    pub fn create_temp(&self) -> Result<TempFile<'_>, StoreError> {
        loop {
            let mut nonce = [0u8; 8];
            getrandom::fill(&mut nonce).map_err(|e| {
                self.io_err(
                    "create a temporary file in",
                    io::Error::other(e.to_string()),
                )
            })?;
            let nonce: String = nonce.iter().map(|b| format!("{b:02x}")).collect();
            let name = format!(
                "{TEMP_PREFIX}{}-{nonce}-{}",
                std::process::id(),
                host_name()
            );
            match rustix::fs::openat(
                &self.fd,
                name.as_str(),
                OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            ) {
                Ok(fd) => {
                    rustix::fs::flock(&fd, FlockOperation::LockExclusive)
                        .map_err(|e| self.io_err("lock a temporary file in", e))?;
                    return Ok(TempFile {
                        dir: self,
                        name,
                        file: File::from(fd),
                        live: true,
                    });
                }
                Err(rustix::io::Errno::EXIST) => continue,
                Err(e) => return Err(self.io_err("create a temporary file in", e)),
            }
        }
    }

    /// Removes the entry named `name` (its bytes; not a directory).
    pub fn unlink(&self, name: impl AsRef<[u8]>) -> io::Result<()> {
        let name = std::ffi::OsStr::from_bytes(name.as_ref());
        rustix::fs::unlinkat(&self.fd, name, AtFlags::empty()).map_err(Into::into)
    }

    /// Flushes the directory itself (new, renamed and removed names) to disk.
    pub fn sync(&self) -> Result<(), StoreError> {
        rustix::fs::fsync(&self.fd).map_err(|e| self.io_err("flush to disk", e))
    }

    /// Removes the temporary files whose owner is dead: nobody holds the lock
    /// its owner takes at creation (a process's locks go with it, whatever PID
    /// namespace it ran in), it is older than a few seconds (a creator takes the
    /// lock right after creating it), and it comes from this host or is older
    /// than a day (on a shared file system another host's locks may not be
    /// visible here). Returns how many.
    pub fn clean_stale_temps(&self) -> Result<usize, StoreError> {
        let host = host_name();
        let mut removed = 0;
        for entry in self.entries()? {
            if !entry.name.starts_with(TEMP_PREFIX) || !self.is_stale(&entry, &host) {
                continue;
            }
            match self.unlink(&entry.name) {
                Ok(()) => removed += 1,
                // Another process cleaned it first.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.io_err("remove a stale temporary file from", e)),
            }
        }
        if removed > 0 {
            self.sync()?;
        }
        Ok(removed)
    }
}

impl StoreDir {
    /// Whether the temporary file `entry` belongs to nobody any more.
    fn is_stale(&self, entry: &Entry, host: &str) -> bool {
        let age = SystemTime::UNIX_EPOCH
            .checked_add(Duration::from_secs(entry.stat.st_mtime.max(0) as u64))
            .and_then(|modified| SystemTime::now().duration_since(modified).ok())
            .unwrap_or_default();
        let owner_host = entry.name[TEMP_PREFIX.len()..]
            .splitn(3, '-')
            .nth(2)
            .unwrap_or("");
        if age < NEW_TEMP_AGE || (owner_host != host && age < FOREIGN_TEMP_AGE) {
            return false;
        }
        let name = std::ffi::OsStr::from_bytes(&entry.raw);
        let Ok(fd) = rustix::fs::openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        ) else {
            // Gone already, or not a file we can open: not ours to judge.
            return false;
        };
        rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive).is_ok()
    }
}

impl TempFile<'_> {
    /// The file's status now, from its descriptor.
    pub fn stat(&self) -> Result<Stat, StoreError> {
        rustix::fs::fstat(&self.file).map_err(|e| self.dir.io_err("look at a new file in", e))
    }

    /// Fails unless the temporary name still designates this very file, unchanged
    /// since `before` (same inode, size, modification and change times): the
    /// rename goes by name, and what is renamed must be what was hashed.
    pub fn check_unchanged(&self, before: &Stat) -> Result<(), StoreError> {
        let now = self.dir.stat(&self.name)?;
        let same = now.is_some_and(|now| {
            (now.st_dev, now.st_ino, now.st_size) == (before.st_dev, before.st_ino, before.st_size)
                && (now.st_mtime, now.st_mtime_nsec) == (before.st_mtime, before.st_mtime_nsec)
                && (now.st_ctime, now.st_ctime_nsec) == (before.st_ctime, before.st_ctime_nsec)
        });
        if same {
            Ok(())
        } else {
            Err(StoreError::CandidateChanged {
                temp: self.name.clone(),
                dir: self.dir.label.clone(),
            })
        }
    }

    /// Renames the file to `name`, replacing what is there, and flushes the
    /// directory.
    pub fn persist(self, name: &str) -> Result<(), StoreError> {
        self.rename(name, false)
    }

    /// Renames the file to `name`, which must not exist (the caller holds the lock
    /// and checked; `RENAME_NOREPLACE` also stops writers that do not lock), and
    /// flushes the directory.
    pub fn persist_new(self, name: &str) -> Result<(), StoreError> {
        self.rename(name, true)
    }

    fn rename(mut self, name: &str, exclusive: bool) -> Result<(), StoreError> {
        let fd = &self.dir.fd;
        let renamed = if exclusive {
            match rustix::fs::renameat_with(
                fd,
                self.name.as_str(),
                fd,
                name,
                RenameFlags::NOREPLACE,
            ) {
                // File systems without RENAME_NOREPLACE (some network ones): the
                // lock and the check already made it exclusive among hybruns.
                Err(rustix::io::Errno::INVAL | rustix::io::Errno::NOSYS) => {
                    rustix::fs::renameat(fd, self.name.as_str(), fd, name)
                }
                other => other,
            }
        } else {
            rustix::fs::renameat(fd, self.name.as_str(), fd, name)
        };
        match renamed {
            Err(rustix::io::Errno::EXIST) => Err(StoreError::Exists {
                name: name.to_owned(),
                dir: self.dir.label.clone(),
            }),
            Err(e) => Err(self.dir.io_err("rename a new file into", e)),
            Ok(()) => {
                self.live = false;
                self.dir.sync()
            }
        }
    }
}

impl Drop for TempFile<'_> {
    fn drop(&mut self) {
        if self.live {
            // Best effort: if this fails, the next operation removes it once this
            // process is gone.
            let _ = self.dir.unlink(&self.name);
        }
    }
}

/// This host's name, as it appears in temporary file names ('-' kept: the host is
/// the last field).
fn host_name() -> String {
    crate::host::safe_name(&rustix::system::uname().nodename().to_string_lossy())
}

/// The image name that `path` designates inside the allowed directory `dir`, or
/// None when it is not directly inside it. The comparison is component by
/// component on the canonical parent, so `/x/allowed_evil/a.sif` is not in
/// `/x/allowed`, and a symbolic link inside `dir` is not followed out of it.
pub fn name_in_dir(dir: &Path, path: &Path) -> Option<String> {
    let name = match path.components().next_back()? {
        Component::Normal(name) => name,
        _ => return None,
    };
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty())?;
    let parent = std::fs::canonicalize(parent).ok()?;
    if parent.components().ne(dir.components()) {
        return None;
    }
    let name = name.to_str()?;
    super::check_name(name).ok()?;
    Some(name.to_owned())
}
