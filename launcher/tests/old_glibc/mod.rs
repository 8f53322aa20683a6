//! A stand-in `libc.so.6` that defines only GLIBC_2.17: an "old image" for
//! the glibc rule, shared by the image check and launch gate tests.

use std::path::Path;
use std::process::Command;

/// Build the stand-in into `libdir/libc.so.6`, using `work` for its sources.
/// Returns false (after a loud SKIPPED line) when `cc` cannot build it outside
/// CI; under CI a missing compiler fails the test.
pub fn build_old_libc(work: &Path, libdir: &Path) -> bool {
    let src = work.join("c.c");
    let map = work.join("v.map");
    std::fs::write(&src, "int fake_glibc_symbol(void) { return 0; }\n").expect("write c.c");
    std::fs::write(
        &map,
        "GLIBC_2.17 { global: fake_glibc_symbol; local: *; };\n",
    )
    .expect("write v.map");
    let status = Command::new("cc")
        .args(["-shared", "-fPIC", "-nostdlib", "-Wl,-soname,libc.so.6"])
        .arg(format!("-Wl,--version-script={}", map.display()))
        .arg("-o")
        .arg(libdir.join("libc.so.6"))
        .arg(&src)
        .status();
    match status {
        Ok(s) if s.success() => true,
        other => {
            assert!(
                std::env::var_os("CI").is_none(),
                "cc is needed under CI: {other:?}"
            );
            eprintln!("SKIPPED: cannot build the stand-in libc.so.6 with cc ({other:?})");
            false
        }
    }
}
