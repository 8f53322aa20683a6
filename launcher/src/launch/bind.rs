//! Bind mode: the host MPI library and everything it loads, made visible in the
//! container at one directory that goes on LD_LIBRARY_PATH.
//!
//! # What goes in the bundle
//!
//! The MPI library (and the site's extra libraries: fabric, profile `libs`), its
//! DT_NEEDED closure as the host's loader resolves it, minus the glibc family
//! (libc, libm, libpthread, libdl, librt, ld-linux, libresolv, ...): those must
//! stay the container's own, since a program and its libc must match, and the
//! container's glibc is what the container's programs were built against.
//! Plugin directories that libraries dlopen() from follow: UCX's `<dir of
//! libucs>/ucx` (UCX finds it next to the libucs it loaded, so it goes at
//! `<bind dir>/ucx`) and the site's `[fabric] plugin_dirs`; the closures of the
//! plugins are added too.
//!
//! # Open MPI
//!
//! Open MPI finds its MCA components, help files and parameter files through its
//! install directories, not through the library path, so the library closure
//! alone leaves a container with the host's libmpi.so.40 loading the IMAGE's
//! components (or none). For an Open MPI profile the bundle therefore also
//! carries (see [`openmpi_layout`], found next to the profile's `library`;
//! the site may list its own in `[mpi.NAME] plugin_dirs` / `data_dirs`):
//!
//! - the component directory (Debian: `<libdir>/openmpi/lib/openmpi3`,
//!   upstream: `<libdir>/openmpi`), pointed at by
//!   `OMPI_MCA_mca_base_component_path` (`ompi_info --all --parsable`: the
//!   variable `mca_base_component_path`, default the pkglibdir);
//! - PMIx's component directory (`<dir of libpmix>/pmix`), pointed at by
//!   `PMIX_MCA_mca_base_component_path` (PMIx 4.2 reads the same variable; its
//!   `pmix-mca-params.conf` sets it to the host path, and the environment wins
//!   over the file) and `PMIX_PKGLIBDIR` (PMIx searches its pkglibdir first,
//!   whatever the component path says);
//! - the help texts (`<prefix>/share/openmpi`, `<pmix prefix>/share/pmix`) and
//!   Open MPI's parameter file directory (`/etc/openmpi`, `<prefix>/etc`),
//!   pointed at by `OPAL_PKGDATADIR`, `PMIX_PKGDATADIR` and `OPAL_SYSCONFDIR`
//!   (the `installdirs/env` components of Open MPI 4.1.4 and PMIx 4.2 read
//!   these, `strings libopen-pal.so.40 libpmix.so.2`; each overrides its own
//!   directory whatever the image's `OPAL_PREFIX` says).
//!
//! The components' own DT_NEEDED closures (libpmix, libucp, libfabric,
//! libmca_common_*, ...) join the bundle's libraries; their RUNPATH names host
//! paths, but LD_LIBRARY_PATH (the bind directory) is searched before RUNPATH.
//! A component whose dependencies the host cannot resolve cannot load on the
//! host either: it is bound without its closure and listed in `unloadable`.
//!
//! The closure is resolved by [`crate::host::closure`], the resolver the image
//! check and the launch gate judge with: it reads the ELF files and applies the
//! host loader's search rules (RPATH, LD_LIBRARY_PATH, RUNPATH, ld.so.cache, the
//! default directories), so what is judged is what is bound; its tests check it
//! against `ld.so --list` on the host's MPI libraries. Results are cached on disk
//! ([`super::cache`]), keyed by the loader's default directories, LD_LIBRARY_PATH,
//! ld.so.cache and every input file's device, inode, size and time, so `hybrun
//! exec` on every rank pays a stat per file, not a closure walk.
//!
//! # How it is bound
//!
//! - Singularity/Apptainer: each file is bound read-only from the host at
//!   `<bind dir>/<name>` (the runtime creates the targets), so the mapped file is
//!   the host's very file (same inode).
//! - ch-run: it cannot create bind targets in a read-only image, so the bundle is
//!   made as a directory on the host (hard links to the host files, which keep
//!   their inode; copies where a hard link is not possible) and bound at the bind
//!   directory, which the image must contain.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{LaunchError, cache};
use crate::host::closure::{self, WalkError};
use crate::host::loader::{Loader, is_glibc_library};

/// The container directory bind mode uses unless the site says otherwise.
pub const DEFAULT_BIND_DIR: &str = "/opt/hybrun/host-mpi/lib";

/// One library of the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleLib {
    /// The name it is loaded by (DT_NEEDED / the file name given): its name in
    /// the bind directory.
    pub name: String,
    /// The host file (canonical).
    pub host: PathBuf,
}

/// One plugin directory of the bundle.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleDir {
    /// Its name under the bind directory.
    pub name: String,
    pub host: PathBuf,
    /// The variable that points the library at it (None: found by location).
    pub env: Option<String>,
    /// A data directory (help texts, parameter files): bound whole, no closure.
    #[serde(default)]
    pub data: bool,
}

/// The host side of bind mode.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bundle {
    pub libs: Vec<BundleLib>,
    pub dirs: Vec<BundleDir>,
    /// glibc-family libraries the closure reached and that were left out.
    pub excluded: Vec<String>,
    /// Plugins whose dependencies the host loader cannot resolve (they cannot
    /// load on the host either): bound, but without a closure.
    #[serde(default)]
    pub unloadable: Vec<String>,
}

/// A plugin (or data) directory requested by the site or the MPI's layout:
/// host path, variable, name under the bind directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PluginRequest {
    pub host: PathBuf,
    pub env: Option<String>,
    /// Its name under the bind directory (default: the host directory's name).
    pub name: Option<String>,
    /// Data files (bound whole), not dlopen()ed plugins.
    pub data: bool,
}

impl PluginRequest {
    fn new(host: PathBuf, env: &str, name: &str, data: bool) -> PluginRequest {
        PluginRequest {
            host,
            env: Some(env.to_owned()),
            name: Some(name.to_owned()),
            data,
        }
    }
}

/// Open MPI's install directories as found from its library: what bind mode
/// binds besides the closure (see the module documentation).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenMpiLayout {
    /// Component directories (Open MPI's, PMIx's).
    pub plugins: Vec<PluginRequest>,
    /// Help and parameter file directories.
    pub data: Vec<PluginRequest>,
    /// Where each one was looked for, for messages.
    pub looked: Vec<String>,
}

/// Whether `dir` holds a file whose name starts with `prefix` and ends with
/// `suffix`.
fn has_file(dir: &Path, prefix: &str, suffix: &str) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.starts_with(prefix) && n.ends_with(suffix))
        })
    })
}

/// Finds Open MPI's component, help and parameter directories, and PMIx's,
/// from the Open MPI library `library` (libmpi.so.40): the layouts of Debian
/// (`--libdir=<prefix>/lib/<triplet>/openmpi/lib`, PMIx in `<triplet>/pmix2`)
/// and of upstream installs (`<prefix>/lib/openmpi`, `<prefix>/share/openmpi`,
/// `<prefix>/etc`). PMIx is found as the library the `pmix` component loads.
pub fn openmpi_layout(library: &Path) -> OpenMpiLayout {
    let mut layout = OpenMpiLayout::default();
    let canonical = std::fs::canonicalize(library).unwrap_or_else(|_| library.to_owned());
    let mut libdirs: Vec<PathBuf> = Vec::new();
    for lib in [library, canonical.as_path()] {
        if let Some(dir) = lib.parent() {
            if !libdirs.iter().any(|d| d == dir) {
                libdirs.push(dir.to_owned());
            }
        }
    }
    // Components: the pkglibdir, `<libdir>/openmpi` upstream.
    let candidates: Vec<PathBuf> = libdirs
        .iter()
        .flat_map(|d| {
            [
                d.join("openmpi"),
                d.join("openmpi/lib/openmpi3"),
                d.join("openmpi/lib/openmpi"),
            ]
        })
        .collect();
    let components = candidates
        .iter()
        .find(|d| has_file(d, "mca_", ".so"))
        .cloned();
    layout.looked.push(format!(
        "components (mca_*.so) in {}",
        candidates
            .iter()
            .map(|d| d.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    ));
    let ancestors: Vec<PathBuf> = libdirs
        .iter()
        .flat_map(|d| d.ancestors().map(Path::to_path_buf).collect::<Vec<_>>())
        .collect();
    // Help texts: `<prefix>/share/openmpi` (Debian: /usr/share/openmpi).
    if let Some(dir) = ancestors
        .iter()
        .map(|a| a.join("share/openmpi"))
        .find(|d| has_file(d, "help-", ".txt"))
    {
        layout.data.push(PluginRequest::new(
            dir,
            "OPAL_PKGDATADIR",
            "openmpi-data",
            true,
        ));
    }
    // Parameter files: `<prefix>/etc/openmpi-mca-params.conf`, Debian's
    // /etc/openmpi (never all of /etc).
    if let Some(dir) = ancestors
        .iter()
        .flat_map(|a| {
            let flat = (a != Path::new("/")).then(|| a.join("etc"));
            flat.into_iter().chain([a.join("etc/openmpi")])
        })
        .find(|d| d.join("openmpi-mca-params.conf").is_file())
    {
        layout.data.push(PluginRequest::new(
            dir,
            "OPAL_SYSCONFDIR",
            "openmpi-etc",
            true,
        ));
    }
    let Some(components) = components else {
        return layout;
    };
    // PMIx: the library the external PMIx component loads (Open MPI 4.1's
    // internal PMIx is linked into its component: nothing more to bind).
    let loader = Loader::current();
    let pmix_lib = std::fs::read_dir(&components)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("mca_pmix_") && n.ends_with(".so"))
        })
        .filter_map(|p| closure::resolve(&loader, &p).ok())
        .flat_map(|r| r.libs)
        .find(|l| l.name.starts_with("libpmix.so"))
        .map(|l| l.canonical);
    layout.plugins.push(PluginRequest::new(
        components,
        "OMPI_MCA_mca_base_component_path",
        "openmpi-components",
        false,
    ));
    let Some(pmix_dir) = pmix_lib.as_deref().and_then(Path::parent) else {
        return layout;
    };
    let pmix_components = pmix_dir.join("pmix");
    if has_file(&pmix_components, "", ".so") {
        layout.plugins.push(PluginRequest::new(
            pmix_components,
            "PMIX_MCA_mca_base_component_path",
            "pmix-components",
            false,
        ));
    }
    if let Some(dir) = pmix_dir
        .ancestors()
        .map(|a| a.join("share/pmix"))
        .find(|d| has_file(d, "help-", ".txt"))
    {
        layout.data.push(PluginRequest::new(
            dir,
            "PMIX_PKGDATADIR",
            "pmix-data",
            true,
        ));
    }
    layout
}

/// Resolves the bundle of `roots` (MPI library first) and `plugins`, through the
/// cache in `cache_dir` when given.
pub fn resolve(
    roots: &[PathBuf],
    plugins: &[PluginRequest],
    cache_dir: Option<&Path>,
) -> Result<Bundle, LaunchError> {
    let key = cache_key(roots, plugins)?;
    if let Some(dir) = cache_dir {
        if let Some(bundle) = read_cache(dir, &key) {
            return Ok(bundle);
        }
    }
    let bundle = resolve_uncached(roots, plugins)?;
    if let Some(dir) = cache_dir {
        cache::write(dir, CACHE_KIND, &key, &bundle);
    }
    Ok(bundle)
}

/// A bundle being made: its libraries by name, so that two different files
/// of one name are an error, not a silent choice.
struct Builder {
    loader: Loader,
    bundle: Bundle,
    names: BTreeMap<String, PathBuf>,
}

impl Builder {
    /// Adds a library by the name it is loaded by (the glibc family is noted
    /// as left to the image instead).
    fn add(&mut self, name: String, path: &Path) -> Result<(), LaunchError> {
        if is_glibc_library(&name) {
            self.exclude(name);
            return Ok(());
        }
        let host = std::fs::canonicalize(path).map_err(|source| LaunchError::BundleIo {
            path: path.display().to_string(),
            source,
        })?;
        match self.names.get(&name) {
            Some(existing) if *existing == host => Ok(()),
            Some(existing) => Err(LaunchError::BundleConflict {
                name,
                first: existing.display().to_string(),
                second: host.display().to_string(),
            }),
            None => {
                self.names.insert(name.clone(), host.clone());
                self.bundle.libs.push(BundleLib { name, host });
                Ok(())
            }
        }
    }

    fn exclude(&mut self, name: String) {
        if !self.bundle.excluded.contains(&name) {
            self.bundle.excluded.push(name);
        }
    }

    /// Adds a closure's libraries and the glibc names it reached.
    fn add_closure(&mut self, resolved: closure::Resolution) -> Result<(), LaunchError> {
        for lib in resolved.libs {
            self.add(lib.name, &lib.path)?;
        }
        for name in resolved.excluded {
            self.exclude(name);
        }
        Ok(())
    }

    /// Adds a directory; false when it is there already.
    fn add_dir(&mut self, dir: BundleDir) -> Result<bool, LaunchError> {
        match self.bundle.dirs.iter().find(|d| d.name == dir.name) {
            Some(d) if d.host == dir.host => Ok(false),
            Some(d) => Err(LaunchError::BundleConflict {
                name: dir.name.clone(),
                first: d.host.display().to_string(),
                second: dir.host.display().to_string(),
            }),
            None => {
                self.bundle.dirs.push(dir);
                Ok(true)
            }
        }
    }

    /// Adds the closures of plugins; a plugin the loader could not load on
    /// the host either (e.g. a CUDA component without libcuda, or not a
    /// library at all) is bound without a closure and listed as unloadable.
    fn close_plugins(&mut self, files: Vec<PathBuf>) -> Result<(), LaunchError> {
        for plugin in files {
            match closure::resolve(&self.loader, &plugin) {
                Ok(resolved) if resolved.unresolved.is_empty() => self.add_closure(resolved)?,
                Ok(_) | Err(_) => self.bundle.unloadable.push(plugin.display().to_string()),
            }
        }
        Ok(())
    }
}

fn resolve_uncached(roots: &[PathBuf], plugins: &[PluginRequest]) -> Result<Bundle, LaunchError> {
    let mut b = Builder {
        loader: Loader::current(),
        bundle: Bundle::default(),
        names: BTreeMap::new(),
    };
    for root in roots {
        b.add(file_name(root)?, root)?;
        let resolved = root_closure(&b.loader, root)?;
        b.add_closure(resolved)?;
    }
    let mut plugin_files: Vec<PathBuf> = Vec::new();
    for plugin in plugins {
        let host = std::fs::canonicalize(&plugin.host).map_err(|source| LaunchError::BundleIo {
            path: plugin.host.display().to_string(),
            source,
        })?;
        let name = match &plugin.name {
            Some(name) => name.clone(),
            None => file_name(&host)?,
        };
        let dir = BundleDir {
            name,
            host: host.clone(),
            env: plugin.env.clone(),
            data: plugin.data,
        };
        if b.add_dir(dir)? && !plugin.data {
            plugin_files.extend(plugin_libraries(&host)?);
        }
    }
    b.close_plugins(plugin_files)?;
    // UCX loads its transports from `<dir of libucs>/ucx`; libucs may come in
    // with the MPI library or with a component (Open MPI's pml/ucx).
    let ucx = b
        .bundle
        .libs
        .iter()
        .find(|l| l.name.starts_with("libucs.so"))
        .and_then(|l| l.host.parent().map(|d| d.join("ucx")))
        .filter(|d| d.is_dir());
    if let Some(ucx) = ucx {
        let dir = BundleDir {
            name: "ucx".into(),
            host: ucx.clone(),
            env: None,
            data: false,
        };
        if b.add_dir(dir)? {
            b.close_plugins(plugin_libraries(&ucx)?)?;
        }
    }
    // A plugin that needs another plugin (UCX's rdmacm transport needs its ib
    // transport) finds it through its RUNPATH ($ORIGIN) in the bound plugin
    // directory: no second copy on the library path.
    let mut bundle = b.bundle;
    let dirs: Vec<PathBuf> = bundle.dirs.iter().map(|d| d.host.clone()).collect();
    bundle
        .libs
        .retain(|l| !dirs.iter().any(|d| l.host.starts_with(d)));
    Ok(bundle)
}

/// The shared libraries of a plugin directory: `*.so` and `*.so.N...` files
/// (static archives and the like are skipped; links are followed).
fn plugin_libraries(dir: &Path) -> Result<Vec<PathBuf>, LaunchError> {
    let io = |source| LaunchError::BundleIo {
        path: dir.display().to_string(),
        source,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let is_lib = name.ends_with(".so") || name.contains(".so.");
        if is_lib && path.is_file() {
            let canonical = std::fs::canonicalize(&path).map_err(io)?;
            if !files.contains(&canonical) {
                files.push(canonical);
            }
        }
    }
    files.sort();
    Ok(files)
}

fn file_name(path: &Path) -> Result<String, LaunchError> {
    path.file_name()
        .and_then(|n| n.to_str())
        .map(str::to_owned)
        .ok_or_else(|| LaunchError::BundleIo {
            path: path.display().to_string(),
            source: std::io::Error::other("the path has no UTF-8 file name"),
        })
}

/// What the loader would load with `root` (a library bind mode binds): an
/// error when it cannot read it or would not find one of its libraries.
fn root_closure(loader: &Loader, root: &Path) -> Result<closure::Resolution, LaunchError> {
    let lib = || root.display().to_string();
    let resolved = closure::resolve(loader, root).map_err(|e| LaunchError::Loader {
        lib: lib(),
        why: match e {
            WalkError::Io { source, .. } => source.to_string(),
            WalkError::Elf { source, .. } => source.to_string(),
        },
    })?;
    if let Some(name) = resolved.unresolved.first() {
        return Err(LaunchError::Loader {
            lib: lib(),
            why: format!(
                "it needs {name}, which the host loader cannot find (fix LD_LIBRARY_PATH \
                 or the profile's library)"
            ),
        });
    }
    Ok(resolved)
}

/// The cache key: everything the closure depends on.
fn cache_key(roots: &[PathBuf], plugins: &[PluginRequest]) -> Result<String, LaunchError> {
    let mut key = cache::Key::new(CACHE_KIND);
    for root in roots {
        key.file(root);
    }
    for plugin in plugins {
        key.file(&plugin.host);
        key.text(plugin.env.as_deref().unwrap_or(""));
        key.text(plugin.name.as_deref().unwrap_or(""));
        key.text(if plugin.data { "data" } else { "plugins" });
        if !plugin.data {
            for file in plugin_libraries(&plugin.host)? {
                key.file(&file);
            }
        }
    }
    // ld.so.cache may be absent (then it does not matter).
    key.file(Path::new("/etc/ld.so.cache"));
    key.text(&format!("{:?}", crate::host::loader::default_dirs()));
    key.text(
        &std::env::var_os("LD_LIBRARY_PATH")
            .unwrap_or_default()
            .to_string_lossy(),
    );
    Ok(key.finish())
}

const CACHE_KIND: &str = "bundle-v3";

fn read_cache(dir: &Path, key: &str) -> Option<Bundle> {
    let bundle: Bundle = cache::read(dir, CACHE_KIND, key)?;
    // The roots and plugin directories are in the key; the closure's own files
    // are not, so a changed one invalidates the entry here.
    bundle
        .libs
        .iter()
        .all(|l| l.host.is_file())
        .then_some(bundle)
}

/// `src` as the tree `dst`: directories made, files placed by `place` (hard
/// links), symbolic links kept as links.
fn copy_tree(
    src: &Path,
    dst: &Path,
    place: &mut dyn FnMut(&Path, &Path) -> Result<(), LaunchError>,
) -> Result<(), LaunchError> {
    let io = |path: &Path, source| LaunchError::BundleIo {
        path: path.display().to_string(),
        source,
    };
    std::fs::create_dir(dst).map_err(|e| io(dst, e))?;
    for entry in std::fs::read_dir(src).map_err(|e| io(src, e))? {
        let entry = entry.map_err(|e| io(src, e))?;
        let path = entry.path();
        let target = dst.join(entry.file_name());
        let kind = entry.file_type().map_err(|e| io(&path, e))?;
        if kind.is_symlink() {
            let link = std::fs::read_link(&path).map_err(|e| io(&path, e))?;
            std::os::unix::fs::symlink(link, &target).map_err(|e| io(&target, e))?;
        } else if kind.is_dir() {
            copy_tree(&path, &target, place)?;
        } else if kind.is_file() {
            place(&path, &target)?;
        }
    }
    Ok(())
}

impl Bundle {
    /// Per-file read-only binds into `bind_dir` (Singularity/Apptainer).
    pub fn file_binds(&self, bind_dir: &Path) -> Vec<(PathBuf, PathBuf)> {
        let mut binds: Vec<(PathBuf, PathBuf)> = self
            .libs
            .iter()
            .map(|l| (l.host.clone(), bind_dir.join(&l.name)))
            .collect();
        binds.extend(
            self.dirs
                .iter()
                .map(|d| (d.host.clone(), bind_dir.join(&d.name))),
        );
        binds
    }

    /// The variables of the plugin directories, pointing into `bind_dir`.
    pub fn plugin_env(&self, bind_dir: &Path) -> Vec<(String, PathBuf)> {
        let mut vars = Vec::new();
        for (name, path) in self
            .dirs
            .iter()
            .filter_map(|d| d.env.clone().map(|e| (e, bind_dir.join(&d.name))))
        {
            // PMIx 4.2 searches `pmix@<its pkglibdir>` BEFORE the component
            // path ("mca: base: opening components at pmix@/usr/lib/x86_64-
            // linux-gnu/pmix2/lib/pmix:<component_path>" with
            // PMIX_MCA_mca_base_verbose), so an image with PMIx at the host's
            // path would load its own components: move the pkglibdir too.
            if name == "PMIX_MCA_mca_base_component_path" {
                vars.push(("PMIX_PKGLIBDIR".to_owned(), path.clone()));
            }
            vars.push((name, path));
        }
        vars
    }

    /// Where [`Bundle::materialize`] puts this bundle under `root`: a name that
    /// changes with the content and with the host files' inodes and times.
    pub fn dir_under(&self, root: &Path) -> PathBuf {
        let mut hash = Sha256::new();
        hash.update(serde_json::to_vec(self).unwrap_or_default());
        for lib in &self.libs {
            if let Ok(m) = std::fs::metadata(&lib.host) {
                hash.update(m.ino().to_le_bytes());
                hash.update((m.mtime() as u64).to_le_bytes());
            }
        }
        let key = hybrun_core::sys::hex(&hash.finalize());
        root.join(format!("bundle-{}", &key[..16]))
    }

    /// The bundle as one host directory under `root` (for ch-run), made once per
    /// content: hard links to the host files where possible, copies elsewhere.
    /// Returns the directory and whether any file had to be copied.
    pub fn materialize(&self, root: &Path) -> Result<(PathBuf, bool), LaunchError> {
        let final_dir = self.dir_under(root);
        let io = |path: &Path, source| LaunchError::BundleIo {
            path: path.display().to_string(),
            source,
        };
        let marker = final_dir.join(".hybrun-complete");
        if marker.exists() {
            let copied = final_dir.join(".hybrun-copied").exists();
            return Ok((final_dir, copied));
        }
        std::fs::create_dir_all(root).map_err(|e| io(root, e))?;
        let temp = tempfile::Builder::new()
            .prefix(".bundle-tmp-")
            .tempdir_in(root)
            .map_err(|e| io(root, e))?;
        let mut copied = false;
        let mut place = |src: &Path, dst: &Path| -> Result<(), LaunchError> {
            if std::fs::hard_link(src, dst).is_err() {
                std::fs::copy(src, dst).map_err(|e| io(src, e))?;
                copied = true;
            }
            Ok(())
        };
        for lib in &self.libs {
            place(&lib.host, &temp.path().join(&lib.name))?;
        }
        for dir in &self.dirs {
            let sub = temp.path().join(&dir.name);
            if dir.data {
                copy_tree(&dir.host, &sub, &mut place)?;
                continue;
            }
            std::fs::create_dir(&sub).map_err(|e| io(&sub, e))?;
            for file in plugin_libraries(&dir.host)? {
                if let Some(name) = file.file_name() {
                    place(&file, &sub.join(name))?;
                }
                // Plugins are loaded by the names in the directory (links to
                // the versioned file): keep those names too.
            }
            for entry in std::fs::read_dir(&dir.host).map_err(|e| io(&dir.host, e))? {
                let path = entry.map_err(|e| io(&dir.host, e))?.path();
                let target = sub.join(path.file_name().unwrap_or_default());
                if path.is_symlink() && !target.exists() {
                    if let Ok(link) = std::fs::read_link(&path) {
                        let _ = std::os::unix::fs::symlink(link, &target);
                    }
                }
            }
        }
        if copied {
            std::fs::write(temp.path().join(".hybrun-copied"), b"").map_err(|e| io(root, e))?;
        }
        std::fs::write(temp.path().join(".hybrun-complete"), b"").map_err(|e| io(root, e))?;
        let made = temp.keep();
        match std::fs::rename(&made, &final_dir) {
            Ok(()) => Ok((final_dir, copied)),
            // Another rank made it first: use theirs.
            Err(_) if marker.exists() => {
                let _ = std::fs::remove_dir_all(&made);
                Ok((final_dir, copied))
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&made);
                Err(io(&final_dir, e))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake_elf::FakeElf;

    /// A fake MPI with a dependency next to it, a plugin directory with one
    /// plugin that loads and one whose library is nowhere.
    #[test]
    fn bundle_of_a_fake_library_and_its_plugins() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = std::fs::canonicalize(tmp.path()).expect("canonical");
        let lib = root.join("lib");
        FakeElf::new()
            .soname("libfakempi.so.12")
            .needs(&["libdep.so.1", "libc.so.6"])
            .runpath("$ORIGIN/deps")
            .write(&lib.join("libfakempi.so.12"));
        FakeElf::new()
            .soname("libdep.so.1")
            .write(&lib.join("deps/libdep.so.1"));
        FakeElf::new()
            .soname("libdep2.so.1")
            .write(&lib.join("deps/libdep2.so.1"));
        FakeElf::new()
            .needs(&["libdep2.so.1"])
            .runpath("$ORIGIN/../deps")
            .write(&lib.join("plugins/good.so"));
        FakeElf::new()
            .needs(&["libnowhere.so.7"])
            .write(&lib.join("plugins/bad.so"));
        std::fs::write(lib.join("plugins/README"), "not a plugin").expect("write");
        let request = PluginRequest::new(lib.join("plugins"), "FAKE_PLUGIN_PATH", "plugins", false);
        let roots = [lib.join("libfakempi.so.12")];
        let bundle = resolve(&roots, std::slice::from_ref(&request), None).expect("bundle");
        let libs: Vec<(&str, &Path)> = bundle
            .libs
            .iter()
            .map(|l| (l.name.as_str(), l.host.as_path()))
            .collect();
        assert_eq!(
            libs,
            [
                ("libfakempi.so.12", lib.join("libfakempi.so.12").as_path()),
                ("libdep.so.1", lib.join("deps/libdep.so.1").as_path()),
                ("libdep2.so.1", lib.join("deps/libdep2.so.1").as_path()),
            ]
        );
        assert_eq!(bundle.excluded, ["libc.so.6"], "glibc is the image's");
        assert_eq!(
            bundle.unloadable,
            [lib.join("plugins/bad.so").display().to_string()]
        );
        assert_eq!(bundle.dirs.len(), 1);
        assert_eq!(
            bundle.plugin_env(Path::new("/b")),
            [("FAKE_PLUGIN_PATH".to_owned(), PathBuf::from("/b/plugins"))]
        );
        // Through the cache: the same bundle the second time.
        let cache = root.join("cache");
        let first = resolve(&roots, std::slice::from_ref(&request), Some(&cache)).expect("first");
        let again = resolve(&roots, std::slice::from_ref(&request), Some(&cache)).expect("again");
        assert_eq!((&first, &again), (&bundle, &bundle));
        // A root whose library is nowhere is refused, naming it.
        FakeElf::new()
            .needs(&["libnowhere.so.7"])
            .write(&lib.join("libbroken.so"));
        match resolve(&[lib.join("libbroken.so")], &[], None) {
            Err(LaunchError::Loader { why, .. }) => {
                assert!(why.contains("it needs libnowhere.so.7"), "{why}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn host_mpich_closure() {
        let lib = Path::new("/usr/lib/x86_64-linux-gnu/libmpich.so.12");
        if !lib.exists() || std::env::consts::ARCH != "x86_64" {
            return; // MPICH not installed here (scripts/setup installs it).
        }
        let bundle = resolve(&[lib.to_owned()], &[], None).expect("closure");
        assert_eq!(bundle.libs[0].name, "libmpich.so.12");
        assert!(bundle.libs.iter().any(|l| l.name.starts_with("libucs.so")));
        assert!(bundle.libs.iter().all(|l| !is_glibc_library(&l.name)));
        assert!(bundle.excluded.iter().any(|n| n == "libc.so.6"));
        assert!(bundle.dirs.iter().any(|d| d.name == "ucx"));
    }

    #[test]
    fn host_openmpi_layout_and_bundle() {
        let lib = Path::new("/usr/lib/x86_64-linux-gnu/libmpi.so.40");
        if !lib.exists() || std::env::consts::ARCH != "x86_64" {
            return; // Open MPI not installed here (scripts/setup installs it).
        }
        let layout = openmpi_layout(lib);
        let env: Vec<&str> = layout
            .plugins
            .iter()
            .chain(&layout.data)
            .filter_map(|r| r.env.as_deref())
            .collect();
        for var in [
            "OMPI_MCA_mca_base_component_path",
            "PMIX_MCA_mca_base_component_path",
            "OPAL_PKGDATADIR",
            "OPAL_SYSCONFDIR",
            "PMIX_PKGDATADIR",
        ] {
            assert!(env.contains(&var), "{var} not in {env:?}");
        }
        let mut requests = layout.plugins.clone();
        requests.extend(layout.data.iter().cloned());
        let bundle = resolve(&[lib.to_owned()], &requests, None).expect("bundle");
        // The components' closure: PMIx comes in with the pmix component.
        assert!(bundle.libs.iter().any(|l| l.name == "libpmix.so.2"));
        assert!(bundle.libs.iter().all(|l| !is_glibc_library(&l.name)));
        let tmp = tempfile::tempdir().expect("tmp");
        let (dir, _) = bundle.materialize(tmp.path()).expect("materialize");
        assert!(dir.join("libmpi.so.40").is_file());
        assert!(dir.join("openmpi-components/mca_pml_ob1.so").is_file());
        assert!(
            dir.join("openmpi-data/amca-param-sets").is_dir(),
            "data trees whole"
        );
        assert!(dir.join("openmpi-etc/openmpi-mca-params.conf").is_file());
        // A name used twice for two directories is an error, not a silent drop.
        let twice = vec![
            PluginRequest::new(layout.data[0].host.clone(), "A", "x", true),
            PluginRequest::new(layout.plugins[0].host.clone(), "B", "x", false),
        ];
        assert!(matches!(
            resolve(&[lib.to_owned()], &twice, None),
            Err(LaunchError::BundleConflict { .. })
        ));
    }
}
