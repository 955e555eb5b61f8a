//! Keeping secrets out of logs, errors and `Debug` output.

use std::fmt;

/// A secret string (token, client secret, password). Its `Debug` and
/// `Display` print `[redacted]`; only [`Secret::expose`] gives the value.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The secret value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the value is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A URL safe to log: the query string (which carries signatures of signed
/// download links) and any user info are replaced by `[redacted]`.
pub fn redact_url(url: &str) -> String {
    let Ok(mut parsed) = url::Url::parse(url) else {
        return match url.split_once('?') {
            Some((base, _)) => format!("{base}?[redacted]"),
            None => url.to_string(),
        };
    };
    let had_query = parsed.query().is_some();
    if !parsed.username().is_empty() || parsed.password().is_some() {
        let _ = parsed.set_username("[redacted]");
        let _ = parsed.set_password(None);
    }
    parsed.set_query(None);
    let mut out = parsed.to_string();
    if had_query {
        out.push_str("?[redacted]");
    }
    out
}

/// A connection string safe to log: the value of `password=` in key=value
/// form and the password of a `postgres://user:pass@host` URL are hidden.
pub fn redact_conninfo(conninfo: &str) -> String {
    if conninfo.contains("://") {
        if let Ok(mut url) = url::Url::parse(conninfo) {
            if url.password().is_some() {
                let _ = url.set_password(Some("[redacted]"));
            }
            let pairs: Vec<(String, String)> = url
                .query_pairs()
                .map(|(k, v)| {
                    let v = if k.eq_ignore_ascii_case("password") {
                        "[redacted]".into()
                    } else {
                        v.into_owned()
                    };
                    (k.into_owned(), v)
                })
                .collect();
            if !pairs.is_empty() {
                url.query_pairs_mut().clear().extend_pairs(pairs);
            }
            return url.to_string();
        }
        return "[unparseable connection URL]".to_string();
    }
    conninfo
        .split_whitespace()
        .map(|part| match part.split_once('=') {
            Some((k, _)) if k.trim().eq_ignore_ascii_case("password") => format!("{k}=[redacted]"),
            _ => part.to_string(),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "[redacted] [redacted]");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn signed_urls_lose_their_query() {
        let r = redact_url("https://store.example/a/b.zip?X-Sig=abc&exp=1");
        assert_eq!(r, "https://store.example/a/b.zip?[redacted]");
        assert!(!redact_url("https://u:p@h/x").contains(":p@"));
    }

    #[test]
    fn conninfo_passwords_are_hidden() {
        assert!(!redact_conninfo("host=x password=sekrit user=y").contains("sekrit"));
        assert!(!redact_conninfo("postgres://u:sekrit@h/db?sslmode=require").contains("sekrit"));
        assert!(!redact_conninfo("postgres://u@h/db?password=sekrit").contains("sekrit"));
    }
}
