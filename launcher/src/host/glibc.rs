//! The host's glibc: the highest `GLIBC_x.y` its `libc.so.6` defines (that is the
//! glibc release; no program is run).

use std::fs::File;
use std::path::{Path, PathBuf};

use crate::elf::{ElfReader, GlibcVersion};

/// Where the host's C library is looked for, in this order.
pub const HOST_LIBC: [&str; 4] = [
    "/lib/x86_64-linux-gnu/libc.so.6",
    "/lib/aarch64-linux-gnu/libc.so.6",
    "/lib64/libc.so.6",
    "/usr/lib64/libc.so.6",
];

/// The first of [`HOST_LIBC`] that exists under `root` ("/" on the host).
pub fn libc_under(root: &Path) -> Option<PathBuf> {
    HOST_LIBC
        .iter()
        .map(|p| root.join(p.trim_start_matches('/')))
        .find(|p| p.exists())
}

/// The glibc version of the system under `root`.
pub fn version_under(root: &Path) -> Option<GlibcVersion> {
    let libc = libc_under(root)?;
    let elf = ElfReader::new(File::open(libc).ok()?);
    elf.info().ok()?.max_glibc_defined()
}

/// This host's glibc version.
pub fn host_glibc() -> Option<GlibcVersion> {
    version_under(Path::new("/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::fake_elf::FakeElf;

    #[test]
    fn version_from_the_first_libc_found() {
        let tmp = tempfile::tempdir().expect("tmp");
        assert_eq!(version_under(tmp.path()), None);
        let lib64 = tmp.path().join("lib64");
        FakeElf::new()
            .soname("libc.so.6")
            .defines(&["GLIBC_2.2.5", "GLIBC_2.34", "GLIBC_2.17", "GLIBC_PRIVATE"])
            .write(&lib64.join("libc.so.6"));
        assert_eq!(
            version_under(tmp.path()).map(|v| v.to_string()).as_deref(),
            Some("2.34")
        );
        // The multiarch directory comes first.
        FakeElf::new()
            .defines(&["GLIBC_2.36"])
            .write(&tmp.path().join("lib/x86_64-linux-gnu/libc.so.6"));
        assert_eq!(
            version_under(tmp.path()).map(|v| v.to_string()).as_deref(),
            Some("2.36")
        );
    }
}
