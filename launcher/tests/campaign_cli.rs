//! `hybrun campaign check` and `run` as a person uses them: the commands
//! `check` prints can be pasted into a shell and run exactly what the campaign
//! would (nothing in a scenario's values is run by the shell), a campaign
//! whose every launch failed says so and exits non-zero, and what a launch
//! draws at random (environment size, core order, place in its round) is
//! what its ranks got and what its record says.

mod campaign_common;

use std::process::Command;

use campaign_common::{HYBRUN, on_path, require};

fn scenario(dir: &std::path::Path, hybench: &str, extra: &str) -> std::path::PathBuf {
    let path = dir.join("s.toml");
    std::fs::write(
        &path,
        format!(
            "name = \"cli\"\nlaunches = 2\ntimeout = \"30s\"\n[stop]\nenabled = false\n[hybench]\nmpich = \"{hybench}\"\n\
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
        last.contains("every launch failed (4 of 4)")
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

#[test]
fn what_a_launch_draws_at_random_reaches_its_ranks_and_its_record() {
    if !require(
        "mpiexec.mpich",
        on_path("mpiexec.mpich"),
        "run scripts/setup",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A stand-in hybench that writes, per rank, its launch's scratch
    // directory, the size of HYBRUN_ENV_PAD and the CPUs it may run on.
    let seen = dir.path().join("seen");
    std::fs::create_dir(&seen).unwrap();
    let bench = dir.path().join("bench");
    std::fs::write(
        &bench,
        format!(
            "#!/bin/sh\nwhile [ $# -gt 0 ]; do [ \"$1\" = --output ] && out=$(dirname \"$2\"); shift; done\nprintf '%s %s %s\\n' \"$(basename \"$out\")\" \"${{#HYBRUN_ENV_PAD}}\" \
             \"$(grep Cpus_allowed_list /proc/self/status | cut -f2)\" >> {}/$PMI_RANK\nexit 3\n",
            seen.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&bench, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let s = scenario(dir.path(), &bench.display().to_string(), "");
    let results = dir.path().join("results");
    let out = hybrun(
        &["campaign", "run", "--results", results.to_str().unwrap()],
        &s,
    );
    assert_eq!(out.status.code(), Some(1), "every launch fails: {out:?}");
    let run = std::fs::read_dir(results.join("cli"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let records = hybrun::campaign::results::read_records(&run).unwrap();
    assert_eq!(records.len(), 4, "native and native', 2 launches each");
    let seen0 = std::fs::read_to_string(seen.join("0")).unwrap();
    let seen1 = std::fs::read_to_string(seen.join("1")).unwrap();
    let mut positions = std::collections::BTreeSet::new();
    for r in &records {
        let drawn = r.randomized.as_ref().expect("randomized by default");
        positions.insert((r.launch, drawn.position));
        let scratch = format!("{}.{}", r.cell_key, r.launch);
        for (rank, lines) in [(0usize, &seen0), (1, &seen1)] {
            let line = lines
                .lines()
                .find(|l| l.starts_with(&format!("{scratch} ")))
                .unwrap_or_else(|| panic!("rank {rank} of {scratch}: {lines}"));
            let words: Vec<&str> = line.split(' ').collect();
            assert_eq!(words[1], drawn.env_pad.to_string(), "{line}");
            // hydra bound the rank to the core drawn for it.
            if let Some(cores) = &drawn.cores {
                assert_eq!(words[2], cores[rank].to_string(), "{line}");
                let binding = format!(
                    "user:{}",
                    cores
                        .iter()
                        .map(usize::to_string)
                        .collect::<Vec<_>>()
                        .join(",")
                );
                assert!(
                    r.env
                        .iter()
                        .any(|(k, v)| k == "HYDRA_BINDING" && *v == binding),
                    "{:?}",
                    r.env
                );
            }
        }
        assert!(
            !r.env.iter().any(|(k, _)| k == "HYBRUN_ENV_PAD"),
            "the pad is recorded by its size, not verbatim"
        );
    }
    // Each round launched both cells, at places 0 and 1.
    assert_eq!(
        positions,
        std::collections::BTreeSet::from([(0, 0), (0, 1), (1, 0), (1, 1)])
    );
}
