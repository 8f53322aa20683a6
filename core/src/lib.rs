//! What `hybrun` and `hybench` share, and nothing else: a small crate with no
//! launcher, image or campaign code in it, so hybench links only this.
//!
//! - [`vocab`]: the typed names of the domain (launch mode, MPI ABI and flavour,
//!   PMI plugin, runtime kind, launcher kind, the benchmark catalogue), one enum
//!   each, parsed the same way from the command line, the site file, scenarios
//!   and records ([`named_enum!`]);
//! - [`stats`]: summaries, confidence intervals, the bootstrap and verdicts;
//! - [`schema`]: hybench's result rows (CSV/JSON), which campaigns read back;
//! - [`placement`]: local rank, GPU per rank, CPUs near a device;
//! - [`nvml`]: NVML loaded at run time;
//! - [`sys`]: host name, UTC time, hexadecimal.

mod names;
pub mod nvml;
pub mod placement;
pub mod schema;
pub mod stats;
pub mod sys;
pub mod vocab;

pub use names::UnknownName;
#[doc(hidden)]
pub use names::{__NameVisitor, __clap, __or_list, __serde};
