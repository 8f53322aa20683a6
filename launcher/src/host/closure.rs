//! The library closure of host libraries: the files the dynamic loader would load
//! with them, found by reading their ELF files (`DT_NEEDED`, `DT_RUNPATH`,
//! `DT_RPATH`, `DF_1_NODEFLIB`) and applying the loader's search rules
//! ([`super::loader`]); no program is run and no code of the libraries either.
//! This is the one resolver of hybrun: the image check and the launch gate judge
//! what it finds, bind mode binds what it finds, `hybrun doctor` reports it.
//!
//! Like the loader, a walk loads each file once: a name already loaded (as a
//! `DT_NEEDED` name, a SONAME or a path) is not searched again, and a file reached
//! under a second name is the same object. Objects are loaded breadth first, in
//! the order `ld.so --list` prints them. glibc's own libraries
//! ([`is_glibc_library`]) are followed but never part of a closure: bind mode
//! leaves them to the image (a program and its libc must match).
//!
//! - [`resolve`]: what `ld.so --list ROOT` lists, minus the glibc family: bind
//!   mode's bundle, one root or plugin at a time.
//! - [`library_closure`]: the roots together with the plugin directories their
//!   libraries load from (UCX transports, libfabric providers, verbs drivers,
//!   Open MPI and PMIx components) and the closures of those plugins: what the
//!   glibc rule of bind mode and the doctor look at.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::fs::{self, File};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::loader::{Loader, expand, is_dynamic_loader, is_glibc_library};
use crate::elf::{ElfError, ElfInfo, ElfReader, GlibcVersion, split_so_name};

/// Why a root cannot be walked.
#[derive(Debug, thiserror::Error)]
pub enum WalkError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Elf {
        path: String,
        #[source]
        source: ElfError,
    },
}

/// A file as read for the walk.
#[derive(Debug, Clone)]
struct Opened {
    /// The path it was opened by (absolute, links not followed).
    found: PathBuf,
    canonical: PathBuf,
    /// (device, inode): the loader's test for "the same file".
    id: (u64, u64),
    info: ElfInfo,
}

fn open(path: &Path) -> Result<Opened, WalkError> {
    let io = |source| WalkError::Io {
        path: path.display().to_string(),
        source,
    };
    let meta = fs::metadata(path).map_err(io)?;
    if !meta.is_file() {
        return Err(io(std::io::Error::other("not a regular file")));
    }
    let info = ElfReader::new(File::open(path).map_err(io)?)
        .info()
        .map_err(|source| WalkError::Elf {
            path: path.display().to_string(),
            source,
        })?;
    Ok(Opened {
        found: std::path::absolute(path).unwrap_or_else(|_| path.to_owned()),
        canonical: fs::canonicalize(path).map_err(io)?,
        id: (meta.dev(), meta.ino()),
        info,
    })
}

/// One object the walk loaded.
#[derive(Debug, Clone)]
struct Object {
    /// The names it was asked for by, the first first (a root: its path).
    names: Vec<String>,
    file: Opened,
    /// The object whose `DT_NEEDED` loaded it (None: a root).
    loaded_by: Option<usize>,
    /// glibc's own: followed, never part of a closure.
    glibc: bool,
}

impl Object {
    /// `$ORIGIN`: the directory of the object as found.
    fn origin(&self) -> &Path {
        self.file.found.parent().unwrap_or(Path::new("/"))
    }
}

/// A breadth-first walk of `DT_NEEDED`, loading like the loader does. The first
/// root is the main object (its `DT_RPATH` applies to all, its class and
/// machine are the ones searched for).
struct Walk<'l> {
    loader: &'l Loader,
    objects: Vec<Object>,
    by_name: HashMap<String, usize>,
    by_id: HashMap<(u64, u64), usize>,
    queue: VecDeque<usize>,
    /// glibc-family names reached, the dynamic loader left out, in load order.
    excluded: Vec<String>,
    /// Names no search found, in the order met.
    unresolved: Vec<String>,
}

impl<'l> Walk<'l> {
    fn new(loader: &'l Loader) -> Walk<'l> {
        Walk {
            loader,
            objects: Vec::new(),
            by_name: HashMap::new(),
            by_id: HashMap::new(),
            queue: VecDeque::new(),
            excluded: Vec::new(),
            unresolved: Vec::new(),
        }
    }

    fn insert(&mut self, name: String, file: Opened, loaded_by: Option<usize>) -> usize {
        let index = self.objects.len();
        let glibc = loaded_by.is_some() && is_glibc_library(&name);
        if glibc && !is_dynamic_loader(&name) && !self.excluded.contains(&name) {
            self.excluded.push(name.clone());
        }
        self.by_id.insert(file.id, index);
        self.by_name.insert(name.clone(), index);
        self.by_name
            .insert(file.found.to_string_lossy().into_owned(), index);
        if let Some(soname) = &file.info.soname {
            self.by_name.entry(soname.clone()).or_insert(index);
        }
        self.objects.push(Object {
            names: vec![name],
            file,
            loaded_by,
            glibc,
        });
        self.queue.push_back(index);
        index
    }

    /// Adds a root (a library, a dlopen()ed plugin): Ok(None) when that file is
    /// loaded already.
    fn add_root(&mut self, path: &Path) -> Result<Option<usize>, WalkError> {
        let file = open(path)?;
        if self.by_id.contains_key(&file.id) {
            return Ok(None);
        }
        let name = path.to_string_lossy().into_owned();
        Ok(Some(self.insert(name, file, None)))
    }

    /// Loads the needs of the next object in the queue and returns it; glibc's
    /// libraries are processed but not returned. None when the walk is done.
    fn next_object(&mut self) -> Option<usize> {
        while let Some(index) = self.queue.pop_front() {
            self.load_needs(index);
            if !self.objects[index].glibc {
                return Some(index);
            }
        }
        None
    }

    fn load_needs(&mut self, index: usize) {
        let needed = self.objects[index].file.info.needed.clone();
        for name in needed {
            if self.by_name.contains_key(&name) {
                continue;
            }
            match self.search(index, &name) {
                Some(file) => match self.by_id.get(&file.id) {
                    // The same file under another name: one object.
                    Some(&known) => {
                        self.objects[known].names.push(name.clone());
                        self.by_name.insert(name, known);
                    }
                    None => {
                        self.insert(name, file, Some(index));
                    }
                },
                None if is_glibc_library(&name) => {
                    if !is_dynamic_loader(&name) && !self.excluded.contains(&name) {
                        self.excluded.push(name);
                    }
                }
                None => {
                    if !self.unresolved.contains(&name) {
                        self.unresolved.push(name);
                    }
                }
            }
        }
    }

    /// A search-path candidate, taken when it is an ELF file of the main
    /// object's class and machine.
    fn candidate(&self, path: &Path) -> Option<Opened> {
        let file = open(path).ok()?;
        let main = &self.objects.first()?.file.info;
        (file.info.class == main.class && file.info.machine == main.machine).then_some(file)
    }

    /// The directories searched for the needs of `index` before the loader
    /// cache: RPATHs up the chain of loading objects and the main object's (when
    /// the object has no RUNPATH), LD_LIBRARY_PATH, the object's RUNPATH.
    fn search_dirs(&self, index: usize) -> Vec<PathBuf> {
        let object = &self.objects[index];
        let expanded = |o: &Object, entries: &[String]| -> Vec<PathBuf> {
            entries
                .iter()
                .filter_map(|e| expand(e, o.origin()))
                .collect()
        };
        let mut dirs = Vec::new();
        if object.file.info.runpath.is_empty() {
            let mut did_main = false;
            let mut at = Some(index);
            while let Some(k) = at {
                let o = &self.objects[k];
                dirs.extend(expanded(o, &o.file.info.rpath));
                did_main |= k == 0;
                at = o.loaded_by;
            }
            if !did_main {
                let main = &self.objects[0];
                dirs.extend(expanded(main, &main.file.info.rpath));
            }
        }
        dirs.extend(expanded(&self.objects[0], &self.loader.library_path));
        dirs.extend(expanded(object, &object.file.info.runpath));
        dirs
    }

    /// Where the loader finds `name` for the object `index`.
    fn search(&self, index: usize, name: &str) -> Option<Opened> {
        if name.contains('/') {
            return self.candidate(Path::new(name));
        }
        if let Some(found) = self
            .search_dirs(index)
            .iter()
            .find_map(|d| self.candidate(&d.join(name)))
        {
            return Some(found);
        }
        if self.objects[index].file.info.nodeflib {
            return None;
        }
        let cached = self.loader.cache.as_ref().and_then(|c| c.lookup(name));
        if let Some(found) = cached.and_then(|p| self.candidate(p)) {
            return Some(found);
        }
        self.loader
            .default_dirs
            .iter()
            .find_map(|d| self.candidate(&d.join(name)))
    }
}

/// One library `ld.so --list` would print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The name it was first loaded by (a `DT_NEEDED` entry).
    pub name: String,
    /// The path the search found.
    pub path: PathBuf,
    pub canonical: PathBuf,
}

/// What the loader would load with one root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// In load order, the root itself and the glibc family left out.
    pub libs: Vec<Loaded>,
    /// glibc-family names reached (the dynamic loader not counted), in load order.
    pub excluded: Vec<String>,
    /// Names the loader would not find ("not found" in `ld.so --list`).
    pub unresolved: Vec<String>,
}

/// What `ld.so --list root` lists, from the ELF files: bind mode's closure of one
/// library or plugin.
pub fn resolve(loader: &Loader, root: &Path) -> Result<Resolution, WalkError> {
    let mut walk = Walk::new(loader);
    walk.add_root(root)?;
    let mut libs = Vec::new();
    while let Some(index) = walk.next_object() {
        if index == 0 {
            continue;
        }
        let object = &walk.objects[index];
        libs.push(Loaded {
            name: object.names[0].clone(),
            path: object.file.found.clone(),
            canonical: object.file.canonical.clone(),
        });
    }
    Ok(Resolution {
        libs,
        excluded: walk.excluded,
        unresolved: walk.unresolved,
    })
}

/// At most this many files are read for one [`library_closure`] (Open MPI's
/// plugin directory has ~150).
const MAX_CLOSURE_FILES: usize = 1000;

/// One library file of a [`library_closure`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ClosureFile {
    /// The canonical file.
    pub path: PathBuf,
    pub soname: Option<String>,
    /// Its DT_NEEDED names (glibc's own included, as the file lists them).
    pub needed: Vec<String>,
    /// The highest GLIBC_x.y it needs from glibc's libraries.
    pub glibc: Option<GlibcVersion>,
    /// Read from a plugin directory (dlopen()ed, not DT_NEEDED).
    pub plugin: bool,
}

/// Host libraries with their closure and plugins, glibc's own libraries left out.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Closure {
    /// In the order loaded (breadth first from the roots; a plugin directory's
    /// files after the library that loads them).
    pub files: Vec<ClosureFile>,
    /// DT_NEEDED names the loader would not find, sorted.
    pub unresolved: Vec<String>,
    /// Plugin directories whose files were added (UCX, libfabric, Open MPI, PMIx).
    pub plugin_dirs: Vec<PathBuf>,
    /// Whether the walk stopped at its file limit.
    pub truncated: bool,
}

impl Closure {
    /// The file that needs the highest GLIBC_x.y (the first of them).
    pub fn glibc_max(&self) -> Option<&ClosureFile> {
        let mut best: Option<&ClosureFile> = None;
        for f in &self.files {
            if let Some(v) = &f.glibc {
                if best.is_none_or(|b| b.glibc.as_ref().is_none_or(|bv| v > bv)) {
                    best = Some(f);
                }
            }
        }
        best
    }
}

/// The highest GLIBC_x.y a file needs from glibc's own libraries.
fn max_glibc_from(info: &ElfInfo) -> Option<GlibcVersion> {
    info.version_needs
        .iter()
        .filter(|n| is_glibc_library(&n.file))
        .filter_map(|n| GlibcVersion::parse(&n.version))
        .max()
}

/// Where the library `name` in `dir` loads plugins from.
fn plugin_dirs_of(name: &str, dir: &Path) -> Vec<PathBuf> {
    let stem = split_so_name(name).map_or(name, |(s, _)| s);
    match stem {
        "libucs" => vec![dir.join("ucx")],
        "libfabric" => vec![dir.join("libfabric")],
        "libibverbs" => vec![dir.join("libibverbs")],
        // Debian/Ubuntu keep the components one level deeper:
        // <libdir>/openmpi/lib/openmpi3 and <libdir>/pmix2/lib/pmix.
        "libmpi" | "libopen-pal" => vec![
            dir.join("openmpi"),
            dir.join("openmpi3"),
            dir.join("openmpi/lib/openmpi3"),
        ],
        "libpmix" => vec![
            dir.join("pmix"),
            dir.join("pmix2"),
            dir.join("pmix2/lib/pmix"),
        ],
        _ => Vec::new(),
    }
}

/// The shared objects of a plugin directory (canonical, sorted).
fn plugin_files(dir: &Path) -> Option<Vec<PathBuf>> {
    let listing = fs::read_dir(dir).ok()?;
    let mut plugins: Vec<PathBuf> = listing
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_file() && p.to_string_lossy().contains(".so"))
        .filter_map(|p| fs::canonicalize(p).ok())
        .collect();
    plugins.sort();
    Some(plugins)
}

/// The closure of the host libraries `roots` with the plugin directories their
/// libraries load from and the plugins' closures, glibc's own libraries left out
/// (see the module documentation). Files that cannot be read are skipped.
pub fn library_closure(loader: &Loader, roots: &[PathBuf]) -> Closure {
    let mut walk = Walk::new(loader);
    for root in roots {
        let _ = walk.add_root(root);
    }
    let mut closure = Closure::default();
    let mut plugins: HashSet<usize> = HashSet::new();
    let mut dirs_done: HashSet<PathBuf> = HashSet::new();
    while let Some(index) = walk.next_object() {
        if closure.files.len() >= MAX_CLOSURE_FILES {
            closure.truncated = true;
            break;
        }
        let file = walk.objects[index].file.clone();
        let name = file
            .canonical
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let dir = file.canonical.parent().unwrap_or(Path::new("/"));
        for plugin_dir in plugin_dirs_of(&name, dir) {
            if !dirs_done.insert(plugin_dir.clone()) {
                continue;
            }
            if let Some(files) = plugin_files(&plugin_dir) {
                closure.plugin_dirs.push(plugin_dir);
                for p in files {
                    if let Ok(Some(i)) = walk.add_root(&p) {
                        plugins.insert(i);
                    }
                }
            }
        }
        closure.files.push(ClosureFile {
            path: file.canonical,
            glibc: max_glibc_from(&file.info),
            soname: file.info.soname,
            needed: file.info.needed,
            plugin: plugins.contains(&index),
        });
    }
    closure.unresolved = walk
        .unresolved
        .into_iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    closure
}

#[cfg(test)]
mod tests;
