//! A SquashFS image for ch-run (a SIF's primary partition, or a `.sqfs` file),
//! mounted once per node and launch and shared by that node's ranks.
//!
//! ch-run 0.31 cannot take a SquashFS at an offset (it recognises a SquashFS by
//! its magic at byte 0 and opens it at 0), so a SIF's partition is mounted with
//! `squashfuse -f -o offset=N IMAGE MOUNTPOINT` and ch-run runs the directory.
//!
//! Lifetime, so that no crash can leave a mount behind: the mount exists only
//! in a private mount namespace, never in the host's. A per-node holder (`hybrun
//! hold-mount`, started by the first rank) unshares that namespace, runs
//! squashfuse in it (killed with the holder: PR_SET_PDEATHSIG) and waits until
//! no rank holds the node's `users` lock; each rank takes that lock shared,
//! joins the holder's namespace (setns) and keeps the lock open across its exec
//! into ch-run, so the kernel drops it when the rank ends, however it ends. The
//! kernel frees the namespace, and with it the mount, when its last process (the
//! holder, squashfuse, the ranks) is gone: a `kill -9` of a rank, of srun or of
//! the whole job removes processes, never leaves a mount in the host's table.

use std::ffi::OsString;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::LaunchError;
pub use super::plan::ImageMount;
use super::policy::CheckedImage;
use rustix::fs::FlockOperation;

/// How long a holder waits for squashfuse's mount to appear.
const MOUNT_WAIT: Duration = Duration::from_secs(60);
/// How often the holder looks whether the node's ranks are gone.
const POLL: Duration = Duration::from_millis(200);

/// Whose mount directory a plan names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MountKey {
    /// This process's own (`hybrun run` with no launcher: the only rank).
    Alone,
    /// The ranks' node and launch, not known before they start: a
    /// placeholder that each rank replaces ([`ImageMount::on_node`]).
    NotYet,
}

/// The placeholder key of [`MountKey::NotYet`].
const NOT_YET: &str = "<launch>.<node>";

impl ImageMount {
    /// The mount of `image`, keyed as `key` says.
    pub fn plan(image: &CheckedImage, key: MountKey) -> Result<Self, LaunchError> {
        let mut file = &image.file;
        let label = image.given.display().to_string();
        let (offset, size) = crate::image::contents::squashfs_extent(&mut file, &label, image.size)
            .map_err(|e| LaunchError::Refused {
                message: format!("ch-run with a SquashFS image: {e}"),
            })?;
        let key = match key {
            MountKey::Alone => format!("pid{}", std::process::id()),
            MountKey::NotYet => NOT_YET.to_owned(),
        };
        // The image's identity too: two jobs under one parent (stand-alone
        // `hybrun exec`s from one shell) must not share a mount of different images.
        let dir = base_dir().join(format!("{key}.{}", identity(image.dev, image.ino)));
        Ok(ImageMount {
            image: image.canonical.clone(),
            offset,
            size,
            mountpoint: dir.join("root"),
            dir,
        })
    }

    /// Moves the mount to this rank's node and launch (its directory under
    /// this node's temporary directory, named by `group`: see
    /// [`crate::launch::planner::node_group`]), without opening the image:
    /// the image's identity is the last part of the planned directory's name.
    pub fn on_node(&mut self, group: &str) {
        let name = self.dir.file_name().unwrap_or_default().to_string_lossy();
        let identity = name.rsplit_once('.').map_or("", |(_, id)| id);
        self.dir = base_dir().join(format!("{group}.{identity}"));
        self.mountpoint = self.dir.join("root");
    }

    /// What the dry run and the record say.
    pub fn describe(&self) -> String {
        format!(
            "image mount: squashfuse -f -o offset={} {} {} ({} bytes of SquashFS), once per \
             node in a private mount namespace the node's ranks join; unmounted when the \
             node's last rank ends (also when killed); ch-run runs {}",
            self.offset,
            self.image.display(),
            self.mountpoint.display(),
            self.size,
            self.mountpoint.display()
        )
    }
}

/// An image's identity in a mount directory's name (no '.': see
/// [`ImageMount::on_node`]).
fn identity(dev: u64, ino: u64) -> String {
    format!("{dev:x}-{ino:x}")
}

/// Node-local, per user: every rank of a node computes the same directory.
fn base_dir() -> PathBuf {
    std::env::temp_dir().join(format!(
        "hybrun-mounts.{}",
        rustix::process::getuid().as_raw()
    ))
}

fn refused(what: &str, path: &Path, e: impl std::fmt::Display) -> LaunchError {
    LaunchError::Refused {
        message: format!("image mount: cannot {what} {}: {e}", path.display()),
    }
}

/// Creates `dir` (and the per-user base) as this user's, refusing one that is
/// someone else's or writable by others (a planted directory).
fn own_dir(dir: &Path) -> Result<(), LaunchError> {
    for d in [dir.parent().unwrap_or(dir), dir] {
        match fs::DirBuilder::new().mode(0o700).create(d) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(refused("create", d, e)),
        }
        let meta = fs::symlink_metadata(d).map_err(|e| refused("inspect", d, e))?;
        let uid = rustix::process::getuid().as_raw();
        if !meta.is_dir() || meta.uid() != uid || meta.mode() & 0o022 != 0 {
            return Err(refused(
                "use",
                d,
                format!(
                    "not a directory of uid {uid} closed to others; remove it (or set TMPDIR \
                     elsewhere)"
                ),
            ));
        }
    }
    Ok(())
}

/// The node's `users` lock, shared, on the file the directory holds now: a
/// holder that ended removed the files (last `users`) and maybe the
/// directory, so a lock taken on a removed file, or a file gone meanwhile, is
/// taken again on a fresh one.
fn users_lock(dir: &Path) -> Result<File, LaunchError> {
    let path = dir.join("users");
    for _ in 0..1000 {
        own_dir(dir)?;
        let file = match open_lock(&path) {
            Ok(file) => file,
            Err(_) if !dir.is_dir() => continue,
            Err(e) => return Err(e),
        };
        flock(&file, FlockOperation::LockShared).map_err(|e| refused("lock", dir, e))?;
        let held = file.metadata().map_err(|e| refused("inspect", &path, e))?;
        match fs::symlink_metadata(&path) {
            Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => return Ok(file),
            _ => continue,
        }
    }
    Err(refused(
        "lock",
        dir,
        "its lock file kept being removed (1000 tries)",
    ))
}

fn open_lock(path: &Path) -> Result<File, LaunchError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(|e| refused("open", path, e))
}

/// flock(2), as the store and the campaign take theirs (rustix), again when a
/// signal interrupts the wait.
fn flock(file: &File, op: FlockOperation) -> std::io::Result<()> {
    loop {
        match rustix::fs::flock(file, op) {
            Err(rustix::io::Errno::INTR) => continue,
            other => return other.map_err(Into::into),
        }
    }
}

/// The mount namespace's inode of process `pid`, if it lives.
fn ns_inode(pid: i32) -> Option<u64> {
    fs::metadata(format!("/proc/{pid}/ns/mnt"))
        .ok()
        .map(|m| m.ino())
}

/// The node's live holder, from its `holder` file (`PID NS-INODE`): checked
/// against /proc, so a dead holder's file (or its reused pid) is not trusted.
fn live_holder(dir: &Path) -> Option<i32> {
    let text = fs::read_to_string(dir.join("holder")).ok()?;
    let mut parts = text.split_whitespace();
    let pid: i32 = parts.next()?.parse().ok()?;
    let ino: u64 = parts.next()?.parse().ok()?;
    (ns_inode(pid) == Some(ino)).then_some(pid)
}

/// The rank's side: joins (starting it if needed) the node's holder, whose mount
/// namespace has the image mounted, and returns the `users` lock, shared; it
/// must stay open across the exec into the runtime (it is made inheritable), so
/// the node's mount lasts exactly as long as some rank runs.
pub fn enter(mount: &ImageMount, hybrun: &Path) -> Result<File, LaunchError> {
    let users = users_lock(&mount.dir)?;
    let setup = open_lock(&mount.dir.join("setup"))?;
    flock(&setup, FlockOperation::LockExclusive).map_err(|e| refused("lock", &mount.dir, e))?;
    let pid = match live_holder(&mount.dir) {
        Some(pid) => pid,
        None => start_holder(mount, hybrun)?,
    };
    let cwd = std::env::current_dir().ok();
    let ns = File::open(format!("/proc/{pid}/ns/mnt"))
        .map_err(|e| refused("open the mount namespace of holder", &mount.dir, e))?;
    // SAFETY: setns(2) on an open namespace descriptor; the process is single
    // threaded here (the kernel refuses CLONE_NEWNS otherwise, reported below).
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNS) } != 0 {
        return Err(refused(
            "join the mount namespace of the holder in",
            &mount.dir,
            format!(
                "{} (needs CAP_SYS_ADMIN: SquashFS images with ch-run run as root here)",
                std::io::Error::last_os_error()
            ),
        ));
    }
    // setns moved the working directory to the namespace's root: back to where
    // the launcher started the rank.
    if let Some(cwd) = cwd {
        let _ = std::env::set_current_dir(cwd);
    }
    if !is_mounted(&mount.dir, &mount.mountpoint) {
        return Err(refused(
            "find the image mounted at",
            &mount.mountpoint,
            "the holder's squashfuse is gone",
        ));
    }
    drop(setup);
    // SAFETY: clears FD_CLOEXEC on a descriptor this File owns, so the lock is
    // held by the runtime and the rank after exec.
    unsafe {
        let flags = libc::fcntl(users.as_raw_fd(), libc::F_GETFD);
        libc::fcntl(users.as_raw_fd(), libc::F_SETFD, flags & !libc::FD_CLOEXEC);
    }
    Ok(users)
}

fn is_mounted(dir: &Path, mountpoint: &Path) -> bool {
    match (fs::metadata(dir), fs::metadata(mountpoint)) {
        (Ok(d), Ok(m)) => d.dev() != m.dev(),
        _ => false,
    }
}

/// Starts `hybrun hold-mount` and waits for its "ready" line.
fn start_holder(mount: &ImageMount, hybrun: &Path) -> Result<i32, LaunchError> {
    let mut args: Vec<OsString> = vec![
        "hold-mount".into(),
        "--offset".into(),
        mount.offset.to_string().into(),
        "--dir".into(),
    ];
    args.push(mount.dir.clone().into_os_string());
    args.push(mount.image.clone().into_os_string());
    let mut child = Command::new(hybrun)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| refused("start the mount holder", hybrun, e))?;
    let mut line = String::new();
    if let Some(out) = child.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    if line.trim() != "ready" {
        let status = child.wait().ok();
        return Err(refused(
            "mount",
            &mount.image,
            format!(
                "the mount holder ended ({}) before the image was mounted; see its message above",
                status.map_or_else(|| "unknown".into(), |s| s.to_string())
            ),
        ));
    }
    // The holder outlives this rank's exec; the runtime never waits for it
    // (a zombie at most until the rank ends).
    Ok(i32::try_from(child.id()).unwrap_or(0))
}

/// `hybrun hold-mount`: mounts the image in a new private mount namespace,
/// says "ready" on stdout, and unmounts once no rank holds the node's lock.
pub fn hold(image: &Path, offset: u64, dir: &Path) -> Result<(), LaunchError> {
    own_dir(dir)?;
    // SAFETY: unshare(2)/mount(2) with constant arguments; the propagation
    // change keeps the mount out of the host's table.
    unsafe {
        if libc::unshare(libc::CLONE_NEWNS) != 0 {
            return Err(refused(
                "create a mount namespace for",
                image,
                format!("{} (needs CAP_SYS_ADMIN)", std::io::Error::last_os_error()),
            ));
        }
        if libc::mount(
            c"none".as_ptr(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        ) != 0
        {
            return Err(refused(
                "make private the mount namespace for",
                image,
                std::io::Error::last_os_error(),
            ));
        }
        // Signals meant for the job's ranks are not the holder's: it ends when
        // they have ended.
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
    }
    let mountpoint = dir.join("root");
    match fs::DirBuilder::new().mode(0o700).create(&mountpoint) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(refused("create", &mountpoint, e)),
    }
    let mut fuse = squashfuse(image, offset, &mountpoint)?;
    let started = Instant::now();
    while !is_mounted(dir, &mountpoint) {
        if let Ok(Some(status)) = fuse.try_wait() {
            return Err(refused(
                "mount",
                image,
                format!("squashfuse ended: {status}"),
            ));
        }
        if started.elapsed() > MOUNT_WAIT {
            let _ = fuse.kill();
            return Err(refused("mount", image, "squashfuse did not mount in 60 s"));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let pid = std::process::id();
    let ino = ns_inode(i32::try_from(pid).unwrap_or(0)).unwrap_or(0);
    let tmp = dir.join(format!("holder.{pid}"));
    fs::write(&tmp, format!("{pid} {ino}\n")).map_err(|e| refused("write", &tmp, e))?;
    fs::rename(&tmp, dir.join("holder")).map_err(|e| refused("write", &tmp, e))?;
    {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(b"ready\n");
        let _ = out.flush();
    }
    // Lets go of the rank's pipe (stdout), so its read ends: /dev/null instead.
    if let Ok(null) = File::options().write(true).open("/dev/null") {
        // SAFETY: dup2(2) of a descriptor we own onto stdout.
        unsafe { libc::dup2(null.as_raw_fd(), 1) };
    }
    let users = open_lock(&dir.join("users"))?;
    loop {
        if flock(&users, FlockOperation::NonBlockingLockExclusive).is_ok() {
            break;
        }
        if let Ok(Some(_)) = fuse.try_wait() {
            break;
        }
        std::thread::sleep(POLL);
    }
    // Under the exclusive lock no rank can start joining: a late rank waits,
    // then finds no holder file and starts a new holder.
    let _ = fs::remove_file(dir.join("holder"));
    // SAFETY: SIGTERM to our own child; squashfuse unmounts on it. Should it
    // not end, SIGKILL: the mount goes with the namespace all the same.
    unsafe { libc::kill(fuse.id() as i32, libc::SIGTERM) };
    let asked = Instant::now();
    while matches!(fuse.try_wait(), Ok(None)) && asked.elapsed() < Duration::from_secs(2) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let _ = fuse.kill();
    let _ = fuse.wait();
    // The directory goes, `users` last: a rank that opened it meanwhile
    // finds its lock on a removed file and starts over (see users_lock);
    // every other file is only used under a `users` lock that is live.
    let _ = fs::remove_file(dir.join("setup"));
    let _ = fs::remove_dir(&mountpoint);
    let _ = fs::remove_file(dir.join("users"));
    let _ = fs::remove_dir(dir);
    Ok(())
}

/// squashfuse in the foreground, killed when the holder dies however it dies.
fn squashfuse(
    image: &Path,
    offset: u64,
    mountpoint: &Path,
) -> Result<std::process::Child, LaunchError> {
    let mut cmd = Command::new("squashfuse");
    cmd.arg("-f")
        .arg("-o")
        .arg(format!("offset={offset}"))
        .arg(image)
        .arg(mountpoint)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    // SAFETY: prctl(2) and signal(2), async-signal-safe, between fork and
    // exec. The holder's ignored signals are squashfuse's defaults again
    // (libfuse installs its SIGTERM handler only over the default).
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
                libc::signal(sig, libc::SIG_DFL);
            }
            Ok(())
        });
    }
    cmd.spawn().map_err(|e| {
        refused(
            "run squashfuse for",
            image,
            format!("{e} (install squashfuse: it mounts SquashFS images for ch-run)"),
        )
    })
}
