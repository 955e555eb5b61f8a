//! The catalog of Brightspace data sets bds knows: names, GUIDs, table names
//! and typed columns, as generated into `schema/catalog.json` by
//! `schema/generate.py`.
//!
//! The catalog is compiled into the binaries. Data sets or columns it lacks are
//! still handled: see [`snake_case`] and [`Dataset::column_by_header`].

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

const CATALOG_JSON: &str = include_str!("../../schema/catalog.json");

/// Every data set bds knows.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Catalog {
    /// The data sets, sorted by name.
    pub datasets: Vec<Dataset>,
}

/// One Brightspace data set: the API name, its GUIDs and its table.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Dataset {
    /// Name as the API reports it, e.g. `Users` or `Grade Results`.
    pub name: String,
    /// PostgreSQL table name, e.g. `users`, `org_units`.
    pub table: String,
    /// Schema id of the data set (same on every Brightspace site).
    pub schema_id: Option<String>,
    /// Plugin id of the full extract.
    pub full_plugin: Option<String>,
    /// Plugin id of the differential extract.
    pub differential_plugin: Option<String>,
    /// `current`, or `columns_unknown` when D2L documents no columns.
    pub status: String,
    /// Event-log data set (rows are appended; the key usually holds a time).
    pub log_style: bool,
    /// Key column names (snake_case), in key order. Empty: no documented key,
    /// so the data set can only be loaded from full extracts.
    pub key: Vec<String>,
    /// Columns in documented CSV header order.
    pub columns: Vec<Column>,
}

/// One documented column of a data set.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Column {
    /// Header exactly as D2L spells it, e.g. `OrgUnitId`.
    pub header: String,
    /// Column name in PostgreSQL, e.g. `org_unit_id`.
    pub column: String,
    /// PostgreSQL type, e.g. `bigint`, `timestamptz`, `numeric`.
    #[serde(rename = "type")]
    pub pg_type: String,
    /// Part of the key.
    pub key: bool,
    /// May be empty in the CSV.
    pub nullable: bool,
}

impl Catalog {
    /// The catalog compiled into this build.
    pub fn builtin() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            serde_json::from_str(CATALOG_JSON).expect("schema/catalog.json is valid")
        })
    }

    /// The data set with this API name, table name or schema id, compared
    /// case-insensitively.
    pub fn find(&self, name_or_id: &str) -> Option<&Dataset> {
        let wanted = name_or_id.trim();
        self.datasets.iter().find(|d| {
            d.name.eq_ignore_ascii_case(wanted)
                || d.table.eq_ignore_ascii_case(wanted)
                || d.schema_id
                    .as_deref()
                    .is_some_and(|id| id.eq_ignore_ascii_case(wanted))
        })
    }

    /// The catalog's data set name nearest to `wanted`, when `wanted` names
    /// none and is close enough to be a typo of one (see [`closest_name`]).
    pub fn suggest(&self, wanted: &str) -> Option<&str> {
        closest_name(wanted, self.datasets.iter().map(|d| d.name.as_str()))
    }

    /// The data set one of whose plugins has this id.
    pub fn by_plugin(&self, plugin_id: &str) -> Option<&Dataset> {
        self.datasets.iter().find(|d| {
            [&d.full_plugin, &d.differential_plugin]
                .into_iter()
                .flatten()
                .any(|p| p.eq_ignore_ascii_case(plugin_id))
        })
    }

    /// Data sets D2L currently documents with columns.
    pub fn current(&self) -> impl Iterator<Item = &Dataset> {
        self.datasets.iter().filter(|d| d.status == "current")
    }
}

impl Dataset {
    /// The documented column with this CSV header, compared case-insensitively.
    pub fn column_by_header(&self, header: &str) -> Option<&Column> {
        self.columns
            .iter()
            .find(|c| c.header.eq_ignore_ascii_case(header))
    }

    /// Whether differentials can be applied: they need a key to upsert by.
    pub fn has_key(&self) -> bool {
        !self.key.is_empty()
    }
}

/// The table name bds gives a data set the catalog does not know:
/// snake_case of its name, with `organizational_unit` shortened to `org_unit`.
pub fn table_name(dataset_name: &str) -> String {
    snake_case(dataset_name).replace("organizational_unit", "org_unit")
}

/// snake_case of a PascalCase header or a data set name: `OrgUnitId` becomes
/// `org_unit_id`, `IPAddress` becomes `ip_address`, `Grade Results` becomes
/// `grade_results`. Characters other than ASCII letters and digits separate
/// words. Same rule as `schema/generate.py`.
pub fn snake_case(name: &str) -> String {
    let chars: Vec<char> = name.chars().collect();
    let mut words: Vec<String> = Vec::new();
    let mut current = String::new();

    for (i, &c) in chars.iter().enumerate() {
        if !c.is_ascii_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            continue;
        }
        if c.is_ascii_uppercase() && !current.is_empty() {
            let prev = chars[i - 1];
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_ascii_lowercase());
            let boundary = prev.is_ascii_lowercase()
                || prev.is_ascii_digit()
                || (prev.is_ascii_uppercase() && next_lower);
            if boundary {
                words.push(std::mem::take(&mut current));
            }
        }
        current.push(c.to_ascii_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words.join("_")
}

/// The candidate nearest to `wanted`, compared case-insensitively, if it is
/// close enough to be a typo: at most one edit for every four characters
/// (one to three), where an edit inserts, deletes or replaces a character
/// or swaps two neighbours.
pub fn closest_name<'a>(
    wanted: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let wanted = wanted.trim().to_lowercase();
    let limit = (wanted.chars().count() / 4).clamp(1, 3);
    candidates
        .into_iter()
        .map(|name| (typo_distance(&wanted, &name.to_lowercase()), name))
        .filter(|(distance, _)| *distance <= limit)
        .min()
        .map(|(_, name)| name)
}

/// Edits between two strings, by characters: insertions, deletions,
/// replacements and swaps of neighbours (optimal string alignment).
fn typo_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    let mut d = vec![0usize; (a.len() + 1) * width];
    for (i, row) in d.chunks_mut(width).enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[..width].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[(i - 1) * width + j] + 1)
                .min(d[i * width + j - 1] + 1)
                .min(d[(i - 1) * width + j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[(i - 2) * width + j - 2] + 1);
            }
            d[i * width + j] = best;
        }
    }
    d[a.len() * width + b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snake_case_follows_the_generator_rule() {
        assert_eq!(snake_case("OrgUnitId"), "org_unit_id");
        assert_eq!(snake_case("IPAddress"), "ip_address");
        assert_eq!(snake_case("LTILinkId"), "lti_link_id");
        assert_eq!(snake_case("BaseObjectID"), "base_object_id");
        assert_eq!(snake_case("Grade Results"), "grade_results");
        assert_eq!(snake_case("Attempt1Score"), "attempt1_score");
        assert_eq!(snake_case("  weird--Name "), "weird_name");
    }

    #[test]
    fn builtin_catalog_is_consistent() {
        let catalog = Catalog::builtin();
        assert!(catalog.current().count() >= 140);
        for d in &catalog.datasets {
            for c in &d.columns {
                assert_eq!(c.column, snake_case(&c.header), "{}", d.name);
            }
            let mut names: Vec<_> = d.columns.iter().map(|c| &c.column).collect();
            names.sort();
            names.dedup();
            assert_eq!(
                names.len(),
                d.columns.len(),
                "duplicate column in {}",
                d.name
            );
            for k in &d.key {
                assert!(
                    d.columns.iter().any(|c| &c.column == k),
                    "{}: key {k}",
                    d.name
                );
            }
        }
    }

    #[test]
    fn typos_get_the_nearest_name() {
        let catalog = Catalog::builtin();
        assert_eq!(catalog.suggest("Usres"), Some("Users"));
        assert_eq!(catalog.suggest("usres"), Some("Users"));
        assert_eq!(catalog.suggest("Userss"), Some("Users"));
        assert_eq!(catalog.suggest("Grade Reslts"), Some("Grade Results"));
        assert_eq!(catalog.suggest("Quizzes and Exams"), None);
        assert_eq!(typo_distance("ab", "ba"), 1);
        assert_eq!(typo_distance("kitten", "sitting"), 3);
    }

    #[test]
    fn org_units_table_matches_the_sample_queries() {
        let catalog = Catalog::builtin();
        assert_eq!(
            catalog.find("Organizational Units").unwrap().table,
            "org_units"
        );
        assert_eq!(table_name("Organizational Units"), "org_units");
        assert_eq!(catalog.find("users").unwrap().name, "Users");
    }
}
