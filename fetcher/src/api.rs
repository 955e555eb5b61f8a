//! The Brightspace host: routes, the bearer token, and retried JSON GETs.
//!
//! The access token is only ever attached to requests for the configured
//! Brightspace site (same scheme, host and port); links from the API that
//! point anywhere else are refused rather than followed with the token.

use std::sync::Arc;
use std::time::Duration;

use bds_common::redact::redact_url;
use reqwest::StatusCode;
use serde::de::DeserializeOwned;
use thiserror::Error;
use url::Url;

use crate::retry::{RetryPolicy, Transient, parse_retry_after, retry};
use crate::token::{TokenError, TokenService};

/// Errors talking to the Brightspace host.
#[derive(Debug, Error)]
pub enum ApiError {
    /// The server answered with an error status.
    #[error("{url} answered {status}")]
    Status {
        /// The URL, redacted.
        url: String,
        /// HTTP status.
        status: u16,
        /// `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// The request failed on the way (connection, timeout, body).
    #[error("request to {url} failed")]
    Http {
        /// The URL, redacted.
        url: String,
        /// The cause, without its URL.
        #[source]
        source: reqwest::Error,
    },
    /// The JSON was not what the API documents.
    #[error("{url} answered JSON of an unexpected shape")]
    Json {
        /// The URL, redacted.
        url: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A link does not point to the Brightspace host.
    #[error("refusing to send the access token to {url}: it is not on the Brightspace site {base}")]
    ForeignHost {
        /// The link, redacted.
        url: String,
        /// The configured site.
        base: String,
    },
    /// A link or the base URL is not a URL.
    #[error("invalid URL {url:?}")]
    BadUrl {
        /// What was given, redacted.
        url: String,
    },
    /// No access token.
    #[error("cannot get an access token")]
    Token(#[from] TokenError),
}

impl Transient for ApiError {
    fn retry_after(&self) -> Option<Option<Duration>> {
        match self {
            ApiError::Status {
                status,
                retry_after,
                ..
            } => retryable_status(*status).then_some(*retry_after),
            ApiError::Http { .. } => Some(None),
            ApiError::Token(e) => e.retry_after(),
            _ => None,
        }
    }
}

/// Statuses worth another try: rate limited, timeouts, server trouble, and
/// 401 (the token expired in flight; the next attempt refreshes it).
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 401 | 408 | 429) || status >= 500
}

/// A client of one Brightspace site.
#[derive(Debug, Clone)]
pub struct Api {
    http: reqwest::Client,
    base: Url,
    version: String,
    tokens: Arc<TokenService>,
    retry: RetryPolicy,
}

impl Api {
    /// A client for the site at `base_url`, LP API `version`.
    pub fn new(
        http: reqwest::Client,
        base_url: &str,
        version: &str,
        tokens: Arc<TokenService>,
        retry: RetryPolicy,
    ) -> Result<Api, ApiError> {
        let mut text = base_url.trim().to_string();
        if !text.ends_with('/') {
            text.push('/');
        }
        let base = Url::parse(&text).map_err(|_| ApiError::BadUrl {
            url: redact_url(base_url),
        })?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(ApiError::BadUrl {
                url: redact_url(base_url),
            });
        }
        Ok(Api {
            http,
            base,
            version: version.to_string(),
            tokens,
            retry,
        })
    }

    /// The HTTP client (redirects off), for storage requests.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The token service.
    pub fn tokens(&self) -> &TokenService {
        &self.tokens
    }

    /// The URL of an LP route, e.g. `datasets/bds`.
    pub fn route(&self, path: &str) -> Url {
        self.base
            .join(&format!("d2l/api/lp/{}/{}", self.version, path))
            .expect("routes are valid relative URLs")
    }

    /// Resolves a link from an API answer (absolute or relative) and checks
    /// that it is on the Brightspace site.
    pub fn resolve(&self, link: &str) -> Result<Url, ApiError> {
        resolve_on_site(&self.base, link)
    }

    /// GETs `url` (on the site) with the bearer token, retrying per policy,
    /// and parses the JSON answer.
    pub async fn get_json<T: DeserializeOwned>(&self, url: &Url) -> Result<T, ApiError> {
        let what = redact_url(url.as_str());
        retry(self.retry, &what, |_| async {
            let response = self.send_authorized(url).await?;
            if !response.status().is_success() {
                return Err(status_error(url, &response));
            }
            let body = response.bytes().await.map_err(|e| http_error(url, e))?;
            serde_json::from_slice(&body).map_err(|source| ApiError::Json {
                url: what.clone(),
                source,
            })
        })
        .await
    }

    /// One GET of `url` with the bearer token; any status but 401 and 429
    /// or 5xx comes back as a response (a download answers 302). The caller
    /// retries.
    pub async fn send_authorized(&self, url: &Url) -> Result<reqwest::Response, ApiError> {
        let url = self.resolve(url.as_str())?;
        let token = self.tokens.bearer().await?;
        let response = self
            .http
            .get(url.clone())
            .bearer_auth(token.expose())
            .send()
            .await
            .map_err(|e| http_error(&url, e))?;
        log_rate_limit(&response);
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED {
            self.tokens.invalidate(&token).await;
        }
        if status == StatusCode::UNAUTHORIZED
            || status == StatusCode::TOO_MANY_REQUESTS
            || status.is_server_error()
        {
            return Err(status_error(&url, &response));
        }
        Ok(response)
    }
}

/// `link` resolved against `base`, if it is on the same site (scheme, host
/// and port): the only place the access token may go.
fn resolve_on_site(base: &Url, link: &str) -> Result<Url, ApiError> {
    let url = base.join(link.trim()).map_err(|_| ApiError::BadUrl {
        url: redact_url(link),
    })?;
    let same_site = url.scheme() == base.scheme()
        && url.host_str() == base.host_str()
        && url.port_or_known_default() == base.port_or_known_default();
    if !same_site {
        return Err(ApiError::ForeignHost {
            url: redact_url(url.as_str()),
            base: base.to_string(),
        });
    }
    Ok(url)
}

/// The error for an unexpected status, with `Retry-After` if given.
pub fn status_error(url: &Url, response: &reqwest::Response) -> ApiError {
    ApiError::Status {
        url: redact_url(url.as_str()),
        status: response.status().as_u16(),
        retry_after: retry_after_of(response),
    }
}

/// The `Retry-After` of a response, if any.
pub fn retry_after_of(response: &reqwest::Response) -> Option<Duration> {
    response
        .headers()
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()
        .and_then(parse_retry_after)
}

fn http_error(url: &Url, error: reqwest::Error) -> ApiError {
    ApiError::Http {
        url: redact_url(url.as_str()),
        source: error.without_url(),
    }
}

fn log_rate_limit(response: &reqwest::Response) {
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    if let Some(remaining) = header("x-rate-limit-remaining") {
        tracing::trace!(
            remaining,
            reset = header("x-rate-limit-reset").unwrap_or_default(),
            "rate limit"
        );
    }
}

/// The HTTP client of a run: no automatic redirects (the download hop is
/// followed by hand, without the token), bounded connect and idle times.
pub fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(30))
        .read_timeout(Duration::from_secs(120))
        .user_agent(concat!("bds-fetch/", env!("CARGO_PKG_VERSION")))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_goes_only_to_the_site() {
        let base = Url::parse("https://school.example/").unwrap();
        let ok = resolve_on_site(&base, "/d2l/api/lp/1.53/datasets/bds?bookmark=x").unwrap();
        assert_eq!(ok.host_str(), Some("school.example"));
        assert!(resolve_on_site(&base, "https://school.example:443/x").is_ok());
        for foreign in [
            "https://evil.example/x",
            "http://school.example/x",
            "https://school.example:8443/x",
            "https://school.example.evil.example/x",
        ] {
            let err = resolve_on_site(&base, foreign).unwrap_err();
            assert!(matches!(err, ApiError::ForeignHost { .. }), "{foreign}");
        }
    }

    #[test]
    fn only_server_trouble_and_throttling_are_retried() {
        for status in [401, 408, 429, 500, 502, 503] {
            assert!(retryable_status(status), "{status}");
        }
        for status in [400, 403, 404] {
            assert!(!retryable_status(status), "{status}");
        }
    }
}
