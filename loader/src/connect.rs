//! Connecting to PostgreSQL: connection strings, TLS, the session time zone
//! and the advisory lock that keeps two runs from interleaving.
//!
//! Connection strings are libpq URLs (`postgres://user@host/db?sslmode=...`)
//! or `key=value` strings, as `postgres::Config` parses them. TLS:
//!
//! - `sslmode=disable`: no TLS.
//! - `sslmode=prefer` (the default) without a CA: TLS when the server offers
//!   it, certificate not verified (as libpq does): protects against passive
//!   eavesdropping only.
//! - `sslmode=require` without a CA: TLS, certificate verified against the
//!   Mozilla root store (webpki-roots), host name checked. Stricter than
//!   libpq's `require`: services whose certificates come from a private CA
//!   (Amazon RDS, for one) need `--ca-file`.
//! - A CA file (`--ca-file`, `BDS_CA_FILE`, or `sslrootcert=FILE` in the
//!   connection string): the certificate must chain to it and match the
//!   host name. `sslmode=verify-ca` and `verify-full` are accepted and mean
//!   this (or the Mozilla roots without a CA file); `sslrootcert=system`
//!   means the Mozilla roots.
//!
//! A connection string without a password takes it as libpq would:
//! from `PGPASSWORD`, else from the password file (`PGPASSFILE`, else
//! `~/.pgpass`; ignored, with a warning, when group or others can read it).
//!
//! The password never appears in logs or errors: see
//! [`bds_common::redact::redact_conninfo`].

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use bds_common::redact::redact_conninfo;
use postgres::config::SslMode;
use postgres::{Client, Config};
use rustls::ClientConfig;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::error::LoadError;

/// How to reach the database.
#[derive(Clone)]
pub struct Database {
    config: Config,
    tls: Option<MakeRustlsConnect>,
    display: String,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database")
            .field("conninfo", &self.display)
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// Certificate verification wanted, from the connection string and options.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verify {
    /// libpq's prefer/require without a CA: no verification for `prefer`,
    /// Mozilla roots for `require`.
    Default,
    /// Verify against the Mozilla roots.
    System,
    /// Verify against this CA file.
    CaFile(PathBuf),
}

impl Database {
    /// Parses `conninfo` and prepares TLS; `ca_file` overrides any
    /// `sslrootcert` in the string.
    pub fn new(conninfo: &str, ca_file: Option<&Path>) -> Result<Database, LoadError> {
        let display = redact_conninfo(conninfo);
        let (cleaned, mut verify) = take_tls_options(conninfo);
        if let Some(path) = ca_file {
            verify = Verify::CaFile(path.to_path_buf());
        }
        let mut config = Config::from_str(&cleaned).map_err(|e| LoadError::Config {
            problem: format!("invalid database connection string {display}: {e}"),
        })?;
        if config.get_application_name().is_none() {
            config.application_name("bds-load");
        }
        if config.get_password().is_none()
            && let Some(password) = password_from_environment(&config)
        {
            config.password(password);
        }
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => None,
            mode => Some(MakeRustlsConnect::new(tls_config(mode, &verify)?)),
        };
        Ok(Database {
            config,
            tls,
            display,
        })
    }

    /// The connection string with the password hidden.
    pub fn display(&self) -> &str {
        &self.display
    }

    /// A new session with the time zone set to UTC.
    pub fn connect(&self) -> Result<Client, LoadError> {
        let context = || format!("connect to {}", self.display);
        let mut client = match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(postgres::NoTls),
        }
        .map_err(|e| match asks_for_password(&e) {
            true => LoadError::Config {
                problem: format!(
                    "{} asks for a password and none was given: put it in the connection \
                     string, in PGPASSWORD or in a private password file (~/.pgpass, or \
                     PGPASSFILE)",
                    self.display
                ),
            },
            false => LoadError::db(context(), e),
        })?;
        client
            .batch_execute("SET TIME ZONE 'UTC'")
            .map_err(|e| LoadError::db(context(), e))?;
        let version: String = client
            .query_one("SHOW server_version_num", &[])
            .map_err(|e| LoadError::db(context(), e))?
            .get(0);
        check_server_version(&version, &self.display)?;
        Ok(client)
    }
}

/// Whether connecting failed because the server wants a password and none
/// was given (the cause sits under a generic configuration error).
fn asks_for_password(error: &postgres::Error) -> bool {
    let mut cause: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = cause {
        if e.to_string().contains("password missing") {
            return true;
        }
        cause = e.source();
    }
    false
}

/// The oldest server bds-load works with: keys with nullable columns need
/// `NULLS NOT DISTINCT`, new in PostgreSQL 15.
const OLDEST_SERVER: u32 = 150000;

fn check_server_version(version_num: &str, database: &str) -> Result<(), LoadError> {
    match version_num.trim().parse::<u32>() {
        Ok(n) if n < OLDEST_SERVER => Err(LoadError::Config {
            problem: format!(
                "{database} runs PostgreSQL {}.{}: bds-load needs PostgreSQL 15 or newer",
                n / 10000,
                n % 10000
            ),
        }),
        _ => Ok(()),
    }
}

/// The password libpq would use for `config`: `PGPASSWORD`, else the first
/// matching line of the password file.
fn password_from_environment(config: &Config) -> Option<Vec<u8>> {
    if let Some(password) = std::env::var_os("PGPASSWORD").filter(|p| !p.is_empty()) {
        return Some(password.into_encoded_bytes());
    }
    let path = match std::env::var_os("PGPASSFILE") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(std::env::var_os("HOME")?).join(".pgpass"),
    };
    let text = read_password_file(&path)?;
    let host = match config.get_hosts().first() {
        Some(postgres::config::Host::Tcp(host)) => host.clone(),
        // libpq matches a socket connection against `localhost`.
        _ => "localhost".to_string(),
    };
    let port = config
        .get_ports()
        .first()
        .copied()
        .unwrap_or(5432)
        .to_string();
    let user = match config.get_user() {
        Some(user) => user.to_string(),
        None => std::env::var("USER").unwrap_or_default(),
    };
    let database = config.get_dbname().unwrap_or(&user).to_string();
    find_password(&text, [&host, &port, &database, &user]).map(String::into_bytes)
}

/// The password file's text, unless it is missing or others can read it.
fn read_password_file(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;

    let metadata = std::fs::metadata(path).ok()?;
    if !metadata.is_file() {
        return None;
    }
    if metadata.permissions().mode() & 0o077 != 0 {
        tracing::warn!(
            file = %path.display(),
            "password file ignored: group or others can read it (chmod 600 {})",
            path.display()
        );
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// The password of the first line of a password file whose host, port,
/// database and user match `wanted` (`*` matches anything; `\:` and `\\`
/// are a literal colon and backslash).
fn find_password(text: &str, wanted: [&str; 4]) -> Option<String> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .find_map(|line| {
            let fields = split_password_line(line);
            let [host, port, database, user, password] = fields.as_slice() else {
                return None;
            };
            let matches = [host, port, database, user]
                .iter()
                .zip(wanted)
                .all(|(field, wanted)| field.as_str() == "*" || field.as_str() == wanted);
            matches.then(|| password.clone())
        })
}

/// Splits a password file line at its unescaped colons, into at most five
/// fields (the password may hold colons of its own).
fn split_password_line(line: &str) -> Vec<String> {
    let mut fields = vec![String::new()];
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        let count = fields.len();
        let field = fields.last_mut().expect("never empty");
        match c {
            '\\' => field.extend(chars.next()),
            ':' if count < 5 => fields.push(String::new()),
            c => field.push(c),
        }
    }
    fields
}

/// Removes `sslrootcert` (which `postgres::Config` rejects) and turns
/// `sslmode=verify-ca|verify-full` into `require` plus verification.
fn take_tls_options(conninfo: &str) -> (String, Verify) {
    let mut verify = Verify::Default;
    let mut note = |key: &str, value: &str| -> Option<String> {
        match (key.to_ascii_lowercase().as_str(), value) {
            ("sslrootcert", "system") => {
                verify = Verify::System;
                None
            }
            ("sslrootcert", path) => {
                verify = Verify::CaFile(PathBuf::from(path));
                None
            }
            ("sslmode", "verify-ca" | "verify-full") => {
                if verify == Verify::Default {
                    verify = Verify::System;
                }
                Some("require".into())
            }
            _ => Some(value.to_string()),
        }
    };
    if conninfo.contains("://") {
        let Some((base, query)) = conninfo.split_once('?') else {
            return (conninfo.to_string(), verify);
        };
        let kept: Vec<String> = query
            .split('&')
            .filter_map(|pair| {
                let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
                let decoded = percent_decode(value);
                let kept = note(key, &decoded)?;
                Some(if kept == decoded {
                    pair.to_string()
                } else {
                    format!("{key}={kept}")
                })
            })
            .collect();
        let query = kept.join("&");
        let joined = if query.is_empty() {
            base.to_string()
        } else {
            format!("{base}?{query}")
        };
        return (joined, verify);
    }
    let kept: Vec<String> = conninfo
        .split_whitespace()
        .filter_map(|part| match part.split_once('=') {
            Some((key, value)) => {
                let value = value.trim_matches('\'');
                note(key, value).map(|v| {
                    if v == value {
                        part.to_string()
                    } else {
                        format!("{key}={v}")
                    }
                })
            }
            None => Some(part.to_string()),
        })
        .collect();
    (kept.join(" "), verify)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

fn tls_config(mode: SslMode, verify: &Verify) -> Result<ClientConfig, LoadError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| LoadError::Config {
            problem: format!("TLS setup: {e}"),
        })?;
    let roots = match (verify, mode) {
        (Verify::Default, SslMode::Prefer) => {
            let config = builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(NoVerification(provider())))
                .with_no_client_auth();
            return Ok(config);
        }
        (Verify::CaFile(path), _) => ca_roots(path)?,
        _ => rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
    };
    Ok(builder.with_root_certificates(roots).with_no_client_auth())
}

fn ca_roots(path: &Path) -> Result<rustls::RootCertStore, LoadError> {
    let bad = |problem: String| LoadError::Config {
        problem: format!("CA file {}: {problem}", path.display()),
    };
    let mut roots = rustls::RootCertStore::empty();
    let certificates = CertificateDer::pem_file_iter(path).map_err(|e| bad(e.to_string()))?;
    for certificate in certificates {
        let certificate = certificate.map_err(|e| bad(e.to_string()))?;
        roots
            .add(certificate)
            .map_err(|e| bad(format!("unusable certificate: {e}")))?;
    }
    if roots.is_empty() {
        return Err(bad("no PEM certificates found".into()));
    }
    Ok(roots)
}

/// `sslmode=prefer` without a CA: encrypt, but accept any certificate (the
/// handshake signatures are still checked), as libpq does.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Advisory lock key: one bds-load run per database at a time.
const LOCK_KEY: i64 = i64::from_be_bytes(*b"bds-load");

/// Takes the run lock on `client`'s session, waiting for another run to end
/// unless `wait` is false. Returns whether the lock is held. The lock goes
/// with the session, so a killed run releases it.
pub fn lock(client: &mut Client, wait: bool, database: &str) -> Result<bool, LoadError> {
    let context = || "take the bds-load advisory lock".to_string();
    let got: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&LOCK_KEY])
        .map_err(|e| LoadError::db(context(), e))?
        .get(0);
    if got || !wait {
        return Ok(got);
    }
    tracing::info!("another bds-load run is working on {database}: waiting for it to finish");
    client
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .map_err(|e| LoadError::db(context(), e))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslrootcert_is_taken_out_of_urls_and_conninfo() {
        let (url, verify) =
            take_tls_options("postgres://u:p@h/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fca.pem");
        assert_eq!(url, "postgres://u:p@h/db?sslmode=require");
        assert_eq!(verify, Verify::CaFile("/tmp/ca.pem".into()));

        let (kv, verify) = take_tls_options("host=h sslrootcert=system dbname=x sslmode=verify-ca");
        assert_eq!(kv, "host=h dbname=x sslmode=require");
        assert_eq!(verify, Verify::System);

        let (plain, verify) = take_tls_options("postgres://h/db");
        assert_eq!(
            (plain.as_str(), verify),
            ("postgres://h/db", Verify::Default)
        );
    }

    #[test]
    fn passwords_stay_out_of_errors() {
        let err = Database::new("postgres://u:sekrit@h/db?sslmode=bogus", None).unwrap_err();
        assert!(!err.to_string().contains("sekrit"), "{err}");
        let db = Database::new("host=h password=sekrit", None).unwrap();
        assert!(!format!("{db:?}").contains("sekrit"));
    }

    #[test]
    fn password_file_lines_match_with_wildcards_and_escapes() {
        let text = "# comment\n\
                    db.example:5432:other:bds:wrong\n\
                    db.example:*:warehouse:bds:pa\\:ss:word\n\
                    *:*:*:*:fallback\n";
        let wanted = ["db.example", "5432", "warehouse", "bds"];
        assert_eq!(find_password(text, wanted).as_deref(), Some("pa:ss:word"));
        let elsewhere = ["other.example", "5432", "warehouse", "bds"];
        assert_eq!(find_password(text, elsewhere).as_deref(), Some("fallback"));
        assert_eq!(find_password("h:1:d:u\n", wanted), None);
    }

    #[test]
    fn servers_older_than_15_are_refused_with_their_version() {
        let err = check_server_version("140011", "postgres://h/db").unwrap_err();
        assert!(err.to_string().contains("PostgreSQL 14.11"), "{err}");
        assert!(err.to_string().contains("15 or newer"), "{err}");
        check_server_version("150018", "postgres://h/db").unwrap();
        check_server_version("170002", "postgres://h/db").unwrap();
    }

    #[test]
    fn a_missing_ca_file_is_a_config_error() {
        let err = Database::new(
            "host=h sslmode=require",
            Some(Path::new("/nonexistent.pem")),
        )
        .unwrap_err();
        assert!(matches!(err, LoadError::Config { .. }), "{err}");
    }
}
