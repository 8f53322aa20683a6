//! Per-iteration timestamps cheap enough for a 0.2 us ping-pong.
//!
//! OMB 6 and earlier read MPI_Wtime once before and once after the timed loop;
//! OMB 7.x reads it before and after every iteration and sums the intervals.
//! hybench keeps per-iteration samples too, but on this class of machine
//! MPI_Wtime costs about 30 ns (7% of a shared-memory round trip) while the TSC
//! costs about 9 ns. So where the TSC is invariant (constant and non-stop, as
//! Linux reports in /proc/cpuinfo) the per-iteration stamps are TSC ticks,
//! converted with a rate calibrated against MPI_Wtime over the same timed
//! loop: the loop's total is MPI_Wtime's (t_end - t_start, the OMB 6 value),
//! the samples sum to it exactly, and the stamping costs a third of OMB 7.x's.
//! Elsewhere (or with HYBENCH_CLOCK=wtime) the stamps are MPI_Wtime itself.

use crate::comm::wtime;

hybrun_core::named_enum! {
    /// The clock that stamps each iteration.
    pub enum ClockKind ("clock") {
        /// Invariant time-stamp counter (x86_64).
        Tsc = "tsc",
        /// MPI_Wtime in nanoseconds.
        Wtime = "MPI_Wtime",
    }
}

impl ClockKind {
    pub fn detect() -> ClockKind {
        if cfg!(target_arch = "x86_64")
            && std::env::var_os("HYBENCH_CLOCK").is_none_or(|v| v != "wtime")
        {
            let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
            let flags = cpuinfo
                .lines()
                .find(|l| l.starts_with("flags"))
                .unwrap_or("");
            let has = |f: &str| flags.split_whitespace().any(|x| x == f);
            if has("constant_tsc") && has("nonstop_tsc") {
                return ClockKind::Tsc;
            }
        }
        ClockKind::Wtime
    }

    /// A raw stamp: TSC ticks, or MPI_Wtime nanoseconds.
    #[inline(always)]
    pub fn stamp(self) -> u64 {
        match self {
            #[cfg(target_arch = "x86_64")]
            // SAFETY: rdtsc has no preconditions on x86_64.
            ClockKind::Tsc => unsafe { core::arch::x86_64::_rdtsc() },
            _ => (wtime() * 1e9) as u64,
        }
    }
}

/// Timestamps of one timed loop: `stamps[i]` is taken at the start of timed
/// iteration i and the last one after the loop. `wall` is MPI_Wtime over the
/// same span, so `sum(durations) == wall` as in OSU.
pub struct Stamps {
    pub clock: ClockKind,
    pub stamps: Vec<u64>,
    wt_start: f64,
    wt_end: f64,
}

impl Stamps {
    pub fn with_capacity(clock: ClockKind, iterations: usize) -> Stamps {
        Stamps {
            clock,
            stamps: Vec::with_capacity(iterations + 1),
            wt_start: 0.0,
            wt_end: 0.0,
        }
    }

    /// Start of the timed region (OSU's `t_start = MPI_Wtime()`).
    #[inline(always)]
    pub fn start(&mut self) {
        self.wt_start = wtime();
        self.stamps.push(self.clock.stamp());
    }

    /// Start of one more timed iteration after the first.
    #[inline(always)]
    pub fn mark(&mut self) {
        self.stamps.push(self.clock.stamp());
    }

    /// End of the timed region (OSU's `t_end = MPI_Wtime()`).
    #[inline(always)]
    pub fn end(&mut self) {
        self.stamps.push(self.clock.stamp());
        self.wt_end = wtime();
    }

    /// Wall time of the timed region in seconds (MPI_Wtime, as OSU).
    pub fn wall(&self) -> f64 {
        self.wt_end - self.wt_start
    }

    /// Duration of each timed iteration in seconds; they sum to `wall()`.
    pub fn durations(&self) -> Vec<f64> {
        let n = self.stamps.len();
        if n < 2 {
            return Vec::new();
        }
        let ticks = self.stamps[n - 1].saturating_sub(self.stamps[0]).max(1) as f64;
        let sec_per_tick = self.wall() / ticks;
        self.stamps
            .windows(2)
            .map(|w| w[1].saturating_sub(w[0]) as f64 * sec_per_tick)
            .collect()
    }
}
