//! What actually ran: the MPI library mapped in each rank, where each rank
//! sat, the container, the transport environment and the Slurm step.

use std::collections::BTreeMap;

use hybrun_core::schema::{RunMetadata, SCHEMA_VERSION};
use hybrun_core::vocab::{MpiFlavour, RuntimeKind};
use serde::{Deserialize, Serialize};

use crate::comm::{self, World};

/// Facts one rank knows about itself.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RankInfo {
    pub rank: u32,
    pub host: String,
    /// CPUs this rank may run on (sched_getaffinity), as a list like `0-3,8`.
    pub cpus: String,
    pub mpi_library: String,
    pub mpi_library_inode: u64,
    pub mpi_library_dev: String,
}

/// The library file of the MPI implementation mapped in this process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MappedLibrary {
    pub path: String,
    pub inode: u64,
    /// major:minor of the device, as /proc/self/maps prints it.
    pub dev: String,
}

/// File names of MPI libraries we recognise: libmpi.so.N (Open MPI, and the
/// MPICH ABI under its production name), libmpich.so.N (Debian's MPICH),
/// libmpi_abi.so (the MPI 5 standard ABI).
pub fn is_mpi_library(file_name: &str) -> bool {
    [
        "libmpi.so",
        "libmpich.so",
        "libmpi_abi.so",
        "libmpi_ilp64.so",
    ]
    .iter()
    .any(|p| file_name == *p || file_name.starts_with(&format!("{p}.")))
}

/// Find the MPI library in the text of `/proc/<pid>/maps`.
pub fn find_mpi_in_maps(maps: &str) -> Option<MappedLibrary> {
    for line in maps.lines() {
        // address perms offset dev inode pathname
        let mut f = line.split_whitespace();
        let (_addr, _perms, _off) = (f.next()?, f.next()?, f.next()?);
        let (Some(dev), Some(inode)) = (f.next(), f.next()) else {
            continue;
        };
        let path: String = f.collect::<Vec<_>>().join(" ");
        if path.is_empty() {
            continue;
        }
        let name = path.rsplit('/').next().unwrap_or(&path);
        if is_mpi_library(name) {
            return Some(MappedLibrary {
                path,
                inode: inode.parse().unwrap_or(0),
                dev: dev.to_string(),
            });
        }
    }
    None
}

/// CPUs this process may run on, as a list like `0-3,8` (empty if unknown).
fn affinity() -> String {
    hybrun_core::placement::current_affinity()
        .map(|cpus| hybrun_core::placement::format_cpulist(&cpus))
        .unwrap_or_default()
}

impl RankInfo {
    pub fn collect(rank: i32) -> RankInfo {
        let maps = std::fs::read_to_string("/proc/self/maps").unwrap_or_default();
        let lib = find_mpi_in_maps(&maps).unwrap_or_default();
        RankInfo {
            rank: rank as u32,
            host: hybrun_core::sys::hostname(),
            cpus: affinity(),
            mpi_library: lib.path,
            mpi_library_inode: lib.inode,
            mpi_library_dev: lib.dev,
        }
    }
}

/// The MPI's implementation, from the text of MPI_Get_library_version (the
/// same markers hybrun's image check reads from a library's strings).
pub fn flavour(version: &str) -> Option<MpiFlavour> {
    MpiFlavour::recognise([version])
}

/// Which container runtime, if any, this process runs in.
pub fn container() -> RuntimeKind {
    let env = |k: &str| std::env::var_os(k).is_some();
    if env("APPTAINER_CONTAINER") || env("APPTAINER_NAME") {
        RuntimeKind::Apptainer
    } else if env("SINGULARITY_CONTAINER")
        || env("SINGULARITY_NAME")
        || std::path::Path::new("/.singularity.d").exists()
    {
        RuntimeKind::Singularity
    } else if env("CH_RUNNING") {
        RuntimeKind::Charliecloud
    } else {
        RuntimeKind::None
    }
}

/// Environment variables that steer the transport, `K=V;...` sorted.
pub fn transport_env() -> String {
    const PREFIXES: [&str; 8] = [
        "UCX_",
        "FI_",
        "PSM2_",
        "OMPI_MCA_",
        "I_MPI_",
        "MPIR_CVAR_",
        "HFI_",
        "PMIX_MCA_",
    ];
    let vars: BTreeMap<String, String> = std::env::vars()
        .filter(|(k, _)| PREFIXES.iter().any(|p| k.starts_with(p)))
        .collect();
    vars.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(";")
}

/// Everything the output needs: the flat metadata and the per-rank details.
pub struct Collected {
    pub meta: RunMetadata,
    pub ranks: Vec<RankInfo>,
}

/// Collective: gather every rank's facts onto rank 0 and summarise them.
/// Other ranks get an empty rank list.
pub fn collect(world: &World, started_at: String) -> Collected {
    let mine = RankInfo::collect(world.rank);
    let json = serde_json::to_string(&mine).unwrap_or_default();
    let all = world.gather_strings(&json, 4096);
    let ranks: Vec<RankInfo> = if world.rank == 0 {
        all.iter()
            .map(|s| serde_json::from_str(s).unwrap_or_default())
            .collect()
    } else {
        Vec::new()
    };
    let version = comm::library_version();
    let mut hosts: Vec<(String, u32)> = Vec::new();
    for r in &ranks {
        match hosts.iter_mut().find(|(h, _)| *h == r.host) {
            Some((_, n)) => *n += 1,
            None => hosts.push((r.host.clone(), 1)),
        }
    }
    let uniform = ranks.windows(2).all(|w| {
        w[0].mpi_library == w[1].mpi_library
            && w[0].mpi_library_inode == w[1].mpi_library_inode
            && w[0].mpi_library_dev == w[1].mpi_library_dev
    });
    let env = |k: &str| std::env::var(k).unwrap_or_default();
    let meta = RunMetadata {
        schema_version: SCHEMA_VERSION,
        hybench_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at,
        mpi_flavour: flavour(&version),
        mpi_version: version,
        mpi_library: mine.mpi_library.clone(),
        mpi_library_inode: mine.mpi_library_inode,
        mpi_library_dev: mine.mpi_library_dev.clone(),
        mpi_library_uniform: uniform,
        comm_size: world.size as u32,
        nodes: hosts.len() as u32,
        ranks_per_node: hosts
            .iter()
            .map(|(_, n)| n.to_string())
            .collect::<Vec<_>>()
            .join(","),
        rank_placement: ranks
            .iter()
            .map(|r| format!("{}@{}:{}", r.rank, r.host, r.cpus))
            .collect::<Vec<_>>()
            .join(";"),
        container: Some(container()),
        transport_env: transport_env(),
        slurm_job_id: env("SLURM_JOB_ID"),
        slurm_step_id: env("SLURM_STEP_ID"),
    };
    Collected { meta, ranks }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_mpi_in_maps() {
        let maps = "\
7f00-7f01 r--p 00000000 08:01 123 /usr/lib/x86_64-linux-gnu/libc.so.6
7f02-7f03 r--p 00000000 08:01 456 /usr/lib/x86_64-linux-gnu/libmpich.so.12.2.0
7f04-7f05 r--p 00000000 00:2a 789 /opt/host mpi/lib/libmpi.so.40.30.4
";
        let lib = find_mpi_in_maps(maps).unwrap();
        assert_eq!(lib.path, "/usr/lib/x86_64-linux-gnu/libmpich.so.12.2.0");
        assert_eq!((lib.inode, lib.dev.as_str()), (456, "08:01"));
        let lib = find_mpi_in_maps(&maps.lines().skip(2).collect::<Vec<_>>().join("\n")).unwrap();
        assert_eq!(lib.path, "/opt/host mpi/lib/libmpi.so.40.30.4");
        assert!(!is_mpi_library("libmpifort.so.12"));
        assert!(!is_mpi_library("libmpi_cxx.so.40"));
        assert!(find_mpi_in_maps("7f-7f r-xp 0 00:00 0 [vdso]").is_none());
    }

    #[test]
    fn flavours() {
        assert_eq!(
            flavour("MPICH Version:      4.0.2"),
            Some(MpiFlavour::Mpich)
        );
        assert_eq!(
            flavour("Open MPI v4.1.4, package: Debian OpenMPI"),
            Some(MpiFlavour::Openmpi)
        );
        assert_eq!(
            flavour("Intel(R) MPI Library 2021.10"),
            Some(MpiFlavour::Intel)
        );
    }
}
