//! The command line of `hybrun`: clap definitions and printing only, one module
//! per command; everything they do is the library's.
//!
//! - [`run`]: `hybrun run` and `hybrun exec`;
//! - [`image`]: `hybrun image inspect|wrap|check|cp|ls|rm|verify` (with
//!   [`check`] and [`store`]);
//! - [`doctor`]: `hybrun doctor`;
//! - [`campaign`]: `hybrun campaign`, `hybrun report`, `hybrun compare`;
//! - [`docs`]: `hybrun completions` and `hybrun man`.

mod campaign;
mod check;
mod docs;
mod doctor;
mod image;
mod run;
mod store;

use clap::{Parser, Subcommand};

/// `hybrun --version`: the release, the commit and the build date.
const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("HYBRUN_BUILD_INFO"),
    ")"
);

/// hybrun: launch MPI containers through srun, correct by construction, and measure them.
#[derive(Parser)]
#[command(name = "hybrun", version = VERSION, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Work with SIF (Singularity/Apptainer) container images.
    #[command(subcommand)]
    Image(image::ImageCommand),
    /// Launch a job: srun/mpiexec, then the container runtime on every rank (or
    /// `hybrun exec` where per-rank facts are needed), checked before launching.
    // Boxed: the job's options make it the largest variant by far.
    Run(Box<run::RunArgs>),
    /// Run one rank (after srun, e.g. in your own batch script): computes the
    /// runtime command for this rank and replaces itself with it.
    Exec(run::ExecArgs),
    /// An interactive shell in the image (inside an allocation): the runtime's
    /// shell (singularity/apptainer shell, ch-run IMAGE -- /bin/sh) with the
    /// binds, environment and image policy of `run`.
    Shell(run::ShellArgs),
    /// What this host offers a launch (MPI and its library closure, fabric, Slurm,
    /// runtime, GPUs, topology), each OK/WARN/MISSING with a fix; --json,
    /// --emit-site (a draft site file).
    Doctor(doctor::DoctorArgs),
    /// Benchmark campaigns: a scenario's matrix of launches (native and
    /// container modes), interleaved, resumable.
    #[command(subcommand)]
    Campaign(campaign::CampaignCommand),
    /// Report a campaign run: medians per mode, ratio to native with a
    /// bootstrap 95% CI, verdicts, mapped libmpi, plots.
    Report(campaign::ReportArgs),
    /// Compare two campaign runs cell by cell (ratio B / A with a CI).
    Compare(campaign::CompareArgs),
    /// Print the shell completion script for SHELL (bash, zsh, fish, ...).
    Completions(docs::CompletionsArgs),
    /// Internal (started by `hybrun exec`): holds one node's mount of a
    /// SquashFS image for ch-run until the node's last rank ends.
    #[command(hide = true)]
    HoldMount(run::HoldMountArgs),
    /// Write the manual pages (hybrun.1, hybrun-run.1, ...) into a directory.
    Man(docs::ManArgs),
}

/// Parses the command line, runs the command; the process's exit status.
pub fn main() -> i32 {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Image(command)) => image::run(command),
        Some(Command::Run(args)) => run::run(*args),
        Some(Command::Exec(args)) => run::exec(args),
        Some(Command::Shell(args)) => run::shell(args),
        Some(Command::Doctor(args)) => doctor::run(args),
        Some(Command::Campaign(command)) => campaign::run(command),
        Some(Command::Report(args)) => campaign::report(args),
        Some(Command::Compare(args)) => campaign::compare(args),
        Some(Command::Completions(args)) => docs::completions(&args),
        Some(Command::HoldMount(args)) => run::hold_mount(&args),
        Some(Command::Man(args)) => docs::man(&args),
        None => {
            eprintln!("hybrun: no command given; see `hybrun --help`");
            return 2;
        }
    };
    match result {
        Ok(()) => 0,
        Err(e) => {
            // The messages carry their causes already: print the outermost one only.
            eprintln!("hybrun: error: {e}");
            1
        }
    }
}
