//! From a request (the command line) and the site file to a [`LaunchPlan`].
//!
//! `hybrun run` plans the whole job ([`plan_run`]); `hybrun exec` plans one rank
//! on the node where it runs ([`plan_exec`]). Both share [`plan_rank`], so a rank
//! started by `run` through the wrapper gets exactly what `exec` would give it
//! when a user calls it from their own batch script.
//!
//! Precedence: the command line, then the site file, then built-in defaults.
//! Environment changes merge in the order site `[env]`, `[fabric] env`, the MPI
//! profile's `env`, bind mode, PMIx glue, then the user's `--env`/`--unset`
//! (later wins).

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::LaunchError;
use super::bind::{self, Bundle, PluginRequest};
use super::cache;
use super::env;
use super::fabric_guard::{self, FabricGuard};
use super::gate::{self, GateInput, GateRecord, LazyImage};
use super::plan::{
    Bind, EnvOp, Geometry, InsideLauncher, Join, LaunchPlan, Launcher, PerRank, RankPlan, Runtime,
};
use super::pmi;
use super::policy::{self, AllowedDir, CheckedImage, ImageKind};
use crate::host::Host;
use crate::site::Site;
use crate::site::fabric::FabricKind;
use crate::site::gpu::GpuVendor;
use crate::site::launcher::PerRankChoice;
use crate::site::mpi::{MpiProfile, PluginDir};
use hybrun_core::placement::CpuBinding;
use hybrun_core::vocab::{
    Dialect, LauncherKind, Mode, MpiAbi, MpiFlavour, MpiPlugin, RuntimeKind, Version,
};

/// What the user asked for, independent of how the command line spells it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub site: Option<PathBuf>,
    pub mode: Option<Mode>,
    pub runtime: Option<RuntimeKind>,
    pub runtime_version: Option<Version>,
    pub launcher: Option<LauncherKind>,
    pub mpi_profile: Option<String>,
    pub mpi: Option<MpiPlugin>,
    pub geometry: Geometry,
    /// `-B SRC[:DST[:ro|rw]]` as given.
    pub binds: Vec<OsString>,
    /// `--env NAME=VALUE` as given.
    pub env: Vec<OsString>,
    pub unset: Vec<String>,
    /// `--nv`: NVIDIA GPUs in the container even without `--gpus-per-node`.
    pub nv: bool,
    pub per_rank: Option<PerRankChoice>,
    pub bind_dir: Option<PathBuf>,
    pub oversubscribe: bool,
    pub force: bool,
    /// `--allow-tcp`: no fabric guard (see [`super::fabric_guard`]).
    pub allow_tcp: bool,
    /// The per-rank wrapper of `hybrun run`, which judged the image before the job
    /// started: no second image check on every rank.
    pub skip_gate: bool,
    /// `--no-cpu-bind`: `hybrun exec` leaves the rank's CPU affinity alone.
    pub no_cpu_bind: bool,
    pub dry_run: bool,
    pub image: Option<PathBuf>,
    pub command: Vec<OsString>,
}

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

/// Plans a whole job (`hybrun run`).
pub fn plan_run(req: &Request, host: &Host) -> Result<Planned, LaunchError> {
    let site = Site::load(req.site.as_deref())?;
    let mut notes = Notes::default();
    let mode = mode_of(req);
    let profile = profile(req, &site)?;
    req.geometry.check()?;

    // The launcher.
    let kind = launcher_kind(req, &site, mode)?;
    let mpi = match kind {
        LauncherKind::Srun => {
            let choice = pmi::choose(req.mpi, profile_pmi(&profile), req.force)?;
            notes.notes.push(format!(
                "srun --mpi={}: {}",
                choice.plugin.name(),
                choice.why
            ));
            Some(choice.plugin)
        }
        _ => {
            if let Some(plugin) = req.mpi {
                notes.warnings.push(format!(
                    "--mpi {} only applies to srun; {} ignores it",
                    plugin.name(),
                    kind.name()
                ));
            }
            None
        }
    };
    check_launcher_abi(kind, &profile, req.force)?;
    let program = launcher_program(kind, &site, &profile, host, req.dry_run, &mut notes)?;
    let oversubscribe =
        kind == LauncherKind::MpiexecOpenmpi && (req.oversubscribe || exceeds_cores(&req.geometry));
    if oversubscribe && !req.oversubscribe {
        notes
            .notes
            .push("mpiexec.openmpi --oversubscribe: more ranks than this node's cores".into());
    }
    let launcher = Launcher {
        kind,
        program,
        mpi,
        oversubscribe,
    };

    let mut rank_ctx = RankContext {
        site: &site,
        host,
        req,
        mode,
        profile: &profile,
        role: Role::Job,
        plugin: mpi,
    };
    let rank = plan_rank(&mut rank_ctx, &mut notes)?;
    let (rank_plan, image, bundle) = rank;

    // Per rank: the wrapper where per-rank facts are needed.
    let mut reasons = Vec::new();
    let in_container = matches!(mode, Mode::Hybrid | Mode::Bind);
    if matches!(rank_plan.runtime, Runtime::Charliecloud { .. })
        && in_container
        && kind != LauncherKind::None
    {
        reasons.push(
            "ch-run --join-ct/--join-tag come from the rank's node and job (one container per \
             node; the tag unique per node and job)"
                .to_owned(),
        );
    }
    if mpi == Some(MpiPlugin::Pmix) && rank_plan.runtime != Runtime::None && in_container {
        reasons.push(
            "PMIx: the rank binds PMIX_SERVER_TMPDIR and maps PMIX_* to PMIX_MCA_* for the \
             container's PMIx client"
                .to_owned(),
        );
    }
    let choice = req
        .per_rank
        .or(site.config.launcher.per_rank)
        .unwrap_or(PerRankChoice::Auto);
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
    let per_rank = if wrap {
        if reasons.is_empty() {
            reasons.push("--per-rank wrapper".to_owned());
        }
        let program = match &site.config.launcher.hybrun {
            Some(path) => PathBuf::from(path),
            None => std::env::current_exe().map_err(|source| LaunchError::Spawn {
                program: "hybrun (own path for the per-rank wrapper)".into(),
                source,
            })?,
        };
        let args = exec_args(req, &site, mode, &rank_plan, &profile, mpi);
        PerRank::Wrapper {
            program,
            args,
            why: reasons,
        }
    } else {
        PerRank::Direct
    };

    let rank_here = matches!(per_rank, PerRank::Wrapper { .. }).then(|| rank_plan.clone());
    Ok(Planned {
        plan: LaunchPlan {
            geometry: req.geometry.clone(),
            launcher,
            per_rank,
            rank: rank_plan,
            notes: notes.notes,
        },
        site,
        image,
        bundle,
        profile_library: profile
            .as_ref()
            .and_then(|(_, p)| p.library.as_ref().map(|l| l.to_path_buf())),
        profile: profile.map(|(name, _)| name),
        warnings: notes.warnings,
        rank_here,
        gate: notes.gate,
        fabric_guard: notes.fabric_guard,
        cpu_binding: None,
    })
}

/// Plans one rank where it runs (`hybrun exec`).
pub fn plan_exec(req: &Request, host: &Host) -> Result<Planned, LaunchError> {
    let site = Site::load(req.site.as_deref())?;
    let mut notes = Notes::default();
    let mode = mode_of(req);
    let profile = profile(req, &site)?;
    let mut ctx = RankContext {
        site: &site,
        host,
        req,
        mode,
        profile: &profile,
        role: Role::Rank,
        // The plugin `hybrun run` chose (passed as --mpi), else the profile's.
        plugin: req
            .mpi
            .or_else(|| profile.as_ref().and_then(|(_, p)| p.pmi)),
    };
    let (rank, image, bundle) = plan_rank(&mut ctx, &mut notes)?;
    let binding = if req.no_cpu_bind {
        CpuBinding::none("no binding: --no-cpu-bind")
    } else if !site.config.gpu.bind_cpus.unwrap_or(true) {
        CpuBinding::none("no binding: [gpu] bind_cpus = false")
    } else {
        let target = BindTarget {
            gpu: notes.gpu.as_ref().map(|(d, _)| d.as_str()),
            gpu_unmappable: notes.gpu.as_ref().and_then(|(_, why)| why.as_deref()),
            nic: site.config.fabric.nic.as_deref(),
            fabric_kind: site.config.fabric.kind,
        };
        let allowed = hybrun_core::placement::current_affinity().unwrap_or_default();
        cpu_binding_in(&target, Path::new("/sys"), Path::new("/proc"), &allowed)
    };
    if binding.warn {
        notes.warnings.push(binding.why.clone());
    }
    notes.notes.push(format!("CPU binding: {}", binding.why));
    Ok(Planned {
        plan: LaunchPlan {
            geometry: req.geometry.clone(),
            launcher: Launcher {
                kind: LauncherKind::None,
                program: None,
                mpi: None,
                oversubscribe: false,
            },
            per_rank: PerRank::Direct,
            rank,
            notes: notes.notes,
        },
        site,
        image,
        bundle,
        profile_library: profile
            .as_ref()
            .and_then(|(_, p)| p.library.as_ref().map(|l| l.to_path_buf())),
        profile: profile.map(|(name, _)| name),
        warnings: notes.warnings,
        rank_here: None,
        gate: notes.gate,
        fabric_guard: notes.fabric_guard,
        cpu_binding: Some(binding),
    })
}

fn mode_of(req: &Request) -> Mode {
    req.mode.unwrap_or(if req.image.is_some() {
        Mode::Hybrid
    } else {
        Mode::Native
    })
}

fn site_value(site: &Site, path: &str, why: String) -> LaunchError {
    LaunchError::SiteValue {
        site: site.label(),
        path: path.to_owned(),
        why,
    }
}

type Profile = Option<(String, MpiProfile)>;

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

fn profile_pmi(profile: &Profile) -> Option<(&str, MpiFlavour, Option<MpiPlugin>)> {
    profile
        .as_ref()
        .map(|(name, p)| (name.as_str(), p.flavour, p.pmi))
}

fn launcher_kind(req: &Request, site: &Site, mode: Mode) -> Result<LauncherKind, LaunchError> {
    if mode == Mode::Inside {
        if let Some(kind) = req.launcher.filter(|k| *k != LauncherKind::None) {
            return Err(LaunchError::Refused {
                message: format!(
                    "--mode inside runs mpiexec inside the container, on this node: drop \
                     --launcher {}",
                    kind.name()
                ),
            });
        }
        return Ok(LauncherKind::None);
    }
    if let Some(kind) = req.launcher {
        return Ok(kind);
    }
    Ok(site.config.launcher.kind.unwrap_or(LauncherKind::Srun))
}

/// hydra cannot start Open MPI ranks (no PMIx server) and Open MPI's mpiexec
/// cannot start MPICH ranks (no PMI-2 server).
fn check_launcher_abi(
    kind: LauncherKind,
    profile: &Profile,
    force: bool,
) -> Result<(), LaunchError> {
    let Some((name, p)) = profile else {
        return Ok(());
    };
    let fits = p.flavour.mpiexec();
    let is_mpiexec = matches!(
        kind,
        LauncherKind::MpiexecHydra | LauncherKind::MpiexecOpenmpi
    );
    if is_mpiexec && kind != fits && !force {
        return Err(LaunchError::Refused {
            message: format!(
                "--launcher {kind} cannot start ranks of profile {name} ({}): use --launcher \
                 {fits} or srun (--force to try anyway)",
                p.flavour
            ),
        });
    }
    Ok(())
}

fn launcher_program(
    kind: LauncherKind,
    site: &Site,
    profile: &Profile,
    host: &Host,
    dry_run: bool,
    notes: &mut Notes,
) -> Result<Option<PathBuf>, LaunchError> {
    let configured = site.config.launcher.program.clone().or_else(|| match kind {
        LauncherKind::MpiexecHydra | LauncherKind::MpiexecOpenmpi => {
            profile.as_ref().and_then(|(_, p)| p.mpiexec.clone())
        }
        _ => None,
    });
    let (program, hint) = match kind {
        LauncherKind::None => return Ok(None),
        LauncherKind::Srun => (
            configured.unwrap_or_else(|| "srun".into()),
            "this machine has no Slurm client: run inside a Slurm cluster, or start the ranks \
             with --launcher mpiexec-hydra|mpiexec-openmpi",
        ),
        LauncherKind::MpiexecHydra => (
            configured.unwrap_or_else(|| {
                ["mpiexec.hydra", "mpiexec.mpich"]
                    .into_iter()
                    .find(|p| host.which(p).is_some())
                    .unwrap_or("mpiexec.hydra")
                    .into()
            }),
            "install MPICH's hydra (Debian: mpich) or set `mpiexec` in the MPI profile",
        ),
        LauncherKind::MpiexecOpenmpi => (
            configured.unwrap_or_else(|| "mpiexec.openmpi".into()),
            "install Open MPI (Debian: openmpi-bin) or set `mpiexec` in the MPI profile",
        ),
    };
    if host.which(&program).is_none() {
        let what = "launcher";
        if dry_run {
            notes.warnings.push(format!(
                "{what} {program:?} not found on PATH: printing the command anyway ({hint})"
            ));
        } else {
            return Err(LaunchError::ProgramNotFound {
                what,
                program,
                hint: hint.to_owned(),
            });
        }
    }
    Ok(Some(PathBuf::from(program)))
}

fn exceeds_cores(g: &Geometry) -> bool {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    g.nodes.is_none_or(|n| n <= 1) && g.total_tasks().is_some_and(|t| t > cores)
}

struct RankContext<'a> {
    site: &'a Site,
    host: &'a Host,
    req: &'a Request,
    mode: Mode,
    profile: &'a Profile,
    role: Role,
    /// srun's `--mpi=` plugin, when known.
    plugin: Option<MpiPlugin>,
}

/// Plans one rank: runtime, image (checked), binds, environment, GPUs, join.
fn plan_rank(
    ctx: &mut RankContext<'_>,
    notes: &mut Notes,
) -> Result<(RankPlan, Option<CheckedImage>, Option<Bundle>), LaunchError> {
    let req = ctx.req;
    let site = ctx.site;
    if req.command.is_empty() {
        return Err(LaunchError::EmptyCommand);
    }
    let runtime = resolve_runtime(ctx, notes)?;

    // The image.
    let image = match (ctx.mode, &req.image) {
        (Mode::Native, Some(image)) => {
            return Err(LaunchError::Refused {
                message: format!(
                    "--mode native runs without a container, but an image was given ({}): drop \
                     it, or choose --mode hybrid|bind|inside",
                    image.display()
                ),
            });
        }
        (Mode::Native, None) => None,
        (_, None) => {
            return Err(LaunchError::NoImage {
                runtime: runtime.kind().name(),
            });
        }
        (_, Some(path)) => Some(check_image(path, &runtime, site, notes)?),
    };

    // The compatibility gate (hybrun::image::check), before anything is prepared.
    // Bind mode without a profile library is refused by bind mode itself, with the
    // key to set.
    let host_library = ctx
        .profile
        .as_ref()
        .and_then(|(_, p)| p.library.as_ref().map(|l| l.to_path_buf()));
    let bind_unjudgeable = ctx.mode == Mode::Bind && host_library.is_none();
    // The image's contents, opened at most once and only when a cache entry is
    // missing: by the gate, and by bind mode (bind_library_path).
    let contents = image.as_ref().map(|img| LazyImage::new(&img.canonical));
    let cache_dir = ctx.host.cache_dir();
    if let (Some(lazy), false, false) = (&contents, req.skip_gate, bind_unjudgeable) {
        let input = GateInput {
            mode: ctx.mode,
            image: lazy,
            host_library: host_library.as_deref(),
            plugin: ctx.plugin,
            force: req.force,
            cache_dir: cache_dir.as_deref(),
        };
        if let Some((record, warnings)) = gate::gate(&input)? {
            notes.warnings.extend(warnings);
            notes.notes.extend(record.note.clone());
            notes.gate = Some(record);
        }
    }

    // Binds: the site's, the user's.
    let mut binds: Vec<Bind> = Vec::new();
    if runtime != Runtime::None {
        for entry in &site.config.binds.always {
            let src = entry.src.to_path_buf();
            let dst = entry
                .dst
                .as_ref()
                .map_or_else(|| src.clone(), |d| d.to_path_buf());
            binds.push(Bind {
                src,
                dst,
                ro: entry.ro,
                why: "site".into(),
            });
        }
    }
    for spec in &req.binds {
        binds.push(parse_bind(spec)?);
    }
    if runtime == Runtime::None && !binds.is_empty() {
        return Err(LaunchError::NativeBinds);
    }

    // Environment, in increasing precedence.
    let mut changes = Vec::new();
    let set = |changes: &mut Vec<_>, name: &str, value: OsString, why: &str| {
        env::change(&runtime, name, EnvOp::Set(value), why).map(|c| env::merge(changes, c))
    };
    for (name, value) in &site.config.env.set {
        set(&mut changes, name, value.into(), "site [env]")?;
    }
    for name in &site.config.env.unset {
        env::merge(
            &mut changes,
            env::change(&runtime, name, EnvOp::Unset, "site [env]")?,
        );
    }
    for (name, value) in &site.config.fabric.env {
        set(&mut changes, name, value.into(), "site [fabric]")?;
    }
    if let Some((pname, p)) = ctx.profile {
        for (name, value) in &p.env {
            set(
                &mut changes,
                name,
                value.into(),
                &format!("MPI profile {pname}"),
            )?;
        }
    }

    // The fabric guard: no silent fallback to TCP on a fast fabric.
    let guard = fabric_guard_for(ctx, &changes);
    if let Some(off) = &guard.off {
        if guard.fabric.is_some() && guard.flavour.is_some() {
            notes.warnings.push(format!(
                "fabric guard off ({off}): over [fabric] kind = {:?} the MPI may fall back to \
                 TCP between nodes without an error",
                guard.fabric.map(|f| f.name()).unwrap_or_default()
            ));
        }
    }
    for (name, value) in &guard.set {
        set(&mut changes, name, value.into(), "fabric guard")?;
    }
    for (name, (value, by)) in &guard.kept {
        notes.notes.push(format!(
            "fabric guard: {name}={value} kept as set by {by} (the guard's value not applied)"
        ));
    }
    notes.fabric_guard = Some(guard);

    // Bind mode: the host MPI bundle.
    let mut bundle = None;
    if ctx.mode == Mode::Bind {
        let (b, bundle_binds, bundle_env) =
            bind_mode(ctx, &runtime, image.as_ref(), contents.as_ref(), notes)?;
        binds.extend(bundle_binds);
        for (name, value) in bundle_env {
            set(&mut changes, &name, value, "bind mode")?;
        }
        bundle = Some(b);
    }

    // Per-rank facts (hybrun exec on the rank's node).
    let mut join = None;
    if ctx.role == Role::Rank && runtime != Runtime::None {
        if let Some(glue) = pmi::pmix_glue(|k| ctx.host.var(k)) {
            for (name, value) in glue.env {
                set(&mut changes, &name, value.into(), "PMIx glue")?;
            }
            for dir in glue.dirs {
                let reachable = match (&runtime, &image) {
                    (Runtime::Charliecloud { .. }, Some(img)) => {
                        img.kind == ImageKind::Directory && target_in_image(&img.canonical, &dir)
                    }
                    _ => true,
                };
                if reachable {
                    binds.push(Bind {
                        src: dir.clone(),
                        dst: dir,
                        ro: false,
                        why: "PMIx server directory".into(),
                    });
                } else {
                    // Without the server's directory the shared-memory stores
                    // are out of reach: use the hash store, which needs none.
                    set(&mut changes, "PMIX_MCA_gds", "hash".into(), "PMIx glue")?;
                    notes.notes.push(format!(
                        "PMIx: {} is not a directory in the image (ch-run cannot create bind \
                         targets): PMIX_MCA_gds=hash instead",
                        dir.display()
                    ));
                }
            }
        }
        if matches!(runtime, Runtime::Charliecloud { .. })
            && matches!(ctx.mode, Mode::Hybrid | Mode::Bind)
        {
            join = join_from_env(ctx.host);
        }
    }

    for assignment in &req.env {
        let (name, value) = env::parse_assignment(assignment)?;
        set(&mut changes, &name, value, "user")?;
    }
    for name in &req.unset {
        env::merge(
            &mut changes,
            env::change(&runtime, name, EnvOp::Unset, "user")?,
        );
    }

    // GPUs.
    let wants_gpus = req.nv || req.geometry.gpus_per_node.is_some_and(|n| n > 0);
    let vendor = site.config.gpu.vendor.unwrap_or(GpuVendor::Nvidia);
    let nvidia = wants_gpus
        && vendor == GpuVendor::Nvidia
        && matches!(
            runtime,
            Runtime::Singularity { .. } | Runtime::Apptainer { .. }
        );
    if wants_gpus && matches!(runtime, Runtime::Charliecloud { .. }) {
        let message = "ch-run has no --nv: GPU libraries must be in the image (ch-fromhost \
                       --nvidia IMAGE)";
        if !req.force {
            return Err(LaunchError::Refused {
                message: format!("{message}; prepare the image, then use --force"),
            });
        }
        notes.warnings.push(message.to_owned());
    }

    // One GPU per rank (hybrun exec, where the local rank is known).
    if nvidia && ctx.role == Role::Rank && site.config.gpu.per_rank.unwrap_or(true) {
        if let Some((device, why)) = gpu_for_rank(ctx.host) {
            set(
                &mut changes,
                "CUDA_VISIBLE_DEVICES",
                device.as_str().into(),
                "GPU per rank",
            )?;
            notes.notes.push(why);
            // CUDA numbers GPUs fastest first by default; in PCI bus order they
            // match /proc/driver/nvidia/gpus, which is how hybrun finds the
            // chosen GPU's PCI locality (for the CPU binding) without CUDA or
            // NVML. The same order for every rank also keeps the mapping stable.
            let given = changes
                .iter()
                .rev()
                .find(|c| c.name == "CUDA_DEVICE_ORDER")
                .map(|c| match &c.op {
                    EnvOp::Set(v) => (v.to_string_lossy().into_owned(), c.why.clone()),
                    EnvOp::Unset => (String::new(), c.why.clone()),
                })
                .or_else(|| {
                    ctx.host
                        .var("CUDA_DEVICE_ORDER")
                        .map(|v| (v, "the environment hybrun runs in".to_owned()))
                });
            let unmappable = match given {
                None => {
                    set(
                        &mut changes,
                        "CUDA_DEVICE_ORDER",
                        "PCI_BUS_ID".into(),
                        "GPU per rank (CUDA ordinals in PCI bus order, as hybrun maps them)",
                    )?;
                    None
                }
                Some((v, _)) if v == "PCI_BUS_ID" => None,
                Some((v, by)) => Some(format!(
                    "CUDA_DEVICE_ORDER={v:?} (set by {by}): CUDA ordinals are not in PCI bus order"
                )),
            };
            notes.gpu = Some((device, unmappable));
        }
    }

    // The inside mode's mpiexec.
    let inside = if ctx.mode == Mode::Inside {
        if req.geometry.nodes.is_some_and(|n| n > 1) {
            return Err(LaunchError::Refused {
                message: "--mode inside runs on one node: use --nodes 1 (or --mode hybrid|bind \
                          for several nodes)"
                    .into(),
            });
        }
        let (pname, p) = ctx.profile.as_ref().ok_or_else(|| LaunchError::Refused {
            message: "--mode inside needs to know the container's MPI: pass --mpi-profile NAME"
                .into(),
        })?;
        let ntasks = req.geometry.total_tasks().unwrap_or(1);
        let program = p.inside_mpiexec.clone().unwrap_or_else(|| {
            match p.flavour.mpiexec() {
                LauncherKind::MpiexecOpenmpi => "mpiexec",
                _ => "mpiexec.hydra",
            }
            .into()
        });
        notes.notes.push(format!(
            "inside: {program} -n {ntasks} in the container (profile {pname}, {})",
            p.flavour
        ));
        Some(InsideLauncher {
            program: program.into(),
            flavour: p.flavour,
            ntasks,
            oversubscribe: req.oversubscribe || exceeds_cores(&req.geometry),
        })
    } else {
        None
    };

    for bind in &binds {
        bind.check()?;
    }
    if matches!(runtime, Runtime::Charliecloud { .. }) && binds.iter().any(|b| b.ro) {
        notes.notes.push(
            "ch-run 0.31 has no read-only binds: binds asked read-only are read-write".into(),
        );
    }
    if runtime != Runtime::None {
        notes.notes.push(
            "SLURM_*, PMI_*, PMIX_* pass into the container: hybrun never uses \
             --cleanenv/--containall"
                .into(),
        );
    }
    let rank = RankPlan {
        runtime,
        mode: ctx.mode,
        image: image.as_ref().map(|i| i.canonical.clone()),
        binds,
        env: changes,
        nvidia,
        join,
        inside,
        command: req.command.clone(),
    };
    Ok((rank, image, bundle))
}

/// The fabric guard of this rank: the site's fabric, the profile's flavour, and
/// what is already set (by the environment hybrun runs in, the site, the profile,
/// or `--env`).
fn fabric_guard_for(ctx: &RankContext<'_>, changes: &[super::plan::EnvChange]) -> FabricGuard {
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
            if let Some(c) = changes.iter().rev().find(|c| c.name == name) {
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

/// The GPU this rank uses, when it sees several and its local rank is known:
/// one entry of CUDA_VISIBLE_DEVICES (or an ordinal of /dev/nvidiaN when that is
/// unset), chosen by `hybrun_core::placement` (local rank modulo the count).
fn gpu_for_rank(host: &Host) -> Option<(String, String)> {
    let local = hybrun_core::placement::local_rank_from(|k| host.var(k));
    if local.source == "default" {
        return None;
    }
    let devices: Vec<String> = match host.var("CUDA_VISIBLE_DEVICES") {
        Some(list) => list
            .split(',')
            .map(str::trim)
            .filter(|d| !d.is_empty())
            .map(str::to_owned)
            .collect(),
        None => {
            let mut ordinals: Vec<u32> = std::fs::read_dir("/dev")
                .ok()?
                .filter_map(Result::ok)
                .filter_map(|e| {
                    e.file_name()
                        .to_str()
                        .and_then(|n| n.strip_prefix("nvidia"))
                        .and_then(|n| n.parse().ok())
                })
                .collect();
            ordinals.sort_unstable();
            ordinals.into_iter().map(|o| o.to_string()).collect()
        }
    };
    if devices.len() < 2 {
        return None;
    }
    let index = hybrun_core::placement::gpu_for_local_rank(local.rank, devices.len() as u32)?;
    let device = devices.get(index as usize)?.clone();
    Some((
        device.clone(),
        format!(
            "GPU per rank: local rank {} ({}) of {} visible GPUs -> CUDA_VISIBLE_DEVICES={device}",
            local.rank,
            local.source,
            devices.len()
        ),
    ))
}

/// The device a rank's CPUs are bound near (see [`cpu_binding_in`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct BindTarget<'a> {
    /// The CUDA_VISIBLE_DEVICES entry hybrun chose for the rank.
    pub gpu: Option<&'a str>,
    /// Why that entry's ordinal is not in PCI bus order, when it is not.
    pub gpu_unmappable: Option<&'a str>,
    /// `[fabric] nic`.
    pub nic: Option<&'a str>,
    /// `[fabric] kind`.
    pub fabric_kind: Option<FabricKind>,
}

/// The CPU binding of a rank that may run on `allowed`: near its GPU when hybrun
/// chose one (ordinal N = the Nth GPU of `<proc_root>/driver/nvidia/gpus` in bus
/// order, its locality from `<sysfs_root>/bus/pci/devices`), else near the
/// fabric's NIC. Never wider than `allowed` (see `placement::cpu_bind_decision`).
pub fn cpu_binding_in(
    target: &BindTarget<'_>,
    sysfs_root: &Path,
    proc_root: &Path,
    allowed: &[usize],
) -> CpuBinding {
    use hybrun_core::placement;
    if let Some(device) = target.gpu {
        let label = format!("GPU CUDA_VISIBLE_DEVICES={device}");
        if let Some(why) = target.gpu_unmappable {
            return CpuBinding::near(&label, Err(why.to_owned()), allowed);
        }
        let Ok(ordinal) = device.parse::<usize>() else {
            return CpuBinding::near(
                &label,
                Err("a GPU UUID or MIG name: its bus id needs NVML".to_owned()),
                allowed,
            );
        };
        let ids = placement::nvidia_bus_ids_in(proc_root);
        return match ids.get(ordinal) {
            Some(id) => CpuBinding::near(
                &format!("GPU {id} (CUDA device {ordinal})"),
                placement::pci_locality_in(sysfs_root, id),
                allowed,
            ),
            None => CpuBinding::near(
                &label,
                Err(format!(
                    "{} lists {} GPUs",
                    proc_root.join("driver/nvidia/gpus").display(),
                    ids.len()
                )),
                allowed,
            ),
        };
    }
    let fast = target.fabric_kind.is_some_and(FabricKind::is_fast);
    let nic = match target.nic {
        Some(nic) => Some(nic.to_owned()),
        None if fast => placement::sole_rdma_device_in(sysfs_root),
        None => None,
    };
    match nic {
        Some(nic) => CpuBinding::near(
            &format!("NIC {nic}"),
            placement::nic_locality_in(sysfs_root, &nic),
            allowed,
        ),
        None => {
            let mut b = CpuBinding::none(
                "no binding: locality unknown (no GPU chosen for this rank, and no fabric NIC: \
                 set [fabric] nic)",
            );
            b.allowed_cpus = placement::format_cpulist(allowed);
            b
        }
    }
}

/// Whether `path` (absolute) is a directory inside the directory image `root`.
fn target_in_image(root: &Path, path: &Path) -> bool {
    let relative = path.strip_prefix("/").unwrap_or(path);
    root.join(relative).is_dir()
}

fn resolve_runtime(ctx: &RankContext<'_>, notes: &mut Notes) -> Result<Runtime, LaunchError> {
    let req = ctx.req;
    let section = &ctx.site.config.runtime;
    if ctx.mode == Mode::Native {
        if let Some(kind) = req.runtime.filter(|k| *k != RuntimeKind::None) {
            return Err(LaunchError::Refused {
                message: format!(
                    "--mode native runs without a container: drop --runtime {kind} (or choose \
                     --mode hybrid|bind|inside)"
                ),
            });
        }
        return Ok(Runtime::None);
    }
    let (kind, from) = match (req.runtime, section.kind) {
        (Some(kind), _) => (kind, "--runtime"),
        (None, Some(kind)) => (kind, "[runtime] kind"),
        (None, None) => (RuntimeKind::Singularity, "the default"),
    };
    let Some(default_program) = kind.default_program() else {
        return Err(LaunchError::Refused {
            message: format!(
                "--mode {} needs a container runtime ({from} says none): choose \
                 singularity, apptainer or charliecloud, or --mode native",
                ctx.mode
            ),
        });
    };
    // The site's program and version only apply to the site's runtime.
    let same_kind = section.kind.unwrap_or(RuntimeKind::Singularity) == kind;
    let program = section
        .program
        .clone()
        .filter(|_| same_kind)
        .unwrap_or_else(|| default_program.to_owned());
    let found = ctx.host.which(&program);
    if found.is_none() {
        let hint = match kind {
            RuntimeKind::Charliecloud => "install Charliecloud (Debian: charliecloud-runtime)",
            _ => "load the site's module for it, or set [runtime] program in the site file",
        };
        if ctx.req.dry_run {
            notes.warnings.push(format!(
                "runtime {program:?} not found on PATH: printing the command anyway ({hint})"
            ));
        } else {
            return Err(LaunchError::ProgramNotFound {
                what: "runtime",
                program,
                hint: hint.to_owned(),
            });
        }
    }
    if kind == RuntimeKind::Charliecloud {
        return Ok(Runtime::Charliecloud {
            program: program.into(),
        });
    }
    // The version: given, configured, asked, or (dry run, no program) assumed.
    let given = req
        .runtime_version
        .or_else(|| section.version.filter(|_| same_kind));
    let version = match (given, &found) {
        (Some(version), _) => version,
        (None, Some(path)) => probe_version(path)?,
        (None, None) => {
            let assumed = if kind == RuntimeKind::Apptainer {
                Version::new(1, 0, 0)
            } else {
                Version::new(3, 6, 0)
            };
            notes.warnings.push(format!(
                "{kind} version unknown: assuming {assumed}, the oldest of its dialect (set \
                 [runtime] version in the site file)"
            ));
            assumed
        }
    };
    if kind == RuntimeKind::Apptainer {
        if version.major < 1 {
            return Err(LaunchError::Refused {
                message: format!("apptainer {version} is not supported: hybrun needs 1.x or later"),
            });
        }
        return Ok(Runtime::Apptainer {
            program: program.into(),
            version,
        });
    }
    if version.major < 3 {
        return Err(LaunchError::Refused {
            message: format!(
                "singularity {version} is not supported: hybrun needs 3.0 or later (2.x has \
                 another command line)"
            ),
        });
    }
    Ok(Runtime::Singularity {
        program: program.into(),
        version,
        dialect: Dialect::of(version),
    })
}

/// `PROGRAM --version` (e.g. "singularity version 3.6.4").
fn probe_version(program: &Path) -> Result<Version, LaunchError> {
    let output = std::process::Command::new(program)
        .arg("--version")
        .output()
        .map_err(|source| LaunchError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    Version::parse(&text).ok_or_else(|| LaunchError::Refused {
        message: format!(
            "cannot tell the version of {} from {:?}: set [runtime] version in the site file",
            program.display(),
            text.trim()
        ),
    })
}

fn check_image(
    path: &Path,
    runtime: &Runtime,
    site: &Site,
    notes: &mut Notes,
) -> Result<CheckedImage, LaunchError> {
    let image = policy::open_image(path)?;
    if matches!(runtime, Runtime::Charliecloud { .. })
        && matches!(image.kind, ImageKind::Sif | ImageKind::File)
    {
        return Err(LaunchError::Refused {
            message: format!(
                "image {}: ch-run runs directory and SquashFS images, not {}; use the directory \
                 or .sqfs form of the image",
                path.display(),
                if image.kind == ImageKind::Sif {
                    "SIF files"
                } else {
                    "this file"
                }
            ),
        });
    }
    if runtime.has_image_policy() {
        match crate::store::Policy::from_site(site, None) {
            Ok(store) => {
                let allowed = AllowedDir {
                    dir: store.dir,
                    from: store.dir_from,
                };
                policy::check_allowed(&image, &allowed)?;
                notes.notes.push(format!(
                    "image policy: {} is in the allowed directory {} (from {})",
                    image.canonical.display(),
                    allowed.dir.display(),
                    allowed.from
                ));
            }
            Err(crate::store::StoreError::NoDirectory { .. }) => notes.notes.push(
                "image policy: no allowed directory configured ([images] dir, \
                 $SINGULARITY_ALLOWED_DIR): not checked"
                    .into(),
            ),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(image)
}

/// `SRC[:DST[:ro|rw]]`.
fn parse_bind(spec: &OsString) -> Result<Bind, LaunchError> {
    let bad = || LaunchError::BindSpec {
        spec: spec.to_string_lossy().into_owned(),
    };
    let text = spec.to_str().ok_or_else(bad)?;
    if text.contains(',') {
        // The runtimes would read a comma as a list of binds.
        let path = text.split(':').find(|p| p.contains(',')).unwrap_or(text);
        return Err(LaunchError::BindSeparator {
            path: path.to_owned(),
            which: "path",
            separator: ',',
        });
    }
    let parts: Vec<&str> = text.split(':').collect();
    let (src, dst, ro) = match parts.as_slice() {
        [src] => (*src, *src, false),
        [src, dst] => (*src, *dst, false),
        [src, dst, "ro"] => (*src, *dst, true),
        [src, dst, "rw"] => (*src, *dst, false),
        _ => return Err(bad()),
    };
    if src.is_empty() || dst.is_empty() || !src.starts_with('/') || !dst.starts_with('/') {
        return Err(bad());
    }
    Ok(Bind {
        src: src.into(),
        dst: dst.into(),
        ro,
        why: "user".into(),
    })
}

/// Bind mode: the bundle, its binds and its variables for `runtime`.
#[allow(clippy::type_complexity)]
fn bind_mode(
    ctx: &RankContext<'_>,
    runtime: &Runtime,
    image: Option<&CheckedImage>,
    contents: Option<&LazyImage<'_>>,
    notes: &mut Notes,
) -> Result<(Bundle, Vec<Bind>, Vec<(String, OsString)>), LaunchError> {
    let site = ctx.site;
    let (pname, p) = ctx.profile.as_ref().ok_or_else(|| LaunchError::Refused {
        message: "--mode bind binds the host's MPI: pass --mpi-profile NAME (a [mpi.NAME] \
                  profile with `library`)"
            .into(),
    })?;
    let library = p.library.as_ref().ok_or_else(|| {
        site_value(
            site,
            &format!("[mpi.{pname}] library"),
            "bind mode needs the host MPI library (e.g. /usr/lib/x86_64-linux-gnu/libmpich.so.12)"
                .into(),
        )
    })?;
    let mut roots = vec![library.to_path_buf()];
    roots.extend(p.libs.iter().map(|l| l.to_path_buf()));
    roots.extend(site.config.fabric.libs.iter().map(PathBuf::from));
    for root in &roots {
        if !root.is_absolute() {
            return Err(site_value(
                site,
                &format!("[mpi.{pname}] / [fabric] libs"),
                format!("{} is not an absolute path", root.display()),
            ));
        }
    }
    let request = |d: &PluginDir, data: bool| PluginRequest {
        host: d.src.clone().into(),
        env: d.env.clone(),
        name: d.name.clone(),
        data,
    };
    // The MPI's own plugin and data directories: the profile's, else (Open MPI)
    // its layout found next to the library. Open MPI finds its components,
    // help and parameter files through its install directories, not the library
    // path: without them the host's libmpi.so.40 would load the image's
    // components (or none). See bind.rs.
    let mut plugins: Vec<PluginRequest> = Vec::new();
    let layout = (p.abi == MpiAbi::Openmpi && (p.plugin_dirs.is_none() || p.data_dirs.is_none()))
        .then(|| bind::openmpi_layout(library));
    match (&p.plugin_dirs, &layout) {
        (Some(dirs), _) => plugins.extend(dirs.iter().map(|d| request(d, false))),
        (None, Some(layout)) => {
            if !layout
                .plugins
                .iter()
                .any(|r| r.env.as_deref() == Some("OMPI_MCA_mca_base_component_path"))
            {
                // Truly unsupported: a host Open MPI whose components hybrun
                // cannot find would run the image's components.
                return Err(site_value(
                    site,
                    &format!("[mpi.{pname}] plugin_dirs"),
                    format!(
                        "bind mode with Open MPI needs the host's MCA component directory, and \
                         none was found next to {library} (looked for {}): set plugin_dirs = \
                         [{{ src = \"<pkglibdir>\", env = \"OMPI_MCA_mca_base_component_path\" \
                         }}] (ompi_info --all --parsable | grep component_path), or \
                         plugin_dirs = [] for an Open MPI built with --disable-dlopen",
                        layout.looked.join("; ")
                    ),
                ));
            }
            plugins.extend(layout.plugins.iter().cloned());
        }
        (None, None) => {}
    }
    match (&p.data_dirs, &layout) {
        (Some(dirs), _) => plugins.extend(dirs.iter().map(|d| request(d, true))),
        (None, Some(layout)) => plugins.extend(layout.data.iter().cloned()),
        (None, None) => {}
    }
    plugins.extend(
        site.config
            .fabric
            .plugin_dirs
            .iter()
            .map(|d| request(d, false)),
    );
    let cache = ctx.host.cache_dir();
    let bundle = bind::resolve(&roots, &plugins, cache.as_deref())?;
    let bind_dir = ctx
        .req
        .bind_dir
        .clone()
        .or_else(|| site.config.runtime.bind_dir.clone().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(bind::DEFAULT_BIND_DIR));
    notes.notes.push(format!(
        "bind mode: {} host libraries from profile {pname} at {} (glibc family left to the \
         container: {})",
        bundle.libs.len(),
        bind_dir.display(),
        bundle.excluded.join(", ")
    ));
    for dir in &bundle.dirs {
        notes.notes.push(format!(
            "bind mode: {} at {}{}",
            dir.host.display(),
            bind_dir.join(&dir.name).display(),
            dir.env
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    }
    if !bundle.unloadable.is_empty() {
        notes.notes.push(format!(
            "bind mode: {} plugins need libraries the host cannot resolve (they cannot load \
             on the host either), bound without their closure: {}",
            bundle.unloadable.len(),
            bundle.unloadable.join(", ")
        ));
    }
    let mut binds = Vec::new();
    match runtime {
        Runtime::Charliecloud { .. } => {
            if let Some(img) = image {
                if img.kind == ImageKind::Directory && !target_in_image(&img.canonical, &bind_dir) {
                    return Err(LaunchError::Refused {
                        message: format!(
                            "image {} has no directory {}: ch-run cannot create bind targets \
                             in a read-only image; create it in the image (mkdir -p), or set \
                             [runtime] bind_dir / --bind-dir to an empty directory the image \
                             has",
                            img.given.display(),
                            bind_dir.display()
                        ),
                    });
                }
            }
            let root = cache
                .clone()
                .ok_or_else(|| LaunchError::Refused {
                    message: "bind mode with ch-run needs a cache directory for the library \
                              bundle: set HOME or XDG_CACHE_HOME"
                        .into(),
                })?
                .join("bundles");
            let dir = if ctx.req.dry_run {
                bundle.dir_under(&root)
            } else {
                let (dir, copied) = bundle.materialize(&root)?;
                if copied {
                    notes.warnings.push(format!(
                        "bind mode: some host libraries were copied into {} (no hard link \
                         possible): the container maps copies, not the host's files",
                        dir.display()
                    ));
                }
                dir
            };
            binds.push(Bind {
                src: dir,
                dst: bind_dir.clone(),
                ro: true,
                why: "host MPI".into(),
            });
        }
        _ => {
            for (src, dst) in bundle.file_binds(&bind_dir) {
                binds.push(Bind {
                    src,
                    dst,
                    ro: true,
                    why: "host MPI".into(),
                });
            }
        }
    }
    let mut vars: Vec<(String, OsString)> = vec![(
        "LD_LIBRARY_PATH".into(),
        bind_library_path(runtime, contents, cache.as_deref(), &bind_dir, notes),
    )];
    for (name, path) in bundle.plugin_env(&bind_dir) {
        vars.push((name, path.into_os_string()));
    }
    Ok((bundle, binds, vars))
}

/// Bind mode's `LD_LIBRARY_PATH`: the host MPI directory first. Singularity and
/// Apptainer inject the value after the image's environment scripts, so it
/// would replace what the image sets for itself (CUDA images reach their compat
/// and framework libraries that way): the image's own entries follow, as
/// [`crate::image::env`] reads them. ch-run does not apply the image's
/// environment file unless asked (`--set-env` without a value), so there the
/// directory stands alone.
fn bind_library_path(
    runtime: &Runtime,
    contents: Option<&LazyImage<'_>>,
    cache_dir: Option<&Path>,
    bind_dir: &Path,
    notes: &mut Notes,
) -> OsString {
    let mut value = bind_dir.as_os_str().to_owned();
    let (Runtime::Singularity { .. } | Runtime::Apptainer { .. }, Some(contents)) =
        (runtime, contents)
    else {
        return value;
    };
    const KIND: &str = "image-env";
    let key = cache_dir
        .and_then(|_| contents.key(KIND))
        .map(|k| k.finish());
    // Cached whatever the answer (an unreadable script stays unreadable).
    let declared = cache::through(cache_dir, KIND, key.as_deref(), || {
        Ok::<_, std::convert::Infallible>(
            contents
                .get()
                .as_ref()
                .map_err(|e| format!("hybrun cannot read the image ({e})"))
                .and_then(crate::image::env::declared_library_path),
        )
    })
    .unwrap_or_else(|never| match never {});
    match declared {
        Ok(Some(own)) => {
            value.push(":");
            value.push(&own.value);
            notes.notes.push(format!(
                "bind mode: LD_LIBRARY_PATH = {} then the image's own {} (set at {})",
                bind_dir.display(),
                own.value,
                own.from.join(", ")
            ));
        }
        Ok(None) => {}
        Err(e) => notes.warnings.push(format!(
            "bind mode: the container's LD_LIBRARY_PATH will be {dir} alone, without entries \
             the image may set for itself: {e}; if the application needs them, pass \
             --env LD_LIBRARY_PATH={dir}:<the image's entries>",
            dir = bind_dir.display()
        )),
    }
    value
}

/// ch-run's join for this rank: how many ranks share its node, and a tag unique
/// per node and job (None when alone on the node, or outside a launcher).
pub fn join_from_env(host: &Host) -> Option<Join> {
    let num = |name: &str| host.var(name).and_then(|v| v.trim().parse::<u32>().ok());
    let count = match (host.var("SLURM_STEP_TASKS_PER_NODE"), num("SLURM_NODEID")) {
        (Some(list), Some(node)) => tasks_on_node(&list, node),
        _ => num("MPI_LOCALNRANKS").or_else(|| num("OMPI_COMM_WORLD_LOCAL_SIZE")),
    }?;
    if count <= 1 {
        return None;
    }
    let tag = host.var("SLURM_JOB_ID").map(|job| {
        let step = host.var("SLURM_STEP_ID").unwrap_or_else(|| "0".into());
        let node = host
            .var("SLURMD_NODENAME")
            .or_else(|| host.var("SLURM_NODEID"))
            .unwrap_or_else(|| "node".into());
        // Only characters that are safe in a POSIX semaphore name.
        let clean = |s: &str| -> String {
            s.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '_'
                    }
                })
                .collect()
        };
        format!("hybrun.{}.{}.{}", clean(&job), clean(&step), clean(&node))
    });
    Some(Join { count, tag })
}

/// Slurm's compressed task counts (`2(x3),1`), for node index `node`.
pub fn tasks_on_node(list: &str, node: u32) -> Option<u32> {
    let mut index = 0u32;
    for part in list.split(',') {
        let (count, repeat) = match part.split_once("(x") {
            Some((count, rest)) => (count, rest.trim_end_matches(')')),
            None => (part, "1"),
        };
        let count: u32 = count.trim().parse().ok()?;
        let repeat: u32 = repeat.trim().parse().ok()?;
        if node < index + repeat {
            return Some(count);
        }
        index += repeat;
    }
    None
}

/// The `hybrun exec` arguments that make a rank plan itself as `run` planned it.
fn exec_args(
    req: &Request,
    site: &Site,
    mode: Mode,
    rank: &RankPlan,
    profile: &Profile,
    mpi: Option<MpiPlugin>,
) -> Vec<OsString> {
    let mut args: Vec<OsString> = vec!["exec".into()];
    let mut pair = |flag: &str, value: OsString| {
        args.push(flag.into());
        args.push(value);
    };
    if let Some(path) = &site.path {
        // Absolute, so a rank started in another directory reads the same file.
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.clone());
        pair("--site", path.into_os_string());
    }
    pair("--mode", mode.name().into());
    pair("--runtime", rank.runtime.kind().name().into());
    match &rank.runtime {
        // The version is passed so that no rank has to ask the runtime.
        Runtime::Singularity { version, .. } | Runtime::Apptainer { version, .. } => {
            pair("--runtime-version", version.to_string().into());
        }
        _ => {}
    }
    if let Some((name, _)) = profile {
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
    if let Some(image) = &rank.image {
        args.push(image.clone().into_os_string());
    }
    args.push("--".into());
    args.extend(req.command.iter().cloned());
    args
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slurm_task_lists() {
        assert_eq!(tasks_on_node("2(x3),1", 0), Some(2));
        assert_eq!(tasks_on_node("2(x3),1", 2), Some(2));
        assert_eq!(tasks_on_node("2(x3),1", 3), Some(1));
        assert_eq!(tasks_on_node("2(x3),1", 4), None);
        assert_eq!(tasks_on_node("4", 0), Some(4));
    }

    #[test]
    fn join_per_node_and_job() {
        let host = |pairs: &[(&str, &str)]| Host {
            vars: pairs
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect(),
        };
        let h = host(&[
            ("SLURM_STEP_TASKS_PER_NODE", "2(x2)"),
            ("SLURM_NODEID", "1"),
            ("SLURM_JOB_ID", "42"),
            ("SLURM_STEP_ID", "0"),
            ("SLURMD_NODENAME", "node2"),
        ]);
        assert_eq!(
            join_from_env(&h),
            Some(Join {
                count: 2,
                tag: Some("hybrun.42.0.node2".into())
            })
        );
        let h = host(&[("MPI_LOCALNRANKS", "2")]);
        assert_eq!(
            join_from_env(&h),
            Some(Join {
                count: 2,
                tag: None
            })
        );
        let h = host(&[
            ("SLURM_STEP_TASKS_PER_NODE", "1(x2)"),
            ("SLURM_NODEID", "0"),
        ]);
        assert_eq!(join_from_env(&h), None);
    }

    #[test]
    fn one_gpu_per_rank() {
        let host = Host {
            vars: [("SLURM_LOCALID", "3"), ("CUDA_VISIBLE_DEVICES", "0,1,2,3")]
                .into_iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect(),
        };
        assert_eq!(gpu_for_rank(&host).map(|g| g.0), Some("3".to_owned()));
        let host = Host {
            vars: [("CUDA_VISIBLE_DEVICES", "GPU-a,GPU-b")]
                .into_iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v)))
                .collect(),
        };
        // No local rank known: leave the devices alone.
        assert_eq!(gpu_for_rank(&host), None);
    }

    #[test]
    fn bind_specs() {
        let b = parse_bind(&"/a:/b:ro".into()).expect("ok");
        assert_eq!((b.src, b.dst, b.ro), ("/a".into(), "/b".into(), true));
        let b = parse_bind(&"/a".into()).expect("ok");
        assert_eq!(b.dst, PathBuf::from("/a"));
        for bad in ["/a:/b:/c", "/a:/b:x", "a:/b", "/a:", "/a:b:/c:ro"] {
            assert!(parse_bind(&bad.into()).is_err(), "{bad}");
        }
        let err = parse_bind(&"/a,b:/c".into()).expect_err("comma");
        assert!(err.to_string().contains("','"), "{err}");
    }
}
