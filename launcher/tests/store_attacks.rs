//! Attacks on the allowed-directory store: path tricks in names, symbolic links
//! in place of the source or of the directory, a sibling directory that shares
//! the allowed one's prefix, special files and non-SIF files as sources. Each is
//! refused with a `hybrun: error:` that names the file, and leaves nothing behind.

mod store_common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::time::{Duration, Instant};

use hybrun::store::name_in_dir;
use store_common::{World, hybrun, path_str, run};

/// Asserts that nothing was written anywhere in the world but the sources.
fn assert_nothing_admitted(world: &World) {
    assert_eq!(world.images(), Vec::<String>::new());
    world.assert_consistent();
    let root = world.allowed.parent().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(root)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["allowed", "site.toml", "src"],
        "something escaped into {root:?}"
    );
}

#[test]
fn path_tricks_in_names_refused() {
    let world = World::new("");
    let a = world.source("a.sif", 1000, 1);
    let long = format!("{}.sif", "x".repeat(200));
    let outside = world.allowed.parent().unwrap().join("evil.sif");
    for (name, why) in [
        ("../evil.sif", "'/'"),
        ("../../evil.sif", "'/'"),
        (path_str(&outside), "'/'"),
        ("/tmp/evil.sif", "'/'"),
        ("sub/evil.sif", "'/'"),
        ("..", "'..'"),
        ("..sif", "'..'"),
        (".hybrun-index.json", "starts with '.'"),
        (".hidden.sif", "starts with '.'"),
        (".hybrun-lock", "starts with '.'"),
        ("evil\n.sif", "U+000A"),
        ("evil\u{1b}[2J.sif", "U+001B"),
        ("evil.img", "does not end in .sif"),
        ("evil.sif/", "'/'"),
        ("", "empty"),
        (long.as_str(), "more than 128"),
    ] {
        let out = world.run("cp", &[path_str(&a), "--name", name]);
        out.assert_refused(&["not an acceptable image name", why]);
        // rm takes names of what is there: a path or a hidden name is refused,
        // anything else is not found.
        let out = world.run("rm", &[name]);
        let expected = if name.contains('/') {
            "contains '/'"
        } else if name.is_empty() || name.starts_with('.') {
            "not an acceptable image name"
        } else {
            "no such image"
        };
        out.assert_refused(&[expected]);
    }
    // A source whose own file name is not acceptable needs --name.
    let img = world.src.join("a.img");
    std::fs::copy(&a, &img).unwrap();
    world.run("cp", &[path_str(&img)]).assert_refused(&[
        "\"a.img\"",
        "does not end in .sif",
        "--name",
    ]);
    assert_nothing_admitted(&world);
}

#[test]
fn dotdot_in_source_path_is_only_a_path() {
    // `..` in the source's path is fine: only the final name goes into the directory.
    let world = World::new("");
    world.source("a.sif", 1000, 1);
    let via = format!("{}/../src/a.sif", world.src.display());
    world.run("cp", &[&via]).assert_ok();
    assert_eq!(world.images(), ["a.sif"]);
    world.assert_consistent();
}

#[test]
fn symlink_as_source_refused() {
    let world = World::new("");
    let a = world.source("a.sif", 1000, 1);
    let link = world.src.join("link.sif");
    symlink(&a, &link).unwrap();
    world
        .run("cp", &[path_str(&link)])
        .assert_refused(&[path_str(&link), "symbolic link"]);
    // A link to something the user should not be able to admit: same answer.
    let shadow = world.src.join("shadow.sif");
    symlink("/etc/shadow", &shadow).unwrap();
    world
        .run("cp", &[path_str(&shadow)])
        .assert_refused(&["symbolic link"]);
    assert_nothing_admitted(&world);
}

#[test]
fn symlink_as_directory_refused() {
    let world = World::new("");
    let a = world.source("a.sif", 1000, 1);
    let root = world.allowed.parent().unwrap();
    let link = root.join("link-to-allowed");
    symlink(&world.allowed, &link).unwrap();
    let out = cp_with_dir(&a, &link);
    out.assert_refused(&[
        path_str(&link),
        "is a symbolic link",
        path_str(&world.allowed),
    ]);
    // With a trailing slash the path resolves through the link: still refused.
    let slash = format!("{}/", link.display());
    cp_with_dir(&a, Path::new(&slash)).assert_refused(&["canonical"]);

    // A link higher up the path, or `..` in it: not canonical.
    let parent_link = root.join("parent-link");
    symlink(root, &parent_link).unwrap();
    cp_with_dir(&a, &parent_link.join("allowed"))
        .assert_refused(&["not the canonical path", path_str(&world.allowed)]);
    cp_with_dir(&a, &root.join("src/../allowed")).assert_refused(&["not the canonical path"]);
    cp_with_dir(&a, Path::new("relative/allowed")).assert_refused(&["absolute path"]);
    // A regular file as the directory.
    cp_with_dir(&a, &world.site).assert_refused(&["not a directory"]);
    std::fs::remove_file(&link).unwrap();
    std::fs::remove_file(&parent_link).unwrap();
    assert_nothing_admitted(&world);

    // The canonical path, with or without a trailing slash, is accepted.
    let slash = format!("{}/", world.allowed.display());
    cp_with_dir(&a, Path::new(&slash)).assert_ok();
    assert_eq!(world.images(), ["a.sif"]);
}

/// `hybrun image cp SOURCE --dir DIR`.
fn cp_with_dir(source: &Path, dir: &Path) -> store_common::Outcome {
    let mut command = hybrun();
    command
        .args(["image", "cp", path_str(source), "--dir"])
        .arg(dir);
    run(command)
}

#[test]
fn sibling_prefix_directory_not_admitted() {
    let world = World::new("");
    let root = world.allowed.parent().unwrap();
    let evil = root.join("allowed_evil");
    std::fs::create_dir(&evil).unwrap();
    let inside = world.allowed.join("a.sif");
    let beside = evil.join("a.sif");
    store_common::make_sif(&inside, 100, 1);
    store_common::make_sif(&beside, 100, 2);

    // The library check the launcher uses: component by component, not by prefix.
    assert_eq!(
        name_in_dir(&world.allowed, &inside).as_deref(),
        Some("a.sif")
    );
    assert_eq!(name_in_dir(&world.allowed, &beside), None);
    assert_eq!(
        name_in_dir(&world.allowed, &root.join("allowed_evil")),
        None
    );
    assert_eq!(
        name_in_dir(&world.allowed, &world.allowed.join("../allowed_evil/a.sif")),
        None
    );
    assert_eq!(
        name_in_dir(&world.allowed, &world.allowed.join("sub/a.sif")),
        None
    );
    assert_eq!(
        name_in_dir(&world.allowed, &world.allowed.join(".hidden.sif")),
        None
    );
    assert_eq!(name_in_dir(&evil, &inside), None);

    // Through the CLI: a name reaching into the sibling is refused, its file stays.
    world
        .run("rm", &["../allowed_evil/a.sif"])
        .assert_refused(&["not an acceptable image name"]);
    assert!(beside.is_file());
    // The sibling's images are not the store's: they are not listed or verified.
    let ls = world.run("ls", &[]);
    assert!(ls.stdout.ends_with("1 file(s) found.\n"), "{}", ls.stdout);
    assert!(!ls.stdout.contains("allowed_evil"));
}

#[test]
fn special_files_as_source_refused() {
    let world = World::new("");
    let fifo = world.src.join("fifo.sif");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o600),
        0,
    )
    .unwrap();
    // A FIFO with no writer would block a plain open forever.
    let started = Instant::now();
    world.run("cp", &[path_str(&fifo)]).assert_refused(&[
        path_str(&fifo),
        "FIFO",
        "not a regular file",
    ]);
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "the FIFO open blocked"
    );

    world
        .run("cp", &["/dev/null", "--name", "null.sif"])
        .assert_refused(&["/dev/null", "character device"]);
    world
        .run("cp", &[path_str(&world.src), "--name", "dir.sif"])
        .assert_refused(&["directory"]);
    let missing = world.src.join("missing.sif");
    world
        .run("cp", &[path_str(&missing)])
        .assert_refused(&[path_str(&missing), "No such file"]);
    assert_nothing_admitted(&world);
}

#[test]
fn non_sif_files_refused() {
    let world = World::new("");
    // Right magic, truncated data: only the structure check catches it.
    let good = std::fs::read(world.source("good.sif", 100_000, 3)).unwrap();
    let script = "#!/bin/sh\nrm -rf ~\n".repeat(20).into_bytes();
    for (name, bytes, expected) in [
        ("script.sif", &script[..], "not a SIF file"),
        ("tiny.sif", b"SIF", "not a SIF file"),
        ("empty.sif", b"", "not a SIF file"),
        (
            "truncated.sif",
            &good[..good.len() / 2],
            "truncated or corrupt SIF",
        ),
    ] {
        let path = world.src.join(name);
        std::fs::write(&path, bytes).unwrap();
        world.run("cp", &[path_str(&path)]).assert_refused(&[
            path_str(&path),
            expected,
            "only valid SIF images",
        ]);
    }
    assert_nothing_admitted(&world);
}

#[test]
fn planted_entries_are_not_trusted() {
    let world = World::new("");
    world.cp_ok(&world.source("a.sif", 1000, 1));
    // Someone replaces an admitted image with a link to another file, and plants
    // a link and a directory of their own.
    let other = world.source("other.sif", 1000, 2);
    std::fs::remove_file(world.allowed.join("a.sif")).unwrap();
    symlink(&other, world.allowed.join("a.sif")).unwrap();
    symlink(&other, world.allowed.join("planted.sif")).unwrap();
    std::fs::create_dir(world.allowed.join("dir.sif")).unwrap();

    let out = world.run("verify", &[]);
    out.assert_refused(&["FAILED verification"]);
    assert!(
        out.stdout
            .contains("a.sif: FAILED (cannot open it as a regular file"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("planted.sif: FAILED (unindexed"),
        "{}",
        out.stdout
    );
    let ls = world.run("ls", &[]);
    assert!(ls.stdout.contains("(not a regular file)"), "{}", ls.stdout);
    // They take slots: 3 entries of the 3 allowed.
    let small = std::fs::read_to_string(&world.site).unwrap() + "max_images = 3\n";
    std::fs::write(&world.site, small).unwrap();
    world
        .run("cp", &[path_str(&world.source("b.sif", 100, 3))])
        .assert_refused(&["limit is 3"]);
    // rm drops the links (not their targets) but refuses the directory.
    world
        .run("rm", &["dir.sif"])
        .assert_refused(&["dir.sif", "directory"]);
    world.run("rm", &["a.sif", "planted.sif"]).assert_ok();
    assert!(other.is_file());
}

/// Names planted by plain `cp` with terminal escapes, newlines or invalid
/// UTF-8 print escaped (one line each, no forged "OK" line) and can be removed
/// by the spelling `ls` shows.
#[test]
fn planted_hostile_names_print_escaped_and_can_be_removed() {
    use std::os::unix::ffi::OsStrExt;
    let world = World::new("");
    world.cp_ok(&world.source("small.sif", 1000, 1));
    let forged = "x.sif\nsmall.sif: OK";
    std::fs::write(world.allowed.join(forged), b"planted").unwrap();
    std::fs::write(world.allowed.join("red\u{1b}[31m.sif"), b"planted").unwrap();
    let invalid = std::ffi::OsStr::from_bytes(b"bad\xff.sif");
    std::fs::write(world.allowed.join(invalid), b"planted").unwrap();

    let verify = world.run("verify", &[]);
    verify.assert_refused(&["FAILED verification"]);
    let ok_lines: Vec<&str> = verify
        .stdout
        .lines()
        .filter(|l| l.starts_with("small.sif"))
        .collect();
    assert_eq!(ok_lines, ["small.sif: OK"], "{}", verify.stdout);
    assert!(!verify.stdout.contains('\u{1b}'), "{}", verify.stdout);
    assert!(
        verify
            .stdout
            .contains("\"x.sif\\u{a}small.sif: OK\": FAILED (unindexed"),
        "{}",
        verify.stdout
    );
    let ls = world.run("ls", &[]);
    assert!(!ls.stdout.contains('\u{1b}'), "{}", ls.stdout);
    assert!(ls.stdout.contains("\"bad\\xff.sif\""), "{}", ls.stdout);
    // Only *.sif names take the site's slots.
    assert!(ls.stdout.contains("3 file(s) found."), "{}", ls.stdout);

    let rm = world.run(
        "rm",
        &[
            "x.sif\\u{a}small.sif: OK",
            "red\\u{1b}[31m.sif",
            "bad\\xff.sif",
        ],
    );
    rm.assert_ok();
    assert_eq!(rm.stdout.lines().count(), 3, "{}", rm.stdout);
    assert_eq!(world.images(), ["small.sif"]);
    world.assert_consistent();
}

/// An image deleted by hand leaves its index entry; `rm NAME` drops it, as
/// `verify`'s advice says.
#[test]
fn rm_drops_the_index_entry_of_a_file_deleted_by_hand() {
    let world = World::new("");
    world.cp_ok(&world.source("gone.sif", 1000, 1));
    std::fs::remove_file(world.allowed.join("gone.sif")).unwrap();
    world
        .run("verify", &[])
        .assert_refused(&["FAILED verification"]);
    let rm = world.run("rm", &["gone.sif"]);
    rm.assert_ok();
    assert!(
        rm.stdout.contains("Index entry 'gone.sif' removed"),
        "{}",
        rm.stdout
    );
    assert!(world.index().images.is_empty());
    world.run("verify", &[]).assert_ok();
}

/// Names that look like other names or like options are refused at the door.
#[test]
fn deceptive_names_refused() {
    let world = World::new("");
    let src = world.source("a.sif", 1000, 1);
    for name in [
        "bidi\u{202e}fis.sif",
        "zero\u{200b}width.sif",
        "line\u{2028}sep.sif",
        "\u{a0}\u{a0}.sif",
        "e\u{301}.sif",
        "-rf.sif",
    ] {
        world
            .run("cp", &[path_str(&src), &format!("--name={name}")])
            .assert_refused(&["not an acceptable image name"]);
    }
    assert_nothing_admitted(&world);
}
