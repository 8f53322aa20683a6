//! The `[fabric]` section: fast-network devices, verbs drivers, the fabric
//! libraries with their closures and plugins, and the fabric kind a drafted site
//! file gets.

use serde::Serialize;

use super::{ClosureSummary, Item, Level, Where};
use crate::host::closure::library_closure;
use crate::host::fabric as host_fabric;
use crate::site::fabric::FabricKind;

/// The fabric libraries looked for: name, plugin directory next to it, what it
/// drives, the Debian package that provides it.
const LIBRARIES: [(&str, Option<&str>, &str, &str); 4] = [
    ("libpsm2.so.2", None, "PSM2 (Omni-Path)", "libpsm2-2"),
    (
        "libfabric.so.1",
        Some("libfabric"),
        "libfabric (OFI)",
        "libfabric1",
    ),
    ("libucp.so.0", Some("ucx"), "UCX", "libucx0"),
    (
        "libibverbs.so.1",
        Some("libibverbs"),
        "verbs",
        "libibverbs1",
    ),
];

/// A fabric library found through the loader cache.
#[derive(Debug, Clone, Serialize)]
pub struct FabricLibrary {
    pub name: String,
    pub path: Option<String>,
    /// Its plugin directory (UCX transports, libfabric providers, verbs drivers).
    pub plugin_dir: Option<String>,
    pub plugins: Vec<String>,
    pub closure: Option<ClosureSummary>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Fabric {
    pub devices: Vec<String>,
    /// Driver files in /etc/libibverbs.d.
    pub verbs_drivers: Vec<String>,
    pub libraries: Vec<FabricLibrary>,
    /// The `[fabric] kind` a drafted site file gets (None: no fast fabric seen).
    pub kind: Option<FabricKind>,
}

/// The item of one fabric library.
fn library_item(lib: &FabricLibrary, what: &str, package: &str) -> Item {
    match (&lib.path, &lib.closure) {
        (Some(p), Some(c)) => Item {
            section: "fabric",
            name: what.into(),
            status: if c.unresolved.is_empty() {
                Level::Ok
            } else {
                Level::Warn
            },
            detail: format!(
                "{p} ({} files in its closure, needs GLIBC_{}{}){}",
                c.files.len(),
                c.glibc_max.as_deref().unwrap_or("?"),
                if lib.plugins.is_empty() {
                    String::new()
                } else {
                    format!("; plugins: {}", lib.plugins.join(" "))
                },
                if c.unresolved.is_empty() {
                    String::new()
                } else {
                    format!("; not found: {}", c.unresolved.join(", "))
                }
            ),
            fix: (!c.unresolved.is_empty())
                .then(|| "install the packages of the missing libraries".to_owned()),
        },
        _ => Item {
            section: "fabric",
            name: what.into(),
            status: Level::Missing,
            detail: format!("{} not in ldconfig -p", lib.name),
            fix: Some(format!(
                "only needed for that fabric: install it (Debian: {package}), or load the \
                 site's fabric stack"
            )),
        },
    }
}

/// The fabric kind for a site file: Omni-Path devices with PSM2 (else OPX
/// through libfabric), InfiniBand with UCX (else verbs through libfabric).
pub fn kind(devices: &[String], libraries: &[FabricLibrary]) -> Option<FabricKind> {
    let has = |lib: &str| libraries.iter().any(|l| l.name == lib && l.path.is_some());
    let hfi = devices.iter().any(|d| d.contains("/hfi1_"));
    let ib = devices.iter().any(|d| d.contains("/infiniband"));
    if hfi && has("libpsm2.so.2") {
        Some(FabricKind::Psm2)
    } else if hfi && has("libfabric.so.1") {
        Some(FabricKind::Opx)
    } else if ib && has("libucp.so.0") {
        Some(FabricKind::Ucx)
    } else if ib && has("libfabric.so.1") {
        Some(FabricKind::Verbs)
    } else {
        None
    }
}

fn devices_item(devices: &[String], kind: Option<FabricKind>) -> Item {
    Item {
        section: "fabric",
        name: "devices".into(),
        status: if devices.is_empty() {
            Level::Warn
        } else {
            Level::Ok
        },
        detail: if devices.is_empty() {
            "no /dev/hfi1_*, /dev/infiniband/*, /dev/cxi*: MPI between nodes goes over TCP".into()
        } else {
            format!(
                "{}{}",
                devices.join(" "),
                kind.map_or(String::new(), |k| format!(" (fabric kind {k})"))
            )
        },
        fix: devices.is_empty().then(|| {
            "on a cluster with a fast network, load its driver (hfi1, mlx5_ib) or run the doctor \
             on a compute node; fine on a test machine"
                .into()
        }),
    }
}

fn verbs_item(verbs_drivers: &[String]) -> Item {
    Item {
        section: "fabric",
        name: "/etc/libibverbs.d".into(),
        status: if verbs_drivers.is_empty() {
            Level::Missing
        } else {
            Level::Ok
        },
        detail: if verbs_drivers.is_empty() {
            "no verbs provider drivers".into()
        } else {
            format!(
                "{} drivers ({})",
                verbs_drivers.len(),
                verbs_drivers.join(" ")
            )
        },
        fix: verbs_drivers
            .is_empty()
            .then(|| "only for InfiniBand/RoCE: install rdma-core (ibverbs-providers)".into()),
    }
}

/// The section.
pub fn gather(items: &mut Vec<Item>, at: &Where) -> Fabric {
    let mut devices = host_fabric::devices(&at.dev);
    devices.extend(host_fabric::infiniband_files(&at.dev));
    let verbs_drivers = host_fabric::verbs_drivers(&at.verbs_drivers);
    let mut libraries = Vec::new();
    for (name, plugin_sub, what, package) in LIBRARIES {
        let found = host_fabric::library(at.loader.cache.as_ref(), name, plugin_sub);
        let closure = found
            .path
            .as_ref()
            .map(|p| ClosureSummary::of(library_closure(&at.loader, std::slice::from_ref(p))));
        let lib = FabricLibrary {
            name: found.name,
            path: found.path.map(|p| p.display().to_string()),
            plugin_dir: found.plugin_dir.map(|d| d.display().to_string()),
            plugins: found.plugins,
            closure,
        };
        items.push(library_item(&lib, what, package));
        libraries.push(lib);
    }
    let kind = kind(&devices, &libraries);
    items.push(devices_item(&devices, kind));
    items.push(verbs_item(&verbs_drivers));
    Fabric {
        devices,
        verbs_drivers,
        libraries,
        kind,
    }
}
