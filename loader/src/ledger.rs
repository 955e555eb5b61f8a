//! The ledger: one row per extract applied (or skipped) to a table, written
//! in the same transaction as the data, so the database always knows exactly
//! which extracts it holds.
//!
//! It lives in the target schema as `bds_ledger`: a schema is a
//! self-contained replica (tables and ledger), two target schemas in one
//! database never confuse each other, and `DROP SCHEMA ... CASCADE` resets
//! both together. The ledger is append-only: a reload adds a new full row and
//! earlier rows stay as history; planning looks at the rows since the latest
//! full of each table.

use bds_common::manifest::ExtractRecord;
use chrono::{DateTime, Utc};
use postgres::GenericClient;

use crate::ddl::{qualified, quote_ident};
use crate::error::LoadError;
use crate::plan::{Applied, LedgerState};

/// Name of the ledger table in the target schema.
pub const LEDGER_TABLE: &str = "bds_ledger";

/// The ledger's DDL for `schema`.
pub fn ledger_ddl(schema: &str) -> String {
    let ledger = qualified(schema, LEDGER_TABLE);
    format!(
        "CREATE TABLE IF NOT EXISTS {ledger} (
    id bigserial PRIMARY KEY,
    extract_key text NOT NULL,
    dataset text NOT NULL,
    table_name text NOT NULL,
    kind text NOT NULL CHECK (kind IN ('full', 'differential')),
    outcome text NOT NULL CHECK (outcome IN ('applied', 'skipped')),
    queued timestamptz NOT NULL,
    created timestamptz NOT NULL,
    bds_version text,
    sha256 text NOT NULL,
    archive_key text NOT NULL,
    rows bigint NOT NULL,
    duplicates bigint NOT NULL,
    changed bigint,
    columns_added text[] NOT NULL DEFAULT '{{}}',
    started timestamptz NOT NULL,
    finished timestamptz NOT NULL,
    tool_version text NOT NULL
);
CREATE INDEX IF NOT EXISTS {index} ON {ledger} (table_name, id)",
        index = quote_ident("bds_ledger_table_name_id_idx")
    )
}

/// Creates the target schema and the ledger if missing.
pub fn ensure(client: &mut impl GenericClient, schema: &str) -> Result<(), LoadError> {
    let sql = format!(
        "CREATE SCHEMA IF NOT EXISTS {};\n{}",
        quote_ident(schema),
        ledger_ddl(schema)
    );
    client
        .batch_execute(&sql)
        .map_err(|e| LoadError::db(format!("create the ledger in schema {schema}"), e))
}

/// Whether `schema.table` exists.
pub fn table_exists(
    client: &mut impl GenericClient,
    schema: &str,
    table: &str,
) -> Result<bool, LoadError> {
    let row = client
        .query_one(
            "SELECT to_regclass($1) IS NOT NULL",
            &[&qualified(schema, table)],
        )
        .map_err(|e| LoadError::db(format!("look up table {schema}.{table}"), e))?;
    Ok(row.get(0))
}

/// The ledger's baseline full of `table` and the differentials since. A
/// baseline whose table has vanished counts as none, so the table is
/// reloaded rather than differentials failing on a missing table.
pub fn state(
    client: &mut impl GenericClient,
    schema: &str,
    table: &str,
) -> Result<LedgerState, LoadError> {
    let context = || format!("read the ledger of {schema}.{table}");
    let sql = format!(
        "SELECT extract_key, queued, created, kind FROM {ledger}
         WHERE table_name = $1
           AND id >= coalesce((SELECT max(id) FROM {ledger}
                               WHERE table_name = $1 AND kind = 'full'), 0)
         ORDER BY id",
        ledger = qualified(schema, LEDGER_TABLE)
    );
    let rows = client
        .query(&sql, &[&table])
        .map_err(|e| LoadError::db(context(), e))?;
    let mut state = LedgerState::default();
    for row in rows {
        let applied = Applied {
            extract_key: row.get(0),
            queued: row.get(1),
            created: row.get(2),
        };
        match row.get::<_, &str>(3) {
            "full" => state.baseline = Some(applied),
            _ if state.baseline.is_some() => state.since_baseline.push(applied),
            _ => {}
        }
    }
    if state.baseline.is_some() && !table_exists(client, schema, table)? {
        return Ok(LedgerState::default());
    }
    Ok(state)
}

/// Whether an extract was applied or skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its rows are in the table.
    Applied,
    /// Deliberately not applied (a differential of a keyless data set).
    Skipped,
}

/// One ledger row to write.
#[derive(Debug, Clone)]
pub struct Entry<'a> {
    /// The extract.
    pub record: &'a ExtractRecord,
    /// The table it went into.
    pub table: &'a str,
    /// Applied or skipped.
    pub outcome: Outcome,
    /// Data rows in the extract.
    pub rows: i64,
    /// Rows dropped because a later row had the same key.
    pub duplicates: i64,
    /// Rows inserted or changed (differentials); `None` for fulls.
    pub changed: Option<i64>,
    /// Columns added to the table for this extract.
    pub columns_added: Vec<String>,
    /// When applying started.
    pub started: DateTime<Utc>,
}

/// Writes `entry`; `finished` is the time of writing.
pub fn record(
    client: &mut impl GenericClient,
    schema: &str,
    entry: &Entry<'_>,
) -> Result<(), LoadError> {
    let sql = format!(
        "INSERT INTO {} (extract_key, dataset, table_name, kind, outcome, queued, created,
             bds_version, sha256, archive_key, rows, duplicates, changed, columns_added,
             started, finished, tool_version)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15,
             clock_timestamp(), $16)",
        qualified(schema, LEDGER_TABLE)
    );
    let r = entry.record;
    let outcome = match entry.outcome {
        Outcome::Applied => "applied",
        Outcome::Skipped => "skipped",
    };
    client
        .execute(
            &sql,
            &[
                &r.id().key(),
                &r.dataset,
                &entry.table,
                &r.kind.as_str(),
                &outcome,
                &r.queued,
                &r.created,
                &r.version,
                &r.sha256,
                &r.key,
                &entry.rows,
                &entry.duplicates,
                &entry.changed,
                &entry.columns_added,
                &entry.started,
                &bds_common::TOOL_VERSION,
            ],
        )
        .map_err(|e| LoadError::db(format!("write the ledger row of {}", r.key), e))?;
    Ok(())
}
