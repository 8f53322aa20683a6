//! Shared by the SIF integration tests (`sif/tests/*.rs`, and the `hybrun image`
//! tests in `launcher/tests/sif_cli.rs`, which include this file by path): where the
//! reference corpus is, the conformance table, and the project's own fixtures, made
//! by this crate's writer so that the suite stands on its own on a machine without
//! `../shared`.
#![allow(dead_code)] // each test crate uses a different part of this module

use std::io::{Cursor, Read, Seek};
use std::path::{Path, PathBuf};

use hybrun_sif::format::{DESCRIPTOR_LEN, FINGERPRINT_LEN, HEADER_LEN};
use hybrun_sif::writer::ObjectSource;
use hybrun_sif::{
    Arch, DataType, Descriptor, FormatType, FsType, HashType, Header, ImageId, Link, MessageType,
    Metadata, ObjectInput, PartType, SbomFormat, SifBuilder, SifImage,
};
use serde_json::Value;

/// The reference corpus (`<repo>/../shared/fixtures/sif`, or `$HYBRUN_SIF_CORPUS`;
/// `CARGO_MANIFEST_DIR` is `<repo>/sif` or `<repo>/launcher`, both one level down),
/// or None when this machine has none: then the caller skips, loudly, and under CI
/// (`CI` set) the test fails, because CI always has the corpus.
pub fn reference_dir(test: &str) -> Option<PathBuf> {
    let dir = std::env::var_os("HYBRUN_SIF_CORPUS").map_or_else(
        || Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures/sif"),
        PathBuf::from,
    );
    if dir.is_dir() {
        return Some(dir);
    }
    let message = format!(
        "\n*** {test}: the reference SIF corpus is missing: {} does not exist. ***\n\
         *** These checks against the reference implementation did NOT run.   ***\n",
        dir.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{message}*** CI is set, and CI must have ../shared: failing. ***");
    }
    // Written to stderr directly: the test harness captures eprintln! output and
    // would hide the skip.
    let _ = std::io::Write::write_all(
        &mut std::io::stderr(),
        format!("{message}*** Skipped (set CI=1 to make this a failure). ***\n").as_bytes(),
    );
    None
}

/// Every `.sif` file of the reference corpus, sorted by name.
pub fn reference_images(dir: &Path) -> Vec<PathBuf> {
    let mut images: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("reference corpus is readable")
        .map(|entry| entry.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "sif"))
        .collect();
    images.sort();
    assert!(!images.is_empty(), "no .sif files in {}", dir.display());
    images
}

/// What the conformance table (`sif/tests/data/sif_expected.json`) says of each
/// reference image, by file name.
pub fn expected_table() -> serde_json::Map<String, Value> {
    const EXPECTED: &str = include_str!("../data/sif_expected.json");
    match serde_json::from_str(EXPECTED).expect("sif_expected.json is JSON") {
        Value::Object(map) => map,
        other => panic!("sif_expected.json is not an object: {other}"),
    }
}

/// One output of the reference tool, `reference-output/NAME` in the corpus.
pub fn reference_output(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join("reference-output").join(name))
        .unwrap_or_else(|e| panic!("reference output {name}: {e}"))
}

/// The file name of `path`, as the conformance table keys it.
pub fn file_name(path: &Path) -> String {
    path.file_name()
        .expect("file name")
        .to_string_lossy()
        .into_owned()
}

/// Bytes that start like a SquashFS image (magic "hsqs"): enough for the format,
/// which does not look inside partitions.
pub fn fake_squashfs(len: usize) -> Vec<u8> {
    let mut bytes = b"hsqs".to_vec();
    bytes.extend((0..len.saturating_sub(4)).map(|i| (i % 251) as u8));
    bytes
}

pub const FINGERPRINT: [u8; FINGERPRINT_LEN] = [
    0x12, 0x04, 0x5C, 0x8C, 0x0B, 0x10, 0x04, 0xD0, 0x58, 0xDE, 0x4B, 0xED, 0xA2, 0x0C, 0x27, 0xEE,
    0x7F, 0xF7, 0xBA, 0x84,
];
pub const IMAGE_TIME: i64 = 1_700_000_000;
pub const IMAGE_ID: &str = "6ecc76b7-a497-4f7f-9ebd-8da2a04c6be1";

/// A primary SquashFS partition (fake contents of `len` bytes) for `arch`.
pub fn primary_partition(len: usize, arch: Arch) -> ObjectInput {
    ObjectInput::partition(
        ObjectSource::Bytes(fake_squashfs(len)),
        FsType::Squashfs,
        PartType::PrimarySystem,
        arch,
    )
}

/// An image with every data type, three groups, object and group links, names,
/// per-object times and alignments. Object IDs are the order below (1-based).
pub fn rich_builder(rootfs: &Path) -> SifBuilder {
    let partition = |bytes: Vec<u8>, fs, part, arch| {
        ObjectInput::partition(ObjectSource::Bytes(bytes), fs, part, arch)
    };
    SifBuilder::new(Arch::Amd64)
        .id(ImageId::parse(IMAGE_ID).expect("valid UUID"))
        .time(IMAGE_TIME)
        // 1..4: metadata of group 1
        .add_object(ObjectInput::deffile(
            "Bootstrap: docker\nFrom: alpine:3.20\n",
        ))
        .add_object(ObjectInput::labels(
            br#"{"org.label-schema.build-arch":"amd64"}"#.to_vec(),
        ))
        .add_object(ObjectInput::generic_json(
            "oci-config.json",
            br#"{"Env":["PATH=/bin"]}"#.to_vec(),
        ))
        .add_object(ObjectInput::from_bytes(
            DataType::EnvVar,
            b"export A=1\n".to_vec(),
        ))
        // 5: the root file system, streamed from a file
        .add_primary_squashfs(rootfs)
        // 6, 7: partitions of group 2
        .add_object(partition(vec![0xE3; 3000], FsType::Ext3, PartType::Data, Arch::Amd64).group(2))
        .add_object(
            partition(
                vec![1; 100],
                FsType::EncryptedSquashfs,
                PartType::Overlay,
                Arch::Arm64,
            )
            .group(2)
            .name("overlay"),
        )
        // 8: an encrypted key for the root file system
        .add_object(
            ObjectInput::from_bytes(
                DataType::CryptoMessage,
                b"-----BEGIN PGP MESSAGE-----".to_vec(),
            )
            .metadata(Metadata::CryptoMessage {
                format: FormatType::Pem,
                message: MessageType::RsaOaep,
            })
            .no_group()
            .link(Link::Object(5)),
        )
        // 9, 10: signatures (group link without group; object link with fingerprint-less entity)
        .add_object(
            ObjectInput::from_bytes(DataType::Signature, b"{\"payloadType\":\"dsse\"}".to_vec())
                .metadata(Metadata::Signature {
                    hash_type: HashType::Sha256,
                    fingerprint: Some(FINGERPRINT),
                })
                .no_group()
                .link(Link::Group(1)),
        )
        .add_object(
            ObjectInput::from_bytes(
                DataType::Signature,
                b"-----BEGIN PGP SIGNED MESSAGE-----".to_vec(),
            )
            .metadata(Metadata::Signature {
                hash_type: HashType::Sha384,
                fingerprint: None,
            })
            .group(2)
            .link(Link::Object(6))
            .name("part-signature"),
        )
        // 11..13: OCI-SIF style objects in group 3
        .add_object(
            ObjectInput::from_bytes(DataType::Sbom, br#"{"spdxVersion":"SPDX-2.3"}"#.to_vec())
                .metadata(Metadata::Sbom {
                    format: SbomFormat::SpdxJson,
                })
                .group(3),
        )
        .add_object(
            ObjectInput::from_bytes(DataType::OciRootIndex, br#"{"schemaVersion":2}"#.to_vec())
                .metadata(Metadata::OciBlob {
                    digest:
                        "sha256:2dc692f0dcaf7e3cb30db2d5d61004e4319f13db84331b65f066481c0f94cffb"
                            .into(),
                })
                .group(3),
        )
        .add_object(
            ObjectInput::from_bytes(DataType::OciBlob, vec![0x42; 847])
                .metadata(Metadata::OciBlob {
                    digest:
                        "sha256:a88b15e95042f7d5a1327c03c57e10bdc1cf5f5efc2968fc73c12b6f5b00c731"
                            .into(),
                })
                .group(3)
                .alignment(512),
        )
        // 14: raw data with its own time and a legacy-style name
        .add_object(
            ObjectInput::from_bytes(DataType::Generic, vec![9; 33])
                .time(1_590_175_859)
                .name("."),
        )
        // 15: an immutable archive partition of another architecture
        .add_object(
            partition(
                vec![3; 7],
                FsType::ImmutableObject,
                PartType::System,
                Arch::Ppc64le,
            )
            .group(3),
        )
}

/// Writes the rich image (and its root file system source) into `dir`.
pub fn write_rich_image(dir: &Path) -> PathBuf {
    let rootfs = dir.join("rootfs.squashfs");
    std::fs::write(&rootfs, fake_squashfs(10_000)).expect("write rootfs");
    let image = dir.join("rich.sif");
    rich_builder(&rootfs)
        .write_to(&image)
        .expect("write rich image");
    image
}

/// The smallest image Singularity/Apptainer would run: deffile + primary SquashFS.
pub fn write_minimal_image(dir: &Path, arch: Arch) -> PathBuf {
    let rootfs = dir.join("minimal-rootfs.squashfs");
    std::fs::write(&rootfs, fake_squashfs(4096 * 3 + 17)).expect("write rootfs");
    let image = dir.join("minimal.sif");
    SifBuilder::new(arch)
        .add_object(ObjectInput::deffile("Bootstrap: scratch\n"))
        .add_primary_squashfs(&rootfs)
        .write_to(&image)
        .expect("write minimal image");
    image
}

/// A valid image: deffile, primary partition, signature over group 1.
pub fn base_image() -> Vec<u8> {
    let mut out = Cursor::new(Vec::new());
    SifBuilder::new(Arch::Amd64)
        .deterministic()
        .add_object(ObjectInput::deffile("Bootstrap: scratch\n"))
        .add_object(primary_partition(5000, Arch::Amd64))
        .add_object(
            ObjectInput::from_bytes(DataType::Signature, b"sig".to_vec())
                .metadata(Metadata::Signature {
                    hash_type: HashType::Sha256,
                    fingerprint: None,
                })
                .no_group()
                .link(Link::Group(1)),
        )
        .write_image(&mut out, "base.sif")
        .expect("base image");
    out.into_inner()
}

/// A real layout (deffile, a 4 KiB primary partition) whose partition is then made
/// `size` bytes long and the file grown to match, sparsely: a multi-GiB image
/// that costs no disk. Returns the path and the partition's descriptor.
pub fn write_sparse_image(dir: &Path, size: i64) -> (PathBuf, Descriptor) {
    let path = dir.join("big.sif");
    SifBuilder::new(Arch::Amd64)
        .add_object(ObjectInput::deffile("Bootstrap: scratch\n"))
        .add_object(primary_partition(4096, Arch::Amd64))
        .write_to(&path)
        .expect("write");
    let mut bytes = std::fs::read(&path).expect("read");
    let mut header = Header::decode(bytes[..HEADER_LEN].try_into().expect("header"));
    let slot = header.descriptors_offset as usize + DESCRIPTOR_LEN;
    let mut partition =
        Descriptor::decode(bytes[slot..slot + DESCRIPTOR_LEN].try_into().expect("d"));
    partition.size = size;
    partition.size_with_padding += size - 4096;
    header.data_size = partition.offset + size - header.data_offset;
    bytes[..HEADER_LEN].copy_from_slice(&header.encode());
    bytes[slot..slot + DESCRIPTOR_LEN].copy_from_slice(&partition.encode());
    std::fs::write(&path, &bytes).expect("patch");
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .expect("open");
    file.set_len((partition.offset + size) as u64)
        .expect("grow sparsely");
    (path, partition)
}

/// Every fixture the project makes itself, written into `dir`.
pub fn generated_images(dir: &Path) -> Vec<PathBuf> {
    let empty = dir.join("empty.sif");
    SifBuilder::new(Arch::Amd64)
        .deterministic()
        .launch_script("")
        .write_to(&empty)
        .expect("write empty image");
    vec![
        write_rich_image(dir),
        write_minimal_image(dir, Arch::Amd64),
        empty,
    ]
}

/// A builder that writes `image` again, from what the reader reports.
pub fn rebuild<R: Read + Seek>(image: &mut SifImage<R>) -> SifBuilder {
    let h = image.header().clone();
    let mut builder = SifBuilder::new(h.arch)
        .launch_script(h.launch_script_text())
        .id(h.id)
        .time(h.created_at)
        .descriptor_capacity(h.descriptors_total as usize);
    let mut end = h.data_offset;
    for d in image.descriptors().to_vec() {
        let data = image.read_object(d.id, 1 << 30).expect("object data");
        let padding = d.offset - end;
        let alignment = if padding == 0 {
            0
        } else if d.offset % 4096 == 0 {
            4096
        } else {
            512
        };
        let mut object = ObjectInput::from_bytes(d.data_type, data)
            .link(d.link())
            .name(d.name_text())
            .metadata(d.metadata())
            .time(d.created_at)
            .alignment(alignment);
        object = match d.group() {
            Some(group) => object.group(group),
            None => object.no_group(),
        };
        builder = builder.add_object(object);
        end = d.offset + d.size;
    }
    builder
}
