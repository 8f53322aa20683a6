//! `hybrun doctor --emit-site`: a draft site file from the report, in the format
//! of launcher/site.example.toml (the site loader reads it back).

use std::fmt::Write as _;

use super::Report;
use crate::host::Host;
use crate::site::fabric::FabricKind;
use crate::site::gpu::GpuVendor;
use hybrun_core::vocab::{LauncherKind, MpiAbi, MpiFlavour, RuntimeKind};

/// A TOML basic string.
fn quote(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `[runtime]`: the first runtime that answered, else the first on PATH.
fn runtime_section(out: &mut String, report: &Report) {
    let runtime = report
        .runtimes
        .iter()
        .find(|r| r.version.is_some())
        .or_else(|| report.runtimes.iter().find(|r| r.path.is_some()));
    out.push_str("\n[runtime]\n");
    match runtime {
        Some(r) => {
            let _ = writeln!(out, "kind = {}", quote(r.kind.name()));
            if let Some(path) = &r.path {
                let _ = writeln!(out, "program = {}", quote(path));
            }
            // The planner reads the version of Singularity/Apptainer (which flags
            // exist); ch-run's is not used.
            if let (Some(v), RuntimeKind::Singularity | RuntimeKind::Apptainer) =
                (&r.version, r.kind)
            {
                let _ = writeln!(out, "version = {}", quote(v));
            }
        }
        None => out.push_str("# no container runtime found on this host\nkind = \"none\"\n"),
    }
    out.push_str("bind_dir = \"/opt/hybrun/host-mpi/lib\"\n");
}

/// `[launcher]`: srun when there is one, else the first MPI's mpiexec.
fn launcher_section(out: &mut String, report: &Report) {
    out.push_str("\n[launcher]\n");
    let first = report.mpi.first();
    if report.slurm.srun.is_some() {
        let _ = writeln!(out, "kind = {}", quote(LauncherKind::Srun.name()));
    } else if let Some(m) = first {
        let kind = reference_flavour(m.abi).mpiexec();
        let _ = writeln!(out, "# no srun on this host\nkind = {}", quote(kind.name()));
    } else {
        let _ = writeln!(out, "kind = {}", quote(LauncherKind::None.name()));
    }
    if let Some(m) = first {
        let _ = writeln!(out, "mpi_profile = {}", quote(&m.profile));
    }
    out.push_str("record_dir = \"{home}/.hybrun/records\"\n");
}

/// The implementation a drafted profile's defaults come from (pmi, mpiexec):
/// Open MPI for its ABI, MPICH for the others.
fn reference_flavour(abi: Option<MpiAbi>) -> MpiFlavour {
    if abi == Some(MpiAbi::Openmpi) {
        MpiFlavour::Openmpi
    } else {
        MpiFlavour::Mpich
    }
}

/// One `[mpi.NAME]` profile per host MPI.
fn mpi_sections(out: &mut String, report: &Report, host: &Host) {
    for m in &report.mpi {
        let reference = reference_flavour(m.abi);
        let abi = reference.abi();
        let _ = writeln!(
            out,
            "\n# {} {} (found by {}); its closure needs GLIBC_{}",
            m.implementation.map_or("MPI", MpiFlavour::label),
            m.version.as_deref().unwrap_or(""),
            m.found_by,
            m.closure.glibc_max.as_deref().unwrap_or("?")
        );
        let _ = writeln!(out, "[mpi.{}]", quote(&m.profile));
        let _ = writeln!(out, "abi = {}", quote(abi.name()));
        let flavour = match m.implementation {
            Some(MpiFlavour::Intel) => MpiFlavour::Intel,
            _ => reference,
        };
        let _ = writeln!(out, "flavour = {}", quote(flavour.name()));
        let pmi = reference.default_plugin();
        if !report.slurm.mpi_plugins.is_empty()
            && !report.slurm.mpi_plugins.iter().any(|p| p == pmi.name())
        {
            let _ = writeln!(out, "# this Slurm has no --mpi={pmi}: ask the admins");
        }
        let _ = writeln!(out, "pmi = {}", quote(pmi.name()));
        let _ = writeln!(out, "library = {}", quote(&m.library));
        let mpiexec = match abi {
            MpiAbi::Openmpi => "mpiexec.openmpi",
            _ => "mpiexec.mpich",
        };
        if let Some(p) = host.which(mpiexec) {
            let _ = writeln!(out, "mpiexec = {}", quote(&p.display().to_string()));
        }
    }
}

/// `[fabric]`: the kind seen, its library and provider directory, its devices.
fn fabric_section(out: &mut String, report: &Report) {
    out.push_str("\n[fabric]\n");
    let Some(kind) = report.fabric.kind else {
        out.push_str(
            "# no fast-network device on this host: no fabric kind, so no fabric guard\n\
             # (MPI between nodes uses TCP). On Omni-Path: kind = \"psm2\"; InfiniBand: \"ucx\".\n",
        );
        return;
    };
    let _ = writeln!(out, "kind = {}", quote(kind.name()));
    let lib = match kind {
        FabricKind::Psm2 => Some("libpsm2.so.2"),
        FabricKind::Opx | FabricKind::Verbs => Some("libfabric.so.1"),
        _ => None,
    };
    let libs: Vec<String> = lib
        .and_then(|l| report.fabric.libraries.iter().find(|f| f.name == l))
        .and_then(|f| f.path.clone())
        .map(|p| vec![quote(&p)])
        .unwrap_or_default();
    let _ = writeln!(out, "libs = [{}]", libs.join(", "));
    let ofi = report
        .fabric
        .libraries
        .iter()
        .find(|f| f.name == "libfabric.so.1")
        .and_then(|f| f.plugin_dir.clone());
    if let (FabricKind::Psm2 | FabricKind::Opx | FabricKind::Verbs, Some(dir)) = (kind, ofi) {
        let _ = writeln!(
            out,
            "plugin_dirs = [{{ src = {}, env = \"FI_PROVIDER_PATH\" }}]",
            quote(&dir)
        );
    }
    let devices = match kind {
        FabricKind::Psm2 | FabricKind::Opx => "[\"/dev/hfi1_*\"]",
        _ => "[\"/dev/infiniband/*\"]",
    };
    let _ = writeln!(out, "devices = {devices}");
}

/// A draft site file in the format of launcher/site.example.toml; `host` finds
/// the MPIs' mpiexec programs.
pub fn site_draft(report: &Report, host: &Host) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# hybrun site file drafted by `hybrun doctor --emit-site` on {} (hybrun {}).\n\
         # Review every value; launcher/site.example.toml documents each key. Install it as\n\
         # /etc/hybrun/site.toml, or pass it with --site / $HYBRUN_SITE.",
        report.host, report.hybrun_version
    );
    runtime_section(&mut out, report);
    launcher_section(&mut out, report);
    mpi_sections(&mut out, report, host);
    fabric_section(&mut out, report);
    out.push_str("\n[gpu]\n");
    let vendor = if report.gpu.driver.is_some() || !report.gpu.devices.is_empty() {
        GpuVendor::Nvidia
    } else {
        GpuVendor::None
    };
    let _ = writeln!(out, "vendor = {}", quote(vendor.name()));
    out
}
