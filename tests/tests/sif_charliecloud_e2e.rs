//! ch-run with SquashFS images end to end: the MPICH test image as SIF (its
//! primary partition mounted at its offset) and as `.sqfs`, mounted once per
//! node by `hybrun exec`'s holder in a private mount namespace (see
//! hybrun::launch::image_mount), judged by what hybench recorded about the
//! libmpich each rank mapped, and by what is left mounted after a kill.
//!
//! - One node, mpiexec (hydra): both ranks map the same file from one mount
//!   (`mpi_library_uniform`), a FUSE file (anonymous device 00:*), not the
//!   host's; the record names the mount and its offset.
//! - Kills (`kill -9` of a rank; of the holder and then the whole job): the
//!   mount never appears in this (the host's) mount table, and afterwards no
//!   process anywhere has it, no holder and no squashfuse is left.
//! - Two nodes of the local cluster, srun, hybrid and bind mode.
//!
//! Needs: ch-run, squashfuse, root (/dev/fuse is 0600 here), the MPICH test
//! images (scripts/make-test-images mpich) and, for the cluster test, the
//! cluster (scripts/cluster). A missing piece fails under CI and skips loudly
//! elsewhere. MPICH across the cluster's nodes needs UCX_POSIX_USE_PROC_LINK=n
//! (PLATFORM.md).

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hybrun_e2e::{cluster, describe, on_path, parse_rows, repo_root, require, run_with_timeout};

const LIMIT: Duration = Duration::from_secs(180);
const HOST_LIBMPICH: &str = "/usr/lib/x86_64-linux-gnu/libmpich.so.12";
const BIND_DIR: &str = "/opt/host-mpi/lib";
const LATENCY: [&str; 7] = ["latency", "-m", "1:64", "-i", "100", "-x", "10"];
/// For 4 ranks (latency takes exactly 2).
const ALLREDUCE: [&str; 7] = ["allreduce", "-m", "4:16", "-i", "10", "-x", "2"];

struct Setup {
    hybrun: PathBuf,
    images: PathBuf,
}

fn setup() -> Option<Setup> {
    let hybrun = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.join("hybrun")))
        .filter(|p| p.is_file());
    if !require(
        "the hybrun binary",
        hybrun.is_some(),
        "cargo build -p hybrun (cargo test of the workspace builds it)",
    ) || !require("ch-run", on_path("ch-run"), "run scripts/setup")
        || !require("squashfuse", on_path("squashfuse"), "run scripts/setup")
        || !require(
            "root (SquashFS images need /dev/fuse, 0600 here)",
            std::fs::metadata("/proc/self")
                .map(|m| m.uid() == 0)
                .unwrap_or(false),
            "run the tests as root",
        )
    {
        return None;
    }
    let hybrun = hybrun?;
    let images = repo_root().join("target/images");
    if !images.join("mpich.sif").is_file() || !images.join("mpich.sqfs").is_file() {
        let out = Command::new(repo_root().join("scripts/make-test-images"))
            .arg("mpich")
            .env("HYBRUN", &hybrun)
            .output();
        let ok = out.as_ref().is_ok_and(|o| o.status.success());
        if !require(
            "the MPICH test images (mpich.sif, mpich.sqfs)",
            ok && images.join("mpich.sif").is_file(),
            "scripts/make-test-images mpich",
        ) {
            return None;
        }
    }
    Some(Setup { hybrun, images })
}

/// A scratch directory with the site file (ch-run, MPICH's profile, records),
/// an output directory bound at /mnt, and TMPDIR for the mount directories.
struct Work {
    dir: tempfile::TempDir,
}

impl Work {
    fn new() -> Work {
        let dir = tempfile::tempdir_in(repo_root().join("target")).expect("work dir");
        for sub in ["out", "records", "tmp"] {
            std::fs::create_dir_all(dir.path().join(sub)).expect("mkdir");
        }
        std::fs::write(
            dir.path().join("site.toml"),
            format!(
                "[runtime]\nkind = \"charliecloud\"\nbind_dir = \"{BIND_DIR}\"\n\
                 [launcher]\nrecord_dir = \"{}\"\n\
                 [mpi.mpich]\nabi = \"mpich\"\npmi = \"pmi2\"\nlibrary = \"{HOST_LIBMPICH}\"\n",
                dir.path().join("records").display()
            ),
        )
        .expect("site");
        Work { dir }
    }

    fn path(&self, sub: &str) -> PathBuf {
        self.dir.path().join(sub)
    }

    /// `hybrun run` with this site, bound output and TMPDIR.
    fn run(&self, s: &Setup, mode: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(&s.hybrun);
        cmd.env("USER", "root")
            .env("TMPDIR", self.path("tmp"))
            .env("XDG_CACHE_HOME", repo_root().join("target/e2e-cache"))
            .args([
                "run",
                "--site",
                self.path("site.toml").to_str().expect("utf-8"),
            ])
            .args(["--mode", mode, "--mpi-profile", "mpich"])
            .args(["--env", "UCX_POSIX_USE_PROC_LINK=n"])
            .args(["-B", &format!("{}:/mnt", self.path("out").display())])
            .args(args);
        cmd
    }

    /// Adds a per-user allowed directory to the site file and admits `image`
    /// there with `hybrun image cp`; the admitted copy's path.
    fn admit(&self, s: &Setup, image: &Path) -> PathBuf {
        let allowed = self.path("allowed");
        std::fs::create_dir_all(allowed.join("root")).expect("mkdir");
        let site = self.path("site.toml");
        let mut text = std::fs::read_to_string(&site).expect("site");
        text.push_str(&format!(
            "[images]\ndir = \"{}/{{user}}\"\n",
            allowed.display()
        ));
        std::fs::write(&site, text).expect("site");
        let mut cmd = Command::new(&s.hybrun);
        cmd.env("USER", "root")
            .args(["image", "cp", "--site", site.to_str().expect("utf-8")])
            .arg(image);
        let out = run_with_timeout(&cmd, LIMIT);
        assert!(out.status.success(), "{}", describe(&cmd, &out));
        let admitted = allowed.join("root").join(image.file_name().expect("name"));
        assert!(admitted.is_file(), "{}", describe(&cmd, &out));
        admitted
    }

    /// A FIFO name unique to this work directory (so its ranks can be told apart).
    fn fifo_name(&self) -> String {
        format!(
            "fifo{}",
            self.dir.path().file_name().expect("name").to_string_lossy()
        )
    }

    fn fifo_in_container(&self) -> String {
        format!("/mnt/{}", self.fifo_name())
    }

    fn record(&self) -> serde_json::Value {
        let entry = std::fs::read_dir(self.path("records"))
            .expect("records")
            .next()
            .expect("one record")
            .expect("entry");
        serde_json::from_slice(&std::fs::read(entry.path()).expect("read")).expect("json")
    }
}

/// Processes (other than this test) whose mount table has `needle`.
fn mounted_anywhere(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.parse::<u32>().is_err() {
            continue;
        }
        let mounts = std::fs::read_to_string(entry.path().join("mounts")).unwrap_or_default();
        if mounts.contains(needle) {
            let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push(format!("{name}: {}", String::from_utf8_lossy(&cmd)));
        }
    }
    found
}

/// Processes whose command line has `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let text = String::from_utf8_lossy(&cmd).replace('\0', " ");
        if text.contains(needle) && !text.contains("sif_charliecloud_e2e") {
            found.push(format!("{}: {text}", entry.file_name().to_string_lossy()));
        }
    }
    found
}

/// Waits (10 s at most) until nothing under `tmp` is mounted anywhere and no
/// holder or squashfuse for it runs.
fn assert_nothing_left(tmp: &Path) {
    let needle = tmp.to_str().expect("utf-8");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mounts = mounted_anywhere(needle);
        let procs = processes_with(needle);
        if mounts.is_empty() && procs.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "left behind: mounts {mounts:?}, processes {procs:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// After a job that ended by itself: each node's holder removed its directory
/// (lock files, mount point), so nothing accumulates in TMPDIR.
fn assert_directories_removed(tmp: &Path) {
    for base in std::fs::read_dir(tmp).expect("tmp").flatten() {
        let left: Vec<_> = std::fs::read_dir(base.path())
            .expect("base")
            .flatten()
            .map(|e| e.path())
            .collect();
        assert!(
            left.is_empty(),
            "left in {}: {left:?}",
            base.path().display()
        );
    }
}

/// The hybench rows of a container run, checked as every run's.
fn rows_of(w: &Work, cmd: &Command, ranks: u32) -> Vec<hybrun_core::schema::ResultRow> {
    let out = run_with_timeout(cmd, LIMIT);
    assert!(out.status.success(), "{}", describe(cmd, &out));
    let text = std::fs::read_to_string(w.path("out/result.csv"))
        .unwrap_or_else(|e| panic!("no result.csv ({e}): {}", describe(cmd, &out)));
    let rows = parse_rows(&text);
    assert!(!rows.is_empty());
    for r in &rows {
        assert_eq!(r.comm_size, ranks);
        assert_eq!(r.validation, "pass");
    }
    rows
}

fn hybench_args(bench: &[&'static str]) -> Vec<&'static str> {
    let mut args = vec!["--", "/app/hybench"];
    args.extend(bench);
    args.extend([
        "--validate",
        "--format",
        "csv",
        "--output",
        "/mnt/result.csv",
    ]);
    args
}

/// A file of the image's own (through the node's FUSE mount: an anonymous
/// device, major 0), at a path the image has, not the host's libmpich.
fn assert_images_libmpich(s: &Setup, r: &hybrun_core::schema::ResultRow) {
    let in_image = s
        .images
        .join("mpich")
        .join(r.mpi_library.trim_start_matches('/'));
    assert!(in_image.is_file(), "{} not in the image", r.mpi_library);
    assert!(
        r.mpi_library_dev.starts_with("00:"),
        "a FUSE file: {}",
        r.mpi_library_dev
    );
    let host = std::fs::metadata(HOST_LIBMPICH)
        .expect("host libmpich")
        .ino();
    assert_ne!(r.mpi_library_inode, host, "not the host's libmpich");
}

#[test]
fn sif_and_sqfs_run_from_one_mount_per_node_with_mpiexec() {
    let Some(s) = setup() else { return };
    for (form, offset_positive) in [("mpich.sif", true), ("mpich.sqfs", false)] {
        let w = Work::new();
        let image = s.images.join(form);
        let mut cmd = w.run(&s, "hybrid", &["--launcher", "mpiexec-hydra", "-n", "2"]);
        cmd.arg(&image).args(hybench_args(&LATENCY));
        let rows = rows_of(&w, &cmd, 2);
        for r in &rows {
            assert!(
                r.mpi_library_uniform,
                "{form}: both ranks of the node map one file of one mount"
            );
            assert_images_libmpich(&s, r);
        }
        let record = w.record();
        let mount = &record["plan"]["rank"]["mount"];
        assert_eq!(
            mount["image"],
            std::fs::canonicalize(&image)
                .expect("canonical")
                .to_str()
                .expect("utf-8")
        );
        assert_eq!(
            mount["offset"].as_u64().expect("offset") > 0,
            offset_positive,
            "{form}: {mount}"
        );
        let notes = record["plan"]["notes"].to_string();
        assert!(notes.contains("squashfuse -f -o offset="), "{notes}");
        assert_nothing_left(&w.path("tmp"));
        assert_directories_removed(&w.path("tmp"));
    }
}

/// The node's holder pid and mount point, once the job's image is mounted.
fn wait_for_holder(tmp: &Path) -> (u32, PathBuf) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let base = std::fs::read_dir(tmp).ok().and_then(|mut d| d.next());
        if let Some(Ok(base)) = base {
            if let Some(Ok(node)) = std::fs::read_dir(base.path())
                .ok()
                .and_then(|mut d| d.next())
            {
                let holder =
                    std::fs::read_to_string(node.path().join("holder")).unwrap_or_default();
                if let Some(pid) = holder
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse().ok())
                {
                    return (pid, node.path().join("root"));
                }
            }
        }
        assert!(
            Instant::now() < deadline,
            "no holder started under {}",
            tmp.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The job's ranks: `cat` of the job's own FIFO (ch-run runs them in a mount
/// namespace of their own, copied from the holder's, with its own TMPDIR).
fn ranks_of(w: &Work) -> Vec<u32> {
    let mut ranks = Vec::new();
    let wanted = format!("/bin/cat\0{}\0", w.fifo_in_container());
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cmd == wanted.as_bytes() {
            ranks.push(pid);
        }
    }
    ranks
}

/// Both ranks, once ch-run started them.
fn wait_for_ranks(w: &Work) -> Vec<u32> {
    wait_for_n_ranks(w, 2)
}

fn wait_for_n_ranks(w: &Work, n: usize) -> Vec<u32> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ranks = ranks_of(w);
        if ranks.len() == n {
            return ranks;
        }
        assert!(Instant::now() < deadline, "ranks not started: {ranks:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn kill9(pid: u32) {
    let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
}

/// A 2-rank job whose ranks block (reading a FIFO nobody writes), the holder
/// and its mount point once mounted.
fn blocked_job(s: &Setup, w: &Work) -> (std::process::Child, u32, PathBuf) {
    blocked_job_with(s, w, &["--launcher", "mpiexec-hydra", "-n", "2"], None)
}

fn blocked_job_with(
    s: &Setup,
    w: &Work,
    shape: &[&str],
    conf: Option<&Path>,
) -> (std::process::Child, u32, PathBuf) {
    let fifo = w.path("out").join(w.fifo_name());
    let status = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(status.success());
    let mut cmd = w.run(s, "hybrid", shape);
    if let Some(conf) = conf {
        cmd.env("SLURM_CONF", conf);
    }
    cmd.arg(s.images.join("mpich.sif"))
        .args(["--", "/bin/cat", &w.fifo_in_container()])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let child = cmd.spawn().expect("hybrun run");
    let (holder, root) = wait_for_holder(&w.path("tmp"));
    let theirs = std::fs::read_to_string(format!("/proc/{holder}/mounts")).expect("mounts");
    let root_text = root.to_str().expect("utf-8");
    assert!(
        theirs.contains(root_text),
        "mounted in the holder's namespace"
    );
    let ours = std::fs::read_to_string("/proc/self/mounts").expect("mounts");
    assert!(!ours.contains(root_text), "never in the host's mount table");
    (child, holder, root)
}

fn reap(mut child: std::process::Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while matches!(child.try_wait(), Ok(None)) {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.wait();
}

#[test]
fn killing_a_rank_leaves_no_mount() {
    let Some(s) = setup() else { return };
    let w = Work::new();
    let (child, _holder, _root) = blocked_job(&s, &w);
    let ranks = wait_for_ranks(&w);
    // One rank killed: mpiexec ends the job; the holder sees no rank left.
    kill9(ranks[0]);
    reap(child);
    for pid in ranks_of(&w) {
        kill9(pid);
    }
    assert_nothing_left(&w.path("tmp"));
}

#[test]
fn killing_the_holder_then_the_job_leaves_no_mount() {
    let Some(s) = setup() else { return };
    let w = Work::new();
    let (child, holder, _root) = blocked_job(&s, &w);
    let ranks = wait_for_ranks(&w);
    // The holder killed first: its squashfuse dies with it (PR_SET_PDEATHSIG).
    kill9(holder);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_with("squashfuse -f -o offset")
        .iter()
        .all(|p| !p.contains(w.path("tmp").to_str().expect("utf-8")))
    {
        assert!(Instant::now() < deadline, "squashfuse outlived its holder");
        std::thread::sleep(Duration::from_millis(50));
    }
    // Then the whole job, as a batch system's kill does.
    for pid in ranks {
        kill9(pid);
    }
    kill9(child.id());
    reap(child);
    assert_nothing_left(&w.path("tmp"));
}

/// srun over 2 nodes, 4 ranks: hybrid maps the image's libmpich, bind the
/// host's, both from each node's own mount of the SIF (and of the `.sqfs`).
#[test]
fn sif_and_sqfs_across_two_nodes_hybrid_and_bind() {
    let Some(s) = setup() else { return };
    let Some(conf) = cluster() else { return };
    for (form, mode) in [
        ("mpich.sif", "hybrid"),
        ("mpich.sif", "bind"),
        ("mpich.sqfs", "hybrid"),
        ("mpich.sqfs", "bind"),
    ] {
        let w = Work::new();
        let mut cmd = w.run(&s, mode, &["-N", "2", "-n", "4", "-t", "3"]);
        cmd.env("SLURM_CONF", &conf)
            .arg(s.images.join(form))
            .args(hybench_args(&ALLREDUCE));
        let rows = rows_of(&w, &cmd, 4);
        let host = std::fs::metadata(HOST_LIBMPICH).expect("host").ino();
        for r in &rows {
            assert_eq!(r.nodes, 2, "{}", r.rank_placement);
            if mode == "hybrid" {
                assert_images_libmpich(&s, r);
            } else {
                assert_eq!(r.mpi_library, format!("{BIND_DIR}/libmpich.so.12"));
                assert_eq!(r.mpi_library_inode, host, "the host's file");
            }
        }
        let record = w.record();
        assert_eq!(record["exit_code"], 0);
        let offset = record["plan"]["rank"]["mount"]["offset"].as_u64();
        assert_eq!(
            offset > Some(0),
            form.ends_with(".sif"),
            "{form}: {offset:?}"
        );
        assert_nothing_left(&w.path("tmp"));
        assert_directories_removed(&w.path("tmp"));
    }
}

/// An image `hybrun image cp` admitted to the per-user allowed directory, run
/// the same way (srun, 2 nodes, hybrid) with a site file whose runtime is
/// charliecloud.
#[test]
fn image_admitted_by_image_cp_runs_across_two_nodes() {
    let Some(s) = setup() else { return };
    let Some(conf) = cluster() else { return };
    let w = Work::new();
    let admitted = w.admit(&s, &s.images.join("mpich.sif"));
    let mut cmd = w.run(&s, "hybrid", &["-N", "2", "-n", "4", "-t", "3"]);
    cmd.env("SLURM_CONF", &conf)
        .arg(&admitted)
        .args(hybench_args(&ALLREDUCE));
    for r in &rows_of(&w, &cmd, 4) {
        assert_eq!(r.nodes, 2, "{}", r.rank_placement);
        assert_images_libmpich(&s, r);
    }
    let record = w.record();
    assert_eq!(
        record["plan"]["rank"]["mount"]["image"],
        admitted.to_str().expect("utf-8")
    );
    assert_nothing_left(&w.path("tmp"));
    assert_directories_removed(&w.path("tmp"));
}

/// srun over 2 nodes: srun killed with `kill -9` mid-run, then the job
/// cancelled (as the batch system ends it): no mount, holder or squashfuse is
/// left on either node.
#[test]
fn killing_srun_then_cancelling_the_job_leaves_no_mount() {
    let Some(s) = setup() else { return };
    let Some(conf) = cluster() else { return };
    let w = Work::new();
    let (child, _holder, _root) =
        blocked_job_with(&s, &w, &["-N", "2", "-n", "4", "-t", "3"], Some(&conf));
    let ranks = wait_for_n_ranks(&w, 4);
    let environ = std::fs::read(format!("/proc/{}/environ", ranks[0])).expect("environ");
    let job = String::from_utf8_lossy(&environ)
        .split('\0')
        .find_map(|v| v.strip_prefix("SLURM_JOB_ID=").map(str::to_owned))
        .expect("SLURM_JOB_ID in the rank's environment");
    // srun and its helper (srun forks one).
    let srun: Vec<String> = processes_with(&w.fifo_in_container())
        .into_iter()
        .filter(|p| p.contains(": srun "))
        .collect();
    assert!(!srun.is_empty(), "this job's srun");
    for p in &srun {
        kill9(p.split(':').next().expect("pid").parse().expect("pid"));
    }
    reap(child);
    let status = Command::new("scancel")
        .env("SLURM_CONF", &conf)
        .arg(&job)
        .status()
        .expect("scancel");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(60);
    while !ranks_of(&w).is_empty() {
        assert!(Instant::now() < deadline, "ranks outlived scancel");
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_nothing_left(&w.path("tmp"));
}
