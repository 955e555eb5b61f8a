//! The storage host: serves extract zips at short-lived signed URLs, the way
//! S3 pre-signed links behave (reference §3). It answers 400 to a request
//! that also carries `Authorization`, 403 to a bad or expired signature.

use std::io;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

use super::faults::{FaultKind, FaultTarget, RouteClass};
use super::net::{ConnHandle, damage, record_of};
use super::state::Shared;
use crate::ExtractFile;

/// The signed storage URL of an extract, valid for the configured lifetime.
pub(crate) fn signed_url(shared: &Shared, file: &ExtractFile) -> String {
    let path = blob_path(file);
    let expires = chrono::Utc::now().timestamp() + shared.config.link_lifetime.as_secs() as i64;
    let signature = signature(shared, &path, expires);
    format!(
        "{}{path}?Expires={expires}&Signature={signature}",
        shared.storage_url
    )
}

fn blob_path(file: &ExtractFile) -> String {
    format!(
        "/blob/{}-{}.zip",
        file.plugin_id.to_ascii_lowercase(),
        file.queued.timestamp()
    )
}

fn signature(shared: &Shared, path: &str, expires: i64) -> String {
    let mut hasher = Sha256::new();
    hasher.update(shared.signing_key.as_bytes());
    hasher.update(format!("\nGET\n{path}\n{expires}").as_bytes());
    hex::encode(hasher.finalize())
}

/// Every request to the storage host goes through here and is logged.
pub(crate) async fn handle(
    State(shared): State<Arc<Shared>>,
    ConnectInfo(conn): ConnectInfo<ConnHandle>,
    request: Request,
) -> Response {
    let (request, _) = request.into_parts();
    let mut record = record_of(&request);
    let response = answer(&shared, &conn, &request).await;
    record.status = response.status().as_u16();
    shared.lock().storage_log.push(record);
    response
}

async fn answer(shared: &Shared, conn: &ConnHandle, request: &Parts) -> Response {
    if request.method != Method::GET && request.method != Method::HEAD {
        return s3_error(StatusCode::METHOD_NOT_ALLOWED, "MethodNotAllowed", "");
    }
    if request.headers.contains_key(header::AUTHORIZATION) {
        return s3_error(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Only one auth mechanism allowed; only the Signature query parameter or the \
             Authorization header should be specified",
        );
    }
    if let Err(refusal) = check_signature(shared, request) {
        return refusal.into_response();
    }
    let route = FaultTarget::Route(RouteClass::Storage);
    if let Some(kind) = fire_status(shared, |target| *target == route) {
        return storage_status_fault(kind);
    }

    let path = request.uri.path();
    let found = shared
        .lock()
        .extracts
        .iter()
        .find(|f| blob_path(f) == path)
        .cloned();
    let Some(file) = found else {
        return s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        );
    };
    if let Some(kind) = fire_status(shared, |target| target.matches_extract(&file)) {
        return storage_status_fault(kind);
    }

    let response = serve_file(&file, &request.headers).await;
    let kinds = shared
        .lock()
        .faults
        .fire_all(|f| f.kind.is_body() && (f.target == route || f.target.matches_extract(&file)));
    damage(response, &kinds, &conn.reset)
}

fn fire_status(shared: &Shared, target: impl Fn(&FaultTarget) -> bool) -> Option<FaultKind> {
    shared
        .lock()
        .faults
        .fire_first(|f| f.kind.is_status() && target(&f.target))
}

/// Why a signed URL is refused: 403 in every case.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BadSignature {
    Missing,
    Mismatch,
    Expired,
}

impl IntoResponse for BadSignature {
    fn into_response(self) -> Response {
        let (code, message) = match self {
            BadSignature::Missing => (
                "AccessDenied",
                "Query-string authentication requires the Signature and Expires parameters",
            ),
            BadSignature::Mismatch => (
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            ),
            BadSignature::Expired => ("AccessDenied", "Request has expired"),
        };
        s3_error(StatusCode::FORBIDDEN, code, message)
    }
}

fn check_signature(shared: &Shared, request: &Parts) -> Result<(), BadSignature> {
    let query = request.uri.query().unwrap_or_default();
    let mut expires = None;
    let mut given = None;
    for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "Expires" => expires = value.parse::<i64>().ok(),
            "Signature" => given = Some(value.into_owned()),
            _ => {}
        }
    }
    let (Some(expires), Some(given)) = (expires, given) else {
        return Err(BadSignature::Missing);
    };
    if given != signature(shared, request.uri.path(), expires) {
        return Err(BadSignature::Mismatch);
    }
    if chrono::Utc::now().timestamp() > expires {
        return Err(BadSignature::Expired);
    }
    Ok(())
}

/// The zip, whole or the one byte range asked for, streamed from disk.
async fn serve_file(file: &ExtractFile, headers: &HeaderMap) -> Response {
    let mut disk = match tokio::fs::File::open(&file.path).await {
        Ok(disk) => disk,
        Err(_) => return s3_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", ""),
    };
    let size = match disk.metadata().await {
        Ok(metadata) => metadata.len(),
        Err(_) => return s3_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", ""),
    };
    let range = headers
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .map(|v| parse_range(v, size));
    let (status, start, end) = match range {
        None => (StatusCode::OK, 0, size),
        Some(Some((start, end))) => (StatusCode::PARTIAL_CONTENT, start, end),
        Some(None) => {
            let content_range = format!("bytes */{size}");
            let mut refusal = s3_error(
                StatusCode::RANGE_NOT_SATISFIABLE,
                "InvalidRange",
                "The requested range is not satisfiable",
            );
            if let Ok(value) = content_range.parse() {
                refusal.headers_mut().insert(header::CONTENT_RANGE, value);
            }
            return refusal;
        }
    };
    if disk.seek(io::SeekFrom::Start(start)).await.is_err() {
        return s3_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "");
    }

    let mut response = Response::new(Body::from_stream(read_chunks(disk, end - start)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        "application/zip".parse().expect("valid"),
    );
    headers.insert(header::CONTENT_LENGTH, (end - start).into());
    headers.insert(header::ACCEPT_RANGES, "bytes".parse().expect("valid"));
    if status == StatusCode::PARTIAL_CONTENT {
        let value = format!("bytes {start}-{}/{size}", end - 1);
        headers.insert(header::CONTENT_RANGE, value.parse().expect("valid"));
    }
    response
}

/// `bytes=a-b`, `bytes=a-` or `bytes=-n` as a half-open range; `None` when
/// it cannot be satisfied.
fn parse_range(value: &str, size: u64) -> Option<(u64, u64)> {
    let spec = value.trim().strip_prefix("bytes=")?;
    let (first, last) = spec.split_once('-')?;
    let (start, end) = match (first.trim(), last.trim()) {
        ("", suffix) => {
            let suffix: u64 = suffix.parse().ok()?;
            (size.saturating_sub(suffix), size)
        }
        (first, "") => (first.parse().ok()?, size),
        (first, last) => (
            first.parse().ok()?,
            last.parse::<u64>().ok()?.saturating_add(1),
        ),
    };
    let end = end.min(size);
    (start < end).then_some((start, end))
}

fn read_chunks(
    disk: tokio::fs::File,
    length: u64,
) -> impl futures::Stream<Item = io::Result<Bytes>> + Send + 'static {
    futures::stream::unfold((disk, length), |(mut disk, left)| async move {
        if left == 0 {
            return None;
        }
        let mut buffer = vec![0; left.min(64 * 1024) as usize];
        match disk.read(&mut buffer).await {
            Ok(0) => Some((
                Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                (disk, 0),
            )),
            Ok(read) => {
                buffer.truncate(read);
                Some((Ok(Bytes::from(buffer)), (disk, left - read as u64)))
            }
            Err(error) => Some((Err(error), (disk, 0))),
        }
    })
}

fn storage_status_fault(kind: FaultKind) -> Response {
    match kind {
        FaultKind::Status503 => s3_error(
            StatusCode::SERVICE_UNAVAILABLE,
            "SlowDown",
            "Please reduce your request rate.",
        ),
        FaultKind::Status429 { .. } => super::net::status_fault(kind),
        _ => s3_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "We encountered an internal error. Please try again.",
        ),
    }
}

/// An S3-style XML error document.
fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code>\
         <Message>{message}</Message></Error>"
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_half_open_and_clamped() {
        assert_eq!(parse_range("bytes=0-9", 100), Some((0, 10)));
        assert_eq!(parse_range("bytes=90-", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=-10", 100), Some((90, 100)));
        assert_eq!(parse_range("bytes=95-200", 100), Some((95, 100)));
        assert_eq!(parse_range("bytes=100-", 100), None);
    }
}
