//! `hybrun campaign run|check`, `hybrun report` and `hybrun compare`: the
//! command-line side of [`hybrun::campaign`].

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use hybrun::campaign::analysis::calibration::{self, Draws};
use hybrun::campaign::analysis::{self, Options};
use hybrun::campaign::export::{self, compare};
use hybrun::campaign::results::{self, Outcome};
use hybrun::campaign::rundir::RunPlace;
use hybrun::campaign::runner::{self, CellPlanner, RunOptions};
use hybrun::campaign::scenario::{self, Environment, Resample};
use hybrun::campaign::{in_allocation, submit};
use hybrun_core::stats::{Location, Verdict};

#[derive(Debug, Subcommand)]
pub enum CampaignCommand {
    /// Run (or resume) a scenario: every cell's launches, then the report.
    Run(RunArgs),
    /// Check a scenario and print its cells and commands; runs nothing.
    Check(CheckArgs),
    /// How often would this run's method give a false verdict (A/A, from its
    /// native' controls), or see a known difference (power)? Drawn from the
    /// run's own launches.
    Calibrate(CalibrateArgs),
    /// Run one node count's cells inside an sbatch allocation (`--submit`'s jobs).
    #[command(hide = true)]
    Worker(WorkerArgs),
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The scenario file (TOML; see scenarios/README.md).
    pub scenario: PathBuf,
    /// Where runs go: DIR/<campaign>/<run-id>/ (default: results).
    #[arg(long, value_name = "DIR")]
    pub results: Option<PathBuf>,
    /// Start a fresh run instead of resuming the scenario's run.
    #[arg(long, conflicts_with = "run_id")]
    pub new: bool,
    /// Resume (or start) this run id.
    #[arg(long, value_name = "ID")]
    pub run_id: Option<String>,
    /// Submit one sbatch job per node count (all modes of a node count share
    /// the allocation), wait for them and collect their results.
    #[arg(long)]
    pub submit: bool,
    /// Do not write the report at the end.
    #[arg(long)]
    pub no_report: bool,
}

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// A run directory: results/<campaign>/<run-id>.
    pub run_dir: PathBuf,
    /// Launches of each cell per comparison (rounds drawn at random).
    #[arg(long, default_value_t = 10)]
    pub launches: usize,
    /// Comparisons drawn.
    #[arg(long, default_value_t = 400)]
    pub draws: usize,
    /// Power: this cell (key or unique key prefix) against --reference,
    /// instead of every control against its native.
    #[arg(long, requires = "reference", value_name = "KEY")]
    pub cell: Option<String>,
    #[arg(long, requires = "cell", value_name = "KEY")]
    pub reference: Option<String>,
    /// Fail (exit status 1) when an A/A false-verdict rate (headline or per
    /// size) is above this fraction, e.g. 0.05.
    #[arg(long, value_name = "FRACTION")]
    pub max_false_rate: Option<f64>,
    /// Power: fail unless the headline says this verdict in at least
    /// --min-rate of the draws.
    #[arg(long, requires = "cell")]
    pub expect: Option<Verdict>,
    #[arg(long, default_value_t = 1.0, value_name = "FRACTION")]
    pub min_rate: f64,
    #[command(flatten)]
    pub stats: StatsArgs,
    #[arg(long, value_enum, default_value_t = Format::Md)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    pub scenario: PathBuf,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// The run directory (holds scenario.json).
    pub run_dir: PathBuf,
    /// The node count whose cells this job runs.
    #[arg(long)]
    pub nodes: u32,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// A run directory: results/<campaign>/<run-id>.
    pub run_dir: PathBuf,
    #[command(flatten)]
    pub stats: StatsArgs,
    /// What to print on stdout (report.md, .csv and .json are written in any case).
    #[arg(long, value_enum, default_value_t = Format::Md)]
    pub format: Format,
}

/// What `hybrun report` and `hybrun compare` print on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Md,
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    pub run_a: PathBuf,
    pub run_b: PathBuf,
    #[command(flatten)]
    pub stats: StatsArgs,
    #[arg(long, value_enum, default_value_t = Format::Md)]
    pub format: Format,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Tolerance band of the verdict, as a fraction (default: the scenario's, else 0.03).
    #[arg(long, value_name = "FRACTION")]
    pub tolerance: Option<f64>,
    /// What the bootstrap resamples (default: the scenario's, else launches).
    #[arg(long)]
    pub resample: Option<Resample>,
    /// Bootstrap seed (default: the scenario's).
    #[arg(long)]
    pub seed: Option<u64>,
    /// How a cell's launches are summarised per size (default: the
    /// scenario's, else trimmed-mean).
    #[arg(long)]
    pub location: Option<Location>,
}

impl StatsArgs {
    fn options(&self, base: Options) -> anyhow::Result<Options> {
        let mut o = base;
        if let Some(t) = self.tolerance {
            anyhow::ensure!(
                t > 0.0 && t < 1.0,
                "--tolerance {t}: give a fraction in (0, 1), e.g. 0.03"
            );
            o.tolerance = t;
        }
        if let Some(r) = self.resample {
            o.resample = r;
        }
        if let Some(s) = self.seed {
            o.seed = s;
        }
        if let Some(l) = self.location {
            o.location = l;
        }
        Ok(o)
    }
}

/// main prints only the outermost message of an error; the campaign's
/// messages add context around causes, so flatten the chain into one line.
fn flat<T>(r: anyhow::Result<T>) -> anyhow::Result<T> {
    r.map_err(|e| anyhow::anyhow!("{e:#}"))
}

pub fn run(command: CampaignCommand) -> anyhow::Result<()> {
    flat(match command {
        CampaignCommand::Run(args) => run_campaign(args),
        CampaignCommand::Check(args) => check(args),
        CampaignCommand::Calibrate(args) => calibrate(args),
        CampaignCommand::Worker(args) => submit::worker(&args.run_dir, args.nodes),
    })
}

fn run_campaign(args: RunArgs) -> anyhow::Result<()> {
    let scenario = scenario::load(&args.scenario, &Environment::current())?;
    let opts = RunOptions {
        place: RunPlace {
            results: args.results,
            new: args.new,
            run_id: args.run_id,
        },
        progress: true,
        only_nodes: None,
    };
    let dir = if args.submit {
        submit::submit(&scenario, &opts)?
    } else {
        runner::run_here(&scenario, &opts)?
    };
    if !args.no_report {
        let r = export::write_all(&dir, None)?;
        eprintln!(
            "hybrun: report: {} ({} ok, {} failed launches; also report.csv, report.json, plots/)",
            dir.join("report.md").display(),
            r.launches_ok,
            r.launches_failed
        );
        // The answer, last, like hyperfine's summary: one line per benchmark,
        // setting and mode, and the A/A control's.
        let lines = export::summary::lines(&r);
        if !lines.is_empty() {
            println!("\nHeadline (ratio to native over every size, 95% CI, verdict):");
            for line in lines {
                println!("{line}");
            }
        }
    }
    some_launch_succeeded(&dir, !args.no_report)
}

/// A campaign whose every launch failed measured nothing: an error naming
/// the failures and where their output is (exit status 1).
fn some_launch_succeeded(dir: &Path, reported: bool) -> anyhow::Result<()> {
    let records = results::read_records(dir)?;
    if records.is_empty() || records.iter().any(|r| r.status == Outcome::Ok) {
        return Ok(());
    }
    const NAMED: usize = 3;
    let mut named: Vec<String> = records
        .iter()
        .take(NAMED)
        .map(|r| {
            format!(
                "{} launch {} ({})",
                r.cell_key,
                r.launch,
                r.reason.as_deref().unwrap_or("failed")
            )
        })
        .collect();
    if records.len() > NAMED {
        named.push(format!("{} more", records.len() - NAMED));
    }
    let output = if reported {
        format!(
            "the report, with the end of each failure's output, is {}",
            dir.join("report.md").display()
        )
    } else {
        format!(
            "each failure's output is in {}; `hybrun report {}` writes the report",
            dir.join("logs").display(),
            dir.display()
        )
    };
    anyhow::bail!(
        "every launch failed ({n} of {n}): {}; {output}",
        named.join(", "),
        n = records.len()
    )
}

fn check(args: CheckArgs) -> anyhow::Result<()> {
    let scenario = scenario::load(&args.scenario, &Environment::current())?;
    let in_alloc = in_allocation();
    let cells: Vec<&scenario::Cell> = scenario.cells.iter().collect();
    let local: Vec<&scenario::Cell> = cells
        .iter()
        .copied()
        .filter(|c| in_alloc || c.nodes == 1)
        .collect();
    runner::preflight(&scenario, &local, in_alloc)?;
    let planner = CellPlanner::new(&scenario, in_alloc)?;
    println!(
        "# {} (run id {}): {} cells x {} launches, order {}, timeout {} s",
        scenario.name,
        scenario.run_id(),
        scenario.cells.len(),
        scenario.launches,
        scenario.order,
        scenario.timeout_s
    );
    for cell in &scenario.cells {
        let line = match planner.prepare(cell, &runner::Payload::of(cell)) {
            Ok(p) => p.line,
            Err(e) => format!("(needs an allocation: {e:#})"),
        };
        println!("{}\t{}", cell.key, line);
    }
    Ok(())
}

fn calibrate(args: CalibrateArgs) -> anyhow::Result<()> {
    let data = analysis::load(&args.run_dir)?;
    let opts = args.stats.options(Options::of(&data.scenario))?;
    let draws = Draws {
        launches: args.launches,
        draws: args.draws,
        seed: opts.seed,
    };
    let list = match (&args.cell, &args.reference) {
        (Some(cell), Some(reference)) => {
            let cell = calibration::cell_by_key(&data, cell)?;
            let reference = calibration::cell_by_key(&data, reference)?;
            vec![calibration::calibrate(
                &data, &opts, cell, reference, draws,
            )?]
        }
        _ => calibration::calibrate_controls(&data, &opts, draws)?,
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&list)?),
        Format::Csv => {
            let mut w = csv::Writer::from_writer(std::io::stdout());
            for c in &list {
                w.serialize(c)?;
            }
            w.flush()?;
        }
        Format::Md => print!("{}", calibration::markdown(&list, &opts)),
    }
    for c in &list {
        if let Some(max) = args.max_false_rate {
            let worst = c.headline.false_rate().max(c.per_size.false_rate());
            anyhow::ensure!(
                worst <= max,
                "{} against {}: false verdicts in {:.1}% of headline and {:.1}% of per-size \
                 comparisons, above {:.1}%",
                c.cell,
                c.reference,
                c.headline.false_rate() * 100.0,
                c.per_size.false_rate() * 100.0,
                max * 100.0
            );
        }
        if let Some(want) = args.expect {
            let rate = c.headline.rate(want);
            anyhow::ensure!(
                rate >= args.min_rate,
                "{} against {}: the headline said {want} in {:.1}% of {} draws, expected at \
                 least {:.1}%",
                c.cell,
                c.reference,
                rate * 100.0,
                c.draws,
                args.min_rate * 100.0
            );
        }
    }
    Ok(())
}

pub fn report(args: ReportArgs) -> anyhow::Result<()> {
    flat(report_inner(args))
}

fn report_inner(args: ReportArgs) -> anyhow::Result<()> {
    let data = analysis::load(&args.run_dir)?;
    let opts = args.stats.options(Options::of(&data.scenario))?;
    drop(data);
    let r = export::write_all(&args.run_dir, Some(opts))?;
    match args.format {
        Format::Csv => print!("{}", export::csv::report(&r)?),
        Format::Json => println!("{}", serde_json::to_string_pretty(&r)?),
        Format::Md => {
            let plots = std::fs::read_dir(args.run_dir.join("plots"))
                .map(|d| {
                    d.filter_map(|e| e.ok().map(|e| e.path()))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            print!("{}", export::markdown::report(&r, &plots));
        }
    }
    eprintln!("hybrun: wrote {}", args.run_dir.join("report.md").display());
    Ok(())
}

pub fn compare(args: CompareArgs) -> anyhow::Result<()> {
    flat(compare_inner(args))
}

fn compare_inner(args: CompareArgs) -> anyhow::Result<()> {
    let a = analysis::load(&args.run_a)?;
    let opts = args.stats.options(Options::of(&a.scenario))?;
    drop(a);
    let c = compare::compare(&args.run_a, &args.run_b, &opts)?;
    match args.format {
        Format::Csv => print!("{}", compare::csv(&c)?),
        Format::Json => println!("{}", serde_json::to_string_pretty(&c)?),
        Format::Md => print!("{}", compare::markdown(&c)),
    }
    Ok(())
}
