//! MPI ABI rules: which MPI libraries can stand in for one another when the host's
//! MPI is bound into a container ("bind mode").
//!
//! Three ABIs exist in practice:
//! - the MPICH ABI (`libmpi.so.12` / `libmpich.so.12`): MPICH >= 3.1, Intel MPI >= 5,
//!   Cray MPICH, MVAPICH2 all keep it (the "MPICH ABI compatibility initiative"), so
//!   an app linked with any of them runs with any other;
//! - Open MPI (`libmpi.so.40` across 4.x and 5.x; 3.x used `.so.40` too, 2.x `.so.20`);
//! - the MPI 5.0 standard ABI (`libmpi_abi.so`), implementation-independent.
//!
//! Within one ABI the library file versions decide, as in Sarus's MPI hook
//! (`mpi_compatibility_type`): `major` needs equal SONAME majors, `full` also needs the
//! host's minor >= the container's, `strict` needs the same major.minor.patch.

use crate::elf::{LibVersion, split_so_name};
use hybrun_core::vocab::MpiAbi;

/// The ABI an MPI library's name (file name or SONAME) says it implements; None
/// when the name is not an MPI C library (libmpi_cxx, libmpifort, ...).
///
/// `libmpi.so.12` is the MPICH ABI; every other `libmpi.so.N` is Open MPI's
/// (40 for 3.x-5.x, 20 for 2.x, 12 was never used by Open MPI).
pub fn family_from_name(name: &str) -> Option<MpiAbi> {
    let (stem, version) = split_so_name(name)?;
    match stem {
        "libmpich" => Some(MpiAbi::Mpich),
        "libmpi_abi" => Some(MpiAbi::Standard),
        "libmpi" => match version {
            Some(v) if v.major == 12 => Some(MpiAbi::Mpich),
            Some(_) => Some(MpiAbi::Openmpi),
            // The bare development link says nothing by itself.
            None => None,
        },
        _ => None,
    }
}

hybrun_core::named_enum! {
    /// How strictly library versions must agree within one ABI (Sarus's modes).
    pub enum AbiMode ("ABI mode") {
        /// SONAME majors equal (libmpi.so.12 == libmpich.so.12.x.y).
        Major = "major",
        /// Majors equal and host minor >= container minor.
        Full = "full",
        /// major.minor.patch equal.
        Strict = "strict",
    }
}

/// What a compatibility check needs to know about one MPI library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AbiId {
    pub family: MpiAbi,
    /// From the real file's name (after symlinks), else from the SONAME.
    pub version: Option<LibVersion>,
}

/// Whether a container app linked against `container`'s MPI runs with `host`'s bound
/// in under `mode`; Err holds the reason, phrased for the user.
pub fn compatible(container: &AbiId, host: &AbiId, mode: AbiMode) -> Result<(), String> {
    if container.family != host.family {
        return Err(format!(
            "different ABI ({} in the image, {} on the host)",
            container.family.label(),
            host.family.label()
        ));
    }
    let (Some(c), Some(h)) = (container.version, host.version) else {
        // The standard ABI's bare libmpi_abi.so carries no number: one ABI by definition.
        return if container.family == MpiAbi::Standard || mode == AbiMode::Major {
            Ok(())
        } else {
            Err(format!(
                "cannot compare library versions in {} mode: a library file name carries no \
                 version",
                mode.name()
            ))
        };
    };
    if c.major != h.major {
        return Err(format!(
            "SONAME major differs (image {}, host {})",
            c.major, h.major
        ));
    }
    match mode {
        AbiMode::Major => Ok(()),
        AbiMode::Full => match (c.minor, h.minor) {
            (Some(cm), Some(hm)) if hm >= cm => Ok(()),
            (Some(cm), Some(hm)) => Err(format!(
                "host library {h} is older than the image's {c} (full mode needs host minor {hm} \
                 >= image minor {cm})"
            )),
            (None, _) => Ok(()),
            (Some(_), None) => Err(format!(
                "host library version {h} has no minor number to compare with the image's {c}"
            )),
        },
        AbiMode::Strict => {
            if c == h {
                Ok(())
            } else {
                Err(format!(
                    "library versions differ (image {c}, host {h}; strict mode needs them equal)"
                ))
            }
        }
    }
}

/// A dotted release version ("4.0.2", "4.1.4rc1" -> "4.1.4rc1") at the start of `s`
/// (after an optional 'v'); None unless it has at least major.minor.
pub fn release_version(s: &str) -> Option<&str> {
    let body = s.strip_prefix('v').unwrap_or(s);
    let end = body
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
        .unwrap_or(body.len());
    let candidate = body[..end].trim_end_matches('.');
    let (major, rest) = candidate.split_once('.')?;
    if major.is_empty() || !major.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !rest.bytes().next()?.is_ascii_digit() {
        return None;
    }
    Some(candidate)
}

/// Open MPI's release ("v4.1.4") among `.rodata` strings: a string that is only a
/// 'v'-prefixed version (Open MPI stores OMPI_VERSION that way next to "Open MPI").
pub fn open_mpi_release<'a>(strings: impl IntoIterator<Item = &'a str>) -> Option<String> {
    strings
        .into_iter()
        .find(|s| s.starts_with('v') && release_version(s).is_some_and(|v| v.len() + 1 == s.len()))
        .map(|s| s[1..].to_owned())
}

/// A release version that is the whole string ("1.13.1"): UCX and PMIx keep theirs so.
pub fn bare_release<'a>(strings: impl IntoIterator<Item = &'a str>) -> Option<String> {
    strings
        .into_iter()
        .find(|s| {
            let parts: Vec<&str> = s.split('.').collect();
            parts.len() == 3
                && parts
                    .iter()
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split() {
        let v = split_so_name("libmpich.so.12.2.2").unwrap();
        assert_eq!(v.0, "libmpich");
        assert_eq!(v.1.unwrap().to_string(), "12.2.2");
        assert_eq!(split_so_name("libmpi_abi.so"), Some(("libmpi_abi", None)));
        assert_eq!(split_so_name("libmpi.so.40.30.4.1"), None);
        assert_eq!(split_so_name("libmpi.so.x"), None);
    }

    #[test]
    fn release_versions() {
        assert_eq!(release_version("4.0.2"), Some("4.0.2"));
        assert_eq!(release_version("v4.1.4"), Some("4.1.4"));
        assert_eq!(release_version("4.2.2rc2 (x)"), Some("4.2.2rc2"));
        assert_eq!(release_version("abc"), None);
        assert_eq!(release_version("127.0.0.1/32"), Some("127.0.0.1"));
        assert_eq!(
            open_mpi_release(["x", "v4.1.4", "Open MPI"]),
            Some("4.1.4".into())
        );
        assert_eq!(bare_release(["1.13", "1.13.1"]), Some("1.13.1".into()));
    }
}
