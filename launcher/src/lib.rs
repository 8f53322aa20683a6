//! hybrun: correct, safe and measured container launches for HPC.
//!
//! The library holds everything the `hybrun` binary and `hybench` share:
//! statistics, the result schema and the SIF image reader/writer.

pub mod campaign;
pub mod image;
pub mod launch;
pub mod nvml;
pub mod placement;
pub mod schema;
pub mod sif;
pub mod site;
pub mod stats;
pub mod store;

/// Lower-case hexadecimal of `bytes` (SHA-256 digests, cache keys, run ids).
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_is_lower_case() {
        assert_eq!(super::hex(&[0x00, 0xab, 0xff]), "00abff");
    }
}
