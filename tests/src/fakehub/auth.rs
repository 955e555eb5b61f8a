//! The auth host: `POST /core/connect/token` with the refresh-token grant,
//! one-time refresh tokens and JWT-looking access tokens (reference §4).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};

use super::faults::{FaultTarget, RouteClass};
use super::net::{ConnHandle, damage, record_of, status_fault};
use super::shapes::{TokenAnswer, TokenError};
use super::state::{AccessGrant, Shared, random_hex};

/// Issues a refresh token with these scopes, valid until it is used once.
pub(crate) fn issue_refresh_token(shared: &Shared, scopes: Vec<String>) -> String {
    let token = format!("rt.{}", random_hex(24));
    shared.lock().refresh_tokens.insert(token.clone(), scopes);
    token
}

/// The auth host: every request goes through here, is logged and may meet
/// a [`RouteClass::Token`] fault.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    request: Request,
) -> Response {
    let (parts, body) = request.into_parts();
    let mut record = record_of(&parts);
    let response = answer(&shared, &conn, parts, body).await;
    record.status = response.status().as_u16();
    shared.lock().auth_log.push(record);
    response
}

async fn answer(shared: &Shared, conn: &ConnHandle, parts: Parts, body: Body) -> Response {
    if !parts.uri.path().eq_ignore_ascii_case("/core/connect/token") {
        return StatusCode::NOT_FOUND.into_response();
    }
    if parts.method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let route = FaultTarget::Route(RouteClass::Token);
    let fired = shared
        .lock()
        .faults
        .fire_first(|f| f.target == route && f.kind.is_status());
    if let Some(kind) = fired {
        return status_fault(kind);
    }

    let Ok(body) = axum::body::to_bytes(body, 64 * 1024).await else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "unreadable body",
        );
    };
    let response = token(shared, &parts.headers, &body);

    let kinds = shared
        .lock()
        .faults
        .fire_all(|f| f.target == route && f.kind.is_body());
    damage(response, &kinds, &conn.reset)
}

/// `POST /core/connect/token`: the refresh-token grant.
fn token(shared: &Shared, headers: &HeaderMap, body: &[u8]) -> Response {
    let form_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if !form_type {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "form body expected",
        );
    }
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();

    if !client_is_known(shared, headers, &form) {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "");
    }
    match form.get("grant_type").map(String::as_str) {
        Some("refresh_token") => {}
        Some(_) => {
            return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "");
        }
        None => return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "no grant_type"),
    }
    let Some(refresh_token) = form.get("refresh_token") else {
        return oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "no refresh_token",
        );
    };
    let requested = form.get("scope").map(|s| split_scopes(s));
    match exchange(shared, refresh_token, requested) {
        Some(answer) => {
            let headers = [
                (header::CACHE_CONTROL, "no-store"),
                (header::PRAGMA, "no-cache"),
            ];
            (headers, axum::Json(answer)).into_response()
        }
        None => oauth_error(
            StatusCode::BAD_REQUEST,
            "invalid_grant",
            "the refresh token is unknown, expired or was already used",
        ),
    }
}

/// Spends the refresh token and issues an access token and the next refresh
/// token; `None` when the refresh token is not (or no longer) valid.
fn exchange(
    shared: &Shared,
    refresh_token: &str,
    requested: Option<Vec<String>>,
) -> Option<TokenAnswer> {
    let lifetime = shared.config.access_token_lifetime;
    let mut state = shared.lock();
    let granted = state.refresh_tokens.remove(refresh_token)?;
    state.spent_refresh_tokens.insert(refresh_token.to_string());

    let scopes = requested.unwrap_or_else(|| granted.clone());
    let access_token = access_token(&shared.config.client_id, &scopes, lifetime.as_secs());
    state.access_tokens.insert(
        access_token.clone(),
        AccessGrant {
            expires: Instant::now() + lifetime,
            scopes: scopes.clone(),
        },
    );
    let next = format!("rt.{}", random_hex(24));
    state.refresh_tokens.insert(next.clone(), granted);

    Some(TokenAnswer {
        access_token,
        token_type: "Bearer".into(),
        expires_in: lifetime.as_secs(),
        refresh_token: next,
        scope: scopes.join(" "),
    })
}

/// Client authentication by HTTP Basic or by form fields (reference §4).
fn client_is_known(shared: &Shared, headers: &HeaderMap, form: &HashMap<String, String>) -> bool {
    let config = &shared.config;
    let from_basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(basic_credentials);
    let (id, secret) = match from_basic {
        Some(pair) => pair,
        None => match (form.get("client_id"), form.get("client_secret")) {
            (Some(id), Some(secret)) => (id.clone(), secret.clone()),
            _ => return false,
        },
    };
    id == config.client_id && secret == config.client_secret
}

/// `Basic base64(id:secret)`; both parts may be form-encoded (RFC 6749
/// §2.3.1).
fn basic_credentials(value: &str) -> Option<(String, String)> {
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = String::from_utf8(STANDARD.decode(encoded.trim()).ok()?).ok()?;
    let (id, secret) = decoded.split_once(':')?;
    let unescape = |s: &str| {
        url::form_urlencoded::parse(format!("x={s}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
    };
    Some((unescape(id)?, unescape(secret)?))
}

/// A token shaped like a signed JWT: header, claims and a random
/// "signature", each base64url-encoded. Nothing checks the signature.
fn access_token(client_id: &str, scopes: &[String], lifetime_secs: u64) -> String {
    let issued = chrono::Utc::now().timestamp();
    let header = serde_json::json!({"alg": "RS256", "typ": "JWT", "kid": "fakehub"});
    let claims = serde_json::json!({
        "iss": "https://auth.brightspace.com/core",
        "aud": "https://api.brightspace.com/auth/token",
        "client_id": client_id,
        "scope": scopes.join(" "),
        "iat": issued,
        "nbf": issued,
        "exp": issued + lifetime_secs as i64,
        "jti": random_hex(16),
    });
    format!(
        "{}.{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string()),
        URL_SAFE_NO_PAD.encode(random_hex(32)),
    )
}

pub(crate) fn split_scopes(text: &str) -> Vec<String> {
    text.split_whitespace().map(str::to_string).collect()
}

/// Whether one of the granted scope patterns (`datahub:dataexports:*`)
/// covers the scope a route needs (`datahub:dataexports:read`).
pub(crate) fn scope_covers(granted: &[String], needed: &str) -> bool {
    granted.iter().any(|pattern| {
        let mut pattern_parts = pattern.split(':');
        let mut needed_parts = needed.split(':');
        loop {
            match (pattern_parts.next(), needed_parts.next()) {
                (None, None) => return true,
                (Some(p), Some(n)) if p == "*" || p.eq_ignore_ascii_case(n) => {}
                _ => return false,
            }
        }
    })
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let body = TokenError {
        error: error.into(),
        error_description: (!description.is_empty()).then(|| description.into()),
    };
    (status, axum::Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_scopes_cover_granular_ones() {
        let granted = split_scopes("datahub:dataexports:* core:*:*");
        assert!(scope_covers(&granted, "datahub:dataexports:download"));
        assert!(!scope_covers(&granted, "datasets:bds:read"));
    }

    #[test]
    fn access_tokens_look_like_jwts() {
        assert!(access_token("c", &[], 60).starts_with("eyJ"));
    }

    #[test]
    fn basic_credentials_are_decoded() {
        let value = format!("Basic {}", STANDARD.encode("my%20id:s%3Acret"));
        let expected = ("my id".to_string(), "s:cret".to_string());
        assert_eq!(basic_credentials(&value), Some(expected));
    }
}
