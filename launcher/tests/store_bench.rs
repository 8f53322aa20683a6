//! The input of `scripts/bench-image-cp`, written with hybrun's own SIF writer.
//! Ignored in normal test runs: the script runs it with the paths it wants.

use hybrun_sif::{Arch, SifBuilder};

/// Wraps `$HYBRUN_BENCH_PARTITION` (any file) as the primary system partition of
/// a new SIF at `$HYBRUN_BENCH_SIF`.
#[test]
#[ignore = "writes the benchmark input of scripts/bench-image-cp"]
fn write_bench_sif() {
    let (Some(partition), Some(sif)) = (
        std::env::var_os("HYBRUN_BENCH_PARTITION"),
        std::env::var_os("HYBRUN_BENCH_SIF"),
    ) else {
        panic!("set HYBRUN_BENCH_PARTITION and HYBRUN_BENCH_SIF (scripts/bench-image-cp does)");
    };
    SifBuilder::new(Arch::Amd64)
        .add_primary_squashfs(partition)
        .write_to(&sif)
        .expect("write the benchmark SIF");
}
