//! `hybrun campaign run --submit`: one sbatch job per node count, so every
//! mode of a node count runs in the same allocation (same nodes, same
//! network path); then wait, and collect the jobs' results into the run.
//!
//! Each job runs `hybrun campaign worker RUN_DIR --nodes N`, which writes its
//! own store (a *shard*, `jobs/nN/`, the same append-only format) so jobs
//! never share a file. Collecting copies every shard launch the run does not
//! have yet, record by record, through the run's own store: a collection cut
//! short is simply done again. The job script is a fixed two-line file that
//! `exec`s its arguments: the worker's argv goes to sbatch as a vector, never
//! through a shell line.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use super::results::{self, Store};
use super::rundir;
use super::runner::{self, Progress, RunOptions};
use super::scenario::{Cell, Scenario};

const JOB_SCRIPT: &str =
    "#!/bin/sh\n# hybrun campaign job: runs the worker command given as arguments.\nexec \"$@\"\n";

fn shard_dir(run_dir: &Path, nodes: u32) -> PathBuf {
    run_dir.join("jobs").join(format!("n{nodes}"))
}

/// Copies the shard's launches that the run does not have into the run's store.
fn collect(store: &mut Store, shard: &Path) -> anyhow::Result<usize> {
    if !shard.join(results::LAUNCHES).exists() {
        return Ok(0);
    }
    let mut copied = 0;
    for (record, rows, samples) in results::record_slices(shard)? {
        if store
            .done()
            .contains_key(&(record.cell_key.clone(), record.launch))
        {
            continue;
        }
        store.append(&rows, &samples, record)?;
        copied += 1;
    }
    Ok(copied)
}

/// Job ids still known to Slurm (pending, running, completing).
fn live_jobs() -> anyhow::Result<HashSet<String>> {
    let out = Command::new("squeue")
        .args(["-h", "-o", "%i"])
        .output()
        .context("cannot run squeue")?;
    if !out.status.success() {
        bail!(
            "squeue failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect())
}

fn records_in(shard: &Path) -> usize {
    results::read_regular(&shard.join(results::LAUNCHES))
        .map(|t| t.iter().filter(|&&b| b == b'\n').count())
        .unwrap_or(0)
}

/// The base launches of `cells` that `store` has not recorded.
fn undone(scenario: &Scenario, store: &Store, cells: &[usize]) -> usize {
    runner::schedule(scenario, cells, 0, scenario.launches)
        .into_iter()
        .filter(|s| {
            !store
                .done()
                .contains_key(&(scenario.cells[s.cell].key.clone(), s.launch))
        })
        .count()
}

/// What every job of a submission shares.
struct Job<'a> {
    scenario: &'a Scenario,
    dir: &'a Path,
    script: &'a Path,
    hybrun: &'a Path,
}

/// Cells with CPUs per rank run their srun steps inside the job of their
/// node count: unless `[submit] cpus_per_task` says how many, the job asks
/// for the most any of them needs (the scenario refuses a cell above
/// `[submit]`'s), else srun's `-c` would not fit in it.
fn cells_cpus(scenario: &Scenario, cells: &[usize]) -> Option<String> {
    let cpus = cells
        .iter()
        .filter_map(|&c| scenario.cells[c].shape.cpus_per_task)
        .max()?;
    scenario
        .submit
        .cpus_per_task
        .is_none()
        .then(|| format!("--cpus-per-task={cpus}"))
}

impl Job<'_> {
    /// Submits the job of one node count; returns its id.
    fn sbatch(&self, nodes: u32, cells: &[usize]) -> anyhow::Result<String> {
        let scenario = self.scenario;
        let shard = shard_dir(self.dir, nodes);
        let rpn = cells
            .iter()
            .map(|&c| scenario.cells[c].ranks_per_node)
            .max()
            .unwrap_or(1);
        let launches = f64::from(scenario.stop.map_or(scenario.launches, |s| s.max_launches));
        let minutes = scenario.submit.time.clone().unwrap_or_else(|| {
            (((cells.len() as f64 * launches * scenario.timeout_s) / 60.0).ceil() as u64 + 5)
                .to_string()
        });
        let mut argv: Vec<String> = vec![
            "sbatch".into(),
            "--parsable".into(),
            format!("--job-name=hybrun-{}-n{nodes}", scenario.name),
            format!("--nodes={nodes}"),
            format!("--ntasks-per-node={rpn}"),
            format!("--time={minutes}"),
            format!("--output={}/slurm-%j.out", shard.display()),
        ];
        argv.extend(scenario.submit.sbatch_flags());
        argv.extend(cells_cpus(scenario, cells));
        argv.push(self.script.display().to_string());
        argv.push(self.hybrun.display().to_string());
        argv.extend([
            "campaign".into(),
            "worker".into(),
            self.dir.display().to_string(),
            "--nodes".into(),
            nodes.to_string(),
        ]);
        let out = Command::new(&argv[0])
            .args(&argv[1..])
            .output()
            .context("cannot run sbatch")?;
        if !out.status.success() {
            bail!(
                "sbatch refused the job for {nodes} nodes: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let id = String::from_utf8_lossy(&out.stdout)
            .trim()
            .split(';')
            .next()
            .unwrap_or_default()
            .to_owned();
        eprintln!(
            "hybrun: submitted job {id}: {} cells on {nodes} node(s)",
            cells.len()
        );
        Ok(id)
    }
}

/// Waits for the jobs to leave the queue, showing the launches they record.
fn wait(dir: &Path, jobs: &BTreeMap<u32, String>, total: u64) -> anyhow::Result<()> {
    let bar = Progress::new(total, true);
    let start: HashMap<u32, usize> = jobs
        .keys()
        .map(|&n| (n, records_in(&shard_dir(dir, n))))
        .collect();
    loop {
        let live = live_jobs()?;
        let done: usize = jobs
            .keys()
            .map(|&n| records_in(&shard_dir(dir, n)).saturating_sub(start[&n]))
            .sum();
        bar.set_position(done as u64);
        if !jobs.values().any(|id| live.contains(id)) {
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    bar.finish();
    Ok(())
}

/// Submits, waits, collects; returns the run directory.
pub fn submit(scenario: &Scenario, opts: &RunOptions) -> anyhow::Result<PathBuf> {
    for program in ["sbatch", "squeue", "srun"] {
        if crate::host::Host::current().which(program).is_none() {
            bail!(
                "--submit needs {program} on PATH (Slurm client); run scripts/setup, and `eval \"$(scripts/cluster env)\"` for the local cluster"
            );
        }
    }
    let dir = std::path::absolute(rundir::run_dir(scenario, &opts.place)?)?;
    let all: Vec<&Cell> = scenario.cells.iter().collect();
    // Inside the allocation srun starts the ranks: check that way.
    runner::preflight(scenario, &all, true)?;
    rundir::store_scenario(&dir, scenario)?;
    let mut store = Store::open(&dir)?;
    rundir::begin_manifest(&dir, scenario)?;

    let mut groups: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
    for (i, c) in scenario.cells.iter().enumerate() {
        groups.entry(c.nodes).or_default().push(i);
    }
    let script = dir.join("jobs").join("job.sh");
    std::fs::create_dir_all(script.parent().unwrap_or(&dir))?;
    rundir::write_atomic(&script, JOB_SCRIPT.as_bytes())?;
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))?;
    let hybrun = std::env::current_exe().context("cannot find hybrun's own path")?;
    let job = Job {
        scenario,
        dir: &dir,
        script: &script,
        hybrun: &hybrun,
    };
    let mut manifest = rundir::read_manifest(&dir);
    let live = live_jobs()?;
    let mut jobs: BTreeMap<u32, String> = BTreeMap::new();
    let mut total = 0u64;
    for (&nodes, cells) in &groups {
        let shard = shard_dir(&dir, nodes);
        collect(&mut store, &shard)?;
        let remaining = undone(scenario, &store, cells) as u64;
        let key = format!("n{nodes}");
        if let Some(id) = manifest
            .slurm_jobs
            .get(&key)
            .filter(|id| live.contains(*id))
        {
            // A job of an earlier (interrupted) submission still runs: wait
            // for it instead of starting a second writer of the same shard.
            eprintln!(
                "hybrun: job {id} ({nodes} nodes) from an earlier submission is still queued or running; waiting for it"
            );
            jobs.insert(nodes, id.clone());
            total += remaining;
            continue;
        }
        if remaining == 0 && scenario.stop.is_none() {
            continue;
        }
        std::fs::create_dir_all(&shard)?;
        let id = job.sbatch(nodes, cells)?;
        manifest.slurm_jobs.insert(key, id.clone());
        jobs.insert(nodes, id);
        total += remaining;
    }
    // The job ids go into the manifest before the wait, so an interrupted
    // submitter finds its jobs again.
    let mut m = rundir::read_manifest(&dir);
    m.slurm_jobs.extend(manifest.slurm_jobs.clone());
    rundir::write_manifest(&dir, &m)?;

    wait(&dir, &jobs, total)?;
    let mut collected = 0;
    for &nodes in groups.keys() {
        collected += collect(&mut store, &shard_dir(&dir, nodes))?;
    }
    // Launches no job recorded: say where the job's own output is.
    for (&nodes, cells) in &groups {
        let missing = undone(scenario, &store, cells);
        if missing > 0 {
            eprintln!(
                "hybrun: the {nodes}-node job left {missing} launches undone; its output is in {}/slurm-*.out; run the same command again to resume",
                shard_dir(&dir, nodes).display()
            );
        }
    }
    drop(store);
    rundir::finish_manifest(&dir)?;
    eprintln!(
        "hybrun: collected {collected} launches from the jobs; results in {}",
        dir.display()
    );
    Ok(dir)
}

/// `hybrun campaign worker RUN_DIR --nodes N`, inside the allocation.
pub fn worker(run_dir: &Path, nodes: u32) -> anyhow::Result<()> {
    let scenario = rundir::read_scenario(run_dir)?;
    let cells: Vec<usize> = (0..scenario.cells.len())
        .filter(|&i| scenario.cells[i].nodes == nodes)
        .collect();
    let refs: Vec<&Cell> = cells.iter().map(|&i| &scenario.cells[i]).collect();
    runner::preflight(&scenario, &refs, super::in_allocation())?;
    // The run's own store is the submitter's (it holds the lock): read it.
    let main_done = results::read_records(run_dir)
        .unwrap_or_default()
        .into_iter()
        .map(|r| ((r.cell_key, r.launch), r.status))
        .collect();
    let shard = shard_dir(run_dir, nodes);
    rundir::store_scenario(&shard, &scenario)?;
    let mut store = Store::open(&shard)?;
    let summary = runner::execute(&scenario, &mut store, &cells, &main_done, true)?;
    eprintln!(
        "hybrun: worker for {nodes} node(s): {} launches run ({} failed), {} already done",
        summary.ran, summary.failed, summary.skipped
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::scenario::{Environment, parse};
    use hybrun_core::vocab::MpiAbi;

    fn scenario(dir: &Path, submit: &str) -> Scenario {
        let fake = dir.join("hybench");
        std::fs::write(&fake, "").unwrap();
        let mut env = Environment::default();
        env.hybench_override.insert(MpiAbi::Mpich, fake);
        let text = format!(
            "name = \"s\"\n[matrix]\nbenchmark = [\"latency\"]\nmode = [\"native\"]\n\
             cpus_per_task = [1, 4]\n{submit}"
        );
        parse(&text, &dir.join("s.toml"), &env).unwrap()
    }

    #[test]
    fn the_job_asks_for_its_cells_largest_cpus_per_task_unless_submit_says() {
        let dir = tempfile::tempdir().unwrap();
        let s = scenario(dir.path(), "");
        let all: Vec<usize> = (0..s.cells.len()).collect();
        assert_eq!(cells_cpus(&s, &all).as_deref(), Some("--cpus-per-task=4"));
        let c1: Vec<usize> = all
            .iter()
            .copied()
            .filter(|&c| s.cells[c].shape.cpus_per_task == Some(1))
            .collect();
        assert_eq!(cells_cpus(&s, &c1).as_deref(), Some("--cpus-per-task=1"));
        // [submit]'s own value is in sbatch_flags, once.
        let s = scenario(dir.path(), "[submit]\ncpus_per_task = 8\n");
        assert_eq!(cells_cpus(&s, &all), None);
        assert!(
            s.submit
                .sbatch_flags()
                .contains(&"--cpus-per-task=8".to_owned())
        );
    }
}
