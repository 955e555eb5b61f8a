//! What identifies an extract, and where it lives in the archive.
//!
//! An extract is identified by its data set's schema id, its plugin id, its
//! type and the times D2L queued and created it. Download links are never
//! part of the identity: the API signs them anew for every listing.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

/// Full (a weekly snapshot) or differential (a day of inserts and updates).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExtractKind {
    /// Snapshot of the whole data set; replaces what came before.
    Full,
    /// Inserts and updates since the previous differential; never deletes.
    Differential,
}

impl ExtractKind {
    /// `full` or `differential`, as used in archive keys and the manifest.
    pub fn as_str(self) -> &'static str {
        match self {
            ExtractKind::Full => "full",
            ExtractKind::Differential => "differential",
        }
    }
}

impl fmt::Display for ExtractKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ExtractKind {
    type Err = String;

    /// Accepts our spelling and the API's `BdsType` (`Full`, `Differential`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "full" => Ok(ExtractKind::Full),
            "differential" | "diff" => Ok(ExtractKind::Differential),
            other => Err(format!("unknown extract type {other:?}")),
        }
    }
}

/// The identity of one extract.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ExtractId {
    /// Schema id of the data set.
    pub schema_id: String,
    /// Plugin id of the full or differential plugin.
    pub plugin_id: String,
    /// Full or differential.
    pub kind: ExtractKind,
    /// When D2L queued the extract for processing.
    pub queued: DateTime<Utc>,
    /// When D2L finished creating the file.
    pub created: DateTime<Utc>,
}

impl ExtractId {
    /// A stable text form, used as the ledger key in the database:
    /// `schema/plugin/kind/queued/created` with lower-case GUIDs and RFC 3339
    /// times in milliseconds.
    pub fn key(&self) -> String {
        format!(
            "{}/{}/{}/{}/{}",
            self.schema_id.to_ascii_lowercase(),
            self.plugin_id.to_ascii_lowercase(),
            self.kind,
            self.queued.to_rfc3339_opts(SecondsFormat::Millis, true),
            self.created.to_rfc3339_opts(SecondsFormat::Millis, true),
        )
    }

    /// The archive key of this extract: readable by people, unique per
    /// identity. `extracts/{table}/{kind}/{table}_{kind}_{queued}_{created}.zip`
    /// with times as `YYYYMMDDTHHMMSSZ` and the created time to milliseconds.
    pub fn archive_key(&self, table: &str) -> String {
        format!(
            "extracts/{table}/{kind}/{table}_{kind}_{queued}_{created}.zip",
            kind = self.kind,
            queued = self.queued.format("%Y%m%dT%H%M%SZ"),
            created = self.created.format("%Y%m%dT%H%M%S%3fZ"),
        )
    }
}

impl fmt::Display for ExtractId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} extract queued {}", self.kind, utc_text(self.queued))
    }
}

/// A time as both tools print it: RFC 3339, whole seconds, `Z`
/// (`2026-11-23T03:00:00Z`).
pub fn utc_text(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// Parses a date-time as the API writes it (`2021-05-18T19:50:19.476Z`),
/// leniently: 0 to 9 fractional digits, `Z` or an offset, or no zone (UTC).
pub fn parse_api_time(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Some(t.with_timezone(&Utc));
    }
    chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ExtractId {
        ExtractId {
            schema_id: "ABC".into(),
            plugin_id: "DEF".into(),
            kind: ExtractKind::Differential,
            queued: parse_api_time("2021-05-11T19:49:02.000Z").unwrap(),
            created: parse_api_time("2021-05-11T19:49:46.003Z").unwrap(),
        }
    }

    #[test]
    fn key_and_archive_key_are_stable() {
        assert_eq!(
            id().key(),
            "abc/def/differential/2021-05-11T19:49:02.000Z/2021-05-11T19:49:46.003Z"
        );
        assert_eq!(
            id().archive_key("users"),
            "extracts/users/differential/users_differential_20210511T194902Z_20210511T194946003Z.zip"
        );
    }

    #[test]
    fn api_times_parse_leniently() {
        for t in [
            "2021-05-11T19:49:02Z",
            "2021-05-11T19:49:02.1234567Z",
            "2021-05-11T19:49:02",
        ] {
            assert!(parse_api_time(t).is_some(), "{t}");
        }
        assert!(parse_api_time("yesterday").is_none());
    }

    #[test]
    fn kind_accepts_the_api_spelling() {
        assert_eq!("Full".parse::<ExtractKind>().unwrap(), ExtractKind::Full);
        assert_eq!(
            "Differential".parse::<ExtractKind>().unwrap(),
            ExtractKind::Differential
        );
    }
}
