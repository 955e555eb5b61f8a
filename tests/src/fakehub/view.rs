//! What the hub shows at its current time: the data sets it has extracts
//! for, and the extracts in view (every full created by now, differentials
//! created within the retention window).

use bds_common::catalog::Catalog;
use bds_common::extract::ExtractKind;
use chrono::{DateTime, Utc};

use crate::ExtractFile;

/// A data set as the API lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DatasetView {
    pub(crate) schema_id: String,
    pub(crate) name: String,
    pub(crate) full_plugin: Option<String>,
    pub(crate) differential_plugin: Option<String>,
}

impl DatasetView {
    pub(crate) fn plugin_name(&self, kind: ExtractKind) -> String {
        match kind {
            ExtractKind::Full => self.name.clone(),
            ExtractKind::Differential => format!("{} Differential", self.name),
        }
    }

    pub(crate) fn description(&self) -> String {
        format!(
            "The {} data set returns the details of every {} record.",
            self.name.to_lowercase(),
            self.name.to_lowercase()
        )
    }

    /// The plugins of the data set with their type.
    pub(crate) fn plugins(&self) -> Vec<(String, ExtractKind)> {
        let full = self.full_plugin.clone().map(|p| (p, ExtractKind::Full));
        let differential = self
            .differential_plugin
            .clone()
            .map(|p| (p, ExtractKind::Differential));
        full.into_iter().chain(differential).collect()
    }
}

/// The data sets of these extracts, sorted by schema id. Plugin ids and
/// names come from the catalog; for data sets it lacks, from the extracts.
pub(crate) fn datasets(extracts: &[ExtractFile]) -> Vec<DatasetView> {
    let mut views: Vec<DatasetView> = Vec::new();
    for file in extracts {
        let schema = file.schema_id.to_ascii_lowercase();
        let position = views.iter().position(|v| v.schema_id == schema);
        let view = match position {
            Some(index) => &mut views[index],
            None => {
                views.push(catalog_view(file));
                views.last_mut().expect("just pushed")
            }
        };
        let slot = match file.kind {
            ExtractKind::Full => &mut view.full_plugin,
            ExtractKind::Differential => &mut view.differential_plugin,
        };
        slot.get_or_insert_with(|| file.plugin_id.to_ascii_lowercase());
    }
    views.sort_by(|a, b| a.schema_id.cmp(&b.schema_id));
    views
}

fn catalog_view(file: &ExtractFile) -> DatasetView {
    let schema_id = file.schema_id.to_ascii_lowercase();
    let known = Catalog::builtin().datasets.iter().find(|d| {
        d.schema_id
            .as_deref()
            .is_some_and(|id| id.eq_ignore_ascii_case(&schema_id))
    });
    match known {
        Some(dataset) => DatasetView {
            schema_id,
            name: dataset.name.clone(),
            full_plugin: dataset.full_plugin.as_ref().map(|p| p.to_ascii_lowercase()),
            differential_plugin: dataset
                .differential_plugin
                .as_ref()
                .map(|p| p.to_ascii_lowercase()),
        },
        None => DatasetView {
            schema_id,
            name: file.dataset.clone(),
            full_plugin: None,
            differential_plugin: None,
        },
    }
}

/// Whether the extract can be listed and downloaded at `now`.
pub(crate) fn in_view(file: &ExtractFile, now: DateTime<Utc>, retention: chrono::Duration) -> bool {
    if file.created > now {
        return false;
    }
    match file.kind {
        ExtractKind::Full => true,
        ExtractKind::Differential => file.created >= now - retention,
    }
}

/// Newest first: by created time, then plugin id, so that a bookmark can
/// name a position in the order.
pub(crate) fn newest_first(extracts: &mut [&ExtractFile]) {
    extracts.sort_by_key(|f| std::cmp::Reverse(order_key(f)));
}

/// The position of an extract in [`newest_first`] order, reversed.
pub(crate) fn order_key(file: &ExtractFile) -> (i64, String) {
    (
        file.created.timestamp_millis(),
        file.plugin_id.to_ascii_lowercase(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn users(kind: ExtractKind, created: &str) -> ExtractFile {
        let users = Catalog::builtin().find("Users").unwrap();
        let plugin = match kind {
            ExtractKind::Full => users.full_plugin.clone(),
            ExtractKind::Differential => users.differential_plugin.clone(),
        };
        let time = bds_common::extract::parse_api_time(created).unwrap();
        ExtractFile {
            dataset: "Users".into(),
            schema_id: users.schema_id.clone().unwrap(),
            plugin_id: plugin.unwrap(),
            kind,
            queued: time,
            created: time,
            version: "1.0".into(),
            path: PathBuf::from("/nonexistent"),
            size: 1,
            sha256: String::new(),
            csv_entry: "Users.csv".into(),
        }
    }

    #[test]
    fn catalog_names_both_plugins_even_without_differentials() {
        let views = datasets(&[users(ExtractKind::Full, "2026-01-01T00:00:00Z")]);
        assert_eq!(views.len(), 1);
        assert_eq!(views[0].plugins().len(), 2);
        assert_eq!(
            views[0].plugin_name(ExtractKind::Differential),
            "Users Differential"
        );
    }

    #[test]
    fn old_differentials_leave_the_view_but_fulls_stay() {
        let now = bds_common::extract::parse_api_time("2026-02-01T00:00:00Z").unwrap();
        let days = chrono::Duration::days(14);
        let old_full = users(ExtractKind::Full, "2025-01-01T00:00:00Z");
        let old_differential = users(ExtractKind::Differential, "2026-01-17T23:59:59Z");
        let fresh_differential = users(ExtractKind::Differential, "2026-01-18T00:00:00Z");
        let future_full = users(ExtractKind::Full, "2026-02-01T00:00:01Z");
        assert!(in_view(&old_full, now, days));
        assert!(!in_view(&old_differential, now, days));
        assert!(in_view(&fresh_differential, now, days));
        assert!(!in_view(&future_full, now, days));
    }
}
