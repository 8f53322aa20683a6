//! Golden tests of the exact argv each backend renders, and of every flag in it
//! existing in the runtime version it is rendered for.
//!
//! Each case builds a plan as the planner would (deliveries come from
//! `hybrun::launch::env::change`, the same function the planner uses) and compares
//! the rendered command with `tests/golden/NAME.argv` (one element per line:
//! `env-unset NAME`, `env-set NAME=VALUE`, `argv ELEMENT`, then the shell line).
//! `UPDATE_GOLDEN=1 cargo test -p hybrun --test launch_golden` rewrites them.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};

use hybrun::launch::env;
use hybrun::launch::plan::{
    Bind, EnvOp, Geometry, InsideLauncher, Join, LaunchPlan, Launcher, PerRank, RankPlan, Rendered,
    Runtime,
};
use hybrun::launch::runtime::flags::{
    APPTAINER_1_EXEC_FLAGS, CH_RUN_0_31_FLAGS, SINGULARITY_3_6_4_EXEC_FLAGS,
};
use hybrun_core::vocab::{Dialect, LauncherKind, Mode, MpiFlavour, MpiPlugin, Version};

fn singularity() -> Runtime {
    Runtime::Singularity {
        program: "singularity".into(),
        version: Version::new(3, 6, 4),
        dialect: Dialect::of(Version::new(3, 6, 4)),
    }
}

fn apptainer() -> Runtime {
    Runtime::Apptainer {
        program: "apptainer".into(),
        version: Version::new(1, 2, 5),
    }
}

fn charliecloud() -> Runtime {
    Runtime::Charliecloud {
        program: "ch-run".into(),
        version: None,
    }
}

const LIB: &str = "/usr/lib/x86_64-linux-gnu";
const BIND_DIR: &str = "/opt/hybrun/host-mpi/lib";

fn set(runtime: &Runtime, name: &str, value: &str, why: &str) -> hybrun::launch::plan::EnvChange {
    env::change(runtime, name, EnvOp::Set(value.into()), why).expect("valid change")
}

/// A rank as the planner builds it for `mode`.
fn rank(runtime: Runtime, mode: Mode, flavour: MpiFlavour) -> RankPlan {
    let mut binds = vec![Bind {
        src: "/gpfs".into(),
        dst: "/gpfs".into(),
        ro: false,
        why: "site".into(),
    }];
    let mut changes = vec![set(&runtime, "FI_PROVIDER", "psm2", "site [fabric]")];
    if mode == Mode::Bind {
        match runtime {
            Runtime::Charliecloud { .. } => binds.push(Bind {
                src: "/home/u/.hybrun/cache/bundles/bundle-0123456789abcdef".into(),
                dst: BIND_DIR.into(),
                ro: true,
                why: "host MPI".into(),
            }),
            _ => {
                for (host, name) in [
                    ("libmpich.so.12.2.2", "libmpich.so.12"),
                    ("libucs.so.0.0.0", "libucs.so.0"),
                ] {
                    binds.push(Bind {
                        src: Path::new(LIB).join(host),
                        dst: Path::new(BIND_DIR).join(name),
                        ro: true,
                        why: "host MPI".into(),
                    });
                }
                binds.push(Bind {
                    src: Path::new(LIB).join("ucx"),
                    dst: Path::new(BIND_DIR).join("ucx"),
                    ro: true,
                    why: "host MPI".into(),
                });
            }
        }
        changes.push(set(&runtime, "LD_LIBRARY_PATH", BIND_DIR, "bind mode"));
    }
    changes.push(set(&runtime, "OMP_NUM_THREADS", "1", "user"));
    changes.push(env::change(&runtime, "DISPLAY", EnvOp::Unset, "user").expect("valid"));
    let (runtime, binds, changes) = if mode == Mode::Native {
        (
            Runtime::None,
            Vec::new(),
            vec![
                set(&Runtime::None, "OMP_NUM_THREADS", "1", "user"),
                env::change(&Runtime::None, "DISPLAY", EnvOp::Unset, "user").expect("valid"),
            ],
        )
    } else {
        (runtime, binds, changes)
    };
    let image = (mode != Mode::Native).then(|| match runtime {
        Runtime::Charliecloud { .. } => PathBuf::from("/scratch/u/images/app"),
        _ => PathBuf::from("/allowed/u/app.sif"),
    });
    RankPlan {
        runtime,
        mode,
        image,
        binds,
        env: changes,
        nvidia: false,
        join: None,
        mount: None,
        inside: (mode == Mode::Inside).then(|| InsideLauncher {
            program: match flavour {
                MpiFlavour::Openmpi => "mpiexec",
                _ => "mpiexec.hydra",
            }
            .into(),
            flavour,
            ntasks: 4,
            oversubscribe: flavour == MpiFlavour::Openmpi,
        }),
        pwd: None,
        runtime_args: Vec::new(),
        interactive: false,
        command: vec![
            "/app/hybench".into(),
            "latency".into(),
            "--sizes".into(),
            "1:4K".into(),
        ],
    }
}

fn plan(kind: LauncherKind, rank: RankPlan, flavour: MpiFlavour) -> LaunchPlan {
    let geometry = match kind {
        LauncherKind::Srun => Geometry {
            nodes: Some(2),
            ntasks: Some(4),
            ntasks_per_node: Some(2),
            gpus_per_node: None,
            time: Some("00:10:00".into()),
            partition: Some("compute".into()),
            account: Some("proj42".into()),
            ..Geometry::default()
        },
        LauncherKind::None => Geometry {
            ntasks: Some(4),
            ..Geometry::default()
        },
        _ => Geometry {
            ntasks: Some(4),
            ntasks_per_node: Some(2),
            ..Geometry::default()
        },
    };
    LaunchPlan {
        geometry,
        launcher: Launcher {
            kind,
            program: match kind {
                LauncherKind::Srun => Some("srun".into()),
                LauncherKind::MpiexecHydra => Some("mpiexec.hydra".into()),
                LauncherKind::MpiexecOpenmpi => Some("mpiexec.openmpi".into()),
                LauncherKind::None => None,
            },
            mpi: (kind == LauncherKind::Srun).then(|| flavour.default_plugin()),
            oversubscribe: kind == LauncherKind::MpiexecOpenmpi,
        },
        per_rank: PerRank::Direct,
        rank,
        notes: Vec::new(),
    }
}

fn golden_text(description: &str, rendered: &Rendered) -> String {
    let mut text = format!("# {description}\n");
    for name in &rendered.env_unset {
        text.push_str(&format!("env-unset {}\n", name.to_string_lossy()));
    }
    for (name, value) in &rendered.env_set {
        text.push_str(&format!(
            "env-set {}={}\n",
            name.to_string_lossy(),
            value.to_string_lossy()
        ));
    }
    for arg in &rendered.argv {
        text.push_str(&format!("argv {}\n", arg.to_string_lossy()));
    }
    text.push_str(&format!("shell {}\n", rendered.shell_line()));
    text
}

fn check_golden(name: &str, description: &str, rendered: &Rendered) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.argv"));
    let text = golden_text(description, rendered);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).expect("write golden");
        return;
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_GOLDEN=1 writes it)", path.display()));
    assert_eq!(
        text,
        want,
        "{name}: rendered argv differs from {}",
        path.display()
    );
}

/// The flags in the runtime's part of `argv` (between the runtime program and
/// the image), e.g. `-B`, `--env`, `--set-env`.
fn runtime_flags(argv: &[OsString], program: &str, image: &Path) -> Vec<String> {
    let start = argv
        .iter()
        .position(|a| a == program)
        .unwrap_or_else(|| panic!("{program} not in {argv:?}"));
    let end = argv
        .iter()
        .position(|a| Path::new(a) == image)
        .unwrap_or_else(|| panic!("image not in {argv:?}"));
    argv[start + 1..end]
        .iter()
        .filter_map(|a| a.to_str())
        .filter(|a| a.starts_with('-'))
        .map(|a| a.split('=').next().unwrap_or(a).to_owned())
        .collect()
}

fn assert_flags_exist(rendered: &Rendered, rank: &RankPlan, image: &Path) {
    let runtime = &rank.runtime;
    let (program, subcommand, known): (&str, Option<&str>, &[&str]) = match runtime {
        // `shell` registers the same action flags as `exec` (action_flags.go).
        Runtime::Singularity { .. } => (
            "singularity",
            Some(if rank.interactive { "shell" } else { "exec" }),
            SINGULARITY_3_6_4_EXEC_FLAGS,
        ),
        Runtime::Apptainer { .. } => (
            "apptainer",
            Some(if rank.interactive { "shell" } else { "exec" }),
            APPTAINER_1_EXEC_FLAGS,
        ),
        Runtime::Charliecloud { .. } => ("ch-run", None, CH_RUN_0_31_FLAGS),
        Runtime::None => return,
    };
    let known: BTreeSet<&str> = known.iter().copied().collect();
    if let Some(sub) = subcommand {
        let at = rendered
            .argv
            .iter()
            .position(|a| a == program)
            .expect("program");
        assert_eq!(
            rendered.argv[at + 1],
            sub,
            "{program} must be followed by {sub}"
        );
    }
    for flag in runtime_flags(&rendered.argv, program, image) {
        assert!(
            known.contains(flag.as_str()),
            "{program}: flag {flag} does not exist in the version rendered for"
        );
    }
    if matches!(runtime, Runtime::Singularity { .. }) {
        for arg in &rendered.argv {
            let arg = arg.to_string_lossy();
            for forbidden in ["--mount", "--nvccli", "--sharens", "APPTAINERENV_"] {
                assert!(!arg.contains(forbidden), "3.6.4 has no {forbidden}: {arg}");
            }
        }
        for (name, _) in &rendered.env_set {
            assert!(
                !name.to_string_lossy().starts_with("APPTAINERENV_"),
                "3.6.4 has no APPTAINERENV_*"
            );
        }
    }
}

struct Case {
    name: &'static str,
    description: &'static str,
    plan: LaunchPlan,
}

// A data table: one entry per golden file.
#[allow(clippy::too_many_lines)]
fn cases() -> Vec<Case> {
    use LauncherKind::*;
    use Mode::*;
    use MpiFlavour::*;
    let mut cases = Vec::new();
    let mut add = |name, description, kind, runtime: Runtime, mode, flavour| {
        cases.push(Case {
            name,
            description,
            plan: plan(kind, rank(runtime, mode, flavour), flavour),
        });
    };
    add(
        "native_srun",
        "native mode, srun, MPICH (pmi2)",
        Srun,
        Runtime::None,
        Native,
        Mpich,
    );
    add(
        "native_hydra",
        "native mode, mpiexec.hydra",
        MpiexecHydra,
        Runtime::None,
        Native,
        Mpich,
    );
    add(
        "native_openmpi",
        "native mode, mpiexec.openmpi",
        MpiexecOpenmpi,
        Runtime::None,
        Native,
        Openmpi,
    );
    add(
        "singularity364_hybrid_srun",
        "Singularity 3.6.4, hybrid, srun pmi2",
        Srun,
        singularity(),
        Hybrid,
        Mpich,
    );
    add(
        "singularity364_bind_srun",
        "Singularity 3.6.4, bind, srun pmi2",
        Srun,
        singularity(),
        Bind,
        Mpich,
    );
    add(
        "singularity364_inside",
        "Singularity 3.6.4, inside (hydra in the container)",
        None,
        singularity(),
        Inside,
        Mpich,
    );
    add(
        "singularity364_hybrid_hydra",
        "Singularity 3.6.4, hybrid, mpiexec.hydra",
        MpiexecHydra,
        singularity(),
        Hybrid,
        Mpich,
    );
    add(
        "singularity364_bind_openmpi",
        "Singularity 3.6.4, bind, mpiexec.openmpi (-x exports)",
        MpiexecOpenmpi,
        singularity(),
        Bind,
        Openmpi,
    );
    add(
        "apptainer1_hybrid_srun",
        "Apptainer 1.x, hybrid, srun pmix",
        Srun,
        apptainer(),
        Hybrid,
        Openmpi,
    );
    add(
        "apptainer1_bind_srun",
        "Apptainer 1.x, bind, srun pmi2",
        Srun,
        apptainer(),
        Bind,
        Mpich,
    );
    add(
        "apptainer1_inside",
        "Apptainer 1.x, inside (Open MPI in the container)",
        None,
        apptainer(),
        Inside,
        Openmpi,
    );
    add(
        "apptainer1_hybrid_openmpi",
        "Apptainer 1.x, hybrid, mpiexec.openmpi",
        MpiexecOpenmpi,
        apptainer(),
        Hybrid,
        Openmpi,
    );
    add(
        "charliecloud_bind_hydra",
        "ch-run, bind, mpiexec.hydra",
        MpiexecHydra,
        charliecloud(),
        Bind,
        Mpich,
    );

    // ch-run joined per node, as `hybrun exec` renders a rank under srun.
    let mut joined = rank(charliecloud(), Mode::Hybrid, MpiFlavour::Mpich);
    joined.join = Some(Join {
        count: 2,
        tag: Some("hybrun.42.0.node2".into()),
    });
    joined.env.push(set(
        &joined.runtime,
        "GREETING",
        "cost $5, \"quoted\"",
        "user",
    ));
    cases.push(Case {
        name: "charliecloud_rank_joined",
        description: "ch-run rank under srun: join per node and job, $ in a value",
        plan: plan(LauncherKind::None, joined, MpiFlavour::Mpich),
    });

    // GPUs: --gpus-per-node and --nv.
    let mut gpu = plan(
        LauncherKind::Srun,
        rank(singularity(), Mode::Hybrid, MpiFlavour::Mpich),
        MpiFlavour::Mpich,
    );
    gpu.geometry.gpus_per_node = Some(4);
    gpu.rank.nvidia = true;
    cases.push(Case {
        name: "singularity364_gpu_srun",
        description: "Singularity 3.6.4, hybrid, srun with 4 GPUs per node",
        plan: gpu,
    });

    // The job's shape: every srun option hybrun models, and one passed through.
    let mut shape = plan(
        LauncherKind::Srun,
        rank(singularity(), Mode::Hybrid, MpiFlavour::Mpich),
        MpiFlavour::Mpich,
    );
    shape.geometry = Geometry {
        cpus_per_task: Some(8),
        exclusive: true,
        mem: Some("64G".into()),
        constraint: Some("skylake&ib".into()),
        qos: Some("debug".into()),
        job_name: Some("lj run".into()),
        gpus_per_task: Some(2),
        gpu_bind: Some("closest".into()),
        srun_args: vec!["--cpu-freq=high".into(), "--hint=nomultithread".into()],
        ..shape.geometry
    };
    shape.rank.nvidia = true;
    cases.push(Case {
        name: "singularity364_shape_srun",
        description: "Singularity 3.6.4, hybrid, srun: -c 8, 2 GPUs per task, exclusive, \
                      mem, constraint, qos, job name, two --srun-arg",
        plan: shape,
    });
    // --runtime-arg: flags hybrun does not model, before the image, each in
    // the version's list (assert_flags_exist).
    for (name, runtime, extra) in [
        (
            "singularity364_runtime_args_srun",
            singularity(),
            &["--contain", "--overlay", "/scratch/u/overlay.img"][..],
        ),
        (
            "apptainer1_runtime_args_srun",
            apptainer(),
            &["--writable-tmpfs"][..],
        ),
        (
            "charliecloud_runtime_args_srun",
            charliecloud(),
            &["--private-tmp"][..],
        ),
    ] {
        let mut r = rank(runtime, Mode::Hybrid, MpiFlavour::Mpich);
        r.runtime_args = extra.iter().map(OsString::from).collect();
        cases.push(Case {
            name,
            description: "hybrid, srun, --runtime-arg flags before the image",
            plan: plan(LauncherKind::Srun, r, MpiFlavour::Mpich),
        });
    }

    // hybrun shell: the runtime's shell, same binds and environment.
    for (name, runtime) in [
        ("singularity364_shell", singularity()),
        ("apptainer1_shell", apptainer()),
        ("charliecloud_shell", charliecloud()),
    ] {
        let mut r = rank(runtime, Mode::Hybrid, MpiFlavour::Mpich);
        r.interactive = true;
        r.command = vec!["/bin/sh".into()];
        cases.push(Case {
            name,
            description: "hybrun shell: the runtime's interactive shell, no launcher",
            plan: plan(LauncherKind::None, r, MpiFlavour::Mpich),
        });
    }

    // CPUs per rank through mpiexec: hydra -bind-to core:N, Open MPI
    // --map-by slot:PE=N.
    for (name, kind, flavour) in [
        (
            "native_cpus_hydra",
            LauncherKind::MpiexecHydra,
            MpiFlavour::Mpich,
        ),
        (
            "native_cpus_openmpi",
            LauncherKind::MpiexecOpenmpi,
            MpiFlavour::Openmpi,
        ),
    ] {
        let mut p = plan(kind, rank(Runtime::None, Mode::Native, flavour), flavour);
        p.geometry.cpus_per_task = Some(4);
        cases.push(Case {
            name,
            description: "native, 4 CPUs per rank through mpiexec",
            plan: p,
        });
    }

    // Apptainer: a value --env cannot carry goes through APPTAINERENV_.
    let mut csv = rank(apptainer(), Mode::Hybrid, MpiFlavour::Mpich);
    csv.env
        .push(set(&csv.runtime, "UCX_TLS", "self,sm", "user"));
    cases.push(Case {
        name: "apptainer1_comma_value",
        description: "Apptainer 1.x: a value with ',' goes through APPTAINERENV_",
        plan: plan(LauncherKind::Srun, csv, MpiFlavour::Mpich),
    });

    // The ranks' working directory (an application's launch directory):
    // --pwd for Singularity and Apptainer, --cd for ch-run, `cd` in the line.
    for (name, runtime) in [
        ("singularity364_pwd_srun", singularity()),
        ("apptainer1_pwd_srun", apptainer()),
        ("charliecloud_pwd_srun", charliecloud()),
    ] {
        let mut r = rank(runtime, Mode::Hybrid, MpiFlavour::Mpich);
        r.pwd = Some("/scratch/u/run/lj.0".into());
        cases.push(Case {
            name,
            description: "hybrid, srun, the ranks in a working directory of their own",
            plan: plan(LauncherKind::Srun, r, MpiFlavour::Mpich),
        });
    }

    // The per-rank wrapper under srun.
    let mut wrapped = plan(
        LauncherKind::Srun,
        rank(apptainer(), Mode::Hybrid, MpiFlavour::Openmpi),
        MpiFlavour::Openmpi,
    );
    wrapped.per_rank = PerRank::Wrapper {
        program: "/usr/local/bin/hybrun".into(),
        args: [
            "exec",
            "--site",
            "/etc/hybrun/site.toml",
            "--mode",
            "hybrid",
            "--runtime",
            "apptainer",
            "--runtime-version",
            "1.2.5",
            "--mpi-profile",
            "openmpi",
            "--mpi",
            "pmix",
            "/allowed/u/app.sif",
            "--",
            "/app/hybench",
            "latency",
        ]
        .iter()
        .map(OsString::from)
        .collect(),
        why: vec!["PMIx".into()],
        handoff: Option::None,
        launch: Option::None,
    };
    cases.push(Case {
        name: "wrapper_srun_pmix",
        description: "srun pmix with the per-rank wrapper (hybrun exec)",
        plan: wrapped,
    });
    cases
}

#[test]
fn golden_argv() {
    for case in cases() {
        let rendered = case
            .plan
            .render()
            .unwrap_or_else(|e| panic!("{}: {e}", case.name));
        check_golden(case.name, case.description, &rendered);
        if let Some(image) = &case.plan.rank.image {
            if case.plan.per_rank == PerRank::Direct {
                assert_flags_exist(&rendered, &case.plan.rank, image);
            }
        }
    }
}

#[test]
fn every_mode_has_a_golden_file_per_runtime() {
    let names: Vec<&str> = cases().iter().map(|c| c.name).collect();
    for (prefix, modes) in [
        ("singularity364_", ["hybrid", "bind", "inside"]),
        ("apptainer1_", ["hybrid", "bind", "inside"]),
    ] {
        for mode in modes {
            assert!(
                names
                    .iter()
                    .any(|n| n.starts_with(prefix) && n.contains(mode)),
                "no golden case for {prefix}{mode}"
            );
        }
    }
    assert!(names.iter().any(|n| n.starts_with("native_")));
}

#[test]
fn srun_and_mpi_plugin() {
    let p = plan(
        LauncherKind::Srun,
        rank(singularity(), Mode::Hybrid, MpiFlavour::Mpich),
        MpiFlavour::Mpich,
    );
    let argv = p.render().expect("render").argv;
    assert!(argv.contains(&OsString::from("--mpi=pmi2")));
    assert!(argv.contains(&OsString::from("-K")));
    let mut p = p;
    p.launcher.mpi = Some(MpiPlugin::Pmix);
    let argv = p.render().expect("render").argv;
    assert!(argv.contains(&OsString::from("--mpi=pmix")));
}

#[test]
fn bind_paths_with_separators_refused_at_render() {
    for bad in ["/data/a:b", "/data/a,b"] {
        let mut p = plan(
            LauncherKind::Srun,
            rank(singularity(), Mode::Hybrid, MpiFlavour::Mpich),
            MpiFlavour::Mpich,
        );
        p.rank.binds.push(Bind {
            src: bad.into(),
            dst: "/data".into(),
            ro: false,
            why: "user".into(),
        });
        let err = p.render().expect_err("refused");
        assert!(
            err.to_string().contains("split bind specifications"),
            "{err}"
        );
    }
}

/// A change to a plan's geometry.
type SetGeometry = fn(&mut Geometry);

#[test]
fn mpiexec_refuses_each_srun_only_shape_option() {
    let cases: Vec<(&str, SetGeometry)> = vec![
        ("--exclusive", |g| g.exclusive = true),
        ("--mem", |g| g.mem = Some("4G".into())),
        ("--constraint", |g| g.constraint = Some("ib".into())),
        ("--qos", |g| g.qos = Some("debug".into())),
        ("--job-name", |g| g.job_name = Some("x".into())),
        ("--gpu-bind", |g| g.gpu_bind = Some("closest".into())),
        ("--srun-arg", |g| {
            g.srun_args = vec!["--hint=nomultithread".into()]
        }),
    ];
    for kind in [LauncherKind::MpiexecHydra, LauncherKind::MpiexecOpenmpi] {
        for (flag, set) in &cases {
            let mut p = plan(
                kind,
                rank(singularity(), Mode::Hybrid, MpiFlavour::Mpich),
                MpiFlavour::Mpich,
            );
            set(&mut p.geometry);
            let err = p.render().expect_err("refused").to_string();
            assert!(
                err.contains(&format!("no equivalent of srun's {flag}")) && err.contains("srun"),
                "{kind:?} {flag}: {err}"
            );
        }
        // GPUs per rank: hybrun exec gives each rank its own (the planner puts
        // the wrapper in front), so mpiexec renders and leaves them alone.
        let mut p = plan(
            kind,
            rank(singularity(), Mode::Hybrid, MpiFlavour::Mpich),
            MpiFlavour::Mpich,
        );
        p.geometry.gpus_per_task = Some(2);
        let argv = p.render().expect("rendered").argv;
        assert!(
            !argv.iter().any(|a| a.to_string_lossy().contains("gpu")),
            "{argv:?}"
        );
    }
}

#[test]
fn bad_job_shapes_refused_with_the_reason() {
    let cases: Vec<(SetGeometry, &str)> = vec![
        (
            |g| {
                g.gpus_per_task = Some(1);
                g.gpus_per_node = Some(4);
            },
            "--gpus-per-task 1 with --gpus-per-node 4: give one of them",
        ),
        (|g| g.cpus_per_task = Some(0), "must be at least 1"),
        (
            |g| g.mem = Some(String::new()),
            "--mem \"\": give a non-empty value",
        ),
        (
            |g| g.srun_args = vec!["--mpi=pmix".into()],
            "--srun-arg \"--mpi=pmix\": hybrun chooses the PMI plugin",
        ),
        (
            |g| g.srun_args = vec!["--export=NONE".into()],
            "--srun-arg \"--export=NONE\": hybrun passes the rank environment",
        ),
        (
            |g| g.srun_args = vec!["-K0".into()],
            "--srun-arg \"-K0\": hybrun always sets --kill-on-bad-exit",
        ),
        (
            |g| g.srun_args = vec!["hostname".into()],
            "--srun-arg \"hostname\": not an option",
        ),
    ];
    for (set, want) in cases {
        let mut p = plan(
            LauncherKind::Srun,
            rank(singularity(), Mode::Hybrid, MpiFlavour::Mpich),
            MpiFlavour::Mpich,
        );
        set(&mut p.geometry);
        let err = p.render().expect_err("refused").to_string();
        assert!(err.contains(want), "want {want:?} in: {err}");
    }
}

#[test]
fn mpiexec_refuses_srun_only_geometry() {
    let mut p = plan(
        LauncherKind::MpiexecHydra,
        rank(singularity(), Mode::Hybrid, MpiFlavour::Mpich),
        MpiFlavour::Mpich,
    );
    p.geometry.partition = Some("gpu".into());
    let err = p.render().expect_err("refused");
    assert!(err.to_string().contains("--partition"), "{err}");
}
