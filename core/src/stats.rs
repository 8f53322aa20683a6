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
//!   normality. For n < 6 no 95% interval exists and none is reported;
//! - the ratio of two medians (a mode against native) gets a percentile
//!   bootstrap interval ([`bootstrap_ratio_of_medians`]) drawn with a seedable
//!   generator ([`Rng`]), and a [`Verdict`] against a tolerance band.

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
    #[error("sample {index} is {value}: a geometric mean needs positive finite values")]
    NotPositive { index: usize, value: f64 },
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

// ---- Resampling: a seedable generator, bootstrap CI of a ratio of medians, verdicts ----
//
// The campaign reports compare modes by the ratio of their medians (e.g. the
// hybrid median latency over the native one). No closed form gives a
// confidence interval for such a ratio without assuming a distribution, so we
// use the percentile bootstrap. The generator is seedable so a report is
// reproducible bit for bit, and the tests below measure the coverage on
// synthetic samples from known distributions.

/// A small, fast, seedable pseudo-random generator (xoshiro256**, seeded
/// through SplitMix64 as its authors recommend). Not cryptographic: it only has
/// to be reproducible and statistically sound for resampling and shuffling.
#[derive(Debug, Clone)]
pub struct Rng {
    s: [u64; 4],
}

impl Rng {
    /// A generator whose whole output is determined by `seed`.
    pub fn new(seed: u64) -> Rng {
        let mut x = seed;
        let mut splitmix = || {
            x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        };
        Rng {
            s: [splitmix(), splitmix(), splitmix(), splitmix()],
        }
    }

    pub fn next_u64(&mut self) -> u64 {
        let result = self.s[1].wrapping_mul(5).rotate_left(7).wrapping_mul(9);
        let t = self.s[1] << 17;
        self.s[2] ^= self.s[0];
        self.s[3] ^= self.s[1];
        self.s[1] ^= self.s[2];
        self.s[0] ^= self.s[3];
        self.s[2] ^= t;
        self.s[3] = self.s[3].rotate_left(45);
        result
    }

    /// Uniform in [0, 1), 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in [0, n) without modulo bias (Lemire's method); n > 0.
    pub fn below(&mut self, n: usize) -> usize {
        assert!(n > 0, "Rng::below(0)");
        let n = n as u64;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            let low = m as u64;
            // Reject the few values that would make some outcomes more likely.
            if low >= n.wrapping_neg() % n {
                return (m >> 64) as usize;
            }
        }
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// Median of a scratch buffer (reordered in place), type 7 like
/// [`quantile_sorted`]: the mean of the two middle values for even lengths.
/// O(n) selection instead of a sort: the bootstrap calls this thousands of times.
fn median_in_place(buf: &mut [f64]) -> f64 {
    let n = buf.len();
    let mid = n / 2;
    let (lower, m, _) = buf.select_nth_unstable_by(mid, f64::total_cmp);
    let m = *m;
    if n % 2 == 1 {
        m
    } else {
        let below = lower.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        below + (m - below) / 2.0
    }
}

/// A ratio of medians with its bootstrap confidence interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct RatioCi {
    /// median(numerator) / median(denominator) of the data as observed.
    pub ratio: f64,
    pub low: f64,
    pub high: f64,
    /// Nominal coverage, e.g. 0.95.
    pub level: f64,
    pub resamples: u32,
}

impl RatioCi {
    /// Width of the interval relative to the ratio, (high - low) / ratio: what
    /// a campaign's stop rule compares with its target.
    pub fn relative_width(&self) -> f64 {
        (self.high - self.low) / self.ratio.abs()
    }
}

/// Why a ratio cannot be estimated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RatioError {
    #[error("{which}: {source}")]
    Sample {
        which: &'static str,
        source: StatsError,
    },
    #[error("the denominator's median is {0}: a ratio to it means nothing")]
    Denominator(f64),
    #[error("confidence level {0} is not in (0, 1)")]
    Level(f64),
    #[error("the launches do not all cover the same message sizes")]
    Shape,
}

/// Percentile-bootstrap confidence interval of `median(num) / median(den)`.
///
/// The two samples are independent groups (two modes); each resample draws
/// `num.len()` values from `num` and `den.len()` from `den` with replacement.
/// What a value stands for is the caller's choice and must be stated where the
/// interval is shown: per-launch medians (resampling launches: the launch is
/// the unit that varies with placement and start-up) or per-iteration samples.
/// Cost: O(resamples x (n_num + n_den)).
pub fn bootstrap_ratio_of_medians(
    num: &[f64],
    den: &[f64],
    level: f64,
    resamples: u32,
    rng: &mut Rng,
) -> Result<RatioCi, RatioError> {
    if !(level > 0.0 && level < 1.0) {
        return Err(RatioError::Level(level));
    }
    let check = |which: &'static str, v: &[f64]| -> Result<(), RatioError> {
        if v.is_empty() {
            return Err(RatioError::Sample {
                which,
                source: StatsError::Empty,
            });
        }
        if let Some((index, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(RatioError::Sample {
                which,
                source: StatsError::NotFinite { index, value },
            });
        }
        Ok(())
    };
    check("numerator", num)?;
    check("denominator", den)?;
    let den_median = median_in_place(&mut den.to_vec());
    if den_median == 0.0 {
        return Err(RatioError::Denominator(den_median));
    }
    let ratio = median_in_place(&mut num.to_vec()) / den_median;
    let mut a = vec![0.0; num.len()];
    let mut b = vec![0.0; den.len()];
    let mut ratios = Vec::with_capacity(resamples.max(1) as usize);
    for _ in 0..resamples.max(1) {
        for x in a.iter_mut() {
            *x = num[rng.below(num.len())];
        }
        for x in b.iter_mut() {
            *x = den[rng.below(den.len())];
        }
        let d = median_in_place(&mut b);
        // A resample whose denominator median is 0 has no ratio; skip it (only
        // possible when the data holds zeros, which timings never do).
        if d != 0.0 {
            ratios.push(median_in_place(&mut a) / d);
        }
    }
    if ratios.is_empty() {
        return Err(RatioError::Denominator(0.0));
    }
    ratios.sort_by(f64::total_cmp);
    let alpha = 1.0 - level;
    Ok(RatioCi {
        ratio,
        low: quantile_sorted(&ratios, alpha / 2.0),
        high: quantile_sorted(&ratios, 1.0 - alpha / 2.0),
        level,
        resamples: resamples.max(1),
    })
}

/// One ratio over all message sizes: the geometric mean of the per-size ratios
/// (of each cell's [`Location`] of its launches), with a bootstrap interval
/// that resamples whole launches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadlineCi {
    /// exp(mean over sizes of ln(location(num_s) / location(den_s))), as observed.
    pub ratio: f64,
    pub low: f64,
    pub high: f64,
    /// Nominal coverage, e.g. 0.95.
    pub level: f64,
    pub resamples: u32,
    /// The per-size ratios of locations, as observed (same order as the sizes).
    pub per_size: Vec<f64>,
}

impl HeadlineCi {
    /// As a [`RatioCi`] (for verdicts and the stop rule).
    pub fn as_ratio(&self) -> RatioCi {
        RatioCi {
            ratio: self.ratio,
            low: self.low,
            high: self.high,
            level: self.level,
            resamples: self.resamples,
        }
    }
}

crate::named_enum! {
    /// How the launches of one cell are summarised per size before two cells
    /// are compared.
    pub enum Location ("location estimator") {
        /// The median. Of paired ratios (one per round) it ignores the rounds
        /// whose two launches fell in different machine states: calibrated and
        /// powerful (the default; see the paired tests below).
        Median = "median",
        /// The mean without the lowest and highest 10%. Of unpaired launches
        /// that land in a fast or a slow state, a mixture, it moves smoothly
        /// where the median jumps between the states (more power there); of
        /// paired ratios it keeps flipped rounds beyond the trim.
        TrimmedMean = "trimmed-mean",
    }
}

impl Location {
    /// Its name in a sentence.
    pub fn label(self) -> &'static str {
        match self {
            Location::Median => "median",
            Location::TrimmedMean => "10%-trimmed mean",
        }
    }

    /// The location of `values` (reordered in place).
    pub fn of(self, values: &mut [f64]) -> f64 {
        match self {
            Location::Median => median_in_place(values),
            Location::TrimmedMean => {
                let per_side = values.len() / 10;
                trimmed_mean(values, per_side)
            }
        }
    }
}

/// Percentile-bootstrap interval of the geometric mean over sizes of
/// `location(num[.][s]) / location(den[.][s])`.
///
/// `num` and `den` hold one row per launch, one value per size (every row the
/// same sizes, in the same order). A resample draws whole launches (rows) with
/// replacement, so the sizes of one launch stay together: on machines where a
/// launch lands in a fast or slow state and keeps it, the sizes of a launch
/// are one event, not independent samples, and the interval must see that.
/// Values must be positive (logarithms). Cost: O(resamples x launches x sizes).
pub fn bootstrap_geomean_ratio(
    num: &[Vec<f64>],
    den: &[Vec<f64>],
    location: Location,
    level: f64,
    resamples: u32,
    rng: &mut Rng,
) -> Result<HeadlineCi, RatioError> {
    let sizes = check_shapes(num, den, level, false)?;
    let per_size: Vec<f64> = (0..sizes)
        .map(|s| column_location(num, s, location) / column_location(den, s, location))
        .collect();
    let geomean =
        |ratios: &[f64]| (ratios.iter().map(|r| r.ln()).sum::<f64>() / ratios.len() as f64).exp();
    let ratio = geomean(&per_size);
    let mut pick_num = vec![0usize; num.len()];
    let mut pick_den = vec![0usize; den.len()];
    let mut scratch = Vec::with_capacity(num.len().max(den.len()));
    let mut logs = Vec::with_capacity(resamples.max(1) as usize);
    for _ in 0..resamples.max(1) {
        for p in pick_num.iter_mut() {
            *p = rng.below(num.len());
        }
        for p in pick_den.iter_mut() {
            *p = rng.below(den.len());
        }
        let mut sum = 0.0;
        for s in 0..sizes {
            let a = picked_location(num, &pick_num, s, location, &mut scratch);
            let b = picked_location(den, &pick_den, s, location, &mut scratch);
            sum += (a / b).ln();
        }
        logs.push(sum / sizes as f64);
    }
    logs.sort_by(f64::total_cmp);
    let alpha = 1.0 - level;
    Ok(HeadlineCi {
        ratio,
        low: quantile_sorted(&logs, alpha / 2.0).exp(),
        high: quantile_sorted(&logs, 1.0 - alpha / 2.0).exp(),
        level,
        resamples: resamples.max(1),
        per_size,
    })
}

/// A paired comparison's interval, as the location asks: the median's is
/// distribution-free ([`paired_median_interval`]), the trimmed mean's a
/// bootstrap ([`bootstrap_paired_ratio`]). The arguments of both.
pub fn paired_ratio(
    num: &[Vec<f64>],
    den: &[Vec<f64>],
    location: Location,
    level: f64,
    resamples: u32,
    rng: &mut Rng,
) -> Result<HeadlineCi, RatioError> {
    match location {
        Location::Median => paired_median_interval(num, den, level),
        Location::TrimmedMean => bootstrap_paired_ratio(num, den, location, level, resamples, rng),
    }
}

/// The distribution-free interval of a paired comparison's median.
///
/// `num` and `den` hold one row per round (the two cells' launches of one
/// round), one value per size. Each round gives one value, its geometric mean
/// over sizes of num / den, trimmed to the middle half ([`round_value`]: the
/// sizes of a launch together, as they share its state, less the sizes a
/// state change part-way through the launch spoiled); the ratio is exp of
/// their median, and the interval exp of the order
/// statistics that hold the median with probability at least `level` whatever
/// the distribution ([`median_ci_ranks`]: with B ~ Binomial(n, 1/2)). A
/// percentile bootstrap of a median covers less than it says with few rounds
/// (measured here: 5-6% false verdicts from 95% intervals of 6 rounds); this
/// one covers at least what it says at every n, with no resampling
/// (`resamples` is 0). `per_size`: each size's median ratio over rounds.
pub fn paired_median_interval(
    num: &[Vec<f64>],
    den: &[Vec<f64>],
    level: f64,
) -> Result<HeadlineCi, RatioError> {
    let sizes = check_shapes(num, den, level, true)?;
    let logs = log_ratios(num, den);
    let mut scratch = Vec::with_capacity(sizes);
    let mut per_round: Vec<f64> = logs
        .iter()
        .map(|row| round_value(row, &mut scratch))
        .collect();
    per_round.sort_by(f64::total_cmp);
    let (lo, hi) = median_ci_ranks(per_round.len(), level).ok_or(RatioError::Sample {
        which: "paired rounds",
        source: StatsError::Empty,
    })?;
    let per_size = (0..sizes)
        .map(|s| column_location(&logs, s, Location::Median).exp())
        .collect();
    Ok(HeadlineCi {
        ratio: median_in_place(&mut per_round.clone()).exp(),
        low: per_round[lo].exp(),
        high: per_round[hi].exp(),
        level,
        resamples: 0,
        per_size,
    })
}

/// One round's value of a paired comparison: the mean of its log ratios over
/// sizes without the lowest and highest quarter (the interquartile mean; all
/// of them with fewer than 4 sizes).
///
/// Why trimmed: a launch can change state (fast or slow, for seconds at a
/// time) part-way through its sizes, and then a few sizes of that round are
/// off by up to the states' factor (3.7x at 8 B here) while the others agree.
/// The plain mean over sizes carries those few into the round's value; the
/// middle half drops them. Measured on the launches of five real quickstart
/// runs (issue 10's note): 44 of 45 intervals narrower than the plain mean's,
/// by 39% at the median, with the same order-statistic interval, so the same
/// coverage. Under a slowdown that is the same at every size both give that
/// factor.
pub fn round_value(log_ratios: &[f64], scratch: &mut Vec<f64>) -> f64 {
    scratch.clear();
    scratch.extend_from_slice(log_ratios);
    trimmed_mean(scratch, log_ratios.len() / 4)
}

/// The mean of `values` without the `per_side` lowest and highest (`values`
/// reordered in place; `per_side` less than half of them).
fn trimmed_mean(values: &mut [f64], per_side: usize) -> f64 {
    values.sort_by(f64::total_cmp);
    let kept = &values[per_side..values.len() - per_side];
    kept.iter().sum::<f64>() / kept.len() as f64
}

/// ln(num / den) per round and size (rows of the same shape, checked).
fn log_ratios(num: &[Vec<f64>], den: &[Vec<f64>]) -> Vec<Vec<f64>> {
    num.iter()
        .zip(den)
        .map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x / y).ln()).collect())
        .collect()
}

/// Percentile-bootstrap interval of a paired comparison: the geometric mean
/// over sizes of `exp(location over rounds of ln(num / den))`.
///
/// `num` and `den` hold one row per round (the two cells' launches of one
/// round, launched next to each other), one value per size, the same sizes in
/// the same order. The ratio of a round cancels what its two launches share:
/// on machines whose state (fast or slow, for seconds at a time) is set by
/// when a launch runs, launches of the same round share it, and the paired
/// ratios are far tighter than a ratio of two cells' unpaired locations. A
/// resample draws whole rounds with replacement (the sizes of a round stay
/// together). Values must be positive. Cost: O(resamples x rounds x sizes).
pub fn bootstrap_paired_ratio(
    num: &[Vec<f64>],
    den: &[Vec<f64>],
    location: Location,
    level: f64,
    resamples: u32,
    rng: &mut Rng,
) -> Result<HeadlineCi, RatioError> {
    let sizes = check_shapes(num, den, level, true)?;
    let logs = log_ratios(num, den);
    let per_size: Vec<f64> = (0..sizes)
        .map(|s| column_location(&logs, s, location).exp())
        .collect();
    let ratio = (per_size.iter().map(|r| r.ln()).sum::<f64>() / sizes as f64).exp();
    let mut pick = vec![0usize; logs.len()];
    let mut scratch = Vec::with_capacity(logs.len());
    let mut means = Vec::with_capacity(resamples.max(1) as usize);
    for _ in 0..resamples.max(1) {
        for p in pick.iter_mut() {
            *p = rng.below(logs.len());
        }
        let sum: f64 = (0..sizes)
            .map(|s| picked_location(&logs, &pick, s, location, &mut scratch))
            .sum();
        means.push(sum / sizes as f64);
    }
    means.sort_by(f64::total_cmp);
    let alpha = 1.0 - level;
    Ok(HeadlineCi {
        ratio,
        low: quantile_sorted(&means, alpha / 2.0).exp(),
        high: quantile_sorted(&means, 1.0 - alpha / 2.0).exp(),
        level,
        resamples: resamples.max(1),
        per_size,
    })
}

/// Checks the level and both sides' rows (as [`check_rows`]: one number of
/// sizes on both; as many rows on both when `paired`); returns the sizes.
fn check_shapes(
    num: &[Vec<f64>],
    den: &[Vec<f64>],
    level: f64,
    paired: bool,
) -> Result<usize, RatioError> {
    if !(level > 0.0 && level < 1.0) {
        return Err(RatioError::Level(level));
    }
    let sizes = check_rows("numerator", num)?;
    if check_rows("denominator", den)? != sizes || (paired && num.len() != den.len()) {
        return Err(RatioError::Shape);
    }
    Ok(sizes)
}

/// Checks rows of positive finite values, all of one length; returns it.
fn check_rows(which: &'static str, rows: &[Vec<f64>]) -> Result<usize, RatioError> {
    let Some(first) = rows.first() else {
        return Err(RatioError::Sample {
            which,
            source: StatsError::Empty,
        });
    };
    let sizes = first.len();
    if sizes == 0 || rows.iter().any(|r| r.len() != sizes) {
        return Err(RatioError::Shape);
    }
    for (index, &value) in rows.iter().flatten().enumerate() {
        if !(value.is_finite() && value > 0.0) {
            return Err(RatioError::Sample {
                which,
                source: StatsError::NotPositive { index, value },
            });
        }
    }
    Ok(sizes)
}

fn column_location(rows: &[Vec<f64>], s: usize, location: Location) -> f64 {
    location.of(&mut rows.iter().map(|r| r[s]).collect::<Vec<_>>())
}

fn picked_location(
    rows: &[Vec<f64>],
    picks: &[usize],
    s: usize,
    location: Location,
    scratch: &mut Vec<f64>,
) -> f64 {
    scratch.clear();
    scratch.extend(picks.iter().map(|&i| rows[i][s]));
    location.of(scratch)
}

crate::named_enum! {
/// What a ratio's interval says against a tolerance band around 1.
pub enum Verdict ("verdict") {
    /// The whole interval lies inside [1 - tolerance, 1 + tolerance].
    Equivalent = "equivalent",
    /// The whole interval lies on the worse side of 1 (and not all inside the band).
    Slower = "slower",
    /// The whole interval lies on the better side of 1 (and not all inside the band).
    Faster = "faster",
    /// The interval straddles 1 and leaves the band: more launches are needed.
    Inconclusive = "inconclusive",
}
}

impl Verdict {
    /// `ratio` is value(mode) / value(reference); `higher_is_better` says
    /// whether a larger value is better (bandwidth) or worse (latency).
    pub fn of(ci: &RatioCi, tolerance: f64, higher_is_better: bool) -> Verdict {
        if ci.low >= 1.0 - tolerance && ci.high <= 1.0 + tolerance {
            return Verdict::Equivalent;
        }
        let (above, below) = (ci.low > 1.0, ci.high < 1.0);
        match (above, below, higher_is_better) {
            (true, _, false) | (_, true, true) => Verdict::Slower,
            (true, _, true) | (_, true, false) => Verdict::Faster,
            _ => Verdict::Inconclusive,
        }
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
    fn a_round_value_drops_the_sizes_a_state_change_spoiled() {
        let mut scratch = Vec::new();
        // Eight sizes, 2% slower, two of them caught in the slow state.
        let mut logs = vec![0.02_f64; 8];
        logs[1] = 3.7_f64.ln();
        logs[6] = 3.7_f64.ln();
        assert!((round_value(&logs, &mut scratch) - 0.02).abs() < 1e-12);
        // A plain mean would say 40% slower.
        assert!(logs.iter().sum::<f64>() / 8.0 > 0.3);
        // The same factor at every size is that factor; fewer than 4 sizes
        // keep them all.
        assert!((round_value(&[0.05; 21], &mut scratch) - 0.05).abs() < 1e-12);
        assert!((round_value(&[0.0, 0.3, 0.6], &mut scratch) - 0.3).abs() < 1e-12);
        assert_eq!(round_value(&[0.1], &mut scratch), 0.1);
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

    /// Standard normal by Box-Muller, for the synthetic samples below.
    fn normal(rng: &mut Rng) -> f64 {
        let u1 = 1.0 - rng.uniform();
        let u2 = rng.uniform();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Coverage of the bootstrap interval of a ratio of medians, over `trials`
    /// pairs of synthetic samples drawn by `draw(rng, which)`, whose true ratio
    /// of medians is `truth`.
    fn ratio_coverage(
        seed: u64,
        trials: usize,
        n: usize,
        truth: f64,
        draw: impl Fn(&mut Rng, usize) -> f64,
    ) -> f64 {
        let mut data = Rng::new(seed);
        let mut boot = Rng::new(seed ^ 0xB007);
        let mut covered = 0;
        for _ in 0..trials {
            let num: Vec<f64> = (0..n).map(|_| draw(&mut data, 0)).collect();
            let den: Vec<f64> = (0..n).map(|_| draw(&mut data, 1)).collect();
            let ci = bootstrap_ratio_of_medians(&num, &den, 0.95, 500, &mut boot).unwrap();
            assert!(ci.low <= ci.ratio && ci.ratio <= ci.high, "{ci:?}");
            if ci.low <= truth && truth <= ci.high {
                covered += 1;
            }
        }
        let coverage = covered as f64 / trials as f64;
        eprintln!("bootstrap ratio CI coverage (seed {seed}, n {n}): {coverage}");
        coverage
    }

    #[test]
    fn ratio_ci_covers_lognormal_truth() {
        // Log-normal timings (right-skewed like real latencies): median e^mu.
        // Numerator mu = ln 1.10, denominator mu = 0: true ratio of medians 1.10.
        let coverage = ratio_coverage(7, 400, 60, 1.10, |rng, which| {
            let mu = if which == 0 { 1.10_f64.ln() } else { 0.0 };
            (mu + 0.25 * normal(rng)).exp()
        });
        // Percentile bootstrap of a median at n = 60: close to nominal.
        assert!((0.90..=0.99).contains(&coverage), "coverage {coverage}");
    }

    #[test]
    fn ratio_ci_covers_exponential_truth() {
        // Exponential with scales 2 and 1: medians 2 ln 2 and ln 2, ratio 2.
        let coverage = ratio_coverage(11, 400, 80, 2.0, |rng, which| {
            let scale = if which == 0 { 2.0 } else { 1.0 };
            -scale * (1.0 - rng.uniform()).ln()
        });
        assert!((0.90..=0.99).contains(&coverage), "coverage {coverage}");
    }

    #[test]
    fn ratio_ci_narrows_with_more_data_and_is_reproducible() {
        let mut data = Rng::new(3);
        let mut sample = |n: usize| -> Vec<f64> {
            (0..n)
                .map(|_| (0.2 * normal(&mut data)).exp())
                .collect::<Vec<_>>()
        };
        let (a1, b1, a2, b2) = (sample(20), sample(20), sample(2000), sample(2000));
        let small = bootstrap_ratio_of_medians(&a1, &b1, 0.95, 1000, &mut Rng::new(1)).unwrap();
        let large = bootstrap_ratio_of_medians(&a2, &b2, 0.95, 1000, &mut Rng::new(1)).unwrap();
        // The width shrinks like 1/sqrt(n): 100x the data, about 1/10 the width.
        assert!(
            large.relative_width() < small.relative_width() / 4.0,
            "{small:?} {large:?}"
        );
        let again = bootstrap_ratio_of_medians(&a1, &b1, 0.95, 1000, &mut Rng::new(1)).unwrap();
        assert_eq!(small, again, "same seed, same interval");
    }

    #[test]
    fn ratio_errors() {
        let mut rng = Rng::new(0);
        assert!(matches!(
            bootstrap_ratio_of_medians(&[], &[1.0], 0.95, 10, &mut rng),
            Err(RatioError::Sample {
                which: "numerator",
                ..
            })
        ));
        assert!(matches!(
            bootstrap_ratio_of_medians(&[1.0], &[f64::NAN], 0.95, 10, &mut rng),
            Err(RatioError::Sample {
                which: "denominator",
                ..
            })
        ));
        assert_eq!(
            bootstrap_ratio_of_medians(&[1.0], &[0.0], 0.95, 10, &mut rng),
            Err(RatioError::Denominator(0.0))
        );
        assert_eq!(
            bootstrap_ratio_of_medians(&[1.0], &[1.0], 1.5, 10, &mut rng),
            Err(RatioError::Level(1.5))
        );
    }

    #[test]
    fn median_in_place_matches_sorted_median() {
        let mut rng = Rng::new(5);
        for n in 1..40 {
            let v: Vec<f64> = (0..n).map(|_| rng.uniform()).collect();
            assert_eq!(
                median_in_place(&mut v.clone()),
                median(&v).unwrap(),
                "n {n}"
            );
        }
    }

    #[test]
    fn rng_below_is_uniform_and_shuffle_permutes() {
        let mut rng = Rng::new(42);
        let mut counts = [0u32; 6];
        for _ in 0..60_000 {
            counts[rng.below(6)] += 1;
        }
        // Each face 10000 expected; 5 sigma is about 456.
        assert!(
            counts.iter().all(|&c| (9_500..=10_500).contains(&c)),
            "{counts:?}"
        );
        let mut v: Vec<u32> = (0..50).collect();
        rng.shuffle(&mut v);
        assert_ne!(v, (0..50).collect::<Vec<_>>());
        v.sort_unstable();
        assert_eq!(v, (0..50).collect::<Vec<_>>());
    }

    #[test]
    fn verdicts() {
        let ci = |low, high| RatioCi {
            ratio: (low + high) / 2.0,
            low,
            high,
            level: 0.95,
            resamples: 1,
        };
        // Latency (lower is better): a ratio above 1 is slower.
        assert_eq!(
            Verdict::of(&ci(0.98, 1.02), 0.03, false),
            Verdict::Equivalent
        );
        assert_eq!(Verdict::of(&ci(1.01, 1.08), 0.03, false), Verdict::Slower);
        assert_eq!(Verdict::of(&ci(0.90, 0.99), 0.03, false), Verdict::Faster);
        assert_eq!(
            Verdict::of(&ci(0.95, 1.05), 0.03, false),
            Verdict::Inconclusive
        );
        // Bandwidth (higher is better): a ratio below 1 is slower.
        assert_eq!(Verdict::of(&ci(0.90, 0.99), 0.03, true), Verdict::Slower);
        assert_eq!(Verdict::of(&ci(1.01, 1.08), 0.03, true), Verdict::Faster);
        // Inside the band wins even when the interval excludes 1.
        assert_eq!(
            Verdict::of(&ci(1.005, 1.02), 0.03, true),
            Verdict::Equivalent
        );
    }

    /// Launches of a machine that lands each launch in a fast or a slow state
    /// (x1.15, 40% of launches) and keeps it for every size, plus small noise
    /// per size: the situation the headline's joint resampling is for.
    fn launches(rng: &mut Rng, n: usize, sizes: usize, factor: f64) -> Vec<Vec<f64>> {
        (0..n)
            .map(|_| {
                let state = if rng.uniform() < 0.4 { 1.15 } else { 1.0 };
                (0..sizes)
                    .map(|s| {
                        factor * state * (1.0 + s as f64) * (1.0 + 0.01 * (rng.uniform() - 0.5))
                    })
                    .collect()
            })
            .collect()
    }

    #[test]
    fn headline_interval_covers_an_a_a_comparison() {
        for &location in Location::ALL {
            a_a_coverage(location);
        }
    }

    fn a_a_coverage(location: Location) {
        let mut rng = Rng::new(7);
        let trials = 200;
        let mut covered = 0;
        for _ in 0..trials {
            let a = launches(&mut rng, 20, 8, 1.0);
            let b = launches(&mut rng, 20, 8, 1.0);
            let h = bootstrap_geomean_ratio(&a, &b, location, 0.95, 400, &mut rng).unwrap();
            assert_eq!(h.per_size.len(), 8);
            if h.low <= 1.0 && 1.0 <= h.high {
                covered += 1;
            }
        }
        let coverage = covered as f64 / trials as f64;
        assert!(coverage >= 0.92, "{location}: coverage {coverage}");
    }

    #[test]
    fn headline_sees_a_real_slowdown_where_the_median_does_not() {
        let power = |location: Location| {
            let mut rng = Rng::new(11);
            let mut detected = 0;
            for _ in 0..100 {
                let slow = launches(&mut rng, 20, 8, 1.10);
                let fast = launches(&mut rng, 20, 8, 1.0);
                let h =
                    bootstrap_geomean_ratio(&slow, &fast, location, 0.95, 400, &mut rng).unwrap();
                if h.low > 1.0 {
                    detected += 1;
                }
            }
            detected
        };
        let trimmed = power(Location::TrimmedMean);
        let median = power(Location::Median);
        assert!(trimmed >= 85, "trimmed mean detected {trimmed} of 100");
        assert!(
            median < trimmed,
            "median {median} vs trimmed mean {trimmed}"
        );
    }

    /// Rounds of a machine whose state (fast, or x1.5 slow, 30% of the time)
    /// is set by when a launch runs: both launches of a round share it but
    /// for a flip between them (10% of rounds); `factor` is the numerator's
    /// true ratio; small noise per size.
    fn rounds(
        rng: &mut Rng,
        n: usize,
        sizes: usize,
        factor: f64,
    ) -> (Vec<Vec<f64>>, Vec<Vec<f64>>) {
        let mut num = Vec::new();
        let mut den = Vec::new();
        for _ in 0..n {
            let state = if rng.uniform() < 0.3 { 1.5 } else { 1.0 };
            let other = if rng.uniform() < 0.1 {
                2.5 - state
            } else {
                state
            };
            let row = |rng: &mut Rng, f: f64, st: f64| -> Vec<f64> {
                (0..sizes)
                    .map(|s| f * st * (1.0 + s as f64) * (1.0 + 0.01 * (rng.uniform() - 0.5)))
                    .collect()
            };
            num.push(row(rng, factor, state));
            den.push(row(rng, 1.0, other));
        }
        (num, den)
    }

    /// (A/A intervals that cover 1, 3% slowdowns seen) of 200 each.
    fn paired_coverage_and_power(location: Location) -> (usize, usize) {
        let mut rng = Rng::new(3);
        let (mut covered, mut detected) = (0, 0);
        for _ in 0..200 {
            let (a, b) = rounds(&mut rng, 20, 8, 1.0);
            let h = paired_ratio(&a, &b, location, 0.95, 400, &mut rng).unwrap();
            if h.low <= 1.0 && 1.0 <= h.high {
                covered += 1;
            }
            let (a, b) = rounds(&mut rng, 20, 8, 1.03);
            let h = paired_ratio(&a, &b, location, 0.95, 400, &mut rng).unwrap();
            if h.low > 1.0 {
                detected += 1;
            }
        }
        (covered, detected)
    }

    #[test]
    fn paired_median_covers_an_a_a_comparison_and_sees_a_small_slowdown() {
        let (covered, detected) = paired_coverage_and_power(Location::Median);
        assert!(covered >= 184, "A/A coverage {covered} of 200");
        assert!(detected >= 190, "a 3% slowdown seen {detected} of 200");
        // The trimmed mean keeps the flipped rounds when there are more than
        // it trims: wider, and less calibrated (hence the median, the default).
        let (t_covered, t_detected) = paired_coverage_and_power(Location::TrimmedMean);
        assert!(t_detected < detected, "{t_detected} vs {detected}");
        assert!(t_covered >= 170, "trimmed mean: A/A coverage {t_covered}");
        // Unpaired, the same launches hide the 3% in the state's variance.
        let mut rng = Rng::new(3);
        let mut seen = 0;
        for _ in 0..100 {
            let (a, b) = rounds(&mut rng, 20, 8, 1.03);
            let h = bootstrap_geomean_ratio(&a, &b, Location::Median, 0.95, 400, &mut rng).unwrap();
            if h.low > 1.0 {
                seen += 1;
            }
        }
        assert!(seen < 50, "unpaired saw it {seen} of 100");
    }

    #[test]
    fn the_median_interval_covers_what_it_says_at_every_round_count() {
        // Exact, so at least 95% at 6 rounds as at 30 (a bootstrap of 6
        // rounds' median covers about 90%).
        for n in [6, 10, 30] {
            let mut rng = Rng::new(n as u64);
            let trials = 400;
            let mut covered = 0;
            for _ in 0..trials {
                let (a, b) = rounds(&mut rng, n, 8, 1.0);
                let h = paired_median_interval(&a, &b, 0.95).unwrap();
                assert_eq!(h.resamples, 0);
                if h.low <= 1.0 && 1.0 <= h.high {
                    covered += 1;
                }
            }
            assert!(covered >= 376, "{n} rounds: {covered} of {trials}");
        }
        let mut rng = Rng::new(1);
        let (a, b) = rounds(&mut rng, 5, 8, 1.0);
        assert!(
            paired_median_interval(&a, &b, 0.95).is_err(),
            "no 95% interval of a median from 5 values"
        );
    }

    #[test]
    fn paired_needs_rounds_of_both() {
        let mut rng = Rng::new(1);
        let two = vec![vec![1.0], vec![1.1]];
        let three = vec![vec![1.0], vec![1.1], vec![1.2]];
        assert_eq!(
            bootstrap_paired_ratio(&two, &three, Location::Median, 0.95, 10, &mut rng),
            Err(RatioError::Shape)
        );
        let h = bootstrap_paired_ratio(&two, &two, Location::Median, 0.95, 10, &mut rng).unwrap();
        assert_eq!((h.ratio, h.low, h.high), (1.0, 1.0, 1.0));
    }

    #[test]
    fn headline_refuses_ragged_or_non_positive_data() {
        let mut rng = Rng::new(1);
        let ok = vec![vec![1.0, 2.0], vec![1.1, 2.1]];
        let ragged = vec![vec![1.0, 2.0], vec![1.1]];
        let m = Location::Median;
        assert_eq!(
            bootstrap_geomean_ratio(&ragged, &ok, m, 0.95, 10, &mut rng),
            Err(RatioError::Shape)
        );
        let zero = vec![vec![1.0, 0.0]];
        assert!(bootstrap_geomean_ratio(&zero, &ok, m, 0.95, 10, &mut rng).is_err());
        let h = bootstrap_geomean_ratio(&ok, &ok, m, 0.95, 10, &mut rng).unwrap();
        assert!((h.ratio - 1.0).abs() < 1e-12);
    }
}
