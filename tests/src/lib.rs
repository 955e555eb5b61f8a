//! Test support for bds: a fake Brightspace Data Hub, a generator of
//! realistic extract histories with the table contents a correct replay must
//! produce (the oracle), and a harness that starts real services (a
//! throwaway PostgreSQL cluster and an S3-compatible server) on loopback.
//!
//! Used by the end-to-end tests of every crate, by the `bds-fakehub` binary
//! (demos and manual tries) and by the benchmark script.

use std::path::PathBuf;

use bds_common::extract::ExtractKind;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// One extract zip on disk, as the generator makes it and the fake Data Hub
/// serves it. Serialized as JSON by `generator::write_history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtractFile {
    /// Data set name as the API reports it (`Users`).
    pub dataset: String,
    /// Schema id of the data set.
    pub schema_id: String,
    /// Plugin id (full or differential plugin of the data set).
    pub plugin_id: String,
    /// Full or differential.
    pub kind: ExtractKind,
    /// When the extract was queued.
    pub queued: DateTime<Utc>,
    /// When the extract was created.
    pub created: DateTime<Utc>,
    /// BDS version string, e.g. `9.10`.
    pub version: String,
    /// The zip on disk.
    pub path: PathBuf,
    /// Size of the zip in bytes.
    pub size: u64,
    /// sha256 of the zip, lower-case hex.
    pub sha256: String,
    /// Name of the CSV inside the zip.
    pub csv_entry: String,
}

pub mod docs;
pub mod fakehub;
pub mod generator;
pub mod harness;
pub mod reliability;

impl ExtractFile {
    /// The extract's identity.
    pub fn id(&self) -> bds_common::extract::ExtractId {
        bds_common::extract::ExtractId {
            schema_id: self.schema_id.clone(),
            plugin_id: self.plugin_id.clone(),
            kind: self.kind,
            queued: self.queued,
            created: self.created,
        }
    }

    /// The table its data set loads into: the catalog's, else the naming
    /// rule for unknown data sets.
    pub fn table(&self) -> String {
        bds_common::catalog::Catalog::builtin()
            .find(&self.dataset)
            .map_or_else(
                || bds_common::catalog::table_name(&self.dataset),
                |d| d.table.clone(),
            )
    }

    /// The manifest record bds-fetch writes for this extract once archived,
    /// with the given CSV size (0 when the caller does not need it).
    pub fn record(&self, csv_size: u64) -> bds_common::manifest::ExtractRecord {
        let table = self.table();
        bds_common::manifest::ExtractRecord {
            key: self.id().archive_key(&table),
            dataset: self.dataset.clone(),
            table,
            schema_id: self.schema_id.clone(),
            plugin_id: self.plugin_id.clone(),
            kind: self.kind,
            version: Some(self.version.clone()),
            queued: self.queued,
            created: self.created,
            size: self.size,
            sha256: self.sha256.clone(),
            csv_entry: self.csv_entry.clone(),
            csv_size,
            fetched_at: Utc::now(),
            tool_version: "test".into(),
        }
    }
}
