//! The walker on fake trees (each search rule), and on this host's real MPI
//! libraries against the loader itself (`ld.so --list`).

use std::path::{Path, PathBuf};
use std::process::Command;

use super::*;
use crate::host::fake_elf::{FakeElf, host_machine};
use crate::host::ldcache::{host_flags, write_fake};
use crate::host::loader::split_library_path;

fn names(r: &Resolution) -> Vec<&str> {
    r.libs.iter().map(|l| l.name.as_str()).collect()
}

fn canonical(p: &Path) -> PathBuf {
    fs::canonicalize(p).expect("canonical")
}

#[test]
fn breadth_first_once_per_file_glibc_left_out() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let lib = root.join("usr/lib");
    FakeElf::new()
        .soname("libmpi.so.40")
        .needs(&["libpal.so.40", "libc.so.6", "libucp.so.0"])
        .write(&lib.join("libmpi.so.40.1.0"));
    std::os::unix::fs::symlink("libmpi.so.40.1.0", lib.join("libmpi.so.40")).expect("link");
    FakeElf::new()
        .soname("libpal.so.40")
        .needs(&["libucs.so.0", "libm.so.6", "libmissing.so.1"])
        .write(&lib.join("libpal.so.40"));
    FakeElf::new()
        .needs(&["libucs.so.0", "libpal.so.40"])
        .write(&lib.join("libucp.so.0"));
    FakeElf::new()
        .soname("libucs.so.0")
        .needs(&["libc.so.6"])
        .write(&lib.join("libucs.so.0"));
    FakeElf::new()
        .soname("libc.so.6")
        .needs(&["ld-linux-x86-64.so.2"])
        .write(&lib.join("libc.so.6"));
    FakeElf::new().write(&lib.join("ld-linux-x86-64.so.2"));
    let loader = Loader::under(root, &["/usr/lib"], "");
    let r = resolve(&loader, &lib.join("libmpi.so.40")).expect("walk");
    // Breadth first: the root's needs in order, then theirs.
    assert_eq!(names(&r), ["libpal.so.40", "libucp.so.0", "libucs.so.0"]);
    assert_eq!(r.libs[0].path, lib.join("libpal.so.40"));
    assert_eq!(
        r.excluded,
        ["libc.so.6", "libm.so.6"],
        "the loader is not counted"
    );
    assert_eq!(r.unresolved, ["libmissing.so.1"]);
}

#[test]
fn each_search_rule_in_the_loaders_order() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let (rpath, llp, runpath, cached, default) = (
        root.join("rpath"),
        root.join("llp"),
        root.join("app/runpath"),
        root.join("cached"),
        root.join("lib"),
    );
    for dir in [&rpath, &llp, &runpath, &cached, &default] {
        for name in ["liba.so.1", "libb.so.1", "libc1.so.1", "libd.so.1"] {
            FakeElf::new().write(&dir.join(name));
        }
    }
    if let Some(flags) = host_flags() {
        write_fake(
            &root.join("etc/ld.so.cache"),
            &[(
                flags,
                "libd.so.1",
                cached.join("libd.so.1").to_str().expect("utf-8"),
            )],
        );
    }
    let loader = Loader::under(root, &["/lib"], llp.to_str().expect("utf-8"));
    // RPATH before LD_LIBRARY_PATH; then the cache; then the default dirs.
    let app = root.join("app/libapp.so");
    FakeElf::new()
        .needs(&["liba.so.1", "libd.so.1", "libnone.so.1"])
        .rpath(rpath.to_str().expect("utf-8"))
        .write(&app);
    let r = resolve(&loader, &app).expect("walk");
    assert_eq!(r.libs[0].path, rpath.join("liba.so.1"));
    assert_eq!(r.unresolved, ["libnone.so.1"]);
    // LD_LIBRARY_PATH before RUNPATH ($ORIGIN: the object's directory).
    FakeElf::new()
        .needs(&["liba.so.1"])
        .runpath("$ORIGIN/runpath")
        .write(&app);
    let r = resolve(&loader, &app).expect("walk");
    assert_eq!(r.libs[0].path, llp.join("liba.so.1"));
    let no_llp = Loader::under(root, &["/lib"], "");
    let r = resolve(&no_llp, &app).expect("walk");
    assert_eq!(r.libs[0].path, runpath.join("liba.so.1"));
    // The cache before the default directories; NODEFLIB skips both.
    FakeElf::new().needs(&["libd.so.1"]).write(&app);
    let r = resolve(&no_llp, &app).expect("walk");
    let want = if host_flags().is_some() {
        &cached
    } else {
        &default
    };
    assert_eq!(r.libs[0].path, want.join("libd.so.1"));
    FakeElf::new().needs(&["libd.so.1"]).nodeflib().write(&app);
    let r = resolve(&no_llp, &app).expect("walk");
    assert_eq!(r.unresolved, ["libd.so.1"]);
}

#[test]
fn rpath_is_inherited_runpath_is_not() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let private = root.join("private");
    let system = root.join("lib");
    for dir in [&private, &system] {
        FakeElf::new().write(&dir.join("libleaf.so.1"));
    }
    FakeElf::new()
        .needs(&["libleaf.so.1"])
        .write(&system.join("libmid.so.1"));
    let loader = Loader::under(root, &["/lib"], "");
    let app = root.join("libapp.so");
    // The main object's RPATH serves its dependencies' needs too.
    FakeElf::new()
        .needs(&["libmid.so.1"])
        .rpath(private.to_str().expect("utf-8"))
        .write(&app);
    let r = resolve(&loader, &app).expect("walk");
    assert_eq!(r.libs[1].path, private.join("libleaf.so.1"));
    // A RUNPATH serves the object's own needs only.
    FakeElf::new()
        .needs(&["libmid.so.1"])
        .runpath(private.to_str().expect("utf-8"))
        .write(&app);
    let r = resolve(&loader, &app).expect("walk");
    assert_eq!(r.libs[1].path, system.join("libleaf.so.1"));
}

#[test]
fn loaded_names_are_not_searched_again_and_other_machines_are_skipped() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let own = root.join("own");
    let lib = root.join("lib");
    let lib64 = root.join("lib64");
    // libx is found in `own` through the root's RUNPATH; libmid needs it too and,
    // by its SONAME, gets the same object rather than the one in lib.
    FakeElf::new()
        .soname("libx.so.1")
        .write(&own.join("libx.so.1"));
    FakeElf::new()
        .soname("libx.so.1")
        .write(&lib.join("libx.so.1"));
    FakeElf::new()
        .needs(&["libx.so.1", "libother.so.1"])
        .write(&lib.join("libmid.so.1"));
    // A library of another machine is passed over, as the loader does.
    FakeElf::new()
        .machine(host_machine() + 1)
        .write(&lib.join("libother.so.1"));
    FakeElf::new().write(&lib64.join("libother.so.1"));
    let app = root.join("libapp.so");
    FakeElf::new()
        .needs(&["libx.so.1", "libmid.so.1"])
        .runpath(own.to_str().expect("utf-8"))
        .write(&app);
    let loader = Loader::under(root, &["/lib", "/lib64"], "");
    let r = resolve(&loader, &app).expect("walk");
    assert_eq!(names(&r), ["libx.so.1", "libmid.so.1", "libother.so.1"]);
    assert_eq!(r.libs[0].path, own.join("libx.so.1"));
    assert_eq!(r.libs[2].path, lib64.join("libother.so.1"));
    assert!(resolve(&loader, &root.join("absent.so")).is_err());
}

#[test]
fn library_closure_adds_plugin_directories_and_their_closures() {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path();
    let lib = root.join("lib");
    FakeElf::new()
        .soname("libmpich.so.12")
        .needs(&["libucs.so.0", "libc.so.6"])
        .version_need("libc.so.6", "GLIBC_2.17")
        .write(&lib.join("libmpich.so.12"));
    FakeElf::new()
        .soname("libucs.so.0")
        .version_need("libc.so.6", "GLIBC_2.34")
        .write(&lib.join("libucs.so.0.0.0"));
    std::os::unix::fs::symlink("libucs.so.0.0.0", lib.join("libucs.so.0")).expect("link");
    FakeElf::new()
        .needs(&["libibverbs.so.1", "libucs.so.0"])
        .version_need("libc.so.6", "GLIBC_2.28")
        .write(&lib.join("ucx/libuct_ib.so.0"));
    std::fs::write(lib.join("ucx/README"), "not a plugin").expect("write");
    let loader = Loader::under(root, &["/lib"], "");
    let closure = library_closure(&loader, &[lib.join("libmpich.so.12")]);
    let files: Vec<(PathBuf, bool)> = closure
        .files
        .iter()
        .map(|f| (f.path.clone(), f.plugin))
        .collect();
    assert_eq!(
        files,
        [
            (canonical(&lib.join("libmpich.so.12")), false),
            (canonical(&lib.join("libucs.so.0.0.0")), false),
            (canonical(&lib.join("ucx/libuct_ib.so.0")), true),
        ]
    );
    assert_eq!(closure.plugin_dirs, [canonical(&lib).join("ucx")]);
    assert_eq!(closure.unresolved, ["libibverbs.so.1"]);
    let max = closure.glibc_max().expect("needs glibc");
    assert_eq!(max.soname.as_deref(), Some("libucs.so.0"));
    assert_eq!(
        max.glibc.as_ref().map(ToString::to_string).as_deref(),
        Some("2.34")
    );
    assert!(!closure.truncated);
}

/// The host's dynamic loader (for the cross-check only).
fn loader_program() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "/lib/ld-linux-aarch64.so.1",
        _ => "/lib64/ld-linux-x86-64.so.2",
    }
}

/// `ld.so --list lib` as (name, canonical path), glibc's family left out; Err
/// with its message when the loader cannot load it (a library not found).
fn ld_so_list(lib: &Path, library_path: Option<&str>) -> Result<Vec<(String, PathBuf)>, String> {
    let mut command = Command::new(loader_program());
    command.arg("--list").arg(lib).env_remove("LD_PRELOAD");
    match library_path {
        Some(p) => command.env("LD_LIBRARY_PATH", p),
        None => command.env_remove("LD_LIBRARY_PATH"),
    };
    let out = command.output().expect("the loader runs");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let mut listed = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Some((name, rest)) = line.trim().split_once(" => ") else {
            continue; // the vDSO and the loader itself
        };
        let path = rest.split(" (").next().unwrap_or(rest).trim();
        assert_ne!(path, "not found", "{name}");
        if !is_glibc_library(name) {
            listed.push((name.to_owned(), canonical(Path::new(path))));
        }
    }
    Ok(listed)
}

/// The walker's answer in the same form: Err with the names not found.
fn walked(loader: &Loader, lib: &Path) -> Result<Vec<(String, PathBuf)>, Vec<String>> {
    let r = resolve(loader, lib).expect("walk");
    if !r.unresolved.is_empty() {
        return Err(r.unresolved);
    }
    Ok(r.libs.into_iter().map(|l| (l.name, l.canonical)).collect())
}

/// Whether the walker and the loader agree: the same libraries in the same
/// order (true), or both failing on the same missing library (false).
fn agree(loader: &Loader, lib: &Path, library_path: Option<&str>) -> bool {
    match (walked(loader, lib), ld_so_list(lib, library_path)) {
        (Ok(walked), Ok(listed)) => {
            assert_eq!(walked, listed, "{}", lib.display());
            true
        }
        (Err(missing), Err(message)) => {
            assert!(
                message.contains(&format!("{}: cannot open", missing[0])),
                "{}: walker misses {missing:?}, the loader says {message}",
                lib.display()
            );
            false
        }
        (walked, listed) => panic!(
            "{}: the walker says {walked:?}, the loader {listed:?}",
            lib.display()
        ),
    }
}

/// This host's MPI libraries and Open MPI's and PMIx's components: the walker
/// loads exactly what the loader loads, in the same order.
#[test]
fn the_walker_agrees_with_ld_so_list_on_this_hosts_mpi() {
    let libdir = Path::new("/usr/lib/x86_64-linux-gnu");
    if std::env::consts::ARCH != "x86_64" || !libdir.join("libmpich.so.12").exists() {
        eprintln!("SKIPPED: no MPICH here (scripts/setup installs it)");
        return;
    }
    let loader = Loader {
        library_path: Vec::new(),
        ..Loader::current()
    };
    let mut libs = vec![libdir.join("libmpich.so.12"), libdir.join("libmpi.so.40")];
    for dir in ["openmpi/lib/openmpi3", "pmix2/lib/pmix", "ucx"] {
        libs.extend(plugin_files(&libdir.join(dir)).unwrap_or_default());
    }
    let loaded = libs.iter().filter(|lib| agree(&loader, lib, None)).count();
    let refused = libs.len() - loaded;
    assert!(loaded > 100, "only {loaded} libraries compared");
    eprintln!(
        "walker = ld.so --list: {loaded} libraries and plugins loaded alike, {refused} refused \
         alike (a library not found)"
    );
}

/// Builds a shared library with `cc`; false when there is no compiler.
fn cc_shared(out: &Path, needs: &[&Path], flags: &[String]) -> bool {
    let dir = out.parent().expect("dir");
    fs::create_dir_all(dir).expect("mkdir");
    let src = out.with_extension("c");
    let stem = out.file_name().and_then(|n| n.to_str()).unwrap_or("x");
    let symbol: String = stem.chars().filter(char::is_ascii_alphanumeric).collect();
    fs::write(&src, format!("int f_{symbol}(void) {{ return 0; }}\n")).expect("write");
    let mut command = Command::new("cc");
    command
        .args(["-shared", "-fPIC", "-o"])
        .arg(out)
        .arg(&src)
        .arg(format!("-Wl,-soname,{stem}"))
        .arg("-Wl,--no-as-needed");
    command.args(needs).args(flags);
    command.status().is_ok_and(|s| s.success())
}

/// The rules against the loader on libraries built here: the main object's
/// RPATH serves its dependencies, a RUNPATH only its own needs, LD_LIBRARY_PATH
/// comes after RPATH and before RUNPATH, $ORIGIN is the object's directory.
#[test]
fn the_rules_agree_with_ld_so_list_on_built_libraries() {
    if !Path::new(loader_program()).exists() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let root = canonical(tmp.path());
    let (a, b, llp) = (root.join("a"), root.join("b"), root.join("llp"));
    let mut built = true;
    for dir in [&a, &b, &llp] {
        built &= cc_shared(&dir.join("libleaf.so.1"), &[], &[]);
    }
    // mid needs leaf and has no search path of its own; top needs mid.
    let mid = b.join("libmid.so.1");
    built &= cc_shared(&mid, &[&b.join("libleaf.so.1")], &[]);
    let path = |kind: &str, path: &str| {
        vec![
            format!("-Wl,--{kind}-new-dtags"),
            format!("-Wl,-rpath,{path}"),
        ]
    };
    let tops = [
        ("rpath", path("disable", "$ORIGIN/../a:$ORIGIN/../b")),
        ("runpath", path("enable", "$ORIGIN/../a:$ORIGIN/../b")),
        ("runpath-b", path("enable", "$ORIGIN/../b")),
    ];
    for (dir, flags) in &tops {
        built &= cc_shared(&root.join(dir).join("libtop.so"), &[&mid], flags);
    }
    if !built {
        assert!(std::env::var_os("CI").is_none(), "cc is needed under CI");
        eprintln!("SKIPPED: cannot build libraries with cc");
        return;
    }
    let llp_text = llp.to_str().expect("utf-8").to_owned();
    for (dir, _) in &tops {
        for library_path in [None, Some(llp_text.as_str())] {
            let loader = Loader {
                library_path: library_path.map(split_library_path).unwrap_or_default(),
                ..Loader::current()
            };
            agree(&loader, &root.join(dir).join("libtop.so"), library_path);
        }
    }
    // What the cases show: the main object's RPATH reaches leaf (a before b).
    let loader = Loader {
        library_path: Vec::new(),
        ..Loader::current()
    };
    let r = resolve(&loader, &root.join("rpath/libtop.so")).expect("walk");
    assert_eq!(r.libs[1].canonical, a.join("libleaf.so.1"));
    // A RUNPATH does not reach mid's needs: leaf is not found without
    // LD_LIBRARY_PATH.
    let r = resolve(&loader, &root.join("runpath/libtop.so")).expect("walk");
    assert_eq!(r.unresolved, ["libleaf.so.1"]);
}
