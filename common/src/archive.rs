//! The archive: where raw extracts and the manifest are kept, either a local
//! folder or an S3-compatible bucket (through `object_store`).
//!
//! Extracts are published write-once: an existing object is never
//! overwritten. Keys are `/`-separated and relative to the archive root.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::local::LocalFileSystem;
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, WriteMultipart};
use thiserror::Error;

/// Objects at most this large go up to S3 in one conditional PUT; larger ones
/// go in parts.
/// Kept small because the object is read into memory, once per concurrent
/// download.
const SINGLE_PUT_MAX: u64 = 8 << 20;

/// Size of each part of a multipart upload.
const PART_SIZE: usize = 8 << 20;

/// Errors of the archive layer.
#[derive(Debug, Error)]
pub enum ArchiveError {
    /// The archive location could not be understood.
    #[error("invalid archive location {location:?}: {reason}")]
    BadLocation {
        /// What the user gave.
        location: String,
        /// Why it was refused.
        reason: String,
    },
    /// No object at this key.
    #[error("archive object {key} does not exist")]
    NotFound {
        /// The key.
        key: String,
    },
    /// Write-once publish found an object already there.
    #[error("archive object {key} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// The store failed.
    #[error("archive object {key}: storage error")]
    Store {
        /// The key.
        key: String,
        /// The cause.
        #[source]
        source: object_store::Error,
    },
    /// A local file could not be read or written.
    #[error("{path}: i/o error")]
    Io {
        /// The local file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

type Result<T> = std::result::Result<T, ArchiveError>;

/// One object listed in the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Key relative to the archive root.
    pub key: String,
    /// Size in bytes.
    pub size: u64,
}

/// A handle on the archive.
#[derive(Debug, Clone)]
pub struct Archive {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    location: String,
    local_root: Option<PathBuf>,
}

impl Archive {
    /// Opens the archive at `location`: a local path, a `file://` URL or
    /// `s3://bucket/prefix`. S3 settings come from the standard `AWS_*`
    /// variables (`AWS_ENDPOINT_URL` and `AWS_ALLOW_HTTP=true` for
    /// S3-compatible servers). A local folder is created if missing.
    pub fn open(location: &str) -> Result<Archive> {
        Self::open_with_env(location, &[])
    }

    /// Like [`Archive::open`], with `AWS_*` settings (same names as the
    /// environment variables) that take precedence over the process
    /// environment. Lets tests point at their own S3 server without changing
    /// the process environment, which is unsafe with threads running.
    /// Names that are not S3 settings are ignored.
    pub fn open_with_env(location: &str, aws_env: &[(String, String)]) -> Result<Archive> {
        let bad = |reason: String| ArchiveError::BadLocation {
            location: location.into(),
            reason,
        };
        if location.trim().is_empty() {
            return Err(bad("empty".into()));
        }
        if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket name".into()));
            }
            let mut builder = AmazonS3Builder::from_env();
            for (name, value) in aws_env {
                if let Ok(key) = name.to_ascii_lowercase().parse::<AmazonS3ConfigKey>() {
                    builder = builder.with_config(key, value);
                }
            }
            let store = builder
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| bad(e.to_string()))?;
            return Ok(Archive {
                store: Arc::new(store),
                prefix: prefix.trim_matches('/').to_string(),
                location: location.to_string(),
                local_root: None,
            });
        }
        if location.contains("://") && !location.starts_with("file://") {
            return Err(bad("use a local path, file:// or s3://bucket/prefix".into()));
        }
        let path = match location.strip_prefix("file://") {
            Some(p) => PathBuf::from(p),
            None => PathBuf::from(location),
        };
        std::fs::create_dir_all(&path).map_err(|source| ArchiveError::Io {
            path: path.clone(),
            source,
        })?;
        let root = path.canonicalize().map_err(|source| ArchiveError::Io {
            path: path.clone(),
            source,
        })?;
        let store = LocalFileSystem::new_with_prefix(&root)
            .map_err(|e| bad(e.to_string()))?
            .with_fsync(true);
        Ok(Archive {
            store: Arc::new(store),
            prefix: String::new(),
            location: location.to_string(),
            local_root: Some(root),
        })
    }

    /// Like [`Archive::open`], but a local folder must already exist: for
    /// readers, so that a mistyped path is an error and not an empty archive.
    pub fn open_existing(location: &str) -> Result<Archive> {
        let is_local = !location.contains("://") || location.starts_with("file://");
        let path = location.strip_prefix("file://").unwrap_or(location);
        if is_local && !Path::new(path).is_dir() {
            return Err(ArchiveError::BadLocation {
                location: location.into(),
                reason: "no such folder".into(),
            });
        }
        Self::open(location)
    }

    /// The location as the user gave it.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The folder, when the archive is local.
    pub fn local_root(&self) -> Option<&Path> {
        self.local_root.as_deref()
    }

    /// A folder for temporary files: inside a local archive (so publishing is
    /// a rename on the same file system), else the system temp folder.
    pub fn spool_dir(&self) -> Result<PathBuf> {
        let dir = match &self.local_root {
            Some(root) => root.join(".bds-tmp"),
            None => std::env::temp_dir(),
        };
        std::fs::create_dir_all(&dir).map_err(|source| ArchiveError::Io {
            path: dir.clone(),
            source,
        })?;
        Ok(dir)
    }

    fn path(&self, key: &str) -> StorePath {
        if self.prefix.is_empty() {
            StorePath::from(key)
        } else {
            StorePath::from(format!("{}/{}", self.prefix, key))
        }
    }

    fn key_of(&self, path: &StorePath) -> String {
        let full = path.as_ref();
        if self.prefix.is_empty() {
            full.to_string()
        } else {
            full.strip_prefix(&self.prefix)
                .unwrap_or(full)
                .trim_start_matches('/')
                .to_string()
        }
    }

    fn store_error(key: &str, source: object_store::Error) -> ArchiveError {
        match source {
            object_store::Error::NotFound { .. } => ArchiveError::NotFound { key: key.into() },
            object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. } => {
                ArchiveError::AlreadyExists { key: key.into() }
            }
            source => ArchiveError::Store {
                key: key.into(),
                source,
            },
        }
    }

    /// Publishes the local file `file` at `key`, write-once: fails with
    /// [`ArchiveError::AlreadyExists`] if the key is taken. The object
    /// appears whole or not at all. For a local archive the file should live
    /// in [`Archive::spool_dir`]; it is linked into place, then removed.
    ///
    /// Limitation: on S3, objects over 8 MiB go up in parts, and S3 cannot
    /// make a multipart upload conditional; the key is checked just before,
    /// which leaves a small window for a concurrent writer of the same key.
    pub async fn publish_file(&self, key: &str, file: &Path) -> Result<()> {
        if let Some(root) = &self.local_root {
            return publish_local(root, key, file);
        }
        let io = |source| ArchiveError::Io {
            path: file.into(),
            source,
        };
        let size = std::fs::metadata(file).map_err(io)?.len();
        let path = self.path(key);

        if size <= SINGLE_PUT_MAX {
            let data = tokio::fs::read(file).await.map_err(io)?;
            let opts = PutOptions {
                mode: PutMode::Create,
                ..Default::default()
            };
            self.store
                .put_opts(&path, PutPayload::from(data), opts)
                .await
                .map_err(|e| Self::store_error(key, e))?;
            return Ok(());
        }

        if self.exists(key).await?.is_some() {
            return Err(ArchiveError::AlreadyExists { key: key.into() });
        }
        let upload = self
            .store
            .put_multipart(&path)
            .await
            .map_err(|e| Self::store_error(key, e))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, PART_SIZE);
        let mut reader = tokio::fs::File::open(file).await.map_err(io)?;
        let mut buf = vec![0u8; PART_SIZE];
        loop {
            use tokio::io::AsyncReadExt;
            let n = reader.read(&mut buf).await.map_err(io)?;
            if n == 0 {
                break;
            }
            writer
                .wait_for_capacity(2)
                .await
                .map_err(|e| Self::store_error(key, e))?;
            writer.write(&buf[..n]);
        }
        writer
            .finish()
            .await
            .map_err(|e| Self::store_error(key, e))?;
        Ok(())
    }

    /// Writes `data` at `key`, replacing any object there, atomically.
    /// Used for the manifest segment a run owns.
    pub async fn put_overwrite(&self, key: &str, data: Bytes) -> Result<()> {
        self.store
            .put(&self.path(key), PutPayload::from(data))
            .await
            .map_err(|e| Self::store_error(key, e))?;
        Ok(())
    }

    /// Reads a whole (small) object.
    pub async fn get_bytes(&self, key: &str) -> Result<Bytes> {
        let got = self
            .store
            .get(&self.path(key))
            .await
            .map_err(|e| Self::store_error(key, e))?;
        got.bytes().await.map_err(|e| Self::store_error(key, e))
    }

    /// Streams the object at `key` into a new local file `dest`, returning its
    /// sha256 (lower-case hex) and size. Memory stays flat.
    pub async fn get_to_file(&self, key: &str, dest: &Path) -> Result<(String, u64)> {
        let io = |source| ArchiveError::Io {
            path: dest.into(),
            source,
        };
        let got = self
            .store
            .get(&self.path(key))
            .await
            .map_err(|e| Self::store_error(key, e))?;
        let mut stream = got.into_stream();
        let mut out = std::io::BufWriter::with_capacity(1 << 20, File::create(dest).map_err(io)?);
        let mut hash = crate::hash::Sha256Counter::default();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| Self::store_error(key, e))?;
            hash.update(&chunk);
            out.write_all(&chunk).map_err(io)?;
        }
        out.flush().map_err(io)?;
        Ok(hash.finish())
    }

    /// Hashes the object at `key` without keeping it: (sha256, size).
    pub async fn sha256(&self, key: &str) -> Result<(String, u64)> {
        let got = self
            .store
            .get(&self.path(key))
            .await
            .map_err(|e| Self::store_error(key, e))?;
        let mut stream = got.into_stream();
        let mut hash = crate::hash::Sha256Counter::default();
        while let Some(chunk) = stream.next().await {
            hash.update(&chunk.map_err(|e| Self::store_error(key, e))?);
        }
        Ok(hash.finish())
    }

    /// The size of the object at `key`, or `None` if there is none.
    pub async fn exists(&self, key: &str) -> Result<Option<u64>> {
        match self.store.head(&self.path(key)).await {
            Ok(meta) => Ok(Some(meta.size)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(Self::store_error(key, e)),
        }
    }

    /// Every object whose key starts with `prefix/`, sorted by key.
    pub async fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let path = self.path(prefix.trim_end_matches('/'));
        let mut stream = self.store.list(Some(&path));
        let mut out = Vec::new();
        while let Some(meta) = stream.next().await {
            let meta = meta.map_err(|e| Self::store_error(prefix, e))?;
            out.push(ObjectInfo {
                key: self.key_of(&meta.location),
                size: meta.size,
            });
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    /// Removes the object at `key` (for tests and repairs; the tools never
    /// delete archived extracts).
    pub async fn delete(&self, key: &str) -> Result<()> {
        self.store
            .delete(&self.path(key))
            .await
            .map_err(|e| Self::store_error(key, e))
    }
}

/// Links `file` to `root/key` if nothing is there, durably: the file and the
/// folder are synced before and after.
fn publish_local(root: &Path, key: &str, file: &Path) -> Result<()> {
    let target = root.join(key);
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ArchiveError::Io { path, source }
    };
    let parent = target.parent().unwrap_or(root);
    std::fs::create_dir_all(parent).map_err(io(parent))?;
    File::open(file)
        .and_then(|f| f.sync_all())
        .map_err(io(file))?;

    match std::fs::hard_link(file, &target) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(ArchiveError::AlreadyExists { key: key.into() });
        }
        Err(e) => return Err(io(&target)(e)),
    }
    std::fs::remove_file(file).map_err(io(file))?;
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(io(parent))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn local_publish_is_write_once() {
        let dir = tempfile::tempdir().unwrap();
        let archive = Archive::open(dir.path().to_str().unwrap()).unwrap();
        let spool = archive.spool_dir().unwrap();

        let a = spool.join("a");
        std::fs::write(&a, b"first").unwrap();
        archive
            .publish_file("extracts/x/full/one.zip", &a)
            .await
            .unwrap();
        assert!(!a.exists());

        let b = spool.join("b");
        std::fs::write(&b, b"second").unwrap();
        let err = archive
            .publish_file("extracts/x/full/one.zip", &b)
            .await
            .unwrap_err();
        assert!(matches!(err, ArchiveError::AlreadyExists { .. }));
        assert_eq!(
            archive.get_bytes("extracts/x/full/one.zip").await.unwrap(),
            "first"
        );

        let listed = archive.list("extracts").await.unwrap();
        assert_eq!(
            listed,
            vec![ObjectInfo {
                key: "extracts/x/full/one.zip".into(),
                size: 5
            }]
        );
        assert_eq!(archive.exists("extracts/nope").await.unwrap(), None);
    }

    #[test]
    fn readers_refuse_a_missing_local_folder() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("typo");
        let err = Archive::open_existing(missing.to_str().unwrap()).unwrap_err();
        assert!(err.to_string().contains("no such folder"), "{err}");
        assert!(!missing.exists());
        assert!(Archive::open_existing(dir.path().to_str().unwrap()).is_ok());
    }

    #[test]
    fn refuses_unknown_schemes() {
        assert!(Archive::open("ftp://x/y").is_err());
        assert!(Archive::open("s3://").is_err());
    }
}
