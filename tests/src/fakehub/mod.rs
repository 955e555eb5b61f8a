//! The fake Brightspace Data Hub: an API host, an auth host and a signed
//! storage host on loopback, behaving as `../shared/reference/bds-api.md`
//! describes the real service (its §9 is the checklist), not as our client
//! happens to expect.
//!
//! ```no_run
//! # async fn demo(file: bds_tests::ExtractFile) {
//! use bds_tests::fakehub::{FakeHub, HubConfig};
//!
//! let hub = FakeHub::start(HubConfig::default()).await;
//! hub.add_extract(file);
//! let refresh_token = hub.issue_refresh_token();
//! // Point the fetcher at hub.api_url() and hub.auth_url().
//! # }
//! ```
//!
//! # Hosts
//!
//! - API host `http://127.0.0.1:P1`: `/d2l/api/versions/` and under
//!   `/d2l/api/lp/{1.10..=latest}/` the eight BDS routes of reference §1.1,
//!   path matched case-insensitively. Bearer tokens are checked (401 missing,
//!   unknown or expired; 403 lacking the route's scope). A token bucket
//!   ([`HubConfig::rate_limit_credits`] per [`HubConfig::rate_limit_period`],
//!   [`HubConfig::request_cost`] per request) puts `X-Rate-Limit-Remaining`,
//!   `X-Rate-Limit-Reset` and `X-Request-Cost` on every answer but a 429,
//!   which carries `Retry-After` instead.
//! - Auth host `http://127.0.0.1:P2`: `POST /core/connect/token`, refresh
//!   grant only, client authentication by HTTP Basic or form fields, each
//!   refresh token usable once.
//! - Storage host `http://localhost:P3` (another host *name*, so clients
//!   must drop `Authorization` on the redirect): `GET /blob/…?Expires=&Signature=`.
//!   A request with `Authorization` gets 400, a bad or expired signature 403.
//!   Single byte ranges are honoured (206).
//!
//! # Data and time
//!
//! Extracts are added with [`FakeHub::add_extract`] and grouped into data
//! sets by schema id; names and plugin ids of data sets the catalog knows
//! come from [`bds_common::catalog::Catalog::builtin`]. At the hub's time
//! ([`FakeHub::set_now`], by default the wall clock), an extract is in view
//! when it was created by then, and a differential only when it was created
//! within [`HubConfig::differential_retention`] (14 days). Only extracts in
//! view are listed and downloadable. Access tokens and signed links expire in
//! real time.
//!
//! Decisions where the reference is uncertain: listings are newest first;
//! `/datasets/bds` is sorted by schema id; bookmarks are base64url text;
//! `{extractId}` is the queued epoch, as in the download route;
//! `/dataExport/bds/list` writes `DownloadSize` as a float (as one tenant
//! did) and lists plugins without an extract in view with null fields;
//! `/dataExport/bds` lists them with `CurrentlyAvailable: false`.
//!
//! # Faults
//!
//! [`FakeHub::inject`] arms a [`Fault`]: a [`FaultKind`] firing `times` times
//! on a [`FaultTarget`], a route class or one extract. Status faults answer
//! instead of the route (on the API host after the rate limit and Bearer
//! check); body faults damage the answer while keeping its full
//! `Content-Length`. Faults targeting an extract fire on the storage request
//! for its zip, except [`FaultKind::WrongDownloadSize`], which fires on each
//! listing entry showing it (or, targeting [`RouteClass::List`], on every
//! size of one listing answer).
//!
//! # Hub directory (used by the `bds-fakehub` binary)
//!
//! See [`manifest`]: a `hub.json` describing the zips of a directory.

mod api;
mod auth;
mod faults;
pub mod manifest;
mod net;
pub mod shapes;
mod state;
mod storage;
mod view;

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

pub use api::WRONG_SIZE_OFFSET;
pub use faults::{Fault, FaultKind, FaultTarget, RouteClass};
pub use state::{HubConfig, RequestRecord};

use crate::ExtractFile;
use net::{ConnHandle, HubListener, bind};
use state::Shared;

/// Why the hub could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listener could not be bound.
    #[error("cannot listen on {address}")]
    Bind {
        /// The address asked for.
        address: SocketAddr,
        /// What the system said.
        #[source]
        source: io::Error,
    },
    /// The hub's runtime could not be built.
    #[error("cannot start the hub's runtime")]
    Runtime(#[source] io::Error),
}

/// A running fake Data Hub. It serves from its own runtime on two threads,
/// so a test may block (for example on a child process) while it answers.
/// Dropping it stops the hosts.
#[derive(Debug)]
pub struct FakeHub {
    shared: Arc<Shared>,
    auth_url: String,
    runtime: Option<tokio::runtime::Runtime>,
    stop: watch::Sender<bool>,
}

impl FakeHub {
    /// Starts the three hosts. Panics if they cannot start; see
    /// [`FakeHub::try_start`].
    pub async fn start(config: HubConfig) -> FakeHub {
        Self::start_blocking(config)
    }

    /// [`FakeHub::start`] for code without a runtime.
    pub fn start_blocking(config: HubConfig) -> FakeHub {
        Self::try_start(config).unwrap_or_else(|e| panic!("the fake hub cannot start: {e:?}"))
    }

    /// Starts the three hosts on loopback: ports from the configuration, 0
    /// for any free port.
    pub fn try_start(config: HubConfig) -> Result<FakeHub, StartError> {
        let loopback = |port| SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let bind_at =
            |address| bind(address).map_err(|source| StartError::Bind { address, source });
        let api = bind_at(loopback(config.api_port))?;
        let auth = bind_at(loopback(config.auth_port))?;
        let storage = bind_at(loopback(config.storage_port))?;
        let port = |listener: &std::net::TcpListener| {
            listener.local_addr().map(|a| a.port()).unwrap_or_default()
        };
        let storage_port = port(&storage);
        // `localhost` may resolve to ::1 first; serve there too when the
        // system has IPv6, so clients need not fall back.
        let storage_v6 = bind(SocketAddr::from((Ipv6Addr::LOCALHOST, storage_port))).ok();

        let api_url = format!("http://127.0.0.1:{}", port(&api));
        let auth_url = format!("http://127.0.0.1:{}", port(&auth));
        let storage_url = format!("http://localhost:{storage_port}");
        let shared = Arc::new(Shared::new(config, api_url, storage_url));

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("fakehub")
            .enable_all()
            .build()
            .map_err(StartError::Runtime)?;
        let (stop, stopped) = watch::channel(false);
        let routers = [
            (api, Router::new().fallback(api::handle)),
            (auth, Router::new().fallback(auth::handle)),
            (storage, Router::new().fallback(storage::handle)),
        ];
        let storage_router = Router::new().fallback(storage::handle);
        let all = routers
            .into_iter()
            .chain(storage_v6.map(|listener| (listener, storage_router)));
        for (listener, router) in all {
            let router = router.with_state(shared.clone());
            serve(&runtime, listener, router, stopped.clone())?;
        }

        Ok(FakeHub {
            shared,
            auth_url,
            runtime: Some(runtime),
            stop,
        })
    }

    /// Stops the hosts; the same as dropping the hub.
    pub fn shutdown(self) {}

    /// `http://127.0.0.1:P1`, the Brightspace site (`--base-url`).
    pub fn api_url(&self) -> &str {
        &self.shared.api_url
    }

    /// `http://127.0.0.1:P2`, the auth host (`--auth-url`).
    pub fn auth_url(&self) -> &str {
        &self.auth_url
    }

    /// `http://127.0.0.1:P2/core/connect/token`.
    pub fn token_url(&self) -> String {
        format!("{}/core/connect/token", self.auth_url)
    }

    /// `http://localhost:P3`, where download links redirect to.
    pub fn storage_url(&self) -> &str {
        &self.shared.storage_url
    }

    /// The configuration the hub runs with.
    pub fn config(&self) -> &HubConfig {
        &self.shared.config
    }

    /// Serves this extract from now on (when in view).
    pub fn add_extract(&self, file: ExtractFile) {
        self.shared.lock().extracts.push(file);
    }

    /// Serves all these extracts.
    pub fn add_extracts(&self, files: impl IntoIterator<Item = ExtractFile>) {
        self.shared.lock().extracts.extend(files);
    }

    /// Every extract added, in view or not.
    pub fn extracts(&self) -> Vec<ExtractFile> {
        self.shared.lock().extracts.clone()
    }

    /// The download link the API gives for this extract:
    /// `{api}/d2l/api/lp/{version}/dataExport/bds/{pluginId}/{epoch of queued}`.
    pub fn download_link(&self, version: &str, file: &ExtractFile) -> String {
        format!(
            "{}/d2l/api/lp/{version}/dataExport/bds/{}/{}",
            self.api_url(),
            file.plugin_id.to_ascii_lowercase(),
            file.queued.timestamp()
        )
    }

    /// The hub's time.
    pub fn now(&self) -> DateTime<Utc> {
        self.shared.now()
    }

    /// Stops the hub's clock at `now`.
    pub fn set_now(&self, now: DateTime<Utc>) {
        self.shared.lock().now = Some(now);
    }

    /// Moves the hub's clock (stopped at its current time if it followed the
    /// wall clock).
    pub fn advance(&self, by: chrono::Duration) {
        let now = self.now() + by;
        self.set_now(now);
    }

    /// Lets the hub's clock follow the wall clock again.
    pub fn follow_wall_clock(&self) {
        self.shared.lock().now = None;
    }

    /// A new refresh token with the configured scope, valid until used once.
    pub fn issue_refresh_token(&self) -> String {
        let scopes = auth::split_scopes(&self.shared.config.scope);
        auth::issue_refresh_token(&self.shared, scopes)
    }

    /// A new refresh token granting these space-separated scopes, to test
    /// 403 answers.
    pub fn issue_refresh_token_with_scope(&self, scope: &str) -> String {
        auth::issue_refresh_token(&self.shared, auth::split_scopes(scope))
    }

    /// Whether this refresh token can still be exchanged.
    pub fn refresh_token_is_valid(&self, token: &str) -> bool {
        self.shared.lock().refresh_tokens.contains_key(token)
    }

    /// Whether this refresh token was exchanged already.
    pub fn refresh_token_was_used(&self, token: &str) -> bool {
        self.shared.lock().spent_refresh_tokens.contains(token)
    }

    /// How many refresh tokens can still be exchanged.
    pub fn valid_refresh_tokens(&self) -> usize {
        self.shared.lock().refresh_tokens.len()
    }

    /// How many access tokens were issued and are not expired.
    pub fn live_access_tokens(&self) -> usize {
        let now = Instant::now();
        let state = self.shared.lock();
        state
            .access_tokens
            .values()
            .filter(|g| g.expires > now)
            .count()
    }

    /// Expires every access token issued so far, as if their lifetime had
    /// passed.
    pub fn expire_access_tokens(&self) {
        let now = Instant::now();
        for grant in self.shared.lock().access_tokens.values_mut() {
            grant.expires = now;
        }
    }

    /// Arms a fault.
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.inject(fault);
    }

    /// Disarms every fault.
    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// How many faults are still armed (a fault is disarmed once it has
    /// fired `times` times).
    pub fn armed_faults(&self) -> usize {
        self.shared.lock().faults.armed()
    }

    /// Requests the API host received, in order.
    pub fn api_requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().api_log.clone()
    }

    /// Requests the auth host received, in order.
    pub fn auth_requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().auth_log.clone()
    }

    /// Requests the storage host received, in order.
    pub fn storage_requests(&self) -> Vec<RequestRecord> {
        self.shared.lock().storage_log.clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        let mut state = self.shared.lock();
        state.api_log.clear();
        state.auth_log.clear();
        state.storage_log.clear();
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        let _ = self.stop.send(true);
        if let Some(runtime) = self.runtime.take() {
            // Never blocks, so the hub can be dropped inside a runtime.
            runtime.shutdown_background();
        }
    }
}

fn serve(
    runtime: &tokio::runtime::Runtime,
    listener: std::net::TcpListener,
    router: Router,
    mut stopped: watch::Receiver<bool>,
) -> Result<(), StartError> {
    let _entered = runtime.enter();
    let address = listener
        .local_addr()
        .unwrap_or_else(|_| SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    let listener = tokio::net::TcpListener::from_std(listener)
        .map_err(|source| StartError::Bind { address, source })?;
    let service = router.into_make_service_with_connect_info::<ConnHandle>();
    runtime.spawn(async move {
        let stop = async move {
            let _ = stopped.wait_for(|stop| *stop).await;
        };
        let _ = axum::serve(HubListener(listener), service)
            .with_graceful_shutdown(stop)
            .await;
    });
    Ok(())
}
