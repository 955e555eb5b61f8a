//! Fuzz target: arbitrary bytes as the CSV of a Users extract, through
//! bds-load's reading path: the zip opened with `read::open_zip`, the CSV
//! read with `read::csv_reader` (the loader's parser settings), the header
//! matched with `read::match_columns`, and every field encoded for binary
//! COPY by `encode::ValueKind::encode` for each column type. Errors are
//! fine; a panic is a bug.

#![no_main]

use std::io::Write;

use bds_load::ddl::{KeyOverrides, TableSpec};
use bds_load::encode::{ValueKind, parse_timestamp};
use bds_load::error::ExtractLabel;
use bds_load::read::{csv_reader, match_columns, open_zip};
use libfuzzer_sys::fuzz_target;

const KINDS: [ValueKind; 10] = [
    ValueKind::Int2,
    ValueKind::Int4,
    ValueKind::Int8,
    ValueKind::Bool,
    ValueKind::Timestamp,
    ValueKind::Numeric,
    ValueKind::Float4,
    ValueKind::Float8,
    ValueKind::Uuid,
    ValueKind::Text,
];

fuzz_target!(|data: &[u8]| {
    let zip_file = stored_zip(data);
    let label = ExtractLabel("fuzz".into());
    let Ok(mut zip) = open_zip(zip_file.path(), &label) else {
        return;
    };
    let Ok(mut reader) = csv_reader(&mut zip, 0, &label) else {
        return;
    };
    let Ok(header) = reader.byte_headers() else {
        return;
    };
    let names: Vec<String> = header
        .iter()
        .map(|h| String::from_utf8_lossy(h).into_owned())
        .collect();
    let spec = TableSpec::resolve("Users", None, "public", &KeyOverrides::default());
    let _ = match_columns(&names, &[], &spec, &label);

    let mut record = csv::ByteRecord::new();
    let mut out = Vec::new();
    while let Ok(true) = reader.read_byte_record(&mut record) {
        for field in record.iter().filter(|f| !f.is_empty()) {
            for kind in KINDS {
                out.clear();
                if kind.encode(field, &mut out).is_ok() {
                    assert!(out.len() >= 4, "a field starts with its length");
                }
            }
            let _ = parse_timestamp(field);
        }
    }
});

/// The input as the only entry of a zip, stored (not deflated) so the
/// fuzzer's bytes reach the CSV parser unchanged.
fn stored_zip(csv: &[u8]) -> tempfile::NamedTempFile {
    let file = tempfile::NamedTempFile::new().expect("a temp file");
    let mut zip = zip::ZipWriter::new(file.reopen().expect("reopen"));
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    zip.start_file("Users.csv", options)
        .expect("start the entry");
    zip.write_all(csv).expect("write the entry");
    zip.finish().expect("finish the zip");
    file
}
