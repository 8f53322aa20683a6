//! Truncated, oversized and inconsistent images give typed errors that name the
//! file (never a panic). `launcher/tests/sif_cli.rs` checks that `hybrun image
//! inspect` reports them with exit code 1.

mod common;

use std::io::Cursor;

use hybrun_sif::format::{DESCRIPTOR_LEN, HEADER_LEN};
use hybrun_sif::{DataType, Descriptor, Header, Metadata, SifError, SifImage};

const LABEL: &str = "test.sif";

fn parse(bytes: Vec<u8>) -> Result<SifImage<Cursor<Vec<u8>>>, SifError> {
    SifImage::from_reader(Cursor::new(bytes), LABEL)
}

fn with_header(edit: impl FnOnce(&mut Header)) -> Vec<u8> {
    let mut bytes = common::base_image();
    let mut header = Header::decode(bytes[..HEADER_LEN].try_into().expect("header"));
    edit(&mut header);
    bytes[..HEADER_LEN].copy_from_slice(&header.encode());
    bytes
}

fn with_descriptor(slot: usize, edit: impl FnOnce(&mut Descriptor)) -> Vec<u8> {
    let mut bytes = common::base_image();
    let at = 4096 + slot * DESCRIPTOR_LEN;
    let range = at..at + DESCRIPTOR_LEN;
    let mut d = Descriptor::decode(bytes[range.clone()].try_into().expect("descriptor"));
    edit(&mut d);
    bytes[range].copy_from_slice(&d.encode());
    bytes
}

/// Parses `bytes`, expects an error, checks the message names the file, returns it.
fn error_of(bytes: Vec<u8>) -> SifError {
    let err = parse(bytes).expect_err("a corrupt image must not parse");
    let message = err.to_string();
    assert!(
        message.starts_with(LABEL),
        "message does not name the file: {message}"
    );
    err
}

#[test]
fn the_base_image_is_valid() {
    let image = parse(common::base_image()).expect("valid");
    assert_eq!(image.descriptors().len(), 3);
}

#[test]
fn short_files_are_not_sif() {
    for len in [0, 1, 100, HEADER_LEN - 1] {
        let err = error_of(common::base_image()[..len].to_vec());
        assert!(matches!(err, SifError::TooShort { .. }), "{len}: {err}");
    }
}

#[test]
fn bad_magic_says_what_was_found_and_what_hybrun_reads() {
    let mut bytes = common::base_image();
    bytes[32..42].copy_from_slice(b"NOT_MAGIC\0");
    let err = error_of(bytes);
    assert!(matches!(err, SifError::BadMagic { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains("not a SIF file"), "{message}");
    assert!(message.contains("NOT_MAGIC"), "{message}");
    assert!(message.contains("Singularity/Apptainer"), "{message}");
}

#[test]
fn unknown_version_is_refused() {
    let err = error_of(with_header(|h| h.version = *b"02\0"));
    assert!(matches!(err, SifError::UnsupportedVersion { .. }), "{err}");
}

#[test]
fn inconsistent_headers_are_refused() {
    type Check = fn(&SifError) -> bool;
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        (
            "free > total",
            with_header(|h| h.descriptors_free = 49),
            |e| matches!(e, SifError::FreeExceedsTotal { .. }),
        ),
        (
            "negative free",
            with_header(|h| h.descriptors_free = -1),
            |e| matches!(e, SifError::NegativeHeaderField { .. }),
        ),
        (
            "negative data size",
            with_header(|h| h.data_size = -5),
            |e| matches!(e, SifError::NegativeHeaderField { .. }),
        ),
        (
            "huge descriptor count",
            with_header(|h| {
                h.descriptors_total = 1 << 40;
                h.descriptors_free = h.descriptors_total - 3;
            }),
            |e| matches!(e, SifError::TooManyDescriptors { .. }),
        ),
        (
            "section smaller than table",
            with_header(|h| h.descriptors_size = 585),
            |e| matches!(e, SifError::DescriptorSectionTooSmall { .. }),
        ),
        (
            "table over header",
            with_header(|h| h.descriptors_offset = 64),
            |e| matches!(e, SifError::DescriptorTableOverlapsHeader { .. }),
        ),
        (
            "table past the end",
            with_header(|h| h.descriptors_offset = 1 << 40),
            |e| {
                matches!(
                    e,
                    SifError::SectionOutsideFile {
                        what: "descriptor section",
                        ..
                    }
                )
            },
        ),
        (
            "table at i64::MAX",
            with_header(|h| h.descriptors_offset = i64::MAX),
            |e| matches!(e, SifError::SectionOutsideFile { .. }),
        ),
        (
            "data past the end",
            with_header(|h| h.data_size += 1),
            |e| {
                matches!(
                    e,
                    SifError::SectionOutsideFile {
                        what: "data section",
                        ..
                    }
                )
            },
        ),
        (
            "fewer used than declared",
            with_header(|h| h.descriptors_free -= 1),
            |e| matches!(e, SifError::UsedCountMismatch { .. }),
        ),
        (
            "more used than declared",
            with_header(|h| h.descriptors_free += 1),
            |e| matches!(e, SifError::UsedCountMismatch { .. }),
        ),
    ];
    for (what, bytes, check) in cases {
        let err = error_of(bytes);
        assert!(check(&err), "{what}: unexpected error {err:?}");
    }
}

#[test]
fn inconsistent_descriptors_are_refused() {
    type Check = fn(&SifError) -> bool;
    let cases: Vec<(&str, Vec<u8>, Check)> = vec![
        ("zero id", with_descriptor(1, |d| d.id = 0), |e| {
            matches!(e, SifError::ZeroObjectId { .. })
        }),
        ("duplicate id", with_descriptor(2, |d| d.id = 1), |e| {
            matches!(e, SifError::DuplicateObjectId { id: 1, .. })
        }),
        (
            "negative offset",
            with_descriptor(0, |d| d.offset = -1),
            |e| {
                matches!(
                    e,
                    SifError::NegativeObjectField {
                        field: "offset",
                        ..
                    }
                )
            },
        ),
        (
            "negative size",
            with_descriptor(0, |d| d.size = i64::MIN),
            |e| matches!(e, SifError::NegativeObjectField { field: "size", .. }),
        ),
        (
            "object past the end",
            with_descriptor(1, |d| d.size += 1 << 20),
            |e| matches!(e, SifError::ObjectOutsideFile { id: 2, .. }),
        ),
        (
            "offset + size overflows",
            with_descriptor(1, |d| d.size = i64::MAX),
            |e| matches!(e, SifError::ObjectOutsideFile { .. }),
        ),
        (
            "object in the descriptor table",
            with_descriptor(0, |d| d.offset = 4096),
            |e| matches!(e, SifError::ObjectOutsideDataSection { .. }),
        ),
        (
            "unused slot marked used",
            with_descriptor(3, |d| d.used = true),
            |e| matches!(e, SifError::UsedCountMismatch { .. }),
        ),
    ];
    for (what, bytes, check) in cases {
        let err = error_of(bytes);
        assert!(check(&err), "{what}: unexpected error {err:?}");
    }
}

#[test]
fn truncation_anywhere_is_an_error() {
    let full = common::base_image();
    for len in (HEADER_LEN..full.len()).step_by(97) {
        let err = error_of(full[..len].to_vec());
        assert!(
            matches!(err, SifError::SectionOutsideFile { .. }),
            "truncated at {len}: {err:?}"
        );
    }
}

#[test]
fn unknown_codes_are_shown_not_refused() {
    let bytes = with_descriptor(1, |d| {
        d.data_type = DataType::from_code(0x4fff);
        d.extra[..4].copy_from_slice(&77i32.to_le_bytes());
    });
    let image = parse(bytes).expect("unknown types are not errors");
    let d = image.descriptor(2).expect("object 2");
    assert_eq!(d.data_type.name(), "Unknown");
    assert_eq!(d.metadata(), Metadata::None);
    let text = hybrun_sif::display::list_text(image.descriptors());
    assert!(text.contains("|Unknown\n"), "{text}");
}

#[test]
fn object_lookup_errors_are_typed() {
    let mut image = parse(common::base_image()).expect("valid");
    assert!(matches!(
        image.read_object(9, 100),
        Err(SifError::ObjectNotFound { id: 9, .. })
    ));
    assert!(matches!(
        image.read_object(2, 10),
        Err(SifError::ObjectTooLarge { id: 2, .. })
    ));
}
