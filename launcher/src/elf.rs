//! ELF facts that decide whether libraries can be mixed and how the loader finds
//! them: class and machine, `DT_NEEDED`, `DT_SONAME`, `DT_RUNPATH`/`DT_RPATH`,
//! `DF_1_NODEFLIB`, the `GLIBC_x.y` versions a file needs (`.gnu.version_r`) and
//! defines (`.gnu.version_d`), dynamic symbols that hold version strings, and a
//! bounded scan of `.rodata` for marker strings; and the version in a shared
//! object's file name (`libmpich.so.12.2.2`). Shared by the image checks (files
//! inside an image) and the host probes (the host's libraries).
//!
//! Everything is read lazily through [`object::ReadCache`]: only the ELF header, the
//! section headers and the sections asked for are read, so a 40 MiB `libmpich.so`
//! inside a SquashFS image costs a few hundred KiB of reads, not the whole file.

use std::io::{Read, Seek};

use object::elf;
use object::read::elf::{Dyn, FileHeader, SectionHeader, SectionTable, Sym};
use object::{Endianness, ReadCache, ReadRef};

/// How many bytes of `.rodata` a marker scan reads at most: MPICH's is 1.7 MiB,
/// Open MPI's 45 KiB; the cap keeps a hostile or huge library cheap.
pub const RODATA_SCAN_LIMIT: u64 = 8 << 20;

/// A `GLIBC_x.y[.z]` version, compared numerically (2.17 < 2.34).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
pub struct GlibcVersion(pub Vec<u32>);

impl GlibcVersion {
    /// Parses "GLIBC_2.34" or "2.34"; None for GLIBC_PRIVATE and other names.
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.strip_prefix("GLIBC_").unwrap_or(text);
        let parts: Option<Vec<u32>> = text.split('.').map(|p| p.parse().ok()).collect();
        match parts {
            Some(p) if p.len() >= 2 => Some(GlibcVersion(p)),
            _ => None,
        }
    }
}

impl std::fmt::Display for GlibcVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(u32::to_string).collect();
        f.write_str(&parts.join("."))
    }
}

/// One version a file needs from one of its libraries (`.gnu.version_r`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VersionNeed {
    /// The library the version comes from ("libc.so.6").
    pub file: String,
    /// The version name ("GLIBC_2.34").
    pub version: String,
}

/// The dynamic-linking facts of one ELF file.
#[derive(Debug, Clone, Default)]
pub struct ElfInfo {
    /// `EI_CLASS`: 1 for 32-bit, 2 for 64-bit files.
    pub class: u8,
    /// `e_machine` (62 for x86-64, 183 for AArch64).
    pub machine: u16,
    pub soname: Option<String>,
    pub needed: Vec<String>,
    /// `DT_RUNPATH`, split at ':' (unexpanded: `$ORIGIN` kept).
    pub runpath: Vec<String>,
    /// `DT_RPATH`, split at ':'; empty when the file has a `DT_RUNPATH` (the loader
    /// then ignores it).
    pub rpath: Vec<String>,
    /// `DF_1_NODEFLIB`: the loader searches neither its cache nor the default
    /// directories for this file's dependencies.
    pub nodeflib: bool,
    pub version_needs: Vec<VersionNeed>,
    /// Version names this file defines (`.gnu.version_d`), the base entry excluded.
    pub version_defs: Vec<String>,
}

impl ElfInfo {
    /// The highest `GLIBC_x.y` this file needs from glibc's libraries, with the
    /// library it needs it from.
    pub fn max_glibc_needed(&self) -> Option<(GlibcVersion, &str)> {
        self.version_needs
            .iter()
            .filter_map(|n| GlibcVersion::parse(&n.version).map(|v| (v, n.file.as_str())))
            .max_by(|a, b| a.0.cmp(&b.0))
    }

    /// The highest `GLIBC_x.y` this file defines (libc.so.6: its glibc version).
    pub fn max_glibc_defined(&self) -> Option<GlibcVersion> {
        self.version_defs
            .iter()
            .filter_map(|d| GlibcVersion::parse(d))
            .max()
    }
}

/// A library file version: the numbers after ".so." in the real file name
/// (`libmpich.so.12.2.2` -> 12.2.2); missing parts are None.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub struct LibVersion {
    pub major: u32,
    pub minor: Option<u32>,
    pub patch: Option<u32>,
}

impl std::fmt::Display for LibVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.major)?;
        if let Some(minor) = self.minor {
            write!(f, ".{minor}")?;
            if let Some(patch) = self.patch {
                write!(f, ".{patch}")?;
            }
        }
        Ok(())
    }
}

/// Splits a shared-library file name into its stem and version:
/// "libmpich.so.12.2.2" -> ("libmpich", Some(12.2.2)); "libmpi_abi.so" -> ("libmpi_abi", None).
/// None when the name is not "STEM.so[.N[.N[.N]]]" with numeric parts.
pub fn split_so_name(name: &str) -> Option<(&str, Option<LibVersion>)> {
    let (stem, rest) = name.split_once(".so")?;
    if stem.is_empty() {
        return None;
    }
    if rest.is_empty() {
        return Some((stem, None));
    }
    let rest = rest.strip_prefix('.')?;
    let parts: Option<Vec<u32>> = rest.split('.').map(|p| p.parse().ok()).collect();
    let parts = parts?;
    let major = *parts.first()?;
    if parts.len() > 3 {
        return None;
    }
    Some((
        stem,
        Some(LibVersion {
            major,
            minor: parts.get(1).copied(),
            patch: parts.get(2).copied(),
        }),
    ))
}

/// Why an ELF file could not be read. The caller adds the file name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElfError {
    #[error("not an ELF file")]
    NotElf,
    #[error("malformed ELF: {0}")]
    Malformed(String),
}

impl From<object::read::Error> for ElfError {
    fn from(e: object::read::Error) -> Self {
        ElfError::Malformed(e.to_string())
    }
}

/// Whether `head` (the first bytes of a file) starts with the ELF magic.
pub fn is_elf(head: &[u8]) -> bool {
    head.starts_with(&elf::ELFMAG)
}

/// An ELF file opened for lazy reads: parse once, ask several questions.
pub struct ElfReader<R: Read + Seek> {
    cache: ReadCache<R>,
}

impl<R: Read + Seek> ElfReader<R> {
    pub fn new(source: R) -> Self {
        ElfReader {
            cache: ReadCache::new(source),
        }
    }

    /// Gives the source back (to account for bytes read, for example).
    pub fn into_inner(self) -> R {
        self.cache.into_inner()
    }

    fn class(&self) -> Result<u8, ElfError> {
        let ident = (&self.cache)
            .read_bytes_at(0, 16)
            .map_err(|()| ElfError::NotElf)?;
        if !is_elf(ident) {
            return Err(ElfError::NotElf);
        }
        // e_ident[EI_CLASS]: 1 = 32-bit, 2 = 64-bit.
        Ok(ident[4])
    }

    /// The dynamic-linking facts.
    pub fn info(&self) -> Result<ElfInfo, ElfError> {
        match self.class()? {
            2 => info_of::<elf::FileHeader64<Endianness>, _>(&self.cache),
            1 => info_of::<elf::FileHeader32<Endianness>, _>(&self.cache),
            other => Err(ElfError::Malformed(format!("unknown ELF class {other}"))),
        }
    }

    /// The NUL-terminated string a defined dynamic symbol points to (MPICH's
    /// `MPII_Version_string` -> "4.0.2"), at most 256 bytes.
    pub fn symbol_string(&self, name: &str) -> Result<Option<String>, ElfError> {
        match self.class()? {
            2 => symbol_string_of::<elf::FileHeader64<Endianness>, _>(&self.cache, name.as_bytes()),
            1 => symbol_string_of::<elf::FileHeader32<Endianness>, _>(&self.cache, name.as_bytes()),
            other => Err(ElfError::Malformed(format!("unknown ELF class {other}"))),
        }
    }

    /// The raw bytes of `.rodata` (at most [`RODATA_SCAN_LIMIT`] read), for marker
    /// and version searches ([`split_strings`], [`trailing_release`]). Empty when
    /// there is no `.rodata`.
    pub fn rodata(&self) -> Result<Vec<u8>, ElfError> {
        match self.class()? {
            2 => rodata_of::<elf::FileHeader64<Endianness>, _>(&self.cache),
            1 => rodata_of::<elf::FileHeader32<Endianness>, _>(&self.cache),
            other => Err(ElfError::Malformed(format!("unknown ELF class {other}"))),
        }
    }
}

/// The first "N.N.N" that ends a NUL-terminated piece of `raw` and is not preceded by
/// a digit or a dot. UCX's "1.13.1" directly follows a constant in `.rodata`, with no
/// NUL before it, so whole-string matching misses it.
pub fn trailing_release(raw: &[u8]) -> Option<String> {
    raw.split(|&b| b == 0).find_map(|piece| {
        let start = piece
            .iter()
            .rposition(|&b| !(b.is_ascii_digit() || b == b'.'))
            .map_or(0, |p| p + 1);
        let tail = std::str::from_utf8(&piece[start..]).ok()?;
        let parts: Vec<&str> = tail.split('.').collect();
        (parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.len() <= 4))
            .then(|| tail.to_owned())
    })
}

/// Printable NUL-terminated strings of at least 3 bytes (like `strings -n 3`, but
/// split only at NUL so "MPICH Version:\t%s" stays whole). Of a piece that starts
/// with binary bytes (a string stored right after a constant) the printable tail is
/// kept. The pieces borrow from `raw` (printable bytes are ASCII, so every piece is
/// valid UTF-8): an MPI library's `.rodata` holds some 100,000 of them, and an
/// allocation each was most of what the launch gate cost.
pub fn split_strings(raw: &[u8]) -> Vec<&str> {
    let printable = |b: u8| matches!(b, b'\t' | b'\n' | b'\r') || (0x20..0x7f).contains(&b);
    raw.split(|&b| b == 0)
        .map(|piece| {
            let start = piece
                .iter()
                .rposition(|&b| !printable(b))
                .map_or(0, |p| p + 1);
            &piece[start..]
        })
        .filter(|s| s.len() >= 3)
        .filter_map(|s| std::str::from_utf8(s).ok())
        .collect()
}

fn sections<'data, Elf: FileHeader<Endian = Endianness>, R: ReadRef<'data>>(
    data: R,
) -> Result<(&'data Elf, Endianness, SectionTable<'data, Elf, R>), ElfError> {
    let header = Elf::parse(data)?;
    let endian = header.endian()?;
    let sections = header.sections(endian, data)?;
    Ok((header, endian, sections))
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn info_of<'data, Elf: FileHeader<Endian = Endianness>, R: ReadRef<'data>>(
    data: R,
) -> Result<ElfInfo, ElfError> {
    let (header, endian, sections) = sections::<Elf, R>(data)?;
    let mut info = ElfInfo {
        class: header.e_ident().class.0,
        machine: header.e_machine(endian).0,
        ..ElfInfo::default()
    };

    if let Some((dynamic, link)) = sections.dynamic(endian, data)? {
        let strings = sections.strings(endian, data, link)?;
        let split = |text: String| -> Vec<String> {
            text.split(':')
                .filter(|p| !p.is_empty())
                .map(str::to_owned)
                .collect()
        };
        let mut has_runpath = false;
        for d in dynamic {
            let tag = d.d_tag(endian);
            let value: u64 = d.d_val(endian).into();
            let Ok(offset) = u32::try_from(value) else {
                continue;
            };
            let get = || {
                strings
                    .get(offset)
                    .map(text)
                    .map_err(|()| ElfError::Malformed("dynamic string outside .dynstr".into()))
            };
            if tag == elf::DT_NEEDED {
                info.needed.push(get()?);
            } else if tag == elf::DT_SONAME {
                info.soname = Some(get()?);
            } else if tag == elf::DT_RUNPATH {
                has_runpath = true;
                info.runpath = split(get()?);
            } else if tag == elf::DT_RPATH {
                info.rpath = split(get()?);
            } else if tag == elf::DT_FLAGS_1 {
                info.nodeflib = value & elf::DF_1_NODEFLIB.0 != 0;
            }
        }
        // The loader ignores DT_RPATH when DT_RUNPATH is present.
        if has_runpath {
            info.rpath.clear();
        }
    }

    if let Some((mut needs, link)) = sections.gnu_verneed(endian, data)? {
        let strings = sections.strings(endian, data, link)?;
        while let Some((need, mut aux)) = needs.next()? {
            let file = text(need.file(endian, strings)?);
            while let Some(a) = aux.next()? {
                info.version_needs.push(VersionNeed {
                    file: file.clone(),
                    version: text(a.name(endian, strings)?),
                });
            }
        }
    }

    if let Some((mut defs, link)) = sections.gnu_verdef(endian, data)? {
        let strings = sections.strings(endian, data, link)?;
        while let Some((def, mut aux)) = defs.next()? {
            // The base definition names the file itself, not a version.
            if def.vd_flags.get(endian).contains(elf::VER_FLG_BASE) {
                continue;
            }
            if let Some(a) = aux.next()? {
                info.version_defs.push(text(a.name(endian, strings)?));
            }
        }
    }
    Ok(info)
}

fn symbol_string_of<'data, Elf: FileHeader<Endian = Endianness>, R: ReadRef<'data>>(
    data: R,
    name: &[u8],
) -> Result<Option<String>, ElfError> {
    let (_, endian, sections) = sections::<Elf, R>(data)?;
    let symbols = sections.symbols(endian, data, elf::SHT_DYNSYM)?;
    let strings = symbols.strings();
    let Some(sym) = symbols
        .iter()
        .find(|s| !s.is_undefined(endian) && s.name(endian, strings) == Ok(name))
    else {
        return Ok(None);
    };
    let address: u64 = sym.st_value(endian).into();
    // Map the address to a file offset through the section that holds it.
    let Some(index) = sym.st_shndx(endian).index() else {
        return Ok(None);
    };
    let Ok(section) = sections.section(object::SectionIndex(usize::from(index))) else {
        return Ok(None);
    };
    let start: u64 = section.sh_addr(endian).into();
    let size: u64 = section.sh_size(endian).into();
    if section.sh_type(endian) == elf::SHT_NOBITS || address < start || address >= start + size {
        return Ok(None);
    }
    let section_offset: u64 = section.sh_offset(endian).into();
    let offset = section_offset + (address - start);
    let Ok(bytes) = data.read_bytes_at(offset, 256.min(start + size - address)) else {
        return Ok(None);
    };
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    Ok(Some(text(&bytes[..end])))
}

fn rodata_of<'data, Elf: FileHeader<Endian = Endianness>, R: ReadRef<'data>>(
    data: R,
) -> Result<Vec<u8>, ElfError> {
    let (_, endian, sections) = sections::<Elf, R>(data)?;
    let Some((_, section)) = sections.section_by_name(endian, b".rodata") else {
        return Ok(Vec::new());
    };
    if section.sh_type(endian) == elf::SHT_NOBITS {
        return Ok(Vec::new());
    }
    let offset: u64 = section.sh_offset(endian).into();
    let size: u64 = section.sh_size(endian).into();
    let bytes = data
        .read_bytes_at(offset, size.min(RODATA_SCAN_LIMIT))
        .map_err(|()| ElfError::Malformed(".rodata lies outside the file".into()))?;
    Ok(bytes.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_versions_compare_numerically() {
        let v = |s| GlibcVersion::parse(s).unwrap();
        assert!(v("GLIBC_2.17") < v("GLIBC_2.34"));
        assert!(v("2.9") < v("2.17"));
        assert!(v("GLIBC_2.3.4") > v("GLIBC_2.3"));
        assert_eq!(GlibcVersion::parse("GLIBC_PRIVATE"), None);
        assert_eq!(v("GLIBC_2.36").to_string(), "2.36");
    }

    #[test]
    fn strings_split_at_nul_only() {
        let s = split_strings(b"MPICH Version:\t%s\0ab\0\x01\x02xyz\x004.0.2\0\x01\x02\0");
        assert_eq!(s, vec!["MPICH Version:\t%s", "xyz", "4.0.2"]);
    }

    #[test]
    fn trailing_releases() {
        assert_eq!(
            trailing_release(b"er_iface\0\0e\xcd\xcdA1.13.1\0%s\n\0"),
            Some("1.13.1".into())
        );
        assert_eq!(trailing_release(b"127.0.0.1\0x\0"), None);
    }
}
