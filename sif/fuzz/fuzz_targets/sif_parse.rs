//! Fuzzes the SIF reader with arbitrary bytes, read through an in-memory reader.
//!
//! Whatever the input, the reader must return a typed error or an image whose
//! objects lie inside the input; printing and reading the objects must not panic.
#![no_main]

use std::io::Cursor;

use hybrun_sif::{SifImage, display};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut image) = SifImage::from_reader(Cursor::new(data), "fuzz.sif") else {
        return;
    };
    let header = image.header().clone();
    let descriptors = image.descriptors().to_vec();
    let _ = display::inspect_text(&header, &descriptors);
    let _ = display::inspect_json("fuzz.sif", &header, &descriptors);
    for d in &descriptors {
        assert!(d.offset >= 0 && d.size >= 0);
        assert!(i128::from(d.offset) + i128::from(d.size) <= data.len() as i128);
        if let Ok(bytes) = image.read_object(d.id, 1 << 20) {
            assert_eq!(bytes.len() as i64, d.size);
        }
    }
});
