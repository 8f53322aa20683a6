//! The example batch script, `scripts/examples/hybrun-job.sbatch`, submitted
//! as a user would (`sbatch --wait`) to the project's local Slurm cluster: 2
//! nodes, hybench's latency in hybrid and bind mode (ch-run, the MPICH test
//! image) and natively, every run printing its table.
//!
//! Needs: the cluster (scripts/cluster), ch-run, the MPICH hybench build, the
//! mpich test image, hybrun built in this target directory. A missing piece
//! fails under CI and skips loudly elsewhere.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use hybrun_e2e::{Mpi, cluster, describe, on_path, repo_root, require, run_with_timeout};

fn hybrun_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("hybrun");
    path.is_file().then_some(path)
}

#[test]
fn the_example_batch_script_runs_every_mode_on_two_nodes() {
    let Some(hybrun) = hybrun_binary() else {
        require("the hybrun binary", false, "cargo build -p hybrun");
        return;
    };
    if !require("ch-run", on_path("ch-run"), "run scripts/setup")
        || !require("sbatch", on_path("sbatch"), "run scripts/setup")
    {
        return;
    }
    let Some(hybench) = Mpi::Mpich.require_hybench() else {
        return;
    };
    let image = repo_root().join("target/images/mpich");
    if !require(
        "the mpich test image",
        image.join("app/hybench").is_file(),
        "scripts/make-test-images mpich",
    ) {
        return;
    }
    let Some(slurm_conf) = cluster() else { return };
    let dir = tempfile::tempdir().unwrap();
    let output = dir.path().join("job.out");
    // The cluster's nodes share one kernel and /dev/shm: MPICH/UCX must not
    // take ranks of two nodes for one host (PLATFORM.md).
    let export = format!(
        "ALL,IMAGE={},HYBRUN={},HYBENCH={},HYBRUN_SITE={},UCX_POSIX_USE_PROC_LINK=n",
        image.display(),
        hybrun.display(),
        hybench.display(),
        repo_root().join("scenarios/site-local.toml").display()
    );
    let mut cmd = Command::new("sbatch");
    cmd.arg("--wait")
        .arg(format!("--export={export}"))
        .arg(format!("--output={}", output.display()))
        .arg(repo_root().join("scripts/examples/hybrun-job.sbatch"))
        .env("SLURM_CONF", &slurm_conf)
        .env(
            "USER",
            std::env::var("USER").unwrap_or_else(|_| "root".into()),
        )
        .current_dir(dir.path());
    let out = run_with_timeout(&cmd, Duration::from_secs(300));
    let job = std::fs::read_to_string(&output).unwrap_or_default();
    assert!(out.status.success(), "{}\n{job}", describe(&cmd, &out));
    for section in [
        "== container (hybrid mode)",
        "== container (bind mode: the host's MPI in the container)",
        "== native (the host's MPI, no container)",
    ] {
        let at = job
            .find(section)
            .unwrap_or_else(|| panic!("{section:?} missing:\n{job}"));
        let after = &job[at..];
        // Its table: one line per size up to 4K, 2 ranks on 2 nodes.
        let body = after.lines().skip(1).take_while(|l| !l.starts_with("== "));
        let sizes: Vec<&str> = body
            .filter_map(|l| l.split_whitespace().next())
            .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
            .collect();
        assert_eq!(sizes.first(), Some(&"1"), "{section}:\n{job}");
        assert_eq!(sizes.last(), Some(&"4096"), "{section}:\n{job}");
    }
}
