//! A campaign killed at any moment resumes to exactly the launches of a clean
//! run: no row lost, none duplicated, none torn. With the real hybench under
//! mpiexec.mpich (tiny sizes and iterations), not a stand-in.
//!
//! Kills come two ways: SIGKILL from outside at several moments (mostly
//! mid-launch), and the store's crash points (`HYBRUN_CAMPAIGN_CRASH`), which
//! SIGKILL the process half-way through writing result rows, samples or the
//! done-record: moments an outside kill cannot hit reliably.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use hybrun::campaign::results;

mod campaign_common;

use campaign_common::{HYBRUN, hybench};

fn write_scenario(dir: &Path, hybench: &Path) -> PathBuf {
    let path = dir.join("resume.toml");
    std::fs::write(
        &path,
        format!(
            r#"name = "resume"
launches = 3
timeout = "60s"
control = false
[hybench]
mpich = "{}"
[stop]
enabled = false
[matrix]
benchmark = ["latency", "allreduce"]
mode = ["native"]
env = [{{ HYB_CELL = "a" }}, {{ HYB_CELL = "b" }}]
[benchmark.latency]
sizes = "1:8"
iterations = 50
warmup = 5
[benchmark.allreduce]
sizes = "4:8"
iterations = 50
warmup = 5
"#,
            hybench.display()
        ),
    )
    .unwrap();
    path
}

fn campaign(scenario: &Path, results: &Path) -> Command {
    let mut c = Command::new(HYBRUN);
    c.args(["campaign", "run"])
        .arg(scenario)
        .arg("--results")
        .arg(results)
        .arg("--no-report")
        .env_remove("HYBRUN_CAMPAIGN_CRASH")
        .env_remove("SLURM_JOB_ID")
        .stdin(Stdio::null());
    c
}

fn run_to_end(scenario: &Path, results: &Path) -> String {
    let out = campaign(scenario, results).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "campaign failed: {stderr}");
    stderr
}

/// The one run directory under `results/resume/`.
fn run_dir(results: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(results.join("resume"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(dirs.len(), 1, "one run directory: {dirs:?}");
    dirs[0].clone()
}

/// What a run holds, read strictly: every line whole, every row parsed.
#[derive(Debug, PartialEq)]
struct State {
    launches: BTreeSet<(String, u32)>,
    rows: BTreeSet<(String, u32, u64)>,
    samples: BTreeMap<(String, u32, u64), usize>,
}

/// After a run that ended by itself the files hold nothing past the records;
/// after a kill they may (rows of the launch that was running, perhaps torn:
/// `kill -9` can cut a write short), and the readers must not see them.
fn state(dir: &Path) -> State {
    state_as(dir, Ended::ByItself)
}

#[derive(Clone, Copy, PartialEq)]
enum Ended {
    ByItself,
    Killed,
}

fn state_as(dir: &Path, ended: Ended) -> State {
    for name in [results::RESULTS, results::SAMPLES, results::LAUNCHES] {
        let bytes = std::fs::read(dir.join(name)).unwrap();
        if ended == Ended::ByItself {
            assert!(
                bytes.is_empty() || bytes.ends_with(b"\n"),
                "{name} ends with a torn line"
            );
        }
        if name != results::LAUNCHES {
            let whole = results::committed(dir, name).unwrap();
            if ended == Ended::ByItself {
                assert_eq!(whole, bytes, "{name} holds rows past the last record");
            }
        }
    }
    let records = results::read_records(dir).unwrap();
    let mut launches = BTreeSet::new();
    for r in &records {
        assert_eq!(r.status, results::Outcome::Ok, "launch failed: {r:?}");
        assert!(
            launches.insert((r.cell_key.clone(), r.launch)),
            "launch recorded twice: {} #{}",
            r.cell_key,
            r.launch
        );
    }
    let mut rows = BTreeSet::new();
    for r in results::read_results(dir).unwrap() {
        let key = (r.cell_key.clone(), r.launch, r.row.size_bytes);
        assert!(
            launches.contains(&(r.cell_key.clone(), r.launch)),
            "row of an unrecorded launch: {key:?}"
        );
        assert!(rows.insert(key.clone()), "duplicate row {key:?}");
    }
    let text = String::from_utf8(results::committed(dir, results::SAMPLES).unwrap()).unwrap();
    let mut samples = BTreeMap::new();
    for line in text.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        assert_eq!(f.len(), 9, "torn or malformed sample row {line:?}");
        let key = (
            f[0].to_owned(),
            f[1].parse().unwrap(),
            f[4].parse().unwrap(),
        );
        assert!(f[7].parse::<f64>().is_ok(), "sample value in {line:?}");
        *samples.entry(key).or_insert(0) += 1;
    }
    State {
        launches,
        rows,
        samples,
    }
}

/// A clean, uninterrupted run: what every resumed run must end up equal to
/// (same launches, rows and sample counts; the timings differ, of course).
/// Also how long that run took, which the kill test scales its moments by.
fn clean() -> Option<&'static (PathBuf, State, Duration)> {
    static CLEAN: OnceLock<Option<(PathBuf, State, Duration)>> = OnceLock::new();
    CLEAN
        .get_or_init(|| {
            let hybench = hybench()?;
            let dir = tempfile::tempdir().unwrap().keep();
            let scenario = write_scenario(&dir, &hybench);
            let t0 = Instant::now();
            run_to_end(&scenario, &dir.join("results"));
            let took = t0.elapsed();
            let run = run_dir(&dir.join("results"));
            let s = state(&run);
            assert_eq!(s.launches.len(), 4 * 3, "4 cells x 3 launches");
            // latency: sizes 1, 2, 4, 8; allreduce: 4, 8 (floats).
            assert_eq!(s.rows.len(), 2 * 3 * (4 + 2));
            for ((key, _, _), n) in &s.samples {
                let per_size = if key.starts_with("latency") { 50 } else { 100 };
                assert_eq!(*n, per_size, "samples of {key}");
            }
            Some((run, s, took))
        })
        .as_ref()
}

#[test]
fn crash_points_inside_appends_resume_to_the_clean_run() {
    let Some((_, expected, _)) = clean() else {
        return;
    };
    let hybench = hybench().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), &hybench);
    let results = dir.path().join("results");
    // Each crash at a later append than the launches the previous ones left.
    for point in [
        "results-torn:2",
        "samples-torn:2",
        "record-torn:1",
        "after-record:2",
        "results-torn:1",
    ] {
        let out = campaign(&scenario, &results)
            .env("HYBRUN_CAMPAIGN_CRASH", point)
            .output()
            .unwrap();
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGKILL),
            "{point}: the crash point kills the campaign: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        // Before any resume, the readers see the recorded launches only,
        // not the whole or torn rows the killed launch left behind.
        let partial = state_as(&run_dir(&results), Ended::Killed);
        assert!(partial.launches.is_subset(&expected.launches), "{point}");
    }
    let stderr = run_to_end(&scenario, &results);
    assert!(stderr.contains("resuming"), "{stderr}");
    let got = state(&run_dir(&results));
    assert_eq!(&got, expected);
}

#[test]
fn kill_9_at_several_moments_then_resume() {
    let Some((_, expected, clean_took)) = clean() else {
        return;
    };
    let hybench = hybench().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), &hybench);
    let results = dir.path().join("results");
    let mut kills = 0;
    let mut interrupted_midway = 0;
    // Moments as fractions of a clean run's time, so that on a fast machine or
    // a slow one the first kills find the campaign still running (the first
    // five add up to 0.75 of a clean run) and the later ones find part of it
    // done.
    for fraction in [0.05, 0.1, 0.15, 0.2, 0.25, 0.3] {
        let delay = clean_took.mul_f64(fraction);
        let mut child = campaign(&scenario, &results)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        while t0.elapsed() < delay {
            if child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        let status = child.wait().unwrap();
        assert!(
            status.success() || status.signal() == Some(libc::SIGKILL),
            "{status:?}"
        );
        // Whatever the moment, what is on disk is consistent.
        if results.join("resume").exists() {
            let partial = state_as(&run_dir(&results), Ended::Killed);
            assert!(partial.launches.is_subset(&expected.launches));
            if !partial.launches.is_empty() && partial.launches != expected.launches {
                interrupted_midway += 1;
            }
        }
    }
    eprintln!(
        "{kills} kills, {interrupted_midway} left a part-done run (clean run {clean_took:?})"
    );
    assert!(kills >= 3, "the kills hit a running campaign ({kills})");
    assert!(
        interrupted_midway >= 1,
        "no kill left a campaign part-done (clean run took {clean_took:?})"
    );
    run_to_end(&scenario, &results);
    let run = run_dir(&results);
    assert_eq!(&state(&run), expected);

    // Run again: nothing left to do, nothing changes.
    let before = std::fs::read(run.join(results::RESULTS)).unwrap();
    let stderr = run_to_end(&scenario, &results);
    assert!(
        stderr.contains("12 of 12 launches already done"),
        "{stderr}"
    );
    assert!(stderr.contains("0 launches run"), "{stderr}");
    assert_eq!(std::fs::read(run.join(results::RESULTS)).unwrap(), before);
}

#[test]
fn report_and_compare_of_real_runs() {
    let Some((clean_run, _, _)) = clean() else {
        return;
    };
    let hybench = hybench().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let scenario = write_scenario(dir.path(), &hybench);
    let results = dir.path().join("results");
    // --new next to an existing run starts a second one.
    run_to_end(&scenario, &results);
    let out = campaign(&scenario, &results).arg("--new").output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        std::fs::read_dir(results.join("resume")).unwrap().count(),
        2
    );

    let out = Command::new(HYBRUN)
        .arg("report")
        .arg(clean_run)
        .output()
        .unwrap();
    let md = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        md.contains("## latency") && md.contains("## allreduce"),
        "{md}"
    );
    assert!(
        md.contains("paired by round") && md.contains("distribution-free 95% interval"),
        "the method is stated: {md}"
    );
    assert!(md.contains("libmpich"), "the mapped library is shown: {md}");
    for f in ["report.md", "report.csv", "report.json"] {
        assert!(clean_run.join(f).is_file(), "{f}");
    }
    let plots: Vec<_> = std::fs::read_dir(clean_run.join("plots"))
        .unwrap()
        .collect();
    assert!(!plots.is_empty(), "plots written");

    let other = std::fs::read_dir(results.join("resume"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let out = Command::new(HYBRUN)
        .args(["compare", "--format", "json"])
        .arg(clean_run)
        .arg(&other)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    // 4 cells x (4 or 2 sizes) matched by what they measure.
    assert_eq!(json["rows"].as_array().unwrap().len(), 2 * (4 + 2));
    // 3 launches a cell are too few for an interval (at least 6), and say so.
    assert!(json["rows"][0]["ci_low"].is_null(), "{json}");
    assert!(
        json["rows"][0]["note"]
            .as_str()
            .unwrap()
            .contains("at least 6"),
        "{json}"
    );
    // And one line per cell over every size.
    assert_eq!(json["headline"].as_array().unwrap().len(), 4, "{json}");
    assert!(json["headline"][0]["note"].is_string(), "{json}");
}

/// A copy of the clean run, resumed by the same scenario (its run id).
fn copy_of_clean(dir: &Path) -> Option<(PathBuf, PathBuf)> {
    let (clean_run, _, _) = clean()?;
    let hybench = hybench().unwrap();
    let scenario = write_scenario(dir, &hybench);
    let results = dir.join("results");
    let run = results.join("resume").join(clean_run.file_name().unwrap());
    std::fs::create_dir_all(&run).unwrap();
    for entry in std::fs::read_dir(clean_run).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), run.join(entry.file_name())).unwrap();
        }
    }
    Some((scenario, run))
}

fn sizes(run: &Path) -> Vec<u64> {
    [results::RESULTS, results::SAMPLES, results::LAUNCHES]
        .iter()
        .map(|n| std::fs::symlink_metadata(run.join(n)).unwrap().len())
        .collect()
}

#[test]
fn a_resume_refuses_edited_records_and_planted_links_and_cuts_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let Some((scenario, run)) = copy_of_clean(dir.path()) else {
        return;
    };
    // The last record's results_end edited down to 10 bytes.
    let text = std::fs::read_to_string(run.join(results::LAUNCHES)).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_owned).collect();
    let last = lines.len();
    let mut record: serde_json::Value = serde_json::from_str(&lines[last - 1]).unwrap();
    record["results_end"] = 10.into();
    lines[last - 1] = record.to_string();
    std::fs::write(run.join(results::LAUNCHES), lines.join("\n") + "\n").unwrap();
    let before = sizes(&run);
    let out = campaign(&scenario, &dir.path().join("results"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("launches.jsonl line {last}")) && stderr.contains("--new"),
        "{stderr}"
    );
    assert_eq!(sizes(&run), before, "nothing cut: {stderr}");

    // results.csv replaced by a link to a file outside the run directory.
    std::fs::write(run.join(results::LAUNCHES), text).unwrap();
    let outside = dir.path().join("outside.csv");
    std::fs::rename(run.join(results::RESULTS), &outside).unwrap();
    std::fs::write(
        &outside,
        [std::fs::read(&outside).unwrap(), vec![b'x'; 100]].concat(),
    )
    .unwrap();
    let len = std::fs::metadata(&outside).unwrap().len();
    std::os::unix::fs::symlink(&outside, run.join(results::RESULTS)).unwrap();
    let out = campaign(&scenario, &dir.path().join("results"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("results.csv is a symbolic link"),
        "{stderr}"
    );
    assert_eq!(std::fs::metadata(&outside).unwrap().len(), len, "untouched");
}
