//! `gpu-stream`: the STREAM kernels on device memory, compiled at run time
//! with NVRTC for the device's own architecture.
//!
//! Arrays a, b, c of fp64, `size` bytes each (default 1 GiB: far beyond any
//! L2). Kernels, as STREAM (q = 3):
//!   copy  c = a          scale b = q c          add c = a + b      triad a = b + q c
//! Bytes moved per run (STREAM convention, 10^9 bytes/s):
//!   copy, scale: 2 x size (one array read, one written); add, triad: 3 x size.
//! `gpu-stream-memcpy` is cuMemcpyDtoDAsync of one array, counted like copy
//! (read + write): the ceiling the kernels are compared with in the same run.
//!
//! Each kernel is timed separately (warm-up, then CUDA events around every
//! launch, median) so it is idempotent under repetition; its output array is
//! poisoned (NaN) before the first launch and every element is checked
//! against the value computed on the CPU from the random initial `a` (exact
//! for copy, scale, add; within 4 ulp for triad, which the compiler may fuse
//! into one FMA).
//!
//! Access: one 16-byte `double2` per thread, consecutive threads on
//! consecutive addresses (coalesced), 256 threads per block, one block per
//! 4 KiB; no grid-stride loop, so each thread issues its loads at once.

use std::ffi::c_void;
use std::time::Instant;

use anyhow::Result;
use hybrun_core::schema::Unit;

use cudarc::driver::sys::CUfunction;

use super::driver::{self, DevBuf, Module, sync_copy};
use super::libs::Nvrtc;
use super::{Ceiling, GpuError, GpuOptions, Measured, Rng, Setup};

const SRC: &str = r#"
typedef unsigned long long u64;
extern "C" __global__ void stream_copy(const double2* __restrict__ a, double2* __restrict__ c, u64 n) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) c[i] = a[i];
}
extern "C" __global__ void stream_scale(double2* __restrict__ b, const double2* __restrict__ c, double q, u64 n) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { double2 v = c[i]; b[i] = make_double2(q * v.x, q * v.y); }
}
extern "C" __global__ void stream_add(const double2* __restrict__ a, const double2* __restrict__ b, double2* __restrict__ c, u64 n) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { double2 x = a[i], y = b[i]; c[i] = make_double2(x.x + y.x, x.y + y.y); }
}
extern "C" __global__ void stream_triad(double2* __restrict__ a, const double2* __restrict__ b, const double2* __restrict__ c, double q, u64 n) {
    u64 i = (u64)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) { double2 y = b[i], z = c[i]; a[i] = make_double2(y.x + q * z.x, y.y + q * z.y); }
}
"#;

const Q: f64 = 3.0;
const BLOCK: u32 = 256;

/// Check every element of `buf` against `expect(i)`; `exact` demands equal
/// bits, otherwise 4 ulp. Reads back in 64 MiB pieces.
fn check(
    buf: &DevBuf,
    what: &str,
    exact: bool,
    corrupt: bool,
    expect: impl Fn(usize) -> f64,
) -> Result<bool> {
    const PIECE: usize = 64 << 20;
    let mut host = vec![0u8; PIECE.min(buf.bytes)];
    let mut off = 0;
    while off < buf.bytes {
        let len = PIECE.min(buf.bytes - off);
        buf.download(off, &mut host[..len])?;
        if corrupt && off == 0 {
            // Testing aid (--debug-corrupt): one wrong element must fail.
            host[0] ^= 0x40;
        }
        for (k, cell) in host[..len].chunks_exact(8).enumerate() {
            let i = off / 8 + k;
            let g = f64::from_le_bytes(cell.try_into().unwrap_or([0; 8]));
            let e = expect(i);
            let bad = if exact {
                g.to_bits() != e.to_bits()
            } else {
                !g.is_finite() || (g - e).abs() > 4.0 * f64::EPSILON * e.abs()
            };
            if bad {
                eprintln!("hybench: gpu-stream {what}: element {i} is {g}, expected {e}");
                return Ok(false);
            }
        }
        off += len;
    }
    Ok(true)
}

/// The four STREAM kernels, compiled once for this device.
struct Kernels {
    copy: CUfunction,
    scale: CUfunction,
    add: CUfunction,
    triad: CUfunction,
    /// Holds the kernels' code on the device while they are used.
    _module: Module,
}

pub fn run(setup: &Setup, opts: &GpuOptions) -> Result<(Vec<Measured>, Vec<String>), GpuError> {
    let cuda = &setup.cuda;
    let nvrtc = Nvrtc::open()?;
    let cc = cuda.info.cc_major * 10 + cuda.info.cc_minor;
    let image = nvrtc.compile(SRC, "hybench_stream.cu", cc)?;
    let module = Module::load(&image.bytes)?;
    let kernels = Kernels {
        copy: module.function("stream_copy")?,
        scale: module.function("stream_scale")?,
        add: module.function("stream_add")?,
        triad: module.function("stream_triad")?,
        _module: module,
    };
    let libs = vec![format!(
        "NVRTC {} ({}), kernels built as {} for sm_{cc}",
        nvrtc.version, nvrtc.path, image.kind
    )];
    let mut rows = Vec::new();
    for &size in &opts.sizes {
        rows.extend(one_size(setup, opts, &kernels, size)?);
    }
    if rows.is_empty() {
        return Err(GpuError::Failed(anyhow::anyhow!("gpu-stream: no sizes")));
    }
    Ok((rows, libs))
}

/// How the rows of one array size are timed.
struct Timer<'a> {
    setup: &'a Setup,
    opts: &'a GpuOptions,
    size: u64,
    /// The device's memory bandwidth and where it comes from.
    peak: Option<(f64, String)>,
}

impl Timer<'_> {
    /// Time `op` (warm-up, then CUDA events around each launch) as
    /// `gpu-stream-NAME`, `moved` bytes per launch.
    fn measure(
        &self,
        name: &str,
        moved: f64,
        ceiling: Ceiling,
        op: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Measured> {
        let (cuda, opts) = (&self.setup.cuda, self.opts);
        let start = Instant::now();
        let ms = cuda.time_each(cuda.stream, opts.warmup, opts.iterations, op)?;
        let end = Instant::now();
        Ok(Measured {
            benchmark: format!("gpu-stream-{name}"),
            size_bytes: self.size,
            matrix_n: None,
            unit: Unit::GigabytesPerSec,
            iterations: opts.iterations,
            warmup: opts.warmup,
            window: 1,
            pairs: 0,
            rank0_only: false,
            samples: ms.iter().map(|t| moved / (t * 1e-3) / 1e9).collect(),
            osu_value: None,
            valid: None,
            start,
            end,
            peak: self.peak.clone(),
            ceiling,
        })
    }
}

/// Arrays of `size` bytes: the memcpy ceiling, then copy, scale, add and triad,
/// each output poisoned first and checked after.
fn one_size(
    setup: &Setup,
    opts: &GpuOptions,
    k: &Kernels,
    size: u64,
) -> Result<Vec<Measured>, GpuError> {
    let cuda = &setup.cuda;
    let stream = cuda.stream;
    let mut rows = Vec::new();
    let bytes = size as usize;
    cuda.ensure_free(3 * bytes + (64 << 20), "gpu-stream")?;
    let (a, b, c) = (
        DevBuf::new(bytes)?,
        DevBuf::new(bytes)?,
        DevBuf::new(bytes)?,
    );
    let n = bytes / 8;
    let mut rng = Rng::new(size);
    let a0: Vec<f64> = (0..n).map(|_| rng.uniform(1.0, 2.0)).collect();
    let a0_bytes: Vec<u8> = a0.iter().flat_map(|v| v.to_le_bytes()).collect();
    a.upload(0, &a0_bytes)?;
    drop(a0_bytes);
    let n2 = (bytes / 16) as u64;
    let grid = u32::try_from(n2.div_ceil(BLOCK as u64))
        .map_err(|_| anyhow::anyhow!("gpu-stream: {size} bytes need too many blocks"))?;
    let timer = Timer {
        setup,
        opts,
        size,
        peak: setup.peaks.map(|p| p.memory()),
    };
    let two = 2.0 * bytes as f64;
    let three = 3.0 * bytes as f64;
    let kernel = |f, args: &mut [*mut c_void]| driver::launch(f, grid, BLOCK, stream, args);
    let (mut pa, mut pb, mut pc, mut q, mut nn) = (a.ptr, b.ptr, c.ptr, Q, n2);
    let p = |v: &mut u64| v as *mut u64 as *mut c_void;
    let memcpy = || Ceiling::SameSize("gpu-stream-memcpy".into());

    // Ceiling: the driver's device-to-device copy of one array.
    c.fill_byte(0xff, stream)?;
    let mut r = timer.measure("memcpy", two, Ceiling::None, &mut || {
        sync_copy::dtod_async(&c, &a, bytes, stream)
    })?;
    cuda.synchronize()?;
    r.valid = Some(check(&c, "memcpy", true, false, |i| a0[i])?);
    rows.push(r);

    c.fill_byte(0xff, stream)?;
    let mut r = timer.measure("copy", two, memcpy(), &mut || {
        kernel(k.copy, &mut [p(&mut pa), p(&mut pc), p(&mut nn)])
    })?;
    cuda.synchronize()?;
    r.valid = Some(check(&c, "copy", true, opts.corrupt, |i| a0[i])?);
    rows.push(r);

    b.fill_byte(0xff, stream)?;
    let mut r = timer.measure("scale", two, memcpy(), &mut || {
        let q = &mut q as *mut f64 as *mut c_void;
        kernel(k.scale, &mut [p(&mut pb), p(&mut pc), q, p(&mut nn)])
    })?;
    cuda.synchronize()?;
    r.valid = Some(check(&b, "scale", true, false, |i| Q * a0[i])?);
    rows.push(r);

    c.fill_byte(0xff, stream)?;
    let mut r = timer.measure("add", three, memcpy(), &mut || {
        kernel(k.add, &mut [p(&mut pa), p(&mut pb), p(&mut pc), p(&mut nn)])
    })?;
    cuda.synchronize()?;
    r.valid = Some(check(&c, "add", true, false, |i| a0[i] + Q * a0[i])?);
    rows.push(r);

    a.fill_byte(0xff, stream)?;
    let mut r = timer.measure("triad", three, memcpy(), &mut || {
        let q = &mut q as *mut f64 as *mut c_void;
        kernel(
            k.triad,
            &mut [p(&mut pa), p(&mut pb), p(&mut pc), q, p(&mut nn)],
        )
    })?;
    cuda.synchronize()?;
    r.valid = Some(check(&a, "triad", false, false, |i| {
        Q * a0[i] + Q * (a0[i] + Q * a0[i])
    })?);
    rows.push(r);
    Ok(rows)
}
