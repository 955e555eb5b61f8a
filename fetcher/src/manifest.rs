//! This run's manifest segment: records appended one at a time, in the
//! order extracts finish, by whichever download task finished.

use std::collections::HashMap;

use bds_common::archive::Archive;
use bds_common::manifest::{Entry, ManifestError, ManifestWriter};
use chrono::{DateTime, Utc};
use tokio::sync::Mutex;

/// Serializes appends to this run's segment (each append rewrites it).
#[derive(Debug)]
pub struct Recorder {
    writer: Mutex<ManifestWriter>,
}

impl Recorder {
    /// A recorder for a run started at `started`. Nothing is written until
    /// the first record.
    pub fn new(archive: Archive, started: DateTime<Utc>) -> Recorder {
        let run_id = format!("{:08x}", fastrand::u32(..));
        Recorder {
            writer: Mutex::new(ManifestWriter::new(archive, started, &run_id)),
        }
    }

    /// Appends one record durably.
    pub async fn append(&self, entry: &Entry) -> Result<(), ManifestError> {
        self.writer.lock().await.append(entry).await
    }
}

/// Size of every object under `extracts/`, from one listing (on S3, a few
/// LIST requests instead of a HEAD per extract).
pub async fn archived_sizes(
    archive: &Archive,
) -> Result<HashMap<String, u64>, bds_common::archive::ArchiveError> {
    Ok(archive
        .list("extracts")
        .await?
        .into_iter()
        .map(|o| (o.key, o.size))
        .collect())
}
