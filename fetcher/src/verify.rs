//! Verification: of a freshly downloaded extract before it may enter the
//! archive, and of the whole archive against the manifest (`bds-fetch
//! verify`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bds_common::archive::{Archive, ArchiveError};
use bds_common::manifest::{ExtractRecord, Manifest};
use bds_common::verify::{Limits, StreamedEntry, VerifyError, ZipSummary, verify_zip_streamed};
use futures::StreamExt;
use serde::Serialize;

use crate::Outcome;
use crate::config::Settings;

/// Checks a spooled extract: a readable zip with exactly one CSV whose
/// every byte matches its CRC. The data was usually followed through its
/// CRC while it arrived (`streamed`), which leaves only the central
/// directory to read; otherwise the whole entry is inflated again. Runs on
/// the blocking pool.
pub async fn check_download(
    path: &Path,
    streamed: Option<StreamedEntry>,
) -> Result<ZipSummary, VerifyError> {
    let path: PathBuf = path.to_path_buf();
    tokio::task::spawn_blocking(move || verify_zip_streamed(&path, Limits::default(), streamed))
        .await
        .expect("zip verification does not panic")
}

/// What is wrong with one archived object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "problem", rename_all = "lowercase")]
pub enum Finding {
    /// Listed in the manifest, absent from the archive.
    Missing {
        /// Archive key.
        key: String,
    },
    /// Present, but its sha256 or size differs from the manifest.
    Corrupt {
        /// Archive key.
        key: String,
        /// sha256 and size in the manifest.
        expected_sha256: String,
        /// Size in the manifest.
        expected_size: u64,
        /// sha256 found.
        actual_sha256: String,
        /// Size found.
        actual_size: u64,
    },
    /// Under `extracts/` but in no manifest record.
    Unlisted {
        /// Archive key.
        key: String,
        /// Size found.
        size: u64,
    },
    /// Could not be read.
    Unreadable {
        /// Archive key.
        key: String,
        /// The error.
        error: String,
    },
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Finding::Missing { key } => write!(f, "missing  {key}"),
            Finding::Corrupt {
                key,
                expected_sha256,
                expected_size,
                actual_sha256,
                actual_size,
            } => write!(
                f,
                "corrupt  {key}: manifest says {expected_size} bytes sha256 {expected_sha256}, \
                 found {actual_size} bytes sha256 {actual_sha256}"
            ),
            Finding::Unlisted { key, size } => {
                write!(f, "unlisted {key} ({size} bytes, in no manifest record)")
            }
            Finding::Unreadable { key, error } => write!(f, "unreadable {key}: {error}"),
        }
    }
}

/// The result of an audit.
#[derive(Debug, Default, Serialize)]
pub struct Audit {
    /// Extracts checked (manifest records).
    pub checked: usize,
    /// Bytes re-hashed.
    pub bytes: u64,
    /// Problems found.
    pub findings: Vec<Finding>,
}

/// `bds-fetch verify`: re-hashes every archived extract against the
/// manifest and looks for objects no record lists.
pub async fn audit(settings: Settings) -> anyhow::Result<Outcome> {
    let archive = settings.open_existing_archive()?;
    let manifest = Manifest::read(&archive)
        .await
        .context("cannot read the manifest")?;
    let audit = audit_archive(&archive, &manifest, settings.concurrency).await?;
    if audit.checked == 0 && audit.findings.is_empty() {
        tracing::warn!(
            "the archive records no extract: nothing has been fetched into it yet, or \
             --archive points somewhere else"
        );
    }

    if settings.json {
        crate::print_line(serde_json::to_string_pretty(&audit)?);
    } else {
        for finding in &audit.findings {
            crate::print_line(finding);
        }
    }
    tracing::info!(
        checked = audit.checked,
        bytes = audit.bytes,
        problems = audit.findings.len(),
        "verify finished"
    );
    Ok(if audit.findings.is_empty() {
        Outcome::Done
    } else {
        Outcome::Failures
    })
}

/// Checks every record of `manifest` and lists unlisted objects.
pub async fn audit_archive(
    archive: &Archive,
    manifest: &Manifest,
    concurrency: usize,
) -> anyhow::Result<Audit> {
    let mut audit = Audit {
        checked: manifest.extracts.len(),
        ..Audit::default()
    };
    let results: Vec<(u64, Option<Finding>)> = futures::stream::iter(&manifest.extracts)
        .map(|record| check_record(archive, record))
        .buffered(concurrency.max(1))
        .collect()
        .await;
    for (bytes, finding) in results {
        audit.bytes += bytes;
        audit.findings.extend(finding);
    }

    let listed: HashSet<&str> = manifest.extracts.iter().map(|r| r.key.as_str()).collect();
    let objects = archive
        .list("extracts")
        .await
        .context("cannot list the archive")?;
    for object in objects {
        if !listed.contains(object.key.as_str()) {
            audit.findings.push(Finding::Unlisted {
                key: object.key,
                size: object.size,
            });
        }
    }
    Ok(audit)
}

async fn check_record(archive: &Archive, record: &ExtractRecord) -> (u64, Option<Finding>) {
    let key = record.key.clone();
    match archive.sha256(&record.key).await {
        Ok((sha256, size)) if sha256 == record.sha256 && size == record.size => (size, None),
        Ok((sha256, size)) => (
            size,
            Some(Finding::Corrupt {
                key,
                expected_sha256: record.sha256.clone(),
                expected_size: record.size,
                actual_sha256: sha256,
                actual_size: size,
            }),
        ),
        Err(ArchiveError::NotFound { .. }) => (0, Some(Finding::Missing { key })),
        Err(e) => (
            0,
            Some(Finding::Unreadable {
                key,
                error: crate::retry::error_chain(&e),
            }),
        ),
    }
}
