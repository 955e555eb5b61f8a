//! Reading an extract: getting the archived zip onto local disk with its
//! sha256 checked against the manifest, finding its single CSV, and matching
//! the CSV header to the table's columns.
//!
//! A local archive is read in place (hashed, then opened); a remote one is
//! spooled to a temporary file first, because the zip format needs random
//! access. Either way nothing is applied before the hash matches.

use std::collections::HashSet;
use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use bds_common::archive::Archive;
use bds_common::hash::sha256_file;
use bds_common::manifest::ExtractRecord;
use bds_common::verify::{Limits, inspect_zip};
use tokio::runtime::Runtime;

use crate::ddl::{ColumnDef, TableSpec};
use crate::encode::ValueKind;
use crate::error::{ExtractLabel, LoadError};

/// An extract on local disk whose sha256 matched the manifest.
#[derive(Debug)]
pub struct LocalExtract {
    /// The zip file.
    pub path: PathBuf,
    /// Index of the CSV entry in the zip.
    pub entry_index: usize,
    /// Added to the csv crate's line numbers of data records: 1 for CRLF
    /// files, whose reader counts a record's final LF with the next record.
    pub line_offset: u64,
    /// The temporary copy of a remote object, removed on drop.
    _spool: Option<tempfile::TempPath>,
}

/// Gets the extract of `record` onto local disk, checking its sha256 and
/// that the zip holds exactly one CSV.
pub fn fetch(
    archive: &Archive,
    runtime: &Runtime,
    record: &ExtractRecord,
) -> Result<LocalExtract, LoadError> {
    let label = ExtractLabel::of(record);
    let (path, spool, sha256) = match archive.local_root() {
        Some(root) => {
            let path = root.join(&record.key);
            let (sha256, _) = sha256_file(&path).map_err(|source| LoadError::Io {
                context: format!("{label}: cannot read {}", path.display()),
                source,
            })?;
            (path, None, sha256)
        }
        None => {
            let spool = tempfile::Builder::new()
                .prefix("bds-load-")
                .suffix(".zip")
                .tempfile()
                .map_err(|source| LoadError::Io {
                    context: format!("{label}: cannot create a temporary file"),
                    source,
                })?
                .into_temp_path();
            let (sha256, _) = runtime
                .block_on(archive.get_to_file(&record.key, &spool))
                .map_err(|source| LoadError::Archive {
                    extract: label.clone(),
                    source,
                })?;
            (spool.to_path_buf(), Some(spool), sha256)
        }
    };
    if !sha256.eq_ignore_ascii_case(&record.sha256) {
        return Err(LoadError::Checksum {
            extract: label,
            expected: record.sha256.clone(),
            actual: sha256,
        });
    }
    let (mut zip, summary) =
        inspect_zip(&path, Limits::default()).map_err(|source| LoadError::Zip {
            extract: label.clone(),
            source,
        })?;
    let line_offset = u64::from(first_line_ends_with_crlf(
        &mut zip,
        summary.entry_index,
        &label,
    )?);
    Ok(LocalExtract {
        path,
        entry_index: summary.entry_index,
        line_offset,
        _spool: spool,
    })
}

/// Whether the CSV's first line ends with CRLF (D2L's style) rather than LF.
fn first_line_ends_with_crlf(
    zip: &mut zip::ZipArchive<File>,
    index: usize,
    label: &ExtractLabel,
) -> Result<bool, LoadError> {
    use std::io::{BufRead, Read};
    let entry = zip.by_index(index).map_err(|e| LoadError::Extract {
        extract: label.clone(),
        problem: format!("cannot open the CSV in the zip: {e}"),
    })?;
    let mut first = Vec::new();
    BufReader::new(entry.take(1 << 20))
        .read_until(b'\n', &mut first)
        .map_err(|e| LoadError::Extract {
            extract: label.clone(),
            problem: format!("cannot inflate the CSV (corrupt or truncated zip): {e}"),
        })?;
    Ok(first.ends_with(b"\r\n"))
}

/// Buffer of the CSV parser: large enough that refills are rare.
const CSV_BUFFER: usize = 256 << 10;

/// A CSV reader over the extract's CSV entry. The header row is read by the
/// caller; a UTF-8 BOM, when present, is removed by the csv crate.
pub fn csv_reader<'z>(
    zip: &'z mut zip::ZipArchive<BufReader<File>>,
    entry_index: usize,
    label: &ExtractLabel,
) -> Result<csv::Reader<zip::read::ZipFile<'z, BufReader<File>>>, LoadError> {
    let entry = zip.by_index(entry_index).map_err(|e| LoadError::Extract {
        extract: label.clone(),
        problem: format!("cannot open the CSV in the zip: {e}"),
    })?;
    Ok(csv::ReaderBuilder::new()
        .has_headers(true)
        .flexible(false)
        .buffer_capacity(CSV_BUFFER)
        .from_reader(entry))
}

/// Opens the zip of a local extract.
pub fn open_zip(
    path: &Path,
    label: &ExtractLabel,
) -> Result<zip::ZipArchive<BufReader<File>>, LoadError> {
    let file = File::open(path).map_err(|source| LoadError::Io {
        context: format!("{label}: cannot open {}", path.display()),
        source,
    })?;
    zip::ZipArchive::new(BufReader::with_capacity(64 << 10, file)).map_err(|e| LoadError::Extract {
        extract: label.clone(),
        problem: format!("cannot read the zip: {e}"),
    })
}

/// The CSV header of the extract.
pub fn read_header(extract: &LocalExtract, label: &ExtractLabel) -> Result<Vec<String>, LoadError> {
    let mut zip = open_zip(&extract.path, label)?;
    let mut reader = csv_reader(&mut zip, extract.entry_index, label)?;
    let header = reader
        .byte_headers()
        .map_err(|e| csv_error(e, label, extract.line_offset))?;
    let mut names = Vec::with_capacity(header.len());
    for field in header {
        let name = std::str::from_utf8(field).map_err(|_| LoadError::Csv {
            extract: label.clone(),
            line: 1,
            problem: "the header is not valid UTF-8".into(),
        })?;
        names.push(name.trim_start_matches('\u{feff}').trim().to_string());
    }
    if names.iter().all(String::is_empty) {
        return Err(LoadError::Csv {
            extract: label.clone(),
            line: 1,
            problem: "the CSV has no header row".into(),
        });
    }
    Ok(names)
}

/// A csv crate error as a loader error with its line.
pub fn csv_error(error: csv::Error, label: &ExtractLabel, line_offset: u64) -> LoadError {
    let line = error.position().map_or(0, |p| p.line() + line_offset);
    match error.into_kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => LoadError::Csv {
            extract: label.clone(),
            line,
            problem: format!(
                "wrong number of fields: expected {expected_len}, found {len} (an unbalanced \
                 quote makes a field swallow the lines after it)"
            ),
        },
        csv::ErrorKind::Io(e) => LoadError::Extract {
            extract: label.clone(),
            problem: format!("cannot inflate the CSV (corrupt or truncated zip): {e}"),
        },
        other => LoadError::Csv {
            extract: label.clone(),
            line,
            problem: format!("{other:?}"),
        },
    }
}

/// One CSV column as it loads: its position, header and the table column's
/// binary encoding.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadColumn {
    /// Field index in the CSV.
    pub index: usize,
    /// Header as written in the CSV.
    pub header: String,
    /// Table column name.
    pub column: String,
    /// How values are encoded for the table column's type.
    pub kind: ValueKind,
}

/// How the CSV's columns meet the table's.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ColumnMatch {
    /// CSV columns in CSV order, with their table columns.
    pub load: Vec<LoadColumn>,
    /// Columns the table lacks, to be added (catalog type, else text).
    pub added: Vec<ColumnDef>,
    /// Table columns the extract lacks: NULL for its rows.
    pub missing: Vec<String>,
}

/// Most columns a PostgreSQL table can have.
const MAX_TABLE_COLUMNS: usize = 1600;

/// Matches `header` to the table's `columns` (empty when the table does not
/// exist yet) case-insensitively. A key column missing from the header, two
/// headers for one column, more headers than a table can hold or a column
/// type bds-load cannot write fail the extract.
pub fn match_columns(
    header: &[String],
    table_columns: &[ColumnDef],
    spec: &TableSpec,
    label: &ExtractLabel,
) -> Result<ColumnMatch, LoadError> {
    let fail = |problem: String| LoadError::Extract {
        extract: label.clone(),
        problem,
    };
    // PostgreSQL's own limit; checked first so a hostile header of a
    // million names fails at once instead of after a million warnings.
    if header.len() > MAX_TABLE_COLUMNS {
        return Err(fail(format!(
            "the header has {} columns, but a table holds at most {MAX_TABLE_COLUMNS} columns",
            header.len()
        )));
    }
    let mut matched = ColumnMatch::default();
    let mut loaded: HashSet<String> = HashSet::with_capacity(header.len());
    for (index, name) in header.iter().enumerate() {
        let wanted = spec.column_for_header(name);
        let existing = table_columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(&wanted.name));
        let target = match existing {
            Some(c) => c.clone(),
            None => {
                matched.added.push(wanted.clone());
                wanted
            }
        };
        if !loaded.insert(target.name.clone()) {
            return Err(fail(format!(
                "two header columns load into column {} (second: {name:?})",
                target.name
            )));
        }
        let kind = ValueKind::from_pg_type(&target.pg_type).ok_or_else(|| {
            fail(format!(
                "column {} has type {}, which bds-load cannot write",
                target.name, target.pg_type
            ))
        })?;
        matched.load.push(LoadColumn {
            index,
            header: name.clone(),
            column: target.name,
            kind,
        });
    }
    matched.missing = table_columns
        .iter()
        .filter(|c| !loaded.contains(&c.name))
        .map(|c| c.name.clone())
        .collect();
    if let Some(key) = spec.key.iter().find(|k| !loaded.contains(k.as_str())) {
        return Err(fail(format!(
            "key column {key} is missing from the header ({})",
            header.join(",")
        )));
    }
    Ok(matched)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn label() -> ExtractLabel {
        ExtractLabel("Users full".into())
    }

    fn users_header(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn headers_match_case_insensitively_and_new_ones_are_added() {
        let spec = TableSpec::resolve("Users", None, "public", &Default::default());
        let table = vec![
            ColumnDef {
                name: "user_id".into(),
                pg_type: "bigint".into(),
            },
            ColumnDef {
                name: "user_name".into(),
                pg_type: "text".into(),
            },
        ];
        let header = users_header(&["USERID", "SignupDate", "Shiny"]);
        let m = match_columns(&header, &table, &spec, &label()).unwrap();
        assert_eq!(m.load[0].column, "user_id");
        assert_eq!(m.load[1].kind, ValueKind::Timestamp);
        assert_eq!(m.added.len(), 2);
        assert_eq!(m.added[1].pg_type, "text");
        assert_eq!(m.missing, vec!["user_name"]);
    }

    #[test]
    fn a_missing_key_column_fails_clearly() {
        let spec = TableSpec::resolve("Users", None, "public", &Default::default());
        let err = match_columns(&users_header(&["UserName"]), &[], &spec, &label()).unwrap_err();
        assert!(
            err.to_string().contains("key column user_id is missing"),
            "{err}"
        );
    }

    #[test]
    fn two_headers_for_one_column_fail() {
        let spec = TableSpec::resolve("Users", None, "public", &Default::default());
        let header = users_header(&["UserId", "userid"]);
        assert!(match_columns(&header, &[], &spec, &label()).is_err());
    }
}
