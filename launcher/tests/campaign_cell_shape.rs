//! The job shape per campaign cell, end to end: a scenario with
//! `matrix.cpus_per_task = [1, 2]`, run for real under MPICH's mpiexec
//! (hydra) and Open MPI's on this machine. Each cell's launch record must show
//! the shape it asked for (`-bind-to core:N` / `--map-by slot:PE=N`,
//! OMP_NUM_THREADS=N, in native and hybrid alike),
//! and the ranks must have got it: two applications print what each rank
//! sees, its CPU count (`nproc`, the affinity mask hydra set) and its
//! OMP_NUM_THREADS, and the report's values are those of the cell's `-c`.

mod campaign_common;

use std::path::Path;

use campaign_common::{
    campaign_run, hybench, hybench_openmpi, mpich_image, only_run, records_all_ok, repo_root,
};
use hybrun::campaign::results::LaunchRecord;
use serde_json::Value;

fn scenario(
    dir: &Path,
    hybench: &Path,
    openmpi: Option<&Path>,
    image: Option<&Path>,
) -> std::path::PathBuf {
    // The hybrid cells (latency in the MPICH test image under ch-run) where
    // the image is there; the applications run natively (the test image has
    // no shell). Open MPI's native cells where its hybench is there.
    let (modes, mut extra) = match image {
        Some(i) => (
            r#"["native", "hybrid"]"#,
            format!(
                "image = [\"{}\"]\n[[exclude]]\nbenchmark = \"nproc\"\nmode = \"hybrid\"\n\
                 [[exclude]]\nbenchmark = \"omp\"\nmode = \"hybrid\"\n",
                i.display()
            ),
        ),
        None => (r#"["native"]"#, String::new()),
    };
    let mpis = match openmpi {
        Some(_) => {
            if image.is_some() {
                extra.push_str("[[exclude]]\nmpi = \"openmpi\"\nmode = \"hybrid\"\n");
            }
            r#"["mpich", "openmpi"]"#
        }
        None => r#"["mpich"]"#,
    };
    let text = format!(
        r#"name = "shape"
launches = 1
timeout = "60s"
control = false
randomize = false
site = "{site}"
runtime = "charliecloud"
[stop]
enabled = false
[benchmark.latency]
sizes = "1:8"
iterations = 20
warmup = 2
[app.nproc]
command = ["sh", "-c", "echo cpus=$(nproc)"]
metric = {{ regex = 'cpus=(?P<value>[0-9]+)', unit = "cpus", better = "higher" }}
[app.omp]
command = ["sh", "-c", "echo threads=${{OMP_NUM_THREADS:-0}}"]
metric = {{ regex = 'threads=(?P<value>[0-9]+)', unit = "threads", better = "higher" }}
[matrix]
benchmark = ["latency", "nproc", "omp"]
mode = {modes}
mpi = {mpis}
cpus_per_task = [1, 2]
{extra}[hybench]
mpich = "{hybench}"
{openmpi}"#,
        site = repo_root().join("scenarios/site-local.toml").display(),
        hybench = hybench.display(),
        openmpi = openmpi.map_or(String::new(), |o| format!(
            "openmpi = \"{}\"\n",
            o.display()
        )),
    );
    let path = dir.join("shape.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// The CPUs per rank a cell's key names (`...1x2c2...`).
fn cpus_of(key: &str) -> u32 {
    let shape = key.split('.').nth(2).unwrap();
    shape.split_once('c').unwrap().1.parse().unwrap()
}

fn check_record(r: &LaunchRecord) {
    let cpus = cpus_of(&r.cell_key);
    // hydra binds each rank to N cores; Open MPI maps N cores to each.
    let (flag, value) = if r.argv[0].contains("openmpi") {
        ("--map-by", format!("slot:PE={cpus}"))
    } else {
        ("-bind-to", format!("core:{cpus}"))
    };
    let at = r
        .argv
        .iter()
        .position(|a| a == flag)
        .unwrap_or_else(|| panic!("{}: no {flag} in {:?}", r.cell_key, r.argv));
    assert_eq!(r.argv[at + 1], value, "{}", r.cell_key);
    assert!(r.argv[0].contains("mpiexec"), "{:?}", r.argv);
    let plan = r.plan.as_ref().expect("the launch plan is recorded");
    assert_eq!(
        plan["geometry"]["cpus_per_task"].as_u64(),
        Some(u64::from(cpus)),
        "{}",
        r.cell_key
    );
    // The rank's OMP_NUM_THREADS: natively in the launcher's environment; in
    // a container, `hybrun exec` gets `--cpus-per-task N` and sets it on the
    // rank as `hybrun run` does.
    let n = cpus.to_string();
    let in_env = r.env.iter().any(|(k, v)| k == "OMP_NUM_THREADS" && *v == n);
    let to_exec = r
        .per_rank
        .windows(2)
        .any(|w| w[0] == "--cpus-per-task" && w[1] == n);
    if r.mode == hybrun_core::vocab::Mode::Native {
        assert!(
            in_env,
            "{}: OMP_NUM_THREADS={n} not in {:?}",
            r.cell_key, r.env
        );
    } else {
        assert!(
            to_exec,
            "{}: no --cpus-per-task {n} in {:?}",
            r.cell_key, r.per_rank
        );
    }
    if flag == "-bind-to" {
        let binding = ("HYDRA_BINDING".to_owned(), format!("core:{cpus}"));
        assert!(r.env.contains(&binding), "{}: {:?}", r.cell_key, r.env);
    }
}

#[test]
fn cpus_per_task_cells_launch_with_their_cores_and_threads() {
    let Some(hybench) = hybench() else { return };
    let image = mpich_image();
    let openmpi = hybench_openmpi();
    let dir = tempfile::tempdir().unwrap();
    let file = scenario(dir.path(), &hybench, openmpi.as_deref(), image.as_deref());
    let results_dir = dir.path().join("results");
    let out = campaign_run(&file, &results_dir)
        .env_remove("HYBENCH_MPICH")
        .env_remove("HYBRUN_SITE")
        .env_remove("OMP_NUM_THREADS")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "campaign failed: {stderr}");
    let run = only_run(&results_dir, "shape");
    let records = records_all_ok(&run);
    // Native: 3 workloads x 2 CPU counts per MPI; hybrid: latency x 2.
    let mpis = if openmpi.is_some() { 2 } else { 1 };
    let cells = 6 * mpis + if image.is_some() { 2 } else { 0 };
    assert_eq!(records.len(), cells, "one launch per cell: {records:#?}");
    for r in &records {
        check_record(r);
    }

    // What the ranks saw, through the report: each application's value is
    // its cell's CPUs per rank.
    let report: Value =
        serde_json::from_slice(&std::fs::read(run.join("report.json")).unwrap()).unwrap();
    let entries = report["entries"].as_array().unwrap();
    let mut seen = 0;
    for e in entries {
        let bench = e["benchmark"].as_str().unwrap();
        let cpus = e["cpus_per_task"]
            .as_u64()
            .expect("cpus_per_task in report.json");
        assert!(
            e["setting"]
                .as_str()
                .unwrap()
                .contains(&format!("-c {cpus}")),
            "{e}"
        );
        if bench == "nproc" || bench == "omp" {
            assert_eq!(e["value"].as_f64(), Some(cpus as f64), "{bench}: {e}");
            seen += 1;
        }
    }
    assert_eq!(
        seen,
        4 * mpis,
        "nproc and omp at -c 1 and -c 2, per MPI: {entries:#?}"
    );
    let csv = std::fs::read_to_string(run.join("report.csv")).unwrap();
    assert!(
        csv.lines().next().unwrap().ends_with(",cpus_per_task"),
        "{csv}"
    );
}
