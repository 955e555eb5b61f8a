//! bds-load: replays the archived Brightspace Data Sets extracts into
//! PostgreSQL, in order, idempotently, from the archive alone.
//!
//! The pipeline, one module per step:
//! - [`plan`]: per data set, which full to start from and which
//!   differentials to apply, from the manifest and the [`ledger`];
//! - [`read`]: the extract fetched to local disk, its sha256 checked, its CSV
//!   header matched to the table's columns;
//! - [`copy`]: the CSV parsed and [`encode`]d as binary COPY on one thread
//!   and streamed to the server from another;
//! - [`replace`] (full extracts: a new table swapped in atomically) and
//!   [`upsert`] (differentials: staged, deduplicated, upserted by key),
//!   orchestrated per extract by [`apply`], each in one transaction with its
//!   [`ledger`] row;
//! - [`run`] and [`status`]: the commands, over [`connect`]ions that use TLS
//!   and an advisory lock; [`ddl`]: table definitions and `bds-load schema`.

pub mod apply;
pub mod connect;
pub mod copy;
pub mod ddl;
pub mod encode;
pub mod error;
pub mod ledger;
pub mod plan;
pub mod read;
pub mod replace;
pub mod run;
pub mod status;
pub mod upsert;

pub use error::LoadError;

/// An error and its causes on one line, `: `-separated.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
