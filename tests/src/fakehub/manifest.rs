//! `hub.json`: the extracts of a directory the `bds-fakehub` binary serves.
//!
//! A JSON array of extracts, the serde form of [`ExtractFile`] that
//! `bds_tests::generator::write_history` writes:
//!
//! ```json
//! [
//!   {
//!     "dataset": "Users",
//!     "schema_id": "…", "plugin_id": "…", "kind": "full",
//!     "queued": "2026-01-06T19:49:02Z", "created": "2026-01-06T19:50:19.476Z",
//!     "version": "9.10",
//!     "path": "users/users_full_20260106.zip",
//!     "size": 288, "sha256": "…", "csv_entry": "Users.csv"
//!   }
//! ]
//! ```
//!
//! `kind` is `full` or `differential`; a relative `path` is resolved against
//! the directory holding `hub.json`. Without a `hub.json`, [`scan`] finds
//! the zips whose names follow the archive naming of
//! [`bds_common::extract::ExtractId::archive_key`].

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use bds_common::catalog::Catalog;
use bds_common::extract::ExtractKind;
use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ExtractFile;

/// File name of the manifest inside a hub directory.
pub const MANIFEST_FILE: &str = "hub.json";

/// One extract of `hub.json`: [`ExtractFile`] with a relative path.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Data set name as the API reports it.
    pub dataset: String,
    /// Schema id of the data set.
    pub schema_id: String,
    /// Plugin id.
    pub plugin_id: String,
    /// `full` or `differential`.
    pub kind: ExtractKind,
    /// When the extract was queued.
    pub queued: DateTime<Utc>,
    /// When the extract was created.
    pub created: DateTime<Utc>,
    /// BDS version.
    pub version: String,
    /// The zip, absolute or relative to the directory of `hub.json`.
    pub path: PathBuf,
    /// Size of the zip in bytes.
    pub size: u64,
    /// sha256 of the zip, lower-case hex.
    pub sha256: String,
    /// Name of the CSV inside the zip.
    pub csv_entry: String,
}

/// Why a hub directory cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// `hub.json` or a zip could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// `hub.json` is not valid.
    #[error("{path} is not a valid hub manifest")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        #[source]
        source: serde_json::Error,
    },
    /// `hub.json` could not be written.
    #[error("cannot write {path}")]
    Write {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: io::Error,
    },
}

impl ManifestEntry {
    /// The entry of a file, its path made relative to `dir` when inside it.
    pub fn from_file(file: &ExtractFile, dir: &Path) -> Self {
        ManifestEntry {
            dataset: file.dataset.clone(),
            schema_id: file.schema_id.clone(),
            plugin_id: file.plugin_id.clone(),
            kind: file.kind,
            queued: file.queued,
            created: file.created,
            version: file.version.clone(),
            path: file
                .path
                .strip_prefix(dir)
                .unwrap_or(&file.path)
                .to_path_buf(),
            size: file.size,
            sha256: file.sha256.clone(),
            csv_entry: file.csv_entry.clone(),
        }
    }

    /// The extract, its path resolved against `dir`.
    pub fn to_file(&self, dir: &Path) -> ExtractFile {
        ExtractFile {
            dataset: self.dataset.clone(),
            schema_id: self.schema_id.clone(),
            plugin_id: self.plugin_id.clone(),
            kind: self.kind,
            queued: self.queued,
            created: self.created,
            version: self.version.clone(),
            path: dir.join(&self.path),
            size: self.size,
            sha256: self.sha256.clone(),
            csv_entry: self.csv_entry.clone(),
        }
    }
}

/// Reads `dir/hub.json`.
pub fn read(dir: &Path) -> Result<Vec<ExtractFile>, ManifestError> {
    let path = dir.join(MANIFEST_FILE);
    let text = fs::read_to_string(&path).map_err(|source| ManifestError::Read {
        path: path.clone(),
        source,
    })?;
    let entries: Vec<ManifestEntry> =
        serde_json::from_str(&text).map_err(|source| ManifestError::Parse { path, source })?;
    Ok(entries.iter().map(|e| e.to_file(dir)).collect())
}

/// Writes `dir/hub.json` describing these files.
pub fn write(dir: &Path, files: &[ExtractFile]) -> Result<(), ManifestError> {
    let entries: Vec<ManifestEntry> = files
        .iter()
        .map(|f| ManifestEntry::from_file(f, dir))
        .collect();
    let path = dir.join(MANIFEST_FILE);
    let text = serde_json::to_string_pretty(&entries).expect("a manifest serializes");
    fs::write(&path, text).map_err(|source| ManifestError::Write { path, source })
}

/// The extracts of a directory tree whose zips are named like archive keys
/// (`{table}_{kind}_{queued}_{created}.zip`); other files are skipped. Size
/// and sha256 are computed.
pub fn scan(dir: &Path) -> Result<Vec<ExtractFile>, ManifestError> {
    let mut files = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|e| ManifestError::Read {
            path: e.path().map(Path::to_path_buf).unwrap_or_default(),
            source: e.into(),
        })?;
        if let Some(file) = scanned(entry.path())? {
            files.push(file);
        }
    }
    Ok(files)
}

fn scanned(path: &Path) -> Result<Option<ExtractFile>, ManifestError> {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return Ok(None);
    };
    let Some((table, kind, queued, created)) = parse_archive_name(name) else {
        return Ok(None);
    };
    let Some(dataset) = Catalog::builtin().find(&table) else {
        return Ok(None);
    };
    let plugin = match kind {
        ExtractKind::Full => dataset.full_plugin.clone(),
        ExtractKind::Differential => dataset.differential_plugin.clone(),
    };
    let (Some(schema_id), Some(plugin_id)) = (dataset.schema_id.clone(), plugin) else {
        return Ok(None);
    };
    let read_error = |source| ManifestError::Read {
        path: path.to_path_buf(),
        source,
    };
    let (sha256, size) = bds_common::hash::sha256_file(path).map_err(read_error)?;
    Ok(Some(ExtractFile {
        dataset: dataset.name.clone(),
        schema_id,
        plugin_id,
        kind,
        queued,
        created,
        version: "1.0".into(),
        path: path.to_path_buf(),
        size,
        sha256,
        csv_entry: format!("{}.csv", dataset.name.replace(' ', "")),
    }))
}

/// `users_full_20260106T194902Z_20260106T195019476Z.zip` →
/// (`users`, full, queued, created).
fn parse_archive_name(name: &str) -> Option<(String, ExtractKind, DateTime<Utc>, DateTime<Utc>)> {
    let stem = name.strip_suffix(".zip")?;
    let mut parts = stem.rsplitn(3, '_');
    let created = parts.next()?;
    let queued = parts.next()?;
    let table_kind = parts.next()?;
    let (table, kind) = table_kind.rsplit_once('_')?;
    let kind = kind.parse().ok()?;
    let queued = NaiveDateTime::parse_from_str(queued, "%Y%m%dT%H%M%SZ").ok()?;
    let created = NaiveDateTime::parse_from_str(created, "%Y%m%dT%H%M%S%3fZ").ok()?;
    Some((table.to_string(), kind, queued.and_utc(), created.and_utc()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_names_parse() {
        let (table, kind, queued, created) =
            parse_archive_name("org_units_differential_20260106T194902Z_20260106T195019476Z.zip")
                .unwrap();
        assert_eq!(table, "org_units");
        assert_eq!(kind, ExtractKind::Differential);
        assert_eq!(queued.timestamp(), created.timestamp() - 77);
        assert_eq!(created.timestamp_subsec_millis(), 476);
    }
}
