//! NVML, loaded at run time: the one place hybrun and hybench open it.
//!
//! nvml-wrapper `dlopen`s the library the NVIDIA driver installs, so nothing of
//! CUDA is needed to build, and a host without the driver gets an error value
//! (never a panic): `hybrun doctor` reports it, hybench's telemetry goes without.

use std::ffi::OsStr;

use nvml_wrapper::Nvml;
use serde::Serialize;

/// Opens NVML: `libnvidia-ml.so.1` (what the driver installs), then the
/// unversioned name (development installs). The error names both attempts.
pub fn open() -> Result<Nvml, String> {
    let mut tried = Vec::new();
    for name in ["libnvidia-ml.so.1", "libnvidia-ml.so"] {
        match Nvml::builder().lib_path(OsStr::new(name)).init() {
            Ok(n) => return Ok(n),
            Err(e) => tried.push(format!("{name}: {e}")),
        }
    }
    Err(format!("NVML unavailable ({})", tried.join("; ")))
}

/// What NVML says about the GPUs of this host.
#[derive(Debug, Clone, Serialize)]
pub struct Inventory {
    pub driver_version: String,
    /// The newest CUDA version the driver supports, "major.minor".
    pub cuda_driver_version: Option<String>,
    pub nvml_version: Option<String>,
    pub gpus: Vec<GpuInfo>,
}

/// One GPU, in NVML's index order. A quantity NVML cannot read is None.
#[derive(Debug, Clone, Default, Serialize)]
pub struct GpuInfo {
    pub index: u32,
    pub name: Option<String>,
    pub uuid: Option<String>,
    /// PCI bus id as sysfs spells it (lower case, 4-digit domain).
    pub pci_bus_id: Option<String>,
    pub memory_total_bytes: Option<u64>,
    /// MIG mode now: whether the GPU is split into instances (then a job sees
    /// MIG devices, selected by UUID, not the whole GPU).
    pub mig_enabled: Option<bool>,
    pub compute_mode: Option<String>,
}

/// Reads the inventory. Err only when NVML cannot be opened or cannot count
/// the devices; per-device failures leave fields empty.
pub fn inventory() -> Result<Inventory, String> {
    let nvml = open()?;
    let count = nvml
        .device_count()
        .map_err(|e| format!("NVML cannot count the GPUs: {e}"))?;
    let gpus = (0..count)
        .map(|index| match nvml.device_by_index(index) {
            Ok(dev) => GpuInfo {
                index,
                name: dev.name().ok(),
                uuid: dev.uuid().ok(),
                pci_bus_id: dev.pci_info().ok().map(|p| sysfs_bus_id(&p.bus_id)),
                memory_total_bytes: dev.memory_info().ok().map(|m| m.total),
                mig_enabled: dev.mig_mode().ok().map(|m| m.current == 1),
                compute_mode: dev.compute_mode().ok().map(|m| format!("{m:?}")),
            },
            Err(_) => GpuInfo {
                index,
                ..GpuInfo::default()
            },
        })
        .collect();
    Ok(Inventory {
        driver_version: nvml.sys_driver_version().unwrap_or_default(),
        cuda_driver_version: nvml.sys_cuda_driver_version().ok().map(|v| {
            format!(
                "{}.{}",
                nvml_wrapper::cuda_driver_version_major(v),
                nvml_wrapper::cuda_driver_version_minor(v)
            )
        }),
        nvml_version: nvml.sys_nvml_version().ok(),
        gpus,
    })
}

/// NVML spells bus ids `00000000:1B:00.0` (8-digit domain, upper case); sysfs
/// and `hybrun::placement` use `0000:1b:00.0`.
pub fn sysfs_bus_id(nvml: &str) -> String {
    let lower = nvml.trim().to_ascii_lowercase();
    match lower.split_once(':') {
        Some((domain, rest)) if domain.len() > 4 => {
            format!("{}:{rest}", &domain[domain.len() - 4..])
        }
        _ => lower,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bus_ids_in_sysfs_spelling() {
        assert_eq!(sysfs_bus_id("00000000:1B:00.0"), "0000:1b:00.0");
        assert_eq!(sysfs_bus_id("0000:1b:00.0"), "0000:1b:00.0");
        assert_eq!(sysfs_bus_id("00000001:C3:00.0\n"), "0001:c3:00.0");
    }

    #[test]
    fn no_driver_is_an_error_value_not_a_panic() {
        // On a host with the driver this reads the real GPUs instead.
        match inventory() {
            Ok(inv) => assert!(!inv.driver_version.is_empty()),
            Err(e) => assert!(e.contains("libnvidia-ml.so.1"), "{e}"),
        }
    }
}
