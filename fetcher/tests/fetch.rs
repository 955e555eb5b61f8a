//! Acceptance tests of bds-fetch: the real binary against the
//! in-process fake Data Hub, archiving into a local folder and into an S3
//! bucket on moto.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use bds_common::archive::Archive;
use bds_common::catalog::Catalog;
use bds_common::extract::ExtractKind;
use bds_common::manifest::Manifest;
use bds_tests::ExtractFile;
use bds_tests::fakehub::{FakeHub, Fault, FaultKind, FaultTarget, HubConfig, RouteClass};
use bds_tests::harness::s3;
use chrono::{DateTime, Utc};
use tempfile::TempDir;
use zip::CompressionMethod;

const BIN: &str = env!("CARGO_BIN_EXE_bds-fetch");
const NOW: &str = "2026-03-04T12:00:00Z";

/// A hub serving a small history of a few data sets, a token file and a
/// place for the archive.
struct Setup {
    hub: FakeHub,
    dir: TempDir,
    files: Vec<ExtractFile>,
    token_file: PathBuf,
    archive: String,
    aws_env: Vec<(String, String)>,
}

impl Setup {
    fn local(config: HubConfig) -> Setup {
        let dir = TempDir::new().unwrap();
        let archive = dir.path().join("archive").display().to_string();
        Self::with_archive(config, dir, archive, Vec::new())
    }

    fn s3(config: HubConfig) -> Setup {
        let bucket = s3::bucket();
        let archive = bucket.location("bds");
        Self::with_archive(config, TempDir::new().unwrap(), archive, bucket.env)
    }

    fn with_archive(
        config: HubConfig,
        dir: TempDir,
        archive: String,
        aws_env: Vec<(String, String)>,
    ) -> Setup {
        let hub = FakeHub::start_blocking(config);
        let now = time(NOW);
        hub.set_now(now);
        let files = history(&dir.path().join("zips"), now);
        hub.add_extracts(files.clone());
        let token_file = dir.path().join("refresh-token");
        write_private(&token_file, &hub.issue_refresh_token());
        Setup {
            hub,
            dir,
            files,
            token_file,
            archive,
            aws_env,
        }
    }

    /// The binary with every setting pointing at this setup.
    fn command(&self, args: &[&str]) -> Command {
        let config = self.hub.config();
        let mut command = Command::new(BIN);
        command
            .args(args)
            .arg("--base-url")
            .arg(self.hub.api_url())
            .arg("--auth-url")
            .arg(self.hub.auth_url())
            .arg("--client-id")
            .arg(&config.client_id)
            .arg("--token-file")
            .arg(&self.token_file)
            .arg("--archive")
            .arg(&self.archive)
            .env_remove("RUST_LOG")
            .env_remove("BDS_CONFIG")
            .env("BDS_CLIENT_SECRET", &config.client_secret)
            .env("BDS_RETRY_BASE_MS", "20")
            .envs(self.aws_env.clone())
            .stdin(Stdio::null());
        command
    }

    fn run(&self, args: &[&str]) -> Output {
        let output = self.command(args).output().expect("run bds-fetch");
        eprintln!(
            "bds-fetch {args:?} exited {:?}\n--- stderr\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    fn open_archive(&self) -> Archive {
        Archive::open_with_env(&self.archive, &self.aws_env).unwrap()
    }

    fn token(&self) -> String {
        std::fs::read_to_string(&self.token_file)
            .unwrap()
            .trim()
            .to_string()
    }

    /// Every served extract is archived once, byte-identical, and recorded.
    fn assert_archive_complete(&self) {
        let archive = self.open_archive();
        let manifest = block_on(Manifest::read(&archive)).unwrap();
        assert_eq!(
            manifest.extracts.len(),
            self.files.len(),
            "one record per extract"
        );
        for file in &self.files {
            let record = manifest
                .extracts
                .iter()
                .find(|r| r.plugin_id == file.plugin_id && r.queued == file.queued)
                .unwrap_or_else(|| panic!("{} {} not recorded", file.dataset, file.queued));
            assert_eq!(record.sha256, file.sha256);
            assert_eq!(record.size, file.size);
            assert_eq!(record.csv_entry, file.csv_entry);
            let archived = block_on(archive.get_bytes(&record.key)).unwrap();
            assert!(
                archived == std::fs::read(&file.path).unwrap(),
                "{}",
                record.key
            );
        }
        let objects = block_on(archive.list("extracts")).unwrap();
        assert_eq!(objects.len(), self.files.len(), "nothing else archived");
    }

    fn file_of(&self, dataset: &str, kind: &str) -> &ExtractFile {
        self.files
            .iter()
            .find(|f| f.dataset == dataset && f.kind.as_str() == kind)
            .unwrap()
    }
}

fn time(text: &str) -> DateTime<Utc> {
    bds_common::extract::parse_api_time(text).unwrap()
}

fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(future)
}

/// A week of history of three data sets: two fulls and a differential a
/// day each, small zips of one CSV.
fn history(dir: &Path, now: DateTime<Utc>) -> Vec<ExtractFile> {
    std::fs::create_dir_all(dir).unwrap();
    let mut files = Vec::new();
    for name in ["Users", "Organizational Units", "User Enrollments"] {
        let dataset = Catalog::builtin().find(name).expect("catalog data set");
        for day in 0..8 {
            let queued = now - chrono::Duration::days(8 - day) + chrono::Duration::hours(1);
            if day % 7 == 0 {
                files.push(make_extract(
                    dir,
                    dataset,
                    ExtractKind::Full,
                    queued,
                    600,
                    CompressionMethod::Deflated,
                ));
            }
            if day > 0 {
                files.push(make_extract(
                    dir,
                    dataset,
                    ExtractKind::Differential,
                    queued,
                    40,
                    CompressionMethod::Deflated,
                ));
            }
        }
    }
    files
}

/// Writes one extract zip with `rows` rows of made-up data, its CSV entry
/// compressed by `method`.
fn make_extract(
    dir: &Path,
    dataset: &bds_common::catalog::Dataset,
    kind: ExtractKind,
    queued: DateTime<Utc>,
    rows: usize,
    method: CompressionMethod,
) -> ExtractFile {
    use std::io::Write;

    let created = queued + chrono::Duration::seconds(47) + chrono::Duration::milliseconds(123);
    let csv_entry = format!("{}.csv", dataset.name.replace(' ', ""));
    let mut csv = String::from("\u{feff}Id,Name,IsActive,LastAccessed\r\n");
    let mut rng = fastrand::Rng::with_seed(queued.timestamp() as u64 ^ rows as u64);
    for id in 0..rows {
        let name: String = (0..24).map(|_| rng.alphanumeric()).collect();
        csv.push_str(&format!(
            "{id},\"{name}\",True,{}\r\n",
            created.to_rfc3339()
        ));
    }
    let path = dir.join(format!(
        "{}_{}_{}.zip",
        dataset.table,
        kind.as_str(),
        queued.timestamp()
    ));
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let options = zip::write::SimpleFileOptions::default().compression_method(method);
    zip.start_file(csv_entry.as_str(), options).unwrap();
    zip.write_all(csv.as_bytes()).unwrap();
    zip.finish().unwrap();

    let (sha256, size) = bds_common::hash::sha256_file(&path).unwrap();
    let plugin = match kind {
        ExtractKind::Full => &dataset.full_plugin,
        ExtractKind::Differential => &dataset.differential_plugin,
    };
    ExtractFile {
        dataset: dataset.name.clone(),
        schema_id: dataset.schema_id.clone().expect("schema id"),
        plugin_id: plugin.clone().expect("plugin id"),
        kind,
        queued,
        created,
        version: "9.10".into(),
        path,
        size,
        sha256,
        csv_entry,
    }
}

fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn summary(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout).expect("JSON summary on stdout")
}

/// The first run archives everything, a second downloads nothing, verify is
/// clean; secrets appear neither in the log at -vv nor in the manifest.
fn archive_once_then_nothing(setup: &Setup) {
    let secret = setup.hub.config().client_secret.clone();
    let first_token = setup.token();

    let first = setup.run(&["-vv", "--json"]);
    assert_eq!(first.status.code(), Some(0));
    setup.assert_archive_complete();
    assert_eq!(summary(&first)["fetched"], setup.files.len());
    let second_token = setup.token();

    setup.hub.clear_requests();
    let second = setup.run(&["-vv", "--json"]);
    assert_eq!(second.status.code(), Some(0));
    assert_eq!(summary(&second)["fetched"], 0);
    assert_eq!(summary(&second)["skipped"], setup.files.len());
    assert!(
        setup.hub.storage_requests().is_empty(),
        "nothing downloaded"
    );

    let verify = setup.run(&["verify"]);
    assert_eq!(verify.status.code(), Some(0), "{}", stdout(&verify));

    let manifest_text: String = block_on(setup.open_archive().list("manifest"))
        .unwrap()
        .iter()
        .map(|o| {
            let bytes = block_on(setup.open_archive().get_bytes(&o.key)).unwrap();
            String::from_utf8(bytes.to_vec()).unwrap()
        })
        .collect();
    for (name, text) in [
        ("first stderr", stderr(&first)),
        ("second stderr", stderr(&second)),
        ("manifest", manifest_text),
    ] {
        for value in [&secret, &first_token, &second_token, &setup.token()] {
            assert!(!text.contains(value.as_str()), "{name} leaks a secret");
        }
        assert!(!text.contains("Signature="), "{name} leaks a signed URL");
    }
}

#[test]
fn every_extract_is_archived_once_into_a_local_folder() {
    archive_once_then_nothing(&Setup::local(HubConfig::default()));
}

#[test]
fn every_extract_is_archived_once_into_s3() {
    archive_once_then_nothing(&Setup::s3(HubConfig::default()));
}

#[test]
fn an_extract_over_8_mib_goes_to_s3_in_parts_and_arrives_whole() {
    let mut setup = Setup::s3(HubConfig::default());
    // Stored, not deflated, so that the zip itself is as large as its CSV:
    // about 9.4 MiB, one whole part of 8 MiB and a short last one.
    let users = Catalog::builtin().find("Users").unwrap();
    let queued = time(NOW) - chrono::Duration::hours(6);
    let zips = setup.dir.path().join("large");
    std::fs::create_dir_all(&zips).unwrap();
    let large = make_extract(
        &zips,
        users,
        ExtractKind::Full,
        queued,
        140_000,
        CompressionMethod::Stored,
    );
    assert!(
        large.size > 9 << 20 && large.size < 16 << 20,
        "{} bytes",
        large.size
    );
    setup.hub.add_extract(large.clone());
    setup.files.push(large.clone());

    // Byte-identical objects, a second run that downloads nothing, verify
    // clean.
    archive_once_then_nothing(&setup);

    // S3 gives an object uploaded in parts an ETag ending in `-{parts}`;
    // without it, the test would pass through the single PUT path.
    let key = large.record(0).key;
    let etag = s3_etag(&setup, &key);
    assert!(etag.trim_matches('"').ends_with("-2"), "{key}: ETag {etag}");
}

/// The ETag of the object at `key` of the setup's S3 archive.
fn s3_etag(setup: &Setup, key: &str) -> String {
    use object_store::ObjectStoreExt;
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};

    let rest = setup.archive.strip_prefix("s3://").expect("an S3 archive");
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let mut builder = AmazonS3Builder::new().with_bucket_name(bucket);
    for (name, value) in &setup.aws_env {
        if let Ok(config) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
            builder = builder.with_config(config, value);
        }
    }
    let store = builder.build().unwrap();
    let path = object_store::path::Path::from(format!("{prefix}/{key}"));
    let meta = block_on(store.head(&path)).unwrap();
    meta.e_tag.expect("S3 gives every object an ETag")
}

#[test]
fn the_dataset_list_is_followed_across_pages() {
    // Two data sets a page for three: the third one is only on the page
    // the first page's `Next` bookmark leads to.
    let config = HubConfig {
        page_size: 2,
        ..HubConfig::default()
    };
    let setup = Setup::local(config);
    let datasets: std::collections::HashSet<_> = setup.files.iter().map(|f| &f.dataset).collect();
    assert!(datasets.len() > setup.hub.config().page_size);

    let output = setup.run(&[]);
    assert_eq!(output.status.code(), Some(0));
    setup.assert_archive_complete();
    let next_pages = setup
        .hub
        .api_requests()
        .iter()
        .filter(|r| {
            let path = r.path.to_ascii_lowercase();
            path.contains("/datasets/bds?") && path.contains("bookmark=")
        })
        .count();
    assert_eq!(next_pages, 1, "the second page of data sets was asked for");
}

/// 429, 500, 503, truncated and reset bodies: the run still ends complete,
/// and no request to storage ever carried Authorization.
fn faults_are_survived(setup: &Setup) {
    let users = FaultTarget::extract(setup.file_of("Users", "full"));
    let org_units = FaultTarget::extract(setup.file_of("Organizational Units", "differential"));
    let enrollments = FaultTarget::extract(setup.file_of("User Enrollments", "full"));
    let faults = [
        Fault::once(
            FaultTarget::Route(RouteClass::List),
            FaultKind::Status429 {
                retry_after_secs: 1,
            },
        ),
        Fault::once(FaultTarget::Route(RouteClass::List), FaultKind::Status500),
        Fault::once(
            FaultTarget::Route(RouteClass::DownloadRedirect),
            FaultKind::Status503,
        ),
        Fault::once(
            FaultTarget::Route(RouteClass::Storage),
            FaultKind::Status500,
        ),
        Fault::once(users.clone(), FaultKind::TruncateBody { after_bytes: 100 }),
        Fault::once(org_units, FaultKind::ResetBody { after_bytes: 50 }),
        Fault::once(
            enrollments,
            FaultKind::Status429 {
                retry_after_secs: 1,
            },
        ),
        Fault::once(users, FaultKind::ResetBody { after_bytes: 0 }),
    ];
    for fault in faults {
        setup.hub.inject(fault);
    }

    let output = setup.run(&["--concurrency", "3"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(setup.hub.armed_faults(), 0, "every fault fired");
    setup.assert_archive_complete();

    let storage = setup.hub.storage_requests();
    assert!(storage.len() > setup.files.len(), "retries reached storage");
    assert!(
        storage.iter().all(|r| !r.authorization),
        "Authorization reached storage"
    );
    assert_eq!(setup.run(&["verify"]).status.code(), Some(0));
}

#[test]
fn faults_are_retried_into_a_local_folder() {
    faults_are_survived(&Setup::local(HubConfig::default()));
}

#[test]
fn faults_are_retried_into_s3() {
    faults_are_survived(&Setup::s3(HubConfig::default()));
}

#[test]
fn the_refresh_token_rotates_every_run() {
    let setup = Setup::local(HubConfig::default());
    let mut seen = vec![setup.token()];
    for _ in 0..2 {
        assert_eq!(setup.run(&[]).status.code(), Some(0));
        let token = setup.token();
        assert!(!seen.contains(&token), "a new refresh token each run");
        assert!(setup.hub.refresh_token_was_used(seen.last().unwrap()));
        assert!(setup.hub.refresh_token_is_valid(&token));
        seen.push(token);
    }
    let mode = std::fs::metadata(&setup.token_file)
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn killing_the_run_right_after_the_token_exchange_leaves_a_usable_token() {
    let setup = Setup::local(HubConfig::default());
    let before = setup.token();
    // A listing that trickles keeps the run busy right after the exchange.
    setup.hub.inject(Fault {
        target: FaultTarget::Route(RouteClass::List),
        kind: FaultKind::SlowBody { bytes_per_sec: 20 },
        times: 1,
    });
    let mut child = setup
        .command(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while setup.hub.auth_requests().is_empty() || setup.token() == before {
        assert!(Instant::now() < deadline, "the token was never exchanged");
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(setup.hub.refresh_token_was_used(&before));
    assert!(setup.hub.refresh_token_is_valid(&setup.token()));

    setup.hub.clear_faults();
    assert_eq!(setup.run(&[]).status.code(), Some(0));
    setup.assert_archive_complete();
}

#[test]
fn a_reused_refresh_token_stops_the_run_with_exit_2() {
    let setup = Setup::local(HubConfig::default());
    let spent = setup.token();
    assert_eq!(setup.run(&["--dry-run"]).status.code(), Some(0));
    write_private(&setup.token_file, &spent);

    let output = setup.run(&[]);
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.contains("invalid_grant"), "{text}");
    assert!(text.contains("Get a new refresh token"), "{text}");
    assert!(!text.contains(&spent), "the token is not printed");
    assert!(
        block_on(setup.open_archive().list("extracts"))
            .unwrap()
            .is_empty()
    );
}

#[test]
fn a_wrong_client_secret_stops_the_run_with_exit_2_and_spends_nothing() {
    let setup = Setup::local(HubConfig::default());
    let token = setup.token();
    let output = setup
        .command(&[])
        .env("BDS_CLIENT_SECRET", "not-the-secret")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let text = stderr(&output);
    assert!(text.contains("invalid_client"), "{text}");
    assert!(text.contains("client secret"), "{text}");
    assert!(
        !text.contains("not-the-secret"),
        "the secret is not printed"
    );
    assert_eq!(setup.token(), token, "the token file is unchanged");
    assert_eq!(
        setup.run(&["--dry-run"]).status.code(),
        Some(0),
        "and still works"
    );
}

#[test]
fn a_token_file_readable_by_others_is_refused() {
    let setup = Setup::local(HubConfig::default());
    std::fs::set_permissions(&setup.token_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = setup.run(&[]);
    assert_eq!(output.status.code(), Some(2));
    assert!(stderr(&output).contains("chmod 600"), "{}", stderr(&output));
    assert!(
        setup.hub.auth_requests().is_empty(),
        "the token was not spent"
    );
}

#[test]
fn a_bad_crc_or_a_wrong_size_is_rejected_and_not_archived() {
    let setup = Setup::local(HubConfig::default());
    let corrupt = setup.file_of("Users", "differential").clone();
    let short = setup.file_of("Organizational Units", "full").clone();
    // The byte flipped is inside the compressed data, so only the CRC check
    // can catch it; both faults fire on every attempt.
    setup.hub.inject(Fault {
        target: FaultTarget::extract(&corrupt),
        kind: FaultKind::CorruptByte { offset: 80 },
        times: 1000,
    });
    setup.hub.inject(Fault {
        target: FaultTarget::extract(&short),
        kind: FaultKind::TruncateBody {
            after_bytes: short.size / 2,
        },
        times: 1000,
    });

    let output = setup.run(&["--json", "--retry-attempts", "3"]);
    assert_eq!(output.status.code(), Some(1));
    let summary = summary(&output);
    assert_eq!(summary["failed"], 2);
    assert_eq!(summary["fetched"], setup.files.len() - 2);

    let archive = setup.open_archive();
    let manifest = block_on(Manifest::read(&archive)).unwrap();
    for file in [&corrupt, &short] {
        assert!(
            !manifest.extracts.iter().any(|r| r.sha256 == file.sha256
                || (r.plugin_id == file.plugin_id && r.queued == file.queued)),
            "{} recorded",
            file.dataset
        );
    }
    let objects = block_on(archive.list("extracts")).unwrap();
    assert_eq!(
        objects.len(),
        setup.files.len() - 2,
        "nothing damaged archived"
    );
    let spool = Path::new(&setup.archive).join(".bds-tmp");
    assert_eq!(
        std::fs::read_dir(spool).unwrap().count(),
        0,
        "spool cleaned up"
    );
}

#[test]
fn a_wrong_download_size_in_the_listing_is_only_a_warning() {
    let setup = Setup::local(HubConfig::default());
    setup.hub.inject(Fault {
        target: FaultTarget::extract(setup.file_of("Users", "full")),
        kind: FaultKind::WrongDownloadSize,
        times: 1000,
    });
    let output = setup.run(&[]);
    assert_eq!(output.status.code(), Some(0));
    assert!(
        stderr(&output).contains("DownloadSize"),
        "{}",
        stderr(&output)
    );
    setup.assert_archive_complete();
}

#[test]
fn verify_finds_a_flipped_byte_a_deleted_object_and_an_unlisted_one() {
    let setup = Setup::local(HubConfig::default());
    assert_eq!(setup.run(&[]).status.code(), Some(0));
    let archive = setup.open_archive();
    let manifest = block_on(Manifest::read(&archive)).unwrap();
    let root = Path::new(&setup.archive);

    let flipped = &manifest.extracts[0].key;
    let mut bytes = std::fs::read(root.join(flipped)).unwrap();
    bytes[40] ^= 0x01;
    std::fs::write(root.join(flipped), bytes).unwrap();
    let deleted = &manifest.extracts[1].key;
    block_on(archive.delete(deleted)).unwrap();
    let unlisted = "extracts/users/full/stray.zip";
    std::fs::write(root.join(unlisted), b"stray").unwrap();

    let output = setup.run(&["verify"]);
    assert_eq!(output.status.code(), Some(1));
    let report = stdout(&output);
    assert!(report.contains(&format!("corrupt  {flipped}")), "{report}");
    assert!(report.contains(&format!("missing  {deleted}")), "{report}");
    assert!(report.contains(&format!("unlisted {unlisted}")), "{report}");
    assert_eq!(report.lines().count(), 3, "{report}");
}

#[test]
fn verify_finds_problems_in_s3_too() {
    let setup = Setup::s3(HubConfig::default());
    assert_eq!(setup.run(&[]).status.code(), Some(0));
    let archive = setup.open_archive();
    let manifest = block_on(Manifest::read(&archive)).unwrap();
    let deleted = &manifest.extracts[0].key;
    block_on(archive.delete(deleted)).unwrap();

    let output = setup.run(&["verify", "--json"]);
    assert_eq!(output.status.code(), Some(1));
    let report = summary(&output);
    assert_eq!(report["findings"][0]["problem"], "missing");
    assert_eq!(report["findings"][0]["key"], deleted.as_str());
}

#[test]
fn short_lived_access_tokens_across_many_downloads() {
    let config = HubConfig {
        access_token_lifetime: Duration::from_secs(2),
        ..HubConfig::default()
    };
    let setup = Setup::local(config);
    // Slow downloads stretch the run over several token lifetimes.
    setup.hub.inject(Fault {
        target: FaultTarget::Route(RouteClass::Storage),
        kind: FaultKind::SlowBody {
            bytes_per_sec: 10_000,
        },
        times: 1000,
    });
    let started = Instant::now();
    let output = setup.run(&["--concurrency", "2"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(
        started.elapsed() > Duration::from_secs(5),
        "the run outlived tokens"
    );
    setup.assert_archive_complete();
    assert!(
        setup.hub.auth_requests().len() >= 3,
        "access tokens were refreshed"
    );
    assert!(setup.hub.refresh_token_is_valid(&setup.token()));
}

#[test]
fn a_dry_run_prints_the_plan_and_downloads_nothing() {
    let setup = Setup::local(HubConfig::default());
    let output = setup.run(&["--dry-run", "--dataset", "users", "--full-only"]);
    assert_eq!(output.status.code(), Some(0));
    let plan = stdout(&output);
    let fulls = setup
        .files
        .iter()
        .filter(|f| f.dataset == "Users" && f.kind.as_str() == "full")
        .count();
    assert_eq!(plan.lines().count(), fulls, "{plan}");
    assert!(
        plan.lines()
            .all(|l| l.starts_with("fetch extracts/users/full/")),
        "{plan}"
    );
    assert!(setup.hub.storage_requests().is_empty());
}

#[test]
fn a_dataset_the_site_does_not_offer_fails_the_run() {
    let setup = Setup::local(HubConfig::default());
    let output = setup.run(&["--dry-run", "--dataset", "Userz", "--dataset", "users"]);
    assert_eq!(output.status.code(), Some(1));
    let log = stderr(&output);
    assert!(log.contains("the site offers no such data set"), "{log}");
    assert!(log.contains(r#"did you mean "Users"?"#), "{log}");
    assert!(
        stdout(&output)
            .lines()
            .any(|l| l.starts_with("fetch extracts/users/"))
    );
}

#[test]
fn since_leaves_out_older_extracts() {
    let setup = Setup::local(HubConfig::default());
    let since = time(NOW) - chrono::Duration::days(3);
    let output = setup.run(&["run", "--dry-run", "--since", &since.to_rfc3339()]);
    assert_eq!(output.status.code(), Some(0));
    let newer = setup.files.iter().filter(|f| f.created >= since).count();
    assert!(newer > 0 && newer < setup.files.len());
    assert_eq!(
        stdout(&output).lines().count(),
        newer,
        "{}",
        stdout(&output)
    );
}

#[test]
fn list_shows_what_is_archived() {
    let setup = Setup::local(HubConfig::default());
    assert_eq!(setup.run(&["--differential-only"]).status.code(), Some(0));
    let output = setup.run(&["list", "--json"]);
    assert_eq!(output.status.code(), Some(0));
    let listed = summary(&output);
    let differentials = setup
        .files
        .iter()
        .filter(|f| f.kind.as_str() == "differential")
        .count();
    assert_eq!(listed["extracts"].as_array().unwrap().len(), differentials);
}

#[test]
fn the_sample_client_config_is_migrated() {
    let setup = Setup::local(HubConfig::default());
    let config_path = setup.dir.path().join("config.json");
    let config = setup.hub.config();
    let sample = serde_json::json!({
        "bspace_url": setup.hub.api_url(),
        "client_id": config.client_id,
        "client_secret": config.client_secret,
        "refresh_token": setup.token(),
    });
    write_private(&config_path, &sample.to_string());
    std::fs::remove_file(&setup.token_file).unwrap();

    let output = Command::new(BIN)
        .arg("--config")
        .arg(&config_path)
        .arg("--auth-url")
        .arg(setup.hub.auth_url())
        .arg("--token-file")
        .arg(&setup.token_file)
        .arg("--archive")
        .arg(&setup.archive)
        .env_remove("BDS_CLIENT_SECRET")
        .env_remove("BDS_BASE_URL")
        .env_remove("BDS_CLIENT_ID")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    assert!(stderr(&output).contains("moved the refresh token"));
    assert!(setup.hub.refresh_token_is_valid(&setup.token()));
    let left = std::fs::read_to_string(&config_path).unwrap();
    assert!(!left.contains("refresh_token"), "{left}");
}

#[test]
fn missed_differentials_are_recorded_as_a_gap() {
    let setup = Setup::local(HubConfig::default());
    assert_eq!(setup.run(&[]).status.code(), Some(0));

    // A month later every archived differential has left the 14-day window.
    let later = time(NOW) + chrono::Duration::days(30);
    setup.hub.set_now(later);
    setup
        .hub
        .add_extracts(history(&setup.dir.path().join("later"), later));
    let output = setup.run(&["--json"]);
    assert_eq!(output.status.code(), Some(0));
    assert!(stderr(&output).contains("differentials were missed"));
    assert_eq!(summary(&output)["gaps"].as_array().unwrap().len(), 3);

    let manifest = block_on(Manifest::read(&setup.open_archive())).unwrap();
    assert_eq!(manifest.gaps.len(), 3, "one gap per data set");
    let again = setup.run(&["--json"]);
    assert_eq!(
        summary(&again)["gaps"].as_array().unwrap().len(),
        0,
        "recorded once"
    );
}

#[test]
fn objects_published_before_a_crash_are_adopted() {
    let setup = Setup::local(HubConfig::default());
    assert_eq!(setup.run(&[]).status.code(), Some(0));
    // As if every run had died between publishing and recording.
    let archive = setup.open_archive();
    for segment in block_on(archive.list("manifest")).unwrap() {
        block_on(archive.delete(&segment.key)).unwrap();
    }

    let output = setup.run(&["--json"]);
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(summary(&output)["adopted"], setup.files.len());
    setup.assert_archive_complete();
    assert_eq!(setup.run(&["verify"]).status.code(), Some(0));
}

#[test]
fn a_second_run_at_the_same_time_is_refused() {
    let setup = Setup::local(HubConfig::default());
    let before = setup.token();
    setup.hub.inject(Fault {
        target: FaultTarget::Route(RouteClass::List),
        kind: FaultKind::SlowBody { bytes_per_sec: 200 },
        times: 1,
    });
    let mut first = setup
        .command(&[])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while setup.token() == before {
        assert!(Instant::now() < deadline, "the token was never exchanged");
        std::thread::sleep(Duration::from_millis(5));
    }

    let second = setup.run(&[]);
    assert_eq!(second.status.code(), Some(2));
    assert!(
        stderr(&second).contains("holds the lock"),
        "{}",
        stderr(&second)
    );
    assert_eq!(first.wait().unwrap().code(), Some(0));
    assert_eq!(setup.hub.auth_requests().len(), 1, "one exchange only");
    setup.assert_archive_complete();
}

#[test]
fn help_documents_the_exit_codes() {
    let output = Command::new(BIN).arg("--help").output().unwrap();
    assert_eq!(output.status.code(), Some(0));
    let help = stdout(&output);
    assert!(
        help.contains("Exit codes") && help.contains("1  the run finished"),
        "{help}"
    );
}
