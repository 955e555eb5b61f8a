//! The manifest: the list of every archived extract with its checksum, kept
//! in the archive under `manifest/`.
//!
//! Layout: JSON Lines segments written by fetch runs,
//! `manifest/{run start YYYYMMDDTHHMMSSZ}-{run id}-{sequence}.jsonl`. A run
//! rewrites only its own current segment, atomically, after each extract it
//! archives, so a crash loses at most the record of the extract being
//! published (which the next run adopts after re-hashing it) and two runs
//! never write the same object. A segment holds at most
//! [`SEGMENT_RECORDS`] records, which bounds the cost of each rewrite; a
//! nightly run writes one segment. Reading the manifest costs one listing and
//! one read per segment.
//!
//! Each line is one JSON object with a `record` field: `extract` (an archived
//! extract) or `gap` (differentials the API no longer offers were missed).

use std::collections::HashSet;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::archive::{Archive, ArchiveError};
use crate::extract::{ExtractId, ExtractKind};

/// Folder of the manifest segments in the archive.
pub const MANIFEST_PREFIX: &str = "manifest";

/// Records per segment before a run starts its next one.
pub const SEGMENT_RECORDS: usize = 100;

/// Errors reading or writing the manifest.
#[derive(Debug, Error)]
pub enum ManifestError {
    /// The archive failed.
    #[error("manifest: archive error")]
    Archive(#[from] ArchiveError),
    /// A segment line is not a valid record.
    #[error("manifest segment {segment}, line {line}: not a valid record")]
    Parse {
        /// The segment key.
        segment: String,
        /// 1-based line number.
        line: usize,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
}

/// One line of the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "record", rename_all = "lowercase")]
pub enum Entry {
    /// An archived extract.
    Extract(ExtractRecord),
    /// Differentials were missed.
    Gap(GapRecord),
}

/// An extract in the archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractRecord {
    /// Data set name as the API reported it.
    pub dataset: String,
    /// Table the data set loads into.
    pub table: String,
    /// Schema id of the data set.
    pub schema_id: String,
    /// Plugin id.
    pub plugin_id: String,
    /// `full` or `differential`.
    pub kind: ExtractKind,
    /// BDS version of the extract (`Version`), e.g. `9.10`.
    pub version: Option<String>,
    /// When D2L queued the extract.
    pub queued: DateTime<Utc>,
    /// When D2L created the file.
    pub created: DateTime<Utc>,
    /// Size of the zip in bytes.
    pub size: u64,
    /// sha256 of the zip, lower-case hex.
    pub sha256: String,
    /// Archive key of the zip.
    pub key: String,
    /// Name of the CSV inside the zip.
    pub csv_entry: String,
    /// Uncompressed size of the CSV in bytes.
    pub csv_size: u64,
    /// When bds-fetch archived it.
    pub fetched_at: DateTime<Utc>,
    /// bds-fetch version that archived it.
    pub tool_version: String,
}

impl ExtractRecord {
    /// The identity of the extract.
    pub fn id(&self) -> ExtractId {
        ExtractId {
            schema_id: self.schema_id.clone(),
            plugin_id: self.plugin_id.clone(),
            kind: self.kind,
            queued: self.queued,
            created: self.created,
        }
    }
}

/// Differentials of a data set were missed: the newest archived one is older
/// than the oldest the API still offers, so a full must be replayed first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapRecord {
    /// Data set name.
    pub dataset: String,
    /// Table of the data set.
    pub table: String,
    /// Schema id.
    pub schema_id: String,
    /// Created time of the newest archived differential, if any.
    pub newest_archived: Option<DateTime<Utc>>,
    /// Created time of the oldest differential the API still offers.
    pub oldest_offered: DateTime<Utc>,
    /// When the gap was detected.
    pub detected_at: DateTime<Utc>,
}

/// The whole manifest, as read from the archive.
#[derive(Debug, Clone, Default)]
pub struct Manifest {
    /// Archived extracts, one per identity, sorted by queued then created.
    pub extracts: Vec<ExtractRecord>,
    /// Gaps detected by fetch runs.
    pub gaps: Vec<GapRecord>,
}

impl Manifest {
    /// Reads every segment of the manifest.
    pub async fn read(archive: &Archive) -> Result<Manifest, ManifestError> {
        let mut manifest = Manifest::default();
        let mut seen = HashSet::new();
        for object in archive.list(MANIFEST_PREFIX).await? {
            if !object.key.ends_with(".jsonl") {
                continue;
            }
            let data = archive.get_bytes(&object.key).await?;
            for entry in parse_segment(&object.key, &data)? {
                match entry {
                    Entry::Extract(record) => {
                        if seen.insert(record.id().key()) {
                            manifest.extracts.push(record);
                        }
                    }
                    Entry::Gap(gap) => manifest.gaps.push(gap),
                }
            }
        }
        manifest.extracts.sort_by_key(|r| (r.queued, r.created));
        Ok(manifest)
    }

    /// The record of an extract, by identity.
    pub fn find(&self, id: &ExtractId) -> Option<&ExtractRecord> {
        let key = id.key();
        self.extracts.iter().find(|r| r.id().key() == key)
    }
}

/// Parses one segment; blank lines are skipped.
pub fn parse_segment(segment: &str, data: &[u8]) -> Result<Vec<Entry>, ManifestError> {
    let text = String::from_utf8_lossy(data);
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let entry = serde_json::from_str(line).map_err(|source| ManifestError::Parse {
            segment: segment.to_string(),
            line: i + 1,
            source,
        })?;
        out.push(entry);
    }
    Ok(out)
}

/// Appends records to the segments of one run.
#[derive(Debug)]
pub struct ManifestWriter {
    archive: Archive,
    stem: String,
    sequence: u32,
    records: usize,
    text: String,
}

impl ManifestWriter {
    /// A writer for a new run started at `started`; `run_id` makes the
    /// segment names unique among runs started in the same second.
    pub fn new(archive: Archive, started: DateTime<Utc>, run_id: &str) -> Self {
        let stem = format!(
            "{MANIFEST_PREFIX}/{}-{run_id}",
            started.format("%Y%m%dT%H%M%SZ")
        );
        ManifestWriter {
            archive,
            stem,
            sequence: 0,
            records: 0,
            text: String::new(),
        }
    }

    /// Key of the segment the next record goes to.
    pub fn key(&self) -> String {
        format!("{}-{:04}.jsonl", self.stem, self.sequence)
    }

    /// Adds a record and rewrites the current segment with it, atomically.
    pub async fn append(&mut self, entry: &Entry) -> Result<(), ManifestError> {
        if self.records == SEGMENT_RECORDS {
            self.sequence += 1;
            self.records = 0;
            self.text.clear();
        }
        let line = serde_json::to_string(entry).expect("manifest records serialize");
        let mut text = self.text.clone();
        text.push_str(&line);
        text.push('\n');
        self.archive
            .put_overwrite(&self.key(), Bytes::from(text.clone()))
            .await?;
        self.text = text;
        self.records += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::extract::parse_api_time;

    fn record(queued: &str) -> ExtractRecord {
        ExtractRecord {
            dataset: "Users".into(),
            table: "users".into(),
            schema_id: "s".into(),
            plugin_id: "p".into(),
            kind: ExtractKind::Full,
            version: Some("9.10".into()),
            queued: parse_api_time(queued).unwrap(),
            created: parse_api_time(queued).unwrap(),
            size: 10,
            sha256: "00".into(),
            key: "extracts/users/full/x.zip".into(),
            csv_entry: "Users.csv".into(),
            csv_size: 20,
            fetched_at: parse_api_time("2026-01-01T00:00:00Z").unwrap(),
            tool_version: "0.1.0".into(),
        }
    }

    #[tokio::test]
    async fn segments_round_trip_and_deduplicate() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path().to_str().unwrap()).unwrap();
        let t = parse_api_time("2026-01-02T00:00:00Z").unwrap();

        let mut a = ManifestWriter::new(archive.clone(), t, "a");
        a.append(&Entry::Extract(record("2026-01-02T00:00:00Z")))
            .await
            .unwrap();
        a.append(&Entry::Extract(record("2026-01-01T00:00:00Z")))
            .await
            .unwrap();
        let mut b = ManifestWriter::new(archive.clone(), t, "b");
        b.append(&Entry::Extract(record("2026-01-01T00:00:00Z")))
            .await
            .unwrap();

        let m = Manifest::read(&archive).await.unwrap();
        assert_eq!(m.extracts.len(), 2);
        assert!(m.extracts[0].queued < m.extracts[1].queued);
    }

    #[tokio::test]
    async fn a_long_run_rolls_over_to_new_segments() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path().to_str().unwrap()).unwrap();
        let t = parse_api_time("2026-01-02T00:00:00Z").unwrap();
        let mut writer = ManifestWriter::new(archive.clone(), t, "r");
        let start = parse_api_time("2026-01-01T00:00:00Z").unwrap();
        for i in 0..(SEGMENT_RECORDS as i64 + 5) {
            let mut r = record("2026-01-01T00:00:00Z");
            r.queued = start + chrono::Duration::minutes(i);
            writer.append(&Entry::Extract(r)).await.unwrap();
        }
        let segments = archive.list(MANIFEST_PREFIX).await.unwrap();
        assert_eq!(segments.len(), 2);
        let m = Manifest::read(&archive).await.unwrap();
        assert_eq!(m.extracts.len(), SEGMENT_RECORDS + 5);
    }

    #[test]
    fn a_bad_line_is_named() {
        let err = parse_segment("manifest/x.jsonl", b"\n{\"record\":\"nope\"}\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "manifest segment manifest/x.jsonl, line 2: not a valid record"
        );
    }
}
