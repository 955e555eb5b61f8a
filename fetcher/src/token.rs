//! The refresh token: kept in a private file, spent exactly once per
//! exchange, and replaced on disk before anything else happens.
//!
//! D2L refresh tokens are single-use: every exchange returns a new one and
//! the old one stops working. Losing the new one locks the integration out
//! until someone logs in with a browser again, so the run holds an exclusive
//! lock next to the token file (two runs never spend the same token) and
//! writes the new token durably (temp file, fsync, rename, fsync the folder)
//! before it uses the access token it got.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bds_common::redact::Secret;
use serde::Deserialize;
use thiserror::Error;
use tokio::sync::Mutex;

use crate::config::{ConfigError, SampleToken, ensure_private};
use crate::retry::{RetryPolicy, Transient, retry};

/// Access token lifetime assumed when the token service gives none.
const DEFAULT_LIFETIME: Duration = Duration::from_secs(3600);

/// Errors around the refresh token.
#[derive(Debug, Error)]
pub enum TokenError {
    /// The token file does not exist.
    #[error(
        "token file {path} does not exist: write the refresh token of your OAuth app into it \
         and run chmod 600 {path}"
    )]
    Missing {
        /// The token file.
        path: PathBuf,
    },
    /// The token file is empty.
    #[error("token file {path} is empty: write the refresh token of your OAuth app into it")]
    Empty {
        /// The token file.
        path: PathBuf,
    },
    /// The token file is readable by others.
    #[error(transparent)]
    NotPrivate(#[from] ConfigError),
    /// Another run holds the lock.
    #[error("another bds-fetch run holds the lock {path} on the token file; wait for it to finish")]
    Busy {
        /// The lock file.
        path: PathBuf,
    },
    /// A file could not be read, written or locked.
    #[error("{path}: i/o error")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The refresh token was refused: used, revoked or expired.
    #[error(
        "the token service refused the refresh token in {path} (invalid_grant: it was already \
         used, revoked or has expired). Get a new refresh token for the OAuth app (one login in \
         a browser, see D2L's article \"How to obtain an OAuth 2.0 refresh token\"), write it to \
         {path} and run chmod 600 {path}"
    )]
    InvalidGrant {
        /// The token file.
        path: PathBuf,
    },
    /// The client id or secret was refused; the refresh token is unspent.
    #[error(
        "the token service refused the client (invalid_client): check the client id and the \
         client secret (BDS_CLIENT_SECRET or client_secret in the config file) against the OAuth \
         app registered in Brightspace; the refresh token was not spent"
    )]
    InvalidClient,
    /// The token service answered with another error.
    #[error("the token service answered {status}: {error}{}", with_colon(.description))]
    Rejected {
        /// HTTP status.
        status: u16,
        /// OAuth `error` code.
        error: String,
        /// OAuth `error_description`.
        description: String,
        /// `Retry-After`, if any.
        retry_after: Option<Duration>,
    },
    /// The token service could not be reached or answered nonsense.
    #[error("token request failed")]
    Http(#[source] reqwest::Error),
}

impl Transient for TokenError {
    fn retry_after(&self) -> Option<Option<Duration>> {
        match self {
            TokenError::Rejected {
                status,
                retry_after,
                ..
            } if *status == 429 || *status >= 500 => Some(*retry_after),
            // Only a request that never reached the server is safe to send
            // again: a token service that received it has spent the token.
            TokenError::Http(e) if e.is_connect() => Some(None),
            _ => None,
        }
    }
}

/// The locked token file.
#[derive(Debug)]
pub struct TokenFile {
    path: PathBuf,
    _lock: File,
}

impl TokenFile {
    /// Locks the token file for this run, moving a sample-config token into
    /// it first if the file does not exist yet.
    pub fn open(path: &Path, sample: Option<&SampleToken>) -> Result<TokenFile, TokenError> {
        let lock_path = lock_path(path);
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| TokenError::Io { path: p, source }
        };
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(TokenError::Busy { path: lock_path });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        let file = TokenFile {
            path: path.to_path_buf(),
            _lock: lock,
        };
        if let Some(sample) = sample {
            file.adopt_sample(sample)?;
        }
        Ok(file)
    }

    /// The token file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the current refresh token, refusing a file others can read.
    pub fn read(&self) -> Result<Secret, TokenError> {
        if !self.path.exists() {
            return Err(TokenError::Missing {
                path: self.path.clone(),
            });
        }
        ensure_private(&self.path, "token file")?;
        let text = std::fs::read_to_string(&self.path).map_err(|source| TokenError::Io {
            path: self.path.clone(),
            source,
        })?;
        let token = text.trim();
        if token.is_empty() {
            return Err(TokenError::Empty {
                path: self.path.clone(),
            });
        }
        Ok(Secret::new(token))
    }

    /// Replaces the token durably: after this returns, a crash leaves
    /// either the old file or the new one, never a torn one.
    pub fn write(&self, token: &Secret) -> Result<(), TokenError> {
        write_atomically(&self.path, format!("{}\n", token.expose()).as_bytes()).map_err(|source| {
            TokenError::Io {
                path: self.path.clone(),
                source,
            }
        })
    }

    fn adopt_sample(&self, sample: &SampleToken) -> Result<(), TokenError> {
        if self.path.exists() {
            tracing::warn!(
                config = %sample.config.display(),
                token_file = %self.path.display(),
                "ignoring refresh_token in the config file: the token file holds the current \
                 token; remove refresh_token from the config file"
            );
            return Ok(());
        }
        self.write(&sample.token)?;
        remove_sample_token(&sample.config).map_err(|source| TokenError::Io {
            path: sample.config.clone(),
            source,
        })?;
        tracing::warn!(
            config = %sample.config.display(),
            token_file = %self.path.display(),
            "moved the refresh token from the config file into the token file; from now on \
             the token file holds it (each run replaces it)"
        );
        Ok(())
    }
}

/// `token` → `token.lock`, in the same folder.
fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    path.with_file_name(name)
}

/// Rewrites a sample-client JSON config without its `refresh_token`, which
/// now lives in the token file (a stale copy would only mislead).
fn remove_sample_token(config: &Path) -> std::io::Result<()> {
    let text = std::fs::read_to_string(config)?;
    let mut value: serde_json::Value =
        serde_json::from_str(&text).map_err(std::io::Error::other)?;
    if let Some(object) = value.as_object_mut() {
        object.remove("refresh_token");
    }
    let mut out = serde_json::to_string_pretty(&value).map_err(std::io::Error::other)?;
    out.push('\n');
    write_atomically(config, out.as_bytes())
}

/// Writes `data` to `path` through a private temp file in the same folder:
/// write, fsync, rename, fsync the folder. The result has mode 0600.
pub fn write_atomically(path: &Path, data: &[u8]) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".bds-tmp-")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    temp.write_all(data)?;
    temp.as_file().sync_all()?;
    temp.persist(path).map_err(|e| e.error)?;
    File::open(dir)?.sync_all()
}

/// The token service's answer.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    refresh_token: Option<String>,
    expires_in: Option<u64>,
}

/// An OAuth error body.
#[derive(Deserialize, Default)]
struct OAuthError {
    #[serde(default)]
    error: String,
    #[serde(default)]
    error_description: String,
}

#[derive(Debug)]
struct Access {
    token: Secret,
    expires: Instant,
    lifetime: Duration,
}

#[derive(Debug)]
struct State {
    refresh: Secret,
    access: Option<Access>,
}

/// Hands out access tokens, refreshing (and rotating the refresh token)
/// when the current one is near its end. Shared by all downloads.
#[derive(Debug)]
pub struct TokenService {
    http: reqwest::Client,
    endpoint: String,
    client_id: String,
    client_secret: Secret,
    scope: Option<String>,
    retry: RetryPolicy,
    file: TokenFile,
    state: Mutex<State>,
}

/// What the token service needs to know.
#[derive(Debug, Clone)]
pub struct OAuthClient {
    /// Token service base URL or full token endpoint.
    pub auth_url: String,
    /// Client id.
    pub client_id: String,
    /// Client secret.
    pub client_secret: Secret,
    /// Scope to ask for, if any.
    pub scope: Option<String>,
}

impl TokenService {
    /// Reads the refresh token from the locked file. Makes no request yet.
    pub fn new(
        http: reqwest::Client,
        client: OAuthClient,
        file: TokenFile,
        retry: RetryPolicy,
    ) -> Result<TokenService, TokenError> {
        let refresh = file.read()?;
        Ok(TokenService {
            http,
            endpoint: token_endpoint(&client.auth_url),
            client_id: client.client_id,
            client_secret: client.client_secret,
            scope: client.scope,
            retry,
            file,
            state: Mutex::new(State {
                refresh,
                access: None,
            }),
        })
    }

    /// A valid access token, refreshing first if the current one is
    /// missing or about to expire.
    pub async fn bearer(&self) -> Result<Secret, TokenError> {
        let mut state = self.state.lock().await;
        let fresh = state.access.as_ref().is_some_and(|a| {
            let margin = (a.lifetime / 5).min(Duration::from_secs(60));
            a.expires.saturating_duration_since(Instant::now()) > margin
        });
        if !fresh {
            self.exchange(&mut state).await?;
        }
        Ok(state
            .access
            .as_ref()
            .expect("an exchange sets the access token")
            .token
            .clone())
    }

    /// Forgets `used` after the API refused it, so the next
    /// [`TokenService::bearer`] refreshes (unless another task already did).
    pub async fn invalidate(&self, used: &Secret) {
        let mut state = self.state.lock().await;
        if state.access.as_ref().is_some_and(|a| &a.token == used) {
            state.access = None;
        }
    }

    async fn exchange(&self, state: &mut State) -> Result<(), TokenError> {
        let started = Instant::now();
        let refresh = state.refresh.clone();
        let answer = retry(self.retry, "token exchange", |_| self.request(&refresh)).await?;
        if let Some(new) = answer.refresh_token.filter(|t| !t.is_empty()) {
            let new = Secret::new(new);
            // Persist before anything uses the access token: the old refresh
            // token is spent, this one is the only way back in.
            self.file.write(&new)?;
            state.refresh = new;
        } else {
            tracing::warn!("the token service returned no new refresh token; keeping the old one");
        }
        let lifetime = answer
            .expires_in
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_LIFETIME);
        state.access = Some(Access {
            token: Secret::new(answer.access_token),
            expires: started + lifetime,
            lifetime,
        });
        tracing::debug!(
            expires_in_s = lifetime.as_secs(),
            token_file = %self.file.path().display(),
            "access token refreshed, new refresh token saved"
        );
        Ok(())
    }

    async fn request(&self, refresh: &Secret) -> Result<TokenResponse, TokenError> {
        let mut form = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh.expose()),
        ];
        if let Some(scope) = &self.scope {
            form.push(("scope", scope));
        }
        let response = self
            .http
            .post(&self.endpoint)
            .basic_auth(&self.client_id, Some(self.client_secret.expose()))
            .form(&form)
            .send()
            .await
            .map_err(|e| TokenError::Http(e.without_url()))?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(crate::retry::parse_retry_after);
        let body = response
            .bytes()
            .await
            .map_err(|e| TokenError::Http(e.without_url()))?;
        if status.is_success() {
            return serde_json::from_slice(&body).map_err(|_| TokenError::Rejected {
                status: status.as_u16(),
                error: "unreadable answer".into(),
                description: "no access_token in the JSON body".into(),
                retry_after: None,
            });
        }
        let error: OAuthError = serde_json::from_slice(&body).unwrap_or_default();
        match error.error.as_str() {
            "invalid_grant" => {
                return Err(TokenError::InvalidGrant {
                    path: self.file.path().to_path_buf(),
                });
            }
            "invalid_client" => return Err(TokenError::InvalidClient),
            _ => {}
        }
        Err(TokenError::Rejected {
            status: status.as_u16(),
            error: error.error,
            description: error.error_description,
            retry_after,
        })
    }
}

/// `": description"`, or nothing when the service gave none.
fn with_colon(description: &str) -> String {
    match description.trim() {
        "" => String::new(),
        text => format!(": {text}"),
    }
}

/// The token endpoint of a token service base URL.
fn token_endpoint(auth_url: &str) -> String {
    let trimmed = auth_url.trim_end_matches('/');
    if trimmed.ends_with("/connect/token") {
        trimmed.to_string()
    } else {
        format!("{trimmed}/core/connect/token")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_file_is_written_private_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let file = TokenFile::open(&path, None).unwrap();
        assert!(matches!(file.read(), Err(TokenError::Missing { .. })));

        file.write(&Secret::new("abc")).unwrap();
        assert_eq!(file.read().unwrap().expose(), "abc");
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            2,
            "token + lock"
        );
    }

    #[test]
    fn a_token_readable_by_others_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "abc").unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let file = TokenFile::open(&path, None).unwrap();
        let err = file.read().unwrap_err().to_string();
        assert!(
            err.contains(&format!("chmod 600 {}", path.display())),
            "{err}"
        );
    }

    #[test]
    fn a_second_run_cannot_take_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let _first = TokenFile::open(&path, None).unwrap();
        assert!(matches!(
            TokenFile::open(&path, None),
            Err(TokenError::Busy { .. })
        ));
    }

    #[test]
    fn a_sample_token_moves_into_the_token_file() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config.json");
        write_atomically(&config, br#"{"client_id": "c", "refresh_token": "r1"}"#).unwrap();
        let path = dir.path().join("token");
        let sample = SampleToken {
            config: config.clone(),
            token: Secret::new("r1"),
        };
        let file = TokenFile::open(&path, Some(&sample)).unwrap();
        assert_eq!(file.read().unwrap().expose(), "r1");
        let left = std::fs::read_to_string(&config).unwrap();
        assert!(!left.contains("r1") && left.contains("client_id"), "{left}");
    }

    #[test]
    fn token_endpoints() {
        assert_eq!(
            token_endpoint("https://auth.brightspace.com/"),
            "https://auth.brightspace.com/core/connect/token"
        );
        assert_eq!(
            token_endpoint("http://h:1/core/connect/token"),
            "http://h:1/core/connect/token"
        );
    }
}
