//! Hostile images and hostile paths against the commands that read them:
//! `hybrun image inspect --contents`, `hybrun image check` and `hybrun run
//! --dry-run` on crafted SquashFS images (decompression bombs, directory cycles,
//! exponential and very deep trees, tables and counts past the end of the file),
//! bare and wrapped in a SIF; a FIFO given as the image or as the site file; and
//! `/dev/zero` or an oversized file as the site file.
//!
//! Each run must end with exit status 1 and exactly one error line that names the
//! image (or site file) and what is wrong: no panic, no abort, within seconds, and
//! with a peak RSS under 256 MiB (measured with wait4 on that child alone).

mod hostile_squashfs;

use std::fs::File;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

const HYBRUN: &str = env!("CARGO_BIN_EXE_hybrun");
/// The most memory a run may use (peak RSS).
const MAX_RSS_KIB: i64 = 256 * 1024;
/// A run that takes longer is killed and fails (hybrun is a debug build here).
const TIMEOUT: Duration = Duration::from_secs(20);
/// What a run should take at most.
const QUICK: Duration = Duration::from_secs(10);
/// Address space given to each run: a run that tries to grow past it fails at
/// once instead of taking the machine's memory (the old reader asked for 4 GiB).
const ADDRESS_SPACE: u64 = 2 << 30;

/// How a run of hybrun ended.
#[derive(Debug)]
struct Outcome {
    code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
    max_rss_kib: i64,
    elapsed: Duration,
}

/// Runs hybrun with `args` (environment cleared but for `env`), killing it after
/// TIMEOUT; its peak RSS comes from wait4 on this child alone.
#[allow(
    clippy::zombie_processes,
    reason = "reaped by wait4, which std's Child cannot do"
)]
fn run(args: &[&str], env: &[(&str, &str)], home: &Path) -> Outcome {
    let out = tempfile::tempfile().expect("temp file");
    let err = tempfile::tempfile().expect("temp file");
    let mut cmd = Command::new(HYBRUN);
    cmd.args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .env("USER", "root")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(err.try_clone().expect("dup"));
    let limit = libc::rlimit {
        rlim_cur: ADDRESS_SPACE,
        rlim_max: ADDRESS_SPACE,
    };
    // SAFETY: setrlimit is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setrlimit(libc::RLIMIT_AS, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let start = Instant::now();
    let child = cmd.spawn().expect("hybrun starts");
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data; wait4 fills it.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: waits for our own child; status and usage are valid pointers.
        let rc = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
        if rc == pid {
            break;
        }
        assert_eq!(rc, 0, "wait4: {}", std::io::Error::last_os_error());
        if start.elapsed() > TIMEOUT {
            // SAFETY: our child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = start.elapsed();
    let text = |mut f: File| {
        use std::io::Seek;
        let mut s = String::new();
        f.rewind().expect("rewind");
        f.read_to_string(&mut s).expect("utf-8 output");
        s
    };
    Outcome {
        code: libc::WIFEXITED(status).then(|| libc::WEXITSTATUS(status)),
        signal: libc::WIFSIGNALED(status).then(|| libc::WTERMSIG(status)),
        stdout: text(out),
        stderr: text(err),
        max_rss_kib: usage.ru_maxrss,
        elapsed,
    }
}

/// Asserts that `o` is one clear refusal: exit 1, one error line naming `subject`
/// and one of `says`, quickly, in little memory.
fn assert_refused(what: &str, o: &Outcome, subject: &str, says: &[&str]) {
    let context = format!("{what}: {o:?}");
    assert_eq!(o.signal, None, "killed by a signal: {context}");
    assert_eq!(o.code, Some(1), "{context}");
    let lines: Vec<&str> = o.stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "exactly one error line: {context}");
    let line = lines[0];
    assert!(line.starts_with("hybrun: error: "), "{context}");
    assert!(line.contains(subject), "names {subject}: {context}");
    assert!(
        says.iter().any(|w| line.contains(w)),
        "says one of {says:?}: {context}"
    );
    assert!(!line.contains("panicked"), "{context}");
    assert!(o.stdout.is_empty(), "nothing on standard output: {context}");
    assert!(o.elapsed < QUICK, "took {:?}: {context}", o.elapsed);
    assert!(
        o.max_rss_kib < MAX_RSS_KIB,
        "peak RSS {} KiB: {context}",
        o.max_rss_kib
    );
}

/// A scratch directory: the fixtures (raw and wrapped in SIF), a site file with an
/// MPICH profile, and HOME.
struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = std::fs::canonicalize(tmp.path()).expect("canonical");
        std::fs::create_dir_all(root.join("home")).expect("mkdir");
        std::fs::write(
            root.join("site.toml"),
            "[mpi.mpich]\nabi = \"mpich\"\npmi = \"pmi2\"\n\
             library = \"/usr/lib/x86_64-linux-gnu/libmpich.so.12\"\n",
        )
        .expect("site");
        for f in hostile_squashfs::fixtures() {
            let raw = root.join(format!("{}.sqfs", f.name));
            std::fs::write(&raw, &f.bytes).expect("write fixture");
            let sif = root.join(format!("{}.sif", f.name));
            let o = run(
                &["image", "wrap", path(&raw), path(&sif)],
                &[],
                &root.join("home"),
            );
            assert_eq!(o.code, Some(0), "wrap {}: {o:?}", f.name);
        }
        World { _tmp: tmp, root }
    })
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// The three commands that read an image's contents, on `image`.
fn contents_commands<'a>(image: &'a str, site: &'a str) -> [Vec<&'a str>; 3] {
    [
        vec!["image", "inspect", "--contents", image],
        vec![
            "image",
            "check",
            "--host-mpi",
            "none",
            "--srun",
            "none",
            image,
        ],
        vec![
            "run",
            "--dry-run",
            "--site",
            site,
            "--runtime",
            "singularity",
            "--runtime-version",
            "3.6.4",
            "--mpi-profile",
            "mpich",
            "--launcher",
            "none",
            image,
            "--",
            "/bin/true",
        ],
    ]
}

/// Runs the three commands on fixture `name`, raw and in SIF.
fn hostile(name: &str) {
    let w = world();
    let fixture = hostile_squashfs::fixtures()
        .into_iter()
        .find(|f| f.name == name)
        .expect("known fixture");
    let site = w.root.join("site.toml");
    for ext in ["sqfs", "sif"] {
        let image = w.root.join(format!("{name}.{ext}"));
        for args in contents_commands(path(&image), path(&site)) {
            let o = run(&args, &[], &w.root.join("home"));
            assert_refused(&args.join(" "), &o, path(&image), fixture.says);
        }
    }
}

#[test]
fn metadata_bomb_650k() {
    hostile("bomb-650k");
}

#[test]
fn metadata_bomb_10m() {
    hostile("bomb-10m");
}

#[test]
fn directory_entry_pointing_at_its_grandparent() {
    hostile("cycle-grandparent");
}

#[test]
fn forty_levels_of_doubled_children() {
    hostile("doubled-40");
}

#[test]
fn twenty_thousand_levels_deep() {
    hostile("deep-20000");
}

#[test]
fn directory_listing_past_the_end() {
    hostile("listing-past-end");
}

#[test]
fn directory_listing_size_overflow() {
    hostile("listing-size-overflow");
}

#[test]
fn fragment_count_overflow() {
    hostile("fragment-count-overflow");
}

#[test]
fn inode_count_overflow() {
    hostile("inode-count-overflow");
}

#[test]
fn file_size_overflow() {
    hostile("file-size-overflow");
}

#[test]
fn directory_header_count_overflow() {
    hostile("header-count-overflow");
}

/// The same fixtures read from memory (as the fuzz target reads them): an error
/// that names the problem, raw and at a SIF partition's offset.
#[test]
fn fixtures_from_memory() {
    let w = world();
    for f in hostile_squashfs::fixtures() {
        for ext in ["sqfs", "sif"] {
            let bytes: std::sync::Arc<[u8]> =
                std::fs::read(w.root.join(format!("{}.{ext}", f.name)))
                    .expect("fixture")
                    .into();
            let err = hybrun::image::contents::Image::from_bytes(bytes, "memory")
                .expect_err(f.name)
                .to_string();
            assert!(f.says.iter().any(|w| err.contains(w)), "{}: {err}", f.name);
        }
    }
}

/// 1.2 million names in one directory (18 MB on disk): the file index stops at its
/// memory budget (128 MiB counted), and the process stays under 256 MiB.
#[test]
fn wide_directory_stops_at_the_memory_budget() {
    let tmp = tempfile::tempdir().expect("tmp");
    let image = tmp.path().join("wide.sqfs");
    std::fs::write(&image, hostile_squashfs::wide_directory(1_200_000)).expect("write");
    let i = path(&image);
    let o = run(&["image", "inspect", "--contents", i], &[], tmp.path());
    eprintln!("wide: {o:?}");
    assert_refused(
        "inspect wide",
        &o,
        i,
        &["file index would take more than 128 MiB"],
    );
}

/// Makes a FIFO at `p`.
fn mkfifo(p: &Path) {
    rustix::fs::mknodat(
        rustix::fs::CWD,
        p,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .expect("mkfifo");
}

/// A FIFO as the image: refused at once by every command that reads images.
#[test]
fn fifo_as_the_image() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fifo = tmp.path().join("image.sif");
    mkfifo(&fifo);
    let f = path(&fifo);
    for args in [
        vec!["image", "inspect", f],
        vec!["image", "inspect", "--contents", f],
        vec!["image", "check", "--host-mpi", "none", "--srun", "none", f],
    ] {
        let o = run(&args, &[], tmp.path());
        assert_refused(&args.join(" "), &o, f, &["FIFO"]);
    }
}

/// A FIFO as the site file, through $HYBRUN_SITE and --site.
#[test]
fn fifo_as_the_site_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let fifo = tmp.path().join("site.toml");
    mkfifo(&fifo);
    let f = path(&fifo);
    let o = run(&["image", "ls"], &[("HYBRUN_SITE", f)], tmp.path());
    assert_refused("HYBRUN_SITE=fifo image ls", &o, f, &["FIFO"]);
    let dry_run = [
        "run",
        "--dry-run",
        "--site",
        f,
        "--mode",
        "native",
        "--launcher",
        "none",
        "--",
        "/bin/true",
    ];
    let o = run(&dry_run, &[], tmp.path());
    assert_refused("run --site fifo", &o, f, &["FIFO"]);
}

/// /dev/zero as the site file: refused before anything is read.
#[test]
fn dev_zero_as_the_site_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let o = run(
        &["image", "ls"],
        &[("HYBRUN_SITE", "/dev/zero")],
        tmp.path(),
    );
    assert_refused(
        "HYBRUN_SITE=/dev/zero",
        &o,
        "/dev/zero",
        &["character device"],
    );
    assert!(o.max_rss_kib < 64 * 1024, "read it: {o:?}");
}

/// A site file over the size cap (1 MiB) is refused, even if it parses.
#[test]
fn oversized_site_file() {
    let tmp = tempfile::tempdir().expect("tmp");
    let site = tmp.path().join("site.toml");
    let mut text = "# padding\n".repeat(120_000);
    text.push_str("[images]\nmax_images = 3\n");
    std::fs::write(&site, text).expect("write");
    let s = path(&site);
    let o = run(&["image", "ls"], &[("HYBRUN_SITE", s)], tmp.path());
    assert_refused("HYBRUN_SITE=big", &o, s, &["1 MiB"]);
}

/// Writes every fixture (raw SquashFS) to $HYBRUN_HOSTILE_OUT, e.g. to seed the
/// fuzz corpus (scripts/make-hostile-images).
#[test]
#[ignore = "writes files; run by scripts/make-hostile-images"]
fn write_hostile_fixtures() {
    let dir = PathBuf::from(std::env::var_os("HYBRUN_HOSTILE_OUT").expect("HYBRUN_HOSTILE_OUT"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    for f in hostile_squashfs::fixtures() {
        std::fs::write(dir.join(format!("{}.sqfs", f.name)), &f.bytes).expect("write");
    }
    let wide = hostile_squashfs::wide_directory(1_200_000);
    std::fs::write(dir.join("wide-1200k.sqfs"), wide).expect("write");
}

/// Names planted in an image (escape sequences, a line break forging another
/// line, a bidi override) print escaped in `inspect --contents --list`: they
/// can neither drive the terminal nor add a line of their own.
#[test]
fn planted_names_print_escaped_in_the_listing() {
    let dir = tempfile::tempdir().expect("tmp");
    let image = dir.path().join("img");
    std::fs::create_dir(&image).expect("mkdir");
    for name in ["a\u{1b}[2Jb", "c\nsmall.sif: OK", "x\u{202e}fis.exe"] {
        std::fs::write(image.join(name), "").expect("plant");
    }
    let home = dir.path().join("home");
    std::fs::create_dir(&home).expect("home");
    let o = run(
        &["image", "inspect", "--contents", "--list", path(&image)],
        &[],
        &home,
    );
    assert_eq!(o.code, Some(0), "{}", o.stderr);
    assert!(!o.stdout.contains('\u{1b}'), "raw escape: {:?}", o.stdout);
    assert!(!o.stdout.contains('\u{202e}'), "raw bidi: {:?}", o.stdout);
    assert!(
        !o.stdout.lines().any(|l| l.starts_with("small.sif")),
        "a forged line: {}",
        o.stdout
    );
    for shown in ["a\\u{1b}[2Jb", "c\\u{a}small.sif: OK", "x\\u{202e}fis.exe"] {
        assert!(o.stdout.contains(shown), "{shown} in {}", o.stdout);
    }
}
