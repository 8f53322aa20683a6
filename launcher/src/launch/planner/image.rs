//! The rank's image: opened once (policy checks on the opened file), refused
//! for a runtime that cannot run its form, checked against the site's allowed
//! directory where the runtime has one, and judged by the compatibility gate.

use std::path::Path;

use hybrun_core::vocab::Mode;

use super::{Notes, RankContext};
use crate::launch::LaunchError;
use crate::launch::gate::{self, GateInput, LazyImage};
use crate::launch::plan::Runtime;
use crate::launch::policy::{self, CheckedImage, ImageKind};
use crate::store::{Policy, Recheck, Store, StoreError};

/// The image the request names, checked for the mode and runtime: None for
/// native mode (which refuses an image), an error when a container mode has
/// none.
pub(super) fn checked(
    ctx: &RankContext<'_>,
    runtime: &Runtime,
    notes: &mut Notes,
) -> Result<Option<CheckedImage>, LaunchError> {
    match (ctx.mode, &ctx.req.image) {
        (Mode::Native, Some(image)) => Err(LaunchError::Refused {
            message: format!(
                "--mode native runs without a container, but an image was given ({}): drop \
                 it, or choose --mode hybrid|bind|inside",
                image.display()
            ),
        }),
        (Mode::Native, None) => Ok(None),
        (_, None) => Err(LaunchError::NoImage {
            runtime: runtime.kind(),
        }),
        (_, Some(path)) => check_image(ctx, path, runtime, notes).map(Some),
    }
}

/// The compatibility gate (`hybrun::image::check`), before anything is
/// prepared. Bind mode without a profile library is refused by bind mode
/// itself, with the key to set.
pub(super) fn gate(
    ctx: &RankContext<'_>,
    contents: Option<&LazyImage<'_>>,
    notes: &mut Notes,
) -> Result<(), LaunchError> {
    let host_library = ctx
        .profile
        .as_ref()
        .and_then(|(_, p)| p.library.as_ref().map(|l| l.to_path_buf()));
    let bind_unjudgeable = ctx.mode == Mode::Bind && host_library.is_none();
    let Some(lazy) = contents.filter(|_| !ctx.req.skip_gate && !bind_unjudgeable) else {
        return Ok(());
    };
    let cache_dir = ctx.host.cache_dir();
    let input = GateInput {
        mode: ctx.mode,
        image: lazy,
        host_library: host_library.as_deref(),
        plugin: ctx.plugin,
        launcher: ctx.launcher,
        site_fabric: ctx.site.config.fabric.kind,
        force: ctx.req.force,
        cache_dir: cache_dir.as_deref(),
    };
    if let Some((record, warnings)) = gate::gate(&input)? {
        notes.warnings.extend(warnings);
        notes.notes.extend(record.note.clone());
        notes.gate = Some(record);
    }
    Ok(())
}

fn check_image(
    ctx: &RankContext<'_>,
    path: &Path,
    runtime: &Runtime,
    notes: &mut Notes,
) -> Result<CheckedImage, LaunchError> {
    let image = policy::open_image(path)?;
    if matches!(runtime, Runtime::Charliecloud { .. }) && image.kind == ImageKind::File {
        return Err(LaunchError::Refused {
            message: format!(
                "image {}: ch-run runs directory, SquashFS and SIF images, not this file; use \
                 the directory, .sqfs or .sif form of the image",
                path.display(),
            ),
        });
    }
    if runtime.has_image_policy() {
        admit(ctx, &image, notes)?;
    }
    Ok(image)
}

/// The site's image policy (Singularity/Apptainer's allowed directory): the
/// image must be one `hybrun image cp` admitted there, unchanged (see
/// [`crate::store::admission`]). `hybrun run` and a stand-alone `hybrun exec`
/// may re-hash an image whose file identity changed; the ranks of a job `hybrun
/// run` checked (`--skip-gate`) may not.
fn admit(
    ctx: &RankContext<'_>,
    image: &CheckedImage,
    notes: &mut Notes,
) -> Result<(), LaunchError> {
    let policy = match Policy::from_site(ctx.site, None) {
        Ok(policy) => policy,
        Err(StoreError::NoDirectory { .. }) => {
            notes.notes.push(
                "image policy: no allowed directory configured ([images] dir, \
                 $SINGULARITY_ALLOWED_DIR): not checked"
                    .into(),
            );
            return Ok(());
        }
        Err(e) => return Err(e.into()),
    };
    let refuse = |why: String| LaunchError::ImageNotAllowed {
        image: image.given.display().to_string(),
        allowed: policy.dir.display().to_string(),
        from: policy.dir_from.clone(),
        why,
    };
    let store = Store::open_to_read(policy.clone()).map_err(|e| refuse(e.to_string()))?;
    let recheck = if ctx.req.skip_gate {
        Recheck::IdentityOnly
    } else {
        Recheck::Rehash
    };
    let admission = store
        .admits(&image.canonical, &image.file, recheck)
        .map_err(|rule| {
            let mut why = rule.to_string();
            if image.canonical != image.given {
                why = format!("{why}; it resolves to {}", image.canonical.display());
            }
            refuse(why)
        })?;
    notes.notes.push(format!(
        "image policy: {} was admitted to {} (from {}) with sha256 {}{}",
        admission.name,
        policy.dir.display(),
        policy.dir_from,
        admission.entry.sha256,
        if admission.rehashed {
            "; its file changed identity, its content was hashed again and is unchanged"
        } else {
            ""
        }
    ));
    Ok(())
}
