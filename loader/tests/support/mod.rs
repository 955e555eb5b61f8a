//! Shared by the bds-load integration tests: an archive built in-process
//! from generated extracts (as bds-fetch would have archived them), and a
//! wrapper that runs the real `bds-load` binary.

#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use bds_common::archive::Archive;
use bds_common::catalog::{Catalog, Dataset};
use bds_common::extract::ExtractKind;
use bds_common::manifest::{Entry, ExtractRecord};
use bds_tests::ExtractFile;
use bds_tests::generator::{self, ExpectedTable, Options};
use chrono::{DateTime, Utc};

/// A local archive in a temporary folder.
pub struct TestArchive {
    dir: tempfile::TempDir,
    archive: Archive,
    runtime: tokio::runtime::Runtime,
    segments: usize,
}

impl TestArchive {
    pub fn new() -> TestArchive {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path().to_str().unwrap()).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        TestArchive {
            dir,
            archive,
            runtime,
            segments: 0,
        }
    }

    /// Location to give `--archive`.
    pub fn location(&self) -> String {
        self.dir.path().to_str().unwrap().to_string()
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// Archives generated extracts and records them in a new manifest
    /// segment.
    pub fn add(&mut self, files: &[ExtractFile]) {
        let records: Vec<ExtractRecord> = files
            .iter()
            .map(|f| self.publish(f, &std::fs::read(&f.path).unwrap()))
            .collect();
        self.write_segment(&records);
    }

    /// Archives `zip` as the extract `like` describes (its path is ignored):
    /// for extracts made by hand, good or bad.
    pub fn add_bytes(&mut self, like: &ExtractFile, zip: &[u8]) -> ExtractRecord {
        let record = self.publish(like, zip);
        self.write_segment(std::slice::from_ref(&record));
        record
    }

    /// Archives `csv` zipped as an extract of data set `name` queued and
    /// created at the given RFC 3339 times: for hand-written rows.
    pub fn add_csv(
        &mut self,
        name: &str,
        kind: ExtractKind,
        (queued, created): (&str, &str),
        csv: &str,
    ) -> ExtractRecord {
        let like = extract_like(name, kind, queued, created, PathBuf::from("unused"));
        self.add_bytes(&like, &zip_of(&[(&like.csv_entry, csv.as_bytes())]))
    }

    fn publish(&self, file: &ExtractFile, zip: &[u8]) -> ExtractRecord {
        let spool = self
            .archive
            .spool_dir()
            .unwrap()
            .join(format!("t{}", fastrand_name()));
        std::fs::write(&spool, zip).unwrap();
        let mut record = file.record(0);
        self.runtime
            .block_on(self.archive.publish_file(&record.key, &spool))
            .unwrap();
        // The zip may be made by hand: describe what was archived.
        (record.sha256, record.size) =
            bds_common::hash::sha256_file(&self.root().join(&record.key)).unwrap();
        record
    }

    /// Writes one manifest segment holding `records`.
    pub fn write_segment(&mut self, records: &[ExtractRecord]) {
        self.segments += 1;
        let mut text = String::new();
        for r in records {
            text.push_str(&serde_json::to_string(&Entry::Extract(r.clone())).unwrap());
            text.push('\n');
        }
        let key = format!("manifest/20260101T000000Z-test{:04}.jsonl", self.segments);
        self.runtime
            .block_on(self.archive.put_overwrite(&key, text.into()))
            .unwrap();
    }

    /// Replaces the archived object at `key` (to simulate corruption).
    pub fn overwrite_object(&self, key: &str, bytes: &[u8]) {
        std::fs::write(self.root().join(key), bytes).unwrap();
    }
}

fn fastrand_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The catalog entry of a data set.
pub fn dataset(name: &str) -> &'static Dataset {
    Catalog::builtin()
        .find(name)
        .unwrap_or_else(|| panic!("{name} is in the catalog"))
}

/// The reference time of the generated histories.
pub fn now() -> DateTime<Utc> {
    "2026-11-25T12:00:00Z".parse().unwrap()
}

/// Generates the histories of `names` (small, with every feature on).
pub fn histories(names: &[&str], rows: u64, out: &Path) -> Vec<ExtractFile> {
    let mut all = Vec::new();
    for name in names {
        let mut options = Options::new(7, now());
        options.rows = rows;
        all.extend(generator::generate(dataset(name), &options, out).unwrap());
    }
    all.sort_by_key(|f| (f.queued, f.created));
    all
}

/// The oracle of one data set.
pub fn expected(
    name: &str,
    history: &[ExtractFile],
    as_of: Option<DateTime<Utc>>,
) -> ExpectedTable {
    generator::oracle(dataset(name), history, as_of)
}

/// Runs `bds-load` with `args`; `BDS_*`/`DATABASE_URL` from the caller's
/// environment are cleared so tests see only what they pass.
pub fn bds_load(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bds-load"))
        .args(args)
        .env_remove("BDS_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .env_remove("BDS_ARCHIVE")
        .env_remove("BDS_SCHEMA")
        .env_remove("RUST_LOG")
        .output()
        .expect("run bds-load")
}

/// Runs a load of `archive` into `url`, with extra arguments.
pub fn load(archive: &TestArchive, url: &str, extra: &[&str]) -> Output {
    let location = archive.location();
    let mut args = vec!["--archive", &location, "--database-url", url];
    args.extend_from_slice(extra);
    bds_load(&args)
}

/// Standard error of a run, as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Panics with the log unless the run exited with `code`.
pub fn assert_exit(output: &Output, code: i32) {
    assert_eq!(
        output.status.code(),
        Some(code),
        "bds-load exited {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        stderr(output)
    );
}

/// An extract description for a hand-made zip.
pub fn extract_like(
    name: &str,
    kind: ExtractKind,
    queued: &str,
    created: &str,
    path: PathBuf,
) -> ExtractFile {
    let d = dataset(name);
    let plugin = match kind {
        ExtractKind::Full => d.full_plugin.clone(),
        ExtractKind::Differential => d.differential_plugin.clone(),
    };
    ExtractFile {
        dataset: d.name.clone(),
        schema_id: d.schema_id.clone().unwrap(),
        plugin_id: plugin.unwrap(),
        kind,
        queued: queued.parse().unwrap(),
        created: created.parse().unwrap(),
        version: "9.10".into(),
        path,
        size: 0,
        sha256: String::new(),
        csv_entry: generator::csv_entry_name(d),
    }
}

/// A zip holding `entries` (name, bytes), deflated.
pub fn zip_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    use std::io::Write;
    let mut cursor = std::io::Cursor::new(Vec::new());
    {
        let mut w = zip::ZipWriter::new(&mut cursor);
        for (name, data) in entries {
            w.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap();
    }
    cursor.into_inner()
}

/// The rows of `schema.table` as text, sorted, for "unchanged" checks.
pub fn snapshot(client: &mut postgres::Client, schema: &str, table: &str) -> Vec<String> {
    let sql = format!("SELECT t::text FROM \"{schema}\".\"{table}\" t ORDER BY 1");
    client
        .query(&sql, &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

/// A CSV as D2L writes it (BOM, CRLF) with every catalog header of `name`,
/// the given values and empty fields elsewhere.
pub fn csv_with_catalog_header(name: &str, rows: &[&[(&str, &str)]]) -> String {
    let headers: Vec<&str> = dataset(name)
        .columns
        .iter()
        .map(|c| c.header.as_str())
        .collect();
    let mut csv = format!("\u{feff}{}\r\n", headers.join(","));
    for row in rows {
        let fields: Vec<&str> = headers
            .iter()
            .map(|h| row.iter().find(|(k, _)| k == h).map_or("", |(_, v)| *v))
            .collect();
        csv.push_str(&fields.join(","));
        csv.push_str("\r\n");
    }
    csv
}
