//! Replaying generated histories with the real binary into a throwaway
//! PostgreSQL: the tables must equal the generator's oracle, whatever the
//! order of runs, crashes, `--as-of` and `--rebuild`.

mod support;

use bds_tests::generator::{REPLAY_CASES, assert_table_matches};
use bds_tests::harness::pg;
use support::*;

/// Queued and created times of hand-written extracts: a full, then a
/// differential the next day.
const FULL_AT: (&str, &str) = ("2026-11-22T02:00:00Z", "2026-11-22T02:01:00Z");
const DIFFERENTIAL_AT: (&str, &str) = ("2026-11-23T03:00:00Z", "2026-11-23T03:01:00Z");

fn assert_all_match(client: &mut postgres::Client, history: &[bds_tests::ExtractFile]) {
    for name in REPLAY_CASES {
        let expected = expected(name, history, None);
        assert_table_matches(client, "public", &expected.table, &expected);
    }
}

/// Per table: its relation file and every row's xmin, which change if the
/// table is replaced or any row rewritten.
fn fingerprint(client: &mut postgres::Client) -> Vec<String> {
    let mut out = Vec::new();
    for name in REPLAY_CASES {
        let table = &dataset(name).table;
        let sql = format!(
            "SELECT pg_relation_filenode('public.{table}')::text || ':' || \
             coalesce(string_agg(xmin::text, ',' ORDER BY ctid), '') FROM public.{table}"
        );
        out.push(client.query_one(&sql, &[]).unwrap().get(0));
    }
    let ledger: i64 = client
        .query_one("SELECT count(*) FROM public.bds_ledger", &[])
        .unwrap()
        .get(0);
    out.push(ledger.to_string());
    out
}

#[test]
fn eight_datasets_equal_the_oracle_and_a_second_run_changes_nothing() {
    let work = tempfile::tempdir().unwrap();
    let history = histories(REPLAY_CASES, 400, work.path());
    let mut archive = TestArchive::new();
    archive.add(&history);
    let db = pg::database();

    let first = load(&archive, db.url(), &["--jobs", "3"]);
    assert_exit(&first, 0);
    let mut client = db.client();
    assert_all_match(&mut client, &history);
    let log = stderr(&first);
    assert!(log.contains("applied"), "{log}");
    assert!(log.contains("extra_notes"), "a column-added warning: {log}");

    let before = fingerprint(&mut client);
    let second = load(&archive, db.url(), &[]);
    assert_exit(&second, 0);
    assert!(!stderr(&second).contains("applied"), "{}", stderr(&second));
    assert_eq!(
        fingerprint(&mut client),
        before,
        "the second run changed something"
    );
}

#[test]
fn incremental_runs_equal_one_run_and_rebuild_equals_both() {
    let work = tempfile::tempdir().unwrap();
    let history = histories(REPLAY_CASES, 300, work.path());
    let db = pg::database();
    let mut archive = TestArchive::new();

    // The archive grows day by day, with a run after each batch.
    let cut = |days: i64| now() - chrono::Duration::days(days);
    let mut previous = None;
    for until in [cut(10), cut(6), cut(2), cut(0)] {
        let batch: Vec<_> = history
            .iter()
            .filter(|f| previous.is_none_or(|p| f.created > p) && f.created <= until)
            .cloned()
            .collect();
        archive.add(&batch);
        previous = Some(until);
        assert_exit(&load(&archive, db.url(), &["--jobs", "2"]), 0);
    }
    let mut client = db.client();
    assert_all_match(&mut client, &history);

    // A column no extract has (as after a major version removed it) goes
    // with --rebuild; the user's own index on a kept column stays.
    client
        .batch_execute(
            "ALTER TABLE users ADD COLUMN legacy_col text; \
             CREATE INDEX users_by_name ON users (user_name)",
        )
        .unwrap();
    let rebuilt = load(&archive, db.url(), &["--rebuild", "-qq"]);
    assert_exit(&rebuilt, 0);
    assert_eq!(stderr(&rebuilt), "", "-qq prints errors only");
    assert_all_match(&mut client, &history);
    let legacy: i64 = client
        .query_one(
            "SELECT count(*) FROM information_schema.columns \
             WHERE table_name = 'users' AND column_name = 'legacy_col'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(legacy, 0, "--rebuild kept a column no extract has");
    let index: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE indexname = 'users_by_name'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(index, 1, "--rebuild lost the user's index");
}

#[test]
fn as_of_gives_the_state_at_that_date_and_back() {
    let work = tempfile::tempdir().unwrap();
    let names = ["Users", "Grade Results"];
    let history = histories(&names, 300, work.path());
    let mut archive = TestArchive::new();
    archive.add(&history);
    let db = pg::database();
    let mut client = db.client();

    let check = |client: &mut postgres::Client, as_of| {
        for name in names {
            let expected = expected(name, &history, as_of);
            assert_table_matches(client, "public", &expected.table, &expected);
        }
    };
    // Mid-week, then the present, then back before the latest full.
    for as_of in ["2026-11-19T12:00:00Z", "", "2026-11-21T00:00:00Z"] {
        let parsed = (!as_of.is_empty()).then(|| as_of.parse().unwrap());
        let args: Vec<&str> = if as_of.is_empty() {
            vec![]
        } else {
            vec!["--as-of", as_of]
        };
        assert_exit(&load(&archive, db.url(), &args), 0);
        check(&mut client, parsed);
    }

    // Before the oldest full the archive cannot tell: each data set fails
    // and keeps what it has, rather than answering for another date.
    let output = load(&archive, db.url(), &["--as-of", "2020-01-01"]);
    assert_exit(&output, 1);
    assert!(stderr(&output).contains("no full extract created at or before 2020-01-01"));
    check(&mut client, Some("2026-11-21T00:00:00Z".parse().unwrap()));
}

#[test]
fn killed_mid_load_then_rerun_equals_the_oracle() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let work = tempfile::tempdir().unwrap();
    let names = ["Users", "Grade Results", "User Enrollments"];
    let history = histories(&names, 20_000, work.path());
    let mut archive = TestArchive::new();
    archive.add(&history);
    let db = pg::database();

    let mut child = Command::new(env!("CARGO_BIN_EXE_bds-load"))
        .args(["--archive", &archive.location(), "--database-url", db.url()])
        .args(["--jobs", "1"])
        .env_remove("RUST_LOG")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut applied = 0;
    for line in BufReader::new(stderr).lines() {
        if line.unwrap().contains("applied") {
            applied += 1;
        }
        // Some extracts are in, the next one is in flight.
        if applied == 3 {
            break;
        }
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(applied >= 3, "the load ended before it could be killed");

    let rerun = load(&archive, db.url(), &[]);
    assert_exit(&rerun, 0);
    let mut client = db.client();
    for name in names {
        let expected = expected(name, &history, None);
        assert_table_matches(&mut client, "public", &expected.table, &expected);
    }
}

/// The generator's ids do not join across data sets, so this test writes
/// small extracts whose ids do, with every documented column in the header.
#[test]
fn d2l_sample_queries_run_and_return_rows() {
    use bds_common::extract::ExtractKind::Full;

    let mut archive = TestArchive::new();
    type Rows<'a> = &'a [&'a [(&'a str, &'a str)]];
    let tables: [(&str, Rows); 5] = [
        (
            "Users",
            &[
                &[
                    ("UserId", "1"),
                    ("UserName", "alice"),
                    ("FirstName", "Alice"),
                    ("LastName", "Ng"),
                ],
                &[
                    ("UserId", "2"),
                    ("UserName", "bob"),
                    ("FirstName", "Bob"),
                    ("LastName", "Li"),
                ],
            ],
        ),
        (
            "Organizational Units",
            &[&[
                ("OrgUnitId", "10"),
                ("Name", "Biology 101"),
                ("Type", "Course Offering"),
            ]],
        ),
        (
            "Grade Objects",
            &[&[
                ("GradeObjectId", "100"),
                ("OrgUnitId", "10"),
                ("Name", "Quiz 1"),
            ]],
        ),
        (
            "Grade Results",
            &[
                &[
                    ("GradeObjectId", "100"),
                    ("OrgUnitId", "10"),
                    ("UserId", "1"),
                    ("PointsNumerator", "7.5"),
                    ("PointsDenominator", "10"),
                ],
                &[
                    ("GradeObjectId", "100"),
                    ("OrgUnitId", "10"),
                    ("UserId", "2"),
                    ("PointsNumerator", "9"),
                    ("PointsDenominator", "10.000"),
                ],
            ],
        ),
        (
            "User Enrollments",
            &[&[
                ("OrgUnitId", "10"),
                ("UserId", "1"),
                ("RoleName", "Student"),
                ("EnrollmentDate", "2026-09-01T08:00:00.1234567Z"),
            ]],
        ),
    ];
    for (name, rows) in tables {
        let csv = csv_with_catalog_header(name, rows);
        archive.add_csv(name, Full, FULL_AT, &csv);
    }
    let db = pg::database();
    assert_exit(&load(&archive, db.url(), &[]), 0);

    // The queries run unchanged, through the simple protocol (text values).
    let mut client = db.client();
    let rows = |client: &mut postgres::Client, sql: &str| -> Vec<Vec<String>> {
        client
            .simple_query(sql)
            .unwrap()
            .into_iter()
            .filter_map(|m| match m {
                postgres::SimpleQueryMessage::Row(r) => Some(
                    (0..r.len())
                        .map(|i| r.get(i).unwrap_or("NULL").to_string())
                        .collect(),
                ),
                _ => None,
            })
            .collect()
    };
    let grades = rows(
        &mut client,
        "SELECT u.user_name, ou.name, go.name,
                ROUND(gr.points_numerator / gr.points_denominator, 2)
         FROM grade_results gr
         JOIN users u ON u.user_id = gr.user_id
         JOIN org_units ou ON ou.org_unit_id = gr.org_unit_id
         JOIN grade_objects go ON go.grade_object_id = gr.grade_object_id
         ORDER BY u.user_name",
    );
    assert_eq!(
        grades,
        [
            ["alice", "Biology 101", "Quiz 1", "0.75"],
            ["bob", "Biology 101", "Quiz 1", "0.90"]
        ]
    );
    let enrollments = rows(
        &mut client,
        "SELECT u.first_name, u.last_name, ou.name, ue.role_name, ue.enrollment_date
         FROM user_enrollments ue
         JOIN users u ON u.user_id = ue.user_id
         JOIN org_units ou ON ou.org_unit_id = ue.org_unit_id",
    );
    assert_eq!(
        enrollments,
        [[
            "Alice",
            "Ng",
            "Biology 101",
            "Student",
            "2026-09-01 08:00:00.123457+00"
        ]]
    );
}

/// A differential that repeats a row as it is leaves that row alone (its
/// xmin stays), rewrites the changed one, adds the new one, and of a key
/// given twice keeps the later row of the file.
#[test]
fn a_differential_rewrites_only_the_rows_it_changes() {
    use bds_common::extract::ExtractKind::{Differential, Full};

    let user = |id: &str, name: &str| -> Vec<(&str, String)> {
        vec![
            ("UserId", id.to_string()),
            ("UserName", name.to_string()),
            ("FirstName", "First".to_string()),
        ]
    };
    let csv = |rows: &[Vec<(&str, String)>]| {
        let rows: Vec<Vec<(&str, &str)>> = rows
            .iter()
            .map(|r| r.iter().map(|(k, v)| (*k, v.as_str())).collect())
            .collect();
        let rows: Vec<&[(&str, &str)]> = rows.iter().map(Vec::as_slice).collect();
        csv_with_catalog_header("Users", &rows)
    };
    let mut archive = TestArchive::new();
    let first = csv(&[user("1", "same"), user("2", "old"), user("3", "kept")]);
    archive.add_csv("Users", Full, FULL_AT, &first);
    let db = pg::database();
    assert_exit(&load(&archive, db.url(), &[]), 0);
    let mut client = db.client();
    let xmins = |client: &mut postgres::Client| -> Vec<(i64, String, String)> {
        client
            .query(
                "SELECT user_id, user_name, xmin::text FROM users ORDER BY user_id",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    };
    let before = xmins(&mut client);

    let changes = csv(&[
        user("1", "same"),
        user("2", "first try"),
        user("4", "new"),
        user("2", "new name"),
    ]);
    archive.add_csv("Users", Differential, DIFFERENTIAL_AT, &changes);
    let run = load(&archive, db.url(), &[]);
    assert_exit(&run, 0);
    let after = xmins(&mut client);

    let names: Vec<(i64, &str)> = after.iter().map(|(id, n, _)| (*id, n.as_str())).collect();
    assert_eq!(
        names,
        [(1, "same"), (2, "new name"), (3, "kept"), (4, "new")]
    );
    assert_eq!(after[0].2, before[0].2, "the unchanged row was rewritten");
    assert_eq!(
        after[2].2, before[2].2,
        "a row not in the differential was rewritten"
    );
    assert_ne!(after[1].2, before[1].2, "the changed row was not rewritten");
}

/// Survey User Answers is keyed by (AttemptId, QuestionId,
/// QuestionVersionId) and QuestionVersionId may be empty. A differential
/// that changes the row whose QuestionVersionId is empty updates that row:
/// NULLs in the key compare equal, so no second row appears.
#[test]
fn a_differential_updates_the_row_whose_nullable_key_column_is_empty() {
    use bds_common::extract::ExtractKind::{Differential, Full};

    let answer = |version: &'static str, comment: &'static str, score: &'static str| {
        vec![
            ("AttemptId", "1"),
            ("QuestionId", "2"),
            ("QuestionVersionId", version),
            ("Comment", comment),
            ("Score", score),
            ("SortOrder", "1"),
            ("Page", "1"),
            ("IsDeleted", "False"),
            ("LastModified", "2026-11-20T10:00:00.000Z"),
            ("LastModifiedBy", "9"),
            ("SurveyTimeCompleted", "2026-11-20T10:00:00.000Z"),
        ]
    };
    let csv = |rows: &[Vec<(&str, &str)>]| {
        let rows: Vec<&[(&str, &str)]> = rows.iter().map(Vec::as_slice).collect();
        csv_with_catalog_header("Survey User Answers", &rows)
    };
    let mut archive = TestArchive::new();
    let first = csv(&[answer("", "before", "1.5"), answer("5", "versioned", "3")]);
    archive.add_csv("Survey User Answers", Full, FULL_AT, &first);
    let changes = csv(&[answer("", "after", "7.5")]);
    archive.add_csv(
        "Survey User Answers",
        Differential,
        DIFFERENTIAL_AT,
        &changes,
    );
    let db = pg::database();
    assert_exit(&load(&archive, db.url(), &[]), 0);

    let rows: Vec<(Option<i64>, String, String)> = db
        .client()
        .query(
            "SELECT question_version_id, comment, score::text FROM survey_user_answers
             WHERE attempt_id = 1 AND question_id = 2 ORDER BY question_version_id NULLS FIRST",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(
        rows,
        [
            (None, "after".to_string(), "7.5".to_string()),
            (Some(5), "versioned".to_string(), "3".to_string()),
        ]
    );
}
