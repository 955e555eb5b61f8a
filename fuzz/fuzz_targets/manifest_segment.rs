//! Fuzz target: arbitrary bytes as a manifest segment, through
//! `bds_common::manifest::parse_segment`. Whatever parses must serialize
//! and parse back to the same entries (what bds-fetch writes, bds-load
//! reads).

#![no_main]

use bds_common::manifest::{Entry, parse_segment};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(entries) = parse_segment("manifest/fuzz.jsonl", data) else {
        return;
    };
    let mut text = String::new();
    for entry in &entries {
        text.push_str(&serde_json::to_string(entry).expect("entries serialize"));
        text.push('\n');
    }
    let again: Vec<Entry> =
        parse_segment("manifest/again.jsonl", text.as_bytes()).expect("written entries parse");
    assert_eq!(entries, again);
});
