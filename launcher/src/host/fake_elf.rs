//! Test helper: small ELF shared objects with the dynamic-linking facts the
//! probes read (SONAME, DT_NEEDED, RUNPATH/RPATH, DF_1_NODEFLIB, GLIBC_x.y needs
//! and definitions), written into fake library trees. Little-endian ELF64, with
//! section headers only: enough for the readers, not for a loader.

use std::path::Path;

const DT_NEEDED: u64 = 1;
const DT_SONAME: u64 = 14;
const DT_RPATH: u64 = 15;
const DT_RUNPATH: u64 = 29;
const DT_FLAGS_1: u64 = 0x6fff_fffb;
const DF_1_NODEFLIB: u64 = 0x800;

/// An ELF file being described.
#[derive(Debug, Clone)]
pub struct FakeElf {
    machine: u16,
    soname: Option<String>,
    needed: Vec<String>,
    runpath: Option<String>,
    rpath: Option<String>,
    nodeflib: bool,
    needs: Vec<(String, String)>,
    defines: Vec<String>,
}

/// This machine's `e_machine`.
pub fn host_machine() -> u16 {
    match std::env::consts::ARCH {
        "aarch64" => 183,
        "powerpc64" => 21,
        _ => 62,
    }
}

impl Default for FakeElf {
    fn default() -> Self {
        FakeElf::new()
    }
}

impl FakeElf {
    pub fn new() -> FakeElf {
        FakeElf {
            machine: host_machine(),
            soname: None,
            needed: Vec::new(),
            runpath: None,
            rpath: None,
            nodeflib: false,
            needs: Vec::new(),
            defines: Vec::new(),
        }
    }

    pub fn machine(mut self, machine: u16) -> Self {
        self.machine = machine;
        self
    }

    pub fn soname(mut self, name: &str) -> Self {
        self.soname = Some(name.to_owned());
        self
    }

    pub fn needs(mut self, names: &[&str]) -> Self {
        self.needed.extend(names.iter().map(|n| (*n).to_owned()));
        self
    }

    pub fn runpath(mut self, path: &str) -> Self {
        self.runpath = Some(path.to_owned());
        self
    }

    pub fn rpath(mut self, path: &str) -> Self {
        self.rpath = Some(path.to_owned());
        self
    }

    pub fn nodeflib(mut self) -> Self {
        self.nodeflib = true;
        self
    }

    /// A version needed from a library ("libc.so.6", "GLIBC_2.34").
    pub fn version_need(mut self, file: &str, version: &str) -> Self {
        self.needs.push((file.to_owned(), version.to_owned()));
        self
    }

    /// Versions this file defines (libc.so.6: "GLIBC_2.34", ...).
    pub fn defines(mut self, versions: &[&str]) -> Self {
        self.defines
            .extend(versions.iter().map(|v| (*v).to_owned()));
        self
    }

    /// Writes the file (and its parent directories).
    pub fn write(&self, path: &Path) {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("mkdir");
        }
        std::fs::write(path, self.bytes()).expect("write ELF");
    }

    /// The file's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let mut dynstr = Strings::default();
        let mut dynamic: Vec<(u64, u64)> = Vec::new();
        for n in &self.needed {
            dynamic.push((DT_NEEDED, dynstr.add(n)));
        }
        if let Some(s) = &self.soname {
            dynamic.push((DT_SONAME, dynstr.add(s)));
        }
        if let Some(r) = &self.rpath {
            dynamic.push((DT_RPATH, dynstr.add(r)));
        }
        if let Some(r) = &self.runpath {
            dynamic.push((DT_RUNPATH, dynstr.add(r)));
        }
        if self.nodeflib {
            dynamic.push((DT_FLAGS_1, DF_1_NODEFLIB));
        }
        dynamic.push((0, 0));
        let dynamic_bytes: Vec<u8> = dynamic
            .iter()
            .flat_map(|(t, v)| t.to_le_bytes().into_iter().chain(v.to_le_bytes()))
            .collect();
        let (verneed, verneed_count) = self.verneed(&mut dynstr);
        let (verdef, verdef_count) = self.verdef(&mut dynstr);

        let mut shstr = Strings::default();
        // (name, type, data, link, info, entsize)
        let mut sections: Vec<(u64, u32, Vec<u8>, u32, u32, u64)> = vec![
            (shstr.add(".dynstr"), 3, dynstr.bytes.clone(), 0, 0, 0),
            (shstr.add(".dynamic"), 6, dynamic_bytes, 1, 0, 16),
        ];
        if verneed_count > 0 {
            let name = shstr.add(".gnu.version_r");
            sections.push((name, 0x6fff_fffe, verneed, 1, verneed_count, 0));
        }
        if verdef_count > 0 {
            let name = shstr.add(".gnu.version_d");
            sections.push((name, 0x6fff_fffd, verdef, 1, verdef_count, 0));
        }
        let shstrtab = shstr.add(".shstrtab");
        sections.push((shstrtab, 3, shstr.bytes.clone(), 0, 0, 0));

        let mut out = vec![0u8; 64];
        let mut headers = vec![0u8; 64]; // the null section
        for (name, kind, data, link, info, entsize) in &sections {
            while out.len() % 8 != 0 {
                out.push(0);
            }
            let offset = out.len() as u64;
            out.extend_from_slice(data);
            let mut h = Vec::with_capacity(64);
            h.extend(u32::try_from(*name).expect("small").to_le_bytes());
            h.extend(kind.to_le_bytes());
            h.extend(0u64.to_le_bytes()); // flags
            h.extend(0u64.to_le_bytes()); // addr
            h.extend(offset.to_le_bytes());
            h.extend((data.len() as u64).to_le_bytes());
            h.extend(link.to_le_bytes());
            h.extend(info.to_le_bytes());
            h.extend(8u64.to_le_bytes()); // addralign
            h.extend(entsize.to_le_bytes());
            headers.extend(h);
        }
        while out.len() % 8 != 0 {
            out.push(0);
        }
        let shoff = out.len() as u64;
        out.extend(headers);
        let shnum = u16::try_from(sections.len() + 1).expect("few sections");
        let mut ehdr = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
        ehdr.extend([0u8; 8]);
        ehdr.extend(3u16.to_le_bytes()); // ET_DYN
        ehdr.extend(self.machine.to_le_bytes());
        ehdr.extend(1u32.to_le_bytes());
        ehdr.extend(0u64.to_le_bytes()); // entry
        ehdr.extend(0u64.to_le_bytes()); // phoff
        ehdr.extend(shoff.to_le_bytes());
        ehdr.extend(0u32.to_le_bytes()); // flags
        ehdr.extend(64u16.to_le_bytes());
        ehdr.extend(56u16.to_le_bytes());
        ehdr.extend(0u16.to_le_bytes());
        ehdr.extend(64u16.to_le_bytes());
        ehdr.extend(shnum.to_le_bytes());
        ehdr.extend((shnum - 1).to_le_bytes()); // .shstrtab is last
        out[..64].copy_from_slice(&ehdr);
        out
    }

    /// `.gnu.version_r`: one Verneed per library, its Vernaux entries after it.
    fn verneed(&self, dynstr: &mut Strings) -> (Vec<u8>, u32) {
        let mut files: Vec<(&str, Vec<&str>)> = Vec::new();
        for (file, version) in &self.needs {
            match files.iter_mut().find(|(f, _)| f == file) {
                Some((_, v)) => v.push(version),
                None => files.push((file, vec![version])),
            }
        }
        let mut out = Vec::new();
        for (i, (file, versions)) in files.iter().enumerate() {
            let size = 16 + 16 * versions.len();
            let next = if i + 1 == files.len() { 0 } else { size };
            out.extend(1u16.to_le_bytes());
            out.extend(u16::try_from(versions.len()).expect("few").to_le_bytes());
            out.extend(
                u32::try_from(dynstr.add(file))
                    .expect("small")
                    .to_le_bytes(),
            );
            out.extend(16u32.to_le_bytes());
            out.extend(u32::try_from(next).expect("small").to_le_bytes());
            for (j, v) in versions.iter().enumerate() {
                let next = if j + 1 == versions.len() { 0u32 } else { 16 };
                out.extend(0u32.to_le_bytes()); // hash (not checked by readers)
                out.extend(0u16.to_le_bytes());
                out.extend(u16::try_from(j + 2).expect("few").to_le_bytes());
                out.extend(u32::try_from(dynstr.add(v)).expect("small").to_le_bytes());
                out.extend(next.to_le_bytes());
            }
        }
        (out, u32::try_from(files.len()).expect("few"))
    }

    /// `.gnu.version_d`: the base entry (the file's name), then one per version.
    fn verdef(&self, dynstr: &mut Strings) -> (Vec<u8>, u32) {
        if self.defines.is_empty() {
            return (Vec::new(), 0);
        }
        let base = self.soname.clone().unwrap_or_else(|| "fake.so".into());
        let names: Vec<&str> = std::iter::once(base.as_str())
            .chain(self.defines.iter().map(String::as_str))
            .collect();
        let mut out = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let next = if i + 1 == names.len() { 0u32 } else { 28 };
            out.extend(1u16.to_le_bytes());
            out.extend(u16::from(i == 0).to_le_bytes()); // VER_FLG_BASE
            out.extend(u16::try_from(i + 1).expect("few").to_le_bytes());
            out.extend(1u16.to_le_bytes());
            out.extend(0u32.to_le_bytes()); // hash
            out.extend(20u32.to_le_bytes());
            out.extend(next.to_le_bytes());
            out.extend(
                u32::try_from(dynstr.add(name))
                    .expect("small")
                    .to_le_bytes(),
            );
            out.extend(0u32.to_le_bytes());
        }
        (out, u32::try_from(names.len()).expect("few"))
    }
}

/// A string table being built (offset 0 is the empty string).
#[derive(Debug)]
struct Strings {
    bytes: Vec<u8>,
}

impl Default for Strings {
    fn default() -> Self {
        Strings { bytes: vec![0] }
    }
}

impl Strings {
    fn add(&mut self, s: &str) -> u64 {
        let offset = self.bytes.len() as u64;
        self.bytes.extend_from_slice(s.as_bytes());
        self.bytes.push(0);
        offset
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::elf::ElfReader;

    #[test]
    fn the_readers_read_what_was_written() {
        let bytes = FakeElf::new()
            .soname("libx.so.1")
            .needs(&["liby.so.2", "libc.so.6"])
            .runpath("$ORIGIN/../lib:/opt/x")
            .rpath("/ignored")
            .nodeflib()
            .version_need("libc.so.6", "GLIBC_2.17")
            .version_need("libc.so.6", "GLIBC_2.34")
            .version_need("liby.so.2", "Y_1")
            .defines(&["X_1.0"])
            .bytes();
        let info = ElfReader::new(std::io::Cursor::new(bytes))
            .info()
            .expect("readable");
        assert_eq!(info.class, 2);
        assert_eq!(info.machine, host_machine());
        assert_eq!(info.soname.as_deref(), Some("libx.so.1"));
        assert_eq!(info.needed, ["liby.so.2", "libc.so.6"]);
        assert_eq!(info.runpath, ["$ORIGIN/../lib", "/opt/x"]);
        assert!(info.rpath.is_empty(), "RPATH is ignored beside RUNPATH");
        assert!(info.nodeflib);
        let max = info.max_glibc_needed().expect("needs glibc");
        assert_eq!((max.0.to_string().as_str(), max.1), ("2.34", "libc.so.6"));
        assert_eq!(info.version_defs, ["X_1.0"]);
        let info = ElfReader::new(std::io::Cursor::new(FakeElf::new().rpath("/a:/b").bytes()))
            .info()
            .expect("readable");
        assert_eq!(info.rpath, ["/a", "/b"]);
        assert!(!info.nodeflib);
    }
}
