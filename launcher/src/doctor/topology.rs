//! The `[topology]` section: sockets, cores, NUMA nodes and GPUs near them.

use super::{Item, Level, Where};
use crate::host::topology::{Topology, cpus_allowed, topology_in};

/// The item: what sysfs says, in one line.
pub fn topology_item(t: &Topology) -> Item {
    Item {
        section: "topology",
        name: "CPUs and NUMA (sysfs)".into(),
        status: if t.numa_nodes.is_empty() || t.cpus_online.is_none() {
            Level::Warn
        } else {
            Level::Ok
        },
        detail: format!(
            "{} socket(s), {} core(s), CPUs {} (this process may use {}), NUMA: {}{}",
            t.sockets,
            t.cores,
            t.cpus_online.as_deref().unwrap_or("?"),
            t.cpus_allowed.as_deref().unwrap_or("?"),
            t.numa_nodes
                .iter()
                .map(|n| format!("node{}={}", n.node, n.cpus))
                .collect::<Vec<_>>()
                .join(" "),
            t.gpus
                .iter()
                .map(|g| format!(
                    "; GPU {} near NUMA {} (CPUs {})",
                    g.bus_id,
                    g.numa_node.map_or("?".into(), |n| n.to_string()),
                    g.local_cpus.as_deref().unwrap_or("?")
                ))
                .collect::<String>()
        ),
        fix: t.numa_nodes.is_empty().then(|| {
            "/sys/devices/system/node is not readable (a container without /sys?): run on the \
             host"
                .into()
        }),
    }
}

/// The section: sysfs under `at.sys`, with this process's CPUs.
pub fn gather(items: &mut Vec<Item>, at: &Where) -> Topology {
    let topology = topology_in(&at.sys, cpus_allowed());
    items.push(topology_item(&topology));
    topology
}
