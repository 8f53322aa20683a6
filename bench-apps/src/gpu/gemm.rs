//! `gpu-gemm`: cuBLAS matrix products, TFLOP/s = 2 M N K / t.
//!
//! Per element type: a correctness check first (N = 256, random inputs, the
//! GPU's product against an fp64 CPU product of the same rounded inputs,
//! normwise relative error within a tolerance for that type), then the timed
//! products at each N: warm-up, then one CUDA-event pair around every product,
//! median of the runs. The timed product's output is poisoned (all NaN) before
//! the first run and spot-checked afterwards (64 random entries against fp64
//! dot products), so an unwritten or misplaced result cannot pass.
//!
//! Inputs are random, never zeros (zeros run faster on tensor cores). Large
//! matrices repeat a random tile of a prime number of elements, built on the
//! device, so no two columns are equal and filling costs no host time.

use std::time::Instant;

use anyhow::{Result, bail};
use half::{bf16, f16};
use hybrun_core::schema::Unit;

use super::driver::DevBuf;
use super::libs::{Cublas, compute_type as ct, data_type as dt};
use super::peaks::DevicePeaks;
use super::{Ceiling, GpuError, GpuOptions, Measured, Rng, Setup};

hybrun_core::named_enum! {
    /// An element type of the matrix products.
    pub enum Dtype ("element type") {
        Fp64 = "fp64",
        Fp32 = "fp32",
        Tf32 = "tf32",
        Bf16 = "bf16",
        Fp16 = "fp16",
    }
}

impl Dtype {
    /// Bytes per element in memory (tf32 is stored as fp32).
    pub fn size(self) -> usize {
        match self {
            Dtype::Fp64 => 8,
            Dtype::Fp32 | Dtype::Tf32 => 4,
            Dtype::Bf16 | Dtype::Fp16 => 2,
        }
    }
    fn cuda_type(self) -> i32 {
        match self {
            Dtype::Fp64 => dt::R_64F,
            Dtype::Fp32 | Dtype::Tf32 => dt::R_32F,
            Dtype::Bf16 => dt::R_16BF,
            Dtype::Fp16 => dt::R_16F,
        }
    }
    /// fp32 is plain FP32 arithmetic (CUBLAS_COMPUTE_32F never uses TF32);
    /// tf32 asks for the tensor cores' TF32 mode; 16-bit inputs accumulate in fp32.
    fn compute(self) -> i32 {
        match self {
            Dtype::Fp64 => ct::C64F,
            Dtype::Tf32 => ct::C32F_FAST_TF32,
            _ => ct::C32F,
        }
    }
    /// Normwise relative error allowed against the fp64 reference (K = 256,
    /// inputs in [-1, 1)): output rounding dominates for 16-bit outputs (2^-9
    /// bf16, 2^-12 fp16), input rounding to a 10-bit mantissa for tf32.
    pub fn tolerance(self) -> f64 {
        match self {
            Dtype::Fp64 => 1e-12,
            Dtype::Fp32 => 1e-5,
            Dtype::Tf32 => 3e-3,
            Dtype::Bf16 => 1e-2,
            Dtype::Fp16 => 2e-3,
        }
    }
    pub fn encode(self, v: f64, out: &mut Vec<u8>) {
        match self {
            Dtype::Fp64 => out.extend_from_slice(&v.to_le_bytes()),
            Dtype::Fp32 | Dtype::Tf32 => out.extend_from_slice(&(v as f32).to_le_bytes()),
            Dtype::Bf16 => out.extend_from_slice(&bf16::from_f64(v).to_le_bytes()),
            Dtype::Fp16 => out.extend_from_slice(&f16::from_f64(v).to_le_bytes()),
        }
    }
    pub fn decode(self, b: &[u8]) -> f64 {
        match self {
            Dtype::Fp64 => f64::from_le_bytes(b[..8].try_into().unwrap_or([0; 8])),
            Dtype::Fp32 | Dtype::Tf32 => {
                f32::from_le_bytes(b[..4].try_into().unwrap_or([0; 4])) as f64
            }
            Dtype::Bf16 => bf16::from_le_bytes([b[0], b[1]]).to_f64(),
            Dtype::Fp16 => f16::from_le_bytes([b[0], b[1]]).to_f64(),
        }
    }
    fn peak(self, p: &DevicePeaks) -> Option<(f64, &'static str)> {
        match self {
            Dtype::Fp64 => Some((p.fp64, "FP64 (Tensor Core where present)")),
            Dtype::Fp32 => Some((p.fp32, "FP32")),
            Dtype::Tf32 => p.tf32.map(|v| (v, "TF32 Tensor Core")),
            Dtype::Bf16 => p.bf16.map(|v| (v, "BF16 Tensor Core")),
            Dtype::Fp16 => Some((p.fp16, "FP16 Tensor Core")),
        }
    }
}

pub fn parse_dtypes(spec: Option<&str>) -> Result<Vec<Dtype>, String> {
    let Some(spec) = spec else {
        return Ok(Dtype::ALL.to_vec());
    };
    let mut out = Vec::new();
    for t in spec.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        if t.eq_ignore_ascii_case("all") {
            out.extend(Dtype::ALL);
            continue;
        }
        let d = Dtype::ALL
            .iter()
            .copied()
            .find(|d| d.name().eq_ignore_ascii_case(t))
            .ok_or_else(|| {
                format!("--dtype: unknown type `{t}` (use fp64, fp32, tf32, bf16, fp16)")
            })?;
        out.push(d);
    }
    out.dedup();
    if out.is_empty() {
        return Err("--dtype names no type".into());
    }
    Ok(out)
}

pub fn parse_orders(spec: Option<&str>) -> Result<Vec<u64>, String> {
    let Some(spec) = spec else {
        return Ok(vec![8192]);
    };
    let mut out = Vec::new();
    for t in spec.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let n: u64 = t
            .parse()
            .map_err(|_| format!("--size: `{t}` is not a matrix order"))?;
        if !(16..=65536).contains(&n) {
            return Err(format!("--size {n} is out of range (16..=65536)"));
        }
        out.push(n);
    }
    if out.is_empty() {
        return Err("--size names no matrix order".into());
    }
    Ok(out)
}

/// Random values in [-1, 1), encoded; also returns the decoded (rounded) values.
fn random_matrix(d: Dtype, len: usize, rng: &mut Rng) -> (Vec<u8>, Vec<f64>) {
    let mut bytes = Vec::with_capacity(len * d.size());
    let mut vals = Vec::with_capacity(len);
    for _ in 0..len {
        let v = rng.uniform(-1.0, 1.0);
        let at = bytes.len();
        d.encode(v, &mut bytes);
        vals.push(d.decode(&bytes[at..]));
    }
    (bytes, vals)
}

/// Scalars alpha = 1, beta = 0 in the compute type's scale type.
struct Scalars {
    a64: f64,
    b64: f64,
    a32: f32,
    b32: f32,
}

impl Scalars {
    fn ptrs(&self, d: Dtype) -> (*const std::ffi::c_void, *const std::ffi::c_void) {
        if d == Dtype::Fp64 {
            (&self.a64 as *const f64 as _, &self.b64 as *const f64 as _)
        } else {
            (&self.a32 as *const f32 as _, &self.b32 as *const f32 as _)
        }
    }
}

const ONE_ZERO: Scalars = Scalars {
    a64: 1.0,
    b64: 0.0,
    a32: 1.0,
    b32: 0.0,
};

fn gemm(blas: &Cublas, d: Dtype, n: u64, a: &DevBuf, b: &DevBuf, c: &DevBuf) -> Result<()> {
    let (alpha, beta) = ONE_ZERO.ptrs(d);
    // SAFETY: a, b, c hold n*n elements of d (allocated by the caller for
    // exactly that); alpha/beta match the compute type; the product runs on
    // the handle's stream.
    unsafe {
        blas.gemm(
            n as i32,
            alpha,
            a.ptr,
            b.ptr,
            beta,
            c.ptr,
            d.cuda_type(),
            d.cuda_type(),
            d.compute(),
        )
    }
}

/// N = 256 product of random inputs against an fp64 CPU reference.
/// Returns the normwise relative error.
fn check_small(blas: &Cublas, setup: &Setup, d: Dtype, corrupt: bool) -> Result<f64> {
    const N: usize = 256;
    let mut rng = Rng::new(0x6e6d_0000 + d.size() as u64);
    let (ab, av) = random_matrix(d, N * N, &mut rng);
    let (bb, bv) = random_matrix(d, N * N, &mut rng);
    let bytes = N * N * d.size();
    let (a, b, c) = (
        DevBuf::new(bytes)?,
        DevBuf::new(bytes)?,
        DevBuf::new(bytes)?,
    );
    a.upload(0, &ab)?;
    b.upload(0, &bb)?;
    c.fill_byte(0xff, setup.cuda.stream)?;
    gemm(blas, d, N as u64, &a, &b, &c)?;
    setup.cuda.synchronize()?;
    let mut out = vec![0u8; bytes];
    c.download(0, &mut out)?;
    if corrupt {
        // Testing aid (--debug-corrupt): one wrong element must fail the check.
        let mut v = Vec::new();
        d.encode(1e3, &mut v);
        out[..d.size()].copy_from_slice(&v);
    }
    // Column-major: C[i + j N] = sum_k A[i + k N] B[k + j N].
    let (mut diff2, mut ref2) = (0.0f64, 0.0f64);
    for j in 0..N {
        for i in 0..N {
            let mut s = 0.0;
            for k in 0..N {
                s += av[i + k * N] * bv[k + j * N];
            }
            let g = d.decode(&out[(i + j * N) * d.size()..]);
            if !g.is_finite() {
                bail!(
                    "gpu-gemm {}: C[{i},{j}] is {g} (not written, or overflow)",
                    d.name()
                );
            }
            diff2 += (g - s) * (g - s);
            ref2 += s * s;
        }
    }
    Ok((diff2 / ref2).sqrt())
}

/// The timed matrices: A and B repeat random tiles of a prime length.
const TILE: usize = 1_000_003;

struct Big {
    n: u64,
    a: DevBuf,
    b: DevBuf,
    c: DevBuf,
    at: Vec<f64>,
    bt: Vec<f64>,
}

fn big(setup: &Setup, d: Dtype, n: u64) -> Result<Big> {
    let elems = (n * n) as usize;
    let bytes = elems * d.size();
    setup.cuda.ensure_free(
        3 * bytes + (64 << 20),
        &format!("gpu-gemm {} N={n}", d.name()),
    )?;
    let mut rng = Rng::new(0xb16_0000 ^ n ^ ((d.size() as u64) << 40));
    let tile = TILE.min(elems);
    let (ta, at) = random_matrix(d, tile, &mut rng);
    let (tb, bt) = random_matrix(d, tile, &mut rng);
    let (a, b, c) = (
        DevBuf::new(bytes)?,
        DevBuf::new(bytes)?,
        DevBuf::new(bytes)?,
    );
    a.fill_tiled(&ta)?;
    b.fill_tiled(&tb)?;
    Ok(Big { n, a, b, c, at, bt })
}

/// 64 random entries of the timed product against fp64 dot products of the
/// same (rounded) inputs, each within tolerance x sum |a b| (the scale of the
/// rounding error of a length-N dot product).
fn spot_check(big: &Big, d: Dtype) -> Result<bool> {
    let n = big.n as usize;
    let mut rng = Rng::new(0x5707);
    let es = d.size();
    let mut ok = true;
    for _ in 0..64 {
        let i = (rng.next_u64() % n as u64) as usize;
        let j = (rng.next_u64() % n as u64) as usize;
        let (mut s, mut mag) = (0.0f64, 0.0f64);
        for k in 0..n {
            let a = big.at[(i + k * n) % big.at.len()];
            let b = big.bt[(k + j * n) % big.bt.len()];
            s += a * b;
            mag += (a * b).abs();
        }
        let mut cell = vec![0u8; es];
        big.c.download((i + j * n) * es, &mut cell)?;
        let g = d.decode(&cell);
        // 2x: the bound is on the error of the sum; the output's own rounding adds to it.
        if !g.is_finite() || (g - s).abs() > 2.0 * d.tolerance() * mag.max(f64::MIN_POSITIVE) {
            eprintln!(
                "hybench: gpu-gemm {} N={n}: C[{i},{j}] = {g}, expected {s} (|a||b| sum {mag})",
                d.name()
            );
            ok = false;
        }
    }
    Ok(ok)
}

pub fn run(setup: &Setup, opts: &GpuOptions) -> Result<(Vec<Measured>, Vec<String>), GpuError> {
    let (dtypes, orders) = (&opts.dtypes, &opts.orders);
    let blas = Cublas::open(setup.cuda.stream as *mut std::ffi::c_void)?;
    let libs = vec![format!("cuBLAS {} ({})", blas.version, blas.path)];
    let mut rows = Vec::new();
    for &d in dtypes {
        let err = check_small(&blas, setup, d, opts.corrupt)?;
        let small_ok = err <= d.tolerance();
        if !small_ok {
            eprintln!(
                "hybench: gpu-gemm {}: N=256 product differs from the fp64 reference: relative error {err:.3e} > {:.1e}",
                d.name(),
                d.tolerance()
            );
        }
        for &n in orders {
            let m = big(setup, d, n)?;
            m.c.fill_byte(0xff, setup.cuda.stream)?;
            let start = Instant::now();
            let ms =
                setup
                    .cuda
                    .time_each(setup.cuda.stream, opts.warmup, opts.iterations, || {
                        gemm(&blas, d, n, &m.a, &m.b, &m.c)
                    })?;
            let end = Instant::now();
            let flops = 2.0 * (n as f64).powi(3);
            let samples: Vec<f64> = ms.iter().map(|t| flops / (t * 1e-3) / 1e12).collect();
            let spot_ok = spot_check(&m, d)?;
            let peak = setup.peaks.as_ref().and_then(|p| {
                d.peak(p).map(|(v, what)| {
                    (
                        v,
                        format!("{} {what} {v} TFLOP/s dense ({})", p.model, p.source),
                    )
                })
            });
            rows.push(Measured {
                benchmark: format!("gpu-gemm-{}", d.name()),
                size_bytes: 3 * n * n * d.size() as u64,
                matrix_n: Some(n),
                unit: Unit::TeraflopsPerSec,
                iterations: opts.iterations,
                warmup: opts.warmup,
                window: 1,
                pairs: 0,
                rank0_only: false,
                samples,
                osu_value: None,
                valid: Some(small_ok && spot_ok),
                start,
                end,
                peak,
                ceiling: Ceiling::BestOf("gpu-gemm-"),
            });
        }
    }
    Ok((rows, libs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parsing() {
        assert_eq!(parse_dtypes(None).unwrap().len(), 5);
        assert_eq!(
            parse_dtypes(Some("bf16, FP16")).unwrap(),
            vec![Dtype::Bf16, Dtype::Fp16]
        );
        assert!(parse_dtypes(Some("int8")).is_err());
        assert_eq!(parse_orders(None).unwrap(), vec![8192]);
        assert_eq!(parse_orders(Some("4096,8192")).unwrap(), vec![4096, 8192]);
        assert!(parse_orders(Some("8")).is_err());
        assert!(parse_orders(Some("x")).is_err());
    }

    #[test]
    fn encodings_round_trip_with_rounding() {
        for &d in Dtype::ALL {
            let mut b = Vec::new();
            d.encode(0.1, &mut b);
            assert_eq!(b.len(), d.size());
            let back = d.decode(&b);
            // Half an ulp of the stored format at most.
            let ulp = match d {
                Dtype::Fp64 => 1e-16,
                Dtype::Fp32 | Dtype::Tf32 => 1e-8,
                Dtype::Bf16 => 1e-3,
                Dtype::Fp16 => 1e-4,
            };
            assert!((back - 0.1).abs() <= ulp, "{d:?}: {back}");
        }
        // NaN poison (all 0xff bytes) decodes as NaN in every format.
        for &d in Dtype::ALL {
            assert!(d.decode(&[0xff; 8]).is_nan(), "{d:?}");
        }
    }
}
