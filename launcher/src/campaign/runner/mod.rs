//! Runs a campaign: every cell's launches, in the scenario's order, into the
//! run's store; resumable at any point.
//!
//! - [`route`]: the one route from a cell to a command line (`hybrun::launch`'s
//!   planner, for every mode, native included);
//! - [`launch`]: one launch, spawned, waited for, read back and recorded;
//! - [`randomize`]: the launch-level bias sources drawn for each launch.
//!
//! This module schedules the launches (rounds of every cell, in a fresh random
//! order each round, or all shuffled; then the stop rule's extra rounds within
//! its time budget), checks every cell can be planned before the first launch,
//! and reports progress.

mod launch;
pub mod randomize;
pub mod route;

use std::collections::{HashMap, HashSet};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use super::in_allocation;
use super::results::{Outcome, Store};
use super::rundir::{self, RunPlace};
use super::scenario::{Cell, Order, Scenario, StopRule};
use crate::host::Host;
use hybrun_core::stats::Rng;
pub use launch::ENV_PAD;
pub use route::{CellPlanner, Payload, Prepared};

/// Options of `hybrun campaign run`.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Where the run directory is.
    pub place: RunPlace,
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
        if let (Some(key), false) = (cell.shape.srun_only(), in_alloc) {
            bail!(
                "{}: [job] {key} is an srun option, and outside an allocation the cells run \
                 under mpiexec: run the campaign inside an allocation (salloc/sbatch) or with \
                 --submit, or remove it",
                scenario.source.display()
            );
        }
        let prepared = planner
            .prepare(cell, &Payload::of(cell))
            .with_context(|| scenario.source.display().to_string())?;
        let program = &prepared.argv[0];
        if host.which(program).is_none() {
            bail!(
                "cell {}: {program} not found on PATH; install it (scripts/setup) or run where \
                 it exists",
                cell.key
            );
        }
        if let (Some(app), false) = (scenario.app_of(cell), cell.mode.in_container()) {
            route::check_app_program(&host, &app.command[0]).map_err(|why| {
                anyhow::anyhow!(
                    "{}: [app.{}]: {why}",
                    scenario.source.display(),
                    cell.benchmark
                )
            })?;
        }
    }
    Ok(())
}

/// One launch in a schedule: which cell, its launch number, and where it
/// falls in its round (recorded: a launch-level bias source).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Slot {
    pub cell: usize,
    pub launch: u32,
    pub position: u32,
}

/// The launches `from..to` of `cells`: round after round (launch number
/// after launch number). With `randomize` (the default), a round is blocks,
/// one per setting (the cells compared with each other: [`Cell::group_key`]),
/// in a fresh random order, each block's cells launched back to back in a
/// fresh random order: the two launches a ratio pairs run seconds apart, in
/// the same machine state, and no mode always runs first. Without it, the
/// matrix's order (A/B/A/B). With `order = "shuffled"`, all of them shuffled
/// together.
pub fn schedule(scenario: &Scenario, cells: &[usize], from: u32, to: u32) -> Vec<Slot> {
    let mut order: Vec<Slot> = Vec::new();
    for launch in from..to {
        let round = if scenario.randomize {
            let mut rng =
                Rng::new(scenario.seed ^ u64::from(launch).wrapping_mul(0xD1B5_4A32_D192_ED03));
            let mut index: HashMap<String, usize> = HashMap::new();
            let mut blocks: Vec<Vec<usize>> = Vec::new();
            for &c in cells {
                let at = *index
                    .entry(scenario.cells[c].group_key())
                    .or_insert_with(|| {
                        blocks.push(Vec::new());
                        blocks.len() - 1
                    });
                blocks[at].push(c);
            }
            rng.shuffle(&mut blocks);
            for block in &mut blocks {
                rng.shuffle(block);
            }
            blocks.into_iter().flatten().collect()
        } else {
            cells.to_vec()
        };
        order.extend(round.into_iter().enumerate().map(|(i, cell)| Slot {
            cell,
            launch,
            position: i as u32,
        }));
    }
    if scenario.order == Order::Shuffled {
        Rng::new(scenario.seed ^ u64::from(from).wrapping_mul(0x9E37_79B9_7F4A_7C15))
            .shuffle(&mut order);
        for (i, slot) in order.iter_mut().enumerate() {
            slot.position = i as u32;
        }
    }
    order
}

/// What a session did.
#[derive(Debug, Default)]
pub struct Summary {
    pub ran: usize,
    pub failed: usize,
    pub skipped: usize,
    /// Why the stop rule stopped adding launches (None without a stop rule).
    pub stopped: Option<String>,
}

/// A progress bar on a terminal, plain lines elsewhere.
pub struct Progress {
    bar: Option<indicatif::ProgressBar>,
    show: bool,
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
        Progress { bar, show }
    }

    /// Progress wanted but no terminal: a line per launch instead.
    fn plain(&self) -> bool {
        self.show && self.bar.is_none()
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
    let mut session = Session {
        scenario,
        planner: &planner,
        scratch,
        logs: store.dir().join("logs"),
        timeout: Duration::from_secs_f64(scenario.timeout_s),
        also_done,
        summary: Summary::default(),
        started: Instant::now(),
        launched_s: 0.0,
    };
    let base = schedule(scenario, cells, 0, scenario.launches);
    let todo: Vec<Slot> = base
        .iter()
        .copied()
        .filter(|s| !session.is_done(store, *s))
        .collect();
    session.summary.skipped = base.len() - todo.len();
    if session.summary.skipped > 0 {
        eprintln!(
            "hybrun: resuming {}: {} of {} launches already done",
            store.dir().display(),
            session.summary.skipped,
            base.len()
        );
    }
    let bar = Progress::new(todo.len() as u64, progress);
    session.run_all(store, &todo, &bar)?;
    if let Some(stop) = scenario.stop {
        session.summary.stopped = Some(session.stop_rounds(store, cells, stop, &bar)?);
    }
    bar.finish();
    let _ = std::fs::remove_dir_all(&session.scratch);
    Ok(session.summary)
}

/// One `execute`: what it launches with and what it has done.
struct Session<'a> {
    scenario: &'a Scenario,
    planner: &'a CellPlanner<'a>,
    scratch: PathBuf,
    logs: PathBuf,
    timeout: Duration,
    also_done: &'a HashMap<(String, u32), Outcome>,
    summary: Summary,
    started: Instant,
    /// Seconds of this session's launches.
    launched_s: f64,
}

impl Session<'_> {
    fn is_done(&self, store: &Store, slot: Slot) -> bool {
        let k = (self.scenario.cells[slot.cell].key.clone(), slot.launch);
        store.done().contains_key(&k) || self.also_done.contains_key(&k)
    }

    /// Runs the slots not done yet, in order, each into the store at once.
    fn run_all(&mut self, store: &mut Store, slots: &[Slot], bar: &Progress) -> anyhow::Result<()> {
        for &slot in slots {
            if self.is_done(store, slot) {
                continue;
            }
            let cell = &self.scenario.cells[slot.cell];
            let launch = slot.launch;
            bar.message(format!("{} #{launch}", cell.key));
            let job = launch::Job {
                cell,
                launch,
                randomized: randomize::draw(
                    self.scenario,
                    self.planner,
                    cell,
                    launch,
                    slot.position,
                ),
            };
            let outcome =
                launch::run_launch(self.planner, &job, &self.scratch, &self.logs, self.timeout)?;
            self.launched_s += outcome.record.duration_s;
            if outcome.record.status != Outcome::Ok {
                self.summary.failed += 1;
                bar.line(format!(
                    "hybrun: {} launch {launch} ({} {}) failed: {}",
                    cell.key,
                    cell.benchmark,
                    cell.mode_label(),
                    outcome.record.reason.as_deref().unwrap_or("?")
                ));
            } else if bar.plain() {
                eprintln!(
                    "hybrun: {} launch {launch} ok ({:.2} s)",
                    cell.key, outcome.record.duration_s
                );
            }
            store.append(&outcome.results, &outcome.samples, outcome.record)?;
            self.summary.ran += 1;
            bar.inc();
        }
        Ok(())
    }

    /// The stop rule: more rounds for the groups whose headline or control CI
    /// is still wider than the target, each round interleaved (and drawn) like
    /// the base ones, until every one is narrow enough, a cell has
    /// `max_launches`, or the next round would not end within the budget.
    /// Returns why it stopped.
    fn stop_rounds(
        &mut self,
        store: &mut Store,
        cells: &[usize],
        stop: StopRule,
        bar: &Progress,
    ) -> anyhow::Result<String> {
        let mut round = self.scenario.launches;
        loop {
            let wide = super::analysis::groups_needing_launches(
                self.scenario,
                store.dir(),
                cells,
                stop.ci_width,
            )?;
            if wide.is_empty() {
                return Ok(format!(
                    "every headline CI is within {}% after {round} launches per cell",
                    pct(stop.ci_width)
                ));
            }
            // A setting whose latest launches fail gets no more: more
            // failures measure nothing (they are reported as they are).
            let failing = self.failing_groups(store, cells);
            let skipped = wide.iter().filter(|g| failing.contains(*g)).count();
            let wide: HashSet<String> = wide.difference(&failing).cloned().collect();
            if wide.is_empty() {
                return Ok(format!(
                    "no more launches for {skipped} setting(s) whose latest launches failed"
                ));
            }
            let groups = wide.len();
            if round >= stop.max_launches {
                return Ok(format!(
                    "max_launches ({}) reached with {groups} setting(s) still wider than {}%",
                    stop.max_launches,
                    pct(stop.ci_width)
                ));
            }
            let next: Vec<usize> = cells
                .iter()
                .copied()
                .filter(|&c| wide.contains(&self.scenario.cells[c].group_key()))
                .collect();
            let queue = schedule(self.scenario, &next, round, round + 1);
            // A round is started only if, at this session's mean launch time,
            // it ends within the budget.
            let mean = self.launched_s / self.summary.ran.max(1) as f64;
            let elapsed = self.started.elapsed().as_secs_f64();
            if elapsed + mean * queue.len() as f64 > stop.budget_s {
                return Ok(format!(
                    "the budget ({:.0} s) is spent with {groups} setting(s) still wider than \
                     {}% after {round} launches per cell",
                    stop.budget_s,
                    pct(stop.ci_width)
                ));
            }
            bar.grow(queue.len() as u64);
            self.run_all(store, &queue, bar)?;
            round += 1;
        }
    }
}

impl Session<'_> {
    /// The settings (group keys) among `cells` where some cell's two latest
    /// recorded launches both failed: one failure may be a passing hiccup,
    /// two in a row are how the setting runs now.
    fn failing_groups(&self, store: &Store, cells: &[usize]) -> HashSet<String> {
        let mut latest: HashMap<&str, [Option<(u32, Outcome)>; 2]> = HashMap::new();
        for ((key, launch), outcome) in store.done().iter().chain(self.also_done) {
            let two = latest.entry(key.as_str()).or_default();
            let this = Some((*launch, *outcome));
            if two[0].is_none_or(|(l, _)| *launch > l) {
                two[1] = two[0];
                two[0] = this;
            } else if two[1].is_none_or(|(l, _)| *launch > l) {
                two[1] = this;
            }
        }
        let failed = |o: Option<(u32, Outcome)>| o.is_some_and(|(_, o)| o != Outcome::Ok);
        cells
            .iter()
            .map(|&c| &self.scenario.cells[c])
            .filter(|c| {
                latest
                    .get(c.key.as_str())
                    .is_some_and(|two| failed(two[0]) && failed(two[1]))
            })
            .map(Cell::group_key)
            .collect()
    }
}

fn pct(x: f64) -> String {
    format!("{}", (x * 1000.0).round() / 10.0)
}

/// `hybrun campaign run` without `--submit`: the whole campaign here.
pub fn run_here(scenario: &Scenario, opts: &RunOptions) -> anyhow::Result<PathBuf> {
    let cells: Vec<usize> = (0..scenario.cells.len())
        .filter(|&i| opts.only_nodes.is_none_or(|n| scenario.cells[i].nodes == n))
        .collect();
    let refs: Vec<&Cell> = cells.iter().map(|&i| &scenario.cells[i]).collect();
    preflight(scenario, &refs, in_allocation())?;
    let dir = rundir::run_dir(scenario, &opts.place)?;
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
    if let Some(why) = &summary.stopped {
        eprintln!("hybrun: stop rule: {why}");
    }
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

    fn pairs(slots: &[Slot]) -> Vec<(usize, u32)> {
        slots.iter().map(|s| (s.cell, s.launch)).collect()
    }

    #[test]
    fn schedules_interleave_or_shuffle_reproducibly() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = two_cells(dir.path());
        s.randomize = false;
        assert_eq!(
            pairs(&schedule(&s, &[0, 1], 0, 2)),
            vec![(0, 0), (1, 0), (0, 1), (1, 1)],
            "A/B/A/B"
        );
        s.order = Order::Shuffled;
        let a = schedule(&s, &[0, 1], 0, 20);
        assert_eq!(a, schedule(&s, &[0, 1], 0, 20), "same seed, same order");
        assert_ne!(
            a,
            schedule(&s, &[0, 1], 20, 40)
                .iter()
                .map(|x| Slot {
                    launch: x.launch - 20,
                    ..*x
                })
                .collect::<Vec<_>>(),
            "another round, another order"
        );
        let mut sorted = pairs(&a);
        sorted.sort_unstable();
        let mut want: Vec<(usize, u32)> = (0..20).flat_map(|l| [(0, l), (1, l)]).collect();
        want.sort_unstable();
        assert_eq!(sorted, want, "every (cell, launch) once");
    }

    #[test]
    fn randomized_rounds_keep_every_cell_once_per_round_in_varying_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = two_cells(dir.path());
        assert!(s.randomize, "randomized by default");
        let slots = schedule(&s, &[0, 1], 0, 40);
        let mut firsts = std::collections::BTreeSet::new();
        for round in slots.chunks(2) {
            assert_eq!(round[0].launch, round[1].launch, "one round at a time");
            let mut cells = [round[0].cell, round[1].cell];
            cells.sort_unstable();
            assert_eq!(cells, [0, 1], "every cell once per round");
            assert_eq!((round[0].position, round[1].position), (0, 1));
            firsts.insert(round[0].cell);
        }
        assert_eq!(firsts.len(), 2, "each cell goes first in some round");
        assert_eq!(slots, schedule(&s, &[0, 1], 0, 40), "reproducible");
        // Two settings (latency and bw, each native and native'): a round is
        // two blocks, each setting's cells back to back, in varying order.
        let all: Vec<usize> = (0..s.cells.len()).collect();
        assert_eq!(all.len(), 4);
        let mut first_blocks = std::collections::BTreeSet::new();
        for round in schedule(&s, &all, 0, 40).chunks(4) {
            let g = |i: usize| s.cells[round[i].cell].group_key();
            assert_eq!(g(0), g(1), "a block is one setting");
            assert_eq!(g(2), g(3));
            assert_ne!(g(0), g(2));
            first_blocks.insert(g(0));
        }
        assert_eq!(
            first_blocks.len(),
            2,
            "each setting goes first in some round"
        );
    }
}
