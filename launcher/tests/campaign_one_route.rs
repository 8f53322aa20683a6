//! One route to every command line: within one campaign group, the native
//! cell's launch and each container cell's launch, as the run directory's
//! launch records store them, differ only in the container part.
//!
//! Real launches: hybench under MPICH's mpiexec on this machine, the MPICH
//! test image under ch-run, a site file like scenarios/site-local.toml with a
//! site `[env]`, an MPI profile's `env` and a fabric (so the fabric guard has
//! variables to set). For native, hybrid and bind cells of one group:
//!
//! - the launcher's argv is the same up to the per-rank command (same program,
//!   same flags), and the argv is that prefix followed by the per-rank command;
//! - the native per-rank command is exactly the hybench command;
//! - the launcher's environment is the same, except the variables that reach
//!   the ranks through it (the plan's rank environment: natively all of them,
//!   in a container only what the runtime takes from it);
//! - the rank's environment changes (site, fabric guard, profile, the cell's
//!   own) are the same in every mode; a container mode may only add its own
//!   (bind mode's).
//!
//! A campaign that launched native cells by another route than the planner
//! (its own argv, its own environment) fails every one of these.

mod campaign_common;

use std::collections::BTreeMap;

use campaign_common::{campaign_run, hybench, mpich_image, only_run, records_all_ok, repo_root};
use hybrun::campaign::results::LaunchRecord;
use hybrun_core::vocab::Mode;
use serde_json::Value;

/// The hybench arguments of every cell (before the output options).
const HYBENCH_ARGS: [&str; 7] = ["latency", "-m", "1:8", "-i", "50", "-x", "5"];

fn site_file(dir: &std::path::Path) -> std::path::PathBuf {
    let local = std::fs::read_to_string(repo_root().join("scenarios/site-local.toml")).unwrap();
    // The local site, with a site [env], a profile env and a fabric kind whose
    // guard sets a variable for MPICH (UCX_TLS=^tcp: one node, shared memory).
    let text = local.replace(
        "[mpi.mpich]\n",
        "[env]\nset = { HYB_SITE_VAR = \"from-site\" }\n\n[fabric]\nkind = \"ucx\"\n\n[mpi.mpich]\nenv = { HYB_PROFILE_VAR = \"from-profile\" }\n",
    );
    assert_ne!(
        text, local,
        "scenarios/site-local.toml has an [mpi.mpich] section"
    );
    let path = dir.join("site.toml");
    std::fs::write(&path, text).unwrap();
    path
}

/// Runs the campaign; returns its launch records.
fn run_campaign() -> Option<Vec<LaunchRecord>> {
    let hybench = hybench()?;
    let image = mpich_image()?;
    let dir = tempfile::tempdir().unwrap();
    let site = site_file(dir.path());
    let scenario = dir.path().join("route.toml");
    std::fs::write(
        &scenario,
        format!(
            r#"name = "route"
launches = 2
timeout = "60s"
control = false
# The launch-level randomization (tests/campaign_cli.rs) would make every
# launch's core order its own: this test compares the routes alone.
randomize = false
site = "{site}"
runtime = "charliecloud"
[hybench]
mpich = "{hybench}"
[stop]
enabled = false
[matrix]
benchmark = ["latency"]
mode = ["native", "hybrid", "bind"]
image = ["{image}"]
env = [{{ HYB_CELL_VAR = "from-cell" }}]
[benchmark.latency]
sizes = "1:8"
iterations = 50
warmup = 5
"#,
            site = site.display(),
            hybench = hybench.display(),
            image = image.display()
        ),
    )
    .unwrap();
    let results_dir = dir.path().join("results");
    let out = campaign_run(&scenario, &results_dir)
        .arg("--no-report")
        .env_remove("HYBENCH_MPICH")
        .env_remove("HYBRUN_SITE")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "campaign failed: {stderr}");
    let run = only_run(&results_dir, "route");
    let records = records_all_ok(&run);
    Some(records)
}

/// The launcher part of a launch's argv: everything before the per-rank
/// command, which must be the argv's tail.
fn launcher_argv(r: &LaunchRecord) -> &[String] {
    assert!(
        !r.per_rank.is_empty(),
        "{}: no per-rank command recorded",
        r.cell_key
    );
    assert!(
        r.argv.ends_with(&r.per_rank),
        "{}: the argv {:?} does not end with the per-rank command {:?}",
        r.cell_key,
        r.argv,
        r.per_rank
    );
    &r.argv[..r.argv.len() - r.per_rank.len()]
}

/// The plan's rank environment changes: name -> (operation, delivery, why).
fn rank_env(r: &LaunchRecord) -> BTreeMap<String, (Value, String, String)> {
    let plan = r.plan.as_ref().expect("every launch records its plan");
    plan["rank"]["env"]
        .as_array()
        .expect("rank env")
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                (
                    c["op"].clone(),
                    c["delivery"].as_str().unwrap().to_owned(),
                    c["why"].as_str().unwrap().to_owned(),
                ),
            )
        })
        .collect()
}

/// The launcher's environment without what reaches the ranks through it:
/// the variables the plan delivers in the launcher's environment (by name, or
/// prefixed for Singularity/Apptainer).
fn launcher_env(r: &LaunchRecord) -> BTreeMap<String, String> {
    let delivered: Vec<String> = rank_env(r)
        .into_iter()
        .flat_map(|(name, (_, delivery, _))| match delivery.as_str() {
            "launcher" => vec![name],
            "prefixed" => vec![
                format!("SINGULARITYENV_{name}"),
                format!("APPTAINERENV_{name}"),
            ],
            _ => vec![],
        })
        .collect();
    // The rank's plan, handed to `hybrun exec` in HYBRUN_RANK_PLAN, reaches
    // the ranks through it too (its rank part differs by the container).
    r.env
        .iter()
        .filter(|(k, _)| !delivered.contains(k) && k != "HYBRUN_RANK_PLAN")
        .cloned()
        .collect()
}

/// Whether the launch handed its ranks their plan (and what the ranks add).
fn handed_facts(r: &LaunchRecord) -> Option<serde_json::Value> {
    let (_, text) = r.env.iter().find(|(k, _)| k == "HYBRUN_RANK_PLAN")?;
    let plan: serde_json::Value = serde_json::from_str(text).expect("a JSON rank plan");
    Some(plan["facts"].clone())
}

/// hybench's arguments after the program, with the per-launch output paths
/// (which name the cell) replaced by their file names.
fn hybench_words(words: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    let mut it = words.iter();
    while let Some(w) = it.next() {
        out.push(w.clone());
        if w == "--output" || w == "--samples" {
            let path = it.next().expect("a path after the option");
            out.push(
                std::path::Path::new(path)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    out
}

#[test]
fn native_and_container_launches_differ_only_in_the_container_part() {
    let Some(records) = run_campaign() else {
        return;
    };
    let hybench = hybench().unwrap();
    assert_eq!(records.len(), 6, "3 cells x 2 launches");
    let expected_args: Vec<String> = HYBENCH_ARGS
        .iter()
        .map(|s| s.to_string())
        .chain(
            [
                "--format",
                "csv",
                "--output",
                "results.csv",
                "--samples",
                "samples.csv",
            ]
            .map(String::from),
        )
        .collect();
    for launch in 0..2 {
        let of = |mode: Mode| {
            records
                .iter()
                .find(|r| r.mode == mode && r.launch == launch)
                .unwrap_or_else(|| panic!("no {mode} launch {launch}"))
        };
        let native = of(Mode::Native);

        // Native: the launcher, then exactly the hybench command (after `hybrun
        // exec ... --` where the rank's placement needs the wrapper, as in every
        // mode: here the site's fast fabric asks for a CPU binding near its NIC).
        let start = match native.per_rank.iter().position(|w| w == "--") {
            Some(dashes) if native.per_rank[1] == "exec" => dashes + 1,
            _ => 0,
        };
        let command = &native.per_rank[start..];
        assert_eq!(command[0], hybench.display().to_string());
        assert_eq!(hybench_words(&command[1..]), expected_args);
        let scratch = std::path::Path::new(&command[11]);
        assert!(
            scratch.ends_with(format!("{}.{launch}/results.csv", native.cell_key)),
            "{scratch:?}"
        );
        // The site, the profile, the fabric guard and the cell reach native
        // ranks (through the rank's plan: `hybrun exec` applies it), and the
        // core binding is the launcher's.
        let native_rank = rank_env(native);
        for (name, value) in [
            ("HYB_SITE_VAR", "from-site"),
            ("HYB_PROFILE_VAR", "from-profile"),
            ("HYB_CELL_VAR", "from-cell"),
            ("UCX_TLS", "^tcp"),
        ] {
            let op = native_rank.get(name).map(|(op, _, _)| op);
            assert_eq!(
                op.and_then(|op| op["set"].as_str()),
                Some(value),
                "{name}: {native_rank:?}"
            );
        }
        assert!(
            native
                .env
                .iter()
                .any(|(k, v)| k == "HYDRA_BINDING" && v == "core"),
            "{:?}",
            native.env
        );

        for mode in [Mode::Hybrid, Mode::Bind] {
            let container = of(mode);
            assert_eq!(
                launcher_argv(native),
                launcher_argv(container),
                "{mode}: the launcher differs from native's"
            );
            assert_eq!(
                launcher_env(native),
                launcher_env(container),
                "{mode}: the launcher's own environment differs from native's"
            );
            // Both hand their ranks the plan, and the ranks add the same
            // placement facts (CPUs near the site's NIC) in every mode.
            let (native_facts, facts) = (handed_facts(native), handed_facts(container));
            assert!(native_facts.is_some(), "native hands no rank plan");
            assert_eq!(
                native_facts.map(|f| f["cpu_binding"].clone()),
                facts.map(|f| f["cpu_binding"].clone()),
                "{mode}"
            );
            // The rank command runs the image's hybench with the same arguments.
            let payload = container
                .per_rank
                .iter()
                .position(|w| w == "/app/hybench")
                .unwrap_or_else(|| panic!("{mode}: no /app/hybench in {:?}", container.per_rank));
            assert_eq!(
                hybench_words(&container.per_rank[payload + 1..]),
                expected_args,
                "{mode}"
            );
            // The same rank environment; a container mode only adds its own.
            let rank = rank_env(container);
            for (name, (op, _, why)) in &native_rank {
                let theirs = rank
                    .get(name)
                    .unwrap_or_else(|| panic!("{mode}: {name} ({why}) is not in the rank's env"));
                assert_eq!((&theirs.0, &theirs.2), (op, why), "{mode}: {name}");
            }
            for (name, (_, _, why)) in &rank {
                assert!(
                    native_rank.contains_key(name) || why == "bind mode",
                    "{mode}: {name} ({why}) is added outside the container part"
                );
            }
        }
    }
}
