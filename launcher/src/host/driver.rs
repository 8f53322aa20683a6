//! The host's NVIDIA driver: the kernel module's version from
//! `/proc/driver/nvidia/version`, else (a container without `/proc/driver`) the
//! version in libcuda's file name; and the GPU device files `/dev/nvidiaN`.

use std::fs;
use std::path::{Path, PathBuf};

use super::list_dir;
use super::loader::STANDARD_LIB_DIRS;

/// Where the kernel module tells its version.
pub const PROC_VERSION: &str = "/proc/driver/nvidia/version";

/// The host's NVIDIA driver.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Driver {
    /// "550.54.15".
    pub version: String,
    /// Where it was read ("/proc/driver/nvidia/version" or the libcuda file).
    pub source: String,
}

/// The driver version in `/proc/driver/nvidia/version` text
/// ("NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar ...").
pub fn parse_nvidia_version(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("NVRM version:"))?;
    line.split_whitespace()
        .find(|w| {
            let parts: Vec<&str> = w.split('.').collect();
            parts.len() >= 2
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_owned)
}

/// The kernel module's version, from its `version` file.
pub fn module_version(proc_version: &Path) -> Option<String> {
    parse_nvidia_version(&fs::read_to_string(proc_version).ok()?)
}

/// The driver: the kernel module's version file, else libcuda.so.1's real file
/// name (libcuda.so.550.54.15) in `lib_dirs`.
pub fn driver_at(proc_version: &Path, lib_dirs: &[PathBuf]) -> Option<Driver> {
    if let Some(version) = module_version(proc_version) {
        return Some(Driver {
            version,
            source: proc_version.display().to_string(),
        });
    }
    for dir in lib_dirs {
        let Ok(real) = fs::canonicalize(dir.join("libcuda.so.1")) else {
            continue;
        };
        let name = real.file_name()?.to_string_lossy().into_owned();
        if let Some(version) = name.strip_prefix("libcuda.so.") {
            if version.contains('.') {
                return Some(Driver {
                    version: version.to_owned(),
                    source: real.display().to_string(),
                });
            }
        }
    }
    None
}

/// This host's NVIDIA driver.
pub fn nvidia_driver() -> Option<Driver> {
    let dirs: Vec<PathBuf> = STANDARD_LIB_DIRS.iter().map(PathBuf::from).collect();
    driver_at(Path::new(PROC_VERSION), &dirs)
}

/// The GPU device files in `dev` (`nvidia0`, `nvidia1`; not `nvidiactl`), as
/// paths under it, sorted.
pub fn device_files(dev: &Path) -> Vec<String> {
    list_dir(dev, |n| {
        n.strip_prefix("nvidia")
            .is_some_and(|rest| !rest.is_empty() && rest.bytes().all(|b| b.is_ascii_digit()))
    })
    .into_iter()
    .map(|n| dev.join(n).display().to_string())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_versions_parse() {
        let text = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  550.54.15  Tue Mar  5 22:23:56 UTC 2024\nGCC version:  gcc version 12.2.0\n";
        assert_eq!(parse_nvidia_version(text).as_deref(), Some("550.54.15"));
        let open =
            "NVRM version: NVIDIA UNIX Open Kernel Module for x86_64  570.124.06  Release Build\n";
        assert_eq!(parse_nvidia_version(open).as_deref(), Some("570.124.06"));
        assert_eq!(parse_nvidia_version("GCC version: 12.2.0\n"), None);
    }

    #[test]
    fn driver_from_proc_else_libcuda() {
        let tmp = tempfile::tempdir().expect("tmp");
        let proc_version = tmp.path().join("proc/driver/nvidia/version");
        let lib = tmp.path().join("lib");
        std::fs::create_dir_all(&lib).expect("mkdir");
        assert_eq!(driver_at(&proc_version, std::slice::from_ref(&lib)), None);
        std::fs::write(lib.join("libcuda.so.550.54.15"), b"").expect("write");
        std::os::unix::fs::symlink("libcuda.so.550.54.15", lib.join("libcuda.so.1")).expect("link");
        let d = driver_at(&proc_version, std::slice::from_ref(&lib)).expect("from libcuda");
        assert_eq!(d.version, "550.54.15");
        assert!(
            d.source.ends_with("lib/libcuda.so.550.54.15"),
            "{}",
            d.source
        );
        std::fs::create_dir_all(proc_version.parent().expect("dir")).expect("mkdir");
        std::fs::write(
            &proc_version,
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  560.35.03  Fri Aug\n",
        )
        .expect("write");
        let d = driver_at(&proc_version, &[lib]).expect("from proc");
        assert_eq!(
            (d.version.as_str(), d.source),
            ("560.35.03", proc_version.display().to_string())
        );
    }

    #[test]
    fn gpu_device_files() {
        let tmp = tempfile::tempdir().expect("tmp");
        for n in ["nvidia1", "nvidia0", "nvidiactl", "nvidia-uvm", "null"] {
            std::fs::write(tmp.path().join(n), b"").expect("write");
        }
        let d = tmp.path().display();
        assert_eq!(
            device_files(tmp.path()),
            [format!("{d}/nvidia0"), format!("{d}/nvidia1")]
        );
        assert!(device_files(&tmp.path().join("absent")).is_empty());
    }
}
