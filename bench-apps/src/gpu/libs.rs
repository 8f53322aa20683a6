//! cuBLAS and NVRTC, loaded at run time with libloading.
//!
//! Why not cudarc's `cublas`/`nvrtc` modules: their loaders look for one CUDA
//! major version's sonames (the one the crate was built for, plus older ones)
//! and panic when none is found, while a cluster node may have the CUDA 12
//! libraries and the device machine here the CUDA 13 ones (`libcublas.so.13`
//! from a module, a toolkit or pip's `nvidia-*` wheels). hybench tries the
//! sonames of CUDA 13, 12 and 11, then the toolkit's usual folders, and says
//! which file it used. The handful of entry points needed here have had the
//! same C signatures since CUDA 11.

use std::ffi::{CStr, CString, c_char, c_int, c_void};
use std::path::PathBuf;

use anyhow::{Result, anyhow, bail};
use libloading::Library;

use super::GpuError;

/// Where a library came from.
pub struct Loaded {
    lib: Library,
    pub path: String,
}

/// Try `$env_var`, then each soname, then each soname in the toolkit folders.
fn load_first(what: &str, env_var: &str, sonames: &[&str]) -> Result<Loaded, GpuError> {
    let mut tried: Vec<String> = Vec::new();
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os(env_var).filter(|p| !p.is_empty()) {
        candidates.push(PathBuf::from(p));
    }
    candidates.extend(sonames.iter().map(PathBuf::from));
    let mut dirs: Vec<PathBuf> = ["CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"]
        .iter()
        .filter_map(std::env::var_os)
        .map(|d| PathBuf::from(d).join("lib64"))
        .collect();
    dirs.push(PathBuf::from("/usr/local/cuda/lib64"));
    for d in &dirs {
        candidates.extend(sonames.iter().map(|s| d.join(s)));
    }
    for c in candidates {
        // SAFETY: loading a CUDA library runs its initialisers, as any CUDA
        // program does.
        match unsafe { Library::new(&c) } {
            Ok(lib) => {
                let path = c.display().to_string();
                return Ok(Loaded { lib, path });
            }
            Err(_) => tried.push(c.display().to_string()),
        }
    }
    Err(GpuError::Environment(format!(
        "{what} not found (tried {}): add the CUDA libraries to LD_LIBRARY_PATH or set {env_var} to the file",
        tried.join(", ")
    )))
}

/// The file a symbol of a loaded library lives in (dladdr), for the metadata.
fn file_of(addr: *const c_void, fallback: &str) -> String {
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    // SAFETY: dladdr only reads the loader's tables; dli_fname is NUL-terminated.
    unsafe {
        if libc::dladdr(addr, &mut info) != 0 && !info.dli_fname.is_null() {
            return CStr::from_ptr(info.dli_fname)
                .to_string_lossy()
                .into_owned();
        }
    }
    fallback.to_string()
}

macro_rules! sym {
    ($lib:expr, $name:literal) => {{
        // SAFETY: the type matches the C prototype of the CUDA headers
        // (stable since CUDA 11); the Library outlives the pointer because
        // both live in the same struct.
        let s: libloading::Symbol<_> = unsafe { $lib.get(concat!($name, "\0").as_bytes()) }
            .map_err(|e| anyhow!("symbol {} missing from the library: {e}", $name))?;
        *s
    }};
}

// --- cuBLAS ---------------------------------------------------------------

pub type CublasHandle = *mut c_void;
type Status = c_int;

/// cudaDataType_t values (library_types.h).
pub mod data_type {
    pub const R_32F: i32 = 0;
    pub const R_64F: i32 = 1;
    pub const R_16F: i32 = 2;
    pub const R_16BF: i32 = 14;
}

/// cublasComputeType_t values (cublas_api.h).
pub mod compute_type {
    pub const C32F: i32 = 68;
    pub const C32F_FAST_TF32: i32 = 77;
    pub const C64F: i32 = 70;
}

const CUBLAS_OP_N: c_int = 0;
/// CUBLAS_GEMM_DEFAULT: let cuBLAS pick (tensor cores where the types allow).
const CUBLAS_GEMM_DEFAULT: c_int = -1;

type GemmEx = unsafe extern "C" fn(
    CublasHandle,
    c_int,
    c_int,
    c_int,
    c_int,
    c_int,
    *const c_void,
    *const c_void,
    c_int,
    c_int,
    *const c_void,
    c_int,
    c_int,
    *const c_void,
    *mut c_void,
    c_int,
    c_int,
    c_int,
    c_int,
) -> Status;

pub struct Cublas {
    _lib: Loaded,
    handle: CublasHandle,
    gemm_ex: GemmEx,
    destroy: unsafe extern "C" fn(CublasHandle) -> Status,
    pub path: String,
    pub version: String,
}

fn cublas_status(s: Status) -> &'static str {
    match s {
        1 => "CUBLAS_STATUS_NOT_INITIALIZED",
        3 => "CUBLAS_STATUS_ALLOC_FAILED",
        7 => "CUBLAS_STATUS_INVALID_VALUE",
        8 => "CUBLAS_STATUS_ARCH_MISMATCH",
        11 => "CUBLAS_STATUS_MAPPING_ERROR",
        13 => "CUBLAS_STATUS_EXECUTION_FAILED",
        14 => "CUBLAS_STATUS_INTERNAL_ERROR",
        15 => "CUBLAS_STATUS_NOT_SUPPORTED",
        16 => "CUBLAS_STATUS_LICENSE_ERROR",
        _ => "unknown cuBLAS status",
    }
}

fn cublas_ok(s: Status, what: &str) -> Result<()> {
    if s != 0 {
        bail!("{what}: {} ({s})", cublas_status(s));
    }
    Ok(())
}

impl Cublas {
    /// Load cuBLAS and create a handle bound to `stream` (the current context's).
    pub fn open(stream: *mut c_void) -> Result<Cublas, GpuError> {
        let lib = load_first(
            "cuBLAS",
            "HYBENCH_CUBLAS",
            &[
                "libcublas.so.13",
                "libcublas.so.12",
                "libcublas.so.11",
                "libcublas.so",
            ],
        )?;
        Self::with(lib, stream).map_err(GpuError::Failed)
    }

    fn with(lib: Loaded, stream: *mut c_void) -> Result<Cublas> {
        let create: unsafe extern "C" fn(*mut CublasHandle) -> Status =
            sym!(lib.lib, "cublasCreate_v2");
        let destroy: unsafe extern "C" fn(CublasHandle) -> Status =
            sym!(lib.lib, "cublasDestroy_v2");
        let set_stream: unsafe extern "C" fn(CublasHandle, *mut c_void) -> Status =
            sym!(lib.lib, "cublasSetStream_v2");
        let get_version: unsafe extern "C" fn(CublasHandle, *mut c_int) -> Status =
            sym!(lib.lib, "cublasGetVersion_v2");
        let gemm_ex: GemmEx = sym!(lib.lib, "cublasGemmEx");
        let path = file_of(gemm_ex as *const c_void, &lib.path);
        let mut handle: CublasHandle = std::ptr::null_mut();
        // SAFETY: writes one handle; a CUDA context is current.
        cublas_ok(unsafe { create(&mut handle) }, "cublasCreate")?;
        let mut c = Cublas {
            _lib: lib,
            handle,
            gemm_ex,
            destroy,
            path,
            version: String::new(),
        };
        // SAFETY: valid handle and stream of the current context.
        cublas_ok(unsafe { set_stream(c.handle, stream) }, "cublasSetStream")?;
        let mut v: c_int = 0;
        // SAFETY: valid handle; writes one int.
        cublas_ok(unsafe { get_version(c.handle, &mut v) }, "cublasGetVersion")?;
        c.version = format!("{}.{}.{}", v / 10000, (v % 10000) / 100, v % 100);
        Ok(c)
    }

    /// C = alpha A B + beta C, column-major, square n x n, no transposes.
    ///
    /// # Safety
    /// `a`, `b`, `c` are device allocations of at least n*n elements of the
    /// given types; `alpha`/`beta` point at scalars of the compute type's
    /// scale type (f64 for 64F, f32 for 32F*).
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemm(
        &self,
        n: i32,
        alpha: *const c_void,
        a: u64,
        b: u64,
        beta: *const c_void,
        c: u64,
        ab_type: i32,
        c_type: i32,
        compute: i32,
    ) -> Result<()> {
        // SAFETY: per the function's contract.
        let s = unsafe {
            (self.gemm_ex)(
                self.handle,
                CUBLAS_OP_N,
                CUBLAS_OP_N,
                n,
                n,
                n,
                alpha,
                a as *const c_void,
                ab_type,
                n,
                b as *const c_void,
                ab_type,
                n,
                beta,
                c as *mut c_void,
                c_type,
                n,
                compute,
                CUBLAS_GEMM_DEFAULT,
            )
        };
        cublas_ok(s, "cublasGemmEx")
    }
}

impl Drop for Cublas {
    fn drop(&mut self) {
        // SAFETY: created by cublasCreate, destroyed once.
        unsafe {
            let _ = (self.destroy)(self.handle);
        }
    }
}

// --- NVRTC ------------------------------------------------------------------

type Prog = *mut c_void;

pub struct Nvrtc {
    lib: Loaded,
    pub path: String,
    pub version: String,
}

/// Compiled device code: a cubin for the exact architecture, or PTX (NUL-ended).
pub struct Image {
    pub bytes: Vec<u8>,
    pub kind: &'static str,
}

impl Nvrtc {
    pub fn open() -> Result<Nvrtc, GpuError> {
        let lib = load_first(
            "NVRTC",
            "HYBENCH_NVRTC",
            &[
                "libnvrtc.so.13",
                "libnvrtc.so.12",
                "libnvrtc.so.11.2",
                "libnvrtc.so",
            ],
        )?;
        let version = (|| -> Result<(String, String)> {
            let f: unsafe extern "C" fn(*mut c_int, *mut c_int) -> c_int =
                sym!(lib.lib, "nvrtcVersion");
            let (mut ma, mut mi) = (0, 0);
            // SAFETY: writes two ints.
            unsafe { f(&mut ma, &mut mi) };
            Ok((format!("{ma}.{mi}"), file_of(f as *const c_void, &lib.path)))
        })()
        .map_err(GpuError::Failed)?;
        Ok(Nvrtc {
            path: version.1,
            version: version.0,
            lib,
        })
    }

    /// Compile `src` for compute capability `cc` (e.g. 90): a cubin for
    /// `sm_90` (the device's own instructions, no JIT at load), or PTX for
    /// `compute_90` if this NVRTC cannot emit that cubin.
    pub fn compile(&self, src: &str, name: &str, cc: i32) -> Result<Image> {
        match self.compile_as(src, name, &format!("--gpu-architecture=sm_{cc}"), true) {
            Ok(img) => Ok(img),
            Err(cubin_err) => self
                .compile_as(
                    src,
                    name,
                    &format!("--gpu-architecture=compute_{cc}"),
                    false,
                )
                .map_err(|e| anyhow!("{e:#} (cubin for sm_{cc} also failed: {cubin_err:#})")),
        }
    }

    fn compile_as(&self, src: &str, name: &str, arch: &str, cubin: bool) -> Result<Image> {
        let l = &self.lib.lib;
        let create: unsafe extern "C" fn(
            *mut Prog,
            *const c_char,
            *const c_char,
            c_int,
            *const *const c_char,
            *const *const c_char,
        ) -> c_int = sym!(l, "nvrtcCreateProgram");
        let compile: unsafe extern "C" fn(Prog, c_int, *const *const c_char) -> c_int =
            sym!(l, "nvrtcCompileProgram");
        let log_size: unsafe extern "C" fn(Prog, *mut usize) -> c_int =
            sym!(l, "nvrtcGetProgramLogSize");
        let get_log: unsafe extern "C" fn(Prog, *mut c_char) -> c_int =
            sym!(l, "nvrtcGetProgramLog");
        let destroy: unsafe extern "C" fn(*mut Prog) -> c_int = sym!(l, "nvrtcDestroyProgram");
        let (size_fn, get_fn): (
            unsafe extern "C" fn(Prog, *mut usize) -> c_int,
            unsafe extern "C" fn(Prog, *mut c_char) -> c_int,
        ) = if cubin {
            (sym!(l, "nvrtcGetCUBINSize"), sym!(l, "nvrtcGetCUBIN"))
        } else {
            (sym!(l, "nvrtcGetPTXSize"), sym!(l, "nvrtcGetPTX"))
        };
        let csrc = CString::new(src)?;
        let cname = CString::new(name)?;
        let opts: Vec<CString> = [arch, "--std=c++17", "-default-device"]
            .iter()
            .map(|o| CString::new(*o))
            .collect::<Result<_, _>>()?;
        let opt_ptrs: Vec<*const c_char> = opts.iter().map(|o| o.as_ptr()).collect();
        let mut prog: Prog = std::ptr::null_mut();
        // SAFETY: valid C strings; no headers.
        let rc = unsafe {
            create(
                &mut prog,
                csrc.as_ptr(),
                cname.as_ptr(),
                0,
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        if rc != 0 {
            bail!("nvrtcCreateProgram failed ({rc})");
        }
        let result = (|| -> Result<Image> {
            // SAFETY: a created program and valid option strings.
            let rc = unsafe { compile(prog, opt_ptrs.len() as c_int, opt_ptrs.as_ptr()) };
            if rc != 0 {
                let mut n = 0usize;
                // SAFETY: a created program; the buffer holds the reported size.
                let log = unsafe {
                    log_size(prog, &mut n);
                    let mut buf = vec![0u8; n.max(1)];
                    get_log(prog, buf.as_mut_ptr() as *mut c_char);
                    String::from_utf8_lossy(&buf)
                        .trim_end_matches('\0')
                        .trim()
                        .to_string()
                };
                bail!("NVRTC could not compile {name} ({arch}): error {rc}: {log}");
            }
            let mut n = 0usize;
            // SAFETY: a compiled program.
            if unsafe { size_fn(prog, &mut n) } != 0 || n == 0 {
                bail!("NVRTC produced no code for {name} ({arch})");
            }
            let mut bytes = vec![0u8; n];
            // SAFETY: the buffer holds the reported size.
            if unsafe { get_fn(prog, bytes.as_mut_ptr() as *mut c_char) } != 0 {
                bail!("NVRTC could not return the code of {name}");
            }
            Ok(Image {
                bytes,
                kind: if cubin { "cubin" } else { "ptx" },
            })
        })();
        // SAFETY: destroys the program created above, once.
        unsafe { destroy(&mut prog) };
        result
    }
}
