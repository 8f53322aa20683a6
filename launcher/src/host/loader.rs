//! Where the host's dynamic loader looks for a library, by its rules (glibc
//! `elf/dl-load.c`, `_dl_map_object`), for a `DT_NEEDED` name of one object:
//!
//! 1. a name with a '/' is that file;
//! 2. unless the object has `DT_RUNPATH`: the `DT_RPATH` of the object, of the
//!    object that loaded it, and so on up, then the main object's;
//! 3. `LD_LIBRARY_PATH`;
//! 4. the object's own `DT_RUNPATH`;
//! 5. unless the object has `DF_1_NODEFLIB`: `/etc/ld.so.cache`, then the
//!    default (system) directories.
//!
//! `$ORIGIN` is the directory of the object as it was found (not after symbolic
//! links), `$PLATFORM` this machine's name; an entry with `$LIB` (whose value the
//! glibc build decides) is skipped. A candidate is taken only when it is an ELF
//! file of the main object's class and machine, as the loader skips a 32-bit
//! library in a 64-bit search. Not modelled: the hwcap subdirectories
//! (`glibc-hwcaps/x86-64-v3`, legacy `tls/`, `x86_64/`) and secure (setuid) mode.
//!
//! The walks over these rules are in [`super::closure`].

use std::path::{Path, PathBuf};

use super::env::Host;
use super::ldcache::LdCache;

/// Directories where libraries live on the usual distributions (the loader's
/// default ones and their merged-/usr twins, /usr/local): where hybrun looks for
/// a library by name in an image or on the host.
pub const STANDARD_LIB_DIRS: &[&str] = &[
    "/lib/x86_64-linux-gnu",
    "/usr/lib/x86_64-linux-gnu",
    "/lib/aarch64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/lib64",
    "/usr/lib64",
    "/lib",
    "/usr/lib",
    "/usr/local/lib",
    "/usr/local/lib64",
];

/// The loader's own default directories on this machine (`ld.so --help`: "system
/// search path"): Debian's multiarch ones and the lib64 ones of Red Hat and SUSE.
/// On each distribution the ones of the other do not exist, or hold libraries of
/// another class (32-bit `/lib`), which the machine check skips.
pub fn default_dirs() -> Vec<PathBuf> {
    let multiarch = match std::env::consts::ARCH {
        "x86_64" => Some("x86_64-linux-gnu"),
        "aarch64" => Some("aarch64-linux-gnu"),
        "powerpc64" => Some("powerpc64le-linux-gnu"),
        _ => None,
    };
    let mut dirs = Vec::new();
    if let Some(triplet) = multiarch {
        dirs.push(PathBuf::from(format!("/lib/{triplet}")));
        dirs.push(PathBuf::from(format!("/usr/lib/{triplet}")));
    }
    for d in ["/lib64", "/usr/lib64", "/lib", "/usr/lib"] {
        dirs.push(PathBuf::from(d));
    }
    dirs
}

/// Libraries that come from the image's glibc in bind mode (never bound from the
/// host), and that the closures therefore leave out.
pub fn is_glibc_library(name: &str) -> bool {
    const GLIBC: &[&str] = &[
        "libc.so.6",
        "libm.so.6",
        "libmvec.so.1",
        "libpthread.so.0",
        "libdl.so.2",
        "librt.so.1",
        "libresolv.so.2",
        "libutil.so.1",
        "libanl.so.1",
        "libBrokenLocale.so.1",
        "libc_malloc_debug.so.0",
        "libthread_db.so.1",
        "ld-linux-x86-64.so.2",
        "ld-linux-aarch64.so.1",
        "ld-linux.so.2",
    ];
    GLIBC.contains(&name) || name.starts_with("libnss_")
}

/// The dynamic loader itself (glibc family too): `ld.so --list` prints it
/// without a "name =>", so bind mode never counted it among the libraries it
/// left to the image.
pub fn is_dynamic_loader(name: &str) -> bool {
    let base = name.rsplit('/').next().unwrap_or(name);
    base.starts_with("ld-linux") || base.starts_with("ld64.so")
}

/// What the loader searches, besides the objects' own paths.
#[derive(Debug, Clone, Default)]
pub struct Loader {
    /// `/etc/ld.so.cache` as read (None: absent or unreadable).
    pub cache: Option<LdCache>,
    /// The default directories, searched after the cache.
    pub default_dirs: Vec<PathBuf>,
    /// `LD_LIBRARY_PATH`, split (unexpanded; an empty element is ".").
    pub library_path: Vec<String>,
}

impl Loader {
    /// The loader of this host, for a process with `host`'s environment.
    pub fn host(host: &Host) -> Loader {
        Loader {
            cache: LdCache::read(Path::new("/etc/ld.so.cache")),
            default_dirs: default_dirs(),
            library_path: host
                .var("LD_LIBRARY_PATH")
                .map(|v| split_library_path(&v))
                .unwrap_or_default(),
        }
    }

    /// The loader of the process running hybrun.
    pub fn current() -> Loader {
        Loader::host(&Host::current())
    }

    /// A loader over a fake tree: `root/etc/ld.so.cache` and `dirs` under `root`.
    pub fn under(root: &Path, dirs: &[&str], library_path: &str) -> Loader {
        Loader {
            cache: LdCache::read(&root.join("etc/ld.so.cache")),
            default_dirs: dirs
                .iter()
                .map(|d| root.join(d.trim_start_matches('/')))
                .collect(),
            library_path: split_library_path(library_path),
        }
    }
}

/// `LD_LIBRARY_PATH` split as the loader splits it: at ':' and ';', an empty
/// element meaning the current directory; an empty variable is no path at all.
pub fn split_library_path(value: &str) -> Vec<String> {
    if value.is_empty() {
        return Vec::new();
    }
    value
        .split([':', ';'])
        .map(|p| if p.is_empty() { "." } else { p })
        .map(str::to_owned)
        .collect()
}

/// One search-path entry with its dynamic string tokens replaced (`$ORIGIN` is
/// `origin`); None for an entry the loader would drop.
pub fn expand(entry: &str, origin: &Path) -> Option<PathBuf> {
    if entry.contains("$LIB") || entry.contains("${LIB}") {
        return None;
    }
    let origin = origin.to_string_lossy();
    let platform = std::env::consts::ARCH;
    Some(PathBuf::from(
        entry
            .replace("${ORIGIN}", &origin)
            .replace("$ORIGIN", &origin)
            .replace("${PLATFORM}", platform)
            .replace("$PLATFORM", platform),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_family_is_not_bound() {
        for name in [
            "libc.so.6",
            "libm.so.6",
            "libpthread.so.0",
            "libdl.so.2",
            "librt.so.1",
            "ld-linux-x86-64.so.2",
            "libresolv.so.2",
            "libnss_files.so.2",
            "libmvec.so.1",
        ] {
            assert!(is_glibc_library(name), "{name}");
        }
        for name in [
            "libmpich.so.12",
            "libmpi.so.40",
            "libcrypt.so.1",
            "libcurl.so.4",
            "libmlx5.so.1",
            "libmunge.so.2",
            "libucm.so.0",
            "libucs.so.0",
        ] {
            assert!(!is_glibc_library(name), "{name}");
        }
        assert!(is_dynamic_loader("/lib64/ld-linux-x86-64.so.2"));
        assert!(is_dynamic_loader("ld64.so.2"));
        assert!(!is_dynamic_loader("libc.so.6"));
    }

    #[test]
    fn library_path_and_tokens() {
        assert_eq!(split_library_path(""), Vec::<String>::new());
        assert_eq!(split_library_path("/a::/b;/c"), ["/a", ".", "/b", "/c"]);
        let origin = Path::new("/opt/mpi/lib");
        assert_eq!(
            expand("$ORIGIN/../lib64:${ORIGIN}", origin),
            Some(PathBuf::from("/opt/mpi/lib/../lib64:/opt/mpi/lib"))
        );
        assert_eq!(
            expand("/x/$PLATFORM", origin),
            Some(PathBuf::from(format!("/x/{}", std::env::consts::ARCH)))
        );
        assert_eq!(expand("/usr/$LIB/mpi", origin), None);
    }

    #[test]
    fn a_fake_tree_loader() {
        let tmp = tempfile::tempdir().expect("tmp");
        let loader = Loader::under(tmp.path(), &["/lib", "usr/lib"], "/l1:/l2");
        assert!(loader.cache.is_none());
        assert_eq!(
            loader.default_dirs,
            [tmp.path().join("lib"), tmp.path().join("usr/lib")]
        );
        assert_eq!(loader.library_path, ["/l1", "/l2"]);
        let host = Loader::host(&Host::with_vars(&[("LD_LIBRARY_PATH", "/opt/x")]));
        assert_eq!(host.library_path, ["/opt/x"]);
        assert!(!host.default_dirs.is_empty());
    }
}
