//! Discovery and planning: every page of `/datasets/bds`, every page of
//! each data set's full and differential extract lists, then the plan:
//! what is offered minus what is archived, and the gaps.

use std::collections::{HashMap, HashSet};

use bds_common::catalog::{self, Catalog};
use bds_common::extract::{ExtractId, ExtractKind, parse_api_time};
use bds_common::manifest::{ExtractRecord, GapRecord, Manifest};
use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Deserialize;
use url::Url;

use crate::api::{Api, ApiError};

/// Safety stop for paging: a server whose `Next` never ends.
const MAX_PAGES: usize = 10_000;

/// A page of `/datasets/bds` or of an extract list.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Page<T> {
    #[serde(default = "Vec::new")]
    objects: Vec<T>,
    next: Option<String>,
}

/// One data set as `/datasets/bds` describes it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SchemaInfo {
    /// Schema id.
    pub schema_id: String,
    /// The full plugin.
    pub full: Option<PluginInfo>,
    /// The differential plugin.
    pub differential: Option<PluginInfo>,
}

/// A full or differential plugin.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PluginInfo {
    /// Plugin id.
    pub plugin_id: String,
    /// Display name (`Users`, `Users Differential`).
    pub name: String,
    /// Where its extracts are listed.
    pub extracts_link: Option<String>,
}

/// One extract as the extract lists describe it.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ExtractInfo {
    plugin_id: Option<String>,
    bds_type: Option<String>,
    created_date: Option<String>,
    queued_for_processing_date: Option<String>,
    download_link: Option<String>,
    download_size: Option<serde_json::Number>,
    version: Option<String>,
}

/// An extract the API offers.
#[derive(Debug, Clone)]
pub struct Offer {
    /// Data set name as the API reports it.
    pub dataset: String,
    /// Table of the data set.
    pub table: String,
    /// Identity.
    pub id: ExtractId,
    /// BDS version.
    pub version: Option<String>,
    /// Download route (signed anew per listing: not an identity).
    pub download_link: String,
    /// `DownloadSize`, informational.
    pub download_size: Option<u64>,
}

impl Offer {
    /// The archive key of this extract.
    pub fn key(&self) -> String {
        self.id.archive_key(&self.table)
    }
}

/// Which extracts the user wants.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Names, tables or schema ids; empty: all.
    pub datasets: Vec<String>,
    /// Full extracts wanted.
    pub full: bool,
    /// Differential extracts wanted.
    pub differential: bool,
    /// Created at or after.
    pub since: Option<DateTime<Utc>>,
}

/// What discovery found.
#[derive(Debug, Default)]
pub struct Discovery {
    /// Every offered extract of the selected data sets and types.
    pub offers: Vec<Offer>,
    /// Schema ids whose differential list was read completely.
    pub differentials_listed: HashSet<String>,
    /// Listings that failed: (data set, error).
    pub failures: Vec<(String, String)>,
}

/// A data set's name and table, from the catalog when it knows the schema.
fn naming(schema: &SchemaInfo) -> (String, String) {
    let api_name = schema
        .full
        .as_ref()
        .map(|p| p.name.clone())
        .or_else(|| {
            schema.differential.as_ref().map(|p| {
                let name = p.name.trim_end_matches(" Differential");
                name.to_string()
            })
        })
        .unwrap_or_else(|| schema.schema_id.clone());
    let table = Catalog::builtin()
        .find(&schema.schema_id)
        .or_else(|| Catalog::builtin().find(&api_name))
        .map(|d| d.table.clone())
        .unwrap_or_else(|| catalog::table_name(&api_name));
    (api_name, table)
}

impl Filter {
    fn selects(&self, schema: &SchemaInfo) -> bool {
        if self.datasets.is_empty() {
            return true;
        }
        let (name, table) = naming(schema);
        self.datasets.iter().any(|wanted| {
            [name.as_str(), table.as_str(), schema.schema_id.as_str()]
                .iter()
                .any(|candidate| candidate.eq_ignore_ascii_case(wanted.trim()))
        })
    }
}

/// The offered data set name nearest to a `--dataset` that matched none,
/// if one is close enough to be a typo of it.
fn closest_name(wanted: &str, schemas: &[SchemaInfo]) -> Option<String> {
    let names: Vec<String> = schemas.iter().map(|s| naming(s).0).collect();
    bds_common::catalog::closest_name(wanted, names.iter().map(String::as_str)).map(str::to_string)
}

/// Reads every page starting at `first`.
async fn all_pages<T: serde::de::DeserializeOwned>(
    api: &Api,
    first: Url,
) -> Result<Vec<T>, ApiError> {
    let mut out = Vec::new();
    let mut next = Some(first);
    let mut pages = 0;
    while let Some(url) = next.take() {
        let page: Page<T> = api.get_json(&url).await?;
        out.extend(page.objects);
        pages += 1;
        if let Some(link) = page.next.filter(|n| !n.is_empty())
            && pages < MAX_PAGES
        {
            next = Some(api.resolve(&link)?);
        }
    }
    Ok(out)
}

/// Every data set on the site.
pub async fn list_datasets(api: &Api) -> Result<Vec<SchemaInfo>, ApiError> {
    all_pages(api, api.route("datasets/bds")).await
}

/// Lists the extracts of the selected data sets, `concurrency` lists at once.
pub async fn discover(
    api: &Api,
    filter: &Filter,
    concurrency: usize,
) -> Result<Discovery, ApiError> {
    let schemas = list_datasets(api).await?;
    // A --dataset the site does not offer (a typo in a nightly config, say)
    // fails the run rather than quietly fetching nothing.
    let mut unknown = Vec::new();
    for wanted in &filter.datasets {
        let one = Filter {
            datasets: vec![wanted.clone()],
            ..Filter::default()
        };
        if !schemas.iter().any(|s| one.selects(s)) {
            let reason = match closest_name(wanted, &schemas) {
                Some(name) => format!("the site offers no such data set (did you mean {name:?}?)"),
                None => "the site offers no such data set (give its name as D2L spells it, \
                         e.g. \"Grade Results\", its table name or its schema id; the README \
                         lists the current data sets)"
                    .to_string(),
            };
            tracing::error!(dataset = %wanted, "{reason}");
            unknown.push((wanted.clone(), reason));
        }
    }

    let mut jobs = Vec::new();
    for schema in schemas.iter().filter(|s| filter.selects(s)) {
        let plugins = [
            (ExtractKind::Full, &schema.full, filter.full),
            (
                ExtractKind::Differential,
                &schema.differential,
                filter.differential,
            ),
        ];
        for (kind, plugin, wanted) in plugins {
            if let (Some(plugin), true) = (plugin, wanted) {
                jobs.push((schema, kind, plugin));
            }
        }
    }
    tracing::debug!(
        datasets = schemas.len(),
        lists = jobs.len(),
        "listing extracts"
    );

    let results: Vec<_> = futures::stream::iter(jobs)
        .map(|(schema, kind, plugin)| async move {
            (schema, kind, list_extracts(api, schema, kind, plugin).await)
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;

    let mut discovery = Discovery {
        failures: unknown,
        ..Discovery::default()
    };
    let mut seen = HashSet::new();
    for (schema, kind, result) in results {
        match result {
            Ok(offers) => {
                if kind == ExtractKind::Differential {
                    discovery
                        .differentials_listed
                        .insert(schema.schema_id.clone());
                }
                let fresh = offers.into_iter().filter(|o| seen.insert(o.id.key()));
                discovery.offers.extend(fresh);
            }
            Err(e) => {
                let (name, _) = naming(schema);
                let error = crate::retry::error_chain(&e);
                tracing::error!(dataset = %name, %kind, "cannot list extracts: {error}");
                discovery.failures.push((name, error));
            }
        }
    }
    Ok(discovery)
}

/// Every page of one plugin's extract list.
async fn list_extracts(
    api: &Api,
    schema: &SchemaInfo,
    kind: ExtractKind,
    plugin: &PluginInfo,
) -> Result<Vec<Offer>, ApiError> {
    let first = match &plugin.extracts_link {
        Some(link) => api.resolve(link)?,
        None => api.route(&format!(
            "datasets/bds/{}/plugins/{}/extracts",
            schema.schema_id, plugin.plugin_id
        )),
    };
    let infos: Vec<ExtractInfo> = all_pages(api, first).await?;
    let (dataset, table) = naming(schema);
    Ok(infos
        .into_iter()
        .filter_map(|info| offer(&dataset, &table, schema, kind, plugin, info))
        .collect())
}

/// Turns a listed extract into an offer; one without an identity or a
/// download link is skipped with a warning.
fn offer(
    dataset: &str,
    table: &str,
    schema: &SchemaInfo,
    kind: ExtractKind,
    plugin: &PluginInfo,
    info: ExtractInfo,
) -> Option<Offer> {
    let queued = info
        .queued_for_processing_date
        .as_deref()
        .and_then(parse_api_time);
    let created = info.created_date.as_deref().and_then(parse_api_time);
    let (Some(queued), Some(created), Some(link)) = (queued, created, info.download_link) else {
        tracing::warn!(dataset, %kind, "skipping a listed extract without dates or download link");
        return None;
    };
    let kind = info.bds_type.and_then(|t| t.parse().ok()).unwrap_or(kind);
    let download_size = info
        .download_size
        .and_then(|n| n.as_u64().or_else(|| n.as_f64().map(|f| f as u64)));
    Some(Offer {
        dataset: dataset.to_string(),
        table: table.to_string(),
        id: ExtractId {
            schema_id: schema.schema_id.clone(),
            plugin_id: info.plugin_id.unwrap_or_else(|| plugin.plugin_id.clone()),
            kind,
            queued,
            created,
        },
        version: info.version,
        download_link: link,
        download_size,
    })
}

/// What a run will do.
#[derive(Debug, Default)]
pub struct Plan {
    /// To download, oldest first.
    pub fetch: Vec<Offer>,
    /// Already archived and recorded with the right size.
    pub skip: Vec<Offer>,
    /// Differentials missed since the last run.
    pub gaps: Vec<GapRecord>,
    /// Offered, but created before `--since`: left out.
    pub before_since: usize,
}

/// Offered minus archived. An extract counts as archived when the manifest
/// records it and the archive holds an object of the recorded size (only
/// `bds-fetch verify` re-hashes).
pub fn plan(
    discovery: &Discovery,
    filter: &Filter,
    manifest: &Manifest,
    archived: &HashMap<String, u64>,
    now: DateTime<Utc>,
) -> Plan {
    let recorded: HashMap<String, &ExtractRecord> = manifest
        .extracts
        .iter()
        .map(|r| (r.id().key(), r))
        .collect();
    let mut plan = Plan {
        gaps: gaps(discovery, manifest, now),
        ..Plan::default()
    };
    for offer in &discovery.offers {
        if filter.since.is_some_and(|since| offer.id.created < since) {
            plan.before_since += 1;
            continue;
        }
        let done = recorded
            .get(&offer.id.key())
            .is_some_and(|r| archived.get(&r.key) == Some(&r.size));
        if done {
            plan.skip.push(offer.clone());
        } else {
            plan.fetch.push(offer.clone());
        }
    }
    plan.fetch.sort_by_key(|o| (o.id.queued, o.id.created));
    plan
}

/// Data sets whose newest archived differential is older than the oldest
/// differential still offered: the ones between were missed.
fn gaps(discovery: &Discovery, manifest: &Manifest, now: DateTime<Utc>) -> Vec<GapRecord> {
    let mut oldest_offered: HashMap<&str, &Offer> = HashMap::new();
    for offer in &discovery.offers {
        if offer.id.kind != ExtractKind::Differential
            || !discovery.differentials_listed.contains(&offer.id.schema_id)
        {
            continue;
        }
        let slot = oldest_offered.entry(&offer.id.schema_id).or_insert(offer);
        if offer.id.created < slot.id.created {
            *slot = offer;
        }
    }
    let mut out = Vec::new();
    for (schema_id, oldest) in oldest_offered {
        let newest_archived = manifest
            .extracts
            .iter()
            .filter(|r| r.kind == ExtractKind::Differential && r.schema_id == schema_id)
            .map(|r| r.created)
            .max();
        let Some(newest) = newest_archived.filter(|&n| n < oldest.id.created) else {
            continue;
        };
        let known = manifest
            .gaps
            .iter()
            .any(|g| g.schema_id == schema_id && g.newest_archived == Some(newest));
        if known {
            continue;
        }
        out.push(GapRecord {
            dataset: oldest.dataset.clone(),
            table: oldest.table.clone(),
            schema_id: schema_id.to_string(),
            newest_archived: Some(newest),
            oldest_offered: oldest.id.created,
            detected_at: now,
        });
    }
    out.sort_by(|a, b| a.table.cmp(&b.table));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> SchemaInfo {
        SchemaInfo {
            schema_id: "s1".into(),
            full: Some(PluginInfo {
                plugin_id: "pf".into(),
                name: "Organizational Units".into(),
                extracts_link: None,
            }),
            differential: None,
        }
    }

    #[test]
    fn a_typo_of_an_offered_name_is_suggested() {
        let offered = [schema()];
        let suggest = |wanted| closest_name(wanted, &offered);
        assert_eq!(
            suggest("Organisational Units").as_deref(),
            Some("Organizational Units")
        );
        assert_eq!(
            suggest("organizational unit").as_deref(),
            Some("Organizational Units")
        );
        assert_eq!(suggest("Users"), None);
        assert_eq!(
            suggest("Organizational Untis").as_deref(),
            Some("Organizational Units")
        );
    }

    fn offer_at(kind: ExtractKind, created: &str) -> Offer {
        let time = parse_api_time(created).unwrap();
        Offer {
            dataset: "Users".into(),
            table: "users".into(),
            id: ExtractId {
                schema_id: "s1".into(),
                plugin_id: "p".into(),
                kind,
                queued: time,
                created: time,
            },
            version: None,
            download_link: "/x".into(),
            download_size: Some(1),
        }
    }

    fn record_of(offer: &Offer, size: u64) -> ExtractRecord {
        ExtractRecord {
            dataset: offer.dataset.clone(),
            table: offer.table.clone(),
            schema_id: offer.id.schema_id.clone(),
            plugin_id: offer.id.plugin_id.clone(),
            kind: offer.id.kind,
            version: None,
            queued: offer.id.queued,
            created: offer.id.created,
            size,
            sha256: "00".into(),
            key: offer.key(),
            csv_entry: "Users.csv".into(),
            csv_size: 1,
            fetched_at: offer.id.created,
            tool_version: "0".into(),
        }
    }

    #[test]
    fn catalog_names_the_table_and_the_filter_matches_any_name() {
        let (name, table) = naming(&schema());
        assert_eq!(name, "Organizational Units");
        assert_eq!(table, "org_units");
        for wanted in ["org_units", "ORGANIZATIONAL UNITS", "s1"] {
            let filter = Filter {
                datasets: vec![wanted.into()],
                ..Filter::default()
            };
            assert!(filter.selects(&schema()), "{wanted}");
        }
    }

    #[test]
    fn the_plan_skips_what_is_archived_with_the_recorded_size() {
        let archived_ok = offer_at(ExtractKind::Full, "2026-01-01T00:00:00Z");
        let archived_short = offer_at(ExtractKind::Full, "2026-01-08T00:00:00Z");
        let new = offer_at(ExtractKind::Differential, "2026-01-09T00:00:00Z");
        let manifest = Manifest {
            extracts: vec![record_of(&archived_ok, 10), record_of(&archived_short, 10)],
            gaps: vec![],
        };
        let archived = HashMap::from([(archived_ok.key(), 10), (archived_short.key(), 9)]);
        let discovery = Discovery {
            offers: vec![new.clone(), archived_ok, archived_short.clone()],
            ..Discovery::default()
        };
        let plan = plan(
            &discovery,
            &Filter::default(),
            &manifest,
            &archived,
            Utc::now(),
        );
        assert_eq!(plan.skip.len(), 1);
        let keys: Vec<String> = plan.fetch.iter().map(Offer::key).collect();
        assert_eq!(keys, vec![archived_short.key(), new.key()]);
    }

    #[test]
    fn a_gap_is_found_when_the_archive_is_older_than_the_offer() {
        let old = offer_at(ExtractKind::Differential, "2026-01-01T00:00:00Z");
        let offered = offer_at(ExtractKind::Differential, "2026-02-01T00:00:00Z");
        let manifest = Manifest {
            extracts: vec![record_of(&old, 1)],
            gaps: vec![],
        };
        let discovery = Discovery {
            offers: vec![offered.clone()],
            differentials_listed: HashSet::from(["s1".to_string()]),
            failures: vec![],
        };
        let found = gaps(&discovery, &manifest, Utc::now());
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].oldest_offered, offered.id.created);

        let recorded = Manifest {
            gaps: found,
            ..manifest
        };
        assert!(gaps(&discovery, &recorded, Utc::now()).is_empty());
    }
}
