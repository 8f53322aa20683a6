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
use hybrun_core::vocab::{Dialect, LauncherKind, Mode, MpiFlavour, MpiPlugin, Version};

/// Flags of `singularity exec` in Singularity 3.6.4.
///
/// Source: cmd/internal/cli/action_flags.go of hpcng/singularity (the version
/// stored as apptainer/singularity commit 091c54f22a610468b9499ca284b7c13b300da7e2,
/// the 3.5 flag set: every cmdline.Flag registered for ExecCmd through the
/// "actions" and "actions_instance" groups, plus the common --passphrase,
/// --pem-path, --nohttps and --docker-* flags), and the v3.6.0 CHANGELOG
/// ("A new --env flag", "A new --env-file flag"; `--fusemount` made a
/// supported flag). 3.6.1 to 3.6.4 added no exec flags (CHANGELOG). Neither
/// --mount, --nvccli, --sharens nor --no-mount exists in 3.6.4.
const SINGULARITY_3_6_4_EXEC_FLAGS: &[&str] = &[
    "--add-caps",
    "--allow-setuid",
    "--app",
    "--apply-cgroups",
    "-B",
    "--bind",
    "-e",
    "--cleanenv",
    "-c",
    "--contain",
    "-C",
    "--containall",
    "--containlibs",
    "--disable-cache",
    "--dns",
    "--docker-login",
    "--docker-password",
    "--docker-username",
    "--drop-caps",
    "--env",
    "--env-file",
    "-f",
    "--fakeroot",
    "--fusemount",
    "-H",
    "--home",
    "--hostname",
    "-i",
    "--ipc",
    "--keep-privs",
    "-n",
    "--net",
    "--network",
    "--network-args",
    "--no-home",
    "--no-init",
    "--no-nv",
    "--no-privs",
    "--no-rocm",
    "--nohttps",
    "--nonet",
    "--nv",
    "-o",
    "--overlay",
    "--passphrase",
    "--pem-path",
    "-p",
    "--pid",
    "--pwd",
    "--rocm",
    "-S",
    "--scratch",
    "--security",
    "--tmpdir",
    "-u",
    "--userns",
    "--uts",
    "--vm",
    "--vm-cpu",
    "--vm-err",
    "--vm-ip",
    "--vm-ram",
    "-W",
    "--workdir",
    "-w",
    "--writable",
    "--writable-tmpfs",
];

/// Flags of `apptainer exec` in Apptainer 1.x.
///
/// Source: cmd/internal/cli/action_flags.go of apptainer/apptainer (commit
/// 00e9b038b8aa9d0b3adc4a3c2c0fe6d705e0eb6d): every cmdline.Flag registered for
/// ExecCmd. hybrun emits only -B, --nv and --env of these, which exist since 1.0.
const APPTAINER_1_EXEC_FLAGS: &[&str] = &[
    "--add-caps",
    "--allow-setuid",
    "--app",
    "--apply-cgroups",
    "-B",
    "--bind",
    "--blkio-weight",
    "--blkio-weight-device",
    "-e",
    "--cleanenv",
    "--compat",
    "-c",
    "--contain",
    "-C",
    "--containall",
    "--containlibs",
    "--cpu-shares",
    "--cpus",
    "--cpuset-cpus",
    "--cpuset-mems",
    "--cwd",
    "--disable-cache",
    "--dns",
    "--docker-host",
    "--docker-login",
    "--docker-password",
    "--docker-username",
    "--drop-caps",
    "--env",
    "--env-file",
    "-f",
    "--fakeroot",
    "--fusemount",
    "-H",
    "--home",
    "--hostname",
    "-i",
    "--ipc",
    "--keep-privs",
    "--memory",
    "--memory-reservation",
    "--memory-swap",
    "--mount",
    "-n",
    "--net",
    "--network",
    "--network-args",
    "--no-eval",
    "--no-home",
    "--no-https",
    "--no-init",
    "--no-mount",
    "--no-nv",
    "--no-privs",
    "--no-rocm",
    "--no-umask",
    "--nohttps",
    "--nv",
    "--nvccli",
    "--oom-kill-disable",
    "-o",
    "--overlay",
    "--passphrase",
    "--pem-path",
    "-p",
    "--pid",
    "--pids-limit",
    "--pwd",
    "--rocm",
    "-S",
    "--scratch",
    "--security",
    "--tmpdir",
    "--underlay",
    "--unsquash",
    "-u",
    "--userns",
    "--uts",
    "--vm",
    "--vm-cpu",
    "--vm-err",
    "--vm-ip",
    "--vm-ram",
    "-W",
    "--workdir",
    "-w",
    "--writable",
    "--writable-tmpfs",
];

/// Flags of ch-run 0.31 (`ch-run --help`).
const CH_RUN_0_31_FLAGS: &[&str] = &[
    "-b",
    "--bind",
    "--ch-ssh",
    "-c",
    "--cd",
    "--env-no-expand",
    "--feature",
    "-g",
    "--gid",
    "--home",
    "--join-ct",
    "--join-pid",
    "--join-tag",
    "-j",
    "--join",
    "-m",
    "--mount",
    "--no-passwd",
    "--set-env",
    "-s",
    "--storage",
    "-t",
    "--private-tmp",
    "--unset-env",
    "-u",
    "--uid",
    "-v",
    "--verbose",
    "-w",
    "--write",
];

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

fn assert_flags_exist(rendered: &Rendered, runtime: &Runtime, image: &Path) {
    let (program, subcommand, known): (&str, Option<&str>, &[&str]) = match runtime {
        Runtime::Singularity { .. } => ("singularity", Some("exec"), SINGULARITY_3_6_4_EXEC_FLAGS),
        Runtime::Apptainer { .. } => ("apptainer", Some("exec"), APPTAINER_1_EXEC_FLAGS),
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
                assert_flags_exist(&rendered, &case.plan.rank.runtime, image);
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
