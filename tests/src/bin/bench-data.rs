//! `bds-bench-data`: the data side of the benchmark script (`bench/run`).
//! Generates benchmark extracts and multi-week histories with the data
//! generator, writes a large stored zip for the fetch benchmark, files
//! extracts into a local archive as bds-fetch would have, and times our own
//! sha256 and CRC-checked inflate for comparison with `sha256sum` and
//! `unzip -p`.
//!
//! Every subcommand prints what it made as tab-separated lines on stdout, for
//! the script to read; progress goes to stderr.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use bds_common::archive::Archive;
use bds_common::catalog::{Catalog, Dataset};
use bds_common::extract::ExtractKind;
use bds_common::manifest::{Entry, ExtractRecord, ManifestWriter};
use bds_common::verify::{Limits, inspect_zip, verify_zip};
use bds_tests::ExtractFile;
use bds_tests::fakehub::manifest;
use bds_tests::generator::{self, Options};
use chrono::{DateTime, Duration, TimeZone, Utc};
use clap::{Parser, Subcommand};

/// Data for the benchmark script: extracts, archives and throughput probes.
///
/// Exit codes: 0 done, 2 error.
#[derive(Debug, Parser)]
#[command(name = "bds-bench-data", version)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A full of --rows rows and the next day's differential changing 5% of
    /// them, into OUT/{table}/, described by OUT/hub.json. Prints
    /// `kind<TAB>zip` per extract.
    Extracts {
        #[arg(long)]
        dataset: String,
        #[arg(long)]
        rows: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// A history of weekly fulls and daily differentials ending on a
    /// Saturday (six differentials after the latest full), --weeks weeks
    /// before the latest full, described by OUT/hub.json.
    History {
        #[arg(long)]
        dataset: String,
        #[arg(long)]
        rows: u64,
        #[arg(long)]
        weeks: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Files the extracts of HUB/hub.json into a local archive (hard links)
    /// with a new manifest segment, as bds-fetch would have.
    Archive {
        #[arg(long)]
        hub: PathBuf,
        #[arg(long)]
        archive: PathBuf,
        /// Only extracts of this kind.
        #[arg(long, value_parser = parse_kind)]
        kind: Option<ExtractKind>,
        /// Only the latest full and what was created after it.
        #[arg(long)]
        since_latest_full: bool,
    },
    /// A Users full of about --bytes bytes stored (not deflated) in a zip,
    /// described by OUT/hub.json: the fetch benchmark's large download.
    BigZip {
        #[arg(long)]
        bytes: u64,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// sha256 of a file as bds-fetch and bds-load compute it. Prints
    /// `sha256<TAB>bytes<TAB>seconds`.
    Sha256 { file: PathBuf },
    /// Every entry of a zip inflated and CRC-checked as bds-fetch verifies a
    /// download. Prints `uncompressed bytes<TAB>seconds`.
    Inflate { zip: PathBuf },
}

fn parse_kind(text: &str) -> Result<ExtractKind, String> {
    match text {
        "full" => Ok(ExtractKind::Full),
        "differential" => Ok(ExtractKind::Differential),
        other => Err(format!("{other:?}: expected full or differential")),
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Extracts {
            dataset,
            rows,
            seed,
            out,
        } => {
            let dataset = find(&dataset)?;
            let files = generator::benchmark(dataset, rows, seed, &out)
                .with_context(|| format!("cannot generate {}", dataset.name))?;
            describe(&out, &files)
        }
        Command::History {
            dataset,
            rows,
            weeks,
            seed,
            out,
        } => history(find(&dataset)?, rows, weeks, seed, &out),
        Command::Archive {
            hub,
            archive,
            kind,
            since_latest_full,
        } => file_into_archive(&hub, &archive, kind, since_latest_full),
        Command::BigZip { bytes, seed, out } => big_zip(bytes, seed, &out),
        Command::Sha256 { file } => {
            let started = Instant::now();
            let (sha256, bytes) = bds_common::hash::sha256_file(&file)
                .with_context(|| format!("cannot read {}", file.display()))?;
            println!("{sha256}\t{bytes}\t{:.3}", started.elapsed().as_secs_f64());
            Ok(())
        }
        Command::Inflate { zip } => {
            let started = Instant::now();
            let summary = verify_zip(&zip, Limits::default())
                .with_context(|| format!("cannot verify {}", zip.display()))?;
            let seconds = started.elapsed().as_secs_f64();
            println!("{}\t{seconds:.3}", summary.uncompressed_size);
            Ok(())
        }
    }
}

fn find(name: &str) -> Result<&'static Dataset> {
    Catalog::builtin()
        .find(name)
        .with_context(|| format!("no data set {name:?} in the catalog"))
}

/// Writes OUT/hub.json and prints `kind<TAB>zip` per extract.
fn describe(out: &Path, files: &[ExtractFile]) -> Result<()> {
    manifest::write(out, files).context("cannot write hub.json")?;
    for file in files {
        let kind = match file.kind {
            ExtractKind::Full => "full",
            ExtractKind::Differential => "differential",
        };
        println!("{kind}\t{}", file.path.display());
    }
    Ok(())
}

/// Ends Saturday 2026-03-07 at noon: the latest full is Sunday 2026-03-01,
/// followed by six differentials. Small daily change so that eight weeks
/// stay close to the first full's size.
fn history(dataset: &Dataset, rows: u64, weeks: u32, seed: u64, out: &Path) -> Result<()> {
    let now = Utc.with_ymd_and_hms(2026, 3, 7, 12, 0, 0).unwrap();
    let options = Options {
        weeks,
        rows,
        inserts: 0.002,
        updates: 0.02,
        hard_deletes: 0.001,
        soft_deletes: 0.001,
        duplicates: 0.01,
        version_change: None,
        ..Options::new(seed, now)
    };
    let files = generator::generate(dataset, &options, out)
        .with_context(|| format!("cannot generate the history of {}", dataset.name))?;
    describe(out, &files)
}

/// Hard-links the chosen extracts of a hub directory into a local archive
/// and records them in one new manifest segment.
fn file_into_archive(
    hub: &Path,
    archive_dir: &Path,
    kind: Option<ExtractKind>,
    since_latest_full: bool,
) -> Result<()> {
    let mut files = manifest::read(hub).context("cannot read hub.json")?;
    files.retain(|f| kind.is_none_or(|k| f.kind == k));
    if since_latest_full {
        let latest = files
            .iter()
            .filter(|f| f.kind == ExtractKind::Full)
            .map(|f| f.created)
            .max()
            .context("no full in hub.json")?;
        files.retain(|f| f.created >= latest);
    }
    let location = archive_dir.to_str().context("archive path is not UTF-8")?;
    let archive = Archive::open(location).context("cannot open the archive")?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let started = Utc::now();
    let run_id = format!("bench{}", started.timestamp_nanos_opt().unwrap_or_default());
    let mut writer = ManifestWriter::new(archive.clone(), started, &run_id);
    for file in &files {
        let record = runtime.block_on(publish(&archive, file))?;
        runtime
            .block_on(writer.append(&Entry::Extract(record.clone())))
            .context("cannot write the manifest")?;
        println!("{}\t{}", record.key, record.size);
    }
    Ok(())
}

async fn publish(archive: &Archive, file: &ExtractFile) -> Result<ExtractRecord> {
    let (_, summary) = inspect_zip(&file.path, Limits::default())
        .with_context(|| format!("{} is not a valid extract", file.path.display()))?;
    let record = file.record(summary.uncompressed_size);
    let spool = archive
        .spool_dir()?
        .join(format!("bench-{}", fastrand::u64(..)));
    std::fs::hard_link(&file.path, &spool)
        .with_context(|| format!("cannot link {} into the archive", file.path.display()))?;
    archive
        .publish_file(&record.key, &spool)
        .await
        .with_context(|| format!("cannot publish {}", record.key))?;
    Ok(record)
}

/// A stored zip is as large on the wire as the CSV, so a 2 GiB download is
/// written in seconds instead of the minutes deflate would take.
fn big_zip(bytes: u64, seed: u64, out: &Path) -> Result<()> {
    let dataset = find("Users")?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let path = out.join("Users_Full_big.zip");
    let entry = generator::csv_entry_name(dataset);
    write_stored_csv(&path, &entry, dataset, bytes, seed)?;

    let (sha256, size) = bds_common::hash::sha256_file(&path)?;
    let queued: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 3, 8, 2, 0, 0).unwrap();
    let file = ExtractFile {
        dataset: dataset.name.clone(),
        schema_id: dataset
            .schema_id
            .clone()
            .context("Users has no schema id")?,
        plugin_id: dataset.full_plugin.clone().context("Users has no plugin")?,
        kind: ExtractKind::Full,
        queued,
        created: queued + Duration::seconds(61),
        version: generator::VERSION_BEFORE.into(),
        path,
        size,
        sha256,
        csv_entry: entry,
    };
    describe(out, &[file])
}

fn write_stored_csv(
    path: &Path,
    entry: &str,
    dataset: &Dataset,
    bytes: u64,
    seed: u64,
) -> Result<()> {
    let file = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut zip = zip::ZipWriter::new(BufWriter::with_capacity(1 << 20, file));
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(bytes >= (4 << 30) - (64 << 20));
    zip.start_file(entry, options)?;

    let header: Vec<&str> = dataset.columns.iter().map(|c| c.header.as_str()).collect();
    let mut buffer = Vec::with_capacity(1 << 20);
    buffer.extend_from_slice("\u{feff}".as_bytes());
    buffer.extend_from_slice(header.join(",").as_bytes());
    buffer.extend_from_slice(b"\r\n");
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut written = 0u64;
    let mut row = 0u64;
    while written < bytes {
        while buffer.len() < (1 << 20) {
            row += 1;
            write_row(&mut buffer, dataset, row, &mut rng);
        }
        zip.write_all(&buffer)?;
        written += buffer.len() as u64;
        buffer.clear();
    }
    zip.finish()?.flush()?;
    if written == 0 {
        bail!("--bytes must be positive");
    }
    eprintln!("{}: {row} rows, {written} bytes", path.display());
    Ok(())
}

/// One CSV row with a plausible value for each column's type.
fn write_row(out: &mut Vec<u8>, dataset: &Dataset, row: u64, rng: &mut fastrand::Rng) {
    for (index, column) in dataset.columns.iter().enumerate() {
        if index > 0 {
            out.push(b',');
        }
        let _ = match column.pg_type.as_str() {
            "bigint" if column.key => write!(out, "{row}"),
            "bigint" => write!(out, "{}", rng.u32(..)),
            "boolean" => write!(out, "{}", if rng.bool() { "True" } else { "False" }),
            "timestamptz" => write!(
                out,
                "2026-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
                rng.u8(1..13),
                rng.u8(1..29),
                rng.u8(0..24),
                rng.u8(0..60),
                rng.u8(0..60),
                rng.u16(0..1000)
            ),
            _ => write!(out, "{:016x}", rng.u64(..)),
        };
    }
    out.extend_from_slice(b"\r\n");
}
