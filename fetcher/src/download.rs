//! Downloading one extract: the authorized request to the Brightspace host,
//! the redirect to signed storage followed by hand without the token, and
//! the body streamed to a spool file while it is hashed and counted.
//!
//! Memory stays flat: the body passes through small bounded channels to two
//! blocking threads, one hashing and writing it, the other following the
//! zip's entry through its CRC (so the check after the download does not
//! read the file again).

use std::io::{IoSlice, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bds_common::hash::Sha256Counter;
use bds_common::redact::redact_url;
use bds_common::verify::{Limits, StreamCheck, StreamedEntry};
use bytes::Bytes;
use tempfile::TempPath;
use thiserror::Error;
use url::Url;

use crate::api::{Api, ApiError, retry_after_of};
use crate::progress::ExtractBar;
use crate::retry::Transient;

/// Redirect hops followed at most.
const MAX_REDIRECTS: usize = 5;
/// Body bytes gathered before handing them to the writer thread.
const BATCH_BYTES: usize = 256 << 10;
/// Batches in flight between the network and the writer thread.
const CHANNEL_BATCHES: usize = 8;

/// Errors downloading one extract.
#[derive(Debug, Error)]
pub enum DownloadError {
    /// The Brightspace host refused or failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The storage host answered with an error status.
    #[error("{url} answered {status}")]
    Storage {
        /// The URL, redacted.
        url: String,
        /// HTTP status.
        status: u16,
        /// `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// The connection failed or broke off.
    #[error("download from {url} failed")]
    Http {
        /// The URL, redacted.
        url: String,
        /// The cause, without its URL.
        #[source]
        source: reqwest::Error,
    },
    /// A redirect that cannot be followed.
    #[error("cannot follow the redirect from {from}: {reason}")]
    Redirect {
        /// Where it came from, redacted.
        from: String,
        /// Why.
        reason: String,
    },
    /// Fewer or more bytes than `Content-Length` announced.
    #[error("{url}: received {received} bytes, Content-Length announced {announced}")]
    Length {
        /// The URL, redacted.
        url: String,
        /// Bytes received.
        received: u64,
        /// Bytes announced.
        announced: u64,
    },
    /// The spool file could not be written.
    #[error("spool file {path}: i/o error")]
    Spool {
        /// The spool file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl Transient for DownloadError {
    fn retry_after(&self) -> Option<Option<Duration>> {
        match self {
            DownloadError::Api(e) => e.retry_after(),
            // 403 too: the signed link may have expired; a new attempt asks
            // the Brightspace host for a fresh one.
            DownloadError::Storage {
                status,
                retry_after,
                ..
            } => (*status == 403 || crate::api::retryable_status(*status)).then_some(*retry_after),
            DownloadError::Http { .. } | DownloadError::Length { .. } => Some(None),
            DownloadError::Redirect { .. } | DownloadError::Spool { .. } => None,
        }
    }
}

/// A downloaded extract in the spool folder (deleted when dropped, unless
/// published).
#[derive(Debug)]
pub struct Spooled {
    /// The spool file.
    pub path: TempPath,
    /// sha256, lower-case hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// The zip's entry as seen while it arrived, if it could be followed.
    pub streamed: Option<StreamedEntry>,
}

/// Downloads the extract at `link` (a Brightspace download route) into a
/// new file in `spool_dir`. One attempt; the caller retries.
pub async fn download(
    api: &Api,
    link: &Url,
    spool_dir: &Path,
    bar: &ExtractBar,
) -> Result<Spooled, DownloadError> {
    let first = api.send_authorized(link).await?;
    if first.status().is_client_error() {
        return Err(crate::api::status_error(link, &first).into());
    }
    let (url, response) = follow_redirects(api.http(), link.clone(), first).await?;
    if !response.status().is_success() {
        return Err(DownloadError::Storage {
            url: redact_url(url.as_str()),
            status: response.status().as_u16(),
            retry_after: retry_after_of(&response),
        });
    }
    spool(&url, response, spool_dir, bar).await
}

/// Follows redirects by hand: never with the token, only to http(s).
async fn follow_redirects(
    http: &reqwest::Client,
    mut url: Url,
    mut response: reqwest::Response,
) -> Result<(Url, reqwest::Response), DownloadError> {
    for _ in 0..MAX_REDIRECTS {
        if !response.status().is_redirection() {
            return Ok((url, response));
        }
        let from = redact_url(url.as_str());
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok());
        let next = next_hop(&url, location).map_err(|reason| DownloadError::Redirect {
            from: from.clone(),
            reason,
        })?;
        tracing::debug!(from = %from, to = %redact_url(next.as_str()), "following redirect");
        response = http
            .get(next.clone())
            .send()
            .await
            .map_err(|e| http_error(&next, e))?;
        url = next;
    }
    Err(DownloadError::Redirect {
        from: redact_url(url.as_str()),
        reason: format!("more than {MAX_REDIRECTS} redirects"),
    })
}

/// Spool files older than this were left by a run that was killed.
const STALE_SPOOL: Duration = Duration::from_secs(24 * 3600);

/// Removes spool files a killed run left behind. Only old ones: another
/// run on the same spool folder (another archive in the system temp
/// folder) may be writing fresh ones.
pub fn remove_stale_spool_files(spool_dir: &Path) {
    let Ok(entries) = std::fs::read_dir(spool_dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let ours = name.to_string_lossy().starts_with(".download-");
        let age = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok());
        if ours && age.is_some_and(|age| age > STALE_SPOOL) {
            tracing::debug!(file = %entry.path().display(), "removing a stale spool file");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Where a redirect leads: the `Location` resolved against the current URL,
/// http or https only (never `file:` or anything else a server might name).
fn next_hop(current: &Url, location: Option<&str>) -> Result<Url, String> {
    let location = location.ok_or("no Location header")?;
    let next = current
        .join(location)
        .map_err(|_| "the Location is not a URL".to_string())?;
    if !matches!(next.scheme(), "http" | "https") {
        return Err(format!(
            "{} is neither http nor https",
            redact_url(next.as_str())
        ));
    }
    Ok(next)
}

/// Streams the body into a spool file through the hashing writer thread.
async fn spool(
    url: &Url,
    mut response: reqwest::Response,
    spool_dir: &Path,
    bar: &ExtractBar,
) -> Result<Spooled, DownloadError> {
    let spool_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| DownloadError::Spool { path, source }
    };
    let announced = response.content_length();
    let temp = tempfile::Builder::new()
        .prefix(".download-")
        .suffix(".zip")
        .tempfile_in(spool_dir)
        .map_err(spool_error(spool_dir))?;
    let (file, path) = temp.into_parts();
    let (sender, receiver) = tokio::sync::mpsc::channel::<Vec<Bytes>>(CHANNEL_BATCHES);
    let writer = tokio::task::spawn_blocking(move || write_batches(file, receiver));
    let (to_check, batches) = tokio::sync::mpsc::channel::<Vec<Bytes>>(CHANNEL_BATCHES);
    let checker = tokio::task::spawn_blocking(move || check_batches(announced, batches));

    let mut batch = Vec::new();
    let mut batched = 0;
    let received = loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                bar.advance(chunk.len() as u64);
                batched += chunk.len();
                batch.push(chunk);
                if batched >= BATCH_BYTES {
                    batched = 0;
                    let batch = std::mem::take(&mut batch);
                    // Bytes are shared, not copied. A checker that hung up
                    // has given up; the writer hanging up is an i/o error,
                    // reported below.
                    let _ = to_check.send(batch.clone()).await;
                    if sender.send(batch).await.is_err() {
                        break Ok(());
                    }
                }
            }
            Ok(None) => break Ok(()),
            Err(e) => break Err(http_error(url, e)),
        }
    };
    if !batch.is_empty() && received.is_ok() {
        let _ = to_check.send(batch.clone()).await;
        let _ = sender.send(batch).await;
    }
    drop((sender, to_check));
    let written = writer.await.expect("the spool writer does not panic");
    let streamed = checker.await.expect("the stream check does not panic");
    received?;
    let (sha256, size) = written.map_err(spool_error(&path))?;

    if let Some(announced) = announced.filter(|&n| n != size) {
        return Err(DownloadError::Length {
            url: redact_url(url.as_str()),
            received: size,
            announced,
        });
    }
    Ok(Spooled {
        path,
        sha256,
        size,
        streamed,
    })
}

/// Follows the zip through its entry's CRC as the batches arrive; hangs up
/// early once it has seen the entry's end or given up.
fn check_batches(
    announced: Option<u64>,
    mut receiver: tokio::sync::mpsc::Receiver<Vec<Bytes>>,
) -> Option<StreamedEntry> {
    let mut check = StreamCheck::new(Limits::default(), announced);
    while let Some(batch) = receiver.blocking_recv() {
        for chunk in &batch {
            check.update(chunk);
        }
        if check.settled() {
            break;
        }
    }
    check.finish()
}

fn write_batches(
    mut file: std::fs::File,
    mut receiver: tokio::sync::mpsc::Receiver<Vec<Bytes>>,
) -> std::io::Result<(String, u64)> {
    let writeback = Writeback::start(&file);
    let mut hash = Sha256Counter::default();
    let mut unflushed = 0;
    while let Some(batch) = receiver.blocking_recv() {
        for chunk in &batch {
            hash.update(chunk);
            unflushed += chunk.len() as u64;
        }
        // The chunks go to the file as they are, a batch per call: no copy
        // into a buffer first.
        let mut slices: Vec<IoSlice<'_>> = batch.iter().map(|c| IoSlice::new(c)).collect();
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            match file.write_vectored(slices) {
                Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                Ok(n) => IoSlice::advance_slices(&mut slices, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if unflushed >= WRITEBACK_BYTES {
            unflushed = 0;
            writeback.nudge();
        }
    }
    Ok(hash.finish())
}

/// Bytes written between two flushes to disk during a download.
const WRITEBACK_BYTES: u64 = 64 << 20;

/// Flushes the spool file to disk on its own thread while the download goes
/// on, so that the fsync before publishing finds little left to write.
/// Best effort: its errors are ignored, the final fsync reports them.
struct Writeback {
    nudges: Option<std::sync::mpsc::SyncSender<()>>,
}

impl Writeback {
    fn start(file: &std::fs::File) -> Self {
        let Ok(file) = file.try_clone() else {
            return Writeback { nudges: None };
        };
        let (nudges, receiver) = std::sync::mpsc::sync_channel::<()>(1);
        let spawned = std::thread::Builder::new()
            .name("bds-writeback".into())
            .spawn(move || {
                while receiver.recv().is_ok() {
                    let _ = file.sync_data();
                }
            });
        Writeback {
            nudges: spawned.is_ok().then_some(nudges),
        }
    }

    /// Asks for a flush; skipped if one is still running.
    fn nudge(&self) {
        if let Some(nudges) = &self.nudges {
            let _ = nudges.try_send(());
        }
    }
}

fn http_error(url: &Url, error: reqwest::Error) -> DownloadError {
    DownloadError::Http {
        url: redact_url(url.as_str()),
        source: error.without_url(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_stale_spool_files_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let stale = dir.path().join(".download-old.zip");
        let fresh = dir.path().join(".download-new.zip");
        let other = dir.path().join("keep.zip");
        for path in [&stale, &fresh, &other] {
            std::fs::write(path, b"x").unwrap();
        }
        let old = std::time::SystemTime::now() - STALE_SPOOL * 2;
        for path in [&stale, &other] {
            let file = std::fs::File::options().write(true).open(path).unwrap();
            file.set_modified(old).unwrap();
        }
        remove_stale_spool_files(dir.path());
        assert!(!stale.exists() && fresh.exists() && other.exists());
    }

    #[test]
    fn redirects_go_to_http_or_https_only() {
        let here = Url::parse("https://school.example/d2l/api/lp/1.53/dataExport/bds/p/1").unwrap();
        let storage = next_hop(&here, Some("https://store.example/b.zip?Signature=s")).unwrap();
        assert_eq!(storage.host_str(), Some("store.example"));
        assert_eq!(
            next_hop(&here, Some("/blob/x")).unwrap().host_str(),
            Some("school.example")
        );
        for refused in ["file:///etc/passwd", "ftp://store.example/b.zip", "data:,x"] {
            let reason = next_hop(&here, Some(refused)).unwrap_err();
            assert!(
                reason.contains("neither http nor https"),
                "{refused}: {reason}"
            );
        }
        assert!(next_hop(&here, None).is_err());
    }

    #[test]
    fn storage_403_is_retried_but_a_bad_redirect_is_not() {
        let expired = DownloadError::Storage {
            url: "u".into(),
            status: 403,
            retry_after: None,
        };
        assert_eq!(expired.retry_after(), Some(None));
        let refused = DownloadError::Redirect {
            from: "u".into(),
            reason: "r".into(),
        };
        assert_eq!(refused.retry_after(), None);
    }
}
