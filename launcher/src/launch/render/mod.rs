//! Launcher backends: the job's command, with each rank's command after it.

pub mod mpiexec;
pub mod srun;

use super::LaunchError;
use super::plan::{LaunchPlan, PerRank, Rendered};
use hybrun_core::vocab::LauncherKind;

// The plan is data (plan.rs imports no backend); rendering lives with the
// backends.
impl LaunchPlan {
    /// The whole job's command.
    pub fn render(&self) -> Result<Rendered, LaunchError> {
        let per_rank = self.render_per_rank()?;
        let mut rendered = render_launcher(self, per_rank)?;
        // The ranks inherit the launcher's working directory (srun, hydra and
        // Open MPI's mpiexec all start them in their own).
        rendered.cwd.clone_from(&self.rank.pwd);
        Ok(rendered)
    }

    /// What the launcher starts on each rank.
    pub fn render_per_rank(&self) -> Result<Rendered, LaunchError> {
        match &self.per_rank {
            PerRank::Direct => self.rank.render(),
            PerRank::Wrapper {
                program,
                args,
                handoff,
                ..
            } => {
                let mut argv = vec![program.as_os_str().to_owned()];
                argv.extend(args.iter().cloned());
                // In the launcher's environment, which reaches every rank
                // (Open MPI's mpiexec gets `-x` for it, as for every variable).
                let env_set = handoff
                    .iter()
                    .map(|text| (super::handoff::VAR.into(), text.into()))
                    .collect();
                Ok(Rendered {
                    argv,
                    env_set,
                    ..Rendered::default()
                })
            }
        }
    }
}

/// Renders the launcher in front of `per_rank` (what every rank runs).
pub fn render_launcher(plan: &LaunchPlan, per_rank: Rendered) -> Result<Rendered, LaunchError> {
    if let Some(program) = per_rank.argv.first() {
        // A program word with '=' would be taken for an assignment by `env`
        // in the printed line, and one starting with '-' for a launcher option.
        let bytes = program.as_encoded_bytes();
        if bytes.contains(&b'=') || bytes.first() == Some(&b'-') {
            return Err(LaunchError::BadProgram {
                program: program.to_string_lossy().into_owned(),
            });
        }
    }
    match plan.launcher.kind {
        LauncherKind::Srun => srun::render(plan, per_rank),
        LauncherKind::MpiexecHydra => mpiexec::render_hydra(plan, per_rank),
        LauncherKind::MpiexecOpenmpi => mpiexec::render_openmpi(plan, per_rank),
        LauncherKind::None => Ok(per_rank),
    }
}
