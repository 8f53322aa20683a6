//! Helpers for the end-to-end tests in `tests/tests/`: find the real
//! components (hybench builds, MPI launchers, the local Slurm cluster), run
//! them with a hard timeout, and check what they printed.
//!
//! A component that is missing makes the test fail under CI (`CI` set) and
//! print a loud SKIPPED line otherwise: a test never passes by not running.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use hybrun_core::schema::ResultRow;
use hybrun_core::vocab::MpiFlavour;

/// The repository root (parent of this crate).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// True when running under CI, where every component must be present.
pub fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false")
}

/// Returns `true` when the component is there. Otherwise fails the test under
/// CI, or prints a loud skip message and returns `false`.
pub fn require(component: &str, present: bool, fix: &str) -> bool {
    if present {
        return true;
    }
    if in_ci() {
        panic!("required component missing: {component}; {fix}");
    }
    eprintln!("SKIPPED: {component} is missing ({fix})");
    false
}

/// An MPI flavour the project builds hybench against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mpi {
    Mpich,
    OpenMpi,
}

impl Mpi {
    /// The flavour hybench reports for this MPI (the vocabulary's name).
    pub fn flavour(self) -> MpiFlavour {
        match self {
            Mpi::Mpich => MpiFlavour::Mpich,
            Mpi::OpenMpi => MpiFlavour::Openmpi,
        }
    }

    pub fn name(self) -> &'static str {
        self.flavour().name()
    }

    /// The hybench binary built against this MPI (scripts/build-hybench).
    pub fn hybench(self) -> Option<PathBuf> {
        let var = match self {
            Mpi::Mpich => "HYBENCH_MPICH",
            Mpi::OpenMpi => "HYBENCH_OPENMPI",
        };
        let path = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
            repo_root()
                .join("target")
                .join(self.name())
                .join("release/hybench")
        });
        path.is_file().then_some(path)
    }

    /// hybench for this MPI, or None after `require` reported it missing.
    pub fn require_hybench(self) -> Option<PathBuf> {
        let h = self.hybench();
        require(
            &format!("hybench built against {}", self.name()),
            h.is_some(),
            "run scripts/build-hybench (scripts/test does this)",
        )
        .then(|| h.unwrap())
    }

    /// `mpiexec` of this MPI for `n` ranks on this machine.
    pub fn mpiexec(self, n: u32) -> Command {
        match self {
            Mpi::Mpich => {
                let mut c = Command::new("mpiexec.mpich");
                c.args(["-n", &n.to_string()]);
                c
            }
            Mpi::OpenMpi => {
                let mut c = Command::new("mpiexec.openmpi");
                // Root in CI; more ranks than the 2 cores.
                c.env("OMPI_ALLOW_RUN_AS_ROOT", "1")
                    .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1");
                c.args(["--oversubscribe", "-n", &n.to_string()]);
                c
            }
        }
    }

    /// The srun --mpi plugin this MPI needs (PLATFORM.md: MPICH pmi2, Open MPI pmix).
    pub fn srun_mpi(self) -> &'static str {
        self.flavour().default_plugin().name()
    }
}

/// Whether an executable is on PATH.
pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
        .unwrap_or(false)
}

/// Run `cmd` under coreutils `timeout` (TERM, then KILL 10 s later), so a hung
/// MPI job fails the test instead of hanging the suite.
pub fn run_with_timeout(cmd: &Command, limit: Duration) -> Output {
    let mut t = Command::new("timeout");
    t.args(["-k", "10", &format!("{}", limit.as_secs())]);
    t.arg(cmd.get_program());
    t.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => t.env(k, v),
            None => t.env_remove(k),
        };
    }
    if let Some(dir) = cmd.get_current_dir() {
        t.current_dir(dir);
    }
    let out = t
        .output()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
    assert_ne!(
        out.status.code(),
        Some(124),
        "timed out after {limit:?}: {}",
        describe(cmd, &out)
    );
    assert_ne!(
        out.status.code(),
        Some(137),
        "killed after {limit:?}: {}",
        describe(cmd, &out)
    );
    out
}

/// [`run_with_timeout`] for an MPI job, run once more when it was Open MPI's
/// and a rank died of a segmentation fault. On this platform about 1 in 350
/// Open MPI runs has a rank die of SIGSEGV (PLATFORM.md, seen with other
/// programs than hybench; 400 repeats of hybench's 3-node Open MPI allreduce
/// here had none, so no core of it was caught). It is not what these tests are
/// about, and one such crash failed a whole CI run. Said on stderr; a second
/// crash fails the test, and so does any other failure, at once.
pub fn run_mpi_job(cmd: &Command, limit: Duration, mpi: Mpi) -> Output {
    run_mpi_job_with(cmd, limit, mpi, || {})
}

/// Whether an Open MPI job's stderr says a rank died of a segmentation fault:
/// the platform's rare Open MPI crash (see [`run_mpi_job`]). Seen across the
/// local cluster's nodes under `srun --mpi=pmix`, in hybench and in Debian's
/// LAMMPS alike, within the first second (Open MPI's handler printed only
/// libc's frame, at address nil).
pub fn openmpi_rank_crashed(stderr: &str) -> bool {
    stderr.contains("Segmentation fault")
}

/// [`run_mpi_job`], calling `before_again` before the second run (to remove
/// what the crashed run left, such as its launch record).
pub fn run_mpi_job_with(
    cmd: &Command,
    limit: Duration,
    mpi: Mpi,
    before_again: impl FnOnce(),
) -> Output {
    let out = run_with_timeout(cmd, limit);
    let crashed =
        !out.status.success() && openmpi_rank_crashed(&String::from_utf8_lossy(&out.stderr));
    if mpi != Mpi::OpenMpi || !crashed {
        return out;
    }
    note_past_capture(&format!(
        "NOTE: an Open MPI rank died of a segmentation fault (the platform's rare Open MPI \
         crash, PLATFORM.md); running the job once more. The first run:\n{}",
        describe(cmd, &out)
    ));
    before_again();
    run_with_timeout(cmd, limit)
}

/// Writes `text` to the test process's stderr past libtest's capture (which
/// takes only `eprintln!`'s output, and shows it only for failing tests), so
/// that a tolerated crash shows in the CI log of a passing run too.
pub fn note_past_capture(text: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// The command line and its output, for assertion messages.
pub fn describe(cmd: &Command, out: &Output) -> String {
    format!(
        "{:?} {:?}\nexit: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        cmd.get_program(),
        cmd.get_args().collect::<Vec<_>>(),
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Parse hybench CSV output.
pub fn parse_rows(csv_text: &str) -> Vec<ResultRow> {
    hybrun_core::schema::read_results_csv(csv_text.as_bytes())
        .unwrap_or_else(|e| panic!("CSV does not parse: {e:#}\n{csv_text}"))
}

/// Assert the invariants every result must satisfy.
pub fn assert_rows_sane(rows: &[ResultRow], bench: &str, sizes: &[u64], ranks: u32, mpi: Mpi) {
    let got: Vec<u64> = rows.iter().map(|r| r.size_bytes).collect();
    assert_eq!(got, sizes, "{bench}: every size present, in order");
    for r in rows {
        let ctx = format!("{bench} size {}", r.size_bytes);
        assert_eq!(r.benchmark, bench, "{ctx}");
        // MPICH under the wrong PMI silently runs N one-rank jobs: the size tells.
        assert_eq!(r.comm_size, ranks, "{ctx}: communicator size");
        assert_eq!(r.mpi_flavour, Some(mpi.flavour()), "{ctx}: flavour");
        assert!(r.n_samples > 0, "{ctx}: samples");
        for (name, v) in [
            ("osu_value", r.osu_value),
            ("min", r.min),
            ("median", r.median),
            ("mean", r.mean),
            ("p90", r.p90),
            ("p99", r.p99),
            ("max", r.max),
        ] {
            assert!(
                v.is_finite() && v > 0.0,
                "{ctx}: {name} = {v} must be positive"
            );
        }
        assert!(r.stddev >= 0.0, "{ctx}: stddev");
        assert!(
            r.min <= r.median && r.median <= r.max,
            "{ctx}: min <= median <= max"
        );
        assert!(
            r.median <= r.p90 && r.p90 <= r.p99 && r.p99 <= r.max,
            "{ctx}: percentiles ordered"
        );
        if let (Some(lo), Some(hi)) = (r.ci95_low, r.ci95_high) {
            assert!(
                r.min <= lo && lo <= r.median && r.median <= hi && hi <= r.max,
                "{ctx}: CI brackets the median"
            );
        } else {
            assert!(r.n_samples < 6, "{ctx}: CI present for n >= 6");
        }
        assert!(
            !r.mpi_library.is_empty() && r.mpi_library_inode > 0,
            "{ctx}: mapped libmpi recorded"
        );
        assert!(
            r.mpi_library_uniform,
            "{ctx}: every rank mapped the same libmpi"
        );
        assert_eq!(
            r.rank_placement.split(';').count(),
            ranks as usize,
            "{ctx}: placement of every rank"
        );
    }
}

/// The local Slurm cluster of the project (scripts/cluster), started once per
/// test process. Returns its SLURM_CONF, or None after `require` reported it.
pub fn cluster() -> Option<PathBuf> {
    static CONF: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let conf = CONF.get_or_init(|| {
        if !on_path("slurmctld") || !on_path("srun") {
            return Err(
                "Slurm (slurmctld, slurmd, srun) is not installed; run scripts/setup".into(),
            );
        }
        let script = repo_root().join("scripts/cluster");
        let out = Command::new(&script)
            .arg("start")
            .output()
            .map_err(|e| format!("{}: {e}", script.display()))?;
        if !out.status.success() {
            return Err(format!(
                "scripts/cluster start failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        let env = Command::new(&script)
            .arg("env")
            .output()
            .map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&env.stdout);
        text.trim()
            .strip_prefix("export SLURM_CONF=")
            .map(|p| PathBuf::from(p.trim_matches('"').trim_matches('\'')))
            .ok_or_else(|| format!("scripts/cluster env printed `{text}`"))
    });
    match conf {
        Ok(p) => Some(p.clone()),
        Err(e) => {
            require("the local Slurm cluster", false, e);
            None
        }
    }
}
