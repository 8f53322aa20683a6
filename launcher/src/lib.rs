//! hybrun: correct, safe and measured container launches for HPC.
//!
//! The library holds everything the `hybrun` binary and `hybench` share:
//! statistics, the result schema and the SIF image reader/writer.

pub mod campaign;
pub mod doctor;
pub mod elf;
pub mod host;
pub mod image;
pub mod launch;
pub mod sif;
pub mod site;
pub mod store;
