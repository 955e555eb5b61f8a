//! An S3-compatible server for tests (moto's, started once per test process)
//! and a fresh bucket per test.
//!
//! ```no_run
//! let bucket = bds_tests::harness::s3::bucket();
//! let archive = bucket.archive(); // an in-process bds_common Archive on it
//! // spawned binaries: Command::new(bin).arg("--archive").arg(&bucket.url).envs(bucket.env.clone())
//! ```
//!
//! The process environment is never changed (Rust forbids doing that safely
//! while threads run): settings travel in [`S3Bucket::env`] and
//! [`S3Bucket::archive`]. When `BDS_TEST_S3_ENDPOINT` is set, buckets are
//! created on that server instead; it must accept an unsigned bucket PUT
//! (moto does; a server that checks signatures needs the bucket made by
//! hand).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use bds_common::archive::Archive;

use super::{free_port, off_runtime, shell_quote, spawn_watchdog};

/// Variable pointing the suite at an existing S3-compatible server.
pub const ENDPOINT_VAR: &str = "BDS_TEST_S3_ENDPOINT";

/// How long moto may take to answer after it was started.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

/// A fresh, empty bucket.
#[derive(Debug, Clone)]
pub struct S3Bucket {
    /// Bucket name.
    pub name: String,
    /// Archive location of the bucket root: `s3://{name}`.
    pub url: String,
    /// `AWS_*` settings for processes using the bucket (`Command::envs`).
    pub env: Vec<(String, String)>,
}

impl S3Bucket {
    /// The archive at the bucket root, opened in this process.
    pub fn archive(&self) -> Archive {
        self.archive_at("")
    }

    /// The archive under `prefix` in the bucket (`s3://{name}/{prefix}`).
    pub fn archive_at(&self, prefix: &str) -> Archive {
        let location = self.location(prefix);
        Archive::open_with_env(&location, &self.env)
            .unwrap_or_else(|e| panic!("open archive {location}: {e}"))
    }

    /// `s3://{name}/{prefix}`, or `s3://{name}` for an empty prefix.
    pub fn location(&self, prefix: &str) -> String {
        match prefix.trim_matches('/') {
            "" => self.url.clone(),
            prefix => format!("{}/{prefix}", self.url),
        }
    }
}

/// The endpoint of the test S3 server (`http://127.0.0.1:PORT`), started on
/// first use.
pub fn server() -> &'static str {
    static ENDPOINT: OnceLock<String> = OnceLock::new();
    ENDPOINT.get_or_init(|| match std::env::var(ENDPOINT_VAR) {
        Ok(url) if !url.trim().is_empty() => url.trim_end_matches('/').to_string(),
        _ => start_moto(),
    })
}

/// The `AWS_*` settings of the test server: endpoint, plain HTTP allowed,
/// credentials, region `us-east-1`.
pub fn env() -> Vec<(String, String)> {
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let external = std::env::var(ENDPOINT_VAR).is_ok_and(|v| !v.trim().is_empty());
    let credential = |name: &str| match external {
        true => var(name).unwrap_or_else(|| "testing".into()),
        false => "testing".into(),
    };
    vec![
        ("AWS_ENDPOINT_URL".into(), server().to_string()),
        ("AWS_ALLOW_HTTP".into(), "true".into()),
        ("AWS_ACCESS_KEY_ID".into(), credential("AWS_ACCESS_KEY_ID")),
        (
            "AWS_SECRET_ACCESS_KEY".into(),
            credential("AWS_SECRET_ACCESS_KEY"),
        ),
        ("AWS_REGION".into(), "us-east-1".into()),
    ]
}

/// A new, empty bucket on the test server.
pub fn bucket() -> S3Bucket {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "bds-test-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
    let url = format!("{}/{name}", server());

    match http(reqwest::Method::PUT, &url) {
        Ok(status) if (200..300).contains(&status) => {}
        Ok(status) => panic!("create bucket {name} at {}: HTTP {status}", server()),
        Err(e) => panic!("create bucket {name} at {}: {e}", server()),
    }
    S3Bucket {
        url: format!("s3://{name}"),
        name,
        env: env(),
    }
}

/// Starts moto's server on a free port and waits until it answers.
fn start_moto() -> String {
    check_moto_installed();
    let log_dir = tempfile::Builder::new()
        .prefix("bds-s3-")
        .tempdir()
        .expect("create a temp folder for the S3 server log")
        .keep();

    let mut last_log = String::new();
    for _attempt in 0..3 {
        let port = free_port();
        let log = log_dir.join(format!("moto-{port}.log"));
        let child = spawn_moto(port, &log);
        spawn_watchdog(&format!(
            "kill {pid} 2>/dev/null; sleep 1; kill -9 {pid} 2>/dev/null; rm -rf {dir}",
            pid = child.id(),
            dir = shell_quote(&log_dir.display().to_string())
        ));
        let endpoint = format!("http://127.0.0.1:{port}");
        if wait_until_ready(child, &endpoint) {
            return endpoint;
        }
        last_log = std::fs::read_to_string(&log).unwrap_or_default();
    }
    panic!("moto's S3 server did not start (3 attempts); its log:\n{last_log}");
}

fn check_moto_installed() {
    let probe = Command::new("python3")
        .args(["-c", "import moto.server"])
        .output();
    let installed = probe.as_ref().is_ok_and(|o| o.status.success());
    if !installed {
        let detail = match probe {
            Ok(o) => String::from_utf8_lossy(&o.stderr).into_owned(),
            Err(e) => format!("python3: {e}"),
        };
        panic!(
            "moto's S3 server is not available: install it with \
             `pip install 'moto[server]'` (needs python3)\n{detail}"
        );
    }
}

fn spawn_moto(port: u16, log: &PathBuf) -> Child {
    let log_file = std::fs::File::create(log).expect("create the S3 server log");
    Command::new("python3")
        .args([
            "-m",
            "moto.server",
            "-H",
            "127.0.0.1",
            "-p",
            &port.to_string(),
        ])
        .stdin(Stdio::null())
        .stdout(log_file.try_clone().expect("log file handle"))
        .stderr(log_file)
        .spawn()
        .expect("start python3 -m moto.server")
}

/// Polls `endpoint` until it answers; false when the server exited (the
/// port was taken) or did not answer in time.
fn wait_until_ready(mut child: Child, endpoint: &str) -> bool {
    let started = Instant::now();
    while started.elapsed() < STARTUP_TIMEOUT {
        if let Ok(Some(_exited)) = child.try_wait() {
            return false;
        }
        if http(reqwest::Method::GET, endpoint).is_ok() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    false
}

/// One bodiless request, answered with its status code; run on its own
/// thread and runtime so that it works from sync and async callers.
fn http(method: reqwest::Method, url: &str) -> Result<u16, String> {
    off_runtime(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime.block_on(async {
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .map_err(|e| e.to_string())?;
            let response = client
                .request(method, url)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            Ok(response.status().as_u16())
        })
    })
}
