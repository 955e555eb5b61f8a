//! A scriptable HTTP proxy on loopback, put between a tool and a real
//! service (the S3 server, the fake hub's auth host) to fail, delay or hold
//! chosen requests and to see the answers, e.g. the tokens the auth host
//! issued.
//!
//! ```no_run
//! use bds_tests::reliability::proxy::{Action, Proxy};
//!
//! let proxy = Proxy::start(bds_tests::harness::s3::server());
//! // Every manifest write waits until the test releases it.
//! proxy.set_rule(|r| match r.method == "PUT" && r.path.contains("/manifest/") {
//!     true => Action::Hold,
//!     false => Action::Forward,
//! });
//! ```
//!
//! Bodies are buffered whole: meant for test-sized requests.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::response::Response;
use tokio::sync::watch;

/// What the proxy does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Pass it on and return the answer.
    Forward,
    /// Wait, then pass it on.
    Delay(Duration),
    /// Answer with this status (and an S3-style error body) without passing
    /// it on.
    Status(u16),
    /// Never answer (until the proxy is released or dropped): the client
    /// hangs in this request, a window for killing it.
    Hold,
}

/// A request as the rule sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// Whether `Authorization` came with it.
    pub authorization: bool,
}

/// A request that went through, with its answer.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The request.
    pub request: Seen,
    /// What the proxy did.
    pub action: Action,
    /// Status of the answer (0 when held and never answered).
    pub status: u16,
    /// The answer's body as text (lossy, at most 64 KiB).
    pub body: String,
}

type Rule = dyn Fn(&Seen) -> Action + Send + Sync;

struct Shared {
    upstream: String,
    client: reqwest::Client,
    rule: Mutex<Arc<Rule>>,
    log: Mutex<Vec<Exchange>>,
    held: Mutex<usize>,
    release: watch::Sender<bool>,
}

/// A running proxy; dropping it stops it (and releases held requests).
pub struct Proxy {
    shared: Arc<Shared>,
    url: String,
    runtime: Option<tokio::runtime::Runtime>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("url", &self.url)
            .field("upstream", &self.shared.upstream)
            .finish()
    }
}

impl Proxy {
    /// Starts a proxy forwarding everything to `upstream` (`http://host:port`).
    pub fn start(upstream: &str) -> Proxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        listener.set_nonblocking(true).expect("non-blocking proxy");
        let url = format!("http://{}", listener.local_addr().expect("proxy address"));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("test-proxy")
            .enable_all()
            .build()
            .expect("the proxy's runtime");
        let client = reqwest::Client::builder()
            .no_proxy()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("the proxy's HTTP client");
        let forward_all: Arc<Rule> = Arc::new(|_: &Seen| Action::Forward);
        let shared = Arc::new(Shared {
            upstream: upstream.trim_end_matches('/').to_string(),
            client,
            rule: Mutex::new(forward_all),
            log: Mutex::new(Vec::new()),
            held: Mutex::new(0),
            release: watch::channel(false).0,
        });
        let router = Router::new().fallback(handle).with_state(shared.clone());
        runtime.spawn(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("proxy listener");
            let _ = axum::serve(listener, router).await;
        });
        Proxy {
            shared,
            url,
            runtime: Some(runtime),
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Decides from now on what happens to each request.
    pub fn set_rule(&self, rule: impl Fn(&Seen) -> Action + Send + Sync + 'static) {
        *self.shared.rule.lock().unwrap() = Arc::new(rule);
    }

    /// Forwards everything again and lets held requests go on.
    pub fn release(&self) {
        self.set_rule(|_| Action::Forward);
        self.shared.release.send_replace(true);
        self.shared.release.send_replace(false);
    }

    /// How many requests are being held right now.
    pub fn held(&self) -> usize {
        *self.shared.held.lock().unwrap()
    }

    /// Every request so far, in the order they were answered.
    pub fn log(&self) -> Vec<Exchange> {
        self.shared.log.lock().unwrap().clone()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shared.release.send_replace(true);
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

async fn handle(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let seen = Seen {
        method: request.method().to_string(),
        path: request
            .uri()
            .path_and_query()
            .map_or("/".into(), |p| p.to_string()),
        authorization: request.headers().contains_key("authorization"),
    };
    let rule = shared.rule.lock().unwrap().clone();
    let action = rule(&seen);
    let (status, body, response) = match action {
        Action::Forward => forward(&shared, request).await,
        Action::Delay(delay) => {
            tokio::time::sleep(delay).await;
            forward(&shared, request).await
        }
        Action::Status(code) => refuse(code),
        Action::Hold => {
            *shared.held.lock().unwrap() += 1;
            let mut released = shared.release.subscribe();
            let _ = released.wait_for(|r| *r).await;
            *shared.held.lock().unwrap() -= 1;
            forward(&shared, request).await
        }
    };
    shared.log.lock().unwrap().push(Exchange {
        request: seen,
        action,
        status,
        body,
    });
    response
}

fn refuse(code: u16) -> (u16, String, Response) {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>InjectedFault</Code>\
         <Message>test proxy answered {code}</Message></Error>"
    );
    let response = Response::builder()
        .status(StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/xml")
        .body(Body::from(body.clone()))
        .expect("an error answer");
    (code, body, response)
}

/// Headers that describe one connection, not the message.
fn hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection" | "keep-alive" | "transfer-encoding" | "content-length" | "upgrade"
    )
}

async fn forward(shared: &Shared, request: Request) -> (u16, String, Response) {
    let (parts, body) = request.into_parts();
    let Ok(body) = axum::body::to_bytes(body, usize::MAX).await else {
        return refuse(400);
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut outgoing = shared
        .client
        .request(parts.method.clone(), format!("{}{path}", shared.upstream))
        .body(body);
    for (name, value) in &parts.headers {
        if !hop_by_hop(name) {
            outgoing = outgoing.header(name, value);
        }
    }
    let answer = match outgoing.send().await {
        Ok(answer) => answer,
        Err(_) => return refuse(502),
    };
    let status = answer.status();
    let mut response = Response::builder().status(status);
    for (name, value) in answer.headers() {
        if !hop_by_hop(name) {
            response = response.header(name, value);
        }
    }
    let bytes = answer.bytes().await.unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes[..bytes.len().min(64 << 10)]).into_owned();
    let response = response
        .body(Body::from(bytes))
        .expect("a forwarded answer");
    (status.as_u16(), text, response)
}
