//! `hybrun run` end to end: srun on the local Slurm cluster, Charliecloud's
//! ch-run, hybench's latency across 2 nodes (MPICH, pmi2) in native, hybrid and
//! bind mode, judged by what hybench recorded about the library it mapped:
//!
//! - native: the host's libmpich (path and inode);
//! - hybrid: the container's own copy (the image file's inode, not the host's);
//! - bind: the host's file (same inode) at the bind directory's path.
//!
//! Needs: the cluster (scripts/cluster), ch-run, the MPICH hybench build and the
//! test images (scripts/make-test-images), and hybrun built in this target
//! directory (cargo builds it with the workspace's tests). A missing piece fails
//! under CI and skips loudly elsewhere.
//!
//! The nodes of the local cluster share one kernel and /dev/shm, so MPICH/UCX
//! takes ranks on different nodes for one host and tries shared memory between
//! separate containers; `UCX_POSIX_USE_PROC_LINK=n` makes that work (PLATFORM.md).
//! A real cluster does not need it.
//!
//! Open MPI (pmix) across 2 nodes, native and hybrid, judged the same way by
//! libmpi.so.40's inode. It crosses nodes over TCP here (no fast fabric on this
//! machine), so the test site file names no fabric and the fabric guard stays
//! off (asserted from the record). Open MPI runs as root only with
//! OMPI_ALLOW_RUN_AS_ROOT(_CONFIRM). Open MPI bind mode must map the host's
//! libmpi.so.40 AND the host's MCA components: asserted from hybench's CSV
//! (inode) and from Open MPI's own component log (`OMPI_MCA_mca_base_verbose`
//! prints the path of every component it opens).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use hybrun_core::schema::ResultRow;
use hybrun_core::vocab::{Mode, RuntimeKind};
use hybrun_e2e::{
    Mpi, cluster, describe, on_path, parse_rows, repo_root, require, run_mpi_job_with,
};

const LIMIT: Duration = Duration::from_secs(180);
const HOST_LIBMPICH: &str = "/usr/lib/x86_64-linux-gnu/libmpich.so.12";
const HOST_LIBMPI_OPENMPI: &str = "/usr/lib/x86_64-linux-gnu/libmpi.so.40";
/// The test images' empty directory for bind mode's libraries.
const BIND_DIR: &str = "/opt/host-mpi/lib";

struct Setup {
    mpi: Mpi,
    hybrun: PathBuf,
    image: PathBuf,
    slurm_conf: PathBuf,
    hybench: PathBuf,
}

/// hybrun as built next to this test (target/<profile>/hybrun).
fn hybrun_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let path = exe.parent()?.parent()?.join("hybrun");
    path.is_file().then_some(path)
}

/// The directory image of `mpi` (mpich, openmpi), built on first use (seconds)
/// when missing.
fn test_image(hybrun: &Path, mpi: Mpi) -> Option<PathBuf> {
    static MPICH: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    static OPENMPI: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let once = match mpi {
        Mpi::Mpich => &MPICH,
        Mpi::OpenMpi => &OPENMPI,
    };
    let name = mpi.name();
    let image = once.get_or_init(|| {
        let image = repo_root().join("target/images").join(name);
        if image.join("app/hybench").is_file() {
            return Ok(image);
        }
        let out = Command::new(repo_root().join("scripts/make-test-images"))
            .arg(name)
            .env("HYBRUN", hybrun)
            .output()
            .map_err(|e| format!("cannot run scripts/make-test-images: {e}"))?;
        if out.status.success() && image.join("app/hybench").is_file() {
            Ok(image)
        } else {
            Err(format!(
                "scripts/make-test-images {name} failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    });
    match image {
        Ok(path) => Some(path.clone()),
        Err(why) => {
            require(&format!("the {name} test image"), false, why);
            None
        }
    }
}

fn setup() -> Option<Setup> {
    setup_for(Mpi::Mpich)
}

fn setup_for(mpi: Mpi) -> Option<Setup> {
    let hybrun = hybrun_binary();
    if !require(
        "the hybrun binary",
        hybrun.is_some(),
        "cargo build -p hybrun (cargo test of the workspace builds it)",
    ) {
        return None;
    }
    if !require("ch-run", on_path("ch-run"), "run scripts/setup") {
        return None;
    }
    let hybench = mpi.require_hybench()?;
    let image = test_image(hybrun.as_deref()?, mpi)?;
    let slurm_conf = cluster()?;
    Some(Setup {
        mpi,
        hybrun: hybrun?,
        image,
        slurm_conf,
        hybench,
    })
}

struct Run {
    rows: Vec<ResultRow>,
    /// This run's launch records.
    records: Vec<serde_json::Value>,
}

/// The test site file: ch-run, both MPI profiles, records in `records`, no fabric.
fn site_file(work: &Path, records: &Path) -> PathBuf {
    let site = work.join("site.toml");
    std::fs::write(
        &site,
        format!(
            "[runtime]\nkind = \"charliecloud\"\nbind_dir = \"{BIND_DIR}\"\n\
             [launcher]\nrecord_dir = \"{}\"\n\
             [mpi.mpich]\nabi = \"mpich\"\npmi = \"pmi2\"\nlibrary = \"{HOST_LIBMPICH}\"\n\
             [mpi.openmpi]\nabi = \"openmpi\"\npmi = \"pmix\"\nlibrary = \"{HOST_LIBMPI_OPENMPI}\"\n",
            records.display()
        ),
    )
    .expect("site");
    site
}

/// `hybrun run` of hybench `bench` in `mode` over 2 nodes (one for `inside`), CSV
/// into a bound directory; returns the rows and the launch record.
fn launch(s: &Setup, mode: Mode, ranks: u32, bench: &[&str]) -> Run {
    launch_with(s, mode, ranks, bench, &[]).0
}

/// [`launch`] with extra `--env` assignments; also returns the launch's stdout
/// and stderr.
fn launch_with(s: &Setup, mode: Mode, ranks: u32, bench: &[&str], env: &[&str]) -> (Run, String) {
    let work = tempfile::tempdir_in(repo_root().join("target")).expect("work dir");
    let out_dir = work.path().join("out");
    let records = work.path().join("records");
    std::fs::create_dir_all(&out_dir).expect("mkdir");
    let site = site_file(work.path(), &records);
    let mut cmd = Command::new(&s.hybrun);
    cmd.env("SLURM_CONF", &s.slurm_conf)
        .env("USER", "root")
        // The bundle cache on the same file system as /usr, so bind mode's
        // bundle is hard links to the host files (same inodes).
        .env("XDG_CACHE_HOME", repo_root().join("target/e2e-cache"))
        .args(["run", "--site", site.to_str().expect("utf-8")])
        // Open MPI refuses root without these (srun passes them to the ranks).
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .args(["--mode", mode.name(), "--mpi-profile", s.mpi.name()])
        .args(["-n", &ranks.to_string()]);
    if mode != Mode::Inside {
        cmd.args(["-N", "2", "-t", "3"]);
    }
    cmd.args(["--env", "UCX_POSIX_USE_PROC_LINK=n"]);
    for assignment in env {
        cmd.args(["--env", assignment]);
    }
    let output = if mode == Mode::Native {
        cmd.arg("--").arg(&s.hybench);
        out_dir.join("result.csv").to_string_lossy().into_owned()
    } else {
        let bind = format!("{}:/mnt", out_dir.display());
        cmd.args(["-B", &bind])
            .arg(&s.image)
            .args(["--", "/app/hybench"]);
        "/mnt/result.csv".to_owned()
    };
    cmd.args(bench)
        .args(["--validate", "--format", "csv", "--output", &output]);
    // A crashed Open MPI run's record goes with it.
    let out = run_mpi_job_with(&cmd, LIMIT, s.mpi, || {
        let _ = std::fs::remove_dir_all(&records);
    });
    assert!(out.status.success(), "{}", describe(&cmd, &out));
    let text = std::fs::read_to_string(out_dir.join("result.csv"))
        .unwrap_or_else(|e| panic!("no result.csv ({e}): {}", describe(&cmd, &out)));
    let rows = parse_rows(&text);
    assert!(!rows.is_empty(), "{}", describe(&cmd, &out));
    for r in &rows {
        assert_eq!(r.comm_size, ranks, "one MPI job of {ranks} ranks");
        let nodes = if mode == Mode::Inside { 1 } else { 2 };
        assert_eq!(r.nodes, nodes, "{nodes} node(s): {}", r.rank_placement);
        assert_eq!(r.validation, "pass");
        assert!(r.mpi_library_uniform, "every rank mapped the same libmpi");
        assert_eq!(r.mpi_flavour, Some(s.mpi.flavour()));
        assert_eq!(
            r.container,
            Some(if mode == Mode::Native {
                RuntimeKind::None
            } else {
                RuntimeKind::Charliecloud
            })
        );
    }
    // Keep the record directory beyond the temporary one.
    let kept = repo_root()
        .join("target/e2e-records")
        .join(format!("{}-{mode}", s.mpi.name()));
    std::fs::create_dir_all(&kept).expect("mkdir");
    let mut docs = Vec::new();
    for entry in std::fs::read_dir(&records).expect("records written") {
        let path = entry.expect("entry").path();
        let doc: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert_eq!(doc["exit_code"], 0, "{}", path.display());
        assert_eq!(doc["plan"]["rank"]["mode"], mode.name());
        // No fabric in the site file: the guard is off (TCP between the nodes).
        assert_eq!(doc["fabric_guard"]["active"], false, "{}", path.display());
        std::fs::copy(&path, kept.join(path.file_name().expect("name"))).expect("copy");
        docs.push(doc);
    }
    assert_eq!(docs.len(), 1, "one record per run");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        Run {
            rows,
            records: docs,
        },
        log,
    )
}

fn inode(path: &Path) -> u64 {
    std::fs::metadata(path).expect("stat").ino()
}

const LATENCY: [&str; 7] = ["latency", "-m", "1:64", "-i", "200", "-x", "20"];

#[test]
fn native_mode_maps_the_host_libmpich() {
    let Some(s) = setup() else { return };
    let run = launch(&s, Mode::Native, 2, &LATENCY);
    let host = std::fs::canonicalize(HOST_LIBMPICH).expect("host libmpich");
    for r in &run.rows {
        assert_eq!(Path::new(&r.mpi_library), host);
        assert_eq!(r.mpi_library_inode, inode(&host));
    }
    assert_eq!(run.records[0]["host_libraries"][0]["role"], "profile-mpi");
}

#[test]
fn hybrid_mode_maps_the_containers_libmpich() {
    let Some(s) = setup() else { return };
    let run = launch(&s, Mode::Hybrid, 2, &LATENCY);
    let host = inode(Path::new(HOST_LIBMPICH));
    for r in &run.rows {
        // The path inside the container, and the image's own file.
        let in_image = s.image.join(r.mpi_library.trim_start_matches('/'));
        assert!(in_image.is_file(), "{} not in the image", r.mpi_library);
        assert_eq!(r.mpi_library_inode, inode(&in_image));
        assert_ne!(
            r.mpi_library_inode, host,
            "hybrid must not map the host's libmpich"
        );
    }
}

#[test]
fn bind_mode_maps_the_host_libmpich_in_the_container() {
    let Some(s) = setup() else { return };
    let run = launch(&s, Mode::Bind, 2, &LATENCY);
    let host = inode(Path::new(HOST_LIBMPICH));
    for r in &run.rows {
        assert_eq!(
            r.mpi_library,
            format!("{BIND_DIR}/libmpich.so.12"),
            "loaded from the bind directory"
        );
        assert_eq!(
            r.mpi_library_inode, host,
            "the host's file (a hard link to it), not a copy"
        );
    }
    // The record names the host library that was mapped.
    let mapped = &run.records[0]["host_libraries"][0];
    assert_eq!(mapped["role"], "mpi");
    assert_eq!(mapped["soname"], "libmpich.so.12");
    assert_eq!(mapped["ino"], host);
}

#[test]
fn hybrid_mode_joins_ranks_per_node() {
    let Some(s) = setup() else { return };
    // 4 ranks on 2 nodes: the ranks of a node share one container (ch-run
    // --join-ct from SLURM_STEP_TASKS_PER_NODE, a tag per node and launch).
    let run = launch(
        &s,
        Mode::Hybrid,
        4,
        &["allreduce", "-m", "4:16", "-i", "10", "-x", "2"],
    );
    assert_eq!(run.rows[0].comm_size, 4);
}

#[test]
fn inside_mode_runs_the_containers_mpiexec() {
    let Some(s) = setup() else { return };
    // No srun: ch-run IMAGE -- mpiexec.hydra -n 2 hybench, on this node.
    let run = launch(&s, Mode::Inside, 2, &LATENCY);
    let host = inode(Path::new(HOST_LIBMPICH));
    for r in &run.rows {
        assert_ne!(r.mpi_library_inode, host, "the container's own MPICH");
        assert!(r.slurm_job_id.is_empty(), "not a Slurm step");
    }
    assert_eq!(run.records[0]["plan"]["launcher"]["kind"], "none");
}

#[test]
fn openmpi_native_mode_maps_the_host_libmpi() {
    let Some(s) = setup_for(Mpi::OpenMpi) else {
        return;
    };
    let run = launch(&s, Mode::Native, 2, &LATENCY);
    let host = std::fs::canonicalize(HOST_LIBMPI_OPENMPI).expect("host libmpi");
    for r in &run.rows {
        assert_eq!(Path::new(&r.mpi_library), host);
        assert_eq!(r.mpi_library_inode, inode(&host));
    }
    let record = &run.records[0];
    assert_eq!(record["host_libraries"][0]["role"], "profile-mpi");
    assert_eq!(record["plan"]["launcher"]["mpi"], "pmix");
}

/// Needs hybrun's PMIx glue: Slurm's PMIx server announces host paths as Open
/// MPI's session directories (`spmix_appdir_*` under TmpFS), which the image
/// lacks (ORTE_ERROR_LOG session_dir.c:107 without `orte_top_session_dir`).
#[test]
fn openmpi_hybrid_mode_maps_the_containers_libmpi() {
    let Some(s) = setup_for(Mpi::OpenMpi) else {
        return;
    };
    let run = launch(&s, Mode::Hybrid, 2, &LATENCY);
    let host = inode(Path::new(HOST_LIBMPI_OPENMPI));
    for r in &run.rows {
        let in_image = s.image.join(r.mpi_library.trim_start_matches('/'));
        assert!(in_image.is_file(), "{} not in the image", r.mpi_library);
        assert!(r.mpi_library.contains("libmpi.so.40"), "{}", r.mpi_library);
        assert_eq!(r.mpi_library_inode, inode(&in_image));
        assert_ne!(
            r.mpi_library_inode, host,
            "hybrid must not map the host's libmpi.so.40"
        );
    }
    // The gate judged the image before the launch.
    let gate = &run.records[0]["compatibility"];
    assert_eq!(gate["mode"], "hybrid");
    assert_ne!(gate["status"], "FAIL", "{gate}");
    assert_eq!(run.records[0]["plan"]["launcher"]["mpi"], "pmix");
}

/// The host's Open MPI entirely: libmpi.so.40 (the host file's inode, at the
/// bind directory) and its MCA components from the bound host component
/// directory (`OMPI_MCA_mca_base_component_path`), not the image's copies at
/// /usr/lib/x86_64-linux-gnu/openmpi/lib/openmpi3.
#[test]
fn openmpi_bind_mode_maps_the_host_libmpi_and_components() {
    let Some(s) = setup_for(Mpi::OpenMpi) else {
        return;
    };
    let (run, log) = launch_with(
        &s,
        Mode::Bind,
        2,
        &LATENCY,
        &[
            "OMPI_MCA_mca_base_verbose=stdout,level:40",
            "PMIX_MCA_mca_base_verbose=stdout,level:40",
        ],
    );
    let host = inode(Path::new(HOST_LIBMPI_OPENMPI));
    for r in &run.rows {
        assert_eq!(
            r.mpi_library,
            format!("{BIND_DIR}/libmpi.so.40"),
            "loaded from the bind directory"
        );
        assert_eq!(
            r.mpi_library_inode, host,
            "the host's libmpi.so.40 (a hard link to it), not the image's"
        );
    }
    // Open MPI's component log: "examining dynamic pml MCA component "ob1" at
    // path <dir>/mca_pml_ob1", once per rank, from the bound host directory.
    let ob1: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("MCA component \"ob1\" at path"))
        .collect();
    assert!(ob1.len() >= 2, "no pml/ob1 in the component log:\n{log}");
    for line in &ob1 {
        assert!(
            line.contains(&format!("{BIND_DIR}/openmpi-components/mca_pml_ob1")),
            "{line}"
        );
    }
    // PMIx's components too (PMIx searches its pkglibdir first: PMIX_PKGLIBDIR).
    assert!(
        log.contains(&format!("at path {BIND_DIR}/pmix-components/")),
        "no PMIx component from the bound dir:\n{log}"
    );
    assert!(
        !log.contains("at path /usr/lib/x86_64-linux-gnu/"),
        "a component came from the image:\n{log}"
    );
    let record = &run.records[0];
    let mapped = &record["host_libraries"][0];
    assert_eq!(mapped["role"], "mpi");
    assert_eq!(mapped["soname"], "libmpi.so.40");
    assert_eq!(mapped["ino"], host);
    assert_eq!(record["plan"]["launcher"]["mpi"], "pmix");
    // The gate judged the image in bind mode.
    assert_eq!(record["compatibility"]["mode"], "bind");
    assert_ne!(record["compatibility"]["status"], "FAIL");
}
