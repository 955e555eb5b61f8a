//! Settings: flags, then `BDS_*` environment variables (both through clap),
//! then the config file, then defaults.
//!
//! The config file is TOML with the flag names in snake_case. A JSON file in
//! the shape of D2L's Python sample client (`bspace_url`, `client_id`,
//! `client_secret`, `refresh_token`) is accepted too, so its users can
//! migrate: its refresh token is moved into the token file on first use.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bds_common::archive::Archive;
use bds_common::extract::parse_api_time;
use bds_common::redact::Secret;
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;
use thiserror::Error;

use crate::cli::Cli;
use crate::retry::RetryPolicy;

/// Default token service.
pub const DEFAULT_AUTH_URL: &str = "https://auth.brightspace.com";
/// Default LP API version: recent enough for every `/datasets/bds` route.
pub const DEFAULT_API_VERSION: &str = "1.53";
/// Default number of downloads at once.
pub const DEFAULT_CONCURRENCY: usize = 4;

/// Errors in the settings.
#[derive(Debug, Error)]
pub enum ConfigError {
    /// A required setting is missing.
    #[error("no {setting}: pass --{flag}, set {env} or put {key} in the config file")]
    Missing {
        /// What is missing, in words.
        setting: &'static str,
        /// The flag.
        flag: &'static str,
        /// The environment variable.
        env: &'static str,
        /// The config-file key.
        key: &'static str,
    },
    /// The config file could not be read.
    #[error("cannot read config file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The config file is not valid TOML or sample JSON.
    #[error("config file {path} is not valid: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file holding a secret is readable by others.
    #[error(
        "{what} {path} is readable by group or others (mode {mode:04o}); run: chmod 600 {path}"
    )]
    NotPrivate {
        /// `token file` or `config file`.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// A setting has a value that cannot be used.
    #[error("invalid {setting} {value:?}: {reason}")]
    Invalid {
        /// The setting.
        setting: &'static str,
        /// The value given.
        value: String,
        /// Why it is refused.
        reason: String,
    },
}

/// The config file, TOML form.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    base_url: Option<String>,
    auth_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    token_file: Option<PathBuf>,
    archive: Option<String>,
    datasets: Option<Vec<String>>,
    full_only: Option<bool>,
    differential_only: Option<bool>,
    since: Option<String>,
    concurrency: Option<usize>,
    api_version: Option<String>,
    scope: Option<String>,
    retry_base_ms: Option<u64>,
    retry_attempts: Option<u32>,
}

/// The config file of D2L's Python sample client; other keys are ignored.
#[derive(Debug, Default, Deserialize)]
struct SampleConfig {
    bspace_url: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    refresh_token: Option<String>,
}

/// A refresh token found in a sample-client JSON config, to be moved into
/// the token file.
#[derive(Debug, Clone)]
pub struct SampleToken {
    /// The JSON config file it came from.
    pub config: PathBuf,
    /// The token.
    pub token: Secret,
}

/// Every setting, resolved.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Archive location.
    pub archive: Option<String>,
    /// Brightspace site.
    pub base_url: Option<String>,
    /// Token service base URL.
    pub auth_url: String,
    /// OAuth client id.
    pub client_id: Option<String>,
    /// OAuth client secret.
    pub client_secret: Option<Secret>,
    /// Refresh token file.
    pub token_file: Option<PathBuf>,
    /// Refresh token of a sample-client config, if there was one.
    pub sample_token: Option<SampleToken>,
    /// Data set filter (names, tables or schema ids); empty: all.
    pub datasets: Vec<String>,
    /// Only full extracts.
    pub full_only: bool,
    /// Only differential extracts.
    pub differential_only: bool,
    /// Only extracts created at or after this time.
    pub since: Option<DateTime<Utc>>,
    /// Downloads at once.
    pub concurrency: usize,
    /// Plan only.
    pub dry_run: bool,
    /// LP API version.
    pub api_version: String,
    /// OAuth scope for refreshes.
    pub scope: Option<String>,
    /// Retry schedule.
    pub retry: RetryPolicy,
    /// JSON on stdout.
    pub json: bool,
    /// `-q` given: no progress display.
    pub quiet: bool,
}

impl Settings {
    /// Merges flags and environment (already in `cli`) with the config file.
    pub fn resolve(cli: &Cli) -> Result<Settings, ConfigError> {
        let (file, sample) = match &cli.config {
            Some(path) => read_config(path)?,
            None => (FileConfig::default(), None),
        };
        let since = cli.since.clone().or(file.since);
        let concurrency = cli
            .concurrency
            .or(file.concurrency)
            .unwrap_or(DEFAULT_CONCURRENCY);
        if concurrency == 0 {
            return Err(invalid("concurrency", "0", "must be at least 1"));
        }
        let full_only = cli.full_only || file.full_only.unwrap_or(false);
        let differential_only = cli.differential_only || file.differential_only.unwrap_or(false);
        if full_only && differential_only {
            return Err(invalid(
                "selection",
                "full_only and differential_only",
                "choose one",
            ));
        }
        let client_secret = std::env::var("BDS_CLIENT_SECRET")
            .ok()
            .filter(|s| !s.is_empty())
            .or(file.client_secret)
            .map(Secret::new);
        let defaults = RetryPolicy::default();
        Ok(Settings {
            archive: cli.archive.clone().or(file.archive),
            base_url: cli.base_url.clone().or(file.base_url),
            auth_url: cli
                .auth_url
                .clone()
                .or(file.auth_url)
                .unwrap_or_else(|| DEFAULT_AUTH_URL.into()),
            client_id: cli.client_id.clone().or(file.client_id),
            client_secret,
            token_file: cli.token_file.clone().or(file.token_file),
            sample_token: sample,
            datasets: if cli.datasets.is_empty() {
                file.datasets.unwrap_or_default()
            } else {
                cli.datasets.clone()
            },
            full_only,
            differential_only,
            since: since.as_deref().map(parse_since).transpose()?,
            concurrency,
            dry_run: cli.dry_run,
            api_version: cli
                .api_version
                .clone()
                .or(file.api_version)
                .unwrap_or_else(|| DEFAULT_API_VERSION.into()),
            scope: cli.scope.clone().or(file.scope),
            retry: RetryPolicy {
                base: cli
                    .retry_base_ms
                    .or(file.retry_base_ms)
                    .map(Duration::from_millis)
                    .unwrap_or(defaults.base),
                attempts: cli
                    .retry_attempts
                    .or(file.retry_attempts)
                    .unwrap_or(defaults.attempts)
                    .max(1),
                ..defaults
            },
            json: cli.json,
            quiet: cli.quiet > 0,
        })
    }

    /// Opens the archive.
    pub fn open_archive(&self) -> anyhow::Result<Archive> {
        use anyhow::Context;
        let location = self.archive.as_deref().ok_or(ConfigError::Missing {
            setting: "archive",
            flag: "archive",
            env: "BDS_ARCHIVE",
            key: "archive",
        })?;
        Archive::open(location).with_context(|| format!("cannot open archive {location}"))
    }

    /// Opens an archive that must exist already (`verify`, `list`): a
    /// mistyped local path would otherwise be created and look clean.
    pub fn open_existing_archive(&self) -> anyhow::Result<Archive> {
        if let Some(location) = self.archive.as_deref()
            && !location.starts_with("s3://")
        {
            let path = location.strip_prefix("file://").unwrap_or(location);
            if !Path::new(path).is_dir() {
                anyhow::bail!("archive {location} does not exist");
            }
        }
        self.open_archive()
    }
}

fn invalid(setting: &'static str, value: &str, reason: &str) -> ConfigError {
    ConfigError::Invalid {
        setting,
        value: value.into(),
        reason: reason.into(),
    }
}

/// Parses `--since`: a date (midnight UTC) or a date-time.
fn parse_since(text: &str) -> Result<DateTime<Utc>, ConfigError> {
    if let Ok(date) = NaiveDate::parse_from_str(text.trim(), "%Y-%m-%d") {
        return Ok(date
            .and_hms_opt(0, 0, 0)
            .expect("midnight exists")
            .and_utc());
    }
    parse_api_time(text).ok_or_else(|| invalid("since", text, "use YYYY-MM-DD or RFC 3339"))
}

/// Reads the config file: TOML, or the JSON of D2L's sample client. It
/// usually holds the client secret, so it must be private like the token.
fn read_config(path: &Path) -> Result<(FileConfig, Option<SampleToken>), ConfigError> {
    ensure_private(path, "config file")?;
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    let parse_error = |reason: String| ConfigError::Parse {
        path: path.into(),
        reason,
    };
    if text.trim_start().starts_with('{') {
        let sample: SampleConfig =
            serde_json::from_str(&text).map_err(|e| parse_error(e.to_string()))?;
        let token = sample.refresh_token.filter(|t| !t.is_empty());
        let file = FileConfig {
            base_url: sample.bspace_url,
            client_id: sample.client_id,
            client_secret: sample.client_secret,
            ..FileConfig::default()
        };
        let sample_token = token.map(|t| SampleToken {
            config: path.into(),
            token: Secret::new(t),
        });
        return Ok((file, sample_token));
    }
    let file: FileConfig = toml::from_str(&text).map_err(|e| parse_error(e.message().into()))?;
    Ok((file, None))
}

/// Refuses a file that holds a secret if group or others may read it.
pub fn ensure_private(path: &Path, what: &'static str) -> Result<(), ConfigError> {
    let meta = std::fs::metadata(path).map_err(|source| ConfigError::Read {
        path: path.into(),
        source,
    })?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(ConfigError::NotPrivate {
            what,
            path: path.into(),
            mode,
        });
    }
    Ok(())
}

/// Returns `value` or the error naming the setting.
pub fn require<'a, T: ?Sized>(
    value: Option<&'a T>,
    setting: &'static str,
    flag: &'static str,
    env: &'static str,
    key: &'static str,
) -> Result<&'a T, ConfigError> {
    value.ok_or(ConfigError::Missing {
        setting,
        flag,
        env,
        key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::io::Write;

    fn private_file(text: &str, suffix: &str) -> tempfile::NamedTempFile {
        let mut file = tempfile::Builder::new().suffix(suffix).tempfile().unwrap();
        file.write_all(text.as_bytes()).unwrap();
        file
    }

    #[test]
    fn flags_win_over_the_config_file() {
        let file = private_file(
            "base_url = \"https://file.example\"\narchive = \"/a\"\nconcurrency = 2\n",
            ".toml",
        );
        let path = file.path().to_str().unwrap();
        let cli = Cli::parse_from(["bds-fetch", "--config", path, "--archive", "/b"]);
        let settings = Settings::resolve(&cli).unwrap();
        assert_eq!(settings.archive.as_deref(), Some("/b"));
        assert_eq!(settings.base_url.as_deref(), Some("https://file.example"));
        assert_eq!(settings.concurrency, 2);
        assert_eq!(settings.api_version, DEFAULT_API_VERSION);
    }

    #[test]
    fn unknown_toml_keys_are_refused() {
        let file = private_file("base_ulr = \"x\"\n", ".toml");
        let cli = Cli::parse_from(["bds-fetch", "--config", file.path().to_str().unwrap()]);
        let err = Settings::resolve(&cli).unwrap_err();
        assert!(err.to_string().contains("base_ulr"), "{err}");
    }

    #[test]
    fn sample_json_config_is_accepted() {
        let file = private_file(
            r#"{"bspace_url": "https://s.example", "client_id": "c", "client_secret": "s",
                "refresh_token": "r", "dbhost": "ignored"}"#,
            ".json",
        );
        let cli = Cli::parse_from(["bds-fetch", "--config", file.path().to_str().unwrap()]);
        let settings = Settings::resolve(&cli).unwrap();
        assert_eq!(settings.base_url.as_deref(), Some("https://s.example"));
        assert_eq!(settings.sample_token.unwrap().token.expose(), "r");
    }

    #[test]
    fn a_config_readable_by_others_is_refused() {
        let file = private_file("archive = \"/a\"\n", ".toml");
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let cli = Cli::parse_from(["bds-fetch", "--config", file.path().to_str().unwrap()]);
        let err = Settings::resolve(&cli).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }

    #[test]
    fn since_accepts_dates_and_times() {
        assert_eq!(
            parse_since("2026-01-02").unwrap().to_rfc3339(),
            "2026-01-02T00:00:00+00:00"
        );
        assert!(parse_since("2026-01-02T03:04:05Z").is_ok());
        assert!(parse_since("last week").is_err());
    }
}
