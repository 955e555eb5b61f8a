//! Fuzz target: arbitrary bytes as a downloaded extract, through the checks
//! bds-fetch and bds-load run on every zip (`inspect_zip`, `verify_zip`).
//! They may refuse it, never panic, hang or inflate past the limits.

#![no_main]

use std::io::Write;

use bds_common::verify::{Limits, inspect_zip, verify_zip};
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
    if let Ok(summary) = verify_zip(file.path(), LIMITS) {
        assert!(summary.entry_name.to_ascii_lowercase().ends_with(".csv"));
    }
});
