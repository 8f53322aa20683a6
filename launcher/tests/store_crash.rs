//! Failures in the middle of an admission: `hybrun` killed with SIGKILL during the
//! copy, a full file system, and a scanner that refuses, hangs or cannot start.
//! Each time: the right refusal, no partial image, no temporary file left once
//! the next operation ran, and an index that matches the directory.

mod store_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use hybrun::store::TEMP_PREFIX;
use store_common::{World, make_large_sif, path_str, skip_or_fail};

/// Size of the image copied while being killed: large enough that the copy takes
/// a while, sparse so that it costs little disk.
const LARGE: u64 = 1 << 30;

#[test]
fn sigkill_during_copy_leaves_no_partial_image() {
    let world = World::new("");
    world.cp_ok(&world.source("before.sif", 1000, 1));
    let big = world.src.join("big.sif");
    make_large_sif(&big, LARGE);

    let mut child = world
        .command("cp", &[path_str(&big)])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start hybrun");
    // Kill it as soon as its temporary copy has some data in it.
    let deadline = Instant::now() + Duration::from_secs(60);
    let temp = loop {
        let found = world
            .temps()
            .into_iter()
            .find(|name| std::fs::metadata(world.allowed.join(name)).is_ok_and(|m| m.len() > 0));
        if let Some(name) = found {
            break name;
        }
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("hybrun finished ({status}) before it could be killed mid-copy");
        }
        assert!(Instant::now() < deadline, "no temporary copy appeared");
        std::thread::sleep(Duration::from_millis(1));
    };
    child.kill().expect("SIGKILL hybrun");
    child.wait().expect("reap hybrun");
    assert!(temp.starts_with(TEMP_PREFIX));
    let left = std::fs::metadata(world.allowed.join(&temp)).expect("temp file left by the kill");
    assert!(left.len() < LARGE, "the kill came after the copy ended");

    // No partial image: only the temporary file, which is neither listed nor counted.
    assert_eq!(world.images(), ["before.sif"]);
    assert!(!world.index().images.contains_key("big.sif"));
    // The next operation removes it (its owner is dead: nobody holds its lock),
    // once it is older than a freshly created one can be.
    backdate(&world.allowed.join(&temp));
    let ls = world.run("ls", &[]);
    ls.assert_ok();
    assert!(ls.stdout.ends_with("1 file(s) found.\n"), "{}", ls.stdout);
    assert_eq!(world.temps(), Vec::<String>::new());
    world.assert_consistent();

    // And the store works on: a copy goes through.
    world.cp_ok(&world.source("after.sif", 1000, 2));
    world.assert_consistent();
}

#[test]
fn live_owners_temp_files_are_kept() {
    // A temporary file whose owner lives (holds its lock) must survive another
    // operation, whatever PID its name carries (the owner may run in another
    // PID namespace, where its PID means another process here); one nobody
    // holds is removed, even when its name carries a live PID.
    let world = World::new("");
    let host = rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned();
    let live = format!("{TEMP_PREFIX}{}-0123456789abcdef-{host}", dead_pid());
    std::fs::write(world.allowed.join(&live), "in progress").unwrap();
    let held = std::fs::File::open(world.allowed.join(&live)).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let abandoned = format!(
        "{TEMP_PREFIX}{}-fedcba9876543210-{host}",
        std::process::id()
    );
    std::fs::write(world.allowed.join(&abandoned), "abandoned").unwrap();
    // A fresh one is kept even unlocked: its creator may not have locked it yet.
    let fresh = format!("{TEMP_PREFIX}1-00112233445566ff-{host}");
    std::fs::write(world.allowed.join(&fresh), "just created").unwrap();
    backdate(&world.allowed.join(&live));
    backdate(&world.allowed.join(&abandoned));
    world.run("ls", &[]).assert_ok();
    let mut expected = vec![fresh.clone(), live.clone()];
    expected.sort();
    assert_eq!(world.temps(), expected);
    drop(held);
    for name in [&live, &fresh] {
        std::fs::remove_file(world.allowed.join(name)).unwrap();
    }
}

/// Sets a file's modification time a minute back.
fn backdate(path: &Path) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(std::time::SystemTime::now() - Duration::from_secs(60))
        .unwrap();
}

/// The ID of a process that has exited and been reaped.
fn dead_pid() -> u32 {
    let mut child = Command::new("/bin/true").spawn().expect("run /bin/true");
    let pid = child.id();
    child.wait().expect("reap /bin/true");
    pid
}

/// A small tmpfs mounted on a directory, unmounted when dropped.
struct Mount(PathBuf);

impl Mount {
    fn tmpfs(dir: &Path, size: &str) -> Option<Mount> {
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0755"),
                "tmpfs",
            ])
            .arg(dir)
            .stderr(Stdio::null())
            .status();
        matches!(status, Ok(s) if s.success()).then(|| Mount(dir.to_owned()))
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
fn full_file_system_refused_cleanly() {
    let world = World::new("");
    let Some(_mount) = Mount::tmpfs(&world.allowed, "2m") else {
        skip_or_fail(
            "full_file_system_refused_cleanly",
            "cannot mount a tmpfs (needs root and mount rights)",
        );
        return;
    };
    world.cp_ok(&world.source("small.sif", 500_000, 1));
    let big = world.source("big.sif", 3 << 20, 2);
    let out = world.run("cp", &[path_str(&big)]);
    out.assert_refused(&[
        path_str(&world.allowed),
        "file system full",
        path_str(&big),
        "nothing was admitted",
        "hybrun image rm",
    ]);
    // No partial image, no temporary file, the earlier image intact.
    assert_eq!(world.images(), ["small.sif"]);
    world.assert_consistent();
    // After freeing space, it fits.
    world.run("rm", &["small.sif"]).assert_ok();
    let fits = world.source("fits.sif", 1 << 20, 3);
    world.cp_ok(&fits);
    world.assert_consistent();
}

#[test]
fn scanner_rejection_refuses() {
    let world = World::new(
        "scanner = [\"/bin/sh\", \"-c\", \"echo found EICAR in $1; echo on stderr >&2; exit 1\", \"scan\"]\n",
    );
    let a = world.source("a.sif", 1000, 1);
    let out = world.run("cp", &[path_str(&a)]);
    out.assert_refused(&[
        "a.sif: refused by the scanner (exit status 1)",
        "nothing was admitted",
        "found EICAR in",
        "/proc/self/fd/",
        "on stderr",
    ]);
    assert_eq!(world.images(), Vec::<String>::new());
    world.assert_consistent();
}

#[test]
fn hanging_scanner_killed_with_its_children() {
    let scratch = tempfile::tempdir().expect("temporary directory");
    let pid_file = scratch.path().join("scanner-child.pid");
    // The shell starts a child in its process group, says so, and waits forever.
    let world = World::new(&format!(
        "scanner = [\"/bin/sh\", \"-c\", \"sleep 1000 & echo $! > {}; echo scanning; wait\"]\n\
         scanner_timeout_s = 1\n",
        pid_file.display()
    ));
    let a = world.source("a.sif", 1000, 1);
    let started = Instant::now();
    let out = world.run("cp", &[path_str(&a)]);
    out.assert_refused(&[
        "a.sif: refused: the scanner did not finish within 1 s",
        "scanner_timeout_s",
        "scanning",
    ]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the timeout did not fire"
    );
    // The scanner's own child (same process group) was killed too.
    let pid = std::fs::read_to_string(&pid_file).expect("scanner wrote its child's pid");
    let pid = pid.trim();
    let deadline = Instant::now() + Duration::from_secs(10);
    while is_running(pid) {
        assert!(Instant::now() < deadline, "scanner child {pid} still runs");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(world.images(), Vec::<String>::new());
    world.assert_consistent();
}

/// Whether process `pid` exists and is not a zombie (in a container nobody may
/// reap the orphan, but a zombie runs nothing).
fn is_running(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat.rsplit_once(") ")?.1.chars().next()?;
            Some(state != 'Z' && state != 'X')
        })
        .unwrap_or(false)
}

#[test]
fn passing_scanner_output_kept_in_index() {
    let world =
        World::new("scanner = [\"/bin/sh\", \"-c\", \"echo clean: $1\", \"scan\", \"{image}\"]\n");
    let a = world.source("a.sif", 1000, 1);
    world.cp_ok(&a);
    let index = world.index();
    let scan = index.images["a.sif"].scan.as_ref().expect("scan recorded");
    assert_eq!(scan.status, "exit status 0");
    assert!(scan.output.starts_with("clean: "), "{scan:?}");
    // The scanner reads the candidate itself, through an inherited descriptor.
    assert!(scan.output.contains("/proc/self/fd/"), "{scan:?}");
    assert_eq!(scan.command[0], "/bin/sh");
    world.assert_consistent();
}

#[test]
fn scanner_that_alters_the_candidate_refuses() {
    // Appending to the candidate, or putting another file in its place: either
    // way what would be renamed is not what was hashed.
    for replace in [false, true] {
        let world = World::new("");
        let script = if replace {
            let dir = world.allowed.display();
            format!(
                "for f in {dir}/{TEMP_PREFIX}*; do cp \"$f\" \"$f.x\" && mv \"$f.x\" \"$f\"; done"
            )
        } else {
            "echo tampered >> \"$1\"".to_owned()
        };
        let site = std::fs::read_to_string(&world.site).unwrap()
            + &format!("scanner = [\"/bin/sh\", \"-c\", {script:?}, \"scan\"]\n");
        std::fs::write(&world.site, site).unwrap();
        let a = world.source("a.sif", 1000, 1);
        world.run("cp", &[path_str(&a)]).assert_refused(&[
            TEMP_PREFIX,
            "changed or replaced",
            "nothing was admitted",
        ]);
        assert_eq!(world.images(), Vec::<String>::new(), "{script}");
        world.assert_consistent();
    }
}

#[test]
fn scanner_that_cannot_start_refuses() {
    let world = World::new("scanner = [\"/nonexistent/scanner\"]\n");
    let a = world.source("a.sif", 1000, 1);
    world.run("cp", &[path_str(&a)]).assert_refused(&[
        "/nonexistent/scanner: cannot run the site's image scanner",
        "scanner",
    ]);
    assert_eq!(world.images(), Vec::<String>::new());
    world.assert_consistent();
}

/// The scanner reads the candidate hybrun wrote, not whatever its path names by
/// the time the scanner opens it: an allowed directory renamed away during the
/// scan, with a harmless decoy at the candidate's old path, neither fools the
/// scanner nor lands the image in the renamed directory.
#[test]
fn scanner_reads_the_candidate_not_a_decoy() {
    let world = World::new("");
    let dir = world.allowed.display().to_string();
    let decoy = world.src.join("decoy");
    std::fs::write(&decoy, "harmless text").unwrap();
    // Signature: the SIF magic (every real candidate has it, the decoy not).
    // Before scanning, the "attacker" moves the directory and plants the decoy.
    let script = format!(
        "t=$(basename \"$1\"); mv {dir} {dir}.moved && mkdir {dir} && cp {decoy} {dir}/$t; \
         if grep -q SIF_MAGIC \"$1\"; then echo signature found; exit 1; fi",
        decoy = decoy.display()
    );
    let site = std::fs::read_to_string(&world.site).unwrap()
        + &format!("scanner = [\"/bin/sh\", \"-c\", {script:?}, \"scan\"]\n");
    std::fs::write(&world.site, site).unwrap();
    let a = world.source("a.sif", 1000, 1);
    world
        .run("cp", &[path_str(&a)])
        .assert_refused(&["refused by the scanner", "signature found"]);
    let moved = PathBuf::from(format!("{dir}.moved"));
    let landed = |d: &Path| d.join("a.sif").exists();
    assert!(!landed(&world.allowed) && !landed(&moved));
}

/// A benign scanner that renames the allowed directory: the candidate must not
/// be renamed into a directory that is no longer at the allowed path.
#[test]
fn allowed_directory_moved_during_the_scan_refuses() {
    let world = World::new("");
    let dir = world.allowed.display().to_string();
    let script = format!("mv {dir} {dir}.moved && mkdir {dir}");
    let site = std::fs::read_to_string(&world.site).unwrap()
        + &format!("scanner = [\"/bin/sh\", \"-c\", {script:?}, \"scan\"]\n");
    std::fs::write(&world.site, site).unwrap();
    let a = world.source("a.sif", 1000, 1);
    world
        .run("cp", &[path_str(&a)])
        .assert_refused(&["the allowed directory changed"]);
    let moved = PathBuf::from(format!("{dir}.moved"));
    assert!(!moved.join("a.sif").exists());
    assert!(!world.allowed.join("a.sif").exists());
}

/// A corrupt index stops `image cp` before the copy and the scan, not after.
#[test]
fn corrupt_index_fails_before_copying() {
    let scratch = tempfile::tempdir().expect("temporary directory");
    let marker = scratch.path().join("scanned");
    let world = World::new(&format!(
        "scanner = [\"/bin/sh\", \"-c\", \"touch {}\", \"scan\"]\n",
        marker.display()
    ));
    std::fs::write(world.allowed.join(".hybrun-index.json"), "{ not json").unwrap();
    let a = world.source("a.sif", 1_000_000, 1);
    world
        .run("cp", &[path_str(&a)])
        .assert_refused(&["corrupt index", "move it away"]);
    assert!(!marker.exists(), "the image was copied and scanned first");
    assert!(world.temps().is_empty());
}

/// The index records where the copied file was when it was opened, even if
/// its path is swapped for a link while the copy goes on.
#[test]
fn provenance_is_the_opened_file() {
    let world = World::new("");
    let a = world.source("a.sif", 1000, 1);
    let original = a.display().to_string();
    let script = format!("mv {original} {original}.orig && ln -s /etc/passwd {original}");
    let site = std::fs::read_to_string(&world.site).unwrap()
        + &format!("scanner = [\"/bin/sh\", \"-c\", {script:?}, \"scan\"]\n");
    std::fs::write(&world.site, site).unwrap();
    world.cp_ok(&a);
    assert_eq!(world.index().images["a.sif"].source, original);
}

/// A time limit the clock cannot hold is refused when the site file is read,
/// before any scanner starts (it made `image cp` panic after spawning it).
#[test]
fn absurd_scanner_time_limit_refused_at_load() {
    let world = World::new("scanner = [\"/bin/true\"]\nscanner_timeout_s = 18446744073709551615\n");
    let a = world.source("a.sif", 1000, 1);
    world
        .run("cp", &[path_str(&a)])
        .assert_refused(&["scanner_timeout_s", "86400"]);
}
