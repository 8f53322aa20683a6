//! Property test of the SIF reader (the stable-Rust counterpart of the cargo-fuzz
//! target in `sif/fuzz`): many thousands of deterministic mutations of real
//! and generated images (bit flips, truncation at every offset of the header and
//! descriptor table, hostile field values, huge sizes, random files) must each
//! give either a typed error that names the file or a parse that is consistent
//! with the file, and never a panic.
//!
//! `HYBRUN_SIF_ROBUSTNESS_ROUNDS=N` multiplies the number of random cases (default 1).

mod common;

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use hybrun_sif::format::{DESCRIPTOR_LEN, HEADER_LEN, MAGIC, VERSION};
use hybrun_sif::{SifError, SifImage, display};

const LABEL: &str = "mutant.sif";

/// SplitMix64: small, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Parses `bytes` and checks the outcome; panics (with `case`) on a violation.
/// Returns whether the bytes parsed as an image.
fn check(bytes: &[u8], case: &str) -> bool {
    let outcome = catch_unwind(AssertUnwindSafe(|| check_inner(bytes)));
    match outcome {
        Ok(Ok(parsed)) => parsed,
        Ok(Err(violation)) => panic!("{case}: {violation}"),
        Err(_) => panic!("{case}: the reader panicked"),
    }
}

fn check_inner(bytes: &[u8]) -> Result<bool, String> {
    let mut image = match SifImage::from_reader(Cursor::new(bytes), LABEL) {
        Ok(image) => image,
        Err(e) => {
            let message = e.to_string();
            return if message.starts_with(LABEL) {
                Ok(false)
            } else {
                Err(format!("error does not name the file: {message}"))
            };
        }
    };
    let len = bytes.len() as i128;
    let h = image.header().clone();
    if i128::from(h.descriptors_total - h.descriptors_free) != image.descriptors().len() as i128 {
        return Err("used count differs from the header".into());
    }
    let mut ids = std::collections::HashSet::new();
    for d in image.descriptors() {
        if d.id == 0 || !ids.insert(d.id) {
            return Err(format!("bad or duplicate object id {}", d.id));
        }
        if d.offset < 0 || d.size < 0 || i128::from(d.offset) + i128::from(d.size) > len {
            return Err(format!("object {} lies outside the file", d.id));
        }
    }
    // Everything that prints or reads must work on whatever parsed.
    let _ = display::inspect_text(&h, image.descriptors());
    let _ = display::inspect_json(LABEL, &h, image.descriptors());
    for d in image.descriptors().to_vec() {
        match image.read_object(d.id, 1 << 16) {
            Ok(data) if data.len() as i64 == d.size => {}
            Ok(data) => return Err(format!("object {} read {} bytes", d.id, data.len())),
            Err(SifError::ObjectTooLarge { .. }) if d.size > 1 << 16 => {}
            Err(e) => return Err(format!("object {} unreadable: {e}", d.id)),
        }
    }
    Ok(true)
}

/// The images to mutate: the project's own, plus the reference corpus when present.
fn seeds() -> Vec<(String, Vec<u8>)> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut paths = common::generated_images(dir.path());
    if let Some(reference) = common::reference_dir("sif_robustness") {
        paths.extend(common::reference_images(&reference));
    }
    paths
        .into_iter()
        .map(|p| {
            let name = p.file_name().expect("name").to_string_lossy().into_owned();
            (name, std::fs::read(&p).expect("read seed"))
        })
        .collect()
}

/// Where the header and descriptor table end (the bytes the reader interprets).
fn tables_end(bytes: &[u8]) -> usize {
    let image = SifImage::from_reader(Cursor::new(bytes), "seed").expect("seeds are valid");
    let h = image.header();
    (h.descriptors_offset as usize + h.descriptors_size as usize).min(bytes.len())
}

fn rounds() -> usize {
    std::env::var("HYBRUN_SIF_ROBUSTNESS_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

#[test]
fn truncation_at_every_offset_of_header_and_table() {
    let mut cases = 0;
    for (name, bytes) in seeds() {
        let end = tables_end(&bytes);
        for len in 0..=end {
            check(&bytes[..len], &format!("{name} truncated to {len}"));
            cases += 1;
        }
        // And a few cuts inside the data.
        for len in (end..bytes.len()).step_by(4099) {
            check(&bytes[..len], &format!("{name} truncated to {len}"));
            cases += 1;
        }
    }
    assert!(cases > 50_000, "only {cases} truncations");
}

#[test]
fn random_bit_flips() {
    let mut rng = Rng(0x5EED_0001);
    let (mut cases, mut parsed) = (0, 0);
    for (name, seed) in seeds() {
        let end = tables_end(&seed);
        for round in 0..600 * rounds() {
            let mut bytes = seed.clone();
            let flips = 1 + rng.below(8);
            for _ in 0..flips {
                // Mostly where the reader looks; sometimes anywhere.
                let at = if rng.below(8) == 0 {
                    rng.below(bytes.len())
                } else {
                    rng.below(end)
                };
                bytes[at] ^= 1 << rng.below(8);
            }
            parsed += usize::from(check(&bytes, &format!("{name} bit flips round {round}")));
            cases += 1;
        }
    }
    assert!(cases >= 1_800, "only {cases} bit-flip cases");
    // Both outcomes must be exercised: typed errors and consistent parses.
    assert!(
        parsed > cases / 20 && parsed < cases,
        "{parsed} of {cases} parsed"
    );
}

/// Values that hit the edges of every check.
fn hostile_i64(rng: &mut Rng, file_len: usize) -> i64 {
    let len = file_len as i64;
    let choices = [
        0,
        1,
        -1,
        i64::MAX,
        i64::MIN,
        len,
        len - 1,
        len + 1,
        4096,
        32176,
        1 << 31,
        1 << 40,
        (DESCRIPTOR_LEN as i64) * 48,
        rng.next() as i64,
        (rng.next() % (file_len as u64 + 2)) as i64,
    ];
    choices[rng.below(choices.len())]
}

#[test]
fn hostile_field_values() {
    let mut rng = Rng(0x5EED_0002);
    let (mut cases, mut parsed) = (0, 0);
    for (name, seed) in seeds() {
        let h = SifImage::from_reader(Cursor::new(&seed[..]), "seed")
            .expect("valid")
            .header()
            .clone();
        let slots = h.descriptors_total.max(1) as usize;
        for round in 0..600 * rounds() {
            let mut bytes = seed.clone();
            for _ in 0..1 + rng.below(3) {
                let value = hostile_i64(&mut rng, bytes.len());
                let at = if rng.below(2) == 0 {
                    // One of the eight i64 header fields (offsets 64..128).
                    64 + 8 * rng.below(8)
                } else {
                    // A 32- or 64-bit field of some descriptor.
                    let fields = [
                        0usize, 4, 5, 9, 13, 17, 25, 33, 41, 49, 57, 65, 201, 205, 209,
                    ];
                    h.descriptors_offset as usize
                        + rng.below(slots) * DESCRIPTOR_LEN
                        + fields[rng.below(fields.len())]
                };
                let width = if rng.below(2) == 0 { 8 } else { 4 };
                if let Some(slot) = bytes.get_mut(at..at + width) {
                    slot.copy_from_slice(&value.to_le_bytes()[..width]);
                }
            }
            parsed += usize::from(check(
                &bytes,
                &format!("{name} hostile fields round {round}"),
            ));
            cases += 1;
        }
    }
    assert!(cases >= 1_800, "only {cases} hostile-field cases");
    assert!(parsed > 0 && parsed < cases, "{parsed} of {cases} parsed");
}

#[test]
fn random_files_with_a_valid_prefix() {
    let mut rng = Rng(0x5EED_0003);
    let mut parsed = 0;
    for round in 0..3000 * rounds() {
        let len = match rng.below(4) {
            0 => rng.below(HEADER_LEN + 1),
            1 => HEADER_LEN + rng.below(4096),
            _ => rng.below(64 * 1024),
        };
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        if len >= HEADER_LEN && rng.below(4) != 0 {
            bytes[32..42].copy_from_slice(&MAGIC);
            bytes[42..45].copy_from_slice(&VERSION);
            // Small counts and offsets inside the file, so that deeper checks run.
            let total = rng.below(8) as i64;
            let fields = [
                rng.below(total as usize + 1) as i64,
                total,
                HEADER_LEN as i64 + rng.below(256) as i64,
                total * DESCRIPTOR_LEN as i64 + rng.below(3) as i64,
                rng.below(len) as i64,
                rng.below(len) as i64,
            ];
            for (i, value) in fields.iter().enumerate() {
                let at = 80 + 8 * i;
                bytes[at..at + 8].copy_from_slice(&value.to_le_bytes());
            }
        }
        parsed += usize::from(check(
            &bytes,
            &format!("random file round {round} ({len} bytes)"),
        ));
    }
    assert!(
        parsed > 0,
        "no random file parsed: the deeper checks never ran"
    );
}
