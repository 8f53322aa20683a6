//! Stamps the binary with the git commit it was built from and the build date,
//! for `hybrun --version` (a bug report then names the exact source).

use std::process::Command;

/// `git ARGS` in the source tree, trimmed; None outside a checkout.
fn git(args: &[&str]) -> Option<String> {
    Command::new("git")
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
}

fn main() {
    let commit =
        git(&["rev-parse", "--short=12", "HEAD"]).unwrap_or_else(|| "unknown commit".into());
    // SOURCE_DATE_EPOCH makes the date reproducible (Debian, Spack and Nix set it).
    let mut date = Command::new("date");
    date.args(["-u", "+%Y-%m-%d"]);
    if let Some(secs) = std::env::var("SOURCE_DATE_EPOCH")
        .ok()
        .filter(|s| !s.is_empty())
    {
        date.arg(format!("--date=@{secs}"));
    }
    let date = date
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    println!("cargo:rustc-env=HYBRUN_BUILD_INFO={commit}, built {date}");
    // A new commit moves HEAD or the branch it names: rerun then, and only then
    // (watching a path that does not exist would rerun every build).
    if let Some(git_dir) = git(&["rev-parse", "--absolute-git-dir"]) {
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
        let common = git(&["rev-parse", "--path-format=absolute", "--git-common-dir"])
            .unwrap_or_else(|| git_dir.clone());
        if let Some(branch) = git(&["symbolic-ref", "-q", "HEAD"]) {
            let loose = format!("{common}/{branch}");
            if std::path::Path::new(&loose).exists() {
                println!("cargo:rerun-if-changed={loose}");
            }
        }
        let packed = format!("{common}/packed-refs");
        if std::path::Path::new(&packed).exists() {
            println!("cargo:rerun-if-changed={packed}");
        }
    }
    println!("cargo:rerun-if-env-changed=SOURCE_DATE_EPOCH");
}
