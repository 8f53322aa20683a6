//! The fabric guard: when the site file names a fast fabric (`[fabric] kind`), every
//! rank gets the variables that make its MPI fail instead of silently falling back
//! to TCP when the fast path cannot be opened (a missing device, a provider that did
//! not load, a container without the fabric libraries). A job that errors out is
//! found in minutes; one that runs over TCP at a tenth of the bandwidth is found
//! when someone reads the numbers.
//!
//! | fabric `kind` | Open MPI | MPICH (ch4:ofi / ch4:ucx) | Intel MPI |
//! |---|---|---|---|
//! | `psm2` (Omni-Path) | `OMPI_MCA_pml=cm` `OMPI_MCA_mtl=psm2` `OMPI_MCA_btl=^tcp` | `FI_PROVIDER=psm2` `UCX_TLS=^tcp` | `I_MPI_FABRICS=shm:ofi` `FI_PROVIDER=psm2` |
//! | `opx` (Omni-Path, Cornelis OPX) | `OMPI_MCA_pml=cm` `OMPI_MCA_mtl=ofi` `OMPI_MCA_btl=^tcp` `FI_PROVIDER=opx` | `FI_PROVIDER=opx` `UCX_TLS=^tcp` | `I_MPI_FABRICS=shm:ofi` `FI_PROVIDER=opx` |
//! | `verbs` (InfiniBand through libfabric) | `OMPI_MCA_pml=cm` `OMPI_MCA_mtl=ofi` `OMPI_MCA_btl=^tcp` `FI_PROVIDER=verbs` | `FI_PROVIDER=verbs` `UCX_TLS=^tcp` | `I_MPI_FABRICS=shm:ofi` `FI_PROVIDER=verbs` |
//! | `ucx` (InfiniBand/RoCE through UCX) | `OMPI_MCA_pml=ucx` `OMPI_MCA_btl=^tcp` `UCX_TLS=^tcp` | `UCX_TLS=^tcp` | `I_MPI_FABRICS=shm:ofi` `FI_PROVIDER=mlx` `UCX_TLS=^tcp` |
//!
//! Why these: Open MPI picks its point-to-point layer (`pml`) by priority and falls
//! back to `ob1` over the `tcp` BTL; naming the pml (and the mtl under `cm`) makes
//! the fast one mandatory, and `btl=^tcp` removes the fallback. `FI_PROVIDER`
//! restricts libfabric to the named provider, so it cannot pick `tcp` or `sockets`
//! (libfabric still layers its utility providers, e.g. `ofi_rxm`, over it). UCX's
//! `UCX_TLS=^tcp` excludes its TCP transport; shared memory and the network
//! transports stay. MPICH may be built on either libfabric or UCX, so it gets both
//! (the one its build does not use is ignored); on Omni-Path a UCX MPICH has no fast
//! transport at all, and `^tcp` makes that an error instead of a slow job. Intel MPI
//! takes `I_MPI_FABRICS=shm:ofi` and the libfabric provider (`mlx`, its UCX-based
//! one, on InfiniBand).
//!
//! Other kinds (`tcp`, `none`, an unknown name) turn the guard off. Variables the
//! user already has (in the environment hybrun runs in, `--env`, the site's `[env]`
//! or `[fabric] env`, the MPI profile's `env`) are kept and reported, never
//! overwritten. `--allow-tcp` turns the guard off, with a warning.

use std::collections::BTreeMap;

use serde::Serialize;

use hybrun_core::vocab::MpiFlavour;

use crate::site::fabric::FabricKind;

/// The variables that keep `flavour` off TCP on `fabric` (a `[fabric] kind`);
/// None when the fabric is not one the guard knows as fast.
pub fn guard_vars(
    flavour: MpiFlavour,
    fabric: FabricKind,
) -> Option<Vec<(&'static str, &'static str)>> {
    let provider = match fabric {
        FabricKind::Psm2 => "psm2",
        FabricKind::Opx => "opx",
        FabricKind::Verbs => "verbs",
        FabricKind::Ucx => "mlx",
        FabricKind::Tcp | FabricKind::None => return None,
    };
    let vars = match (flavour, fabric) {
        (MpiFlavour::Openmpi, FabricKind::Psm2) => vec![
            ("OMPI_MCA_pml", "cm"),
            ("OMPI_MCA_mtl", "psm2"),
            ("OMPI_MCA_btl", "^tcp"),
        ],
        (MpiFlavour::Openmpi, FabricKind::Ucx) => vec![
            ("OMPI_MCA_pml", "ucx"),
            ("OMPI_MCA_btl", "^tcp"),
            ("UCX_TLS", "^tcp"),
        ],
        (MpiFlavour::Openmpi, _) => vec![
            ("OMPI_MCA_pml", "cm"),
            ("OMPI_MCA_mtl", "ofi"),
            ("OMPI_MCA_btl", "^tcp"),
            ("FI_PROVIDER", provider),
        ],
        (MpiFlavour::Intel, FabricKind::Ucx) => vec![
            ("I_MPI_FABRICS", "shm:ofi"),
            ("FI_PROVIDER", provider),
            ("UCX_TLS", "^tcp"),
        ],
        (MpiFlavour::Intel, _) => vec![("I_MPI_FABRICS", "shm:ofi"), ("FI_PROVIDER", provider)],
        // The MPICH family (MPICH, MVAPICH2, Cray MPICH) reads MPICH's variables.
        (_, FabricKind::Ucx) => vec![("UCX_TLS", "^tcp")],
        _ => vec![("FI_PROVIDER", provider), ("UCX_TLS", "^tcp")],
    };
    Some(vars)
}

/// The guard of one launch, as recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FabricGuard {
    /// `[fabric] kind`, when the site names one.
    pub fabric: Option<FabricKind>,
    pub flavour: Option<MpiFlavour>,
    /// Whether hybrun set any variable.
    pub active: bool,
    /// Variables the guard set.
    pub set: BTreeMap<String, String>,
    /// Variables the guard would set that were already set: name -> (value kept, by whom).
    pub kept: BTreeMap<String, (String, String)>,
    /// Why the guard is off, when it is.
    pub off: Option<String>,
}

/// Computes the guard. `existing` says whether (and by whom, with which value) a
/// variable is already set; `allow_tcp` is `--allow-tcp`.
pub fn compute(
    fabric: Option<FabricKind>,
    flavour: Option<MpiFlavour>,
    allow_tcp: bool,
    existing: impl Fn(&str) -> Option<(String, String)>,
) -> FabricGuard {
    let mut guard = FabricGuard {
        fabric,
        flavour,
        ..FabricGuard::default()
    };
    let Some(kind) = fabric else {
        guard.off = Some("no [fabric] kind in the site file".into());
        return guard;
    };
    let Some(flavour) = flavour else {
        guard.off = Some("no MPI profile: the MPI flavour is unknown".into());
        return guard;
    };
    let Some(vars) = guard_vars(flavour, kind) else {
        guard.off = Some(format!(
            "[fabric] kind = {:?} is not a fast fabric (psm2, opx, verbs, ucx)",
            kind.name()
        ));
        return guard;
    };
    if allow_tcp {
        guard.off = Some("--allow-tcp".into());
        return guard;
    }
    for (name, value) in vars {
        match existing(name) {
            Some(kept) => {
                guard.kept.insert(name.to_owned(), kept);
            }
            None => {
                guard.set.insert(name.to_owned(), value.to_owned());
            }
        }
    }
    guard.active = !guard.set.is_empty();
    guard
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(flavour: MpiFlavour, fabric: FabricKind) -> BTreeMap<String, String> {
        compute(Some(fabric), Some(flavour), false, |_| None).set
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn open_mpi_per_fabric() {
        assert_eq!(
            vars(MpiFlavour::Openmpi, FabricKind::Psm2),
            map(&[
                ("OMPI_MCA_btl", "^tcp"),
                ("OMPI_MCA_mtl", "psm2"),
                ("OMPI_MCA_pml", "cm")
            ])
        );
        assert_eq!(
            vars(MpiFlavour::Openmpi, FabricKind::Opx),
            map(&[
                ("FI_PROVIDER", "opx"),
                ("OMPI_MCA_btl", "^tcp"),
                ("OMPI_MCA_mtl", "ofi"),
                ("OMPI_MCA_pml", "cm")
            ])
        );
        assert_eq!(
            vars(MpiFlavour::Openmpi, FabricKind::Ucx),
            map(&[
                ("OMPI_MCA_btl", "^tcp"),
                ("OMPI_MCA_pml", "ucx"),
                ("UCX_TLS", "^tcp")
            ])
        );
        assert_eq!(
            vars(MpiFlavour::Openmpi, FabricKind::Verbs)["FI_PROVIDER"],
            "verbs"
        );
    }

    #[test]
    fn mpich_and_intel_per_fabric() {
        assert_eq!(
            vars(MpiFlavour::Mpich, FabricKind::Psm2),
            map(&[("FI_PROVIDER", "psm2"), ("UCX_TLS", "^tcp")])
        );
        assert_eq!(
            vars(MpiFlavour::Mpich, FabricKind::Ucx),
            map(&[("UCX_TLS", "^tcp")])
        );
        assert_eq!(
            vars(MpiFlavour::Intel, FabricKind::Opx),
            map(&[("FI_PROVIDER", "opx"), ("I_MPI_FABRICS", "shm:ofi")])
        );
        assert_eq!(
            vars(MpiFlavour::Intel, FabricKind::Ucx),
            map(&[
                ("FI_PROVIDER", "mlx"),
                ("I_MPI_FABRICS", "shm:ofi"),
                ("UCX_TLS", "^tcp")
            ])
        );
    }

    #[test]
    fn no_tcp_anywhere_in_what_is_set() {
        for &flavour in MpiFlavour::ALL {
            for &fabric in FabricKind::ALL {
                for (name, value) in vars(flavour, fabric) {
                    assert!(
                        !value.contains("tcp") || value == "^tcp",
                        "{flavour}/{fabric}: {name}={value}"
                    );
                    assert!(!value.contains("sockets"));
                }
            }
        }
    }

    #[test]
    fn off_without_fast_fabric_or_with_allow_tcp() {
        let g = compute(None, Some(MpiFlavour::Mpich), false, |_| None);
        assert!(!g.active && g.set.is_empty());
        assert!(g.off.unwrap().contains("no [fabric] kind"));
        let g = compute(
            Some(FabricKind::Tcp),
            Some(MpiFlavour::Openmpi),
            false,
            |_| None,
        );
        assert!(!g.active && g.off.unwrap().contains("not a fast fabric"));
        let g = compute(
            Some(FabricKind::Psm2),
            Some(MpiFlavour::Openmpi),
            true,
            |_| None,
        );
        assert!(!g.active && g.set.is_empty());
        assert_eq!(g.off.as_deref(), Some("--allow-tcp"));
        let g = compute(Some(FabricKind::Psm2), None, false, |_| None);
        assert!(!g.active);
    }

    #[test]
    fn user_values_are_kept_and_reported() {
        let g = compute(
            Some(FabricKind::Psm2),
            Some(MpiFlavour::Openmpi),
            false,
            |name| {
                (name == "OMPI_MCA_btl").then(|| ("self,vader,tcp".to_owned(), "user".to_owned()))
            },
        );
        assert!(g.active);
        assert!(!g.set.contains_key("OMPI_MCA_btl"));
        assert_eq!(
            g.kept["OMPI_MCA_btl"],
            ("self,vader,tcp".to_owned(), "user".to_owned())
        );
        assert_eq!(g.set["OMPI_MCA_pml"], "cm");
    }
}
