//! The flags each runtime version has, as data: `--runtime-arg` is checked
//! against them (a flag the site's version lacks fails at launch on every
//! rank, long after the job waited in the queue), and so is every flag hybrun
//! renders itself (tests/launch_golden.rs).
//!
//! Flags hybrun sets itself are refused as `--runtime-arg`, each with the
//! option that does the same: a second bind or environment mechanism beside
//! hybrun's would bypass its checks (bind separators, bind mode's library
//! directory, the environment deliveries of [`super::super::env`]) and its
//! record of what the rank got.

use std::ffi::OsString;

use crate::launch::LaunchError;
use crate::launch::plan::Runtime;

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
pub const SINGULARITY_3_6_4_EXEC_FLAGS: &[&str] = &[
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
pub const APPTAINER_1_EXEC_FLAGS: &[&str] = &[
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
pub const CH_RUN_0_31_FLAGS: &[&str] = &[
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

/// The flags of `runtime`'s version, with the version they were taken from;
/// None where hybrun keeps no list for that version.
pub fn known(runtime: &Runtime) -> Option<(&'static [&'static str], &'static str)> {
    match runtime {
        Runtime::Singularity { version, .. } if version.major == 3 && version.minor == 6 => {
            Some((SINGULARITY_3_6_4_EXEC_FLAGS, "Singularity 3.6"))
        }
        Runtime::Apptainer { version, .. } if version.major == 1 => {
            Some((APPTAINER_1_EXEC_FLAGS, "Apptainer 1.x"))
        }
        // 0.31 is the one hybrun is tested with (Debian 12's
        // charliecloud-runtime); an unknown version (a dry run without ch-run)
        // is taken to be it.
        Runtime::Charliecloud { version, .. }
            if version.is_none_or(|v| v.major == 0 && v.minor == 31) =>
        {
            Some((CH_RUN_0_31_FLAGS, "ch-run 0.31"))
        }
        _ => None,
    }
}

/// Flags of `singularity exec`/`apptainer exec` that hybrun sets itself: the
/// flag, then why and what to use instead.
const SINGULARITY_OWNED: &[(&str, &str)] = &[
    ("-B", BINDS),
    ("--bind", BINDS),
    ("--mount", BINDS),
    ("--env", ENV),
    ("--env-file", ENV),
    ("-e", CLEANENV),
    ("--cleanenv", CLEANENV),
    ("-C", CLEANENV),
    ("--containall", CLEANENV),
    ("--nv", GPUS),
    ("--nvccli", GPUS),
    ("--pwd", PWD),
    ("--cwd", PWD),
];

/// Flags of ch-run that hybrun sets itself.
const CH_RUN_OWNED: &[(&str, &str)] = &[
    ("-b", BINDS),
    ("--bind", BINDS),
    ("--set-env", ENV),
    ("--unset-env", ENV),
    ("--env-no-expand", ENV),
    ("-c", PWD),
    ("--cd", PWD),
    ("-j", JOIN),
    ("--join", JOIN),
    ("--join-ct", JOIN),
    ("--join-pid", JOIN),
    ("--join-tag", JOIN),
];

const BINDS: &str = "hybrun sets the binds (site, bind mode, PMIx): use -B/--bind";
const ENV: &str = "hybrun sets the rank's environment: use --env NAME=VALUE or --unset NAME";
const CLEANENV: &str = "the ranks need SLURM_*, PMI_* and PMIX_* from the launcher's \
                        environment, which this flag removes";
const GPUS: &str = "hybrun sets GPU access: use --nv, --gpus-per-node or --gpus-per-task";
const PWD: &str = "hybrun sets the working directory: use --pwd DIR";
const JOIN: &str = "hybrun joins a node's ranks into one container itself (per node and launch)";

/// Checks `--runtime-arg`s: words starting with '-' are flags (`--flag=value`
/// counts as `--flag`), other words are values of the flag before them.
/// Refused: any in native mode, a flag hybrun owns, a flag the version
/// lacks. Where hybrun keeps no list for the version, the reason comes back
/// as `Ok(Some(..))` for a warning.
pub fn check_args(runtime: &Runtime, args: &[OsString]) -> Result<Option<String>, LaunchError> {
    if args.is_empty() {
        return Ok(None);
    }
    let refuse = |arg: &str, why: String| {
        Err(LaunchError::Refused {
            message: format!("--runtime-arg {arg:?}: {why}"),
        })
    };
    let owned = match runtime {
        Runtime::None => {
            return refuse(
                &args[0].to_string_lossy(),
                "native mode runs no container runtime to pass it to".into(),
            );
        }
        Runtime::Charliecloud { .. } => CH_RUN_OWNED,
        _ => SINGULARITY_OWNED,
    };
    let known = known(runtime);
    for arg in args {
        let text = arg.to_string_lossy();
        if text.chars().any(char::is_control) {
            return refuse(&text, "it has control characters".into());
        }
        if !text.starts_with('-') {
            if std::ptr::eq(arg, &args[0]) {
                return refuse(
                    &text,
                    "a value with no flag before it (the runtime would take it for the \
                     image): give the flag first, e.g. --runtime-arg=--overlay=FILE"
                        .into(),
                );
            }
            continue;
        }
        let flag = text.split('=').next().unwrap_or(&text);
        if let Some((_, why)) = owned.iter().find(|(f, _)| *f == flag) {
            return refuse(&text, (*why).to_owned());
        }
        if let Some((flags, version)) = known {
            if !flags.contains(&flag) {
                return refuse(
                    &text,
                    format!(
                        "{version} has no {flag} flag (see its --help); set the site's \
                         [runtime] version if the installed one differs"
                    ),
                );
            }
        }
    }
    Ok(match known {
        Some(_) => None,
        None => Some(format!(
            "--runtime-arg not checked: hybrun keeps no flag list for {} {}",
            runtime.kind().name(),
            match runtime {
                Runtime::Singularity { version, .. } | Runtime::Apptainer { version, .. } =>
                    version.to_string(),
                Runtime::Charliecloud {
                    version: Some(version),
                    ..
                } => version.to_string(),
                _ => String::new(),
            }
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use hybrun_core::vocab::{Dialect, Version};

    fn singularity(version: Version) -> Runtime {
        Runtime::Singularity {
            program: "singularity".into(),
            version,
            dialect: Dialect::of(version),
        }
    }

    fn args(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    #[test]
    fn a_flag_the_version_has_passes_with_its_value() {
        let s = singularity(Version::new(3, 6, 4));
        let ok = check_args(&s, &args(&["--contain", "--overlay", "/x.img"]));
        assert_eq!(ok.expect("accepted"), None);
        assert!(check_args(&s, &args(&["--overlay=/x.img"])).is_ok());
        let err = check_args(&s, &args(&["/x.img"])).expect_err("no flag");
        assert!(err.to_string().contains("no flag before it"), "{err}");
    }

    #[test]
    fn a_flag_the_version_lacks_is_refused_naming_the_version() {
        let s = singularity(Version::new(3, 6, 4));
        let err = check_args(&s, &args(&["--no-mount", "tmp"])).expect_err("refused");
        assert!(
            err.to_string()
                .contains("--runtime-arg \"--no-mount\": Singularity 3.6 has no --no-mount"),
            "{err}"
        );
    }

    #[test]
    fn owned_flags_are_refused_with_the_option_to_use() {
        let s = singularity(Version::new(3, 6, 4));
        for (arg, want) in [
            ("-B", "use -B/--bind"),
            ("--env=A=1", "use --env NAME=VALUE"),
            ("--nv", "use --nv, --gpus-per-node"),
            ("--pwd", "use --pwd DIR"),
            ("--cleanenv", "SLURM_*"),
        ] {
            let err = check_args(&s, &args(&[arg])).expect_err(arg).to_string();
            assert!(err.contains(want), "{arg}: {err}");
        }
        let ch = Runtime::Charliecloud {
            program: "ch-run".into(),
            version: None,
        };
        for arg in ["--join-tag=x", "--cd", "--set-env=A=1", "-b"] {
            assert!(check_args(&ch, &args(&[arg])).is_err(), "{arg}");
        }
        assert!(check_args(&ch, &args(&["--private-tmp"])).is_ok());
        let err = check_args(&Runtime::None, &args(&["--contain"])).expect_err("native");
        assert!(err.to_string().contains("native mode"), "{err}");
    }

    #[test]
    fn a_version_without_a_list_is_let_through_with_a_warning() {
        let s = singularity(Version::new(3, 8, 0));
        let warning = check_args(&s, &args(&["--no-mount", "tmp"])).expect("accepted");
        assert!(warning.is_some_and(|w| w.contains("no flag list for singularity 3.8.0")),);
        // ch-run: 0.31's list for 0.31 (and an unknown version), none for another.
        let ch = |version| Runtime::Charliecloud {
            program: "ch-run".into(),
            version,
        };
        for version in [None, Some(Version::new(0, 31, 0))] {
            let err = check_args(&ch(version), &args(&["--no-such"])).expect_err("0.31");
            assert!(
                err.to_string().contains("ch-run 0.31 has no --no-such"),
                "{err}"
            );
        }
        let warning = check_args(&ch(Some(Version::new(0, 38, 0))), &args(&["--no-such"]));
        assert!(
            warning
                .expect("accepted")
                .is_some_and(|w| w.contains("charliecloud 0.38.0")),
        );
    }
}
