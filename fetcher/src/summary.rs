//! The end-of-run summary: a log line on stderr, and with `--json` a
//! document on stdout with one line per extract.

use bds_common::extract::ExtractKind;
use bds_common::manifest::GapRecord;
use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::discover::Offer;

/// What happened to one extract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Downloaded, verified and archived by this run.
    Fetched,
    /// Downloaded and verified; the archive already held it (adopted).
    Adopted,
    /// Already archived.
    Skipped,
    /// Could not be archived.
    Failed,
    /// Would be fetched (dry run).
    Planned,
}

/// One extract in the summary.
#[derive(Debug, Clone, Serialize)]
pub struct ExtractLine {
    /// Data set name.
    pub dataset: String,
    /// Table.
    pub table: String,
    /// Full or differential.
    pub kind: ExtractKind,
    /// Queued time.
    pub queued: DateTime<Utc>,
    /// Created time.
    pub created: DateTime<Utc>,
    /// Archive key.
    pub key: String,
    /// Outcome.
    pub status: Status,
    /// Bytes (downloaded, or announced for planned extracts).
    pub size: Option<u64>,
    /// sha256 of what was archived.
    pub sha256: Option<String>,
    /// Why it failed.
    pub error: Option<String>,
}

impl ExtractLine {
    /// A line for `offer` with `status`, without size or hash yet.
    pub fn new(offer: &Offer, status: Status) -> ExtractLine {
        ExtractLine {
            dataset: offer.dataset.clone(),
            table: offer.table.clone(),
            kind: offer.id.kind,
            queued: offer.id.queued,
            created: offer.id.created,
            key: offer.key(),
            status,
            size: offer.download_size,
            sha256: None,
            error: None,
        }
    }
}

/// The whole run.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    /// Nothing was downloaded on purpose.
    pub dry_run: bool,
    /// Archived by this run.
    pub fetched: usize,
    /// Found already archived under their key and adopted.
    pub adopted: usize,
    /// Already archived before.
    pub skipped: usize,
    /// Failed extracts and extract listings.
    pub failed: usize,
    /// Bytes archived by this run.
    pub bytes: u64,
    /// Gaps detected.
    pub gaps: Vec<GapRecord>,
    /// Listings that failed: data set and error.
    pub listing_failures: Vec<ListingFailure>,
    /// Every extract considered.
    pub extracts: Vec<ExtractLine>,
}

/// A data set whose extract list could not be read.
#[derive(Debug, Clone, Serialize)]
pub struct ListingFailure {
    /// Data set name.
    pub dataset: String,
    /// The error.
    pub error: String,
}

impl Summary {
    /// Adds an extract line and counts it.
    pub fn add(&mut self, line: ExtractLine) {
        match line.status {
            Status::Fetched => {
                self.fetched += 1;
                self.bytes += line.size.unwrap_or(0);
            }
            Status::Adopted => self.adopted += 1,
            Status::Skipped => self.skipped += 1,
            Status::Failed => self.failed += 1,
            Status::Planned => {}
        }
        self.extracts.push(line);
    }

    /// Whether anything failed.
    pub fn has_failures(&self) -> bool {
        self.failed > 0 || !self.listing_failures.is_empty()
    }

    /// Logs the one-line summary.
    pub fn log(&self, seconds: f64) {
        tracing::info!(
            fetched = self.fetched,
            adopted = self.adopted,
            skipped = self.skipped,
            failed = self.failed + self.listing_failures.len(),
            bytes = self.bytes,
            gaps = self.gaps.len(),
            seconds = format!("{seconds:.1}"),
            "fetch finished"
        );
    }

    /// Prints the plan of a dry run as plain lines.
    pub fn print_plan(&self) {
        for line in &self.extracts {
            let size = line
                .size
                .map(|s| s.to_string())
                .unwrap_or_else(|| "?".into());
            let status = match line.status {
                Status::Planned => "fetch",
                _ => "skip ",
            };
            crate::print_line(format_args!("{status} {} {size} bytes", line.key));
        }
    }
}
