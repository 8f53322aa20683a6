//! Running a host program to ask it something (`srun --mpi=list`, `mpicc -show`,
//! `pkg-config`, a runtime's `--version`) with a deadline: a hung `srun` must not
//! hang a check. stdin is closed; stdout and stderr are captured together.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a probe may run.
pub const PROBE_LIMIT: Duration = Duration::from_secs(15);

/// Runs `program args` with a deadline: its exit success and its stdout followed
/// by its stderr, or None when it cannot start.
pub fn run_with_timeout(program: &Path, args: &[&str], limit: Duration) -> Option<(bool, String)> {
    let mut command = Command::new(program);
    command.args(args);
    run_command_with_timeout(command, limit)
}

/// Runs a prepared command (stdin closed, output captured) with a deadline: its
/// exit success and stdout followed by stderr, or None when it cannot start.
pub fn run_command_with_timeout(mut command: Command, limit: Duration) -> Option<(bool, String)> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .ok()?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() < limit => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                // Ours to end: it was spawned just above.
                let _ = child.kill();
                let _ = child.wait();
                return Some((false, format!("timed out after {} s", limit.as_secs())));
            }
        }
    }
    let output = child.wait_with_output().ok()?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Some((output.status.success(), text))
}

/// A probe as the doctor and the checks run it: `program args` with `env` added,
/// within [`PROBE_LIMIT`], its output trimmed.
pub fn probe(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Option<(bool, String)> {
    let mut command = Command::new(program);
    command.args(args);
    for (k, v) in env {
        command.env(k, v);
    }
    let (ok, text) = run_command_with_timeout(command, PROBE_LIMIT)?;
    Some((ok, text.trim().to_owned()))
}

/// The last non-blank line of a program's output ("no output" when none): what
/// a failed probe reports.
pub fn last_line(text: &str) -> String {
    text.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("no output")
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn script(dir: &Path, name: &str, body: &str) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    #[test]
    fn output_status_and_deadline() {
        let tmp = tempfile::tempdir().expect("tmp");
        let ok = script(tmp.path(), "ok", "echo out; echo err >&2");
        assert_eq!(
            run_with_timeout(&ok, &[], PROBE_LIMIT),
            Some((true, "out\nerr\n".into()))
        );
        let fails = script(
            tmp.path(),
            "fails",
            "echo \"$1\"; echo 'fatal: no conf' >&2; exit 1",
        );
        let (success, text) = probe(&fails, &["--version"], &[]).expect("runs");
        assert!(!success);
        assert_eq!(last_line(&text), "fatal: no conf");
        assert!(text.starts_with("--version"), "{text}");
        let env = script(tmp.path(), "env", "echo \"$PROBE_VAR\"");
        assert_eq!(
            probe(&env, &[], &[("PROBE_VAR", "given")]),
            Some((true, "given".into()))
        );
        let hangs = script(tmp.path(), "hangs", "exec sleep 30");
        let (success, text) =
            run_with_timeout(&hangs, &[], Duration::from_millis(200)).expect("started");
        assert!(!success && text.starts_with("timed out"), "{text}");
        assert_eq!(
            run_with_timeout(&tmp.path().join("absent"), &[], PROBE_LIMIT),
            None
        );
        assert_eq!(last_line("\n  \n"), "no output");
    }
}
