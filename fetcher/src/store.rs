//! Publishing a verified extract into the archive, write-once.
//!
//! An object already at the key is never overwritten. It is usually the
//! same extract, published by a run that crashed before recording it: if
//! its sha256 matches what was just downloaded it is adopted, otherwise the
//! conflict is reported and both stay as they are.

use std::path::Path;

use bds_common::archive::{Archive, ArchiveError};
use thiserror::Error;

/// Errors publishing an extract.
#[derive(Debug, Error)]
pub enum StoreError {
    /// Another object with different content holds the key.
    #[error(
        "archive object {key} already exists with other content (sha256 {existing}, the \
         download has {downloaded}); left untouched"
    )]
    Conflict {
        /// Archive key.
        key: String,
        /// sha256 of the archived object.
        existing: String,
        /// sha256 of the download.
        downloaded: String,
    },
    /// The archive failed.
    #[error("cannot publish {key}")]
    Archive {
        /// Archive key.
        key: String,
        /// The cause.
        #[source]
        source: ArchiveError,
    },
}

/// How an extract got into the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Published {
    /// Written by this run.
    New,
    /// Already there with the same content; adopted.
    Adopted,
}

/// Publishes the spool file at `key`, adopting an identical object.
pub async fn publish(
    archive: &Archive,
    key: &str,
    spool: &Path,
    sha256: &str,
) -> Result<Published, StoreError> {
    let failed = |source| StoreError::Archive {
        key: key.to_string(),
        source,
    };
    match archive.publish_file(key, spool).await {
        Ok(()) => Ok(Published::New),
        Err(ArchiveError::AlreadyExists { .. }) => {
            let (existing, _) = archive.sha256(key).await.map_err(failed)?;
            if existing == sha256 {
                tracing::info!(key, "archive already holds this extract; adopting it");
                Ok(Published::Adopted)
            } else {
                Err(StoreError::Conflict {
                    key: key.to_string(),
                    existing,
                    downloaded: sha256.to_string(),
                })
            }
        }
        Err(e) => Err(failed(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn an_identical_object_is_adopted_and_a_different_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path().to_str().unwrap()).unwrap();
        let spool = archive.spool_dir().unwrap();
        let key = "extracts/t/full/a.zip";
        let sha = |data: &[u8]| {
            let mut counter = bds_common::hash::Sha256Counter::default();
            counter.update(data);
            counter.finish().0
        };

        std::fs::write(spool.join("1"), b"one").unwrap();
        let first = publish(&archive, key, &spool.join("1"), &sha(b"one")).await;
        assert_eq!(first.unwrap(), Published::New);

        std::fs::write(spool.join("2"), b"one").unwrap();
        let again = publish(&archive, key, &spool.join("2"), &sha(b"one")).await;
        assert_eq!(again.unwrap(), Published::Adopted);

        std::fs::write(spool.join("3"), b"two").unwrap();
        let other = publish(&archive, key, &spool.join("3"), &sha(b"two")).await;
        assert!(matches!(other, Err(StoreError::Conflict { .. })));
        assert_eq!(archive.get_bytes(key).await.unwrap(), "one");
    }
}
