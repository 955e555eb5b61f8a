//! The crash matrix: `bds-fetch` and `bds-load` killed with
//! SIGKILL at chosen points and in a sweep of increasing delays, then rerun.
//! After every kill the archive holds no partial object and the manifest
//! points only at whole ones, the token file holds a token the hub accepts,
//! and every table equals the oracle at the last extract its ledger
//! records; after the final rerun `verify` is clean and the database equals
//! the oracle.
//!
//! Each test prints `crash points tried: N` (see the README's Reliability
//! section for the figures).

use std::process::Child;
use std::time::{Duration, Instant};

use bds_common::catalog::Catalog;
use bds_tests::fakehub::{Fault, FaultKind, FaultTarget, HubConfig, RouteClass};
use bds_tests::generator::{self, Options};
use bds_tests::harness::{pg, s3};
use bds_tests::reliability::proxy::{Action, Proxy};
use bds_tests::reliability::{FetchScene, assert_oracle, load_command, now, write_private};
use bds_tests::{ExtractFile, reliability};

const FETCH_SETS: &[&str] = &["Users", "Organizational Units"];

fn wait_for(what: &str, limit: Duration, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn kill(mut child: Child) {
    child.kill().expect("SIGKILL the tool");
    child.wait().expect("reap the tool");
}

/// The token file holds a token the hub will still exchange.
fn assert_token_usable(scene: &FetchScene) {
    let token = scene.token();
    assert!(
        scene.hub.refresh_token_is_valid(&token),
        "the token file holds a spent or unknown token"
    );
}

fn slow(target: FaultTarget, bytes_per_sec: u64) -> Fault {
    Fault::once(target, FaultKind::SlowBody { bytes_per_sec }).times(10_000)
}

/// Killed while the token request is in flight (held by a proxy before the
/// auth host answers), right after the new token was written, and in the
/// middle of downloads: each time the token file still works and the
/// archive is sound; the last run completes it and it loads to the oracle.
#[test]
fn fetch_killed_around_the_token_and_downloads_then_rerun_completes() {
    let mut scene = FetchScene::local(HubConfig::default(), FETCH_SETS, 300);
    let auth = Proxy::start(scene.hub.auth_url());
    scene.auth_url = Some(auth.url().to_string());
    let mut points = 0;

    // 1. The token request is in flight.
    auth.set_rule(|_| Action::Hold);
    let before = scene.token();
    let child = scene.spawn(&[]);
    wait_for("the token request", Duration::from_secs(30), || {
        auth.held() > 0
    });
    kill(child);
    auth.release();
    assert_eq!(scene.token(), before, "the token file was touched");
    assert_token_usable(&scene);
    points += 1;

    // 2. Right after the rotation, while the listing trickles.
    scene
        .hub
        .inject(slow(FaultTarget::Route(RouteClass::List), 200));
    let before = scene.token();
    let child = scene.spawn(&[]);
    wait_for("the rotation", Duration::from_secs(30), || {
        scene.token() != before
    });
    kill(child);
    assert_token_usable(&scene);
    scene.assert_sound();
    scene.hub.clear_faults();
    points += 1;

    // 3. In the middle of downloads (several at once).
    scene
        .hub
        .inject(slow(FaultTarget::Route(RouteClass::Storage), 20_000));
    for wait in [Duration::from_millis(150), Duration::from_millis(900)] {
        let child = scene.spawn(&["--concurrency", "3"]);
        wait_for("a download", Duration::from_secs(30), || {
            !scene.hub.storage_requests().is_empty()
        });
        std::thread::sleep(wait);
        kill(child);
        scene.hub.clear_requests();
        assert_token_usable(&scene);
        scene.assert_sound();
        points += 1;
    }
    scene.hub.clear_faults();

    let rerun = scene.run(&[]);
    assert_eq!(rerun.status.code(), Some(0));
    scene.assert_complete();
    assert_token_usable(&scene);
    load_and_compare(&scene.archive, &scene.files);
    eprintln!("crash points tried: {points}");
}

/// Loads an archive with `bds-load` and compares every table with the
/// oracle of the extracts served.
fn load_and_compare(archive: &str, files: &[ExtractFile]) {
    let db = pg::database();
    let output = load_command(archive, db.url()).output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert_oracle(&mut db.client(), FETCH_SETS, files);
}

/// The token answer trickles in and the run is killed before it has it:
/// the hub has rotated the token, which the client never saw. No client can
/// avoid that (the answer is lost); what must hold is that the token file is
/// never truncated or half-written, and the next run says clearly what to do.
#[test]
fn fetch_killed_while_the_token_answer_arrives_keeps_the_file_whole() {
    let scene = FetchScene::local(HubConfig::default(), &["Users"], 50);
    scene
        .hub
        .inject(slow(FaultTarget::Route(RouteClass::Token), 20));
    let before = scene.token();
    let child = scene.spawn(&[]);
    wait_for("the token request", Duration::from_secs(30), || {
        !scene.hub.auth_requests().is_empty()
    });
    std::thread::sleep(Duration::from_millis(300));
    kill(child);
    scene.hub.clear_faults();

    assert_eq!(scene.token(), before, "the token file must stay whole");
    if scene.hub.refresh_token_is_valid(&before) {
        assert_eq!(scene.run(&[]).status.code(), Some(0));
    } else {
        let rerun = scene.run(&[]);
        assert_eq!(rerun.status.code(), Some(2));
        let log = String::from_utf8_lossy(&rerun.stderr);
        assert!(log.contains("Get a new refresh token"), "{log}");
        // The operator's fix: a new token, and the run completes.
        write_private(&scene.token_file, &scene.hub.issue_refresh_token());
        assert_eq!(scene.run(&[]).status.code(), Some(0));
    }
    scene.assert_complete();
    eprintln!("crash points tried: 1");
}

/// S3 archive: the manifest write is held by a proxy in front of the S3
/// server, so the run dies between publishing an extract and recording it.
/// The object is whole but unlisted; `verify` says so; the rerun adopts it.
#[test]
fn fetch_killed_between_publish_and_manifest_write_on_s3() {
    let bucket = s3::bucket();
    let proxy = Proxy::start(s3::server());
    let mut env = bucket.env.clone();
    for (name, value) in &mut env {
        if name == "AWS_ENDPOINT_URL" {
            *value = proxy.url().to_string();
        }
    }
    let dir = tempfile::TempDir::new().unwrap();
    let scene = FetchScene::with_archive(
        HubConfig::default(),
        dir,
        FETCH_SETS,
        100,
        bucket.location("bds"),
        env,
    );
    let mut points = 0;
    for round in 0..3 {
        // Hold the manifest write of the (round+1)-th extract published.
        let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counter = seen.clone();
        proxy.set_rule(move |r| {
            let manifest = r.method == "PUT" && r.path.contains("/manifest/");
            let n = counter.fetch_add(usize::from(manifest), std::sync::atomic::Ordering::SeqCst);
            match manifest && n >= round {
                true => Action::Hold,
                false => Action::Forward,
            }
        });
        let child = scene.spawn(&["--concurrency", "1"]);
        wait_for("a held manifest write", Duration::from_secs(60), || {
            proxy.held() > 0
        });
        kill(child);
        proxy.release();
        let (objects, records) = scene.assert_sound();
        assert!(objects > records, "an object published but not recorded");
        let verify = scene.run(&["verify"]);
        assert_eq!(verify.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&verify.stdout).contains("unlisted"));
        assert_token_usable(&scene);
        points += 1;
    }
    let rerun = scene.run(&["--json"]);
    assert_eq!(rerun.status.code(), Some(0));
    let summary: serde_json::Value = serde_json::from_slice(&rerun.stdout).unwrap();
    assert!(summary["adopted"].as_u64().unwrap() >= 1, "{summary}");
    scene.assert_complete();
    eprintln!("crash points tried: {points}");
}

/// A sweep: the run is killed at increasing delays after its token
/// rotation until one run finishes by itself; every kill leaves a sound
/// archive and a usable token.
#[test]
fn fetch_killed_at_increasing_delays() {
    let scene = FetchScene::local(HubConfig::default(), FETCH_SETS, 300);
    scene
        .hub
        .inject(slow(FaultTarget::Route(RouteClass::Storage), 40_000));
    let mut points = 0;
    let mut delay = Duration::from_millis(20);
    loop {
        let before = scene.token();
        let mut child = scene.spawn(&[]);
        wait_for("the rotation", Duration::from_secs(30), || {
            scene.token() != before
        });
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_some() {
            break;
        }
        kill(child);
        scene.assert_sound();
        assert_token_usable(&scene);
        points += 1;
        delay += Duration::from_millis(60);
        assert!(points < 40, "the run never finished");
    }
    scene.hub.clear_faults();
    assert_eq!(scene.run(&[]).status.code(), Some(0));
    scene.assert_complete();
    assert!(points >= 5, "only {points} crash points");
    eprintln!("crash points tried: {points}");
}

/// What the loader is doing, from `pg_stat_activity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    FullCopy,
    StageCopy,
    Upsert,
    LedgerInsert,
}

impl Phase {
    fn of(query: &str) -> Option<Phase> {
        if query.starts_with("COPY") && !query.contains("bds_stage") {
            Some(Phase::FullCopy)
        } else if query.starts_with("COPY bds_stage") {
            Some(Phase::StageCopy)
        } else if query.contains("ON CONFLICT") {
            Some(Phase::Upsert)
        } else if query.contains("INSERT INTO") && query.contains("bds_ledger") {
            Some(Phase::LedgerInsert)
        } else {
            None
        }
    }
}

fn load_history(dir: &std::path::Path) -> Vec<ExtractFile> {
    let mut files = Vec::new();
    for name in LOAD_SETS {
        let dataset = Catalog::builtin().find(name).unwrap();
        let mut options = Options::new(5, now());
        options.weeks = 1;
        options.rows = 15_000;
        options.updates = 0.5;
        files.extend(generator::generate(dataset, &options, dir).unwrap());
    }
    files
}

const LOAD_SETS: &[&str] = &["Users", "Grade Results"];

/// After a kill: every table equals the oracle at the last extract its
/// ledger records (or does not exist yet), and no half-built table is left.
fn assert_atomic(client: &mut postgres::Client, history: &[ExtractFile]) {
    for name in LOAD_SETS {
        let dataset = Catalog::builtin().find(name).unwrap();
        let last: Option<chrono::DateTime<chrono::Utc>> = client
            .query_opt(
                "SELECT created FROM bds_ledger WHERE table_name = $1 ORDER BY id DESC LIMIT 1",
                &[&dataset.table],
            )
            .ok()
            .flatten()
            .map(|row| row.get(0));
        match last {
            Some(as_of) => {
                let expected = generator::oracle(dataset, history, Some(as_of));
                generator::assert_table_matches(client, "public", &dataset.table, &expected);
            }
            None => {
                let exists: Option<String> = client
                    .query_one("SELECT to_regclass($1)::text", &[&dataset.table])
                    .unwrap()
                    .get(0);
                assert!(
                    exists.is_none(),
                    "{} exists with no ledger row",
                    dataset.table
                );
            }
        }
    }
    let leftovers: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_class WHERE relname LIKE 'bds\\_new\\_%'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(leftovers, 0, "a half-built table survived the kill");
}

/// How often the database is polled in successive attempts at a phase: a
/// phase of a millisecond missed at one rhythm may be caught at another.
const POLL_INTERVALS: [Duration; 6] = [
    Duration::from_millis(1),
    Duration::ZERO,
    Duration::from_micros(300),
    Duration::from_millis(2),
    Duration::ZERO,
    Duration::from_micros(100),
];

/// Kills a load as soon as the database shows `phase`. The first attempt
/// resumes where the last kill left off, or rebuilds if `rebuild`; when a
/// load ends before the phase shows, the next attempt rebuilds (so every
/// phase comes again) and polls at another interval. Returns the number of
/// attempts, or `None` when every interval missed the phase.
fn kill_at_phase(
    archive: &str,
    db: &pg::TestDatabase,
    monitor: &mut postgres::Client,
    phase: Phase,
    rebuild: bool,
) -> Option<usize> {
    for (attempt, poll) in POLL_INTERVALS.into_iter().enumerate() {
        if attempt_kill(archive, db, monitor, phase, rebuild || attempt > 0, poll) {
            return Some(attempt + 1);
        }
        eprintln!("{phase:?} missed polling every {poll:?}: trying again");
    }
    None
}

/// One load, killed when the database shows `phase`; false when the load
/// ended first.
fn attempt_kill(
    archive: &str,
    db: &pg::TestDatabase,
    monitor: &mut postgres::Client,
    phase: Phase,
    rebuild: bool,
    poll: Duration,
) -> bool {
    let mut command = load_command(archive, db.url());
    command.args(["--jobs", "1"]);
    if rebuild {
        command.arg("--rebuild");
    }
    let mut child = command
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let sql = "SELECT query FROM pg_stat_activity \
               WHERE datname = $1 AND state = 'active' AND pid <> pg_backend_pid()";
    loop {
        if child.try_wait().unwrap().is_some() {
            return false;
        }
        let rows = monitor.query(sql, &[&db.name()]).unwrap();
        if rows
            .iter()
            .any(|r| Phase::of(r.get::<_, &str>(0).trim_start()) == Some(phase))
        {
            kill(child);
            return true;
        }
        // Leaves the cores to the load and the server, or only yields.
        match poll.is_zero() {
            true => std::thread::yield_now(),
            false => std::thread::sleep(poll),
        }
    }
}

/// bds-load killed during the COPY of a full, the COPY of a differential's
/// staging table, the upsert, and the ledger insert just before commit, in
/// a load and in a rebuild, each phase at least once per round; then in a
/// sweep of increasing delays. After each kill every table is atomic (see
/// `assert_atomic`); the final run equals the oracle and a further run
/// changes nothing.
#[test]
fn load_killed_during_copy_upsert_and_commit_then_rerun_equals_the_oracle() {
    let work = tempfile::tempdir().unwrap();
    let history = load_history(work.path());
    let scene_dir = tempfile::TempDir::new().unwrap();
    let archive = scene_dir.path().join("archive");
    reliability::archive_files(&archive, &history, "crash");
    let archive = archive.display().to_string();
    let db = pg::database();
    let mut monitor = db.client();
    let mut points = 0;

    let phases = [
        Phase::FullCopy,
        Phase::StageCopy,
        Phase::Upsert,
        Phase::LedgerInsert,
    ];
    // Round 0 resumes a plain load after each kill, round 1 rebuilds.
    for round in 0..2 {
        for phase in phases {
            let rebuild = round == 1;
            let attempts = kill_at_phase(&archive, &db, &mut monitor, phase, rebuild)
                .unwrap_or_else(|| {
                    panic!(
                        "round {round}: no load was killed during {phase:?} in {} attempts \
                         polling at {POLL_INTERVALS:?}",
                        POLL_INTERVALS.len()
                    )
                });
            eprintln!("round {round}: killed during {phase:?} (attempt {attempts})");
            points += 1;
            assert_atomic(&mut monitor, &history);
        }
    }

    // A sweep of delays over a rebuild, resumed by plain runs.
    let mut delay = Duration::from_millis(40);
    for _ in 0..6 {
        let mut child = load_command(&archive, db.url())
            .args(["--jobs", "1", "--rebuild"])
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        if child.try_wait().unwrap().is_some() {
            break;
        }
        kill(child);
        assert_atomic(&mut monitor, &history);
        points += 1;
        delay *= 2;
    }

    let rerun = load_command(&archive, db.url()).output().unwrap();
    assert_eq!(rerun.status.code(), Some(0));
    assert_oracle(&mut monitor, LOAD_SETS, &history);
    let ledger = |c: &mut postgres::Client| -> i64 {
        c.query_one("SELECT count(*) FROM bds_ledger", &[])
            .unwrap()
            .get(0)
    };
    let before = ledger(&mut monitor);
    let again = load_command(&archive, db.url()).output().unwrap();
    assert_eq!(again.status.code(), Some(0));
    assert_eq!(
        ledger(&mut monitor),
        before,
        "a further run changed nothing"
    );
    assert!(points >= 6, "only {points} crash points");
    eprintln!("crash points tried: {points}");
}
