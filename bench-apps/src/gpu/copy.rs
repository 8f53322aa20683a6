//! `gpu-copy`: host<->device and device<->device copies, cudaMemcpy style:
//! the driver's synchronous cuMemcpyHtoD / cuMemcpyDtoH / cuMemcpyDtoD on the
//! legacy default stream, each bracketed by CUDA events on that stream (warm-up
//! first, median of the runs).
//!
//! Rows: `gpu-copy-h2d-pinned`, `-d2h-pinned` (page-locked host memory from
//! cuMemHostAlloc), `-h2d-pageable`, `-d2h-pageable` (ordinary, already
//! touched host memory: the driver stages it), `-d2d`. GB/s = 10^9 bytes/s;
//! host<->device rows count the bytes once (one direction of the link), d2d
//! counts them twice (read and write of device memory, as STREAM and the
//! CUDA samples' bandwidthTest do) and is compared with the memory peak.
//! Pageable rows are compared with the pinned row of the same direction and
//! size measured in the same run (their ceiling).
//!
//! Buffers are allocated once for the largest size; sources hold random bytes,
//! destinations are poisoned before each size and compared in full afterwards.

use std::time::Instant;

use anyhow::Result;
use hybrun_core::schema::Unit;

use super::driver::{DevBuf, PinnedBuf, sync_copy};
use super::peaks::pcie_gbs;
use super::{Ceiling, GpuError, GpuOptions, Measured, Rng, Setup};

hybrun_core::named_enum! {
    /// A copy's direction and kind of host memory.
    enum Dir ("copy direction") {
        H2dPinned = "h2d-pinned",
        D2hPinned = "d2h-pinned",
        H2dPageable = "h2d-pageable",
        D2hPageable = "d2h-pageable",
        D2d = "d2d",
    }
}

impl Dir {
    fn ceiling(self) -> Ceiling {
        match self {
            Dir::H2dPageable => Ceiling::SameSize("gpu-copy-h2d-pinned".into()),
            Dir::D2hPageable => Ceiling::SameSize("gpu-copy-d2h-pinned".into()),
            _ => Ceiling::None,
        }
    }
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    let mut v = Vec::with_capacity(len + 8);
    while v.len() < len {
        v.extend_from_slice(&rng.next_u64().to_le_bytes());
    }
    v.truncate(len);
    v
}

/// Index of the first differing byte.
fn first_diff(a: &[u8], b: &[u8]) -> Option<usize> {
    if a.len() != b.len() {
        return Some(a.len().min(b.len()));
    }
    a.iter().zip(b).position(|(x, y)| x != y)
}

pub fn run(setup: &Setup, opts: &GpuOptions) -> Result<(Vec<Measured>, Vec<String>), GpuError> {
    let cuda = &setup.cuda;
    let max = opts.sizes.iter().copied().max().unwrap_or(0) as usize;
    cuda.ensure_free(2 * max + (64 << 20), "gpu-copy")?;
    let random = random_bytes(max, 0xc0b1);
    let mut pinned_src = PinnedBuf::new(max)?;
    pinned_src.as_mut_slice().copy_from_slice(&random);
    let mut pinned_dst = PinnedBuf::new(max)?;
    let page_src = random.clone();
    let mut page_dst = vec![0x5au8; max];
    let dev_src = DevBuf::new(max)?;
    dev_src.upload(0, &random)?;
    let dev_dst = DevBuf::new(max)?;
    let null = std::ptr::null_mut();

    let pcie = setup
        .nvml
        .as_ref()
        .ok()
        .and_then(|i| i.pcie)
        .and_then(|(g, w)| pcie_gbs(g, w).map(|v| (g, w, v)));
    let mut rows = Vec::new();
    for &dir in Dir::ALL {
        for &size in &opts.sizes {
            let n = size as usize;
            dev_dst.fill_byte(0xa5, null)?;
            pinned_dst.as_mut_slice()[..n].fill(0xa5);
            page_dst[..n].fill(0xa5);
            cuda.synchronize()?;
            let start = Instant::now();
            let ms = match dir {
                Dir::H2dPinned => cuda.time_each(null, opts.warmup, opts.iterations, || {
                    sync_copy::htod(&dev_dst, &pinned_src.as_slice()[..n])
                })?,
                Dir::D2hPinned => cuda.time_each(null, opts.warmup, opts.iterations, || {
                    sync_copy::dtoh(&mut pinned_dst.as_mut_slice()[..n], &dev_src)
                })?,
                Dir::H2dPageable => cuda.time_each(null, opts.warmup, opts.iterations, || {
                    sync_copy::htod(&dev_dst, &page_src[..n])
                })?,
                Dir::D2hPageable => cuda.time_each(null, opts.warmup, opts.iterations, || {
                    sync_copy::dtoh(&mut page_dst[..n], &dev_src)
                })?,
                Dir::D2d => cuda.time_each(null, opts.warmup, opts.iterations, || {
                    sync_copy::dtod(&dev_dst, &dev_src, n)
                })?,
            };
            let end = Instant::now();
            cuda.synchronize()?;
            // Validate the destination in full.
            let got: Vec<u8> = match dir {
                Dir::D2hPinned => pinned_dst.as_slice()[..n].to_vec(),
                Dir::D2hPageable => page_dst[..n].to_vec(),
                _ => {
                    let mut v = vec![0u8; n];
                    dev_dst.download(0, &mut v)?;
                    v
                }
            };
            let mut got = got;
            if opts.corrupt && dir == Dir::D2d {
                // Testing aid (--debug-corrupt): one wrong byte must fail.
                got[n / 2] ^= 1;
            }
            let valid = match first_diff(&got, &random[..n]) {
                None => true,
                Some(i) => {
                    eprintln!(
                        "hybench: gpu-copy {} {n} B: byte {i} is {:#04x}, expected {:#04x}",
                        dir.name(),
                        got[i],
                        random[i]
                    );
                    false
                }
            };
            let moved = if dir == Dir::D2d { 2.0 } else { 1.0 } * n as f64;
            let peak = match dir {
                Dir::D2d => setup.peaks.map(|p| p.memory()),
                _ => pcie.map(|(g, w, v)| {
                    (
                        v,
                        format!(
                            "PCIe gen{g} x{w} link {v:.1} GB/s per direction (PCIe base spec; NVML max link)"
                        ),
                    )
                }),
            };
            rows.push(Measured {
                benchmark: format!("gpu-copy-{}", dir.name()),
                size_bytes: size,
                matrix_n: None,
                unit: Unit::GigabytesPerSec,
                iterations: opts.iterations,
                warmup: opts.warmup,
                window: 1,
                pairs: 0,
                rank0_only: false,
                samples: ms.iter().map(|t| moved / (t * 1e-3) / 1e9).collect(),
                osu_value: None,
                valid: Some(valid),
                start,
                end,
                peak,
                ceiling: dir.ceiling(),
            });
        }
    }
    Ok((rows, Vec::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers() {
        let r = random_bytes(1001, 7);
        assert_eq!(r.len(), 1001);
        assert!(
            r.iter().filter(|b| **b == 0).count() < 20,
            "random, not zeros"
        );
        assert_eq!(first_diff(&r, &r), None);
        let mut s = r.clone();
        s[500] ^= 1;
        assert_eq!(first_diff(&r, &s), Some(500));
        assert_eq!(
            Dir::D2hPageable.ceiling(),
            Ceiling::SameSize("gpu-copy-d2h-pinned".into())
        );
    }
}
