//! The `[gpu]` section: the NVIDIA driver, the GPU device files and what NVML
//! lists.

use serde::Serialize;

use super::{Item, Level, Where};
use crate::host::driver;
use hybrun_core::nvml::{GpuInfo, Inventory};

#[derive(Debug, Clone, Serialize)]
pub struct Gpu {
    pub driver: Option<String>,
    pub devices: Vec<String>,
    /// What NVML says (None when it could not be loaded: see `nvml_error`).
    pub nvml: Option<Inventory>,
    pub nvml_error: Option<String>,
}

/// "GPU 0 NVIDIA H200 (0000:1b:00.0, 141 GiB, MIG on)", with what NVML gave.
pub fn describe_gpu(g: &GpuInfo) -> String {
    let mut facts = Vec::new();
    facts.extend(g.pci_bus_id.clone());
    facts.extend(
        g.memory_total_bytes
            .map(|b| format!("{:.0} GiB", b as f64 / (1u64 << 30) as f64)),
    );
    if g.mig_enabled == Some(true) {
        facts.push("MIG on: jobs see MIG devices".into());
    }
    format!(
        "GPU {} {} ({})",
        g.index,
        g.name.as_deref().unwrap_or("(name unreadable)"),
        facts.join(", ")
    )
}

/// What NVML listed, as the tail of the item's detail.
fn nvml_listing(gpu: &Gpu) -> String {
    match (&gpu.nvml, &gpu.nvml_error) {
        (Some(inv), _) => format!(
            "; NVML{}: {}",
            inv.cuda_driver_version
                .as_deref()
                .map_or(String::new(), |c| format!(" (driver supports CUDA {c})")),
            if inv.gpus.is_empty() {
                "no GPU".to_owned()
            } else {
                inv.gpus
                    .iter()
                    .map(describe_gpu)
                    .collect::<Vec<_>>()
                    .join(" | ")
            }
        ),
        (None, Some(e)) => format!("; {e}"),
        (None, None) => String::new(),
    }
}

/// The item: the kernel module, the device files and NVML agree, or which
/// one is missing.
pub fn gpu_item(gpu: &Gpu) -> Item {
    let listed = nvml_listing(gpu);
    let gpus = gpu.nvml.as_ref().map_or(0, |inv| inv.gpus.len());
    match (&gpu.driver, gpu.devices.is_empty()) {
        (None, true) if gpu.nvml.is_none() => Item {
            section: "gpu",
            name: "NVIDIA GPUs".into(),
            status: Level::Missing,
            detail: "no /proc/driver/nvidia/version, no /dev/nvidiaN, no NVML".into(),
            fix: Some("only for GPU jobs: run on a GPU node with the NVIDIA driver loaded".into()),
        },
        (Some(v), false) => Item {
            section: "gpu",
            name: "NVIDIA GPUs".into(),
            status: if gpus == 0 { Level::Warn } else { Level::Ok },
            detail: format!("driver {v}; {} device files{listed}", gpu.devices.len()),
            fix: (gpus == 0).then(|| {
                if gpu.nvml.is_none() {
                    "the driver is loaded but NVML (libnvidia-ml.so.1) is not: install the \
                     driver's user-space libraries, or add their directory to the loader path"
                        .into()
                } else {
                    "NVML lists no GPU: check the driver (dmesg, nvidia-smi)".into()
                }
            }),
        },
        (driver, _) => Item {
            section: "gpu",
            name: "NVIDIA GPUs".into(),
            status: Level::Warn,
            detail: format!(
                "driver {}, {} /dev/nvidiaN files: one without the other{listed}",
                driver.as_deref().unwrap_or("absent"),
                gpu.devices.len()
            ),
            fix: Some(
                "the kernel module and the device files disagree: load nvidia and create the \
                 device files (nvidia-modprobe), or bind /dev in the container"
                    .into(),
            ),
        },
    }
}

/// The section, with what NVML said.
pub fn gather(items: &mut Vec<Item>, at: &Where, nvml: Result<Inventory, String>) -> Gpu {
    let (nvml, nvml_error) = match nvml {
        Ok(inv) => (Some(inv), None),
        Err(e) => (None, Some(e)),
    };
    let gpu = Gpu {
        driver: driver::module_version(&at.nvidia_version),
        devices: driver::device_files(&at.dev),
        nvml,
        nvml_error,
    };
    items.push(gpu_item(&gpu));
    gpu
}
