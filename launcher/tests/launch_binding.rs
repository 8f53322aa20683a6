//! `hybrun exec`'s CPU binding near the rank's GPU or NIC: the decision on fake
//! /sys and /proc trees, and the real host (no GPU, no RDMA device here) through
//! the command line.

use std::path::Path;
use std::process::Command;

use hybrun::launch::planner::{BindTarget, cpu_binding_in};
use hybrun_core::placement::parse_cpulist;

const HYBRUN: &str = env!("CARGO_BIN_EXE_hybrun");

/// Two GPUs (bus order 0000:17 then 0000:c1, NUMA 0 and 1) and one Omni-Path
/// adapter near NUMA 0.
fn fake_node(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let sys = root.join("sys");
    let proc = root.join("proc");
    for (id, cpus) in [("0000:c1:00.0", "4-7"), ("0000:17:00.0", "0-3")] {
        std::fs::create_dir_all(proc.join("driver/nvidia/gpus").join(id)).unwrap();
        std::fs::write(
            proc.join("driver/nvidia/gpus").join(id).join("information"),
            format!("Model: fake\nBus Location: {id}\nDevice Minor: 0\n"),
        )
        .unwrap();
        let dev = sys.join("bus/pci/devices").join(id);
        std::fs::create_dir_all(&dev).unwrap();
        std::fs::write(dev.join("local_cpulist"), format!("{cpus}\n")).unwrap();
    }
    let hfi = sys.join("class/infiniband/hfi1_0/device");
    std::fs::create_dir_all(&hfi).unwrap();
    std::fs::write(hfi.join("local_cpulist"), "0-3\n").unwrap();
    (sys, proc)
}

fn cpus(list: &str) -> Vec<usize> {
    parse_cpulist(list).unwrap()
}

#[test]
fn gpu_ordinal_maps_to_bus_order_and_binds_within_allowed() {
    let tmp = tempfile::tempdir().unwrap();
    let (sys, proc) = fake_node(tmp.path());
    let gpu = |d| BindTarget {
        gpu: Some(d),
        ..BindTarget::default()
    };
    // CUDA device 1 in PCI bus order is 0000:c1:00.0, near CPUs 4-7.
    let b = cpu_binding_in(&gpu("1"), &sys, &proc, &cpus("0-7"));
    assert_eq!(b.bind_to.as_deref(), Some("4-7"), "{}", b.why);
    assert!(b.device.contains("0000:c1:00.0"), "{}", b.device);
    assert_eq!(b.cpus, cpus("4-7"));
    // Slurm allowed 2-5: only 4-5 of them (never wider).
    let b = cpu_binding_in(&gpu("1"), &sys, &proc, &cpus("2-5"));
    assert_eq!(b.bind_to.as_deref(), Some("4-5"), "{}", b.why);
    // Slurm bound the rank far from its GPU: kept, with a warning.
    let b = cpu_binding_in(&gpu("1"), &sys, &proc, &cpus("0-1"));
    assert!(b.bind_to.is_none() && b.warn, "{}", b.why);
    assert!(
        b.why.contains("keeping the launcher's binding"),
        "{}",
        b.why
    );
    // Already all near: nothing to do.
    let b = cpu_binding_in(&gpu("0"), &sys, &proc, &cpus("1-2"));
    assert!(b.bind_to.is_none() && !b.warn, "{}", b.why);
    assert!(b.why.contains("single NUMA node"), "{}", b.why);
}

/// Several GPUs per rank: the CPUs near any of them; `-c N`: never fewer than N.
#[test]
fn several_gpus_bind_near_all_of_them_and_at_least_the_ranks_cpus() {
    let tmp = tempfile::tempdir().unwrap();
    let (sys, proc) = fake_node(tmp.path());
    let target = |gpu, min_cpus| BindTarget {
        gpu: Some(gpu),
        min_cpus,
        ..BindTarget::default()
    };
    // CUDA devices 0 and 1 (0000:17 near 0-3, 0000:c1 near 4-7) of allowed
    // 2-5: their CPUs 2-5, all of the allowed.
    let b = cpu_binding_in(&target("0,1", None), &sys, &proc, &cpus("2-9"));
    assert_eq!(b.bind_to.as_deref(), Some("2-7"), "{}", b.why);
    assert!(b.device.starts_with("GPUs 0000:17:00.0"), "{}", b.device);
    // One GPU near 4-7, Slurm allowed 6-11 and the rank runs 4 threads: 6-7
    // near it, and two more of the allowed.
    let b = cpu_binding_in(&target("1", Some(4)), &sys, &proc, &cpus("6-11"));
    assert_eq!(b.bind_to.as_deref(), Some("6-9"), "{}", b.why);
    assert!(b.why.contains("-c 4"), "{}", b.why);
    // Without -c: only the two near it.
    let b = cpu_binding_in(&target("1", None), &sys, &proc, &cpus("6-11"));
    assert_eq!(b.bind_to.as_deref(), Some("6-7"), "{}", b.why);
}

#[test]
fn unknown_gpu_locality_leaves_the_affinity_alone() {
    let tmp = tempfile::tempdir().unwrap();
    let (sys, proc) = fake_node(tmp.path());
    let all = cpus("0-7");
    for target in [
        BindTarget {
            gpu: Some("5"),
            ..BindTarget::default()
        },
        BindTarget {
            gpu: Some("GPU-8f2c"),
            ..BindTarget::default()
        },
        BindTarget {
            gpu: Some("1"),
            gpu_unmappable: Some("CUDA_DEVICE_ORDER=\"FASTEST_FIRST\""),
            ..BindTarget::default()
        },
    ] {
        let b = cpu_binding_in(&target, &sys, &proc, &all);
        assert!(b.bind_to.is_none() && !b.warn, "{}", b.why);
        assert!(b.why.contains("locality unknown"), "{}", b.why);
    }
    // No driver at all.
    let b = cpu_binding_in(
        &BindTarget {
            gpu: Some("0"),
            ..BindTarget::default()
        },
        &sys,
        &tmp.path().join("empty"),
        &all,
    );
    assert!(b.why.contains("locality unknown"), "{}", b.why);
}

#[test]
fn without_a_gpu_the_fabric_nic_decides() {
    let tmp = tempfile::tempdir().unwrap();
    let (sys, proc) = fake_node(tmp.path());
    let all = cpus("0-7");
    // The only RDMA device, for a fast fabric.
    let b = cpu_binding_in(
        &BindTarget {
            fabric_kind: Some(hybrun::site::fabric::FabricKind::Psm2),
            ..BindTarget::default()
        },
        &sys,
        &proc,
        &all,
    );
    assert_eq!(b.bind_to.as_deref(), Some("0-3"), "{}", b.why);
    assert_eq!(b.device, "NIC hfi1_0");
    // Named explicitly.
    let b = cpu_binding_in(
        &BindTarget {
            nic: Some("hfi1_0"),
            ..BindTarget::default()
        },
        &sys,
        &proc,
        &all,
    );
    assert_eq!(b.bind_to.as_deref(), Some("0-3"), "{}", b.why);
    // A NIC that is not there, or TCP with none named: nothing bound.
    for target in [
        BindTarget {
            nic: Some("mlx5_0"),
            ..BindTarget::default()
        },
        BindTarget {
            fabric_kind: Some(hybrun::site::fabric::FabricKind::Tcp),
            ..BindTarget::default()
        },
    ] {
        let b = cpu_binding_in(&target, &sys, &proc, &all);
        assert!(b.bind_to.is_none(), "{}", b.why);
        assert!(b.why.contains("locality unknown"), "{}", b.why);
    }
}

fn exec_json(site: &Path, extra: &[&str]) -> serde_json::Value {
    let out = Command::new(HYBRUN)
        .args(["exec", "--json", "--mode", "native", "--site"])
        .arg(site)
        .args(extra)
        .args(["--", "true"])
        .env_remove("HYBRUN_SITE")
        .output()
        .expect("hybrun exec");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json")
}

#[test]
fn this_host_reports_no_binding_without_error() {
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site.toml");
    std::fs::write(&site, "[runtime]\nkind = \"none\"\n").unwrap();
    let doc = exec_json(&site, &[]);
    let why = doc["cpu_binding"]["why"].as_str().expect("cpu_binding.why");
    // This host: no GPU and no RDMA device (or one NUMA node where there is one).
    if doc["cpu_binding"]["bind_to"].is_null() {
        assert!(
            why.contains("locality unknown") || why.contains("single NUMA node"),
            "{why}"
        );
    }
    assert!(
        doc["plan"]["notes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n.as_str().is_some_and(|n| n.starts_with("CPU binding: "))),
        "{doc}"
    );

    let doc = exec_json(&site, &["--no-cpu-bind"]);
    assert_eq!(doc["cpu_binding"]["why"], "no binding: --no-cpu-bind");

    std::fs::write(
        &site,
        "[runtime]\nkind = \"none\"\n[gpu]\nbind_cpus = false\n[fabric]\nnic = \"hfi1_0\"\n",
    )
    .unwrap();
    let doc = exec_json(&site, &[]);
    assert_eq!(
        doc["cpu_binding"]["why"],
        "no binding: [gpu] bind_cpus = false"
    );
}

#[test]
fn chosen_gpu_sets_pci_bus_order_unless_the_user_did() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    // No image policy here (no [images]): the point is the GPU environment.
    std::fs::create_dir_all(root.join("allowed")).unwrap();
    std::fs::write(root.join("allowed/app.sif"), b"image").unwrap();
    let site = root.join("site.toml");
    std::fs::write(
        &site,
        "[runtime]\nkind = \"singularity\"\nversion = \"3.6.4\"\n",
    )
    .unwrap();
    let run = |order: Option<&str>| -> serde_json::Value {
        let mut cmd = Command::new(HYBRUN);
        cmd.args(["exec", "--json", "--skip-gate", "--nv", "--site"])
            .arg(&site)
            .arg(root.join("allowed/app.sif"))
            .args(["--", "true"])
            .env("SLURM_LOCALID", "1")
            .env("CUDA_VISIBLE_DEVICES", "0,1")
            .env_remove("CUDA_DEVICE_ORDER")
            .env_remove("HYBRUN_SITE");
        if let Some(o) = order {
            cmd.env("CUDA_DEVICE_ORDER", o);
        }
        let out = cmd.output().expect("hybrun exec");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("json")
    };
    let doc = run(None);
    let shell = doc["shell"].as_str().unwrap();
    assert!(
        shell.contains("CUDA_VISIBLE_DEVICES=1") && shell.contains("CUDA_DEVICE_ORDER=PCI_BUS_ID"),
        "{shell}"
    );
    assert!(
        doc["cpu_binding"]["device"]
            .as_str()
            .unwrap()
            .starts_with("GPU"),
        "{doc}"
    );
    let doc = run(Some("FASTEST_FIRST"));
    let shell = doc["shell"].as_str().unwrap();
    assert!(!shell.contains("CUDA_DEVICE_ORDER"), "{shell}");
    let why = doc["cpu_binding"]["why"].as_str().unwrap();
    assert!(
        why.contains("locality unknown") && why.contains("FASTEST_FIRST"),
        "{why}"
    );
}
