//! The API host, "the Brightspace site": version negotiation, the BDS
//! listings and the download routes that redirect to the storage host
//! (reference §1-3), behind a Bearer check and a rate limit (§5).

use std::sync::Arc;
use std::time::Instant;

use axum::Json;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bds_common::extract::ExtractKind;

use super::auth::scope_covers;
use super::faults::{FaultKind, FaultTarget, RouteClass};
use super::net::{ConnHandle, damage, record_of, status_fault};
use super::shapes::{
    DataSetsPage, DatasetInfo, ExtractInfo, ListedPlugin, ObjectListPage, PluginInfo,
    ProductVersions, ReportInfo, api_time,
};
use super::state::{Charge, Shared};
use super::storage::signed_url;
use super::view::{self, DatasetView};
use crate::ExtractFile;

/// Size added to `DownloadSize` by [`FaultKind::WrongDownloadSize`].
pub const WRONG_SIZE_OFFSET: u64 = 1024;

/// The routes of the API host, parsed case-insensitively.
#[derive(Debug, Clone, PartialEq, Eq)]
enum ApiRoute {
    Versions,
    Datasets {
        version: String,
    },
    Extracts {
        version: String,
        schema_id: String,
        plugin_id: Option<String>,
    },
    OneExtract {
        version: String,
        schema_id: String,
        plugin_id: String,
        extract_id: String,
    },
    ExportList {
        version: String,
    },
    ExportPaged {
        version: String,
    },
    Download {
        version: String,
        plugin_id: String,
        epoch: Option<String>,
    },
}

impl ApiRoute {
    fn parse(path: &str, latest_version: &str) -> Option<ApiRoute> {
        let lower = path.trim_start_matches('/').to_ascii_lowercase();
        let segments: Vec<&str> = lower.split('/').collect();
        match segments.as_slice() {
            ["d2l", "api", "versions"] | ["d2l", "api", "versions", ""] => Some(ApiRoute::Versions),
            ["d2l", "api", "lp", version, rest @ ..]
                if version_is_supported(version, latest_version) =>
            {
                Self::parse_lp(version.to_string(), rest)
            }
            _ => None,
        }
    }

    fn parse_lp(version: String, rest: &[&str]) -> Option<ApiRoute> {
        let route = match rest {
            ["datasets", "bds"] => ApiRoute::Datasets { version },
            ["datasets", "bds", schema, "extracts"] => ApiRoute::Extracts {
                version,
                schema_id: schema.to_string(),
                plugin_id: None,
            },
            ["datasets", "bds", schema, "plugins", plugin, "extracts"] => ApiRoute::Extracts {
                version,
                schema_id: schema.to_string(),
                plugin_id: Some(plugin.to_string()),
            },
            ["datasets", "bds", schema, "plugins", plugin, "extracts", id] => {
                ApiRoute::OneExtract {
                    version,
                    schema_id: schema.to_string(),
                    plugin_id: plugin.to_string(),
                    extract_id: id.to_string(),
                }
            }
            ["dataexport", "bds", "list"] => ApiRoute::ExportList { version },
            ["dataexport", "bds"] => ApiRoute::ExportPaged { version },
            ["dataexport", "bds", "download", plugin] => ApiRoute::Download {
                version,
                plugin_id: plugin.to_string(),
                epoch: None,
            },
            ["dataexport", "bds", plugin, epoch] => ApiRoute::Download {
                version,
                plugin_id: plugin.to_string(),
                epoch: Some(epoch.to_string()),
            },
            _ => return None,
        };
        Some(route)
    }

    fn class(&self) -> RouteClass {
        match self {
            ApiRoute::Download { .. } => RouteClass::DownloadRedirect,
            _ => RouteClass::List,
        }
    }

    /// The OAuth scope the route needs (reference §1.1).
    fn scope(&self) -> Option<&'static str> {
        match self {
            ApiRoute::Versions => None,
            ApiRoute::Datasets { .. } | ApiRoute::Extracts { .. } | ApiRoute::OneExtract { .. } => {
                Some("datasets:bds:read")
            }
            ApiRoute::ExportList { .. } | ApiRoute::ExportPaged { .. } => {
                Some("datahub:dataexports:read")
            }
            ApiRoute::Download { .. } => Some("datahub:dataexports:download"),
        }
    }

    fn shows_sizes(&self) -> bool {
        !matches!(self, ApiRoute::Versions | ApiRoute::Datasets { .. })
    }
}

/// `1.N` from LP 1.10 up to the latest version the hub claims.
fn version_is_supported(version: &str, latest: &str) -> bool {
    let minor = |v: &str| v.strip_prefix("1.").and_then(|m| m.parse::<u32>().ok());
    match (minor(version), minor(latest)) {
        (Some(asked), Some(latest)) => (10..=latest).contains(&asked),
        _ => false,
    }
}

/// Every request to the API host goes through here and is logged.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    request: Request,
) -> Response {
    let (parts, _) = request.into_parts();
    let mut record = record_of(&parts);
    let response = answer(&shared, &conn, &parts);
    record.status = response.status().as_u16();
    shared.lock().api_log.push(record);
    response
}

/// Charges the rate-limit bucket, then answers; every answer but a 429
/// carries the three rate-limit headers.
fn answer(shared: &Shared, conn: &ConnHandle, parts: &Parts) -> Response {
    let cost = shared.config.request_cost;
    let charge = shared.lock().bucket.charge(cost);
    let (remaining, reset_secs) = match charge {
        Charge::Allowed {
            remaining,
            reset_secs,
        } => (remaining, reset_secs),
        Charge::Refused { retry_after_secs } => {
            return status_fault(FaultKind::Status429 { retry_after_secs });
        }
    };

    let mut response = routed(shared, conn, parts);
    if response.status() != StatusCode::TOO_MANY_REQUESTS {
        let headers = response.headers_mut();
        headers.insert("X-Rate-Limit-Remaining", HeaderValue::from(remaining));
        headers.insert("X-Rate-Limit-Reset", HeaderValue::from(reset_secs));
        headers.insert("X-Request-Cost", HeaderValue::from(cost));
    }
    response
}

fn routed(shared: &Shared, conn: &ConnHandle, parts: &Parts) -> Response {
    let Some(route) = ApiRoute::parse(parts.uri.path(), &shared.config.latest_version) else {
        return StatusCode::NOT_FOUND.into_response();
    };
    if parts.method != Method::GET && parts.method != Method::HEAD {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    if let Some(scope) = route.scope()
        && let Err(denied) = authorize(shared, &parts.headers, scope)
    {
        return denied.into_response();
    }
    let target = FaultTarget::Route(route.class());
    let fired = shared
        .lock()
        .faults
        .fire_first(|f| f.target == target && f.kind.is_status());
    if let Some(kind) = fired {
        return status_fault(kind);
    }

    let query: Vec<(String, String)> =
        url::form_urlencoded::parse(parts.uri.query().unwrap_or_default().as_bytes())
            .into_owned()
            .collect();
    let response = Listing::new(shared, &route).answer(&route, &query);

    let kinds = shared
        .lock()
        .faults
        .fire_all(|f| f.target == target && f.kind.is_body());
    damage(response, &kinds, &conn.reset)
}

/// Why a request was not let through to its route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Denied {
    /// No Bearer token, or an unknown or expired one: 401.
    Unauthorized,
    /// A valid token lacking the route's scope: 403.
    Forbidden,
}

impl IntoResponse for Denied {
    fn into_response(self) -> Response {
        match self {
            Denied::Unauthorized => {
                let challenge = [(header::WWW_AUTHENTICATE, "Bearer error=\"invalid_token\"")];
                (StatusCode::UNAUTHORIZED, challenge).into_response()
            }
            Denied::Forbidden => StatusCode::FORBIDDEN.into_response(),
        }
    }
}

fn authorize(shared: &Shared, headers: &HeaderMap, scope: &str) -> Result<(), Denied> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim().to_string())
        .ok_or(Denied::Unauthorized)?;

    let state = shared.lock();
    let grant = state
        .access_tokens
        .get(&token)
        .ok_or(Denied::Unauthorized)?;
    if grant.expires <= Instant::now() {
        return Err(Denied::Unauthorized);
    }
    if !scope_covers(&grant.scopes, scope) {
        return Err(Denied::Forbidden);
    }
    Ok(())
}

/// What a listing request sees: the data sets and the extracts in view at
/// the hub's time, and whether every size is to be reported wrong.
struct Listing<'a> {
    shared: &'a Shared,
    datasets: Vec<DatasetView>,
    visible: Vec<ExtractFile>,
    all_sizes_wrong: bool,
}

impl<'a> Listing<'a> {
    fn new(shared: &'a Shared, route: &ApiRoute) -> Self {
        let mut state = shared.lock();
        let now = state.now.unwrap_or_else(chrono::Utc::now);
        let retention = shared.config.differential_retention;
        let datasets = view::datasets(&state.extracts);
        let visible = state
            .extracts
            .iter()
            .filter(|f| view::in_view(f, now, retention))
            .cloned()
            .collect();
        let all_sizes_wrong = route.shows_sizes()
            && state
                .faults
                .fire_first(|f| {
                    f.kind == FaultKind::WrongDownloadSize
                        && f.target == FaultTarget::Route(RouteClass::List)
                })
                .is_some();
        Listing {
            shared,
            datasets,
            visible,
            all_sizes_wrong,
        }
    }

    fn answer(&self, route: &ApiRoute, query: &[(String, String)]) -> Response {
        let param = |name: &str| {
            query
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.as_str())
        };
        match route {
            ApiRoute::Versions => self.versions(),
            ApiRoute::Datasets { version } => self.datasets_page(version, param("bookmark")),
            ApiRoute::Extracts {
                version,
                schema_id,
                plugin_id,
            } => self.extracts_page(version, schema_id, plugin_id.as_deref(), param("bookmark")),
            ApiRoute::OneExtract {
                version,
                schema_id,
                plugin_id,
                extract_id,
            } => self.one_extract(version, schema_id, plugin_id, extract_id),
            ApiRoute::ExportList { version } => self.export_list(version),
            ApiRoute::ExportPaged { version } => {
                self.export_page(version, param("page"), param("pageSize"))
            }
            ApiRoute::Download {
                plugin_id, epoch, ..
            } => self.download(plugin_id, epoch.as_deref()),
        }
    }

    fn base(&self, version: &str) -> String {
        format!("{}/d2l/api/lp/{version}", self.shared.api_url)
    }

    fn versions(&self) -> Response {
        let latest = self.shared.config.latest_version.clone();
        let lp = ProductVersions {
            product_code: "lp".into(),
            supported_versions: supported_versions(&latest),
            latest_version: latest,
        };
        Json(vec![lp]).into_response()
    }

    /// `/datasets/bds`: data sets by schema id; the bookmark is the last
    /// schema id of the previous page.
    fn datasets_page(&self, version: &str, bookmark: Option<&str>) -> Response {
        let after = match bookmark.map(decode_bookmark) {
            Some(None) => return bad_request("invalid bookmark"),
            Some(Some(after)) => Some(after),
            None => None,
        };
        let base = self.base(version);
        let rest: Vec<&DatasetView> = self
            .datasets
            .iter()
            .filter(|d| after.as_deref().is_none_or(|a| d.schema_id.as_str() > a))
            .collect();
        let size = self.shared.config.page_size.max(1);
        let page = &rest[..rest.len().min(size)];
        let next = (rest.len() > size).then(|| {
            let last = &page[page.len() - 1].schema_id;
            format!("{base}/datasets/bds?bookmark={}", encode_bookmark(last))
        });
        let objects = page.iter().map(|d| dataset_info(&base, d)).collect();
        Json(ObjectListPage { objects, next }).into_response()
    }

    /// Both `…/extracts` routes: newest first; the bookmark names the last
    /// extract of the previous page.
    fn extracts_page(
        &self,
        version: &str,
        schema_id: &str,
        plugin_id: Option<&str>,
        bookmark: Option<&str>,
    ) -> Response {
        let Some(dataset) = self.dataset(schema_id, plugin_id) else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let after = match bookmark.map(|b| decode_bookmark(b).and_then(|t| parse_order_key(&t))) {
            Some(None) => return bad_request("invalid bookmark"),
            Some(Some(after)) => Some(after),
            None => None,
        };
        let mut rest: Vec<&ExtractFile> = self
            .visible
            .iter()
            .filter(|f| f.schema_id.eq_ignore_ascii_case(&dataset.schema_id))
            .filter(|f| plugin_id.is_none_or(|p| f.plugin_id.eq_ignore_ascii_case(p)))
            .filter(|f| after.as_ref().is_none_or(|a| view::order_key(f) < *a))
            .collect();
        view::newest_first(&mut rest);

        let size = self.shared.config.page_size.max(1);
        let page = &rest[..rest.len().min(size)];
        let next = (rest.len() > size).then(|| {
            let (millis, plugin) = view::order_key(page[page.len() - 1]);
            let path = match plugin_id {
                Some(p) => format!("datasets/bds/{}/plugins/{p}/extracts", dataset.schema_id),
                None => format!("datasets/bds/{}/extracts", dataset.schema_id),
            };
            let bookmark = encode_bookmark(&format!("{millis}|{plugin}"));
            format!("{}/{path}?bookmark={bookmark}", self.base(version))
        });
        let objects = page.iter().map(|f| self.extract_info(version, f)).collect();
        Json(ObjectListPage { objects, next }).into_response()
    }

    /// One extract; its id is the epoch of its queued time, like the
    /// download route's identifier.
    fn one_extract(&self, version: &str, schema: &str, plugin: &str, id: &str) -> Response {
        if self.dataset(schema, Some(plugin)).is_none() {
            return StatusCode::NOT_FOUND.into_response();
        }
        let found = self.newest_first_of(plugin).into_iter().find(|f| {
            f.schema_id.eq_ignore_ascii_case(schema) && id.parse() == Ok(f.queued.timestamp())
        });
        match found {
            Some(file) => Json(self.extract_info(version, file)).into_response(),
            None => StatusCode::NOT_FOUND.into_response(),
        }
    }

    /// `/dataExport/bds/list`: every plugin with its newest extract.
    fn export_list(&self, version: &str) -> Response {
        let mut listed = Vec::new();
        for dataset in &self.datasets {
            for (plugin, kind) in dataset.plugins() {
                let newest = self.newest_first_of(&plugin).into_iter().next();
                listed.push(ListedPlugin {
                    name: dataset.plugin_name(kind),
                    description: dataset.description(),
                    created_date: newest.map(|f| api_time(f.created)),
                    download_link: newest.map(|_| {
                        format!("{}/dataexport/bds/download/{plugin}", self.base(version))
                    }),
                    download_size: newest.map(|f| self.reported_size(f) as f64),
                    plugin_id: plugin,
                });
            }
        }
        Json(listed).into_response()
    }

    /// `/dataExport/bds?page=N&pageSize=M`: one entry per plugin, 1-based
    /// pages.
    fn export_page(&self, version: &str, page: Option<&str>, page_size: Option<&str>) -> Response {
        let page: usize = match page.map(str::parse) {
            None => 1,
            Some(Ok(page)) if page >= 1 => page,
            Some(_) => return bad_request("page must be a positive number"),
        };
        let size: usize = match page_size.map(str::parse) {
            None => self.shared.config.page_size.max(1),
            Some(Ok(size)) if (1..=1000).contains(&size) => size,
            Some(_) => return bad_request("pageSize must be between 1 and 1000"),
        };
        let entries: Vec<(&DatasetView, String, ExtractKind)> = self
            .datasets
            .iter()
            .flat_map(|d| d.plugins().into_iter().map(move |(p, k)| (d, p, k)))
            .collect();

        let start = (page - 1).saturating_mul(size).min(entries.len());
        let end = (start + size).min(entries.len());
        let base = format!("{}/dataexport/bds", self.base(version));
        let link = |p: usize| format!("{base}?page={p}&pageSize={size}");
        let answer = DataSetsPage {
            next_page_url: (end < entries.len()).then(|| link(page + 1)),
            prev_page_url: (page > 1).then(|| link(page - 1)),
            brightspace_data_sets: entries[start..end]
                .iter()
                .map(|(d, p, k)| self.report_info(version, d, p, *k))
                .collect(),
        };
        Json(answer).into_response()
    }

    fn report_info(
        &self,
        version: &str,
        dataset: &DatasetView,
        plugin: &str,
        kind: ExtractKind,
    ) -> ReportInfo {
        let extracts = self.newest_first_of(plugin);
        let mut entries = extracts.iter().map(|f| ReportInfo {
            previous_data_sets: None,
            plugin_id: plugin.to_string(),
            name: dataset.plugin_name(kind),
            description: dataset.description(),
            full_data_set: kind == ExtractKind::Full,
            created_date: Some(api_time(f.created)),
            download_link: Some(format!(
                "{}/dataexport/bds/{plugin}/{}",
                self.base(version),
                f.queued.timestamp()
            )),
            download_size: Some(self.reported_size(f)),
            version: Some(f.version.clone()),
            queued_for_processing_date: Some(api_time(f.queued)),
            currently_available: true,
        });
        let newest = entries.next();
        let previous = entries.collect();
        match newest {
            Some(newest) => ReportInfo {
                previous_data_sets: Some(previous),
                ..newest
            },
            None => ReportInfo {
                previous_data_sets: Some(Vec::new()),
                plugin_id: plugin.to_string(),
                name: dataset.plugin_name(kind),
                description: dataset.description(),
                full_data_set: kind == ExtractKind::Full,
                created_date: None,
                download_link: None,
                download_size: None,
                version: None,
                queued_for_processing_date: None,
                currently_available: false,
            },
        }
    }

    /// The two download routes: 302 to a freshly signed storage URL.
    fn download(&self, plugin: &str, epoch: Option<&str>) -> Response {
        let extracts = self.newest_first_of(plugin);
        let found = match epoch {
            None => extracts.first().copied(),
            Some(epoch) => extracts
                .iter()
                .copied()
                .find(|f| epoch.parse() == Ok(f.queued.timestamp())),
        };
        let Some(file) = found else {
            return StatusCode::NOT_FOUND.into_response();
        };
        let location = signed_url(self.shared, file);
        let headers = [
            (header::LOCATION, location),
            (header::CACHE_CONTROL, "no-cache, no-store".to_string()),
        ];
        (StatusCode::FOUND, headers).into_response()
    }

    /// The data set with this schema id, if the plugin (when given) is one
    /// of its plugins.
    fn dataset(&self, schema_id: &str, plugin_id: Option<&str>) -> Option<&DatasetView> {
        let dataset = self
            .datasets
            .iter()
            .find(|d| d.schema_id.eq_ignore_ascii_case(schema_id))?;
        let plugin_ok = plugin_id.is_none_or(|p| {
            dataset
                .plugins()
                .iter()
                .any(|(id, _)| id.eq_ignore_ascii_case(p))
        });
        plugin_ok.then_some(dataset)
    }

    fn newest_first_of(&self, plugin: &str) -> Vec<&ExtractFile> {
        let mut extracts: Vec<&ExtractFile> = self
            .visible
            .iter()
            .filter(|f| f.plugin_id.eq_ignore_ascii_case(plugin))
            .collect();
        view::newest_first(&mut extracts);
        extracts
    }

    fn extract_info(&self, version: &str, file: &ExtractFile) -> ExtractInfo {
        let plugin = file.plugin_id.to_ascii_lowercase();
        ExtractInfo {
            schema_id: file.schema_id.to_ascii_lowercase(),
            bds_type: match file.kind {
                ExtractKind::Full => "Full".into(),
                ExtractKind::Differential => "Differential".into(),
            },
            created_date: api_time(file.created),
            download_link: format!(
                "{}/dataExport/bds/{plugin}/{}",
                self.base(version),
                file.queued.timestamp()
            ),
            download_size: self.reported_size(file),
            queued_for_processing_date: api_time(file.queued),
            version: file.version.clone(),
            plugin_id: plugin,
        }
    }

    /// The size of the zip, or a wrong one while a
    /// [`FaultKind::WrongDownloadSize`] fault is armed for it.
    fn reported_size(&self, file: &ExtractFile) -> u64 {
        let wrong = self.all_sizes_wrong
            || self
                .shared
                .lock()
                .faults
                .fire_first(|f| {
                    f.kind == FaultKind::WrongDownloadSize && f.target.matches_extract(file)
                })
                .is_some();
        if wrong {
            file.size + WRONG_SIZE_OFFSET
        } else {
            file.size
        }
    }
}

fn dataset_info(base: &str, dataset: &DatasetView) -> DatasetInfo {
    let schema = &dataset.schema_id;
    let plugin = |id: &Option<String>, kind| {
        id.as_ref().map(|id| PluginInfo {
            plugin_id: id.clone(),
            name: dataset.plugin_name(kind),
            description: dataset.description(),
            extracts_link: format!("{base}/datasets/bds/{schema}/plugins/{id}/extracts"),
        })
    };
    DatasetInfo {
        schema_id: schema.clone(),
        full: plugin(&dataset.full_plugin, ExtractKind::Full),
        differential: plugin(&dataset.differential_plugin, ExtractKind::Differential),
        extracts_link: format!("{base}/datasets/bds/{schema}/extracts"),
    }
}

fn supported_versions(latest: &str) -> Vec<String> {
    let latest: u32 = latest
        .strip_prefix("1.")
        .and_then(|m| m.parse().ok())
        .unwrap_or(10);
    (10..=latest).map(|minor| format!("1.{minor}")).collect()
}

/// Bookmarks are opaque to clients: base64url of a versioned position.
fn encode_bookmark(position: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("bm1:{position}"))
}

fn decode_bookmark(bookmark: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(bookmark.trim()).ok()?;
    String::from_utf8(bytes)
        .ok()?
        .strip_prefix("bm1:")
        .map(str::to_string)
}

fn parse_order_key(text: &str) -> Option<(i64, String)> {
    let (millis, plugin) = text.split_once('|')?;
    Some((millis.parse().ok()?, plugin.to_string()))
}

fn bad_request(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, message.to_string()).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match_case_insensitively() {
        let route = ApiRoute::parse("/d2l/api/lp/1.43/dataexport/BDS/list", "1.63");
        assert!(matches!(route, Some(ApiRoute::ExportList { .. })));
        let route = ApiRoute::parse("/d2l/api/lp/1.43/dataExport/bds/download/ABC", "1.63");
        assert!(matches!(
            route,
            Some(ApiRoute::Download { epoch: None, .. })
        ));
        let route = ApiRoute::parse("/d2l/api/lp/1.43/dataExport/bds/abc/1620762542", "1.63");
        assert!(matches!(
            route,
            Some(ApiRoute::Download { epoch: Some(_), .. })
        ));
        assert!(ApiRoute::parse("/d2l/api/lp/1.99/datasets/bds", "1.63").is_none());
        assert!(ApiRoute::parse("/d2l/api/versions/", "1.63").is_some());
    }

    #[test]
    fn bookmarks_round_trip_and_reject_garbage() {
        let bookmark = encode_bookmark("1700000000000|abc");
        assert_eq!(
            decode_bookmark(&bookmark).as_deref(),
            Some("1700000000000|abc")
        );
        assert_eq!(decode_bookmark("not a bookmark"), None);
    }
}
