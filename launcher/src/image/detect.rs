//! What is inside an image: MPI (flavour, ABI, version), PMI, fabric libraries
//! (libfabric and its providers, UCX and its transports, PSM2, verbs), glibc, the
//! CUDA runtime and the OS.
//!
//! Libraries are found by file name anywhere in the image (symlinks resolved, one
//! report per real file); only the few files that match are opened, and of those only
//! the ELF tables and `.rodata` are read.

use std::collections::BTreeMap;
use std::io::{Read, Seek};

use super::ImageError;
use super::abi;
use super::contents::{EntryKind, Image, ImageKind, SquashfsInfo};
use crate::elf::{self, ElfReader, GlibcVersion};
use crate::elf::{LibVersion, split_so_name};
use crate::host::loader::STANDARD_LIB_DIRS;
use crate::site::fabric::FabricKind;
use hybrun_core::vocab::{MpiAbi, MpiFlavour};

/// `/etc/os-release` facts.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OsRelease {
    pub id: Option<String>,
    pub version_id: Option<String>,
    pub pretty_name: Option<String>,
}

impl OsRelease {
    /// Parses os-release text (KEY=VALUE lines, values optionally quoted).
    pub fn parse(text: &str) -> Self {
        let mut os = OsRelease::default();
        for line in text.lines() {
            let Some((key, value)) = line.trim().split_once('=') else {
                continue;
            };
            let value = value.trim();
            let value = value
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(value)
                .to_owned();
            match key {
                "ID" => os.id = Some(value),
                "VERSION_ID" => os.version_id = Some(value),
                "PRETTY_NAME" => os.pretty_name = Some(value),
                _ => {}
            }
        }
        os
    }
}

/// One MPI C library.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MpiLibrary {
    /// The path it was found under (a SONAME link such as .../libmpich.so.12).
    pub path: String,
    /// The real file after symbolic links (.../libmpich.so.12.2.2).
    pub file: String,
    pub soname: Option<String>,
    /// The ABI (from the SONAME, else the file name, else the markers).
    pub abi: Option<MpiAbi>,
    /// The library file version (12.2.2 from libmpich.so.12.2.2).
    pub lib_version: Option<LibVersion>,
    pub implementation: Option<MpiFlavour>,
    /// The product release ("4.0.2").
    pub version: Option<String>,
    pub needed: Vec<String>,
    /// The highest GLIBC_x.y the library itself needs.
    pub glibc_needed: Option<GlibcVersion>,
}

impl MpiLibrary {
    /// "MPICH 4.0.2 (libmpich.so.12)".
    pub fn describe(&self) -> String {
        let product = match (self.implementation, &self.version) {
            (Some(i), Some(v)) => format!("{} {v}", i.label()),
            (Some(i), None) => i.label().to_owned(),
            (None, _) => self
                .abi
                .map_or("unknown MPI".to_owned(), |f| f.label().to_owned()),
        };
        format!("{product} ({})", self.soname_or_name())
    }

    /// The SONAME, else the file name.
    pub fn soname_or_name(&self) -> &str {
        self.soname
            .as_deref()
            .unwrap_or_else(|| base_name(&self.path))
    }

    /// What the ABI rules compare.
    pub fn abi_id(&self) -> Option<abi::AbiId> {
        Some(abi::AbiId {
            family: self.abi?,
            version: self.lib_version,
        })
    }
}

/// Reads an MPI library's facts from its ELF data. `path` is the name it was found
/// under, `file` the real file; `elf` reads `file`.
pub fn analyze_mpi<R: Read + Seek>(
    path: &str,
    file: &str,
    elf: &ElfReader<R>,
) -> Result<MpiLibrary, elf::ElfError> {
    let info = elf.info()?;
    let rodata = elf.rodata()?;
    let strings = elf::split_strings(&rodata);
    let implementation = MpiFlavour::recognise(strings.iter().copied());
    let by_name = |n: &str| abi::family_from_name(n);
    let abi = info
        .soname
        .as_deref()
        .and_then(by_name)
        .or_else(|| by_name(base_name(file)))
        .or_else(|| by_name(base_name(path)))
        .or_else(|| implementation.map(MpiFlavour::abi));
    let lib_version = split_so_name(base_name(file))
        .and_then(|(_, v)| v)
        .or_else(|| {
            info.soname
                .as_deref()
                .and_then(split_so_name)
                .and_then(|(_, v)| v)
        });
    let version = match implementation.map(MpiFlavour::abi) {
        Some(MpiAbi::Openmpi) => abi::open_mpi_release(strings.iter().copied()),
        Some(MpiAbi::Mpich) => {
            // MPICH and its derivatives export their release as a string constant.
            let mut v = None;
            for symbol in ["MPII_Version_string", "MPIR_Version_string"] {
                if let Some(s) = elf.symbol_string(symbol)? {
                    if abi::release_version(&s).is_some() {
                        v = Some(s);
                        break;
                    }
                }
            }
            v.or_else(|| intel_release(&strings))
        }
        _ => None,
    };
    Ok(MpiLibrary {
        path: path.to_owned(),
        file: file.to_owned(),
        soname: info.soname.clone(),
        abi,
        lib_version,
        implementation,
        version,
        glibc_needed: info.max_glibc_needed().map(|(v, _)| v),
        needed: info.needed,
    })
}

/// "Intel(R) MPI Library 2021.6 for Linux*" -> "2021.6".
fn intel_release(strings: &[&str]) -> Option<String> {
    strings.iter().find_map(|s| {
        let rest = s.split("Intel(R) MPI Library ").nth(1)?;
        abi::release_version(rest).map(str::to_owned)
    })
}

/// A library found in the image, with a version where one could be told.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Library {
    pub path: String,
    pub file: String,
    pub version: Option<String>,
}

/// A PMI client library: which PMI it speaks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct PmiLibrary {
    /// "pmi", "pmi2" or "pmix" (Slurm's `--mpi=` names where they exist).
    pub kind: String,
    #[serde(flatten)]
    pub library: Library,
}

/// UCX: library, release and transport plugins.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Ucx {
    #[serde(flatten)]
    pub library: Library,
    /// `<dir of libucs>/ucx`, where UCX loads its transports from.
    pub plugin_dir: Option<String>,
    /// Transport plugins there ("ib", "rdmacm", "cma", "cuda", ...).
    pub transports: Vec<String>,
}

/// Fabric (high-speed network) libraries.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct Fabric {
    pub libfabric: Option<Library>,
    /// Providers loaded from `<libdir>/libfabric/*-fi.so` ("psm2", "opx", "verbs", ...);
    /// providers built into libfabric itself are not listed.
    pub libfabric_providers: Vec<String>,
    pub ucx: Option<Ucx>,
    pub psm2: Option<Library>,
    pub verbs: Option<Library>,
}

impl Fabric {
    /// Whether anything can drive a fast network: libfabric, UCX with an InfiniBand
    /// transport, PSM2 or verbs.
    pub fn has_fast_path(&self) -> bool {
        self.libfabric.is_some()
            || self.psm2.is_some()
            || self.verbs.is_some()
            || self
                .ucx
                .as_ref()
                .is_some_and(|u| u.transports.iter().any(|t| t == "ib" || t == "rdmacm"))
    }

    /// Whether this stack can drive the site's fabric `kind` (a fast one): which
    /// library does, or why none can (`Err`); `Ok((false, ..))` when only a
    /// libfabric without the provider as a plugin file could (it may be built in).
    pub fn serves(&self, kind: FabricKind) -> Result<(bool, String), String> {
        let ucx_ib = self
            .ucx
            .as_ref()
            .is_some_and(|u| u.transports.iter().any(|t| t == "ib" || t == "rdmacm"));
        let provider = |name: &str| self.libfabric_providers.iter().any(|p| p == name);
        let found = match kind {
            FabricKind::Psm2 if self.psm2.is_some() => Some("libpsm2"),
            FabricKind::Psm2 if provider("psm2") => Some("libfabric's psm2 provider"),
            FabricKind::Opx if provider("opx") => Some("libfabric's opx provider"),
            FabricKind::Verbs if provider("verbs") => Some("libfabric's verbs provider"),
            FabricKind::Verbs if ucx_ib => Some("UCX's InfiniBand transport"),
            FabricKind::Verbs if self.verbs.is_some() => Some("libibverbs"),
            FabricKind::Ucx if ucx_ib => Some("UCX's InfiniBand transport"),
            FabricKind::Tcp | FabricKind::None => Some("(no fast fabric needed)"),
            _ => None,
        };
        if let Some(found) = found {
            return Ok((true, found.to_owned()));
        }
        let maybe = matches!(kind, FabricKind::Psm2 | FabricKind::Opx | FabricKind::Verbs)
            && self.libfabric.is_some();
        if maybe {
            return Ok((
                false,
                format!(
                    "libfabric without a {kind} provider plugin file (it may be built into \
                     libfabric: `fi_info -p {kind}` in the image tells)"
                ),
            ));
        }
        let has = if self.has_fast_path() {
            self.describe()
        } else {
            "no fabric library".to_owned()
        };
        Err(format!("the image has {has}"))
    }

    /// "libfabric 1.17.0 (providers: psm2), UCX 1.13.1 (ib, cma), PSM2".
    pub fn describe(&self) -> String {
        let mut parts = Vec::new();
        if let Some(l) = &self.libfabric {
            let mut s = format!("libfabric {}", l.version.as_deref().unwrap_or("?"));
            if !self.libfabric_providers.is_empty() {
                s.push_str(&format!(
                    " (providers: {})",
                    self.libfabric_providers.join(", ")
                ));
            }
            parts.push(s);
        }
        if let Some(u) = &self.ucx {
            let mut s = format!("UCX {}", u.library.version.as_deref().unwrap_or("?"));
            if !u.transports.is_empty() {
                s.push_str(&format!(" (transports: {})", u.transports.join(", ")));
            }
            parts.push(s);
        }
        if self.psm2.is_some() {
            parts.push("PSM2".to_owned());
        }
        if self.verbs.is_some() {
            parts.push("verbs (libibverbs)".to_owned());
        }
        if parts.is_empty() {
            "none".to_owned()
        } else {
            parts.join(", ")
        }
    }
}

/// The image's C library.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Glibc {
    pub path: String,
    /// The newest GLIBC_x.y symbol version libc.so.6 defines: what the checks
    /// compare with what host libraries need. Not always the release: glibc
    /// 2.31 defines nothing newer than GLIBC_2.30.
    pub version: Option<GlibcVersion>,
    /// The release, from the library's own version string ("... release
    /// version 2.31."), e.g. "2.31".
    pub release: Option<String>,
}

impl Glibc {
    /// "2.31 (symbols up to GLIBC_2.30)", or whichever of the two is known.
    pub fn label(&self) -> String {
        match (&self.release, &self.version) {
            (Some(r), Some(v)) if *r == v.to_string() => r.clone(),
            (Some(r), Some(v)) => format!("{r} (symbols up to GLIBC_{v})"),
            (Some(r), None) => r.clone(),
            (None, Some(v)) => format!("of unknown release, symbols up to GLIBC_{v}"),
            (None, None) => "unknown version".to_owned(),
        }
    }
}

/// The CUDA runtime library.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CudaRuntime {
    pub path: String,
    pub file: String,
    /// "12.4.127" from libcudart.so.12.4.127.
    pub version: Option<String>,
    pub major: Option<u32>,
    pub minor: Option<u32>,
}

/// Everything detected in one image.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Contents {
    pub image: String,
    pub kind: ImageKind,
    pub entries: usize,
    pub squashfs: Option<SquashfsInfo>,
    pub os: Option<OsRelease>,
    pub mpi: Vec<MpiLibrary>,
    pub pmi: Vec<PmiLibrary>,
    pub fabric: Fabric,
    pub glibc: Option<Glibc>,
    /// A musl loader, when the image has one (musl images cannot take glibc libraries).
    pub musl: Option<String>,
    pub cuda: Option<CudaRuntime>,
    /// Files that matched but could not be read (corrupt ELF, broken link, ...).
    pub notes: Vec<String>,
    /// Bytes read from the image to find all this.
    pub bytes_read: u64,
}

impl Contents {
    /// The MPI library checks use: the first in a standard library directory, else
    /// the first found.
    pub fn primary_mpi(&self) -> Option<&MpiLibrary> {
        self.mpi
            .iter()
            .find(|m| m.abi.is_some() && in_standard_dir(&m.path))
            .or_else(|| self.mpi.iter().find(|m| m.abi.is_some()))
    }

    /// The report as text.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let mut line = |k: &str, v: String| out.push_str(&format!("{k:<13} {v}\n"));
        line("Image:", format!("{} ({})", self.image, self.kind.label()));
        if let Some(s) = &self.squashfs {
            line(
                "SquashFS:",
                format!(
                    "{} bytes at offset {}, {}, {} KiB blocks, {} inodes",
                    s.bytes_used,
                    s.offset,
                    s.compression,
                    s.block_size / 1024,
                    s.inodes
                ),
            );
        }
        line("Entries:", self.entries.to_string());
        line(
            "OS:",
            self.os
                .as_ref()
                .map_or("unknown (no /etc/os-release)".to_owned(), |o| {
                    let name = o.pretty_name.clone().unwrap_or_default();
                    format!(
                        "{name} (ID={}, VERSION_ID={})",
                        o.id.as_deref().unwrap_or("?"),
                        o.version_id.as_deref().unwrap_or("?")
                    )
                }),
        );
        line(
            "glibc:",
            match (&self.glibc, &self.musl) {
                (Some(g), _) => format!("{} ({})", g.label(), g.path),
                (None, Some(m)) => format!("none (musl: {m})"),
                (None, None) => "none".to_owned(),
            },
        );
        if self.mpi.is_empty() {
            line("MPI:", "none".to_owned());
        }
        for m in &self.mpi {
            let abi = m
                .abi
                .map_or("unknown ABI".to_owned(), |a| a.label().to_owned());
            let lib = m
                .lib_version
                .map_or(String::new(), |v| format!(", library {v}"));
            line("MPI:", format!("{} [{abi}{lib}] {}", m.describe(), m.path));
        }
        if self.pmi.is_empty() {
            line("PMI:", self.no_pmi_library());
        }
        for p in &self.pmi {
            line(
                "PMI:",
                format!(
                    "{} {} ({})",
                    p.kind,
                    p.library.version.as_deref().unwrap_or(""),
                    p.library.path
                )
                .replace("  ", " "),
            );
        }
        line("Fabric:", self.fabric.describe());
        line(
            "CUDA:",
            self.cuda.as_ref().map_or("none".to_owned(), |c| {
                format!(
                    "runtime {} ({})",
                    c.version.as_deref().unwrap_or("unknown version"),
                    c.path
                )
            }),
        );
        for n in &self.notes {
            line("Note:", n.clone());
        }
        line("Read:", format!("{} bytes of the image", self.bytes_read));
        out
    }
}

fn in_standard_dir(path: &str) -> bool {
    let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
    STANDARD_LIB_DIRS.contains(&dir)
}

/// The last component of a path.
pub fn base_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

fn dir_name(path: &str) -> &str {
    match path.rsplit_once('/') {
        Some(("", _)) => "/",
        Some((d, _)) => d,
        None => "",
    }
}

/// Top-level trees that never hold the image's libraries.
fn skipped(path: &str) -> bool {
    ["/proc/", "/sys/", "/dev/"]
        .iter()
        .any(|p| path.starts_with(p))
}

/// A library name that matched, grouped by the real file it resolves to.
struct Found {
    /// Names that lead to the file, best first.
    names: Vec<String>,
}

/// Finds files whose base name `wanted` accepts, resolves them, and groups them by
/// real file (a SONAME link, the dev link and the file itself are one library).
fn find(
    image: &Image,
    wanted: impl Fn(&str) -> bool,
    notes: &mut Vec<String>,
) -> BTreeMap<String, Found> {
    let mut found: BTreeMap<String, Found> = BTreeMap::new();
    for (path, entry) in image.entries() {
        if !matches!(entry.kind, EntryKind::File | EntryKind::Symlink) || skipped(path) {
            continue;
        }
        if !wanted(base_name(path)) {
            continue;
        }
        match image.resolve_entry(path) {
            Ok((real, e)) if e.kind == EntryKind::File => {
                found
                    .entry(real)
                    .or_insert_with(|| Found { names: Vec::new() })
                    .names
                    .push(path.to_owned());
            }
            Ok(_) => {}
            Err(e) => {
                if entry.kind == EntryKind::File {
                    notes.push(e.to_string());
                }
                // A dangling dev link (libmpi.so -> alternatives) is not worth a note.
            }
        }
    }
    for f in found.values_mut() {
        // Prefer the SONAME-like name: versioned, then shortest ("libmpich.so.12"
        // over "libmpich.so" and "libmpich.so.12.2.2").
        f.names.sort_by_key(|n| {
            let versioned = split_so_name(base_name(n)).is_some_and(|(_, v)| v.is_some());
            (!versioned, !in_standard_dir(n), n.len())
        });
    }
    found
}

fn stem_of(name: &str) -> Option<&str> {
    split_so_name(name).map(|(stem, _)| stem)
}

fn file_version(file: &str) -> Option<String> {
    split_so_name(base_name(file))
        .and_then(|(_, v)| v)
        .map(|v| v.to_string())
}

/// Reads the ELF facts of a file in the image with `f`; errors become notes.
fn with_elf<'i, T>(
    image: &'i Image,
    file: &str,
    notes: &mut Vec<String>,
    f: impl FnOnce(&ElfReader<super::contents::FileReader<'i>>) -> Result<T, elf::ElfError>,
) -> Option<T> {
    let reader = match image.open_file(file) {
        Ok(r) => r,
        Err(e) => {
            notes.push(e.to_string());
            return None;
        }
    };
    let elf = ElfReader::new(reader);
    match f(&elf) {
        Ok(v) => Some(v),
        Err(e) => {
            notes.push(format!("{}: {file}: {e}", image.label()));
            None
        }
    }
}

fn detect_os(image: &Image, notes: &mut Vec<String>) -> Option<OsRelease> {
    image.resolve_entry("/etc/os-release").ok()?;
    match image.read_file("/etc/os-release", 64 << 10) {
        Ok(bytes) => Some(OsRelease::parse(&String::from_utf8_lossy(&bytes))),
        Err(e) => {
            notes.push(e.to_string());
            None
        }
    }
}

/// The MPI C libraries, those in standard directories first.
fn detect_mpi(image: &Image, notes: &mut Vec<String>) -> Vec<MpiLibrary> {
    let found = find(
        image,
        |n| matches!(stem_of(n), Some("libmpi" | "libmpich" | "libmpi_abi")),
        notes,
    );
    let mut mpi = Vec::new();
    for (file, found) in &found {
        let path = &found.names[0];
        if let Some(lib) = with_elf(image, file, notes, |elf| analyze_mpi(path, file, elf)) {
            if lib.abi.is_some() {
                mpi.push(lib);
            }
        }
    }
    mpi.sort_by_key(|m| (!in_standard_dir(&m.path), m.path.clone()));
    mpi
}

/// The PMI client libraries, PMIx with its release.
fn detect_pmi(image: &Image, notes: &mut Vec<String>) -> Vec<PmiLibrary> {
    let mut pmi = Vec::new();
    let found = find(
        image,
        |n| matches!(stem_of(n), Some("libpmi" | "libpmi2" | "libpmix")),
        notes,
    );
    for (file, found) in &found {
        let path = found.names[0].clone();
        let kind = stem_of(base_name(&path))
            .unwrap_or("libpmi")
            .trim_start_matches("lib");
        let version = if kind == "pmix" {
            with_elf(image, file, notes, |elf| {
                let raw = elf.rodata()?;
                Ok(elf::split_strings(&raw).iter().find_map(|s| {
                    let rest = s
                        .strip_prefix("OpenPMIx ")
                        .or_else(|| s.strip_prefix("PMIx "))?;
                    abi::release_version(rest).map(str::to_owned)
                }))
            })
            .flatten()
        } else {
            None
        };
        pmi.push(PmiLibrary {
            kind: kind.to_owned(),
            library: Library {
                path,
                file: file.clone(),
                version: version.or_else(|| file_version(file)),
            },
        });
    }
    pmi
}

/// The first library found for a name rule: (real file, name it was found by).
fn first(found: BTreeMap<String, Found>) -> Option<(String, String)> {
    found
        .into_iter()
        .next()
        .map(|(file, f)| (file, f.names[0].clone()))
}

/// libfabric with its release and the providers in `<libdir>/libfabric`.
fn detect_libfabric(image: &Image, fabric: &mut Fabric, notes: &mut Vec<String>) {
    if let Some((file, path)) = first(find(image, |n| stem_of(n) == Some("libfabric"), notes)) {
        let version = with_elf(image, &file, notes, |elf| {
            Ok(abi::bare_release(
                elf::split_strings(&elf.rodata()?).iter().copied(),
            ))
        })
        .flatten();
        fabric.libfabric = Some(Library {
            path,
            version: version.or_else(|| file_version(&file)),
            file,
        });
    }
    for (path, entry) in image.entries() {
        let name = base_name(path);
        if entry.kind == EntryKind::File
            && base_name(dir_name(path)) == "libfabric"
            && name.ends_with("-fi.so")
        {
            let provider = name.trim_start_matches("lib").trim_end_matches("-fi.so");
            fabric.libfabric_providers.push(provider.to_owned());
        }
    }
    fabric.libfabric_providers.sort();
    fabric.libfabric_providers.dedup();
}

/// UCX's transports: the plugins in `dir` (libuct_ib.so -> "ib").
fn ucx_transports(image: &Image, dir: &str) -> Vec<String> {
    let prefix = format!("{dir}/");
    let mut transports = Vec::new();
    for (p, e) in image.entries() {
        let Some(name) = p.strip_prefix(&prefix) else {
            continue;
        };
        // Static archives (libuct_ib.a) are not plugins.
        if e.kind == EntryKind::Dir || name.contains('/') || !name.contains(".so") {
            continue;
        }
        if let Some(t) = name
            .strip_prefix("libuct_")
            .or_else(|| name.strip_prefix("libucx_"))
            .and_then(|t| t.split(".so").next())
        {
            transports.push(t.to_owned());
        }
    }
    transports.sort();
    transports.dedup();
    transports
}

/// UCX: libucp's release, and the transports UCX loads from `<dir of libucs>/ucx`.
fn detect_ucx(image: &Image, notes: &mut Vec<String>) -> Option<Ucx> {
    let (file, path) = first(find(image, |n| stem_of(n) == Some("libucp"), notes))?;
    let version = with_elf(image, &file, notes, |elf| {
        Ok(elf::trailing_release(&elf.rodata()?))
    })
    .flatten();
    let ucs = first(find(image, |n| stem_of(n) == Some("libucs"), notes));
    let plugin_dir = ucs.map(|(f, _)| format!("{}/ucx", dir_name(&f)));
    let transports = plugin_dir
        .as_deref()
        .map(|dir| ucx_transports(image, dir))
        .unwrap_or_default();
    Some(Ucx {
        library: Library {
            path,
            version: version.or_else(|| file_version(&file)),
            file,
        },
        plugin_dir: plugin_dir.filter(|d| image.resolve(d).is_ok()),
        transports,
    })
}

/// libfabric, UCX, PSM2 and verbs.
fn detect_fabric(image: &Image, notes: &mut Vec<String>) -> Fabric {
    let mut fabric = Fabric::default();
    detect_libfabric(image, &mut fabric, notes);
    fabric.ucx = detect_ucx(image, notes);
    let versioned = |(file, path): (String, String)| Library {
        path,
        version: file_version(&file),
        file,
    };
    fabric.psm2 = first(find(image, |n| stem_of(n) == Some("libpsm2"), notes)).map(versioned);
    fabric.verbs = first(find(image, |n| stem_of(n) == Some("libibverbs"), notes)).map(versioned);
    fabric
}

impl Contents {
    /// What the PMI line says when the image has no PMI library of its own:
    /// an MPICH-family library that needs none speaks PMI itself (MPICH's
    /// simple PMI-1/PMI-2 client is built into libmpich: srun --mpi=pmi2).
    fn no_pmi_library(&self) -> String {
        let built_in = self.mpi.iter().find(|m| {
            m.implementation.map(MpiFlavour::abi).or(m.abi) == Some(MpiAbi::Mpich)
                && !m.needed.iter().any(|n| n.starts_with("libpmi"))
        });
        match built_in {
            Some(m) => format!(
                "built into {} (PMI-1/PMI-2 client: srun --mpi=pmi2)",
                m.soname.as_deref().unwrap_or(&m.file)
            ),
            None => "none".to_owned(),
        }
    }
}

/// glibc: the libc.so.6 in a standard directory, else any; its version from
/// its version definitions, else its banner.
fn detect_glibc(image: &Image, notes: &mut Vec<String>) -> Option<Glibc> {
    let libc = find(image, |n| n == "libc.so.6", notes);
    let (file, f) = libc
        .iter()
        .find(|(_, f)| in_standard_dir(&f.names[0]))
        .or_else(|| libc.iter().next())?;
    let found = with_elf(image, file, notes, |elf| {
        let defined = elf.info()?.max_glibc_defined();
        // The banner: "GNU C Library (Debian GLIBC 2.31-13) stable release
        // version 2.31." (also the version when the symbols are stripped).
        let rodata = elf.rodata()?;
        let strings = elf::split_strings(&rodata);
        let release = strings.iter().find_map(|s| {
            let rest = s
                .split(" version ")
                .nth(1)
                .filter(|_| s.contains("GNU C Library"))?;
            abi::release_version(rest).map(str::to_owned)
        });
        let version = defined.or_else(|| release.as_deref().and_then(GlibcVersion::parse));
        Ok((version, release))
    });
    let (version, release) = found.unwrap_or((None, None));
    Some(Glibc {
        path: f.names[0].clone(),
        version,
        release,
    })
}

/// The CUDA runtime: the version is in the real file's name.
fn detect_cuda(image: &Image, notes: &mut Vec<String>) -> Option<CudaRuntime> {
    let (file, path) = first(find(image, |n| stem_of(n) == Some("libcudart"), notes))?;
    let v = split_so_name(base_name(&file)).and_then(|(_, v)| v);
    Some(CudaRuntime {
        version: v.map(|v| v.to_string()),
        major: v.map(|v| v.major),
        minor: v.and_then(|v| v.minor),
        path,
        file,
    })
}

/// Detects everything this module knows about in `image`.
pub fn detect(image: &Image) -> Result<Contents, ImageError> {
    let mut notes = Vec::new();
    let os = detect_os(image, &mut notes);
    let mpi = detect_mpi(image, &mut notes);
    let pmi = detect_pmi(image, &mut notes);
    let fabric = detect_fabric(image, &mut notes);
    let glibc = detect_glibc(image, &mut notes);
    let musl = image
        .entries()
        .find(|(p, _)| base_name(p).starts_with("ld-musl-") && !skipped(p))
        .map(|(p, _)| p.to_owned());
    let cuda = detect_cuda(image, &mut notes);
    Ok(Contents {
        image: image.label().to_owned(),
        kind: image.kind(),
        entries: image.len(),
        squashfs: image.squashfs().cloned(),
        os,
        mpi,
        pmi,
        fabric,
        glibc,
        musl,
        cuda,
        notes,
        bytes_read: image.bytes_read(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glibc_shows_its_release_and_checks_its_symbol_versions() {
        // Debian 11's glibc 2.31 defines nothing newer than GLIBC_2.30.
        let g = Glibc {
            path: "/lib/x86_64-linux-gnu/libc.so.6".into(),
            version: GlibcVersion::parse("2.30"),
            release: Some("2.31".into()),
        };
        assert_eq!(g.label(), "2.31 (symbols up to GLIBC_2.30)");
        // The host's own libc in a directory image: the release from its
        // version string, as `ldd --version` says it.
        let host = std::path::Path::new("/lib/x86_64-linux-gnu/libc.so.6");
        if !host.is_file() {
            eprintln!("SKIPPED: no {}", host.display());
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let lib = dir.path().join("lib/x86_64-linux-gnu");
        std::fs::create_dir_all(&lib).unwrap();
        std::fs::copy(host, lib.join("libc.so.6")).unwrap();
        let contents = detect(&Image::open(dir.path()).unwrap()).unwrap();
        let found = contents.glibc.expect("libc.so.6 found");
        let ldd = std::process::Command::new("ldd")
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let release = found.release.clone().expect("the version string read");
        assert!(
            ldd.lines().next().is_some_and(|l| l.ends_with(&release)),
            "{release} vs {ldd}"
        );
        assert!(found.version.is_some(), "symbol versions read");
    }

    #[test]
    fn os_release_parses_quoted_values() {
        let os = OsRelease::parse(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian\"\nVERSION_ID=\"12\"\nID=debian\n",
        );
        assert_eq!(os.id.as_deref(), Some("debian"));
        assert_eq!(os.version_id.as_deref(), Some("12"));
        assert_eq!(
            os.pretty_name.as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
    }
}
