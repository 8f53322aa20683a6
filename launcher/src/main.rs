use clap::{Parser, Subcommand};

mod cli_campaign;
mod cli_doctor;
mod cli_image;
mod cli_run;

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
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Work with SIF (Singularity/Apptainer) container images.
    #[command(subcommand)]
    Image(cli_image::ImageCommand),
    /// Launch a job: srun/mpiexec, then the container runtime on every rank (or
    /// `hybrun exec` where per-rank facts are needed), checked before launching.
    Run(cli_run::RunArgs),
    /// Run one rank (after srun, e.g. in your own batch script): computes the
    /// runtime command for this rank and replaces itself with it.
    Exec(cli_run::ExecArgs),
    /// What this host offers a launch (MPI and its library closure, fabric, Slurm,
    /// runtime, GPUs, topology), each OK/WARN/MISSING with a fix; --json,
    /// --emit-site (a draft site file).
    Doctor(cli_doctor::DoctorArgs),
    /// Benchmark campaigns: a scenario's matrix of launches (native and
    /// container modes), interleaved, resumable.
    #[command(subcommand)]
    Campaign(cli_campaign::CampaignCommand),
    /// Report a campaign run: medians per mode, ratio to native with a
    /// bootstrap 95% CI, verdicts, mapped libmpi, plots.
    Report(cli_campaign::ReportArgs),
    /// Compare two campaign runs cell by cell (ratio B / A with a CI).
    Compare(cli_campaign::CompareArgs),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Image(command)) => cli_image::run(command),
        Some(Command::Run(args)) => cli_run::run(args),
        Some(Command::Exec(args)) => cli_run::exec(args),
        Some(Command::Doctor(args)) => cli_doctor::run(args),
        Some(Command::Campaign(command)) => cli_campaign::run(command),
        Some(Command::Report(args)) => cli_campaign::report(args),
        Some(Command::Compare(args)) => cli_campaign::compare(args),
        None => {
            eprintln!("hybrun: no command given; see `hybrun --help`");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        // The messages carry their causes already: print the outermost one only.
        eprintln!("hybrun: error: {e}");
        std::process::exit(1);
    }
}
