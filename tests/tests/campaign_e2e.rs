//! `hybrun campaign run --submit` end to end on the project's local Slurm
//! cluster (3 nodes): one sbatch job per node count, native and hybrid cells
//! of a node count in the same allocation, srun starting the ranks (MPICH,
//! pmi2), every cell collected into the run, and a second run resuming with
//! nothing left to submit.
//!
//! Needs: the cluster (scripts/cluster), ch-run, the MPICH hybench build, the
//! mpich test image (built here on first use), hybrun built in this target
//! directory. A missing piece fails under CI and skips loudly elsewhere.
//!
//! The cluster's nodes share one kernel and /dev/shm, so MPICH/UCX takes ranks
//! of different nodes for one host and tries shared memory between separate
//! containers: the scenario sets `UCX_POSIX_USE_PROC_LINK=n` for every cell
//! (PLATFORM.md), native included, so the modes stay comparable.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use hybrun::campaign::results;
use hybrun_e2e::{
    Mpi, cluster, describe, note_past_capture, on_path, openmpi_rank_crashed, repo_root, require,
    run_with_timeout,
};

/// hybrun as built next to this test (target/<profile>/hybrun).
fn hybrun_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("hybrun");
    path.is_file().then_some(path)
}

/// The MPICH test image (built on first use), or None after `require`.
fn mpich_image(hybrun: &std::path::Path) -> Option<PathBuf> {
    let image = repo_root().join("target/images/mpich");
    if !image.join("app/hybench").is_file() {
        let out = Command::new(repo_root().join("scripts/make-test-images"))
            .arg("mpich")
            .env("HYBRUN", hybrun)
            .output()
            .expect("scripts/make-test-images");
        if !require(
            "the mpich test image",
            out.status.success(),
            &String::from_utf8_lossy(&out.stderr),
        ) {
            return None;
        }
    }
    Some(image)
}

#[test]
fn submit_runs_every_node_count_in_its_own_allocation_and_collects_all_cells() {
    let Some(hybrun) = hybrun_binary() else {
        require("the hybrun binary", false, "cargo build -p hybrun");
        return;
    };
    if !require("ch-run", on_path("ch-run"), "run scripts/setup") {
        return;
    }
    let Some(hybench) = Mpi::Mpich.require_hybench() else {
        return;
    };
    let Some(slurm_conf) = cluster() else { return };
    let Some(image) = mpich_image(&hybrun) else {
        return;
    };

    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("submit.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"name = "submit-e2e"
launches = 2
timeout = "90s"
control = false
site = "{site}"
runtime = "charliecloud"
[stop]
enabled = false
[matrix]
benchmark = ["allreduce"]
mode = ["native", "hybrid"]
nodes = [2, 3]
ranks_per_node = [1]
image = ["{image}"]
env = [{{ UCX_POSIX_USE_PROC_LINK = "n" }}]
[benchmark.allreduce]
sizes = "4:64"
iterations = 50
warmup = 5
"#,
            site = repo_root().join("scenarios/site-local.toml").display(),
            image = image.display()
        ),
    )
    .unwrap();
    let results_dir = dir.path().join("results");
    let mut cmd = Command::new(&hybrun);
    cmd.args(["campaign", "run", "--submit"])
        .arg(&scenario)
        .arg("--results")
        .arg(&results_dir)
        .env("SLURM_CONF", &slurm_conf)
        .env("HYBENCH_MPICH", &hybench)
        .env(
            "USER",
            std::env::var("USER").unwrap_or_else(|_| "root".into()),
        )
        .env_remove("SLURM_JOB_ID");
    let out = run_with_timeout(&cmd, Duration::from_secs(400));
    assert!(out.status.success(), "{}", describe(&cmd, &out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.matches("submitted job").count(), 2, "{stderr}");

    let run = std::fs::read_dir(results_dir.join("submit-e2e"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let records = results::read_records(&run).unwrap();
    let failed: Vec<_> = records
        .iter()
        .filter(|r| r.status != results::Outcome::Ok)
        .collect();
    assert!(failed.is_empty(), "failed launches: {failed:#?}");
    // 2 node counts x 2 modes x 2 launches, each once.
    let keys: BTreeSet<(String, u32)> = records
        .iter()
        .map(|r| (r.cell_key.clone(), r.launch))
        .collect();
    assert_eq!((records.len(), keys.len()), (8, 8), "{keys:?}");
    // All modes of a node count share one allocation; the node counts differ.
    let mut jobs: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in &records {
        let nodes = r.cell_key.split('.').nth(2).unwrap().to_owned();
        jobs.entry(nodes)
            .or_default()
            .insert(r.slurm_job_id.clone());
    }
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    for ids in jobs.values() {
        assert_eq!(ids.len(), 1, "one allocation per node count: {jobs:?}");
        assert!(!ids.iter().next().unwrap().is_empty());
    }
    assert_ne!(jobs["2x1"], jobs["3x1"]);
    // hybench saw the ranks on as many nodes as the cell asked, in every mode.
    for row in results::read_results(&run).unwrap() {
        let want: u32 = if row.cell_key.contains(".3x1.") { 3 } else { 2 };
        assert_eq!(
            (row.row.comm_size, row.row.nodes),
            (want, want),
            "{}",
            row.cell_key
        );
        assert!(!row.row.slurm_job_id.is_empty());
    }
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("manifest.json")).unwrap()).unwrap();
    assert!(manifest["slurm_jobs"]["n2"].is_string(), "{manifest}");
    assert!(manifest["slurm_jobs"]["n3"].is_string(), "{manifest}");
    assert!(run.join("report.md").is_file());

    // The same command again: everything is done, nothing is submitted.
    let out = run_with_timeout(&cmd, Duration::from_secs(120));
    assert!(out.status.success(), "{}", describe(&cmd, &out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("submitted job"), "{stderr}");
    assert_eq!(results::read_records(&run).unwrap().len(), 8);
}

/// The LAMMPS image (scripts/make-app-image: debootstrap of Debian 12 with
/// lammps and openmpi-bin), built on first use, or None after `require`.
fn lammps_image() -> Option<PathBuf> {
    let image = repo_root().join("target/images/lammps");
    if !image.join("usr/bin/lmp").is_file() {
        let out = Command::new(repo_root().join("scripts/make-app-image"))
            .output()
            .expect("scripts/make-app-image");
        if !require(
            "the LAMMPS image",
            out.status.success(),
            &String::from_utf8_lossy(&out.stderr),
        ) {
            return None;
        }
    }
    Some(image)
}

/// A real application nobody here wrote, inside vs outside: Debian's LAMMPS
/// (`lmp`, Open MPI) on the Lennard-Jones melt of scenarios/app-lammps.toml
/// (32,000 atoms), shortened to 20 steps, 2 ranks on 2 nodes of the local
/// cluster through `--submit`: native (the host's lmp), hybrid (the image's
/// lmp and Open MPI) and bind (the image's lmp on the host's Open MPI), with
/// the A/A control. Every launch reads LAMMPS's "Loop time"; the report has
/// the headline of both container modes and the control.
#[test]
fn lammps_runs_as_a_cell_native_hybrid_and_bind_across_two_nodes() {
    let Some(hybrun) = hybrun_binary() else {
        require("the hybrun binary", false, "cargo build -p hybrun");
        return;
    };
    if !require("ch-run", on_path("ch-run"), "run scripts/setup")
        || !require("lmp", on_path("lmp"), "run scripts/setup (lammps)")
    {
        return;
    }
    let Some(slurm_conf) = cluster() else { return };
    let Some(image) = lammps_image() else { return };
    let dir = tempfile::tempdir().unwrap();
    let scenario = dir.path().join("lj.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"name = "lj-e2e"
launches = 6
timeout = "120s"
site = "{site}"
runtime = "charliecloud"
[stop]
enabled = false
[matrix]
benchmark = ["lj"]
mode = ["native", "hybrid", "bind"]
nodes = [2]
ranks_per_node = [1]
mpi = ["openmpi"]
image = ["{image}"]
[app.lj]
command = ["lmp", "-var", "steps", "20", "-in", "in.lj"]
inputs = ["{input}"]
metric = {{ regex = 'Loop time of (?P<value>[0-9.eE+-]+) on 2 procs', unit = "s", better = "lower" }}
success = 'Total wall time'
"#,
            site = repo_root().join("scenarios/site-local.toml").display(),
            image = image.display(),
            input = repo_root().join("scenarios/inputs/in.lj").display(),
        ),
    )
    .unwrap();
    let results_dir = dir.path().join("results");
    let mut cmd = Command::new(&hybrun);
    cmd.args(["campaign", "run", "--submit"])
        .arg(&scenario)
        .arg("--results")
        .arg(&results_dir)
        .env("SLURM_CONF", &slurm_conf)
        .env(
            "USER",
            std::env::var("USER").unwrap_or_else(|_| "root".into()),
        )
        .env_remove("SLURM_JOB_ID");
    let out = run_with_timeout(&cmd, Duration::from_secs(600));
    assert!(out.status.success(), "{}", describe(&cmd, &out));
    let run = std::fs::read_dir(results_dir.join("lj-e2e"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let records = results::read_records(&run).unwrap();
    // LAMMPS is Debian's, built with Open MPI: one launch may meet the
    // platform's rare Open MPI crash (hybrun_e2e::run_mpi_job); the campaign
    // records it as failed and reports on the other launches. Any other
    // failure, or a second crash, fails the test.
    let (crashed, failed): (Vec<_>, Vec<_>) = records
        .iter()
        .filter(|r| r.status != results::Outcome::Ok)
        .partition(|r| r.stderr_tail.as_deref().is_some_and(openmpi_rank_crashed));
    assert!(failed.is_empty(), "failed launches: {failed:#?}");
    assert!(crashed.len() <= 1, "crashed launches: {crashed:#?}");
    if let Some(r) = crashed.first() {
        note_past_capture(&format!(
            "NOTE: launch {} of {} met the platform's Open MPI crash (a rank's segmentation \
             fault); the campaign recorded it as failed: {:?}",
            r.launch, r.cell_key, r.stderr_tail
        ));
    }
    // native, native', hybrid, bind x 6 launches, all in one allocation.
    assert_eq!(records.len(), 24);
    for row in results::read_results(&run).unwrap() {
        assert!(row.row.median > 0.0, "{}: Loop time", row.cell_key);
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("report.json")).unwrap()).unwrap();
    let headline = report["headline"].as_array().unwrap();
    let modes: BTreeSet<&str> = headline.iter().filter_map(|h| h["mode"].as_str()).collect();
    assert_eq!(modes, BTreeSet::from(["bind", "hybrid"]), "{report}");
    for h in headline {
        assert_eq!(h["benchmark"], "lj");
        for key in ["ratio", "ci_low", "ci_high"] {
            assert!(h[key].is_number(), "{key}: {h}");
        }
        assert!(h["verdict"].is_string(), "{h}");
        assert!(h["control"]["ratio"].is_number(), "{h}");
    }
    eprintln!(
        "{}",
        std::fs::read_to_string(run.join("report.md"))
            .unwrap()
            .lines()
            .take(20)
            .collect::<Vec<_>>()
            .join("\n")
    );
}
