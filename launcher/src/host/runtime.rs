//! The container runtimes on PATH (Singularity, Apptainer, Charliecloud's
//! `ch-run`) and the versions they report.

use hybrun_core::vocab::RuntimeKind;

use super::command::{last_line, probe};
use super::env::Host;

/// The runtimes looked for, in this order.
pub const RUNTIMES: [RuntimeKind; 3] = [
    RuntimeKind::Singularity,
    RuntimeKind::Apptainer,
    RuntimeKind::Charliecloud,
];

/// One runtime as found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RuntimeFinding {
    pub kind: RuntimeKind,
    pub program: String,
    pub path: Option<String>,
    /// The last word of `--version` ("3.6.4", "1.3.0", "0.31").
    pub version: Option<String>,
    /// Why `--version` failed (its last line, or "cannot run it").
    pub error: Option<String>,
}

/// Looks for the runtime `kind` on PATH and asks it its version.
pub fn find(host: &Host, kind: RuntimeKind) -> Option<RuntimeFinding> {
    let program = kind.default_program()?;
    let path = host.which(program);
    let mut finding = RuntimeFinding {
        kind,
        program: program.to_owned(),
        path: path.as_ref().map(|p| p.display().to_string()),
        version: None,
        error: None,
    };
    if let Some(p) = &path {
        // ch-run refuses to start without $USER, even for --version.
        let user = host.var("USER").unwrap_or_else(|| "hybrun-doctor".into());
        match probe(p, &["--version"], &[("USER", &user)]) {
            Some((true, text)) => {
                // "singularity version 3.6.4", "apptainer version 1.3.0", "0.31".
                finding.version = text.split_whitespace().last().map(str::to_owned);
            }
            Some((false, text)) => finding.error = Some(last_line(&text)),
            None => finding.error = Some("cannot run it".into()),
        }
    }
    Some(finding)
}

/// Every runtime of [`RUNTIMES`], found or not.
pub fn find_all(host: &Host) -> Vec<RuntimeFinding> {
    RUNTIMES.iter().filter_map(|&k| find(host, k)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn versions_and_failures_of_fake_runtimes() {
        let tmp = tempfile::tempdir().expect("tmp");
        let bin = tmp.path();
        for (name, body) in [
            ("apptainer", "echo 'apptainer version 1.3.0'"),
            ("ch-run", "[ -n \"$USER\" ] || exit 1; echo 0.31"),
            ("singularity", "echo 'FATAL: broken install' >&2; exit 255"),
        ] {
            let p = bin.join(name);
            std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).expect("write");
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        }
        let host = Host::with_vars(&[("PATH", bin.as_os_str())]);
        let found = find_all(&host);
        let kinds: Vec<RuntimeKind> = found.iter().map(|f| f.kind).collect();
        assert_eq!(kinds, RUNTIMES);
        assert_eq!(found[0].error.as_deref(), Some("FATAL: broken install"));
        assert_eq!(found[1].version.as_deref(), Some("1.3.0"));
        assert_eq!(found[2].version.as_deref(), Some("0.31"), "USER is given");
        let none = find_all(&Host::default());
        assert!(none.iter().all(|f| f.path.is_none() && f.version.is_none()));
    }
}
