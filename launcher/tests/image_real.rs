//! Content detection and `hybrun image check` verdicts on real images built from this
//! machine's MPICH and Open MPI by `scripts/make-test-images` (mpich, openmpi, nompi),
//! each as a directory, a SquashFS file and a SIF file; a crafted glibc case; and
//! truncated or corrupted SquashFS that must give errors, never panics.
//!
//! The images are built on first use (seconds) when target/images lacks them. If they
//! cannot be built, the tests fail under CI (env CI set) and print SKIPPED otherwise.

mod old_glibc;
mod test_images;

use std::path::{Path, PathBuf};
use std::process::Command;

use hybrun::image::contents::{Image, ImageKind};
use hybrun::image::detect::{self, Contents};
use hybrun_core::vocab::{MpiAbi, MpiFlavour};
use test_images::images;

const HOST_MPICH: &str = "/usr/lib/x86_64-linux-gnu/libmpich.so.12";
const HOST_OPENMPI: &str = "/usr/lib/x86_64-linux-gnu/libmpi.so.40";

fn forms(dir: &Path, name: &str) -> [PathBuf; 3] {
    [
        dir.join(name),
        dir.join(format!("{name}.sqfs")),
        dir.join(format!("{name}.sif")),
    ]
}

fn contents_of(path: &Path) -> Contents {
    let image = Image::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    detect::detect(&image).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn hybrun(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_hybrun"))
        .args(args)
        .output()
        .expect("run hybrun");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn check_json(args: &[&str]) -> (i32, serde_json::Value) {
    let mut all = vec!["image", "check", "--json", "--srun", "none"];
    all.extend_from_slice(args);
    let (code, stdout, stderr) = hybrun(&all);
    let value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("hybrun {all:?}: not JSON ({e}): {stdout}{stderr}"));
    (code, value)
}

fn verdict<'a>(report: &'a serde_json::Value, mode: &str) -> &'a serde_json::Value {
    report["verdicts"]
        .as_array()
        .and_then(|v| v.iter().find(|v| v["mode"] == mode))
        .unwrap_or_else(|| panic!("no {mode} verdict in {report}"))
}

fn reasons(v: &serde_json::Value) -> String {
    v["reasons"]
        .as_array()
        .map(|r| {
            r.iter()
                .map(|r| format!("{} {}", r["status"], r["text"]))
                .collect::<Vec<_>>()
                .join("\n")
        })
        .unwrap_or_default()
}

#[test]
fn the_three_forms_show_the_same_contents() {
    let Some(dir) = images() else { return };
    for name in ["mpich", "openmpi", "nompi"] {
        let [d, sqfs, sif] = forms(dir, name);
        let (a, b, c) = (contents_of(&d), contents_of(&sqfs), contents_of(&sif));
        assert_eq!(a.kind, ImageKind::Directory);
        assert_eq!(b.kind, ImageKind::Squashfs);
        assert_eq!(c.kind, ImageKind::Sif);
        assert!(
            c.squashfs.as_ref().is_some_and(|s| s.offset > 0),
            "SIF partition offset"
        );
        for other in [&b, &c] {
            assert_eq!(a.mpi.len(), other.mpi.len(), "{name}");
            for (x, y) in a.mpi.iter().zip(&other.mpi) {
                assert_eq!(
                    (x.abi, x.implementation, &x.version, x.lib_version),
                    (y.abi, y.implementation, &y.version, y.lib_version)
                );
            }
            assert_eq!(a.glibc, other.glibc, "{name}");
            assert_eq!(a.os, other.os, "{name}");
            assert_eq!(a.fabric, other.fabric, "{name}");
            assert_eq!(a.pmi, other.pmi, "{name}");
            assert_eq!(a.entries, other.entries, "{name}: same file list");
        }
        let glibc = a
            .glibc
            .as_ref()
            .and_then(|g| g.version.as_ref())
            .expect("glibc version");
        assert!(glibc.0[0] == 2 && glibc.0[1] >= 17, "{name}: glibc {glibc}");
        assert!(
            a.os.as_ref().and_then(|o| o.id.as_ref()).is_some(),
            "{name}: os-release ID"
        );
    }
}

#[test]
fn mpi_flavours_and_versions() {
    let Some(dir) = images() else { return };
    let mpich = contents_of(&dir.join("mpich.sif"));
    let m = mpich.primary_mpi().expect("MPICH in the mpich image");
    assert_eq!(m.abi, Some(MpiAbi::Mpich));
    assert_eq!(m.implementation, Some(MpiFlavour::Mpich));
    assert_eq!(m.soname.as_deref(), Some("libmpich.so.12"));
    assert!(
        m.version.as_deref().is_some_and(|v| v.starts_with("4.")),
        "{m:?}"
    );
    assert!(
        m.lib_version
            .is_some_and(|v| v.major == 12 && v.minor.is_some()),
        "real file name kept: {m:?}"
    );
    let ucx = mpich.fabric.ucx.as_ref().expect("UCX in the mpich image");
    assert!(
        ucx.library
            .version
            .as_deref()
            .is_some_and(|v| v.starts_with("1.")),
        "{ucx:?}"
    );
    assert!(ucx.transports.iter().any(|t| t == "ib"), "{ucx:?}");

    let ompi = contents_of(&dir.join("openmpi.sqfs"));
    let o = ompi.primary_mpi().expect("Open MPI in the openmpi image");
    assert_eq!(o.abi, Some(MpiAbi::Openmpi));
    assert_eq!(o.implementation, Some(MpiFlavour::Openmpi));
    assert_eq!(o.soname.as_deref(), Some("libmpi.so.40"));
    assert!(
        o.version
            .as_deref()
            .is_some_and(|v| v.starts_with("4.") || v.starts_with("5.")),
        "{o:?}"
    );
    assert!(
        ompi.pmi
            .iter()
            .any(|p| p.kind == "pmix" && p.library.version.is_some()),
        "{:?}",
        ompi.pmi
    );

    let nompi = contents_of(&dir.join("nompi"));
    assert!(nompi.mpi.is_empty() && nompi.primary_mpi().is_none());
    assert!(!nompi.fabric.has_fast_path());
}

#[test]
fn contents_cli_text_and_json() {
    let Some(dir) = images() else { return };
    for path in forms(dir, "mpich") {
        let p = path.to_str().unwrap();
        let (code, text, err) = hybrun(&["image", "inspect", "--contents", p]);
        assert_eq!(code, 0, "{err}");
        assert!(text.contains("MPICH 4."), "{text}");
        assert!(text.contains("glibc:"), "{text}");
        // MPICH speaks PMI itself: not "PMI: none".
        assert!(
            text.contains("PMI:          built into libmpich.so.12"),
            "{text}"
        );
        let (code, json, err) = hybrun(&["image", "inspect", "--contents", "--json", p]);
        assert_eq!(code, 0, "{err}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["contents"]["mpi"][0]["implementation"], "mpich");
        assert_eq!(v["contents"]["mpi"][0]["abi"], "mpich");
        assert_eq!(v.get("sif").is_some(), p.ends_with(".sif"));
    }
    let sif = dir.join("nompi.sif");
    let (code, text, _) = hybrun(&[
        "image",
        "inspect",
        "--contents",
        "--list",
        sif.to_str().unwrap(),
    ]);
    assert_eq!(code, 0);
    assert!(text.contains("/etc/os-release"), "{text}");
    assert!(
        text.contains("/bin -> usr/bin"),
        "symlinks listed with targets: {text}"
    );
}

#[test]
fn mpich_image_binds_host_mpich() {
    let Some(dir) = images() else { return };
    if !Path::new(HOST_MPICH).exists() {
        eprintln!("SKIPPED: no {HOST_MPICH}");
        return;
    }
    for path in forms(dir, "mpich") {
        for abi_mode in ["major", "full", "strict"] {
            let (code, report) = check_json(&[
                path.to_str().unwrap(),
                "--mode",
                "bind",
                "--abi-mode",
                abi_mode,
                "--host-mpi",
                HOST_MPICH,
            ]);
            let bind = verdict(&report, "bind");
            assert_ne!(bind["status"], "FAIL", "{}", reasons(bind));
            assert_eq!(code, 0, "{}", reasons(bind));
            let text = reasons(bind);
            assert!(text.contains("can replace the image's MPICH"), "{text}");
            assert!(text.contains("host libraries need GLIBC_2."), "{text}");
        }
    }
}

#[test]
fn openmpi_image_with_host_mpich_fails_bind_on_abi() {
    let Some(dir) = images() else { return };
    if !Path::new(HOST_MPICH).exists() {
        eprintln!("SKIPPED: no {HOST_MPICH}");
        return;
    }
    for path in forms(dir, "openmpi") {
        let (code, report) = check_json(&[path.to_str().unwrap(), "--host-mpi", HOST_MPICH]);
        assert_eq!(code, 1, "bind FAIL gives exit status 1");
        let bind = verdict(&report, "bind");
        assert_eq!(bind["status"], "FAIL");
        let text = reasons(bind);
        assert!(text.contains("image has Open MPI"), "{text}");
        assert!(text.contains("(libmpi.so.40)"), "{text}");
        assert!(text.contains("the host MPI is MPICH"), "{text}");
        assert!(text.contains("(libmpich.so.12)"), "{text}");
        assert!(text.contains("different ABI"), "{text}");
        assert!(text.contains("use hybrid mode"), "{text}");
        // Native: host MPI present but of the other ABI.
        assert_eq!(verdict(&report, "native")["status"], "WARN");
        // Hybrid: the image's own Open MPI; srun unknown (--srun none) -> WARN, not FAIL.
        let hybrid = verdict(&report, "hybrid");
        assert_eq!(hybrid["status"], "WARN", "{}", reasons(hybrid));
        // --srun none: Slurm was not asked (not "srun not found").
        assert!(
            reasons(hybrid).contains("not checked (--srun none)")
                && !reasons(hybrid).contains("srun not found"),
            "{}",
            reasons(hybrid)
        );
    }
    if Path::new(HOST_OPENMPI).exists() {
        let sif = dir.join("openmpi.sif");
        let (code, report) = check_json(&[
            sif.to_str().unwrap(),
            "--mode",
            "bind",
            "--host-mpi",
            HOST_OPENMPI,
        ]);
        assert_eq!(code, 0, "{}", reasons(verdict(&report, "bind")));
    }
}

#[test]
fn nompi_image_fails_hybrid_and_bind() {
    let Some(dir) = images() else { return };
    for path in forms(dir, "nompi") {
        let p = path.to_str().unwrap();
        let (code, report) = check_json(&[p, "--host-mpi", "none"]);
        assert_eq!(code, 1);
        for mode in ["hybrid", "bind"] {
            let v = verdict(&report, mode);
            assert_eq!(v["status"], "FAIL");
            assert!(
                reasons(v).contains("no MPI library in the image"),
                "{}",
                reasons(v)
            );
        }
        assert_eq!(verdict(&report, "native")["status"], "OK");
        // Asking for native only: exit 0.
        let (code, _) = check_json(&[p, "--mode", "native", "--host-mpi", "none"]);
        assert_eq!(code, 0);
    }
}

#[test]
fn text_report_and_no_host_mpi() {
    let Some(dir) = images() else { return };
    let p = dir.join("mpich.sqfs");
    let (code, text, _) = hybrun(&[
        "image",
        "check",
        p.to_str().unwrap(),
        "--host-mpi",
        "none",
        "--srun",
        "none",
    ]);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains("native  FAIL"), "{text}");
    assert!(text.contains("no MPI library found on this host"), "{text}");
    assert!(text.contains("bind    FAIL"), "{text}");
}

/// A directory image whose libc.so.6 is a tiny ELF that defines only GLIBC_2.17: the
/// host's MPICH libraries need a newer glibc, so bind mode must FAIL on glibc.
#[test]
fn old_image_glibc_fails_bind() {
    let host_lib = Path::new(HOST_MPICH);
    if !host_lib.exists() {
        eprintln!("SKIPPED: no {HOST_MPICH}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("img");
    let libdir = root.join("usr/lib/x86_64-linux-gnu");
    std::fs::create_dir_all(&libdir).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/os-release"), "ID=centos\nVERSION_ID=\"7\"\n").unwrap();
    let real = std::fs::canonicalize(host_lib).unwrap();
    let real_name = real.file_name().unwrap();
    std::fs::copy(&real, libdir.join(real_name)).unwrap();
    std::os::unix::fs::symlink(real_name, libdir.join("libmpich.so.12")).unwrap();
    // The stand-in glibc: one symbol at version GLIBC_2.17.
    if !old_glibc::build_old_libc(tmp.path(), &libdir) {
        return;
    }
    let contents = contents_of(&root);
    assert_eq!(
        contents
            .glibc
            .as_ref()
            .and_then(|g| g.version.as_ref())
            .map(ToString::to_string)
            .as_deref(),
        Some("2.17")
    );
    let (code, report) = check_json(&[
        root.to_str().unwrap(),
        "--mode",
        "bind",
        "--host-mpi",
        HOST_MPICH,
    ]);
    assert_eq!(code, 1);
    let bind = verdict(&report, "bind");
    assert_eq!(bind["status"], "FAIL");
    let text = reasons(bind);
    assert!(text.contains("host libraries need GLIBC_2.3"), "{text}");
    assert!(text.contains("symbols up to GLIBC_2.17"), "{text}");
}

/// Truncated and corrupted SquashFS (bare and inside SIF): clear errors, no panic.
#[test]
fn truncated_and_corrupt_squashfs_give_errors() {
    let Some(dir) = images() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let sqfs = std::fs::read(dir.join("nompi.sqfs")).unwrap();
    let sif = std::fs::read(dir.join("nompi.sif")).unwrap();
    // mksquashfs pads the file to 4 KiB: cut inside the bytes the superblock says are used.
    let used = u64::from_le_bytes(sqfs[40..48].try_into().unwrap()) as usize;
    let sqfs_cuts = [10, 96, 200, 4096, used / 2, used - 4096, used - 1];
    // The SIF partition ends at the end of the file: any cut truncates it.
    let sif_cuts = [
        10,
        96,
        200,
        4096,
        sif.len() / 2,
        sif.len() - 4096,
        sif.len() - 1,
    ];
    for (name, data, cuts) in [("t.sqfs", &sqfs, sqfs_cuts), ("t.sif", &sif, sif_cuts)] {
        for cut in cuts {
            let path = tmp.path().join(name);
            std::fs::write(&path, &data[..cut]).unwrap();
            let err = Image::open(&path)
                .expect_err("truncated image must not open")
                .to_string();
            assert!(
                err.contains("truncated or corrupt")
                    || err.contains("not a container image")
                    || err.contains("not a SIF file"),
                "{name} cut at {cut}: {err}"
            );
            // The CLI: exit 1 with the message, not a panic (101).
            let (code, _, stderr) =
                hybrun(&["image", "inspect", "--contents", path.to_str().unwrap()]);
            assert_eq!(code, 1, "{stderr}");
            assert!(stderr.contains("hybrun: error:"), "{stderr}");
        }
    }
    // Flip bytes in the metadata tables (inode table to the end): open and detection
    // must return Ok or Err, never panic.
    let inode_table = u64::from_le_bytes(sqfs[64..72].try_into().unwrap()) as usize;
    let bytes_used = u64::from_le_bytes(sqfs[40..48].try_into().unwrap()) as usize;
    let span = bytes_used - inode_table;
    let path = tmp.path().join("m.sqfs");
    let mut errors = 0;
    for i in 0..300usize {
        let mut data = sqfs.clone();
        let at = inode_table + (i * 7919) % span;
        data[at] ^= 0x5a ^ (i as u8);
        std::fs::write(&path, &data).unwrap();
        match Image::open(&path) {
            Ok(image) => {
                let _ = detect::detect(&image);
            }
            Err(e) => {
                errors += 1;
                assert!(!e.to_string().is_empty());
            }
        }
    }
    eprintln!("{errors} of 300 corrupted images refused at open");
}

#[test]
fn check_takes_the_host_mpi_from_a_site_profile() {
    let Some(dir) = images() else { return };
    if !Path::new(HOST_MPICH).exists() || !Path::new(HOST_OPENMPI).exists() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let site = tmp.path().join("site.toml");
    std::fs::write(
        &site,
        format!(
            "[mpi.mpich]\nabi = \"mpich\"\nlibrary = \"{HOST_MPICH}\"\n\n\
             [mpi.openmpi]\nabi = \"openmpi\"\nlibrary = \"{HOST_OPENMPI}\"\n"
        ),
    )
    .unwrap();
    let site = site.to_str().unwrap();
    let mpich = dir.join("mpich.sif");
    let mpich = mpich.to_str().unwrap();
    let bind = |profile: &str| {
        check_json(&[
            mpich,
            "--mode",
            "bind",
            "--site",
            site,
            "--mpi-profile",
            profile,
        ])
    };
    let (code, report) = bind("mpich");
    assert_eq!(code, 0, "{}", reasons(verdict(&report, "bind")));
    let (code, report) = bind("openmpi");
    assert_eq!(
        code, 1,
        "the Open MPI profile cannot replace the image's MPICH"
    );
    assert!(reasons(verdict(&report, "bind")).contains("different ABI"));
    // An unknown profile names the file and the profiles it has.
    let (code, _, stderr) = hybrun(&[
        "image",
        "check",
        "--srun",
        "none",
        mpich,
        "--site",
        site,
        "--mpi-profile",
        "nope",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("unknown MPI profile `nope`"), "{stderr}");
    assert!(
        stderr.contains("known profiles: mpich, openmpi"),
        "{stderr}"
    );
}

/// On a site with a fast fabric the check judges the image against that fabric
/// (not "any fast library"): the MPICH test image (UCX with InfiniBand
/// transports, libibverbs) drives a ucx or verbs site but has nothing for
/// Omni-Path's psm2 or opx.
#[test]
fn hybrid_mode_is_judged_against_the_sites_fabric() {
    let Some(dir) = images() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let image = dir.join("mpich");
    for (kind, status, text) in [
        (
            "psm2",
            "FAIL",
            "the site's fabric is psm2 and the image's MPI cannot drive it",
        ),
        ("opx", "FAIL", "the site's fabric is opx"),
        (
            "ucx",
            "OK",
            "the site's ucx fabric: the image's MPI can drive it (UCX",
        ),
        (
            "verbs",
            "OK",
            "the site's verbs fabric: the image's MPI can drive it",
        ),
    ] {
        let site = tmp.path().join(format!("{kind}.toml"));
        std::fs::write(&site, format!("[fabric]\nkind = \"{kind}\"\n")).unwrap();
        let (_, json, err) = hybrun(&[
            "image",
            "check",
            "--site",
            site.to_str().unwrap(),
            "--mode",
            "hybrid",
            "--srun",
            "none",
            "--json",
            image.to_str().unwrap(),
        ]);
        let v: serde_json::Value =
            serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {err}"));
        let reasons = v["verdicts"][0]["reasons"].as_array().unwrap();
        assert!(
            reasons
                .iter()
                .any(|r| r["status"] == status && r["text"].as_str().unwrap().contains(text)),
            "{kind}: {reasons:?}"
        );
    }
}
