//! Runs a campaign: every cell's launches, in the scenario's order, into the
//! run's store; resumable at any point.
//!
//! - [`route`]: the one route from a cell to a command line (`hybrun::launch`'s
//!   planner, for every mode, native included);
//! - [`launch`]: one launch, spawned, waited for, read back and recorded.
//!
//! This module schedules the launches (interleaved or shuffled, then the stop
//! rule's extra rounds), checks every cell can be planned before the first
//! launch, and reports progress.

mod launch;
pub mod route;

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};

use super::in_allocation;
use super::results::{Outcome, Store};
use super::rundir::{self, Location};
use super::scenario::{Cell, Order, Scenario};
use crate::host::Host;
use hybrun_core::stats::Rng;
pub use route::{CellPlanner, Prepared};

/// Options of `hybrun campaign run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Where the run directory is.
    pub location: Location,
    /// Draw a progress bar (only when stderr is a terminal).
    pub progress: bool,
    /// Only these cells (`--submit`'s per-allocation workers).
    pub only_nodes: Option<u32>,
}

/// Checks every cell can be launched, before anything runs: launcher programs
/// on PATH, every cell's launch plan (hybrun::launch plans every cell), node
/// counts that need an allocation.
pub fn preflight(scenario: &Scenario, cells: &[&Cell], in_alloc: bool) -> anyhow::Result<()> {
    let host = Host::current();
    let planner = CellPlanner::new(scenario, in_alloc)?;
    for cell in cells {
        if cell.nodes > 1 && !in_alloc {
            bail!(
                "cell {} needs {} nodes: run the campaign inside an allocation (salloc/sbatch) \
                 or with --submit",
                cell.key,
                cell.nodes
            );
        }
        let prepared = planner
            .prepare(cell, &cell.hybench_args())
            .with_context(|| scenario.source.display().to_string())?;
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

/// Runs (or resumes) the campaign's launches into `store`. `cells` selects
/// the cells (all, or one node count's for a `--submit` worker); `also_done`
/// are launches recorded elsewhere (the run's own store, for a worker).
pub fn execute(
    scenario: &Scenario,
    store: &mut Store,
    cells: &[usize],
    also_done: &HashMap<(String, u32), Outcome>,
    progress: bool,
) -> anyhow::Result<Summary> {
    let planner = CellPlanner::new(scenario, in_allocation())?;
    launch::reap_orphans(&scenario.run_id());
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
            let outcome = launch::run_launch(&planner, cell, launch, &scratch, &logs, timeout)?;
            if outcome.record.status != Outcome::Ok {
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
            super::analysis::groups_needing_launches(scenario, store.dir(), cells, stop.ci_width)?;
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
    let dir = rundir::run_dir(scenario, &opts.location)?;
    rundir::store_scenario(&dir, scenario)?;
    let mut store = Store::open(&dir)?;
    rundir::begin_manifest(&dir, scenario)?;
    let summary = execute(scenario, &mut store, &cells, &HashMap::new(), opts.progress)?;
    drop(store);
    rundir::finish_manifest(&dir)?;
    eprintln!(
        "hybrun: {} launches run ({} failed), {} already done; results in {}",
        summary.ran,
        summary.failed,
        summary.skipped,
        dir.display()
    );
    Ok(dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::scenario::{Environment, parse};
    use hybrun_core::vocab::MpiAbi;

    fn two_cells(dir: &std::path::Path) -> Scenario {
        std::fs::write(dir.join("hybench"), "").unwrap();
        let mut env = Environment::default();
        env.hybench_override
            .insert(MpiAbi::Mpich, dir.join("hybench"));
        let text =
            "name = \"t\"\n[matrix]\nbenchmark = [\"latency\", \"bw\"]\nmode = [\"native\"]\n";
        parse(text, &dir.join("s.toml"), &env).unwrap()
    }

    #[test]
    fn schedules_interleave_or_shuffle_reproducibly() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = two_cells(dir.path());
        assert_eq!(
            schedule(&s, &[0, 1], 0, 2, 0),
            vec![(0, 0), (1, 0), (0, 1), (1, 1)],
            "A/B/A/B"
        );
        s.order = Order::Shuffled;
        let a = schedule(&s, &[0, 1], 0, 20, 0);
        assert_eq!(a, schedule(&s, &[0, 1], 0, 20, 0), "same seed, same order");
        assert_ne!(
            a,
            schedule(&s, &[0, 1], 0, 20, 1),
            "another round, another order"
        );
        let mut sorted = a.clone();
        sorted.sort_unstable();
        let mut want: Vec<(usize, u32)> = (0..20).flat_map(|l| [(0, l), (1, l)]).collect();
        want.sort_unstable();
        assert_eq!(sorted, want, "every (cell, launch) once");
    }
}
