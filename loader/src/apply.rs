//! Applying one planned step to the database: fetch and verify the extract,
//! then in ONE transaction load it (full or differential) and write its
//! ledger row. An error or a crash rolls both back together, so the next run
//! starts from a consistent state.

use std::time::Instant;

use bds_common::archive::Archive;
use bds_common::manifest::ExtractRecord;
use chrono::Utc;
use postgres::{Client, GenericClient, Transaction};
use tokio::runtime::Runtime;

use crate::copy::{CopyShape, copy_extract};
use crate::ddl::{ColumnDef, TableSpec, column_list, qualified, quote_ident};
use crate::error::{ExtractLabel, LoadError};
use crate::ledger::{self, Entry, Outcome};
use crate::plan::Step;
use crate::read::{self, ColumnMatch, LocalExtract};
use crate::{replace, upsert};

/// What loading an extract did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadOutcome {
    /// Data rows in the extract.
    pub rows: i64,
    /// Rows superseded by a later row with the same key.
    pub duplicates: i64,
    /// Rows inserted or changed (differentials).
    pub changed: Option<i64>,
    /// Columns added to the table.
    pub columns_added: Vec<String>,
}

/// Where extracts come from.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    /// The archive.
    pub archive: &'a Archive,
    /// Runtime for the archive's async calls (never around database calls).
    pub runtime: &'a Runtime,
}

/// Applies `step` to the table of `spec`; with `rebuild`, a full builds the
/// table afresh instead of keeping the columns the table has.
pub fn apply_step(
    client: &mut Client,
    source: Source<'_>,
    spec: &TableSpec,
    step: &Step,
    rebuild: bool,
) -> Result<(), LoadError> {
    let record = step.record();
    let label = ExtractLabel::of(record);
    let started = Utc::now();
    let timer = Instant::now();

    if let Step::SkipDifferential(_) = step {
        let mut tx = begin(client, &label)?;
        write_ledger(
            &mut tx,
            spec,
            record,
            Outcome::Skipped,
            &LoadOutcome::default(),
            started,
        )?;
        commit(tx, &label)?;
        tracing::info!(dataset = %spec.dataset, "{label}: skipped (the data set has no key)");
        return Ok(());
    }

    let extract = read::fetch(source.archive, source.runtime, record)?;
    let header = read::read_header(&extract, &label)?;
    let mut tx = begin(client, &label)?;
    let outcome = match step {
        Step::Full(_) => replace::load_full(&mut tx, spec, &extract, &header, &label, rebuild)?,
        _ => upsert::apply_differential(&mut tx, spec, &extract, &header, &label)?,
    };
    write_ledger(&mut tx, spec, record, Outcome::Applied, &outcome, started)?;
    commit(tx, &label)?;

    tracing::info!(
        dataset = %spec.dataset,
        rows = outcome.rows,
        duplicates = outcome.duplicates,
        changed = outcome.changed,
        seconds = format_args!("{:.2}", timer.elapsed().as_secs_f64()),
        "{label}: applied"
    );
    Ok(())
}

fn begin<'c>(client: &'c mut Client, label: &ExtractLabel) -> Result<Transaction<'c>, LoadError> {
    client
        .transaction()
        .map_err(|e| LoadError::db(format!("{label}: begin"), e))
}

fn commit(tx: Transaction<'_>, label: &ExtractLabel) -> Result<(), LoadError> {
    tx.commit()
        .map_err(|e| LoadError::db(format!("{label}: commit"), e))
}

fn write_ledger(
    tx: &mut Transaction<'_>,
    spec: &TableSpec,
    record: &ExtractRecord,
    outcome: Outcome,
    loaded: &LoadOutcome,
    started: chrono::DateTime<Utc>,
) -> Result<(), LoadError> {
    let entry = Entry {
        record,
        table: &spec.table,
        outcome,
        rows: loaded.rows,
        duplicates: loaded.duplicates,
        changed: loaded.changed,
        columns_added: loaded.columns_added.clone(),
        started,
    };
    ledger::record(tx, &spec.schema, &entry)
}

/// The columns of `schema.table` in order with their types, or `None` when
/// the table does not exist.
pub fn describe_table(
    client: &mut impl GenericClient,
    schema: &str,
    table: &str,
) -> Result<Option<Vec<ColumnDef>>, LoadError> {
    if !ledger::table_exists(client, schema, table)? {
        return Ok(None);
    }
    let rows = client
        .query(
            "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute
             WHERE attrelid = to_regclass($1) AND attnum > 0 AND NOT attisdropped
             ORDER BY attnum",
            &[&qualified(schema, table)],
        )
        .map_err(|e| LoadError::db(format!("describe table {schema}.{table}"), e))?;
    Ok(Some(
        rows.iter()
            .map(|r| ColumnDef {
                name: r.get(0),
                pg_type: r.get(1),
            })
            .collect(),
    ))
}

/// Adds the columns the extract has and the table lacks.
pub fn add_columns(
    tx: &mut Transaction<'_>,
    spec: &TableSpec,
    table: &str,
    columns: &[ColumnDef],
    label: &ExtractLabel,
) -> Result<(), LoadError> {
    for c in columns {
        tracing::warn!(
            dataset = %spec.dataset,
            "{label}: column {} is not in table {}: adding it as {}",
            c.name,
            spec.table,
            c.pg_type
        );
        let sql = format!(
            "ALTER TABLE {} ADD COLUMN {} {}",
            qualified(&spec.schema, table),
            quote_ident(&c.name),
            c.pg_type
        );
        tx.batch_execute(&sql)
            .map_err(|e| LoadError::db(format!("{label}: add column {}", c.name), e))?;
    }
    Ok(())
}

/// Warns about table columns the extract lacks (they become NULL).
///
/// A history replayed from before a column appeared would repeat the same
/// warning for every extract: it is a warning once per table and set of
/// columns in a process, then a debug line.
pub fn warn_missing(spec: &TableSpec, matched: &ColumnMatch, label: &ExtractLabel) {
    static WARNED: std::sync::Mutex<Vec<(String, Vec<String>)>> = std::sync::Mutex::new(Vec::new());
    if matched.missing.is_empty() {
        return;
    }
    let seen = (spec.table.clone(), matched.missing.clone());
    let first = {
        let mut warned = WARNED.lock().unwrap_or_else(|e| e.into_inner());
        let first = !warned.contains(&seen);
        if first {
            warned.push(seen);
        }
        first
    };
    let columns = matched.missing.join(", ");
    if first {
        tracing::warn!(
            dataset = %spec.dataset,
            "{label}: the extract lacks column(s) {columns} of table {}: NULL for its rows \
             (said once a run; later extracts at debug level)",
            spec.table
        );
    } else {
        tracing::debug!(
            dataset = %spec.dataset,
            "{label}: the extract lacks column(s) {columns} of table {}",
            spec.table
        );
    }
}

/// Name of the per-transaction staging table.
pub const STAGE_TABLE: &str = "bds_stage";

/// Column holding the row's position in the CSV, in the staging table.
pub const ORDINAL_COLUMN: &str = "bds_ordinal";

/// COPYs the extract into a temporary staging table (dropped at commit) with
/// a row ordinal, typed like `table_columns`.
pub fn stage(
    tx: &mut Transaction<'_>,
    extract: &LocalExtract,
    matched: &ColumnMatch,
    table_columns: &[ColumnDef],
    label: &ExtractLabel,
) -> Result<i64, LoadError> {
    let definitions: Vec<String> = matched
        .load
        .iter()
        .map(|l| {
            let pg_type = table_columns
                .iter()
                .find(|c| c.name == l.column)
                .map_or("text", |c| c.pg_type.as_str());
            format!("{} {pg_type}", quote_ident(&l.column))
        })
        .collect();
    let create = format!(
        "CREATE TEMP TABLE {STAGE_TABLE} ({ORDINAL_COLUMN} bigint, {}) ON COMMIT DROP",
        definitions.join(", ")
    );
    tx.batch_execute(&create)
        .map_err(|e| LoadError::db(format!("{label}: create the staging table"), e))?;

    let names: Vec<String> = matched.load.iter().map(|l| l.column.clone()).collect();
    let copy = format!(
        "COPY {STAGE_TABLE} ({ORDINAL_COLUMN}, {}) FROM STDIN (FORMAT binary)",
        column_list(&names)
    );
    let shape = CopyShape {
        columns: &matched.load,
        ordinal: true,
    };
    let summary = copy_extract(tx, &copy, extract, &shape, label)?;
    Ok(summary.rows as i64)
}
