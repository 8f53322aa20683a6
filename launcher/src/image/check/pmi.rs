//! The PMI rule: the MPI that starts under srun (the image's in hybrid mode, the
//! host's in bind mode) must speak a `--mpi=` plugin this Slurm offers, or the
//! one the launch uses.

use super::facts::SrunPmi;
use super::{Status, Verdict};
use crate::image::detect::MpiLibrary;
use hybrun_core::vocab::{MpiAbi, MpiFlavour};

/// Slurm `--mpi=` plugins an MPI of `implementation` can start under, best first.
fn pmi_plugins_for(m: &MpiLibrary) -> Vec<&'static str> {
    let needs_pmix = m.needed.iter().any(|n| n.starts_with("libpmix"));
    match m.implementation.map(MpiFlavour::abi).or(m.abi) {
        Some(MpiAbi::Openmpi) => vec!["pmix"],
        Some(MpiAbi::Mpich) => {
            let mut v = vec!["pmi2"];
            if needs_pmix {
                v.insert(0, "pmix");
            }
            if m.implementation == Some(MpiFlavour::CrayMpich) {
                v.push("cray_shasta");
            }
            v
        }
        _ => Vec::new(),
    }
}

/// Adds the PMI reason for `m` (`whose`: "the image's", "the host's").
pub fn pmi_reason(verdict: &mut Verdict, m: &MpiLibrary, whose: &str, srun: &SrunPmi) {
    let wanted = pmi_plugins_for(m);
    if wanted.is_empty() {
        verdict.add(
            Status::Warn,
            format!("cannot tell which PMI {whose} {} needs", m.describe()),
        );
        return;
    }
    match srun {
        SrunPmi::Absent => verdict.add(
            Status::Warn,
            format!(
                "srun not found on this host: cannot check that Slurm offers --mpi={} for {whose} {} \
                 (run the check on a login node of the cluster)",
                wanted.join("|"),
                m.describe()
            ),
        ),
        SrunPmi::NotAsked => verdict.add(
            Status::Warn,
            format!(
                "not checked (--srun none): whether Slurm offers --mpi={} for {whose} {}",
                wanted.join("|"),
                m.describe()
            ),
        ),
        SrunPmi::Failed { srun, error } => verdict.add(
            Status::Warn,
            format!(
                "`{srun} --mpi=list` failed ({error}): cannot check that Slurm offers --mpi={} \
                 (is SLURM_CONF set?)",
                wanted.join("|")
            ),
        ),
        SrunPmi::Launch { plugin } => {
            if wanted.iter().any(|w| w == plugin) {
                verdict.add(
                    Status::Ok,
                    format!("{whose} {} starts under srun --mpi={plugin}", m.describe()),
                );
            } else {
                verdict.add(
                    Status::Fail,
                    format!(
                        "{whose} {} needs srun --mpi={} but this launch uses --mpi={plugin}; \
                         use --mpi {} (or the MPI profile of that MPI)",
                        m.describe(),
                        wanted.join(" or "),
                        wanted[0]
                    ),
                );
            }
        }
        SrunPmi::Plugins { plugins, .. } => match wanted.iter().find(|w| plugins.iter().any(|p| p == *w)) {
            Some(w) => verdict.add(
                Status::Ok,
                format!("{whose} {} starts under srun --mpi={w}", m.describe()),
            ),
            None => verdict.add(
                Status::Fail,
                format!(
                    "{whose} {} needs srun --mpi={} but this Slurm offers {}",
                    m.describe(),
                    wanted.join(" or "),
                    plugins.join(", ")
                ),
            ),
        },
    }
}
