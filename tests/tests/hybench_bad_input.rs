//! Bad input to hybench: one clear message from rank 0, a non-zero exit on
//! every rank, no hang and no panic.

use std::time::Duration;

use hybrun_e2e::{Mpi, describe, on_path, require, run_with_timeout};

/// A hang would hit this limit and fail the test (run_with_timeout asserts).
const LIMIT: Duration = Duration::from_secs(60);

fn expect_clean_failure(mpi: Mpi, ranks: u32, args: &[&str], needle: &str) {
    let Some(hybench) = mpi.require_hybench() else {
        return;
    };
    let prog = match mpi {
        Mpi::Mpich => "mpiexec.mpich",
        Mpi::OpenMpi => "mpiexec.openmpi",
    };
    if !require(prog, on_path(prog), "run scripts/setup") {
        return;
    }
    let mut cmd = mpi.mpiexec(ranks);
    cmd.arg(&hybench).args(args);
    let out = run_with_timeout(&cmd, LIMIT);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let what = describe(&cmd, &out);
    assert!(!out.status.success(), "must fail: {what}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "no panic: {what}"
    );
    let ours = stderr
        .lines()
        .filter(|l| l.starts_with("hybench: error:") || l.starts_with("error:"))
        .count();
    assert_eq!(ours, 1, "exactly one error message (from rank 0): {what}");
    assert!(
        stderr.contains(needle),
        "message names the problem ({needle}): {what}"
    );
    assert!(
        out.stdout.is_empty() || !String::from_utf8_lossy(&out.stdout).contains("# Size"),
        "nothing measured: {what}"
    );
}

#[test]
fn latency_needs_exactly_two_ranks() {
    for mpi in [Mpi::Mpich, Mpi::OpenMpi] {
        expect_clean_failure(mpi, 1, &["latency"], "needs exactly 2 ranks, got 1");
        expect_clean_failure(mpi, 3, &["latency"], "needs exactly 2 ranks, got 3");
        expect_clean_failure(mpi, 3, &["bw"], "needs exactly 2 ranks, got 3");
    }
}

#[test]
fn pairs_need_an_even_rank_count() {
    expect_clean_failure(Mpi::Mpich, 3, &["multi-lat"], "even number of ranks");
    expect_clean_failure(Mpi::OpenMpi, 3, &["mbw-mr"], "even number of ranks");
    expect_clean_failure(
        Mpi::Mpich,
        4,
        &["mbw-mr", "--pairs", "3"],
        "--pairs 3 is out of range",
    );
}

#[test]
fn malformed_size_ranges() {
    expect_clean_failure(
        Mpi::Mpich,
        2,
        &["latency", "-m", "16:4"],
        "MIN (16) is larger than MAX (4)",
    );
    expect_clean_failure(Mpi::Mpich, 2, &["latency", "-m", "abc"], "is not a size");
    expect_clean_failure(Mpi::OpenMpi, 2, &["bw", "-m", "1:4X"], "unknown unit");
    expect_clean_failure(
        Mpi::OpenMpi,
        2,
        &["bw", "-m", "1:8G"],
        "above the 1 GiB limit",
    );
    expect_clean_failure(
        Mpi::Mpich,
        2,
        &["latency", "--window", "8"],
        "--window applies to",
    );
    expect_clean_failure(
        Mpi::Mpich,
        2,
        &["latency", "--no-such-option"],
        "--no-such-option",
    );
}

#[test]
fn unwritable_output_paths() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dir/out.csv");
    let missing = missing.to_str().unwrap();
    expect_clean_failure(
        Mpi::Mpich,
        2,
        &["latency", "-m", "8", "--output", missing],
        "cannot write the output file",
    );
    expect_clean_failure(
        Mpi::OpenMpi,
        2,
        &["latency", "-m", "8", "--samples", missing],
        "cannot write the samples file",
    );
    // A directory where a file is expected.
    let d = dir.path().to_str().unwrap();
    expect_clean_failure(
        Mpi::Mpich,
        2,
        &["bw", "-m", "8", "--output", d],
        "cannot write the output file",
    );
}
