//! The SquashFS reader against mksquashfs: one source tree with what real images
//! hold (empty, tiny, block-sized and multi-block files, a sparse file, hard links,
//! duplicate files, long symlinks, a directory of 700 entries, deep directories,
//! a FIFO, non-UTF-8 names), built with every compressor hybrun reads and with
//! fragments, without, always, 4 KiB and 1 MiB blocks, uncompressed tables,
//! xattrs; bare and wrapped in a SIF. Every path, kind, mode, size, link target
//! and file content must match the source tree. Skipped without mksquashfs.

use std::collections::BTreeMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use hybrun::image::contents::{EntryKind, Image, ImageKind};

/// What the source tree holds at each path: kind, mode, size, link target.
type Expected = BTreeMap<String, (EntryKind, u32, u64, Option<String>)>;

fn source_tree(root: &Path) {
    let w = |p: &str, data: &[u8]| {
        let path = root.join(p);
        std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
        std::fs::write(path, data).expect("write");
    };
    let pattern = |n: usize| -> Vec<u8> { (0..n).map(|i| (i * 7 + i / 251) as u8).collect() };
    w("empty", b"");
    w("one", b"1");
    w("etc/os-release", b"ID=test\nVERSION_ID=1\n");
    for n in [
        4095, 4096, 4097, 131_071, 131_072, 131_073, 300_000, 1_100_000,
    ] {
        w(&format!("data/f{n}"), &pattern(n));
    }
    w("data/dup-a", &pattern(200_000));
    w("data/dup-b", &pattern(200_000));
    let sparse = std::fs::File::create(root.join("data/sparse")).expect("create");
    sparse.set_len(3 << 20).expect("truncate");
    drop(sparse);
    std::fs::hard_link(root.join("data/f4097"), root.join("data/hard")).expect("link");
    let long = "x".repeat(300);
    std::os::unix::fs::symlink(&long, root.join("long-link")).expect("symlink");
    std::os::unix::fs::symlink("data/f4096", root.join("short-link")).expect("symlink");
    for i in 0..700 {
        w(&format!("wide/entry-{i:04}"), format!("{i}").as_bytes());
    }
    let mut deep = String::from("deep");
    for i in 0..30 {
        deep.push_str(&format!("/level{i}"));
    }
    w(&format!("{deep}/leaf"), b"leaf");
    w("names/caf\u{e9} \u{2603}", b"utf-8");
    let latin1 = root.join(std::ffi::OsStr::new(
        <std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(b"names/latin\xe9"),
    ));
    std::fs::write(latin1, b"latin-1").expect("write");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        root.join("fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o640),
        0,
    )
    .expect("mkfifo");
    std::fs::set_permissions(root.join("one"), std::fs::Permissions::from_mode(0o4755))
        .expect("chmod");
}

/// The source tree as the image index should show it.
fn expected(root: &Path) -> Expected {
    let mut out = Expected::new();
    let mut stack = vec![(root.to_path_buf(), String::new())];
    let mode = |m: &std::fs::Metadata| m.mode() & 0o7777;
    out.insert(
        "/".into(),
        (
            EntryKind::Dir,
            mode(&std::fs::metadata(root).expect("stat")),
            0,
            None,
        ),
    );
    while let Some((dir, prefix)) = stack.pop() {
        for item in std::fs::read_dir(&dir).expect("list") {
            let item = item.expect("entry");
            let path = format!("{prefix}/{}", item.file_name().to_string_lossy());
            let m = item.path().symlink_metadata().expect("stat");
            let ft = m.file_type();
            let value = if ft.is_symlink() {
                let t = std::fs::read_link(item.path()).expect("readlink");
                let t = t.to_string_lossy().into_owned();
                (EntryKind::Symlink, mode(&m), 0, Some(t))
            } else if ft.is_dir() {
                stack.push((item.path(), path.clone()));
                (EntryKind::Dir, mode(&m), 0, None)
            } else if ft.is_file() {
                (EntryKind::File, mode(&m), m.len(), None)
            } else {
                (EntryKind::Other, mode(&m), 0, None)
            };
            out.insert(path, value);
        }
    }
    out
}

/// Compares the image with the source tree: the index, then every file's bytes.
fn compare(image: &Image, root: &Path, want: &Expected, what: &str) {
    let got: Expected = image
        .entries()
        .map(|(p, e)| (p.to_owned(), (e.kind, e.mode, e.size, e.target.clone())))
        .collect();
    for (path, value) in want {
        assert_eq!(got.get(path), Some(value), "{what}: {path}");
    }
    assert_eq!(got.len(), want.len(), "{what}: entry count");
    for (path, (kind, ..)) in want {
        if *kind != EntryKind::File || path.starts_with("/names/latin") {
            continue;
        }
        let data = image.read_file(path, 8 << 20).expect("read");
        let host = std::fs::read(root.join(path.trim_start_matches('/'))).expect("read");
        assert!(data == host, "{what}: {path}: content differs");
    }
}

fn mksquashfs(root: &Path, out: &Path, options: &[&str]) -> bool {
    let status = Command::new("mksquashfs")
        .arg(root)
        .arg(out)
        .args(["-noappend", "-quiet", "-no-progress"])
        .args(options)
        .status();
    matches!(status, Ok(s) if s.success())
}

#[test]
fn every_mksquashfs_layout_reads_back_as_its_source() {
    if Command::new("mksquashfs").arg("-version").output().is_err() {
        eprintln!("SKIPPED: no mksquashfs");
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).expect("mkdir");
    source_tree(&root);
    let want = expected(&root);
    let layouts: &[&[&str]] = &[
        &[],
        &["-no-fragments"],
        &["-always-use-fragments"],
        &["-b", "4096"],
        &["-b", "1048576"],
        &["-noI", "-noD", "-noF", "-noX"],
        &["-no-exports", "-no-xattrs"],
        &["-xattrs"],
    ];
    for comp in ["gzip", "xz", "lz4", "zstd"] {
        for layout in layouts {
            let what = format!("{comp} {}", layout.join(" "));
            let sqfs: PathBuf = tmp.path().join("t.sqfs");
            let mut options = vec!["-comp", comp];
            options.extend_from_slice(layout);
            assert!(mksquashfs(&root, &sqfs, &options), "{what}: mksquashfs");
            let image = Image::open(&sqfs).unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(image.kind(), ImageKind::Squashfs);
            compare(&image, &root, &want, &what);
        }
    }
    // Wrapped in a SIF: the same contents at the partition's offset.
    let sqfs = tmp.path().join("t.sqfs");
    assert!(mksquashfs(&root, &sqfs, &["-comp", "zstd"]));
    let sif = tmp.path().join("t.sif");
    let status = Command::new(env!("CARGO_BIN_EXE_hybrun"))
        .args(["image", "wrap"])
        .arg(&sqfs)
        .arg(&sif)
        .output()
        .expect("hybrun runs");
    assert!(status.status.success(), "{status:?}");
    let image = Image::open(&sif).expect("SIF opens");
    assert_eq!(image.kind(), ImageKind::Sif);
    assert!(image.squashfs().expect("squashfs").offset > 0);
    compare(&image, &root, &want, "SIF zstd");
    // The same SIF from memory (what the fuzz target reads).
    let bytes: std::sync::Arc<[u8]> = std::fs::read(&sif).expect("read").into();
    let image = Image::from_bytes(bytes, "memory.sif").expect("opens from memory");
    assert_eq!(image.kind(), ImageKind::Sif);
    compare(&image, &root, &want, "SIF zstd in memory");
}
