//! `gpu-mpi`: latency and bandwidth between two ranks with GPU buffers, the
//! OSU method (`osu_latency -d cuda D D`, `osu_bw -d cuda D D`) on device
//! pointers handed straight to MPI. That only works with a CUDA-aware MPI, so
//! hybench asks the library first (`MPIX_Query_cuda_support`, which Open MPI
//! and MPICH 4 export; else the variables Cray MPICH and MVAPICH2-GDR use) and
//! refuses, with one line and exit status 3, when the answer is no or unknown.
//!
//! Rows: `gpu-mpi-latency` (us, one way, rank 0 times each round trip and
//! halves it) and `gpu-mpi-bw` (MB/s = 10^6 bytes/s, windows of W = 64
//! non-blocking sends of one device buffer, then a 4-byte host ack), as the
//! MPI benchmarks of hybench (README, "Method and formulas"). After each size
//! an untimed pass sends a pattern from rank 0's GPU and rank 1 checks every
//! byte it received in GPU memory.

use std::ffi::{c_int, c_void};
use std::time::Instant;

use anyhow::Result;
use hybrun_core::schema::Unit;
use mpi::ffi;

use super::driver::DevBuf;
use super::{Ceiling, GpuError, GpuOptions, Measured, Ranks, Setup};
use crate::bench::pattern_byte;
use crate::cli::{Common, LARGE_MESSAGE_SIZE};

pub fn check_ranks(ranks: &Ranks) -> Result<(), GpuError> {
    match ranks.size() {
        2 => Ok(()),
        n => Err(GpuError::Usage(format!(
            "gpu-mpi needs exactly 2 ranks, got {n}; launch it with `-n 2` (one GPU per rank)"
        ))),
    }
}

/// Whether the MPI library can take device pointers, and how we know.
pub fn cuda_awareness() -> (Option<bool>, String) {
    // SAFETY: dlsym on the global scope with a NUL-terminated name.
    let sym = unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"MPIX_Query_cuda_support".as_ptr()) };
    if !sym.is_null() {
        // SAFETY: `int MPIX_Query_cuda_support(void)` in Open MPI's mpi-ext.h
        // and MPICH's mpi.h; callable after MPI_Init, which gpu-mpi has done.
        let f: unsafe extern "C" fn() -> c_int = unsafe { std::mem::transmute(sym) };
        let v = unsafe { f() };
        return (
            Some(v != 0),
            format!("MPIX_Query_cuda_support() returned {v}"),
        );
    }
    let env = |k: &str| std::env::var(k).ok();
    if env("MPICH_GPU_SUPPORT_ENABLED").as_deref() == Some("1") {
        return (
            Some(true),
            "MPICH_GPU_SUPPORT_ENABLED=1 (Cray MPICH)".into(),
        );
    }
    if env("MV2_USE_CUDA").as_deref() == Some("1") {
        return (Some(true), "MV2_USE_CUDA=1 (MVAPICH2-GDR)".into());
    }
    (
        None,
        "the library has no MPIX_Query_cuda_support and no CUDA variable is set".into(),
    )
}

pub fn check_cuda_aware() -> Result<(), GpuError> {
    match cuda_awareness() {
        (Some(true), _) => Ok(()),
        (_, how) => Err(GpuError::Environment(format!(
            "MPI library {} is not CUDA-aware: gpu-mpi needs a CUDA-aware MPI ({how})",
            crate::comm::library_version()
        ))),
    }
}

fn comm() -> ffi::MPI_Comm {
    // SAFETY: reading rsmpi's constant for MPI_COMM_WORLD after MPI_Init.
    unsafe { ffi::RSMPI_COMM_WORLD }
}

fn count(n: usize) -> Result<c_int> {
    c_int::try_from(n).map_err(|_| anyhow::anyhow!("message of {n} bytes is too large for MPI"))
}

// SAFETY (for the four helpers below): `ptr` is a device (or host) address
// valid for `n` bytes for the whole call; a CUDA-aware MPI accepts device
// addresses (checked before any of this runs); blocking calls complete
// before they return.
unsafe fn send(ptr: u64, n: usize, peer: i32) -> Result<()> {
    unsafe {
        ffi::MPI_Send(
            ptr as *const c_void,
            count(n)?,
            ffi::RSMPI_UINT8_T,
            peer,
            1,
            comm(),
        )
    };
    Ok(())
}
unsafe fn recv(ptr: u64, n: usize, peer: i32) -> Result<()> {
    unsafe {
        ffi::MPI_Recv(
            ptr as *mut c_void,
            count(n)?,
            ffi::RSMPI_UINT8_T,
            peer,
            1,
            comm(),
            ffi::RSMPI_STATUS_IGNORE,
        )
    };
    Ok(())
}
/// Post `reqs.len()` sends (or receives) of one buffer and wait for all.
unsafe fn window(
    ptr: u64,
    n: usize,
    peer: i32,
    reqs: &mut [ffi::MPI_Request],
    sending: bool,
) -> Result<()> {
    let c = count(n)?;
    for r in reqs.iter_mut() {
        unsafe {
            if sending {
                ffi::MPI_Isend(
                    ptr as *const c_void,
                    c,
                    ffi::RSMPI_UINT8_T,
                    peer,
                    100,
                    comm(),
                    r,
                );
            } else {
                ffi::MPI_Irecv(
                    ptr as *mut c_void,
                    c,
                    ffi::RSMPI_UINT8_T,
                    peer,
                    100,
                    comm(),
                    r,
                );
            }
        }
    }
    unsafe {
        ffi::MPI_Waitall(
            reqs.len() as c_int,
            reqs.as_mut_ptr(),
            ffi::RSMPI_STATUSES_IGNORE,
        )
    };
    Ok(())
}

fn wtime() -> f64 {
    crate::comm::wtime()
}

pub fn run(
    setup: &Setup,
    ranks: &Ranks,
    c: &Common,
    opts: &GpuOptions,
) -> Result<(Vec<Measured>, Vec<String>), GpuError> {
    let Ranks::Mpi(world) = ranks else {
        return Err(GpuError::Usage(
            "gpu-mpi needs MPI (launch it with mpiexec or srun)".into(),
        ));
    };
    let me = world.rank;
    let peer = 1 - me;
    let w = c.window.unwrap_or(64).clamp(1, 4096) as usize;
    let max = opts.sizes.iter().copied().max().unwrap_or(1) as usize;
    let sbuf = DevBuf::new(max)?;
    let rbuf = DevBuf::new(max)?;
    // Random-looking, non-zero contents; not part of the measurement.
    let fill: Vec<u8> = (0..max).map(|j| pattern_byte(max as u64, 7, j)).collect();
    sbuf.upload(0, &fill)?;
    rbuf.upload(0, &fill)?;
    setup.cuda.synchronize()?;
    let ack = [0u8; 4];
    let ack_ptr = ack.as_ptr() as u64;
    let mut reqs = vec![unsafe { ffi::RSMPI_REQUEST_NULL }; w];
    let mut rows = Vec::new();
    for bench in ["latency", "bw"] {
        for &size in &opts.sizes {
            let n = size as usize;
            let (iters, warm) = if size > LARGE_MESSAGE_SIZE {
                (
                    c.iterations_large.unwrap_or((opts.iterations / 10).max(1)),
                    c.warmup_large.unwrap_or(opts.warmup / 10),
                )
            } else {
                (opts.iterations, opts.warmup)
            };
            world.barrier();
            let start = Instant::now();
            let mut samples = Vec::with_capacity(iters as usize);
            let mut total = 0.0;
            for i in 0..(warm + iters) {
                let t0 = wtime();
                // SAFETY: device buffers of `max` >= n bytes; CUDA-aware MPI.
                unsafe {
                    match (bench, me) {
                        ("latency", 0) => {
                            send(sbuf.ptr, n, peer)?;
                            recv(rbuf.ptr, n, peer)?;
                        }
                        ("latency", _) => {
                            recv(rbuf.ptr, n, peer)?;
                            send(sbuf.ptr, n, peer)?;
                        }
                        (_, 0) => {
                            window(sbuf.ptr, n, peer, &mut reqs, true)?;
                            recv(ack_ptr, 4, peer)?;
                        }
                        _ => {
                            window(rbuf.ptr, n, peer, &mut reqs, false)?;
                            send(ack_ptr, 4, peer)?;
                        }
                    }
                }
                let dt = wtime() - t0;
                if i >= warm {
                    total += dt;
                    samples.push(match bench {
                        "latency" => dt * 1e6 / 2.0,
                        _ => n as f64 * w as f64 / 1e6 / dt,
                    });
                }
            }
            let end = Instant::now();
            let osu = match bench {
                "latency" => total * 1e6 / (2.0 * iters as f64),
                _ => n as f64 / 1e6 * iters as f64 * w as f64 / total,
            };
            // Validation: rank 0 sends a size-dependent pattern from its GPU.
            let pattern: Vec<u8> = (0..n).map(|j| pattern_byte(size, 0, j)).collect();
            let valid = if me == 0 {
                sbuf.upload(0, &pattern)?;
                // SAFETY: as above.
                unsafe { send(sbuf.ptr, n, peer)? };
                sbuf.upload(0, &fill[..n])?;
                true
            } else {
                rbuf.upload(0, &vec![0u8; n])?;
                // SAFETY: as above.
                unsafe { recv(rbuf.ptr, n, peer)? };
                let mut got = vec![0u8; n];
                rbuf.download(0, &mut got)?;
                if opts.corrupt && n > 0 {
                    got[0] ^= 1;
                }
                match got.iter().zip(&pattern).position(|(a, b)| a != b) {
                    None => true,
                    Some(j) => {
                        eprintln!(
                            "hybench: gpu-mpi {bench} size {size}: byte {j} is {:#04x}, expected {:#04x} (rank 1)",
                            got[j], pattern[j]
                        );
                        false
                    }
                }
            };
            rows.push(Measured {
                benchmark: format!("gpu-mpi-{bench}"),
                size_bytes: size,
                matrix_n: None,
                unit: if bench == "latency" {
                    Unit::Micros
                } else {
                    Unit::MegabytesPerSec
                },
                iterations: iters,
                warmup: warm,
                window: if bench == "bw" { w as u32 } else { 1 },
                pairs: 1,
                rank0_only: true,
                samples,
                osu_value: Some(osu),
                valid: Some(valid),
                start,
                end,
                peak: None,
                ceiling: Ceiling::None,
            });
        }
    }
    Ok((rows, Vec::new()))
}
