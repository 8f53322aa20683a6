//! hybench's GPU subcommands on a machine without a GPU (CI, the development
//! machines): one clear line, a non-zero exit (3), no panic, on every
//! subcommand, run directly and under mpiexec; bad GPU options are usage
//! errors (2) even there; and the MPI benchmarks still run and write empty
//! GPU columns. The GPU measurements themselves are checked by
//! `scripts/gpu-check` on a machine with an NVIDIA GPU.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use hybrun_e2e::{Mpi, describe, on_path, parse_rows, require, run_with_timeout};

const LIMIT: Duration = Duration::from_secs(60);
const NO_DRIVER: &str = "hybench: error: no NVIDIA driver found: libcuda.so.1 could not be loaded";
const SUBCOMMANDS: [&str; 4] = ["gpu-gemm", "gpu-stream", "gpu-copy", "gpu-mpi"];
/// Exit status of a missing GPU environment (bench-apps/README.md).
const EXIT_GPU_ENV: i32 = 3;

/// Whether this machine has the NVIDIA driver library (then the no-GPU
/// behaviour cannot be observed here).
fn libcuda_present() -> bool {
    let cache = Command::new("ldconfig")
        .arg("-p")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("libcuda.so.1 "))
        .unwrap_or(false);
    let mut dirs: Vec<PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|p| std::env::split_paths(&p).collect())
        .unwrap_or_default();
    dirs.extend(
        [
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib64",
            "/usr/local/nvidia/lib64",
        ]
        .map(PathBuf::from),
    );
    cache || dirs.iter().any(|d| d.join("libcuda.so.1").exists())
}

/// hybench of this flavour, on a machine without the driver; None after a
/// loud skip otherwise.
fn gpu_less_hybench(mpi: Mpi) -> Option<PathBuf> {
    let hybench = mpi.require_hybench()?;
    if libcuda_present() {
        eprintln!(
            "SKIPPED: libcuda.so.1 is present on this machine; the no-GPU behaviour is tested where there is none"
        );
        return None;
    }
    Some(hybench)
}

fn launcher(mpi: Mpi) -> Option<&'static str> {
    let prog = match mpi {
        Mpi::Mpich => "mpiexec.mpich",
        Mpi::OpenMpi => "mpiexec.openmpi",
    };
    require(prog, on_path(prog), "run scripts/setup").then_some(prog)
}

/// Run and expect exactly one error line, `needle`, and exit status `code`.
fn expect_one_line(cmd: &mut Command, code: i32, needle: &str) {
    let out = run_with_timeout(cmd, LIMIT);
    let what = describe(cmd, &out);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "exit status: {what}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("RUST_BACKTRACE"),
        "no panic: {what}"
    );
    let ours: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("hybench: error:"))
        .collect();
    assert_eq!(ours.len(), 1, "exactly one error line: {what}");
    assert!(ours[0].contains(needle), "the line says `{needle}`: {what}");
    assert!(out.stdout.is_empty(), "nothing measured or printed: {what}");
}

#[test]
fn every_gpu_subcommand_says_no_driver_when_run_directly() {
    for mpi in [Mpi::Mpich, Mpi::OpenMpi] {
        let Some(hybench) = gpu_less_hybench(mpi) else {
            continue;
        };
        for sub in SUBCOMMANDS {
            // Run directly, no launcher: no MPI runtime is needed at all.
            let mut cmd = Command::new(&hybench);
            cmd.arg(sub);
            let out = run_with_timeout(&cmd, LIMIT);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(
                stderr.trim_end(),
                NO_DRIVER,
                "the one line, exactly: {}",
                describe(&cmd, &out)
            );
            assert_eq!(
                out.status.code(),
                Some(EXIT_GPU_ENV),
                "{}",
                describe(&cmd, &out)
            );
        }
    }
}

#[test]
fn every_gpu_subcommand_says_no_driver_under_mpiexec() {
    for mpi in [Mpi::Mpich, Mpi::OpenMpi] {
        let Some(hybench) = gpu_less_hybench(mpi) else {
            continue;
        };
        if launcher(mpi).is_none() {
            continue;
        }
        for sub in SUBCOMMANDS {
            // A singleton, and two ranks (gpu-mpi's count): rank 0 speaks for both.
            for ranks in [1, 2] {
                let mut cmd = mpi.mpiexec(ranks);
                cmd.arg(&hybench).arg(sub);
                expect_one_line(&mut cmd, EXIT_GPU_ENV, NO_DRIVER);
            }
        }
    }
}

#[test]
fn bad_gpu_options_are_usage_errors_even_without_a_gpu() {
    let Some(hybench) = Mpi::Mpich.require_hybench() else {
        return;
    };
    let cases: [(&[&str], &str); 5] = [
        (&["gpu-gemm", "--dtype", "int8"], "unknown type `int8`"),
        (&["gpu-gemm", "--size", "8"], "--size 8 is out of range"),
        (&["gpu-stream", "-m", "1000"], "multiples of 16 bytes"),
        (
            &["gpu-copy", "--dtype", "bf16"],
            "--dtype does not apply to gpu-copy",
        ),
        (
            &["gpu-stream", "-o", "/nonexistent-dir/x.csv"],
            "cannot write the output file",
        ),
    ];
    for (args, needle) in cases {
        let mut cmd = Command::new(&hybench);
        cmd.args(args);
        expect_one_line(&mut cmd, 2, needle);
    }
    // GPU options on an MPI benchmark are refused, with MPI running.
    if launcher(Mpi::Mpich).is_some() {
        let mut cmd = Mpi::Mpich.mpiexec(2);
        cmd.arg(&hybench).args(["latency", "--dtype", "bf16"]);
        expect_one_line(&mut cmd, 2, "--dtype applies to the GPU benchmarks");
    }
}

#[test]
fn cpu_benchmarks_still_run_with_empty_gpu_columns() {
    for mpi in [Mpi::Mpich, Mpi::OpenMpi] {
        let Some(hybench) = mpi.require_hybench() else {
            continue;
        };
        if launcher(mpi).is_none() {
            continue;
        }
        let mut cmd = mpi.mpiexec(2);
        cmd.arg(&hybench).args([
            "latency", "-m", "4:16", "-i", "50", "-x", "5", "--format", "csv",
        ]);
        let out = run_with_timeout(&cmd, LIMIT);
        assert!(out.status.success(), "{}", describe(&cmd, &out));
        let rows = parse_rows(&String::from_utf8_lossy(&out.stdout));
        assert_eq!(rows.len(), 3, "{}", describe(&cmd, &out));
        for r in &rows {
            assert_eq!(r.benchmark, "latency");
            assert!(r.median > 0.0);
            assert!(
                r.matrix_n.is_none()
                    && r.gpu_name.is_empty()
                    && r.peak.is_none()
                    && r.ceiling.is_none()
                    && r.telemetry_samples == 0
                    && r.throttle_reasons.is_empty(),
                "GPU columns stay empty for MPI benchmarks: {r:?}"
            );
        }
    }
}

#[test]
fn gpu_check_script_is_present_and_documents_itself() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/gpu-check");
    let out = Command::new("bash")
        .arg(&script)
        .arg("--help")
        .output()
        .expect("run scripts/gpu-check --help");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("prepare") && text.contains("run"), "{text}");
}
