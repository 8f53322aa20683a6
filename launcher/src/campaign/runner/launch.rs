//! One launch of a cell: the planned command spawned in its own process
//! group, writing into a scratch directory (hybench's CSV and samples, or an
//! application's working directory with its inputs), waited for with the
//! scenario's timeout, its output read back into store rows, and a
//! [`LaunchRecord`] of what ran, what was drawn at random for it and how it
//! ended. A launch's own failure (a crash, a timeout, unreadable output, an
//! application output without its metric) is a failed record, never an error.

use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::route::{CellPlanner, Payload, Prepared};
use crate::campaign::results::{self, LaunchRecord, Outcome, Randomized};
use crate::campaign::scenario::{App, Cell, Metric};
use hybrun_core::schema::{ResultRow, SCHEMA_VERSION, Unit};
use hybrun_core::vocab::Benchmark;

/// The variable whose size is drawn per launch (see [`Randomized::env_pad`]).
pub const ENV_PAD: &str = "HYBRUN_ENV_PAD";
/// The most of an application's output read for its metric: the end of it.
const MAX_OUTPUT_READ: u64 = 64 << 20;

/// What a finished (or failed) launch left.
pub(super) struct Finished {
    pub record: LaunchRecord,
    pub results: Vec<u8>,
    pub samples: Vec<u8>,
}

impl Finished {
    fn failed(record: LaunchRecord) -> Finished {
        Finished {
            record,
            results: vec![],
            samples: vec![],
        }
    }
}

/// One launch to run: the cell, its number, and what was drawn for it.
pub(super) struct Job<'c> {
    pub cell: &'c Cell,
    pub launch: u32,
    pub randomized: Option<Randomized>,
}

/// Runs one launch and reads its output. Never fails for the launch's own
/// sake (a crash, a timeout, bad output are recorded as a failed launch).
pub(super) fn run_launch(
    planner: &CellPlanner<'_>,
    job: &Job<'_>,
    scratch: &Path,
    logs: &Path,
    timeout: Duration,
) -> anyhow::Result<Finished> {
    let (cell, launch) = (job.cell, job.launch);
    let app = planner.scenario().app_of(cell);
    let dir = scratch.join(format!("{}.{launch}", cell.key));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let out_csv = dir.join("results.csv");
    let out_samples = dir.join("samples.csv");
    // An application's output stays out of its working directory, so that
    // nothing it writes there can replace it.
    let log = scratch.join(format!("{}.{launch}.log", cell.key));
    let mut payload = Payload {
        cores: job.randomized.as_ref().and_then(|r| r.cores.clone()),
        ..Payload::default()
    };
    match app {
        Some(_) => payload.pwd = Some(dir.clone()),
        None => {
            payload.hybench_args = cell.hybench_args();
            payload.hybench_args.extend([
                "--format".into(),
                "csv".into(),
                "--output".into(),
                out_csv.display().to_string(),
                "--samples".into(),
                out_samples.display().to_string(),
            ]);
        }
    }
    let mut prepared = planner.prepare(cell, &payload)?;
    let mut record = started(cell, launch, &mut prepared);
    record.randomized.clone_from(&job.randomized);
    if let Some(app) = app {
        if let Err(e) = copy_inputs(app, &dir) {
            record.reason = Some(format!("{e:#}"));
            let _ = std::fs::remove_dir_all(&dir);
            return Ok(Finished::failed(record));
        }
    }
    if let Some(r) = &job.randomized {
        prepared
            .command
            .env(ENV_PAD, "x".repeat(r.env_pad as usize));
    }
    let log_file =
        std::fs::File::create(&log).with_context(|| format!("cannot create {}", log.display()))?;
    prepared
        .command
        .stdin(Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        // Its own process group, so a timeout stops every process of the
        // launch (mpiexec and its ranks, or srun), and nothing else.
        .process_group(0);
    // SAFETY: prctl(PR_SET_PDEATHSIG) is async-signal-safe; it makes a
    // killed campaign (kill -9) take its launcher process with it, so a
    // resumed run does not share the cores with an orphaned benchmark.
    unsafe {
        prepared.command.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let t0 = Instant::now();
    let outcome = match prepared.command.spawn() {
        Err(e) => Err(format!("cannot start {}: {e}", prepared.argv[0])),
        Ok(child) => {
            let (status, timed_out) = wait_with_timeout(child, timeout);
            record.duration_s = t0.elapsed().as_secs_f64();
            // What a failed ch-run join left under this launch's tags.
            if let Some(launch) = &prepared.launch {
                crate::launch::runtime::charliecloud::remove_join_leftovers(launch);
            }
            ended(&mut record, status, timed_out, timeout)
        }
    };
    let read = outcome.and_then(|()| match app {
        Some(app) => read_app_output(cell, launch, app, &log, record.duration_s),
        None => read_output(cell, launch, &out_csv, &out_samples).map_err(|e| format!("{e:#}")),
    });
    let finished = match read {
        Ok((rows, n_rows, samples, n_samples)) => {
            record.status = Outcome::Ok;
            record.rows = n_rows;
            record.samples = n_samples;
            let _ = std::fs::remove_file(&log);
            Finished {
                record,
                results: rows,
                samples,
            }
        }
        Err(reason) => {
            if record.status != Outcome::Timeout {
                record.reason = Some(reason);
            }
            record.stderr_tail = Some(tail_of(&log, 2048));
            // Keep the failed launch's output for a person to read.
            let kept = logs.join(format!("{}.{launch}.log", cell.key));
            let _ = std::fs::create_dir_all(logs);
            let _ = std::fs::rename(&log, &kept);
            Finished::failed(record)
        }
    };
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&log);
    Ok(finished)
}

/// Records how the launch ended; Err(reason) when it did not end well.
fn ended(
    record: &mut LaunchRecord,
    status: std::io::Result<std::process::ExitStatus>,
    timed_out: bool,
    timeout: Duration,
) -> Result<(), String> {
    let st = status.map_err(|e| format!("waiting for the launch failed: {e}"))?;
    record.exit_code = st.code();
    record.signal = st.signal();
    if timed_out {
        record.status = Outcome::Timeout;
        record.reason = Some(format!(
            "timed out after {:.0} s (the scenario's timeout); killed",
            timeout.as_secs_f64()
        ));
        return Err(String::new());
    }
    if !st.success() {
        return Err(match (st.code(), st.signal()) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(s)) => format!("killed by signal {s}"),
            _ => "failed".into(),
        });
    }
    Ok(())
}

/// Copies an application's inputs into its launch directory.
fn copy_inputs(app: &App, dir: &Path) -> anyhow::Result<()> {
    for input in &app.inputs {
        let name = input
            .file_name()
            .with_context(|| format!("input {} has no file name", input.display()))?;
        std::fs::copy(input, dir.join(name)).with_context(|| {
            format!(
                "cannot copy the input {} into the launch directory {}",
                input.display(),
                dir.display()
            )
        })?;
    }
    Ok(())
}

/// The end of a file, at most [`MAX_OUTPUT_READ`] bytes.
fn read_end(path: &Path) -> std::io::Result<String> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(MAX_OUTPUT_READ)))?;
    let mut bytes = Vec::new();
    f.take(MAX_OUTPUT_READ).read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// An application's launch, read: its success pattern and its metric (the
/// last match of the metric's expression, or the wall time), as one store row.
fn read_app_output(
    cell: &Cell,
    launch: u32,
    app: &App,
    log: &Path,
    wall_s: f64,
) -> Result<(Vec<u8>, u64, Vec<u8>, u64), String> {
    let output = read_end(log).map_err(|e| format!("cannot read {}: {e}", log.display()))?;
    if let Some(pattern) = &app.success {
        // Validated when the scenario was read.
        let re = regex::Regex::new(pattern).map_err(|e| e.to_string())?;
        if !re.is_match(&output) {
            return Err(format!(
                "{}: exit status 0, but its output never matched the success pattern {pattern:?}",
                cell.benchmark
            ));
        }
    }
    let (value, unit) = match &app.metric {
        Metric::Wall => (wall_s, Unit::Seconds),
        Metric::Regex { pattern, .. } => {
            let re = regex::Regex::new(pattern).map_err(|e| e.to_string())?;
            let Some(found) = re
                .captures_iter(&output)
                .filter_map(|c| c.name("value"))
                .last()
            else {
                return Err(format!(
                    "{}: exit status 0, but its output has no match of the metric {pattern:?}",
                    cell.benchmark
                ));
            };
            let value: f64 = found.as_str().trim().parse().map_err(|_| {
                format!(
                    "{}: the metric matched {:?}, which is not a number",
                    cell.benchmark,
                    found.as_str()
                )
            })?;
            (value, Unit::AppDefined)
        }
    };
    if !(value.is_finite() && value > 0.0) {
        return Err(format!(
            "{}: the metric is {value}, not a positive number (a ratio needs one)",
            cell.benchmark
        ));
    }
    let row = ResultRow {
        benchmark: cell.benchmark.to_string(),
        size_bytes: 0,
        iterations: 1,
        median: value,
        min: value,
        max: value,
        mean: value,
        unit,
        comm_size: cell.ranks(),
        schema_version: SCHEMA_VERSION,
        started_at: hybrun_core::sys::now_utc(),
        ..ResultRow::default()
    };
    let rows = results::results_rows(cell, launch, &[row]).map_err(|e| format!("{e:#}"))?;
    Ok((rows, 1, Vec::new(), 0))
}

/// The record of a launch about to start (failed until it says otherwise).
fn started(cell: &Cell, launch: u32, prepared: &mut Prepared) -> LaunchRecord {
    LaunchRecord {
        cell_key: cell.key.clone(),
        launch,
        benchmark: cell.benchmark.clone(),
        mode: cell.mode,
        status: Outcome::Failed,
        reason: None,
        stderr_tail: None,
        exit_code: None,
        signal: None,
        started_at: hybrun_core::sys::now_utc(),
        duration_s: 0.0,
        host: hybrun_core::sys::hostname(),
        slurm_job_id: std::env::var("SLURM_JOB_ID").unwrap_or_default(),
        argv: prepared.argv.clone(),
        env: prepared.env.clone(),
        per_rank: prepared.per_rank.clone(),
        plan: prepared.plan.take(),
        randomized: None,
        rows: 0,
        samples: 0,
        results_end: 0,
        samples_end: 0,
    }
}

/// Reads hybench's CSV and samples and turns them into store rows.
fn read_output(
    cell: &Cell,
    launch: u32,
    csv_path: &Path,
    samples_path: &Path,
) -> anyhow::Result<(Vec<u8>, u64, Vec<u8>, u64)> {
    let text = std::fs::read(csv_path).with_context(|| {
        format!(
            "hybench exited 0 but wrote no results at {} (is that directory shared with the \
             ranks' nodes and the container?)",
            csv_path.display()
        )
    })?;
    let rows = hybrun_core::schema::read_results_csv(text.as_slice())?;
    if rows.is_empty() {
        bail!("hybench wrote no result rows");
    }
    for r in &rows {
        if r.comm_size != cell.ranks() {
            bail!(
                "hybench ran with {} ranks in MPI_COMM_WORLD, the cell asked for {} (a PMI \
                 mismatch runs N one-rank jobs); check the MPI profile and srun --mpi",
                r.comm_size,
                cell.ranks()
            );
        }
        if r.benchmark.parse::<Benchmark>().ok() != cell.benchmark.bench() {
            bail!(
                "hybench reported benchmark {:?}, expected {:?}",
                r.benchmark,
                cell.benchmark.to_string()
            );
        }
    }
    let results = results::results_rows(cell, launch, &rows)?;
    let samples_text = std::fs::read(samples_path)
        .with_context(|| format!("hybench wrote no samples at {}", samples_path.display()))?;
    let samples = results::samples_rows(cell, launch, &samples_text)?;
    let n_samples = samples.iter().filter(|&&b| b == b'\n').count() as u64;
    Ok((results, rows.len() as u64, samples, n_samples))
}

/// Waits for `child`; after `timeout`, stops its process group (TERM, then
/// KILL 5 s later). Returns the status and whether it timed out.
fn wait_with_timeout(
    mut child: std::process::Child,
    timeout: Duration,
) -> (std::io::Result<std::process::ExitStatus>, bool) {
    let pid = child.id() as i32;
    let (tx, rx) = mpsc::channel();
    // A thread blocked in wait(2) wakes the moment the launch ends: no
    // polling delay is added to a cell's time.
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    match rx.recv_timeout(timeout) {
        Ok(status) => (status, false),
        Err(_) => {
            // SAFETY: kill(2) on the launch's own process group.
            unsafe { libc::kill(-pid, libc::SIGTERM) };
            let status = match rx.recv_timeout(Duration::from_secs(5)) {
                Ok(s) => s,
                Err(_) => {
                    // SAFETY: as above.
                    unsafe { libc::kill(-pid, libc::SIGKILL) };
                    rx.recv()
                        .unwrap_or_else(|_| Err(std::io::Error::other("the waiting thread ended")))
                }
            };
            // Ranks that ignored TERM must not outlive their launch.
            // SAFETY: as above.
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            (status, true)
        }
    }
}

/// The last `max` bytes of a file, from a line start.
fn tail_of(path: &Path, max: usize) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = bytes.len().saturating_sub(max);
    let mut s = &bytes[start..];
    if start > 0 {
        if let Some(i) = s.iter().position(|&b| b == b'\n') {
            s = &s[i + 1..];
        }
    }
    String::from_utf8_lossy(s).trim_end().to_owned()
}

/// Kill what a killed campaign of this run left running. A campaign killed
/// with SIGKILL takes its launcher with it (PR_SET_PDEATHSIG), but a launcher's
/// own children can outlive it (hydra's pmi proxy and ranks blocked in
/// MPI_Init, seen here): left alone they would share the cores with the
/// resumed run's measurements. They are recognised by the scratch directory in
/// their argv, `hybrun-campaign-<run id>-<pid>/`, whose pid is a campaign that
/// no longer exists (a live one, e.g. a concurrent --submit worker, is spared).
/// An application's processes are recognised by their working directory.
pub(super) fn reap_orphans(run_id: &str) {
    let marker = format!("hybrun-campaign-{run_id}-");
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    let alive = |pid: u32| {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|st| {
                st.rsplit(')')
                    .next()
                    .is_some_and(|rest| !rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(false)
    };
    for entry in procs.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == std::process::id() {
            continue;
        }
        // hybench names the scratch directory in its argv; an application
        // runs in it (its working directory, here or in a container).
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).unwrap_or_default();
        let text = format!("{}\0{}", String::from_utf8_lossy(&cmdline), cwd.display());
        let Some(at) = text.find(&marker) else {
            continue;
        };
        let owner: String = text[at + marker.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if owner.parse::<u32>().is_ok_and(|owner| !alive(owner)) {
            // SAFETY: kill(2) on a pid we just read; a vanished pid is harmless.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}
