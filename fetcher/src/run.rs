//! `bds-fetch run`: discover, plan, then download, verify, publish and
//! record every planned extract, a few at a time.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use bds_common::TOOL_VERSION;
use bds_common::archive::Archive;
use bds_common::extract::utc_text;
use bds_common::manifest::{Entry, ExtractRecord, Manifest, ManifestError};
use bds_common::verify::{VerifyError, ZipSummary};
use chrono::Utc;
use thiserror::Error;
use tokio::task::JoinSet;

use crate::Outcome;
use crate::api::{Api, ApiError};
use crate::config::{Settings, require};
use crate::discover::{self, Filter, Offer, Plan};
use crate::download::{DownloadError, Spooled, download};
use crate::manifest::{Recorder, archived_sizes};
use crate::progress::Progress;
use crate::retry::{RetryPolicy, Transient, error_chain, retry};
use crate::store::{self, Published, StoreError};
use crate::summary::{ExtractLine, ListingFailure, Status, Summary};
use crate::token::{OAuthClient, TokenError, TokenFile, TokenService};
use crate::verify::check_download;

/// One attempt at the download-and-verify unit failed.
#[derive(Debug, Error)]
pub enum UnitError {
    /// The download failed.
    #[error(transparent)]
    Download(#[from] DownloadError),
    /// The download is not a sound extract.
    #[error("extract rejected")]
    Rejected(#[from] VerifyError),
}

impl Transient for UnitError {
    fn retry_after(&self) -> Option<Option<Duration>> {
        match self {
            UnitError::Download(e) => e.retry_after(),
            // A damaged zip may have been damaged on the way: fetch it again.
            UnitError::Rejected(_) => Some(None),
        }
    }
}

/// Archiving one extract failed.
#[derive(Debug, Error)]
pub enum FetchError {
    /// Download or verification, after all attempts.
    #[error(transparent)]
    Unit(#[from] UnitError),
    /// Publishing.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Recording (the extract is archived; the next run adopts it).
    #[error("archived, but not recorded in the manifest")]
    Manifest(#[from] ManifestError),
}

impl FetchError {
    /// The refresh token or the client was refused: nothing more can work
    /// this run.
    fn is_fatal(&self) -> bool {
        matches!(
            self,
            FetchError::Unit(UnitError::Download(DownloadError::Api(ApiError::Token(
                TokenError::InvalidGrant { .. } | TokenError::InvalidClient
            ))))
        )
    }
}

/// What every download task shares.
#[derive(Debug)]
struct Shared {
    api: Api,
    archive: Archive,
    spool_dir: PathBuf,
    recorder: Recorder,
    progress: Progress,
    retry: RetryPolicy,
    planned: usize,
}

/// Runs a fetch.
pub async fn fetch(settings: Settings) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let archive = settings.open_archive()?;
    let spool_dir = archive
        .spool_dir()
        .context("cannot create the spool folder")?;
    let manifest = Manifest::read(&archive)
        .await
        .context("cannot read the manifest")?;
    let api = connect(&settings)?;
    crate::download::remove_stale_spool_files(&spool_dir);

    // The first request of the run: exchanging the refresh token, which is
    // persisted before anything else is asked.
    api.tokens()
        .bearer()
        .await
        .context("cannot get an access token")?;

    let filter = Filter {
        datasets: settings.datasets.clone(),
        full: !settings.differential_only,
        differential: !settings.full_only,
        since: settings.since,
    };
    let discovery = discover::discover(&api, &filter, settings.concurrency)
        .await
        .context("cannot list the data sets")?;
    let archived = archived_sizes(&archive)
        .await
        .context("cannot list the archive")?;
    let plan = discover::plan(&discovery, &filter, &manifest, &archived, Utc::now());
    tracing::info!(
        offered = discovery.offers.len(),
        to_fetch = plan.fetch.len(),
        archived = plan.skip.len(),
        before_since = plan.before_since,
        "plan"
    );

    let mut summary = Summary {
        dry_run: settings.dry_run,
        gaps: plan.gaps.clone(),
        listing_failures: discovery
            .failures
            .iter()
            .map(|(dataset, error)| ListingFailure {
                dataset: dataset.clone(),
                error: error.clone(),
            })
            .collect(),
        ..Summary::default()
    };
    let recorder = Recorder::new(archive.clone(), Utc::now());
    report_gaps(&plan, &recorder, settings.dry_run).await?;
    for offer in &plan.skip {
        summary.add(ExtractLine::new(offer, Status::Skipped));
    }

    if settings.dry_run {
        for offer in &plan.fetch {
            summary.add(ExtractLine::new(offer, Status::Planned));
        }
        emit(&summary, &settings, started);
        return Ok(if summary.has_failures() {
            Outcome::Failures
        } else {
            Outcome::Done
        });
    }

    let total_bytes = plan.fetch.iter().filter_map(|o| o.download_size).sum();
    let context = Arc::new(Shared {
        api,
        archive,
        spool_dir,
        recorder,
        progress: Progress::start(plan.fetch.len(), total_bytes, settings.quiet),
        retry: settings.retry,
        planned: plan.fetch.len(),
    });
    let fatal = download_all(&context, plan.fetch, settings.concurrency, &mut summary).await;
    if let Ok(context) = Arc::try_unwrap(context) {
        context.progress.stop();
    }
    if let Some(error) = fatal {
        return Err(error).context("the run was stopped");
    }

    emit(&summary, &settings, started);
    Ok(if summary.has_failures() {
        Outcome::Failures
    } else {
        Outcome::Done
    })
}

/// Locks the token file and builds the API client. No request yet.
fn connect(settings: &Settings) -> anyhow::Result<Api> {
    let base_url = require(
        settings.base_url.as_deref(),
        "Brightspace site",
        "base-url",
        "BDS_BASE_URL",
        "base_url",
    )?;
    let client_id = require(
        settings.client_id.as_deref(),
        "client id",
        "client-id",
        "BDS_CLIENT_ID",
        "client_id",
    )?;
    let client_secret = settings.client_secret.clone().ok_or_else(|| {
        anyhow::anyhow!(
            "no client secret: set BDS_CLIENT_SECRET or client_secret in the config file"
        )
    })?;
    let token_path = require(
        settings.token_file.as_deref(),
        "token file",
        "token-file",
        "BDS_TOKEN_FILE",
        "token_file",
    )?;
    let http = crate::api::http_client().context("cannot set up the HTTP client")?;
    let file = TokenFile::open(token_path, settings.sample_token.as_ref())?;
    let client = OAuthClient {
        auth_url: settings.auth_url.clone(),
        client_id: client_id.to_string(),
        client_secret,
        scope: settings.scope.clone(),
    };
    let tokens = TokenService::new(http.clone(), client, file, settings.retry)?;
    Ok(Api::new(
        http,
        base_url,
        &settings.api_version,
        Arc::new(tokens),
        settings.retry,
    )?)
}

/// Warns about gaps and records them in the manifest.
async fn report_gaps(plan: &Plan, recorder: &Recorder, dry_run: bool) -> anyhow::Result<()> {
    for gap in &plan.gaps {
        tracing::warn!(
            dataset = %gap.dataset,
            newest_archived = ?gap.newest_archived,
            oldest_offered = %gap.oldest_offered,
            "differentials were missed: the newest archived differential is older than the \
             oldest one still offered; the next load must start from a full extract"
        );
        if !dry_run {
            recorder
                .append(&Entry::Gap(gap.clone()))
                .await
                .context("cannot record a gap in the manifest")?;
        }
    }
    Ok(())
}

/// Runs every download, `concurrency` at once. Returns a fatal error that
/// stopped the run, if any.
async fn download_all(
    context: &Arc<Shared>,
    offers: Vec<Offer>,
    concurrency: usize,
    summary: &mut Summary,
) -> Option<anyhow::Error> {
    let permits = Arc::new(tokio::sync::Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    for offer in offers {
        let context = context.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("never closed");
            let result = fetch_one(&context, &offer).await;
            (offer, result)
        });
    }
    let mut fatal = None;
    while let Some(joined) = tasks.join_next().await {
        let (offer, result) = match joined {
            Ok(done) => done,
            // Aborted after a fatal error: the summary reports that error.
            Err(e) if e.is_cancelled() => continue,
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        };
        context.progress.finished(result.is_ok(), context.planned);
        let mut line = ExtractLine::new(&offer, Status::Failed);
        match result {
            Ok((published, spooled)) => {
                line.status = match published {
                    Published::New => Status::Fetched,
                    Published::Adopted => Status::Adopted,
                };
                line.size = Some(spooled.0);
                line.sha256 = Some(spooled.1);
            }
            Err(error) => {
                let text = error_chain(&error);
                tracing::error!(dataset = %offer.dataset, kind = %offer.id.kind,
                    queued = %utc_text(offer.id.queued), "extract not archived: {text}");
                if error.is_fatal() && fatal.is_none() {
                    tasks.abort_all();
                    fatal = Some(anyhow::Error::new(error));
                }
                line.error = Some(text);
            }
        }
        summary.add(line);
    }
    fatal
}

/// Downloads, verifies, publishes and records one extract.
async fn fetch_one(
    context: &Shared,
    offer: &Offer,
) -> Result<(Published, (u64, String)), FetchError> {
    let started = Instant::now();
    let label = format!(
        "{} {} {}",
        offer.table,
        offer.id.kind,
        offer.id.queued.format("%Y-%m-%dT%H:%MZ")
    );
    let link = context
        .api
        .resolve(&offer.download_link)
        .map_err(|e| UnitError::Download(e.into()))?;
    let bar = context.progress.extract(&label, offer.download_size);
    let (spooled, zip) = retry(context.retry, &label, |_| async {
        bar.restart();
        let spooled = download(&context.api, &link, &context.spool_dir, &bar).await?;
        check_size(offer, &spooled);
        let zip = check_download(&spooled.path, spooled.streamed).await?;
        Ok::<_, UnitError>((spooled, zip))
    })
    .await?;
    drop(bar);

    let key = offer.key();
    let published = store::publish(&context.archive, &key, &spooled.path, &spooled.sha256).await?;
    let record = record(offer, &spooled, &zip, key);
    context.recorder.append(&Entry::Extract(record)).await?;
    tracing::info!(
        dataset = %offer.dataset,
        kind = %offer.id.kind,
        queued = %utc_text(offer.id.queued),
        bytes = spooled.size,
        sha256 = %spooled.sha256,
        seconds = format!("{:.1}", started.elapsed().as_secs_f64()),
        "extract archived"
    );
    Ok((published, (spooled.size, spooled.sha256.clone())))
}

/// `DownloadSize` is informational: a mismatch is worth a warning only.
fn check_size(offer: &Offer, spooled: &Spooled) {
    if let Some(announced) = offer.download_size.filter(|&n| n != spooled.size) {
        tracing::warn!(
            dataset = %offer.dataset,
            kind = %offer.id.kind,
            announced,
            received = spooled.size,
            "size differs from the listed DownloadSize"
        );
    }
}

fn record(offer: &Offer, spooled: &Spooled, zip: &ZipSummary, key: String) -> ExtractRecord {
    ExtractRecord {
        dataset: offer.dataset.clone(),
        table: offer.table.clone(),
        schema_id: offer.id.schema_id.clone(),
        plugin_id: offer.id.plugin_id.clone(),
        kind: offer.id.kind,
        version: offer.version.clone(),
        queued: offer.id.queued,
        created: offer.id.created,
        size: spooled.size,
        sha256: spooled.sha256.clone(),
        key,
        csv_entry: zip.entry_name.clone(),
        csv_size: zip.uncompressed_size,
        fetched_at: Utc::now(),
        tool_version: TOOL_VERSION.to_string(),
    }
}

fn emit(summary: &Summary, settings: &Settings, started: Instant) {
    summary.log(started.elapsed().as_secs_f64());
    if settings.json {
        match serde_json::to_string_pretty(summary) {
            Ok(text) => crate::print_line(text),
            Err(e) => tracing::error!("cannot write the JSON summary: {e}"),
        }
    } else if settings.dry_run {
        summary.print_plan();
    }
}
