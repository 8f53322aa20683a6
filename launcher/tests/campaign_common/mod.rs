//! What the campaign tests share: the repository, the real components they
//! run (hybench built against MPICH, mpiexec, ch-run, the MPICH test image),
//! found or reported missing: a failure under CI, a loud skip elsewhere.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;

pub const HYBRUN: &str = env!("CARGO_BIN_EXE_hybrun");

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Whether `program` is an executable file on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// `true` when the component is there; else a failure under CI, or a loud
/// skip line and `false`.
pub fn require(component: &str, present: bool, fix: &str) -> bool {
    if present {
        return true;
    }
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false") {
        panic!("required component missing: {component} ({fix})");
    }
    eprintln!("SKIPPED: {component} is missing ({fix})");
    false
}

/// hybench for MPICH with mpiexec.mpich, or None after [`require`].
pub fn hybench() -> Option<PathBuf> {
    let path = std::env::var_os("HYBENCH_MPICH")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/mpich/release/hybench"));
    (require(
        &path.display().to_string(),
        path.is_file(),
        "run scripts/build-hybench mpich",
    ) && require(
        "mpiexec.mpich",
        on_path("mpiexec.mpich"),
        "run scripts/setup",
    ))
    .then_some(path)
}

/// hybench for Open MPI with mpiexec.openmpi, or None after [`require`].
pub fn hybench_openmpi() -> Option<PathBuf> {
    let path = std::env::var_os("HYBENCH_OPENMPI")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo_root().join("target/openmpi/release/hybench"));
    (require(
        &path.display().to_string(),
        path.is_file(),
        "run scripts/build-hybench openmpi",
    ) && require(
        "mpiexec.openmpi",
        on_path("mpiexec.openmpi"),
        "run scripts/setup",
    ))
    .then_some(path)
}

/// The MPICH test image (a directory image for ch-run), built on first use,
/// with ch-run; or None after [`require`].
pub fn mpich_image() -> Option<PathBuf> {
    if !require("ch-run", on_path("ch-run"), "run scripts/setup") {
        return None;
    }
    let image = repo_root().join("target/images/mpich");
    if !image.join("app/hybench").is_file() {
        let out = Command::new(repo_root().join("scripts/make-test-images"))
            .arg("mpich")
            .env("HYBRUN", HYBRUN)
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

/// `hybrun campaign run SCENARIO --results RESULTS` outside any allocation,
/// with `USER` set (ch-run needs it); callers add their own options.
pub fn campaign_run(scenario: &Path, results: &Path) -> Command {
    let mut cmd = Command::new(HYBRUN);
    cmd.args(["campaign", "run"])
        .arg(scenario)
        .arg("--results")
        .arg(results)
        .env_remove("SLURM_JOB_ID")
        .env(
            "USER",
            std::env::var("USER").unwrap_or_else(|_| "root".into()),
        );
    cmd
}

/// The run directory a campaign named `name` wrote under `results` (the
/// first, and in these tests the only, one).
pub fn only_run(results: &Path, name: &str) -> PathBuf {
    std::fs::read_dir(results.join(name))
        .unwrap_or_else(|e| panic!("no run of {name} under {}: {e}", results.display()))
        .next()
        .unwrap_or_else(|| panic!("no run of {name} under {}", results.display()))
        .expect("a directory entry")
        .path()
}

/// The launch records of `run`, each of them ok.
pub fn records_all_ok(run: &Path) -> Vec<hybrun::campaign::results::LaunchRecord> {
    use hybrun::campaign::results::{self, Outcome};
    let records = results::read_records(run).expect("the run's records");
    let failed: Vec<_> = records.iter().filter(|r| r.status != Outcome::Ok).collect();
    assert!(failed.is_empty(), "failed launches: {failed:#?}");
    records
}
