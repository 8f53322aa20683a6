//! The run directory, `<results>/<campaign>/<run-id>/`: where it is, the files
//! beside the result store that are rewritten whole (atomically: temporary
//! file, fsync, rename), namely `scenario.json` (the resolved scenario, which
//! names the run) and `manifest.json` (versions, host, sessions, Slurm jobs,
//! image digests and, at the end of a session, the launch records).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

use super::results::{self, LaunchRecord, Outcome};
use super::scenario::Scenario;

/// The resolved scenario's file in a run directory.
pub const SCENARIO: &str = "scenario.json";

/// Where a run goes: `hybrun campaign run`'s `--results`, `--new`, `--run-id`.
#[derive(Debug, Clone, Default)]
pub struct RunPlace {
    /// Parent of `<campaign>/<run-id>/` (default `results`).
    pub results: Option<PathBuf>,
    /// A fresh run id instead of the scenario's own.
    pub new: bool,
    pub run_id: Option<String>,
}

/// The run directory for `scenario`: `<results>/<name>/<run-id>`, checked
/// writable before anything runs.
pub fn run_dir(scenario: &Scenario, at: &RunPlace) -> anyhow::Result<PathBuf> {
    let root = at
        .results
        .clone()
        .unwrap_or_else(|| PathBuf::from("results"));
    let base = root.join(&scenario.name);
    let id = match &at.run_id {
        Some(id) => id.clone(),
        None if at.new => {
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
    let path = dir.join(SCENARIO);
    let exists = std::fs::symlink_metadata(&path).is_ok();
    if exists {
        let text = results::read_regular(&path)?;
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

/// Reads the resolved scenario of a run directory (or of a `--submit` shard).
pub fn read_scenario(dir: &Path) -> anyhow::Result<Scenario> {
    let path = dir.join(SCENARIO);
    if std::fs::symlink_metadata(&path).is_err() {
        bail!(
            "{} is not a campaign run directory (no {SCENARIO}); give results/<campaign>/<run-id>",
            dir.display()
        );
    }
    let text = results::read_regular(&path)?;
    serde_json::from_slice(&text)
        .with_context(|| format!("{} is not a resolved scenario", path.display()))
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
    results::read_regular(&manifest_path(dir))
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
    for (abi, path) in &scenario.hybench {
        let version = Command::new(path)
            .arg("--version")
            .output()
            .ok()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_default();
        m.hybench.insert(
            abi.name().to_owned(),
            serde_json::json!({ "path": path, "version": version }),
        );
    }
    let uts = rustix::system::uname();
    m.host = serde_json::json!({
        "hostname": hybrun_core::sys::hostname(),
        "kernel": uts.release().to_string_lossy(),
        "machine": uts.machine().to_string_lossy(),
        "cpus": super::cores(),
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
    m.launches_done = records.iter().filter(|r| r.status == Outcome::Ok).count();
    m.launches_failed = records.len() - m.launches_done;
    m.launch_records = records;
    write_manifest(dir, &m)
}
