//! `hybench --format osu` under a real `mpiexec` (2 ranks, this machine, no
//! cluster): every benchmark hybench shares with the OSU Micro-Benchmarks prints
//! text that the regexes OSU users write parse — the title (`^# OSU MPI Latency
//! Test`, ...), the column names, and one data line per size
//! (`^(\d+)\s+([\d.]+)$`; mbw-mr adds the message rate, barrier has no size) —
//! and each value is the one hybench's own CSV of the same run (`--csv`) holds,
//! rounded as OSU rounds (`%.2f`).
//!
//! The binary is the one cargo built (`HYBENCH=PATH` picks another, e.g.
//! `target/mpich/release/hybench` from `scripts/build-hybench mpich`); the
//! launcher is the one of the MPI it links (`mpiexec.mpich` or `mpiexec.openmpi`).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use regex::Regex;

/// Small, fast settings: the test checks the format, not the numbers.
const QUICK: [&str; 4] = ["-i", "20", "-x", "2"];

fn hybench() -> PathBuf {
    std::env::var_os("HYBENCH").map_or_else(|| env!("CARGO_BIN_EXE_hybench").into(), PathBuf::from)
}

/// `mpiexec -n 2` of the MPI `binary` links (its DT_NEEDED, as `ldd` shows it).
fn mpiexec(binary: &Path) -> Command {
    let ldd = Command::new("ldd").arg(binary).output().expect("run ldd");
    let libs = String::from_utf8_lossy(&ldd.stdout);
    if libs.contains("libmpich") {
        let mut c = Command::new("mpiexec.mpich");
        c.args(["-n", "2"]);
        c
    } else if libs.contains("libmpi.so") {
        let mut c = Command::new("mpiexec.openmpi");
        // Root in CI; 2 ranks on however many cores there are.
        c.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
            .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
            .args(["--oversubscribe", "-n", "2"]);
        c
    } else {
        panic!(
            "{} links neither MPICH nor Open MPI:\n{libs}",
            binary.display()
        );
    }
}

/// Run `bench` with `args` and `--format osu --csv FILE`; the OSU text and the
/// CSV rows.
fn run(bench: &str, args: &[&str]) -> (String, Vec<csv::StringRecord>, csv::StringRecord) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let csv_path = dir.path().join(format!("{bench}.csv"));
    let binary = hybench();
    let mut cmd = mpiexec(&binary);
    cmd.arg(&binary)
        .arg(bench)
        .args(args)
        .args(QUICK)
        .args(["--format", "osu", "--csv"])
        .arg(&csv_path);
    let out: Output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e} (install MPI: scripts/setup)"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let mut reader = csv::Reader::from_path(&csv_path).expect("the --csv file");
    let header = reader.headers().expect("CSV header").clone();
    let rows = reader
        .records()
        .collect::<Result<Vec<_>, _>>()
        .expect("CSV rows");
    (String::from_utf8(out.stdout).expect("UTF-8"), rows, header)
}

/// The CSV column `name` of `row`.
fn column<'a>(header: &csv::StringRecord, row: &'a csv::StringRecord, name: &str) -> &'a str {
    let i = header
        .iter()
        .position(|h| h == name)
        .unwrap_or_else(|| panic!("no CSV column {name}"));
    &row[i]
}

/// `value` as OSU prints it (`%.2f`).
fn osu_rounded(value: &str) -> String {
    format!("{:.2}", value.parse::<f64>().expect("a number"))
}

/// (title, header line, sizes from) of each benchmark, as OSU users match them.
const SIZED: [(&str, &str, &str); 12] = [
    (
        "latency",
        r"^# OSU MPI Latency Test v7\.2$",
        r"^# Size\s+Latency \(us\)$",
    ),
    (
        "bw",
        r"^# OSU MPI Bandwidth Test v7\.2$",
        r"^# Size\s+Bandwidth \(MB/s\)$",
    ),
    (
        "bibw",
        r"^# OSU MPI Bi-Directional Bandwidth Test v7\.2$",
        r"^# Size\s+Bandwidth \(MB/s\)$",
    ),
    (
        "multi-lat",
        r"^# OSU MPI Multi Latency Test v7\.2$",
        r"^# Size\s+Latency \(us\)$",
    ),
    (
        "bcast",
        r"^# OSU MPI Broadcast Latency Test v7\.2$",
        r"^# Size\s+Avg Latency\(us\)$",
    ),
    (
        "reduce",
        r"^# OSU MPI Reduce Latency Test v7\.2$",
        r"^# Size\s+Avg Latency\(us\)$",
    ),
    (
        "allreduce",
        r"^# OSU MPI Allreduce Latency Test v7\.2$",
        r"^# Size\s+Avg Latency\(us\)$",
    ),
    (
        "allgather",
        r"^# OSU MPI Allgather Latency Test v7\.2$",
        r"^# Size\s+Avg Latency\(us\)$",
    ),
    (
        "alltoall",
        r"^# OSU MPI All-to-All Personalized Exchange Latency Test v7\.2$",
        r"^# Size\s+Avg Latency\(us\)$",
    ),
    (
        "gather",
        r"^# OSU MPI Gather Latency Test v7\.2$",
        r"^# Size\s+Avg Latency\(us\)$",
    ),
    (
        "scatter",
        r"^# OSU MPI Scatter Latency Test v7\.2$",
        r"^# Size\s+Avg Latency\(us\)$",
    ),
    (
        "mbw-mr",
        r"^# OSU MPI Multiple Bandwidth / Message Rate Test v7\.2$",
        r"^# Size\s+MB/s\s+Messages/s$",
    ),
];

/// Each line matched by exactly one pattern: title, header, datatype, data, or
/// an empty line (OSU prints one before a collective's title and after
/// mbw-mr's); the captured data lines.
fn parse(bench: &str, text: &str, title: &str, header: &str, data: &str) -> Vec<Vec<String>> {
    let (title, header, data) = (
        Regex::new(title).expect("regex"),
        Regex::new(header).expect("regex"),
        Regex::new(data).expect("regex"),
    );
    let other =
        Regex::new(r"^(# Datatype: MPI_[A-Z0-9_]+\.|# \[ pairs: 1 \] \[ window size: 64 \]|)$")
            .expect("regex");
    let mut captured = Vec::new();
    let (mut titles, mut headers) = (0, 0);
    for line in text.lines() {
        if title.is_match(line) {
            titles += 1;
        } else if header.is_match(line) {
            headers += 1;
        } else if let Some(c) = data.captures(line) {
            assert_eq!(headers, 1, "{bench}: data before the column names:\n{text}");
            captured.push(
                c.iter()
                    .skip(1)
                    .map(|m| m.expect("group").as_str().to_owned())
                    .collect(),
            );
        } else {
            assert!(
                other.is_match(line),
                "{bench}: unexpected line {line:?} in:\n{text}"
            );
        }
    }
    // osu_mbw_mr prints its title twice.
    let want_titles = if bench == "mbw-mr" { 2 } else { 1 };
    assert_eq!((titles, headers), (want_titles, 1), "{bench}:\n{text}");
    captured
}

#[test]
fn every_osu_benchmark_parses_with_osu_regexes_and_matches_the_csv() {
    for (bench, title, header) in SIZED {
        let sizes = if matches!(bench, "reduce" | "allreduce") {
            "4:1K"
        } else {
            "1:1K"
        };
        let (text, rows, csv_header) = run(bench, &["-m", sizes]);
        let data = if bench == "mbw-mr" {
            r"^(\d+)\s+([\d.]+)\s+([\d.]+)$"
        } else {
            r"^(\d+)\s+([\d.]+)$"
        };
        let lines = parse(bench, &text, title, header, data);
        assert_eq!(
            lines.len(),
            rows.len(),
            "{bench}: one line per size:\n{text}"
        );
        assert!(rows.len() >= 9, "{bench}: {} sizes", rows.len());
        for (line, row) in lines.iter().zip(&rows) {
            assert_eq!(line[0], column(&csv_header, row, "size_bytes"), "{bench}");
            assert_eq!(
                line[1],
                osu_rounded(column(&csv_header, row, "osu_value")),
                "{bench} size {}",
                line[0]
            );
            if bench == "mbw-mr" {
                assert_eq!(
                    line[2],
                    osu_rounded(column(&csv_header, row, "message_rate")),
                    "{bench} size {} messages/s",
                    line[0]
                );
            }
        }
    }
}

#[test]
fn barrier_prints_the_average_alone() {
    let (text, rows, csv_header) = run("barrier", &[]);
    let lines = parse(
        "barrier",
        &text,
        r"^# OSU MPI Barrier Latency Test v7\.2$",
        r"^# Avg Latency\(us\)$",
        r"^\s+([\d.]+)$",
    );
    assert_eq!(lines.len(), 1, "{text}");
    assert_eq!(
        lines[0][0],
        osu_rounded(column(&csv_header, &rows[0], "osu_value"))
    );
}

#[test]
fn validate_adds_osu_validation_column() {
    for (bench, header) in [
        ("latency", r"^# Size\s+Latency \(us\)\s+Validation$"),
        ("allreduce", r"^# Size\s+Avg Latency\(us\)\s+Validation$"),
    ] {
        let (text, rows, csv_header) = run(bench, &["-m", "4:64", "--validate"]);
        let title = if bench == "latency" {
            r"^# OSU MPI Latency Test v7\.2$"
        } else {
            r"^# OSU MPI Allreduce Latency Test v7\.2$"
        };
        let lines = parse(
            bench,
            &text,
            title,
            header,
            r"^(\d+)\s+([\d.]+)\s+(Pass|Fail)$",
        );
        assert_eq!(lines.len(), rows.len(), "{text}");
        for (line, row) in lines.iter().zip(&rows) {
            assert_eq!(line[2], "Pass", "{bench}");
            assert_eq!(column(&csv_header, row, "validation"), "pass");
        }
    }
}
