//! Property tests: random extract histories, archived in random
//! batches and replayed by the real `bds-load` with random crashes
//! (SIGKILL at a random delay) between its runs, must leave every table
//! equal to the oracle.
//!
//! CI runs 16 cases per property (about 10 seconds). For more:
//! `PROPTEST_CASES=500 cargo test -p bds-tests --test properties`. A failing
//! case is saved in `tests/tests/properties.proptest-regressions` and replayed
//! first by later runs; commit that file with the fix.

use std::path::Path;
use std::time::Duration;

use bds_common::catalog::{Catalog, Dataset};
use bds_common::extract::ExtractKind;
use bds_tests::ExtractFile;
use bds_tests::generator::{self, Options};
use bds_tests::harness::pg;
use bds_tests::reliability::{self, archive_files, load_command, now};
use chrono::Duration as Days;
use proptest::prelude::*;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16)
}

fn dataset(name: &str) -> &'static Dataset {
    Catalog::builtin().find(name).unwrap()
}

/// Archives `history` in `batches` (cut by created time) and runs bds-load
/// after each, killing the run first at a random delay when the coin says
/// so; a last clean run; then every table must equal the oracle.
fn replay_with_crashes(history: &[ExtractFile], names: &[&str], batches: usize, seed: u64) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let root = tempfile::tempdir().unwrap();
    let location = root.path().display().to_string();
    let db = pg::database();
    let mut sorted: Vec<ExtractFile> = history.to_vec();
    sorted.sort_by_key(|f| f.created);
    let size = sorted.len().div_ceil(batches.max(1));

    for (i, batch) in sorted.chunks(size.max(1)).enumerate() {
        archive_files(root.path(), batch, &format!("batch{i}"));
        if rng.bool() {
            let mut child = load_command(&location, db.url())
                .arg("--jobs")
                .arg(rng.usize(1..=3).to_string())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap();
            std::thread::sleep(Duration::from_millis(rng.u64(0..400)));
            let _ = child.kill();
            child.wait().unwrap();
        }
        let run = load_command(&location, db.url()).output().unwrap();
        // A batch of differentials before any full fails its data set
        // (exit 1) until a full arrives; anything else is a bug.
        assert!(
            matches!(run.status.code(), Some(0 | 1)),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
    let last = load_command(&location, db.url()).output().unwrap();
    assert_eq!(
        last.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&last.stderr)
    );
    reliability::assert_oracle(&mut db.client(), names, history);
}

const GENERATED: &[&str] = &[
    "Users",
    "Grade Results",
    "Accommodations Profile Log",
    "Question Relationships",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    /// The generator's histories with random sizes and rates of inserts,
    /// updates, hard and soft deletes, duplicate keys, a column added at a
    /// random day, for a random subset of data sets (composite keys, a
    /// timestamp in a key, no key).
    #[test]
    fn generated_histories_replay_to_the_oracle(
        seed in any::<u64>(),
        picks in proptest::sample::subsequence(GENERATED.to_vec(), 1..=3),
        weeks in 0u32..=2,
        rows in 1u64..300,
        updates in 0.0f64..0.5,
        hard_deletes in 0.0f64..0.1,
        soft_deletes in 0.0f64..0.1,
        duplicates in 0.0f64..0.5,
        version_day in proptest::option::of(0i64..20),
        batches in 1usize..5,
    ) {
        let work = tempfile::tempdir().unwrap();
        let mut history = Vec::new();
        for name in &picks {
            let options = Options {
                weeks,
                rows,
                updates,
                hard_deletes,
                soft_deletes,
                duplicates,
                version_change: version_day.map(|d| now() - Days::days(d)),
                ..Options::new(seed, now())
            };
            history.extend(generator::generate(dataset(name), &options, work.path()).unwrap());
        }
        replay_with_crashes(&history, &picks, batches, seed);
    }

    /// Hand-rolled Users histories the generator would never write: a tiny
    /// key space (every differential updates, re-inserts and repeats keys),
    /// fulls that drop random keys, columns in a random order with random
    /// header case, extra columns that come and go, quoted fields holding
    /// commas, quotes and line breaks, NULLs, 7-digit fractions, LF or CRLF.
    #[test]
    fn random_users_histories_replay_to_the_oracle(
        seed in any::<u64>(),
        extracts in 2usize..9,
        keys in 1u64..25,
        batches in 1usize..4,
    ) {
        let work = tempfile::tempdir().unwrap();
        let history = random_users_history(work.path(), seed, extracts, keys);
        replay_with_crashes(&history, &["Users"], batches, seed);
    }
}

/// The columns the random Users extracts use (others stay NULL).
const USER_COLUMNS: &[&str] = &[
    "UserId",
    "UserName",
    "FirstName",
    "IsActive",
    "SignupDate",
    "OrgRoleId",
];

fn random_users_history(dir: &Path, seed: u64, extracts: usize, keys: u64) -> Vec<ExtractFile> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let start = now() - Days::days(extracts as i64 + 1);
    (0..extracts)
        .map(|day| {
            let kind = match day == 0 || rng.u8(..5) == 0 {
                true => ExtractKind::Full,
                false => ExtractKind::Differential,
            };
            let queued = start + Days::days(day as i64) + Days::hours(3);
            let csv = random_csv(&mut rng, kind, keys);
            reliability::hand_extract(dir, "Users", kind, queued, "Users.csv", &csv)
        })
        .collect()
}

fn random_csv(rng: &mut fastrand::Rng, kind: ExtractKind, keys: u64) -> Vec<u8> {
    let mut headers: Vec<String> = USER_COLUMNS.iter().map(|h| h.to_string()).collect();
    if rng.bool() {
        headers.push(format!("Extra{}", rng.u8(0..3)));
    }
    rng.shuffle(&mut headers);
    let headers: Vec<String> = headers
        .into_iter()
        .map(|h| match rng.u8(..4) {
            0 => h.to_ascii_uppercase(),
            1 => h.to_ascii_lowercase(),
            _ => h,
        })
        .collect();
    let crlf = rng.bool();
    let end = if crlf { "\r\n" } else { "\n" };
    let mut out = format!("\u{feff}{}{end}", headers.join(","));
    let ids: Vec<u64> = match kind {
        ExtractKind::Full => (0..keys).filter(|_| rng.u8(..4) != 0).collect(),
        ExtractKind::Differential => (0..rng.u64(0..keys * 2))
            .map(|_| rng.u64(0..keys))
            .collect(),
    };
    for id in ids {
        let fields: Vec<String> = headers
            .iter()
            .map(|h| value(rng, &h.to_ascii_lowercase(), id))
            .collect();
        out.push_str(&fields.join(","));
        out.push_str(end);
    }
    out.into_bytes()
}

fn value(rng: &mut fastrand::Rng, header: &str, id: u64) -> String {
    if header != "userid" && rng.u8(..6) == 0 {
        return String::new();
    }
    match header {
        "userid" => id.to_string(),
        "isactive" => ["True", "False", "true", "0", "1"][rng.usize(..5)].to_string(),
        "signupdate" => {
            let t = now() - Days::seconds(rng.i64(0..10_000_000));
            match rng.bool() {
                true => format!(
                    "{}.{:07}Z",
                    t.format("%Y-%m-%dT%H:%M:%S"),
                    rng.u32(..10_000_000)
                ),
                false => t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(),
            }
        }
        "orgroleid" => rng.i64(-5..100_000).to_string(),
        _ => text(rng),
    }
}

/// Text that needs quoting now and then.
fn text(rng: &mut fastrand::Rng) -> String {
    let pieces = ["a", "Zoë", ",", "\"", "\r\n", "\n", " ", "名前", "x y"];
    let body: String = (0..rng.usize(1..8))
        .map(|_| pieces[rng.usize(..pieces.len())])
        .collect();
    format!("\"{}\"", body.replace('"', "\"\""))
}
