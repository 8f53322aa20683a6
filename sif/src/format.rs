//! The SIF on-disk format: sizes, codes and the typed values stored in it.
//!
//! Everything here follows the reference implementation (`github.com/sylabs/sif/v2`,
//! `pkg/sif/sif.go`, `arch.go`, `descriptor.go`): the Go structures are written with
//! `encoding/binary` in little-endian order and *without padding*, which gives the
//! sizes below (a 128-byte global header, 585-byte descriptors).
//!
//! Every enumerated field keeps unknown codes (`Unknown(code)`) instead of failing:
//! the reference tool prints such values as "Unknown", and a newer writer may add
//! codes that an older reader does not know.

use std::fmt;

/// Size of the launch script field at the start of the file (`#!/usr/bin/env ...`).
pub const LAUNCH_SCRIPT_LEN: usize = 32;
/// Size of the magic field.
pub const MAGIC_LEN: usize = 10;
/// Size of the version field ("01" + NUL).
pub const VERSION_LEN: usize = 3;
/// Size of an architecture code ("02" + NUL).
pub const ARCH_LEN: usize = 3;
/// Size of the image ID (a UUID).
pub const ID_LEN: usize = 16;
/// Size of the global header: 32 + 10 + 3 + 3 + 16 + 8 * 8.
pub const HEADER_LEN: usize = 128;

/// Size of a descriptor name.
pub const NAME_LEN: usize = 128;
/// Size of the type-specific ("extra") part of a descriptor.
pub const EXTRA_LEN: usize = 384;
/// Size of the signing entity field inside a signature's extra data.
pub const ENTITY_LEN: usize = 256;
/// Bytes of the entity that hold the signing key fingerprint (what siftool prints).
pub const FINGERPRINT_LEN: usize = 20;
/// Size of one descriptor: i32 type, bool used, 3 x u32, 7 x i64, name, extra.
pub const DESCRIPTOR_LEN: usize = 4 + 1 + 3 * 4 + 7 * 8 + NAME_LEN + EXTRA_LEN;

/// The magic, NUL included, as the reference writes it.
pub const MAGIC: [u8; MAGIC_LEN] = *b"SIF_MAGIC\0";
/// The only specification version there is ("01"), NUL included.
pub const VERSION: [u8; VERSION_LEN] = *b"01\0";
/// The launch script Singularity/Apptainer write, which makes an image executable.
pub const DEFAULT_LAUNCH_SCRIPT: &str = "#!/usr/bin/env run-singularity\n";

/// Group IDs and group links carry these bits; the low bits are the number.
pub const GROUP_MASK: u32 = 0xf000_0000;
/// Descriptor capacity the reference gives a new image.
pub const DEFAULT_DESCRIPTOR_CAPACITY: usize = 48;
/// Where the reference puts the descriptor table (right after the header page).
pub const DEFAULT_DESCRIPTORS_OFFSET: u64 = 4096;
/// Alignment the reference gives partitions, so that they can be mounted in place.
pub const PARTITION_ALIGNMENT: u64 = 4096;
/// The group objects are put in unless told otherwise.
pub const DEFAULT_GROUP: u32 = 1;

/// Unix time of Go's zero `time.Time` (0001-01-01 00:00:00 UTC).
///
/// Deterministic images store it for "no time"; siftool then omits the time.
pub const ZERO_TIME: i64 = -62_135_596_800;

/// Declares a C-like enum over an `i32` code, with an `Unknown` variant that keeps
/// codes this reader does not know, and the text the reference prints for each.
macro_rules! code_enum {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal => $text:literal, )+
        }
        unknown => $unknown:literal
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A code this reader does not know (kept so it can be shown and rewritten).
            Unknown(i32),
        }

        impl $name {
            /// Every known value, in code order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value for a code read from a file.
            pub fn from_code(code: i32) -> Self {
                match code {
                    $( $code => Self::$variant, )+
                    other => Self::Unknown(other),
                }
            }

            /// The code stored in the file.
            pub fn code(self) -> i32 {
                match self {
                    $( Self::$variant => $code, )+
                    Self::Unknown(code) => code,
                }
            }

            /// The text the reference tool (siftool) prints for this value.
            pub fn name(self) -> &'static str {
                match self {
                    $( Self::$variant => $text, )+
                    Self::Unknown(_) => $unknown,
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

code_enum! {
    /// What a data object holds.
    DataType {
        /// The definition file the image was built from.
        Deffile = 0x4001 => "Def.FILE",
        /// Environment variables.
        EnvVar = 0x4002 => "Env.Vars",
        /// JSON labels.
        Labels = 0x4003 => "JSON.Labels",
        /// A file system (see [`FsType`], [`PartType`]).
        Partition = 0x4004 => "FS",
        /// A signature over other objects.
        Signature = 0x4005 => "Signature",
        /// Generic JSON metadata.
        GenericJson = 0x4006 => "JSON.Generic",
        /// Raw data.
        Generic = 0x4007 => "Generic/Raw",
        /// A cryptographic message (for example an encryption key).
        CryptoMessage = 0x4008 => "Cryptographic Message",
        /// A software bill of materials.
        Sbom = 0x4009 => "SBOM",
        /// The root index of an OCI-SIF image.
        OciRootIndex = 0x400a => "OCI.RootIndex",
        /// A blob of an OCI-SIF image.
        OciBlob = 0x400b => "OCI.Blob",
    }
    unknown => "Unknown"
}

code_enum! {
    /// The file system of a partition.
    FsType {
        /// SquashFS: what Singularity/Apptainer run.
        Squashfs = 1 => "Squashfs",
        /// ext3 (deprecated, writable).
        Ext3 = 2 => "Ext3",
        /// Immutable object archive.
        ImmutableObject = 3 => "Archive",
        /// Raw data.
        Raw = 4 => "Raw",
        /// Encrypted SquashFS.
        EncryptedSquashfs = 5 => "Encrypted squashfs",
    }
    unknown => "Unknown"
}

code_enum! {
    /// The role of a partition.
    PartType {
        /// Hosts an operating system.
        System = 1 => "System",
        /// Hosts the primary operating system: the one that runs.
        PrimarySystem = 2 => "*System",
        /// Hosts data only.
        Data = 3 => "Data",
        /// Hosts an overlay.
        Overlay = 4 => "Overlay",
    }
    unknown => "Unknown"
}

code_enum! {
    /// The hash function of a signature (printed as Go's `crypto.Hash` names).
    HashType {
        Sha256 = 1 => "SHA-256",
        Sha384 = 2 => "SHA-384",
        Sha512 = 3 => "SHA-512",
        Blake2s = 4 => "BLAKE2s-256",
        Blake2b = 5 => "BLAKE2b-256",
    }
    unknown => "Unknown"
}

code_enum! {
    /// The encoding of a cryptographic message.
    FormatType {
        OpenPgp = 1 => "OpenPGP",
        Pem = 2 => "PEM",
    }
    unknown => "Unknown"
}

code_enum! {
    /// The kind of a cryptographic message.
    MessageType {
        /// OpenPGP clear signature.
        ClearSignature = 0x100 => "Clear Signature",
        /// PEM RSA-OAEP (an encrypted key).
        RsaOaep = 0x200 => "RSA-OAEP",
    }
    unknown => "Unknown"
}

code_enum! {
    /// The format of a software bill of materials.
    SbomFormat {
        CycloneDxJson = 1 => "cyclonedx-json",
        CycloneDxXml = 2 => "cyclonedx-xml",
        GitHubJson = 3 => "github-json",
        SpdxJson = 4 => "spdx-json",
        SpdxRdf = 5 => "spdx-rdf",
        SpdxTagValue = 6 => "spdx-tag-value",
        SpdxYaml = 7 => "spdx-yaml",
        SyftJson = 8 => "syft-json",
    }
    unknown => "unknown"
}

/// A CPU architecture, stored as a two-digit code and a NUL ("02\0" is amd64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Arch {
    X86,
    Amd64,
    Arm,
    Arm64,
    Ppc64,
    Ppc64le,
    Mips,
    Mipsle,
    Mips64,
    Mips64le,
    S390x,
    Riscv64,
    /// "00" (what images without a primary partition carry) or anything unknown.
    Unknown([u8; ARCH_LEN]),
}

/// (architecture, code in the file, Go's name for it).
const ARCH_TABLE: [(Arch, [u8; ARCH_LEN], &str); 12] = [
    (Arch::X86, *b"01\0", "386"),
    (Arch::Amd64, *b"02\0", "amd64"),
    (Arch::Arm, *b"03\0", "arm"),
    (Arch::Arm64, *b"04\0", "arm64"),
    (Arch::Ppc64, *b"05\0", "ppc64"),
    (Arch::Ppc64le, *b"06\0", "ppc64le"),
    (Arch::Mips, *b"07\0", "mips"),
    (Arch::Mipsle, *b"08\0", "mipsle"),
    (Arch::Mips64, *b"09\0", "mips64"),
    (Arch::Mips64le, *b"10\0", "mips64le"),
    (Arch::S390x, *b"11\0", "s390x"),
    (Arch::Riscv64, *b"12\0", "riscv64"),
];

impl Arch {
    /// The code the reference writes when no primary partition sets the architecture.
    pub const UNKNOWN_CODE: [u8; ARCH_LEN] = *b"00\0";

    /// The architecture for the 3 bytes stored in a header or partition.
    pub fn from_code(code: [u8; ARCH_LEN]) -> Self {
        ARCH_TABLE
            .iter()
            .find(|(_, c, _)| *c == code)
            .map_or(Arch::Unknown(code), |(arch, _, _)| *arch)
    }

    /// The 3 bytes stored in the file.
    pub fn code(self) -> [u8; ARCH_LEN] {
        match self {
            Arch::Unknown(code) => code,
            known => ARCH_TABLE
                .iter()
                .find(|(a, _, _)| *a == known)
                .map_or(Self::UNKNOWN_CODE, |(_, code, _)| *code),
        }
    }

    /// Go's name for the architecture ("amd64"), or "unknown" like the reference.
    pub fn go_name(self) -> &'static str {
        ARCH_TABLE
            .iter()
            .find(|(a, _, _)| *a == self)
            .map_or("unknown", |(_, _, name)| name)
    }

    /// The architecture for Go's name ("amd64", "arm64", "386", ...).
    pub fn from_go_name(name: &str) -> Option<Self> {
        ARCH_TABLE
            .iter()
            .find(|(_, _, n)| *n == name)
            .map(|(arch, _, _)| *arch)
    }

    /// The architecture this program was built for, if SIF has a code for it.
    pub fn host() -> Option<Self> {
        let go_name = match std::env::consts::ARCH {
            "x86" => "386",
            "x86_64" => "amd64",
            "arm" => "arm",
            "aarch64" => "arm64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            "powerpc64" => "ppc64",
            "mips" if cfg!(target_endian = "little") => "mipsle",
            "mips" => "mips",
            "mips64" if cfg!(target_endian = "little") => "mips64le",
            "mips64" => "mips64",
            "s390x" => "s390x",
            "riscv64" => "riscv64",
            _ => return None,
        };
        Self::from_go_name(go_name)
    }
}

impl fmt::Display for Arch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.go_name())
    }
}

/// The image ID: a UUID, kept as its 16 bytes (RFC 4122 byte order, as Go's `uuid.UUID`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct ImageId(pub [u8; ID_LEN]);

impl ImageId {
    /// The all-zero ID that deterministic images carry (siftool omits it).
    pub const NIL: ImageId = ImageId([0; ID_LEN]);

    /// Whether this is the nil ID.
    pub fn is_nil(self) -> bool {
        self == Self::NIL
    }

    /// A random (version 4) UUID.
    pub fn random() -> Result<Self, getrandom::Error> {
        let mut bytes = [0u8; ID_LEN];
        getrandom::fill(&mut bytes)?;
        bytes[6] = (bytes[6] & 0x0f) | 0x40; // version 4
        bytes[8] = (bytes[8] & 0x3f) | 0x80; // RFC 4122 variant
        Ok(ImageId(bytes))
    }

    /// Parses the canonical text form (`8-4-4-4-12` hexadecimal digits).
    pub fn parse(text: &str) -> Option<Self> {
        let groups: Vec<&str> = text.split('-').collect();
        let lengths = [8, 4, 4, 4, 12];
        if groups.len() != lengths.len() || groups.iter().zip(lengths).any(|(g, n)| g.len() != n) {
            return None;
        }
        let hex: String = groups.concat();
        let mut bytes = [0u8; ID_LEN];
        for (i, byte) in bytes.iter_mut().enumerate() {
            let pair = hex.get(2 * i..2 * i + 2)?;
            *byte = u8::from_str_radix(pair, 16).ok()?;
        }
        Some(ImageId(bytes))
    }
}

impl fmt::Display for ImageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                f.write_str("-")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

/// What a data object is linked to (signatures link to what they sign).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Link {
    None,
    /// Linked to the object with this ID.
    Object(u32),
    /// Linked to the object group with this ID.
    Group(u32),
}

impl Link {
    /// Decodes the raw link field the way the reference does: the low bits are the
    /// ID (0 is "no link"), and all mask bits set make it a group link.
    pub fn from_raw(raw: u32) -> Self {
        let id = raw & !GROUP_MASK;
        if id == 0 {
            Link::None
        } else if raw & GROUP_MASK == GROUP_MASK {
            Link::Group(id)
        } else {
            Link::Object(id)
        }
    }

    /// The raw link field.
    pub fn to_raw(self) -> u32 {
        match self {
            Link::None => 0,
            Link::Object(id) => id,
            Link::Group(id) => id | GROUP_MASK,
        }
    }
}

/// Decodes a raw group field: the group number, or None when the object has no group.
pub fn group_from_raw(raw: u32) -> Option<u32> {
    match raw & !GROUP_MASK {
        0 => None,
        id => Some(id),
    }
}

/// Encodes a group number (None: no group) the way the reference stores it.
pub fn group_to_raw(group: Option<u32>) -> u32 {
    group.unwrap_or(0) | GROUP_MASK
}

/// The type-specific facts stored in a descriptor's extra field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Metadata {
    /// Types with no extra facts (deffile, labels, JSON, generic, ...).
    None,
    Partition {
        fs_type: FsType,
        part_type: PartType,
        arch: Arch,
    },
    Signature {
        hash_type: HashType,
        /// Fingerprint of the signing key; None when the entity field is empty.
        fingerprint: Option<[u8; FINGERPRINT_LEN]>,
    },
    CryptoMessage {
        format: FormatType,
        message: MessageType,
    },
    Sbom {
        format: SbomFormat,
    },
    /// OCI root index or blob: the digest text ("sha256:...").
    OciBlob {
        digest: String,
    },
}

/// Why metadata cannot be stored in a descriptor.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetadataError {
    #[error("OCI digest is {len} bytes; a descriptor holds at most {EXTRA_LEN} (and no NUL byte)")]
    DigestTooLong { len: usize },
}

impl Metadata {
    /// Decodes the extra field of a descriptor of type `data_type`.
    ///
    /// The extra field has a fixed size, so this cannot fail: unknown codes are kept.
    pub fn decode(data_type: DataType, extra: &[u8; EXTRA_LEN]) -> Self {
        let mut fields = Fields::new(extra);
        match data_type {
            DataType::Partition => Metadata::Partition {
                fs_type: FsType::from_code(fields.i32()),
                part_type: PartType::from_code(fields.i32()),
                arch: Arch::from_code(fields.array()),
            },
            DataType::Signature => {
                let hash_type = HashType::from_code(fields.i32());
                let fingerprint: [u8; FINGERPRINT_LEN] = fields.array();
                Metadata::Signature {
                    hash_type,
                    fingerprint: (fingerprint != [0; FINGERPRINT_LEN]).then_some(fingerprint),
                }
            }
            DataType::CryptoMessage => Metadata::CryptoMessage {
                format: FormatType::from_code(fields.i32()),
                message: MessageType::from_code(fields.i32()),
            },
            DataType::Sbom => Metadata::Sbom {
                format: SbomFormat::from_code(fields.i32()),
            },
            DataType::OciRootIndex | DataType::OciBlob => {
                // The newest reader cuts the digest at the first NUL.
                let end = extra.iter().position(|&b| b == 0).unwrap_or(EXTRA_LEN);
                Metadata::OciBlob {
                    digest: String::from_utf8_lossy(&extra[..end]).into_owned(),
                }
            }
            _ => Metadata::None,
        }
    }

    /// Encodes these facts into an extra field (zero-filled like the reference's).
    pub fn encode(&self) -> Result<[u8; EXTRA_LEN], MetadataError> {
        let mut extra = [0u8; EXTRA_LEN];
        let mut out: Vec<u8> = Vec::with_capacity(EXTRA_LEN);
        match self {
            Metadata::None => {}
            Metadata::Partition {
                fs_type,
                part_type,
                arch,
            } => {
                out.extend_from_slice(&fs_type.code().to_le_bytes());
                out.extend_from_slice(&part_type.code().to_le_bytes());
                out.extend_from_slice(&arch.code());
            }
            Metadata::Signature {
                hash_type,
                fingerprint,
            } => {
                out.extend_from_slice(&hash_type.code().to_le_bytes());
                out.extend_from_slice(&fingerprint.unwrap_or([0; FINGERPRINT_LEN]));
            }
            Metadata::CryptoMessage { format, message } => {
                out.extend_from_slice(&format.code().to_le_bytes());
                out.extend_from_slice(&message.code().to_le_bytes());
            }
            Metadata::Sbom { format } => out.extend_from_slice(&format.code().to_le_bytes()),
            Metadata::OciBlob { digest } => {
                if digest.len() > EXTRA_LEN || digest.as_bytes().contains(&0) {
                    return Err(MetadataError::DigestTooLong { len: digest.len() });
                }
                out.extend_from_slice(digest.as_bytes());
            }
        }
        extra[..out.len()].copy_from_slice(&out);
        Ok(extra)
    }
}

/// Reads little-endian fields in order from a fixed-size record.
///
/// Records are read whole (header, descriptor) before decoding, so a field past the
/// end can only be a bug in this module; it then reads as zeros rather than panicking.
pub(crate) struct Fields<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Fields<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Fields { bytes, pos: 0 }
    }

    pub(crate) fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let end = self.pos.saturating_add(N);
        if let Some(src) = self.bytes.get(self.pos..end) {
            out.copy_from_slice(src);
        }
        self.pos = end;
        out
    }

    pub(crate) fn u8(&mut self) -> u8 {
        self.array::<1>()[0]
    }

    pub(crate) fn i32(&mut self) -> i32 {
        i32::from_le_bytes(self.array())
    }

    pub(crate) fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    pub(crate) fn i64(&mut self) -> i64 {
        i64::from_le_bytes(self.array())
    }
}

/// Text of a NUL-padded field, trailing NULs removed (like the reference's
/// `TrimRight(..., "\x00")`); invalid UTF-8 is shown with replacement characters.
pub(crate) fn trim_nul(bytes: &[u8]) -> String {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_match_the_reference_layout() {
        assert_eq!(HEADER_LEN, 32 + 10 + 3 + 3 + 16 + 8 * 8);
        assert_eq!(DESCRIPTOR_LEN, 585);
        // 48 descriptors: the 27 KiB table and 32176 data offset siftool shows.
        assert_eq!(
            DEFAULT_DESCRIPTORS_OFFSET as usize + DEFAULT_DESCRIPTOR_CAPACITY * DESCRIPTOR_LEN,
            32176
        );
    }

    #[test]
    fn codes_round_trip() {
        for t in DataType::ALL {
            assert_eq!(DataType::from_code(t.code()), *t);
        }
        assert_eq!(DataType::from_code(0x4001), DataType::Deffile);
        assert_eq!(DataType::from_code(0x400b).name(), "OCI.Blob");
        assert_eq!(DataType::from_code(7).name(), "Unknown");
        assert_eq!(SbomFormat::from_code(99).name(), "unknown");
        for (arch, code, name) in ARCH_TABLE {
            assert_eq!(Arch::from_code(code), arch);
            assert_eq!(arch.code(), code);
            assert_eq!(Arch::from_go_name(name), Some(arch));
        }
        assert_eq!(Arch::from_code(*b"00\0").go_name(), "unknown");
        assert_eq!(Arch::Unknown(*b"99\0").code(), *b"99\0");
    }

    #[test]
    fn links_and_groups_follow_the_mask() {
        assert_eq!(Link::from_raw(0), Link::None);
        assert_eq!(Link::from_raw(GROUP_MASK), Link::None);
        assert_eq!(Link::from_raw(2), Link::Object(2));
        assert_eq!(Link::from_raw(0xf000_0001), Link::Group(1));
        // Only all four mask bits make a group link (as in the reference).
        assert_eq!(Link::from_raw(0x1000_0003), Link::Object(3));
        for link in [Link::None, Link::Object(5), Link::Group(7)] {
            assert_eq!(Link::from_raw(link.to_raw()), link);
        }
        assert_eq!(group_from_raw(0xf000_0000), None);
        assert_eq!(group_from_raw(0xf000_0002), Some(2));
        assert_eq!(group_to_raw(Some(1)), 0xf000_0001);
        assert_eq!(group_to_raw(None), 0xf000_0000);
    }

    #[test]
    fn image_ids_print_and_parse() {
        let id = ImageId::parse("3fa802cc-358b-45e3-bcc0-69dc7a45f9f8").expect("valid UUID");
        assert_eq!(id.to_string(), "3fa802cc-358b-45e3-bcc0-69dc7a45f9f8");
        assert_eq!(
            ImageId::NIL.to_string(),
            "00000000-0000-0000-0000-000000000000"
        );
        assert!(ImageId::parse("3fa802cc358b45e3bcc069dc7a45f9f8").is_none());
        assert!(ImageId::parse("3fa802cc-358b-45e3-bcc0-69dc7a45f9fg").is_none());
        let random = ImageId::random().expect("randomness");
        assert_eq!(random.0[6] >> 4, 4);
        assert_eq!(ImageId::parse(&random.to_string()), Some(random));
    }

    #[test]
    fn metadata_round_trips() {
        let cases = [
            (DataType::Deffile, Metadata::None),
            (
                DataType::Partition,
                Metadata::Partition {
                    fs_type: FsType::Squashfs,
                    part_type: PartType::PrimarySystem,
                    arch: Arch::Amd64,
                },
            ),
            (
                DataType::Signature,
                Metadata::Signature {
                    hash_type: HashType::Sha384,
                    fingerprint: Some([0xab; FINGERPRINT_LEN]),
                },
            ),
            (
                DataType::Signature,
                Metadata::Signature {
                    hash_type: HashType::Sha256,
                    fingerprint: None,
                },
            ),
            (
                DataType::CryptoMessage,
                Metadata::CryptoMessage {
                    format: FormatType::Pem,
                    message: MessageType::RsaOaep,
                },
            ),
            (
                DataType::Sbom,
                Metadata::Sbom {
                    format: SbomFormat::SpdxJson,
                },
            ),
            (
                DataType::OciBlob,
                Metadata::OciBlob {
                    digest: "sha256:abc".into(),
                },
            ),
        ];
        for (data_type, metadata) in cases {
            let extra = metadata.encode().expect("encodable");
            assert_eq!(Metadata::decode(data_type, &extra), metadata);
        }
        let too_long = Metadata::OciBlob {
            digest: "x".repeat(EXTRA_LEN + 1),
        };
        assert!(too_long.encode().is_err());
    }

    #[test]
    fn trim_nul_keeps_inner_bytes() {
        assert_eq!(trim_nul(b"01\0"), "01");
        assert_eq!(trim_nul(b"\0\0"), "");
        assert_eq!(trim_nul(b"a\0b\0"), "a\0b");
    }
}
