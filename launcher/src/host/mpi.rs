//! Finding the host's MPI libraries: the loader cache (what `ldconfig -p`
//! lists), the `-L` directories of the compiler wrappers (`mpicc -show`) and the
//! `libdir` of the MPI packages in `pkg-config`. Which file names count as an
//! MPI library is the caller's rule (the image check's ABI names); what each
//! library is, is read from its ELF file by the caller.

use std::path::{Path, PathBuf};

use super::command::probe;
use super::env::Host;
use super::ldcache::LdCache;

/// The compiler wrappers asked for their link line, in this order.
pub const WRAPPERS: [&str; 3] = ["mpicc", "mpicc.mpich", "mpicc.openmpi"];

/// The pkg-config packages of the MPIs, in this order.
pub const PKG_CONFIG_PACKAGES: [&str; 3] = ["mpich", "ompi", "mpi"];

/// A compiler wrapper on PATH and what `-show` printed (None: it failed).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Wrapper {
    pub program: String,
    pub show: Option<String>,
}

/// The wrapper `name` from PATH, asked `-show`; None when it is not on PATH.
pub fn wrapper(host: &Host, name: &str) -> Option<Wrapper> {
    let path = host.which(name)?;
    let show = probe(&path, &["-show"], &[])
        .filter(|(ok, _)| *ok)
        .map(|(_, text)| text);
    Some(Wrapper {
        program: path.display().to_string(),
        show,
    })
}

/// The `-L` directories of a link line.
pub fn link_dirs(show: &str) -> Vec<PathBuf> {
    show.split_whitespace()
        .filter_map(|w| w.strip_prefix("-L"))
        .map(PathBuf::from)
        .collect()
}

/// `pkg-config --variable=libdir` of each of [`PKG_CONFIG_PACKAGES`] that it
/// knows, in that order.
pub fn pkg_config_libdirs(host: &Host) -> Vec<(&'static str, String)> {
    let Some(pc) = host.which("pkg-config") else {
        return Vec::new();
    };
    PKG_CONFIG_PACKAGES
        .iter()
        .filter_map(
            |package| match probe(&pc, &["--variable=libdir", package], &[]) {
                Some((true, dir)) if !dir.is_empty() => Some((*package, dir)),
                _ => None,
            },
        )
        .collect()
}

/// The library in `dir` that `wanted` accepts with the shortest name (the
/// SONAME link before the versioned file).
fn library_in(dir: &Path, wanted: &impl Fn(&str) -> bool) -> Option<PathBuf> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| wanted(n))
        .collect();
    names.sort_by_key(String::len);
    names.first().map(|n| dir.join(n))
}

/// Candidate MPI library files with how each was found ("ldconfig -p", "mpicc
/// -show", "pkg-config"), in that order; the same file may come more than once.
pub fn candidates(
    host: &Host,
    cache: Option<&LdCache>,
    wanted: impl Fn(&str) -> bool,
) -> Vec<(PathBuf, &'static str)> {
    let mut found: Vec<(PathBuf, &'static str)> = cache
        .map(|c| c.paths(&wanted))
        .unwrap_or_default()
        .into_iter()
        .map(|p| (p, "ldconfig -p"))
        .collect();
    let mut dirs: Vec<(PathBuf, &'static str)> = Vec::new();
    for name in WRAPPERS {
        if let Some(show) = wrapper(host, name).and_then(|w| w.show) {
            dirs.extend(link_dirs(&show).into_iter().map(|d| (d, "mpicc -show")));
        }
    }
    for (_, dir) in pkg_config_libdirs(host) {
        dirs.push((PathBuf::from(dir), "pkg-config"));
    }
    for (dir, how) in dirs {
        if let Some(path) = library_in(&dir, &wanted) {
            found.push((path, how));
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::ldcache::{host_flags, write_fake};
    use std::os::unix::fs::PermissionsExt;

    fn program(dir: &Path, name: &str, body: &str) {
        std::fs::create_dir_all(dir).expect("mkdir");
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    #[test]
    fn cache_then_wrappers_then_pkg_config() {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = tmp.path();
        let (wrapped, pc) = (root.join("opt/mpich/lib"), root.join("opt/ompi/lib"));
        for (dir, names) in [
            (
                &wrapped,
                ["libmpich.so.12.1.0", "libmpich.so.12", "libmpich.so"],
            ),
            (
                &pc,
                ["libmpi.so.40.30.4", "libmpi.so.40", "libmpi_cxx.so.40"],
            ),
        ] {
            std::fs::create_dir_all(dir).expect("mkdir");
            for n in names {
                std::fs::write(dir.join(n), b"").expect("write");
            }
        }
        let bin = root.join("bin");
        program(
            &bin,
            "mpicc",
            &format!("echo gcc -I/x -L{} -lmpich", wrapped.display()),
        );
        program(&bin, "mpicc.openmpi", "exit 1");
        program(
            &bin,
            "pkg-config",
            &format!("[ \"$2\" = ompi ] && echo {} || exit 1", pc.display()),
        );
        let host = Host::with_vars(&[("PATH", bin.as_os_str())]);
        let versioned = |n: &str| {
            (n.starts_with("libmpi.so.") || n.starts_with("libmpich.so.")) && !n.contains("cxx")
        };
        let cache = host_flags().map(|flags| {
            let file = root.join("ld.so.cache");
            write_fake(
                &file,
                &[(flags, "libmpich.so.12", "/usr/lib/libmpich.so.12")],
            );
            LdCache::read(&file).expect("cache")
        });
        let found = candidates(&host, cache.as_ref(), versioned);
        let mut want = Vec::new();
        if cache.is_some() {
            want.push((PathBuf::from("/usr/lib/libmpich.so.12"), "ldconfig -p"));
        }
        want.push((wrapped.join("libmpich.so.12"), "mpicc -show"));
        want.push((pc.join("libmpi.so.40"), "pkg-config"));
        assert_eq!(found, want);
        let w = wrapper(&host, "mpicc.openmpi").expect("on PATH");
        assert_eq!(w.show, None, "a failing -show");
        assert_eq!(wrapper(&host, "mpicc.mpich"), None);
        assert_eq!(
            pkg_config_libdirs(&host),
            [("ompi", pc.display().to_string())]
        );
    }
}
