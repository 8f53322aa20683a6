//! hybench's own table (`--format table`): context lines, then one line per size
//! with the OSU value and the statistics of every iteration; GPU runs have their
//! own columns. Numbers keep two decimals as OSU does, three below 10.

use std::fmt::Write as _;

use hybrun_core::schema::{ResultRow, RunMetadata};

use crate::cli::Plan;

/// The `#` lines above an MPI benchmark's table, column names included.
pub fn header(plan: &Plan, meta: &RunMetadata, clock: &str) -> String {
    let mut w = String::new();
    let _ = writeln!(
        w,
        "# hybench {} ({} method) v{}",
        plan.bench.name(),
        plan.bench.osu_name().unwrap_or("no OSU equivalent"),
        meta.hybench_version
    );
    let _ = writeln!(
        w,
        "# MPI: {} [{}]",
        meta.mpi_version,
        meta.mpi_flavour.map_or("unknown", |f| f.name())
    );
    let _ = writeln!(
        w,
        "# libmpi: {} (inode {}, dev {})",
        meta.mpi_library, meta.mpi_library_inode, meta.mpi_library_dev
    );
    let _ = writeln!(
        w,
        "# ranks: {} on {} node(s) ({} per node); container: {}; per-iteration clock: {}",
        meta.comm_size,
        meta.nodes,
        meta.ranks_per_node,
        meta.container.map_or("unknown", |c| c.name()),
        clock
    );
    if plan.bench.is_bandwidth() {
        let _ = writeln!(
            w,
            "# window: {}{}",
            plan.window,
            if plan.pairs > 1 {
                format!("; pairs: {}", plan.pairs)
            } else {
                String::new()
            }
        );
    }
    let osu_col = if plan.bench.is_bandwidth() {
        "OSU MB/s"
    } else {
        "OSU lat(us)"
    };
    let _ = writeln!(
        w,
        "{:<10} {:>12} {:>11} {:>11} {:>11} {:>11} {:>11} {:>23} {:>8}{}",
        "# Size",
        osu_col,
        "median",
        "min",
        "p90",
        "p99",
        "max",
        "95% CI of median",
        "n",
        if plan.bench.is_collective() {
            "   min/max over ranks"
        } else {
            ""
        }
    );
    w
}

/// One size of an MPI benchmark.
pub fn line(row: &ResultRow) -> String {
    let ci = match (row.ci95_low, row.ci95_high) {
        (Some(l), Some(h)) => format!("[{}, {}]", num(l), num(h)),
        _ => "-".into(),
    };
    let extra = match (row.rank_min, row.rank_max) {
        (Some(a), Some(b)) => format!("   {} / {}", num(a), num(b)),
        _ => String::new(),
    };
    let rate = row
        .message_rate
        .map(|r| format!("   {r:.0} msg/s"))
        .unwrap_or_default();
    let valid = if row.validation.is_empty() {
        String::new()
    } else {
        format!("   {}", row.validation)
    };
    format!(
        "{:<10} {:>12} {:>11} {:>11} {:>11} {:>11} {:>11} {:>23} {:>8}{extra}{rate}{valid}",
        row.size_bytes,
        num(row.osu_value),
        num(row.median),
        num(row.min),
        num(row.p90),
        num(row.p99),
        num(row.max),
        ci,
        row.n_samples
    )
}

/// Columns of the GPU table: value statistics in the row's unit, percent of
/// the device's vendor peak and of the ceiling measured in the same run, and
/// the median clocks, peak power and temperature NVML saw during the row.
pub const GPU_HEADER: &str = "# benchmark             size       unit       median        min        max      n  %peak  %ceil  SM MHz  mem MHz  W max  C max  throttle          valid";

pub fn gpu_line(row: &ResultRow) -> String {
    let size = match row.matrix_n {
        Some(n) => format!("N={n}"),
        None => human_bytes(row.size_bytes),
    };
    let opt = |v: Option<f64>, digits: usize| match v {
        Some(x) => format!("{x:.digits$}"),
        None => "-".into(),
    };
    format!(
        "{:<23} {:>10} {:<8} {:>10} {:>10} {:>10} {:>6} {:>6} {:>6} {:>7} {:>8} {:>6} {:>6}  {:<17} {}",
        row.benchmark,
        size,
        row.unit.name(),
        num(row.median),
        num(row.min),
        num(row.max),
        row.n_samples,
        opt(row.peak_pct, 1),
        opt(row.ceiling_pct, 1),
        opt(row.sm_clock_mhz_median, 0),
        opt(row.mem_clock_mhz_median, 0),
        opt(row.power_w_max, 0),
        opt(row.temp_c_max, 0),
        if row.throttle_reasons.is_empty() {
            "-"
        } else {
            &row.throttle_reasons
        },
        if row.validation.is_empty() {
            "-"
        } else {
            &row.validation
        }
    )
}

/// Two decimals like OSU, more for sub-unit values so 0.19 us stays readable.
fn num(v: f64) -> String {
    if v.abs() < 10.0 {
        format!("{v:.3}")
    } else {
        format!("{v:.2}")
    }
}

/// Bytes as `1 GiB`, `256 MiB`, `4 KiB`, `17 B`.
fn human_bytes(b: u64) -> String {
    for (shift, unit) in [(30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if b >= 1 << shift && b % (1 << shift) == 0 {
            return format!("{} {unit}", b >> shift);
        }
    }
    format!("{b} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes() {
        assert_eq!(human_bytes(1 << 30), "1 GiB");
        assert_eq!(human_bytes(3 << 20), "3 MiB");
        assert_eq!(human_bytes(1000), "1000 B");
    }
}
