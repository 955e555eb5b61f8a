//! The catalog's DDL against a real PostgreSQL: every entry's DDL
//! applies, a generated extract of every current data set loads without a
//! type error and equals the oracle, and the naming rule gives the columns
//! D2L's sample queries use.

mod support;

use bds_common::catalog::Catalog;
use bds_tests::generator::{self, Options, assert_table_matches};
use bds_tests::harness::pg;
use support::*;

#[test]
fn every_catalog_entrys_ddl_applies() {
    let output = bds_load(&["schema", "--schema", "bds_review"]);
    assert_exit(&output, 0);
    let ddl = String::from_utf8(output.stdout).unwrap();
    let db = pg::database();
    let mut client = db.client();
    client.batch_execute(&ddl).unwrap();

    let tables: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_tables WHERE schemaname = 'bds_review'",
            &[],
        )
        .unwrap()
        .get(0);
    let documented = Catalog::builtin()
        .datasets
        .iter()
        .filter(|d| !d.columns.is_empty())
        .count() as i64;
    assert_eq!(
        tables,
        documented + 1,
        "every documented data set and the ledger"
    );

    // A DBA may rerun it.
    client.batch_execute(&ddl).unwrap();
}

#[test]
fn schema_of_one_dataset_is_printed_alone() {
    let output = bds_load(&["schema", "--dataset", "Survey User Answers"]);
    assert_exit(&output, 0);
    let ddl = String::from_utf8(output.stdout).unwrap();
    assert!(ddl.contains("CREATE TABLE IF NOT EXISTS \"public\".\"survey_user_answers\""));
    assert!(ddl.contains("NULLS NOT DISTINCT"), "{ddl}");
    assert!(!ddl.contains("\"users\""), "{ddl}");

    let unknown = bds_load(&["schema", "--dataset", "No Such Thing"]);
    assert_exit(&unknown, 2);
    assert!(
        !stderr(&unknown).contains("did you mean"),
        "{}",
        stderr(&unknown)
    );

    let typo = bds_load(&["schema", "--dataset", "Usres"]);
    assert_exit(&typo, 2);
    assert!(
        stderr(&typo).contains(r#"did you mean "Users"?"#),
        "{}",
        stderr(&typo)
    );
}

#[test]
fn a_generated_extract_loads_for_every_current_dataset() {
    let work = tempfile::tempdir().unwrap();
    let mut history = Vec::new();
    let current: Vec<_> = Catalog::builtin().current().collect();
    for dataset in &current {
        let mut options = Options::new(11, now());
        options.weeks = 0;
        options.rows = 40;
        options.version_change = Some(now() - chrono::Duration::days(1));
        history.extend(generator::generate(dataset, &options, work.path()).unwrap());
    }
    let mut archive = TestArchive::new();
    archive.add(&history);
    let db = pg::database();

    let run = load(&archive, db.url(), &["--jobs", "2", "-q"]);
    assert_exit(&run, 0);
    let mut client = db.client();
    for dataset in current {
        let expected = generator::oracle(dataset, &history, None);
        assert_table_matches(&mut client, "public", &expected.table, &expected);
    }
}

#[test]
fn naming_rule_meets_the_sample_query_columns() {
    let wanted: &[(&str, &str, &[&str])] = &[
        (
            "Grade Results",
            "grade_results",
            &[
                "user_id",
                "org_unit_id",
                "grade_object_id",
                "points_numerator",
                "points_denominator",
            ],
        ),
        (
            "Users",
            "users",
            &["user_id", "user_name", "first_name", "last_name"],
        ),
        (
            "Organizational Units",
            "org_units",
            &["org_unit_id", "name"],
        ),
        (
            "Grade Objects",
            "grade_objects",
            &["grade_object_id", "name"],
        ),
        (
            "User Enrollments",
            "user_enrollments",
            &["user_id", "org_unit_id", "role_name", "enrollment_date"],
        ),
    ];
    let catalog = Catalog::builtin();
    for (name, table, columns) in wanted {
        let dataset = catalog.find(name).unwrap();
        assert_eq!(&dataset.table, table);
        for column in *columns {
            let found = dataset.columns.iter().find(|c| &c.column == column);
            let found = found.unwrap_or_else(|| panic!("{name} lacks {column}"));
            if column.starts_with("points_") {
                assert_eq!(found.pg_type, "numeric", "ROUND(a / b, 2) needs numeric");
            }
            if column.ends_with("_id") {
                assert_eq!(found.pg_type, "bigint", "joins stay cast-free");
            }
        }
    }
}
