//! No container: the rank runs the command itself, with the environment changes
//! made in the launcher's environment.

use super::apply_environment;
use crate::launch::LaunchError;
use crate::launch::plan::{RankPlan, Rendered};

/// Renders the bare command.
pub fn render(rank: &RankPlan) -> Result<Rendered, LaunchError> {
    if !rank.binds.is_empty() {
        return Err(LaunchError::NativeBinds);
    }
    let mut out = Rendered::default();
    apply_environment(&rank.runtime, &rank.env, &mut out);
    out.argv = rank.payload();
    Ok(out)
}
