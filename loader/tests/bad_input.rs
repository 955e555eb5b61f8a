//! Bad extracts: each must fail its data set with a message naming the
//! extract, line and column, leave that data set's table as it was, stop
//! that data set at the bad extract, and let the other data sets load.

mod support;

use bds_common::extract::ExtractKind::{Differential, Full};
use bds_tests::harness::pg;
use support::*;

/// A Users CSV line: UserId, UserName and SignupDate given, the other 11
/// documented columns empty.
fn user_line(id: &[u8], name: &[u8], signup: &[u8]) -> Vec<u8> {
    let mut line = Vec::new();
    line.extend_from_slice(id);
    line.push(b',');
    line.extend_from_slice(name);
    line.extend_from_slice(b",,First,,Last,True,,,");
    line.extend_from_slice(signup);
    line.extend_from_slice(b",,1,,2026-11-01T00:00:00Z\r\n");
    line
}

fn users_csv(lines: &[Vec<u8>]) -> Vec<u8> {
    let header = dataset("Users")
        .columns
        .iter()
        .map(|c| c.header.as_str())
        .collect::<Vec<_>>()
        .join(",");
    let mut csv = format!("\u{feff}{header}\r\n").into_bytes();
    for line in lines {
        csv.extend_from_slice(line);
    }
    csv
}

fn good_row(id: u32) -> Vec<u8> {
    user_line(
        id.to_string().as_bytes(),
        format!("user{id}").as_bytes(),
        b"2026-01-01T00:00:00.000Z",
    )
}

fn zip_csv(csv: &[u8]) -> Vec<u8> {
    zip_of(&[("Users.csv", csv)])
}

/// Loads a good Users full, then archives `bad` as the next differential, a
/// good differential after it and an Organizational Units full, and runs
/// again: exit 1, every `expected` fragment in the log, Users unchanged,
/// Organizational Units loaded.
fn bad_differential(bad: Vec<u8>, expected: &[&str]) {
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("unused");
    let mut archive = TestArchive::new();
    let full = extract_like(
        "Users",
        Full,
        "2026-11-22T02:00:00Z",
        "2026-11-22T02:01:00Z",
        path.clone(),
    );
    archive.add_bytes(&full, &zip_csv(&users_csv(&[good_row(1), good_row(2)])));
    let db = pg::database();
    assert_exit(&load(&archive, db.url(), &[]), 0);
    let mut client = db.client();
    let before = snapshot(&mut client, "public", "users");

    let bad_extract = extract_like(
        "Users",
        Differential,
        "2026-11-23T03:00:00Z",
        "2026-11-23T03:01:00Z",
        path.clone(),
    );
    let record = archive.add_bytes(&bad_extract, &bad);
    let later = extract_like(
        "Users",
        Differential,
        "2026-11-24T03:00:00Z",
        "2026-11-24T03:01:00Z",
        path.clone(),
    );
    archive.add_bytes(&later, &zip_csv(&users_csv(&[good_row(3)])));
    let other = extract_like(
        "Organizational Units",
        Full,
        "2026-11-22T02:00:00Z",
        "2026-11-22T02:01:00Z",
        path,
    );
    let org_units = csv_with_catalog_header("Organizational Units", &[&[("OrgUnitId", "6606")]]);
    archive.add_bytes(
        &other,
        &zip_of(&[("OrganizationalUnits.csv", org_units.as_bytes())]),
    );

    let run = load(&archive, db.url(), &[]);
    assert_exit(&run, 1);
    let log = stderr(&run);
    let label = format!(
        "Users differential extract queued 2026-11-23T03:00:00Z ({})",
        record.key
    );
    assert!(log.contains(&label), "the log names the extract:\n{log}");
    for fragment in expected {
        assert!(
            log.contains(fragment),
            "{fragment:?} not in the log:\n{log}"
        );
    }
    assert_eq!(
        snapshot(&mut client, "public", "users"),
        before,
        "Users changed"
    );
    let org_units: i64 = client
        .query_one("SELECT count(*) FROM org_units", &[])
        .unwrap()
        .get(0);
    assert_eq!(org_units, 1, "the other data set was not loaded");
}

#[test]
fn unbalanced_quotes_name_the_line() {
    let mut open_quote = b"3,\"carol".to_vec();
    open_quote.extend_from_slice(&good_row(3)[1..]);
    bad_differential(
        zip_csv(&users_csv(&[good_row(1), open_quote, good_row(4)])),
        &["line 3: wrong number of fields", "unbalanced quote"],
    );
}

#[test]
fn wrong_field_count_names_the_line() {
    let mut extra = good_row(3);
    extra.truncate(extra.len() - 2);
    extra.extend_from_slice(b",surplus\r\n");
    bad_differential(
        zip_csv(&users_csv(&[good_row(1), extra])),
        &["line 3: wrong number of fields: expected 14, found 15"],
    );
}

#[test]
fn invalid_utf8_names_line_and_column() {
    let bad = user_line(b"3", b"caf\xe9", b"");
    bad_differential(
        zip_csv(&users_csv(&[good_row(1), bad])),
        &["line 3, column UserName: invalid UTF-8"],
    );
}

#[test]
fn nul_bytes_name_line_and_column() {
    let bad = user_line(b"3", b"a\0b", b"");
    bad_differential(
        zip_csv(&users_csv(&[good_row(1), good_row(2), bad])),
        &["line 4, column UserName: contains a NUL byte"],
    );
}

#[test]
fn unparseable_values_name_line_and_column() {
    let bad = user_line(b"3", b"carol", b"2026-13-01");
    bad_differential(
        zip_csv(&users_csv(&[good_row(1), bad])),
        &["line 3, column SignupDate: invalid timestamp \"2026-13-01\""],
    );
    let bad_id = user_line(b"3x", b"carol", b"");
    bad_differential(
        zip_csv(&users_csv(&[bad_id])),
        &["line 2, column UserId: invalid integer \"3x\""],
    );
}

#[test]
fn a_multiline_record_reports_the_line_it_starts_on() {
    let multiline = user_line(b"2", b"\"two\r\nlines\"", b"");
    let bad = user_line(b"3", b"carol", b"yesterday");
    bad_differential(
        zip_csv(&users_csv(&[good_row(1), multiline, bad])),
        &["line 5, column SignupDate: invalid timestamp \"yesterday\""],
    );
}

#[test]
fn a_zip_without_a_csv_fails() {
    bad_differential(
        zip_of(&[("readme.txt", b"hello")]),
        &[
            "not a valid extract zip",
            "must hold exactly one CSV",
            "readme.txt",
        ],
    );
}

#[test]
fn a_zip_with_two_csvs_fails() {
    let csv = users_csv(&[good_row(3)]);
    bad_differential(
        zip_of(&[("Users.csv", &csv), ("Users2.csv", &csv)]),
        &["must hold exactly one CSV", "Users2.csv"],
    );
}

#[test]
fn a_truncated_zip_fails() {
    let zip = zip_csv(&users_csv(&[good_row(3)]));
    bad_differential(
        zip[..zip.len() - 30].to_vec(),
        &["not a valid extract zip", "not a readable zip file"],
    );
}

#[test]
fn a_missing_key_column_fails_the_extract() {
    let csv = b"\xef\xbb\xbfUserName,FirstName\r\nx,y\r\n".to_vec();
    bad_differential(zip_csv(&csv), &["key column user_id is missing"]);
}

#[test]
fn a_checksum_mismatch_applies_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let mut archive = TestArchive::new();
    let full = extract_like(
        "Users",
        Full,
        "2026-11-22T02:00:00Z",
        "2026-11-22T02:01:00Z",
        scratch.path().join("unused"),
    );
    let record = archive.add_bytes(&full, &zip_csv(&users_csv(&[good_row(1)])));
    archive.overwrite_object(&record.key, &zip_csv(&users_csv(&[good_row(666)])));
    let db = pg::database();

    let run = load(&archive, db.url(), &[]);
    assert_exit(&run, 1);
    let log = stderr(&run);
    assert!(log.contains("sha256 mismatch"), "{log}");
    assert!(log.contains(&record.sha256), "{log}");
    let mut client = db.client();
    let exists: bool = client
        .query_one("SELECT to_regclass('public.users') IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert!(!exists, "nothing may be applied");
}
