//! The vocabulary of hybrun and hybench: one typed name per concept.
//!
//! Every enum here is declared with [`crate::named_enum!`], so its names are
//! written once and the command line (clap), the site file, scenarios, records
//! and JSON (serde) all parse and print the same lower-case words. A word that
//! is not a name is refused where it is read, with the accepted names listed.

use std::fmt;

use crate::named_enum;

named_enum! {
    /// How the MPI library of the ranks relates to the container.
    pub enum Mode ("mode") {
        /// No container: the command runs on the host.
        Native = "native",
        /// The container's own MPI; ranks started outside (srun/mpiexec), PMI through the environment.
        Hybrid = "hybrid",
        /// The host's MPI and its library closure bound into the container.
        Bind = "bind",
        /// mpiexec inside the container, on one node.
        Inside = "inside",
    }
}

named_enum! {
    /// What `--mode` asks for: a [`Mode`], or `auto`, hybrun's choice between
    /// hybrid and bind for the image on this host and site. A request, not a
    /// mode: every plan, record and cell holds the [`Mode`] that was chosen,
    /// so `auto` is kept out of [`Mode`].
    pub enum ModeChoice ("mode") {
        /// Bind mode where the gate says it can run and the host's MPI is the
        /// one that knows the fabric; else hybrid (see the planner's `auto`).
        Auto = "auto",
        Native = "native",
        Hybrid = "hybrid",
        Bind = "bind",
        Inside = "inside",
    }
}

impl ModeChoice {
    /// The mode asked for; None for `auto`.
    pub fn mode(self) -> Option<Mode> {
        match self {
            ModeChoice::Auto => None,
            ModeChoice::Native => Some(Mode::Native),
            ModeChoice::Hybrid => Some(Mode::Hybrid),
            ModeChoice::Bind => Some(Mode::Bind),
            ModeChoice::Inside => Some(Mode::Inside),
        }
    }
}

impl Mode {
    /// Whether the ranks run in a container.
    pub fn in_container(self) -> bool {
        self != Mode::Native
    }
}

named_enum! {
    /// The binary interface an MPI library implements: what decides whether an
    /// application built against one library runs with another.
    pub enum MpiAbi ("MPI ABI") {
        /// libmpi.so.12 / libmpich.so.12: MPICH, Intel MPI, Cray MPICH, MVAPICH2.
        Mpich = "mpich",
        /// libmpi.so.40 (Open MPI 3.x-5.x) and older libmpi.so.N.
        Openmpi = "openmpi",
        /// libmpi_abi.so: the MPI 5.0 standard ABI.
        Standard = "mpi-abi",
    }
}

impl MpiAbi {
    /// The ABI's name in messages ("MPICH ABI").
    pub fn label(self) -> &'static str {
        match self {
            MpiAbi::Mpich => "MPICH ABI",
            MpiAbi::Openmpi => "Open MPI ABI",
            MpiAbi::Standard => "MPI 5 standard ABI",
        }
    }
}

named_enum! {
    /// The MPI implementation (its product): what decides the PMI it speaks, its
    /// mpiexec and the variables that select its fabric.
    pub enum MpiFlavour ("MPI flavour") {
        /// MPICH.
        Mpich = "mpich",
        /// MVAPICH2 (MPICH ABI, reads MPICH's variables).
        Mvapich2 = "mvapich2",
        /// Cray MPICH (MPICH ABI, reads MPICH's variables).
        CrayMpich = "cray-mpich",
        /// Intel MPI (MPICH ABI, its own fabric selection).
        Intel = "intel" | "intelmpi" | "impi",
        /// Open MPI.
        Openmpi = "openmpi",
    }
}

impl MpiFlavour {
    /// The ABI this implementation's own library has.
    pub fn abi(self) -> MpiAbi {
        match self {
            MpiFlavour::Openmpi => MpiAbi::Openmpi,
            _ => MpiAbi::Mpich,
        }
    }

    /// The implementation's name in messages and reports ("Intel MPI").
    pub fn label(self) -> &'static str {
        match self {
            MpiFlavour::Mpich => "MPICH",
            MpiFlavour::Mvapich2 => "MVAPICH2",
            MpiFlavour::CrayMpich => "Cray MPICH",
            MpiFlavour::Intel => "Intel MPI",
            MpiFlavour::Openmpi => "Open MPI",
        }
    }

    /// Recognises the implementation from its marker strings (an MPI library's
    /// `.rodata` strings, or the text of `MPI_Get_library_version`). MPICH's
    /// derivatives carry MPICH's own "MPICH Version:" too, so their markers
    /// are checked first.
    pub fn recognise<'a>(strings: impl IntoIterator<Item = &'a str> + Clone) -> Option<MpiFlavour> {
        let has = |needle: &str| strings.clone().into_iter().any(|s| s.contains(needle));
        if has("Intel(R) MPI Library") {
            Some(MpiFlavour::Intel)
        } else if has("MVAPICH2 Version") || has("MVAPICH2-") {
            Some(MpiFlavour::Mvapich2)
        } else if has("CRAY MPICH") || has("Cray MPICH") {
            Some(MpiFlavour::CrayMpich)
        } else if has("MPICH Version:") {
            Some(MpiFlavour::Mpich)
        } else if has("Open MPI v") || has("ompi_mpi_") {
            Some(MpiFlavour::Openmpi)
        } else {
            None
        }
    }

    /// The flavour that an ABI's reference implementation has (for profiles and
    /// cells that name only the ABI); None for the standard ABI, which several
    /// implementations provide.
    pub fn of_abi(abi: MpiAbi) -> Option<MpiFlavour> {
        match abi {
            MpiAbi::Mpich => Some(MpiFlavour::Mpich),
            MpiAbi::Openmpi => Some(MpiFlavour::Openmpi),
            MpiAbi::Standard => None,
        }
    }

    /// srun's `--mpi=` plugin this implementation speaks by default.
    pub fn default_plugin(self) -> MpiPlugin {
        match self.abi() {
            MpiAbi::Openmpi => MpiPlugin::Pmix,
            _ => MpiPlugin::Pmi2,
        }
    }

    /// The mpiexec that starts this implementation's ranks without Slurm.
    pub fn mpiexec(self) -> LauncherKind {
        match self.abi() {
            MpiAbi::Openmpi => LauncherKind::MpiexecOpenmpi,
            _ => LauncherKind::MpiexecHydra,
        }
    }
}

named_enum! {
    /// srun's `--mpi=` plugin: the PMI the ranks' MPI library talks to.
    pub enum MpiPlugin ("PMI plugin") {
        /// PMI-2 (MPICH and its ABI family).
        Pmi2 = "pmi2",
        /// PMIx (Open MPI).
        Pmix = "pmix",
        /// No PMI (programs that do not use MPI).
        None = "none",
    }
}

named_enum! {
    /// The container runtime kind (its version and dialect are resolved per
    /// launch from the site file or the program).
    pub enum RuntimeKind ("runtime") {
        /// Singularity 3.x (setuid; SingularityCE, hpcng).
        Singularity = "singularity",
        /// Apptainer 1.x.
        Apptainer = "apptainer",
        /// Charliecloud's ch-run.
        Charliecloud = "charliecloud" | "ch-run",
        /// No container.
        None = "none",
    }
}

impl RuntimeKind {
    /// The program's default name.
    pub fn default_program(self) -> Option<&'static str> {
        match self {
            RuntimeKind::Singularity => Some("singularity"),
            RuntimeKind::Apptainer => Some("apptainer"),
            RuntimeKind::Charliecloud => Some("ch-run"),
            RuntimeKind::None => None,
        }
    }
}

named_enum! {
    /// The program that starts the ranks.
    pub enum LauncherKind ("launcher") {
        /// Slurm's srun.
        Srun = "srun",
        /// MPICH's hydra mpiexec (PMI-2).
        MpiexecHydra = "mpiexec-hydra",
        /// Open MPI's mpiexec (PMIx).
        MpiexecOpenmpi = "mpiexec-openmpi",
        /// One process, started directly.
        None = "none",
    }
}

/// A released version, `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Version {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl Version {
    pub const fn new(major: u32, minor: u32, patch: u32) -> Version {
        Version {
            major,
            minor,
            patch,
        }
    }

    /// Parses `3.6.4`, `3.6`, `v1.2.5`, `3.8.7-1.el8` and `singularity version
    /// 3.6.4` (the runtime's own `--version` output).
    pub fn parse(text: &str) -> Option<Version> {
        let word = text.split_whitespace().find(|w| {
            w.trim_start_matches('v')
                .starts_with(|c: char| c.is_ascii_digit())
        })?;
        let word = word.trim_start_matches('v');
        let core = word.split(['-', '+', '~']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u32>());
        let major = parts.next()?.ok()?;
        let minor = parts.next().unwrap_or(Ok(0)).ok()?;
        let patch = parts.next().unwrap_or(Ok(0)).ok()?;
        Some(Version::new(major, minor, patch))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

impl serde::Serialize for Version {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for Version {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Version, D::Error> {
        let text = String::deserialize(d)?;
        Version::parse(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("{text:?} is not a version like 3.6.4"))
        })
    }
}

/// Which command-line dialect of Singularity a version speaks: which flags and
/// variables it has. The renderer emits only what every dialect has (`exec`,
/// `-B`, `--nv`, `SINGULARITYENV_*`), so the dialect is recorded for people and
/// checked by the tests against each version's real flag list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Dialect {
    /// 3.0 to 3.5: no `--env`/`--env-file`.
    Singularity30,
    /// 3.6 to 3.8 (hpcng/Sylabs, incl. the production 3.6.4): `--env` and
    /// `--env-file` exist; `--mount`, `--nvccli`, `--sharens` and
    /// `APPTAINERENV_*` do not.
    Singularity36,
    /// SingularityCE 3.9 and later (and 4.x): adds `--mount`, `--nvccli`.
    SingularityCe39,
}

impl Dialect {
    /// The dialect of a Singularity version.
    pub fn of(version: Version) -> Dialect {
        if version < Version::new(3, 6, 0) {
            Dialect::Singularity30
        } else if version < Version::new(3, 9, 0) {
            Dialect::Singularity36
        } else {
            Dialect::SingularityCe39
        }
    }
}

/// How many ranks a benchmark runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RankRule {
    /// Exactly two (ping-pong between ranks 0 and 1).
    ExactlyTwo,
    /// An even number, at least two (pairs).
    Even,
    /// At least two.
    AtLeastTwo,
    /// Any number (one process per GPU, or alone).
    Any,
}

impl RankRule {
    /// What the rule asks for, as a phrase ("runs on exactly 2 ranks").
    pub fn requirement(self) -> &'static str {
        match self {
            RankRule::ExactlyTwo => "runs on exactly 2 ranks",
            RankRule::Even => "needs an even number of ranks (pairs), at least 2",
            RankRule::AtLeastTwo => "needs at least 2 ranks",
            RankRule::Any => "runs on any number of ranks",
        }
    }

    /// Whether `ranks` satisfies the rule.
    pub fn allows(self, ranks: u32) -> bool {
        match self {
            RankRule::ExactlyTwo => ranks == 2,
            RankRule::Even => ranks >= 2 && ranks % 2 == 0,
            RankRule::AtLeastTwo => ranks >= 2,
            RankRule::Any => true,
        }
    }

    /// Checks a rank count; the message says the rule.
    pub fn check(self, ranks: u32) -> Result<(), String> {
        if self.allows(ranks) {
            Ok(())
        } else {
            Err(format!(
                "{}, and this launch has {ranks}",
                self.requirement()
            ))
        }
    }
}

named_enum! {
    /// hybench's benchmarks: the one catalogue of hybench's command line and of
    /// campaign scenarios.
    pub enum Benchmark ("benchmark") {
        /// Ping-pong latency between ranks 0 and 1 (osu_latency); exactly 2 ranks.
        Latency = "latency",
        /// Unidirectional bandwidth, window of non-blocking sends (osu_bw); exactly 2 ranks.
        Bw = "bw",
        /// Bidirectional bandwidth (osu_bibw); exactly 2 ranks.
        Bibw = "bibw",
        /// Ping-pong latency of many pairs at once (osu_multi_lat); even rank count.
        MultiLat = "multi-lat",
        /// Multi-pair bandwidth and message rate (osu_mbw_mr); even rank count.
        MbwMr = "mbw-mr",
        /// MPI_Barrier latency (osu_barrier).
        Barrier = "barrier",
        /// MPI_Bcast latency from rank 0 (osu_bcast).
        Bcast = "bcast",
        /// MPI_Reduce (float sum) latency to rank 0 (osu_reduce).
        Reduce = "reduce",
        /// MPI_Allreduce (float sum) latency (osu_allreduce).
        Allreduce = "allreduce",
        /// MPI_Allgather latency (osu_allgather).
        Allgather = "allgather",
        /// MPI_Alltoall latency (osu_alltoall).
        Alltoall = "alltoall",
        /// MPI_Gather latency to rank 0 (osu_gather).
        Gather = "gather",
        /// MPI_Scatter latency from rank 0 (osu_scatter).
        Scatter = "scatter",
        /// GPU: cuBLAS matrix products (fp64, fp32, tf32, bf16, fp16) in TFLOP/s.
        GpuGemm = "gpu-gemm",
        /// GPU: STREAM copy/scale/add/triad kernels (NVRTC) and device memcpy, GB/s.
        GpuStream = "gpu-stream",
        /// GPU: host<->device (pinned, pageable) and device<->device copies, GB/s.
        GpuCopy = "gpu-copy",
        /// GPU: latency and bandwidth of GPU buffers between 2 ranks (CUDA-aware MPI).
        GpuMpi = "gpu-mpi",
    }
}

impl Benchmark {
    /// The GPU benchmarks.
    pub fn is_gpu(self) -> bool {
        matches!(
            self,
            Benchmark::GpuGemm | Benchmark::GpuStream | Benchmark::GpuCopy | Benchmark::GpuMpi
        )
    }

    /// Point-to-point MPI benchmarks (pairs of ranks).
    pub fn is_point_to_point(self) -> bool {
        matches!(
            self,
            Benchmark::Latency
                | Benchmark::Bw
                | Benchmark::Bibw
                | Benchmark::MultiLat
                | Benchmark::MbwMr
        )
    }

    /// MPI collectives.
    pub fn is_collective(self) -> bool {
        !self.is_gpu() && !self.is_point_to_point()
    }

    /// Bandwidth benchmarks (MB/s; higher is better).
    pub fn is_bandwidth(self) -> bool {
        matches!(self, Benchmark::Bw | Benchmark::Bibw | Benchmark::MbwMr)
    }

    /// Whether it takes message sizes (`-m`).
    pub fn takes_sizes(self) -> bool {
        self != Benchmark::Barrier && !matches!(self, Benchmark::GpuGemm)
    }

    /// The rank counts it runs on.
    pub fn rank_rule(self) -> RankRule {
        match self {
            Benchmark::Latency | Benchmark::Bw | Benchmark::Bibw => RankRule::ExactlyTwo,
            Benchmark::MultiLat | Benchmark::MbwMr => RankRule::Even,
            Benchmark::GpuGemm | Benchmark::GpuStream | Benchmark::GpuCopy => RankRule::Any,
            _ => RankRule::AtLeastTwo,
        }
    }

    /// The OSU Micro-Benchmarks program it reproduces.
    pub fn osu_name(self) -> Option<&'static str> {
        Some(match self {
            Benchmark::Latency => "osu_latency",
            Benchmark::Bw => "osu_bw",
            Benchmark::Bibw => "osu_bibw",
            Benchmark::MultiLat => "osu_multi_lat",
            Benchmark::MbwMr => "osu_mbw_mr",
            Benchmark::Barrier => "osu_barrier",
            Benchmark::Bcast => "osu_bcast",
            Benchmark::Reduce => "osu_reduce",
            Benchmark::Allreduce => "osu_allreduce",
            Benchmark::Allgather => "osu_allgather",
            Benchmark::Alltoall => "osu_alltoall",
            Benchmark::Gather => "osu_gather",
            Benchmark::Scatter => "osu_scatter",
            Benchmark::GpuMpi => "osu_latency/osu_bw -d cuda",
            Benchmark::GpuGemm | Benchmark::GpuStream | Benchmark::GpuCopy => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize)]
    struct Profile {
        #[allow(dead_code)]
        abi: MpiAbi,
    }

    #[test]
    fn names_round_trip() {
        for m in Mode::ALL {
            assert_eq!(m.name().parse::<Mode>(), Ok(*m));
        }
        for b in Benchmark::ALL {
            assert_eq!(b.to_string().parse::<Benchmark>(), Ok(*b));
        }
        assert_eq!(
            "ch-run".parse::<RuntimeKind>(),
            Ok(RuntimeKind::Charliecloud)
        );
        assert_eq!("impi".parse::<MpiFlavour>(), Ok(MpiFlavour::Intel));
        assert_eq!(
            serde_json::to_string(&LauncherKind::MpiexecHydra).expect("json"),
            "\"mpiexec-hydra\""
        );
    }

    #[test]
    fn a_bad_word_names_the_accepted_ones_and_the_line() {
        let e = toml::from_str::<Profile>("\n abi = \"lam\"\n")
            .err()
            .expect("bad");
        let text = e.to_string();
        assert!(
            text.contains("unknown MPI ABI \"lam\": use mpich, openmpi or mpi-abi"),
            "{text}"
        );
        assert!(text.contains("line 2"), "{text}");
    }

    #[test]
    fn versions() {
        assert_eq!(Version::parse("3.6.4"), Some(Version::new(3, 6, 4)));
        assert_eq!(
            Version::parse("singularity version 3.6.4"),
            Some(Version::new(3, 6, 4))
        );
        assert_eq!(
            Version::parse("apptainer version 1.2.5-1.el8"),
            Some(Version::new(1, 2, 5))
        );
        assert_eq!(Version::parse("v1.3"), Some(Version::new(1, 3, 0)));
        assert_eq!(Version::parse("nope"), None);
        assert!(Version::new(3, 6, 4) < Version::new(3, 10, 0));
    }

    #[test]
    fn catalogue() {
        assert_eq!(Benchmark::Latency.rank_rule(), RankRule::ExactlyTwo);
        assert!(Benchmark::Allreduce.is_collective());
        assert!(!Benchmark::Barrier.takes_sizes());
        assert!(RankRule::Even.check(3).is_err());
        assert_eq!(MpiFlavour::Intel.abi(), MpiAbi::Mpich);
        assert_eq!(MpiFlavour::Openmpi.default_plugin(), MpiPlugin::Pmix);
    }
}
