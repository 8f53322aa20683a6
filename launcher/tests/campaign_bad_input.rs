//! Bad scenarios and options fail before anything runs, with the file, line
//! and key, and the fix; no run directory is created.

use std::path::Path;
use std::process::Command;

const HYBRUN: &str = env!("CARGO_BIN_EXE_hybrun");

/// Runs `hybrun campaign run` on `text`; returns (exit code, stderr, whether
/// anything appeared under the results directory).
fn run(text: &str, extra: &[&str]) -> (Option<i32>, String, bool) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("img")).unwrap();
    let scenario = dir.path().join("s.toml");
    // A stand-in hybench: nothing may run, so it never is.
    std::fs::write(
        &scenario,
        format!("name = \"bad\"\n[hybench]\nmpich = \"/bin/true\"\n{text}"),
    )
    .unwrap();
    let results = dir.path().join("results");
    let mut cmd = Command::new(HYBRUN);
    cmd.args(["campaign", "run"]).arg(&scenario);
    if !extra.contains(&"--results") {
        cmd.arg("--results").arg(&results);
    }
    let out = cmd
        .args(extra)
        .env_remove("SLURM_JOB_ID")
        .env_remove("HYBENCH_MPICH")
        .output()
        .unwrap();
    let created = results.exists();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
        created,
    )
}

fn assert_refused(text: &str, wanted: &[&str]) {
    let (code, stderr, created) = run(text, &[]);
    assert_eq!(code, Some(1), "{stderr}");
    for w in wanted {
        assert!(stderr.contains(w), "missing {w:?} in: {stderr}");
    }
    assert!(!created, "nothing is created for a bad scenario: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one clear line: {stderr}");
}

#[test]
fn unknown_benchmark() {
    assert_refused(
        "[matrix]\nbenchmark = [\"latency\", \"lat\"]\nmode = [\"native\"]\n",
        &[
            "s.toml:5:25: matrix.benchmark: unknown benchmark \"lat\"",
            "hybench has latency, bw",
        ],
    );
}

#[test]
fn unknown_mode() {
    assert_refused(
        "[matrix]\nbenchmark = [\"latency\"]\nmode = [\"native\", \"container\"]\n",
        &[
            "s.toml:6:19: matrix.mode: unknown mode \"container\"; write native, hybrid, bind, inside",
        ],
    );
}

#[test]
fn unknown_key() {
    assert_refused(
        "launchs = 3\n[matrix]\nbenchmark = [\"latency\"]\nmode = [\"native\"]\n",
        &["s.toml:4:1", "unknown field `launchs`"],
    );
}

#[test]
fn missing_image() {
    assert_refused(
        "[matrix]\nbenchmark = [\"latency\"]\nmode = [\"native\", \"hybrid\"]\nimage = [\"nope.sif\"]\n",
        &[
            "s.toml:7:10: matrix.image: image \"nope.sif\" not found",
            "scripts/make-test-images",
        ],
    );
}

#[test]
fn impossible_matrix() {
    assert_refused(
        "[matrix]\nbenchmark = [\"latency\"]\nmode = [\"native\"]\nranks_per_node = [3]\n",
        &[
            "s.toml:7:19",
            "latency runs on exactly 2 ranks, and this cell has 3",
        ],
    );
    assert_refused(
        "[matrix]\nbenchmark = [\"multi-lat\"]\nmode = [\"native\"]\nnodes = [3]\nranks_per_node = [1]\n",
        &["multi-lat needs an even number of ranks"],
    );
    assert_refused(
        "[matrix]\nbenchmark = [\"latency\"]\nmode = [\"inside\"]\nimage = [\"img\"]\nnodes = [2]\nranks_per_node = [1]\n",
        &["matrix.mode: mode inside runs mpiexec in one container on one node"],
    );
}

#[test]
fn exclusion_matching_nothing() {
    assert_refused(
        "[matrix]\nbenchmark = [\"latency\"]\nmode = [\"native\"]\n[[exclude]]\nmode = \"bind\"\n",
        &["exclude: this exclusion matches no cell"],
    );
}

#[test]
fn multi_node_cells_need_an_allocation() {
    assert_refused(
        "[matrix]\nbenchmark = [\"latency\"]\nmode = [\"native\"]\nnodes = [2]\nranks_per_node = [1]\n",
        &["needs 2 nodes: run the campaign inside an allocation (salloc/sbatch) or with --submit"],
    );
}

#[test]
fn unwritable_results_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let under_a_file = file.join("results");
    let (code, stderr, _) = run(
        "[matrix]\nbenchmark = [\"latency\"]\nmode = [\"native\"]\n",
        &["--results", under_a_file.to_str().unwrap()],
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("is not writable") && stderr.contains("pass --results DIR"),
        "{stderr}"
    );
    assert!(!Path::new(&under_a_file).exists());
}
