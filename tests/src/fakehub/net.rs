//! Listeners and helpers shared by the three hosts: connections that can end
//! with a TCP reset, request logging, status faults and damaged bodies.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, HttpBody as _};
use axum::extract::connect_info::Connected;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::serve::{IncomingStream, Listener};
use futures::{StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};

use super::faults::{BodyPlan, FaultKind, ResetFlag, shape_body};
use super::state::RequestRecord;

/// A TCP listener whose connections carry a [`ResetFlag`].
#[derive(Debug)]
pub(crate) struct HubListener(pub(crate) TcpListener);

/// Per-connection information handed to handlers.
#[derive(Debug, Clone)]
pub(crate) struct ConnHandle {
    pub(crate) reset: ResetFlag,
}

/// A connection that closes with a reset instead of a FIN once its flag is
/// raised.
#[derive(Debug)]
pub(crate) struct HubStream {
    inner: TcpStream,
    reset: ResetFlag,
}

impl Listener for HubListener {
    type Io = HubStream;
    type Addr = ConnHandle;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((inner, _)) => {
                    let reset = ResetFlag::default();
                    let handle = ConnHandle {
                        reset: reset.clone(),
                    };
                    return (HubStream { inner, reset }, handle);
                }
                // Too many open files and the like: wait instead of spinning.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()?;
        Ok(ConnHandle {
            reset: ResetFlag::default(),
        })
    }
}

impl Connected<IncomingStream<'_, HubListener>> for ConnHandle {
    fn connect_info(stream: IncomingStream<'_, HubListener>) -> Self {
        stream.remote_addr().clone()
    }
}

fn reset_error() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionReset, "fault: connection reset")
}

impl AsyncRead for HubStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for HubStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if self.reset.is_raised() {
            return Poll::Ready(Err(reset_error()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        // A FIN before the reset would let the client see a clean end.
        if self.reset.is_raised() {
            return Poll::Ready(Err(reset_error()));
        }
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl Drop for HubStream {
    fn drop(&mut self) {
        if self.reset.is_raised() {
            // Linger 0 turns the close into a RST.
            let _ = self.inner.set_zero_linger();
        }
    }
}

/// Binds a loopback listener; port 0 picks a free port.
pub(crate) fn bind(address: SocketAddr) -> io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(address)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// The log line of a request, before its status is known.
pub(crate) fn record_of(request: &Parts) -> RequestRecord {
    RequestRecord {
        method: request.method.to_string(),
        path: request
            .uri
            .path_and_query()
            .map(|p| p.as_str().to_string())
            .unwrap_or_default(),
        authorization: request.headers.contains_key(header::AUTHORIZATION),
        status: 0,
    }
}

/// The answer of a status fault.
pub(crate) fn status_fault(kind: FaultKind) -> Response {
    match kind {
        FaultKind::Status429 { retry_after_secs } => (
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, retry_after_secs.to_string())],
            "Too Many Requests",
        )
            .into_response(),
        FaultKind::Status503 => {
            (StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable").into_response()
        }
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error").into_response(),
    }
}

/// The answer with its body damaged by the body faults that fired. The
/// `Content-Length` of the undamaged body is kept.
pub(crate) fn damage(response: Response, kinds: &[FaultKind], reset: &ResetFlag) -> Response {
    let plan = BodyPlan::from_kinds(kinds);
    if plan.is_clean() {
        return response;
    }
    let (mut parts, body) = response.into_parts();
    if !parts.headers.contains_key(header::CONTENT_LENGTH)
        && let Some(length) = body.size_hint().exact()
    {
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    }
    let source = body.into_data_stream().map_err(io::Error::other).boxed();
    let shaped = shape_body(source, plan, Some(reset.clone()));
    Response::from_parts(parts, Body::from_stream(shaped))
}
