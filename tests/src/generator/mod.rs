//! Deterministic, streaming generator of realistic extract histories, and
//! the oracle: the table contents a correct replay of them must produce.
//!
//! ```no_run
//! use bds_common::catalog::Catalog;
//! use bds_tests::generator::{self, Options};
//!
//! let users = Catalog::builtin().find("Users").unwrap();
//! let now = "2026-11-18T12:00:00Z".parse().unwrap();
//! let out = tempfile::tempdir().unwrap();
//! let history = generator::generate(users, &Options::new(42, now), out.path()).unwrap();
//! let expected = generator::oracle(users, &history, None);
//! // ...load `history` with bds-load, then:
//! // generator::assert_table_matches(&mut client, "public", "users", &expected);
//! ```
//!
//! A history has weekly fulls (Sundays, queued 02:00 UTC) and daily
//! differentials (queued 03:00 UTC), each created 20 to 90 seconds after it
//! was queued, ending at [`Options::now`]. Differentials carry inserts,
//! updates and soft deletes (`IsDeleted` = True where the data set has that
//! column), some keys twice (an outdated row first, the true one later);
//! hard deletes show only in the next full. From
//! [`Options::version_change`] on, extracts are version 9.11 and carry an
//! appended `ExtraNotes` column. Data sets without a key get fulls only.
//!
//! Rows are never held in memory: each is computed from the seed, its
//! entity number and the day (see `world`), and written straight into the
//! zip, so 5 million rows take the same memory as 5 thousand.

use std::path::{Path, PathBuf};

use bds_common::catalog::{Catalog, Column, Dataset};
use bds_common::extract::ExtractKind;
use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use fastrand::Rng;
use thiserror::Error;

use crate::ExtractFile;

mod oracle;
mod values;
mod world;
mod writer;

pub use oracle::{ExpectedTable, Row, assert_table_matches, normalize, oracle};

use values::{EventClock, RowState, RowWriter};
use world::{Rates, World, mix};
use writer::CsvZip;

/// BDS version before and after the minor version change.
pub const VERSION_BEFORE: &str = "9.10";
/// BDS version from [`Options::version_change`] on.
pub const VERSION_AFTER: &str = "9.11";
/// Header of the column the minor version change appends.
pub const EXTRA_COLUMN: &str = "ExtraNotes";

/// Data sets whose generated histories hold every case a replay must get
/// right: composite keys (Grade Results, User Enrollments), a timestamp in
/// the key (Accommodations Profile Log), a nullable key column (Survey User
/// Answers), soft deletes (Organizational Units, Grade Objects), hard
/// deletes and duplicate keys in differentials (every keyed set), a keyless
/// set (Question Relationships), and the minor version adding a column
/// (every set, four days before the end).
pub const REPLAY_CASES: &[&str] = &[
    "Users",
    "Organizational Units",
    "Grade Objects",
    "Grade Results",
    "User Enrollments",
    "Survey User Answers",
    "Accommodations Profile Log",
    "Question Relationships",
];

/// Errors of the generator.
#[derive(Debug, Error)]
pub enum GeneratorError {
    /// A file could not be written or read.
    #[error("{path}: i/o error")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The zip library failed.
    #[error("{path}: zip error")]
    Zip {
        /// The zip being written.
        path: PathBuf,
        /// The cause.
        #[source]
        source: zip::result::ZipError,
    },
    /// A history description could not be read or written.
    #[error("{path}: invalid history description")]
    Json {
        /// The JSON file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// What history to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Same seed, same options: byte-identical zips.
    pub seed: u64,
    /// The history ends here: no extract is created after it.
    pub now: DateTime<Utc>,
    /// Weeks of history before the latest Sunday: `weeks + 1` fulls.
    pub weeks: u32,
    /// Rows in the first full.
    pub rows: u64,
    /// Per day, as a share of `rows`: new rows.
    pub inserts: f64,
    /// Per day and row: chance of an update.
    pub updates: f64,
    /// Per day and row: chance of a hard delete (roughly).
    pub hard_deletes: f64,
    /// Per day and row: chance of a soft delete, where the data set has
    /// `IsDeleted` (roughly).
    pub soft_deletes: f64,
    /// Per differential row: chance it also appears earlier in an outdated
    /// form.
    pub duplicates: f64,
    /// Extracts queued from here on are [`VERSION_AFTER`] with the
    /// [`EXTRA_COLUMN`] appended. `None`: no version change.
    pub version_change: Option<DateTime<Utc>>,
}

impl Options {
    /// Two weeks of history of 1,000 rows, 2% inserts, 3% updates, 0.5%
    /// hard and soft deletes a day, 5% duplicated differential rows, and a
    /// minor version change 4 days before `now`.
    pub fn new(seed: u64, now: DateTime<Utc>) -> Options {
        Options {
            seed,
            now,
            weeks: 2,
            rows: 1_000,
            inserts: 0.02,
            updates: 0.03,
            hard_deletes: 0.005,
            soft_deletes: 0.005,
            duplicates: 0.05,
            version_change: Some(now - Duration::days(4)),
        }
    }
}

/// Writes the history of `dataset` into `out_dir` (one zip per extract,
/// named like D2L's downloads) and returns it ordered by queued time.
///
/// Data sets the catalog knows no columns of get two text columns `Id` and
/// `Name` and no key.
pub fn generate(
    dataset: &Dataset,
    options: &Options,
    out_dir: &Path,
) -> Result<Vec<ExtractFile>, GeneratorError> {
    let dataset = with_fallback_columns(dataset);
    let seed = options.seed ^ mix(name_hash(&dataset.name));
    let first_full = first_full(options);
    let rates = Rates {
        inserts: options.inserts,
        updates: options.updates,
        hard_deletes: options.hard_deletes,
        soft_deletes: options.soft_deletes,
        duplicates: options.duplicates,
    };
    let soft = dataset.columns.iter().any(|c| c.header == "IsDeleted");
    let world = World::new(seed, options.rows, rates, dataset.log_style, soft);
    let clock = EventClock {
        start: first_full.timestamp() * 10_000_000,
        initial: world.initial(),
        inserts_per_day: world.inserts_per_day(),
    };
    let job = Job {
        rows: RowWriter::new(&dataset, seed, clock),
        world,
        dataset: &dataset,
        seed,
        out_dir: out_dir.join(&dataset.table),
    };
    std::fs::create_dir_all(&job.out_dir).map_err(|source| GeneratorError::Io {
        path: job.out_dir.clone(),
        source,
    })?;

    schedule(&dataset, options, first_full, seed)
        .into_iter()
        .map(|slot| job.write(slot, options))
        .collect()
}

/// A demo archive's worth of history for every current data set: a few
/// thousand rows each, two weeks, a version change 4 days before `now`.
/// Runs on two threads. Returns every extract, ordered by queued time.
pub fn demo(
    out_dir: &Path,
    seed: u64,
    now: DateTime<Utc>,
) -> Result<Vec<ExtractFile>, GeneratorError> {
    let datasets: Vec<&Dataset> = Catalog::builtin().current().collect();
    let halves: Vec<Result<Vec<ExtractFile>, GeneratorError>> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..2)
            .map(|half| {
                let datasets = &datasets;
                scope.spawn(move || {
                    let mut files = Vec::new();
                    for dataset in datasets.iter().skip(half).step_by(2) {
                        let mut options = Options::new(seed, now);
                        options.rows = 1_000 + mix(seed ^ name_hash(&dataset.name)) % 3_000;
                        files.extend(generate(dataset, &options, out_dir)?);
                    }
                    Ok(files)
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("demo worker"))
            .collect()
    });
    let mut files = Vec::new();
    for half in halves {
        files.extend(half?);
    }
    files.sort_by(|a, b| (a.queued, &a.dataset).cmp(&(b.queued, &b.dataset)));
    Ok(files)
}

/// A benchmark history of one data set: a full of `rows` rows (Sunday
/// 2026-03-01) and the next day's differential changing 5% of them (1%
/// inserts, 4% updates, a few duplicated keys).
pub fn benchmark(
    dataset: &Dataset,
    rows: u64,
    seed: u64,
    out_dir: &Path,
) -> Result<Vec<ExtractFile>, GeneratorError> {
    let now = Utc.with_ymd_and_hms(2026, 3, 2, 4, 0, 0).unwrap();
    let options = Options {
        weeks: 0,
        rows,
        inserts: 0.01,
        updates: 0.04,
        hard_deletes: 0.0,
        soft_deletes: 0.0,
        duplicates: 0.001,
        version_change: None,
        ..Options::new(seed, now)
    };
    generate(dataset, &options, out_dir)
}

/// Writes a history as JSON (a list of [`ExtractFile`]), e.g. the `hub.json`
/// the fake Data Hub binary serves from.
pub fn write_history(path: &Path, history: &[ExtractFile]) -> Result<(), GeneratorError> {
    let json = serde_json::to_vec_pretty(history).map_err(|source| GeneratorError::Json {
        path: path.into(),
        source,
    })?;
    std::fs::write(path, json).map_err(|source| GeneratorError::Io {
        path: path.into(),
        source,
    })
}

/// Reads a history written by [`write_history`].
pub fn read_history(path: &Path) -> Result<Vec<ExtractFile>, GeneratorError> {
    let json = std::fs::read(path).map_err(|source| GeneratorError::Io {
        path: path.into(),
        source,
    })?;
    serde_json::from_slice(&json).map_err(|source| GeneratorError::Json {
        path: path.into(),
        source,
    })
}

/// The CSV name D2L gives a data set: its name without spaces, `.csv`.
pub fn csv_entry_name(dataset: &Dataset) -> String {
    format!("{}.csv", dataset.name.replace(' ', ""))
}

/// One extract to write.
#[derive(Debug, Clone, Copy)]
struct Slot {
    day: u32,
    kind: ExtractKind,
    queued: DateTime<Utc>,
    created: DateTime<Utc>,
}

/// Everything needed to write the extracts of one data set.
struct Job<'a> {
    dataset: &'a Dataset,
    world: World,
    rows: RowWriter,
    seed: u64,
    out_dir: PathBuf,
}

impl Job<'_> {
    fn write(&self, slot: Slot, options: &Options) -> Result<ExtractFile, GeneratorError> {
        let extra = options.version_change.is_some_and(|t| slot.queued >= t);
        let path = self.out_dir.join(format!(
            "{}_{}_{}.zip",
            self.dataset.name.replace(' ', ""),
            if slot.kind == ExtractKind::Full {
                "Full"
            } else {
                "Differential"
            },
            slot.queued.format("%Y%m%d%H%M%S")
        ));
        let mut header: Vec<&str> = self
            .dataset
            .columns
            .iter()
            .map(|c| c.header.as_str())
            .collect();
        if extra {
            header.push(EXTRA_COLUMN);
        }
        let entry = csv_entry_name(self.dataset);
        let huge = self.world.capacity(slot.day) > 20_000_000;
        let mut zip = CsvZip::create(&path, &entry, &header, huge)?;

        match slot.kind {
            ExtractKind::Full => self.write_full(&mut zip, slot.day, extra)?,
            ExtractKind::Differential => self.write_differential(&mut zip, slot.day, extra)?,
        }
        let (sha256, size) = zip.finish()?;
        Ok(ExtractFile {
            dataset: self.dataset.name.clone(),
            schema_id: self.identity(self.dataset.schema_id.as_deref(), "schema"),
            plugin_id: match slot.kind {
                ExtractKind::Full => self.identity(self.dataset.full_plugin.as_deref(), "full"),
                ExtractKind::Differential => {
                    self.identity(self.dataset.differential_plugin.as_deref(), "differential")
                }
            },
            kind: slot.kind,
            queued: slot.queued,
            created: slot.created,
            version: if extra { VERSION_AFTER } else { VERSION_BEFORE }.to_string(),
            path,
            size,
            sha256,
            csv_entry: entry,
        })
    }

    fn write_full(&self, zip: &mut CsvZip, day: u32, extra: bool) -> Result<(), GeneratorError> {
        for entity in 0..self.world.capacity(day) {
            if self.world.alive(entity, day) {
                self.rows
                    .write(&mut zip.line, self.state(entity, day, false), extra);
                zip.flush_if_full()?;
            }
        }
        Ok(())
    }

    /// Outdated copies of the duplicated rows first, then every changed row:
    /// the later row is the truth.
    fn write_differential(
        &self,
        zip: &mut CsvZip,
        day: u32,
        extra: bool,
    ) -> Result<(), GeneratorError> {
        for stale in [true, false] {
            for entity in self.world.differential_candidates(day) {
                if !self.world.in_differential(entity, day)
                    || stale && !self.world.duplicated(entity, day)
                {
                    continue;
                }
                self.rows
                    .write(&mut zip.line, self.state(entity, day, stale), extra);
                zip.flush_if_full()?;
            }
        }
        Ok(())
    }

    fn state(&self, entity: u64, day: u32, stale: bool) -> RowState {
        RowState {
            entity,
            revision: self.world.revision(entity, day),
            soft_deleted_on: self.world.soft_deleted_on(entity).filter(|&d| d <= day),
            stale,
        }
    }

    /// The catalog's GUID, or a stable made-up one for data sets the
    /// reference lists without it.
    fn identity(&self, known: Option<&str>, what: &str) -> String {
        match known {
            Some(id) => id.to_string(),
            None => {
                let high = mix(self.seed ^ name_hash(what));
                let low = mix(name_hash(&self.dataset.name) ^ name_hash(what));
                let hex = format!("{high:016x}{low:016x}");
                format!(
                    "{}-{}-{}-{}-{}",
                    &hex[0..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..32]
                )
            }
        }
    }
}

/// The Sunday 02:00 UTC `weeks` weeks before the latest Sunday full
/// created by `now`.
fn first_full(options: &Options) -> DateTime<Utc> {
    let latest_possible = options.now - Duration::seconds(90);
    let date = latest_possible.date_naive();
    let back = i64::from(date.weekday().num_days_from_sunday());
    let mut sunday =
        Utc.from_utc_datetime(&(date - Duration::days(back)).and_hms_opt(2, 0, 0).unwrap());
    if sunday > latest_possible {
        sunday -= Duration::days(7);
    }
    sunday - Duration::weeks(i64::from(options.weeks))
}

/// Every extract of the history: a full each Sunday (day 0, 7, ...), a
/// differential each later day (none for data sets without a key), all
/// created by `now`.
fn schedule(
    dataset: &Dataset,
    options: &Options,
    first_full: DateTime<Utc>,
    seed: u64,
) -> Vec<Slot> {
    let days = (options.now - first_full).num_days().max(0) as u32;
    let mut slots = Vec::new();
    for day in 0..=days {
        let midnight = first_full + Duration::days(i64::from(day)) - Duration::hours(2);
        if day % 7 == 0 {
            slots.push(slot(
                day,
                ExtractKind::Full,
                midnight + Duration::hours(2),
                seed,
            ));
        }
        if day > 0 && dataset.has_key() {
            slots.push(slot(
                day,
                ExtractKind::Differential,
                midnight + Duration::hours(3),
                seed,
            ));
        }
    }
    slots.retain(|s| s.created <= options.now);
    slots
}

fn slot(day: u32, kind: ExtractKind, queued: DateTime<Utc>, seed: u64) -> Slot {
    let mut rng = Rng::with_seed(mix(seed ^ (u64::from(day) << 2 | kind as u64)));
    let processing = Duration::seconds(rng.i64(20..90)) + Duration::milliseconds(rng.i64(0..1000));
    Slot {
        day,
        kind,
        queued,
        created: queued + processing,
    }
}

/// The data set itself, or for one without documented columns a stand-in
/// with two text columns and no key.
fn with_fallback_columns(dataset: &Dataset) -> Dataset {
    let mut dataset = dataset.clone();
    if dataset.columns.is_empty() {
        dataset.key.clear();
        dataset.columns = ["Id", "Name"]
            .into_iter()
            .map(|header| Column {
                header: header.into(),
                column: bds_common::catalog::snake_case(header),
                pg_type: "text".into(),
                key: false,
                nullable: header == "Name",
            })
            .collect();
    }
    dataset
}

/// FNV-1a: a stable hash of a name (std's hasher may change between
/// releases, which would change generated histories).
fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}
