//! The oracle: what a table must contain after a correct replay of a
//! history, and the comparison of a real table with it.
//!
//! The oracle replays the zips themselves, in memory, by the rules of the
//! design notes: the latest full created by `as_of` replaces everything,
//! then each differential created after that full and by `as_of`, in
//! (queued, created) order, upserts whole rows by key (the later row wins;
//! a column the extract lacks is NULL). Data sets without a key take the
//! full only. Values are compared in a normalized text form (see
//! [`normalize`]), so `True` equals `true` and `1.50` equals `1.5`.
//!
//! Limitation: the oracle holds the expected table in memory; use it for
//! test-sized histories, not for benchmark ones.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};

use bds_common::catalog::{Dataset, snake_case};
use bds_common::extract::{ExtractKind, parse_api_time};
use chrono::{DateTime, Duration, Utc};
use postgres::Client;

use crate::ExtractFile;

/// A row in normalized text form, one value per column; `None` is NULL.
pub type Row = Vec<Option<String>>;

/// The contents a table must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedTable {
    /// Table name from the catalog.
    pub table: String,
    /// Column names: the catalog's, then appended ones in order of arrival.
    pub columns: Vec<String>,
    /// PostgreSQL type of each column (appended unknown columns are text).
    pub types: Vec<String>,
    /// Positions of the key columns in `columns`; empty for keyless tables.
    pub key: Vec<usize>,
    /// The rows, sorted by key (keyless: by the whole row).
    pub rows: Vec<Row>,
}

impl ExpectedTable {
    /// Position of column `name`.
    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// The row with this key (normalized values, in key order).
    pub fn row(&self, key: &[&str]) -> Option<&Row> {
        self.rows.iter().find(|row| {
            self.key.len() == key.len()
                && self
                    .key
                    .iter()
                    .zip(key)
                    .all(|(&i, k)| row[i].as_deref() == Some(*k))
        })
    }

    fn key_of(&self, row: &Row) -> Row {
        self.key.iter().map(|&i| row[i].clone()).collect()
    }
}

/// The table a correct replay of `history` (the extracts of every data set;
/// those of `dataset` are picked by name) produces, counting only extracts
/// created at or before `as_of`.
pub fn oracle(
    dataset: &Dataset,
    history: &[ExtractFile],
    as_of: Option<DateTime<Utc>>,
) -> ExpectedTable {
    let dataset = super::with_fallback_columns(dataset);
    let mut mine: Vec<&ExtractFile> = history
        .iter()
        .filter(|e| e.dataset.eq_ignore_ascii_case(&dataset.name))
        .filter(|e| as_of.is_none_or(|t| e.created <= t))
        .collect();
    mine.sort_by_key(|e| (e.queued, e.created));

    let mut replay = Replay::new(&dataset);
    let full = mine.iter().rev().find(|e| e.kind == ExtractKind::Full);
    if let Some(full) = full {
        replay.apply(full);
        if dataset.has_key() {
            mine.iter()
                .filter(|e| e.kind == ExtractKind::Differential && e.created > full.created)
                .for_each(|e| replay.apply(e));
        }
    }
    replay.finish()
}

/// The table being replayed.
struct Replay {
    table: String,
    columns: Vec<String>,
    headers: Vec<String>,
    types: Vec<String>,
    key: Vec<usize>,
    keyed: BTreeMap<Row, Row>,
    keyless: Vec<Row>,
}

impl Replay {
    fn new(dataset: &Dataset) -> Replay {
        let key = dataset
            .key
            .iter()
            .map(|k| {
                dataset
                    .columns
                    .iter()
                    .position(|c| &c.column == k)
                    .expect("key column")
            })
            .collect();
        Replay {
            table: dataset.table.clone(),
            columns: dataset.columns.iter().map(|c| c.column.clone()).collect(),
            headers: dataset.columns.iter().map(|c| c.header.clone()).collect(),
            types: dataset.columns.iter().map(|c| c.pg_type.clone()).collect(),
            key,
            keyed: BTreeMap::new(),
            keyless: Vec::new(),
        }
    }

    /// Applies one extract: a full replaces, a differential upserts.
    fn apply(&mut self, extract: &ExtractFile) {
        if extract.kind == ExtractKind::Full {
            self.keyed.clear();
            self.keyless.clear();
        }
        let mut records = open_csv(extract);
        let header = records
            .next()
            .unwrap_or_else(|| panic!("{}: no header row", extract.path.display()));
        let positions: Vec<usize> = header.iter().map(|h| self.column_for(h)).collect();
        for &k in &self.key {
            assert!(
                positions.contains(&k),
                "{}: key column {} missing",
                extract.path.display(),
                self.headers[k]
            );
        }

        for record in records {
            let mut row: Row = vec![None; self.columns.len()];
            for (value, &position) in record.iter().zip(&positions) {
                row[position] = normalize(&self.types[position], value);
            }
            if self.key.is_empty() {
                self.keyless.push(row);
            } else {
                let key = self.key.iter().map(|&i| row[i].clone()).collect();
                self.keyed.insert(key, row);
            }
        }
    }

    /// The column a header fills, matched case-insensitively; unknown
    /// headers add a text column.
    fn column_for(&mut self, header: &str) -> usize {
        if let Some(i) = self
            .headers
            .iter()
            .position(|h| h.eq_ignore_ascii_case(header))
        {
            return i;
        }
        self.headers.push(header.to_string());
        self.columns.push(snake_case(header));
        self.types.push("text".into());
        self.columns.len() - 1
    }

    fn finish(self) -> ExpectedTable {
        let width = self.columns.len();
        let mut rows: Vec<Row> = match self.key.is_empty() {
            true => self.keyless,
            false => self.keyed.into_values().collect(),
        };
        for row in &mut rows {
            row.resize(width, None);
        }
        let mut expected = ExpectedTable {
            table: self.table,
            columns: self.columns,
            types: self.types,
            key: self.key,
            rows,
        };
        sort_rows(&expected.key.clone(), &mut expected.rows);
        expected
    }
}

/// The CSV records of an extract (header first), BOM removed.
fn open_csv(extract: &ExtractFile) -> impl Iterator<Item = Vec<String>> {
    let path = &extract.path;
    let file = File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut zip = zip::ZipArchive::new(file).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut text = Vec::new();
    zip.by_index(0)
        .and_then(|mut entry| Ok(entry.read_to_end(&mut text)?))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let body = text
        .strip_prefix("\u{feff}".as_bytes())
        .unwrap_or(&text)
        .to_vec();
    let reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(BufReader::new(std::io::Cursor::new(body)));
    let path = path.clone();
    reader.into_records().map(move |record| {
        let record = record.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        record.iter().map(str::to_string).collect()
    })
}

/// A value in the canonical text form of its PostgreSQL type, as the oracle
/// and [`assert_table_matches`] compare them; empty text is NULL.
///
/// bigint: decimal; boolean: `true`/`false`; timestamptz: UTC,
/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, rounded to the microsecond (ties away from
/// zero); numeric: no leading or trailing zeros; double precision: Rust's
/// shortest round-trip form; uuid: lower-case hyphenated; text: unchanged.
/// A value that does not parse is kept as given, so it shows in a diff.
pub fn normalize(pg_type: &str, text: &str) -> Option<String> {
    if text.is_empty() {
        return None;
    }
    let trimmed = text.trim();
    let normalized = match pg_type {
        "bigint" | "integer" | "smallint" => trimmed.parse::<i64>().ok().map(|v| v.to_string()),
        "boolean" => match trimmed.to_ascii_lowercase().as_str() {
            "true" | "t" | "1" => Some("true".into()),
            "false" | "f" | "0" => Some("false".into()),
            _ => None,
        },
        "timestamptz" => normalize_timestamp(trimmed),
        "numeric" => normalize_decimal(trimmed),
        "double precision" => trimmed
            .parse::<f64>()
            .ok()
            .map(|v| if v == 0.0 { 0.0 } else { v }.to_string()),
        "uuid" => uuid::Uuid::parse_str(trimmed)
            .ok()
            .map(|u| u.hyphenated().to_string()),
        _ => None,
    };
    Some(normalized.unwrap_or_else(|| text.to_string()))
}

fn normalize_timestamp(text: &str) -> Option<String> {
    let text = text.replacen(' ', "T", 1);
    let (whole, fraction, zone) = match text.find('.') {
        Some(dot) => {
            let digits_end = text[dot + 1..]
                .find(|c: char| !c.is_ascii_digit())
                .map_or(text.len(), |i| dot + 1 + i);
            (
                &text[..dot],
                &text[dot + 1..digits_end],
                &text[digits_end..],
            )
        }
        None => {
            let zone_at = text
                .get(10..)?
                .find(['Z', '+', '-'])
                .map_or(text.len(), |i| 10 + i);
            (&text[..zone_at], "", &text[zone_at..])
        }
    };
    let zone = match zone {
        "+00" | "-00" => "Z",
        z => z,
    };
    let seconds = parse_api_time(&format!("{whole}{zone}"))?;
    let padded = format!("{fraction:0<7}");
    let mut micros: i64 = padded[..6].parse().ok()?;
    if padded.as_bytes()[6] >= b'5' {
        micros += 1;
    }
    let exact = seconds + Duration::microseconds(micros);
    Some(exact.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
}

fn normalize_decimal(text: &str) -> Option<String> {
    let (negative, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let (integer, fraction) = body.split_once('.').unwrap_or((body, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if !all_digits(integer) || !all_digits(fraction) || integer.len() + fraction.len() == 0 {
        return None;
    }
    let integer = match integer.trim_start_matches('0') {
        "" => "0",
        i => i,
    };
    let fraction = fraction.trim_end_matches('0');
    let magnitude = match fraction {
        "" => integer.to_string(),
        f => format!("{integer}.{f}"),
    };
    Some(match negative && magnitude != "0" {
        true => format!("-{magnitude}"),
        false => magnitude,
    })
}

fn sort_rows(key: &[usize], rows: &mut [Row]) {
    rows.sort_by(|a, b| {
        let ka = key.iter().map(|&i| &a[i]);
        let kb = key.iter().map(|&i| &b[i]);
        ka.cmp(kb).then_with(|| a.cmp(b))
    });
}

/// Panics with a readable difference unless `pg_schema.table` holds exactly
/// the expected rows in the expected columns, each of the expected type
/// (other columns are ignored).
/// Values are read as text (timestamps converted to UTC microseconds by the
/// server) and normalized by the expected types. Call it outside a tokio
/// runtime: the `postgres` client is blocking.
pub fn assert_table_matches(
    client: &mut Client,
    pg_schema: &str,
    table: &str,
    expected: &ExpectedTable,
) {
    let actual = read_table(client, pg_schema, table, expected);
    let report = match expected.key.is_empty() {
        true => diff_multiset(expected, &actual),
        false => diff_keyed(expected, &actual),
    };
    if let Some(report) = report {
        panic!(
            "table {pg_schema}.{table} differs from the oracle ({} rows expected, {} found)\n\
             columns: {}\n{report}",
            expected.rows.len(),
            actual.len(),
            expected.columns.join(", ")
        );
    }
}

fn read_table(
    client: &mut Client,
    schema: &str,
    table: &str,
    expected: &ExpectedTable,
) -> Vec<Row> {
    let db_types: HashMap<String, String> = client
        .query(
            "select column_name::text, data_type::text from information_schema.columns \
             where table_schema = $1 and table_name = $2",
            &[&schema, &table],
        )
        .unwrap_or_else(|e| panic!("read columns of {schema}.{table}: {e}"))
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    assert!(
        !db_types.is_empty(),
        "table {schema}.{table} does not exist"
    );
    let missing: Vec<&String> = expected
        .columns
        .iter()
        .filter(|c| !db_types.contains_key(*c))
        .collect();
    assert!(
        missing.is_empty(),
        "table {schema}.{table} lacks columns {missing:?}"
    );
    assert_column_types(client, schema, table, expected, &db_types);

    let select: Vec<String> = expected
        .columns
        .iter()
        .map(|c| {
            let name = quote_identifier(c);
            match db_types[c].as_str() {
                "timestamp with time zone" => format!(
                    "to_char({name} at time zone 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
                ),
                _ => format!("{name}::text"),
            }
        })
        .collect();
    let sql = format!(
        "select {} from {}.{}",
        select.join(", "),
        quote_identifier(schema),
        quote_identifier(table)
    );
    let mut rows: Vec<Row> = client
        .query(&sql, &[])
        .unwrap_or_else(|e| panic!("read {schema}.{table}: {e}"))
        .into_iter()
        .map(|row| {
            (0..expected.columns.len())
                .map(|i| {
                    let value: Option<String> = row.get(i);
                    value.and_then(|v| match v.is_empty() && expected.types[i] == "text" {
                        true => Some(String::new()),
                        false => normalize(&expected.types[i], &v),
                    })
                })
                .collect()
        })
        .collect();
    sort_rows(&expected.key, &mut rows);
    rows
}

/// Panics unless every expected column has the expected type. The server
/// spells the catalog's types (`timestamptz` is `timestamp with time
/// zone`), so the comparison is with what `information_schema` reports.
fn assert_column_types(
    client: &mut Client,
    schema: &str,
    table: &str,
    expected: &ExpectedTable,
    db_types: &HashMap<String, String>,
) {
    let spelled: HashMap<String, String> = client
        .query(
            "select t, format_type(t::regtype, null) from unnest($1::text[]) t",
            &[&expected.types],
        )
        .unwrap_or_else(|e| panic!("resolve the types of {schema}.{table}: {e}"))
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let wrong: Vec<String> = expected
        .columns
        .iter()
        .zip(&expected.types)
        .filter(|(column, pg_type)| db_types[*column] != spelled[*pg_type])
        .map(|(column, pg_type)| {
            format!("{column}: expected {pg_type}, found {}", db_types[column])
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "table {schema}.{table} has columns of other types than the catalog's:\n  {}",
        wrong.join("\n  ")
    );
}

fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// How many differences of each sort the report shows.
const SHOWN: usize = 5;

fn diff_keyed(expected: &ExpectedTable, actual: &[Row]) -> Option<String> {
    let want: BTreeMap<Row, &Row> = expected
        .rows
        .iter()
        .map(|r| (expected.key_of(r), r))
        .collect();
    let mut have: BTreeMap<Row, &Row> = BTreeMap::new();
    let mut duplicated = Vec::new();
    for row in actual {
        if have.insert(expected.key_of(row), row).is_some() {
            duplicated.push(expected.key_of(row));
        }
    }
    let missing: Vec<&Row> = want.keys().filter(|k| !have.contains_key(*k)).collect();
    let unexpected: Vec<&Row> = have.keys().filter(|k| !want.contains_key(*k)).collect();
    let differing: Vec<String> = want
        .iter()
        .filter_map(|(key, row)| {
            let found = have.get(key)?;
            (row != found).then(|| describe_change(expected, key, row, found))
        })
        .collect();
    if missing.is_empty() && unexpected.is_empty() && differing.is_empty() && duplicated.is_empty()
    {
        return None;
    }
    let mut report = String::new();
    let mut section = |title: &str, count: usize, lines: Vec<String>| {
        if count > 0 {
            report.push_str(&format!("{title}: {count}\n"));
            lines
                .iter()
                .take(SHOWN)
                .for_each(|l| report.push_str(&format!("  {l}\n")));
        }
    };
    section(
        "missing keys",
        missing.len(),
        missing.iter().map(|k| show(k)).collect(),
    );
    section(
        "unexpected keys",
        unexpected.len(),
        unexpected.iter().map(|k| show(k)).collect(),
    );
    section(
        "duplicated keys",
        duplicated.len(),
        duplicated.iter().map(show).collect(),
    );
    section("rows with other values", differing.len(), differing);
    Some(report)
}

fn describe_change(expected: &ExpectedTable, key: &Row, want: &Row, found: &Row) -> String {
    let changes: Vec<String> = (0..expected.columns.len())
        .filter(|&i| want[i] != found[i])
        .map(|i| {
            format!(
                "{}: expected {}, found {}",
                expected.columns[i],
                show_value(&want[i]),
                show_value(&found[i])
            )
        })
        .collect();
    format!("key {}: {}", show(key), changes.join("; "))
}

fn diff_multiset(expected: &ExpectedTable, actual: &[Row]) -> Option<String> {
    let mut counts: BTreeMap<&Row, i64> = BTreeMap::new();
    expected
        .rows
        .iter()
        .for_each(|r| *counts.entry(r).or_default() += 1);
    actual
        .iter()
        .for_each(|r| *counts.entry(r).or_default() -= 1);
    let missing: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(r, n)| format!("{n} x {}", show(r)))
        .collect();
    let extra: Vec<String> = counts
        .iter()
        .filter(|(_, n)| **n < 0)
        .map(|(r, n)| format!("{} x {}", -n, show(r)))
        .collect();
    if missing.is_empty() && extra.is_empty() {
        return None;
    }
    let mut report = format!("rows missing: {}\n", missing.len());
    missing
        .iter()
        .take(SHOWN)
        .for_each(|l| report.push_str(&format!("  {l}\n")));
    report.push_str(&format!("rows unexpected: {}\n", extra.len()));
    extra
        .iter()
        .take(SHOWN)
        .for_each(|l| report.push_str(&format!("  {l}\n")));
    Some(report)
}

fn show(values: &Row) -> String {
    let shown: Vec<String> = values.iter().map(show_value).collect();
    format!("({})", shown.join(", "))
}

fn show_value(value: &Option<String>) -> String {
    match value {
        None => "NULL".into(),
        Some(v) => format!("{v:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_round_to_microseconds_ties_away_from_zero() {
        let n = |t| normalize("timestamptz", t).unwrap();
        assert_eq!(
            n("2026-01-02T03:04:05.1234565Z"),
            "2026-01-02T03:04:05.123457Z"
        );
        assert_eq!(
            n("2026-01-02T03:04:05.1234564Z"),
            "2026-01-02T03:04:05.123456Z"
        );
        assert_eq!(
            n("2026-01-02T03:04:05.9999995Z"),
            "2026-01-02T03:04:06.000000Z"
        );
        assert_eq!(n("2026-01-02T03:04:05.123Z"), "2026-01-02T03:04:05.123000Z");
        assert_eq!(n("2026-01-02T03:04:05Z"), "2026-01-02T03:04:05.000000Z");
        assert_eq!(n("2026-01-02T03:04:05"), "2026-01-02T03:04:05.000000Z");
        assert_eq!(
            n("2026-01-02T05:04:05.5+02:00"),
            "2026-01-02T03:04:05.500000Z"
        );
        assert_eq!(
            n("2026-01-02 03:04:05.123456+00"),
            "2026-01-02T03:04:05.123456Z"
        );
    }

    #[test]
    fn other_types_normalize() {
        assert_eq!(normalize("numeric", "-012.50").unwrap(), "-12.5");
        assert_eq!(normalize("numeric", "-0.00").unwrap(), "0");
        assert_eq!(normalize("numeric", "100").unwrap(), "100");
        assert_eq!(normalize("double precision", "12.250").unwrap(), "12.25");
        assert_eq!(normalize("boolean", "True").unwrap(), "true");
        assert_eq!(normalize("bigint", "007").unwrap(), "7");
        assert_eq!(
            normalize("uuid", "9A2B6C3D-0000-4000-8000-00000000000F").unwrap(),
            "9a2b6c3d-0000-4000-8000-00000000000f"
        );
        assert_eq!(normalize("text", " padded ").unwrap(), " padded ");
        assert_eq!(normalize("text", ""), None);
    }
}
