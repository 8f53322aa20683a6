//! The compatibility gate of `hybrun run`/`exec` on the real test images
//! (scripts/make-test-images: mpich, openmpi, nompi; built on first use, required
//! under CI): refusals with the reason and nothing launched, `--force` with a
//! warning that names what it overrode, and the verdict in the launch record.

mod old_glibc;
mod test_images;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use test_images::images;

const HYBRUN: &str = env!("CARGO_BIN_EXE_hybrun");
const HOST_MPICH: &str = "/usr/lib/x86_64-linux-gnu/libmpich.so.12";
const BIND_DIR: &str = "/opt/host-mpi/lib";

/// A scratch world: a site file (ch-run, MPICH and Open MPI profiles, no fabric),
/// HOME for records, and a PATH holding a fake ch-run that prints its argv.
struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    site: PathBuf,
    home: PathBuf,
    bin: PathBuf,
}

impl World {
    fn new() -> World {
        let tmp = tempfile::tempdir().expect("tmp");
        let root = std::fs::canonicalize(tmp.path()).expect("canonical");
        let home = root.join("home");
        let bin = root.join("bin");
        std::fs::create_dir_all(&home).expect("mkdir");
        std::fs::create_dir_all(&bin).expect("mkdir");
        let fake = bin.join("ch-run");
        std::fs::write(&fake, "#!/bin/sh\nprintf '%s\\n' \"$0\" \"$@\"\n").expect("fake");
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let site = root.join("site.toml");
        std::fs::write(
            &site,
            format!(
                "[runtime]\nkind = \"charliecloud\"\nbind_dir = \"{BIND_DIR}\"\n\
                 [mpi.mpich]\nabi = \"mpich\"\npmi = \"pmi2\"\nlibrary = \"{HOST_MPICH}\"\n\
                 [mpi.openmpi]\nabi = \"openmpi\"\npmi = \"pmix\"\n\
                 library = \"/usr/lib/x86_64-linux-gnu/libmpi.so.40\"\n"
            ),
        )
        .expect("site");
        World {
            _tmp: tmp,
            root,
            site,
            home,
            bin,
        }
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(HYBRUN)
            .args(args)
            .env_clear()
            .env("PATH", &self.bin)
            .env("HOME", &self.home)
            .env("USER", "root")
            .current_dir(&self.root)
            .output()
            .expect("hybrun runs")
    }

    /// `hybrun run --dry-run` (or other flags) on `image` in `mode` with `profile`.
    fn run_image(&self, mode: &str, profile: &str, image: &Path, extra: &[&str]) -> Output {
        let mut args = vec![
            "run",
            "--site",
            self.site.to_str().expect("utf-8"),
            "--mode",
            mode,
            "--mpi-profile",
            profile,
            "--launcher",
            "none",
        ];
        args.extend_from_slice(extra);
        args.extend([image.to_str().expect("utf-8"), "--", "/app/hybench"]);
        self.run(&args)
    }

    fn records(&self) -> Vec<serde_json::Value> {
        let Ok(dir) = std::fs::read_dir(self.home.join(".hybrun/records")) else {
            return Vec::new();
        };
        dir.map(|e| {
            let path = e.expect("entry").path();
            serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json")
        })
        .collect()
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Refused: exit status 1, the refusal and `want` on stderr, nothing launched (no
/// output of the fake runtime, no record).
fn assert_refused(w: &World, out: &Output, want: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("refusing to launch"), "{err}");
    assert!(err.contains("nothing was launched"), "{err}");
    assert!(err.contains("--force"), "{err}");
    for text in want {
        assert!(err.contains(text), "want {text:?} in: {err}");
    }
    assert!(!stdout(out).contains("ch-run"), "launched: {}", stdout(out));
    assert!(w.records().is_empty(), "no record for a refused launch");
}

#[test]
fn openmpi_image_with_mpich_profile_in_bind_mode_is_refused_on_abi() {
    let Some(images) = images() else { return };
    let w = World::new();
    let image = images.join("openmpi");
    for extra in [&["--dry-run"][..], &[]] {
        let out = w.run_image("bind", "mpich", &image, extra);
        assert_refused(
            &w,
            &out,
            &["cannot run in bind mode", "Open MPI", "host MPI is MPICH"],
        );
    }
}

#[test]
fn force_proceeds_and_names_what_it_overrode() {
    let Some(images) = images() else { return };
    let w = World::new();
    let image = images.join("openmpi");
    let out = w.run_image("bind", "mpich", &image, &["--force", "--dry-run"]);
    let err = stderr(&out);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("warning: --force: launching despite the image check (bind mode)"),
        "{err}"
    );
    assert!(err.contains("host MPI is MPICH"), "{err}");
    assert!(stdout(&out).contains("ch-run"), "{}", stdout(&out));
    // --json carries the verdict and what was overridden.
    let out = w.run_image("bind", "mpich", &image, &["--force", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let gate = &doc["compatibility"];
    assert_eq!(gate["mode"], "bind");
    assert_eq!(gate["status"], "FAIL");
    let overridden = gate["overridden"].as_array().expect("array");
    assert_eq!(overridden.len(), 1, "{gate}");
    assert!(
        overridden[0]
            .as_str()
            .is_some_and(|t| t.contains("host MPI is MPICH")),
        "{gate}"
    );
    assert_eq!(gate["host_mpi"], HOST_MPICH);
}

#[test]
fn nompi_image_in_hybrid_mode_is_refused() {
    let Some(images) = images() else { return };
    let w = World::new();
    let out = w.run_image("hybrid", "mpich", &images.join("nompi"), &["--dry-run"]);
    assert_refused(
        &w,
        &out,
        &["cannot run in hybrid mode", "no MPI library in the image"],
    );
    // `hybrun exec` gates as well (a rank started from the user's own script).
    let image = images.join("nompi");
    let out = w.run(&[
        "exec",
        "--site",
        w.site.to_str().expect("utf-8"),
        "--mode",
        "hybrid",
        image.to_str().expect("utf-8"),
        "--",
        "/bin/true",
    ]);
    assert_refused(&w, &out, &["no MPI library in the image"]);
}

#[test]
fn verdicts_go_into_the_launch_record() {
    let Some(images) = images() else { return };
    let w = World::new();
    // A launch that proceeds (OK): the mpich image in hybrid mode; the fake ch-run
    // is the "job".
    let out = w.run_image("hybrid", "mpich", &images.join("mpich"), &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    // And one forced past a FAIL.
    let out = w.run_image("hybrid", "mpich", &images.join("nompi"), &["--force"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let records = w.records();
    assert_eq!(records.len(), 2);
    let by_image = |name: &str| {
        records
            .iter()
            .find(|r| {
                r["image"]["path"]
                    .as_str()
                    .is_some_and(|p| p.ends_with(name))
            })
            .unwrap_or_else(|| panic!("no record of {name}"))
    };
    let ok = &by_image("/mpich")["compatibility"];
    assert_eq!(ok["mode"], "hybrid");
    assert_ne!(ok["status"], "FAIL", "{ok}");
    assert_eq!(ok["overridden"].as_array().map(Vec::len), Some(0));
    assert!(
        ok["image_mpi"]
            .as_str()
            .is_some_and(|m| m.contains("MPICH")),
        "{ok}"
    );
    let forced = &by_image("/nompi")["compatibility"];
    assert_eq!(forced["status"], "FAIL");
    assert!(
        forced["overridden"][0]
            .as_str()
            .is_some_and(|t| t.contains("no MPI library in the image")),
        "{forced}"
    );
    // No fabric in the site file: the guard is off and says why.
    let guard = &by_image("/mpich")["fabric_guard"];
    assert_eq!(guard["active"], false);
    assert!(
        guard["off"]
            .as_str()
            .is_some_and(|t| t.contains("no [fabric]"))
    );
}

/// A directory image whose libc.so.6 defines only GLIBC_2.17 (a stand-in built with
/// cc, as in image_real.rs) and whose MPI is MPICH: the host's MPICH libraries need
/// a newer glibc, so bind mode is refused on glibc.
#[test]
fn old_glibc_image_is_refused_in_bind_mode() {
    let host_lib = Path::new(HOST_MPICH);
    if !host_lib.exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{HOST_MPICH} needed under CI"
        );
        eprintln!("SKIPPED: no {HOST_MPICH}");
        return;
    }
    let w = World::new();
    let root = w.root.join("old");
    let libdir = root.join("usr/lib/x86_64-linux-gnu");
    std::fs::create_dir_all(&libdir).expect("mkdir");
    std::fs::create_dir_all(root.join(BIND_DIR.trim_start_matches('/'))).expect("mkdir");
    std::fs::create_dir_all(root.join("etc")).expect("mkdir");
    std::fs::write(root.join("etc/os-release"), "ID=centos\nVERSION_ID=\"7\"\n").expect("os");
    let real = std::fs::canonicalize(host_lib).expect("canonical");
    let real_name = real.file_name().expect("name");
    std::fs::copy(&real, libdir.join(real_name)).expect("copy");
    std::os::unix::fs::symlink(real_name, libdir.join("libmpich.so.12")).expect("link");
    if !old_glibc::build_old_libc(&w.root, &libdir) {
        return;
    }
    let out = w.run_image("bind", "mpich", &root, &["--dry-run"]);
    assert_refused(
        &w,
        &out,
        &[
            "cannot run in bind mode",
            "host libraries need GLIBC_2.",
            "symbols up to GLIBC_2.17",
        ],
    );
}

/// The fabric guard on a site with Omni-Path (PSM2): Open MPI gets the variables
/// that forbid TCP, a value the user set is kept and reported, `--allow-tcp` turns
/// the guard off with a warning.
#[test]
fn fabric_guard_sets_kept_and_allow_tcp() {
    let w = World::new();
    let mut site = std::fs::read_to_string(&w.site).expect("site");
    site.push_str("[fabric]\nkind = \"psm2\"\n");
    std::fs::write(&w.site, site).expect("site");
    let json = |extra: &[&str]| {
        let mut args = vec![
            "run",
            "--site",
            w.site.to_str().expect("utf-8"),
            "--mode",
            "native",
            "--mpi-profile",
            "openmpi",
            "--launcher",
            "none",
            "--json",
        ];
        args.extend_from_slice(extra);
        args.extend(["--", "/bin/true"]);
        let out = w.run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        (doc, stderr(&out))
    };
    let (doc, _) = json(&[]);
    let guard = &doc["fabric_guard"];
    assert_eq!(guard["active"], true, "{guard}");
    assert_eq!(guard["set"]["OMPI_MCA_pml"], "cm");
    assert_eq!(guard["set"]["OMPI_MCA_mtl"], "psm2");
    assert_eq!(guard["set"]["OMPI_MCA_btl"], "^tcp");
    let env_set = &doc["command"]["env_set"];
    assert!(env_set.to_string().contains("OMPI_MCA_btl"), "{env_set}");

    let (doc, _) = json(&["--env", "OMPI_MCA_btl=self,vader,tcp"]);
    let guard = &doc["fabric_guard"];
    assert_eq!(
        guard["kept"]["OMPI_MCA_btl"][0], "self,vader,tcp",
        "{guard}"
    );
    assert!(guard["set"].get("OMPI_MCA_btl").is_none(), "{guard}");

    let (doc, err) = json(&["--allow-tcp"]);
    assert_eq!(doc["fabric_guard"]["active"], false);
    assert_eq!(doc["fabric_guard"]["off"], "--allow-tcp");
    assert!(
        err.contains("warning: fabric guard off (--allow-tcp)"),
        "{err}"
    );
}

/// The judgement is cached per image and host (every rank of a job would
/// otherwise read the MPI libraries again), and a changed image is judged anew.
#[test]
fn judgements_are_cached_and_a_changed_image_is_judged_again() {
    let Some(images) = images() else { return };
    let w = World::new();
    let image = w.root.join("img");
    let copied = Command::new("cp")
        .arg("-a")
        .arg(images.join("mpich"))
        .arg(&image)
        .status()
        .expect("cp");
    assert!(copied.success());
    let entries = || -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(w.home.join(".hybrun/cache")) else {
            return Vec::new();
        };
        let mut names: Vec<String> = dir
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("gate-"))
            .collect();
        names.sort();
        names
    };
    for round in 0..2 {
        let out = w.run_image("hybrid", "mpich", &image, &["--dry-run"]);
        assert!(out.status.success(), "round {round}: {}", stderr(&out));
        assert_eq!(
            entries().len(),
            1,
            "round {round}: one judgement, then reused"
        );
    }
    // The image's MPI library removed: no longer the same image.
    let lib = image.join("usr/lib/x86_64-linux-gnu");
    for entry in std::fs::read_dir(&lib).expect("lib dir") {
        let path = entry.expect("entry").path();
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("libmpich.so"))
        {
            std::fs::remove_file(path).expect("rm");
        }
    }
    let out = w.run_image("hybrid", "mpich", &image, &["--dry-run"]);
    assert_refused(&w, &out, &["no MPI library in the image"]);
    assert_eq!(entries().len(), 2, "the changed image was judged again");
}

/// The gate fails closed: an image hybrun cannot read (garbage with a SquashFS
/// magic, a truncated SquashFS) is refused, and launches only with --force,
/// which the record notes.
#[test]
fn unreadable_images_are_refused_unless_forced() {
    let Some(images) = images() else { return };
    let w = World::new();
    let garbage = w.root.join("garbage.sqfs");
    let mut bytes = b"hsqs".to_vec();
    bytes.extend(std::iter::repeat_n(0xa5u8, 8192));
    std::fs::write(&garbage, bytes).expect("garbage");
    let truncated = w.root.join("truncated.sqfs");
    let whole = std::fs::read(images.join("mpich.sqfs")).expect("mpich.sqfs");
    std::fs::write(&truncated, &whole[..whole.len() / 3]).expect("truncated");
    for image in [&garbage, &truncated] {
        let out = w.run_image("hybrid", "mpich", image, &["--dry-run"]);
        assert_refused(&w, &out, &["hybrun cannot read image", "unchecked"]);
        let out = w.run_image("hybrid", "mpich", image, &["--force", "--json"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(stderr(&out).contains("warning: --force: launching an image hybrun cannot read"));
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert!(
            doc["compatibility"]["note"]
                .as_str()
                .is_some_and(|n| n.contains("cannot read the image"))
        );
    }
}

/// In hybrid mode the container's MPI meets the launcher's process manager:
/// an MPICH image under Open MPI's mpiexec (or Open MPI's under hydra) would
/// run as one-rank jobs, so the gate refuses it like srun's PMI mismatch.
#[test]
fn image_mpi_the_launcher_cannot_start_is_refused() {
    let Some(images) = images() else { return };
    let w = World::new();
    for (image, profile, launcher, fits) in [
        ("mpich", "openmpi", "mpiexec-openmpi", "mpiexec-hydra"),
        ("openmpi", "mpich", "mpiexec-hydra", "mpiexec-openmpi"),
    ] {
        let out = w.run(&[
            "run",
            "--site",
            w.site.to_str().expect("utf-8"),
            "--mode",
            "hybrid",
            "--mpi-profile",
            profile,
            "--launcher",
            launcher,
            "--dry-run",
            images.join(image).to_str().expect("utf-8"),
            "--",
            "/app/hybench",
        ]);
        assert_refused(
            &w,
            &out,
            &[&format!("cannot be started by --launcher {launcher}"), fits],
        );
    }
}

/// A site path that does not exist on this host (here the fabric's provider
/// directory) stops bind mode with the site key and the path, not a bare
/// "No such file or directory".
#[test]
fn a_missing_site_path_is_named_by_its_key() {
    let Some(dir) = images() else { return };
    let w = World::new();
    let mut site = std::fs::read_to_string(&w.site).expect("site");
    site.push_str(
        "[fabric]\nkind = \"psm2\"\nplugin_dirs = [{ src = \"/opt/nowhere/libfabric\", env = \"FI_PROVIDER_PATH\" }]\n",
    );
    std::fs::write(&w.site, site).expect("site");
    let out = w.run_image("bind", "mpich", &dir.join("mpich"), &["--dry-run"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("[fabric] plugin_dirs") && err.contains("/opt/nowhere/libfabric"),
        "{err}"
    );
    assert!(err.contains("site file"), "{err}");
}
