//! The project's test images (`scripts/make-test-images`: mpich, openmpi and
//! nompi, each as a directory, a SquashFS file and a SIF file under
//! target/images), built on first use. If they cannot be built, tests fail
//! under CI (env CI set) and print SKIPPED otherwise.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn all_present(dir: &Path) -> bool {
    ["mpich", "openmpi", "nompi"].iter().all(|n| {
        dir.join(n).is_dir()
            && dir.join(format!("{n}.sqfs")).is_file()
            && dir.join(format!("{n}.sif")).is_file()
    })
}

/// The images directory, built when missing; None (after printing SKIPPED) when
/// it cannot be built outside CI.
pub fn images() -> Option<&'static Path> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = repo().join("target/images");
        if all_present(&dir) {
            return Some(dir);
        }
        let output = Command::new(repo().join("scripts/make-test-images"))
            .env("HYBRUN", env!("CARGO_BIN_EXE_hybrun"))
            .output();
        let why = match output {
            Ok(o) if o.status.success() && all_present(&dir) => return Some(dir),
            Ok(o) => format!(
                "scripts/make-test-images failed ({}): {}",
                o.status,
                String::from_utf8_lossy(&o.stderr)
            ),
            Err(e) => format!("cannot run scripts/make-test-images: {e}"),
        };
        if std::env::var_os("CI").is_some() {
            panic!("test images are required under CI: {why}");
        }
        eprintln!("SKIPPED: no test images ({why})");
        None
    })
    .as_deref()
}
