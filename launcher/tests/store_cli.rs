//! `hybrun image cp|ls|rm|verify` on the real binary: the normal path, the
//! reports, the site file and environment, the image limit and racing copies.

mod store_common;

use std::os::unix::fs::PermissionsExt;

use store_common::{World, hybrun, path_str, run};

#[test]
fn cp_ls_rm_verify() {
    let world = World::new("");
    let a = world.source("a.sif", 10_000, 1);
    let b = world.source("b.sif", 20_000, 2);
    world.cp_ok(&a);
    world.cp_ok(&b);
    assert_eq!(world.images(), ["a.sif", "b.sif"]);

    // Admitted as a copy with the site's mode and the SHA-256 of the content.
    let copy = world.allowed.join("a.sif");
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&a).unwrap());
    let mode = std::fs::metadata(&copy).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o640);
    let index = world.index();
    let entry = &index.images["a.sif"];
    assert_eq!(entry.size, std::fs::metadata(&a).unwrap().len());
    assert_eq!(entry.sha256, sha256_of(&a));
    assert_eq!(entry.source, path_str(&a));
    assert!(entry.scan.is_none());

    let ls = world.run("ls", &[]);
    ls.assert_ok();
    let lines: Vec<&str> = ls.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", ls.stdout);
    assert!(lines[0].starts_with("NAME"), "{}", ls.stdout);
    assert!(lines[1].starts_with("a.sif"), "{}", ls.stdout);
    assert!(lines[1].contains(&entry.sha256[..12]), "{}", ls.stdout);
    assert!(lines[1].contains(&entry.size.to_string()), "{}", ls.stdout);
    assert_eq!(lines[3], "2 file(s) found.");

    let verify = world.run("verify", &[]);
    verify.assert_ok();
    assert_eq!(
        verify.stdout,
        "a.sif: OK\nb.sif: OK\n2 file(s) verified: 2 OK, 0 FAILED.\n"
    );

    let rm = world.run("rm", &["a.sif"]);
    rm.assert_ok();
    assert_eq!(rm.stdout, "File 'a.sif' was succesfully deleted.\n");
    assert_eq!(world.images(), ["b.sif"]);
    world.assert_consistent();

    let rm = world.run("rm", &["a.sif"]);
    rm.assert_refused(&["a.sif: no such image in", "hybrun image ls"]);
    // All names are checked before any is removed; a name given twice counts once.
    world
        .run("rm", &["b.sif", "nope.sif"])
        .assert_refused(&["nope.sif: no such image"]);
    assert_eq!(world.images(), ["b.sif"]);
    world.cp_ok(&a);
    let rm = world.run("rm", &["a.sif", "b.sif", "a.sif"]);
    rm.assert_ok();
    assert_eq!(
        rm.stdout,
        "File 'a.sif' was succesfully deleted.\nFile 'b.sif' was succesfully deleted.\n"
    );
    world.assert_consistent();

    let ls = world.run("ls", &[]);
    assert_eq!(ls.stdout, "0 file(s) found.\n");
}

#[test]
fn cp_under_another_name_and_refuses_existing() {
    let world = World::new("");
    let a = world.source("a.sif", 1000, 1);
    let out = world.run("cp", &[path_str(&a), "--name", "renamed.sif"]);
    out.assert_ok();
    assert_eq!(world.images(), ["renamed.sif"]);
    let again = world.run("cp", &[path_str(&a), "--name", "renamed.sif"]);
    again.assert_refused(&[
        "renamed.sif: refused",
        "already in",
        "hybrun image rm renamed.sif",
    ]);
    world.assert_consistent();
}

#[test]
fn verify_reports_modified_missing_unindexed() {
    let world = World::new("");
    for (i, name) in ["a.sif", "b.sif", "c.sif"].iter().enumerate() {
        world.cp_ok(&world.source(name, 5000, i as u8));
    }
    // Same size, other content: only the hash can tell.
    let mut bytes = std::fs::read(world.allowed.join("a.sif")).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(world.allowed.join("a.sif"), bytes).unwrap();
    std::fs::remove_file(world.allowed.join("b.sif")).unwrap();
    std::fs::copy(world.src.join("c.sif"), world.allowed.join("stray.sif")).unwrap();

    let out = world.run("verify", &[]);
    out.assert_refused(&["3 of 4 file(s) FAILED verification", "hybrun image cp"]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(
        lines[0].starts_with("a.sif: FAILED (modified: sha256"),
        "{}",
        out.stdout
    );
    assert_eq!(lines[1], "b.sif: FAILED (missing)");
    assert_eq!(lines[2], "c.sif: OK");
    assert!(
        lines[3].starts_with("stray.sif: FAILED (unindexed"),
        "{}",
        out.stdout
    );
    assert_eq!(lines[4], "4 file(s) verified: 1 OK, 3 FAILED.");
}

#[test]
fn no_directory_configured_says_how() {
    let world = World::new("");
    let site = world.root.path().join("empty.toml");
    std::fs::write(&site, "").unwrap();
    let mut command = hybrun();
    command.args(["image", "ls", "--site", path_str(&site)]);
    let out = run(command);
    out.assert_refused(&[
        "no allowed directory",
        "[images]",
        "SINGULARITY_ALLOWED_DIR=",
    ]);

    // $SINGULARITY_ALLOWED_DIR when the site file has no `dir`.
    let mut command = hybrun();
    command
        .args(["image", "ls", "--site", path_str(&site)])
        .env("SINGULARITY_ALLOWED_DIR", &world.allowed);
    let out = run(command);
    out.assert_ok();
    assert_eq!(out.stdout, "0 file(s) found.\n");

    // $HYBRUN_SITE names the site file when --site does not.
    let mut command = hybrun();
    command
        .args(["image", "ls"])
        .env("HYBRUN_SITE", &world.site);
    run(command).assert_ok();

    // --dir overrides everything.
    let mut command = hybrun();
    command
        .args(["image", "ls", "--site", path_str(&site), "--dir"])
        .arg(&world.allowed);
    run(command).assert_ok();
}

#[test]
fn site_file_errors_name_file_and_key() {
    let world = World::new("max_imagez = 3\n");
    let out = world.run("ls", &[]);
    out.assert_refused(&[path_str(&world.site), ":3:", "max_imagez"]);

    let missing = world.root.path().join("nope.toml");
    let mut command = hybrun();
    command.args(["image", "ls", "--site", path_str(&missing)]);
    run(command).assert_refused(&[path_str(&missing), "--site"]);
}

#[test]
fn site_dir_placeholder_uid() {
    let world = World::new("");
    let uid = rustix::process::getuid().as_raw();
    let per_user = world.allowed.join(uid.to_string());
    std::fs::create_dir(&per_user).unwrap();
    let site = world.root.path().join("uid.toml");
    std::fs::write(
        &site,
        format!("[images]\ndir = \"{}/{{uid}}\"\n", world.allowed.display()),
    )
    .unwrap();
    let a = world.source("a.sif", 100, 0);
    let mut command = hybrun();
    command.args(["image", "cp", path_str(&a), "--site", path_str(&site)]);
    run(command).assert_ok();
    assert!(per_user.join("a.sif").is_file());
}

#[test]
fn twenty_first_image_refused() {
    let world = World::new("");
    for i in 0..20u8 {
        world.cp_ok(&world.source(&format!("img{i:02}.sif"), 100, i));
    }
    let extra = world.source("extra.sif", 100, 99);
    let out = world.run("cp", &[path_str(&extra)]);
    out.assert_refused(&[
        "extra.sif: refused",
        "holds 20 images",
        "limit is 20",
        "hybrun image rm",
    ]);
    assert_eq!(world.images().len(), 20);
    world.assert_consistent();

    // The site's own limit.
    let small = World::new("max_images = 2\n");
    small.cp_ok(&small.source("a.sif", 100, 1));
    small.cp_ok(&small.source("b.sif", 100, 2));
    small
        .run("cp", &[path_str(&small.source("c.sif", 100, 3))])
        .assert_refused(&["limit is 2"]);
}

#[test]
fn concurrent_copies_race_for_the_last_slot() {
    // Several rounds, several racers each: exactly one wins every time.
    const RACERS: usize = 4;
    let world = World::new("max_images = 3\n");
    world.cp_ok(&world.source("base1.sif", 100, 1));
    world.cp_ok(&world.source("base2.sif", 100, 2));
    let sources: Vec<_> = (0..RACERS)
        .map(|i| world.source(&format!("racer{i}.sif"), 200_000, i as u8 + 10))
        .collect();
    for round in 0..3 {
        let barrier = std::sync::Arc::new(std::sync::Barrier::new(RACERS));
        let handles: Vec<_> = sources
            .iter()
            .map(|source| {
                let command = world.command("cp", &[path_str(source)]);
                let barrier = barrier.clone();
                std::thread::spawn(move || {
                    barrier.wait();
                    run(command)
                })
            })
            .collect();
        let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let winners: Vec<_> = outcomes.iter().filter(|o| o.code == Some(0)).collect();
        assert_eq!(winners.len(), 1, "round {round}: {outcomes:#?}");
        for loser in outcomes.iter().filter(|o| o.code != Some(0)) {
            loser.assert_refused(&["refused", "limit is 3"]);
        }
        assert_eq!(world.images().len(), 3, "round {round}");
        world.assert_consistent();
        // Free the slot for the next round.
        let winner = world
            .images()
            .into_iter()
            .find(|n| n.starts_with("racer"))
            .expect("a racer was admitted");
        world.run("rm", &[&winner]).assert_ok();
    }
}

#[test]
fn help_lists_the_store_commands() {
    let mut command = hybrun();
    command.args(["image", "--help"]);
    let out = run(command);
    out.assert_ok();
    for sub in ["cp", "ls", "rm", "verify"] {
        assert!(out.stdout.contains(&format!("  {sub} ")), "{}", out.stdout);
    }
}

fn sha256_of(path: &std::path::Path) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(std::fs::read(path).unwrap());
    digest.iter().map(|b| format!("{b:02x}")).collect()
}
