//! The JSON shapes of the Brightspace Data Hub API (reference §2), as the
//! fake hub writes them and as tests read them back.
//!
//! The types reject unknown fields on purpose: a test that reads the real
//! tenant fixture and the hub's answer with the same types proves that the
//! hub writes neither more nor fewer fields than the real API.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// A page of a `/datasets/bds…` listing: the objects and the absolute URL of
/// the next page (`null` on the last page). The URL is opaque to clients.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ObjectListPage<T> {
    /// The objects of this page.
    pub objects: Vec<T>,
    /// Absolute URL of the next page.
    pub next: Option<String>,
}

/// One data set in `/datasets/bds` (`BrightspaceDataSetInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DatasetInfo {
    /// Schema id of the data set.
    pub schema_id: String,
    /// The full plugin.
    pub full: Option<PluginInfo>,
    /// The differential plugin, absent for full-only data sets.
    pub differential: Option<PluginInfo>,
    /// `/datasets/bds/{schemaId}/extracts`.
    pub extracts_link: String,
}

/// The full or differential plugin of a data set
/// (`BrightspaceDataSetPluginInfo`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct PluginInfo {
    /// Plugin id.
    pub plugin_id: String,
    /// `Users` or `Users Differential`.
    pub name: String,
    /// One sentence about the data set.
    pub description: String,
    /// `/datasets/bds/{schemaId}/plugins/{pluginId}/extracts`.
    pub extracts_link: String,
}

/// One extract in the `/datasets/bds/…/extracts` routes
/// (`BrightspaceDataSetExtractInfo`): all eight fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ExtractInfo {
    /// Schema id of the data set.
    pub schema_id: String,
    /// Plugin id.
    pub plugin_id: String,
    /// `Full` or `Differential`.
    pub bds_type: String,
    /// When the file was produced, `2021-05-18T19:50:19.476Z`.
    pub created_date: String,
    /// `/dataExport/bds/{pluginId}/{epoch of queued}` on the API host.
    pub download_link: String,
    /// Size of the zip in bytes.
    pub download_size: u64,
    /// When the extract was queued.
    pub queued_for_processing_date: String,
    /// BDS version, `major.minor`.
    pub version: String,
}

/// One entry of the flat `/dataExport/bds/list` array: the newest extract of
/// a plugin. Fields are null when the plugin has no extract in view.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ListedPlugin {
    /// Plugin id.
    pub plugin_id: String,
    /// `Users` or `Users Differential`: only the name tells the type.
    pub name: String,
    /// One sentence about the data set.
    pub description: String,
    /// When the newest extract was produced.
    pub created_date: Option<String>,
    /// `/dataexport/bds/download/{pluginId}` on the API host.
    pub download_link: Option<String>,
    /// Size in bytes, written as a float (`288.0`) as a real tenant did.
    pub download_size: Option<f64>,
}

/// A page of `/dataExport/bds?page=N&pageSize=M`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct DataSetsPage {
    /// Absolute URL of the next page, null on the last.
    pub next_page_url: Option<String>,
    /// Absolute URL of the previous page, null on the first.
    pub prev_page_url: Option<String>,
    /// One entry per plugin.
    pub brightspace_data_sets: Vec<ReportInfo>,
}

/// One plugin with its newest extract (`BrightspaceDataSetReportInfo`); the
/// older extracts in view are in `PreviousDataSets`, each with
/// `PreviousDataSets: null`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ReportInfo {
    /// Older extracts of the plugin, newest first.
    pub previous_data_sets: Option<Vec<ReportInfo>>,
    /// Plugin id.
    pub plugin_id: String,
    /// `Users` or `Users Differential`.
    pub name: String,
    /// One sentence about the data set.
    pub description: String,
    /// Whether this is the full plugin.
    pub full_data_set: bool,
    /// When the extract was produced.
    pub created_date: Option<String>,
    /// `/dataexport/bds/{pluginId}/{epoch of queued}` on the API host.
    pub download_link: Option<String>,
    /// Size of the zip in bytes.
    pub download_size: Option<u64>,
    /// BDS version, `major.minor`.
    pub version: Option<String>,
    /// When the extract was queued.
    pub queued_for_processing_date: Option<String>,
    /// Whether an extract can be downloaded now.
    pub currently_available: bool,
}

/// One entry of `/d2l/api/versions/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct ProductVersions {
    /// `lp`.
    pub product_code: String,
    /// `1.63`.
    pub latest_version: String,
    /// Every version the product answers to.
    pub supported_versions: Vec<String>,
}

/// The answer of the token endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenAnswer {
    /// A JWT-looking bearer token.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Lifetime of the access token in seconds.
    pub expires_in: u64,
    /// The next refresh token; the one just used is spent.
    pub refresh_token: String,
    /// Space-separated scopes granted.
    pub scope: String,
}

/// An OAuth error answer of the token endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenError {
    /// `invalid_client`, `invalid_grant`, `invalid_request`, ...
    pub error: String,
    /// Text for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
}

/// A date-time as the API writes it: UTC, three fractional digits, `Z`.
pub fn api_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_time_has_milliseconds_and_z() {
        let time = bds_common::extract::parse_api_time("2021-05-11T19:49:02Z").unwrap();
        assert_eq!(api_time(time), "2021-05-11T19:49:02.000Z");
    }
}
