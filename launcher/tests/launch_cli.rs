//! `hybrun run` / `hybrun exec` from the outside: dry runs that round-trip through
//! `sh -c`, behaviour without srun or the runtime on PATH, and bad input that
//! must fail clearly with nothing launched.

mod test_images;

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Output};

const HYBRUN: &str = env!("CARGO_BIN_EXE_hybrun");

/// A scratch world: site file, allowed directory, images, a PATH of fakes.
struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    site: PathBuf,
    allowed: PathBuf,
    bin: PathBuf,
    home: PathBuf,
}

impl World {
    /// The world, with the MPICH test image admitted as `app.sif` by `hybrun
    /// image cp` (the only way an image may run from the allowed directory).
    fn new() -> World {
        let w = World::bare();
        let images = test_images::images().expect("the test images");
        let out = w.run(&[
            "image",
            "cp",
            "--site",
            w.site(),
            images.join("mpich.sif").to_str().expect("utf-8"),
            "--name",
            "app.sif",
        ]);
        assert!(out.status.success(), "image cp: {}", stderr(&out));
        w
    }

    /// The world with a fake ch-run and a directory image with an MPI.
    fn charliecloud() -> (World, PathBuf) {
        let w = World::new();
        w.fake("ch-run");
        let image = w.root.join("img");
        std::fs::create_dir_all(&image).expect("mkdir");
        with_mpi(&image);
        (w, image)
    }

    /// The world with nothing admitted.
    fn bare() -> World {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = std::fs::canonicalize(tmp.path()).expect("canonical");
        let allowed = root.join("allowed");
        let bin = root.join("bin");
        let home = root.join("home");
        for dir in [&allowed, &bin, &home, &root.join("allowed_evil")] {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        // An Open MPI library with no component directory next to it.
        std::fs::create_dir_all(root.join("bare")).expect("mkdir");
        std::fs::write(root.join("bare/libmpi.so.40"), b"not a library").expect("lib");
        std::fs::write(root.join("allowed_evil/evil.sif"), b"image").expect("image");
        std::os::unix::fs::symlink(
            root.join("allowed_evil/evil.sif"),
            allowed.join("escape.sif"),
        )
        .expect("symlink");
        let site = root.join("site.toml");
        std::fs::write(
            &site,
            format!(
                r#"
[images]
dir = "{allowed}"

[runtime]
kind = "singularity"
version = "3.6.4"

[mpi.mpich]
abi = "mpich"
pmi = "pmi2"
library = "/usr/lib/x86_64-linux-gnu/libmpich.so.12"

[mpi.openmpi]
abi = "openmpi"
pmi = "pmix"
library = "/usr/lib/x86_64-linux-gnu/libmpi.so.40"

[mpi.openmpi-bare]
abi = "openmpi"
library = "{bare}/libmpi.so.40"
"#,
                allowed = allowed.display(),
                bare = root.join("bare").display()
            ),
        )
        .expect("site");
        World {
            _tmp: tmp,
            root,
            site,
            allowed,
            bin,
            home,
        }
    }

    /// A program on the fake PATH that prints its argv, NUL-terminated.
    fn fake(&self, name: &str) {
        let path = self.bin.join(name);
        std::fs::write(&path, "#!/bin/sh\nprintf '%s\\0' \"$0\" \"$@\"\n").expect("fake");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    fn hybrun(&self, args: &[&str]) -> Command {
        let mut command = Command::new(HYBRUN);
        command
            .args(args)
            .env_clear()
            .env("PATH", &self.bin)
            .env("HOME", &self.home)
            .current_dir(&self.root);
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        self.hybrun(args).output().expect("hybrun runs")
    }

    /// The one launch record written so far, parsed.
    fn only_record(&self) -> serde_json::Value {
        let records: Vec<PathBuf> = std::fs::read_dir(self.home.join(".hybrun/records"))
            .expect("records written")
            .map(|e| e.expect("entry").path())
            .collect();
        assert_eq!(records.len(), 1, "one record: {records:?}");
        serde_json::from_slice(&std::fs::read(&records[0]).expect("read")).expect("json")
    }

    fn site(&self) -> &str {
        self.site.to_str().expect("utf-8")
    }
}

/// Makes `image` (a directory) an image with an MPI: the host's libmpich, copied,
/// so that the compatibility gate of hybrid mode lets it through.
fn with_mpi(image: &std::path::Path) {
    let host = std::fs::canonicalize("/usr/lib/x86_64-linux-gnu/libmpich.so.12")
        .expect("host MPICH (scripts/setup installs libmpich-dev)");
    let dir = image.join("usr/lib/x86_64-linux-gnu");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(host, dir.join("libmpich.so.12")).expect("copy libmpich");
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// NUL-separated words.
fn words(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut w: Vec<Vec<u8>> = bytes.split(|&b| b == 0).map(<[u8]>::to_vec).collect();
    w.pop();
    w
}

const HOSTILE: [&str; 9] = [
    "with space",
    "single'quote",
    "double\"quote",
    "$HOME ${PATH} $(id) `id`",
    "new\nline",
    "back\\slash",
    "glob*?[x]",
    "",
    "semi;colon && || > <",
];

#[test]
fn dry_run_round_trips_through_sh() {
    let w = World::new();
    let mut args = vec![
        "run",
        "--site",
        w.site(),
        "--mode",
        "native",
        "--launcher",
        "none",
        "--mpi",
        "none",
        "--env",
        "HYB_VALUE=a b'c$d\ne",
        "--dry-run",
        "--",
        "/bin/sh",
        "-c",
        "printf '%s\\0' \"$HYB_VALUE\" \"$@\"",
        "sh",
    ];
    args.extend(HOSTILE);
    let out = w.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    // The whole output (comments and command) is a shell script.
    let ran = Command::new("/bin/sh")
        .arg("-c")
        .arg(std::ffi::OsStr::from_bytes(&out.stdout))
        .env_clear()
        .output()
        .expect("sh");
    assert!(ran.status.success(), "{}", stderr(&ran));
    let mut want: Vec<Vec<u8>> = vec![b"a b'c$d\ne".to_vec()];
    want.extend(HOSTILE.iter().map(|s| s.as_bytes().to_vec()));
    assert_eq!(words(&ran.stdout), want);
}

#[test]
fn dry_run_srun_singularity_argv_arrives_exactly() {
    let w = World::new();
    w.fake("srun");
    w.fake("singularity");
    let image = w.allowed.join("app.sif");
    let mut args = vec![
        "run",
        "--site",
        w.site(),
        "--mpi-profile",
        "mpich",
        "-N",
        "2",
        "-n",
        "4",
        "-t",
        "00:05:00",
        "-B",
        "/data:/data:ro",
        "--env",
        "OMP_NUM_THREADS=2",
        "--dry-run",
        image.to_str().expect("utf-8"),
        "--",
        "/app/hybench",
    ];
    args.extend(HOSTILE);
    let out = w.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    // Run the printed command with the fakes: srun prints what it received.
    let ran = Command::new("/bin/sh")
        .arg("-c")
        .arg(std::ffi::OsStr::from_bytes(&out.stdout))
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", w.bin.display()))
        .output()
        .expect("sh");
    assert!(ran.status.success(), "{}", stderr(&ran));
    let got = words(&ran.stdout);
    let mut want: Vec<Vec<u8>> = [
        w.bin.join("srun").to_str().expect("utf-8"),
        "-K",
        "--export=ALL",
        "--mpi=pmi2",
        "-N",
        "2",
        "-n",
        "4",
        "-t",
        "00:05:00",
        "singularity",
        "exec",
        "-B",
        "/data:/data:ro",
        image.to_str().expect("utf-8"),
        "/app/hybench",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    want.extend(HOSTILE.iter().map(|s| s.as_bytes().to_vec()));
    assert_eq!(got, want);
}

#[test]
fn json_prints_the_plan() {
    let w = World::new();
    let image = w.allowed.join("app.sif");
    let out = w.run(&[
        "run",
        "--site",
        w.site(),
        "--mpi-profile",
        "mpich",
        // srun named: no Slurm here, which would choose mpiexec.
        "--launcher",
        "srun",
        "--json",
        image.to_str().expect("utf-8"),
        "--",
        "/app/x",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["plan"]["launcher"]["kind"], "srun");
    assert_eq!(doc["plan"]["launcher"]["mpi"], "pmi2");
    assert_eq!(doc["plan"]["rank"]["runtime"]["kind"], "singularity");
    assert_eq!(doc["plan"]["rank"]["runtime"]["version"], "3.6.4");
    assert_eq!(doc["plan"]["rank"]["runtime"]["dialect"], "singularity36");
    assert_eq!(doc["command"]["argv"][0], "srun");
}

#[test]
fn dry_run_without_srun_or_singularity_warns() {
    let w = World::new();
    let image = w.allowed.join("app.sif");
    let out = w.run(&[
        "run",
        "--site",
        w.site(),
        "--mpi-profile",
        "mpich",
        // srun named: no Slurm here, which would choose mpiexec.
        "--launcher",
        "srun",
        "--dry-run",
        image.to_str().expect("utf-8"),
        "--",
        "/app/x",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("warning: launcher \"srun\" not found"),
        "{err}"
    );
    assert!(
        err.contains("warning: runtime \"singularity\" not found"),
        "{err}"
    );
    assert!(stdout(&out).contains("srun -K"), "{}", stdout(&out));
}

/// Runs a failing `hybrun run` (not a dry run, with fakes for srun and the
/// runtime that would leave a mark) and checks the error and that nothing ran.
fn refused(w: &World, args: &[&str], expect: &[&str]) {
    let marker = w.root.join("launched");
    for name in ["srun", "singularity", "ch-run"] {
        let path = w.bin.join(name);
        if path.exists() {
            std::fs::write(&path, format!("#!/bin/sh\ntouch {}\n", marker.display()))
                .expect("fake");
        }
    }
    let mut full = vec!["run", "--site", w.site()];
    full.extend_from_slice(args);
    let out = w.run(&full);
    let err = stderr(&out);
    assert!(!out.status.success(), "{full:?} succeeded: {err}");
    assert!(err.starts_with("hybrun: error: "), "{err}");
    for needle in expect {
        assert!(err.contains(needle), "{full:?}: {needle:?} not in: {err}");
    }
    assert!(!marker.exists(), "{full:?} launched something");
    assert!(
        !w.home.join(".hybrun/records").exists(),
        "{full:?} wrote a launch record"
    );
}

#[test]
fn bad_input_is_refused_with_nothing_launched() {
    let w = World::new();
    w.fake("srun");
    w.fake("singularity");
    let allowed = w.allowed.to_str().expect("utf-8").to_owned();
    let root = w.root.to_str().expect("utf-8").to_owned();
    let missing = format!("{allowed}/missing.sif");
    refused(
        &w,
        &["--mpi-profile", "mpich", &missing, "--", "/app/x"],
        &["missing.sif", "No such file"],
    );
    let sibling = format!("{root}/allowed_evil/evil.sif");
    refused(
        &w,
        &["--mpi-profile", "mpich", &sibling, "--", "/app/x"],
        &[
            "image is not in an allowed configured path",
            &allowed,
            "hybrun image cp",
        ],
    );
    let escape = format!("{allowed}/escape.sif");
    refused(
        &w,
        &["--mpi-profile", "mpich", &escape, "--", "/app/x"],
        &["image is not in an allowed configured path", "resolves to"],
    );
    let image = format!("{allowed}/app.sif");
    refused(
        &w,
        &["--mpi-profile", "nosuch", &image, "--", "/app/x"],
        &["unknown MPI profile \"nosuch\"", "mpich, openmpi"],
    );
    for bind in ["/data/a:b:/x", "/data/a,b:/x", "/data/x:/a,b"] {
        refused(
            &w,
            &["--mpi-profile", "mpich", "-B", bind, &image, "--", "/app/x"],
            &["bind"],
        );
    }
    refused(
        &w,
        &[
            "--mpi-profile",
            "mpich",
            "-B",
            "/data/a,b:/x",
            &image,
            "--",
            "/app/x",
        ],
        &["','"],
    );
}

#[test]
fn mpi_and_profile_mismatches_are_refused_with_nothing_launched() {
    let w = World::new();
    w.fake("srun");
    w.fake("singularity");
    let image = w.allowed.join("app.sif");
    let image = image.to_str().expect("utf-8");
    refused(
        &w,
        &[
            "--mpi-profile",
            "mpich",
            "--mpi",
            "pmix",
            image,
            "--",
            "/app/x",
        ],
        &["--mpi pmix does not fit profile mpich"],
    );
    refused(
        &w,
        &[
            "--mpi-profile",
            "openmpi-bare",
            "--mode",
            "bind",
            // Past the gate (an MPICH image, an Open MPI profile): the point is
            // bind mode's own refusal.
            "--force",
            image,
            "--",
            "/x",
        ],
        // Bind mode with Open MPI needs the host's component directory: none
        // next to this library, so refused with the key to set.
        &[
            "[mpi.openmpi-bare] plugin_dirs",
            "MCA component directory",
            "OMPI_MCA_mca_base_component_path",
        ],
    );
    // No command: clap's usage error (exit 2), nothing launched.
    let out = w.run(&[
        "run",
        "--site",
        w.site(),
        "--mpi-profile",
        "mpich",
        image,
        "--",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("<CMD>"), "{}", stderr(&out));
    refused(
        &w,
        &[
            "--mpi-profile",
            "mpich",
            "--unset",
            "SLURM_JOB_ID",
            image,
            "--",
            "/x",
        ],
        &["SLURM_JOB_ID"],
    );
    // A FIFO planted as the image: refused, not a hang.
    let fifo = w.root.join("allowed/fifo.sif");
    let c = std::ffi::CString::new(fifo.as_os_str().as_bytes()).expect("cstring");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    refused(
        &w,
        &[
            "--mpi-profile",
            "mpich",
            fifo.to_str().expect("utf-8"),
            "--",
            "/x",
        ],
        &["neither a regular file nor a directory"],
    );
}

#[test]
fn dry_run_refuses_policy_violations_too() {
    let w = World::new();
    let sibling = w.root.join("allowed_evil/evil.sif");
    let out = w.run(&[
        "run",
        "--site",
        w.site(),
        "--mpi-profile",
        "mpich",
        "--dry-run",
        sibling.to_str().expect("utf-8"),
        "--",
        "/x",
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not in an allowed configured path"));
    assert!(out.stdout.is_empty());
}

#[test]
fn srun_absent_is_an_error_when_not_dry_run() {
    let w = World::new();
    w.fake("singularity");
    let image = w.allowed.join("app.sif");
    refused(
        &w,
        &[
            "--mpi-profile",
            "mpich",
            // srun named: no Slurm here, which would choose mpiexec.
            "--launcher",
            "srun",
            image.to_str().expect("utf-8"),
            "--",
            "/x",
        ],
        &[
            "launcher \"srun\" not found on PATH",
            "--launcher mpiexec-hydra",
        ],
    );
}

#[test]
fn charliecloud_skips_the_image_policy_and_refuses_an_unreadable_sif() {
    let w = World::new();
    let dir_image = w.root.join("allowed_evil/img");
    std::fs::create_dir_all(dir_image.join("opt")).expect("mkdir");
    with_mpi(&dir_image);
    let out = w.run(&[
        "run",
        "--site",
        w.site(),
        "--runtime",
        "charliecloud",
        "--mpi-profile",
        "mpich",
        // srun named: no Slurm here, which would choose mpiexec.
        "--launcher",
        "srun",
        "--dry-run",
        dir_image.to_str().expect("utf-8"),
        "--",
        "/x",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("hybrun exec"), "{}", stdout(&out));
    let sif = w.allowed.join("app.sif");
    std::fs::write(&sif, [&[b'#'; 32][..], b"SIF_MAGIC\0"].concat()).expect("sif");
    let out = w.run(&[
        "run",
        "--site",
        w.site(),
        "--runtime",
        "charliecloud",
        "--mpi-profile",
        "mpich",
        // srun named: no Slurm here, which would choose mpiexec.
        "--launcher",
        "srun",
        "--dry-run",
        sif.to_str().expect("utf-8"),
        "--",
        "/x",
    ]);
    // ch-run runs a SIF from its partition's per-node mount: a SIF without a
    // readable partition is refused before anything is mounted.
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("cannot read image") && stderr(&out).contains("app.sif"),
        "{}",
        stderr(&out)
    );
}

/// ch-run with a SIF: the dry run says what each node mounts where (the
/// partition's offset, the per-node directory) and that the ranks need `hybrun
/// exec` to join it; `--per-rank direct` is refused with the reason.
#[test]
fn charliecloud_dry_run_shows_the_per_node_mount_of_a_sif() {
    let w = World::new();
    let images = test_images::images().expect("the test images");
    let sif = images.join("mpich.sif");
    let args = |extra: &[&'static str]| {
        let mut a: Vec<String> = [
            "run",
            "--site",
            w.site(),
            "--runtime",
            "charliecloud",
            "--mpi-profile",
            "mpich",
            "--launcher",
            "srun",
            "-N",
            "2",
            "-n",
            "4",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        a.extend(extra.iter().map(|s| (*s).to_owned()));
        a.push(sif.to_str().expect("utf-8").to_owned());
        a.extend(["--".to_owned(), "/app/x".to_owned()]);
        a
    };
    let run = |extra: &[&'static str]| {
        let a = args(extra);
        w.run(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let out = run(&["--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    for want in [
        "image mount: squashfuse -f -o offset=",
        "<launch>.<node>",
        "per rank: hybrun exec: the SquashFS image is mounted once per node",
        "hybrun exec",
    ] {
        assert!(text.contains(want), "{want:?} in {text}");
    }
    let out = run(&["--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let mount = &doc["plan"]["rank"]["mount"];
    assert!(mount["offset"].as_u64() > Some(0), "{mount}");
    assert!(
        mount["mountpoint"]
            .as_str()
            .is_some_and(|m| m.ends_with("/root")),
        "{mount}"
    );
    let out = run(&["--dry-run", "--per-rank", "direct"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--per-rank direct cannot run a SquashFS or SIF image"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn real_run_records_and_propagates_the_exit_status() {
    let w = World::new();
    let out = w
        .hybrun(&[
            "run",
            "--site",
            w.site(),
            "--mode",
            "native",
            "--launcher",
            "none",
            "--mpi",
            "none",
            "--env",
            "HYB_X=1",
            "--",
            "/bin/sh",
            "-c",
            "test \"$HYB_X\" = 1 && exit 3",
        ])
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    let doc = w.only_record();
    assert_eq!(doc["exit_code"], 3);
    assert_eq!(doc["environment"]["set"]["HYB_X"], "1");
    assert_eq!(doc["plan"]["rank"]["mode"], "native");
    assert!(doc["finished"].is_string());
}

#[test]
fn record_of_an_image_has_its_digest() {
    let w = World::new();
    w.fake("singularity");
    let image = w.allowed.join("app.sif");
    let out = w
        .hybrun(&[
            "run",
            "--site",
            w.site(),
            "--launcher",
            "none",
            "--mpi",
            "none",
            image.to_str().expect("utf-8"),
            "--",
            "/x",
        ])
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let doc = w.only_record();
    // What `hybrun image cp` recorded when it admitted the image.
    let index: serde_json::Value = serde_json::from_slice(
        &std::fs::read(w.allowed.join(".hybrun-index.json")).expect("index"),
    )
    .expect("index json");
    assert_eq!(doc["image"]["sha256"], index["images"]["app.sif"]["sha256"]);
    assert_eq!(doc["image"]["kind"], "sif");
}

#[test]
fn exec_joins_charliecloud_ranks_per_node_and_job() {
    let (w, image) = World::charliecloud();
    let out = w
        .hybrun(&[
            "exec",
            "--site",
            w.site(),
            "--runtime",
            "charliecloud",
            "--dry-run",
            image.to_str().expect("utf-8"),
            "--",
            "/app/x",
        ])
        .env("SLURM_STEP_TASKS_PER_NODE", "2(x2)")
        .env("SLURM_NODEID", "1")
        .env("SLURM_JOB_ID", "42")
        .env("SLURM_STEP_ID", "0")
        .env("SLURMD_NODENAME", "node2")
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("ch-run --join-ct=2 --join-tag=hybrun.42.0.node2 "),
        "{text}"
    );
}

#[test]
fn exec_pmix_glue() {
    let w = World::new();
    w.fake("singularity");
    let server = w.root.join("spool/node1/pmix.7.0");
    std::fs::create_dir_all(&server).expect("mkdir");
    let image = w.allowed.join("app.sif");
    let out = w
        .hybrun(&[
            "exec",
            "--site",
            w.site(),
            "--dry-run",
            image.to_str().expect("utf-8"),
            "--",
            "/app/x",
        ])
        .env("PMIX_NAMESPACE", "slurm.pmix.7.0")
        .env("PMIX_RANK", "0")
        .env("PMIX_SECURITY_MODE", "native")
        .env("PMIX_GDS_MODULE", "ds21,ds12,hash")
        .env("PMIX_SERVER_TMPDIR", format!("{}/", server.display()))
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let line = text.lines().last().expect("command");
    assert!(
        line.contains("SINGULARITYENV_PMIX_MCA_psec=native"),
        "{line}"
    );
    assert!(
        line.contains("'SINGULARITYENV_PMIX_MCA_gds=ds21,ds12,hash'")
            || line.contains("SINGULARITYENV_PMIX_MCA_gds=ds21,ds12,hash"),
        "{line}"
    );
    assert!(
        line.contains(&format!("-B {}:{}", server.display(), server.display())),
        "{line}"
    );
}

#[test]
fn exec_replaces_itself_with_the_runtime() {
    let (w, image) = World::charliecloud();
    let out = w.run(&[
        "exec",
        "--site",
        w.site(),
        "--runtime",
        "charliecloud",
        "--env",
        "A=x y",
        image.to_str().expect("utf-8"),
        "--",
        "/app/x",
        "arg with space",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let got = words(&out.stdout);
    let want: Vec<Vec<u8>> = [
        w.bin.join("ch-run").to_str().expect("utf-8"),
        "--set-env=A=x y",
        image.to_str().expect("utf-8"),
        "--",
        "/app/x",
        "arg with space",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    assert_eq!(got, want);
}

#[test]
fn example_site_file_is_valid_and_plans() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/site.example.toml");
    let site = hybrun::site::Site::read(std::path::Path::new(example), "--site")
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        site.config.runtime.version,
        Some(hybrun_core::vocab::Version::new(3, 6, 4))
    );
    assert!(site.config.mpi.contains_key("mpich") && site.config.mpi.contains_key("openmpi"));
    let w = World::new();
    let image = w.allowed.join("app.sif");
    let out = w
        .hybrun(&[
            "run",
            "--site",
            example,
            "--dry-run",
            "-N",
            "2",
            "--gpus-per-node",
            "1",
            // The example site is on Omni-Path (psm2), and the MPICH test image
            // has UCX only: hybrid mode is refused without --force.
            "--force",
            image.to_str().expect("utf-8"),
            "--",
            "/app/x",
        ])
        .env("SINGULARITY_ALLOWED_DIR", &w.allowed)
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("the site's fabric is psm2 and the image's MPI cannot drive it"),
        "{}",
        stderr(&out)
    );
    let text = stdout(&out);
    let last = text.lines().last().expect("line");
    // GPUs per rank and CPU binding near them: the per-rank wrapper.
    assert!(
        last.contains("--mpi=pmi2") && last.contains("hybrun exec"),
        "{last}"
    );
    let line = text
        .lines()
        .find_map(|l| l.strip_prefix("# per rank, as resolved on this host: "))
        .expect("the rank's command")
        .to_owned();
    assert!(line.contains("SINGULARITYENV_FI_PROVIDER=psm2"), "{line}");
    assert!(
        line.contains(
            "/usr/local/bin/singularity exec --nv -B /gpfs:/gpfs -B /etc/slurm:/etc/slurm:ro"
        ),
        "{line}"
    );
    assert!(line.contains("-u DISPLAY"), "{line}");
}

#[test]
fn unreadable_image_is_refused() {
    let w = World::new();
    w.fake("ch-run");
    let marker = w.root.join("launched");
    std::fs::write(
        w.bin.join("ch-run"),
        format!("#!/bin/sh\ntouch {}\n", marker.display()),
    )
    .expect("fake");
    for dir in [&w.root, &w.bin, &w.allowed] {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    let secret = w.root.join("secret");
    std::fs::create_dir_all(&secret).expect("mkdir");
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).expect("chmod");
    let args = [
        "run",
        "--site",
        w.site(),
        "--runtime",
        "charliecloud",
        "--launcher",
        "none",
        "--mpi",
        "none",
        secret.to_str().expect("utf-8"),
        "--",
        "/x",
    ];
    // Root reads everything: run as nobody to meet a permission check.
    let mut command = if unsafe { libc::geteuid() } == 0 {
        if !std::path::Path::new("/usr/bin/setpriv").exists() {
            eprintln!("SKIPPED: running as root without setpriv to drop privileges");
            return;
        }
        let mut c = Command::new("/usr/bin/setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", HYBRUN]);
        c
    } else {
        Command::new(HYBRUN)
    };
    let out = command
        .args(args)
        .env_clear()
        .env("PATH", &w.bin)
        .env("HOME", &w.home)
        .output()
        .expect("runs");
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("cannot open it: Permission denied"), "{err}");
    assert!(err.contains("secret"), "{err}");
    assert!(!marker.exists(), "launched despite the error");
}

#[test]
fn record_names_the_host_mpi_library_and_its_soname() {
    let lib = std::path::Path::new("/usr/lib/x86_64-linux-gnu/libmpich.so.12");
    if !lib.exists() {
        eprintln!("SKIPPED: no host MPICH (scripts/setup installs it)");
        return;
    }
    let w = World::new();
    let out = w.run(&[
        "run",
        "--site",
        w.site(),
        "--mode",
        "native",
        "--launcher",
        "none",
        "--mpi-profile",
        "mpich",
        "--",
        "/bin/true",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc = w.only_record();
    let host = &doc["host_libraries"][0];
    assert_eq!(host["role"], "profile-mpi");
    assert_eq!(host["name"], "libmpich.so.12");
    assert_eq!(host["soname"], "libmpich.so.12");
    let canonical = std::fs::canonicalize(lib).expect("canonical");
    assert_eq!(host["path"], canonical.to_str().expect("utf-8"));
    assert_eq!(doc["mpi_profile"], "mpich");
}

/// Bind mode under Singularity: the runtime injects SINGULARITYENV_* after the
/// image's environment scripts, so hybrun must hand it the host MPI directory
/// followed by what the image sets for itself (here: a CUDA image's OCI ENV and
/// its %environment), and say so when it cannot tell what the image sets.
#[test]
fn bind_mode_keeps_the_images_own_library_path_behind_the_host_mpi() {
    if !std::path::Path::new("/usr/lib/x86_64-linux-gnu/libmpich.so.12").exists() {
        assert!(std::env::var_os("CI").is_none(), "host MPICH missing");
        eprintln!("SKIPPED: no host MPICH (scripts/setup installs it)");
        return;
    }
    let w = World::new();
    // A singularity that prints what the container's environment would receive.
    let fake = w.bin.join("singularity");
    std::fs::write(
        &fake,
        "#!/bin/sh\nprintf 'LD=%s\\n' \"$SINGULARITYENV_LD_LIBRARY_PATH\"\n",
    )
    .expect("fake");
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    // Outside any image policy: a directory image is no SIF that `hybrun image
    // cp` could admit, and the point here is the environment.
    let site = w.root.join("site-no-images.toml");
    let text = std::fs::read_to_string(&w.site).expect("site");
    let text = text.replace(
        &format!("[images]\ndir = \"{}\"\n", w.allowed.display()),
        "",
    );
    assert!(!text.contains("[images]"), "{text}");
    std::fs::write(&site, text).expect("site");
    let image = w.root.join("cuda-app");
    let env_dir = image.join(".singularity.d/env");
    std::fs::create_dir_all(&env_dir).expect("mkdir");
    std::fs::write(
        env_dir.join("10-docker2singularity.sh"),
        "#!/bin/sh\nexport PATH=\"/usr/local/bin:/usr/bin:/bin\"\n\
         export LD_LIBRARY_PATH=\"${LD_LIBRARY_PATH:-\"/usr/local/cuda/compat/lib:/usr/local/nvidia/lib64\"}\"\n",
    )
    .expect("docker env");
    let environment = env_dir.join("90-environment.sh");
    std::fs::write(
        &environment,
        "#!/bin/sh\n# Custom environment shell code should follow\n\
         export LD_LIBRARY_PATH=/opt/app/lib:$LD_LIBRARY_PATH\n",
    )
    .expect("environment");
    // The runtime's own 99-base.sh tests LD_LIBRARY_PATH: not the image's value.
    std::fs::write(
        env_dir.join("99-base.sh"),
        "if [ -z \"$LD_LIBRARY_PATH\" ]; then LD_LIBRARY_PATH=/.singularity.d/libs; fi\n",
    )
    .expect("base");
    let exec = |w: &World, image: &std::path::Path| {
        w.run(&[
            "exec",
            "--site",
            site.to_str().expect("utf-8"),
            "--mode",
            "bind",
            "--mpi-profile",
            "mpich",
            "--skip-gate",
            image.to_str().expect("utf-8"),
            "--",
            "/app/x",
        ])
    };
    // The same image as a SIF file (SquashFS read in place, as at a site).
    let sqfs = w.root.join("cuda-app.sqfs");
    let made = Command::new("mksquashfs")
        .arg(&image)
        .arg(&sqfs)
        .args(["-noappend", "-quiet", "-all-root"])
        .output()
        .expect("mksquashfs (scripts/setup installs squashfs-tools)");
    assert!(made.status.success(), "{}", stderr(&made));
    let sif = w.root.join("cuda-app.sif");
    let wrapped = Command::new(HYBRUN)
        .args(["image", "wrap"])
        .arg(&sqfs)
        .arg(&sif)
        .output()
        .expect("hybrun image wrap");
    assert!(wrapped.status.success(), "{}", stderr(&wrapped));
    for form in [&image, &sif] {
        let out = exec(&w, form);
        assert!(out.status.success(), "{}", stderr(&out));
        assert_eq!(
            stdout(&out),
            "LD=/opt/hybrun/host-mpi/lib:/opt/app/lib:/usr/local/cuda/compat/lib:/usr/local/nvidia/lib64\n",
            "{}",
            form.display()
        );
        assert!(!stderr(&out).contains("warning"), "{}", stderr(&out));
    }

    // A value only the shell knows: the host MPI directory alone, and a warning
    // that names the line and the way out.
    std::fs::write(&environment, "export LD_LIBRARY_PATH=$CUDA_HOME/lib64\n").expect("rewrite");
    let out = exec(&w, &image);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), "LD=/opt/hybrun/host-mpi/lib\n");
    let err = stderr(&out);
    for want in [
        "warning",
        "/.singularity.d/env/90-environment.sh:1 sets LD_LIBRARY_PATH",
        "--env LD_LIBRARY_PATH=/opt/hybrun/host-mpi/lib:",
    ] {
        assert!(err.contains(want), "{want:?} in {err}");
    }
}

/// Only images `hybrun image cp` admitted, unchanged since, run from the
/// allowed directory: planted, modified, nested, special and hybrun's own files
/// are refused with the rule that refused them and how to admit an image.
#[test]
fn launch_policy_admits_only_what_image_cp_admitted() {
    let w = World::new();
    w.fake("srun");
    w.fake("singularity");
    let images = test_images::images().expect("the test images");
    let sif = images.join("mpich.sif");
    let run = |image: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "run",
            "--site",
            w.site(),
            "--mpi-profile",
            "mpich",
            "--dry-run",
        ];
        args.extend_from_slice(extra);
        args.extend([image.to_str().expect("utf-8"), "--", "/app/x"]);
        w.run(&args)
    };
    let refused_by = |image: &std::path::Path, rule: &str| {
        let out = run(image, &[]);
        let err = stderr(&out);
        assert!(!out.status.success(), "{} ran: {err}", image.display());
        for needle in [
            "image is not in an allowed configured path",
            rule,
            "hybrun image cp",
        ] {
            assert!(
                err.contains(needle),
                "{}: {needle:?} not in {err}",
                image.display()
            );
        }
    };
    // A valid SIF planted with plain cp, a non-SIF named .sif, a hard link.
    std::fs::copy(&sif, w.allowed.join("planted.sif")).expect("cp");
    refused_by(&w.allowed.join("planted.sif"), "index does not list it");
    std::fs::write(w.allowed.join("text.sif"), b"not an image").expect("write");
    refused_by(&w.allowed.join("text.sif"), "index does not list it");
    std::fs::hard_link(w.allowed.join("planted.sif"), w.allowed.join("linked.sif")).expect("ln");
    refused_by(&w.allowed.join("linked.sif"), "index does not list it");
    // Nested, a directory, hybrun's own files.
    std::fs::create_dir_all(w.allowed.join("sub")).expect("mkdir");
    std::fs::copy(&sif, w.allowed.join("sub/deep.sif")).expect("cp");
    refused_by(
        &w.allowed.join("sub/deep.sif"),
        "not directly in the allowed directory",
    );
    std::fs::create_dir_all(w.allowed.join("dir.sif")).expect("mkdir");
    refused_by(&w.allowed.join("dir.sif"), "not a regular file");
    refused_by(&w.allowed.join(".hybrun-index.json"), "not an image name");
    std::fs::copy(&sif, w.allowed.join(".hybrun-tmp-1-00-host")).expect("cp");
    refused_by(
        &w.allowed.join(".hybrun-tmp-1-00-host"),
        "not an image name",
    );

    // The admitted image runs; touched (same content) it is hashed again and runs.
    let app = w.allowed.join("app.sif");
    assert!(run(&app, &[]).status.success());
    let times = std::fs::File::options()
        .write(true)
        .open(&app)
        .expect("open");
    times
        .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(60))
        .expect("touch");
    drop(times);
    let out = run(&app, &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("its content was hashed again and is unchanged"),
        "{}",
        stdout(&out)
    );
    // A rank of a job `hybrun run` checked never re-hashes: changed, refused.
    let out = w.run(&[
        "exec",
        "--site",
        w.site(),
        "--mpi-profile",
        "mpich",
        "--skip-gate",
        "--dry-run",
        app.to_str().expect("utf-8"),
        "--",
        "/app/x",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("changed after `hybrun run` checked it"),
        "{}",
        stderr(&out)
    );
    // Modified content: refused, even with --force (the policy is not a judgement call).
    use std::io::Write;
    let mut file = std::fs::File::options()
        .append(true)
        .open(&app)
        .expect("open");
    file.write_all(b"x").expect("append");
    drop(file);
    refused_by(&app, "modified after it was admitted");
    let out = run(&app, &["--force"]);
    assert!(!out.status.success(), "{}", stderr(&out));
}

/// The allowed directory of a launch is checked like the store checks it: a
/// path that is not canonical (`{user}` or a typo leading through `..`) is
/// refused, not resolved.
#[test]
fn launch_policy_refuses_a_non_canonical_allowed_directory() {
    let w = World::new();
    let site = w.root.join("site-dotdot.toml");
    let text = std::fs::read_to_string(&w.site).expect("site").replace(
        &format!("dir = \"{}\"", w.allowed.display()),
        &format!("dir = \"{}/home/../allowed\"", w.root.display()),
    );
    std::fs::write(&site, text).expect("site");
    let out = w.run(&[
        "run",
        "--site",
        site.to_str().expect("utf-8"),
        "--mpi-profile",
        "mpich",
        "--dry-run",
        w.allowed.join("app.sif").to_str().expect("utf-8"),
        "--",
        "/app/x",
    ]);
    assert!(!out.status.success(), "{}", stdout(&out));
    assert!(
        stderr(&out).contains("not the canonical path"),
        "{}",
        stderr(&out)
    );
}

/// GPU and CPU placement is applied by the rank's `hybrun exec`: a launch that
/// needs it gets the wrapper in auto mode, and `--per-rank direct` is refused
/// with the reason instead of silently dropping it.
#[test]
fn placement_needs_the_wrapper_or_is_refused() {
    let w = World::new();
    let image = w.allowed.join("app.sif");
    let plan = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--site",
            w.site(),
            "--mpi-profile",
            "mpich",
            // srun named: no Slurm here, which would choose mpiexec.
            "--launcher",
            "srun",
            "--gpus-per-node",
            "2",
            "--json",
        ];
        args.extend_from_slice(extra);
        args.extend([image.to_str().expect("utf-8"), "--", "/app/x"]);
        w.run(&args)
    };
    let out = plan(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(doc["plan"]["per_rank"]["kind"], "wrapper", "{doc}");
    let why = doc["plan"]["per_rank"]["why"].to_string();
    assert!(
        why.contains("one GPU per rank") && why.contains("CPU binding"),
        "{why}"
    );
    let out = plan(&["--per-rank", "direct"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("--per-rank direct cannot apply"),
        "{}",
        stderr(&out)
    );
    // Switched off, direct is fine.
    let out = plan(&["--per-rank", "direct", "--no-cpu-bind"]);
    assert!(
        !out.status.success(),
        "the GPU per rank still needs the wrapper"
    );
}

#[test]
fn dry_run_job_shape_reaches_srun_and_the_ranks() {
    let w = World::new();
    w.fake("srun");
    w.fake("singularity");
    let image = w.allowed.join("app.sif");
    let image = image.to_str().expect("utf-8");
    let out = w.run(&[
        "run",
        "--site",
        w.site(),
        "--mode",
        "hybrid",
        "--mpi-profile",
        "mpich",
        "-n",
        "4",
        "-c",
        "8",
        "--exclusive",
        "--mem",
        "64G",
        "-C",
        "skylake&ib",
        "-q",
        "debug",
        "-J",
        "lj run",
        "--gpus-per-task",
        "2",
        "--gpu-bind",
        "closest",
        "--srun-arg=--cpu-freq=high",
        "--srun-arg",
        "--hint=nomultithread",
        // No CPU binding by hybrun exec: the runtime directly, and srun gives
        // each rank its GPUs itself, so no wrapper.
        "--no-cpu-bind",
        "--dry-run",
        image,
        "--",
        "/app/hybench",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    // -c 8: the ranks' OMP_NUM_THREADS follows it.
    assert!(text.contains("SINGULARITYENV_OMP_NUM_THREADS=8"), "{text}");
    let ran = Command::new("/bin/sh")
        .arg("-c")
        .arg(std::ffi::OsStr::from_bytes(&out.stdout))
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", w.bin.display()))
        .output()
        .expect("sh");
    assert!(ran.status.success(), "{}", stderr(&ran));
    let got: Vec<String> = words(&ran.stdout)
        .iter()
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    let srun = w.bin.join("srun");
    let want = [
        srun.to_str().expect("utf-8"),
        "-K",
        "--export=ALL",
        "--mpi=pmi2",
        "-n",
        "4",
        "--gpus-per-task=2",
        "--gpu-bind=closest",
        "--cpus-per-task=8",
        "--exclusive",
        "--mem=64G",
        "-C",
        "skylake&ib",
        "-q",
        "debug",
        "-J",
        "lj run",
        "--cpu-freq=high",
        "--hint=nomultithread",
        "singularity",
        "exec",
        // --gpus-per-task asks for GPUs: Singularity's --nv.
        "--nv",
        image,
        "/app/hybench",
    ];
    assert_eq!(got, want);
}

#[test]
fn cpus_per_task_leaves_a_users_omp_num_threads() {
    let w = World::new();
    let image = w.allowed.join("app.sif");
    let image = image.to_str().expect("utf-8");
    let base = [
        "run",
        "--site",
        w.site(),
        "--mode",
        "hybrid",
        "--mpi-profile",
        "mpich",
        // srun named: no Slurm here, which would choose mpiexec.
        "--launcher",
        "srun",
        "-c",
        "8",
        "--dry-run",
    ];
    let mut args = base.to_vec();
    args.extend(["--env", "OMP_NUM_THREADS=2", image, "--", "/app/x"]);
    let out = w.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("SINGULARITYENV_OMP_NUM_THREADS=2"), "{text}");
    assert!(text.contains("--env's value kept"), "{text}");
    // Set in the environment hybrun runs in: kept too, and said so.
    let mut args = base.to_vec();
    args.extend([image, "--", "/app/x"]);
    let out = w
        .hybrun(&args)
        .env("OMP_NUM_THREADS", "3")
        .output()
        .expect("hybrun");
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(!text.contains("OMP_NUM_THREADS=8"), "{text}");
    assert!(
        text.contains("OMP_NUM_THREADS=3 kept as set in the environment hybrun runs in"),
        "{text}"
    );
    // hybrun exec takes -c too (the per-rank wrapper passes it on).
    let out = w.run(&[
        "exec",
        "--site",
        w.site(),
        "--mode",
        "hybrid",
        "--mpi-profile",
        "mpich",
        "--cpus-per-task",
        "6",
        "--dry-run",
        image,
        "--",
        "/app/x",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("SINGULARITYENV_OMP_NUM_THREADS=6"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn bad_job_shapes_are_refused_with_nothing_launched() {
    let w = World::new();
    w.fake("srun");
    w.fake("singularity");
    w.fake("mpiexec.hydra");
    let image = w.allowed.join("app.sif");
    let image = image.to_str().expect("utf-8");
    let head = ["--mode", "hybrid", "--mpi-profile", "mpich", "-n", "2"];
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec!["--gpus-per-task", "1", "--gpus-per-node", "4"],
            vec!["--gpus-per-task 1 with --gpus-per-node 4: give one of them"],
        ),
        (
            vec!["--srun-arg=--mpi=pmix"],
            vec!["--srun-arg \"--mpi=pmix\"", "use --mpi"],
        ),
        (
            vec!["--srun-arg", "--export=NONE"],
            vec!["--srun-arg \"--export=NONE\"", "--export=ALL"],
        ),
        (vec!["-c", "0"], vec!["must be at least 1"]),
        (
            vec!["--launcher", "mpiexec-hydra", "--mem", "4G"],
            vec![
                "mpiexec.hydra has no equivalent of srun's --mem",
                "--launcher srun",
            ],
        ),
        (
            vec!["--launcher", "mpiexec-hydra", "--exclusive"],
            vec!["mpiexec.hydra has no equivalent of srun's --exclusive"],
        ),
    ];
    for (extra, expect) in cases {
        let mut args = head.to_vec();
        args.extend(extra);
        args.extend([image, "--", "/app/x"]);
        refused(&w, &args, &expect);
    }
    // Inside an allocation, -c cannot exceed the CPUs Slurm gave the node.
    let out = w
        .hybrun(&[
            "run",
            "--site",
            w.site(),
            "--mode",
            "hybrid",
            "--mpi-profile",
            "mpich",
            "-c",
            "16",
            "--dry-run",
            image,
            "--",
            "/app/x",
        ])
        .env("SLURM_CPUS_ON_NODE", "8")
        .output()
        .expect("hybrun");
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "--cpus-per-task 16 is more than the 8 CPUs of this allocation's node \
             (SLURM_CPUS_ON_NODE)"
        ),
        "{}",
        stderr(&out)
    );
}

#[test]
fn runtime_args_pass_through_or_are_refused_with_the_reason() {
    let w = World::new();
    let image = w.allowed.join("app.sif");
    let image = image.to_str().expect("utf-8");
    let head = ["--mode", "hybrid", "--mpi-profile", "mpich", "-n", "2"];
    let mut args = vec!["run", "--site", w.site()];
    args.extend(head);
    args.extend([
        "--runtime-arg=--contain",
        "--runtime-arg",
        "--overlay",
        "--runtime-arg",
        "/scratch/o.img",
        "--dry-run",
        image,
        "--",
        "/app/x",
    ]);
    let out = w.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains(&format!(
            "singularity exec --contain --overlay /scratch/o.img {image} /app/x"
        )),
        "{text}"
    );
    w.fake("srun");
    w.fake("singularity");
    w.fake("ch-run");
    for (arg, expect) in [
        (
            "--runtime-arg=--no-mount",
            "--runtime-arg \"--no-mount\": Singularity 3.6 has no --no-mount flag",
        ),
        (
            "--runtime-arg=--bind=/a:/a",
            "hybrun sets the binds (site, bind mode, PMIx): use -B/--bind",
        ),
        (
            "--runtime-arg=--nv",
            "use --nv, --gpus-per-node or --gpus-per-task",
        ),
        ("--runtime-arg=--env=A=1", "use --env NAME=VALUE"),
        ("--runtime-arg=--pwd=/x", "use --pwd DIR"),
        ("--runtime-arg=--cleanenv", "SLURM_*, PMI_* and PMIX_*"),
    ] {
        let mut args = head.to_vec();
        args.extend([arg, image, "--", "/app/x"]);
        refused(&w, &args, &[expect]);
    }
    // ch-run: its own flags, the join flags hybrun owns.
    let dir = w.root.join("img");
    std::fs::create_dir_all(dir.join("app")).expect("image dir");
    with_mpi(&dir);
    let dir = dir.to_str().expect("utf-8");
    for (arg, expect) in [
        (
            "--runtime-arg=--join-tag=x",
            "joins a node's ranks into one container",
        ),
        ("--runtime-arg=--cd=/", "use --pwd DIR"),
        (
            "--runtime-arg=--contain",
            "ch-run 0.31 has no --contain flag",
        ),
    ] {
        let mut args = head.to_vec();
        args.extend(["--runtime", "charliecloud", arg, dir, "--", "/app/x"]);
        refused(&w, &args, &[expect]);
    }
    // Under srun, ch-run ranks go through hybrun exec: the flags and -c
    // reach it as one word each.
    let mut args = vec!["run", "--site", w.site()];
    args.extend(head);
    args.extend([
        "--runtime",
        "charliecloud",
        "-c",
        "4",
        "--runtime-arg=--private-tmp",
        "--dry-run",
        dir,
        "--",
        "/app/x",
    ]);
    let out = w.run(&args);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("--cpus-per-task=4")
            && text.contains("--cpus-per-task 4 --runtime-arg=--private-tmp"),
        "{text}"
    );
}

#[test]
fn without_srun_the_profiles_mpiexec_is_chosen_and_said() {
    let w = World::new();
    let image = w.allowed.join("app.sif");
    let image = image.to_str().expect("utf-8");
    for (profile, program, kind) in [
        ("mpich", "mpiexec.hydra", "mpiexec-hydra"),
        ("openmpi", "mpiexec.openmpi", "mpiexec-openmpi"),
    ] {
        w.fake(program);
        let out = w.run(&[
            "run",
            "--site",
            w.site(),
            // Native: the MPICH test image would (rightly) be refused under
            // Open MPI's mpiexec.
            "--mode",
            "native",
            "--mpi-profile",
            profile,
            "-n",
            "2",
            "--dry-run",
            "--",
            "/app/x",
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(
            text.contains(&format!(
                "# launcher {kind}: no Slurm here (srun not on PATH) and no --launcher or site \
                 [launcher] kind, so the MPI profile {profile}'s"
            )),
            "{text}"
        );
        assert!(
            text.lines()
                .last()
                .is_some_and(|l| l.contains(&format!("{program} -n 2"))),
            "{text}"
        );
    }
    // With srun on PATH, srun stays the default.
    w.fake("srun");
    let out = w.run(&[
        "run",
        "--site",
        w.site(),
        "--mode",
        "hybrid",
        "--mpi-profile",
        "mpich",
        "--dry-run",
        image,
        "--",
        "/app/x",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("srun -K"), "{}", stdout(&out));
    assert!(!stdout(&out).contains("no Slurm here"), "{}", stdout(&out));
}

#[test]
fn a_site_without_login_node_launches_refuses_outside_an_allocation() {
    let w = World::new();
    w.fake("srun");
    w.fake("singularity");
    let text = std::fs::read_to_string(&w.site).expect("site");
    std::fs::write(&w.site, format!("[launcher]\nlogin_nodes = false\n{text}")).expect("site");
    let image = w.allowed.join("app.sif");
    let image = image.to_str().expect("utf-8");
    let args = [
        "--mode",
        "hybrid",
        "--mpi-profile",
        "mpich",
        "-n",
        "2",
        image,
        "--",
        "/app/x",
    ];
    let expect = [
        "allows no launches outside a Slurm allocation ([launcher] login_nodes = false)",
        "salloc -N NODES",
        "sbatch SCRIPT",
    ];
    refused(&w, &args, &expect);
    // hybrun exec too.
    let mut exec = vec!["exec", "--site", w.site()];
    exec.extend(&args[..4]);
    exec.extend([image, "--", "/app/x"]);
    let out = w.run(&exec);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("salloc -N NODES"), "{}", stderr(&out));
    // A dry run launches nothing: it warns.
    let mut dry = vec!["run", "--site", w.site(), "--dry-run"];
    dry.extend(args);
    let out = w.run(&dry);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("warning: "), "{}", stderr(&out));
    // Inside an allocation the rule is met.
    let mut inside = vec!["run", "--site", w.site(), "--dry-run"];
    inside.extend(args);
    let out = w
        .hybrun(&inside)
        .env("SLURM_JOB_ID", "42")
        .output()
        .expect("hybrun");
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("login_nodes"), "{}", stderr(&out));
}

#[test]
fn shell_dry_run_prints_the_runtimes_shell_with_runs_binds_env_and_policy() {
    let w = World::new();
    w.fake("singularity");
    let image = w.allowed.join("app.sif");
    let image = image.to_str().expect("utf-8");
    let out = w.run(&[
        "shell",
        "--site",
        w.site(),
        "-B",
        "/data:/data:ro",
        "--env",
        "HYB=1",
        "--runtime-arg=--contain",
        "--dry-run",
        image,
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let last = text.lines().last().expect("command");
    assert_eq!(
        last,
        format!("env SINGULARITYENV_HYB=1 singularity shell -B /data:/data:ro --contain {image}")
    );
    // The image policy of run: an image outside the allowed directory.
    let escape = w.allowed.join("escape.sif");
    let out = w.run(&[
        "shell",
        "--site",
        w.site(),
        "--dry-run",
        escape.to_str().expect("utf-8"),
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).starts_with("hybrun: error: "),
        "{}",
        stderr(&out)
    );
    // The site's rule for where containers run.
    let text = std::fs::read_to_string(&w.site).expect("site");
    std::fs::write(&w.site, format!("[launcher]\nlogin_nodes = false\n{text}")).expect("site");
    let out = w.run(&["shell", "--site", w.site(), image]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("salloc -N NODES"), "{}", stderr(&out));
}

/// `--mode auto`, the default with an image: bind where the gate says bind
/// mode can run and the host's MPI is the one that knows the fabric, else
/// hybrid; the plan's notes (printed by --dry-run, kept in the record and in
/// --json) say which and why, and the ranks are told the chosen mode.
#[test]
fn auto_mode_chooses_bind_or_hybrid_and_says_why() {
    let host_lib = std::path::Path::new("/usr/lib/x86_64-linux-gnu");
    if !host_lib.join("libmpich.so.12").exists() {
        assert!(std::env::var_os("CI").is_none(), "host MPICH missing");
        eprintln!("SKIPPED: no host MPICH (scripts/setup installs it)");
        return;
    }
    let w = World::bare();
    let local = std::fs::read_to_string(test_images::repo().join("scenarios/site-local.toml"))
        .expect("scenarios/site-local.toml");
    let site = w.root.join("site.toml");
    std::fs::write(&site, &local).expect("site");
    let fabric_site = w.root.join("site-ucx.toml");
    std::fs::write(&fabric_site, format!("[fabric]\nkind = \"ucx\"\n\n{local}")).expect("site");
    // An image whose MPI has no fast-network library: the host's libmpich and
    // libc, and the directory ch-run binds the host MPI over.
    let image = w.root.join("app");
    with_mpi(&image);
    let libdir = image.join("usr/lib/x86_64-linux-gnu");
    std::fs::copy(host_lib.join("libc.so.6"), libdir.join("libc.so.6")).expect("libc");
    std::fs::create_dir_all(image.join("opt/host-mpi/lib")).expect("bind dir");
    let plan = |site: &std::path::Path, extra: &[&str]| -> (String, serde_json::Value) {
        let mut args = vec![
            "run",
            "--site",
            site.to_str().expect("utf-8"),
            "--runtime",
            "charliecloud",
            "--launcher",
            "mpiexec-hydra",
            "-n",
            "2",
        ];
        args.extend(extra);
        args.extend([image.to_str().expect("utf-8"), "--", "/app/x"]);
        let dry = w.run(&[&args[..1], &["--dry-run"], &args[1..]].concat());
        assert!(dry.status.success(), "{}", stderr(&dry));
        let json = w.run(&[&args[..1], &["--json"], &args[1..]].concat());
        assert!(json.status.success(), "{}", stderr(&json));
        let doc: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
        (stdout(&dry), doc)
    };
    let note = |doc: &serde_json::Value| -> String {
        doc["plan"]["notes"]
            .as_array()
            .expect("notes")
            .iter()
            .filter_map(|n| n.as_str())
            .find(|n| n.starts_with("mode "))
            .unwrap_or("")
            .to_owned()
    };

    // No fast fabric at the site, and none in the image: the host's MPI brings it.
    let (text, doc) = plan(&site, &["--mpi-profile", "mpich"]);
    assert!(
        text.contains("# mode bind (auto): the gate says bind mode can run, and the image's MPI has no fast-network library"),
        "{text}"
    );
    assert!(text.contains("--mode bind"), "the ranks are told: {text}");
    assert!(note(&doc).starts_with("mode bind (auto)"), "{doc}");
    // `--mode auto` is the same as no --mode.
    let (again, _) = plan(&site, &["--mpi-profile", "mpich", "--mode", "auto"]);
    assert_eq!(without_launch_id(&again), without_launch_id(&text));

    // A fast fabric at the site: bind, whatever the image has.
    let (text, _) = plan(&fabric_site, &["--mpi-profile", "mpich"]);
    assert!(
        text.contains(
            "# mode bind (auto): the gate says bind mode can run, and the site's fabric is ucx"
        ),
        "{text}"
    );

    // No MPI profile with a host library: hybrid, and why.
    let (text, doc) = plan(&site, &[]);
    assert!(
        text.contains("# mode hybrid (auto): bind mode needs the host MPI library, and no MPI profile names one"),
        "{text}"
    );
    assert!(text.contains("--mode hybrid"), "{text}");
    assert!(note(&doc).starts_with("mode hybrid (auto)"), "{doc}");

    // The image brings its own fast path and the site names no fabric: hybrid.
    std::fs::copy(
        std::fs::canonicalize(host_lib.join("libfabric.so.1")).expect("host libfabric"),
        libdir.join("libfabric.so.1"),
    )
    .expect("libfabric");
    let (text, _) = plan(&site, &["--mpi-profile", "mpich"]);
    assert!(
        text.contains("# mode hybrid (auto): the site names no fast fabric ([fabric] kind) and the image's MPI has its own"),
        "{text}"
    );

    // Bind mode cannot run (no glibc for the host's libraries): hybrid, with the gate's reason.
    std::fs::remove_file(libdir.join("libc.so.6")).expect("rm libc");
    let (text, _) = plan(&site, &["--mpi-profile", "mpich"]);
    assert!(
        text.contains("# mode hybrid (auto): bind mode cannot run here: ")
            && text.contains("no glibc (libc.so.6) in the image"),
        "{text}"
    );

    // An explicit mode is taken as it is, with no auto note.
    let (text, doc) = plan(&site, &["--mpi-profile", "mpich", "--mode", "hybrid"]);
    assert!(!text.contains("(auto)"), "{text}");
    assert_eq!(note(&doc), "");
}

/// `text` with the launch id each plan of a ch-run launch draws
/// (`"launch":"<12 hex digits>"`) made `"launch":"ID"`.
fn without_launch_id(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    let key = "\"launch\":\"";
    while let Some(at) = rest.find(key) {
        let (head, tail) = rest.split_at(at + key.len());
        out.push_str(head);
        let id_len = tail.bytes().take_while(u8::is_ascii_hexdigit).count();
        out.push_str("ID");
        rest = &tail[id_len..];
    }
    out.push_str(rest);
    out
}

/// `hybrun run --json ARGS`' plan, and the wrapper's arguments and the rank
/// plan it hands over (HYBRUN_RANK_PLAN in the launcher's environment).
fn handed(w: &World, args: &[&str]) -> (serde_json::Value, Vec<String>, String) {
    let mut words = vec!["run", "--json", "--site", w.site()];
    words.extend_from_slice(args);
    let out = w.run(&words);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let wrapper: Vec<String> = doc["plan"]["per_rank"]["args"]
        .as_array()
        .expect("the wrapper's arguments")
        .iter()
        .map(|a| a.as_str().expect("text").to_owned())
        .collect();
    let plan = doc["command"]["env_set"]
        .as_array()
        .expect("env_set")
        .iter()
        .find(|pair| pair[0] == "HYBRUN_RANK_PLAN")
        .map(|pair| pair[1].as_str().expect("text").to_owned())
        .expect("the plan in the launcher's environment");
    (doc, wrapper, plan)
}

/// `hybrun exec --json` with the wrapper's arguments (after `exec`).
fn exec_json_words(wrapper: &[String]) -> Vec<&str> {
    let mut words: Vec<&str> = vec!["exec", "--json"];
    words.extend(wrapper[1..].iter().map(String::as_str));
    words
}

/// `hybrun run` hands each rank its plan (HYBRUN_RANK_PLAN, with `exec
/// --from-run`): the rank gets the command it would plan itself, its own facts
/// (ch-run's join, PMIx glue under the user's --env) included, without the site
/// file or the image; without the plan it plans itself and says so.
#[test]
fn a_rank_handed_its_plan_execs_what_it_would_plan_itself() {
    let (w, image) = World::charliecloud();
    let image_arg = image.to_str().expect("utf-8");
    let run_args = [
        "--launcher",
        "srun",
        "-N",
        "2",
        "-n",
        "4",
        "--runtime",
        "charliecloud",
        "--mode",
        "hybrid",
        "--mpi-profile",
        "mpich",
        "--env",
        "PMIX_MCA_psec=mine",
        image_arg,
        "--",
        "/app/x",
    ];
    let (doc, args, handed) = handed(&w, &run_args);
    assert!(args.contains(&"--from-run".to_owned()), "{args:?}");
    let notes = doc["plan"]["notes"].to_string();
    assert!(
        notes.contains("reaches every rank in HYBRUN_RANK_PLAN"),
        "{notes}"
    );

    let server = w.root.join("spool/pmix.7.0");
    std::fs::create_dir_all(&server).expect("mkdir");
    let rank = |args: &[String], plan: Option<&str>| {
        let mut command = w.hybrun(&exec_json_words(args));
        command
            .env("SLURM_STEP_TASKS_PER_NODE", "2(x2)")
            .env("SLURM_NODEID", "1")
            .env("SLURM_JOB_ID", "42")
            .env("SLURM_STEP_ID", "0")
            .env("SLURMD_NODENAME", "node2")
            .env("PMIX_NAMESPACE", "slurm.pmix.7.0")
            .env("PMIX_RANK", "3")
            .env("PMIX_SECURITY_MODE", "native")
            .env("PMIX_SERVER_TMPDIR", &server);
        if let Some(plan) = plan {
            command.env("HYBRUN_RANK_PLAN", plan);
        }
        command.output().expect("runs")
    };
    let itself: Vec<String> = args
        .iter()
        .filter(|a| *a != "--from-run")
        .cloned()
        .collect();
    let planned = rank(&itself, None);
    assert!(planned.status.success(), "{}", stderr(&planned));
    let planned: serde_json::Value = serde_json::from_slice(&planned.stdout).expect("json");
    let got = rank(&args, Some(&handed));
    assert!(got.status.success(), "{}", stderr(&got));
    assert!(stderr(&got).is_empty(), "{}", stderr(&got));
    let got: serde_json::Value = serde_json::from_slice(&got.stdout).expect("json");
    // The same command, but for the join's tag: the handed rank's names this
    // launch (the id hybrun run drew, so no other launch's leftovers in
    // /dev/shm share it), the self-planned one Slurm's job step.
    let launch = doc["plan"]["per_rank"]["launch"]
        .as_str()
        .expect("a launch id in the plan");
    assert!(
        launch.len() == 12 && launch.bytes().all(|b| b.is_ascii_hexdigit()),
        "{launch}"
    );
    // Each launch draws its own.
    let (again, _, _) = crate::handed(&w, &run_args);
    assert_ne!(again["plan"]["per_rank"]["launch"].as_str(), Some(launch));
    let handed_tag = format!("--join-tag=hybrun.{launch}.node2");
    let self_tag = "--join-tag=hybrun.42.0.node2";
    let same_but_the_tag = |got: &serde_json::Value| {
        assert_eq!(
            got["command"].to_string().replace(&handed_tag, "TAG"),
            planned["command"].to_string().replace(self_tag, "TAG")
        );
    };
    same_but_the_tag(&got);
    assert!(
        planned["shell"]
            .as_str()
            .expect("shell line")
            .contains(&format!("--join-ct=2 {self_tag}"))
    );
    let line = got["shell"].as_str().expect("shell line");
    for part in [
        format!("--join-ct=2 {handed_tag}"),
        "--set-env=PMIX_MCA_psec=mine".into(),
        "--set-env=PMIX_MCA_gds=hash".into(),
    ] {
        assert!(line.contains(&part), "{part}: {line}");
    }

    // The handed rank reads neither the site file nor the image; planning
    // itself needs both.
    std::fs::remove_file(&w.site).expect("rm site");
    std::fs::remove_dir_all(&image).expect("rm image");
    let got = rank(&args, Some(&handed));
    assert!(got.status.success(), "{}", stderr(&got));
    let got: serde_json::Value = serde_json::from_slice(&got.stdout).expect("json");
    same_but_the_tag(&got);
    let without = rank(&args, None);
    assert!(!without.status.success());
    assert!(
        stderr(&without).contains("no rank plan from hybrun run: HYBRUN_RANK_PLAN is not set"),
        "{}",
        stderr(&without)
    );
}

/// `--gpus-per-task N` without srun: the wrapper gives each rank the N GPUs of
/// its local rank (CUDA ordinals in bus order), with `-c`'s width for its CPUs.
#[test]
fn gpus_per_task_without_srun_each_rank_takes_its_local_ranks_gpus() {
    let w = World::new();
    w.fake("singularity");
    let image = w.allowed.join("app.sif");
    let (doc, args, plan) = handed(
        &w,
        &[
            "--launcher",
            "mpiexec-hydra",
            "-n",
            "4",
            "--gpus-per-task",
            "2",
            "-c",
            "3",
            "--mode",
            "hybrid",
            "--mpi-profile",
            "mpich",
            image.to_str().expect("utf-8"),
            "--",
            "/app/x",
        ],
    );
    let per_rank = &doc["plan"]["per_rank"];
    assert_eq!(per_rank["kind"], "wrapper", "{per_rank}");
    let why = per_rank["why"].to_string();
    assert!(
        why.contains("2 GPU(s) per rank (--gpus-per-task under mpiexec-hydra)"),
        "{why}"
    );
    let argv = doc["command"]["argv"].to_string();
    assert!(argv.contains(r#""-bind-to","core:3""#), "{argv}");
    assert!(!argv.contains("gpus"), "{argv}");
    let facts: serde_json::Value = serde_json::from_str(&plan).expect("json");
    assert_eq!(facts["facts"]["gpus"], 2);
    assert_eq!(facts["facts"]["cpu_binding"]["cpus_per_rank"], 3);

    let out = w
        .hybrun(&exec_json_words(&args))
        .env("HYBRUN_RANK_PLAN", &plan)
        .env("MPI_LOCALRANKID", "1")
        .env("MPI_LOCALNRANKS", "4")
        .env("CUDA_VISIBLE_DEVICES", "0,1,2,3")
        .output()
        .expect("runs");
    assert!(out.status.success(), "{}", stderr(&out));
    let rank: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let env = rank["command"]["env_set"].to_string();
    for part in [
        r#"["SINGULARITYENV_CUDA_VISIBLE_DEVICES","2,3"]"#,
        r#"["SINGULARITYENV_CUDA_DEVICE_ORDER","PCI_BUS_ID"]"#,
        r#"["SINGULARITYENV_OMP_NUM_THREADS","3"]"#,
    ] {
        assert!(env.contains(part), "{part}: {env}");
    }
    let notes = rank["notes"].to_string();
    assert!(
        notes.contains("2 GPUs per rank: local rank 1 (MPI_LOCALRANKID) of 4 visible GPUs"),
        "{notes}"
    );
}
