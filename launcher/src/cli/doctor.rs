//! `hybrun doctor`: its arguments and printing. The findings are
//! [`hybrun::doctor`]'s: as text, as JSON (`--json`), or as a draft site file
//! (`--emit-site`).

use clap::Args;
use hybrun::doctor::{self, site, text};
use hybrun::host::Host;

/// Arguments of `hybrun doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long, conflicts_with = "emit_site")]
    pub json: bool,
    /// Print a draft site file for this host (review it, then install it as
    /// /etc/hybrun/site.toml or pass it with --site).
    #[arg(long)]
    pub emit_site: bool,
}

/// `hybrun doctor`.
pub fn run(args: DoctorArgs) -> anyhow::Result<()> {
    let report = doctor::gather();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else if args.emit_site {
        print!("{}", site::site_draft(&report, &Host::current()));
    } else {
        print!("{}", text::text(&report));
    }
    // Exit status 1 when what every launch needs is missing, so scripts and
    // site checks can rely on it (the report above says what and how to fix).
    if !report.required_missing.is_empty() && !args.emit_site {
        anyhow::bail!(
            "this host lacks what every launch needs: {}",
            report.required_missing.join("; ")
        );
    }
    Ok(())
}
