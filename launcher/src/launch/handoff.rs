//! The rank plan `hybrun run` hands to each rank's `hybrun exec`, so that a
//! rank does O(1) work: no site file, no image, no host library, no cache.
//!
//! `hybrun run` plans the rank once for the job (gate, bind mode's bundle, the
//! image's environment, the mount, the placement rules) and puts that plan,
//! with the per-rank facts still to apply ([`RankFacts`]), as JSON in
//! [`VAR`] in the launcher's environment. srun (`--export=ALL`) and hydra pass
//! their environment to every rank; Open MPI's mpiexec gets `-x` for it like
//! every variable of the rank command. The wrapper's `hybrun exec --from-run`
//! then applies only what the rank's node and environment add (ch-run's join,
//! the PMIx glue, the node's image mount, its GPU and CPUs) and execs.
//!
//! Why the environment and not a plan file: the launcher already carries it to
//! every node, so 10,000 ranks touch no shared file system to start; a file in
//! the job's scratch would be 10,000 opens of one file on the parallel file
//! system. The wrapper keeps its full arguments, so a rank that finds no plan
//! (a launcher that dropped the variable) or another one still plans itself
//! from them, as a stand-alone `hybrun exec` does, and says so.
//!
//! The text comes from the environment: it is parsed with a bounded size
//! (serde_json's recursion limit bounds the depth) and must name this format.

use std::ffi::OsString;
use std::path::Path;

pub use super::plan::{Handoff, RankFacts};
use crate::host::Host;

/// The variable that carries the plan.
pub const VAR: &str = "HYBRUN_RANK_PLAN";

/// The format this hybrun writes and reads.
pub const FORMAT: u32 = 1;

/// The largest plan handed over: Linux limits one environment string to
/// 128 KiB (MAX_ARG_STRLEN), and a launcher's environment travels to every node.
pub const MAX_LEN: usize = 64 * 1024;

/// The plan as the ranks receive it, or why it cannot be handed over (then
/// each rank plans itself).
pub fn encode(handoff: &Handoff) -> Result<String, String> {
    let text = serde_json::to_string(handoff)
        .map_err(|e| format!("the rank plan cannot be written as JSON: {e}"))?;
    if text.len() > MAX_LEN {
        return Err(format!(
            "the rank plan is {} bytes, more than the {MAX_LEN} a variable of the launcher's \
             environment should carry",
            text.len()
        ));
    }
    // Paths and values are written as UTF-8 text: one that is not would come
    // back changed, so such a plan is not handed over.
    match decode(&text) {
        Ok(back) if back == *handoff => Ok(text),
        _ => Err("the rank plan holds a path or value that is not UTF-8 text".into()),
    }
}

/// Reads a plan written by [`encode`].
pub fn decode(text: &str) -> Result<Handoff, String> {
    if text.len() > MAX_LEN {
        return Err(format!("{VAR} is {} bytes (at most {MAX_LEN})", text.len()));
    }
    let handoff: Handoff =
        serde_json::from_str(text).map_err(|e| format!("{VAR} is not a rank plan: {e}"))?;
    if handoff.format != FORMAT {
        return Err(format!(
            "{VAR} has format {}, this hybrun reads {FORMAT} (a hybrun of another version \
             started the job)",
            handoff.format
        ));
    }
    // The launch id names files and semaphores on the node (ch-run's join).
    if let Some(id) = &handoff.facts.launch {
        if id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(format!(
                "{VAR}'s launch id {:?} is not 1 to 32 letters or digits",
                id.chars().take(40).collect::<String>()
            ));
        }
    }
    Ok(handoff)
}

/// The plan `hybrun run` handed to this rank, checked to be the one for this
/// rank's arguments (its image and command): else why not.
pub fn received(
    host: &Host,
    image: Option<&Path>,
    command: &[OsString],
) -> Result<Handoff, String> {
    let text = host.var(VAR).ok_or_else(|| {
        format!("{VAR} is not set (the launcher did not pass hybrun run's environment)")
    })?;
    let handoff = decode(&text)?;
    if handoff.rank.command != command || handoff.rank.image.as_deref() != image {
        return Err(format!(
            "{VAR} is the plan of another launch (its image or command differs from this \
             rank's arguments)"
        ));
    }
    Ok(handoff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::launch::plan::{Bind, CpuBindRule, EnvChange, EnvOp, RankPlan, Runtime};
    use hybrun_core::vocab::Mode;

    fn handoff(path: OsString) -> Handoff {
        Handoff {
            format: FORMAT,
            rank: RankPlan {
                runtime: Runtime::Charliecloud {
                    program: "/usr/bin/ch-run".into(),
                    version: None,
                },
                mode: Mode::Bind,
                image: Some("/images/app".into()),
                binds: vec![Bind {
                    src: path.clone().into(),
                    dst: "/opt/host-mpi/lib".into(),
                    ro: true,
                    why: "host MPI".into(),
                }],
                env: vec![EnvChange {
                    name: "FI_PROVIDER".into(),
                    op: EnvOp::Set("psm2".into()),
                    delivery: crate::launch::plan::Delivery::Flag,
                    why: "site [fabric]".into(),
                }],
                nvidia: false,
                join: None,
                mount: None,
                inside: None,
                pwd: None,
                runtime_args: vec![],
                interactive: false,
                command: vec!["/app/hybench".into(), path],
            },
            facts: RankFacts {
                image_root: Some("/images/app".into()),
                gpus: 2,
                cpu_binding: CpuBindRule::Near {
                    nic: Some("hfi1_0".into()),
                    fabric: None,
                    cpus_per_rank: Some(4),
                },
                launch: Some("0123456789ab".into()),
            },
        }
    }

    #[test]
    fn a_plan_comes_back_unchanged() {
        let h = handoff("/usr/lib/ü".into());
        let text = encode(&h).expect("encodable");
        assert_eq!(decode(&text), Ok(h));
    }

    #[test]
    fn a_plan_that_would_change_is_not_handed_over() {
        use std::os::unix::ffi::OsStringExt;
        let h = handoff(OsString::from_vec(b"/usr/lib/\xff".to_vec()));
        assert!(encode(&h).unwrap_err().contains("not UTF-8"));
    }

    #[test]
    fn another_format_or_launch_or_junk_is_refused_with_the_reason() {
        let h = handoff("/usr/lib".into());
        let mut other = h.clone();
        other.format = FORMAT + 1;
        let text = serde_json::to_string(&other).unwrap();
        assert!(decode(&text).unwrap_err().contains("another version"));
        assert!(decode("[[[[").unwrap_err().contains("not a rank plan"));
        let mut odd = h.clone();
        odd.facts.launch = Some("../x".into());
        let text = serde_json::to_string(&odd).unwrap();
        assert!(decode(&text).unwrap_err().contains("launch id"));
        assert!(
            decode(&"x".repeat(MAX_LEN + 1))
                .unwrap_err()
                .contains("at most")
        );
        let host = Host {
            vars: [(OsString::from(VAR), OsString::from(encode(&h).unwrap()))]
                .into_iter()
                .collect(),
        };
        let image = Some(Path::new("/images/app"));
        assert!(received(&host, image, &h.rank.command).is_ok());
        let err = received(&host, image, &["/bin/true".into()]).unwrap_err();
        assert!(err.contains("another launch"), "{err}");
        let empty = Host {
            vars: Default::default(),
        };
        assert!(
            received(&empty, image, &h.rank.command)
                .unwrap_err()
                .contains("not set")
        );
    }
}
