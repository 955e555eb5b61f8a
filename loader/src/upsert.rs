//! Applying a differential: upsert its rows by key.
//!
//! The rows are COPYed into a temporary staging table with their position
//! in the file; one statement then keeps the last row of each key
//! (`DISTINCT ON ... ORDER BY key, position DESC`) and upserts it with
//! `ON CONFLICT (key) DO UPDATE ... WHERE (row) IS DISTINCT FROM (new row)`,
//! so rows whose values did not change are not rewritten. Table columns the
//! differential lacks become NULL for its rows, as in a full.

use postgres::Transaction;

use crate::apply::{
    LoadOutcome, ORDINAL_COLUMN, STAGE_TABLE, add_columns, describe_table, stage, warn_missing,
};
use crate::ddl::{TableSpec, column_list, qualified, quote_ident};
use crate::error::{ExtractLabel, LoadError};
use crate::read::{LocalExtract, match_columns};

/// Upserts the rows of `extract` into the table of `spec`.
pub fn apply_differential(
    tx: &mut Transaction<'_>,
    spec: &TableSpec,
    extract: &LocalExtract,
    header: &[String],
    label: &ExtractLabel,
) -> Result<LoadOutcome, LoadError> {
    let table_columns =
        describe_table(tx, &spec.schema, &spec.table)?.ok_or_else(|| LoadError::Extract {
            extract: label.clone(),
            problem: format!(
                "table {}.{} does not exist: load a full first (--rebuild)",
                spec.schema, spec.table
            ),
        })?;
    let matched = match_columns(header, &table_columns, spec, label)?;
    warn_missing(spec, &matched, label);
    add_columns(tx, spec, &spec.table, &matched.added, label)?;
    let rows = stage(tx, extract, &matched, &table_columns, label)?;

    let loaded: Vec<String> = matched.load.iter().map(|l| l.column.clone()).collect();
    let sql = upsert_sql(spec, &loaded, &matched.missing);
    let counts = tx
        .query_one(&sql, &[])
        .map_err(|e| LoadError::db(format!("{label}: upsert into {}", spec.table), e))?;
    let distinct: i64 = counts.get(0);
    let changed: i64 = counts.get(1);
    let duplicates = rows - distinct;
    // The applied line carries the count; this is the decision behind it.
    if duplicates > 0 {
        tracing::debug!(
            dataset = %spec.dataset,
            "{label}: {duplicates} row(s) had the key of a later row in the file; the later \
             row won"
        );
    }
    Ok(LoadOutcome {
        rows,
        duplicates,
        changed: Some(changed),
        columns_added: matched.added.iter().map(|c| c.name.clone()).collect(),
    })
}

/// The upsert statement; returns (distinct keys staged, rows written).
fn upsert_sql(spec: &TableSpec, loaded: &[String], missing: &[String]) -> String {
    let key = column_list(&spec.key);
    let list = column_list(loaded);
    let updated: Vec<&String> = loaded
        .iter()
        .chain(missing)
        .filter(|c| !spec.key.contains(c))
        .collect();
    let action = if updated.is_empty() {
        "DO NOTHING".to_string()
    } else {
        let value = |c: &String| {
            if missing.contains(c) {
                "NULL".to_string()
            } else {
                format!("EXCLUDED.{}", quote_ident(c))
            }
        };
        let set: Vec<String> = updated
            .iter()
            .map(|c| format!("{} = {}", quote_ident(c), value(c)))
            .collect();
        let old: Vec<String> = updated
            .iter()
            .map(|c| format!("target.{}", quote_ident(c)))
            .collect();
        let new: Vec<String> = updated.iter().map(|c| value(c)).collect();
        format!(
            "DO UPDATE SET {} WHERE ROW({}) IS DISTINCT FROM ROW({})",
            set.join(", "),
            old.join(", "),
            new.join(", ")
        )
    };
    format!(
        "WITH staged AS (
             SELECT DISTINCT ON ({key}) {list} FROM {STAGE_TABLE}
             ORDER BY {key}, {ORDINAL_COLUMN} DESC),
         written AS (
             INSERT INTO {table} AS target ({list}) SELECT {list} FROM staged
             ON CONFLICT ({key}) {action}
             RETURNING 1)
         SELECT (SELECT count(*) FROM staged), (SELECT count(*) FROM written)",
        table = qualified(&spec.schema, &spec.table)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_rows_are_not_rewritten_and_missing_columns_become_null() {
        let spec = TableSpec::resolve("Users", None, "public", &Default::default());
        let sql = upsert_sql(
            &spec,
            &["user_id".into(), "user_name".into()],
            &["first_name".into()],
        );
        assert!(
            sql.contains("ON CONFLICT (\"user_id\") DO UPDATE SET"),
            "{sql}"
        );
        assert!(sql.contains("\"first_name\" = NULL"), "{sql}");
        assert!(
            sql.contains(
                "WHERE ROW(target.\"user_name\", target.\"first_name\") IS DISTINCT FROM \
                 ROW(EXCLUDED.\"user_name\", NULL)"
            ),
            "{sql}"
        );
    }
}
