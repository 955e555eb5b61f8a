//! Checks that a downloaded extract is what D2L promises: a readable zip
//! holding exactly one CSV whose every byte matches its CRC, within sane
//! size limits.
//!
//! The zip is read from a local file (the zip format needs random access);
//! entry names are only reported, never used as file paths.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use thiserror::Error;

/// Limits against zip bombs.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest uncompressed CSV accepted, in bytes.
    pub max_uncompressed: u64,
    /// Largest ratio of uncompressed to compressed size accepted.
    pub max_ratio: u64,
}

impl Default for Limits {
    /// 256 GiB and 1000:1. Real BDS CSVs compress about 3 to 20 times.
    fn default() -> Self {
        Limits {
            max_uncompressed: 256 << 30,
            max_ratio: 1000,
        }
    }
}

/// What a verified extract holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ZipSummary {
    /// Name of the CSV entry inside the zip, e.g. `Users.csv`.
    pub entry_name: String,
    /// Index of that entry in the zip.
    pub entry_index: usize,
    /// Uncompressed size of the CSV in bytes.
    pub uncompressed_size: u64,
}

/// Why an extract was rejected.
#[derive(Debug, Error)]
pub enum VerifyError {
    /// The file could not be read.
    #[error("cannot read {path}")]
    Io {
        /// The zip file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The zip's structure is broken (truncated, not a zip).
    #[error("{path} is not a readable zip file")]
    NotAZip {
        /// The zip file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: zip::result::ZipError,
    },
    /// The zip does not hold exactly one CSV.
    #[error("{path} must hold exactly one CSV file, but holds {entries:?}")]
    WrongEntries {
        /// The zip file.
        path: PathBuf,
        /// Names of the entries found.
        entries: Vec<String>,
    },
    /// An entry's data does not match its CRC or declared size.
    #[error("entry {entry} of {path} is corrupt")]
    Corrupt {
        /// The zip file.
        path: PathBuf,
        /// The entry name.
        entry: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The entry would inflate beyond the limits.
    #[error(
        "entry {entry} of {path} inflates to {uncompressed} bytes from {compressed}, over the \
         limit (at most {max_uncompressed} bytes and a ratio of {max_ratio}:1)"
    )]
    TooLarge {
        /// The zip file.
        path: PathBuf,
        /// The entry name.
        entry: String,
        /// Declared or observed uncompressed size.
        uncompressed: u64,
        /// Compressed size.
        compressed: u64,
        /// The size limit.
        max_uncompressed: u64,
        /// The ratio limit.
        max_ratio: u64,
    },
}

/// Opens the zip at `path` and finds its single CSV entry, checking the
/// declared sizes against `limits`. Does not read the data: see
/// [`verify_zip`] for the CRC check.
pub fn inspect_zip(
    path: &Path,
    limits: Limits,
) -> Result<(zip::ZipArchive<File>, ZipSummary), VerifyError> {
    let file = File::open(path).map_err(|source| VerifyError::Io {
        path: path.into(),
        source,
    })?;
    let mut archive = zip::ZipArchive::new(file).map_err(|source| VerifyError::NotAZip {
        path: path.into(),
        source,
    })?;

    let names: Vec<String> = archive
        .file_names()
        .map(|n| {
            n.map(|n| n.into_owned())
                .unwrap_or_else(|_| "<unreadable name>".into())
        })
        .collect();
    let csv: Vec<usize> = names
        .iter()
        .enumerate()
        .filter(|(_, n)| n.to_ascii_lowercase().ends_with(".csv") && !n.ends_with('/'))
        .map(|(i, _)| i)
        .collect();
    if archive.len() != 1 || csv.len() != 1 {
        return Err(VerifyError::WrongEntries {
            path: path.into(),
            entries: names,
        });
    }

    let index = csv[0];
    let entry = archive
        .by_index_raw(index)
        .map_err(|source| VerifyError::NotAZip {
            path: path.into(),
            source,
        })?;
    let summary = ZipSummary {
        entry_name: names[index].clone(),
        entry_index: index,
        uncompressed_size: entry.size(),
    };
    check_limits(
        path,
        &summary.entry_name,
        entry.size(),
        entry.compressed_size(),
        limits,
    )?;
    drop(entry);
    Ok((archive, summary))
}

/// Fully verifies the extract at `path`: structure, exactly one CSV, sizes
/// within `limits`, every byte inflated and checked against the entry's CRC
/// and declared size.
pub fn verify_zip(path: &Path, limits: Limits) -> Result<ZipSummary, VerifyError> {
    let (mut archive, summary) = inspect_zip(path, limits)?;
    let corrupt = |source| VerifyError::Corrupt {
        path: path.into(),
        entry: summary.entry_name.clone(),
        source,
    };

    let mut entry =
        archive
            .by_index(summary.entry_index)
            .map_err(|source| VerifyError::NotAZip {
                path: path.into(),
                source,
            })?;
    let compressed = entry.compressed_size();
    // Read one byte past the declared size so a lying header is caught,
    // without ever inflating more than the limit allows.
    let cap = summary.uncompressed_size.min(limits.max_uncompressed) + 1;
    let read = io::copy(&mut (&mut entry).take(cap), &mut io::sink()).map_err(corrupt)?;
    if read != summary.uncompressed_size {
        let err = io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "inflated {read} bytes, header declares {}",
                summary.uncompressed_size
            ),
        );
        return Err(corrupt(err));
    }
    check_limits(path, &summary.entry_name, read, compressed, limits)?;
    Ok(summary)
}

fn check_limits(
    path: &Path,
    entry: &str,
    uncompressed: u64,
    compressed: u64,
    limits: Limits,
) -> Result<(), VerifyError> {
    let ratio_ok = uncompressed <= compressed.max(1).saturating_mul(limits.max_ratio);
    if uncompressed > limits.max_uncompressed || !ratio_ok {
        return Err(VerifyError::TooLarge {
            path: path.into(),
            entry: entry.to_string(),
            uncompressed,
            compressed,
            max_uncompressed: limits.max_uncompressed,
            max_ratio: limits.max_ratio,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use zip::write::SimpleFileOptions;

    fn make_zip(entries: &[(&str, &[u8])]) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut w = zip::ZipWriter::new(file.reopen().unwrap());
        for (name, data) in entries {
            w.start_file(*name, SimpleFileOptions::default()).unwrap();
            w.write_all(data).unwrap();
        }
        w.finish().unwrap();
        file
    }

    #[test]
    fn accepts_one_csv() {
        let z = make_zip(&[("Users.csv", b"\xEF\xBB\xBFUserId\r\n1\r\n")]);
        let s = verify_zip(z.path(), Limits::default()).unwrap();
        assert_eq!(s.entry_name, "Users.csv");
        assert_eq!(s.uncompressed_size, 14);
    }

    #[test]
    fn rejects_two_entries_and_names_them() {
        let z = make_zip(&[("a.csv", b"x"), ("b.txt", b"y")]);
        let err = verify_zip(z.path(), Limits::default()).unwrap_err();
        assert!(err.to_string().contains("b.txt"), "{err}");
    }

    #[test]
    fn rejects_a_flipped_byte() {
        let data = "UserId,Name\r\n".repeat(1000);
        let z = make_zip(&[("Users.csv", data.as_bytes())]);
        let mut bytes = std::fs::read(z.path()).unwrap();
        bytes[60] ^= 0x55;
        std::fs::write(z.path(), &bytes).unwrap();
        assert!(verify_zip(z.path(), Limits::default()).is_err());
    }

    #[test]
    fn rejects_a_truncated_zip() {
        let z = make_zip(&[("Users.csv", b"UserId\r\n1\r\n")]);
        let bytes = std::fs::read(z.path()).unwrap();
        std::fs::write(z.path(), &bytes[..bytes.len() - 10]).unwrap();
        assert!(matches!(
            verify_zip(z.path(), Limits::default()),
            Err(VerifyError::NotAZip { .. })
        ));
    }

    #[test]
    fn rejects_a_zip_bomb() {
        let data = vec![b'0'; 10 << 20];
        let z = make_zip(&[("bomb.csv", &data)]);
        let limits = Limits {
            max_uncompressed: 1 << 40,
            max_ratio: 100,
        };
        let err = verify_zip(z.path(), limits).unwrap_err();
        assert!(matches!(err, VerifyError::TooLarge { .. }), "{err}");
    }
}
