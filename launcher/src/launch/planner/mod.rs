//! From a request (the command line) and the site file to a [`LaunchPlan`], in
//! three steps:
//!
//! 1. the request ([`request`]): what the user asked, on a [`Host`];
//! 2. resolved ([`RankContext`]): the request read against the site file: the
//!    mode, the MPI profile, srun's PMI plugin, who plans (the job or one rank);
//! 3. the plan: the launcher ([`launcher`]), the rank ([`rank`], which calls on
//!    [`runtime`], [`image`], [`binds`], [`environment`], [`bind_mode`] and
//!    [`gpu`]), what each rank adds where it runs ([`facts`]) and what the
//!    launcher starts on each rank ([`wrapper`]).
//!
//! `hybrun run` plans the whole job ([`plan_run`]); `hybrun exec` plans one rank
//! on the node where it runs ([`plan_exec`]). Both plan the rank with
//! [`rank::plan`], and the rank adds its own facts with [`facts::apply`]: a
//! stand-alone `exec` right after planning, the wrapper of `run` to the plan
//! `run` handed it ([`plan_handed`], see [`crate::launch::handoff`]), which
//! spares each rank the image, the host libraries and the site file. So a
//! rank started by `run` gets exactly what `exec` would give it when a user
//! calls it from their own batch script. Campaign cells of every mode are
//! planned by [`plan_run`] too.
//!
//! Precedence: the command line, then the site file, then built-in defaults.
//! Environment changes merge in the order site `[env]`, `[fabric] env`, the MPI
//! profile's `env`, the fabric guard, bind mode, PMIx glue, then the user's
//! `--env`/`--unset` (later wins).

mod auto;
mod bind_mode;
mod binds;
mod environment;
mod facts;
mod gpu;
mod image;
mod launcher;
mod rank;
mod request;
mod runtime;
mod wrapper;

use std::path::{Path, PathBuf};

use hybrun_core::placement::CpuBinding;
use hybrun_core::vocab::{LauncherKind, Mode, MpiPlugin};

use super::LaunchError;
use super::bind::Bundle;
use super::fabric_guard::FabricGuard;
use super::gate::GateRecord;
use super::plan::{Handoff, LaunchPlan, Launcher, PerRank, RankPlan};
use super::policy::CheckedImage;
use crate::host::Host;
use crate::site::Site;
use crate::site::mpi::MpiProfile;

pub use facts::{join_from_env, node_group, tasks_on_node};
pub use gpu::{BindTarget, cpu_binding_in};
pub use request::Request;

/// The result of planning, with what was checked along the way.
#[derive(Debug)]
pub struct Planned {
    pub plan: LaunchPlan,
    pub site: Site,
    pub image: Option<CheckedImage>,
    pub bundle: Option<Bundle>,
    /// The MPI profile used, by name.
    pub profile: Option<String>,
    /// The profile's host MPI library, when it names one.
    pub profile_library: Option<PathBuf>,
    /// Things the user should know that do not stop the launch (to stderr).
    pub warnings: Vec<String>,
    /// For a wrapped launch: the rank plan as it resolves on this host (what
    /// `hybrun exec` will run, give or take per-rank facts).
    pub rank_here: Option<RankPlan>,
    /// The compatibility gate's verdict (hybrid and bind mode with an image).
    pub gate: Option<GateRecord>,
    /// The fabric guard's variables (or why it is off).
    pub fabric_guard: Option<FabricGuard>,
    /// `hybrun exec`: the CPUs this rank is bound to before the runtime starts
    /// (or why none), applied by the caller with `placement::set_affinity`.
    pub cpu_binding: Option<CpuBinding>,
}

/// Who plans the rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// `hybrun run`, on the submit host: no per-rank facts.
    Job,
    /// `hybrun exec`, on the rank's node: per-rank facts from the environment.
    Rank,
}

/// What planning found along the way, besides the plan itself.
#[derive(Default)]
struct Notes {
    notes: Vec<String>,
    warnings: Vec<String>,
    gate: Option<GateRecord>,
    fabric_guard: Option<FabricGuard>,
    /// The CUDA device hybrun chose for this rank, and why its ordinal cannot
    /// be mapped to a PCI bus id (when it cannot).
    gpu: Option<(String, Option<String>)>,
}

/// The MPI profile in use: its name and its section.
type Profile = Option<(String, MpiProfile)>;

/// Step 2: the request read against the site file.
struct RankContext<'a> {
    site: &'a Site,
    host: &'a Host,
    req: &'a Request,
    mode: Mode,
    profile: &'a Profile,
    role: Role,
    /// srun's `--mpi=` plugin, when known.
    plugin: Option<MpiPlugin>,
    /// What starts the ranks, when known (`hybrun run`).
    launcher: Option<LauncherKind>,
}

/// Plans a whole job (`hybrun run`).
pub fn plan_run(req: &Request, host: &Host) -> Result<Planned, LaunchError> {
    let site = Site::load(req.site.as_deref())?;
    let mut notes = Notes::default();
    let asked = mode_asked(req);
    let profile = profile(req, &site)?;
    req.geometry.check()?;
    where_allowed(req, &site, host, &mut notes)?;
    cpus_fit(req, host)?;
    // auto chooses between hybrid and bind, which start the same way.
    let launcher = launcher::plan(
        req,
        &site,
        asked.unwrap_or(Mode::Hybrid),
        &profile,
        host,
        &mut notes,
    )?;
    let mut ctx = RankContext {
        site: &site,
        host,
        req,
        mode: asked.unwrap_or(Mode::Hybrid),
        profile: &profile,
        role: Role::Job,
        plugin: launcher.mpi,
        launcher: Some(launcher.kind),
    };
    if asked.is_none() {
        ctx.mode = auto::choose(&ctx, &mut notes);
    }
    let parts = rank::plan(&ctx, &mut notes)?;
    let facts = facts::of(&ctx, &parts.rank, parts.image.as_ref());
    let per_rank = wrapper::per_rank(
        &ctx,
        launcher.kind,
        launcher.mpi,
        &parts.rank,
        facts,
        &mut notes,
    )?;
    let rank_here = matches!(per_rank, PerRank::Wrapper { .. }).then(|| parts.rank.clone());
    let mut planned = finish(req, site, profile, launcher, per_rank, parts, notes);
    planned.rank_here = rank_here;
    Ok(planned)
}

/// Plans one rank where it runs (`hybrun exec`).
pub fn plan_exec(req: &Request, host: &Host) -> Result<Planned, LaunchError> {
    let site = Site::load(req.site.as_deref())?;
    let mut notes = Notes::default();
    let asked = mode_asked(req);
    let profile = profile(req, &site)?;
    where_allowed(req, &site, host, &mut notes)?;
    let mut ctx = RankContext {
        site: &site,
        host,
        req,
        mode: asked.unwrap_or(Mode::Hybrid),
        profile: &profile,
        role: Role::Rank,
        // The plugin `hybrun run` chose (passed as --mpi), else the profile's.
        plugin: req
            .mpi
            .or_else(|| profile.as_ref().and_then(|(_, p)| p.pmi)),
        launcher: None,
    };
    if asked.is_none() {
        ctx.mode = auto::choose(&ctx, &mut notes);
    }
    let mut parts = rank::plan(&ctx, &mut notes)?;
    let facts = facts::of(&ctx, &parts.rank, parts.image.as_ref());
    let binding = facts::apply(&facts, &mut parts.rank, host, &mut notes)?;
    let launcher = Launcher {
        kind: LauncherKind::None,
        program: None,
        mpi: None,
        oversubscribe: false,
    };
    let mut planned = finish(req, site, profile, launcher, PerRank::Direct, parts, notes);
    planned.cpu_binding = Some(binding);
    Ok(planned)
}

/// A rank's plan as handed by `hybrun run`, with what the rank added.
#[derive(Debug)]
pub struct Handed {
    pub rank: RankPlan,
    /// The CPUs to bind the rank to before the runtime starts (or why none).
    pub cpu_binding: CpuBinding,
    pub notes: Vec<String>,
    pub warnings: Vec<String>,
}

/// One rank from the plan `hybrun run` handed it: only what the rank's node
/// and environment add ([`facts::apply`]), no site file, image or library.
pub fn plan_handed(handoff: Handoff, host: &Host) -> Result<Handed, LaunchError> {
    let mut notes = Notes::default();
    notes.notes.push(format!(
        "the rank's plan as hybrun run resolved it for the job ({}), with this rank's own \
         facts added",
        super::handoff::VAR
    ));
    let mut rank = handoff.rank;
    let cpu_binding = facts::apply(&handoff.facts, &mut rank, host, &mut notes)?;
    Ok(Handed {
        rank,
        cpu_binding,
        notes: notes.notes,
        warnings: notes.warnings,
    })
}

/// The [`Planned`] of a job or rank plan and what was found on the way.
fn finish(
    req: &Request,
    site: Site,
    profile: Profile,
    launcher: Launcher,
    per_rank: PerRank,
    parts: rank::Parts,
    notes: Notes,
) -> Planned {
    Planned {
        plan: LaunchPlan {
            geometry: req.geometry.clone(),
            launcher,
            per_rank,
            rank: parts.rank,
            notes: notes.notes,
        },
        site,
        image: parts.image,
        bundle: parts.bundle,
        profile_library: profile
            .as_ref()
            .and_then(|(_, p)| p.library.as_ref().map(PathBuf::from)),
        profile: profile.map(|(name, _)| name),
        warnings: notes.warnings,
        rank_here: None,
        gate: notes.gate,
        fabric_guard: notes.fabric_guard,
        cpu_binding: None,
    }
}

/// The site's rule for where containers run: with `[launcher] login_nodes =
/// false`, only inside a Slurm allocation. A dry run launches nothing, so it
/// only warns (it is how a user prepares the job on the login node).
fn where_allowed(
    req: &Request,
    site: &Site,
    host: &Host,
    notes: &mut Notes,
) -> Result<(), LaunchError> {
    if site.config.launcher.login_nodes != Some(false) || host.var("SLURM_JOB_ID").is_some() {
        return Ok(());
    }
    let message = format!(
        "{} allows no launches outside a Slurm allocation ([launcher] login_nodes = false) \
         and SLURM_JOB_ID is not set: get one first, `salloc -N NODES` for interactive \
         work or `sbatch SCRIPT` for a batch job, and run hybrun inside it",
        site.label()
    );
    if req.dry_run {
        notes.warnings.push(message);
        return Ok(());
    }
    Err(LaunchError::Refused { message })
}

/// `-c` no larger than the CPUs Slurm gave this node, when run inside an
/// allocation (elsewhere the node's size is not known before srun asks).
fn cpus_fit(req: &Request, host: &Host) -> Result<(), LaunchError> {
    let Some(cpus) = req.geometry.cpus_per_task else {
        return Ok(());
    };
    let on_node = host
        .var("SLURM_CPUS_ON_NODE")
        .and_then(|v| v.trim().parse::<u32>().ok());
    match on_node {
        Some(n) if cpus > n => Err(LaunchError::Geometry {
            why: format!(
                "--cpus-per-task {cpus} is more than the {n} CPUs of this allocation's node \
                 (SLURM_CPUS_ON_NODE): ask for fewer, or for larger nodes with salloc/sbatch"
            ),
        }),
        _ => Ok(()),
    }
}

/// `--mode`, else native without an image; None: `auto` ([`auto`]), the
/// default with an image.
fn mode_asked(req: &Request) -> Option<Mode> {
    match (req.mode, &req.image) {
        (Some(mode), _) => Some(mode),
        (None, None) => Some(Mode::Native),
        (None, Some(_)) => None,
    }
}

/// An error about a value of the site file, naming the file and key.
fn site_value(site: &Site, path: &str, why: String) -> LaunchError {
    LaunchError::SiteValue {
        site: site.label(),
        path: path.to_owned(),
        why,
    }
}

/// The MPI profile: `--mpi-profile`, else `[launcher] mpi_profile`, else none.
fn profile(req: &Request, site: &Site) -> Result<Profile, LaunchError> {
    let name = req
        .mpi_profile
        .clone()
        .or_else(|| site.config.launcher.mpi_profile.clone());
    let Some(name) = name else {
        return Ok(None);
    };
    match site.config.mpi.get(&name) {
        Some(p) => Ok(Some((name, p.clone()))),
        None => {
            let known: Vec<&str> = site.config.mpi.keys().map(String::as_str).collect();
            Err(LaunchError::UnknownProfile {
                name,
                site: site.label(),
                known: if known.is_empty() {
                    "no [mpi.NAME] profiles".into()
                } else {
                    format!("the profiles {}", known.join(", "))
                },
            })
        }
    }
}

/// Whether `path` (absolute) is a directory inside the directory image `root`.
fn target_in_image(root: &Path, path: &Path) -> bool {
    let relative = path.strip_prefix("/").unwrap_or(path);
    root.join(relative).is_dir()
}
