//! `hybrun run` where there is no Slurm: no `--launcher`, no site `[launcher]
//! kind`, no srun on PATH, so the MPI profile's own mpiexec starts the ranks
//! (hydra for MPICH, Open MPI's mpiexec for Open MPI), each rank in ch-run
//! (hybrid mode, the test images' hybench). Judged by hybench's rows (one MPI
//! job of 2 ranks of the right MPI, in a container) and by the launch record
//! (the launcher chosen and the note saying why). Also: a ch-run join that
//! fails leaves nothing in /dev/shm.
//!
//! Needs: ch-run, mpiexec.hydra and mpiexec.openmpi, the test images
//! (scripts/make-test-images) and hybrun built in this target directory. No
//! Slurm cluster: the PATH given to hybrun is this machine's without srun.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hybrun_core::vocab::RuntimeKind;
use hybrun_e2e::{
    Mpi, describe, on_path, parse_rows, repo_root, require, run_mpi_job, run_with_timeout,
};

const LIMIT: Duration = Duration::from_secs(120);

/// hybrun as built next to this test (target/<profile>/hybrun).
fn hybrun_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("hybrun");
    path.is_file().then_some(path)
}

/// The directory image of `mpi`, built when missing.
fn test_image(hybrun: &Path, mpi: Mpi) -> Option<PathBuf> {
    let image = repo_root().join("target/images").join(mpi.name());
    if !image.join("app/hybench").is_file() {
        let out = Command::new(repo_root().join("scripts/make-test-images"))
            .arg(mpi.name())
            .env("HYBRUN", hybrun)
            .output();
        let built = out.is_ok_and(|o| o.status.success());
        if !require("the test images", built, "scripts/make-test-images") {
            return None;
        }
    }
    Some(image)
}

/// A directory of links to every program in /usr/bin and /bin but Slurm's:
/// this machine as one without Slurm.
fn path_without_slurm(dir: &Path) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("mkdir");
    for system in ["/usr/bin", "/bin"] {
        for entry in std::fs::read_dir(system).expect("read bin").flatten() {
            let name = entry.file_name();
            let slurm = ["srun", "sbatch", "salloc", "scontrol", "squeue", "sinfo"]
                .iter()
                .any(|s| name == *s);
            let link = bin.join(&name);
            if !slurm && std::fs::symlink_metadata(&link).is_err() {
                std::os::unix::fs::symlink(entry.path(), link).expect("link");
            }
        }
    }
    bin
}

/// The launch record hybrun wrote in `records` (one launch).
fn only_record(records: &Path) -> serde_json::Value {
    let record = std::fs::read_dir(records)
        .expect("records written")
        .flatten()
        .next()
        .expect("one record");
    serde_json::from_slice(&std::fs::read(record.path()).expect("read")).expect("json")
}

fn chooses_the_profiles_mpiexec(mpi: Mpi, launcher: &str) {
    let Some(hybrun) = hybrun_binary() else {
        require("the hybrun binary", false, "cargo build -p hybrun");
        return;
    };
    for program in ["ch-run", "mpiexec.hydra", "mpiexec.openmpi"] {
        if !require(program, on_path(program), "run scripts/setup") {
            return;
        }
    }
    let Some(image) = test_image(&hybrun, mpi) else {
        return;
    };
    let work = tempfile::tempdir_in(repo_root().join("target")).expect("work dir");
    let bin = path_without_slurm(work.path());
    let out_dir = work.path().join("out");
    let records = work.path().join("records");
    std::fs::create_dir_all(&out_dir).expect("mkdir");
    let site = work.path().join("site.toml");
    std::fs::write(
        &site,
        format!(
            "[runtime]\nkind = \"charliecloud\"\n[launcher]\nrecord_dir = \"{}\"\n\
             [mpi.mpich]\nabi = \"mpich\"\npmi = \"pmi2\"\n\
             [mpi.openmpi]\nabi = \"openmpi\"\npmi = \"pmix\"\n",
            records.display()
        ),
    )
    .expect("site");
    let mut cmd = Command::new(&hybrun);
    cmd.env("PATH", &bin)
        .env("USER", "root")
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env_remove("SLURM_JOB_ID")
        .args(["run", "--site", site.to_str().expect("utf-8")])
        .args(["--mode", "hybrid", "--mpi-profile", mpi.name(), "-n", "2"])
        // Separate ch-run containers on one host (PLATFORM.md).
        .args(["--env", "UCX_POSIX_USE_PROC_LINK=n"])
        .args(["-B", &format!("{}:/mnt", out_dir.display())])
        .arg(&image)
        .args(["--", "/app/hybench", "latency", "-m", "1:64", "-i", "20"])
        .args(["--validate", "--format", "csv", "--output", "/mnt/r.csv"]);
    let out = run_mpi_job(&cmd, LIMIT, mpi);
    assert!(out.status.success(), "{}", describe(&cmd, &out));
    let text = std::fs::read_to_string(out_dir.join("r.csv"))
        .unwrap_or_else(|e| panic!("no r.csv ({e}): {}", describe(&cmd, &out)));
    let rows = parse_rows(&text);
    assert!(!rows.is_empty(), "{}", describe(&cmd, &out));
    for r in &rows {
        assert_eq!(r.comm_size, 2, "one MPI job of 2 ranks");
        assert_eq!(r.validation, "pass");
        assert_eq!(r.mpi_flavour, Some(mpi.flavour()));
        assert_eq!(r.container, Some(RuntimeKind::Charliecloud));
        assert!(r.slurm_job_id.is_empty(), "not a Slurm step");
    }
    let doc = only_record(&records);
    assert_eq!(doc["plan"]["launcher"]["kind"], launcher);
    let notes = doc["plan"]["notes"].to_string();
    assert!(
        notes.contains(&format!(
            "launcher {launcher}: no Slurm here (srun not on PATH)"
        )),
        "{notes}"
    );
}

#[test]
fn without_slurm_mpich_ranks_start_with_hydra() {
    chooses_the_profiles_mpiexec(Mpi::Mpich, "mpiexec-hydra");
}

#[test]
fn without_slurm_openmpi_ranks_start_with_open_mpis_mpiexec() {
    chooses_the_profiles_mpiexec(Mpi::OpenMpi, "mpiexec-openmpi");
}

/// A ch-run join that fails (here the first rank's bind target is missing in
/// the read-only image, so the other rank waits for the join lock until
/// ch-run's 30 s timeout) leaves ch-run's semaphore and shared memory in
/// /dev/shm: hybrun removes them once the launch is over and says so. The
/// launch's join tags carry its own id (in the record), so a later launch can
/// never find them under its tag, as it could under ch-run's default tag (the
/// parent's pid, which comes back).
#[test]
fn a_failed_join_leaves_nothing_in_dev_shm() {
    let Some(hybrun) = hybrun_binary() else {
        require("the hybrun binary", false, "cargo build -p hybrun");
        return;
    };
    for program in ["ch-run", "mpiexec.hydra"] {
        if !require(program, on_path(program), "run scripts/setup") {
            return;
        }
    }
    let Some(image) = test_image(&hybrun, Mpi::Mpich) else {
        return;
    };
    let work = tempfile::tempdir_in(repo_root().join("target")).expect("work dir");
    let records = work.path().join("records");
    let site = work.path().join("site.toml");
    std::fs::write(
        &site,
        format!(
            "[runtime]\nkind = \"charliecloud\"\n[launcher]\nkind = \"mpiexec-hydra\"\n\
             record_dir = \"{}\"\n[mpi.mpich]\nabi = \"mpich\"\npmi = \"pmi2\"\n",
            records.display()
        ),
    )
    .expect("site");
    let mut cmd = Command::new(&hybrun);
    cmd.env("USER", "root")
        .env_remove("SLURM_JOB_ID")
        .args(["run", "--site", site.to_str().expect("utf-8")])
        .args(["--mode", "hybrid", "--mpi-profile", "mpich", "-n", "2"])
        .args(["-B", "/tmp:/hybrun-no-such-dir"])
        .arg(&image)
        .args(["--", "/bin/true"]);
    let out = run_with_timeout(&cmd, LIMIT);
    assert!(!out.status.success(), "{}", describe(&cmd, &out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("timeout waiting for join lock"),
        "the join failed: {}",
        describe(&cmd, &out)
    );
    let doc = only_record(&records);
    let launch = doc["plan"]["per_rank"]["launch"]
        .as_str()
        .expect("the launch id in the plan");
    let shm = format!("ch-run_shm-hybrun.{launch}.");
    let sem = format!("sem.ch-run_sem-hybrun.{launch}.");
    assert!(
        stderr.contains("removed what it left in /dev/shm") && stderr.contains(&shm),
        "{}",
        describe(&cmd, &out)
    );
    let left: Vec<String> = std::fs::read_dir("/dev/shm")
        .expect("/dev/shm")
        .flatten()
        .filter_map(|e| e.file_name().into_string().ok())
        .filter(|n| n.starts_with(&shm) || n.starts_with(&sem))
        .collect();
    assert!(left.is_empty(), "left in /dev/shm: {left:?}");
}
