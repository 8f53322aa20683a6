//! What the job launcher starts on each rank: the runtime command itself, or
//! `hybrun exec` (the per-rank wrapper), which adds to the plan handed to it
//! the facts only the rank's node knows (ch-run's join per node and launch, the
//! PMIx server's directory, the local rank's GPU and CPUs); see
//! [`crate::launch::handoff`]. Its arguments still say everything, so a rank
//! that gets no plan plans itself from them.

use std::ffi::OsString;
use std::path::PathBuf;

use hybrun_core::vocab::{LauncherKind, MpiPlugin};

use super::{Notes, RankContext};
use crate::launch::LaunchError;
use crate::launch::handoff;
use crate::launch::plan::{CpuBindRule, Handoff, PerRank, RankFacts, RankPlan, Runtime};
use crate::site::launcher::PerRankChoice;

/// The wrapper where per-rank facts are needed (`--per-rank auto`), always
/// (`wrapper`) or never (`direct`, with a warning for each fact lost).
pub(super) fn per_rank(
    ctx: &RankContext<'_>,
    kind: LauncherKind,
    mpi: Option<MpiPlugin>,
    rank: &RankPlan,
    facts: RankFacts,
    notes: &mut Notes,
) -> Result<PerRank, LaunchError> {
    let mut reasons = reasons(ctx, kind, mpi, rank);
    let placement = placement_reasons(ctx, kind, rank, &facts);
    let choice = ctx
        .req
        .per_rank
        .or(ctx.site.config.launcher.per_rank)
        .unwrap_or(PerRankChoice::Auto);
    if choice == PerRankChoice::Direct && kind != LauncherKind::None && rank.mount.is_some() {
        return Err(LaunchError::Refused {
            message: "--per-rank direct cannot run a SquashFS or SIF image with ch-run: each \
                      rank joins its node's image mount in hybrun exec; use --per-rank auto \
                      (or wrapper), or the image's directory form"
                .into(),
        });
    }
    if choice == PerRankChoice::Direct {
        if let Some(why) = placement.first() {
            return Err(LaunchError::Refused {
                message: format!(
                    "--per-rank direct cannot apply the site's placement: {why}; use \
                     --per-rank auto (or wrapper), or switch it off ([gpu] per_rank = false, \
                     [gpu] bind_cpus = false or --no-cpu-bind)"
                ),
            });
        }
    }
    reasons.extend(placement);
    let wrap = kind != LauncherKind::None
        && match choice {
            PerRankChoice::Wrapper => true,
            PerRankChoice::Direct => {
                for why in &reasons {
                    notes
                        .warnings
                        .push(format!("--per-rank direct: not applied: {why}"));
                }
                false
            }
            PerRankChoice::Auto => !reasons.is_empty(),
        };
    if !wrap {
        return Ok(PerRank::Direct);
    }
    if reasons.is_empty() {
        reasons.push("--per-rank wrapper".to_owned());
    }
    let program = match &ctx.site.config.launcher.hybrun {
        Some(path) => PathBuf::from(path),
        None => std::env::current_exe().map_err(|source| LaunchError::Spawn {
            program: "hybrun (own path for the per-rank wrapper)".into(),
            source,
        })?,
    };
    let launch = facts.launch.clone();
    let handoff = Handoff {
        format: handoff::FORMAT,
        rank: rank.clone(),
        facts,
    };
    let handoff = match handoff::encode(&handoff) {
        Ok(text) => {
            notes.notes.push(format!(
                "per rank: the plan resolved here reaches every rank in {} ({} bytes): hybrun \
                 exec --from-run adds the rank's own facts (join, PMIx, mount, GPU, CPUs) and \
                 opens neither the site file, the image nor the host libraries",
                handoff::VAR,
                text.len()
            ));
            Some(text)
        }
        Err(why) => {
            notes.notes.push(format!(
                "per rank: each rank plans itself from its arguments: {why}"
            ));
            None
        }
    };
    Ok(PerRank::Wrapper {
        program,
        args: exec_args(ctx, rank, mpi, handoff.is_some()),
        why: reasons,
        launch: handoff.as_ref().and(launch),
        handoff,
    })
}

/// The placement only the rank can apply (it needs its local rank and its
/// node; `facts` says what the rank will do), each as a reason for the
/// wrapper: the rank's GPUs when the ranks get GPUs, and a CPU binding near the
/// rank's GPU or the fabric's adapter.
fn placement_reasons(
    ctx: &RankContext<'_>,
    kind: LauncherKind,
    rank: &RankPlan,
    facts: &RankFacts,
) -> Vec<String> {
    if kind == LauncherKind::None {
        return Vec::new();
    }
    let mut reasons = Vec::new();
    let per_task = ctx.req.geometry.gpus_per_task;
    match (facts.gpus, per_task) {
        (0, _) => {}
        // With --gpus-per-task srun itself gives each rank its GPUs.
        (_, Some(_)) if kind == LauncherKind::Srun => {}
        (n, Some(_)) => reasons.push(format!(
            "{n} GPU(s) per rank (--gpus-per-task under {}): the rank's GPUs come from its \
             local rank",
            kind.name()
        )),
        (_, None) => reasons.push(
            "one GPU per rank ([gpu] per_rank): the rank's GPU comes from its local rank"
                .to_owned(),
        ),
    }
    if let CpuBindRule::Near { fabric, .. } = &facts.cpu_binding {
        let fast_fabric = fabric.is_some_and(crate::site::fabric::FabricKind::is_fast);
        if rank.nvidia || fast_fabric {
            reasons.push(
                "CPU binding near the rank's GPU or the fabric's adapter ([gpu] bind_cpus): \
                 the rank's CPUs come from its node"
                    .to_owned(),
            );
        }
    }
    reasons
}

/// The per-rank facts this launch needs, each as a reason for the wrapper.
fn reasons(
    ctx: &RankContext<'_>,
    kind: LauncherKind,
    mpi: Option<MpiPlugin>,
    rank: &RankPlan,
) -> Vec<String> {
    let mut reasons = Vec::new();
    let in_container = ctx.mode.in_container() && ctx.mode != hybrun_core::vocab::Mode::Inside;
    if matches!(rank.runtime, Runtime::Charliecloud { .. })
        && in_container
        && kind != LauncherKind::None
    {
        reasons.push(
            "ch-run --join-ct/--join-tag come from the rank's node and job (one container per \
             node; the tag unique per node and launch)"
                .to_owned(),
        );
    }
    if rank.mount.is_some() && kind != LauncherKind::None {
        reasons.push(
            "the SquashFS image is mounted once per node: each rank joins its node's mount \
             (started by the node's first rank, gone after its last)"
                .to_owned(),
        );
    }
    if mpi == Some(MpiPlugin::Pmix) && rank.runtime != Runtime::None && in_container {
        reasons.push(
            "PMIx: the rank binds PMIX_SERVER_TMPDIR and maps PMIX_* to PMIX_MCA_* for the \
             container's PMIx client"
                .to_owned(),
        );
    }
    reasons
}

/// The `hybrun exec` arguments that make a rank plan itself as `run` planned it.
fn exec_args(
    ctx: &RankContext<'_>,
    rank: &RankPlan,
    mpi: Option<MpiPlugin>,
    handed: bool,
) -> Vec<OsString> {
    let req = ctx.req;
    let mut args: Vec<OsString> = vec!["exec".into()];
    let mut pair = |flag: &str, value: OsString| {
        args.push(flag.into());
        args.push(value);
    };
    if let Some(path) = &ctx.site.path {
        // Absolute, so a rank started in another directory reads the same file.
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        pair("--site", path.into_os_string());
    }
    pair("--mode", ctx.mode.name().into());
    pair("--runtime", rank.runtime.kind().name().into());
    match &rank.runtime {
        // The version is passed so that no rank has to ask the runtime.
        Runtime::Singularity { version, .. }
        | Runtime::Apptainer { version, .. }
        | Runtime::Charliecloud {
            version: Some(version),
            ..
        } => {
            pair("--runtime-version", version.to_string().into());
        }
        _ => {}
    }
    if let Some((name, _)) = ctx.profile {
        pair("--mpi-profile", name.into());
    }
    if let Some(mpi) = mpi {
        pair("--mpi", mpi.name().into());
    }
    if let Some(dir) = &req.bind_dir {
        pair("--bind-dir", dir.clone().into_os_string());
    }
    for spec in &req.binds {
        pair("-B", spec.clone());
    }
    for assignment in &req.env {
        pair("--env", assignment.clone());
    }
    for name in &req.unset {
        pair("--unset", name.into());
    }
    if let Some(dir) = &req.pwd {
        pair("--pwd", dir.clone().into_os_string());
    }
    if let Some(cpus) = req.geometry.cpus_per_task {
        pair("--cpus-per-task", cpus.to_string().into());
    }
    for arg in &req.runtime_args {
        // One word, so that clap never reads the flag as one of exec's own.
        let mut word = OsString::from("--runtime-arg=");
        word.push(arg);
        args.push(word);
    }
    if rank.nvidia {
        args.push("--nv".into());
    }
    if req.force {
        args.push("--force".into());
    }
    if req.allow_tcp {
        args.push("--allow-tcp".into());
    }
    if req.no_cpu_bind {
        args.push("--no-cpu-bind".into());
    }
    // `hybrun run` judged the image already, on the submit host.
    args.push("--skip-gate".into());
    if handed {
        args.push("--from-run".into());
    }
    if let Some(image) = &rank.image {
        args.push(image.clone().into_os_string());
    }
    args.push("--".into());
    args.extend(req.command.iter().cloned());
    args
}
