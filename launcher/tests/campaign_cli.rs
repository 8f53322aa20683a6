//! `hybrun campaign check` and `run` as a person uses them: the commands
//! `check` prints can be pasted into a shell and run exactly what the campaign
//! would (nothing in a scenario's values is run by the shell), and a campaign
//! whose every launch failed says so and exits non-zero.

mod campaign_common;

use std::process::Command;

use campaign_common::{HYBRUN, on_path, require};

fn scenario(dir: &std::path::Path, hybench: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("s.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"cli\"\nlaunches = 2\ntimeout = \"30s\"\n[hybench]\nmpich = \"{hybench}\"\n\
             [matrix]\nbenchmark = [\"latency\"]\nmode = [\"native\"]\n{extra}"
        ),
    )
    .unwrap();
    path
}

fn hybrun(args: &[&str], scenario: &std::path::Path) -> std::process::Output {
    Command::new(HYBRUN)
        .args(args)
        .arg(scenario)
        .env_remove("SLURM_JOB_ID")
        .env_remove("HYBENCH_MPICH")
        .env_remove("HYBRUN_SITE")
        .output()
        .unwrap()
}

#[test]
fn check_prints_commands_a_shell_runs_as_they_are() {
    if !require(
        "mpiexec.mpich",
        on_path("mpiexec.mpich"),
        "run scripts/setup",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let planted = dir.path().join("planted");
    // A stand-in hybench that records the words it receives.
    let words = dir.path().join("words");
    let bench = dir.path().join("bench");
    std::fs::write(
        &bench,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > {}.$$\n",
            words.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&bench, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let hostile = format!("$(touch {})", planted.display());
    let s = scenario(
        dir.path(),
        &bench.display().to_string(),
        &format!(
            "env = [{{ HYB_QUOTE = \"it's `id`; $HOME\" }}]\n[benchmark.latency]\nargs = [{hostile:?}, \"two words\"]\n"
        ),
    );
    let out = hybrun(&["campaign", "check"], &s);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("latency.native.").map(|_| l))
        .expect("the cell's line");
    let command = line.split_once('\t').expect("key TAB command").1;
    assert!(command.contains(&format!("'{hostile}'")), "{command}");
    // Pasted into a shell: the launch runs, with every word as written.
    let out = Command::new("sh").arg("-c").arg(command).output().unwrap();
    assert!(out.status.success(), "{command}: {out:?}");
    assert!(
        !planted.exists(),
        "the shell ran a scenario's value: {command}"
    );
    let runs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| {
            let e = e.unwrap();
            e.file_name()
                .to_string_lossy()
                .starts_with("words.")
                .then(|| std::fs::read_to_string(e.path()).unwrap())
        })
        .collect();
    assert_eq!(runs.len(), 2, "one per rank");
    for got in runs {
        assert_eq!(got, format!("latency\n{hostile}\ntwo words\n"));
    }
}

#[test]
fn a_campaign_whose_every_launch_failed_exits_non_zero() {
    if !require(
        "mpiexec.mpich",
        on_path("mpiexec.mpich"),
        "run scripts/setup",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let s = scenario(dir.path(), "/bin/false", "");
    let results = dir.path().join("results");
    let out = hybrun(
        &["campaign", "run", "--results", results.to_str().unwrap()],
        &s,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.contains("every launch failed (2 of 2)")
            && last.contains("latency.native.1x2.mpich.")
            && last.contains("exit status 1")
            && last.contains("report.md"),
        "{stderr}"
    );
    let run = std::fs::read_dir(results.join("cli"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert!(run.join("report.md").is_file(), "the report is written");
    assert!(
        last.contains(&run.join("report.md").display().to_string()),
        "{last}"
    );
}
