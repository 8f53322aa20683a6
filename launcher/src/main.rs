use clap::Parser;

/// hybrun: launch MPI containers through srun, correct by construction, and measure them.
#[derive(Parser)]
#[command(name = "hybrun", version, about)]
struct Cli {}

fn main() {
    let _cli = Cli::parse();
    eprintln!("hybrun: no command given; see `hybrun --help`");
    std::process::exit(2);
}
