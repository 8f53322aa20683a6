//! Launching: `hybrun run` (a whole job) and `hybrun exec` (one rank).
//!
//! One plan type ([`plan::LaunchPlan`]) that every backend renders into an argv
//! vector; never a shell string. The modules:
//!
//! - [`plan`]: the plan and the rendered command;
//! - [`planner`]: from the request (command line) and the site file to a plan;
//! - [`render`]: launchers (srun, mpiexec hydra, Open MPI mpiexec);
//! - [`runtime`]: runtimes (Singularity 3.x / Apptainer 1.x, ch-run, none);
//! - [`env`]: environment rules and how each runtime receives a variable;
//! - [`pmi`]: srun's `--mpi=` choice and PMIx glue per rank;
//! - [`bind`]: bind mode's host library bundle;
//! - [`gate`]: the image compatibility check before a launch;
//! - [`cache`]: what launches derive from unchanged files (gate judgements, image env);
//! - [`fabric_guard`]: variables that keep the MPI off TCP on a fast fabric;
//! - [`handoff`]: the rank plan `hybrun run` hands to each rank's `hybrun exec`;
//! - [`image_mount`]: a SquashFS or SIF image for ch-run, mounted once per node;
//! - [`policy`]: the image path policy (allowed directory);
//! - [`record`]: the launch record.

use hybrun_core::vocab::{MpiFlavour, MpiPlugin, RuntimeKind};

pub mod bind;
pub mod cache;
pub mod env;
pub mod fabric_guard;
pub mod gate;
pub mod handoff;
pub mod image_mount;
pub mod plan;
pub mod planner;
pub mod pmi;
pub mod policy;

pub mod record;
pub mod render;
pub mod runtime;

/// Everything that can stop a launch. Each message names the thing and the fix.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    #[error(transparent)]
    Site(#[from] crate::site::SiteError),

    #[error(transparent)]
    Store(#[from] crate::store::StoreError),

    #[error("{path}: {why} (site file {site})")]
    SiteValue {
        site: String,
        path: String,
        why: String,
    },

    #[error("bad job geometry: {why}")]
    Geometry { why: String },

    #[error(
        "bind {which} {path:?} contains {separator:?}: the runtimes split bind specifications \
         on ':' and ',', so such a path cannot be bound; bind a parent directory, or a \
         symbolic-link-free path without those characters"
    )]
    BindSeparator {
        path: String,
        which: &'static str,
        separator: char,
    },

    #[error("bind {which} {path:?} is not an absolute path; write it starting with /")]
    BindRelative { path: String, which: &'static str },

    #[error(
        "bad bind {spec:?}: write SRC[:DST[:ro|rw]] with absolute paths (paths containing ':' \
         or ',' cannot be bound: the runtimes split on them)"
    )]
    BindSpec { spec: String },

    #[error("no command to run: give it after the image, e.g. `hybrun run IMAGE -- ./app`")]
    EmptyCommand,

    #[error("--pwd {path:?}: {why}")]
    Pwd { path: String, why: &'static str },

    #[error(
        "{program:?} cannot be the program a launcher starts (it starts with '-' or contains \
         '='); give a path or a plain name"
    )]
    BadProgram { program: String },

    #[error(
        "environment variable name {name:?} is invalid: use letters, digits and '_', not starting with a digit"
    )]
    EnvName { name: String },

    #[error("--env {text:?}: write NAME=VALUE")]
    EnvAssignment { text: String },

    #[error("refusing to unset {name}: MPI start-up reads SLURM_*, PMI_* and PMIX_* in every rank")]
    EnvPmiUnset { name: String },

    #[error("the {runtime} runtime needs an image: give IMAGE before `--`")]
    NoImage { runtime: RuntimeKind },

    #[error(
        "native mode runs without a container, so it cannot bind paths; drop the binds or use \
         --mode hybrid|bind"
    )]
    NativeBinds,

    #[error("{launcher} has no equivalent of srun's {flag}; use --launcher srun (or drop {flag})")]
    LauncherFlag {
        launcher: &'static str,
        flag: &'static str,
    },

    #[error(
        "which MPI? pass --mpi-profile NAME (the site file's [mpi.NAME] profiles) or \
         --mpi pmi2|pmix|none (none only for programs that do not use MPI)"
    )]
    NoMpi,

    #[error("unknown MPI profile {name:?}: the site file {site} defines {known}")]
    UnknownProfile {
        name: String,
        site: String,
        known: String,
    },

    #[error(
        "--mpi {plugin} does not fit profile {profile} ({flavour} needs --mpi={fits}; with the \
         wrong plugin MPICH silently runs one-rank jobs and Open MPI fails); use --mpi {fits}, \
         or --force if the site's MPI really speaks {plugin}"
    )]
    PmiMismatch {
        plugin: MpiPlugin,
        profile: String,
        flavour: MpiFlavour,
        fits: MpiPlugin,
    },

    #[error("{what} {program:?} not found on PATH; {hint}")]
    ProgramNotFound {
        what: &'static str,
        program: String,
        hint: String,
    },

    #[error("{message}")]
    Refused { message: String },

    #[error("image {path}: cannot {action} it: {source}")]
    ImageIo {
        path: String,
        action: &'static str,
        #[source]
        source: std::io::Error,
    },

    #[error("image {path} changed while it was checked (replaced or re-linked); try again")]
    ImageChanged { path: String },

    #[error("image {path} is neither a regular file nor a directory")]
    ImageNotFile { path: String },

    #[error(
        "image is not in an allowed configured path: {image} ({why}); this site runs \
         Singularity/Apptainer images only from {allowed} (from {from}), and only as `hybrun \
         image cp` admitted them: copy it in with `hybrun image cp {image}` and run the copy"
    )]
    ImageNotAllowed {
        image: String,
        allowed: String,
        from: String,
        why: String,
    },

    #[error("bind mode: {path}: {source}")]
    BundleIo {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error(
        "bind mode: two different host libraries are both named {name} ({first} and {second}); \
         fix the profile's library list"
    )]
    BundleConflict {
        name: String,
        first: String,
        second: String,
    },

    #[error("bind mode: the host loader cannot resolve {lib}: {why}")]
    Loader { lib: String, why: String },

    #[error(
        "launch record {path}: {source}; set [launcher] record_dir in the site file to a writable directory"
    )]
    Record {
        path: String,
        #[source]
        source: std::io::Error,
    },

    #[error("cannot start {program}: {source}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
}
