//! The `[mpi]` section: the host's MPI libraries (found as `hybrun image check`
//! finds them) with their closures, the compiler wrappers and pkg-config.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Serialize;

use super::{ClosureSummary, Item, Level};
use crate::host::Host;
use crate::host::closure::library_closure;
use crate::host::loader::Loader;
use crate::host::mpi::{self as host_mpi, Wrapper};
use crate::image::check::facts::{HostMpi, detect_host_mpi};
use hybrun_core::vocab::{MpiAbi, MpiFlavour};

/// The compiler wrappers reported, in this order.
const REPORTED_WRAPPERS: [&str; 3] = ["mpicc.mpich", "mpicc.openmpi", "mpicc"];

/// One host MPI with its closure.
#[derive(Debug, Clone, Serialize)]
pub struct MpiFinding {
    pub library: String,
    pub file: String,
    pub soname: Option<String>,
    pub abi: Option<MpiAbi>,
    pub implementation: Option<MpiFlavour>,
    pub version: Option<String>,
    pub found_by: String,
    /// The profile name a drafted site file gives it.
    pub profile: String,
    pub closure: ClosureSummary,
}

/// The section's findings.
#[derive(Debug, Clone)]
pub struct MpiSection {
    pub wrappers: Vec<Wrapper>,
    pub pkg_config: BTreeMap<String, String>,
    pub found: Vec<MpiFinding>,
}

/// The site-file profile name of an MPI ("openmpi", "intel", ...).
pub fn profile_name(implementation: Option<MpiFlavour>, abi: Option<MpiAbi>) -> String {
    match (implementation, abi) {
        (Some(MpiFlavour::Intel), _) => "intel",
        (Some(MpiFlavour::CrayMpich), _) => "cray-mpich",
        (Some(MpiFlavour::Mvapich2), _) => "mvapich2",
        (Some(MpiFlavour::Openmpi), _) | (None, Some(MpiAbi::Openmpi)) => "openmpi",
        _ => "mpich",
    }
    .to_owned()
}

/// The item of one host MPI and its closure.
pub fn mpi_item(m: &HostMpi, closure: &ClosureSummary) -> Item {
    let lib = &m.library;
    let status = if closure.unresolved.is_empty() {
        Level::Ok
    } else {
        Level::Warn
    };
    Item {
        section: "mpi",
        name: lib.describe(),
        status,
        detail: format!(
            "{} (found by {}); closure {} files{}, needs GLIBC_{} ({}){}",
            lib.path,
            m.found_by,
            closure.files.len(),
            if closure.plugin_dirs.is_empty() {
                String::new()
            } else {
                format!(" incl. plugins of {}", closure.plugin_dirs.join(", "))
            },
            closure.glibc_max.as_deref().unwrap_or("?"),
            closure
                .glibc_max_by
                .as_deref()
                .map_or("?", |p| p.rsplit('/').next().unwrap_or(p)),
            if closure.unresolved.is_empty() {
                String::new()
            } else {
                format!("; not found: {}", closure.unresolved.join(", "))
            }
        ),
        fix: (!closure.unresolved.is_empty()).then(|| {
            "install the packages that provide the missing libraries (bind mode would \
             miss them), or add their directory to /etc/ld.so.conf.d"
                .to_owned()
        }),
    }
}

/// The host MPIs as findings, each with a profile name of its own
/// ("mpich", "mpich2", ...) and its closure; their items go to `items`.
pub fn findings(items: &mut Vec<Item>, loader: &Loader, mpis: Vec<HostMpi>) -> Vec<MpiFinding> {
    let mut found = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for m in mpis {
        let mut profile = profile_name(m.library.implementation, m.library.abi);
        let n = names.entry(profile.clone()).or_insert(0);
        *n += 1;
        if *n > 1 {
            profile = format!("{profile}{n}");
        }
        let closure =
            ClosureSummary::of(library_closure(loader, &[PathBuf::from(&m.library.file)]));
        items.push(mpi_item(&m, &closure));
        let lib = m.library;
        found.push(MpiFinding {
            library: lib.path,
            file: lib.file,
            soname: lib.soname,
            abi: lib.abi,
            implementation: lib.implementation,
            version: lib.version,
            found_by: m.found_by,
            profile,
            closure,
        });
    }
    found
}

/// The section: wrappers, pkg-config, the MPIs (and MISSING/WARN items when
/// there are none).
pub fn gather(items: &mut Vec<Item>, host: &Host, loader: &Loader) -> MpiSection {
    let wrappers: Vec<Wrapper> = REPORTED_WRAPPERS
        .iter()
        .filter_map(|name| host_mpi::wrapper(host, name))
        .collect();
    let pkg_config = host_mpi::pkg_config_libdirs(host)
        .into_iter()
        .map(|(package, dir)| (package.to_owned(), dir))
        .collect();
    let mut notes = Vec::new();
    let mpis = detect_host_mpi(host, loader, &mut notes);
    let found = findings(items, loader, mpis);
    if found.is_empty() {
        items.push(Item {
            section: "mpi",
            name: "host MPI".into(),
            status: Level::Missing,
            detail: "no MPI library through ldconfig -p, mpicc -show or pkg-config".into(),
            fix: Some(
                "load the site's MPI (module load ...) or install one (Debian: libmpich-dev, \
                 libopenmpi-dev); native and bind mode need it"
                    .into(),
            ),
        });
    }
    if wrappers.is_empty() {
        items.push(Item {
            section: "mpi",
            name: "mpicc".into(),
            status: Level::Warn,
            detail: "no mpicc, mpicc.mpich or mpicc.openmpi on PATH".into(),
            fix: Some("load the MPI's compiler wrappers to build native programs".into()),
        });
    }
    MpiSection {
        wrappers,
        pkg_config,
        found,
    }
}
