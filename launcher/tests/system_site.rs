//! The system site file's `[images]` policy wins over a user's `--site` or
//! `$HYBRUN_SITE`: a user cannot point the allowed directory at `/` (or
//! anywhere) to run images nobody admitted.
//!
//! Writes /etc/hybrun/site.toml for the test (as root, and only when there is
//! none: a real installation is never touched), and removes it afterwards. Its
//! own test binary, so that no other test sees the file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const HYBRUN: &str = env!("CARGO_BIN_EXE_hybrun");
const SYSTEM: &str = "/etc/hybrun/site.toml";

/// Removes what the test put under /etc, even when an assertion fails.
struct SystemSite {
    created_dir: bool,
}

impl Drop for SystemSite {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(SYSTEM);
        if self.created_dir {
            let _ = std::fs::remove_dir("/etc/hybrun");
        }
    }
}

fn run(args: &[&str], home: &Path) -> Output {
    Command::new(HYBRUN)
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("HOME", home)
        .output()
        .expect("hybrun runs")
}

#[test]
fn system_images_policy_wins_over_the_users_site_file() {
    if !rustix::process::geteuid().is_root() {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI runs the tests as root"
        );
        eprintln!("SKIPPED: needs root to write {SYSTEM}");
        return;
    }
    if Path::new(SYSTEM).exists() {
        eprintln!("SKIPPED: {SYSTEM} exists (a real installation): not touched");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let root = std::fs::canonicalize(tmp.path()).expect("canonical");
    let allowed = root.join("allowed");
    std::fs::create_dir_all(&allowed).expect("mkdir");
    let created_dir = !Path::new("/etc/hybrun").exists();
    std::fs::create_dir_all("/etc/hybrun").expect("mkdir /etc/hybrun");
    let _guard = SystemSite { created_dir };
    std::fs::write(
        SYSTEM,
        format!("[images]\ndir = \"{}\"\n", allowed.display()),
    )
    .expect("system site");

    // The user's own site file: every image anywhere would be "allowed".
    let user_site = root.join("mine.toml");
    std::fs::write(
        &user_site,
        "[images]\ndir = \"/\"\n[runtime]\nkind = \"singularity\"\nversion = \"3.6.4\"\n",
    )
    .expect("user site");
    let planted: PathBuf = root.join("planted.sif");
    std::fs::write(&planted, b"anything").expect("planted");
    let site = user_site.to_str().expect("utf-8");
    let out = run(
        &[
            "run",
            "--site",
            site,
            "--mpi",
            "none",
            "--launcher",
            "none",
            "--dry-run",
            planted.to_str().expect("utf-8"),
            "--",
            "/x",
        ],
        &root,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "planted image ran: {err}");
    assert!(err.contains("not in an allowed configured path"), "{err}");
    assert!(err.contains(&allowed.display().to_string()), "{err}");
    assert!(err.contains("the system site file"), "{err}");

    // The store follows the system policy too, and --dir cannot override it.
    let ls = run(&["image", "ls", "--site", site], &root);
    assert!(
        ls.status.success(),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
    let ls = run(&["image", "ls", "--site", site, "--dir", "/tmp"], &root);
    assert!(!ls.status.success());
    assert!(
        String::from_utf8_lossy(&ls.stderr).contains("users cannot override"),
        "{}",
        String::from_utf8_lossy(&ls.stderr)
    );
}
