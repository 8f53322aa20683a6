//! The CUDA rule of the container modes: the image's CUDA runtime needs a host
//! NVIDIA driver at least as new as NVIDIA's table says.

use super::Status;
use crate::host::driver::Driver;
use crate::image::detect::Contents;

/// Minimum Linux driver for a CUDA runtime major.minor.
///
/// CUDA >= 11 uses minor-version compatibility: any driver of the major's family
/// runs every minor release. Source: NVIDIA, "CUDA Compatibility", Minor Version
/// Compatibility table (CUDA 13.x >= 580, 12.x >= 525 [525.60.13], 11.x >= 450
/// [450.80.02]) and the CUDA Toolkit Release Notes' driver table for 10.x (10.2 >=
/// 440.33, 10.1 >= 418.39, 10.0 >= 410.48).
pub fn cuda_min_driver(major: u32, minor: u32) -> Option<&'static str> {
    match (major, minor) {
        (13.., _) => Some("580.65.06"),
        (12, _) => Some("525.60.13"),
        (11, 0) => Some("450.36.06"),
        (11, _) => Some("450.80.02"),
        (10, 2) => Some("440.33"),
        (10, 1) => Some("418.39"),
        (10, 0) => Some("410.48"),
        _ => None,
    }
}

fn version_numbers(v: &str) -> Vec<u32> {
    v.split('.').map(|p| p.parse().unwrap_or(0)).collect()
}

/// The CUDA runtime rule for a container mode.
pub fn cuda_reason(contents: &Contents, driver: Option<&Driver>) -> Option<(Status, String)> {
    let cuda = contents.cuda.as_ref()?;
    let version = cuda.version.as_deref().unwrap_or("of unknown version");
    let Some(driver) = driver else {
        return Some((
            Status::Warn,
            format!(
                "the image has the CUDA runtime {version} but this host has no NVIDIA driver: GPU \
                 code fails here (check on a GPU node)"
            ),
        ));
    };
    let (Some(major), Some(minor)) = (cuda.major, cuda.minor) else {
        return Some((
            Status::Warn,
            format!("cannot tell the CUDA runtime version of {}", cuda.file),
        ));
    };
    let Some(min) = cuda_min_driver(major, minor) else {
        return Some((
            Status::Warn,
            format!(
                "no driver table entry for CUDA {major}.{minor}; cannot check driver {}",
                driver.version
            ),
        ));
    };
    if version_numbers(&driver.version) >= version_numbers(min) {
        Some((
            Status::Ok,
            format!(
                "NVIDIA driver {} runs the image's CUDA {major}.{minor} runtime (needs >= {min})",
                driver.version
            ),
        ))
    } else {
        Some((
            Status::Fail,
            format!(
                "the image's CUDA {major}.{minor} runtime needs NVIDIA driver >= {min}, this host has \
                 {}: use an image built with an older CUDA or a node with a newer driver",
                driver.version
            ),
        ))
    }
}
