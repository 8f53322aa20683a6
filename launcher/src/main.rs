use clap::{Parser, Subcommand};

mod cli_image;

/// hybrun: launch MPI containers through srun, correct by construction, and measure them.
#[derive(Parser)]
#[command(name = "hybrun", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Work with SIF (Singularity/Apptainer) container images.
    #[command(subcommand)]
    Image(cli_image::ImageCommand),
}

fn main() {
    let cli = Cli::parse();
    let result = match cli.command {
        Some(Command::Image(command)) => cli_image::run(command),
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
