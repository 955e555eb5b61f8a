//! Fuzz target: arbitrary bytes as a downloaded extract, through the checks
//! bds-fetch and bds-load run on every zip (`inspect_zip`, `verify_zip`).
//! They may refuse it, never panic, hang or inflate past the limits. The
//! check bds-fetch runs while a download arrives (`StreamCheck`) must never
//! let through what the full check refuses, however the bytes are split.

#![no_main]

use std::io::Write;

use bds_common::verify::{Limits, StreamCheck, inspect_zip, verify_zip, verify_zip_streamed};
use libfuzzer_sys::fuzz_target;

/// Small limits, so a bomb the checks let through would show as a timeout
/// or an out-of-memory report rather than pass unnoticed.
const LIMITS: Limits = Limits {
    max_uncompressed: 16 << 20,
    max_ratio: 1000,
};

fuzz_target!(|data: &[u8]| {
    let mut file = tempfile::NamedTempFile::new().expect("a temp file");
    file.write_all(data).expect("write the input");
    if let Ok((_, summary)) = inspect_zip(file.path(), LIMITS) {
        assert!(summary.uncompressed_size <= LIMITS.max_uncompressed);
    }
    let full = verify_zip(file.path(), LIMITS);
    if let Ok(summary) = &full {
        assert!(summary.entry_name.to_ascii_lowercase().ends_with(".csv"));
    }

    // Split the bytes into pieces whose size varies with the input, as a
    // network would.
    let step = data.len() % 251 + 1;
    let mut check = StreamCheck::new(LIMITS, Some(data.len() as u64));
    for piece in data.chunks(step) {
        check.update(piece);
    }
    let streamed = verify_zip_streamed(file.path(), LIMITS, check.finish());
    assert_eq!(
        streamed.as_ref().ok(),
        full.as_ref().ok(),
        "the streamed check and the full check disagree"
    );
});
