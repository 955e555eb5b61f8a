//! Support for the reliability suite (`tests/tests/{crash,faults,
//! properties,hostile,secrets}.rs`): the real binaries ([`bins`]), a
//! scriptable HTTP proxy to fail or hold requests to a real service
//! ([`proxy`]), and a [`FetchScene`]: the fake Data Hub serving a generated
//! history, a token file and an archive, with the checks every crash or
//! fault test ends with.

pub mod bins;
pub mod proxy;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use bds_common::archive::Archive;
use bds_common::catalog::Catalog;
use bds_common::hash::sha256_file;
use bds_common::manifest::Manifest;
use chrono::{DateTime, Utc};

use crate::ExtractFile;
use crate::fakehub::{FakeHub, HubConfig};
use crate::generator::{self, Options};

/// The hub's clock and the end of every generated history.
pub const NOW: &str = "2026-11-25T12:00:00Z";

/// [`NOW`] as a time.
pub fn now() -> DateTime<Utc> {
    NOW.parse().expect("NOW is a valid time")
}

/// Runs a future to completion on a fresh current-thread runtime (never
/// call it inside a runtime).
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
        .block_on(future)
}

/// One week of history of each of `names` with `rows` rows in the first
/// full: two fulls and six differentials each, every differential within
/// the hub's 14 days, with duplicates, soft deletes and a column added by a
/// minor version. Ordered by queued, then created time.
pub fn history(names: &[&str], rows: u64, seed: u64, dir: &Path) -> Vec<ExtractFile> {
    let mut files = Vec::new();
    for name in names {
        let dataset = Catalog::builtin()
            .find(name)
            .unwrap_or_else(|| panic!("{name} is in the catalog"));
        let mut options = Options::new(seed, now());
        options.weeks = 1;
        options.rows = rows;
        files.extend(generator::generate(dataset, &options, dir).expect("generate a history"));
    }
    files.sort_by_key(|f| (f.queued, f.created));
    files
}

/// Writes `text` to `path`, readable by its owner only.
pub fn write_private(path: &Path, text: &str) {
    std::fs::write(path, text).expect("write a private file");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .expect("chmod 600 a private file");
}

/// The fake hub serving a generated history, a token file and an archive
/// (a local folder or an S3 location).
#[derive(Debug)]
pub struct FetchScene {
    /// The hub, its clock at [`NOW`].
    pub hub: FakeHub,
    /// Scratch folder: zips, token file, local archive.
    pub dir: tempfile::TempDir,
    /// Every extract the hub serves.
    pub files: Vec<ExtractFile>,
    /// The refresh token file.
    pub token_file: PathBuf,
    /// `--archive`.
    pub archive: String,
    /// `AWS_*` settings for an S3 archive.
    pub aws_env: Vec<(String, String)>,
    /// Replaces the hub's auth URL, e.g. with a proxy in front of it.
    pub auth_url: Option<String>,
}

impl FetchScene {
    /// A local archive in the scratch folder.
    pub fn local(config: HubConfig, names: &[&str], rows: u64) -> FetchScene {
        let dir = tempfile::TempDir::new().expect("scratch folder");
        let archive = dir.path().join("archive").display().to_string();
        Self::with_archive(config, dir, names, rows, archive, Vec::new())
    }

    /// An archive at `location` (e.g. an S3 bucket) with its settings.
    pub fn with_archive(
        config: HubConfig,
        dir: tempfile::TempDir,
        names: &[&str],
        rows: u64,
        archive: String,
        aws_env: Vec<(String, String)>,
    ) -> FetchScene {
        let hub = FakeHub::start_blocking(config);
        hub.set_now(now());
        let files = history(names, rows, 11, &dir.path().join("zips"));
        hub.add_extracts(files.clone());
        let token_file = dir.path().join("refresh-token");
        write_private(&token_file, &hub.issue_refresh_token());
        FetchScene {
            hub,
            dir,
            files,
            token_file,
            archive,
            aws_env,
            auth_url: None,
        }
    }

    /// `bds-fetch` with every setting pointing at this scene, retries fast.
    pub fn command(&self, args: &[&str]) -> Command {
        let config = self.hub.config();
        let mut command = Command::new(bins::bds_fetch());
        command
            .args(args)
            .arg("--base-url")
            .arg(self.hub.api_url())
            .arg("--auth-url")
            .arg(self.auth_url.as_deref().unwrap_or(self.hub.auth_url()))
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

    /// Runs `bds-fetch` to the end; its log goes to the test's stderr.
    pub fn run(&self, args: &[&str]) -> Output {
        let output = self.command(args).output().expect("run bds-fetch");
        eprintln!(
            "bds-fetch {args:?} exited {:?}\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
        output
    }

    /// Starts `bds-fetch` in the background, output discarded.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.command(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start bds-fetch")
    }

    /// The archive, opened in this process.
    pub fn open_archive(&self) -> Archive {
        Archive::open_with_env(&self.archive, &self.aws_env).expect("open the archive")
    }

    /// The refresh token in the token file.
    pub fn token(&self) -> String {
        std::fs::read_to_string(&self.token_file)
            .expect("read the token file")
            .trim()
            .to_string()
    }

    /// The served extract archived at `key`, if any.
    fn served_at(&self, key: &str) -> Option<&ExtractFile> {
        let catalog = Catalog::builtin();
        self.files.iter().find(|f| {
            let table = &catalog.find(&f.dataset).expect("catalog data set").table;
            let id = bds_common::extract::ExtractId {
                schema_id: f.schema_id.clone(),
                plugin_id: f.plugin_id.clone(),
                kind: f.kind,
                queued: f.queued,
                created: f.created,
            };
            id.archive_key(table) == key
        })
    }

    /// What must hold after any crash or fault: every object under
    /// `extracts/` is a whole, byte-identical served extract at its own key
    /// (no partial object), and every manifest record points at such an
    /// object with the right sha256 and size. Returns (objects, records).
    pub fn assert_sound(&self) -> (usize, usize) {
        let archive = self.open_archive();
        let objects = block_on(archive.list("extracts")).expect("list the archive");
        for object in &objects {
            let served = self
                .served_at(&object.key)
                .unwrap_or_else(|| panic!("{} is not an extract the hub served", object.key));
            let (sha256, size) = block_on(archive.sha256(&object.key)).expect("hash an object");
            assert_eq!(
                (sha256.as_str(), size),
                (served.sha256.as_str(), served.size),
                "{} is not whole",
                object.key
            );
        }
        let manifest = block_on(Manifest::read(&archive)).expect("read the manifest");
        for record in &manifest.extracts {
            let served = self
                .served_at(&record.key)
                .unwrap_or_else(|| panic!("record of an unknown extract {}", record.key));
            assert_eq!(record.sha256, served.sha256, "{}", record.key);
            assert_eq!(record.size, served.size, "{}", record.key);
            assert!(
                objects.iter().any(|o| o.key == record.key),
                "the manifest points at a missing object {}",
                record.key
            );
        }
        (objects.len(), manifest.extracts.len())
    }

    /// Every served extract archived and recorded, `verify` clean, and
    /// (for a local archive) no file left in the spool.
    pub fn assert_complete(&self) {
        let (objects, records) = self.assert_sound();
        assert_eq!(objects, self.files.len(), "every extract archived once");
        assert_eq!(records, self.files.len(), "every extract recorded");
        let verify = self.run(&["verify"]);
        assert_eq!(
            verify.status.code(),
            Some(0),
            "verify: {}",
            String::from_utf8_lossy(&verify.stdout)
        );
    }

    /// Files left in a local archive's spool folder.
    pub fn spool_files(&self) -> usize {
        std::fs::read_dir(Path::new(&self.archive).join(".bds-tmp"))
            .map_or(0, |entries| entries.count())
    }

    /// The served extract of `dataset` of this kind (`full`/`differential`),
    /// the `nth` in queued order.
    pub fn file(&self, dataset: &str, kind: &str, nth: usize) -> &ExtractFile {
        self.files
            .iter()
            .filter(|f| f.dataset == dataset && f.kind.as_str() == kind)
            .nth(nth)
            .unwrap_or_else(|| panic!("no {kind} extract #{nth} of {dataset}"))
    }
}

/// `bds-load` replaying `archive` into `database_url`, quiet about the
/// caller's environment.
pub fn load_command(archive: &str, database_url: &str) -> Command {
    let mut command = Command::new(bins::bds_load());
    command
        .arg("--archive")
        .arg(archive)
        .arg("--database-url")
        .arg(database_url)
        .env_remove("BDS_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .env_remove("BDS_ARCHIVE")
        .env_remove("BDS_SCHEMA")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null());
    command
}

/// Every table of `names` equals the oracle of `history`.
pub fn assert_oracle(client: &mut postgres::Client, names: &[&str], history: &[ExtractFile]) {
    for name in names {
        let dataset = Catalog::builtin().find(name).expect("catalog data set");
        let expected = generator::oracle(dataset, history, None);
        generator::assert_table_matches(client, "public", &expected.table, &expected);
    }
}

/// The sha256 of a local file, for hand-made extracts.
pub fn sha256_of(path: &Path) -> (String, u64) {
    sha256_file(path).expect("hash a file")
}

/// Archives `files` into the local archive at `root` as bds-fetch does
/// (write-once objects, then one manifest segment named after `run_id`),
/// without the hub: for loader tests that need no fetch.
pub fn archive_files(root: &Path, files: &[ExtractFile], run_id: &str) {
    use bds_common::manifest::{Entry, ManifestWriter};

    let archive = Archive::open(root.to_str().expect("UTF-8 path")).expect("open the archive");
    let mut writer = ManifestWriter::new(archive.clone(), Utc::now(), run_id);
    block_on(async {
        for (i, file) in files.iter().enumerate() {
            let record = record_of(file);
            let spool = archive
                .spool_dir()
                .expect("spool folder")
                .join(format!("{run_id}-{i}"));
            std::fs::copy(&file.path, &spool).expect("copy into the spool");
            archive
                .publish_file(&record.key, &spool)
                .await
                .expect("publish an extract");
            writer
                .append(&Entry::Extract(record))
                .await
                .expect("append to the manifest");
        }
    });
}

/// The manifest record bds-fetch would write for `file`.
pub fn record_of(file: &ExtractFile) -> bds_common::manifest::ExtractRecord {
    file.record(0)
}

/// Writes a zip holding one deflated entry `name` with `data`.
pub fn write_zip(path: &Path, name: &str, data: &[u8]) {
    use std::io::Write;
    let file = std::fs::File::create(path).expect("create a zip");
    let mut zip = zip::ZipWriter::new(file);
    zip.start_file(name, zip::write::SimpleFileOptions::default())
        .expect("start a zip entry");
    zip.write_all(data).expect("write a zip entry");
    zip.finish().expect("finish a zip");
}

/// A hand-made extract of the catalog data set `name`: a zip at
/// `dir/{name}_{kind}_{queued}.zip` holding `csv` as entry `entry`.
pub fn hand_extract(
    dir: &Path,
    name: &str,
    kind: bds_common::extract::ExtractKind,
    queued: DateTime<Utc>,
    entry: &str,
    csv: &[u8],
) -> ExtractFile {
    use bds_common::extract::ExtractKind;

    let dataset = Catalog::builtin()
        .find(name)
        .unwrap_or_else(|| panic!("{name} is in the catalog"));
    std::fs::create_dir_all(dir).expect("create the zip folder");
    let path = dir.join(format!(
        "{}_{}_{}.zip",
        dataset.table,
        kind.as_str(),
        queued.timestamp()
    ));
    write_zip(&path, entry, csv);
    let (sha256, size) = sha256_of(&path);
    let plugin = match kind {
        ExtractKind::Full => dataset.full_plugin.clone(),
        ExtractKind::Differential => dataset.differential_plugin.clone(),
    };
    ExtractFile {
        dataset: dataset.name.clone(),
        schema_id: dataset.schema_id.clone().expect("a schema id"),
        plugin_id: plugin.expect("a plugin id"),
        kind,
        queued,
        // Like D2L: created a minute after queued.
        created: queued + chrono::Duration::seconds(61),
        version: "9.10".into(),
        path,
        size,
        sha256,
        csv_entry: entry.to_string(),
    }
}
