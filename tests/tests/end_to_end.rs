//! The whole job, as a school runs it: bds-fetch archives everything the
//! fake Data Hub offers, bds-load replays that archive into PostgreSQL, and
//! every table equals the generator's oracle. A second night with nothing
//! new downloads nothing and changes nothing.

use std::process::Command;

use bds_tests::fakehub::HubConfig;
use bds_tests::generator::REPLAY_CASES;
use bds_tests::harness::pg;
use bds_tests::reliability::{FetchScene, assert_oracle, bins, load_command};

fn ledger_rows(client: &mut postgres::Client) -> i64 {
    client
        .query_one("SELECT count(*) FROM bds_ledger", &[])
        .unwrap()
        .get(0)
}

#[test]
fn fetched_archive_loads_to_the_oracle_and_a_second_night_changes_nothing() {
    let scene = FetchScene::local(HubConfig::default(), REPLAY_CASES, 300);
    let db = pg::database();

    let fetch = scene.run(&[]);
    assert_eq!(fetch.status.code(), Some(0), "first fetch");
    let load = load_command(&scene.archive, db.url()).output().unwrap();
    let log = String::from_utf8_lossy(&load.stderr);
    assert_eq!(load.status.code(), Some(0), "first load: {log}");
    let mut client = db.client();
    assert_oracle(&mut client, REPLAY_CASES, &scene.files);
    let applied = ledger_rows(&mut client);
    // The latest full of each data set and the differentials after it.
    assert!(
        applied > REPLAY_CASES.len() as i64,
        "{applied} extracts applied"
    );

    let again = scene.run(&["--json"]);
    assert_eq!(again.status.code(), Some(0), "second fetch");
    let summary: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(
        summary["fetched"], 0,
        "the second fetch downloaded: {summary}"
    );
    let reload = load_command(&scene.archive, db.url()).output().unwrap();
    let log = String::from_utf8_lossy(&reload.stderr);
    assert_eq!(reload.status.code(), Some(0), "second load: {log}");
    assert!(!log.contains("applied"), "the second load applied: {log}");
    assert_eq!(ledger_rows(&mut client), applied);
    assert_oracle(&mut client, REPLAY_CASES, &scene.files);

    let status = Command::new(bins::bds_load())
        .args(["status", "--json", "--archive", &scene.archive])
        .args(["--database-url", db.url()])
        .output()
        .unwrap();
    let log = String::from_utf8_lossy(&status.stderr);
    assert_eq!(status.status.code(), Some(0), "status: {log}");
    let status: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    let rows = status.as_array().expect("a list of data sets");
    assert_eq!(rows.len(), REPLAY_CASES.len(), "{status}");
    for row in rows {
        assert_eq!(row["pending"], 0, "{row}");
        assert!(!row["baseline_full"].is_null(), "{row}");
    }
}
