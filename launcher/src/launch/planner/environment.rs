//! The rank's environment, in increasing precedence: the site's `[env]` and
//! `[fabric] env`, the MPI profile's `env`, the fabric guard (which keeps what
//! any of those or the user already set), and last the user's
//! `--env`/`--unset`. Bind mode and the PMIx glue add theirs between the guard
//! and the user (see [`super::rank`]).

use super::{Notes, RankContext};
use crate::launch::LaunchError;
use crate::launch::env::{self, Changes};
use crate::launch::fabric_guard::{self, FabricGuard};
use crate::launch::plan::EnvOp;

/// The site's and the profile's variables.
pub(super) fn site_and_profile(
    ctx: &RankContext<'_>,
    changes: &mut Changes<'_>,
) -> Result<(), LaunchError> {
    let site = &ctx.site.config;
    for (name, value) in &site.env.set {
        changes.set(name, value.into(), "site [env]")?;
    }
    for name in &site.env.unset {
        changes.unset(name, "site [env]")?;
    }
    for (name, value) in &site.fabric.env {
        changes.set(name, value.into(), "site [fabric]")?;
    }
    if let Some((pname, p)) = ctx.profile {
        for (name, value) in &p.env {
            changes.set(name, value.into(), &format!("MPI profile {pname}"))?;
        }
    }
    Ok(())
}

/// The fabric guard: no silent fallback to TCP on a fast fabric.
pub(super) fn fabric_guard(
    ctx: &RankContext<'_>,
    changes: &mut Changes<'_>,
    notes: &mut Notes,
) -> Result<(), LaunchError> {
    let guard = guard_for(ctx, changes);
    if let Some(off) = &guard.off {
        if let (Some(fabric), Some(_)) = (guard.fabric, guard.flavour) {
            notes.warnings.push(format!(
                "fabric guard off ({off}): over [fabric] kind = {:?} the MPI may fall back to \
                 TCP between nodes without an error",
                fabric.name()
            ));
        }
    }
    for (name, value) in &guard.set {
        changes.set(name, value.into(), "fabric guard")?;
    }
    for (name, (value, by)) in &guard.kept {
        notes.notes.push(format!(
            "fabric guard: {name}={value} kept as set by {by} (the guard's value not applied)"
        ));
    }
    notes.fabric_guard = Some(guard);
    Ok(())
}

/// `-c N`: OMP_NUM_THREADS=N, so that an MPI+OpenMP rank runs as many threads
/// as it has CPUs. Over the site's and the profile's value (the job's shape is
/// more specific), under the user's: `--env` (applied later) and the
/// environment hybrun runs in are kept.
pub(super) fn threads(
    ctx: &RankContext<'_>,
    changes: &mut Changes<'_>,
    notes: &mut Notes,
) -> Result<(), LaunchError> {
    let Some(cpus) = ctx.req.geometry.cpus_per_task else {
        return Ok(());
    };
    let by_user = ctx
        .req
        .env
        .iter()
        .filter_map(|a| env::parse_assignment(a).ok())
        .any(|(n, _)| n == "OMP_NUM_THREADS");
    if by_user {
        notes
            .notes
            .push("OMP_NUM_THREADS: --env's value kept (not --cpus-per-task's)".into());
    } else if let Some(v) = ctx.host.var("OMP_NUM_THREADS") {
        notes.notes.push(format!(
            "OMP_NUM_THREADS={v} kept as set in the environment hybrun runs in (not \
             --cpus-per-task's {cpus})"
        ));
    } else {
        changes.set(
            "OMP_NUM_THREADS",
            cpus.to_string().into(),
            "--cpus-per-task",
        )?;
    }
    Ok(())
}

/// The user's `--env` and `--unset`, last, so they win.
pub(super) fn user(ctx: &RankContext<'_>, changes: &mut Changes<'_>) -> Result<(), LaunchError> {
    for assignment in &ctx.req.env {
        let (name, value) = env::parse_assignment(assignment)?;
        changes.set(&name, value, env::BY_USER)?;
    }
    for name in &ctx.req.unset {
        changes.unset(name, env::BY_USER)?;
    }
    Ok(())
}

/// The fabric guard of this rank: the site's fabric, the profile's flavour, and
/// what is already set (by the environment hybrun runs in, the site, the profile,
/// or `--env`).
fn guard_for(ctx: &RankContext<'_>, changes: &Changes<'_>) -> FabricGuard {
    let flavour = ctx.profile.as_ref().map(|(_, p)| p.flavour);
    let user: Vec<(String, String)> = ctx
        .req
        .env
        .iter()
        .filter_map(|a| env::parse_assignment(a).ok())
        .map(|(n, v)| (n, v.to_string_lossy().into_owned()))
        .collect();
    fabric_guard::compute(
        ctx.site.config.fabric.kind,
        flavour,
        ctx.req.allow_tcp,
        |name| {
            if let Some((_, v)) = user.iter().rev().find(|(n, _)| n == name) {
                return Some((v.clone(), "--env".into()));
            }
            if let Some(c) = changes.get(name) {
                let value = match &c.op {
                    EnvOp::Set(v) => v.to_string_lossy().into_owned(),
                    EnvOp::Unset => "(unset)".into(),
                };
                return Some((value, c.why.clone()));
            }
            ctx.host
                .var(name)
                .map(|v| (v, "the environment hybrun runs in".into()))
        },
    )
}
