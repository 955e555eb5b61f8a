//! Errors of the loader, each naming what failed: the extract (data set,
//! queued time and archive key), the CSV line and column, or the statement.

use std::fmt;

use bds_common::archive::ArchiveError;
use bds_common::manifest::{ExtractRecord, ManifestError};
use bds_common::verify::VerifyError;
use thiserror::Error;

/// Why loading failed.
#[derive(Debug, Error)]
pub enum LoadError {
    /// Settings or arguments that cannot work.
    #[error("{problem}")]
    Config {
        /// What is wrong.
        problem: String,
    },
    /// The extract as a whole cannot be applied (header, missing key column).
    #[error("{extract}: {problem}")]
    Extract {
        /// Which extract.
        extract: ExtractLabel,
        /// What is wrong.
        problem: String,
    },
    /// The CSV structure is broken at a line.
    #[error("{extract}: line {line}: {problem}")]
    Csv {
        /// Which extract.
        extract: ExtractLabel,
        /// Line of the CSV where the record starts (1 = header).
        line: u64,
        /// What is wrong.
        problem: String,
    },
    /// A field is not a valid value of its column's type.
    #[error("{extract}: line {line}, column {column}: {problem}")]
    Value {
        /// Which extract.
        extract: ExtractLabel,
        /// Line of the CSV where the record starts.
        line: u64,
        /// CSV header of the column.
        column: String,
        /// What is wrong.
        problem: String,
    },
    /// The archived object is not the one the manifest recorded.
    #[error(
        "{extract}: sha256 mismatch: the manifest records {expected}, the archived object \
         has {actual}; nothing applied"
    )]
    Checksum {
        /// Which extract.
        extract: ExtractLabel,
        /// sha256 in the manifest.
        expected: String,
        /// sha256 of the object.
        actual: String,
    },
    /// The archive could not be read.
    #[error("{extract}: cannot read the archived object")]
    Archive {
        /// Which extract (or `manifest`).
        extract: ExtractLabel,
        /// The cause.
        #[source]
        source: ArchiveError,
    },
    /// The manifest could not be read.
    #[error("cannot read the archive's manifest")]
    Manifest(#[source] ManifestError),
    /// The zip is unreadable or does not hold exactly one CSV.
    #[error("{extract}: not a valid extract zip")]
    Zip {
        /// Which extract.
        extract: ExtractLabel,
        /// The cause.
        #[source]
        source: VerifyError,
    },
    /// PostgreSQL refused a statement.
    #[error("{context}: {report}")]
    Database {
        /// What was being done.
        context: String,
        /// SQLSTATE, message, detail, hint and CSV line (boxed: errors stay
        /// small on the happy path).
        report: Box<DbReport>,
    },
    /// A local file failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl LoadError {
    /// A database error while doing `context`.
    pub fn db(context: impl Into<String>, error: postgres::Error) -> LoadError {
        LoadError::Database {
            context: context.into(),
            report: Box::new(DbReport::new(&error, None)),
        }
    }

    /// A database error during COPY, with the CSV line of the failing row.
    pub fn db_at_line(
        context: impl Into<String>,
        error: postgres::Error,
        line: Option<u64>,
    ) -> Self {
        LoadError::Database {
            context: context.into(),
            report: Box::new(DbReport::new(&error, line)),
        }
    }

    /// The SQLSTATE of a database error.
    pub fn sqlstate(&self) -> Option<&str> {
        match self {
            LoadError::Database { report, .. } => report.code.as_deref(),
            _ => None,
        }
    }
}

/// The parts of a PostgreSQL error a user needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbReport {
    /// SQLSTATE code, when the server sent one.
    pub code: Option<String>,
    /// Primary message.
    pub message: String,
    /// DETAIL.
    pub detail: Option<String>,
    /// HINT.
    pub hint: Option<String>,
    /// Line of the CSV that the failing COPY row came from.
    pub line: Option<u64>,
}

impl DbReport {
    fn new(error: &postgres::Error, line: Option<u64>) -> DbReport {
        match error.as_db_error() {
            Some(db) => DbReport {
                code: Some(db.code().code().to_string()),
                message: db.message().to_string(),
                detail: db.detail().map(str::to_string),
                hint: db.hint().map(str::to_string),
                line,
            },
            None => {
                // Connection-level errors keep their cause chain in one line.
                let mut message = error.to_string();
                let mut source = std::error::Error::source(error);
                while let Some(cause) = source {
                    message.push_str(&format!(": {cause}"));
                    source = cause.source();
                }
                DbReport {
                    code: None,
                    message,
                    detail: None,
                    hint: None,
                    line,
                }
            }
        }
    }
}

impl fmt::Display for DbReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(code) = &self.code {
            write!(f, " (SQLSTATE {code})")?;
        }
        if let Some(line) = self.line {
            write!(f, ", CSV line {line}")?;
        }
        if let Some(detail) = &self.detail {
            write!(f, "; detail: {detail}")?;
        }
        if let Some(hint) = &self.hint {
            write!(f, "; hint: {hint}")?;
        }
        Ok(())
    }
}

/// Names an extract in messages: `Users full extract queued
/// 2026-11-22T02:00:00Z (extracts/users/full/...zip)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtractLabel(pub String);

impl ExtractLabel {
    /// The label of an archived extract.
    pub fn of(record: &ExtractRecord) -> ExtractLabel {
        ExtractLabel(format!(
            "{} {} ({})",
            record.dataset,
            record.id(),
            record.key
        ))
    }
}

impl fmt::Display for ExtractLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
