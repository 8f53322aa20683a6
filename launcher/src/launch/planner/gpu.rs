//! GPUs and CPU placement of a rank: Singularity/Apptainer's `--nv`, one GPU
//! per rank (`hybrun exec`, where the local rank is known), and the CPUs the
//! rank is bound to, near its GPU or the fabric's NIC (`hybrun_core::placement`
//! rules both).

use std::path::Path;

use hybrun_core::placement::{self, CpuBinding};

use super::{Host, Notes, RankContext};
use crate::launch::LaunchError;
use crate::launch::env::Changes;
use crate::launch::plan::{CpuBindRule, EnvOp, Runtime};
use crate::site::fabric::FabricKind;
use crate::site::gpu::GpuVendor;

/// Whether the rank gets NVIDIA GPUs through the runtime (`--nv`): asked for
/// (`--nv`, `--gpus-per-node`), the site's GPUs are NVIDIA's, and the runtime
/// has the flag. ch-run has none: refused unless `--force`.
pub(super) fn nvidia(
    ctx: &RankContext<'_>,
    runtime: &Runtime,
    notes: &mut Notes,
) -> Result<bool, LaunchError> {
    let req = ctx.req;
    let wants_gpus = req.nv
        || req.geometry.gpus_per_node.is_some_and(|n| n > 0)
        || req.geometry.gpus_per_task.is_some_and(|n| n > 0);
    let vendor = ctx.site.config.gpu.vendor.unwrap_or(GpuVendor::Nvidia);
    if wants_gpus && matches!(runtime, Runtime::Charliecloud { .. }) {
        let message = "ch-run has no --nv: GPU libraries must be in the image (ch-fromhost \
                       --nvidia IMAGE)";
        if !req.force {
            return Err(LaunchError::Refused {
                message: format!("{message}; prepare the image, then use --force"),
            });
        }
        notes.warnings.push(message.to_owned());
    }
    Ok(wants_gpus
        && vendor == GpuVendor::Nvidia
        && matches!(
            runtime,
            Runtime::Singularity { .. } | Runtime::Apptainer { .. }
        ))
}

/// `per_rank` GPUs per rank (applied by the rank, where its local rank is
/// known, see [`super::facts`]): CUDA_VISIBLE_DEVICES narrowed to the rank's
/// GPUs, CUDA ordinals in PCI bus order.
pub(super) fn per_rank(
    host: &Host,
    per_rank: u32,
    changes: &mut Changes<'_>,
    notes: &mut Notes,
) -> Result<(), LaunchError> {
    // With --gpus-per-task srun binds each task to its own GPUs (Slurm's
    // implicit --gpu-bind=per_task:N): narrowing that list to one GPU would
    // take the rank's other GPUs away.
    if host.var("SLURM_GPUS_PER_TASK").is_some() {
        notes.notes.push(
            "GPUs per rank: srun --gpus-per-task set the rank's CUDA_VISIBLE_DEVICES; kept".into(),
        );
        return Ok(());
    }
    let Some((device, why)) = gpus_for_rank(host, per_rank) else {
        return Ok(());
    };
    changes.set(
        "CUDA_VISIBLE_DEVICES",
        device.as_str().into(),
        "GPU per rank",
    )?;
    notes.notes.push(why);
    // CUDA numbers GPUs fastest first by default; in PCI bus order they
    // match /proc/driver/nvidia/gpus, which is how hybrun finds the
    // chosen GPU's PCI locality (for the CPU binding) without CUDA or
    // NVML. The same order for every rank also keeps the mapping stable.
    let given = changes
        .get("CUDA_DEVICE_ORDER")
        .map(|c| match &c.op {
            EnvOp::Set(v) => (v.to_string_lossy().into_owned(), c.why.clone()),
            EnvOp::Unset => (String::new(), c.why.clone()),
        })
        .or_else(|| {
            host.var("CUDA_DEVICE_ORDER")
                .map(|v| (v, "the environment hybrun runs in".to_owned()))
        });
    let unmappable = match given {
        None => {
            changes.set(
                "CUDA_DEVICE_ORDER",
                "PCI_BUS_ID".into(),
                "GPU per rank (CUDA ordinals in PCI bus order, as hybrun maps them)",
            )?;
            None
        }
        Some((v, _)) if v == "PCI_BUS_ID" => None,
        Some((v, by)) => Some(format!(
            "CUDA_DEVICE_ORDER={v:?} (set by {by}): CUDA ordinals are not in PCI bus order"
        )),
    };
    notes.gpu = Some((device, unmappable));
    Ok(())
}

/// The CPU binding of this rank as `rule` says: near the GPU chosen for it (in
/// `notes`), else the site's NIC; none when switched off.
pub(super) fn cpu_binding(rule: &CpuBindRule, notes: &Notes) -> CpuBinding {
    let (nic, fabric_kind, min_cpus) = match rule {
        CpuBindRule::Off { why } => return CpuBinding::none(why),
        CpuBindRule::Near {
            nic,
            fabric,
            cpus_per_rank,
        } => (nic.as_deref(), *fabric, *cpus_per_rank),
    };
    let target = BindTarget {
        gpu: notes.gpu.as_ref().map(|(d, _)| d.as_str()),
        gpu_unmappable: notes.gpu.as_ref().and_then(|(_, why)| why.as_deref()),
        nic,
        fabric_kind,
        min_cpus,
    };
    let allowed = placement::current_affinity().unwrap_or_default();
    cpu_binding_in(&target, Path::new("/sys"), Path::new("/proc"), &allowed)
}

/// The GPUs this rank uses, when it sees more than `per_rank` and its local
/// rank is known: entries of CUDA_VISIBLE_DEVICES (or ordinals of /dev/nvidiaN
/// when that is unset), chosen by `hybrun_core::placement` (the local rank's
/// group of `per_rank`, modulo the groups there are), as a comma list.
fn gpus_for_rank(host: &Host, per_rank: u32) -> Option<(String, String)> {
    let local = hybrun_core::placement::local_rank_from(|k| host.var(k));
    if local.source == "default" || per_rank == 0 {
        return None;
    }
    let devices: Vec<String> = match host.var("CUDA_VISIBLE_DEVICES") {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect(),
        None => {
            let mut ordinals: Vec<u32> = std::fs::read_dir("/dev")
                .ok()?
                .filter_map(Result::ok)
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_prefix("nvidia"))
                        .and_then(|n| n.parse().ok())
                })
                .collect();
            ordinals.sort_unstable();
            ordinals.into_iter().map(|o| o.to_string()).collect()
        }
    };
    if devices.len() <= per_rank as usize {
        return None;
    }
    let range =
        hybrun_core::placement::gpus_for_local_rank(local.rank, devices.len() as u32, per_rank)?;
    let chosen = devices
        .get(range.start as usize..range.end as usize)?
        .join(",");
    let what = if per_rank == 1 {
        "GPU per rank".to_owned()
    } else {
        format!("{per_rank} GPUs per rank")
    };
    Some((
        chosen.clone(),
        format!(
            "{what}: local rank {} ({}) of {} visible GPUs -> CUDA_VISIBLE_DEVICES={chosen}",
            local.rank,
            local.source,
            devices.len()
        ),
    ))
}

/// The device a rank's CPUs are bound near (see [`cpu_binding_in`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct BindTarget<'a> {
    /// The CUDA_VISIBLE_DEVICES entry hybrun chose for the rank.
    pub gpu: Option<&'a str>,
    /// Why that entry's ordinal is not in PCI bus order, when it is not.
    pub gpu_unmappable: Option<&'a str>,
    /// `[fabric] nic`.
    pub nic: Option<&'a str>,
    /// `[fabric] kind`.
    pub fabric_kind: Option<FabricKind>,
    /// `-c N`: the binding has at least N CPUs ([`CpuBinding::at_least`]).
    pub min_cpus: Option<u32>,
}

/// The CPU binding of a rank that may run on `allowed`: near its GPUs when
/// hybrun chose them (ordinal N = the Nth GPU of
/// `<proc_root>/driver/nvidia/gpus` in bus order, its locality from
/// `<sysfs_root>/bus/pci/devices`; several GPUs: the CPUs near any of them),
/// else near the fabric's NIC; with at least `min_cpus` CPUs. Never wider than
/// `allowed` (see `placement::cpu_bind_decision`).
pub fn cpu_binding_in(
    target: &BindTarget<'_>,
    sysfs_root: &Path,
    proc_root: &Path,
    allowed: &[usize],
) -> CpuBinding {
    let binding = match target.gpu {
        Some(devices) => near_gpus(target, devices, sysfs_root, proc_root, allowed),
        None => near_nic(target, sysfs_root, allowed),
    };
    match target.min_cpus {
        Some(n) => binding.at_least(n as usize, allowed),
        None => binding,
    }
}

/// Near the GPUs `devices` (a CUDA_VISIBLE_DEVICES list).
fn near_gpus(
    target: &BindTarget<'_>,
    devices: &str,
    sysfs_root: &Path,
    proc_root: &Path,
    allowed: &[usize],
) -> CpuBinding {
    let label = format!("GPU CUDA_VISIBLE_DEVICES={devices}");
    if let Some(why) = target.gpu_unmappable {
        return CpuBinding::near(&label, Err(why.to_owned()), allowed);
    }
    let ids = placement::nvidia_bus_ids_in(proc_root);
    let mut names = Vec::new();
    let mut cpus: Vec<usize> = Vec::new();
    let mut numa_node = None;
    for device in devices.split(',') {
        let Ok(ordinal) = device.parse::<usize>() else {
            return CpuBinding::near(
                &label,
                Err("a GPU UUID or MIG name: its bus id needs NVML".to_owned()),
                allowed,
            );
        };
        let Some(id) = ids.get(ordinal) else {
            return CpuBinding::near(
                &label,
                Err(format!(
                    "{} lists {} GPUs",
                    proc_root.join("driver/nvidia/gpus").display(),
                    ids.len()
                )),
                allowed,
            );
        };
        let name = format!("{id} (CUDA device {ordinal})");
        match placement::pci_locality_in(sysfs_root, id) {
            Ok(locality) => {
                cpus.extend(locality.local_cpus);
                numa_node = numa_node.or(locality.numa_node);
            }
            Err(e) => return CpuBinding::near(&format!("GPU {name}"), Err(e), allowed),
        }
        names.push(name);
    }
    cpus.sort_unstable();
    cpus.dedup();
    let label = match names.as_slice() {
        [one] => format!("GPU {one}"),
        _ => format!("GPUs {}", names.join(", ")),
    };
    let locality = placement::PciLocality {
        local_cpus: cpus,
        numa_node,
    };
    CpuBinding::near(&label, Ok(locality), allowed)
}

/// Near the fabric's NIC (`[fabric] nic`, else the only RDMA device on a fast
/// fabric).
fn near_nic(target: &BindTarget<'_>, sysfs_root: &Path, allowed: &[usize]) -> CpuBinding {
    let fast = target.fabric_kind.is_some_and(FabricKind::is_fast);
    let nic = match target.nic {
        Some(nic) => Some(nic.to_owned()),
        None if fast => placement::sole_rdma_device_in(sysfs_root),
        None => None,
    };
    match nic {
        Some(nic) => CpuBinding::near(
            &format!("NIC {nic}"),
            placement::nic_locality_in(sysfs_root, &nic),
            allowed,
        ),
        None => {
            let mut b = CpuBinding::none(
                "no binding: locality unknown (no GPU chosen for this rank, and no fabric NIC: \
                 set [fabric] nic)",
            );
            b.allowed_cpus = placement::format_cpulist(allowed);
            b
        }
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use super::*;

    #[test]
    fn one_gpu_per_rank() {
        let host = Host {
            vars: [("SLURM_LOCALID", "3"), ("CUDA_VISIBLE_DEVICES", "0,1,2,3")]
                .into_iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect(),
        };
        assert_eq!(gpus_for_rank(&host, 1).map(|g| g.0), Some("3".to_owned()));
        assert_eq!(gpus_for_rank(&host, 2).map(|g| g.0), Some("2,3".to_owned()));
        // As many visible as asked for: all of them, unchanged.
        assert_eq!(gpus_for_rank(&host, 4), None);
        let host = Host {
            vars: [("CUDA_VISIBLE_DEVICES", "GPU-a,GPU-b")]
                .into_iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect(),
        };
        // No local rank known: leave the devices alone.
        assert_eq!(gpus_for_rank(&host, 1), None);
    }
}
