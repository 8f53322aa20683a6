//! The doctor on a fake host: a tree with /dev, /sys, /proc, /etc and a loader
//! cache, a PATH of fake programs, fake ELF libraries.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use super::*;
use crate::host::fake_elf::FakeElf;
use crate::host::ldcache::{host_flags, write_fake};
use crate::site::fabric::FabricKind;

fn put(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().expect("dir")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn program(bin: &Path, name: &str, body: &str) {
    let path = bin.join(name);
    std::fs::create_dir_all(bin).expect("mkdir");
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// An Omni-Path node with MPICH, UCX, PSM2, Slurm, ch-run and one GPU.
fn fake_host(root: &Path, flags: i32) -> Where {
    let lib = root.join("lib");
    FakeElf::new()
        .soname("libc.so.6")
        .defines(&["GLIBC_2.34", "GLIBC_2.36"])
        .write(&root.join("lib/x86_64-linux-gnu/libc.so.6"));
    FakeElf::new()
        .soname("libmpich.so.12")
        .needs(&["libucs.so.0", "libc.so.6"])
        .version_need("libc.so.6", "GLIBC_2.17")
        .write(&lib.join("libmpich.so.12.2.2"));
    std::os::unix::fs::symlink("libmpich.so.12.2.2", lib.join("libmpich.so.12")).expect("link");
    FakeElf::new()
        .soname("libucs.so.0")
        .needs(&["libmissing.so.3"])
        .version_need("libc.so.6", "GLIBC_2.34")
        .write(&lib.join("libucs.so.0"));
    FakeElf::new()
        .needs(&["libucs.so.0"])
        .write(&lib.join("ucx/libuct_ib.so.0"));
    FakeElf::new()
        .soname("libpsm2.so.2")
        .version_need("libc.so.6", "GLIBC_2.28")
        .write(&lib.join("libpsm2.so.2"));
    let path = |n: &str| lib.join(n).display().to_string();
    write_fake(
        &root.join("etc/ld.so.cache"),
        &[
            (flags, "libmpich.so.12", &path("libmpich.so.12")),
            (flags, "libucs.so.0", &path("libucs.so.0")),
            (flags, "libpsm2.so.2", &path("libpsm2.so.2")),
        ],
    );
    put(root, "dev/hfi1_0", "");
    put(root, "dev/nvidia0", "");
    put(root, "etc/libibverbs.d/hfi1verbs.driver", "");
    put(
        root,
        "proc/driver/nvidia/version",
        "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar\n",
    );
    put(root, "sys/devices/system/cpu/online", "0-1\n");
    for cpu in 0..2 {
        let topo = format!("sys/devices/system/cpu/cpu{cpu}/topology");
        put(root, &format!("{topo}/physical_package_id"), "0\n");
        put(root, &format!("{topo}/core_id"), &format!("{cpu}\n"));
    }
    put(root, "sys/devices/system/node/node0/cpulist", "0-1\n");
    let bin = root.join("bin");
    program(
        &bin,
        "srun",
        "case \"$1\" in --version) echo 'slurm 23.02.7';; \
         --mpi=list) printf 'MPI plugin types are...\\n\\tpmi2\\n';; esac",
    );
    program(&bin, "ch-run", "echo 0.31");
    program(&bin, "mpiexec.mpich", "exit 0");
    let host = Host::with_vars(&[("PATH", bin.as_os_str())]);
    let loader = Loader::under(root, &["/lib"], "");
    Where::under(root, host, loader)
}

fn item<'a>(report: &'a Report, section: &str, name: &str) -> &'a Item {
    report
        .items
        .iter()
        .find(|i| i.section == section && i.name.contains(name))
        .unwrap_or_else(|| panic!("no {section} item {name}: {:?}", report.items))
}

#[test]
fn a_fake_omni_path_node() {
    let Some(flags) = host_flags() else { return };
    let tmp = tempfile::tempdir().expect("tmp");
    let root = std::fs::canonicalize(tmp.path()).expect("canonical");
    let at = fake_host(&root, flags);
    let report = gather_in(&at, "node1".into(), Err("NVML not loaded".into()));

    assert_eq!(report.glibc.as_deref(), Some("2.36"));
    assert_eq!(item(&report, "host", "glibc").status, Level::Ok);

    // The MPI, its closure with UCX's plugin directory, what it misses.
    let [mpich] = report.mpi.as_slice() else {
        panic!("one MPI: {:?}", report.mpi)
    };
    assert_eq!(
        (mpich.profile.as_str(), mpich.found_by.as_str()),
        ("mpich", "ldconfig -p")
    );
    assert_eq!(mpich.closure.files.len(), 3, "{:?}", mpich.closure.files);
    assert_eq!(mpich.closure.glibc_max.as_deref(), Some("2.34"));
    assert_eq!(mpich.closure.unresolved, ["libmissing.so.3"]);
    assert_eq!(
        mpich.closure.plugin_dirs,
        [root.join("lib/ucx").display().to_string()]
    );
    let i = item(&report, "mpi", "libmpich.so.12");
    assert_eq!(i.status, Level::Warn);
    assert!(
        i.detail.contains("closure 3 files incl. plugins of"),
        "{}",
        i.detail
    );
    assert!(
        i.detail.contains("needs GLIBC_2.34 (libucs.so.0)"),
        "{}",
        i.detail
    );
    assert!(
        i.detail.ends_with("; not found: libmissing.so.3"),
        "{}",
        i.detail
    );
    assert!(i.fix.is_some());
    assert_eq!(
        item(&report, "mpi", "mpicc").status,
        Level::Warn,
        "no wrapper"
    );

    // Fabric: Omni-Path device and PSM2 make kind psm2; UCX is not in the cache.
    assert_eq!(report.fabric.kind, Some(FabricKind::Psm2));
    assert_eq!(item(&report, "fabric", "PSM2").status, Level::Ok);
    assert_eq!(item(&report, "fabric", "UCX").status, Level::Missing);
    assert!(
        item(&report, "fabric", "devices")
            .detail
            .ends_with("(fabric kind psm2)")
    );
    assert_eq!(report.fabric.verbs_drivers, ["hfi1verbs.driver"]);

    // Slurm without pmix, ch-run, a GPU without NVML, topology.
    assert_eq!(report.slurm.version.as_deref(), Some("slurm 23.02.7"));
    let srun = item(&report, "slurm", "srun");
    assert_eq!(srun.status, Level::Warn, "{}", srun.detail);
    assert_eq!(
        item(&report, "runtime", "container runtime").status,
        Level::Ok
    );
    let gpu = item(&report, "gpu", "NVIDIA");
    assert_eq!(gpu.status, Level::Warn);
    assert!(
        gpu.detail
            .starts_with("driver 550.54.15; 1 device files; NVML not loaded"),
        "{}",
        gpu.detail
    );
    assert_eq!((report.topology.sockets, report.topology.cores), (1, 2));
    assert_eq!(item(&report, "topology", "CPUs").status, Level::Ok);

    let text = text::text(&report);
    assert!(
        text.starts_with("hybrun doctor on node1\n\n[host]\nOK      glibc: 2.36"),
        "{text}"
    );
    assert!(text.contains("\n[fabric]\n"), "{text}");
    let (ok, warn, missing) = (
        report.count(Level::Ok),
        report.count(Level::Warn),
        report.count(Level::Missing),
    );
    assert!(text.ends_with(&format!(
        "{} items: {ok} OK, {warn} WARN, {missing} MISSING (MISSING items are only needed for what \
         they name)\n",
        report.items.len()
    )));

    // The draft site file: what the site loader reads back.
    let draft = site::site_draft(&report, &at.host);
    let config =
        crate::site::Site::parse(&draft, "draft").unwrap_or_else(|e| panic!("{e}\n{draft}"));
    let profile = config.mpi.get("mpich").expect("mpich profile");
    assert_eq!(
        profile.library.as_deref(),
        Some(root.join("lib/libmpich.so.12").as_path())
    );
    assert_eq!(config.fabric.kind, Some(FabricKind::Psm2));
    assert!(draft.contains("kind = \"charliecloud\""), "{draft}");
    assert!(draft.contains("kind = \"srun\""), "{draft}");
    assert!(!draft.contains("# this Slurm has no --mpi=pmi2"), "{draft}");
    assert!(
        draft.contains(&format!(
            "mpiexec = \"{}\"",
            root.join("bin/mpiexec.mpich").display()
        )),
        "{draft}"
    );
    assert!(draft.contains("devices = [\"/dev/hfi1_*\"]"), "{draft}");
    assert!(draft.contains("[gpu]\nvendor = \"nvidia\""), "{draft}");
}

#[test]
fn an_empty_host_misses_everything_with_fixes() {
    let tmp = tempfile::tempdir().expect("tmp");
    let at = Where::under(
        tmp.path(),
        Host::default(),
        Loader::under(tmp.path(), &["/lib"], ""),
    );
    let report = gather_in(&at, "bare".into(), Err("no NVML".into()));
    for (section, name, level) in [
        ("host", "glibc", Level::Warn),
        ("mpi", "host MPI", Level::Missing),
        ("mpi", "mpicc", Level::Warn),
        ("fabric", "PSM2", Level::Missing),
        ("fabric", "devices", Level::Warn),
        ("slurm", "srun", Level::Missing),
        ("runtime", "container runtime", Level::Missing),
        ("gpu", "NVIDIA GPUs", Level::Missing),
        ("topology", "CPUs", Level::Warn),
    ] {
        let i = item(&report, section, name);
        assert_eq!(i.status, level, "{section} {name}: {}", i.detail);
        assert!(i.fix.is_some(), "a fix for {section} {name}");
    }
    assert_eq!(report.fabric.kind, None);
    // What every launch needs: a runtime and something that starts ranks.
    assert_eq!(
        report.required_missing.len(),
        2,
        "{:?}",
        report.required_missing
    );
    assert!(report.required_missing[0].contains("container runtime"));
    assert!(report.required_missing[1].contains("srun, or an MPI's mpiexec"));
    let draft = site::site_draft(&report, &at.host);
    assert!(
        draft.contains("# no container runtime found on this host\nkind = \"none\""),
        "{draft}"
    );
    assert!(draft.contains("[launcher]\nkind = \"none\""), "{draft}");
    crate::site::Site::parse(&draft, "draft").unwrap_or_else(|e| panic!("{e}\n{draft}"));
    // The JSON report's keys, in the order the report has always had them.
    let json = serde_json::to_string(&report).expect("json");
    let at = |key: &str| json.find(&format!("\"{key}\":")).expect(key);
    let keys = [
        "hybrun_version",
        "host",
        "glibc",
        "items",
        "mpi_wrappers",
        "pkg_config",
        "mpi",
        "fabric",
        "slurm",
        "runtimes",
        "gpu",
        "topology",
    ];
    assert!(keys.windows(2).all(|w| at(w[0]) < at(w[1])), "{json}");
}
