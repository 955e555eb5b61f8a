//! Shared building blocks of the two bds tools: the data set catalog, extract
//! identities, the archive (a local folder or an S3-compatible store), the
//! manifest that lists what the archive holds, extract verification, and the
//! redaction of secrets.
//!
//! `bds-fetch` writes the archive and the manifest; `bds-load` only reads
//! them. Everything both sides must agree on lives here.

pub mod archive;
pub mod catalog;
pub mod extract;
pub mod hash;
pub mod manifest;
pub mod redact;
pub mod verify;

/// The version of the bds tools, recorded in every manifest record.
pub const TOOL_VERSION: &str = env!("CARGO_PKG_VERSION");
