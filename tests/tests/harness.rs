//! The service harness starts real PostgreSQL and S3 servers, isolates
//! tests from each other, and the archive works against the S3 server.

use bds_common::archive::{ArchiveError, ObjectInfo};
use bds_tests::harness::{pg, s3};

#[test]
fn postgres_round_trips_rows() {
    let db = pg::database();
    let mut client = db.client();

    client
        .batch_execute(
            "create table t (id bigint primary key, name text, at timestamptz);
             insert into t values (1, 'Zoë, \"quoted\"', '2026-01-02T03:04:05.123456Z'),
                                  (2, null, null);",
        )
        .unwrap();
    let rows = client
        .query("select id, name, at::text from t order by id", &[])
        .unwrap();

    assert_eq!(rows.len(), 2);
    assert_eq!(
        rows[0].get::<_, Option<String>>(1).unwrap(),
        "Zoë, \"quoted\""
    );
    assert_eq!(
        rows[0].get::<_, Option<String>>(2).unwrap(),
        "2026-01-02 03:04:05.123456+00"
    );
    assert_eq!(rows[1].get::<_, Option<String>>(1), None);
}

#[test]
fn databases_are_isolated_and_dropped() {
    let first = pg::database();
    let second = pg::database();
    assert_ne!(first.name(), second.name());

    first
        .client()
        .batch_execute("create table only_here (x int)")
        .unwrap();
    let seen_in_second = second
        .client()
        .query_one("select to_regclass('only_here') is not null", &[])
        .unwrap()
        .get::<_, bool>(0);
    assert!(!seen_in_second);

    let name = first.name().to_string();
    drop(first);
    let still_there = second
        .client()
        .query_one(
            "select count(*) from pg_database where datname = $1",
            &[&name],
        )
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(still_there, 0);
}

#[test]
fn conninfo_and_url_reach_the_same_database() {
    let db = pg::database();
    let mut by_conninfo = postgres::Client::connect(db.conninfo(), postgres::NoTls).unwrap();
    let name: String = by_conninfo
        .query_one("select current_database()", &[])
        .unwrap()
        .get(0);
    assert_eq!(name, db.name());

    let psql = pg::binary("psql");
    let output = std::process::Command::new(psql)
        .args(["-XAtc", "select current_database()", db.url()])
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), db.name());
}

#[tokio::test]
async fn harness_works_from_async_tests() {
    let db = pg::database();
    let url = db.url().to_string();
    let answer = tokio::task::spawn_blocking(move || {
        let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
        client
            .query_one("select 41 + 1", &[])
            .unwrap()
            .get::<_, i32>(0)
    })
    .await
    .unwrap();
    assert_eq!(answer, 42);

    let bucket = s3::bucket();
    bucket
        .archive()
        .put_overwrite("hello.txt", "hi".into())
        .await
        .unwrap();
    drop(db);
}

#[tokio::test]
async fn s3_archive_round_trip_is_write_once() {
    let bucket = s3::bucket();
    let archive = bucket.archive();
    let spool = tempfile::tempdir().unwrap();
    let key = "extracts/users/full/users_full_1.zip";

    let first = spool.path().join("first");
    std::fs::write(&first, b"first body").unwrap();
    archive.publish_file(key, &first).await.unwrap();

    let second = spool.path().join("second");
    std::fs::write(&second, b"second body").unwrap();
    let err = archive.publish_file(key, &second).await.unwrap_err();
    assert!(
        matches!(err, ArchiveError::AlreadyExists { .. }),
        "the S3 server must honour If-None-Match: {err:?}"
    );

    let listed = archive.list("extracts").await.unwrap();
    assert_eq!(
        listed,
        vec![ObjectInfo {
            key: key.into(),
            size: 10
        }]
    );

    let dest = spool.path().join("copy");
    let (sha256, size) = archive.get_to_file(key, &dest).await.unwrap();
    assert_eq!(size, 10);
    let expected = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"first body"));
    assert_eq!(sha256, expected);
    assert_eq!(std::fs::read(&dest).unwrap(), b"first body");
    assert_eq!(archive.exists("nope").await.unwrap(), None);
}

#[tokio::test]
async fn buckets_are_isolated_and_prefixes_work() {
    let one = s3::bucket();
    let two = s3::bucket();
    assert_ne!(one.name, two.name);

    one.archive_at("tenant/a")
        .put_overwrite("x", "1".into())
        .await
        .unwrap();
    assert!(two.archive().list("tenant").await.unwrap().is_empty());
    let keys: Vec<String> = one
        .archive()
        .list("tenant")
        .await
        .unwrap()
        .into_iter()
        .map(|o| o.key)
        .collect();
    assert_eq!(keys, ["tenant/a/x"]);
    assert!(
        one.env
            .iter()
            .any(|(k, v)| k == "AWS_ENDPOINT_URL" && v == s3::server())
    );
}

/// Started by `services_stop_when_the_test_process_ends` in a process of
/// its own: starts both services, prints where they are, and exits.
#[test]
#[ignore = "the child process of services_stop_when_the_test_process_ends"]
fn child_starts_both_services_and_exits() {
    let db = pg::database();
    let cluster = pg::ca_file().expect("a throwaway cluster");
    let port = db
        .url()
        .rsplit(':')
        .next()
        .unwrap()
        .split('/')
        .next()
        .unwrap();
    println!("pg_port={port}");
    println!("pg_dir={}", cluster.parent().unwrap().display());
    let endpoint = s3::server();
    println!("s3_port={}", endpoint.rsplit(':').next().unwrap());
    // Leaves without dropping anything, as a killed test process would.
    std::process::exit(0);
}

/// When a test process ends, its watchdogs stop PostgreSQL and the S3
/// server and remove the cluster's folder.
#[test]
fn services_stop_when_the_test_process_ends() {
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "child_starts_both_services_and_exits"])
        .args(["--ignored", "--nocapture", "--test-threads", "1"])
        .env_remove(pg::DATABASE_URL_VAR)
        .env_remove("BDS_TEST_S3_ENDPOINT")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "child: {stdout}");
    let field = |name: &str| {
        stdout
            .lines()
            .find_map(|l| l.split_once(&format!("{name}=")).map(|(_, value)| value))
            .unwrap_or_else(|| panic!("child printed no {name}: {stdout}"))
            .to_string()
    };
    let (pg_port, s3_port) = (field("pg_port"), field("s3_port"));
    let pg_dir = std::path::PathBuf::from(field("pg_dir"));

    let listening = |port: &str| TcpStream::connect(format!("127.0.0.1:{port}")).is_ok();
    let deadline = Instant::now() + Duration::from_secs(60);
    while (listening(&pg_port) || listening(&s3_port) || pg_dir.exists())
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(
        !listening(&pg_port),
        "PostgreSQL still listens on {pg_port}"
    );
    assert!(
        !listening(&s3_port),
        "the S3 server still listens on {s3_port}"
    );
    assert!(!pg_dir.exists(), "{} is still there", pg_dir.display());
}
