//! The launch-level bias sources, drawn at random per launch and recorded, so
//! that what would be a fixed offset for one cell (one mode always landing on
//! an unlucky stack alignment, or always running right after another mode)
//! becomes variance the intervals see (Mytkowicz, Diwan, Hauswirth, Sweeney,
//! "Producing wrong data without doing anything obviously wrong!", ASPLOS 2009):
//!
//! - the size of the environment, through [`super::launch::ENV_PAD`] (it moves
//!   the initial stack, and with it the alignment of what the program puts there);
//! - the order of the ranks on their cores, where the launcher takes a list
//!   ([`super::route::takes_core_list`]);
//! - the order of the cells within each round ([`super::schedule`]).
//!
//! Every draw is a function of the scenario's seed, the cell and the launch
//! number, so a resumed run draws what the interrupted one would have.

use hybrun_core::stats::Rng;

use super::route::{CellPlanner, takes_core_list};
use crate::campaign::results::Randomized;
use crate::campaign::scenario::{Cell, Scenario};

/// Environment padding is drawn from 0..ENV_PAD_SPAN bytes: one page, the
/// period of the stack placement it perturbs.
pub const ENV_PAD_SPAN: usize = 4096;

/// The seed of one launch's draws.
fn launch_seed(seed: u64, key: &str, launch: u32) -> u64 {
    let mut h = seed ^ u64::from(launch).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    for byte in key.bytes() {
        h = (h ^ u64::from(byte)).wrapping_mul(0x0100_0000_01B3);
    }
    h
}

/// The cores the ranks of a node are bound to by default, in order: the
/// first CPUs this process may use (hydra's `core` binding takes them in that
/// order too).
fn default_cores(per_node: usize) -> Vec<usize> {
    let allowed = rustix::thread::sched_getaffinity(None).ok();
    let cpus: Vec<usize> = match allowed {
        Some(set) => (0..rustix::thread::CpuSet::MAX_CPU)
            .filter(|&c| set.is_set(c))
            .collect(),
        None => (0..per_node).collect(),
    };
    cpus.into_iter().take(per_node).collect()
}

/// What is drawn for one launch of `cell` at `position` in its round; None
/// when the scenario says `randomize = false`.
pub fn draw(
    scenario: &Scenario,
    planner: &CellPlanner<'_>,
    cell: &Cell,
    launch: u32,
    position: u32,
) -> Option<Randomized> {
    if !scenario.randomize {
        return None;
    }
    let mut rng = Rng::new(launch_seed(scenario.seed, &cell.key, launch));
    let env_pad = rng.below(ENV_PAD_SPAN) as u32;
    let cores = takes_core_list(scenario, cell, planner.launcher(cell)).then(|| {
        let mut cores = default_cores(cell.ranks_per_node as usize);
        rng.shuffle(&mut cores);
        cores
    });
    Some(Randomized {
        env_pad,
        cores,
        position,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launch_draws_the_same_every_time_and_launches_differ() {
        assert_eq!(launch_seed(7, "a", 1), launch_seed(7, "a", 1));
        assert_ne!(launch_seed(7, "a", 1), launch_seed(7, "a", 2));
        assert_ne!(launch_seed(7, "a", 1), launch_seed(7, "b", 1));
        let pads: std::collections::BTreeSet<usize> = (0..200)
            .map(|l| Rng::new(launch_seed(1, "k", l)).below(ENV_PAD_SPAN))
            .collect();
        assert!(
            pads.len() > 150,
            "pads spread over the page: {}",
            pads.len()
        );
    }

    #[test]
    fn default_cores_are_allowed_cpus() {
        let cores = default_cores(1);
        assert_eq!(cores.len(), 1);
    }
}
