//! Decompression with a hard output cap: every method writes into a buffer the
//! caller sized (the most a block may hold, plus one byte) and never past it. A
//! block whose output reaches the extra byte is refused as too large; the
//! decompressor stops there instead of producing the rest.

use std::fmt;

/// The compression methods hybrun reads (superblock ids 1, 4, 5 and 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Gzip,
    Xz,
    Lz4,
    Zstd,
}

impl Compression {
    /// The method with superblock id `id`; Err names an unsupported one.
    pub fn from_id(id: u16) -> Result<Compression, String> {
        match id {
            1 => Ok(Compression::Gzip),
            4 => Ok(Compression::Xz),
            5 => Ok(Compression::Lz4),
            6 => Ok(Compression::Zstd),
            2 => Err("lzma".into()),
            3 => Err("lzo".into()),
            other => Err(format!("unknown compression {other}")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Xz => "xz",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// Memory the xz decoder may use (its dictionary): mksquashfs's dictionary is at
/// most the block size (1 MiB), the kernel refuses larger ones.
const XZ_MEMLIMIT: u64 = 16 << 20;

/// A decompressor for one method, reused across blocks.
pub struct Decompressor {
    kind: Compression,
    zlib: Option<flate2::Decompress>,
    zstd: Option<zstd::bulk::Decompressor<'static>>,
}

/// Why a block did not decompress.
#[derive(Debug)]
pub enum Failure {
    /// More output than the block may hold.
    TooLarge,
    /// Not valid compressed data (the decoder's words).
    Invalid(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::TooLarge => f.write_str("decompresses to more than the block may hold"),
            Failure::Invalid(why) => write!(f, "does not decompress ({why})"),
        }
    }
}

impl Decompressor {
    pub fn new(kind: Compression) -> Decompressor {
        Decompressor {
            kind,
            zlib: None,
            zstd: None,
        }
    }

    /// Decompresses `input` into `out` and returns the bytes written, at most
    /// `out.len() - 1`: output that fills `out` is refused as too large.
    pub fn decompress(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize, Failure> {
        let n = match self.kind {
            Compression::Gzip => self.gzip(input, out)?,
            Compression::Xz => xz(input, out)?,
            Compression::Lz4 => match lz4_flex::block::decompress_into(input, out) {
                Ok(n) => n,
                Err(lz4_flex::block::DecompressError::OutputTooSmall { .. }) => {
                    return Err(Failure::TooLarge);
                }
                Err(e) => return Err(Failure::Invalid(e.to_string())),
            },
            Compression::Zstd => self.zstd(input, out)?,
        };
        if n >= out.len() {
            return Err(Failure::TooLarge);
        }
        Ok(n)
    }

    fn gzip(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize, Failure> {
        let z = self
            .zlib
            .get_or_insert_with(|| flate2::Decompress::new(true));
        z.reset(true);
        let status = z
            .decompress(input, out, flate2::FlushDecompress::Finish)
            .map_err(|e| Failure::Invalid(e.to_string()))?;
        let n = usize::try_from(z.total_out()).unwrap_or(usize::MAX);
        match status {
            flate2::Status::StreamEnd => Ok(n),
            _ if n >= out.len() => Err(Failure::TooLarge),
            _ => Err(Failure::Invalid("the compressed data ends early".into())),
        }
    }

    fn zstd(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize, Failure> {
        if self.zstd.is_none() {
            let d = zstd::bulk::Decompressor::new().map_err(|e| Failure::Invalid(e.to_string()))?;
            self.zstd = Some(d);
        }
        let Some(d) = self.zstd.as_mut() else {
            return Err(Failure::Invalid("no zstd decompressor".into()));
        };
        // One pass into `out`: zstd refuses (dstSize_tooSmall) rather than write
        // past it, and allocates no window for a single-pass decode.
        d.decompress_to_buffer(input, out).map_err(|e| {
            let text = e.to_string();
            if text.contains("too small") {
                Failure::TooLarge
            } else {
                Failure::Invalid(text)
            }
        })
    }
}

/// xz: a fresh stream decoder per block (its state holds the block's dictionary),
/// under XZ_MEMLIMIT.
fn xz(input: &[u8], out: &mut [u8]) -> Result<usize, Failure> {
    use liblzma::stream::{Action, Status, Stream};
    let mut s =
        Stream::new_stream_decoder(XZ_MEMLIMIT, 0).map_err(|e| Failure::Invalid(e.to_string()))?;
    loop {
        let (read, written) = (s.total_in(), s.total_out());
        let (Ok(r), Ok(w)) = (usize::try_from(read), usize::try_from(written)) else {
            return Err(Failure::TooLarge);
        };
        if w >= out.len() {
            return Err(Failure::TooLarge);
        }
        let status = s
            .process(&input[r.min(input.len())..], &mut out[w..], Action::Finish)
            .map_err(|e| Failure::Invalid(e.to_string()))?;
        if status == Status::StreamEnd {
            return usize::try_from(s.total_out()).map_err(|_| Failure::TooLarge);
        }
        if s.total_in() == read && s.total_out() == written {
            return Err(Failure::Invalid("the compressed data ends early".into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// `data` compressed by each method, as SquashFS stores it.
    fn compressed(kind: Compression, data: &[u8]) -> Vec<u8> {
        match kind {
            Compression::Gzip => {
                let mut z =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
                z.write_all(data).unwrap();
                z.finish().unwrap()
            }
            Compression::Xz => {
                let mut out = Vec::with_capacity(data.len() + 1024);
                let mut s =
                    liblzma::stream::Stream::new_easy_encoder(6, liblzma::stream::Check::Crc32)
                        .unwrap();
                s.process_vec(data, &mut out, liblzma::stream::Action::Finish)
                    .unwrap();
                out
            }
            Compression::Lz4 => lz4_flex::block::compress(data),
            Compression::Zstd => zstd::bulk::compress(data, 19).unwrap(),
        }
    }

    #[test]
    fn output_is_capped_at_the_buffer() {
        for kind in [
            Compression::Gzip,
            Compression::Xz,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let mut d = Decompressor::new(kind);
            let exact = compressed(kind, &[7u8; 8192]);
            let mut out = vec![0u8; 8193];
            assert_eq!(d.decompress(&exact, &mut out).unwrap(), 8192, "{kind:?}");
            assert!(out[..8192].iter().all(|b| *b == 7));
            // One byte more than a metadata block may hold; and a large bomb.
            for n in [8193, 1 << 20] {
                let bomb = compressed(kind, &vec![0u8; n]);
                let mut out = vec![0u8; 8193];
                assert!(
                    matches!(d.decompress(&bomb, &mut out), Err(Failure::TooLarge)),
                    "{kind:?} {n}"
                );
            }
            let cut = &exact[..exact.len() / 2];
            assert!(d.decompress(cut, &mut out).is_err(), "{kind:?} truncated");
            let empty = d.decompress(&[], &mut out);
            assert!(!matches!(empty, Ok(n) if n > 0), "{kind:?} empty");
        }
    }
}
