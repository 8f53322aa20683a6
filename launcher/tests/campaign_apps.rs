//! Applications as campaign cells, with real launches: MPICH's mpiexec on
//! this machine, native and hybrid (ch-run, the MPICH test image). Each launch
//! runs in a directory of its own holding the app's inputs (the container's
//! rank starts there too: ch-run --cd), its metric is read from its output,
//! and an output without the metric, or without the success pattern, is a
//! failed launch with the tail of that output, next to the launches that
//! succeeded (nothing recorded is lost).

mod campaign_common;

use campaign_common::{campaign_run, mpich_image, on_path, only_run, repo_root, require};
use hybrun::campaign::results::{self, Outcome};

/// The scenario: three applications, native and hybrid, in `dir`.
fn write_scenario(dir: &std::path::Path, image: &std::path::Path) -> std::path::PathBuf {
    std::fs::create_dir(dir.join("inputs")).unwrap();
    // The input holds the metric: reading it proves the launch directory has
    // the inputs and is where the ranks (native and in the container) start.
    std::fs::write(
        dir.join("inputs/result.txt"),
        "Loop time of 2.5 on 2 procs for 100 steps\nTotal wall time: 0:00:03\n",
    )
    .unwrap();
    let scenario = dir.join("apps.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"name = "apps"
launches = 6
timeout = "60s"
site = "{site}"
runtime = "charliecloud"
[stop]
enabled = false
[matrix]
benchmark = ["reader", "silent", "unsure"]
mode = ["native", "hybrid"]
# One rank: two ranks of a command that is not an MPI program need not
# start together, and ch-run's per-node join needs its first rank alive.
ranks_per_node = [1]
image = ["{image}"]
[app.reader]
command = ["/bin/sh", "-c", "cat result.txt"]
inputs = ["inputs/result.txt"]
metric = {{ regex = 'Loop time of (?P<value>[0-9.eE+-]+) on 2 procs', unit = "s", better = "lower" }}
success = 'Total wall time'
[app.silent]
command = ["/bin/sh", "-c", "echo the solver diverged"]
metric = {{ regex = 'Loop time of (?P<value>[0-9.]+)', unit = "s" }}
[app.unsure]
command = ["/bin/sh", "-c", "cat result.txt; echo no wall time line"]
inputs = ["inputs/result.txt"]
metric = "wall"
success = 'Performance:'
"#,
            site = repo_root().join("scenarios/site-local.toml").display(),
            image = image.display()
        ),
    )
    .unwrap();
    scenario
}

/// One launch record: the reader succeeds; the others fail, saying why.
fn check_record(r: &results::LaunchRecord) {
    let app = r.cell_key.split('.').next().unwrap();
    match app {
        "reader" => assert_eq!(r.status, Outcome::Ok, "{r:#?}"),
        "silent" => {
            assert_eq!(r.status, Outcome::Failed);
            let reason = r.reason.as_deref().unwrap_or_default();
            assert!(reason.contains("no match of the metric"), "{reason}");
            assert!(
                r.stderr_tail
                    .as_deref()
                    .unwrap_or_default()
                    .contains("the solver diverged"),
                "{r:#?}"
            );
        }
        "unsure" => {
            assert_eq!(r.status, Outcome::Failed);
            assert!(
                r.reason
                    .as_deref()
                    .unwrap_or_default()
                    .contains("never matched the success pattern"),
                "{r:#?}"
            );
        }
        other => panic!("unexpected cell {other}"),
    }
}

#[test]
fn applications_are_cells_their_metric_is_read_and_a_missing_match_is_a_failed_launch() {
    if !require(
        "mpiexec.mpich",
        on_path("mpiexec.mpich"),
        "run scripts/setup",
    ) {
        return;
    }
    let Some(image) = mpich_image() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), &image);
    let results_dir = dir.path().join("results");
    let out = campaign_run(&scenario, &results_dir).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    // Some launches failed, some did not: the campaign itself succeeds.
    assert!(out.status.success(), "{stderr}");
    let run = only_run(&results_dir, "apps");
    let records = results::read_records(&run).unwrap();
    // 3 apps x (native, native', hybrid) x 6 launches.
    assert_eq!(records.len(), 54, "{records:#?}");
    for r in &records {
        check_record(r);
    }
    // The reader's metric, as written, in every mode: ratio 1, equivalent.
    for row in results::read_results(&run).unwrap() {
        assert!(row.cell_key.starts_with("reader."), "{}", row.cell_key);
        assert_eq!((row.row.median, row.row.size_bytes), (2.5, 0));
    }
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(run.join("report.json")).unwrap()).unwrap();
    let reader = report["headline"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| h["benchmark"] == "reader")
        .unwrap_or_else(|| panic!("{report}"));
    assert_eq!(reader["mode"], "hybrid");
    assert_eq!(reader["ratio"], 1.0);
    assert_eq!(reader["verdict"], "equivalent");
    assert_eq!(reader["control"]["verdict"], "equivalent");
    assert_eq!(reader["unit"], "s");
    assert!(
        stdout.contains("reader ("),
        "the headline is printed: {stdout}"
    );
    let md = std::fs::read_to_string(run.join("report.md")).unwrap();
    assert!(
        md.contains("the solver diverged"),
        "the failure's output tail: {md}"
    );
}
