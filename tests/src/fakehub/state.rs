//! What the three hosts of the fake hub share: configuration, extracts, the
//! clock, tokens, the rate-limit bucket, armed faults and request logs.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::faults::FaultBook;
use crate::ExtractFile;

/// How the hub is set up. `HubConfig::default()` is what a test usually wants.
/// `Debug` leaves the client secret out.
#[derive(Clone)]
pub struct HubConfig {
    /// The registered client id.
    pub client_id: String,
    /// The registered client secret.
    pub client_secret: String,
    /// Scopes granted when a refresh request asks for none.
    pub scope: String,
    /// Lifetime of access tokens, in real time.
    pub access_token_lifetime: Duration,
    /// Objects per page of `/datasets/bds…`, and the default `pageSize` of
    /// `/dataExport/bds`. Small so that tests walk several pages.
    pub page_size: usize,
    /// Credits in the rate-limit bucket, refilled evenly over
    /// `rate_limit_period`.
    pub rate_limit_credits: u32,
    /// Time the bucket takes to refill from empty.
    pub rate_limit_period: Duration,
    /// Credits one API request costs.
    pub request_cost: u32,
    /// Lifetime of a signed storage link, in real time.
    pub link_lifetime: Duration,
    /// How long differentials stay listed and downloadable, by the hub clock.
    pub differential_retention: chrono::Duration,
    /// The hub clock: `None` follows the wall clock.
    pub now: Option<DateTime<Utc>>,
    /// `LatestVersion` of `lp` in `/d2l/api/versions/`.
    pub latest_version: String,
    /// Port of the API host; 0 picks a free one.
    pub api_port: u16,
    /// Port of the auth host; 0 picks a free one.
    pub auth_port: u16,
    /// Port of the storage host; 0 picks a free one.
    pub storage_port: u16,
}

impl Default for HubConfig {
    fn default() -> Self {
        HubConfig {
            client_id: "bds-test-client".into(),
            client_secret: "bds-test-secret".into(),
            scope: "datahub:dataexports:* datasets:bds:read".into(),
            access_token_lifetime: Duration::from_secs(3600),
            page_size: 3,
            rate_limit_credits: 50_000,
            rate_limit_period: Duration::from_secs(60),
            request_cost: 10,
            link_lifetime: Duration::from_secs(300),
            differential_retention: chrono::Duration::days(14),
            now: None,
            latest_version: "1.63".into(),
            api_port: 0,
            auth_port: 0,
            storage_port: 0,
        }
    }
}

impl fmt::Debug for HubConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("scope", &self.scope)
            .field("access_token_lifetime", &self.access_token_lifetime)
            .field("page_size", &self.page_size)
            .field("rate_limit_credits", &self.rate_limit_credits)
            .field("rate_limit_period", &self.rate_limit_period)
            .field("request_cost", &self.request_cost)
            .field("link_lifetime", &self.link_lifetime)
            .field("differential_retention", &self.differential_retention)
            .field("now", &self.now)
            .field("latest_version", &self.latest_version)
            .field("ports", &(self.api_port, self.auth_port, self.storage_port))
            .finish()
    }
}

/// One request a host received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// `GET`, `POST`, ...
    pub method: String,
    /// Path and query as received.
    pub path: String,
    /// Whether an `Authorization` header came with it.
    pub authorization: bool,
    /// Status of the answer.
    pub status: u16,
}

/// An access token the auth host issued.
#[derive(Debug, Clone)]
pub(crate) struct AccessGrant {
    pub(crate) expires: Instant,
    pub(crate) scopes: Vec<String>,
}

/// Token bucket of the API host: `credits` refill evenly over `period`.
#[derive(Debug)]
pub(crate) struct Bucket {
    level: f64,
    capacity: f64,
    per_second: f64,
    last: Instant,
}

/// The outcome of charging the bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Charge {
    /// Allowed; the values of `X-Rate-Limit-Remaining` and `X-Rate-Limit-Reset`.
    Allowed { remaining: u64, reset_secs: u64 },
    /// Refused; the value of `Retry-After`.
    Refused { retry_after_secs: u64 },
}

impl Bucket {
    pub(crate) fn new(credits: u32, period: Duration) -> Self {
        let capacity = f64::from(credits);
        Bucket {
            level: capacity,
            capacity,
            per_second: capacity / period.as_secs_f64().max(0.001),
            last: Instant::now(),
        }
    }

    pub(crate) fn charge(&mut self, cost: u32) -> Charge {
        let now = Instant::now();
        let refill = now.duration_since(self.last).as_secs_f64() * self.per_second;
        self.level = (self.level + refill).min(self.capacity);
        self.last = now;

        let cost = f64::from(cost);
        if self.level < cost {
            let wait = (cost - self.level) / self.per_second;
            return Charge::Refused {
                retry_after_secs: wait.ceil().max(1.0) as u64,
            };
        }
        self.level -= cost;
        Charge::Allowed {
            remaining: self.level.floor() as u64,
            reset_secs: ((self.capacity - self.level) / self.per_second).ceil() as u64,
        }
    }
}

/// Everything mutable, behind one lock that is never held across an await.
#[derive(Debug)]
pub(crate) struct HubState {
    pub(crate) now: Option<DateTime<Utc>>,
    pub(crate) extracts: Vec<ExtractFile>,
    pub(crate) refresh_tokens: HashMap<String, Vec<String>>,
    pub(crate) spent_refresh_tokens: HashSet<String>,
    pub(crate) access_tokens: HashMap<String, AccessGrant>,
    pub(crate) bucket: Bucket,
    pub(crate) faults: FaultBook,
    pub(crate) api_log: Vec<RequestRecord>,
    pub(crate) auth_log: Vec<RequestRecord>,
    pub(crate) storage_log: Vec<RequestRecord>,
}

/// Configuration, a signing key, and the mutable state. `Debug` shows
/// neither the key nor the tokens.
pub(crate) struct Shared {
    pub(crate) config: HubConfig,
    pub(crate) signing_key: String,
    pub(crate) api_url: String,
    pub(crate) storage_url: String,
    state: Mutex<HubState>,
}

impl Shared {
    pub(crate) fn new(config: HubConfig, api_url: String, storage_url: String) -> Self {
        let state = HubState {
            now: config.now,
            extracts: Vec::new(),
            refresh_tokens: HashMap::new(),
            spent_refresh_tokens: HashSet::new(),
            access_tokens: HashMap::new(),
            bucket: Bucket::new(config.rate_limit_credits, config.rate_limit_period),
            faults: FaultBook::default(),
            api_log: Vec::new(),
            auth_log: Vec::new(),
            storage_log: Vec::new(),
        };
        Shared {
            signing_key: random_hex(32),
            config,
            api_url,
            storage_url,
            state: Mutex::new(state),
        }
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, HubState> {
        // A panicking handler must not take the rest of a test down with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The hub clock.
    pub(crate) fn now(&self) -> DateTime<Utc> {
        self.lock().now.unwrap_or_else(Utc::now)
    }
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .field("api_url", &self.api_url)
            .field("storage_url", &self.storage_url)
            .finish_non_exhaustive()
    }
}

/// `bytes` random bytes as lower-case hex.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut rng = fastrand::Rng::new();
    (0..bytes).map(|_| format!("{:02x}", rng.u8(..))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_refuses_when_empty_and_says_how_long_to_wait() {
        let mut bucket = Bucket::new(30, Duration::from_secs(60));
        assert!(matches!(
            bucket.charge(10),
            Charge::Allowed { remaining: 20, .. }
        ));
        bucket.charge(10);
        bucket.charge(10);
        match bucket.charge(10) {
            Charge::Refused { retry_after_secs } => assert!((19..=20).contains(&retry_after_secs)),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
}
