//! Runtime backends: a [`RankPlan`] rendered into the command that runs one rank.

pub mod charliecloud;
pub mod flags;
pub mod native;
pub mod singularity;

use super::LaunchError;
use super::env;
use super::plan::{Delivery, EnvChange, EnvOp, RankPlan, Rendered, Runtime};

impl RankPlan {
    /// The rank's command: the runtime's argv and the launcher environment it needs.
    pub fn render(&self) -> Result<Rendered, LaunchError> {
        for bind in &self.binds {
            bind.check()?;
        }
        render(self)
    }
}

/// Renders one rank's command for its runtime.
pub fn render(rank: &RankPlan) -> Result<Rendered, LaunchError> {
    if rank.command.is_empty() {
        return Err(LaunchError::EmptyCommand);
    }
    let mut rendered = match &rank.runtime {
        Runtime::Singularity { program, .. } | Runtime::Apptainer { program, .. } => {
            singularity::render(rank, program)
        }
        Runtime::Charliecloud { program, .. } => charliecloud::render(rank, program),
        Runtime::None => native::render(rank),
    }?;
    rendered.cwd.clone_from(&rank.pwd);
    Ok(rendered)
}

/// Applies the changes delivered through the launcher's environment
/// ([`Delivery::Launcher`] and [`Delivery::Prefixed`]) to `out`. Flags are the
/// backend's business.
pub(crate) fn apply_environment(runtime: &Runtime, changes: &[EnvChange], out: &mut Rendered) {
    let prefix = env::prefix(runtime);
    for change in changes {
        match (&change.delivery, &change.op) {
            (Delivery::Launcher, EnvOp::Set(value)) => out.set(&change.name, value),
            (Delivery::Launcher, EnvOp::Unset) => {
                out.unset(&change.name);
                // A prefixed variable already in the user's environment would
                // set the name again inside: remove it as well (Apptainer 1.x
                // still honours SINGULARITYENV_* too).
                if let Some(prefix) = prefix {
                    out.unset(format!("{prefix}{}", change.name));
                    if prefix == "APPTAINERENV_" {
                        out.unset(format!("SINGULARITYENV_{}", change.name));
                    }
                }
            }
            (Delivery::Prefixed, EnvOp::Set(value)) => {
                let prefix = prefix.unwrap_or("SINGULARITYENV_");
                out.set(format!("{prefix}{}", change.name), value);
            }
            // Unsets are never prefixed (see env::delivery); flags are rendered
            // by the backend.
            (Delivery::Prefixed, EnvOp::Unset) | (Delivery::Flag, _) => {}
        }
    }
}
