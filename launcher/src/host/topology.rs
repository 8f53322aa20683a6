//! The host's CPUs, NUMA nodes and PCI GPUs from sysfs (`devices/system/node`,
//! `devices/system/cpu`, `bus/pci/devices`): what `hybrun_core::placement` reads
//! too. hwlocality would add a C library and libudev-dev to the build for facts
//! sysfs already gives.

use std::collections::BTreeSet;
use std::path::Path;

use super::list_dir;
use hybrun_core::placement;

/// A NUMA node and its CPUs.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NumaNode {
    pub node: u32,
    /// "0-15,32-47".
    pub cpus: String,
}

/// An NVIDIA GPU on the PCI bus, and where it sits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PciGpu {
    pub bus_id: String,
    pub numa_node: Option<i64>,
    pub local_cpus: Option<String>,
}

/// What sysfs says.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Topology {
    pub source: &'static str,
    pub cpus_online: Option<String>,
    /// The CPUs this process may use.
    pub cpus_allowed: Option<String>,
    pub sockets: usize,
    pub cores: usize,
    pub numa_nodes: Vec<NumaNode>,
    pub gpus: Vec<PciGpu>,
}

fn read_trim(path: impl AsRef<Path>) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|t| t.trim().to_owned())
}

fn numa_nodes(system: &Path) -> Vec<NumaNode> {
    let mut nodes = Vec::new();
    for name in list_dir(&system.join("node"), |n| n.starts_with("node")) {
        let Ok(node) = name["node".len()..].parse::<u32>() else {
            continue;
        };
        if let Some(cpus) = read_trim(system.join("node").join(&name).join("cpulist")) {
            nodes.push(NumaNode { node, cpus });
        }
    }
    nodes.sort_by_key(|n| n.node);
    nodes
}

/// (sockets, cores) over the online CPUs.
fn sockets_and_cores(system: &Path, online: Option<&str>) -> (usize, usize) {
    let mut packages = BTreeSet::new();
    let mut cores = BTreeSet::new();
    for cpu in online
        .and_then(|o| placement::parse_cpulist(o).ok())
        .unwrap_or_default()
    {
        let topo = system.join(format!("cpu/cpu{cpu}/topology"));
        let package = read_trim(topo.join("physical_package_id"));
        let core = read_trim(topo.join("core_id"));
        if let (Some(p), Some(c)) = (package, core) {
            packages.insert(p.clone());
            cores.insert((p, c));
        }
    }
    (packages.len(), cores.len())
}

/// NVIDIA (vendor 0x10de) display controllers (class 0x03xxxx: VGA and 3D).
fn pci_gpus(devices: &Path) -> Vec<PciGpu> {
    let mut gpus = Vec::new();
    for bus_id in list_dir(devices, |_| true) {
        let dev = devices.join(&bus_id);
        let vendor = read_trim(dev.join("vendor"));
        let class = read_trim(dev.join("class"));
        if vendor.as_deref() == Some("0x10de") && class.is_some_and(|c| c.starts_with("0x03")) {
            gpus.push(PciGpu {
                numa_node: read_trim(dev.join("numa_node")).and_then(|n| n.parse().ok()),
                local_cpus: read_trim(dev.join("local_cpulist")),
                bus_id,
            });
        }
    }
    gpus
}

/// The topology under the sysfs root `sys`, with the CPUs this process may use.
pub fn topology_in(sys: &Path, cpus_allowed: Option<String>) -> Topology {
    let system = sys.join("devices/system");
    let cpus_online = read_trim(system.join("cpu/online"));
    let (sockets, cores) = sockets_and_cores(&system, cpus_online.as_deref());
    Topology {
        source: "sysfs",
        cpus_allowed,
        sockets,
        cores,
        numa_nodes: numa_nodes(&system),
        gpus: pci_gpus(&sys.join("bus/pci/devices")),
        cpus_online,
    }
}

/// The CPUs this process may use ("0-1"), as the kernel's affinity says.
pub fn cpus_allowed() -> Option<String> {
    placement::current_affinity()
        .ok()
        .map(|c| placement::format_cpulist(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(root: &Path, rel: &str, text: &str) {
        let path = root.join(rel);
        std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }

    #[test]
    fn a_two_socket_fake_sysfs() {
        let tmp = tempfile::tempdir().expect("tmp");
        let sys = tmp.path();
        put(sys, "devices/system/cpu/online", "0-3\n");
        for (cpu, package, core) in [(0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 1, 1)] {
            let topo = format!("devices/system/cpu/cpu{cpu}/topology");
            put(
                sys,
                &format!("{topo}/physical_package_id"),
                &format!("{package}\n"),
            );
            put(sys, &format!("{topo}/core_id"), &format!("{core}\n"));
        }
        put(sys, "devices/system/node/node1/cpulist", "2-3\n");
        put(sys, "devices/system/node/node0/cpulist", "0-1\n");
        put(sys, "devices/system/node/possible", "0-1\n");
        let gpu = "bus/pci/devices/0000:1b:00.0";
        put(sys, &format!("{gpu}/vendor"), "0x10de\n");
        put(sys, &format!("{gpu}/class"), "0x030200\n");
        put(sys, &format!("{gpu}/numa_node"), "1\n");
        put(sys, &format!("{gpu}/local_cpulist"), "2-3\n");
        let nic = "bus/pci/devices/0000:3b:00.0";
        put(sys, &format!("{nic}/vendor"), "0x15b3\n");
        put(sys, &format!("{nic}/class"), "0x020700\n");
        let t = topology_in(sys, Some("0-1".into()));
        assert_eq!((t.sockets, t.cores), (2, 4));
        assert_eq!(t.cpus_online.as_deref(), Some("0-3"));
        assert_eq!(
            t.numa_nodes,
            [
                NumaNode {
                    node: 0,
                    cpus: "0-1".into()
                },
                NumaNode {
                    node: 1,
                    cpus: "2-3".into()
                }
            ]
        );
        assert_eq!(
            t.gpus,
            [PciGpu {
                bus_id: "0000:1b:00.0".into(),
                numa_node: Some(1),
                local_cpus: Some("2-3".into())
            }]
        );
        let empty = topology_in(&sys.join("absent"), None);
        assert_eq!(
            (empty.sockets, empty.numa_nodes.len(), empty.cpus_online),
            (0, 0, None)
        );
    }
}
