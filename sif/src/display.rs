//! The facts of a SIF image as text (the layout of siftool's `header`, `list` and
//! `info`) and as JSON.
//!
//! The text follows `internal/app/siftool/info.go` of the reference: Go's
//! `text/tabwriter` alignment (label column as wide as the widest label plus the
//! padding), sizes as `readableSize` prints them, times as Go prints a UTC
//! `time.Time`, and the same omissions (no launch script, nil ID, unset times,
//! empty names, unknown architecture). Two deliberate differences: control
//! characters in names are escaped rather than sent to the terminal, and a
//! signature with an unknown hash type is listed as "Signature (Unknown)" where
//! siftool prints nothing for it.

use std::fmt::Write as _;

use serde_json::{Map, Value, json};

use crate::format::{Link, Metadata, ZERO_TIME};
use crate::reader::{Descriptor, Header};

const RULE: &str = "------------------------------------------------------------------------------";

/// `siftool header`.
pub fn header_text(h: &Header) -> String {
    let mut rows: Vec<(&str, String)> = Vec::new();
    let script = h.launch_script_text();
    if !script.is_empty() {
        let script = script.strip_suffix('\n').unwrap_or(&script);
        rows.push(("Launch Script:", escape_controls(script)));
    }
    rows.push(("Version:", h.version_text()));
    if h.arch.go_name() != "unknown" {
        rows.push(("Primary Architecture:", h.arch.go_name().to_owned()));
    }
    if !h.id.is_nil() {
        rows.push(("ID:", h.id.to_string()));
    }
    if let Some(t) = format_time(h.created_at) {
        rows.push(("Created At:", t));
    }
    if let Some(t) = format_time(h.modified_at) {
        rows.push(("Modified At:", t));
    }
    rows.push(("Descriptors Free:", h.descriptors_free.to_string()));
    rows.push(("Descriptors Total:", h.descriptors_total.to_string()));
    rows.push(("Descriptors Offset:", h.descriptors_offset.to_string()));
    rows.push(("Descriptors Size:", readable_size(h.descriptors_size)));
    rows.push(("Data Offset:", h.data_offset.to_string()));
    rows.push(("Data Size:", readable_size(h.data_size)));
    aligned(&rows, "", 1)
}

/// `siftool list`.
pub fn list_text(descriptors: &[Descriptor]) -> String {
    let mut out = format!("{RULE}\n");
    let _ = writeln!(
        out,
        "{:<4} {:<8} {:<8} {:<26} |TYPE",
        "ID", "|GROUP", "|LINK", "|SIF POSITION (start-end)"
    );
    let _ = writeln!(out, "{RULE}");
    for d in descriptors {
        let group = d
            .group()
            .map_or_else(|| "NONE".to_owned(), |g| g.to_string());
        let link = match d.link() {
            Link::None => format!("{:<7}", "NONE"),
            Link::Group(id) => format!("{id:<3} (G)"),
            Link::Object(id) => format!("{id:<7}"),
        };
        let position = format!(
            "|{}-{} ",
            d.offset,
            i128::from(d.offset) + i128::from(d.size)
        );
        let _ = writeln!(
            out,
            "{:<4} |{:<7} |{} {:<26} |{}",
            d.id,
            group,
            link,
            position,
            type_summary(d)
        );
    }
    out
}

/// The TYPE column of `siftool list`: the data type and its key facts.
fn type_summary(d: &Descriptor) -> String {
    let name = d.data_type.name();
    match d.metadata() {
        Metadata::Partition {
            fs_type,
            part_type,
            arch,
        } => format!("{name} ({fs_type}/{part_type}/{arch})"),
        Metadata::Signature { hash_type, .. } => format!("{name} ({hash_type})"),
        Metadata::CryptoMessage { format, message } => format!("{name} ({format}/{message})"),
        Metadata::Sbom { format } => format!("{name} ({format})"),
        Metadata::OciBlob { .. } | Metadata::None => name.to_owned(),
    }
}

/// `siftool info ID`.
pub fn info_text(d: &Descriptor) -> String {
    let mut rows: Vec<(&str, String)> = vec![
        ("Data Type:", d.data_type.name().to_owned()),
        ("ID:", d.id.to_string()),
        (
            "Group ID:",
            d.group()
                .map_or_else(|| "NONE".to_owned(), |g| g.to_string()),
        ),
        (
            "Linked ID:",
            match d.link() {
                Link::None => "NONE".to_owned(),
                Link::Group(id) => format!("{id} (G)"),
                Link::Object(id) => id.to_string(),
            },
        ),
        ("Offset:", d.offset.to_string()),
        ("Size:", d.size.to_string()),
    ];
    if let Some(t) = format_time(d.created_at) {
        rows.push(("Created At:", t));
    }
    if let Some(t) = format_time(d.modified_at) {
        rows.push(("Modified At:", t));
    }
    let name = d.name_text();
    if !name.is_empty() {
        rows.push(("Name:", escape_controls(&name)));
    }
    for fact in metadata_facts(&d.metadata()) {
        if let Some(value) = fact.value {
            rows.push((fact.label, escape_controls(&value)));
        }
    }
    // siftool's info rows start with an empty tabwriter cell: two spaces of padding.
    aligned(&rows, "  ", 2)
}

/// Everything `hybrun image inspect` prints: the header, the list, then each
/// object's details, separated by blank lines.
pub fn inspect_text(header: &Header, descriptors: &[Descriptor]) -> String {
    let mut out = header_text(header);
    out.push('\n');
    out.push_str(&list_text(descriptors));
    for d in descriptors {
        out.push('\n');
        out.push_str(&info_text(d));
    }
    out
}

/// The same facts as one JSON document.
pub fn inspect_json(path: &str, header: &Header, descriptors: &[Descriptor]) -> Value {
    json!({
        "path": path,
        "header": header_json(header),
        "objects": descriptors.iter().map(object_json).collect::<Vec<_>>(),
    })
}

fn header_json(h: &Header) -> Value {
    json!({
        "launch_script": h.launch_script_text(),
        "magic": crate::format::trim_nul(&h.magic),
        "version": h.version_text(),
        "arch": h.arch.go_name(),
        "id": h.id.to_string(),
        "created_at": format_time(h.created_at),
        "created_at_unix": h.created_at,
        "modified_at": format_time(h.modified_at),
        "modified_at_unix": h.modified_at,
        "descriptors_free": h.descriptors_free,
        "descriptors_total": h.descriptors_total,
        "descriptors_offset": h.descriptors_offset,
        "descriptors_size": h.descriptors_size,
        "data_offset": h.data_offset,
        "data_size": h.data_size,
    })
}

fn object_json(d: &Descriptor) -> Value {
    let link = match d.link() {
        Link::None => Value::Null,
        Link::Object(id) => json!({"kind": "object", "id": id}),
        Link::Group(id) => json!({"kind": "group", "id": id}),
    };
    let mut object = Map::new();
    let mut put = |key: &str, value: Value| {
        object.insert(key.to_owned(), value);
    };
    put("id", json!(d.id));
    put("group", json!(d.group()));
    put("link", link);
    put("offset", json!(d.offset));
    put("size", json!(d.size));
    put("size_with_padding", json!(d.size_with_padding));
    put("type", json!(d.data_type.name()));
    put("type_code", json!(d.data_type.code()));
    put("name", json!(d.name_text()));
    put("created_at", json!(format_time(d.created_at)));
    put("created_at_unix", json!(d.created_at));
    put("modified_at", json!(format_time(d.modified_at)));
    put("modified_at_unix", json!(d.modified_at));
    put("uid", json!(d.uid));
    put("gid", json!(d.gid));
    for fact in metadata_facts(&d.metadata()) {
        put(fact.key, json!(fact.value));
    }
    Value::Object(object)
}

/// One type-specific fact of an object: siftool's label, the JSON key, and the
/// value (None: not set, which siftool omits and JSON shows as null).
struct Fact {
    label: &'static str,
    key: &'static str,
    value: Option<String>,
}

/// The type-specific facts, in siftool's order.
fn metadata_facts(metadata: &Metadata) -> Vec<Fact> {
    let fact = |label, key, value: String| Fact {
        label,
        key,
        value: Some(value),
    };
    match metadata {
        Metadata::Partition {
            fs_type,
            part_type,
            arch,
        } => vec![
            fact("Filesystem Type:", "fs_type", fs_type.to_string()),
            fact("Partition Type:", "partition_type", part_type.to_string()),
            fact("Architecture:", "arch", arch.to_string()),
        ],
        Metadata::Signature {
            hash_type,
            fingerprint,
        } => vec![
            fact("Hash Type:", "hash_type", hash_type.to_string()),
            Fact {
                label: "Entity:",
                key: "entity",
                value: fingerprint.map(|fp| hex_upper(&fp)),
            },
        ],
        Metadata::CryptoMessage { format, message } => vec![
            fact("Format Type:", "format_type", format.to_string()),
            fact("Message Type:", "message_type", message.to_string()),
        ],
        Metadata::Sbom { format } => vec![fact("Format:", "sbom_format", format.to_string())],
        Metadata::OciBlob { digest } => vec![fact("Digest:", "digest", digest.clone())],
        Metadata::None => Vec::new(),
    }
}

/// Lays out `label value` rows like Go's tabwriter: every label padded to the
/// widest label plus `padding` spaces, each row after `indent`.
fn aligned(rows: &[(&str, String)], indent: &str, padding: usize) -> String {
    let width = rows
        .iter()
        .map(|(label, _)| label.chars().count())
        .max()
        .unwrap_or(0)
        + padding;
    let mut out = String::new();
    for (label, value) in rows {
        let _ = writeln!(out, "{indent}{label:<width$}{value}");
    }
    out
}

/// A size the way siftool's `readableSize` prints it ("27 KiB", "707 B").
pub fn readable_size(size: i64) -> String {
    if -1024 < size && size < 1024 {
        return format!("{size} B");
    }
    const UNITS: [char; 6] = ['K', 'M', 'G', 'T', 'P', 'E'];
    let (mut div, mut exp) = (1024u64, 0usize);
    let mut n = size / 1024;
    while n <= -1024 || n >= 1024 {
        div *= 1024;
        exp += 1;
        n /= 1024;
    }
    let value = (size as f64 / div as f64).round();
    format!("{value:.0} {}iB", UNITS[exp.min(UNITS.len() - 1)])
}

/// A Unix time as Go prints a UTC `time.Time` ("2020-06-30 00:01:56 +0000 UTC"),
/// or None for Go's zero time (the reference's "not set").
pub fn format_time(unix_seconds: i64) -> Option<String> {
    if unix_seconds == ZERO_TIME {
        return None;
    }
    Some(match chrono::DateTime::from_timestamp(unix_seconds, 0) {
        Some(t) => t.format("%Y-%m-%d %H:%M:%S +0000 UTC").to_string(),
        None => format!("{unix_seconds} (Unix seconds, out of range)"),
    })
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Escapes control characters so that file contents cannot drive the terminal.
fn escape_controls(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_control() {
                c.escape_default().collect::<Vec<_>>()
            } else {
                vec![c]
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readable_size_matches_siftool() {
        let cases = [
            (0, "0 B"),
            (707, "707 B"),
            (1023, "1023 B"),
            (1024, "1 KiB"),
            (2047, "2 KiB"),
            (28080, "27 KiB"),
            (8784, "9 KiB"),
            (1024 * 1024, "1 MiB"),
            (1 << 30, "1 GiB"),
            (1 << 40, "1 TiB"),
            (1 << 50, "1 PiB"),
            (1 << 60, "1 EiB"),
            (i64::MAX, "8 EiB"),
            (-2048, "-2 KiB"),
        ];
        for (size, want) in cases {
            assert_eq!(readable_size(size), want, "{size}");
        }
        // Must not panic at the extremes.
        let _ = readable_size(i64::MIN);
    }

    #[test]
    fn times_print_like_go() {
        assert_eq!(format_time(ZERO_TIME), None);
        assert_eq!(
            format_time(1_593_475_316).as_deref(),
            Some("2020-06-30 00:01:56 +0000 UTC")
        );
        assert_eq!(
            format_time(0).as_deref(),
            Some("1970-01-01 00:00:00 +0000 UTC")
        );
        assert!(format_time(i64::MAX).is_some());
    }

    #[test]
    fn controls_are_escaped() {
        assert_eq!(escape_controls("a\tb\x1b[2J"), "a\\tb\\u{1b}[2J");
        assert_eq!(escape_controls("plain"), "plain");
    }
}
