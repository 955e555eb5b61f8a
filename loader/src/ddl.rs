//! Table definitions: which table, columns, types and key a data set loads
//! into, from the catalog, the extract's header and the user's key overrides,
//! and the SQL that creates them.
//!
//! Naming rule: table = catalog `table` (snake_case of the data set name,
//! `organizational_unit` shortened to `org_unit`); column = catalog `column`
//! (snake_case of the CSV header); a header or data set the catalog lacks
//! gets [`bds_common::catalog::snake_case`] of its name and type `text`.
//! Identifiers are always quoted, never taken raw from a header.

use std::collections::HashMap;
use std::path::Path;

use bds_common::catalog::{Catalog, Dataset, snake_case, table_name};

use crate::error::LoadError;

/// PostgreSQL's identifier length limit (NAMEDATALEN - 1).
const MAX_IDENTIFIER: usize = 63;

/// `name` quoted as an SQL identifier.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `schema.table`, both quoted.
pub fn qualified(schema: &str, table: &str) -> String {
    format!("{}.{}", quote_ident(schema), quote_ident(table))
}

/// `name` cut to PostgreSQL's identifier limit on a character boundary, so
/// the server never truncates a name we later refer to.
pub fn identifier(name: &str) -> String {
    cut(name, MAX_IDENTIFIER).to_string()
}

fn cut(name: &str, max: usize) -> &str {
    let mut end = name.len().min(max);
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    &name[..end]
}

/// A column of a table: name and PostgreSQL type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnDef {
    /// Column name (unquoted).
    pub name: String,
    /// Type as PostgreSQL spells it, e.g. `bigint`, `timestamptz`.
    pub pg_type: String,
}

/// Keys the user declares for data sets, from a TOML file:
/// `"Data Set Name" = ["Header1", "Header2"]`. Names are matched
/// case-insensitively against the data set name or table; key entries may be
/// CSV headers or column names (both become snake_case column names).
#[derive(Debug, Clone, Default)]
pub struct KeyOverrides {
    keys: HashMap<String, Vec<String>>,
}

impl KeyOverrides {
    /// Reads the override file.
    pub fn load(path: &Path) -> Result<KeyOverrides, LoadError> {
        let bad = |problem: String| LoadError::Config {
            problem: format!("key overrides {}: {problem}", path.display()),
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        let table: HashMap<String, Vec<String>> =
            toml::from_str(&text).map_err(|e| bad(e.to_string()))?;
        Ok(Self::from_map(table))
    }

    /// Overrides from a map of data set name to key columns.
    pub fn from_map(map: HashMap<String, Vec<String>>) -> KeyOverrides {
        let keys = map
            .into_iter()
            .map(|(name, key)| {
                let key = key.iter().map(|k| snake_case(k)).collect();
                (name.trim().to_ascii_lowercase(), key)
            })
            .collect();
        KeyOverrides { keys }
    }

    fn find(&self, dataset: &str, table: &str) -> Option<&Vec<String>> {
        self.keys
            .get(&dataset.trim().to_ascii_lowercase())
            .or_else(|| self.keys.get(&table.to_ascii_lowercase()))
    }
}

/// How a data set loads: its table, typed columns and key.
#[derive(Debug, Clone, PartialEq)]
pub struct TableSpec {
    /// Data set name.
    pub dataset: String,
    /// Target schema.
    pub schema: String,
    /// Table name (unquoted).
    pub table: String,
    /// Columns the catalog documents, in header order; empty for data sets
    /// whose columns are unknown (the header decides).
    pub columns: Vec<ColumnDef>,
    /// Key columns; empty: full-only.
    pub key: Vec<String>,
    /// Some key column may be NULL: the key is a unique index with NULLS NOT
    /// DISTINCT (PostgreSQL 15+) instead of a primary key.
    pub nullable_key: bool,
    /// The catalog entry, when the data set is known.
    pub catalog: Option<Dataset>,
}

impl TableSpec {
    /// The spec of a data set by name (as the manifest records it) and the
    /// table the fetcher recorded for it.
    pub fn resolve(
        dataset: &str,
        table: Option<&str>,
        schema: &str,
        overrides: &KeyOverrides,
    ) -> TableSpec {
        match Catalog::builtin().find(dataset) {
            Some(known) => Self::from_catalog(known, schema, overrides),
            None => {
                let table = table.map_or_else(|| table_name(dataset), str::to_string);
                let key = overrides.find(dataset, &table).cloned().unwrap_or_default();
                TableSpec {
                    dataset: dataset.to_string(),
                    schema: schema.to_string(),
                    nullable_key: !key.is_empty(),
                    table,
                    columns: Vec::new(),
                    key,
                    catalog: None,
                }
            }
        }
    }

    /// The spec of a catalog data set.
    pub fn from_catalog(known: &Dataset, schema: &str, overrides: &KeyOverrides) -> TableSpec {
        let columns = known
            .columns
            .iter()
            .map(|c| ColumnDef {
                name: c.column.clone(),
                pg_type: c.pg_type.clone(),
            })
            .collect();
        let overridden = overrides.find(&known.name, &known.table);
        let key = overridden.cloned().unwrap_or_else(|| known.key.clone());
        let nullable_key = key.iter().any(|k| {
            known
                .columns
                .iter()
                .find(|c| &c.column == k)
                .is_none_or(|c| c.nullable)
        });
        TableSpec {
            dataset: known.name.clone(),
            schema: schema.to_string(),
            table: known.table.clone(),
            columns,
            key,
            nullable_key,
            catalog: Some(known.clone()),
        }
    }

    /// Whether differentials can be applied (they upsert by key).
    pub fn has_key(&self) -> bool {
        !self.key.is_empty()
    }

    /// The column and type a CSV header loads into: the catalog's, else the
    /// snake_case of the header as text.
    pub fn column_for_header(&self, header: &str) -> ColumnDef {
        let documented = self
            .catalog
            .as_ref()
            .and_then(|d| d.column_by_header(header));
        match documented {
            Some(c) => ColumnDef {
                name: c.column.clone(),
                pg_type: c.pg_type.clone(),
            },
            None => ColumnDef {
                name: snake_case(header),
                pg_type: "text".into(),
            },
        }
    }

    /// Name of the key's index: `{table}_pkey` or `{table}_key`.
    pub fn key_index_name(&self, table: &str) -> String {
        let suffix = if self.nullable_key { "_key" } else { "_pkey" };
        format!("{}{suffix}", cut(table, MAX_IDENTIFIER - suffix.len()))
    }

    /// The statement adding the key to `table` (in this spec's schema) under
    /// `index_name`; `None` for keyless data sets.
    pub fn key_sql(&self, table: &str, index_name: &str) -> Option<String> {
        if !self.has_key() {
            return None;
        }
        let columns = column_list(&self.key);
        let target = qualified(&self.schema, table);
        Some(if self.nullable_key {
            format!(
                "CREATE UNIQUE INDEX {} ON {target} ({columns}) NULLS NOT DISTINCT",
                quote_ident(index_name)
            )
        } else {
            format!(
                "ALTER TABLE {target} ADD CONSTRAINT {} PRIMARY KEY ({columns})",
                quote_ident(index_name)
            )
        })
    }

    /// The DDL a DBA can review or apply by hand: the table with its key, or
    /// a comment for data sets whose columns are unknown.
    pub fn ddl(&self) -> String {
        let mut out = format!("-- {}: {}\n", self.dataset, self.describe_loads());
        if self.columns.is_empty() {
            out.push_str(&format!(
                "-- {} is created from the first full extract's header, all columns text\n",
                qualified(&self.schema, &self.table)
            ));
            return out;
        }
        // Idempotent, so a DBA can rerun it: the primary key inline, the
        // NULLS NOT DISTINCT index with IF NOT EXISTS.
        let mut create = create_table_sql(&self.schema, &self.table, &self.columns, true);
        if self.has_key() && !self.nullable_key {
            create.truncate(create.len() - 2);
            create.push_str(&format!(
                ",\n    PRIMARY KEY ({})\n)",
                column_list(&self.key)
            ));
        }
        out.push_str(&create);
        out.push_str(";\n");
        if self.has_key() && self.nullable_key {
            out.push_str(&format!(
                "CREATE UNIQUE INDEX IF NOT EXISTS {} ON {} ({}) NULLS NOT DISTINCT;\n",
                quote_ident(&self.key_index_name(&self.table)),
                qualified(&self.schema, &self.table),
                column_list(&self.key)
            ));
        }
        out
    }

    fn describe_loads(&self) -> String {
        if self.has_key() {
            format!("full + differential, key ({})", self.key.join(", "))
        } else {
            "full only (no documented key)".into()
        }
    }
}

/// `"a", "b"`.
pub fn column_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `CREATE TABLE schema.table (...)` without the key, which loads add after
/// COPY (one index build is far cheaper than index maintenance per row).
pub fn create_table_sql(
    schema: &str,
    table: &str,
    columns: &[ColumnDef],
    if_not_exists: bool,
) -> String {
    let body = columns
        .iter()
        .map(|c| format!("    {} {}", quote_ident(&c.name), c.pg_type))
        .collect::<Vec<_>>()
        .join(",\n");
    format!(
        "CREATE TABLE {}{} (\n{body}\n)",
        if if_not_exists { "IF NOT EXISTS " } else { "" },
        qualified(schema, table)
    )
}

/// The DDL of every catalog data set (or the named ones), as `bds-load
/// schema` prints it.
pub fn schema_ddl(
    schema: &str,
    datasets: &[String],
    overrides: &KeyOverrides,
) -> Result<String, LoadError> {
    let catalog = Catalog::builtin();
    let chosen: Vec<&Dataset> = if datasets.is_empty() {
        catalog.datasets.iter().collect()
    } else {
        datasets
            .iter()
            .map(|name| {
                catalog.find(name).ok_or_else(|| LoadError::Config {
                    problem: format!(
                        "data set {name:?} is not in the catalog{}",
                        crate::run::did_you_mean(name)
                    ),
                })
            })
            .collect::<Result<_, _>>()?
    };
    let mut out = format!(
        "-- generated by bds-load {}\nCREATE SCHEMA IF NOT EXISTS {};\n\n",
        bds_common::TOOL_VERSION,
        quote_ident(schema)
    );
    for dataset in chosen {
        out.push_str(&TableSpec::from_catalog(dataset, schema, overrides).ddl());
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_are_quoted_and_cut() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
        assert_eq!(identifier(&"x".repeat(70)).len(), 63);
        assert_eq!(identifier(&"é".repeat(40)).len(), 62);
    }

    #[test]
    fn survey_user_answers_gets_a_nulls_not_distinct_index() {
        let spec = TableSpec::resolve("Survey User Answers", None, "public", &Default::default());
        assert!(spec.nullable_key);
        let sql = spec.key_sql("t", "t_key").unwrap();
        assert!(sql.contains("NULLS NOT DISTINCT"), "{sql}");
        let users = TableSpec::resolve("Users", None, "public", &Default::default());
        assert!(!users.nullable_key);
        assert!(users.ddl().contains("PRIMARY KEY (\"user_id\")"));
    }

    #[test]
    fn unknown_datasets_are_keyless_unless_overridden() {
        let none = KeyOverrides::default();
        let spec = TableSpec::resolve("Brand New Things", None, "public", &none);
        assert_eq!(spec.table, "brand_new_things");
        assert!(!spec.has_key());
        assert_eq!(spec.column_for_header("ThingId").pg_type, "text");

        let overrides =
            KeyOverrides::from_map([("brand new things".into(), vec!["ThingId".into()])].into());
        let spec = TableSpec::resolve("Brand New Things", None, "public", &overrides);
        assert_eq!(spec.key, vec!["thing_id"]);
    }

    #[test]
    fn known_headers_keep_catalog_types_case_insensitively() {
        let spec = TableSpec::resolve("Users", None, "public", &Default::default());
        let c = spec.column_for_header("SIGNUPDATE");
        assert_eq!(
            (c.name.as_str(), c.pg_type.as_str()),
            ("signup_date", "timestamptz")
        );
    }
}
