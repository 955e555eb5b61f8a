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
