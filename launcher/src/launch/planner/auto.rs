//! `--mode auto`, the default when an image is given: hybrun chooses between
//! hybrid and bind mode, so that a user need not know the modes to get the
//! fast, correct launch.
//!
//! Bind mode when both hold:
//! - the gate says bind mode can run (the image's MPI ABI, its glibc against
//!   the host's MPI libraries, the PMI): planned in full as a trial, so every
//!   rule bind mode has is asked, not a summary of them;
//! - the host's MPI is the one that knows the fabric: the site names a fast
//!   fabric (`[fabric] kind`), or the image's MPI has no fast path of its own
//!   (no libfabric, PSM2, verbs or UCX with an InfiniBand transport).
//!
//! Otherwise hybrid: the image's own MPI, which needs nothing of the host's
//! libraries. The choice and its reason go into the plan's notes (printed by
//! `--dry-run`, kept in the launch record), and the per-rank wrapper passes
//! the chosen mode on, so every rank runs what the front end chose.

use hybrun_core::vocab::Mode;

use super::{Notes, RankContext, rank};
use crate::image::detect;
use crate::launch::cache;
use crate::launch::gate::LazyImage;

/// The mode `auto` chooses for `ctx` (whose `mode` is ignored), with a note
/// saying which and why.
pub(super) fn choose(ctx: &RankContext<'_>, notes: &mut Notes) -> Mode {
    let (mode, why) = decide(ctx);
    notes.notes.push(format!("mode {mode} (auto): {why}"));
    mode
}

fn decide(ctx: &RankContext<'_>) -> (Mode, String) {
    let has_library = ctx
        .profile
        .as_ref()
        .is_some_and(|(_, p)| p.library.is_some());
    if !has_library {
        return (
            Mode::Hybrid,
            "bind mode needs the host MPI library, and no MPI profile names one \
             (--mpi-profile, [mpi.NAME] library in the site file)"
                .into(),
        );
    }
    let trial_ctx = RankContext {
        mode: Mode::Bind,
        ..*ctx
    };
    // A trial: its notes and warnings are not the launch's.
    let mut trial = Notes::default();
    let parts = match rank::plan(&trial_ctx, &mut trial) {
        Ok(parts) => parts,
        Err(e) => return (Mode::Hybrid, format!("bind mode cannot run here: {e}")),
    };
    if let Some(gate) = &trial.gate
        && !gate.overridden.is_empty()
    {
        return (
            Mode::Hybrid,
            format!(
                "bind mode only runs past the gate with --force ({})",
                gate.overridden.join("; ")
            ),
        );
    }
    if let Some(kind) = ctx.site.config.fabric.kind.filter(|k| k.is_fast()) {
        return (
            Mode::Bind,
            format!(
                "the gate says bind mode can run, and the site's fabric is {kind}: the host's \
                 MPI drives it"
            ),
        );
    }
    let Some(image) = parts.image else {
        return (Mode::Hybrid, "no image to judge".into());
    };
    let lazy = LazyImage::new(&image.canonical);
    // Whether the image's MPI has a fast path of its own, cached by the
    // image's identity like the gate's judgement (auto is every launch's
    // default: reading the image's listing each time costs ~10 ms).
    const KIND: &str = "image-fabric";
    let cache_dir = ctx.host.cache_dir();
    let key = cache_dir
        .as_ref()
        .and_then(|_| lazy.key(KIND))
        .map(|k| k.finish());
    let contents = cache::through(cache_dir.as_deref(), KIND, key.as_deref(), || {
        Ok::<_, std::convert::Infallible>(match lazy.get() {
            Ok(opened) => detect::detect(opened)
                .map(|c| c.fabric.has_fast_path())
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        })
    })
    .unwrap_or_else(|never| match never {});
    match contents {
        Ok(false) => (
            Mode::Bind,
            "the gate says bind mode can run, and the image's MPI has no fast-network \
             library of its own (no libfabric, PSM2, verbs or UCX with InfiniBand): the \
             host's MPI brings the fabric"
                .into(),
        ),
        Ok(true) => (
            Mode::Hybrid,
            "the site names no fast fabric ([fabric] kind) and the image's MPI has its own \
             fast-network libraries: the image's MPI, which needs nothing of the host's"
                .into(),
        ),
        Err(e) => (
            Mode::Hybrid,
            format!("the image's fabric libraries could not be read ({e})"),
        ),
    }
}
