//! Tests of the fake Data Hub against the reference: each route's shape,
//! paging, tokens, the redirect to storage, signatures, the 14-day window,
//! rate limiting and every fault mode. Driven over HTTP with reqwest.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use bds_common::catalog::{Catalog, Dataset};
use bds_common::extract::{ExtractKind, parse_api_time};
use bds_tests::ExtractFile;
use bds_tests::fakehub::shapes::{
    DataSetsPage, DatasetInfo, ExtractInfo, ListedPlugin, ObjectListPage, ProductVersions,
    TokenAnswer, TokenError,
};
use bds_tests::fakehub::{
    FakeHub, Fault, FaultKind, FaultTarget, HubConfig, RouteClass, WRONG_SIZE_OFFSET,
};
use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use reqwest::header::{CONTENT_LENGTH, LOCATION, RETRY_AFTER};
use tempfile::TempDir;

const LP: &str = "1.63";
/// Copy of `../shared/fixtures/api/dataexport-bds-page1.json`: a real
/// tenant's answer to `/dataExport/bds`, host renamed.
const FIXTURE: &str = include_str!("../fixtures/dataexport-bds-page1.json");

/// A hub, a directory for its zips and a client that does not follow
/// redirects.
struct Setup {
    hub: FakeHub,
    dir: TempDir,
    client: reqwest::Client,
}

impl Setup {
    async fn new(config: HubConfig) -> Setup {
        let hub = FakeHub::start(config).await;
        hub.set_now(time("2026-03-01T12:00:00Z"));
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Setup {
            hub,
            dir: TempDir::new().unwrap(),
            client,
        }
    }

    /// Adds an extract of `dataset` whose zip holds `csv`, queued 60 s
    /// before `created`.
    fn add(&self, dataset: &Dataset, kind: ExtractKind, created: &str, csv: &str) -> ExtractFile {
        let file = make_extract(self.dir.path(), dataset, kind, time(created), csv);
        self.hub.add_extract(file.clone());
        file
    }

    /// Exchanges a fresh refresh token for an access token.
    async fn access_token(&self) -> String {
        let refresh = self.hub.issue_refresh_token();
        let answer = self.refresh(&refresh).await;
        assert_eq!(answer.status(), StatusCode::OK);
        answer.json::<TokenAnswer>().await.unwrap().access_token
    }

    async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        let config = self.hub.config();
        self.client
            .post(self.hub.token_url())
            .basic_auth(&config.client_id, Some(&config.client_secret))
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token),
            ])
            .send()
            .await
            .unwrap()
    }

    fn lp(&self, path: &str) -> String {
        format!("{}/d2l/api/lp/{LP}/{path}", self.hub.api_url())
    }

    async fn get(&self, url: &str, token: &str) -> reqwest::Response {
        self.client
            .get(url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, url: &str, token: &str) -> T {
        let answer = self.get(url, token).await;
        assert_eq!(answer.status(), StatusCode::OK, "GET {url}");
        answer.json().await.unwrap()
    }

    /// The signed storage URL a download route redirects to.
    async fn storage_location(&self, download_url: &str, token: &str) -> String {
        let answer = self.get(download_url, token).await;
        assert_eq!(answer.status(), StatusCode::FOUND, "GET {download_url}");
        location(&answer)
    }
}

fn time(text: &str) -> DateTime<Utc> {
    parse_api_time(text).unwrap()
}

fn location(answer: &reqwest::Response) -> String {
    answer.headers()[LOCATION].to_str().unwrap().to_string()
}

/// Data sets of the catalog with a schema id and both plugins.
fn datasets(count: usize) -> Vec<&'static Dataset> {
    let found: Vec<&Dataset> = Catalog::builtin()
        .current()
        .filter(|d| {
            d.schema_id.is_some() && d.full_plugin.is_some() && d.differential_plugin.is_some()
        })
        .take(count)
        .collect();
    assert_eq!(found.len(), count, "the catalog has too few data sets");
    found
}

fn make_extract(
    dir: &Path,
    dataset: &Dataset,
    kind: ExtractKind,
    created: DateTime<Utc>,
    csv: &str,
) -> ExtractFile {
    let plugin = match kind {
        ExtractKind::Full => dataset.full_plugin.clone(),
        ExtractKind::Differential => dataset.differential_plugin.clone(),
    };
    let queued = created - chrono::Duration::seconds(60);
    let csv_entry = format!("{}.csv", dataset.name.replace(' ', ""));
    let path = dir.join(format!(
        "{}_{kind}_{}.zip",
        dataset.table,
        created.timestamp_millis()
    ));
    let mut zip = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let options = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file(csv_entry.as_str(), options).unwrap();
    zip.write_all(format!("\u{feff}{csv}").as_bytes()).unwrap();
    zip.finish().unwrap();
    let (sha256, size) = bds_common::hash::sha256_file(&path).unwrap();
    ExtractFile {
        dataset: dataset.name.clone(),
        schema_id: dataset.schema_id.clone().unwrap(),
        plugin_id: plugin.unwrap(),
        kind,
        queued,
        created,
        version: "9.10".into(),
        path,
        size,
        sha256,
        csv_entry,
    }
}

const CSV: &str = "UserId,UserName\r\n1,alice\r\n2,\"bob, jr\"\r\n";

/// A plain client following redirects, as a fetcher would use.
fn following_client() -> reqwest::Client {
    reqwest::Client::new()
}

// ---- auth host ------------------------------------------------------------

#[tokio::test]
async fn refresh_tokens_rotate_and_a_reused_one_is_invalid_grant() {
    let setup = Setup::new(HubConfig::default()).await;
    let first = setup.hub.issue_refresh_token();

    let answer = setup.refresh(&first).await;
    assert_eq!(answer.status(), StatusCode::OK);
    let token: TokenAnswer = answer.json().await.unwrap();
    assert!(token.access_token.starts_with("eyJ"));
    assert_eq!(token.access_token.split('.').count(), 3);
    assert_eq!(token.token_type, "Bearer");
    assert_eq!(token.expires_in, 3600);
    assert_ne!(token.refresh_token, first);
    assert_eq!(token.scope, "datahub:dataexports:* datasets:bds:read");
    assert!(!setup.hub.refresh_token_is_valid(&first));
    assert!(setup.hub.refresh_token_was_used(&first));
    assert!(setup.hub.refresh_token_is_valid(&token.refresh_token));
    assert_eq!(setup.hub.valid_refresh_tokens(), 1);

    let reused = setup.refresh(&first).await;
    assert_eq!(reused.status(), StatusCode::BAD_REQUEST);
    let error: TokenError = reused.json().await.unwrap();
    assert_eq!(error.error, "invalid_grant");
    assert!(error.error_description.is_some());

    let unknown = setup.refresh("never-issued").await;
    assert_eq!(unknown.status(), StatusCode::BAD_REQUEST);

    let next = setup.refresh(&token.refresh_token).await;
    assert_eq!(next.status(), StatusCode::OK);
}

#[tokio::test]
async fn client_authenticates_by_form_fields_and_a_wrong_client_is_invalid_client() {
    let setup = Setup::new(HubConfig::default()).await;
    let config = setup.hub.config().clone();
    let refresh = setup.hub.issue_refresh_token();

    let wrong = setup
        .client
        .post(setup.hub.token_url())
        .basic_auth(&config.client_id, Some("not the secret"))
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    let error: TokenError = wrong.json().await.unwrap();
    assert_eq!(error.error, "invalid_client");
    assert!(
        setup.hub.refresh_token_is_valid(&refresh),
        "a refused client spends nothing"
    );

    let anonymous = setup
        .client
        .post(setup.hub.token_url())
        .form(&[("grant_type", "refresh_token"), ("refresh_token", &refresh)])
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);

    let by_form = setup
        .client
        .post(setup.hub.token_url())
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", &refresh),
            ("client_id", &config.client_id),
            ("client_secret", &config.client_secret),
            ("scope", "datasets:bds:read"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(by_form.status(), StatusCode::OK);
    let token: TokenAnswer = by_form.json().await.unwrap();
    assert_eq!(token.scope, "datasets:bds:read");
}

#[tokio::test]
async fn access_tokens_expire_in_real_time() {
    let config = HubConfig {
        access_token_lifetime: Duration::from_secs(1),
        ..HubConfig::default()
    };
    let setup = Setup::new(config).await;
    let token = setup.access_token().await;
    let url = setup.lp("datasets/bds");

    assert_eq!(setup.get(&url, &token).await.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(1300)).await;
    let expired = setup.get(&url, &token).await;
    assert_eq!(expired.status(), StatusCode::UNAUTHORIZED);
    assert!(expired.headers().contains_key("X-Rate-Limit-Remaining"));
    assert_eq!(setup.hub.live_access_tokens(), 0);
}

#[tokio::test]
async fn missing_or_unknown_token_is_401_and_missing_scope_is_403() {
    let setup = Setup::new(HubConfig::default()).await;
    let url = setup.lp("dataExport/bds/list");
    let anonymous = setup.client.get(&url).send().await.unwrap();
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        setup.get(&url, "eyJforged").await.status(),
        StatusCode::UNAUTHORIZED
    );

    let refresh = setup
        .hub
        .issue_refresh_token_with_scope("datasets:bds:read");
    let token: TokenAnswer = setup.refresh(&refresh).await.json().await.unwrap();
    assert_eq!(
        setup.get(&url, &token.access_token).await.status(),
        StatusCode::FORBIDDEN
    );
    let allowed = setup
        .get(&setup.lp("datasets/bds"), &token.access_token)
        .await;
    assert_eq!(allowed.status(), StatusCode::OK);
}

// ---- listings -------------------------------------------------------------

#[tokio::test]
async fn versions_route_names_lp_and_needs_no_token() {
    let setup = Setup::new(HubConfig::default()).await;
    let url = format!("{}/d2l/api/versions/", setup.hub.api_url());
    let answer = setup.client.get(&url).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let versions: Vec<ProductVersions> = answer.json().await.unwrap();
    assert_eq!(versions[0].product_code, "lp");
    assert_eq!(versions[0].latest_version, "1.63");
}

#[tokio::test]
async fn datasets_listing_pages_to_the_end_with_opaque_bookmarks() {
    let setup = Setup::new(HubConfig::default()).await;
    for dataset in datasets(7) {
        setup.add(dataset, ExtractKind::Full, "2026-02-24T19:50:19.476Z", CSV);
    }
    let token = setup.access_token().await;

    let mut url = setup.lp("datasets/bds");
    let mut seen: Vec<DatasetInfo> = Vec::new();
    let mut pages = 0;
    loop {
        let page: ObjectListPage<DatasetInfo> = setup.get_json(&url, &token).await;
        pages += 1;
        assert!(page.objects.len() <= 3);
        seen.extend(page.objects);
        match page.next {
            Some(next) => {
                assert!(next.starts_with(setup.hub.api_url()));
                assert!(next.contains("bookmark="));
                url = next;
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 7);

    for (info, dataset) in seen.iter().zip(sorted_by_schema(datasets(7))) {
        assert_eq!(info.schema_id, dataset.schema_id.clone().unwrap());
        let full = info.full.as_ref().unwrap();
        let differential = info.differential.as_ref().unwrap();
        assert_eq!(full.name, dataset.name);
        assert_eq!(differential.name, format!("{} Differential", dataset.name));
        assert_eq!(Some(&full.plugin_id), dataset.full_plugin.as_ref());
        assert!(
            full.extracts_link
                .ends_with(&format!("/plugins/{}/extracts", full.plugin_id))
        );
        assert!(
            info.extracts_link
                .ends_with(&format!("/datasets/bds/{}/extracts", info.schema_id))
        );
    }

    let bad = setup
        .get(&setup.lp("datasets/bds?bookmark=garbage"), &token)
        .await;
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);
}

fn sorted_by_schema(mut list: Vec<&'static Dataset>) -> Vec<&'static Dataset> {
    list.sort_by_key(|d| d.schema_id.clone());
    list
}

#[tokio::test]
async fn extract_listings_carry_eight_fields_and_page_to_the_end() {
    let setup = Setup::new(HubConfig::default()).await;
    let dataset = datasets(1)[0];
    let full = setup.add(dataset, ExtractKind::Full, "2026-02-24T19:50:19.476Z", CSV);
    setup.add(dataset, ExtractKind::Full, "2026-02-17T19:50:19.000Z", CSV);
    for day in 20..=28 {
        let created = format!("2026-02-{day}T03:00:00.123Z");
        setup.add(dataset, ExtractKind::Differential, &created, CSV);
    }
    let token = setup.access_token().await;
    let schema = dataset.schema_id.as_deref().unwrap();

    let all = walk_extracts(&setup, &format!("datasets/bds/{schema}/extracts"), &token).await;
    assert_eq!(all.len(), 11);
    let created: Vec<&str> = all.iter().map(|e| e.created_date.as_str()).collect();
    let mut newest_first = created.clone();
    newest_first.sort_by(|a, b| b.cmp(a));
    assert_eq!(created, newest_first);
    assert_eq!(all.iter().filter(|e| e.bds_type == "Full").count(), 2);

    let plugin = dataset.full_plugin.as_deref().unwrap();
    let path = format!("datasets/bds/{schema}/plugins/{plugin}/extracts");
    let fulls = walk_extracts(&setup, &path, &token).await;
    assert_eq!(fulls.len(), 2);
    let newest = &fulls[0];
    assert_eq!(newest.schema_id, schema);
    assert_eq!(newest.plugin_id, plugin);
    assert_eq!(newest.created_date, "2026-02-24T19:50:19.476Z");
    assert_eq!(
        newest.queued_for_processing_date,
        "2026-02-24T19:49:19.476Z"
    );
    assert_eq!(newest.download_size, full.size);
    assert_eq!(newest.version, "9.10");
    assert_eq!(
        newest.download_link,
        setup.hub.download_link(LP, &full),
        "links to /dataExport/bds/{{plugin}}/{{epoch of queued}}"
    );

    let epoch = full.queued.timestamp();
    let one: ExtractInfo = setup
        .get_json(&setup.lp(&format!("{path}/{epoch}")), &token)
        .await;
    assert_eq!(&one, newest);
    let missing = setup.get(&setup.lp(&format!("{path}/12345")), &token).await;
    assert_eq!(missing.status(), StatusCode::NOT_FOUND);
}

async fn walk_extracts(setup: &Setup, path: &str, token: &str) -> Vec<ExtractInfo> {
    let mut url = setup.lp(path);
    let mut all = Vec::new();
    loop {
        let page: ObjectListPage<ExtractInfo> = setup.get_json(&url, token).await;
        assert!(page.objects.len() <= setup.hub.config().page_size);
        all.extend(page.objects);
        match page.next {
            Some(next) => url = next,
            None => return all,
        }
    }
}

#[tokio::test]
async fn export_list_shows_the_newest_extract_of_every_plugin() {
    let setup = Setup::new(HubConfig::default()).await;
    let dataset = datasets(1)[0];
    setup.add(dataset, ExtractKind::Full, "2026-02-17T19:50:19.000Z", CSV);
    let newest = setup.add(dataset, ExtractKind::Full, "2026-02-24T19:50:19.476Z", CSV);
    let token = setup.access_token().await;

    // Lower case, as real links spell it.
    let listed: Vec<ListedPlugin> = setup
        .get_json(&setup.lp("dataexport/bds/list"), &token)
        .await;
    assert_eq!(listed.len(), 2);
    let full = listed.iter().find(|p| p.name == dataset.name).unwrap();
    assert_eq!(
        full.created_date.as_deref(),
        Some("2026-02-24T19:50:19.476Z")
    );
    assert_eq!(full.download_size, Some(newest.size as f64));
    let link = full.download_link.clone().unwrap();
    assert!(link.ends_with(&format!("/bds/download/{}", newest.plugin_id)));

    let differential = listed
        .iter()
        .find(|p| p.name == format!("{} Differential", dataset.name))
        .unwrap();
    assert_eq!(differential.download_link, None, "no differential in view");

    let answer = setup.get(&link, &token).await;
    assert_eq!(answer.status(), StatusCode::FOUND);
    let body = following_client()
        .get(location(&answer))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(body, std::fs::read(&newest.path).unwrap());
}

#[tokio::test]
async fn export_pages_walk_to_the_end_and_read_with_the_fixture_types() {
    let fixture: DataSetsPage = serde_json::from_str(FIXTURE).unwrap();
    assert_eq!(fixture.brightspace_data_sets.len(), 2);

    let setup = Setup::new(HubConfig::default()).await;
    for dataset in datasets(3) {
        setup.add(dataset, ExtractKind::Full, "2026-02-17T19:50:19.000Z", CSV);
        setup.add(dataset, ExtractKind::Full, "2026-02-24T19:50:19.476Z", CSV);
        setup.add(
            dataset,
            ExtractKind::Differential,
            "2026-02-25T03:00:00Z",
            CSV,
        );
    }
    let token = setup.access_token().await;

    let mut url = setup.lp("dataExport/bds?page=1&pageSize=2");
    let mut entries = Vec::new();
    let mut pages = 0;
    loop {
        let text = setup.get(&url, &token).await.text().await.unwrap();
        let page: DataSetsPage = serde_json::from_str(&text).unwrap();
        assert_eq!(page.prev_page_url.is_some(), pages > 0);
        pages += 1;
        entries.extend(page.brightspace_data_sets);
        match page.next_page_url {
            Some(next) => url = next,
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(entries.len(), 6);

    let full = entries.iter().find(|e| e.full_data_set).unwrap();
    assert_eq!(
        full.created_date.as_deref(),
        Some("2026-02-24T19:50:19.476Z")
    );
    assert!(full.currently_available);
    let previous = full.previous_data_sets.as_ref().unwrap();
    assert_eq!(previous.len(), 1);
    assert_eq!(previous[0].previous_data_sets, None);
    let link = full.download_link.as_deref().unwrap();
    let queued = time(full.queued_for_processing_date.as_deref().unwrap());
    assert!(link.ends_with(&format!(
        "/dataexport/bds/{}/{}",
        full.plugin_id,
        queued.timestamp()
    )));
    assert_eq!(setup.get(link, &token).await.status(), StatusCode::FOUND);
    assert_eq!(entries.iter().filter(|e| !e.full_data_set).count(), 3);
}

// ---- downloads ------------------------------------------------------------

#[tokio::test]
async fn download_redirects_to_another_host_and_authorization_never_reaches_storage() {
    let setup = Setup::new(HubConfig::default()).await;
    let dataset = datasets(1)[0];
    let file = setup.add(dataset, ExtractKind::Full, "2026-02-24T19:50:19.476Z", CSV);
    let token = setup.access_token().await;
    let plugin = &file.plugin_id;

    // By hand: the 302 points at the storage host name.
    let newest = setup.lp(&format!("dataExport/bds/download/{plugin}"));
    let target = setup.storage_location(&newest, &token).await;
    assert!(target.starts_with(&format!("{}/blob/", setup.hub.storage_url())));
    assert!(target.starts_with("http://localhost:"));
    assert!(target.contains("Expires=") && target.contains("Signature="));
    let body = setup.client.get(&target).send().await.unwrap();
    assert_eq!(body.status(), StatusCode::OK);
    assert_eq!(
        body.headers()[CONTENT_LENGTH].to_str().unwrap(),
        file.size.to_string()
    );
    assert_eq!(
        body.bytes().await.unwrap(),
        std::fs::read(&file.path).unwrap()
    );

    // reqwest's default policy follows the redirect and drops the header.
    let epoch = file.queued.timestamp();
    let followed = following_client()
        .get(setup.lp(&format!("dataExport/bds/{plugin}/{epoch}")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(followed.status(), StatusCode::OK);
    assert_eq!(
        followed.bytes().await.unwrap(),
        std::fs::read(&file.path).unwrap()
    );

    let storage = setup.hub.storage_requests();
    assert_eq!(storage.len(), 2);
    assert!(storage.iter().all(|r| !r.authorization && r.status == 200));
    assert!(setup.hub.api_requests().iter().all(|r| r.authorization));
}

#[tokio::test]
async fn storage_refuses_authorization_with_400() {
    let setup = Setup::new(HubConfig::default()).await;
    let file = setup.add(
        datasets(1)[0],
        ExtractKind::Full,
        "2026-02-24T19:50:19Z",
        CSV,
    );
    let token = setup.access_token().await;
    let target = setup
        .storage_location(&setup.hub.download_link(LP, &file), &token)
        .await;

    let answer = setup.get(&target, &token).await;
    assert_eq!(answer.status(), StatusCode::BAD_REQUEST);
    let text = answer.text().await.unwrap();
    assert!(text.contains("Only one auth mechanism allowed"), "{text}");
    let record = setup.hub.storage_requests().pop().unwrap();
    assert!(record.authorization);
    assert_eq!(record.status, 400);
}

#[tokio::test]
async fn storage_refuses_bad_and_expired_signatures_with_403() {
    let config = HubConfig {
        link_lifetime: Duration::from_secs(1),
        ..HubConfig::default()
    };
    let setup = Setup::new(config).await;
    let file = setup.add(
        datasets(1)[0],
        ExtractKind::Full,
        "2026-02-24T19:50:19Z",
        CSV,
    );
    let token = setup.access_token().await;
    let target = setup
        .storage_location(&setup.hub.download_link(LP, &file), &token)
        .await;

    let tampered = target.replace("Signature=", "Signature=00");
    let answer = setup.client.get(&tampered).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    assert!(
        answer
            .text()
            .await
            .unwrap()
            .contains("SignatureDoesNotMatch")
    );
    let unsigned = target.split('?').next().unwrap();
    let answer = setup.client.get(unsigned).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let answer = setup.client.get(&target).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::FORBIDDEN);
    assert!(answer.text().await.unwrap().contains("Request has expired"));
}

#[tokio::test]
async fn storage_honours_a_byte_range() {
    let setup = Setup::new(HubConfig::default()).await;
    let file = setup.add(
        datasets(1)[0],
        ExtractKind::Full,
        "2026-02-24T19:50:19Z",
        CSV,
    );
    let token = setup.access_token().await;
    let target = setup
        .storage_location(&setup.hub.download_link(LP, &file), &token)
        .await;

    let answer = setup
        .client
        .get(&target)
        .header("Range", "bytes=10-")
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), StatusCode::PARTIAL_CONTENT);
    let whole = std::fs::read(&file.path).unwrap();
    assert_eq!(answer.bytes().await.unwrap(), whole[10..]);
}

// ---- the 14-day window ----------------------------------------------------

#[tokio::test]
async fn only_differentials_of_the_last_14_days_are_listed_and_downloadable() {
    let setup = Setup::new(HubConfig::default()).await;
    let dataset = datasets(1)[0];
    let old_full = setup.add(dataset, ExtractKind::Full, "2025-06-03T19:50:00Z", CSV);
    let old = setup.add(
        dataset,
        ExtractKind::Differential,
        "2026-02-15T11:59:59Z",
        CSV,
    );
    let fresh = setup.add(
        dataset,
        ExtractKind::Differential,
        "2026-02-15T12:00:00Z",
        CSV,
    );
    let future = setup.add(
        dataset,
        ExtractKind::Differential,
        "2026-03-01T12:00:01Z",
        CSV,
    );
    let token = setup.access_token().await;

    let schema = dataset.schema_id.as_deref().unwrap();
    let listed = walk_extracts(&setup, &format!("datasets/bds/{schema}/extracts"), &token).await;
    let created: Vec<&str> = listed.iter().map(|e| e.created_date.as_str()).collect();
    assert_eq!(
        created,
        ["2026-02-15T12:00:00.000Z", "2025-06-03T19:50:00.000Z"]
    );

    let status = |file: &ExtractFile| {
        let url = setup.hub.download_link(LP, file);
        let token = token.clone();
        let setup = &setup;
        async move { setup.get(&url, &token).await.status() }
    };
    assert_eq!(status(&old_full).await, StatusCode::FOUND);
    assert_eq!(status(&fresh).await, StatusCode::FOUND);
    assert_eq!(status(&old).await, StatusCode::NOT_FOUND);
    assert_eq!(status(&future).await, StatusCode::NOT_FOUND);

    // A day later the fresh one has left the window and the future one came.
    setup.hub.advance(chrono::Duration::days(1));
    assert_eq!(status(&fresh).await, StatusCode::NOT_FOUND);
    assert_eq!(status(&future).await, StatusCode::FOUND);
}

// ---- rate limiting --------------------------------------------------------

#[tokio::test]
async fn every_answer_carries_rate_headers_until_429_with_retry_after() {
    let config = HubConfig {
        rate_limit_credits: 30,
        ..HubConfig::default()
    };
    let setup = Setup::new(config).await;
    let token = setup.access_token().await;
    let url = setup.lp("datasets/bds");

    let mut remaining = Vec::new();
    for _ in 0..3 {
        let answer = setup.get(&url, &token).await;
        assert_eq!(answer.status(), StatusCode::OK);
        let header = |name: &str| answer.headers()[name].to_str().unwrap().to_string();
        assert_eq!(header("X-Request-Cost"), "10");
        assert!(header("X-Rate-Limit-Reset").parse::<u64>().unwrap() <= 60);
        remaining.push(header("X-Rate-Limit-Remaining"));
    }
    assert_eq!(remaining, ["20", "10", "0"]);

    let refused = setup.get(&url, &token).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = refused.headers()[RETRY_AFTER]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "Retry-After {retry}");
    assert!(!refused.headers().contains_key("X-Rate-Limit-Remaining"));
    assert!(!refused.headers().contains_key("X-Request-Cost"));
}

// ---- faults ---------------------------------------------------------------

/// A hub with two full extracts and an access token.
async fn fault_setup() -> (Setup, ExtractFile, ExtractFile, String) {
    let setup = Setup::new(HubConfig::default()).await;
    let [first, second] = datasets(2)[..] else {
        unreachable!()
    };
    let csv = CSV.repeat(40);
    let a = setup.add(first, ExtractKind::Full, "2026-02-24T19:50:19.476Z", &csv);
    let b = setup.add(second, ExtractKind::Full, "2026-02-24T19:50:20.000Z", &csv);
    let token = setup.access_token().await;
    (setup, a, b, token)
}

#[tokio::test]
async fn status_faults_fire_as_often_as_asked_on_each_route_class() {
    let (setup, file, _, token) = fault_setup().await;
    let route = |class| FaultTarget::Route(class);
    let list = setup.lp("datasets/bds");

    setup
        .hub
        .inject(Fault::once(route(RouteClass::List), FaultKind::Status500).times(2));
    for _ in 0..2 {
        let answer = setup.get(&list, &token).await;
        assert_eq!(answer.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert!(answer.headers().contains_key("X-Rate-Limit-Remaining"));
    }
    assert_eq!(setup.get(&list, &token).await.status(), StatusCode::OK);
    assert_eq!(setup.hub.armed_faults(), 0);

    let refresh = setup.hub.issue_refresh_token();
    setup
        .hub
        .inject(Fault::once(route(RouteClass::Token), FaultKind::Status503));
    assert_eq!(
        setup.refresh(&refresh).await.status(),
        StatusCode::SERVICE_UNAVAILABLE
    );
    assert!(
        setup.hub.refresh_token_is_valid(&refresh),
        "a 503 spends nothing"
    );
    assert_eq!(setup.refresh(&refresh).await.status(), StatusCode::OK);

    let download = setup.hub.download_link(LP, &file);
    let retry_after_secs = 7;
    setup.hub.inject(Fault::once(
        route(RouteClass::DownloadRedirect),
        FaultKind::Status429 { retry_after_secs },
    ));
    let refused = setup.get(&download, &token).await;
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()[RETRY_AFTER], "7");
    assert!(!refused.headers().contains_key("X-Rate-Limit-Remaining"));

    setup.hub.inject(Fault::once(
        route(RouteClass::Storage),
        FaultKind::Status503,
    ));
    let target = setup.storage_location(&download, &token).await;
    let answer = setup.client.get(&target).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert!(answer.text().await.unwrap().contains("SlowDown"));
    let answer = setup.client.get(&target).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_fault_on_one_extract_spares_the_others() {
    let (setup, a, b, token) = fault_setup().await;
    setup
        .hub
        .inject(Fault::once(FaultTarget::extract(&a), FaultKind::Status500));

    let fetch = |file: &ExtractFile| {
        let url = setup.hub.download_link(LP, file);
        let token = token.clone();
        let setup = &setup;
        async move {
            let target = setup.storage_location(&url, &token).await;
            setup.client.get(&target).send().await.unwrap().status()
        }
    };
    assert_eq!(fetch(&b).await, StatusCode::OK);
    assert_eq!(fetch(&a).await, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(fetch(&a).await, StatusCode::OK);
}

/// GET over a raw connection: the announced `Content-Length`, the body bytes
/// received, and how the connection ended.
fn raw_get(url: &str) -> (u64, Vec<u8>, std::io::Result<()>) {
    use std::io::Read;

    let url = url::Url::parse(url).unwrap();
    let address = format!("127.0.0.1:{}", url.port().unwrap());
    let mut stream = std::net::TcpStream::connect(address).unwrap();
    let path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).unwrap();

    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let outcome = loop {
        match stream.read(&mut chunk) {
            Ok(0) => break Ok(()),
            Ok(read) => received.extend_from_slice(&chunk[..read]),
            Err(error) => break Err(error),
        }
    };
    let split = received
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a header block");
    let head = String::from_utf8_lossy(&received[..split]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .expect("a content-length")
        .parse()
        .unwrap();
    (length, received[split + 4..].to_vec(), outcome)
}

#[tokio::test]
async fn truncated_body_ends_cleanly_short_of_its_content_length() {
    let (setup, file, _, token) = fault_setup().await;
    setup.hub.inject(Fault::once(
        FaultTarget::extract(&file),
        FaultKind::TruncateBody { after_bytes: 100 },
    ));
    let target = setup
        .storage_location(&setup.hub.download_link(LP, &file), &token)
        .await;

    let url = target.clone();
    let (length, body, outcome) = tokio::task::spawn_blocking(move || raw_get(&url))
        .await
        .unwrap();
    assert_eq!(length, file.size);
    assert_eq!(body.len(), 100);
    assert!(outcome.is_ok(), "a clean close, not a reset: {outcome:?}");

    let whole = setup.client.get(&target).send().await.unwrap();
    assert_eq!(whole.bytes().await.unwrap().len() as u64, file.size);
}

#[tokio::test]
async fn reset_body_aborts_the_connection_and_reqwest_reports_an_error() {
    let (setup, file, _, token) = fault_setup().await;
    let target = setup
        .storage_location(&setup.hub.download_link(LP, &file), &token)
        .await;
    let reset = Fault::once(
        FaultTarget::Route(RouteClass::Storage),
        FaultKind::ResetBody { after_bytes: 100 },
    );

    setup.hub.inject(reset.clone());
    let url = target.clone();
    let (length, body, outcome) = tokio::task::spawn_blocking(move || raw_get(&url))
        .await
        .unwrap();
    assert_eq!(length, file.size);
    assert!(body.len() <= 100);
    let error = outcome.expect_err("the connection is reset");
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);

    setup.hub.inject(reset);
    let answer = setup.client.get(&target).send().await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(answer.bytes().await.is_err());
}

#[tokio::test]
async fn slow_body_arrives_whole_but_late() {
    let (setup, file, _, token) = fault_setup().await;
    let bytes_per_sec = file.size * 2;
    setup.hub.inject(Fault::once(
        FaultTarget::extract(&file),
        FaultKind::SlowBody { bytes_per_sec },
    ));
    let target = setup
        .storage_location(&setup.hub.download_link(LP, &file), &token)
        .await;

    let started = std::time::Instant::now();
    let body = setup
        .client
        .get(&target)
        .send()
        .await
        .unwrap()
        .bytes()
        .await;
    assert!(started.elapsed() >= Duration::from_millis(400));
    assert_eq!(body.unwrap(), std::fs::read(&file.path).unwrap());
}

#[tokio::test]
async fn corrupt_byte_flips_exactly_one_byte_of_the_zip() {
    let (setup, file, _, token) = fault_setup().await;
    setup.hub.inject(Fault::once(
        FaultTarget::extract(&file),
        FaultKind::CorruptByte { offset: 42 },
    ));
    let target = setup
        .storage_location(&setup.hub.download_link(LP, &file), &token)
        .await;

    let body = setup
        .client
        .get(&target)
        .send()
        .await
        .unwrap()
        .bytes()
        .await;
    let whole = std::fs::read(&file.path).unwrap();
    let body = body.unwrap();
    assert_eq!(body.len(), whole.len());
    let differ: Vec<usize> = (0..whole.len()).filter(|&i| body[i] != whole[i]).collect();
    assert_eq!(differ, [42]);
    assert_eq!(body[42], whole[42] ^ 0xFF);
}

#[tokio::test]
async fn wrong_download_size_shows_in_listings_while_armed() {
    let (setup, a, b, token) = fault_setup().await;
    let size_of = |page: &ObjectListPage<ExtractInfo>| page.objects[0].download_size;
    let url_of = |file: &ExtractFile| {
        setup.lp(&format!(
            "datasets/bds/{}/plugins/{}/extracts",
            file.schema_id, file.plugin_id
        ))
    };

    setup.hub.inject(Fault::once(
        FaultTarget::extract(&a),
        FaultKind::WrongDownloadSize,
    ));
    let page = setup.get_json(&url_of(&a), &token).await;
    assert_eq!(size_of(&page), a.size + WRONG_SIZE_OFFSET);
    let page = setup.get_json(&url_of(&a), &token).await;
    assert_eq!(size_of(&page), a.size);

    setup.hub.inject(Fault::once(
        FaultTarget::Route(RouteClass::List),
        FaultKind::WrongDownloadSize,
    ));
    let listed: Vec<ListedPlugin> = setup
        .get_json(&setup.lp("dataExport/bds/list"), &token)
        .await;
    let sizes: Vec<f64> = listed.iter().filter_map(|p| p.download_size).collect();
    let expected = [a.size, b.size].map(|s| (s + WRONG_SIZE_OFFSET) as f64);
    assert_eq!(sizes.len(), 2);
    assert!(sizes.iter().all(|s| expected.contains(s)), "{sizes:?}");
}

#[tokio::test]
async fn a_truncated_listing_fails_to_parse_and_a_truncated_token_answer_spends_the_token() {
    let (setup, _, _, token) = fault_setup().await;
    setup.hub.inject(Fault::once(
        FaultTarget::Route(RouteClass::List),
        FaultKind::TruncateBody { after_bytes: 20 },
    ));
    let answer = setup.get(&setup.lp("datasets/bds"), &token).await;
    assert_eq!(answer.status(), StatusCode::OK);
    assert!(answer.json::<ObjectListPage<DatasetInfo>>().await.is_err());

    // What a real outage can do: the token rotated, the answer was lost.
    let refresh = setup.hub.issue_refresh_token();
    setup.hub.inject(Fault::once(
        FaultTarget::Route(RouteClass::Token),
        FaultKind::ResetBody { after_bytes: 5 },
    ));
    let answer = setup.refresh(&refresh).await;
    assert!(answer.json::<TokenAnswer>().await.is_err());
    assert!(setup.hub.refresh_token_was_used(&refresh));
}

// ---- the standalone binary ------------------------------------------------

/// Kills the child when the test ends, passing or not.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn binary_serves_a_hub_json_directory_and_writes_the_token_file() {
    use std::io::BufRead;

    let dir = TempDir::new().unwrap();
    let dataset = datasets(1)[0];
    let file = make_extract(
        dir.path(),
        dataset,
        ExtractKind::Full,
        time("2026-02-24T19:50:19.476Z"),
        CSV,
    );
    bds_tests::fakehub::manifest::write(dir.path(), std::slice::from_ref(&file)).unwrap();
    let token_file = dir.path().join("refresh-token");

    let mut child = Child(
        std::process::Command::new(env!("CARGO_BIN_EXE_bds-fakehub"))
            .arg("--data-dir")
            .arg(dir.path())
            .arg("--token-file")
            .arg(&token_file)
            .args(["--client-id", "demo", "--client-secret", "s3cret"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("bds-fakehub starts"),
    );
    let stdout = child.0.stdout.take().unwrap();
    let mut line = String::new();
    std::io::BufReader::new(stdout)
        .read_line(&mut line)
        .unwrap();
    let announced: serde_json::Value = serde_json::from_str(&line).expect("one JSON line");
    let text = |key: &str| announced[key].as_str().unwrap().to_string();
    assert!(text("storage_url").starts_with("http://localhost:"));
    assert!(
        announced.get("refresh_token").is_none(),
        "the token is in the file"
    );

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let refresh = std::fs::read_to_string(&token_file).unwrap();

    let client = following_client();
    let token: TokenAnswer = client
        .post(text("token_url"))
        .basic_auth("demo", Some("s3cret"))
        .form(&[
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.trim()),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let download = format!(
        "{}/d2l/api/lp/{LP}/dataexport/bds/download/{}",
        text("api_url"),
        file.plugin_id
    );
    let body = client
        .get(download)
        .bearer_auth(&token.access_token)
        .send()
        .await
        .unwrap();
    assert_eq!(
        body.status(),
        StatusCode::OK,
        "the default clock shows the extract"
    );
    assert_eq!(
        body.bytes().await.unwrap(),
        std::fs::read(&file.path).unwrap()
    );
}
