//! Loading a full extract: the table becomes exactly the extract, atomically.
//!
//! Fast path (inside the caller's transaction): create a new table, binary
//! COPY into it without any index, build the key in one pass, drop the old
//! table, rename the new one into place and re-create the user's own indexes
//! on it. Readers keep seeing the old contents until commit; they wait only
//! for the short drop-and-rename at the end.
//!
//! When views depend on the table (a DROP would fail), the table is instead
//! emptied and refilled in place from a staging table: slower, and readers
//! wait for the whole load, but the views survive.
//!
//! The same key twice in a full: the later row in the file wins, as in a
//! differential, and the count is logged.

use postgres::{GenericClient, Transaction};

use crate::apply::{
    LoadOutcome, ORDINAL_COLUMN, STAGE_TABLE, add_columns, describe_table, stage, warn_missing,
};
use crate::copy::{CopyShape, copy_extract};
use crate::ddl::{ColumnDef, TableSpec, column_list, create_table_sql, qualified, quote_ident};
use crate::error::{ExtractLabel, LoadError};
use crate::read::{ColumnMatch, LocalExtract, match_columns};

/// SQLSTATE of a unique violation.
const UNIQUE_VIOLATION: &str = "23505";

/// Replaces the table of `spec` with the rows of `extract`. The new table
/// keeps the columns of the old one (a column no longer in the extracts is
/// NULL), unless `rebuild`: then its columns are the catalog's and the
/// extract's only.
pub fn load_full(
    tx: &mut Transaction<'_>,
    spec: &TableSpec,
    extract: &LocalExtract,
    header: &[String],
    label: &ExtractLabel,
    rebuild: bool,
) -> Result<LoadOutcome, LoadError> {
    let existing = describe_table(tx, &spec.schema, &spec.table)?;
    let base = match &existing {
        Some(columns) if !rebuild => columns.clone(),
        _ => spec.columns.clone(),
    };
    let matched = match_columns(header, &base, spec, label)?;
    warn_missing(spec, &matched, label);

    if existing.is_some() && has_dependent_views(tx, spec, label)? {
        return refill_in_place(tx, spec, extract, &matched, label);
    }
    let mut columns = base;
    // A table created from the header alone (columns unknown) has nothing
    // to warn about; any other new column is news.
    let from_header_alone = (existing.is_none() || rebuild) && spec.columns.is_empty();
    if !from_header_alone {
        for c in &matched.added {
            tracing::warn!(
                dataset = %spec.dataset,
                "{label}: column {} is not in table {}: adding it as {}",
                c.name, spec.table, c.pg_type
            );
        }
    }
    columns.extend(matched.added.iter().cloned());

    let target = if existing.is_some() {
        new_table_name(&spec.table)
    } else {
        spec.table.clone()
    };
    let rows = create_and_copy(tx, spec, &target, &columns, extract, &matched, label)?;
    let duplicates = add_key(tx, spec, &target, label)?;
    if existing.is_some() {
        swap(tx, spec, &target, label)?;
    }
    Ok(LoadOutcome {
        rows,
        duplicates,
        changed: None,
        columns_added: matched.added.iter().map(|c| c.name.clone()).collect(),
    })
}

/// Name of the table a full is loaded into before it replaces the old one.
/// Only one bds-load works on a database at a time (advisory lock) and the
/// table lives only inside the transaction, so a fixed name per table is safe.
fn new_table_name(table: &str) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(table.as_bytes());
    format!("bds_new_{}", &hex::encode(digest)[..16])
}

fn create_and_copy(
    tx: &mut Transaction<'_>,
    spec: &TableSpec,
    target: &str,
    columns: &[ColumnDef],
    extract: &LocalExtract,
    matched: &ColumnMatch,
    label: &ExtractLabel,
) -> Result<i64, LoadError> {
    let create = create_table_sql(&spec.schema, target, columns, false);
    tx.batch_execute(&create)
        .map_err(|e| LoadError::db(format!("{label}: create table {target}"), e))?;

    let names: Vec<String> = matched.load.iter().map(|l| l.column.clone()).collect();
    let copy = format!(
        "COPY {} ({}) FROM STDIN (FORMAT binary)",
        qualified(&spec.schema, target),
        column_list(&names)
    );
    let shape = CopyShape {
        columns: &matched.load,
        ordinal: false,
    };
    Ok(copy_extract(tx, &copy, extract, &shape, label)?.rows as i64)
}

/// Adds the key to `target`. On duplicate keys, keeps the last row of each
/// key in file order (a table filled by one COPY stores rows in file order,
/// so physical order is file order) and retries; returns the rows removed.
fn add_key(
    tx: &mut Transaction<'_>,
    spec: &TableSpec,
    target: &str,
    label: &ExtractLabel,
) -> Result<i64, LoadError> {
    let Some(key_sql) = spec.key_sql(target, &spec.key_index_name(target)) else {
        return Ok(0);
    };
    let context = || format!("{label}: add the key ({})", spec.key.join(", "));
    let mut attempt = tx.transaction().map_err(|e| LoadError::db(context(), e))?;
    match attempt.batch_execute(&key_sql) {
        Ok(()) => {
            attempt.commit().map_err(|e| LoadError::db(context(), e))?;
            return Ok(0);
        }
        Err(e) if e.code().map(|c| c.code()) == Some(UNIQUE_VIOLATION) => drop(attempt),
        Err(e) => return Err(LoadError::db(context(), e)),
    }

    let key = column_list(&spec.key);
    let dedupe = format!(
        "DELETE FROM {table} WHERE ctid IN (
             SELECT ctid FROM (
                 SELECT ctid, row_number() OVER (PARTITION BY {key} ORDER BY ctid DESC) AS n
                 FROM {table}) AS ranked
             WHERE n > 1)",
        table = qualified(&spec.schema, target)
    );
    let removed = tx
        .execute(&dedupe, &[])
        .map_err(|e| LoadError::db(context(), e))?;
    tracing::warn!(
        dataset = %spec.dataset,
        "{label}: {removed} row(s) had the key of a later row; the later row was kept"
    );
    tx.batch_execute(&key_sql)
        .map_err(|e| LoadError::db(context(), e))?;
    Ok(removed as i64)
}

/// Puts `new` in place of the data set's table, keeping the old table's own
/// indexes (other than the key) by re-creating them from their definitions.
fn swap(
    tx: &mut Transaction<'_>,
    spec: &TableSpec,
    new: &str,
    label: &ExtractLabel,
) -> Result<(), LoadError> {
    let old = qualified(&spec.schema, &spec.table);
    let context = || format!("{label}: replace table {}", spec.table);
    let user_indexes: Vec<String> = tx
        .query(
            "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
             JOIN pg_class c ON c.oid = i.indexrelid
             WHERE i.indrelid = to_regclass($1) AND NOT i.indisprimary AND c.relname <> $2",
            &[&old, &spec.key_index_name(&spec.table)],
        )
        .map_err(|e| LoadError::db(context(), e))?
        .iter()
        .map(|r| r.get(0))
        .collect();

    let mut sql = format!(
        "DROP TABLE {old};\nALTER TABLE {} RENAME TO {};\n",
        qualified(&spec.schema, new),
        quote_ident(&spec.table)
    );
    if spec.has_key() {
        sql.push_str(&format!(
            "ALTER INDEX {} RENAME TO {};\n",
            qualified(&spec.schema, &spec.key_index_name(new)),
            quote_ident(&spec.key_index_name(&spec.table))
        ));
    }
    for index in user_indexes {
        sql.push_str(&index);
        sql.push_str(";\n");
    }
    tx.batch_execute(&sql)
        .map_err(|e| LoadError::db(context(), e))
}

/// Whether views (or rules) depend on the table, which a DROP would break.
fn has_dependent_views(
    tx: &mut Transaction<'_>,
    spec: &TableSpec,
    label: &ExtractLabel,
) -> Result<bool, LoadError> {
    let row = tx
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
                            WHERE d.classid = 'pg_rewrite'::regclass
                              AND d.refobjid = to_regclass($1)
                              AND r.ev_class <> to_regclass($1))",
            &[&qualified(&spec.schema, &spec.table)],
        )
        .map_err(|e| LoadError::db(format!("{label}: look for dependent views"), e))?;
    Ok(row.get(0))
}

/// Full load for a table with dependent views: stage, empty, refill.
fn refill_in_place(
    tx: &mut Transaction<'_>,
    spec: &TableSpec,
    extract: &LocalExtract,
    matched: &ColumnMatch,
    label: &ExtractLabel,
) -> Result<LoadOutcome, LoadError> {
    tracing::info!(
        dataset = %spec.dataset,
        "{label}: views depend on table {}: refilling it in place", spec.table
    );
    add_columns(tx, spec, &spec.table, &matched.added, label)?;
    let columns = describe_table(tx, &spec.schema, &spec.table)?.unwrap_or_default();
    let rows = stage(tx, extract, matched, &columns, label)?;

    let names: Vec<String> = matched.load.iter().map(|l| l.column.clone()).collect();
    let list = column_list(&names);
    let select = if spec.has_key() {
        let key = column_list(&spec.key);
        format!(
            "SELECT DISTINCT ON ({key}) {list} FROM {STAGE_TABLE} \
             ORDER BY {key}, {ORDINAL_COLUMN} DESC"
        )
    } else {
        format!("SELECT {list} FROM {STAGE_TABLE} ORDER BY {ORDINAL_COLUMN}")
    };
    let table = qualified(&spec.schema, &spec.table);
    let context = || format!("{label}: refill table {}", spec.table);
    tx.batch_execute(&format!("TRUNCATE {table}"))
        .map_err(|e| LoadError::db(context(), e))?;
    let inserted = tx
        .execute(&format!("INSERT INTO {table} ({list}) {select}"), &[])
        .map_err(|e| LoadError::db(context(), e))?;
    Ok(LoadOutcome {
        rows,
        duplicates: rows - inserted as i64,
        changed: None,
        columns_added: matched.added.iter().map(|c| c.name.clone()).collect(),
    })
}

/// Rows in the table (for status).
pub fn row_count(
    client: &mut impl GenericClient,
    schema: &str,
    table: &str,
) -> Result<i64, LoadError> {
    let row = client
        .query_one(
            &format!("SELECT count(*) FROM {}", qualified(schema, table)),
            &[],
        )
        .map_err(|e| LoadError::db(format!("count the rows of {schema}.{table}"), e))?;
    Ok(row.get(0))
}
