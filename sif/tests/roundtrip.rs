//! hybrun's SIF writer, checked by reading back what it wrote (write -> read ->
//! same facts), on the project's own fixtures: every data type, three groups,
//! object and group links, names, times, alignments. These tests need nothing
//! outside the repository.

mod common;

use std::fs;
use std::io::{Cursor, Read, Seek, SeekFrom};

use common::{IMAGE_ID, IMAGE_TIME};
use hybrun_sif::writer::ObjectSource;
use hybrun_sif::{
    Arch, DataType, Descriptor, FsType, Header, ImageId, Link, Metadata, ObjectInput, PartType,
    SifBuilder, SifImage, display,
};

fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary directory")
}

#[test]
fn rich_image_reads_back_with_the_facts_written() {
    let dir = tempdir();
    let path = common::write_rich_image(dir.path());
    let mut image = SifImage::open(&path).expect("rich image reads back");
    let h = image.header().clone();
    assert_eq!(h.launch_script_text(), "#!/usr/bin/env run-singularity\n");
    assert_eq!(h.version_text(), "01");
    assert_eq!(
        h.arch,
        Arch::Amd64,
        "the header takes the primary partition's arch"
    );
    assert_eq!(h.id.to_string(), IMAGE_ID);
    assert_eq!((h.created_at, h.modified_at), (IMAGE_TIME, IMAGE_TIME));
    assert_eq!((h.descriptors_total, h.descriptors_free), (48, 48 - 15));
    assert_eq!((h.descriptors_offset, h.descriptors_size), (4096, 48 * 585));
    assert_eq!(h.data_offset, 32176);
    assert_eq!(image.file_len(), (h.data_offset + h.data_size) as u64);

    let facts: Vec<(u32, DataType, Option<u32>, Link, String)> = image
        .descriptors()
        .iter()
        .map(|d| (d.id, d.data_type, d.group(), d.link(), d.name_text()))
        .collect();
    use DataType as T;
    let expected = vec![
        (1, T::Deffile, Some(1), Link::None, ""),
        (2, T::Labels, Some(1), Link::None, ""),
        (3, T::GenericJson, Some(1), Link::None, "oci-config.json"),
        (4, T::EnvVar, Some(1), Link::None, ""),
        (5, T::Partition, Some(1), Link::None, ""),
        (6, T::Partition, Some(2), Link::None, ""),
        (7, T::Partition, Some(2), Link::None, "overlay"),
        (8, T::CryptoMessage, None, Link::Object(5), ""),
        (9, T::Signature, None, Link::Group(1), ""),
        (10, T::Signature, Some(2), Link::Object(6), "part-signature"),
        (11, T::Sbom, Some(3), Link::None, ""),
        (12, T::OciRootIndex, Some(3), Link::None, ""),
        (13, T::OciBlob, Some(3), Link::None, ""),
        (14, T::Generic, Some(1), Link::None, "."),
        (15, T::Partition, Some(3), Link::None, ""),
    ];
    let expected: Vec<_> = expected
        .into_iter()
        .map(|(id, t, g, l, n)| (id, t, g, l, n.to_owned()))
        .collect();
    assert_eq!(facts, expected);

    let primary = image
        .primary_partition()
        .expect("primary partition")
        .clone();
    assert_eq!(primary.id, 5);
    assert_eq!(
        primary.metadata(),
        Metadata::Partition {
            fs_type: FsType::Squashfs,
            part_type: PartType::PrimarySystem,
            arch: Arch::Amd64
        }
    );
    let rootfs = fs::read(dir.path().join("rootfs.squashfs")).expect("rootfs");
    assert_eq!(image.read_object(5, u64::MAX).expect("rootfs data"), rootfs);
    assert_eq!(image.read_object(14, 1024).expect("raw data"), vec![9; 33]);
    assert!(
        image.read_object(5, 100).is_err(),
        "the size limit is enforced"
    );

    let descriptors = image.descriptors().to_vec();
    check_layout(&descriptors, &h);
    assert_eq!(descriptors[13].created_at, 1_590_175_859);
    assert_eq!(descriptors[0].created_at, IMAGE_TIME);
    assert!(descriptors.iter().all(|d| d.uid == 0 && d.gid == 0));
    let Metadata::Signature { fingerprint, .. } = descriptors[8].metadata() else {
        panic!("object 9 is a signature");
    };
    assert_eq!(fingerprint, Some(common::FINGERPRINT));
}

/// Objects follow each other in ID order, each at the first offset its alignment
/// allows, with the padding counted as the reference counts it.
fn check_layout(descriptors: &[Descriptor], h: &Header) {
    let mut end = h.data_offset;
    for d in descriptors {
        let alignment = match (d.data_type, d.id) {
            (DataType::Partition, _) => 4096,
            (_, 13) => 512,
            _ => 1,
        };
        let aligned = (end + alignment - 1) / alignment * alignment;
        assert_eq!(d.offset, aligned, "object {} offset", d.id);
        assert_eq!(
            d.size_with_padding,
            d.offset - end + d.size,
            "object {} padding",
            d.id
        );
        end = d.offset + d.size;
    }
    assert_eq!(end, h.data_offset + h.data_size);
}

#[test]
fn writing_is_deterministic_when_asked() {
    let dir = tempdir();
    let rootfs = dir.path().join("rootfs.squashfs");
    fs::write(&rootfs, common::fake_squashfs(5000)).expect("rootfs");
    let build = |name: &str| {
        let path = dir.path().join(name);
        common::rich_builder(&rootfs)
            .deterministic()
            .write_to(&path)
            .expect("write");
        fs::read(path).expect("read")
    };
    assert_eq!(build("a.sif"), build("b.sif"));

    // Without an ID the writer makes a random (version 4) one.
    let random = dir.path().join("random.sif");
    SifBuilder::new(Arch::Amd64)
        .write_to(&random)
        .expect("write");
    let id = SifImage::open(&random).expect("read").header().id;
    assert!(!id.is_nil());
    assert_eq!(id.0[6] >> 4, 4);
}

#[test]
fn text_report_shows_every_object() {
    let dir = tempdir();
    let path = common::write_rich_image(dir.path());
    let image = SifImage::open(&path).expect("read");
    let text = display::inspect_text(image.header(), image.descriptors());
    for needle in [
        "Launch Script:        #!/usr/bin/env run-singularity\n",
        "Primary Architecture: amd64\n",
        "ID:                   6ecc76b7-a497-4f7f-9ebd-8da2a04c6be1\n",
        "Created At:           2023-11-14 22:13:20 +0000 UTC\n",
        "Descriptors Free:     33\n",
        "|FS (Squashfs/*System/amd64)\n",
        "|FS (Encrypted squashfs/Overlay/arm64)\n",
        "|FS (Archive/System/ppc64le)\n",
        "9    |NONE    |1   (G) |",
        "|Signature (SHA-256)\n",
        "|Cryptographic Message (PEM/RSA-OAEP)\n",
        "|SBOM (spdx-json)\n",
        "|OCI.RootIndex\n",
        "  Linked ID:    1 (G)\n",
        "  Entity:       12045C8C0B1004D058DE4BEDA20C27EE7FF7BA84\n",
        "  Name:         oci-config.json\n",
        "  Digest:       sha256:a88b15e95042f7d5a1327c03c57e10bdc1cf5f5efc2968fc73c12b6f5b00c731\n",
        "  Created At:   2020-05-22 19:30:59 +0000 UTC\n",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in:\n{text}");
    }
    assert_eq!(text.matches("  Data Type:").count(), 15);
}

#[test]
fn rewriting_an_image_from_its_facts_gives_the_same_bytes() {
    let dir = tempdir();
    for original in common::generated_images(dir.path()) {
        let copy = original.with_extension("copy.sif");
        let mut image = SifImage::open(&original).expect("read");
        common::rebuild(&mut image)
            .write_to(&copy)
            .expect("rewrite");
        assert_eq!(
            fs::read(&original).expect("original"),
            fs::read(&copy).expect("copy"),
            "{}",
            original.display()
        );
    }
}

#[test]
fn writes_are_atomic() {
    let dir = tempdir();
    let path = dir.path().join("image.sif");
    fs::write(&path, b"previous content").expect("seed");

    // A missing source fails the write and leaves the old file and no temporary.
    let failed = SifBuilder::new(Arch::Amd64)
        .add_primary_squashfs(dir.path().join("missing.squashfs"))
        .write_to(&path);
    let message = failed.expect_err("missing source").to_string();
    assert!(message.contains("missing.squashfs"), "{message}");
    assert_eq!(fs::read(&path).expect("old file"), b"previous content");
    let names = || -> Vec<String> {
        fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect()
    };
    assert_eq!(
        names(),
        vec!["image.sif".to_owned()],
        "no temporary left behind"
    );

    // A good write replaces the file whole and leaves nothing else.
    let minimal = common::write_minimal_image(dir.path(), Arch::Arm64);
    fs::rename(&minimal, &path).expect("move");
    SifBuilder::new(Arch::Arm64)
        .add_object(ObjectInput::deffile("Bootstrap: scratch\n"))
        .write_to(&path)
        .expect("overwrite");
    assert_eq!(SifImage::open(&path).expect("read").descriptors().len(), 1);
    let mut left = names();
    left.sort();
    assert_eq!(
        left,
        vec!["image.sif".to_owned(), "minimal-rootfs.squashfs".to_owned()]
    );

    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o755,
            "images are executable like the reference's"
        );
    }

    // A directory that does not exist is reported, not panicked on.
    let err = SifBuilder::new(Arch::Amd64)
        .write_to(dir.path().join("no/such/dir/x.sif"))
        .expect_err("missing directory");
    assert!(err.to_string().contains("x.sif"), "{err}");
}

#[test]
fn minimal_runnable_image_has_what_singularity_needs() {
    let dir = tempdir();
    let arch = Arch::host().unwrap_or(Arch::Amd64);
    let path = common::write_minimal_image(dir.path(), arch);
    let image = SifImage::open(&path).expect("read");
    let h = image.header();
    assert_eq!(h.launch_script_text(), "#!/usr/bin/env run-singularity\n");
    assert_eq!(h.arch, arch);
    let primary = image.primary_partition().expect("primary partition");
    assert_eq!(primary.group(), Some(1));
    assert_eq!(
        primary.offset % 4096,
        0,
        "partitions are page-aligned for mounting"
    );
    assert_eq!(primary.size, 4096 * 3 + 17);
    assert!(matches!(
        primary.metadata(),
        Metadata::Partition { fs_type: FsType::Squashfs, part_type: PartType::PrimarySystem, arch: a } if a == arch
    ));
}

/// Counts the bytes read through it.
struct CountingReader<R> {
    inner: R,
    read: u64,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

impl<R: Seek> Seek for CountingReader<R> {
    fn seek(&mut self, pos: SeekFrom) -> std::io::Result<u64> {
        self.inner.seek(pos)
    }
}

#[test]
fn a_2_gib_image_inspects_reading_only_the_tables() {
    let dir = tempdir();
    let (path, _) = common::write_sparse_image(dir.path(), 2 << 30);
    let counting = CountingReader {
        inner: fs::File::open(&path).expect("open"),
        read: 0,
    };
    let image = SifImage::from_reader(counting, path.display().to_string()).expect("inspect");
    let text = display::inspect_text(image.header(), image.descriptors());
    assert!(text.contains("Data Size:            2 GiB"), "{text}");
    let read = image.into_inner().read;
    assert!(read < 64 * 1024, "read {read} bytes of a 2 GiB image");
}

#[test]
fn in_memory_round_trip_of_every_data_type() {
    // Every type, with and without metadata, through write_image / from_reader.
    let mut builder = SifBuilder::new(Arch::S390x).deterministic();
    for code in 0x4001..=0x400b {
        let data_type = DataType::from_code(code);
        let object = if data_type == DataType::Partition {
            ObjectInput::partition(
                ObjectSource::Bytes(vec![1; 10]),
                FsType::Raw,
                PartType::Data,
                Arch::Riscv64,
            )
        } else {
            ObjectInput::from_bytes(data_type, vec![code as u8; 5])
        };
        builder = builder.add_object(object);
    }
    let mut out = Cursor::new(Vec::new());
    builder.write_image(&mut out, "mem.sif").expect("write");
    let image = SifImage::from_reader(Cursor::new(out.into_inner()), "mem.sif").expect("read");
    assert_eq!(image.descriptors().len(), 11);
    for (d, code) in image.descriptors().iter().zip(0x4001..) {
        assert_eq!(d.data_type.code(), code);
        assert_ne!(d.data_type.name(), "Unknown");
    }
    assert_eq!(
        image.header().arch.code(),
        *b"00\0",
        "no primary partition: arch unknown"
    );
    assert_eq!(image.header().id, ImageId::NIL);
    let text = display::header_text(image.header());
    assert!(
        !text.contains("Created At") && !text.contains("ID:") && !text.contains("Architecture")
    );
}
