//! hybrun: correct, safe and measured container launches for HPC.
//!
//! The library holds everything the `hybrun` binary and `hybench` share:
//! statistics and the result schema.

pub mod schema;
pub mod stats;
