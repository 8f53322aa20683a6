//! Rank placement on GPU nodes: which GPU a rank uses and which CPUs sit near it.
//!
//! One module for hybench (which reports placement with every GPU result) and
//! the launcher's per-rank wrapper (which will apply it), so both agree on the
//! rules:
//!
//! - **local rank**: the first of `SLURM_LOCALID` (srun), `MPI_LOCALRANKID`
//!   (MPICH hydra), `OMPI_COMM_WORLD_LOCAL_RANK` (Open MPI), then
//!   `MV2_COMM_WORLD_LOCAL_RANK`, `PMI_LOCAL_RANK` and `PALS_LOCAL_RANKID`
//!   (MVAPICH, PMIx/Cray PALS); 0 for a process nobody launched.
//! - **GPU**: local rank modulo the number of GPUs the process can see. Slurm's
//!   `--gpus-per-task`/`--gpu-bind` and the launcher may already have narrowed
//!   `CUDA_VISIBLE_DEVICES` to one device; then every rank takes ordinal 0 of
//!   what it sees, which the same rule gives (n mod 1 = 0).
//! - **CPUs near the GPU**: the kernel's `/sys/bus/pci/devices/<bus id>/local_cpulist`
//!   (and `numa_node`). Why sysfs and not hwloc (`hwlocality`): it is the same
//!   file hwloc reads for PCI locality, it needs no C library (hwlocality links
//!   libhwloc and libudev, which a container image may lack, and the launcher
//!   must stay free of native dependencies), and it works wherever /sys is
//!   visible, which every container runtime we support binds by default.
//!
//! The binding is compared with the CPUs the process may run on
//! (`sched_getaffinity`): `near` when all of them are near the GPU, `partial`
//! when some are, `far` when none are, `unknown` when sysfs does not say.

use std::path::{Path, PathBuf};

/// Environment variables that carry the node-local rank, in priority order.
pub const LOCAL_RANK_VARS: [&str; 6] = [
    "SLURM_LOCALID",
    "MPI_LOCALRANKID",
    "OMPI_COMM_WORLD_LOCAL_RANK",
    "MV2_COMM_WORLD_LOCAL_RANK",
    "PMI_LOCAL_RANK",
    "PALS_LOCAL_RANKID",
];

/// The node-local rank and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalRank {
    pub rank: u32,
    /// The variable that gave it, or `default` when none was set.
    pub source: &'static str,
}

/// The node-local rank from a lookup function (the environment in practice;
/// a closure in tests). Unparsable values are skipped, not trusted.
pub fn local_rank_from(lookup: impl Fn(&str) -> Option<String>) -> LocalRank {
    for var in LOCAL_RANK_VARS {
        if let Some(rank) = lookup(var).and_then(|v| v.trim().parse::<u32>().ok()) {
            return LocalRank { rank, source: var };
        }
    }
    LocalRank {
        rank: 0,
        source: "default",
    }
}

/// The node-local rank of this process.
pub fn local_rank() -> LocalRank {
    local_rank_from(|k| std::env::var(k).ok())
}

/// The device ordinal (among the visible GPUs) for a local rank.
pub fn gpu_for_local_rank(local_rank: u32, visible_gpus: u32) -> Option<u32> {
    (visible_gpus > 0).then(|| local_rank % visible_gpus)
}

/// The GPUs of a rank that has `per_rank` of them: the `local_rank`-th group of
/// `per_rank` consecutive visible GPUs (modulo the groups there are), as
/// indices into the visible list. None when fewer than `per_rank` are visible.
pub fn gpus_for_local_rank(
    local_rank: u32,
    visible_gpus: u32,
    per_rank: u32,
) -> Option<std::ops::Range<u32>> {
    let groups = visible_gpus.checked_div(per_rank).filter(|&g| g > 0)?;
    let group = local_rank % groups;
    Some(group * per_rank..(group + 1) * per_rank)
}

/// Parse a Linux CPU list (`0-3,8,10-11`) into sorted, de-duplicated CPU numbers.
pub fn parse_cpulist(text: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in text.trim().split(',').filter(|p| !p.trim().is_empty()) {
        let part = part.trim();
        let num = |s: &str| {
            s.trim()
                .parse::<usize>()
                .map_err(|_| format!("`{text}` is not a CPU list (bad entry `{part}`)"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b || b - a > 1 << 16 {
                    return Err(format!("`{text}` is not a CPU list (range `{part}`)"));
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(num(part)?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    Ok(cpus)
}

/// Format CPU numbers as a Linux CPU list: [0,1,2,5] -> `0-2,5`.
pub fn format_cpulist(cpus: &[usize]) -> String {
    let mut sorted = cpus.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = Vec::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        out.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
        i += 1;
    }
    out.join(",")
}

/// Normalise a PCI bus id to the sysfs form `dddd:bb:dd.f` (lower case, 4-digit
/// domain). CUDA prints `0000:17:00.0`, NVML `00000000:17:00.0`.
pub fn normalize_bus_id(bus_id: &str) -> Option<String> {
    let id = bus_id.trim().to_ascii_lowercase();
    let (domain, rest) = match id.matches(':').count() {
        2 => id.split_once(':')?,
        1 => ("0", id.as_str()),
        _ => return None,
    };
    let domain = u32::from_str_radix(domain, 16).ok()?;
    let (bus, devfn) = rest.split_once(':')?;
    let (dev, func) = devfn.split_once('.')?;
    let bus = u8::from_str_radix(bus, 16).ok()?;
    let dev = u8::from_str_radix(dev, 16).ok()?;
    let func = u8::from_str_radix(func, 16).ok()?;
    if domain > 0xffff || dev > 0x1f || func > 7 {
        return None;
    }
    Some(format!("{domain:04x}:{bus:02x}:{dev:02x}.{func}"))
}

/// What sysfs says about where a PCI device sits.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PciLocality {
    /// CPUs attached to the device's NUMA node / root complex.
    pub local_cpus: Vec<usize>,
    /// NUMA node, or None where the platform reports -1 (single node) or nothing.
    pub numa_node: Option<u32>,
}

/// Read the locality of a PCI device under `sysfs_root` (normally `/sys`).
pub fn pci_locality_in(sysfs_root: &Path, bus_id: &str) -> Result<PciLocality, String> {
    let id = normalize_bus_id(bus_id).ok_or_else(|| format!("`{bus_id}` is not a PCI bus id"))?;
    let dir: PathBuf = sysfs_root.join("bus/pci/devices").join(&id);
    let list_path = dir.join("local_cpulist");
    let text = std::fs::read_to_string(&list_path)
        .map_err(|e| format!("cannot read {}: {e}", list_path.display()))?;
    let local_cpus = parse_cpulist(&text).map_err(|e| format!("{}: {e}", list_path.display()))?;
    let numa_node = std::fs::read_to_string(dir.join("numa_node"))
        .ok()
        .and_then(|s| s.trim().parse::<i64>().ok())
        .and_then(|n| u32::try_from(n).ok());
    Ok(PciLocality {
        local_cpus,
        numa_node,
    })
}

/// Read the locality of a PCI device from /sys.
pub fn pci_locality(bus_id: &str) -> Result<PciLocality, String> {
    pci_locality_in(Path::new("/sys"), bus_id)
}

/// The CPUs this process may run on (sched_getaffinity).
pub fn current_affinity() -> Result<Vec<usize>, String> {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it for pid 0 (self).
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return Err(format!(
                "sched_getaffinity: {}",
                std::io::Error::last_os_error()
            ));
        }
        Ok((0..libc::CPU_SETSIZE as usize)
            .filter(|&c| libc::CPU_ISSET(c, &set))
            .collect())
    }
}

/// Restrict this process (the calling thread and threads created after) to `cpus`.
pub fn set_affinity(cpus: &[usize]) -> Result<(), String> {
    if cpus.is_empty() {
        return Err("refusing to bind to an empty CPU set".into());
    }
    // SAFETY: cpu_set_t is plain data; CPU_SET is bounds-checked below.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        for &c in cpus {
            if c >= libc::CPU_SETSIZE as usize {
                return Err(format!("CPU {c} is beyond CPU_SETSIZE"));
            }
            libc::CPU_SET(c, &mut set);
        }
        if libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) != 0 {
            return Err(format!(
                "sched_setaffinity({}): {}",
                format_cpulist(cpus),
                std::io::Error::last_os_error()
            ));
        }
    }
    Ok(())
}

crate::named_enum! {
    /// How the CPUs a rank may use relate to the CPUs near its GPU.
    pub enum Binding ("binding") {
        /// Every allowed CPU is near the GPU.
        Near = "near",
        /// Some allowed CPUs are near the GPU, some are not.
        Partial = "partial",
        /// No allowed CPU is near the GPU.
        Far = "far",
        /// The GPU's locality is unknown.
        Unknown = "unknown",
    }
}

impl Binding {
    pub fn classify(allowed: &[usize], near: &[usize]) -> Binding {
        if near.is_empty() || allowed.is_empty() {
            return Binding::Unknown;
        }
        let inside = allowed.iter().filter(|c| near.contains(c)).count();
        if inside == allowed.len() {
            Binding::Near
        } else if inside == 0 {
            Binding::Far
        } else {
            Binding::Partial
        }
    }
}

/// The CPUs to bind a rank to so that it runs near its GPU: the allowed CPUs
/// that are near the GPU (keeps a launcher's narrower binding), or all near
/// CPUs when the launcher bound the rank entirely elsewhere. None when the
/// locality is unknown (then the binding is left alone).
pub fn near_binding(allowed: &[usize], near: &[usize]) -> Option<Vec<usize>> {
    if near.is_empty() {
        return None;
    }
    let both: Vec<usize> = allowed
        .iter()
        .copied()
        .filter(|c| near.contains(c))
        .collect();
    Some(if both.is_empty() { near.to_vec() } else { both })
}

/// The PCI bus ids of the NVIDIA GPUs the driver knows, in PCI bus order (the
/// order of CUDA's ordinals under `CUDA_DEVICE_ORDER=PCI_BUS_ID`), read from
/// `<proc_root>/driver/nvidia/gpus/<bus id>/` (one directory per GPU, whose
/// `information` file also gives the bus location and "Device Minor"). No CUDA,
/// no NVML. Empty when the driver is not loaded.
pub fn nvidia_bus_ids_in(proc_root: &Path) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(proc_root.join("driver/nvidia/gpus")) else {
        return Vec::new();
    };
    let mut ids: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(normalize_bus_id))
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

/// The locality of a network adapter under `sysfs_root`: an RDMA device
/// (`class/infiniband/<nic>`: mlx5_0, hfi1_0 for Omni-Path) or, failing that, a
/// network interface (`class/net/<nic>`).
pub fn nic_locality_in(sysfs_root: &Path, nic: &str) -> Result<PciLocality, String> {
    if nic.is_empty() || nic.contains('/') || nic.starts_with('.') {
        return Err(format!("`{nic}` is not a network device name"));
    }
    let mut tried = Vec::new();
    for class in ["class/infiniband", "class/net"] {
        let dir = sysfs_root.join(class).join(nic).join("device");
        let list_path = dir.join("local_cpulist");
        match std::fs::read_to_string(&list_path) {
            Ok(text) => {
                let local_cpus =
                    parse_cpulist(&text).map_err(|e| format!("{}: {e}", list_path.display()))?;
                let numa_node = std::fs::read_to_string(dir.join("numa_node"))
                    .ok()
                    .and_then(|s| s.trim().parse::<i64>().ok())
                    .and_then(|n| u32::try_from(n).ok());
                return Ok(PciLocality {
                    local_cpus,
                    numa_node,
                });
            }
            Err(_) => tried.push(list_path.display().to_string()),
        }
    }
    Err(format!("cannot read {}", tried.join(" or ")))
}

/// The only RDMA device under `sysfs_root` (`class/infiniband/*`), when there
/// is exactly one (with several, which one a rank uses is the MPI's choice).
pub fn sole_rdma_device_in(sysfs_root: &Path) -> Option<String> {
    let mut names: Vec<String> = std::fs::read_dir(sysfs_root.join("class/infiniband"))
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .collect();
    (names.len() == 1).then(|| names.remove(0))
}

/// What to do with a rank's CPU affinity given the CPUs it may use (as Slurm or
/// mpiexec left them) and the CPUs near its device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuBindDecision {
    /// Narrow the affinity to these CPUs (allowed and near the device).
    Bind(Vec<usize>),
    /// Leave it: the device's locality is unknown.
    Unknown,
    /// Leave it: every allowed CPU is already near the device (one NUMA node).
    Covered,
    /// Leave it, with a warning: the launcher bound the rank to CPUs none of
    /// which is near the device, and hybrun never widens a launcher's binding.
    Disjoint,
}

/// The binding for a rank: [`near_binding`] restricted so that it never widens
/// `allowed` (a binding Slurm or mpiexec chose).
pub fn cpu_bind_decision(allowed: &[usize], device_cpus: &[usize]) -> CpuBindDecision {
    if device_cpus.is_empty() || allowed.is_empty() {
        return CpuBindDecision::Unknown;
    }
    match Binding::classify(allowed, device_cpus) {
        Binding::Near => CpuBindDecision::Covered,
        Binding::Far => CpuBindDecision::Disjoint,
        Binding::Unknown => CpuBindDecision::Unknown,
        Binding::Partial => match near_binding(allowed, device_cpus) {
            Some(cpus) if cpus.iter().all(|c| allowed.contains(c)) => CpuBindDecision::Bind(cpus),
            _ => CpuBindDecision::Disjoint,
        },
    }
}

/// What `hybrun exec` decided about a rank's CPUs, for the dry run and the log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CpuBinding {
    /// The device the rank was bound near: `GPU 0000:17:00.0`, `NIC hfi1_0`;
    /// empty when none was identified.
    pub device: String,
    /// CPUs near the device (a CPU list), empty when unknown.
    pub device_cpus: String,
    /// CPUs the rank could use before (sched_getaffinity).
    pub allowed_cpus: String,
    /// The CPUs the rank is bound to, or None when the affinity is left alone.
    pub bind_to: Option<String>,
    /// Why: what was bound, or why nothing was.
    pub why: String,
    /// The CPUs to bind to, as numbers.
    #[serde(skip)]
    pub cpus: Vec<usize>,
    /// Whether `why` is a warning (the launcher's binding kept, far from the device).
    #[serde(skip)]
    pub warn: bool,
}

impl CpuBinding {
    /// No binding, for a reason.
    pub fn none(why: impl Into<String>) -> CpuBinding {
        CpuBinding {
            device: String::new(),
            device_cpus: String::new(),
            allowed_cpus: String::new(),
            bind_to: None,
            why: why.into(),
            cpus: Vec::new(),
            warn: false,
        }
    }

    /// The binding near `device`, whose locality is `locality` (or why it is unknown).
    pub fn near(
        device: &str,
        locality: Result<PciLocality, String>,
        allowed: &[usize],
    ) -> CpuBinding {
        let mut b = CpuBinding::none("");
        b.device = device.to_owned();
        b.allowed_cpus = format_cpulist(allowed);
        let near = match locality {
            Ok(l) => l.local_cpus,
            Err(e) => {
                b.why = format!("no binding: locality unknown for {device} ({e})");
                return b;
            }
        };
        b.device_cpus = format_cpulist(&near);
        match cpu_bind_decision(allowed, &near) {
            CpuBindDecision::Bind(cpus) => {
                b.why = format!(
                    "bound to CPUs {} near {device} (of allowed {})",
                    format_cpulist(&cpus),
                    b.allowed_cpus
                );
                b.bind_to = Some(format_cpulist(&cpus));
                b.cpus = cpus;
            }
            CpuBindDecision::Unknown => {
                b.why = format!("no binding: locality unknown for {device} (no CPUs listed)");
            }
            CpuBindDecision::Covered => {
                b.why = format!(
                    "no binding: single NUMA node: the CPUs near {device} ({}) cover all \
                     allowed CPUs ({})",
                    b.device_cpus, b.allowed_cpus
                );
            }
            CpuBindDecision::Disjoint => {
                b.warn = true;
                b.why = format!(
                    "no binding: the launcher bound this rank to CPUs {}, none of them near \
                     {device} ({}); keeping the launcher's binding (hybrun never widens it)",
                    b.allowed_cpus, b.device_cpus
                );
            }
        }
        b
    }
}

impl CpuBinding {
    /// At least `n` CPUs (`-c N`: the rank runs N threads): a binding near the
    /// device with fewer gets the next allowed CPUs added, so the threads do not
    /// share CPUs; where the launcher allowed no more than `n`, its binding is
    /// kept. Never wider than `allowed`.
    pub fn at_least(mut self, n: usize, allowed: &[usize]) -> CpuBinding {
        let near = self.cpus.len();
        if near == 0 || near >= n {
            return self;
        }
        if allowed.len() <= n {
            self.why = format!(
                "no binding: {near} of the allowed CPUs {} are near {}, fewer than the {n} \
                 CPUs per rank (-c {n}); keeping the launcher's binding",
                self.allowed_cpus, self.device
            );
            self.cpus.clear();
            self.bind_to = None;
            return self;
        }
        let mut cpus = self.cpus.clone();
        cpus.extend(
            allowed
                .iter()
                .copied()
                .filter(|c| !self.cpus.contains(c))
                .take(n - near),
        );
        cpus.sort_unstable();
        self.why = format!(
            "bound to CPUs {}: the {near} near {} and {} more of the allowed {}, for the {n} \
             CPUs per rank (-c {n})",
            format_cpulist(&cpus),
            self.device,
            n - near,
            self.allowed_cpus
        );
        self.bind_to = Some(format_cpulist(&cpus));
        self.cpus = cpus;
        self
    }
}

/// Where one rank runs relative to its GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub local_rank: LocalRank,
    /// Device ordinal among the visible GPUs.
    pub gpu_ordinal: u32,
    /// `CUDA_VISIBLE_DEVICES` as the process saw it (empty when unset).
    pub cuda_visible_devices: String,
    /// PCI bus id of the GPU (sysfs form), when known.
    pub bus_id: String,
    pub locality: Option<PciLocality>,
    /// Why the locality is unknown, when it is.
    pub locality_error: Option<String>,
    /// CPUs the process may run on (after any binding hybench applied).
    pub allowed_cpus: Vec<usize>,
    pub binding: Binding,
}

impl Placement {
    /// Describe a rank on a GPU whose bus id is known (or empty).
    pub fn describe(local_rank: LocalRank, gpu_ordinal: u32, bus_id: &str) -> Placement {
        let (locality, locality_error) = if bus_id.is_empty() {
            (None, Some("no PCI bus id".to_string()))
        } else {
            match pci_locality(bus_id) {
                Ok(l) => (Some(l), None),
                Err(e) => (None, Some(e)),
            }
        };
        let allowed_cpus = current_affinity().unwrap_or_default();
        let binding = Binding::classify(
            &allowed_cpus,
            locality.as_ref().map(|l| &l.local_cpus[..]).unwrap_or(&[]),
        );
        Placement {
            local_rank,
            gpu_ordinal,
            cuda_visible_devices: std::env::var("CUDA_VISIBLE_DEVICES").unwrap_or_default(),
            bus_id: normalize_bus_id(bus_id).unwrap_or_else(|| bus_id.to_string()),
            locality,
            locality_error,
            allowed_cpus,
            binding,
        }
    }

    /// Bind the process to the CPUs near its GPU (see [`near_binding`]) and
    /// update the description. Returns what was done, for the log.
    pub fn bind_near(&mut self) -> Result<String, String> {
        let near = self
            .locality
            .as_ref()
            .map(|l| l.local_cpus.clone())
            .unwrap_or_default();
        let Some(target) = near_binding(&self.allowed_cpus, &near) else {
            return Err(format!(
                "cannot bind near GPU {}: its CPU locality is unknown ({})",
                self.gpu_ordinal,
                self.locality_error.as_deref().unwrap_or("no data")
            ));
        };
        set_affinity(&target)?;
        self.allowed_cpus = current_affinity()?;
        self.binding = Binding::classify(&self.allowed_cpus, &near);
        Ok(format!("bound to CPUs {}", format_cpulist(&target)))
    }

    /// One-line summary: `local=1(SLURM_LOCALID) gpu=1 bus=0000:17:00.0
    /// numa=0 near=0-15 cpus=2 bind=near`.
    pub fn summary(&self) -> String {
        let (near, numa) = match &self.locality {
            Some(l) => (
                format_cpulist(&l.local_cpus),
                l.numa_node
                    .map(|n| n.to_string())
                    .unwrap_or_else(|| "-".into()),
            ),
            None => ("?".into(), "?".into()),
        };
        let cvd = if self.cuda_visible_devices.is_empty() {
            String::new()
        } else {
            format!(" CUDA_VISIBLE_DEVICES={}", self.cuda_visible_devices)
        };
        format!(
            "local={}({}) gpu={}{cvd} bus={} numa={numa} near={near} cpus={} bind={}",
            self.local_rank.rank,
            self.local_rank.source,
            self.gpu_ordinal,
            if self.bus_id.is_empty() {
                "?"
            } else {
                &self.bus_id
            },
            format_cpulist(&self.allowed_cpus),
            self.binding
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_rank_priority_and_junk() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            local_rank_from(env(&[
                ("OMPI_COMM_WORLD_LOCAL_RANK", "3"),
                ("SLURM_LOCALID", "1")
            ])),
            LocalRank {
                rank: 1,
                source: "SLURM_LOCALID"
            }
        );
        assert_eq!(
            local_rank_from(env(&[("SLURM_LOCALID", "x"), ("MPI_LOCALRANKID", "2")])).rank,
            2
        );
        assert_eq!(local_rank_from(env(&[])).source, "default");
        assert_eq!(gpu_for_local_rank(5, 4), Some(1));
        assert_eq!(gpu_for_local_rank(5, 1), Some(0));
        assert_eq!(gpu_for_local_rank(0, 0), None);
        // Two GPUs per rank of four visible: ranks 0, 1, 2 get 0-1, 2-3, 0-1.
        assert_eq!(gpus_for_local_rank(0, 4, 2), Some(0..2));
        assert_eq!(gpus_for_local_rank(1, 4, 2), Some(2..4));
        assert_eq!(gpus_for_local_rank(2, 4, 2), Some(0..2));
        assert_eq!(gpus_for_local_rank(1, 5, 2), Some(2..4));
        assert_eq!(gpus_for_local_rank(0, 1, 2), None);
        assert_eq!(gpus_for_local_rank(0, 4, 0), None);
    }

    #[test]
    fn a_binding_is_at_least_as_wide_as_the_ranks_cpus() {
        let locality = |list: &str| {
            Ok(PciLocality {
                local_cpus: parse_cpulist(list).unwrap(),
                numa_node: Some(0),
            })
        };
        let allowed = parse_cpulist("0-7").unwrap();
        // Two of the allowed CPUs near the GPU, -c 4: two more of the allowed.
        let b = CpuBinding::near("GPU x", locality("6-7,8-15"), &allowed).at_least(4, &allowed);
        assert_eq!(b.bind_to.as_deref(), Some("0-1,6-7"), "{}", b.why);
        assert!(b.why.contains("-c 4"), "{}", b.why);
        // Enough near: unchanged.
        let b = CpuBinding::near("GPU x", locality("4-7"), &allowed).at_least(4, &allowed);
        assert_eq!(b.bind_to.as_deref(), Some("4-7"));
        // The launcher allowed no more than -c: its binding stays.
        let allowed = parse_cpulist("0-3").unwrap();
        let b = CpuBinding::near("GPU x", locality("3-7"), &allowed).at_least(4, &allowed);
        assert_eq!(b.bind_to, None);
        assert!(b.cpus.is_empty() && b.why.contains("keeping the launcher's binding"));
    }

    #[test]
    fn cpulists() {
        assert_eq!(
            parse_cpulist("0-3,8,10-11\n").unwrap(),
            [0, 1, 2, 3, 8, 10, 11]
        );
        assert_eq!(parse_cpulist("").unwrap(), Vec::<usize>::new());
        assert!(parse_cpulist("3-1").is_err());
        assert!(parse_cpulist("a").is_err());
        assert_eq!(format_cpulist(&[5, 0, 1, 2, 2]), "0-2,5");
        let l = "0-47,96-143";
        assert_eq!(format_cpulist(&parse_cpulist(l).unwrap()), l);
    }

    #[test]
    fn bus_ids() {
        assert_eq!(
            normalize_bus_id("00000000:17:00.0").as_deref(),
            Some("0000:17:00.0")
        );
        assert_eq!(
            normalize_bus_id("0000:C1:00.0").as_deref(),
            Some("0000:c1:00.0")
        );
        assert_eq!(normalize_bus_id("17:00.0").as_deref(), Some("0000:17:00.0"));
        assert_eq!(normalize_bus_id("junk"), None);
        assert_eq!(normalize_bus_id("0000:17:40.0"), None);
    }

    #[test]
    fn sysfs_locality_and_binding() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("bus/pci/devices/0000:c1:00.0");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("local_cpulist"), "48-95\n").unwrap();
        std::fs::write(dev.join("numa_node"), "1\n").unwrap();
        let l = pci_locality_in(dir.path(), "00000000:C1:00.0").unwrap();
        assert_eq!((l.local_cpus.len(), l.numa_node), (48, Some(1)));
        std::fs::write(dev.join("numa_node"), "-1\n").unwrap();
        assert_eq!(
            pci_locality_in(dir.path(), "0000:c1:00.0")
                .unwrap()
                .numa_node,
            None
        );
        let err = pci_locality_in(dir.path(), "0000:17:00.0").unwrap_err();
        assert!(err.contains("local_cpulist"), "{err}");

        let near = parse_cpulist("48-95").unwrap();
        assert_eq!(Binding::classify(&[50, 51], &near), Binding::Near);
        assert_eq!(Binding::classify(&[0, 50], &near), Binding::Partial);
        assert_eq!(Binding::classify(&[0, 1], &near), Binding::Far);
        assert_eq!(Binding::classify(&[0, 1], &[]), Binding::Unknown);
        assert_eq!(near_binding(&[0, 50], &near), Some(vec![50]));
        assert_eq!(near_binding(&[0, 1], &near), Some(near.clone()));
        assert_eq!(near_binding(&[0, 1], &[]), None);
    }

    #[test]
    fn bind_decisions_never_widen() {
        let near = parse_cpulist("48-95").unwrap();
        assert_eq!(
            cpu_bind_decision(&[0, 50, 51], &near),
            CpuBindDecision::Bind(vec![50, 51])
        );
        assert_eq!(
            cpu_bind_decision(&[50, 51], &near),
            CpuBindDecision::Covered
        );
        assert_eq!(cpu_bind_decision(&[0, 1], &near), CpuBindDecision::Disjoint);
        assert_eq!(cpu_bind_decision(&[0, 1], &[]), CpuBindDecision::Unknown);
        assert_eq!(cpu_bind_decision(&[], &near), CpuBindDecision::Unknown);
        let all: Vec<usize> = (0..96).collect();
        let b = CpuBinding::near(
            "GPU 0000:c1:00.0",
            Ok(PciLocality {
                local_cpus: near.clone(),
                numa_node: Some(1),
            }),
            &all,
        );
        assert_eq!(b.bind_to.as_deref(), Some("48-95"));
        assert_eq!(b.cpus, near);
        let b = CpuBinding::near("NIC hfi1_0", Ok(PciLocality::default()), &[0, 1]);
        assert!(
            b.bind_to.is_none() && b.why.contains("locality unknown"),
            "{}",
            b.why
        );
        let b = CpuBinding::near(
            "NIC hfi1_0",
            Ok(PciLocality {
                local_cpus: near,
                numa_node: None,
            }),
            &[0, 1],
        );
        assert!(
            b.warn && b.why.contains("keeping the launcher's binding"),
            "{}",
            b.why
        );
    }

    #[test]
    fn nvidia_and_nic_from_fake_trees() {
        let dir = tempfile::tempdir().unwrap();
        for id in ["0000:c1:00.0", "0000:17:00.0", "junk"] {
            std::fs::create_dir_all(dir.path().join("driver/nvidia/gpus").join(id)).unwrap();
        }
        assert_eq!(
            nvidia_bus_ids_in(dir.path()),
            ["0000:17:00.0", "0000:c1:00.0"]
        );
        assert!(nvidia_bus_ids_in(&dir.path().join("none")).is_empty());
        let dev = dir.path().join("class/infiniband/hfi1_0/device");
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("local_cpulist"), "0-23\n").unwrap();
        assert_eq!(
            nic_locality_in(dir.path(), "hfi1_0").unwrap().local_cpus,
            (0..24).collect::<Vec<_>>()
        );
        assert_eq!(sole_rdma_device_in(dir.path()).as_deref(), Some("hfi1_0"));
        assert!(nic_locality_in(dir.path(), "mlx5_0").is_err());
        assert!(nic_locality_in(dir.path(), "../x").is_err());
    }

    #[test]
    fn describe_without_locality_is_unknown() {
        let p = Placement::describe(local_rank_from(|_| None), 0, "");
        assert_eq!(p.binding, Binding::Unknown);
        assert!(p.summary().contains("bind=unknown"), "{}", p.summary());
    }
}
