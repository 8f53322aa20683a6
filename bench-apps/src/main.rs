//! hybench: MPI micro-benchmarks with the OSU method and real statistics.
//!
//! Every rank runs the same argument parsing and the same checks, so a bad
//! option fails identically everywhere: rank 0 prints one message, every rank
//! finalises MPI and exits non-zero, nobody hangs.

mod bench;
mod cli;
mod clock;
mod comm;
mod gpu;
mod meta;
mod output;

use std::process::ExitCode;

use clap::Parser;

use crate::bench::Runner;
use crate::cli::Cli;
use crate::clock::ClockKind;
use crate::comm::World;
use crate::output::Outputs;

/// Exit status for a usage error (bad option, wrong rank count, unwritable path).
const EXIT_USAGE: u8 = 2;
/// Exit status when --validate found corrupt data.
const EXIT_VALIDATION: u8 = 1;

/// The rank of this process from the launcher's environment, before MPI_Init,
/// so that only one rank prints help or a parse error.
fn launcher_rank() -> u32 {
    [
        "PMI_RANK",
        "OMPI_COMM_WORLD_RANK",
        "PMIX_RANK",
        "SLURM_PROCID",
    ]
    .iter()
    .find_map(|k| std::env::var(k).ok()?.parse().ok())
    .unwrap_or(0)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Parsing is identical on every rank; one prints, all exit alike.
            let code = e.exit_code();
            if launcher_rank() == 0 {
                let _ = e.print();
            }
            return ExitCode::from(code.clamp(0, 255) as u8);
        }
    };
    // GPU subcommands decide themselves whether to initialise MPI (src/gpu/).
    if cli.bench.is_gpu() {
        return gpu::main(&cli);
    }
    let Some(universe) = mpi::initialize() else {
        eprintln!("hybench: error: MPI was already initialised");
        return ExitCode::from(EXIT_USAGE);
    };
    let world = World::new();
    let code = run(&cli, &world);
    drop(universe); // MPI_Finalize on every rank before exiting
    code
}

/// Print an error from rank 0 only.
fn report(world: &World, msg: &str) {
    if world.rank == 0 {
        eprintln!("hybench: error: {msg}");
    }
}

fn run(cli: &Cli, world: &World) -> ExitCode {
    let plan = match cli.plan(world.size) {
        Ok(p) => p,
        Err(msg) => {
            report(world, &msg);
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let c = &cli.common;
    // Open the outputs on rank 0 before measuring anything; share the outcome.
    let mut outputs = None;
    let mut open_error = None;
    if world.rank == 0 {
        match Outputs::open(plan.bench, c) {
            Ok(o) => outputs = Some(o),
            Err(e) => open_error = Some(format!("{e:#}")),
        }
    }
    if world.any(open_error.is_some()) {
        if let Some(msg) = open_error {
            report(world, &msg);
        }
        return ExitCode::from(EXIT_USAGE);
    }

    let started_at = hybrun_core::sys::now_utc();
    let collected = meta::collect(world, started_at);
    let clock = ClockKind::detect();
    // Every rank must agree on the clock kind (they share the binary and, in
    // practice, the CPU model); rank 0 decides.
    let clock = if world.bcast_u64(matches!(clock, ClockKind::Tsc) as u64) == 1 {
        ClockKind::Tsc
    } else {
        ClockKind::Wtime
    };

    let mut write_error: Option<anyhow::Error> = None;
    if let Some(out) = outputs.as_mut() {
        if let Err(e) = out.header(&plan, &collected.meta, clock.name()) {
            write_error = Some(e);
        }
    }
    let mut runner = Runner {
        world,
        plan: &plan,
        clock,
        validate: c.validate,
        corrupt: c.debug_corrupt,
        local_error: None,
    };
    let results = runner.run(|r| {
        if write_error.is_some() {
            return;
        }
        if let Some(out) = outputs.as_mut() {
            let step = output::row(&plan, r, &collected.meta)
                .and_then(|row| out.push(row))
                .and_then(|_| match out.samples.as_mut() {
                    Some(s) => s.push(plan.bench, r),
                    None => Ok(()),
                });
            if let Err(e) = step {
                write_error = Some(e);
            }
        }
    });
    if let Some(out) = outputs {
        if write_error.is_none() {
            if let Err(e) = out.finish(&collected.meta, &collected.ranks, clock.name()) {
                write_error = Some(e);
            }
        }
    }
    if let Some(e) = &write_error {
        eprintln!("hybench: error: {e:#}");
    }

    // Validation: every rank that saw corrupt data says so; rank 0 sums up.
    let failed = results.iter().any(|r| r.valid == Some(false));
    if failed {
        if let Some(msg) = &runner.local_error {
            eprintln!("hybench: validation error: {msg}");
        }
        world.barrier();
        if world.rank == 0 {
            let size = results.last().map(|r| r.size).unwrap_or(0);
            eprintln!(
                "hybench: error: DATA VALIDATION FAILED for {} at message size {size}",
                plan.bench.name()
            );
        }
        return ExitCode::from(EXIT_VALIDATION);
    }
    if world.any(write_error.is_some()) {
        ExitCode::from(EXIT_USAGE)
    } else {
        ExitCode::SUCCESS
    }
}
