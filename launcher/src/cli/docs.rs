//! `hybrun completions SHELL` and `hybrun man --dir DIR`: shell completions and
//! manual pages generated from the command line's own definitions (clap), so
//! they never disagree with `--help`.

use std::path::PathBuf;

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use super::Cli;

#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell: bash, zsh, fish, elvish or powershell.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Debug, Args)]
pub struct ManArgs {
    /// Where to write hybrun.1 and one page per subcommand (created if needed).
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
}

/// Prints the completion script.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<()> {
    let mut command = Cli::command();
    clap_complete::generate(args.shell, &mut command, "hybrun", &mut std::io::stdout());
    Ok(())
}

/// Writes the manual pages and names them.
pub fn man(args: &ManArgs) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.dir).map_err(|e| {
        anyhow::anyhow!("cannot create {}: {e}; pass --dir DIR", args.dir.display())
    })?;
    let command = Cli::command();
    clap_mangen::generate_to(command, &args.dir).map_err(|e| {
        anyhow::anyhow!(
            "cannot write the manual pages into {}: {e}",
            args.dir.display()
        )
    })?;
    let mut pages: Vec<String> = std::fs::read_dir(&args.dir)?
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("hybrun") && n.ends_with(".1"))
        .collect();
    pages.sort();
    println!(
        "{} manual pages in {}: {}",
        pages.len(),
        args.dir.display(),
        pages.join(" ")
    );
    Ok(())
}
