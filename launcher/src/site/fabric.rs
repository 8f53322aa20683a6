//! `[fabric]`: the interconnect's user-space side.

use std::collections::BTreeMap;

use hybrun_core::named_enum;
use serde::Deserialize;

use super::mpi::PluginDir;
use super::paths::AbsPath;

named_enum! {
    /// The site's interconnect, as the fabric guard and the image check know it.
    pub enum FabricKind ("fabric kind") {
        /// Omni-Path through PSM2.
        Psm2 = "psm2",
        /// Omni-Path through Cornelis OPX (libfabric).
        Opx = "opx",
        /// InfiniBand through libfabric's verbs provider.
        Verbs = "verbs",
        /// InfiniBand/RoCE through UCX.
        Ucx = "ucx",
        /// Ethernet: no fast fabric, no guard.
        Tcp = "tcp",
        /// No interconnect (one node).
        None = "none",
    }
}

impl FabricKind {
    /// Whether it is a fast fabric (the guard keeps MPI off TCP on it).
    pub fn is_fast(self) -> bool {
        !matches!(self, FabricKind::Tcp | FabricKind::None)
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FabricSection {
    /// psm2, opx, verbs, ucx, tcp or none; the first four turn the fabric guard
    /// on (see `hybrun::launch::fabric_guard`).
    pub kind: Option<FabricKind>,
    /// Host libraries bound in bind mode (e.g. libpsm2.so.2), with their closure.
    #[serde(default)]
    pub libs: Vec<AbsPath>,
    /// Plugin directories bound in bind mode.
    #[serde(default)]
    pub plugin_dirs: Vec<PluginDir>,
    /// Device files the fabric needs (globs, e.g. /dev/hfi1_*): recorded; the
    /// runtimes bind the host /dev by default.
    #[serde(default)]
    pub devices: Vec<String>,
    /// Variables set in every rank (e.g. FI_PROVIDER = "psm2").
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The network adapter the ranks use (`hfi1_0`, `mlx5_0`: a name under
    /// /sys/class/infiniband, else /sys/class/net): `hybrun exec` binds a rank
    /// without a GPU to the CPUs near it. Default: the only RDMA device of the
    /// node, when `kind` is a fast fabric and there is exactly one.
    pub nic: Option<String>,
}
