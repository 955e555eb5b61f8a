//! The commands around a load: status (pending work, gaps, the newest
//! extract's age), dry runs, `--dataset`, the run lock, key overrides for
//! unknown data sets, views that survive a full reload, and an archive on S3.

mod support;

use std::process::Command;

use bds_common::extract::ExtractKind::{Differential, Full};
use bds_tests::ExtractFile;
use bds_tests::generator::assert_table_matches;
use bds_tests::harness::{pg, s3};
use support::*;

fn users_history(work: &std::path::Path) -> Vec<ExtractFile> {
    histories(&["Users"], 200, work)
}

#[test]
fn status_and_dry_run_show_pending_work_and_change_nothing() {
    let work = tempfile::tempdir().unwrap();
    let history = users_history(work.path());
    let mut archive = TestArchive::new();
    archive.add(&history);
    let db = pg::database();
    let location = archive.location();
    let base = ["--archive", location.as_str(), "--database-url", db.url()];

    let dry = bds_load(&[&base[..], &["--dry-run"]].concat());
    assert_exit(&dry, 0);
    let plan = String::from_utf8(dry.stdout).unwrap();
    assert!(plan.contains("Users (users): reload from a full"), "{plan}");
    assert!(plan.contains("apply differential"), "{plan}");
    let exists: bool = db
        .client()
        .query_one("SELECT to_regclass('public.bds_ledger') IS NOT NULL", &[])
        .unwrap()
        .get(0);
    assert!(!exists, "a dry run creates nothing");

    let status = |args: &[&str]| {
        let output = bds_load(&[&["status"], &base[..], args].concat());
        assert_exit(&output, 0);
        String::from_utf8(output.stdout).unwrap()
    };
    let before: serde_json::Value = serde_json::from_str(&status(&["--json"])).unwrap();
    assert_eq!(before[0]["dataset"], "Users");
    assert!(before[0]["pending"].as_u64().unwrap() > 1, "{before}");
    assert!(before[0]["rows"].is_null());

    assert_exit(&load(&archive, db.url(), &[]), 0);
    let after: serde_json::Value = serde_json::from_str(&status(&["--json"])).unwrap();
    assert_eq!(after[0]["pending"], 0, "{after}");
    assert!(after[0]["baseline_full"].is_string());
    assert!(after[0]["last_differential"].is_string());
    let expected = expected("Users", &history, None);
    assert_eq!(after[0]["rows"], expected.rows.len());
    assert!(status(&[]).contains("DATA SET"));
}

/// The status of every archived data set, as `bds-load status --json`
/// prints it.
fn status_json(archive: &TestArchive, url: &str, extra: &[&str]) -> Vec<serde_json::Value> {
    let location = archive.location();
    let base = [
        "status",
        "--archive",
        &location,
        "--database-url",
        url,
        "--json",
    ];
    let output = bds_load(&[&base[..], extra].concat());
    assert_exit(&output, 0);
    serde_json::from_slice(&output.stdout).unwrap()
}

fn status_of<'a>(statuses: &'a [serde_json::Value], dataset: &str) -> &'a serde_json::Value {
    statuses
        .iter()
        .find(|s| s["dataset"] == dataset)
        .unwrap_or_else(|| panic!("no status for {dataset}: {statuses:?}"))
}

#[test]
fn dataset_option_loads_only_that_dataset_and_leaves_the_other_pending() {
    let work = tempfile::tempdir().unwrap();
    let history = histories(&["Users", "Organizational Units"], 200, work.path());
    let mut archive = TestArchive::new();
    archive.add(&history);
    let db = pg::database();

    assert_exit(&load(&archive, db.url(), &["--dataset", "Users"]), 0);
    let mut client = db.client();
    assert_table_matches(
        &mut client,
        "public",
        "users",
        &expected("Users", &history, None),
    );
    let org_units: Option<String> = client
        .query_one("SELECT to_regclass('public.org_units')::text", &[])
        .unwrap()
        .get(0);
    assert_eq!(org_units, None, "a data set not asked for was loaded");
    let ledgered: Vec<String> = client
        .query("SELECT DISTINCT dataset FROM bds_ledger", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(ledgered, ["Users"]);

    let statuses = status_json(&archive, db.url(), &[]);
    assert_eq!(status_of(&statuses, "Users")["pending"], 0, "{statuses:?}");
    let other = status_of(&statuses, "Organizational Units");
    assert!(other["pending"].as_u64().unwrap() > 1, "{other}");
    assert!(other["rows"].is_null(), "{other}");
    assert!(other["baseline_full"].is_null(), "{other}");
}

/// Users extracts made by hand, each queued at 03:00 and created at 03:01:
/// a full on the 10th, differentials on the 11th, 12th and 16th (the 13th
/// to the 15th are missing).
fn users_with_a_hole(archive: &mut TestArchive) {
    let days = [
        (Full, 10),
        (Differential, 11),
        (Differential, 12),
        (Differential, 16),
    ];
    for (kind, day) in days {
        let queued = format!("2026-11-{day}T03:00:00Z");
        let created = format!("2026-11-{day}T03:01:00Z");
        let user = day.to_string();
        let csv = csv_with_catalog_header("Users", &[&[("UserId", &user), ("UserName", "u")]]);
        archive.add_csv("Users", kind, (&queued, &created), &csv);
    }
}

#[test]
fn a_hole_in_the_differentials_is_a_gap_in_status_and_in_the_log() {
    let mut archive = TestArchive::new();
    users_with_a_hole(&mut archive);
    let db = pg::database();
    let gap = "no differential between 2026-11-12T03:01:00Z and 2026-11-16T03:01:00Z (96 hours)";

    let run = load(&archive, db.url(), &[]);
    assert_exit(&run, 0);
    let log = stderr(&run);
    assert!(log.contains(&format!("Users: gap: {gap}")), "{log}");

    let statuses = status_json(&archive, db.url(), &[]);
    let users = status_of(&statuses, "Users");
    assert_eq!(users["gaps"], serde_json::json!([gap]), "{users}");
    assert_eq!(users["pending"], 0, "{users}");
    assert_eq!(users["newest_extract"], "2026-11-16T03:01:00Z", "{users}");
    let newest: chrono::DateTime<chrono::Utc> = "2026-11-16T03:01:00Z".parse().unwrap();
    let hours = (chrono::Utc::now() - newest).num_minutes() as f64 / 60.0;
    let age = users["newest_extract_age_hours"].as_f64().unwrap();
    assert!(
        (age - hours).abs() < 1.0,
        "age {age}, expected about {hours}"
    );

    // A cadence longer than the hole reports nothing.
    let statuses = status_json(&archive, db.url(), &["--max-gap-hours", "100"]);
    assert_eq!(status_of(&statuses, "Users")["gaps"], serde_json::json!([]));
}

#[test]
fn a_second_run_waits_for_the_lock_or_exits_with_no_wait() {
    let work = tempfile::tempdir().unwrap();
    let mut archive = TestArchive::new();
    archive.add(&users_history(work.path()));
    let db = pg::database();

    let mut holder = db.client();
    holder
        .execute(
            "SELECT pg_advisory_lock($1)",
            &[&i64::from_be_bytes(*b"bds-load")],
        )
        .unwrap();
    let busy = load(&archive, db.url(), &["--no-wait"]);
    assert_exit(&busy, 2);
    assert!(
        stderr(&busy).contains("another bds-load run"),
        "{}",
        stderr(&busy)
    );

    let mut waiting = Command::new(env!("CARGO_BIN_EXE_bds-load"))
        .args(["--archive", &archive.location(), "--database-url", db.url()])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    assert!(waiting.try_wait().unwrap().is_none(), "it should wait");
    drop(holder);
    assert!(waiting.wait().unwrap().success());
}

#[test]
fn unknown_datasets_load_as_text_and_keys_come_from_overrides() {
    let scratch = tempfile::tempdir().unwrap();
    let path = scratch.path().join("unused");
    let mut archive = TestArchive::new();
    let mut full = extract_like(
        "Users",
        Full,
        "2026-11-22T02:00:00Z",
        "2026-11-22T02:01:00Z",
        path.clone(),
    );
    full.dataset = "Shiny Widgets".into();
    full.schema_id = "0f0f0f0f-0000-0000-0000-000000000001".into();
    let csv = "\u{feff}WidgetId,Colour\r\n1,red\r\n2,blue\r\n";
    archive.add_bytes(&full, &zip_of(&[("ShinyWidgets.csv", csv.as_bytes())]));
    let mut differential = extract_like(
        "Users",
        Differential,
        "2026-11-23T03:00:00Z",
        "2026-11-23T03:01:00Z",
        path,
    );
    differential.dataset = "Shiny Widgets".into();
    differential.schema_id = full.schema_id.clone();
    let csv = "\u{feff}WidgetId,Colour\r\n2,green\r\n3,grey\r\n";
    archive.add_bytes(
        &differential,
        &zip_of(&[("ShinyWidgets.csv", csv.as_bytes())]),
    );
    let db = pg::database();

    // No key: the differential is skipped and recorded as such.
    let keyless = load(&archive, db.url(), &[]);
    assert_exit(&keyless, 0);
    assert!(stderr(&keyless).contains("skipped"), "{}", stderr(&keyless));
    let mut client = db.client();
    let outcomes: Vec<String> = client
        .query("SELECT outcome FROM bds_ledger ORDER BY id", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(outcomes, ["applied", "skipped"]);
    assert_eq!(
        snapshot(&mut client, "public", "shiny_widgets"),
        ["(1,red)", "(2,blue)"]
    );

    // With a key from the override file, --rebuild applies it too.
    let overrides = scratch.path().join("keys.toml");
    std::fs::write(&overrides, "\"Shiny Widgets\" = [\"WidgetId\"]\n").unwrap();
    let keyed = load(
        &archive,
        db.url(),
        &["--rebuild", "--key-overrides", overrides.to_str().unwrap()],
    );
    assert_exit(&keyed, 0);
    assert_eq!(
        snapshot(&mut client, "public", "shiny_widgets"),
        ["(1,red)", "(2,green)", "(3,grey)"]
    );
}

#[test]
fn views_and_user_indexes_survive_a_full_reload() {
    let work = tempfile::tempdir().unwrap();
    let history = users_history(work.path());
    let fulls: Vec<ExtractFile> = history.iter().filter(|f| f.kind == Full).cloned().collect();
    let mut archive = TestArchive::new();
    archive.add(&fulls[..1]);
    let db = pg::database();
    assert_exit(&load(&archive, db.url(), &[]), 0);
    let mut client = db.client();
    client
        .batch_execute(
            "CREATE INDEX users_by_name ON users (user_name);
             CREATE SCHEMA reports;
             CREATE VIEW reports.active_users AS SELECT user_id FROM users WHERE is_active",
        )
        .unwrap();

    archive.add(&history[1..]);
    assert_exit(&load(&archive, db.url(), &[]), 0);
    let expected = expected("Users", &history, None);
    assert_table_matches(&mut client, "public", "users", &expected);
    let view_rows: i64 = client
        .query_one("SELECT count(*) FROM reports.active_users", &[])
        .unwrap()
        .get(0);
    assert!(view_rows > 0);

    client
        .batch_execute("DROP VIEW reports.active_users")
        .unwrap();
    assert_exit(&load(&archive, db.url(), &["--rebuild"]), 0);
    let index: bool = client
        .query_one(
            "SELECT to_regclass('public.users_by_name') IS NOT NULL",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(index, "the user's index was re-created after the swap");
    assert_table_matches(&mut client, "public", "users", &expected);
}

#[test]
fn an_archive_on_s3_loads_like_a_local_one() {
    let work = tempfile::tempdir().unwrap();
    let history = users_history(work.path());
    let mut local = TestArchive::new();
    local.add(&history);
    let bucket = s3::bucket();
    let remote = bucket.archive();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    for entry in walkdir(local.root()) {
        let key = entry
            .strip_prefix(local.root())
            .unwrap()
            .to_str()
            .unwrap()
            .to_string();
        if key.starts_with(".bds-tmp") {
            continue;
        }
        let bytes = std::fs::read(&entry).unwrap();
        runtime
            .block_on(remote.put_overwrite(&key, bytes.into()))
            .unwrap();
    }
    let db = pg::database();
    let output = Command::new(env!("CARGO_BIN_EXE_bds-load"))
        .args(["--archive", &bucket.url, "--database-url", db.url()])
        .args(["--schema", "from_s3"])
        .envs(bucket.env.iter().cloned())
        .output()
        .unwrap();
    assert_exit(&output, 0);
    let expected = expected("Users", &history, None);
    assert_table_matches(&mut db.client(), "from_s3", "users", &expected);
}

fn walkdir(root: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let mut folders = vec![root.to_path_buf()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(folder).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                folders.push(path);
            } else {
                files.push(path);
            }
        }
    }
    files
}
