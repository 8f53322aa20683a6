//! The per-mode rules: what native, hybrid, inside and bind mode need of the
//! image and of this host, each finding a [`super::Reason`] of the mode's verdict.

use std::path::Path;

use super::facts::{GlibcRequirement, HostFacts, HostMpi, glibc_requirement};
use super::pmi::pmi_reason;
use super::{Status, Verdict};
use crate::image::abi::{self, AbiMode};
use crate::image::detect::{Contents, MpiLibrary, base_name};
use crate::site::fabric::FabricKind;

fn host_mpi_list(host: &HostFacts) -> String {
    host.mpi
        .iter()
        .map(|m| m.library.describe())
        .collect::<Vec<_>>()
        .join(", ")
}

fn no_host_mpi(v: &mut Verdict, why: &str) {
    v.add(
        Status::Fail,
        format!(
            "no MPI library found on this host (ldconfig -p, mpicc -show, pkg-config): {why}; load \
             the site's MPI or pass --host-mpi PATH_TO_LIBMPI"
        ),
    );
}

/// Native mode runs a host build of the program with the host's MPI.
pub fn native(v: &mut Verdict, image_mpi: Option<&MpiLibrary>, host: &HostFacts) {
    let Some(im) = image_mpi else {
        v.add(
            Status::Ok,
            "the image has no MPI library: a native run needs no host MPI, only a host build of \
             the program",
        );
        return;
    };
    if host.mpi.is_empty() {
        no_host_mpi(v, "native runs use the host's MPI");
        return;
    }
    match host.mpi.iter().find(|h| h.library.abi == im.abi) {
        Some(h) => v.add(
            Status::Ok,
            format!(
                "host MPI {} has the ABI of the image's {} (native runs use a host build of the app)",
                h.library.describe(),
                im.describe()
            ),
        ),
        None => v.add(
            Status::Warn,
            format!(
                "the image's app uses {} but the host MPI is {}: a native run needs the app \
                 rebuilt against the host MPI",
                im.describe(),
                host_mpi_list(host)
            ),
        ),
    }
}

/// The inside mode runs the image's own mpiexec on one node: it needs an MPI in
/// the image and nothing of the host's.
pub fn inside(v: &mut Verdict, image_mpi: Option<&MpiLibrary>) {
    match image_mpi {
        Some(im) => v.add(
            Status::Ok,
            format!(
                "the image has {} at {}: inside mode runs its own mpiexec, on one node",
                im.describe(),
                im.path
            ),
        ),
        None => v.add(
            Status::Fail,
            "no MPI library in the image: inside mode runs the image's own mpiexec and MPI",
        ),
    }
}

/// Hybrid mode runs the image's MPI under srun: it needs an MPI in the image, a
/// PMI plugin it speaks, and fabric libraries to be fast across nodes.
pub fn hybrid(
    v: &mut Verdict,
    contents: &Contents,
    image_mpi: Option<&MpiLibrary>,
    host: &HostFacts,
) {
    let Some(im) = image_mpi else {
        v.add(
            Status::Fail,
            "no MPI library in the image: hybrid mode runs the container's own MPI (libmpi.so.N, \
             libmpich.so.N or libmpi_abi.so), and this image has none",
        );
        return;
    };
    v.add(
        Status::Ok,
        format!("the image has {} at {}", im.describe(), im.path),
    );
    pmi_reason(v, im, "the image's", &host.srun);
    if let Some(kind) = host.site_fabric.filter(|k| k.is_fast()) {
        site_fabric_reason(v, contents, kind);
    } else if contents.fabric.has_fast_path() {
        v.add(
            Status::Ok,
            format!(
                "fabric libraries in the image: {}",
                contents.fabric.describe()
            ),
        );
    } else {
        let devices = if host.fabric_devices.is_empty() {
            String::new()
        } else {
            format!(" (this host has {})", host.fabric_devices.join(", "))
        };
        v.add(
            Status::Warn,
            format!(
                "the container's MPI cannot use the fast fabric across nodes: the image has no \
                 libfabric, UCX InfiniBand transport, PSM2 or verbs library{devices}; inter-node \
                 traffic falls back to TCP (use bind mode, or add the fabric libraries to the image)"
            ),
        );
    }
}

/// On a site with a fast fabric, the container's own MPI must drive that one:
/// a UCX-only image on Omni-Path has no fast path at all (and the fabric guard
/// makes that an error at run time instead of a slow job).
fn site_fabric_reason(v: &mut Verdict, contents: &Contents, kind: FabricKind) {
    match contents.fabric.serves(kind) {
        Ok((true, by)) => v.add(
            Status::Ok,
            format!("the site's {kind} fabric: the image's MPI can drive it ({by})"),
        ),
        Ok((false, why)) => v.add(
            Status::Warn,
            format!("the site's {kind} fabric: maybe, {why}"),
        ),
        Err(has) => v.add(
            Status::Fail,
            format!(
                "the site's fabric is {kind} and the image's MPI cannot drive it ({has}): \
                 use bind mode (the host's MPI and fabric libraries), or an image with \
                 {kind} support"
            ),
        ),
    }
}

/// The first host MPI whose ABI can replace the image's (Sarus's rules in
/// `abi_mode`); else a FAIL reason naming why each was refused.
fn replacing_mpi(
    v: &mut Verdict,
    im: &MpiLibrary,
    host: &HostFacts,
    abi_mode: AbiMode,
) -> Option<HostMpi> {
    let Some(image_id) = im.abi_id() else {
        v.add(
            Status::Fail,
            format!("cannot tell the ABI of the image's {}", im.path),
        );
        return None;
    };
    let mut refusals = Vec::new();
    for h in &host.mpi {
        let Some(host_id) = h.library.abi_id() else {
            continue;
        };
        match abi::compatible(&image_id, &host_id, abi_mode) {
            Ok(()) => return Some(h.clone()),
            Err(why) => refusals.push((h, why)),
        }
    }
    let advice = "use hybrid mode or a matching host MPI profile (--host-mpi)";
    let mode_note = |h: &HostMpi| {
        if h.library.abi == im.abi {
            format!(" in abi mode {}", abi_mode.name())
        } else {
            String::new()
        }
    };
    let text = if let [(h, why)] = refusals.as_slice() {
        format!(
            "image has {} but the host MPI is {}: {why}{}; {advice}",
            im.describe(),
            h.library.describe(),
            mode_note(h)
        )
    } else {
        let detail = refusals
            .iter()
            .map(|(h, why)| format!("{}: {why}{}", h.library.describe(), mode_note(h)))
            .collect::<Vec<_>>()
            .join("; ");
        format!(
            "image has {} but no host MPI can replace it ({detail}); {advice}",
            im.describe()
        )
    };
    v.add(Status::Fail, text);
    None
}

/// The host libraries run on the image's glibc: it must be glibc, and at least
/// as new as the closure needs.
fn glibc_rule(v: &mut Verdict, contents: &Contents, req: &GlibcRequirement) {
    match (&contents.glibc, &contents.musl) {
        (None, Some(musl)) => v.add(
            Status::Fail,
            format!("the image uses musl ({musl}), not glibc: host MPI libraries built for glibc cannot load"),
        ),
        (None, None) => v.add(
            Status::Fail,
            "no glibc (libc.so.6) in the image: the host MPI libraries need one",
        ),
        (Some(g), _) => match (&g.version, &req.max) {
            (Some(have), Some(need)) if need > have => v.add(
                Status::Fail,
                format!(
                    "host libraries need GLIBC_{need} ({}), image has glibc {}: bind mode cannot \
                     run this image here; use hybrid mode or an image with glibc >= {need}",
                    req.needed_by.as_deref().unwrap_or("?"),
                    g.label()
                ),
            ),
            (Some(_), Some(need)) => v.add(
                Status::Ok,
                format!(
                    "host libraries need GLIBC_{need} ({}; {} files read), image has glibc {}",
                    req.needed_by.as_deref().unwrap_or("?"),
                    req.files,
                    g.label()
                ),
            ),
            (None, _) => v.add(
                Status::Warn,
                format!("cannot tell the glibc version of the image's {}", g.path),
            ),
            (Some(_), None) => v.add(
                Status::Ok,
                format!(
                    "the host MPI libraries need no versioned glibc symbols; image has glibc {}",
                    g.label()
                ),
            ),
        },
    }
}

/// Bind mode replaces the image's MPI with the host's and its closure: same ABI,
/// a new enough glibc in the image, every library found, a PMI plugin. Returns
/// the host MPI chosen and what its closure needs from glibc.
pub fn bind(
    v: &mut Verdict,
    contents: &Contents,
    image_mpi: Option<&MpiLibrary>,
    host: &HostFacts,
    abi_mode: AbiMode,
) -> (Option<HostMpi>, Option<GlibcRequirement>) {
    let Some(im) = image_mpi else {
        v.add(
            Status::Fail,
            "no MPI library in the image: bind mode replaces the image's MPI with the host's, and \
             the image has none for its programs to link",
        );
        return (None, None);
    };
    if host.mpi.is_empty() {
        no_host_mpi(v, "bind mode binds the host's MPI into the container");
        return (None, None);
    }
    let Some(chosen) = replacing_mpi(v, im, host, abi_mode) else {
        return (None, None);
    };
    v.add(
        Status::Ok,
        format!(
            "host MPI {} can replace the image's {} ({} mode){}",
            chosen.library.describe(),
            im.describe(),
            abi_mode.name(),
            if host.mpi.len() > 1 {
                format!(
                    "; the host has {} MPI libraries: pin this one with --host-mpi {}",
                    host.mpi.len(),
                    chosen.library.path
                )
            } else {
                String::new()
            }
        ),
    );
    let req = glibc_requirement(&host.loader, Path::new(&chosen.library.file));
    glibc_rule(v, contents, &req);
    if !req.unresolved.is_empty() {
        v.add(
            Status::Warn,
            format!(
                "host libraries not found for {}: {} (the bind bundle would miss them)",
                base_name(&chosen.library.file),
                req.unresolved.join(", ")
            ),
        );
    }
    pmi_reason(v, &chosen.library, "the host's", &host.srun);
    (Some(chosen), Some(req))
}
