//! `hybrun run` (a whole job) and `hybrun exec` (one rank): the command-line side
//! of [`hybrun::launch`].

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;

use clap::Args;
use hybrun::host::Host;
use hybrun::launch::plan::Rendered;
use hybrun::launch::planner::{self, Planned, Request};
use hybrun::launch::record::{self, Record};
use hybrun::launch::{LaunchError, plan::Geometry};
use hybrun::site::launcher::PerRankChoice;
use hybrun_core::vocab::{LauncherKind, Mode, ModeChoice, MpiPlugin, RuntimeKind, Version};

/// What every command that starts a container takes (`run`, `exec`, `shell`):
/// the site, the runtime, binds, environment and runtime flags.
#[derive(Debug, Args)]
pub struct ContainerArgs {
    /// The site file (default: $HYBRUN_SITE, else /etc/hybrun/site.toml if present).
    #[arg(long, value_name = "FILE")]
    pub site: Option<PathBuf>,

    /// The container runtime (default: the site's [runtime] kind, else singularity).
    #[arg(long, value_enum)]
    pub runtime: Option<RuntimeKind>,

    /// The runtime's version, e.g. 3.6.4 (default: the site's, else asked from it).
    #[arg(long, value_name = "VERSION", value_parser = parse_version)]
    pub runtime_version: Option<Version>,

    /// Bind a host path: SRC[:DST[:ro|rw]] (repeatable; paths with ':' or ',' are
    /// refused: the runtimes split on them).
    #[arg(short = 'B', long = "bind", value_name = "SPEC")]
    pub binds: Vec<OsString>,

    /// Set a variable in the ranks (`shell`: in the shell): NAME=VALUE (repeatable).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<OsString>,

    /// Remove a variable from the ranks (`shell`: from the shell) (repeatable).
    #[arg(long = "unset", value_name = "NAME")]
    pub unset: Vec<String>,

    /// NVIDIA GPUs in the container (Singularity/Apptainer --nv), also without
    /// --gpus-per-node.
    #[arg(long)]
    pub nv: bool,

    /// A flag for the container runtime that hybrun does not model, before the
    /// image (repeatable, in order; e.g. --runtime-arg=--contain, or
    /// --runtime-arg=--overlay --runtime-arg=FILE). Refused when the runtime's
    /// version lacks it, and for the flags hybrun sets itself (binds, env,
    /// --nv, --pwd/--cd, --join*: use hybrun's own options).
    #[arg(long = "runtime-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub runtime_args: Vec<OsString>,
}

/// Options of both `run` and `exec`.
#[derive(Debug, Args)]
pub struct CommonArgs {
    #[command(flatten)]
    pub container: ContainerArgs,

    /// native: no container; hybrid: the container's MPI, ranks started outside;
    /// bind: the host's MPI bound into the container; inside: mpiexec in the
    /// container, one node; auto: bind where the image check says it can run and
    /// the host's MPI is the one that knows the fabric (the site names a fast
    /// fabric, or the image's MPI has none), else hybrid. Default: auto with an
    /// image, native without.
    #[arg(long, value_enum)]
    pub mode: Option<ModeChoice>,

    /// The MPI profile ([mpi.NAME] in the site file): flavour, PMI, host library.
    #[arg(long, value_name = "NAME")]
    pub mpi_profile: Option<String>,

    /// srun's --mpi plugin (default: from the MPI flavour: pmi2 for MPICH, pmix for
    /// Open MPI).
    #[arg(long, value_enum)]
    pub mpi: Option<MpiPlugin>,

    /// Bind mode: the container directory for the host MPI libraries (default:
    /// the site's [runtime] bind_dir, else /opt/hybrun/host-mpi/lib).
    #[arg(long, value_name = "DIR")]
    pub bind_dir: Option<PathBuf>,

    /// Launch despite a judgement-call refusal (a --mpi plugin that does not fit
    /// the MPI flavour, a launcher of the other MPI family, GPUs with ch-run).
    /// Never overrides the image path policy.
    #[arg(long)]
    pub force: bool,

    /// Switch the fabric guard off: with a fast fabric in the site file ([fabric]
    /// kind psm2|opx|verbs|ucx), hybrun sets variables that make the MPI fail
    /// rather than fall back to TCP (OMPI_MCA_btl=^tcp, UCX_TLS=^tcp, FI_PROVIDER,
    /// ...); this flag leaves the MPI free to use TCP (with a warning).
    #[arg(long)]
    pub allow_tcp: bool,

    /// `hybrun exec` leaves each rank's CPU affinity as Slurm or mpiexec set it
    /// (by default it narrows it to the CPUs near the rank's GPU or the fabric
    /// NIC; site switch: [gpu] bind_cpus).
    #[arg(long)]
    pub no_cpu_bind: bool,

    /// CPUs per rank (srun -c): the rank's OMP_NUM_THREADS follows it unless
    /// set with --env (or in the environment hybrun runs in).
    #[arg(short = 'c', long, value_name = "N")]
    pub cpus_per_task: Option<u32>,

    /// The ranks' working directory (an existing absolute path): the launcher
    /// starts there, and a container's rank starts there too (Singularity and
    /// Apptainer --pwd, ch-run --cd; ch-run otherwise starts in /).
    #[arg(long, value_name = "DIR")]
    pub pwd: Option<PathBuf>,

    /// The image (SIF file, SquashFS or directory); none for --mode native.
    #[arg(value_name = "IMAGE")]
    pub image: Option<PathBuf>,

    /// The command each rank runs, after `--`.
    #[arg(last = true, value_name = "CMD", required = true)]
    pub command: Vec<OsString>,
}

/// Arguments of `hybrun run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Nodes (srun -N).
    #[arg(short = 'N', long)]
    pub nodes: Option<u32>,

    /// Ranks (srun -n).
    #[arg(short = 'n', long)]
    pub ntasks: Option<u32>,

    /// Ranks per node.
    #[arg(long)]
    pub ntasks_per_node: Option<u32>,

    /// GPUs per node (implies --nv with Singularity/Apptainer).
    #[arg(long)]
    pub gpus_per_node: Option<u32>,

    /// Time limit (srun -t).
    #[arg(short = 't', long)]
    pub time: Option<String>,

    /// Partition (srun -p).
    #[arg(short = 'p', long)]
    pub partition: Option<String>,

    /// Account (srun -A).
    #[arg(short = 'A', long)]
    pub account: Option<String>,

    /// GPUs per rank (srun --gpus-per-task; not with --gpus-per-node).
    #[arg(long, value_name = "N")]
    pub gpus_per_task: Option<u32>,

    /// srun --gpu-bind, passed through (e.g. closest, none, map_gpu:0,1).
    #[arg(long, value_name = "SPEC")]
    pub gpu_bind: Option<String>,

    /// Nodes not shared with other jobs (srun --exclusive).
    #[arg(long)]
    pub exclusive: bool,

    /// Memory per node (srun --mem, e.g. 64G).
    #[arg(long, value_name = "SIZE")]
    pub mem: Option<String>,

    /// Node features (srun -C).
    #[arg(short = 'C', long, value_name = "FEATURES")]
    pub constraint: Option<String>,

    /// Quality of service (srun -q).
    #[arg(short = 'q', long, value_name = "QOS")]
    pub qos: Option<String>,

    /// Job name (srun -J).
    #[arg(short = 'J', long, value_name = "NAME")]
    pub job_name: Option<String>,

    /// An srun option hybrun does not model, passed after its own (repeatable;
    /// write it with '=': --srun-arg=--cpu-freq=high). --mpi, --export and -K
    /// are hybrun's and refused.
    #[arg(long = "srun-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub srun_args: Vec<String>,

    /// What starts the ranks (default: the site's [launcher] kind, else srun;
    /// where srun is not on PATH, the MPI profile's mpiexec: mpiexec-hydra for
    /// MPICH, mpiexec-openmpi for Open MPI).
    #[arg(long, value_enum)]
    pub launcher: Option<LauncherKind>,

    /// Open MPI's mpiexec: allow more ranks than cores.
    #[arg(long)]
    pub oversubscribe: bool,

    /// What each rank runs: the runtime directly, or `hybrun exec` (needed for
    /// ch-run's per-node join and PMIx glue). Default: auto.
    #[arg(long, value_enum)]
    pub per_rank: Option<PerRankChoice>,

    /// Print the command (POSIX shell quoting) and the decisions; launch nothing.
    /// Works without srun or the runtime installed (with a warning).
    #[arg(long)]
    pub dry_run: bool,

    /// Print the plan as JSON; launch nothing.
    #[arg(long)]
    pub json: bool,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// Arguments of `hybrun exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Print the runtime command instead of running it.
    #[arg(long)]
    pub dry_run: bool,

    /// Print the rank's plan as JSON instead of running it.
    #[arg(long)]
    pub json: bool,

    /// Set by `hybrun run` for its per-rank wrapper: the image was checked before
    /// the job started, so the ranks do not check it again.
    #[arg(long, hide = true)]
    pub skip_gate: bool,

    /// Set by `hybrun run` for its per-rank wrapper: take the rank's plan from
    /// HYBRUN_RANK_PLAN (resolved once for the job) and add only this rank's
    /// own facts; without it, the rank plans itself from these arguments.
    #[arg(long, hide = true)]
    pub from_run: bool,

    #[command(flatten)]
    pub common: CommonArgs,
}

/// Arguments of `hybrun shell`.
#[derive(Debug, Args)]
pub struct ShellArgs {
    #[command(flatten)]
    pub container: ContainerArgs,

    /// The shell's working directory (an existing absolute path).
    #[arg(long, value_name = "DIR")]
    pub pwd: Option<PathBuf>,

    /// Print the command instead of running it.
    #[arg(long)]
    pub dry_run: bool,

    /// The image (SIF file, SquashFS or directory).
    #[arg(value_name = "IMAGE")]
    pub image: PathBuf,
}

/// `--runtime-version`: a version like 3.6.4.
fn parse_version(text: &str) -> Result<Version, String> {
    Version::parse(text).ok_or_else(|| format!("{text:?} is not a version like 3.6.4"))
}

fn request(common: &CommonArgs, geometry: Geometry, dry_run: bool) -> Request {
    Request {
        site: common.container.site.clone(),
        mode: common.mode.and_then(ModeChoice::mode),
        runtime: common.container.runtime,
        runtime_version: common.container.runtime_version,
        launcher: None,
        mpi_profile: common.mpi_profile.clone(),
        mpi: common.mpi,
        geometry,
        binds: common.container.binds.clone(),
        env: common.container.env.clone(),
        unset: common.container.unset.clone(),
        nv: common.container.nv,
        per_rank: None,
        bind_dir: common.bind_dir.clone(),
        oversubscribe: false,
        force: common.force,
        allow_tcp: common.allow_tcp,
        skip_gate: false,
        no_cpu_bind: common.no_cpu_bind,
        pwd: common.pwd.clone(),
        runtime_args: common.container.runtime_args.clone(),
        interactive: false,
        dry_run,
        image: common.image.clone(),
        command: common.command.clone(),
    }
}

/// Comment lines: one line each, whatever the text holds (a line break inside a
/// comment would turn the rest into a command when the output is pasted).
fn comment(out: &mut impl Write, text: &str) -> std::io::Result<()> {
    writeln!(out, "# {}", text.replace('\r', "\\r").replace('\n', "\\n"))
}

fn warn(planned: &Planned) {
    for warning in &planned.warnings {
        eprintln!("hybrun: warning: {warning}");
    }
}

fn json_document(planned: &Planned, command: &Rendered) -> serde_json::Value {
    let here = planned
        .rank_here
        .as_ref()
        .and_then(|rank| rank.render().ok());
    serde_json::json!({
        "plan": planned.plan,
        "command": command,
        "shell": command.shell_line(),
        "per_rank_here": here,
        "warnings": planned.warnings,
        "site": planned.site.path,
        "mpi_profile": planned.profile,
        "compatibility": planned.gate,
        "fabric_guard": planned.fabric_guard,
        "cpu_binding": planned.cpu_binding,
    })
}

fn print_dry_run(planned: &Planned, command: &Rendered, what: &str) -> anyhow::Result<()> {
    let mut comments = planned.plan.notes.clone();
    if let hybrun::launch::plan::PerRank::Wrapper { why, .. } = &planned.plan.per_rank {
        for reason in why {
            comments.push(format!("per rank: hybrun exec: {reason}"));
        }
        if let Some(here) = planned.rank_here.as_ref().and_then(|r| r.render().ok()) {
            comments.push(format!(
                "per rank, as resolved on this host: {}",
                here.shell_line()
            ));
        }
    }
    print_commented(what, &comments, command)
}

/// A dry run's output: what was decided, as comment lines, then the command.
fn print_commented(what: &str, comments: &[String], command: &Rendered) -> anyhow::Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    comment(
        &mut out,
        &format!("hybrun {what} --dry-run: nothing launched"),
    )?;
    for text in comments {
        comment(&mut out, text)?;
    }
    out.write_all(&command.shell_line_bytes())?;
    out.write_all(b"\n")?;
    out.flush()?;
    Ok(())
}

/// `hybrun run`.
pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let geometry = Geometry {
        nodes: args.nodes,
        ntasks: args.ntasks,
        ntasks_per_node: args.ntasks_per_node,
        gpus_per_node: args.gpus_per_node,
        time: args.time.clone(),
        partition: args.partition.clone(),
        account: args.account.clone(),
        cpus_per_task: args.common.cpus_per_task,
        exclusive: args.exclusive,
        mem: args.mem.clone(),
        constraint: args.constraint.clone(),
        qos: args.qos.clone(),
        job_name: args.job_name.clone(),
        gpus_per_task: args.gpus_per_task,
        gpu_bind: args.gpu_bind.clone(),
        srun_args: args.srun_args.clone(),
    };
    let dry_run = args.dry_run || args.json;
    let mut req = request(&args.common, geometry, dry_run);
    req.launcher = args.launcher;
    req.oversubscribe = args.oversubscribe;
    req.per_rank = args.per_rank;
    let host = Host::current();
    let planned = planner::plan_run(&req, &host)?;
    warn(&planned);
    let command = planned.plan.render()?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json_document(&planned, &command))?
        );
        return Ok(());
    }
    if args.dry_run {
        return print_dry_run(&planned, &command, "run");
    }
    launch(&planned, &command, &host)
}

/// Records, runs and waits; exits with the job's status.
fn launch(planned: &Planned, command: &Rendered, host: &Host) -> anyhow::Result<()> {
    // No launcher: this process starts the only rank, so it holds the mount.
    let _users = match planned.plan.per_rank {
        hybrun::launch::plan::PerRank::Direct => enter_mount(&planned.plan.rank)?,
        hybrun::launch::plan::PerRank::Wrapper { .. } => None,
    };
    let mut record = Record::new(planned, command, host)?;
    let dir = record::record_dir(planned, host)?;
    let name = record.file_name();
    let path = record.write(&dir, &name)?;
    eprintln!("hybrun: launch recorded in {}", path.display());
    let mut child = command
        .command()?
        .spawn()
        .map_err(|source| LaunchError::Spawn {
            program: command
                .argv
                .first()
                .map(|p| p.to_string_lossy().into_owned())
                .unwrap_or_default(),
            source,
        })?;
    // Like system(3): while the job runs, Ctrl-C and Ctrl-\ are the job's (srun
    // handles them itself), so hybrun survives to record how it ended. Set after
    // the spawn, since ignored signals would be inherited across exec.
    let previous = ignore_interactive_signals();
    let status = child.wait();
    restore_signals(previous);
    let status = status.map_err(|source| LaunchError::Spawn {
        program: "the launched job (wait)".into(),
        source,
    })?;
    use std::os::unix::process::ExitStatusExt;
    if let Some(launch) = planned.plan.per_rank.launch() {
        let removed = hybrun::launch::runtime::charliecloud::remove_join_leftovers(launch);
        if !removed.is_empty() {
            eprintln!(
                "hybrun: a ch-run join of this launch failed or was cut short: removed what it \
                 left in /dev/shm ({})",
                removed.join(", ")
            );
        }
    }
    record.finished = Some(hybrun_core::sys::now_utc());
    record.exit_code = status.code();
    record.signal = status.signal();
    if let Err(e) = record.write(&dir, &name) {
        eprintln!("hybrun: warning: could not add the exit status to the record: {e}");
    }
    match (status.code(), status.signal()) {
        (Some(0), _) => Ok(()),
        (Some(code), _) => std::process::exit(code),
        (None, Some(signal)) => std::process::exit(128 + signal),
        (None, None) => std::process::exit(1),
    }
}

type Handlers = [libc::sighandler_t; 2];

fn ignore_interactive_signals() -> Handlers {
    // SAFETY: signal(2) with SIG_IGN installs no Rust code as a handler.
    unsafe {
        [
            libc::signal(libc::SIGINT, libc::SIG_IGN),
            libc::signal(libc::SIGQUIT, libc::SIG_IGN),
        ]
    }
}

fn restore_signals(previous: Handlers) {
    // SAFETY: puts back the dispositions signal(2) returned above.
    unsafe {
        libc::signal(libc::SIGINT, previous[0]);
        libc::signal(libc::SIGQUIT, previous[1]);
    }
}

/// Arguments of the internal `hybrun hold-mount`.
#[derive(clap::Args)]
pub struct HoldMountArgs {
    /// Where the SquashFS starts in the image.
    #[arg(long)]
    pub offset: u64,
    /// The node's and job's directory (locks, holder file, mount point).
    #[arg(long)]
    pub dir: PathBuf,
    pub image: PathBuf,
}

/// `hybrun hold-mount`.
pub fn hold_mount(args: &HoldMountArgs) -> anyhow::Result<()> {
    hybrun::launch::image_mount::hold(&args.image, args.offset, &args.dir)?;
    Ok(())
}

/// Joins the rank's node mount (if any): the lock it returns must live until
/// the exec or the end of the job.
fn enter_mount(rank: &hybrun::launch::plan::RankPlan) -> anyhow::Result<Option<std::fs::File>> {
    let Some(mount) = &rank.mount else {
        return Ok(None);
    };
    let me = std::env::current_exe()?;
    Ok(Some(hybrun::launch::image_mount::enter(mount, &me)?))
}

/// `hybrun shell`: planned as one rank of `exec` in hybrid mode (the image's
/// own software, the site's binds and environment, the image policy), without
/// the MPI checks (no MPI runs) or a CPU binding (the shell gets what the
/// allocation gave), then the runtime's shell replaces hybrun.
pub fn shell(args: ShellArgs) -> anyhow::Result<()> {
    let c = args.container;
    let req = Request {
        site: c.site,
        mode: Some(Mode::Hybrid),
        runtime: c.runtime,
        runtime_version: c.runtime_version,
        mpi: Some(MpiPlugin::None),
        binds: c.binds,
        env: c.env,
        unset: c.unset,
        nv: c.nv,
        skip_gate: true,
        no_cpu_bind: true,
        pwd: args.pwd,
        runtime_args: c.runtime_args,
        interactive: true,
        dry_run: args.dry_run,
        image: Some(args.image),
        // ch-run has no shell subcommand: it runs this.
        command: vec!["/bin/sh".into()],
        ..Request::default()
    };
    let host = Host::current();
    let planned = planner::plan_exec(&req, &host)?;
    warn(&planned);
    let command = planned.plan.rank.render()?;
    if args.dry_run {
        return print_dry_run(&planned, &command, "shell");
    }
    become_runtime(&planned.plan.rank, &command, None)
}

/// `hybrun exec`: plans this rank (or takes the plan `hybrun run` handed it)
/// and replaces itself with the runtime.
pub fn exec(args: ExecArgs) -> anyhow::Result<()> {
    let host = Host::current();
    if args.from_run {
        let image = args.common.image.as_deref();
        match hybrun::launch::handoff::received(&host, image, &args.common.command) {
            Ok(handoff) => return exec_handed(handoff, &args, &host),
            Err(why) => eprintln!(
                "hybrun: warning: no rank plan from hybrun run: {why}; this rank plans itself \
                 from its arguments"
            ),
        }
    }
    let dry_run = args.dry_run || args.json;
    let geometry = Geometry {
        cpus_per_task: args.common.cpus_per_task,
        ..Geometry::default()
    };
    let mut req = request(&args.common, geometry, dry_run);
    req.skip_gate = args.skip_gate;
    let planned = planner::plan_exec(&req, &host)?;
    warn(&planned);
    let command = planned.plan.rank.render()?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&json_document(&planned, &command))?
        );
        return Ok(());
    }
    if args.dry_run {
        return print_dry_run(&planned, &command, "exec");
    }
    become_runtime(&planned.plan.rank, &command, planned.cpu_binding.as_ref())
}

/// `hybrun exec --from-run` with the plan `hybrun run` handed it.
fn exec_handed(
    handoff: hybrun::launch::plan::Handoff,
    args: &ExecArgs,
    host: &Host,
) -> anyhow::Result<()> {
    let handed = planner::plan_handed(handoff, host)?;
    for warning in &handed.warnings {
        eprintln!("hybrun: warning: {warning}");
    }
    let command = handed.rank.render()?;
    if args.json {
        let document = serde_json::json!({
            "plan": { "rank": handed.rank },
            "command": command,
            "shell": command.shell_line(),
            "notes": handed.notes,
            "cpu_binding": handed.cpu_binding,
        });
        println!("{}", serde_json::to_string_pretty(&document)?);
        return Ok(());
    }
    if args.dry_run {
        return print_commented("exec", &handed.notes, &command);
    }
    become_runtime(&handed.rank, &command, Some(&handed.cpu_binding))
}

/// Binds the rank's CPUs, joins its node's image mount and replaces this
/// process with the runtime.
fn become_runtime(
    rank: &hybrun::launch::plan::RankPlan,
    command: &Rendered,
    binding: Option<&hybrun_core::placement::CpuBinding>,
) -> anyhow::Result<()> {
    // Bind before the exec: the runtime and the container's rank inherit the
    // affinity (it is only ever narrowed within what the launcher allowed).
    if let Some(binding) = binding.filter(|b| !b.cpus.is_empty()) {
        if let Err(e) = hybrun_core::placement::set_affinity(&binding.cpus) {
            eprintln!(
                "hybrun: warning: CPU binding not applied ({}): {e}",
                binding.why
            );
        }
    }
    let _users = enter_mount(rank)?;
    use std::os::unix::process::CommandExt;
    let error = command.command()?.exec();
    Err(LaunchError::Spawn {
        program: command
            .argv
            .first()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default(),
        source: error,
    }
    .into())
}
