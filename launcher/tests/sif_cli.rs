//! `hybrun image inspect` on SIF images: the text and JSON the `hybrun_sif` crate
//! produces reach the terminal whole, and a bad image is one error line with exit
//! code 1. The format itself is tested in `sif/tests/` (this file shares its
//! fixtures, `sif/tests/common/mod.rs`).
//!
//! The checks against the reference corpus (`<repo>/../shared/fixtures/sif`) say
//! SKIPPED on stderr without it, and fail under `CI`.

#[path = "../../sif/tests/common/mod.rs"]
mod common;

use std::process::{Command, Output};

use serde_json::Value;

fn hybrun(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hybrun"))
        .args(args)
        .output()
        .expect("run hybrun")
}

#[test]
fn cli_text_contains_the_reference_outputs() {
    let Some(dir) = common::reference_dir("sif_cli") else {
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
        let block = common::reference_output(&dir, output);
        assert!(
            text.starts_with(&block) || text.contains(&format!("\n{block}")),
            "{image}: inspect output lacks {output}:\n{text}"
        );
    }
}

#[test]
fn cli_json_matches_the_table_for_every_reference_image() {
    let Some(dir) = common::reference_dir("sif_cli") else {
        return;
    };
    let table = common::expected_table();
    for path in common::reference_images(&dir) {
        let name = common::file_name(&path);
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
fn cli_json_reports_the_generated_fixtures() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = common::write_rich_image(dir.path());
    let out = hybrun(&["image", "inspect", "--json", path.to_str().expect("UTF-8")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let objects = json["objects"].as_array().expect("objects");
    assert_eq!(objects.len(), 15);
    assert_eq!(json["header"]["arch"], "amd64");
    assert_eq!(json["header"]["id"], common::IMAGE_ID);
    assert_eq!(objects[4]["type"], "FS");
    assert_eq!(objects[4]["fs_type"], "Squashfs");
    assert_eq!(objects[4]["partition_type"], "*System");
    assert_eq!(
        objects[8]["link"],
        serde_json::json!({"kind": "group", "id": 1})
    );
    assert_eq!(objects[8]["group"], Value::Null);
    assert_eq!(
        objects[7]["link"],
        serde_json::json!({"kind": "object", "id": 5})
    );
    assert_eq!(objects[10]["sbom_format"], "spdx-json");
    assert_eq!(objects[9]["entity"], Value::Null);
    assert_eq!(objects[13]["created_at_unix"], 1_590_175_859);
}

#[test]
fn cli_inspects_a_2_gib_image() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let big: i64 = 2 << 30;
    let (path, partition) = common::write_sparse_image(dir.path(), big);
    let out = hybrun(&["image", "inspect", path.to_str().expect("UTF-8")]);
    assert!(out.status.success());
    let end = partition.offset + big;
    let row = format!("|{}-{end} ", partition.offset);
    assert!(String::from_utf8_lossy(&out.stdout).contains(&row), "{row}");
}

#[test]
fn cli_reports_errors_with_exit_code_1() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let not_sif = dir.path().join("notes.txt");
    std::fs::write(
        &not_sif,
        "just some text, long enough to hold a header? no.\n".repeat(4),
    )
    .expect("write");
    let truncated = dir.path().join("truncated.sif");
    std::fs::write(&truncated, &common::base_image()[..20_000]).expect("write");
    let missing = dir.path().join("missing.sif");
    for (path, needle) in [
        (&not_sif, "not a SIF file"),
        (&truncated, "truncated or corrupt SIF"),
        (&missing, "cannot open the image"),
        (&dir.path().to_path_buf(), "cannot"),
    ] {
        let out = hybrun(&["image", "inspect", path.to_str().expect("UTF-8 path")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{}: {stderr}", path.display());
        assert!(stderr.starts_with("hybrun: error: "), "{stderr}");
        assert!(stderr.contains(needle), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(out.stdout.is_empty());
    }
}
