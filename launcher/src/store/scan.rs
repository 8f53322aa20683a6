//! Running the site's scanner on a candidate image: no shell, its own process
//! group (killed whole on timeout), output kept.

use std::fs::File;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rustix::pipe::PipeFlags;
use rustix::process::{Pid, Signal};
use serde::{Deserialize, Serialize};

use super::StoreError;

/// Placeholder argument replaced by the candidate's path (`/proc/self/fd/N`,
/// the file itself).
pub const IMAGE_PLACEHOLDER: &str = "{image}";

/// Most scanner output kept (the start: where scanners name what they found).
const OUTPUT_LIMIT: usize = 64 * 1024;

/// How often the scanner is polled for exit.
const POLL: Duration = Duration::from_millis(10);

/// How long to wait, after the scanner is gone, for its output pipe to close (a
/// descendant that left the process group could hold it open forever).
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// What a scanner run gave, recorded in the index for admitted images.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScanRecord {
    /// The argv as run (with the candidate's temporary path).
    pub command: Vec<String>,
    /// "exit status 0", "killed after 600 s (time limit)", ...
    pub status: String,
    /// Seconds it ran.
    pub seconds: f64,
    /// Its standard output and error, interleaved, at most 64 KiB.
    pub output: String,
}

/// How a scan ended.
#[derive(Debug)]
pub(crate) enum Verdict {
    Passed,
    Rejected,
    TimedOut,
}

/// Runs `argv` on the open file `candidate` within `timeout`.
///
/// The scanner is given the file itself, not its path: the descriptor is
/// inherited (`/proc/self/fd/N` in the scanner names the very file hybrun
/// wrote and hashed), so renaming the allowed directory or swapping the
/// candidate's name during the scan cannot make it read a decoy.
pub(crate) fn run(
    argv: &[String],
    candidate: &File,
    timeout: Duration,
) -> Result<(Verdict, ScanRecord), StoreError> {
    let start_err = |source: std::io::Error| StoreError::ScanStart {
        program: argv.first().cloned().unwrap_or_default(),
        source,
    };
    // A read-only descriptor of the file without close-on-exec: the scanner
    // inherits it at this number.
    let inherited = rustix::fs::open(
        format!("/proc/self/fd/{}", candidate.as_raw_fd()),
        rustix::fs::OFlags::RDONLY,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| start_err(e.into()))?;
    let candidate = format!("/proc/self/fd/{}", inherited.as_raw_fd());
    let mut command: Vec<String> = argv
        .iter()
        .map(|a| {
            if a == IMAGE_PLACEHOLDER {
                candidate.clone()
            } else {
                a.clone()
            }
        })
        .collect();
    if !argv.iter().any(|a| a == IMAGE_PLACEHOLDER) {
        command.push(candidate);
    }
    let (program, args) = command
        .split_first()
        .ok_or_else(|| start_err(std::io::Error::other("the scanner command is empty")))?;

    // One pipe for both streams keeps their interleaving as the scanner wrote it.
    let (reader, writer) =
        rustix::pipe::pipe_with(PipeFlags::CLOEXEC).map_err(|e| start_err(e.into()))?;
    let writer2 = writer.try_clone().map_err(start_err)?;
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::from(writer))
        .stderr(Stdio::from(writer2))
        // Its own process group, so that a timeout kills its children too.
        .process_group(0)
        .spawn()
        .map_err(start_err)?;
    drop(inherited);
    let pgid = Pid::from_child(&child);

    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = sender.send(read_limited(std::fs::File::from(reader)));
    });

    // The site file bounds the time limit; a deadline past what the clock can
    // hold is no deadline.
    let deadline = started.checked_add(timeout);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if deadline.is_some_and(|d| Instant::now() >= d) => break None,
            Ok(None) => std::thread::sleep(POLL),
            Err(e) => {
                let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
                let _ = child.wait();
                return Err(start_err(e));
            }
        }
    };
    // On timeout, and also after a normal exit (background children it left
    // behind), nothing of the scan may outlive it. ESRCH (group already empty) is fine.
    let _ = rustix::process::kill_process_group(pgid, Signal::KILL);
    let timed_out = status.is_none();
    let status = match status {
        Some(status) => status,
        None => child.wait().map_err(start_err)?,
    };
    let seconds = started.elapsed().as_secs_f64();
    let output = receiver
        .recv_timeout(DRAIN_WAIT)
        .unwrap_or_else(|_| "(output not collected: a process still holds it open)".into());

    let (verdict, status_text) = if timed_out {
        (
            Verdict::TimedOut,
            format!("killed after {} s (time limit)", timeout.as_secs()),
        )
    } else if status.success() {
        (Verdict::Passed, describe(status))
    } else {
        (Verdict::Rejected, describe(status))
    };
    Ok((
        verdict,
        ScanRecord {
            command,
            status: status_text,
            seconds: (seconds * 1000.0).round() / 1000.0,
            output,
        },
    ))
}

/// "exit status 1", "killed by signal 9".
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(signal)) => format!("killed by signal {signal}"),
        _ => status.to_string(),
    }
}

/// Reads to the end, keeping the first [`OUTPUT_LIMIT`] bytes.
fn read_limited(mut source: std::fs::File) -> String {
    let mut kept = Vec::new();
    let mut buffer = [0u8; 8192];
    let mut dropped = 0usize;
    loop {
        match source.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => {
                let room = OUTPUT_LIMIT.saturating_sub(kept.len()).min(n);
                kept.extend_from_slice(&buffer[..room]);
                dropped += n - room;
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let mut text = String::from_utf8_lossy(&kept).into_owned();
    if dropped > 0 {
        text.push_str(&format!("\n[... {dropped} more bytes not kept]\n"));
    }
    text
}
