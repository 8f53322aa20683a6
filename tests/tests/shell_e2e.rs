//! `hybrun shell` with Charliecloud: ch-run IMAGE -- /bin/sh, with the binds
//! and environment of `run`, reading its commands from stdin (as a user types
//! them). Needs ch-run and the MPICH test image (scripts/make-test-images).

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use hybrun_e2e::{on_path, repo_root, require};

#[test]
fn ch_run_shell_has_the_binds_and_environment() {
    let exe = std::env::current_exe().expect("exe");
    let hybrun: Option<PathBuf> = exe
        .parent()
        .and_then(|p| p.parent())
        .map(|p| p.join("hybrun"))
        .filter(|p| p.is_file());
    if !require(
        "the hybrun binary",
        hybrun.is_some(),
        "cargo build -p hybrun",
    ) {
        return;
    }
    if !require("ch-run", on_path("ch-run"), "run scripts/setup") {
        return;
    }
    let image = repo_root().join("target/images/mpich");
    if !image.join("app/hybench").is_file() {
        let built = Command::new(repo_root().join("scripts/make-test-images"))
            .arg("mpich")
            .env("HYBRUN", hybrun.as_deref().expect("hybrun"))
            .status()
            .is_ok_and(|s| s.success());
        if !require("the test images", built, "scripts/make-test-images") {
            return;
        }
    }
    let work = tempfile::tempdir_in(repo_root().join("target")).expect("work");
    let site = work.path().join("site.toml");
    std::fs::write(&site, "[runtime]\nkind = \"charliecloud\"\n").expect("site");
    let mut child = Command::new(hybrun.expect("hybrun"))
        .env("USER", "root")
        .args(["shell", "--site", site.to_str().expect("utf-8")])
        .args(["--env", "HYB_GREETING=hello from the shell"])
        .args(["-B", &format!("{}:/mnt", work.path().display())])
        .arg(&image)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("hybrun shell");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"echo \"$HYB_GREETING\"; test -x /app/hybench && echo image-ok; echo bound > /mnt/mark\n")
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(stdout, "hello from the shell\nimage-ok\n");
    assert_eq!(
        std::fs::read_to_string(work.path().join("mark")).expect("written through the bind"),
        "bound\n"
    );
}
