//! Conformance with the reference implementation (github.com/sylabs/sif/v2) on its
//! own test corpus, `../shared/fixtures/sif`:
//! - for every image, the facts hybrun reads (header fields; each object's id,
//!   group, link, offset, size, type and type-specific fields, name, times) equal
//!   the checked-in table `tests/data/sif_expected.json`, which an independent
//!   Python `struct` decoder (`tests/data/sif_expected.py`) produced from the
//!   reference's format definition;
//! - the three outputs of the reference tool (`reference-output/`) are reproduced
//!   byte for byte.

mod sif_common;

use std::path::Path;
use std::process::Command;

use hybrun::sif::{SifImage, display};
use serde_json::Value;

const EXPECTED: &str = include_str!("data/sif_expected.json");

fn expected_table() -> serde_json::Map<String, Value> {
    match serde_json::from_str(EXPECTED).expect("sif_expected.json is JSON") {
        Value::Object(map) => map,
        other => panic!("sif_expected.json is not an object: {other}"),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

#[test]
fn every_reference_image_reads_as_the_expected_table_says() {
    let Some(dir) = sif_common::reference_dir("sif_conformance") else {
        return;
    };
    let table = expected_table();
    let images = sif_common::reference_images(&dir);
    let names: Vec<String> = images.iter().map(|p| file_name(p)).collect();
    let mut table_names: Vec<&String> = table.keys().collect();
    table_names.sort();
    assert_eq!(
        names.iter().collect::<Vec<_>>(),
        table_names,
        "the corpus and tests/data/sif_expected.json list different images; \
         regenerate the table with tests/data/sif_expected.py and review the diff"
    );
    for path in &images {
        let name = file_name(path);
        let expected = &table[&name];
        let image = SifImage::open(path).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            image.file_len(),
            expected["file_len"].as_u64().expect("file_len"),
            "{name}: the fixture changed"
        );
        let actual = display::inspect_json(image.path(), image.header(), image.descriptors());
        assert_eq!(actual["header"], expected["header"], "{name}: header");
        let (actual, expected) = (&actual["objects"], &expected["objects"]);
        let count = expected.as_array().expect("objects").len();
        assert_eq!(
            actual.as_array().expect("objects").len(),
            count,
            "{name}: object count"
        );
        for i in 0..count {
            assert_eq!(actual[i], expected[i], "{name}: object #{i}");
        }
    }
}

fn reference_output(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join("reference-output").join(name))
        .unwrap_or_else(|e| panic!("reference output {name}: {e}"))
}

/// The reference tool's outputs: (image, what to print, output file).
const SIFTOOL_OUTPUTS: [(&str, &str, &str); 3] = [
    ("one-group.sif", "header", "TestApp_Header-OneGroup.txt"),
    ("two-groups.sif", "list", "TestApp_List-TwoGroups.txt"),
    // The reference test prints object 2 of two-groups-signed-pgp.sif.
    (
        "two-groups-signed-pgp.sif",
        "info 2",
        "TestApp_Info-DataPartitionSquashFS.txt",
    ),
];

#[test]
fn header_list_and_info_match_siftool_outputs_exactly() {
    let Some(dir) = sif_common::reference_dir("sif_conformance") else {
        return;
    };
    for (name, what, output) in SIFTOOL_OUTPUTS {
        let image = SifImage::open(dir.join(name)).expect("reference image");
        let text = match what {
            "header" => display::header_text(image.header()),
            "list" => display::list_text(image.descriptors()),
            _ => display::info_text(image.descriptor(2).expect("object 2")),
        };
        assert_eq!(text, reference_output(&dir, output), "{name}: {what}");
    }
}

fn hybrun(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_hybrun"))
        .args(args)
        .output()
        .expect("run hybrun")
}

#[test]
fn cli_text_contains_the_reference_outputs() {
    let Some(dir) = sif_common::reference_dir("sif_conformance") else {
        return;
    };
    let cases = [
        ("one-group.sif", "TestApp_Header-OneGroup.txt"),
        ("two-groups.sif", "TestApp_List-TwoGroups.txt"),
        (
            "two-groups-signed-pgp.sif",
            "TestApp_Info-DataPartitionSquashFS.txt",
        ),
    ];
    for (image, output) in cases {
        let path = dir.join(image);
        let out = hybrun(&["image", "inspect", path.to_str().expect("UTF-8 path")]);
        assert!(
            out.status.success(),
            "{image}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8(out.stdout).expect("UTF-8 output");
        // Each siftool block appears whole, as a paragraph of its own.
        let block = reference_output(&dir, output);
        assert!(
            text.starts_with(&block) || text.contains(&format!("\n{block}")),
            "{image}: inspect output lacks {output}:\n{text}"
        );
    }
}

#[test]
fn cli_json_matches_the_table_for_every_reference_image() {
    let Some(dir) = sif_common::reference_dir("sif_conformance") else {
        return;
    };
    let table = expected_table();
    for path in sif_common::reference_images(&dir) {
        let name = file_name(&path);
        let out = hybrun(&[
            "image",
            "inspect",
            "--json",
            path.to_str().expect("UTF-8 path"),
        ]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let json: Value = serde_json::from_slice(&out.stdout).expect("one JSON document");
        assert_eq!(json["header"], table[&name]["header"], "{name}");
        assert_eq!(json["objects"], table[&name]["objects"], "{name}");
        assert_eq!(json["path"], path.to_str().expect("UTF-8 path"), "{name}");
    }
}

#[test]
fn writer_reproduces_the_reference_writer_byte_for_byte() {
    let Some(dir) = sif_common::reference_dir("sif_conformance") else {
        return;
    };
    let out_dir = tempfile::tempdir().expect("temporary directory");
    let mut rebuilt = 0;
    for path in sif_common::reference_images(&dir) {
        let name = file_name(&path);
        let mut image = SifImage::open(&path).expect("reference image");
        let h = image.header().clone();
        // The "legacy" images come from the old writer (data at 32768, times that
        // differ between header fields): not what the current reference writes.
        if h.data_offset != 32176 || h.created_at != h.modified_at {
            continue;
        }
        let copy = out_dir.path().join(&name);
        sif_common::rebuild(&mut image)
            .write_to(&copy)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (want, got) = (
            std::fs::read(&path).expect("read"),
            std::fs::read(&copy).expect("read"),
        );
        assert_eq!(want.len(), got.len(), "{name}: length");
        if let Some(at) = want.iter().zip(&got).position(|(a, b)| a != b) {
            panic!("{name}: first differing byte at offset {at}");
        }
        rebuilt += 1;
    }
    assert!(
        rebuilt >= 15,
        "only {rebuilt} reference images were rebuilt"
    );
}
