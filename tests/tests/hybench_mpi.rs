//! hybench under real MPI launchers: mpiexec of MPICH and Open MPI (2 and 4
//! ranks) and srun on the project's local Slurm cluster across 3 nodes.

use std::process::Command;
use std::time::Duration;

use hybrun_e2e::{
    Mpi, assert_rows_sane, cluster, describe, on_path, parse_rows, require, run_mpi_job,
    run_with_timeout,
};

const LIMIT: Duration = Duration::from_secs(240);
/// Small, fast settings: the suite checks behaviour, the benchmarks measure.
const QUICK: [&str; 4] = ["-i", "200", "-x", "10"];
/// With more ranks than the 2 cores, every iteration costs scheduler time slices.
const OVERSUBSCRIBED: [&str; 4] = ["-i", "20", "-x", "2"];

fn launcher_present(mpi: Mpi) -> bool {
    let prog = match mpi {
        Mpi::Mpich => "mpiexec.mpich",
        Mpi::OpenMpi => "mpiexec.openmpi",
    };
    require(prog, on_path(prog), "run scripts/setup")
}

/// Run `bench` under mpiexec with `ranks` ranks and CSV output; check it.
fn mpiexec_case(mpi: Mpi, ranks: u32, bench: &str, sizes: &str, expect: &[u64]) {
    let Some(hybench) = mpi.require_hybench() else {
        return;
    };
    if !launcher_present(mpi) {
        return;
    }
    let mut cmd = mpi.mpiexec(ranks);
    cmd.arg(&hybench).arg(bench);
    if !sizes.is_empty() {
        cmd.args(["-m", sizes]); // barrier takes no size
    }
    cmd.args(["--format", "csv", "--validate"])
        .args(if ranks > 2 { OVERSUBSCRIBED } else { QUICK });
    let out = run_mpi_job(&cmd, LIMIT, mpi);
    assert!(out.status.success(), "{}", describe(&cmd, &out));
    // Open MPI's library version string counts its NUL: none may reach the CSV.
    assert!(
        !out.stdout.contains(&0),
        "a NUL byte in the CSV: {}",
        describe(&cmd, &out)
    );
    let rows = parse_rows(&String::from_utf8_lossy(&out.stdout));
    assert_rows_sane(&rows, bench, expect, ranks, mpi);
    assert!(
        rows.iter()
            .all(|r| bench == "barrier" || r.validation == "pass"),
        "--validate passes: {}",
        describe(&cmd, &out)
    );
    assert!(
        rows.iter()
            .all(|r| r.nodes == 1 && r.container == Some(hybrun_core::vocab::RuntimeKind::None))
    );
}

/// The OSU sweep MIN, 2 MIN, ... <= MAX.
fn sweep(min: u64, max: u64) -> Vec<u64> {
    std::iter::successors(Some(min), |s| Some(s * 2))
        .take_while(|s| *s <= max)
        .collect()
}

#[test]
fn mpich_two_ranks_point_to_point() {
    for bench in ["latency", "bw", "bibw", "multi-lat", "mbw-mr"] {
        mpiexec_case(Mpi::Mpich, 2, bench, "1:64K", &sweep(1, 65536));
    }
}

#[test]
fn openmpi_two_ranks_point_to_point() {
    for bench in ["latency", "bw", "bibw"] {
        mpiexec_case(Mpi::OpenMpi, 2, bench, "1K:16K", &sweep(1024, 16384));
    }
}

#[test]
fn mpich_four_ranks_collectives_and_pairs() {
    mpiexec_case(Mpi::Mpich, 4, "barrier", "", &[0]);
    for bench in ["bcast", "allgather", "alltoall", "gather", "scatter"] {
        mpiexec_case(Mpi::Mpich, 4, bench, "1:16K", &sweep(1, 16384));
    }
    for bench in ["reduce", "allreduce"] {
        // Float reductions start at one float (4 B), as OSU.
        mpiexec_case(Mpi::Mpich, 4, bench, "1:16K", &sweep(4, 16384));
    }
    for bench in ["multi-lat", "mbw-mr"] {
        mpiexec_case(Mpi::Mpich, 4, bench, "8:1K", &sweep(8, 1024));
    }
}

#[test]
fn openmpi_four_ranks_collectives_and_pairs() {
    mpiexec_case(Mpi::OpenMpi, 4, "barrier", "", &[0]);
    for bench in ["allreduce", "reduce"] {
        mpiexec_case(Mpi::OpenMpi, 4, bench, "4:16K", &sweep(4, 16384));
    }
    for bench in [
        "bcast",
        "alltoall",
        "allgather",
        "gather",
        "scatter",
        "multi-lat",
        "mbw-mr",
    ] {
        mpiexec_case(Mpi::OpenMpi, 4, bench, "64:16K", &sweep(64, 16384));
    }
}

/// Runs `--validate --debug-corrupt` and expects the corruption to be caught.
fn corruption_is_caught(mpi: Mpi, ranks: u32, bench: &str, sizes: &str) {
    let Some(hybench) = mpi.require_hybench() else {
        return;
    };
    if !launcher_present(mpi) {
        return;
    }
    let mut cmd = mpi.mpiexec(ranks);
    cmd.arg(&hybench)
        .args([
            bench,
            "-m",
            sizes,
            "--format",
            "csv",
            "--validate",
            "--debug-corrupt",
        ])
        .args(QUICK);
    let out = run_with_timeout(&cmd, LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code().map(|c| c != 0),
        Some(true),
        "corruption must fail the run: {}",
        describe(&cmd, &out)
    );
    assert!(
        stderr.contains("DATA VALIDATION FAILED"),
        "{}",
        describe(&cmd, &out)
    );
    assert!(
        stderr.contains("expected"),
        "the message names the bad byte: {}",
        describe(&cmd, &out)
    );
    assert!(!stderr.contains("panicked"), "{}", describe(&cmd, &out));
    // The result of the failing size is still written, marked as failed.
    let rows = parse_rows(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(
        rows.last().map(|r| r.validation.as_str()),
        Some("fail"),
        "{}",
        describe(&cmd, &out)
    );
}

#[test]
fn validate_catches_corrupted_buffers() {
    corruption_is_caught(Mpi::Mpich, 2, "latency", "64:128");
    corruption_is_caught(Mpi::Mpich, 2, "bw", "4K");
    corruption_is_caught(Mpi::Mpich, 4, "allreduce", "64");
    corruption_is_caught(Mpi::Mpich, 4, "alltoall", "64");
    corruption_is_caught(Mpi::OpenMpi, 2, "bibw", "1K");
    corruption_is_caught(Mpi::OpenMpi, 4, "gather", "64");
}

#[test]
fn samples_file_has_one_row_per_iteration_and_json_has_metadata() {
    let mpi = Mpi::Mpich;
    let Some(hybench) = mpi.require_hybench() else {
        return;
    };
    if !launcher_present(mpi) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let samples = dir.path().join("samples.csv");
    let json = dir.path().join("out.json");
    let mut cmd = mpi.mpiexec(2);
    cmd.arg(&hybench)
        .args([
            "latency", "-m", "4:8", "-i", "50", "-x", "5", "--format", "json", "--output",
        ])
        .arg(&json)
        .arg("--samples")
        .arg(&samples);
    let out = run_with_timeout(&cmd, LIMIT);
    assert!(out.status.success(), "{}", describe(&cmd, &out));
    let text = std::fs::read_to_string(&samples).unwrap();
    let mut rdr = csv::Reader::from_reader(text.as_bytes());
    let headers = rdr.headers().unwrap().clone();
    assert_eq!(
        headers.iter().collect::<Vec<_>>(),
        [
            "benchmark",
            "size_bytes",
            "rank",
            "iteration",
            "value",
            "unit"
        ]
    );
    let rows: Vec<csv::StringRecord> = rdr.records().map(Result::unwrap).collect();
    assert_eq!(rows.len(), 100, "50 timed iterations x 2 sizes");
    assert!(rows.iter().all(|r| r[4].parse::<f64>().unwrap() > 0.0));

    let doc: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let meta = &doc["metadata"];
    assert_eq!(meta["comm_size"], 2);
    assert_eq!(meta["mpi_flavour"], "mpich");
    assert!(
        meta["mpi_library"]
            .as_str()
            .unwrap()
            .contains("libmpich.so.12"),
        "{meta}"
    );
    assert_eq!(doc["ranks"].as_array().unwrap().len(), 2);
    assert!(
        doc["ranks"][1]["cpus"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
    );
    assert_eq!(doc["results"].as_array().unwrap().len(), 2);
    // The JSON's mean of samples equals the OSU value computed from the total time.
    let r0 = &doc["results"][0];
    let (mean, osu) = (
        r0["mean"].as_f64().unwrap(),
        r0["osu_value"].as_f64().unwrap(),
    );
    assert!(
        (mean - osu).abs() <= 1e-6 * osu.max(1.0),
        "mean of samples {mean} == OSU value {osu}"
    );
}

/// srun on the local cluster: 3 nodes, one rank each, the right PMI per MPI.
fn srun_case(mpi: Mpi, nodes: u32, ranks: u32, bench: &str, sizes: &str, expect: &[u64]) {
    let Some(hybench) = mpi.require_hybench() else {
        return;
    };
    let Some(conf) = cluster() else { return };
    let mut cmd = Command::new("srun");
    cmd.env("SLURM_CONF", &conf)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .args(["-K", "-t", "3", &format!("--mpi={}", mpi.srun_mpi())])
        .args(["-N", &nodes.to_string(), "-n", &ranks.to_string()])
        .arg(&hybench)
        .args([bench, "-m", sizes, "--format", "csv", "--validate"])
        .args(if ranks > 2 { OVERSUBSCRIBED } else { QUICK });
    let out = run_mpi_job(&cmd, LIMIT, mpi);
    assert!(out.status.success(), "{}", describe(&cmd, &out));
    // Open MPI's library version string counts its NUL: none may reach the CSV.
    assert!(
        !out.stdout.contains(&0),
        "a NUL byte in the CSV: {}",
        describe(&cmd, &out)
    );
    let rows = parse_rows(&String::from_utf8_lossy(&out.stdout));
    assert_rows_sane(&rows, bench, expect, ranks, mpi);
    for r in &rows {
        assert_eq!(
            r.nodes, nodes,
            "ranks spread over {nodes} nodes: {}",
            r.rank_placement
        );
        assert!(!r.slurm_job_id.is_empty(), "Slurm job id recorded");
        assert!(r.rank_placement.contains("@node1:"), "{}", r.rank_placement);
        assert_eq!(r.validation, "pass");
    }
}

#[test]
fn srun_mpich_pmi2_across_three_nodes() {
    srun_case(Mpi::Mpich, 3, 3, "allreduce", "4:4K", &sweep(4, 4096));
    srun_case(Mpi::Mpich, 2, 2, "latency", "1:1K", &sweep(1, 1024));
}

#[test]
fn srun_openmpi_pmix_across_three_nodes() {
    srun_case(Mpi::OpenMpi, 3, 3, "allreduce", "4:1K", &sweep(4, 1024));
    srun_case(Mpi::OpenMpi, 2, 2, "bw", "1K:8K", &sweep(1024, 8192));
}
