//! Fuzzes contents detection over SquashFS and SIF-wrapped SquashFS: the bytes are
//! opened as an image from memory (`Image::from_bytes`, the checks and limits of
//! `Image::open`), then detected (`detect::detect`: OS, MPI, glibc, ... read from
//! files inside), listed, and the first bytes of the first files read.
//!
//! Whatever the input, this must return (an error or contents) without a panic,
//! an abort, a huge allocation (libFuzzer's -malloc_limit_mb, by default the
//! -rss_limit_mb) or a slow input (-timeout).
#![no_main]

use std::sync::Arc;

use hybrun::image::contents::{EntryKind, Image};
use hybrun::image::detect;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(image) = Image::from_bytes(Arc::from(data), "fuzz") else {
        return;
    };
    let _ = detect::detect(&image);
    let _ = image.listing();
    let files: Vec<String> = image
        .entries()
        .filter(|(_, e)| e.kind == EntryKind::File)
        .map(|(p, _)| p.to_owned())
        .take(32)
        .collect();
    for path in files {
        if let Ok(head) = image.head(&path, 1 << 16) {
            assert!(head.len() <= 1 << 16);
        }
    }
});
