//! The one route from a cell to a command line: every cell, native included,
//! becomes a [`Request`] for `hybrun::launch::planner::plan_run` (the planner
//! `hybrun run` uses), and the plan renders the argv and environment that are
//! executed and recorded. Nothing here writes an argv.
//!
//! What differs between the modes is therefore only what the plan puts in the
//! container part: native is `Mode::Native` (runtime none) started by the same
//! launcher program (srun inside an allocation, else the flavour's mpiexec)
//! with the same site `[env]`, MPI-profile variables and fabric guard as the
//! container modes, and runs the host's hybench build; the container modes run
//! the image's hybench. On top of the plan every mode gets the same
//! launcher-side core binding ([`binding_env`]).

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;

use crate::campaign::cores;
use crate::campaign::scenario::{Binding, Cell, Scenario};
use crate::host::Host;
use crate::launch::plan::Geometry;
use crate::launch::planner::{self, Request};
use hybrun_core::vocab::{LauncherKind, Mode};

/// What one launch of a cell runs, beyond the cell itself.
#[derive(Debug, Clone, Default)]
pub struct Payload {
    /// hybench's arguments (a hybench cell; an application's command is the
    /// scenario's).
    pub hybench_args: Vec<String>,
    /// The ranks' working directory (`--pwd`): an application's launch
    /// directory, with its inputs.
    pub pwd: Option<PathBuf>,
    /// The core of each rank of a node, in rank order (a randomized core
    /// order, for launchers that take a list); None: the launcher's own order.
    pub cores: Option<Vec<usize>>,
}

impl Payload {
    /// The payload of a cell's preflight and `campaign check`: its arguments
    /// only.
    pub fn of(cell: &Cell) -> Payload {
        Payload {
            hybench_args: cell.hybench_args(),
            ..Payload::default()
        }
    }
}

/// A command ready to spawn, and what the launch record keeps of it.
pub struct Prepared {
    pub command: Command,
    /// The same command as one POSIX shell line (`env NAME=VALUE ... ARGV`,
    /// every word quoted where a shell would read it): paste-able.
    pub line: String,
    /// The whole command line, as executed.
    pub argv: Vec<String>,
    /// Variables set in the launcher's environment.
    pub env: Vec<(String, String)>,
    /// What the launcher starts on each rank (the tail of `argv`).
    pub per_rank: Vec<String>,
    /// The launch plan, as JSON.
    pub plan: Option<serde_json::Value>,
    /// The launch id handed to the ranks (ch-run's join tags), if any.
    pub launch: Option<String>,
}

/// Plans the launches of a scenario's cells.
pub struct CellPlanner<'a> {
    scenario: &'a Scenario,
    in_allocation: bool,
    /// The MPI profiles the scenario's site file defines.
    site_profiles: BTreeSet<String>,
    host: Host,
}

fn text(s: &OsStr) -> String {
    s.to_string_lossy().into_owned()
}

impl<'a> CellPlanner<'a> {
    /// `in_allocation`: srun starts the ranks (else the flavour's mpiexec).
    pub fn new(scenario: &'a Scenario, in_allocation: bool) -> anyhow::Result<CellPlanner<'a>> {
        let site_profiles = match &scenario.site {
            Some(path) => crate::site::Site::read(path, "scenario")?
                .config
                .mpi
                .into_keys()
                .collect(),
            None => BTreeSet::new(),
        };
        Ok(CellPlanner {
            scenario,
            in_allocation,
            site_profiles,
            host: Host::current(),
        })
    }

    pub fn scenario(&self) -> &'a Scenario {
        self.scenario
    }

    /// The program that starts the ranks: srun inside an allocation, else the
    /// mpiexec of the cell's MPI flavour.
    pub fn launcher(&self, cell: &Cell) -> LauncherKind {
        if self.in_allocation {
            LauncherKind::Srun
        } else {
            cell.flavour.mpiexec()
        }
    }

    /// The command every rank runs: the application's, or hybench (the host's
    /// build for native, the image's otherwise) with `hybench_args`.
    fn command(&self, cell: &Cell, hybench_args: &[String]) -> anyhow::Result<Vec<OsString>> {
        let scenario = self.scenario;
        if let Some(app) = scenario.app_of(cell) {
            return Ok(app.command.iter().map(OsString::from).collect());
        }
        let hybench: OsString = if cell.mode == Mode::Native {
            let abi = cell.flavour.abi();
            scenario
                .hybench
                .get(&abi)
                .with_context(|| {
                    format!("no hybench build for the {} (native cells)", abi.label())
                })?
                .into()
        } else {
            scenario.container_hybench.clone().into()
        };
        let mut command = vec![hybench];
        command.extend(hybench_args.iter().map(OsString::from));
        Ok(command)
    }

    /// What `hybrun run` would be asked for this cell's launch of `payload`.
    pub fn request(&self, cell: &Cell, payload: &Payload) -> anyhow::Result<Request> {
        let scenario = self.scenario;
        let command = self.command(cell, &payload.hybench_args)?;
        let launcher = self.launcher(cell);
        // A profile the site file defines is the site's word on this MPI (its
        // env, PMI, mpiexec, library); the built-in `mpich`/`openmpi` names of a
        // native-only scenario have none, so only the flavour's PMI is given.
        let (mpi_profile, mpi) =
            if cell.mode.in_container() || self.site_profiles.contains(&cell.mpi) {
                (Some(cell.mpi.clone()), None)
            } else {
                let plugin = cell.flavour.default_plugin();
                (None, (launcher == LauncherKind::Srun).then_some(plugin))
            };
        Ok(Request {
            site: scenario.site.clone(),
            mode: Some(cell.mode),
            runtime: scenario.runtime.filter(|_| cell.mode.in_container()),
            // `inside` runs mpiexec in the container: no launcher outside.
            launcher: (cell.mode != Mode::Inside).then_some(launcher),
            mpi_profile,
            mpi,
            // The cell's job shape in every mode alike: `-c` (and the
            // OMP_NUM_THREADS the planner derives from it), `[job]`'s keys.
            geometry: cell.shape.geometry(Geometry {
                nodes: Some(cell.nodes),
                ntasks: Some(cell.ranks()),
                ntasks_per_node: Some(cell.ranks_per_node),
                ..Geometry::default()
            }),
            env: cell
                .env
                .iter()
                .map(|(k, v)| OsString::from(format!("{k}={v}")))
                .collect(),
            // Open MPI refuses to bind more CPUs than there are cores
            // (`--map-by slot:PE=N`) unless told it may oversubscribe.
            oversubscribe: cell
                .ranks()
                .saturating_mul(cell.shape.cpus_per_task.unwrap_or(1))
                > cores(),
            image: cell.image.clone(),
            pwd: payload.pwd.clone(),
            command,
            ..Request::default()
        })
    }

    /// Plans and renders one launch of `cell` running `payload`.
    pub fn prepare(&self, cell: &Cell, payload: &Payload) -> anyhow::Result<Prepared> {
        let req = self.request(cell, payload)?;
        let planned = planner::plan_run(&req, &self.host)
            .with_context(|| format!("cell {}: hybrun::launch refused the plan", cell.key))?;
        let mut rendered = planned.plan.render()?;
        let per_rank = planned.plan.render_per_rank()?;
        let order = payload.cores.as_deref();
        for (k, v) in binding_env(self.scenario, cell, self.launcher(cell), order) {
            rendered.set(k, v);
        }
        Ok(Prepared {
            command: rendered.command()?,
            line: rendered.shell_line(),
            argv: rendered.argv.iter().map(|a| text(a)).collect(),
            env: rendered
                .env_set
                .iter()
                .map(|(k, v)| (text(k), text(v)))
                .collect(),
            per_rank: per_rank.argv.iter().map(|a| text(a)).collect(),
            plan: serde_json::to_value(&planned.plan).ok(),
            launch: planned.plan.per_rank.launch().map(str::to_owned),
        })
    }
}

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The launcher-side variables that bind ranks to cores (or not), the same
/// for every mode of a launcher; plus Open MPI's consent to run as root.
/// `launcher` is the program that starts the ranks (for `inside`, the
/// flavour's mpiexec in the container, which inherits them). `cores`: each
/// rank's core in rank order, for hydra's `user:` binding (see
/// [`takes_core_list`]).
fn binding_env(
    scenario: &Scenario,
    cell: &Cell,
    launcher: LauncherKind,
    order: Option<&[usize]>,
) -> Vec<(String, String)> {
    let srun = launcher == LauncherKind::Srun;
    let bind = scenario.bind == Binding::Core && (srun || cell.ranks() <= cores());
    let mut env = Vec::new();
    let mut set = |k: &str, v: &str| env.push((k.to_owned(), v.to_owned()));
    match launcher {
        LauncherKind::Srun => set("SLURM_CPU_BIND", if bind { "cores" } else { "none" }),
        LauncherKind::MpiexecOpenmpi => {
            set(
                "OMPI_MCA_hwloc_base_binding_policy",
                if bind { "core" } else { "none" },
            );
            if is_root() {
                set("OMPI_ALLOW_RUN_AS_ROOT", "1");
                set("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
            }
        }
        LauncherKind::MpiexecHydra | LauncherKind::None => {
            match (cell.shape.cpus_per_task, order) {
                // `-c N` is rendered as `-bind-to core:N`, which hydra takes over
                // HYDRA_BINDING: say the same here, so the record does not
                // show a binding that was not used.
                (Some(cpus), _) if bind => set("HYDRA_BINDING", &format!("core:{cpus}")),
                (None, Some(list)) if bind => {
                    let list: Vec<String> = list.iter().map(usize::to_string).collect();
                    set("HYDRA_BINDING", &format!("user:{}", list.join(",")));
                }
                _ => set("HYDRA_BINDING", if bind { "core" } else { "none" }),
            }
        }
    }
    env
}

/// Whether the launcher of `cell` binds ranks to an explicit list of cores
/// (hydra's `HYDRA_BINDING=user:A,B,...`), so that their order can be drawn
/// at random. srun's `map_cpu` takes CPU ids of the job step's nodes, which
/// the process that plans is not on, and Open MPI needs a rankfile: neither
/// is randomized. Nor is a cell with CPUs per rank: hydra binds each rank to
/// N cores (`-bind-to core:N`), which a list of single cores cannot say.
pub fn takes_core_list(scenario: &Scenario, cell: &Cell, launcher: LauncherKind) -> bool {
    launcher == LauncherKind::MpiexecHydra
        && scenario.bind == Binding::Core
        && cell.ranks_per_node <= cores()
        && cell.shape.cpus_per_task.is_none()
}

/// Checks the program of an application cell exists where it runs natively
/// (in a container, the image's PATH decides, at launch).
pub fn check_app_program(host: &Host, program: &str) -> Result<(), String> {
    let found = if program.contains('/') {
        Path::new(program).is_file()
    } else {
        host.which(program).is_some()
    };
    if found {
        Ok(())
    } else {
        Err(format!(
            "{program} not found on PATH (native cells run the application on the host): \
             install it, or give its absolute path in [app] command"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::campaign::scenario::{Environment, JobShape, parse};
    use hybrun_core::vocab::MpiAbi;

    /// A scenario of native and hybrid latency cells at `-c 1` and `-c 2`,
    /// with every `[job]` key.
    fn scenario(dir: &Path) -> Scenario {
        std::fs::create_dir(dir.join("img")).unwrap();
        let fake = dir.join("hybench");
        std::fs::write(&fake, "").unwrap();
        let mut env = Environment::default();
        env.hybench_override.insert(MpiAbi::Mpich, fake);
        let text = "name = \"r\"\ncontrol = false\nrandomize = false\n[job]\nexclusive = true\n\
                    mem = \"8G\"\nconstraint = \"ib\"\nqos = \"debug\"\ngpus_per_task = 1\n\
                    gpu_bind = \"closest\"\nsrun_args = [\"--cpu-freq=high\"]\n[matrix]\n\
                    benchmark = [\"latency\"]\nmode = [\"native\", \"hybrid\"]\n\
                    image = [\"img\"]\ncpus_per_task = [1, 2]\n";
        parse(text, &dir.join("s.toml"), &env).unwrap()
    }

    #[test]
    fn every_cell_asks_the_planner_for_its_job_shape() {
        let dir = tempfile::tempdir().unwrap();
        let s = scenario(dir.path());
        assert_eq!(s.cells.len(), 4);
        for in_allocation in [false, true] {
            let planner = CellPlanner::new(&s, in_allocation).unwrap();
            for cell in &s.cells {
                let req = planner.request(cell, &Payload::of(cell)).unwrap();
                let g = &req.geometry;
                // The node and rank counts, and the shape, in every mode.
                assert_eq!(
                    (g.nodes, g.ntasks, g.ntasks_per_node),
                    (Some(1), Some(2), Some(2))
                );
                assert_eq!(g.cpus_per_task, cell.shape.cpus_per_task);
                assert!(g.cpus_per_task.is_some(), "{}", cell.key);
                assert!(g.exclusive);
                assert_eq!(g.mem.as_deref(), Some("8G"));
                assert_eq!(g.constraint.as_deref(), Some("ib"));
                assert_eq!(g.qos.as_deref(), Some("debug"));
                assert_eq!(g.gpus_per_task, Some(1));
                assert_eq!(g.gpu_bind.as_deref(), Some("closest"));
                assert_eq!(g.srun_args, ["--cpu-freq=high"]);
                g.check().unwrap();
            }
        }
    }

    #[test]
    fn srun_only_keys_are_refused_outside_an_allocation_naming_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let s = scenario(dir.path());
        let cells: Vec<&Cell> = s.cells.iter().collect();
        let e = format!(
            "{:#}",
            crate::campaign::runner::preflight(&s, &cells, false).unwrap_err()
        );
        assert!(
            e.contains("s.toml: [job] exclusive is an srun option")
                && e.contains("inside an allocation (salloc/sbatch) or with --submit"),
            "{e}"
        );
        // `-c` alone has mpiexec equivalents.
        let only_cpus = JobShape {
            cpus_per_task: Some(2),
            ..JobShape::default()
        };
        assert_eq!(only_cpus.srun_only(), None);
    }

    #[test]
    fn hydra_binds_a_cell_with_cpus_per_task_to_that_many_cores() {
        let dir = tempfile::tempdir().unwrap();
        let s = scenario(dir.path());
        let c2 = s
            .cells
            .iter()
            .find(|c| c.shape.cpus_per_task == Some(2))
            .unwrap();
        let hydra = LauncherKind::MpiexecHydra;
        // No randomized list of single cores: `-bind-to core:2` is the binding.
        assert!(!takes_core_list(&s, c2, hydra));
        let env = binding_env(&s, c2, hydra, Some(&[1, 0]));
        // (More ranks than this machine's cores: not bound, in every cell alike.)
        let want = if c2.ranks() <= cores() {
            "core:2"
        } else {
            "none"
        };
        assert!(
            env.contains(&("HYDRA_BINDING".into(), want.into())),
            "{env:?}"
        );
        let srun = binding_env(&s, c2, LauncherKind::Srun, None);
        assert_eq!(srun, [("SLURM_CPU_BIND".to_owned(), "cores".to_owned())]);
    }
}
