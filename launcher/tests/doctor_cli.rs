//! `hybrun doctor` on this host: the JSON report has its fields, every item a
//! known status, the host MPIs of this machine (MPICH and Open MPI, installed by
//! scripts/setup) with their closure read from ELF files; `--emit-site` drafts a
//! site file that the site loader accepts (round trip) and that names them.

use std::process::Command;

const HYBRUN: &str = env!("CARGO_BIN_EXE_hybrun");

fn doctor(args: &[&str]) -> String {
    let out = Command::new(HYBRUN)
        .arg("doctor")
        .args(args)
        .output()
        .expect("hybrun runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

#[test]
fn json_report_has_its_schema() {
    let doc: serde_json::Value = serde_json::from_str(&doctor(&["--json"])).expect("json");
    for key in [
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
    ] {
        assert!(doc.get(key).is_some(), "no {key} in {doc}");
    }
    let items = doc["items"].as_array().expect("items");
    let sections: Vec<&str> = items.iter().filter_map(|i| i["section"].as_str()).collect();
    for section in [
        "host", "mpi", "fabric", "slurm", "runtime", "gpu", "topology",
    ] {
        assert!(
            sections.contains(&section),
            "no {section} item: {sections:?}"
        );
    }
    for item in items {
        let status = item["status"].as_str().expect("status");
        assert!(matches!(status, "OK" | "WARN" | "MISSING"), "{item}");
        assert!(
            item["name"].is_string() && item["detail"].is_string(),
            "{item}"
        );
        if status != "OK" {
            assert!(item["fix"].is_string(), "a fix for {item}");
        }
    }
    for key in ["devices", "verbs_drivers", "libraries", "kind"] {
        assert!(doc["fabric"].get(key).is_some(), "fabric.{key}");
    }
    for key in ["srun", "version", "mpi_plugins", "error"] {
        assert!(doc["slurm"].get(key).is_some(), "slurm.{key}");
    }
    for key in ["driver", "devices", "nvml", "nvml_error"] {
        assert!(doc["gpu"].get(key).is_some(), "gpu.{key}");
    }
    assert_eq!(doc["topology"]["source"], "sysfs");
    assert!(doc["topology"]["cpus_online"].is_string());
    assert!(
        !doc["topology"]["numa_nodes"]
            .as_array()
            .expect("nodes")
            .is_empty()
    );
    assert_eq!(
        doc["runtimes"].as_array().map(Vec::len),
        Some(3),
        "singularity, apptainer, ch-run"
    );

    // This machine's MPIs (scripts/setup): each with a closure read from ELF.
    let mpis = doc["mpi"].as_array().expect("mpi");
    for profile in ["mpich", "openmpi"] {
        let m = mpis
            .iter()
            .find(|m| m["profile"] == profile)
            .unwrap_or_else(|| panic!("no {profile} in {mpis:?}"));
        let files = m["closure"]["files"].as_array().expect("files");
        assert!(files.len() > 1, "{profile}: closure {files:?}");
        assert!(
            m["closure"]["glibc_max"]
                .as_str()
                .is_some_and(|v| v.starts_with("2.")),
            "{m}"
        );
        // glibc's own libraries are never part of the closure (bind mode leaves
        // them to the image).
        assert!(
            !files
                .iter()
                .any(|f| f["soname"] == "libc.so.6" || f["soname"] == "libm.so.6")
        );
    }
    let openmpi = mpis
        .iter()
        .find(|m| m["profile"] == "openmpi")
        .expect("openmpi");
    assert!(
        openmpi["closure"]["plugin_dirs"]
            .as_array()
            .expect("dirs")
            .iter()
            .any(|d| d.as_str().is_some_and(|d| d.ends_with("openmpi3"))),
        "Open MPI's components are part of what bind mode binds: {}",
        openmpi["closure"]["plugin_dirs"]
    );
}

#[test]
fn emitted_site_file_round_trips_through_the_site_loader() {
    let text = doctor(&["--emit-site"]);
    let config = hybrun::site::Site::parse(&text, "doctor --emit-site")
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mpich = config.mpi.get("mpich").expect("an mpich profile");
    let library = mpich.library.as_deref().expect("library");
    assert!(library.exists(), "{}", library.display());
    assert!(config.mpi.contains_key("openmpi"), "{text}");
    assert_eq!(config.launcher.mpi_profile.as_deref(), Some("mpich"));
    assert!(config.runtime.kind.is_some());
    // And a file written from it loads by path, as --site reads it.
    let dir = tempfile::tempdir().expect("tmp");
    let path = dir.path().join("site.toml");
    std::fs::write(&path, &text).expect("write");
    hybrun::site::Site::read(&path, "--site").expect("loads");
}

#[test]
fn human_report_names_every_section() {
    let text = doctor(&[]);
    for section in [
        "[mpi]",
        "[fabric]",
        "[slurm]",
        "[runtime]",
        "[gpu]",
        "[topology]",
    ] {
        assert!(text.contains(section), "{section} in:\n{text}");
    }
    assert!(text.contains("OK "), "{text}");
}

#[test]
fn exit_status_says_whether_what_every_launch_needs_is_there() {
    // This machine has ch-run and mpiexec: exit 0 (MISSING GPUs do not count).
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hybrun"))
        .arg("doctor")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    // An empty PATH: no runtime, no srun, no mpiexec: the report, then exit 1.
    let empty = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hybrun"))
        .arg("doctor")
        .env("PATH", empty.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains("every launch needs, and this host lacks"),
        "{stdout}"
    );
    assert!(stderr.contains("container runtime"), "{stderr}");
}
