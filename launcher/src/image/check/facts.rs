//! What the checks know about this host ([`HostFacts`]): its MPI libraries (read
//! from their ELF files, as [`detect::analyze_mpi`] reads an image's), glibc,
//! NVIDIA driver, Slurm's PMI plugins, fabric devices and how its loader resolves
//! libraries. The probing itself is [`crate::host`]'s; this module turns it into
//! the facts the rules compare with.

use std::collections::HashSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::elf::{ElfReader, GlibcVersion, split_so_name};
use crate::host::closure::library_closure;
use crate::host::driver::{Driver, nvidia_driver};
use crate::host::fabric::fabric_devices;
use crate::host::glibc::host_glibc;
use crate::host::loader::Loader;
use crate::host::{Host, mpi, slurm};
use crate::image::abi;
use crate::image::detect::{self, MpiLibrary};
use crate::site::fabric::FabricKind;

/// What `srun --mpi=list` said.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "state", rename_all = "lowercase")]
pub enum SrunPmi {
    /// No srun on this host.
    Absent,
    /// `--srun none`: the user asked not to ask Slurm.
    NotAsked,
    /// srun ran but failed (no slurm.conf, ...).
    Failed {
        srun: String,
        error: String,
    },
    Plugins {
        srun: String,
        plugins: Vec<String>,
    },
    /// Not asked: the `--mpi=` plugin a planned launch uses (`hybrun run`'s gate),
    /// judged against the MPI that will start under it.
    Launch {
        plugin: String,
    },
}

/// The glibc the host MPI's library closure needs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GlibcRequirement {
    /// The highest GLIBC_x.y needed by any library that would be bound.
    pub max: Option<GlibcVersion>,
    /// The library that needs it.
    pub needed_by: Option<String>,
    /// How many library files were read (DT_NEEDED closure and plugin directories).
    pub files: usize,
    /// DT_NEEDED names not found in the library directories.
    pub unresolved: Vec<String>,
}

/// One MPI library of this host.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HostMpi {
    #[serde(flatten)]
    pub library: MpiLibrary,
    /// How it was found: "--host-mpi", "ldconfig -p", "mpicc -show", "pkg-config".
    pub found_by: String,
}

/// What the checks need to know about this host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HostFacts {
    pub mpi: Vec<HostMpi>,
    /// Problems finding or reading host MPI libraries.
    pub notes: Vec<String>,
    pub glibc: Option<GlibcVersion>,
    pub driver: Option<Driver>,
    pub srun: SrunPmi,
    /// Fast-network devices present (/dev/infiniband, /dev/hfi1_0, /dev/cxi0).
    pub fabric_devices: Vec<String>,
    /// How the host's loader resolves the MPI's library closure.
    #[serde(skip)]
    pub loader: Loader,
    /// The site's interconnect (`[fabric] kind`), when the site names one: the
    /// container's own MPI must be able to drive it in hybrid mode.
    pub site_fabric: Option<FabricKind>,
}

/// Which host MPI to compare with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostMpiChoice {
    /// Find them: ldconfig -p, mpicc -show, pkg-config.
    Detect,
    /// This library file only.
    Path(PathBuf),
    /// Behave as if the host had no MPI.
    None,
}

/// Which srun to ask for PMI plugins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SrunChoice {
    /// `srun` from PATH.
    Detect,
    Path(PathBuf),
    /// Behave as if there were no srun.
    None,
}

/// Errors of the host side that stop a check (an explicit `--host-mpi` that cannot be
/// read); everything merely missing becomes a reason instead.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    #[error(
        "--host-mpi {path}: cannot read it: {why}; give the path of the host's libmpi.so.N or libmpich.so.N"
    )]
    HostMpiUnreadable { path: String, why: String },
    #[error(
        "--host-mpi {path}: not an MPI C library (its name and SONAME are neither libmpi.so.N, \
         libmpich.so.N nor libmpi_abi.so); give the path of the host's MPI library"
    )]
    NotMpi { path: String },
}

/// Gathers the host facts of this host (the process's environment).
pub fn host_facts(mpi: &HostMpiChoice, srun: &SrunChoice) -> Result<HostFacts, HostError> {
    let host = Host::current();
    let loader = Loader::host(&host);
    let mut notes = Vec::new();
    let mpi = match mpi {
        HostMpiChoice::None => Vec::new(),
        HostMpiChoice::Path(p) => vec![explicit_host_mpi(p)?],
        HostMpiChoice::Detect => detect_host_mpi(&host, &loader, &mut notes),
    };
    Ok(HostFacts {
        mpi,
        notes,
        glibc: host_glibc(),
        driver: nvidia_driver(),
        srun: srun_pmi(&host, srun),
        fabric_devices: fabric_devices(),
        loader,
        site_fabric: None,
    })
}

fn analyze_host_file(path: &Path) -> Result<MpiLibrary, String> {
    let real = fs::canonicalize(path).map_err(|e| e.to_string())?;
    let file = File::open(&real).map_err(|e| e.to_string())?;
    let elf = ElfReader::new(file);
    detect::analyze_mpi(
        &path.display().to_string(),
        &real.display().to_string(),
        &elf,
    )
    .map_err(|e| e.to_string())
}

fn explicit_host_mpi(path: &Path) -> Result<HostMpi, HostError> {
    let label = path.display().to_string();
    let library = analyze_host_file(path).map_err(|why| HostError::HostMpiUnreadable {
        path: label.clone(),
        why,
    })?;
    if library.abi.is_none() {
        return Err(HostError::NotMpi { path: label });
    }
    Ok(HostMpi {
        library,
        found_by: "--host-mpi".into(),
    })
}

/// An MPI C library's versioned name (libmpich.so.12, libmpi.so.40,
/// libmpi_abi.so): the files worth reading.
pub fn is_versioned_mpi_name(name: &str) -> bool {
    matches!(
        split_so_name(name),
        Some((_, Some(_))) | Some(("libmpi_abi", None))
    ) && abi::family_from_name(name).is_some()
}

/// The MPI libraries of the host with `host`'s environment and loader, one per
/// real file, in the order found (problems reading one go to `notes`).
pub fn detect_host_mpi(host: &Host, loader: &Loader, notes: &mut Vec<String>) -> Vec<HostMpi> {
    let mut seen = HashSet::new();
    let mut found = Vec::new();
    for (path, how) in mpi::candidates(host, loader.cache.as_ref(), is_versioned_mpi_name) {
        let Ok(real) = fs::canonicalize(&path) else {
            continue;
        };
        if !seen.insert(real) {
            continue;
        }
        match analyze_host_file(&path) {
            Ok(library) if library.abi.is_some() => found.push(HostMpi {
                library,
                found_by: how.to_owned(),
            }),
            Ok(_) => {}
            Err(why) => notes.push(format!("{}: {why}", path.display())),
        }
    }
    found
}

fn srun_pmi(host: &Host, choice: &SrunChoice) -> SrunPmi {
    let srun = match choice {
        SrunChoice::None => return SrunPmi::NotAsked,
        SrunChoice::Path(p) => p.clone(),
        SrunChoice::Detect => match host.which("srun") {
            Some(p) => p,
            None => return SrunPmi::Absent,
        },
    };
    let label = srun.display().to_string();
    match slurm::mpi_list(&srun) {
        None => SrunPmi::Failed {
            srun: label,
            error: "cannot run it".into(),
        },
        Some(list) if list.ok && !list.plugins.is_empty() => SrunPmi::Plugins {
            srun: label,
            plugins: list.plugins,
        },
        Some(list) => SrunPmi::Failed {
            srun: label,
            error: list.last_line,
        },
    }
}

/// The highest GLIBC_x.y that the host library `root` and everything bind mode
/// would bind with it need (its [`library_closure`]).
pub fn glibc_requirement(loader: &Loader, root: &Path) -> GlibcRequirement {
    let closure = library_closure(loader, &[root.to_path_buf()]);
    let best = closure.glibc_max().map(|f| {
        let name = f.soname.clone().unwrap_or_else(|| {
            f.path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        });
        (f.glibc.clone(), name)
    });
    GlibcRequirement {
        max: best.as_ref().and_then(|(v, _)| v.clone()),
        needed_by: best.map(|(_, by)| by),
        files: closure.files.len(),
        unresolved: closure.unresolved,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake_elf::FakeElf;
    use crate::host::ldcache::{host_flags, write_fake};
    use std::os::unix::fs::PermissionsExt;

    /// The loader cache and a compiler wrapper name the same MPICH (one entry,
    /// found by the cache); Open MPI comes from the wrapper's -L directory; an
    /// unreadable candidate is a note, not an error.
    #[test]
    fn host_mpi_from_a_fake_tree() {
        let Some(flags) = host_flags() else { return };
        let tmp = tempfile::tempdir().expect("tmp");
        let root = fs::canonicalize(tmp.path()).expect("canonical");
        let (lib, ompi) = (root.join("lib"), root.join("opt/ompi/lib"));
        FakeElf::new()
            .soname("libmpich.so.12")
            .write(&lib.join("libmpich.so.12.2.2"));
        std::os::unix::fs::symlink("libmpich.so.12.2.2", lib.join("libmpich.so.12")).expect("link");
        FakeElf::new()
            .soname("libmpi.so.40")
            .write(&ompi.join("libmpi.so.40"));
        std::fs::write(lib.join("libmpi.so.12"), b"not an ELF file").expect("write");
        let cached = |n: &str| lib.join(n).display().to_string();
        write_fake(
            &root.join("etc/ld.so.cache"),
            &[
                (flags, "libmpich.so.12", &cached("libmpich.so.12")),
                (flags, "libmpi.so.12", &cached("libmpi.so.12")),
                (flags, "libmpi_cxx.so.40", &cached("libmpi_cxx.so.40")),
            ],
        );
        let bin = root.join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        let mpicc = bin.join("mpicc");
        let show = format!("echo gcc -L{} -L{} -lmpi", lib.display(), ompi.display());
        std::fs::write(&mpicc, format!("#!/bin/sh\n{show}\n")).expect("write");
        std::fs::set_permissions(&mpicc, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let host = Host::with_vars(&[("PATH", bin.as_os_str())]);
        let loader = Loader::under(&root, &["/lib"], "");
        let mut notes = Vec::new();
        let found = detect_host_mpi(&host, &loader, &mut notes);
        let got: Vec<(&str, &str)> = found
            .iter()
            .map(|m| {
                (
                    m.library.soname.as_deref().unwrap_or("?"),
                    m.found_by.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("libmpich.so.12", "ldconfig -p"),
                ("libmpi.so.40", "mpicc -show")
            ]
        );
        assert_eq!(found[0].library.file, cached("libmpich.so.12.2.2"));
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains("libmpi.so.12: not an ELF file"),
            "{notes:?}"
        );
    }

    #[test]
    fn versioned_mpi_names() {
        for name in [
            "libmpich.so.12",
            "libmpi.so.40",
            "libmpi.so.12.1.1",
            "libmpi_abi.so",
        ] {
            assert!(is_versioned_mpi_name(name), "{name}");
        }
        for name in [
            "libmpi.so",
            "libmpi_cxx.so.40",
            "libmpich.so",
            "libmpifort.so.12",
        ] {
            assert!(!is_versioned_mpi_name(name), "{name}");
        }
    }
}
