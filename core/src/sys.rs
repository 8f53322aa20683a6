//! Small facts of the system this process runs on, each computed in one place.

/// This machine's host name (`uname -n`).
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// Seconds since the Unix epoch, now.
pub fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// UTC time now, as RFC 3339 with milliseconds ("2026-12-06T16:03:00.123Z").
pub fn now_utc() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    chrono::DateTime::from_timestamp(now.as_secs() as i64, now.subsec_nanos())
        .map(|t| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string())
        .unwrap_or_default()
}

/// Unix seconds as "2025-01-31T12:00:00Z".
pub fn utc_text(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0).map_or_else(
        || unix.to_string(),
        |t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
    )
}

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

    #[test]
    fn utc_texts() {
        assert_eq!(super::utc_text(0), "1970-01-01T00:00:00Z");
        assert!(super::now_utc().ends_with('Z'));
        assert!(!super::hostname().is_empty());
    }
}
