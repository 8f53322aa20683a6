//! Environment rules: which variables a launch sets or removes, and how each
//! runtime receives them.
//!
//! # What passes by itself
//!
//! `SLURM_*`, `PMI_*` and `PMIX_*` (and hydra's `MPI_LOCAL*`, Open MPI's
//! `OMPI_*`) are set by srun/mpiexec in each task's environment, and every runtime
//! hybrun drives passes the host environment into the container: Singularity and
//! Apptainer do unless `--cleanenv`/`--containall` is given, and hybrun never gives
//! them; ch-run passes it as well. So the MPI library in the container finds its
//! PMI without any forwarding, and hybrun refuses to unset those variables.
//! Exceptions the runtimes make: Singularity/Apptainer never pass the host's
//! `LD_LIBRARY_PATH`, `PATH` or `HOME` (hence `SINGULARITYENV_LD_LIBRARY_PATH` in
//! bind mode).
//!
//! # How a change is delivered (chosen once, in the plan)
//!
//! | runtime | set | unset |
//! |---|---|---|
//! | none (native) | launcher environment | launcher environment |
//! | Singularity 3.x | `SINGULARITYENV_NAME` in the launcher environment | removed from the launcher environment (with any `SINGULARITYENV_NAME`) |
//! | Apptainer 1.x | `--env NAME=VALUE`; `APPTAINERENV_NAME` when the value has `,` `"` or a line break (`--env` parses its value as CSV) | as Singularity, plus `APPTAINERENV_NAME` |
//! | ch-run | `--set-env=NAME=VALUE` (`--env-no-expand` when a value has `$`) | `--unset-env=NAME` |
//!
//! Singularity 3.6 has `--env` too, but hybrun uses `SINGULARITYENV_*` there: it
//! is the one mechanism every 3.x honours for every variable, `LD_LIBRARY_PATH`
//! included.

use std::ffi::OsString;

use super::LaunchError;
use super::plan::{Delivery, EnvChange, EnvOp, Runtime};

/// Who asked for a change the user made (`--env`, `--unset`): a change by
/// anyone else applied after the user's keeps the user's
/// ([`Changes::set_below_user`]).
pub const BY_USER: &str = "user";

/// Prefixes of the variables MPI start-up depends on; never unset.
pub const PMI_PREFIXES: [&str; 3] = ["SLURM_", "PMI_", "PMIX_"];

/// Checks a variable name: a portable shell name (`[A-Za-z_][A-Za-z0-9_]*`),
/// which every runtime and `env` accept and which cannot smuggle `=`.
pub fn check_name(name: &str) -> Result<(), LaunchError> {
    let mut chars = name.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(LaunchError::EnvName {
            name: name.to_owned(),
        })
    }
}

/// The prefix variable of a runtime (`SINGULARITYENV_`, `APPTAINERENV_`).
pub fn prefix(runtime: &Runtime) -> Option<&'static str> {
    match runtime {
        Runtime::Singularity { .. } => Some("SINGULARITYENV_"),
        Runtime::Apptainer { .. } => Some("APPTAINERENV_"),
        Runtime::Charliecloud { .. } | Runtime::None => None,
    }
}

/// Whether Apptainer's `--env` carries `value` unchanged: the flag's value is
/// read as one CSV record, so commas, quotes and line breaks would be mangled.
fn env_flag_safe(value: &OsString) -> bool {
    value
        .to_str()
        .is_some_and(|v| !v.contains([',', '"', '\n', '\r']))
}

/// How `op` reaches the container for `runtime`.
pub fn delivery(runtime: &Runtime, op: &EnvOp) -> Delivery {
    match (runtime, op) {
        (Runtime::None, _) => Delivery::Launcher,
        (Runtime::Singularity { .. }, EnvOp::Set(_)) => Delivery::Prefixed,
        (Runtime::Apptainer { .. }, EnvOp::Set(value)) => {
            if env_flag_safe(value) {
                Delivery::Flag
            } else {
                Delivery::Prefixed
            }
        }
        (Runtime::Singularity { .. } | Runtime::Apptainer { .. }, EnvOp::Unset) => {
            Delivery::Launcher
        }
        (Runtime::Charliecloud { .. }, _) => Delivery::Flag,
    }
}

/// One checked change, with its delivery for `runtime`.
pub fn change(
    runtime: &Runtime,
    name: &str,
    op: EnvOp,
    why: &str,
) -> Result<EnvChange, LaunchError> {
    check_name(name)?;
    if op == EnvOp::Unset && PMI_PREFIXES.iter().any(|p| name.starts_with(p)) {
        return Err(LaunchError::EnvPmiUnset {
            name: name.to_owned(),
        });
    }
    Ok(EnvChange {
        name: name.to_owned(),
        delivery: delivery(runtime, &op),
        op,
        why: why.to_owned(),
    })
}

/// Adds `new` to `changes`, replacing an earlier change of the same variable
/// (later sources win: site, then profile, then mode, then the user).
pub fn merge(changes: &mut Vec<EnvChange>, new: EnvChange) {
    changes.retain(|c| c.name != new.name);
    changes.push(new);
}

/// Parses `NAME=VALUE` (the value may contain `=`).
pub fn parse_assignment(text: &OsString) -> Result<(String, OsString), LaunchError> {
    let bytes = text.as_encoded_bytes();
    let eq = bytes.iter().position(|&b| b == b'=');
    let bad = || LaunchError::EnvAssignment {
        text: text.to_string_lossy().into_owned(),
    };
    let eq = eq.ok_or_else(bad)?;
    let name = std::str::from_utf8(&bytes[..eq]).map_err(|_| bad())?;
    check_name(name)?;
    // SAFETY-free split: the bytes after '=' come from an OsString and '=' is
    // ASCII, so both halves are valid encoded OS strings.
    let value = text
        .to_str()
        .map(|s| OsString::from(&s[eq + 1..]))
        .unwrap_or_else(|| {
            use std::os::unix::ffi::OsStringExt;
            OsString::from_vec(bytes[eq + 1..].to_vec())
        });
    Ok((name.to_owned(), value))
}

/// The environment changes of one rank, merged as they are added: a later
/// change of a variable replaces an earlier one (the planner adds them in
/// increasing precedence: site, fabric, profile, guard, bind mode, PMIx glue,
/// user), each with its delivery for the rank's runtime.
#[derive(Debug)]
pub struct Changes<'a> {
    runtime: &'a Runtime,
    list: Vec<EnvChange>,
}

impl<'a> Changes<'a> {
    pub fn new(runtime: &'a Runtime) -> Changes<'a> {
        Changes {
            runtime,
            list: Vec::new(),
        }
    }

    /// Goes on from the changes of a plan (a rank adding its own facts).
    pub fn resume(runtime: &'a Runtime, list: Vec<EnvChange>) -> Changes<'a> {
        Changes { runtime, list }
    }

    /// Sets `name` to `value` unless the user set or removed it: for changes
    /// that rank below the user's but are made after them.
    pub fn set_below_user(
        &mut self,
        name: &str,
        value: OsString,
        why: &str,
    ) -> Result<(), LaunchError> {
        if self.get(name).is_some_and(|c| c.why == BY_USER) {
            return Ok(());
        }
        self.set(name, value, why)
    }

    /// Sets `name` to `value`; `why` names who asked.
    pub fn set(&mut self, name: &str, value: OsString, why: &str) -> Result<(), LaunchError> {
        merge(
            &mut self.list,
            change(self.runtime, name, EnvOp::Set(value), why)?,
        );
        Ok(())
    }

    /// Removes `name` from the rank's environment.
    pub fn unset(&mut self, name: &str, why: &str) -> Result<(), LaunchError> {
        merge(
            &mut self.list,
            change(self.runtime, name, EnvOp::Unset, why)?,
        );
        Ok(())
    }

    /// The latest change of `name`, if any.
    pub fn get(&self, name: &str) -> Option<&EnvChange> {
        self.list.iter().rev().find(|c| c.name == name)
    }

    pub fn into_vec(self) -> Vec<EnvChange> {
        self.list
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hybrun_core::vocab::{Dialect, Version};

    fn singularity() -> Runtime {
        Runtime::Singularity {
            program: "singularity".into(),
            version: Version::new(3, 6, 4),
            dialect: Dialect::Singularity36,
        }
    }

    #[test]
    fn names() {
        assert!(check_name("LD_LIBRARY_PATH").is_ok());
        assert!(check_name("_x1").is_ok());
        for bad in ["", "1A", "A-B", "A=B", "A B", "É"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deliveries() {
        let set = EnvOp::Set("a,b".into());
        assert_eq!(delivery(&singularity(), &set), Delivery::Prefixed);
        let apptainer = Runtime::Apptainer {
            program: "apptainer".into(),
            version: Version::new(1, 2, 5),
        };
        assert_eq!(
            delivery(&apptainer, &EnvOp::Set("/x:/y".into())),
            Delivery::Flag
        );
        assert_eq!(delivery(&apptainer, &set), Delivery::Prefixed);
        assert_eq!(delivery(&apptainer, &EnvOp::Unset), Delivery::Launcher);
        let ch = Runtime::Charliecloud {
            program: "ch-run".into(),
            version: None,
        };
        assert_eq!(delivery(&ch, &EnvOp::Unset), Delivery::Flag);
        assert_eq!(delivery(&Runtime::None, &set), Delivery::Launcher);
    }

    #[test]
    fn pmi_never_unset() {
        assert!(change(&singularity(), "PMIX_RANK", EnvOp::Unset, "user").is_err());
        assert!(change(&singularity(), "SLURM_JOB_ID", EnvOp::Unset, "user").is_err());
        assert!(change(&singularity(), "FOO", EnvOp::Unset, "user").is_ok());
    }

    #[test]
    fn assignments() {
        let (n, v) = parse_assignment(&"A=b=c".into()).expect("valid");
        assert_eq!((n.as_str(), v.to_str()), ("A", Some("b=c")));
        assert!(parse_assignment(&"A".into()).is_err());
        assert!(parse_assignment(&"=x".into()).is_err());
    }
}
