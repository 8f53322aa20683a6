//! `[runtime]`: the container runtime of the site.

use hybrun_core::vocab::{RuntimeKind, Version};
use serde::Deserialize;

use super::paths::BindPath;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeSection {
    /// singularity, apptainer, charliecloud or none. Default: singularity.
    pub kind: Option<RuntimeKind>,
    /// The runtime's program (a name looked up on PATH, or an absolute path).
    /// Default: `singularity`, `apptainer` or `ch-run`.
    pub program: Option<String>,
    /// The runtime's version, e.g. "3.6.4". When absent, hybrun asks the program
    /// (`--version`, tens of milliseconds per call): set it on production sites.
    pub version: Option<Version>,
    /// The container directory where bind mode puts the host MPI libraries (and
    /// which goes on LD_LIBRARY_PATH). Default: /opt/hybrun/host-mpi/lib.
    /// For ch-run it must exist in the image (ch-run cannot create bind targets
    /// in a read-only image).
    pub bind_dir: Option<BindPath>,
}
