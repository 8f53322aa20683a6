//! Runs a campaign: every cell's launches, in the scenario's order, into the
//! run's store; resumable at any point.
//!
//! A launch is one hybench process tree (all sizes of one cell), started by a
//! [`CellLauncher`] as an argv vector (never a shell line): [`Direct`] for
//! native cells (mpiexec.mpich / mpiexec.openmpi here, srun inside an
//! allocation), [`ThroughLauncher`] for the container modes, which plans each
//! launch with `hybrun::launch` (the same plan `hybrun run` executes). Both put
//! the ranks on cores the same way (`bind = "core"`: HYDRA_BINDING,
//! OMPI_MCA_hwloc_base_binding_policy, SLURM_CPU_BIND in the launcher's
//! environment), so the container is the only difference between the modes.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::io::IsTerminal;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::results::{self, LaunchRecord, Status, Store};
use super::scenario::{Cell, Order, Scenario};
use crate::host::Host;
use crate::launch::plan::Geometry;
use crate::launch::planner::{self, Request};
use hybrun_core::stats::Rng;
use hybrun_core::vocab::{LauncherKind, Mode};

/// Starts one launch of a cell.
pub trait CellLauncher {
    /// The command that runs `hybench_args` (hybench's arguments, without the
    /// program) over the cell's ranks.
    fn prepare(&self, cell: &Cell, hybench_args: &[String]) -> anyhow::Result<Prepared>;
}

/// A command ready to spawn, and what the launch record keeps of it.
pub struct Prepared {
    pub command: Command,
    pub argv: Vec<String>,
    /// Variables added to the launcher's environment.
    pub env: Vec<(String, String)>,
    pub plan: Option<serde_json::Value>,
}

impl Prepared {
    fn new(argv: Vec<OsString>, env: Vec<(String, String)>) -> anyhow::Result<Prepared> {
        let (program, args) = argv.split_first().context("empty command")?;
        let mut command = Command::new(program);
        command.args(args);
        for (k, v) in &env {
            command.env(k, v);
        }
        Ok(Prepared {
            command,
            argv: argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            env,
            plan: None,
        })
    }
}

/// Whether this process runs inside a Slurm allocation (srun starts the ranks).
pub fn in_allocation() -> bool {
    std::env::var_os("SLURM_JOB_ID").is_some_and(|v| !v.is_empty())
}

fn cores() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u32)
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The launcher-side variables that bind ranks to cores (or not), for every
/// launcher alike; plus Open MPI's consent to run as root.
fn launcher_env(scenario: &Scenario, cell: &Cell, srun: bool) -> Vec<(String, String)> {
    let mut env = Vec::new();
    let bind = scenario.bind == "core" && (srun || cell.ranks() <= cores());
    if srun {
        env.push((
            "SLURM_CPU_BIND".into(),
            if bind { "cores" } else { "none" }.into(),
        ));
    } else if cell.flavour == "openmpi" {
        env.push((
            "OMPI_MCA_hwloc_base_binding_policy".into(),
            if bind { "core" } else { "none" }.into(),
        ));
        if is_root() {
            env.push(("OMPI_ALLOW_RUN_AS_ROOT".into(), "1".into()));
            env.push(("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM".into(), "1".into()));
        }
    } else {
        env.push((
            "HYDRA_BINDING".into(),
            if bind { "core" } else { "none" }.into(),
        ));
    }
    env
}

/// Native cells: hybench started directly by mpiexec or srun.
pub struct Direct<'a> {
    pub scenario: &'a Scenario,
    pub in_allocation: bool,
}

impl CellLauncher for Direct<'_> {
    fn prepare(&self, cell: &Cell, hybench_args: &[String]) -> anyhow::Result<Prepared> {
        let hybench = self
            .scenario
            .hybench
            .get(&cell.flavour)
            .with_context(|| format!("no hybench build for {} (native cells)", cell.flavour))?;
        let mut argv: Vec<OsString> = Vec::new();
        let ranks = cell.ranks().to_string();
        if self.in_allocation {
            let mpi = if cell.flavour == "openmpi" {
                "pmix"
            } else {
                "pmi2"
            };
            argv.extend(
                [
                    "srun",
                    "-K",
                    &format!("--mpi={mpi}"),
                    "-N",
                    &cell.nodes.to_string(),
                    "-n",
                    &ranks,
                    "--ntasks-per-node",
                    &cell.ranks_per_node.to_string(),
                ]
                .map(OsString::from),
            );
        } else if cell.flavour == "openmpi" {
            argv.push("mpiexec.openmpi".into());
            if cell.ranks() > cores() {
                argv.push("--oversubscribe".into());
            }
            argv.extend(["-n", &ranks].map(OsString::from));
        } else {
            argv.extend(["mpiexec.mpich", "-n", &ranks].map(OsString::from));
        }
        argv.push(hybench.into());
        argv.extend(hybench_args.iter().map(OsString::from));
        let mut env = launcher_env(self.scenario, cell, self.in_allocation);
        env.extend(cell.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        Prepared::new(argv, env)
    }
}

/// Container cells: planned by `hybrun::launch`, exactly as `hybrun run` would.
pub struct ThroughLauncher<'a> {
    pub scenario: &'a Scenario,
    pub in_allocation: bool,
}

impl CellLauncher for ThroughLauncher<'_> {
    fn prepare(&self, cell: &Cell, hybench_args: &[String]) -> anyhow::Result<Prepared> {
        let mode: Mode = cell.mode.parse()?;
        let launcher = if self.in_allocation {
            LauncherKind::Srun
        } else if cell.flavour == "openmpi" {
            LauncherKind::MpiexecOpenmpi
        } else {
            LauncherKind::MpiexecHydra
        };
        let mut command: Vec<OsString> = vec![self.scenario.container_hybench.clone().into()];
        command.extend(hybench_args.iter().map(OsString::from));
        let req = Request {
            site: self.scenario.site.clone(),
            mode: Some(mode),
            runtime: self
                .scenario
                .runtime
                .as_deref()
                .map(str::parse)
                .transpose()?,
            launcher: Some(launcher),
            mpi_profile: Some(cell.mpi.clone()),
            geometry: Geometry {
                nodes: Some(cell.nodes),
                ntasks: Some(cell.ranks()),
                ntasks_per_node: Some(cell.ranks_per_node),
                ..Geometry::default()
            },
            env: cell
                .env
                .iter()
                .map(|(k, v)| OsString::from(format!("{k}={v}")))
                .collect(),
            oversubscribe: cell.ranks() > cores(),
            image: cell.image.clone(),
            command,
            ..Request::default()
        };
        let planned = planner::plan_run(&req, &Host::current())
            .with_context(|| format!("cell {}: hybrun::launch refused the plan", cell.key))?;
        let rendered = planned.plan.render()?;
        let mut command = rendered.command()?;
        let env = launcher_env(self.scenario, cell, self.in_allocation);
        for (k, v) in &env {
            command.env(k, v);
        }
        let mut all_env: Vec<(String, String)> = rendered
            .env_set
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            })
            .collect();
        all_env.extend(env);
        Ok(Prepared {
            command,
            argv: rendered
                .argv
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            env: all_env,
            plan: serde_json::to_value(&planned.plan).ok(),
        })
    }
}

/// Picks the launcher of a cell's mode.
pub struct Launchers<'a> {
    direct: Direct<'a>,
    container: ThroughLauncher<'a>,
}

impl<'a> Launchers<'a> {
    pub fn new(scenario: &'a Scenario, in_allocation: bool) -> Launchers<'a> {
        Launchers {
            direct: Direct {
                scenario,
                in_allocation,
            },
            container: ThroughLauncher {
                scenario,
                in_allocation,
            },
        }
    }

    pub fn for_cell(&self, cell: &Cell) -> &dyn CellLauncher {
        if cell.mode == "native" {
            &self.direct
        } else {
            &self.container
        }
    }
}

/// Options of `hybrun campaign run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Parent of `<campaign>/<run-id>/` (default `results`).
    pub results: Option<PathBuf>,
    pub new: bool,
    pub run_id: Option<String>,
    /// Draw a progress bar (only when stderr is a terminal).
    pub progress: bool,
    /// Only these cells (`--submit`'s per-allocation workers).
    pub only_nodes: Option<u32>,
}

/// The run directory for `scenario`: `<results>/<name>/<run-id>`, checked
/// writable before anything runs.
pub fn run_dir(scenario: &Scenario, opts: &RunOptions) -> anyhow::Result<PathBuf> {
    let root = opts
        .results
        .clone()
        .unwrap_or_else(|| PathBuf::from("results"));
    let base = root.join(&scenario.name);
    let id = match &opts.run_id {
        Some(id) => id.clone(),
        None if opts.new => {
            let id = scenario.run_id();
            (2..)
                .map(|n| format!("{id}-{n}"))
                .find(|c| !base.join(c).exists())
                .expect("a free name")
        }
        None => scenario.run_id(),
    };
    let dir = base.join(id);
    let unwritable = |e: std::io::Error| {
        anyhow::anyhow!(
            "results directory {} is not writable ({e}); pass --results DIR with a writable \
             directory",
            dir.display()
        )
    };
    std::fs::create_dir_all(&dir).map_err(unwritable)?;
    tempfile::NamedTempFile::new_in(&dir).map_err(unwritable)?;
    Ok(dir)
}

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir)
        .with_context(|| format!("cannot write in {}", dir.display()))?;
    tmp.write_all(bytes)?;
    // Readable like the CSV files (tempfile creates 0600).
    tmp.as_file()
        .set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o644))?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Stores the resolved scenario in the run directory, or checks that the one
/// there is the same (a run id names one scenario).
pub fn store_scenario(dir: &Path, scenario: &Scenario) -> anyhow::Result<()> {
    let path = dir.join("scenario.json");
    if let Ok(text) = std::fs::read(&path) {
        let old: Scenario = serde_json::from_slice(&text)
            .with_context(|| format!("{} is not a resolved scenario", path.display()))?;
        let mut a = old.clone();
        let mut b = scenario.clone();
        a.source = PathBuf::new();
        b.source = PathBuf::new();
        if a != b {
            bail!(
                "{} holds a different scenario than {}; resume it with its own scenario, or \
                 start a fresh run with --new",
                dir.display(),
                scenario.source.display()
            );
        }
        return Ok(());
    }
    write_atomic(&path, &serde_json::to_vec_pretty(scenario)?)
}

/// Checks every cell can be launched, before anything runs: launcher programs
/// on PATH, hybench builds, container plans (hybrun::launch plans every
/// container cell), node counts that need an allocation.
pub fn preflight(scenario: &Scenario, cells: &[&Cell], in_alloc: bool) -> anyhow::Result<()> {
    let host = Host::current();
    let launchers = Launchers::new(scenario, in_alloc);
    for cell in cells {
        if cell.nodes > 1 && !in_alloc {
            bail!(
                "cell {} needs {} nodes: run the campaign inside an allocation (salloc/sbatch) \
                 or with --submit",
                cell.key,
                cell.nodes
            );
        }
        let prepared = launchers
            .for_cell(cell)
            .prepare(cell, &cell.hybench_args())
            .with_context(|| format!("{}: cell {}", scenario.source.display(), cell.key))?;
        let program = &prepared.argv[0];
        if host.which(program).is_none() {
            bail!(
                "cell {}: {program} not found on PATH; install it (scripts/setup) or run where \
                 it exists",
                cell.key
            );
        }
    }
    Ok(())
}

/// The base schedule: every (cell, launch) below `launches`, in the
/// scenario's order.
pub fn schedule(
    scenario: &Scenario,
    cells: &[usize],
    from: u32,
    to: u32,
    round_seed: u64,
) -> Vec<(usize, u32)> {
    let mut order: Vec<(usize, u32)> = Vec::new();
    for launch in from..to {
        for &c in cells {
            order.push((c, launch));
        }
    }
    if scenario.order == Order::Shuffled {
        Rng::new(scenario.seed ^ round_seed.wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .shuffle(&mut order);
    }
    order
}

/// What a finished (or failed) launch left.
struct Outcome {
    record: LaunchRecord,
    results: Vec<u8>,
    samples: Vec<u8>,
}

/// Runs one launch and reads its output. Never fails for the launch's own
/// sake (a crash, a timeout, bad output are recorded as a failed launch).
fn run_launch(
    launcher: &dyn CellLauncher,
    cell: &Cell,
    launch: u32,
    scratch: &Path,
    logs: &Path,
    timeout: Duration,
) -> anyhow::Result<Outcome> {
    let dir = scratch.join(format!("{}.{launch}", cell.key));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let out_csv = dir.join("results.csv");
    let out_samples = dir.join("samples.csv");
    let log = dir.join("output.log");
    let mut args = cell.hybench_args();
    args.extend([
        "--format".into(),
        "csv".into(),
        "--output".into(),
        out_csv.display().to_string(),
        "--samples".into(),
        out_samples.display().to_string(),
    ]);
    let mut prepared = launcher.prepare(cell, &args)?;
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
    let started_at = hybrun_core::sys::now_utc();
    let t0 = Instant::now();
    let mut record = LaunchRecord {
        cell_key: cell.key.clone(),
        launch,
        benchmark: cell.benchmark.clone(),
        mode: cell.mode.clone(),
        status: Status::Failed,
        reason: None,
        stderr_tail: None,
        exit_code: None,
        signal: None,
        started_at,
        duration_s: 0.0,
        host: hybrun_core::sys::hostname(),
        slurm_job_id: std::env::var("SLURM_JOB_ID").unwrap_or_default(),
        argv: prepared.argv.clone(),
        env: prepared.env.clone(),
        plan: prepared.plan.take(),
        rows: 0,
        samples: 0,
        results_end: 0,
        samples_end: 0,
    };
    let child = match prepared.command.spawn() {
        Ok(c) => c,
        Err(e) => {
            record.reason = Some(format!("cannot start {}: {e}", prepared.argv[0]));
            return Ok(Outcome {
                record,
                results: vec![],
                samples: vec![],
            });
        }
    };
    let (status, timed_out) = wait_with_timeout(child, timeout);
    record.duration_s = t0.elapsed().as_secs_f64();
    let tail = || tail_of(&log, 2048);
    match status {
        Err(e) => {
            record.reason = Some(format!("waiting for the launch failed: {e}"));
        }
        Ok(st) => {
            record.exit_code = st.code();
            record.signal = st.signal();
            if timed_out {
                record.status = Status::Timeout;
                record.reason = Some(format!(
                    "timed out after {:.0} s (the scenario's timeout); killed",
                    timeout.as_secs_f64()
                ));
                record.stderr_tail = Some(tail());
            } else if !st.success() {
                record.reason = Some(match (st.code(), st.signal()) {
                    (Some(c), _) => format!("exit status {c}"),
                    (None, Some(s)) => format!("killed by signal {s}"),
                    _ => "failed".into(),
                });
                record.stderr_tail = Some(tail());
            } else {
                match read_output(cell, launch, &out_csv, &out_samples) {
                    Ok((rows, n_rows, samples, n_samples)) => {
                        record.status = Status::Ok;
                        record.rows = n_rows;
                        record.samples = n_samples;
                        let _ = std::fs::remove_dir_all(&dir);
                        return Ok(Outcome {
                            record,
                            results: rows,
                            samples,
                        });
                    }
                    Err(e) => {
                        record.reason = Some(format!("{e:#}"));
                        record.stderr_tail = Some(tail());
                    }
                }
            }
        }
    }
    // Keep the failed launch's output for a person to read.
    let kept = logs.join(format!("{}.{launch}.log", cell.key));
    let _ = std::fs::create_dir_all(logs);
    let _ = std::fs::rename(&log, &kept);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(Outcome {
        record,
        results: vec![],
        samples: vec![],
    })
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
        if r.benchmark != cell.benchmark {
            bail!(
                "hybench reported benchmark {:?}, expected {:?}",
                r.benchmark,
                cell.benchmark
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

/// The run's manifest: versions, host, Slurm ids, image digests; the launch
/// records are in launches.jsonl and copied in at the end of a run.
#[derive(Debug, Serialize, Deserialize, Default)]
pub struct Manifest {
    pub campaign: String,
    pub run_id: String,
    pub scenario_file: String,
    pub hybrun_version: String,
    pub hybench: BTreeMap<String, serde_json::Value>,
    pub host: serde_json::Value,
    pub images: BTreeMap<String, serde_json::Value>,
    /// One entry per `hybrun campaign run` on this run (start, pid, allocation).
    pub sessions: Vec<serde_json::Value>,
    /// sbatch jobs of `--submit`, by node count.
    #[serde(default)]
    pub slurm_jobs: BTreeMap<String, String>,
    pub launches_done: usize,
    pub launches_failed: usize,
    #[serde(default)]
    pub launch_records: Vec<LaunchRecord>,
}

fn manifest_path(dir: &Path) -> PathBuf {
    dir.join("manifest.json")
}

pub fn read_manifest(dir: &Path) -> Manifest {
    std::fs::read(manifest_path(dir))
        .ok()
        .and_then(|t| serde_json::from_slice(&t).ok())
        .unwrap_or_default()
}

pub fn write_manifest(dir: &Path, m: &Manifest) -> anyhow::Result<()> {
    write_atomic(&manifest_path(dir), &serde_json::to_vec_pretty(m)?)
}

/// Starts or extends the manifest for this session.
pub fn begin_manifest(dir: &Path, scenario: &Scenario) -> anyhow::Result<()> {
    let mut m = read_manifest(dir);
    m.campaign = scenario.name.clone();
    m.run_id = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    m.scenario_file = scenario.source.display().to_string();
    m.hybrun_version = env!("CARGO_PKG_VERSION").to_owned();
    for (flavour, path) in &scenario.hybench {
        let version = Command::new(path)
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        m.hybench.insert(
            flavour.clone(),
            serde_json::json!({ "path": path, "version": version }),
        );
    }
    let uts = rustix::system::uname();
    m.host = serde_json::json!({
        "hostname": hybrun_core::sys::hostname(),
        "kernel": uts.release().to_string_lossy(),
        "machine": uts.machine().to_string_lossy(),
        "cpus": cores(),
    });
    let mut images: Vec<&PathBuf> = scenario
        .cells
        .iter()
        .filter_map(|c| c.image.as_ref())
        .collect();
    images.sort();
    images.dedup();
    for image in images {
        let key = image.display().to_string();
        if m.images.contains_key(&key) {
            continue;
        }
        let value = match crate::launch::policy::open_image(image)
            .map_err(anyhow::Error::from)
            .and_then(|i| Ok(crate::launch::record::image_record(&i)?))
        {
            Ok(rec) => serde_json::to_value(rec)?,
            Err(e) => serde_json::json!({ "error": format!("{e:#}") }),
        };
        m.images.insert(key, value);
    }
    m.sessions.push(serde_json::json!({
        "started_at": hybrun_core::sys::now_utc(),
        "pid": std::process::id(),
        "host": hybrun_core::sys::hostname(),
        "slurm_job_id": std::env::var("SLURM_JOB_ID").unwrap_or_default(),
        "argv": std::env::args().collect::<Vec<_>>(),
    }));
    write_manifest(dir, &m)
}

/// Copies the launch records into the manifest (end of a session).
pub fn finish_manifest(dir: &Path) -> anyhow::Result<()> {
    let mut m = read_manifest(dir);
    let records = results::read_records(dir)?;
    m.launches_done = records.iter().filter(|r| r.status == Status::Ok).count();
    m.launches_failed = records.len() - m.launches_done;
    m.launch_records = records;
    write_manifest(dir, &m)
}

/// What a session did.
#[derive(Debug, Default)]
pub struct Summary {
    pub ran: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// A progress bar on a terminal, plain lines elsewhere.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub fn new(total: u64, show: bool) -> Progress {
        let bar = (show && std::io::stderr().is_terminal()).then(|| {
            let bar = indicatif::ProgressBar::new(total);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} launches, ETA {eta} {msg}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar
        });
        Progress { bar }
    }

    fn message(&self, text: String) {
        if let Some(b) = &self.bar {
            b.set_message(text);
        }
    }

    fn line(&self, text: String) {
        match &self.bar {
            Some(b) => b.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn inc(&self) {
        if let Some(b) = &self.bar {
            b.inc(1);
        }
    }

    fn grow(&self, n: u64) {
        if let Some(b) = &self.bar {
            b.inc_length(n);
        }
    }

    pub fn set_position(&self, pos: u64) {
        if let Some(b) = &self.bar {
            b.set_position(pos);
        }
    }

    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

/// Kill what a killed campaign of this run left running. A campaign killed
/// with SIGKILL takes its launcher with it (PR_SET_PDEATHSIG), but a launcher's
/// own children can outlive it (hydra's pmi proxy and ranks blocked in
/// MPI_Init, seen here): left alone they would share the cores with the
/// resumed run's measurements. They are recognised by the scratch directory in
/// their argv, `hybrun-campaign-<run id>-<pid>/`, whose pid is a campaign that
/// no longer exists (a live one, e.g. a concurrent --submit worker, is spared).
fn reap_orphans(run_id: &str) {
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
        let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        let Some(at) = cmdline.find(&marker) else {
            continue;
        };
        let owner: String = cmdline[at + marker.len()..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if owner.parse::<u32>().is_ok_and(|owner| !alive(owner)) {
            // SAFETY: kill(2) on a pid we just read; a vanished pid is harmless.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
        }
    }
}

/// Runs (or resumes) the campaign's launches into `store`. `cells` selects
/// the cells (all, or one node count's for a `--submit` worker); `also_done`
/// are launches recorded elsewhere (the run's own store, for a worker).
pub fn execute(
    scenario: &Scenario,
    store: &mut Store,
    cells: &[usize],
    also_done: &HashMap<(String, u32), Status>,
    progress: bool,
) -> anyhow::Result<Summary> {
    let in_alloc = in_allocation();
    let launchers = Launchers::new(scenario, in_alloc);
    reap_orphans(&scenario.run_id());
    let scratch = std::env::temp_dir().join(format!(
        "hybrun-campaign-{}-{}",
        scenario.run_id(),
        std::process::id()
    ));
    std::fs::create_dir_all(&scratch)
        .with_context(|| format!("cannot create {}", scratch.display()))?;
    let logs = store.dir().join("logs");
    let timeout = Duration::from_secs_f64(scenario.timeout_s);
    let is_done = |store: &Store, key: &str, launch: u32| {
        let k = (key.to_owned(), launch);
        store.done().contains_key(&k) || also_done.contains_key(&k)
    };

    let mut summary = Summary::default();
    let base = schedule(scenario, cells, 0, scenario.launches, 0);
    let todo: Vec<(usize, u32)> = base
        .iter()
        .copied()
        .filter(|(c, l)| !is_done(store, &scenario.cells[*c].key, *l))
        .collect();
    summary.skipped = base.len() - todo.len();
    if summary.skipped > 0 {
        eprintln!(
            "hybrun: resuming {}: {} of {} launches already done",
            store.dir().display(),
            summary.skipped,
            base.len()
        );
    }
    let bar = Progress::new(todo.len() as u64, progress);
    let mut queue = todo;
    let mut round = scenario.launches;
    loop {
        for (c, launch) in queue {
            let cell = &scenario.cells[c];
            if is_done(store, &cell.key, launch) {
                continue;
            }
            bar.message(format!("{} #{launch}", cell.key));
            let outcome = run_launch(
                launchers.for_cell(cell),
                cell,
                launch,
                &scratch,
                &logs,
                timeout,
            )?;
            if outcome.record.status != Status::Ok {
                summary.failed += 1;
                bar.line(format!(
                    "hybrun: {} launch {launch} ({} {}) failed: {}",
                    cell.key,
                    cell.benchmark,
                    cell.mode,
                    outcome.record.reason.as_deref().unwrap_or("?")
                ));
            } else if !std::io::stderr().is_terminal() && progress {
                eprintln!(
                    "hybrun: {} launch {launch} ok ({:.2} s)",
                    cell.key, outcome.record.duration_s
                );
            }
            store.append(&outcome.results, &outcome.samples, outcome.record)?;
            summary.ran += 1;
            bar.inc();
        }
        // The stop rule: more launches for the groups whose ratio CI is still
        // too wide, one round at a time (interleaved like the base rounds).
        let Some(stop) = scenario.stop else { break };
        if round >= stop.max_launches {
            break;
        }
        let wide =
            super::report::groups_needing_launches(scenario, store.dir(), cells, stop.ci_width)?;
        if wide.is_empty() {
            break;
        }
        let next: Vec<usize> = cells
            .iter()
            .copied()
            .filter(|&c| wide.contains(&scenario.cells[c].group_key()))
            .collect();
        queue = schedule(scenario, &next, round, round + 1, u64::from(round));
        bar.grow(queue.len() as u64);
        round += 1;
    }
    bar.finish();
    let _ = std::fs::remove_dir_all(&scratch);
    Ok(summary)
}

/// `hybrun campaign run` without `--submit`: the whole campaign here.
pub fn run_here(scenario: &Scenario, opts: &RunOptions) -> anyhow::Result<PathBuf> {
    let cells: Vec<usize> = (0..scenario.cells.len())
        .filter(|&i| opts.only_nodes.is_none_or(|n| scenario.cells[i].nodes == n))
        .collect();
    let refs: Vec<&Cell> = cells.iter().map(|&i| &scenario.cells[i]).collect();
    preflight(scenario, &refs, in_allocation())?;
    let dir = run_dir(scenario, opts)?;
    store_scenario(&dir, scenario)?;
    let mut store = Store::open(&dir)?;
    begin_manifest(&dir, scenario)?;
    let summary = execute(scenario, &mut store, &cells, &HashMap::new(), opts.progress)?;
    drop(store);
    finish_manifest(&dir)?;
    eprintln!(
        "hybrun: {} launches run ({} failed), {} already done; results in {}",
        summary.ran,
        summary.failed,
        summary.skipped,
        dir.display()
    );
    Ok(dir)
}
