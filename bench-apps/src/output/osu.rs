//! `--format osu`: the text OSU Micro-Benchmarks 7.2 prints, so that scripts and
//! ReFrame checks written for OSU (`^# OSU MPI Latency Test`, `^(\d+)\s+([\d.]+)$`)
//! parse hybench's output unchanged. Each value is hybench's `osu_value` (and
//! `message_rate` for mbw-mr), the number the CSV and JSON carry, with OSU's
//! rounding (`%.2f`).
//!
//! Everything below follows the OMB 7.2 sources:
//! - `c/util/osu_util.h`: `FIELD_WIDTH` 20, `FLOAT_PRECISION` 2, and the title
//!   line `HEADER` = `"# " BENCHMARK " v" PACKAGE_VERSION "\n"`;
//! - `c/util/osu_util.c`, `print_header()`: point-to-point tests print the title,
//!   then `"%-*s%*s"` with 10 and FIELD_WIDTH: `# Size` and `Latency (us)` or
//!   `Bandwidth (MB/s)`, then `Validation` (`%*s`, FIELD_WIDTH) under `-c`; with
//!   device buffers a `# Send Buffer on DEVICE (D) and Receive Buffer on DEVICE (D)`
//!   line comes before the column names; for osu_mbw_mr it prints the title a
//!   second time and an empty line, then osu_mbw_mr.c adds `# [ pairs: P ]
//!   [ window size: W ]` and `# Size`, `MB/s`, `Messages/s`;
//! - `c/util/osu_util_mpi.c`, `print_preamble()` (an empty line, then the title)
//!   and `print_only_header()` (`# Size` and `Avg Latency(us)`, or
//!   `# Avg Latency(us)` alone when the size is not shown, as for barrier) for the
//!   collectives; `print_stats()` / `print_stats_validate()`: `"%-*d"` (10) and
//!   `"%*.*f"` (FIELD_WIDTH, FLOAT_PRECISION), or `"%*.*f"` with width 17 without
//!   the size, then `"%*s"` `Pass`/`Fail` (`VALIDATION_STATUS`);
//! - `c/mpi/pt2pt/standard/osu_{latency,bw,bibw,multi_lat,mbw_mr}.c` and
//!   `c/mpi/collective/blocking/osu_*.c`: the `BENCHMARK` titles (`MPI%s` filled
//!   with nothing, or `-CUDA` for device buffers), the `# Datatype: NAME.` line
//!   (after the column names for point-to-point tests, before them for
//!   collectives; none for barrier), and the data lines, `"%-*d%*.*f"` (mbw-mr:
//!   a second `"%*.*f"`, the message rate).
//!
//! The datatype line names the type hybench really sends (`comm`): one byte,
//! `MPI_UINT8_T`, or `MPI_FLOAT` for the reductions.

use std::fmt::Write as _;

use hybrun_core::schema::{ResultRow, Unit};

use crate::cli::Benchmark;
use crate::comm::{BYTE_TYPE_NAME, REDUCE_TYPE_NAME};

/// The OMB release whose output this reproduces (`PACKAGE_VERSION`).
pub const OSU_VERSION: &str = "7.2";
/// `FIELD_WIDTH` of osu_util.h.
const FIELD_WIDTH: usize = 20;
/// The size column: `"%-*d", 10` / `"%-*s", 10`.
const SIZE_WIDTH: usize = 10;
/// The value column when the size is not shown (`print_stats`: `"%*.*f", 17`).
const NO_SIZE_WIDTH: usize = 17;

/// How an OSU test lays out its header and lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// osu_latency, osu_bw, osu_bibw, osu_multi_lat: size and one value.
    PointToPoint { column: &'static str, device: bool },
    /// osu_mbw_mr: size, MB/s and messages/s.
    MultiBandwidth,
    /// The size-based collectives: size and the average latency.
    Collective,
    /// osu_barrier: the average latency alone.
    Barrier,
}

/// One OSU test as OMB 7.2 prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Test {
    /// `BENCHMARK` of the OSU program, `%s` filled in.
    title: &'static str,
    layout: Layout,
    datatype: &'static str,
}

const LATENCY: &str = "Latency (us)";
const BANDWIDTH: &str = "Bandwidth (MB/s)";

/// The OSU test a row of `bench` is printed as; `unit` tells gpu-mpi's latency
/// rows from its bandwidth rows. None: no OSU equivalent.
fn test(bench: Benchmark, unit: Unit) -> Option<Test> {
    use Layout::{Barrier, Collective, MultiBandwidth, PointToPoint};
    let host = |column| PointToPoint {
        column,
        device: false,
    };
    let (title, layout) = match bench {
        Benchmark::Latency => ("OSU MPI Latency Test", host(LATENCY)),
        Benchmark::Bw => ("OSU MPI Bandwidth Test", host(BANDWIDTH)),
        Benchmark::Bibw => ("OSU MPI Bi-Directional Bandwidth Test", host(BANDWIDTH)),
        Benchmark::MultiLat => ("OSU MPI Multi Latency Test", host(LATENCY)),
        Benchmark::MbwMr => (
            "OSU MPI Multiple Bandwidth / Message Rate Test",
            MultiBandwidth,
        ),
        Benchmark::Barrier => ("OSU MPI Barrier Latency Test", Barrier),
        Benchmark::Bcast => ("OSU MPI Broadcast Latency Test", Collective),
        Benchmark::Reduce => ("OSU MPI Reduce Latency Test", Collective),
        Benchmark::Allreduce => ("OSU MPI Allreduce Latency Test", Collective),
        Benchmark::Allgather => ("OSU MPI Allgather Latency Test", Collective),
        Benchmark::Alltoall => (
            "OSU MPI All-to-All Personalized Exchange Latency Test",
            Collective,
        ),
        Benchmark::Gather => ("OSU MPI Gather Latency Test", Collective),
        Benchmark::Scatter => ("OSU MPI Scatter Latency Test", Collective),
        // osu_latency / osu_bw -d cuda D D.
        Benchmark::GpuMpi if unit == Unit::Micros => (
            "OSU MPI-CUDA Latency Test",
            PointToPoint {
                column: LATENCY,
                device: true,
            },
        ),
        Benchmark::GpuMpi => (
            "OSU MPI-CUDA Bandwidth Test",
            PointToPoint {
                column: BANDWIDTH,
                device: true,
            },
        ),
        Benchmark::GpuGemm | Benchmark::GpuStream | Benchmark::GpuCopy => return None,
    };
    let datatype = match bench {
        Benchmark::Reduce | Benchmark::Allreduce => REDUCE_TYPE_NAME,
        _ => BYTE_TYPE_NAME,
    };
    Some(Test {
        title,
        layout,
        datatype,
    })
}

/// The OSU text of one run: a block (title and column names) per OSU test,
/// opened by its first row, then one line per size.
#[derive(Debug)]
pub struct OsuText {
    bench: Benchmark,
    /// `-c`: OSU adds a Validation column.
    validate: bool,
    /// The test whose block is open.
    open: Option<Test>,
}

impl OsuText {
    pub fn new(bench: Benchmark, validate: bool) -> OsuText {
        OsuText {
            bench,
            validate,
            open: None,
        }
    }

    /// The text for one row: its block's header first if the row opens one.
    pub fn row(&mut self, row: &ResultRow) -> Result<String, String> {
        let test = test(self.bench, row.unit).ok_or_else(|| {
            format!(
                "{} has no OSU Micro-Benchmarks equivalent: use --format table, csv or json",
                self.bench.name()
            )
        })?;
        let mut text = String::new();
        if self.open != Some(test) {
            self.open = Some(test);
            text.push_str(&self.block_header(test, row));
        }
        text.push_str(&self.line(test, row));
        Ok(text)
    }

    fn validates(&self, test: Test) -> bool {
        self.validate && test.layout != Layout::Barrier
    }

    fn block_header(&self, test: Test, row: &ResultRow) -> String {
        let title = format!("# {} v{OSU_VERSION}\n", test.title);
        let datatype = format!("# Datatype: {}.\n", test.datatype);
        let validation = if self.validates(test) {
            format!("{:>FIELD_WIDTH$}", "Validation")
        } else {
            String::new()
        };
        match test.layout {
            Layout::PointToPoint { column, device } => {
                let buffers = if device {
                    "# Send Buffer on DEVICE (D) and Receive Buffer on DEVICE (D)\n"
                } else {
                    ""
                };
                format!(
                    "{title}{buffers}{:<SIZE_WIDTH$}{column:>FIELD_WIDTH$}{validation}\n{datatype}",
                    "# Size"
                )
            }
            // The title twice and an empty line: print_header() prints the title
            // again for osu_mbw_mr, and no column names.
            Layout::MultiBandwidth => format!(
                "{title}{title}\n# [ pairs: {} ] [ window size: {} ]\n\
                 {:<SIZE_WIDTH$}{:>FIELD_WIDTH$}{:>FIELD_WIDTH$}{validation}\n{datatype}",
                row.pairs, row.window, "# Size", "MB/s", "Messages/s"
            ),
            Layout::Collective => format!(
                "\n{title}{datatype}{:<SIZE_WIDTH$}{:>FIELD_WIDTH$}{validation}\n",
                "# Size", "Avg Latency(us)"
            ),
            Layout::Barrier => format!("\n{title}# Avg Latency(us)\n"),
        }
    }

    fn line(&self, test: Test, row: &ResultRow) -> String {
        let mut line = match test.layout {
            Layout::Barrier => format!("{:>NO_SIZE_WIDTH$.2}", row.osu_value),
            _ => format!(
                "{:<SIZE_WIDTH$}{:>FIELD_WIDTH$.2}",
                row.size_bytes, row.osu_value
            ),
        };
        if test.layout == Layout::MultiBandwidth {
            let _ = write!(
                line,
                "{:>FIELD_WIDTH$.2}",
                row.message_rate.unwrap_or(f64::NAN)
            );
        }
        if self.validates(test) {
            let status = match row.validation.as_str() {
                "pass" => "Pass",
                "fail" => "Fail",
                _ => "-",
            };
            let _ = write!(line, "{status:>FIELD_WIDTH$}");
        }
        line.push('\n');
        line
    }
}

#[cfg(test)]
mod tests {
    //! The expected texts are what the OMB 7.2 print calls cited above give
    //! through C's printf for the same values.

    use hybrun_core::schema::RunMetadata;
    use hybrun_core::stats::Summary;

    use super::*;

    fn row(bench: &str, unit: Unit, size: u64, value: f64) -> ResultRow {
        let summary = Summary::of(&[value]).expect("summary");
        ResultRow::new(
            bench,
            size,
            unit,
            100,
            10,
            64,
            1,
            value,
            &summary,
            None,
            &RunMetadata::default(),
        )
    }

    fn text(bench: Benchmark, validate: bool, rows: &[ResultRow]) -> String {
        let mut osu = OsuText::new(bench, validate);
        rows.iter()
            .map(|r| osu.row(r).expect("OSU equivalent"))
            .collect()
    }

    #[test]
    fn point_to_point_as_osu_latency_prints_it() {
        let rows = [
            row("latency", Unit::Micros, 1, 0.214_999),
            row("latency", Unit::Micros, 4_194_304, 1234.567),
        ];
        assert_eq!(
            text(Benchmark::Latency, false, &rows),
            "# OSU MPI Latency Test v7.2\n\
             # Size            Latency (us)\n\
             # Datatype: MPI_UINT8_T.\n\
             1                         0.21\n\
             4194304                1234.57\n"
        );
        let mut failed = row("bw", Unit::MegabytesPerSec, 8, 12.5);
        failed.validation = "fail".into();
        let mut passed = row("bw", Unit::MegabytesPerSec, 4, 6.0);
        passed.validation = "pass".into();
        assert_eq!(
            text(Benchmark::Bw, true, &[passed, failed]),
            "# OSU MPI Bandwidth Test v7.2\n\
             # Size        Bandwidth (MB/s)          Validation\n\
             # Datatype: MPI_UINT8_T.\n\
             4                         6.00                Pass\n\
             8                        12.50                Fail\n"
        );
    }

    #[test]
    fn mbw_mr_prints_its_title_twice_and_the_message_rate() {
        let mut r = row("mbw-mr", Unit::MegabytesPerSec, 2, 3.0);
        r.message_rate = Some(1_500_000.0);
        assert_eq!(
            text(Benchmark::MbwMr, false, &[r]),
            "# OSU MPI Multiple Bandwidth / Message Rate Test v7.2\n\
             # OSU MPI Multiple Bandwidth / Message Rate Test v7.2\n\
             \n\
             # [ pairs: 1 ] [ window size: 64 ]\n\
             # Size                    MB/s          Messages/s\n\
             # Datatype: MPI_UINT8_T.\n\
             2                         3.00          1500000.00\n"
        );
    }

    #[test]
    fn collectives_and_barrier() {
        assert_eq!(
            text(
                Benchmark::Allreduce,
                false,
                &[row("allreduce", Unit::Micros, 4, 1.005)]
            ),
            "\n# OSU MPI Allreduce Latency Test v7.2\n\
             # Datatype: MPI_FLOAT.\n\
             # Size         Avg Latency(us)\n\
             4                         1.00\n"
        );
        assert_eq!(
            text(
                Benchmark::Barrier,
                true,
                &[row("barrier", Unit::Micros, 0, 3.256)]
            ),
            "\n# OSU MPI Barrier Latency Test v7.2\n\
             # Avg Latency(us)\n\
             \x20            3.26\n"
        );
    }

    #[test]
    fn gpu_mpi_is_two_cuda_blocks_and_other_gpu_benchmarks_have_none() {
        let rows = [
            row("gpu-mpi-latency", Unit::Micros, 1, 2.0),
            row("gpu-mpi-bw", Unit::MegabytesPerSec, 1, 3.0),
        ];
        let out = text(Benchmark::GpuMpi, false, &rows);
        assert!(out.starts_with(
            "# OSU MPI-CUDA Latency Test v7.2\n\
             # Send Buffer on DEVICE (D) and Receive Buffer on DEVICE (D)\n\
             # Size            Latency (us)\n"
        ));
        assert!(
            out.contains("\n# OSU MPI-CUDA Bandwidth Test v7.2\n"),
            "{out}"
        );
        let err = OsuText::new(Benchmark::GpuStream, false)
            .row(&row("gpu-stream-copy", Unit::GigabytesPerSec, 1, 1.0))
            .expect_err("no OSU equivalent");
        assert!(err.contains("gpu-stream has no OSU"), "{err}");
    }
}
