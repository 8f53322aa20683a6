//! Bind mode: the host MPI's library bundle (the library, the profile's and the
//! fabric's extra libraries, their closure, and the plugin and data
//! directories the MPI loads at run time), its binds for the rank's runtime,
//! and the variables that point the MPI at it in the container.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use hybrun_core::vocab::MpiFlavour;

use super::{Notes, RankContext, site_value, target_in_image};
use crate::launch::LaunchError;
use crate::launch::bind::{self, Bundle, PluginRequest};
use crate::launch::cache;
use crate::launch::gate::LazyImage;
use crate::launch::plan::{Bind, Runtime};
use crate::launch::policy::{CheckedImage, ImageKind};
use crate::site::mpi::{MpiProfile, PluginDir};

/// What bind mode adds to a rank.
pub(super) struct BindMode {
    pub bundle: Bundle,
    pub binds: Vec<Bind>,
    /// LD_LIBRARY_PATH and the plugin directories' variables.
    pub vars: Vec<(String, OsString)>,
}

/// Bind mode's bundle, binds and variables for `runtime`.
pub(super) fn plan(
    ctx: &RankContext<'_>,
    runtime: &Runtime,
    image: Option<&CheckedImage>,
    contents: Option<&LazyImage<'_>>,
    notes: &mut Notes,
) -> Result<BindMode, LaunchError> {
    let (pname, p) = ctx.profile.as_ref().ok_or_else(|| LaunchError::Refused {
        message: "--mode bind binds the host's MPI: pass --mpi-profile NAME (a [mpi.NAME] \
                  profile with `library`)"
            .into(),
    })?;
    let library = p.library.as_ref().ok_or_else(|| {
        site_value(
            ctx.site,
            &format!("[mpi.{pname}] library"),
            "bind mode needs the host MPI library (e.g. /usr/lib/x86_64-linux-gnu/libmpich.so.12)"
                .into(),
        )
    })?;
    // Absolute: the site file's paths are checked as it is read; here, that
    // they exist on this host, each named by its key.
    let mpi_key = |k: &str| format!("[mpi.{pname}] {k}");
    exists(ctx, &mpi_key("library"), library)?;
    for lib in &p.libs {
        exists(ctx, &mpi_key("libs"), lib)?;
    }
    for lib in &ctx.site.config.fabric.libs {
        exists(ctx, "[fabric] libs", lib)?;
    }
    for d in p.plugin_dirs.iter().flatten() {
        exists(ctx, &mpi_key("plugin_dirs"), &d.src)?;
    }
    for d in p.data_dirs.iter().flatten() {
        exists(ctx, &mpi_key("data_dirs"), &d.src)?;
    }
    for d in &ctx.site.config.fabric.plugin_dirs {
        exists(ctx, "[fabric] plugin_dirs", &d.src)?;
    }
    let mut roots = vec![library.to_path_buf()];
    roots.extend(p.libs.iter().map(PathBuf::from));
    roots.extend(ctx.site.config.fabric.libs.iter().map(PathBuf::from));
    let plugins = plugin_requests(ctx, pname, p, library)?;
    let cache = ctx.host.cache_dir();
    let bundle = bind::resolve(&roots, &plugins, cache.as_deref())?;
    let bind_dir = ctx
        .req
        .bind_dir
        .clone()
        .or_else(|| ctx.site.config.runtime.bind_dir.as_ref().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from(bind::DEFAULT_BIND_DIR));
    describe(&bundle, pname, &bind_dir, notes);
    let binds = binds_for(
        ctx,
        runtime,
        image,
        &bundle,
        &bind_dir,
        cache.as_deref(),
        notes,
    )?;
    let mut vars: Vec<(String, OsString)> = vec![(
        "LD_LIBRARY_PATH".into(),
        library_path(runtime, contents, cache.as_deref(), &bind_dir, notes),
    )];
    for (name, path) in bundle.plugin_env(&bind_dir) {
        vars.push((name, path.into_os_string()));
    }
    Ok(BindMode {
        bundle,
        binds,
        vars,
    })
}

/// A path of the site file must exist on the host that launches: else an
/// error naming the key (not a bare "No such file or directory").
fn exists(ctx: &RankContext<'_>, key: &str, path: &Path) -> Result<(), LaunchError> {
    match std::fs::metadata(path) {
        Ok(_) => Ok(()),
        Err(e) => Err(site_value(
            ctx.site,
            key,
            format!(
                "{}: {e} on this host; bind mode binds it into the container: fix the path in \
                 the site file (or remove the entry if this host has no such library)",
                path.display()
            ),
        )),
    }
}

/// The plugin and data directories to bind: the profile's, else (Open MPI)
/// the layout found next to the library, then the fabric's.
fn plugin_requests(
    ctx: &RankContext<'_>,
    pname: &str,
    p: &MpiProfile,
    library: &Path,
) -> Result<Vec<PluginRequest>, LaunchError> {
    let request = |d: &PluginDir, data: bool| PluginRequest {
        host: d.src.to_path_buf(),
        env: d.env.clone(),
        name: d.name.clone(),
        data,
    };
    // The MPI's own plugin and data directories: the profile's, else (Open MPI)
    // its layout found next to the library. Open MPI finds its components,
    // help and parameter files through its install directories, not the library
    // path: without them the host's libmpi.so.40 would load the image's
    // components (or none). See bind.rs.
    let mut plugins: Vec<PluginRequest> = Vec::new();
    let layout = (p.flavour == MpiFlavour::Openmpi
        && (p.plugin_dirs.is_none() || p.data_dirs.is_none()))
    .then(|| bind::openmpi_layout(library));
    match (&p.plugin_dirs, &layout) {
        (Some(dirs), _) => plugins.extend(dirs.iter().map(|d| request(d, false))),
        (None, Some(layout)) => {
            if !layout
                .plugins
                .iter()
                .any(|r| r.env.as_deref() == Some("OMPI_MCA_mca_base_component_path"))
            {
                // Truly unsupported: a host Open MPI whose components hybrun
                // cannot find would run the image's components.
                return Err(site_value(
                    ctx.site,
                    &format!("[mpi.{pname}] plugin_dirs"),
                    format!(
                        "bind mode with Open MPI needs the host's MCA component directory, and \
                         none was found next to {library} (looked for {}): set plugin_dirs = \
                         [{{ src = \"<pkglibdir>\", env = \"OMPI_MCA_mca_base_component_path\" \
                         }}] (ompi_info --all --parsable | grep component_path), or \
                         plugin_dirs = [] for an Open MPI built with --disable-dlopen",
                        layout.looked.join("; "),
                        library = library.display()
                    ),
                ));
            }
            plugins.extend(layout.plugins.iter().cloned());
        }
        (None, None) => {}
    }
    match (&p.data_dirs, &layout) {
        (Some(dirs), _) => plugins.extend(dirs.iter().map(|d| request(d, true))),
        (None, Some(layout)) => plugins.extend(layout.data.iter().cloned()),
        (None, None) => {}
    }
    plugins.extend(
        ctx.site
            .config
            .fabric
            .plugin_dirs
            .iter()
            .map(|d| request(d, false)),
    );
    Ok(plugins)
}

/// The notes that say what bind mode binds.
fn describe(bundle: &Bundle, pname: &str, bind_dir: &Path, notes: &mut Notes) {
    notes.notes.push(format!(
        "bind mode: {} host libraries from profile {pname} at {} (glibc family left to the \
         container: {})",
        bundle.libs.len(),
        bind_dir.display(),
        bundle.excluded.join(", ")
    ));
    for dir in &bundle.dirs {
        notes.notes.push(format!(
            "bind mode: {} at {}{}",
            dir.host.display(),
            bind_dir.join(&dir.name).display(),
            dir.env
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    }
    if !bundle.unloadable.is_empty() {
        notes.notes.push(format!(
            "bind mode: {} plugins need libraries the host cannot resolve (they cannot load \
             on the host either), bound without their closure: {}",
            bundle.unloadable.len(),
            bundle.unloadable.join(", ")
        ));
    }
}

/// The bundle's binds: one directory of hard links (ch-run, which binds
/// directories) or one bind per file (Singularity/Apptainer).
fn binds_for(
    ctx: &RankContext<'_>,
    runtime: &Runtime,
    image: Option<&CheckedImage>,
    bundle: &Bundle,
    bind_dir: &Path,
    cache: Option<&Path>,
    notes: &mut Notes,
) -> Result<Vec<Bind>, LaunchError> {
    let mut binds = Vec::new();
    match runtime {
        Runtime::Charliecloud { .. } => {
            if let Some(img) = image {
                if img.kind == ImageKind::Directory && !target_in_image(&img.canonical, bind_dir) {
                    return Err(LaunchError::Refused {
                        message: format!(
                            "image {} has no directory {}: ch-run cannot create bind targets \
                             in a read-only image; create it in the image (mkdir -p), or set \
                             [runtime] bind_dir / --bind-dir to an empty directory the image \
                             has",
                            img.given.display(),
                            bind_dir.display()
                        ),
                    });
                }
            }
            let root = cache
                .map(Path::to_path_buf)
                .ok_or_else(|| LaunchError::Refused {
                    message: "bind mode with ch-run needs a cache directory for the library \
                              bundle: set HOME or XDG_CACHE_HOME"
                        .into(),
                })?
                .join("bundles");
            let dir = if ctx.req.dry_run {
                bundle.dir_under(&root)
            } else {
                let (dir, copied) = bundle.materialize(&root)?;
                if copied {
                    notes.warnings.push(format!(
                        "bind mode: some host libraries were copied into {} (no hard link \
                         possible): the container maps copies, not the host's files",
                        dir.display()
                    ));
                }
                dir
            };
            binds.push(Bind {
                src: dir,
                dst: bind_dir.to_path_buf(),
                ro: true,
                why: "host MPI".into(),
            });
        }
        _ => {
            for (src, dst) in bundle.file_binds(bind_dir) {
                binds.push(Bind {
                    src,
                    dst,
                    ro: true,
                    why: "host MPI".into(),
                });
            }
        }
    }
    Ok(binds)
}

/// Bind mode's `LD_LIBRARY_PATH`: the host MPI directory first. Singularity and
/// Apptainer inject the value after the image's environment scripts, so it
/// would replace what the image sets for itself (CUDA images reach their compat
/// and framework libraries that way): the image's own entries follow, as
/// [`crate::image::env`] reads them. ch-run does not apply the image's
/// environment file unless asked (`--set-env` without a value), so there the
/// directory stands alone.
fn library_path(
    runtime: &Runtime,
    contents: Option<&LazyImage<'_>>,
    cache_dir: Option<&Path>,
    bind_dir: &Path,
    notes: &mut Notes,
) -> OsString {
    let mut value = bind_dir.as_os_str().to_owned();
    let (Runtime::Singularity { .. } | Runtime::Apptainer { .. }, Some(contents)) =
        (runtime, contents)
    else {
        return value;
    };
    const KIND: &str = "image-env";
    let key = cache_dir
        .and_then(|_| contents.key(KIND))
        .map(|k| k.finish());
    // Cached whatever the answer (an unreadable script stays unreadable).
    let declared = cache::through(cache_dir, KIND, key.as_deref(), || {
        Ok::<_, std::convert::Infallible>(
            contents
                .get()
                .as_ref()
                .map_err(|e| format!("hybrun cannot read the image ({e})"))
                .and_then(crate::image::env::declared_library_path),
        )
    })
    .unwrap_or_else(|never| match never {});
    match declared {
        Ok(Some(own)) => {
            value.push(":");
            value.push(&own.value);
            notes.notes.push(format!(
                "bind mode: LD_LIBRARY_PATH = {} then the image's own {} (set at {})",
                bind_dir.display(),
                own.value,
                own.from.join(", ")
            ));
        }
        Ok(None) => {}
        Err(e) => notes.warnings.push(format!(
            "bind mode: the container's LD_LIBRARY_PATH will be {dir} alone, without entries \
             the image may set for itself: {e}; if the application needs them, pass \
             --env LD_LIBRARY_PATH={dir}:<the image's entries>",
            dir = bind_dir.display()
        )),
    }
    value
}
