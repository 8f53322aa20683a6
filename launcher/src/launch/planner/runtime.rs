//! The rank's container runtime: kind, program, version and dialect.

use std::path::Path;

use hybrun_core::vocab::{Dialect, Mode, RuntimeKind, Version};

use super::{Notes, RankContext};
use crate::launch::LaunchError;
use crate::launch::plan::Runtime;

/// The rank's runtime: `--runtime`, else the site's `[runtime] kind`, else
/// Singularity; its program and version (given, configured, asked, or assumed
/// for a dry run).
pub(super) fn resolve(ctx: &RankContext<'_>, notes: &mut Notes) -> Result<Runtime, LaunchError> {
    let req = ctx.req;
    let section = &ctx.site.config.runtime;
    if ctx.mode == Mode::Native {
        if let Some(kind) = req.runtime.filter(|k| *k != RuntimeKind::None) {
            return Err(LaunchError::Refused {
                message: format!(
                    "--mode native runs without a container: drop --runtime {kind} (or choose \
                     --mode hybrid|bind|inside)"
                ),
            });
        }
        return Ok(Runtime::None);
    }
    let (kind, from) = match (req.runtime, section.kind) {
        (Some(kind), _) => (kind, "--runtime"),
        (None, Some(kind)) => (kind, "[runtime] kind"),
        (None, None) => (RuntimeKind::Singularity, "the default"),
    };
    let Some(default_program) = kind.default_program() else {
        return Err(LaunchError::Refused {
            message: format!(
                "--mode {} needs a container runtime ({from} says none): choose \
                 singularity, apptainer or charliecloud, or --mode native",
                ctx.mode
            ),
        });
    };
    // The site's program and version only apply to the site's runtime.
    let same_kind = section.kind.unwrap_or(RuntimeKind::Singularity) == kind;
    let program = section
        .program
        .clone()
        .filter(|_| same_kind)
        .unwrap_or_else(|| default_program.to_owned());
    let found = ctx.host.which(&program);
    if found.is_none() {
        let hint = match kind {
            RuntimeKind::Charliecloud => "install Charliecloud (Debian: charliecloud-runtime)",
            _ => "load the site's module for it, or set [runtime] program in the site file",
        };
        if ctx.req.dry_run {
            notes.warnings.push(format!(
                "runtime {program:?} not found on PATH: printing the command anyway ({hint})"
            ));
        } else {
            return Err(LaunchError::ProgramNotFound {
                what: "runtime",
                program,
                hint: hint.to_owned(),
            });
        }
    }
    // The version: given, configured, asked, or (dry run, no program) assumed.
    let given = req
        .runtime_version
        .or_else(|| section.version.filter(|_| same_kind));
    if kind == RuntimeKind::Charliecloud {
        // Only --runtime-arg needs it (its flags are checked per version): ch-run
        // is not asked otherwise.
        let version = match (given, &found) {
            (Some(version), _) => Some(version),
            (None, Some(path)) if !req.runtime_args.is_empty() => match probe_version(path) {
                Ok(version) => Some(version),
                Err(e) => {
                    notes.warnings.push(format!(
                        "{e}; --runtime-arg checked against ch-run 0.31's flags"
                    ));
                    None
                }
            },
            _ => None,
        };
        return Ok(Runtime::Charliecloud {
            program: program.into(),
            version,
        });
    }
    let version = match (given, &found) {
        (Some(version), _) => version,
        (None, Some(path)) => probe_version(path)?,
        (None, None) => {
            let assumed = if kind == RuntimeKind::Apptainer {
                Version::new(1, 0, 0)
            } else {
                Version::new(3, 6, 0)
            };
            notes.warnings.push(format!(
                "{kind} version unknown: assuming {assumed}, the oldest of its dialect (set \
                 [runtime] version in the site file)"
            ));
            assumed
        }
    };
    if kind == RuntimeKind::Apptainer {
        if version.major < 1 {
            return Err(LaunchError::Refused {
                message: format!("apptainer {version} is not supported: hybrun needs 1.x or later"),
            });
        }
        return Ok(Runtime::Apptainer {
            program: program.into(),
            version,
        });
    }
    if version.major < 3 {
        return Err(LaunchError::Refused {
            message: format!(
                "singularity {version} is not supported: hybrun needs 3.0 or later (2.x has \
                 another command line)"
            ),
        });
    }
    Ok(Runtime::Singularity {
        program: program.into(),
        version,
        dialect: Dialect::of(version),
    })
}

/// `PROGRAM --version` (e.g. "singularity version 3.6.4"; ch-run prints "0.31"
/// to stderr).
fn probe_version(program: &Path) -> Result<Version, LaunchError> {
    let output = std::process::Command::new(program)
        .arg("--version")
        .output()
        .map_err(|source| LaunchError::Spawn {
            program: program.display().to_string(),
            source,
        })?;
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    Version::parse(&text).ok_or_else(|| LaunchError::Refused {
        message: format!(
            "cannot tell the version of {} from {:?}: set [runtime] version in the site file",
            program.display(),
            text.trim()
        ),
    })
}
