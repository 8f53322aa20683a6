//! The CUDA driver API through cudarc, loaded at run time.
//!
//! Why the driver API (cudarc's `result`/`sys` layers) and not cudarc's safe
//! `CudaContext`: the safe layer panics when libcuda is missing, and it records
//! events around every operation for its cross-stream tracking, which would sit
//! inside the timed regions. Here every call is explicit, every return code is
//! checked, and the only things timed are the operations themselves.
//!
//! cudarc resolves each symbol on first use (`dynamic-loading`) and panics if a
//! symbol is missing; hybench therefore checks that `libcuda.so.1` loads before
//! the first call and only calls functions every CUDA 12.x driver exports.

use std::ffi::{CStr, c_void};
use std::fmt;

use anyhow::{Context, Result, anyhow, bail};
use cudarc::driver::result::{self as cu, DriverError};
use cudarc::driver::sys;

use super::GpuError;

/// `CUDA_ERROR_X: description` for a driver error.
pub fn describe(e: &DriverError) -> String {
    let name = e
        .error_name()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|_| format!("{:?}", e.0));
    match e.error_string() {
        Ok(s) => format!("{name} ({})", s.to_string_lossy()),
        Err(_) => name,
    }
}

/// Attach what was being done to a driver error.
pub trait Check<T> {
    fn ck(self, what: &str) -> Result<T>;
}

impl<T> Check<T> for Result<T, DriverError> {
    fn ck(self, what: &str) -> Result<T> {
        self.map_err(|e| anyhow!("{what}: {}", describe(&e)))
    }
}

/// The exact line the GPU subcommands print on a machine without the driver
/// (tests/tests/hybench_gpu.rs asserts it).
pub const NO_DRIVER: &str = "no NVIDIA driver found: libcuda.so.1 could not be loaded";

/// Load and initialise the driver. Errors are environment errors, worded for
/// the person at the terminal: which library or device is missing.
pub fn init_driver() -> Result<i32, GpuError> {
    // SAFETY: loading libcuda runs its initialisers, which is what every CUDA
    // program does; the handle is dropped at once (cudarc keeps its own).
    if unsafe { libloading::Library::new("libcuda.so.1") }.is_err() {
        return Err(GpuError::Environment(NO_DRIVER.into()));
    }
    // cudarc searches its own list of names; it finds libcuda.so.1 too, but
    // check before any call, since a failed search panics.
    // SAFETY: only tries to dlopen candidate names.
    if !unsafe { sys::is_culib_present() } {
        return Err(GpuError::Environment(NO_DRIVER.into()));
    }
    cu::init().map_err(|e| {
        GpuError::Environment(format!(
            "no usable NVIDIA GPU: cuInit failed: {}",
            describe(&e)
        ))
    })?;
    let mut version = 0;
    // SAFETY: writes one int.
    unsafe { sys::cuDriverGetVersion(&mut version) }
        .result()
        .map_err(|e| GpuError::Environment(format!("cuDriverGetVersion: {}", describe(&e))))?;
    Ok(version)
}

/// Number of GPUs this process can see (honours CUDA_VISIBLE_DEVICES).
pub fn device_count() -> Result<u32, GpuError> {
    let n = cu::device::get_count()
        .map_err(|e| GpuError::Environment(format!("cuDeviceGetCount: {}", describe(&e))))?;
    if n <= 0 {
        let cvd = std::env::var("CUDA_VISIBLE_DEVICES")
            .map(|v| format!(" (CUDA_VISIBLE_DEVICES={v:?})"))
            .unwrap_or_default();
        return Err(GpuError::Environment(format!(
            "no NVIDIA GPU visible to this process{cvd}"
        )));
    }
    Ok(n as u32)
}

/// `13.0` from 13000.
pub fn version_string(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// PCI bus id of a device ordinal, as CUDA prints it (`0000:17:00.0`).
pub fn pci_bus_id(ordinal: u32) -> Result<String> {
    let dev = cu::device::get(ordinal as i32).ck("cuDeviceGet")?;
    let mut buf = [0 as std::ffi::c_char; 32];
    // SAFETY: the buffer is writable for its length; the driver NUL-terminates.
    unsafe { sys::cuDeviceGetPCIBusId(buf.as_mut_ptr(), buf.len() as i32, dev) }
        .result()
        .ck("cuDeviceGetPCIBusId")?;
    // SAFETY: NUL-terminated by the driver within the buffer.
    let s = unsafe { CStr::from_ptr(buf.as_ptr()) };
    Ok(s.to_string_lossy().into_owned())
}

/// Facts about the selected device.
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    pub ordinal: u32,
    pub name: String,
    pub bus_id: String,
    pub cc_major: i32,
    pub cc_minor: i32,
    pub sms: i32,
    pub total_mem: usize,
}

/// A device with its primary context current on this thread and one stream.
pub struct Cuda {
    dev: sys::CUdevice,
    pub stream: sys::CUstream,
    pub info: DeviceInfo,
}

impl Cuda {
    /// Retain the primary context of device `ordinal`, make it current, create a stream.
    pub fn open(ordinal: u32) -> Result<Cuda> {
        let dev = cu::device::get(ordinal as i32).ck("cuDeviceGet")?;
        let attr = |a| {
            // SAFETY: `dev` came from cuDeviceGet.
            unsafe { cu::device::get_attribute(dev, a) }.ck("cuDeviceGetAttribute")
        };
        let info = DeviceInfo {
            ordinal,
            name: cu::device::get_name(dev).ck("cuDeviceGetName")?,
            bus_id: pci_bus_id(ordinal)?,
            cc_major: attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR)?,
            cc_minor: attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR)?,
            sms: attr(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?,
            // SAFETY: `dev` came from cuDeviceGet.
            total_mem: unsafe { cu::device::total_mem(dev) }.ck("cuDeviceTotalMem")?,
        };
        // SAFETY: `dev` came from cuDeviceGet; released in Drop.
        let ctx = unsafe { cu::primary_ctx::retain(dev) }.ck("cuDevicePrimaryCtxRetain")?;
        // SAFETY: a context we hold a reference to.
        unsafe { cu::ctx::set_current(ctx) }.ck("cuCtxSetCurrent")?;
        // A blocking stream: it also orders with the legacy default stream,
        // which the synchronous copies of gpu-copy use.
        let stream = cu::stream::create(cu::stream::StreamKind::Default).ck("cuStreamCreate")?;
        Ok(Cuda { dev, stream, info })
    }

    pub fn synchronize(&self) -> Result<()> {
        cu::ctx::synchronize().ck("cuCtxSynchronize")
    }

    /// Free and total device memory in bytes.
    pub fn mem_info(&self) -> Result<(usize, usize)> {
        cu::mem_get_info().ck("cuMemGetInfo")
    }

    /// Fail early, with the numbers, when `bytes` will not fit in free memory.
    pub fn ensure_free(&self, bytes: usize, what: &str) -> Result<()> {
        let (free, _) = self.mem_info()?;
        if bytes > free {
            bail!(
                "{what} needs {:.2} GiB of device memory, {:.2} GiB are free on GPU {} ({}): use a smaller size",
                bytes as f64 / (1u64 << 30) as f64,
                free as f64 / (1u64 << 30) as f64,
                self.info.ordinal,
                self.info.name
            );
        }
        Ok(())
    }

    /// Time `iters` runs of `op`, each bracketed by events recorded on
    /// `stream`, after `warmup` untimed runs. Returns milliseconds per run.
    pub fn time_each(
        &self,
        stream: sys::CUstream,
        warmup: u64,
        iters: u64,
        mut op: impl FnMut() -> Result<()>,
    ) -> Result<Vec<f64>> {
        for _ in 0..warmup {
            op()?;
        }
        // SAFETY: a stream of this context (or the null stream).
        unsafe { cu::stream::synchronize(stream) }.ck("cuStreamSynchronize (warm-up)")?;
        let events = Events::new(2 * iters as usize)?;
        for i in 0..iters as usize {
            // SAFETY: events of this context, recorded on one stream.
            unsafe { cu::event::record(events.0[2 * i], stream) }.ck("cuEventRecord")?;
            op()?;
            // SAFETY: as above.
            unsafe { cu::event::record(events.0[2 * i + 1], stream) }.ck("cuEventRecord")?;
        }
        let mut ms = Vec::with_capacity(iters as usize);
        if let Some(&last) = events.0.last() {
            // SAFETY: a recorded event.
            unsafe { cu::event::synchronize(last) }.ck("cuEventSynchronize")?;
        }
        for i in 0..iters as usize {
            // SAFETY: both events were recorded and have completed.
            let t = unsafe { cu::event::elapsed(events.0[2 * i], events.0[2 * i + 1]) }
                .ck("cuEventElapsedTime")?;
            ms.push(t as f64);
        }
        Ok(ms)
    }
}

impl Drop for Cuda {
    fn drop(&mut self) {
        // SAFETY: our stream and our reference to the primary context; errors
        // at teardown have nothing left to corrupt, so they are ignored.
        unsafe {
            let _ = cu::stream::destroy(self.stream);
            let _ = cu::primary_ctx::release(self.dev);
        }
    }
}

/// Events created up front, destroyed together.
struct Events(Vec<sys::CUevent>);

impl Events {
    fn new(n: usize) -> Result<Events> {
        let mut ev = Events(Vec::with_capacity(n));
        for _ in 0..n {
            ev.0.push(cu::event::create(sys::CUevent_flags::CU_EVENT_DEFAULT).ck("cuEventCreate")?);
        }
        Ok(ev)
    }
}

impl Drop for Events {
    fn drop(&mut self) {
        for &e in &self.0 {
            // SAFETY: created by cuEventCreate, destroyed once.
            unsafe {
                let _ = cu::event::destroy(e);
            }
        }
    }
}

/// Device memory, freed on drop.
pub struct DevBuf {
    pub ptr: sys::CUdeviceptr,
    pub bytes: usize,
}

impl DevBuf {
    pub fn new(bytes: usize) -> Result<DevBuf> {
        // SAFETY: plain allocation (never managed memory: see device/README).
        let ptr = unsafe { cu::malloc_sync(bytes.max(1)) }
            .with_context(|| format!("cuMemAlloc of {bytes} bytes"))
            .map_err(|e| anyhow!("{e:#}"))?;
        Ok(DevBuf { ptr, bytes })
    }

    /// Fill with one byte value (0xFF makes every float a NaN: poison).
    pub fn fill_byte(&self, value: u8, stream: sys::CUstream) -> Result<()> {
        // SAFETY: our allocation, `bytes` long.
        unsafe { cu::memset_d8_async(self.ptr, value, self.bytes, stream) }.ck("cuMemsetD8Async")
    }

    pub fn upload(&self, offset: usize, src: &[u8]) -> Result<()> {
        if offset + src.len() > self.bytes {
            bail!(
                "upload of {} bytes at {offset} overflows a {}-byte buffer",
                src.len(),
                self.bytes
            );
        }
        // SAFETY: bounds checked above; synchronous copy.
        unsafe { cu::memcpy_htod_sync(self.ptr + offset as u64, src) }.ck("cuMemcpyHtoD")
    }

    pub fn download(&self, offset: usize, dst: &mut [u8]) -> Result<()> {
        if offset + dst.len() > self.bytes {
            bail!(
                "download of {} bytes at {offset} overflows a {}-byte buffer",
                dst.len(),
                self.bytes
            );
        }
        // SAFETY: bounds checked above; synchronous copy.
        unsafe { cu::memcpy_dtoh_sync(dst, self.ptr + offset as u64) }.ck("cuMemcpyDtoH")
    }

    /// Fill with random-looking data: upload `tile` once, then double it on
    /// the device until the buffer is full (cheap for gigabyte buffers).
    pub fn fill_tiled(&self, tile: &[u8]) -> Result<()> {
        let first = tile.len().min(self.bytes);
        self.upload(0, &tile[..first])?;
        let mut filled = first;
        while filled < self.bytes && filled > 0 {
            let n = filled.min(self.bytes - filled);
            // SAFETY: [0, n) and [filled, filled + n) lie inside the buffer and do not overlap.
            unsafe { cu::memcpy_dtod_sync(self.ptr + filled as u64, self.ptr, n) }
                .ck("cuMemcpyDtoD (fill)")?;
            filled += n;
        }
        Ok(())
    }
}

impl Drop for DevBuf {
    fn drop(&mut self) {
        // SAFETY: allocated by cuMemAlloc, freed once.
        unsafe {
            let _ = cu::free_sync(self.ptr);
        }
    }
}

impl fmt::Debug for DevBuf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DevBuf({:#x}, {} B)", self.ptr, self.bytes)
    }
}

/// Page-locked host memory (cuMemHostAlloc), freed on drop.
pub struct PinnedBuf {
    ptr: *mut c_void,
    bytes: usize,
}

impl PinnedBuf {
    pub fn new(bytes: usize) -> Result<PinnedBuf> {
        // SAFETY: allocation only; contents are written before they are read.
        let ptr = unsafe { cu::malloc_host(bytes.max(1), 0) }
            .ck(&format!("cuMemHostAlloc of {bytes} bytes"))?;
        // Touch every byte so the timed copies do not pay for first use.
        // SAFETY: `ptr` is valid for `bytes` writes.
        unsafe { std::ptr::write_bytes(ptr as *mut u8, 0x5a, bytes) };
        Ok(PinnedBuf { ptr, bytes })
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: valid for `bytes` for the lifetime of self.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, self.bytes) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: valid for `bytes`, uniquely borrowed.
        unsafe { std::slice::from_raw_parts_mut(self.ptr as *mut u8, self.bytes) }
    }
}

impl Drop for PinnedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated by cuMemHostAlloc, freed once.
        unsafe {
            let _ = cu::free_host(self.ptr);
        }
    }
}

/// A module loaded from a cubin or PTX image, unloaded on drop.
pub struct Module(sys::CUmodule);

impl Module {
    /// `image` must be a cubin, or PTX text ending in NUL.
    pub fn load(image: &[u8]) -> Result<Module> {
        // SAFETY: the image stays alive for the call; the driver copies it.
        let m = unsafe { cu::module::load_data(image.as_ptr() as *const c_void) }
            .ck("cuModuleLoadData")?;
        Ok(Module(m))
    }

    pub fn function(&self, name: &str) -> Result<sys::CUfunction> {
        let c = std::ffi::CString::new(name)?;
        // SAFETY: a loaded module.
        unsafe { cu::module::get_function(self.0, c) }.ck(&format!("cuModuleGetFunction({name})"))
    }
}

impl Drop for Module {
    fn drop(&mut self) {
        // SAFETY: loaded by cuModuleLoadData, unloaded once.
        unsafe {
            let _ = cu::module::unload(self.0);
        }
    }
}

/// Launch `f` on a 1-D grid. `params` point at the kernel's argument values.
pub fn launch(
    f: sys::CUfunction,
    grid: u32,
    block: u32,
    stream: sys::CUstream,
    params: &mut [*mut c_void],
) -> Result<()> {
    // SAFETY: the caller passes a function of a live module and pointers to
    // argument values of the kernel's exact types that outlive the call (the
    // driver copies the values at launch).
    unsafe { cu::launch_kernel(f, (grid, 1, 1), (block, 1, 1), 0, stream, params) }
        .ck("cuLaunchKernel")
}

/// Raw driver calls of gpu-copy: synchronous copies on the legacy default
/// stream, as cudaMemcpy does.
pub mod sync_copy {
    use super::*;

    pub fn htod(dst: &DevBuf, src: &[u8]) -> Result<()> {
        dst.upload(0, src)
    }
    pub fn dtoh(dst: &mut [u8], src: &DevBuf) -> Result<()> {
        src.download(0, dst)
    }
    pub fn dtod(dst: &DevBuf, src: &DevBuf, bytes: usize) -> Result<()> {
        if bytes > dst.bytes || bytes > src.bytes {
            bail!("device copy of {bytes} bytes overflows its buffers");
        }
        // SAFETY: both allocations hold `bytes`.
        unsafe { cu::memcpy_dtod_sync(dst.ptr, src.ptr, bytes) }.ck("cuMemcpyDtoD")
    }
    /// Asynchronous device copy on `stream` (stream benchmark's memcpy ceiling).
    pub fn dtod_async(
        dst: &DevBuf,
        src: &DevBuf,
        bytes: usize,
        stream: sys::CUstream,
    ) -> Result<()> {
        if bytes > dst.bytes || bytes > src.bytes {
            bail!("device copy of {bytes} bytes overflows its buffers");
        }
        // SAFETY: both allocations hold `bytes`.
        unsafe { cu::memcpy_dtod_async(dst.ptr, src.ptr, bytes, stream) }.ck("cuMemcpyDtoDAsync")
    }
}
