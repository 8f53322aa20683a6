//! Descriptive statistics shared by hybench and the campaign reports.
//!
//! One place for every number hybrun prints about a distribution of timings:
//! order statistics (min, median, percentiles, max), moments (mean, standard
//! deviation) and a distribution-free 95% confidence interval of the median.
//!
//! Conventions (documented in `bench-apps/README.md`):
//! - percentiles use linear interpolation between closest ranks (the
//!   "type 7" definition used by NumPy and R by default);
//! - the standard deviation is the sample standard deviation (n - 1);
//! - the confidence interval of the median comes from order statistics and the
//!   binomial distribution B(n, 1/2): it assumes only independent samples, not
//!   normality. For n < 6 no 95% interval exists and none is reported.

use serde::{Deserialize, Serialize};

/// Summary of one sample (for example every timed iteration of one message size).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub n: usize,
    pub min: f64,
    pub median: f64,
    pub mean: f64,
    pub p90: f64,
    pub p99: f64,
    pub max: f64,
    pub stddev: f64,
    /// Lower bound of the 95% confidence interval of the median (None for n < 6).
    pub ci95_low: Option<f64>,
    /// Upper bound of the 95% confidence interval of the median (None for n < 6).
    pub ci95_high: Option<f64>,
}

/// Why a sample cannot be summarised.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum StatsError {
    #[error("no samples to summarise")]
    Empty,
    #[error("sample {index} is not a finite number ({value})")]
    NotFinite { index: usize, value: f64 },
}

impl Summary {
    /// Summarise `values`. Non-finite values are rejected rather than silently
    /// dropped: a NaN timing means a bug upstream and must not hide in a median.
    pub fn of(values: &[f64]) -> Result<Summary, StatsError> {
        if values.is_empty() {
            return Err(StatsError::Empty);
        }
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(StatsError::NotFinite { index, value });
        }
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Ok(Self::of_sorted(&sorted))
    }

    /// Summarise values that are already sorted ascending and finite.
    pub fn of_sorted(sorted: &[f64]) -> Summary {
        debug_assert!(sorted.windows(2).all(|w| w[0] <= w[1]));
        let n = sorted.len();
        let mean = mean(sorted);
        let (ci95_low, ci95_high) = match median_ci_ranks(n, 0.95) {
            Some((lo, hi)) => (Some(sorted[lo]), Some(sorted[hi])),
            None => (None, None),
        };
        Summary {
            n,
            min: sorted[0],
            median: quantile_sorted(sorted, 0.5),
            mean,
            p90: quantile_sorted(sorted, 0.90),
            p99: quantile_sorted(sorted, 0.99),
            max: sorted[n - 1],
            stddev: stddev(sorted, mean),
            ci95_low,
            ci95_high,
        }
    }
}

/// Arithmetic mean, computed in a numerically stable running form.
pub fn mean(values: &[f64]) -> f64 {
    let mut m = 0.0;
    for (i, v) in values.iter().enumerate() {
        m += (v - m) / (i as f64 + 1.0);
    }
    m
}

/// Sample standard deviation (n - 1 in the denominator); 0 for a single value.
pub fn stddev(values: &[f64], mean: f64) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let ss: f64 = values.iter().map(|v| (v - mean) * (v - mean)).sum();
    (ss / (values.len() as f64 - 1.0)).sqrt()
}

/// Quantile `q` in [0, 1] of sorted data, linear interpolation between closest
/// ranks (type 7).
pub fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "quantile of an empty sample");
    let q = q.clamp(0.0, 1.0);
    let h = (sorted.len() - 1) as f64 * q;
    let lo = h.floor() as usize;
    let hi = h.ceil() as usize;
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Median of unsorted data (copies and sorts).
pub fn median(values: &[f64]) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    Some(quantile_sorted(&v, 0.5))
}

/// Zero-based ranks (lo, hi) of the order statistics that bound a
/// distribution-free confidence interval for the median of `n` samples with
/// coverage at least `level`.
///
/// With B ~ Binomial(n, 1/2), the interval [x_(j), x_(k)] (1-based ranks,
/// k = n + 1 - j) covers the median with probability 1 - 2 P(B <= j - 1).
/// We take the largest j that keeps that coverage >= level. Returns None when
/// even [min, max] has less coverage (n < 6 at 95%).
pub fn median_ci_ranks(n: usize, level: f64) -> Option<(usize, usize)> {
    if n == 0 {
        return None;
    }
    let alpha = 1.0 - level;
    // Walk the binomial CDF in log space: 0.5^n underflows for n > 1074.
    let ln_half_n = -(n as f64) * std::f64::consts::LN_2;
    let mut ln_choose = 0.0_f64; // ln C(n, 0)
    let mut cdf = 0.0_f64; // P(B <= i)
    let mut best_j: Option<usize> = None; // 1-based
    for i in 0..n {
        cdf += (ln_choose + ln_half_n).exp();
        // Coverage of [x_(i+1), x_(n-i)] is 1 - 2 P(B <= i).
        if 2.0 * cdf <= alpha {
            best_j = Some(i + 1);
        } else {
            break;
        }
        ln_choose += ((n - i) as f64).ln() - ((i + 1) as f64).ln();
    }
    // j = 1 means [x_(1), x_(n)] needs 2 P(B <= 0) <= alpha: the loop already
    // required that. If not even that held, there is no interval.
    let j = best_j?;
    // The bound found covers with 1 - 2 P(B <= j-1); since the loop accepted
    // index i = j - 1, we use 1-based ranks (j, n + 1 - j) -> zero-based.
    let lo = j - 1;
    let hi = n - j;
    if lo > hi {
        return None;
    }
    Some((lo, hi))
}

/// Reduction of a per-rank quantity over ranks, as the OSU collectives report
/// it (min / avg / max of each rank's mean latency).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct OverRanks {
    pub min: f64,
    pub avg: f64,
    pub max: f64,
}

impl OverRanks {
    pub fn of(per_rank: &[f64]) -> Option<OverRanks> {
        if per_rank.is_empty() {
            return None;
        }
        let min = per_rank.iter().copied().fold(f64::INFINITY, f64::min);
        let max = per_rank.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(OverRanks {
            min,
            avg: mean(per_rank),
            max,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_of_known_values() {
        let s = Summary::of(&[5.0, 1.0, 3.0, 2.0, 4.0]).unwrap();
        assert_eq!(s.n, 5);
        assert_eq!(s.min, 1.0);
        assert_eq!(s.max, 5.0);
        assert_eq!(s.median, 3.0);
        assert_eq!(s.mean, 3.0);
        assert!((s.stddev - 2.5_f64.sqrt()).abs() < 1e-12);
        assert!((s.p90 - 4.6).abs() < 1e-12);
        assert_eq!(s.ci95_low, None, "no 95% interval exists for n = 5");
    }

    #[test]
    fn empty_and_nan_are_errors() {
        assert_eq!(Summary::of(&[]), Err(StatsError::Empty));
        assert!(matches!(
            Summary::of(&[1.0, f64::NAN]),
            Err(StatsError::NotFinite { index: 1, .. })
        ));
    }

    #[test]
    fn median_ci_ranks_match_published_tables() {
        // Classic table values (e.g. Conover, Practical Nonparametric Statistics):
        // n=6 -> ranks 1..6, n=10 -> 2..9, n=20 -> 6..15, n=100 -> 40..61 (1-based).
        assert_eq!(median_ci_ranks(5, 0.95), None);
        assert_eq!(median_ci_ranks(6, 0.95), Some((0, 5)));
        assert_eq!(median_ci_ranks(10, 0.95), Some((1, 8)));
        assert_eq!(median_ci_ranks(20, 0.95), Some((5, 14)));
        assert_eq!(median_ci_ranks(100, 0.95), Some((39, 60)));
        // Large n must not underflow.
        let (lo, hi) = median_ci_ranks(100_000, 0.95).unwrap();
        assert!(lo > 49_500 && hi < 50_500 && lo < hi);
    }

    #[test]
    fn median_ci_covers_true_median_about_95_percent() {
        // Coverage on synthetic samples from a skewed (exponential) distribution
        // whose true median is ln 2. Deterministic generator, so the test is exact.
        let mut state = 0x9E37_79B9_7F4A_7C15_u64;
        let mut uniform = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 11) as f64 / (1u64 << 53) as f64
        };
        let true_median = std::f64::consts::LN_2;
        let trials = 2000;
        let mut covered = 0;
        for _ in 0..trials {
            let sample: Vec<f64> = (0..41).map(|_| -(1.0 - uniform()).ln()).collect();
            let s = Summary::of(&sample).unwrap();
            if s.ci95_low.unwrap() <= true_median && true_median <= s.ci95_high.unwrap() {
                covered += 1;
            }
        }
        let coverage = covered as f64 / trials as f64;
        // Exact coverage for n = 41 is about 0.97 (order statistics are conservative).
        assert!((0.94..=0.99).contains(&coverage), "coverage {coverage}");
    }

    #[test]
    fn over_ranks() {
        let r = OverRanks::of(&[1.0, 2.0, 6.0]).unwrap();
        assert_eq!((r.min, r.avg, r.max), (1.0, 3.0, 6.0));
        assert!(OverRanks::of(&[]).is_none());
    }
}
