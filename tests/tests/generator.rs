//! The generator writes D2L's extract format deterministically, its
//! histories have the quirks the loader must survive, and the oracle replays
//! them by the rules of the design notes.

use std::collections::HashSet;
use std::io::{Read, Write};
use std::path::Path;

use bds_common::catalog::{Catalog, Dataset};
use bds_common::extract::ExtractKind;
use bds_common::verify::{Limits, StreamCheck, verify_zip_streamed};
use bds_tests::ExtractFile;
use bds_tests::generator::{self, EXTRA_COLUMN, Options, VERSION_AFTER};
use bds_tests::harness::pg;
use chrono::{DateTime, Datelike, Timelike, Utc};

fn dataset(name: &str) -> &'static Dataset {
    Catalog::builtin().find(name).unwrap()
}

fn now() -> DateTime<Utc> {
    "2026-11-18T12:00:00Z".parse().unwrap()
}

fn csv_text(file: &ExtractFile) -> String {
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&file.path).unwrap()).unwrap();
    assert_eq!(zip.len(), 1);
    let mut entry = zip.by_index(0).unwrap();
    assert_eq!(entry.name().unwrap(), file.csv_entry);
    let mut text = String::new();
    entry.read_to_string(&mut text).unwrap();
    text
}

#[test]
fn same_seed_gives_identical_zips() {
    let (a, b, c) = (
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
        tempfile::tempdir().unwrap(),
    );
    let users = dataset("Users");
    let first = generator::generate(users, &Options::new(7, now()), a.path()).unwrap();
    let second = generator::generate(users, &Options::new(7, now()), b.path()).unwrap();
    let other = generator::generate(users, &Options::new(8, now()), c.path()).unwrap();

    let hashes = |h: &[ExtractFile]| h.iter().map(|e| e.sha256.clone()).collect::<Vec<_>>();
    assert_eq!(hashes(&first), hashes(&second));
    assert_ne!(hashes(&first), hashes(&other));
    for file in &first {
        let digest = bds_common::hash::sha256_file(&file.path).unwrap();
        assert_eq!((digest.0, digest.1), (file.sha256.clone(), file.size));
    }
}

#[test]
fn schedule_is_weekly_fulls_and_daily_differentials() {
    let out = tempfile::tempdir().unwrap();
    let users = dataset("Users");
    let history = generator::generate(users, &Options::new(1, now()), out.path()).unwrap();

    let fulls: Vec<&ExtractFile> = history
        .iter()
        .filter(|e| e.kind == ExtractKind::Full)
        .collect();
    let differentials = history.len() - fulls.len();
    assert_eq!(fulls.len(), 3, "two weeks back from the latest Sunday");
    assert_eq!(differentials, 17);
    for file in &history {
        let processing = (file.created - file.queued).num_milliseconds();
        assert!((20_000..=91_000).contains(&processing), "{processing}");
        assert!(file.created <= now());
        match file.kind {
            ExtractKind::Full => {
                assert_eq!(file.queued.weekday(), chrono::Weekday::Sun);
                assert_eq!(file.queued.hour(), 2);
                assert_eq!(file.plugin_id, users.full_plugin.clone().unwrap());
            }
            ExtractKind::Differential => {
                assert_eq!(file.queued.hour(), 3);
                assert_eq!(file.plugin_id, users.differential_plugin.clone().unwrap());
            }
        }
        assert_eq!(file.schema_id, users.schema_id.clone().unwrap());
        assert_eq!(file.csv_entry, "Users.csv");
        let summary = bds_common::verify::verify_zip(&file.path, Default::default()).unwrap();
        assert_eq!(summary.entry_name, "Users.csv");

        // bds-fetch follows these zips through their CRC while they arrive,
        // with no second read.
        let bytes = std::fs::read(&file.path).unwrap();
        let mut check = StreamCheck::new(Limits::default(), Some(bytes.len() as u64));
        for piece in bytes.chunks(16 << 10) {
            check.update(piece);
        }
        let streamed = check
            .finish()
            .expect("the zip can be followed while it streams");
        assert_eq!(streamed.uncompressed, summary.uncompressed_size);
        let mut zip = zip::ZipArchive::new(std::fs::File::open(&file.path).unwrap()).unwrap();
        let entry = zip.by_index_raw(0).unwrap();
        assert_eq!(
            (
                streamed.crc32,
                streamed.compressed,
                Some(streamed.data_start)
            ),
            (entry.crc32(), entry.compressed_size(), entry.data_start())
        );
        drop(entry);
        let again = verify_zip_streamed(&file.path, Limits::default(), Some(streamed)).unwrap();
        assert_eq!(again, summary);
    }
    let mut sorted = history.clone();
    sorted.sort_by_key(|e| e.queued);
    assert_eq!(sorted, history);
}

#[test]
fn extracts_have_the_d2l_format_quirks() {
    let out = tempfile::tempdir().unwrap();
    let mut options = Options::new(3, now());
    options.rows = 3_000;
    let mut all = String::new();
    for name in [
        "Users",
        "Organizational Units",
        "Grade Results",
        "Discussion Topics",
        "SCORM Activity Attempts",
    ] {
        for file in generator::generate(dataset(name), &options, out.path()).unwrap() {
            let text = csv_text(&file);
            assert!(
                text.starts_with('\u{feff}'),
                "BOM in {}",
                file.path.display()
            );
            let header = text[3..].split("\r\n").next().unwrap();
            let mut expected: Vec<&str> = dataset(name)
                .columns
                .iter()
                .map(|c| c.header.as_str())
                .collect();
            if file.version == VERSION_AFTER {
                expected.push(EXTRA_COLUMN);
            }
            assert_eq!(header, expected.join(","));
            assert!(text.ends_with("\r\n"));
            all.push_str(&text);
        }
    }
    for needle in [
        ",,",
        "True",
        "False",
        "\"Smith, John\"",
        "\"The \"\"best\"\" course\"",
        "\"Line one\r\nLine two\"",
        "Zoë",
        "日本語",
        ".000Z",
        "-",
    ] {
        assert!(all.contains(needle), "no {needle:?} anywhere");
    }
    let seven_digits = all.split(['T']).any(|part| {
        part.len() > 17
            && part.as_bytes()[8] == b'.'
            && part[9..16].bytes().all(|b| b.is_ascii_digit())
            && &part[16..17] == "Z"
    });
    assert!(seven_digits, "no timestamp with 7 fractional digits");
    assert!(
        !all.replace("\r\n", "").contains("\n\""),
        "bare LF only inside quoted fields"
    );
}

/// Parses the rows of an extract with the csv crate, header first.
fn records(file: &ExtractFile) -> Vec<csv::StringRecord> {
    let text = csv_text(file);
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.trim_start_matches('\u{feff}').as_bytes())
        .into_records()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn differentials_carry_changes_duplicates_and_soft_deletes() {
    let out = tempfile::tempdir().unwrap();
    let org_units = dataset("Organizational Units");
    let mut options = Options::new(5, now());
    options.rows = 4_000;
    let history = generator::generate(org_units, &options, out.path()).unwrap();
    let is_deleted = org_units
        .columns
        .iter()
        .position(|c| c.header == "IsDeleted")
        .unwrap();

    let mut duplicated = 0;
    let mut soft_deleted = 0;
    for file in history
        .iter()
        .filter(|e| e.kind == ExtractKind::Differential)
    {
        let rows = records(file);
        assert!(rows.len() > 1 && rows.len() < 1_000, "{} rows", rows.len());
        let mut keys = HashSet::new();
        for row in &rows[1..] {
            duplicated += usize::from(!keys.insert(row[0].to_string()));
            soft_deleted += usize::from(&row[is_deleted] == "True");
        }
    }
    assert!(duplicated > 0, "no key twice in a differential");
    assert!(soft_deleted > 0, "no soft delete in a differential");

    // A hard delete: a key in one full and gone from the next.
    let fulls: Vec<HashSet<String>> = history
        .iter()
        .filter(|e| e.kind == ExtractKind::Full)
        .map(|f| records(f)[1..].iter().map(|r| r[0].to_string()).collect())
        .collect();
    assert!(fulls[0].difference(&fulls[1]).count() > 0, "no hard delete");
    assert!(fulls[1].len() > fulls[0].len() / 2);
}

#[test]
fn keys_are_unique_in_every_full() {
    let out = tempfile::tempdir().unwrap();
    for name in [
        "Grade Results",
        "Course Access Log",
        "User Enrollments",
        "Quiz Question Answer Options",
        "SCORM Activity Attempts",
    ] {
        let dataset = dataset(name);
        let history = generator::generate(dataset, &Options::new(9, now()), out.path()).unwrap();
        let expected = generator::oracle(dataset, &history, None);
        for full in history.iter().filter(|e| e.kind == ExtractKind::Full) {
            let rows = records(full);
            let positions: Vec<usize> = dataset
                .key
                .iter()
                .map(|k| dataset.columns.iter().position(|c| &c.column == k).unwrap())
                .collect();
            let keys: HashSet<Vec<String>> = rows[1..]
                .iter()
                .map(|r| positions.iter().map(|&i| r[i].to_string()).collect())
                .collect();
            assert_eq!(
                keys.len(),
                rows.len() - 1,
                "{name}: duplicate key in {}",
                full.path.display()
            );
        }
        assert!(expected.rows.len() > 900, "{name}: {}", expected.rows.len());
    }
}

#[test]
fn keyless_and_undocumented_data_sets_get_fulls_only() {
    let out = tempfile::tempdir().unwrap();
    for name in ["Question Relationships", "Outcomes Set Course"] {
        let history =
            generator::generate(dataset(name), &Options::new(2, now()), out.path()).unwrap();
        assert_eq!(history.len(), 3, "{name}");
        assert!(history.iter().all(|e| e.kind == ExtractKind::Full));
        assert!(!history[0].schema_id.is_empty());
    }
}

#[test]
fn history_round_trips_through_json() {
    let out = tempfile::tempdir().unwrap();
    let history =
        generator::generate(dataset("Users"), &Options::new(4, now()), out.path()).unwrap();
    let path = out.path().join("hub.json");
    generator::write_history(&path, &history).unwrap();
    assert_eq!(generator::read_history(&path).unwrap(), history);
}

#[test]
fn benchmark_mode_changes_five_percent() {
    let out = tempfile::tempdir().unwrap();
    let history = generator::benchmark(dataset("Users"), 20_000, 1, out.path()).unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(records(&history[0]).len() - 1, 20_000);
    let changed = records(&history[1]).len() - 1;
    assert!((800..1_300).contains(&changed), "{changed}");
}

#[test]
fn demo_covers_every_current_data_set_quickly() {
    let out = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let history = generator::demo(out.path(), 11, now()).unwrap();
    let elapsed = started.elapsed();
    eprintln!("demo: {} extracts in {elapsed:?}", history.len());
    for dataset in Catalog::builtin().current() {
        assert!(
            history
                .iter()
                .any(|e| e.dataset == dataset.name && e.kind == ExtractKind::Full),
            "{}",
            dataset.name
        );
    }
    assert!(elapsed.as_secs() < 120, "demo took {elapsed:?}");
}

// --- the oracle on a history small enough to check by hand -----------------

/// Writes a one-entry zip with `csv` (a BOM and CRLFs are added).
fn hand_extract(dir: &Path, kind: ExtractKind, queued: &str, csv: &str) -> ExtractFile {
    let queued: DateTime<Utc> = queued.parse().unwrap();
    let path = dir.join(format!("{}_{}.zip", kind, queued.timestamp()));
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    zip.start_file("Users.csv", zip::write::SimpleFileOptions::default())
        .unwrap();
    zip.write_all(format!("\u{feff}{}", csv.replace('\n', "\r\n")).as_bytes())
        .unwrap();
    zip.finish().unwrap();
    let (sha256, size) = bds_common::hash::sha256_file(&path).unwrap();
    ExtractFile {
        dataset: "Users".into(),
        schema_id: "s".into(),
        plugin_id: "p".into(),
        kind,
        queued,
        created: queued + chrono::Duration::seconds(30),
        version: "9.10".into(),
        path,
        size,
        sha256,
        csv_entry: "Users.csv".into(),
    }
}

/// Users with four columns only, so the expected rows fit on a line.
fn small_users() -> Dataset {
    let mut users = dataset("Users").clone();
    let keep = ["UserId", "UserName", "IsActive", "SignupDate"];
    users.columns.retain(|c| keep.contains(&c.header.as_str()));
    users
}

fn hand_history(dir: &Path) -> Vec<ExtractFile> {
    use ExtractKind::{Differential, Full};
    vec![
        hand_extract(
            dir,
            Full,
            "2026-11-01T02:00:00Z",
            "UserId,UserName,IsActive,SignupDate\n1,ann,True,2026-01-01T00:00:00.1234565Z\n2,bob,False,\n3,\"c, \"\"cat\"\"\",True,2026-01-02T00:00:00.000Z\n",
        ),
        hand_extract(
            dir,
            Differential,
            "2026-11-02T03:00:00Z",
            "userid,UserName,IsActive,SignupDate\n2,bob-old,False,\n4,dan,True,\n2,bob2,True,\n",
        ),
        hand_extract(
            dir,
            Full,
            "2026-11-08T02:00:00Z",
            "UserId,UserName,IsActive,SignupDate\n1,ann,True,2026-01-01T00:00:00.1234565Z\n2,bob2,True,\n4,dan,True,\n",
        ),
        hand_extract(
            dir,
            Differential,
            "2026-11-08T03:00:00Z",
            "UserId,UserName,IsActive,SignupDate,ExtraNotes\n5,eve,False,2026-11-08T01:00:00Z,new\n1,ann,True,,\n",
        ),
        hand_extract(
            dir,
            Differential,
            "2026-11-09T03:00:00Z",
            "IsActive,UserId,UserName\nTrue,5,eve\n",
        ),
    ]
}

fn rows(expected: &generator::ExpectedTable) -> Vec<String> {
    expected
        .rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| v.clone().unwrap_or_else(|| "NULL".into()))
                .collect::<Vec<_>>()
                .join("|")
        })
        .collect()
}

#[test]
fn oracle_replays_a_hand_checked_history() {
    let dir = tempfile::tempdir().unwrap();
    let history = hand_history(dir.path());
    let users = small_users();
    let at = |t: &str| Some(t.parse::<DateTime<Utc>>().unwrap());

    let first_day = generator::oracle(&users, &history, at("2026-11-02T12:00:00Z"));
    assert_eq!(
        first_day.columns,
        ["user_id", "user_name", "is_active", "signup_date"]
    );
    assert_eq!(
        rows(&first_day),
        [
            "1|ann|true|2026-01-01T00:00:00.123457Z",
            "2|bob2|true|NULL",
            "3|c, \"cat\"|true|2026-01-02T00:00:00.000000Z",
            "4|dan|true|NULL",
        ]
    );

    // The second full drops user 3; later differentials add a column and
    // upsert whole rows (a missing column is NULL).
    let latest = generator::oracle(&users, &history, None);
    assert_eq!(latest.columns.last().unwrap(), "extra_notes");
    assert_eq!(
        rows(&latest),
        [
            "1|ann|true|NULL|NULL",
            "2|bob2|true|NULL|NULL",
            "4|dan|true|NULL|NULL",
            "5|eve|true|NULL|NULL",
        ]
    );
    assert_eq!(latest.row(&["5"]).unwrap()[1].as_deref(), Some("eve"));

    let before_everything = generator::oracle(&users, &history, at("2026-10-01T00:00:00Z"));
    assert!(before_everything.rows.is_empty());
}

/// Creates the table the loader would make and fills it with `rows`.
fn load(
    client: &mut postgres::Client,
    table: &str,
    expected: &generator::ExpectedTable,
    rows: &[generator::Row],
) {
    let columns: Vec<String> = expected
        .columns
        .iter()
        .zip(&expected.types)
        .map(|(c, t)| format!("\"{c}\" {t}"))
        .collect();
    client
        .batch_execute(&format!("create table {table} ({})", columns.join(", ")))
        .unwrap();
    let params: Vec<String> = expected
        .types
        .iter()
        .enumerate()
        .map(|(i, t)| format!("${}::text::{t}", i + 1))
        .collect();
    let insert = client
        .prepare(&format!(
            "insert into {table} values ({})",
            params.join(", ")
        ))
        .unwrap();
    for row in rows {
        let values: Vec<&(dyn postgres::types::ToSql + Sync)> = row
            .iter()
            .map(|v| v as &(dyn postgres::types::ToSql + Sync))
            .collect();
        client.execute(&insert, &values).unwrap();
    }
}

#[test]
fn table_comparison_accepts_equal_and_reports_differences() {
    let dir = tempfile::tempdir().unwrap();
    let history = hand_history(dir.path());
    let expected = generator::oracle(&small_users(), &history, None);
    let db = pg::database();
    let mut client = db.client();
    load(&mut client, "users", &expected, &expected.rows);
    generator::assert_table_matches(&mut client, "public", "users", &expected);

    client
        .batch_execute("update users set user_name = 'zed' where user_id = 4; delete from users where user_id = 1")
        .unwrap();
    let failure = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        generator::assert_table_matches(&mut client, "public", "users", &expected);
    }))
    .unwrap_err();
    let message = failure.downcast_ref::<String>().unwrap();
    assert!(message.contains("missing keys: 1"), "{message}");
    assert!(
        message.contains("user_name: expected \"dan\", found \"zed\""),
        "{message}"
    );
}

/// A loader that made every column text would hold the same values; the
/// comparison must still fail, naming the columns of the wrong type.
#[test]
fn table_comparison_rejects_columns_of_another_type() {
    let dir = tempfile::tempdir().unwrap();
    let history = hand_history(dir.path());
    let expected = generator::oracle(&small_users(), &history, None);
    let mut all_text = expected.clone();
    all_text.types.iter_mut().for_each(|t| *t = "text".into());
    let db = pg::database();
    let mut client = db.client();
    load(&mut client, "users", &all_text, &expected.rows);

    let failure = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        generator::assert_table_matches(&mut client, "public", "users", &expected);
    }))
    .unwrap_err();
    let message = failure.downcast_ref::<String>().unwrap();
    assert!(
        message.contains("user_id: expected bigint, found text"),
        "{message}"
    );
    assert!(
        message.contains("signup_date: expected timestamptz, found text"),
        "{message}"
    );
    assert!(!message.contains("user_name:"), "{message}");
}

#[test]
fn generated_history_matches_its_oracle_in_postgres() {
    let out = tempfile::tempdir().unwrap();
    let db = pg::database();
    let mut client = db.client();
    for name in [
        "Discussion Topics",
        "SCORM Activity Attempts",
        "Course Access Log",
        "Grade Results",
    ] {
        let dataset = dataset(name);
        let history = generator::generate(dataset, &Options::new(21, now()), out.path()).unwrap();
        let expected = generator::oracle(dataset, &history, None);
        let table = &dataset.table;
        load(&mut client, table, &expected, &expected.rows);
        generator::assert_table_matches(&mut client, "public", table, &expected);
    }
}

/// Throughput and memory of benchmark-sized output; rows from
/// `BDS_GENERATOR_ROWS` (default 5 million).
#[test]
#[ignore = "benchmark-sized: takes a while, run by hand"]
fn benchmark_sized_history_streams() {
    let rows = std::env::var("BDS_GENERATOR_ROWS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5_000_000);
    let out = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let history = generator::benchmark(dataset("Users"), rows, 1, out.path()).unwrap();
    eprintln!(
        "{rows} rows: {} + {} bytes of zip in {:?}",
        history[0].size,
        history[1].size,
        started.elapsed()
    );
}
