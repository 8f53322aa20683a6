//! The allowed-directory store: `hybrun image cp|ls|rm|verify`.
//!
//! On a site where Singularity/Apptainer run images only from a per-user allowed
//! directory, this is the copy tool's side of it: an image enters the directory
//! only as a regular file (opened with `O_NOFOLLOW`, checked on the descriptor),
//! only when it is a valid SIF, only under an acceptable name, only when the
//! site's scanner passes it and only while the directory holds fewer than the
//! limit. Its SHA-256, computed in the same pass as the copy, goes into an index
//! that `verify` checks later.
//!
//! Crash safety: the copy is a temporary file in the directory (`.hybrun-tmp-PID-
//! NONCE-HOST`, created with `O_EXCL`), flushed and renamed into place, then the
//! directory is flushed. A process killed mid-copy leaves only such a file, which
//! is never counted as an image and is removed by the next operation once its
//! owner is dead. The count check, the rename and the index update happen under
//! an exclusive `flock` on `.hybrun-lock`, so two copies racing for the last slot
//! cannot both win.

mod admission;
mod copy;
mod dir;
mod index;
mod policy;
mod scan;

use std::path::Path;

pub use admission::{Admission, Recheck, Refusal};
pub use dir::{LOCK_FILE, TEMP_PREFIX, name_in_dir};
pub use index::{INDEX_FILE, Identity, Index, IndexEntry};
pub use policy::{ALLOWED_DIR_ENV, MAX_NAME_LEN, Policy, check_name, display_name, escape_name};
pub use scan::{IMAGE_PLACEHOLDER, ScanRecord};

use dir::{Entry, StoreDir};
use rustix::fs::FileType;

use crate::site::SiteError;
use hybrun_sif::SifError;

/// Everything that can go wrong in the store. Each message names the file or
/// directory and says what to do.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Site(#[from] SiteError),

    #[error(
        "no allowed directory: {why}; set `dir` in the [images] section of the site file \
         ({site}), or export {ALLOWED_DIR_ENV}=/path/to/your/allowed/dir"
    )]
    NoDirectory { site: String, why: String },

    #[error(
        "--dir {dir}: refused: the site's allowed directory is set in {system}, which users \
         cannot override; drop --dir"
    )]
    DirOverride { dir: String, system: String },

    #[error("{dir} (from {from}): the allowed directory must be an absolute path")]
    DirNotAbsolute { dir: String, from: String },

    #[error(
        "{dir}: the allowed directory is a symbolic link (to {target}); refused, because a \
         link can be redirected: configure the real directory instead"
    )]
    DirSymlink { dir: String, target: String },

    #[error(
        "{dir}: not the canonical path of the allowed directory (it resolves to {canonical}); \
         configure {canonical} instead"
    )]
    DirNotCanonical { dir: String, canonical: String },

    #[error("{dir}: the allowed directory is not a directory; configure a directory")]
    DirNotDirectory { dir: String },

    #[error("{dir}: the allowed directory changed while it was opened; try again")]
    DirChanged { dir: String },

    #[error("{dir}: cannot {action} the allowed directory: {source}")]
    DirIo {
        dir: String,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{name:?}: not an acceptable image name: {why}; use a plain file name ending in .sif \
         (at most {MAX_NAME_LEN} bytes), e.g. `--name my-app.sif`"
    )]
    BadName { name: String, why: String },

    #[error("{path}: cannot {action} the source image: {source}")]
    SourceIo {
        path: String,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: refused: it is a symbolic link; copy the file it points to, by its own path")]
    SourceSymlink { path: String },

    #[error("{path}: refused: it is a {kind}, not a regular file; give a SIF image file")]
    SourceNotRegular { path: String, kind: &'static str },

    #[error("{source} (refused: only valid SIF images are admitted)")]
    NotSif {
        path: String,
        #[source]
        source: SifError,
    },

    #[error(
        "{path}: changed while it was copied ({copied} bytes copied, {expected} expected); \
         nothing was admitted: copy it again once nothing writes to it"
    )]
    SourceChanged {
        path: String,
        copied: u64,
        expected: u64,
    },

    #[error(
        "{dir}: file system full while copying {path} ({source}); nothing was admitted: free \
         space there (`hybrun image rm NAME`) and copy again"
    )]
    DiskFull {
        dir: String,
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("{dir}: cannot {action} the allowed directory: {source}")]
    WriteIo {
        dir: String,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{name}: refused: an image of that name is already in {dir}; remove it first \
         (`hybrun image rm {name}`) or choose another name (`--name`)"
    )]
    Exists { name: String, dir: String },

    #[error(
        "{name}: refused: {dir} holds {count} images, the site's limit is {max}; remove one \
         (`hybrun image ls`, then `hybrun image rm NAME`) and copy again"
    )]
    Full {
        name: String,
        dir: String,
        count: usize,
        max: u32,
    },

    #[error(
        "{name}: refused by the scanner ({status}); nothing was admitted. Command: {command}. \
         Scanner output:\n{output}"
    )]
    ScanRejected {
        name: String,
        status: String,
        command: String,
        output: String,
    },

    #[error(
        "{name}: refused: the scanner did not finish within {timeout_s} s and was killed; \
         nothing was admitted (raise scanner_timeout_s in the site file if scans take longer). \
         Command: {command}. Scanner output:\n{output}"
    )]
    ScanTimeout {
        name: String,
        timeout_s: u64,
        command: String,
        output: String,
    },

    #[error(
        "{program}: cannot run the site's image scanner: {source}; fix `scanner` in the \
         [images] section of the site file"
    )]
    ScanStart {
        program: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "{dir}/{temp}: refused: the candidate copy was changed or replaced after it was \
         written and hashed (by the scanner or another process); nothing was admitted: copy \
         again, and make sure the scanner only reads the file it scans"
    )]
    CandidateChanged { temp: String, dir: String },

    #[error("{name}: no such image in {dir}; `hybrun image ls` lists the images")]
    NotFound { name: String, dir: String },

    #[error(
        "{name}: refused: it is a directory in {dir}, not an image; remove it by hand after \
         checking what put it there"
    )]
    NotAnImage { name: String, dir: String },

    #[error(
        "{path}: corrupt index ({why}); move it away (the images stay) and run \
         `hybrun image verify`, which then lists the images as unindexed"
    )]
    IndexCorrupt { path: String, why: String },

    #[error(
        "{failed} of {total} file(s) FAILED verification in {dir}; copy FAILED images again \
         (`hybrun image rm NAME`, then `hybrun image cp SRC`)"
    )]
    VerifyFailed {
        failed: usize,
        total: usize,
        dir: String,
    },
}

/// The allowed directory, open, with its policy.
#[derive(Debug)]
pub struct Store {
    dir: StoreDir,
    policy: Policy,
}

/// An admitted image.
#[derive(Debug, Clone)]
pub struct Admitted {
    pub name: String,
    pub entry: IndexEntry,
}

/// One image of `ls`.
#[derive(Debug, Clone)]
pub struct Listed {
    /// The name as it may be printed ([`policy::display_name`]).
    pub name: String,
    pub size: u64,
    /// Modification time, Unix seconds.
    pub mtime: i64,
    /// From the index; None for an unindexed file.
    pub sha256: Option<String>,
    /// Not a regular file (a symbolic link, ...): never admitted by hybrun.
    pub irregular: bool,
}

/// One name `rm` removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// As it may be printed ([`policy::display_name`]).
    pub name: String,
    /// Whether a file was removed (else only the index entry of a file that was
    /// already gone).
    pub file: bool,
}

/// What a name given to `rm` designates: a directory entry (its bytes) and/or
/// an index entry.
struct Target {
    raw: Option<Vec<u8>>,
    display: String,
    index_name: String,
}

/// One line of `verify`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The name as it may be printed ([`policy::display_name`]).
    pub name: String,
    /// None: OK; otherwise why it FAILED.
    pub problem: Option<String>,
}

impl Store {
    /// Opens the allowed directory of `policy` and removes the temporary files of
    /// dead copies.
    pub fn open(policy: Policy) -> Result<Store, StoreError> {
        let dir = StoreDir::open(&policy.dir)?;
        dir.clean_stale_temps()?;
        Ok(Store { dir, policy })
    }

    /// Opens the allowed directory of `policy` to look, not to change anything
    /// (launches check images with it).
    pub fn open_to_read(policy: Policy) -> Result<Store, StoreError> {
        Ok(Store {
            dir: StoreDir::open(&policy.dir)?,
            policy,
        })
    }

    /// The allowed directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Copies the image `source` into the directory as `name` (default: the
    /// source's file name).
    pub fn copy_in(&self, source: &Path, name: Option<&str>) -> Result<Admitted, StoreError> {
        let name = match name {
            Some(name) => name.to_owned(),
            None => source
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        };
        check_name(&name).map_err(|why| StoreError::BadName {
            name: name.clone(),
            why,
        })?;
        let mut src = copy::open_source(source)?;
        // Early checks, without the lock, so that a wrong file, a corrupt index
        // or a full directory fails before a long copy; all are repeated on the
        // copy or under the lock, since the source or the directory can change
        // meanwhile.
        copy::check_sif(&mut src.file, &src.label)?;
        Index::load(&self.dir)?;
        self.check_room(&name)?;

        let mut temp = self.dir.create_temp()?;
        let (copied, digest) =
            copy::copy_hashing(&mut src.file, &mut temp.file).map_err(|e| match e {
                copy::CopyError::Read(source) => StoreError::SourceIo {
                    path: src.label.clone(),
                    action: "read",
                    source,
                },
                copy::CopyError::Write(source) => self.write_error(&src.label, source),
            })?;
        if copied != src.len {
            return Err(StoreError::SourceChanged {
                path: src.label,
                copied,
                expected: src.len,
            });
        }
        rustix::fs::fchmod(
            &temp.file,
            rustix::fs::Mode::from_raw_mode(self.policy.mode),
        )
        .map_err(|e| self.write_error(&src.label, e.into()))?;
        temp.file
            .sync_all()
            .map_err(|e| self.write_error(&src.label, e))?;
        // What is admitted is the copy, so the copy is what is checked.
        copy::check_sif(&mut temp.file, &src.label)?;
        let written = temp.stat()?;

        let scan = self.scan(&name, &temp.file)?;
        let entry = IndexEntry {
            sha256: hybrun_core::sys::hex(&digest),
            size: copied,
            admitted: hybrun_core::sys::utc_text(hybrun_core::sys::now_unix()),
            // Where the opened file was when it was opened, not where its
            // path leads now (the path may have been swapped meanwhile).
            source: src.canonical.display().to_string(),
            scan,
            identity: None,
        };

        let _lock = self.dir.lock()?;
        self.check_room(&name)?;
        // The scanner (or anything else) must not have changed or replaced it,
        // and the allowed directory's path must still lead to this directory.
        temp.check_unchanged(&written)?;
        self.dir.check_still_at_path()?;
        let mut index = Index::load(&self.dir)?;
        index.images.insert(name.clone(), entry.clone());
        // Written once before the rename, so that a full disk shows before the
        // image is in place, and again with the identity the renamed file has
        // (a rename changes its change time).
        let new_index = index.prepare(&self.dir, self.policy.mode)?;
        // A crash between the renames leaves an unindexed image, which `verify`
        // reports and launches refuse; the reverse order would index a missing one.
        temp.persist_new(&name)?;
        let placed = self.dir.stat(&name)?;
        let entry = match placed {
            Some(stat) if (stat.st_dev, stat.st_ino) == (written.st_dev, written.st_ino) => {
                IndexEntry {
                    identity: Some(Identity::of(&stat)),
                    ..entry
                }
            }
            _ => {
                return Err(StoreError::CandidateChanged {
                    temp: name.clone(),
                    dir: self.dir.label().to_owned(),
                });
            }
        };
        drop(new_index);
        index.images.insert(name.clone(), entry.clone());
        index
            .prepare(&self.dir, self.policy.mode)?
            .persist(INDEX_FILE)?;
        Ok(Admitted { name, entry })
    }

    /// Refuses `name` when it exists or when the directory is full.
    fn check_room(&self, name: &str) -> Result<(), StoreError> {
        if self.dir.stat(name)?.is_some() {
            return Err(StoreError::Exists {
                name: name.to_owned(),
                dir: self.dir.label().to_owned(),
            });
        }
        let count = self.image_entries()?.len();
        if count >= self.policy.max_images as usize {
            return Err(StoreError::Full {
                name: name.to_owned(),
                dir: self.dir.label().to_owned(),
                count,
                max: self.policy.max_images,
            });
        }
        Ok(())
    }

    /// Runs the site's scanner, if any, on the candidate file.
    fn scan(
        &self,
        name: &str,
        candidate: &std::fs::File,
    ) -> Result<Option<ScanRecord>, StoreError> {
        if self.policy.scanner.is_empty() {
            return Ok(None);
        }
        let (verdict, record) =
            scan::run(&self.policy.scanner, candidate, self.policy.scanner_timeout)?;
        let command = record.command.join(" ");
        match verdict {
            scan::Verdict::Passed => Ok(Some(record)),
            scan::Verdict::Rejected => Err(StoreError::ScanRejected {
                name: name.to_owned(),
                status: record.status,
                command,
                output: record.output,
            }),
            scan::Verdict::TimedOut => Err(StoreError::ScanTimeout {
                name: name.to_owned(),
                timeout_s: self.policy.scanner_timeout.as_secs(),
                command,
                output: record.output,
            }),
        }
    }

    /// A write error while admitting `source`: a full file system (or quota) is
    /// told as such.
    fn write_error(&self, source: &str, error: std::io::Error) -> StoreError {
        let full = [rustix::io::Errno::NOSPC, rustix::io::Errno::DQUOT]
            .iter()
            .any(|e| error.raw_os_error() == Some(e.raw_os_error()));
        if full {
            StoreError::DiskFull {
                dir: self.dir.label().to_owned(),
                path: source.to_owned(),
                source: error,
            }
        } else {
            StoreError::WriteIo {
                dir: self.dir.label().to_owned(),
                action: "write the image copy into",
                source: error,
            }
        }
    }

    /// The entries that count as images: every visible `*.sif` name, whatever
    /// its type (a link someone placed there still takes a slot in the site's eyes).
    fn image_entries(&self) -> Result<Vec<Entry>, StoreError> {
        Ok(self
            .dir
            .entries()?
            .into_iter()
            .filter(|e| !e.name.starts_with('.') && e.name.ends_with(".sif"))
            .collect())
    }

    /// The images in the directory, sorted by name.
    pub fn list(&self) -> Result<Vec<Listed>, StoreError> {
        let index = Index::load(&self.dir)?;
        Ok(self
            .image_entries()?
            .into_iter()
            .map(|e| Listed {
                size: e.stat.st_size.max(0) as u64,
                mtime: e.stat.st_mtime,
                sha256: index.images.get(&e.name).map(|i| i.sha256.clone()),
                irregular: e.file_type() != FileType::RegularFile,
                name: display_name(&e.raw),
            })
            .collect())
    }

    /// Removes the images `names` (all are resolved before any is removed) and
    /// their index entries; returns what was removed, by display name. A name
    /// is an entry's exact name or its escaped spelling as `ls` shows it, so a
    /// file planted under a name with escape codes or invalid UTF-8 can be
    /// removed too; a name the index lists whose file is gone drops the entry.
    pub fn remove(&self, names: &[String]) -> Result<Vec<Removed>, StoreError> {
        // A name given twice is removed once (the second unlink would fail half-way).
        let names: std::collections::BTreeSet<&str> = names.iter().map(String::as_str).collect();
        let _lock = self.dir.lock()?;
        let entries = self.dir.entries()?;
        let mut index = Index::load(&self.dir)?;
        let mut targets = Vec::new();
        for &name in &names {
            targets.push(self.resolve_for_removal(name, &entries, &index)?);
        }
        for target in &targets {
            index.images.remove(&target.index_name);
        }
        let new_index = index.prepare(&self.dir, self.policy.mode)?;
        for target in &targets {
            let Some(raw) = &target.raw else { continue };
            self.dir.unlink(raw).map_err(|source| StoreError::WriteIo {
                dir: self.dir.label().to_owned(),
                action: "remove an image from",
                source,
            })?;
        }
        new_index.persist(INDEX_FILE)?;
        Ok(targets
            .into_iter()
            .map(|t| Removed {
                name: t.display,
                file: t.raw.is_some(),
            })
            .collect())
    }

    /// What `name` (as given to `rm`) designates.
    fn resolve_for_removal(
        &self,
        name: &str,
        entries: &[Entry],
        index: &Index,
    ) -> Result<Target, StoreError> {
        let bad = |why: &str| StoreError::BadName {
            name: name.to_owned(),
            why: why.to_owned(),
        };
        if name.contains('/') {
            return Err(bad("it contains '/' (a path, not a name)"));
        }
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        if name.starts_with('.') {
            return Err(bad(
                "it starts with '.' (hidden names are hybrun's own: index, lock, temporary files)",
            ));
        }
        let found = entries
            .iter()
            .find(|e| e.raw == name.as_bytes())
            .or_else(|| entries.iter().find(|e| escape_name(&e.raw) == name));
        match found {
            Some(e) if e.file_type() == FileType::Directory => Err(StoreError::NotAnImage {
                name: display_name(&e.raw),
                dir: self.dir.label().to_owned(),
            }),
            Some(e) => Ok(Target {
                raw: Some(e.raw.clone()),
                display: display_name(&e.raw),
                index_name: e.name.clone(),
            }),
            None if index.images.contains_key(name) => Ok(Target {
                raw: None,
                display: display_name(name.as_bytes()),
                index_name: name.to_owned(),
            }),
            None => Err(StoreError::NotFound {
                name: display_name(name.as_bytes()),
                dir: self.dir.label().to_owned(),
            }),
        }
    }

    /// Checks every indexed image against its recorded size and SHA-256, and
    /// reports visible files that the index does not know.
    pub fn verify(&self) -> Result<Vec<Verified>, StoreError> {
        let index = Index::load(&self.dir)?;
        let entries = self.dir.entries()?;
        let mut results = Vec::new();
        for (name, recorded) in &index.images {
            let problem = match entries.iter().find(|e| e.raw == name.as_bytes()) {
                None => Some("missing".to_owned()),
                Some(_) => self.check_one(name, recorded),
            };
            results.push(Verified {
                name: display_name(name.as_bytes()),
                problem,
            });
        }
        for entry in entries {
            if !entry.name.starts_with('.') && !index.images.contains_key(&entry.name) {
                results.push(Verified {
                    name: display_name(&entry.raw),
                    problem: Some("unindexed: not admitted by hybrun image cp".into()),
                });
            }
        }
        results.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(results)
    }

    /// Why the image `name` does not match `recorded`, or None.
    fn check_one(&self, name: &str, recorded: &IndexEntry) -> Option<String> {
        let mut file = match self.dir.open_regular(name) {
            Ok(file) => file,
            Err(e) => return Some(format!("cannot open it as a regular file: {e}")),
        };
        match copy::hash_file(&mut file) {
            Err(e) => Some(format!("cannot read it: {e}")),
            Ok((size, _)) if size != recorded.size => Some(format!(
                "modified: {size} bytes, {} recorded",
                recorded.size
            )),
            Ok((_, digest)) if hybrun_core::sys::hex(&digest) != recorded.sha256 => Some(format!(
                "modified: sha256 {}, {} recorded",
                hybrun_core::sys::hex(&digest),
                recorded.sha256
            )),
            Ok(_) => None,
        }
    }
}

/// The store of the site configuration `site` (`--dir` overriding its directory).
pub fn open(site: &crate::site::Site, dir_override: Option<&Path>) -> Result<Store, StoreError> {
    Store::open(Policy::from_site(site, dir_override)?)
}
