//! A rough, hand-run throughput check: bds-load's full load and differential
//! apply of a generated benchmark history, next to `psql \copy (FORMAT csv)`
//! of the same CSV into the same table. Prints the figures; asserts only that
//! everything ran. `bench/run` does this properly.
//!
//! ```text
//! BDS_BENCH_ROWS=1000000 cargo test -p bds-load --release --test throughput -- --ignored --nocapture
//! ```

mod support;

use std::io::Read;
use std::process::Command;
use std::time::Instant;

use bds_tests::generator;
use bds_tests::harness::pg;
use support::*;

fn seconds_of_applied(log: &str, kind: &str) -> f64 {
    log.lines()
        .filter(|l| l.contains(&format!("Users {kind} extract")) && l.contains("applied"))
        .filter_map(|l| l.split("seconds=").nth(1))
        .filter_map(|s| s.split_whitespace().next())
        .filter_map(|s| {
            s.trim_matches(|c: char| !c.is_ascii_digit() && c != '.')
                .parse::<f64>()
                .ok()
        })
        .sum()
}

#[test]
#[ignore = "benchmark: run by hand with --ignored --nocapture (see the file header)"]
fn full_and_differential_throughput_against_psql_copy() {
    let rows: u64 = std::env::var("BDS_BENCH_ROWS")
        .ok()
        .and_then(|r| r.parse::<u64>().ok())
        .unwrap_or(300_000);
    let work = tempfile::tempdir().unwrap();
    let history = generator::benchmark(dataset("Users"), rows, 1, work.path()).unwrap();
    let mut archive = TestArchive::new();
    archive.add(&history);
    let db = pg::database();

    let started = Instant::now();
    let run = load(&archive, db.url(), &["--dataset", "Users"]);
    let wall = started.elapsed().as_secs_f64();
    assert_exit(&run, 0);
    let log = stderr(&run);
    let full = seconds_of_applied(&log, "full");
    let differential = seconds_of_applied(&log, "differential");

    // The same CSV through psql, into the same table definition.
    let csv_path = work.path().join("users.csv");
    let mut zip = zip::ZipArchive::new(std::fs::File::open(&history[0].path).unwrap()).unwrap();
    let mut csv = Vec::new();
    zip.by_index(0).unwrap().read_to_end(&mut csv).unwrap();
    std::fs::write(&csv_path, &csv).unwrap();
    let ddl = bds_load(&["schema", "--dataset", "Users", "--schema", "psql_copy"]);
    let mut client = db.client();
    client
        .batch_execute(&String::from_utf8(ddl.stdout).unwrap())
        .unwrap();
    let copy = format!(
        "\\copy psql_copy.users FROM '{}' (FORMAT csv, HEADER)",
        csv_path.display()
    );
    let started = Instant::now();
    let psql = Command::new(pg::binary("psql"))
        .args([db.url(), "-v", "ON_ERROR_STOP=1", "-c", &copy])
        .output()
        .unwrap();
    let psql_seconds = started.elapsed().as_secs_f64();
    assert!(
        psql.status.success(),
        "{}",
        String::from_utf8_lossy(&psql.stderr)
    );

    // Peak memory of a rebuild (full and differential again), when GNU time
    // is installed.
    let location = archive.location();
    let rss = Command::new("/usr/bin/time")
        .args([
            "-f",
            "%M",
            env!("CARGO_BIN_EXE_bds-load"),
            "--archive",
            &location,
        ])
        .args(["--database-url", db.url(), "--rebuild", "-q"])
        .output()
        .ok()
        .and_then(|o| {
            let text = String::from_utf8_lossy(&o.stderr).into_owned();
            text.lines()
                .last()
                .and_then(|l| l.trim().parse::<u64>().ok())
        });
    eprintln!("bds-load peak RSS of a rebuild: {rss:?} KiB");

    let mb = csv.len() as f64 / 1e6;
    eprintln!(
        "rows {rows}, CSV {mb:.1} MB\n\
         bds-load full: {full:.2} s ({:.0} rows/s, {:.1} MB/s)\n\
         psql \\copy csv into the keyed table: {psql_seconds:.2} s ({:.0} rows/s); \
         ratio {:.2}x\n\
         bds-load differential: {differential:.2} s\n\
         bds-load wall time (both): {wall:.2} s",
        rows as f64 / full,
        mb / full,
        rows as f64 / psql_seconds,
        psql_seconds / full
    );
}
