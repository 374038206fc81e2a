//! A counting, fault-injecting HTTP/1.1 reverse proxy, to put in front of moto.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::sync::oneshot;

use crate::{parse_body, Moto};

/// A fault the proxy injects instead of (or before) forwarding a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyFault {
    /// Answer HTTP 400 `{"__type":"ThrottlingException","message":"Rate exceeded"}`, as
    /// Secrets Manager does over its rate limits. Not forwarded.
    Throttle,
    /// Answer this HTTP status with the body
    /// `{"__type":"InternalServiceError","message":"testservers: injected HTTP <status>"}`.
    /// Not forwarded.
    Status(u16),
    /// Wait this long, then forward the request as usual. (If the client gives up first, the
    /// request may or may not still reach the upstream.)
    Delay(Duration),
    /// Close the connection without answering. Not forwarded.
    Down,
}

/// One request the proxy received (whether or not it was forwarded).
#[derive(Debug, Clone, PartialEq)]
pub struct ProxiedRequest {
    /// The `X-Amz-Target` header's action without its service prefix (`secretsmanager.`,
    /// `AmazonSQS.`), e.g. `"BatchGetSecretValue"`, `"ReceiveMessage"`; `"<METHOD> <path>"`
    /// (e.g. `"POST /moto-api/reset"`) for a request without that header.
    pub action: String,
    /// The request body as JSON (`Null` when empty, a JSON string when not JSON), e.g.
    /// `{"SecretIdList": [...]}`.
    pub body: Value,
    /// The fault injected into this request, `None` if it was forwarded unchanged.
    pub fault: Option<ProxyFault>,
}

#[derive(Default)]
struct FaultState {
    fault: Option<ProxyFault>,
    /// `Some(n)`: the fault applies to the next `n` requests only.
    remaining: Option<usize>,
}

#[derive(Default)]
struct Shared {
    requests: Mutex<Vec<ProxiedRequest>>,
    fault: Mutex<FaultState>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// The fault for the request that just came in (and uses up one of a limited fault).
    fn take_fault(&self) -> Option<ProxyFault> {
        let mut state = lock(&self.fault);
        let fault = state.fault.clone()?;
        if let Some(n) = state.remaining.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                *state = FaultState::default();
            }
        }
        Some(fault)
    }
}

/// An in-process HTTP/1.1 reverse proxy on `127.0.0.1:<random port>` that forwards every
/// request verbatim (method, path, query, headers including `Host`, body) to an upstream
/// server, returns the upstream's response verbatim (status, headers, body), and records
/// each request's `X-Amz-Target` action and JSON body, so tests can count the Secrets
/// Manager (and SQS) calls a client made, and inject faults ([`CountingProxy::set_fault`]).
///
/// Requests are recorded when they arrive, before they are forwarded: once a client has its
/// response, its request is counted. Hop-by-hop headers (`Connection`, `Transfer-Encoding`,
/// ...) are not forwarded (bodies are passed on whole, with a `Content-Length`); header
/// names reach the upstream in lower case. When the upstream cannot be reached, the proxy
/// closes the client's connection without answering, like the stopped server would.
///
/// The proxy runs on its own thread (with its own tokio runtime), so it does not depend on
/// the test's runtime and may be shared between tests. Dropping it stops it.
pub struct CountingProxy {
    addr: SocketAddr,
    upstream: String,
    shared: Arc<Shared>,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl fmt::Debug for CountingProxy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CountingProxy")
            .field("addr", &self.addr)
            .field("upstream", &self.upstream)
            .finish_non_exhaustive()
    }
}

impl CountingProxy {
    /// Starts a proxy to `upstream` (e.g. [`Moto::endpoint`], `"http://127.0.0.1:PORT"`;
    /// only `http://` is supported). It accepts connections as soon as this returns.
    pub async fn start(upstream: &str) -> CountingProxy {
        let upstream = upstream.trim_end_matches('/').to_string();
        let parsed: Uri = upstream
            .parse()
            .unwrap_or_else(|e| panic!("testservers: bad upstream URL {upstream:?}: {e}"));
        assert_eq!(
            parsed.scheme_str(),
            Some("http"),
            "testservers: CountingProxy supports http:// upstreams only, not {upstream:?}"
        );
        let listener = std::net::TcpListener::bind(("127.0.0.1", 0))
            .expect("testservers: bind the proxy to 127.0.0.1:0");
        listener
            .set_nonblocking(true)
            .expect("testservers: make the proxy listener non-blocking");
        let addr = listener.local_addr().expect("proxy local_addr");
        let shared = Arc::new(Shared::default());
        let (shutdown_tx, shutdown_rx) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(format!("testservers-proxy-{}", addr.port()))
            .spawn({
                let shared = Arc::clone(&shared);
                let upstream = upstream.clone();
                move || serve(listener, upstream, shared, shutdown_rx)
            })
            .expect("testservers: start the proxy thread");
        CountingProxy {
            addr,
            upstream,
            shared,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
        }
    }

    /// `"http://127.0.0.1:PORT"`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// The upstream URL requests are forwarded to.
    pub fn upstream(&self) -> &str {
        &self.upstream
    }

    /// How many requests with action `target` arrived since the start or the last
    /// [`CountingProxy::reset`] (faulted ones included). `target` is e.g. `"ListSecrets"`
    /// or `"ReceiveMessage"`; a service prefix (`"secretsmanager."`, `"AmazonSQS."`) is
    /// ignored.
    pub fn count(&self, target: &str) -> usize {
        let target = strip_service(target);
        lock(&self.shared.requests)
            .iter()
            .filter(|r| r.action == target)
            .count()
    }

    /// Requests per action, e.g. `{"BatchGetSecretValue": 1, "ListSecrets": 2}`.
    pub fn counts(&self) -> BTreeMap<String, usize> {
        let mut counts = BTreeMap::new();
        for r in lock(&self.shared.requests).iter() {
            *counts.entry(r.action.clone()).or_insert(0) += 1;
        }
        counts
    }

    /// All requests since the start or the last reset, oldest first.
    pub fn requests(&self) -> Vec<ProxiedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Forgets the recorded requests (the fault setting is kept).
    pub fn reset(&self) {
        lock(&self.shared.requests).clear();
    }

    /// Injects `fault` into every request from now on (`None`: forward normally again).
    pub fn set_fault(&self, fault: Option<ProxyFault>) {
        *lock(&self.shared.fault) = FaultState {
            fault,
            remaining: None,
        };
    }

    /// Injects `fault` into the next `n` requests only, then forwards normally again (e.g.
    /// to check that a client retries one throttled call).
    pub fn set_fault_for_next(&self, fault: ProxyFault, n: usize) {
        *lock(&self.shared.fault) = if n == 0 {
            FaultState::default()
        } else {
            FaultState {
                fault: Some(fault),
                remaining: Some(n),
            }
        };
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Moto {
    /// Starts moto and a [`CountingProxy`] in front of it. Point clients at
    /// [`CountingProxy::url`] (or use [`Moto::env_via`]); the helper methods of [`Moto`] still
    /// talk to moto directly and are not counted.
    pub async fn start_with_proxy() -> (Moto, CountingProxy) {
        let moto = Moto::start().await;
        let proxy = CountingProxy::start(&moto.endpoint()).await;
        (moto, proxy)
    }

    /// Like [`Moto::env`], but with `AWS_ENDPOINT_URL_SECRETS_MANAGER` and
    /// `AWS_ENDPOINT_URL_SQS` pointing at `proxy`.
    pub fn env_via(&self, proxy: &CountingProxy) -> Vec<(String, String)> {
        let url = proxy.url();
        self.env()
            .into_iter()
            .map(|(k, v)| {
                if k == "AWS_ENDPOINT_URL_SECRETS_MANAGER" || k == "AWS_ENDPOINT_URL_SQS" {
                    (k, url.clone())
                } else {
                    (k, v)
                }
            })
            .collect()
    }
}

/// `"secretsmanager.ListSecrets"` → `"ListSecrets"`, `"AmazonSQS.ReceiveMessage"` →
/// `"ReceiveMessage"`; anything else (`"POST /moto-api/reset"`) unchanged.
fn strip_service(target: &str) -> &str {
    match target.split_once('.') {
        Some((service, action))
            if !service.is_empty()
                && !action.is_empty()
                && !target.contains([' ', '/'])
                && !action.contains('.') =>
        {
            action
        }
        _ => target,
    }
}

type UpstreamClient = Client<HttpConnector, Full<Bytes>>;

/// The proxy thread: accepts connections until `shutdown` fires (or its sender is dropped),
/// then drops the runtime, which ends every open connection.
fn serve(
    listener: std::net::TcpListener,
    upstream: String,
    shared: Arc<Shared>,
    shutdown: oneshot::Receiver<()>,
) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("testservers: build the proxy runtime");
    rt.block_on(async move {
        let listener =
            tokio::net::TcpListener::from_std(listener).expect("testservers: proxy listener");
        let client: UpstreamClient = Client::builder(TokioExecutor::new()).build_http();
        let upstream = Arc::new(upstream);
        let accept = async {
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(conn) => conn,
                    Err(e) => {
                        eprintln!("testservers: proxy accept: {e}");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let (client, upstream, shared) =
                    (client.clone(), Arc::clone(&upstream), Arc::clone(&shared));
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        handle(
                            req,
                            client.clone(),
                            Arc::clone(&upstream),
                            Arc::clone(&shared),
                        )
                    });
                    // An error here is a closed connection (or ProxyFault::Down): nothing to do.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        };
        tokio::select! {
            _ = accept => {}
            _ = shutdown => {}
        }
    });
    drop(rt);
}

/// Why a connection is closed without an answer.
#[derive(Debug)]
struct Hangup(String);

impl fmt::Display for Hangup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Hangup {}

/// Returning `Err` makes hyper close the connection without writing a response.
async fn handle(
    req: Request<Incoming>,
    client: UpstreamClient,
    upstream: Arc<String>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Hangup> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| Hangup(format!("reading the request body: {e}")))?
        .to_bytes();
    let action = match parts
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
    {
        Some(target) => strip_service(target).to_string(),
        None => format!("{} {}", parts.method, parts.uri.path()),
    };
    let fault = shared.take_fault();
    lock(&shared.requests).push(ProxiedRequest {
        action,
        body: parse_body(&String::from_utf8_lossy(&body)),
        fault: fault.clone(),
    });
    match fault {
        Some(ProxyFault::Down) => return Err(Hangup("ProxyFault::Down".into())),
        Some(ProxyFault::Throttle) => {
            return Ok(aws_error(400, "ThrottlingException", "Rate exceeded"));
        }
        Some(ProxyFault::Status(status)) => {
            return Ok(aws_error(
                status,
                "InternalServiceError",
                &format!("testservers: injected HTTP {status}"),
            ));
        }
        Some(ProxyFault::Delay(delay)) => tokio::time::sleep(delay).await,
        None => {}
    }

    let path_and_query = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
    let uri: Uri = format!("{upstream}{path_and_query}")
        .parse()
        .map_err(|e| Hangup(format!("bad upstream URI: {e}")))?;
    let mut forward = Request::builder()
        .method(parts.method)
        .uri(uri)
        .body(Full::new(body))
        .map_err(|e| Hangup(format!("building the upstream request: {e}")))?;
    *forward.headers_mut() = end_to_end(parts.headers);
    let resp = client.request(forward).await.map_err(|e| {
        eprintln!("testservers: proxy to {upstream}: {e}");
        Hangup(format!("upstream: {e}"))
    })?;
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map_err(|e| Hangup(format!("reading the upstream response: {e}")))?
        .to_bytes();
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = parts.status;
    *resp.headers_mut() = end_to_end(parts.headers);
    Ok(resp)
}

/// `headers` without the hop-by-hop ones (RFC 9110 7.6.1) and without `Content-Length`
/// (hyper sets it from the whole body).
fn end_to_end(mut headers: HeaderMap) -> HeaderMap {
    let listed: Vec<HeaderName> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in [
        "connection",
        "keep-alive",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "content-length",
    ] {
        headers.remove(name);
    }
    headers
}

/// An AWS JSON-protocol error response.
fn aws_error(status: u16, error_type: &str, message: &str) -> Response<Full<Bytes>> {
    let body = json!({ "__type": error_type, "message": message }).to_string();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let headers = resp.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    headers.insert(
        "x-amzn-requestid",
        HeaderValue::from_static("00000000-0000-4000-8000-000000000000"),
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxy_is_send_and_sync() {
        fn is<T: Send + Sync>() {}
        is::<CountingProxy>();
    }

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("keep-alive, x-hop"));
        h.insert("x-hop", HeaderValue::from_static("1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        h.insert("content-length", HeaderValue::from_static("3"));
        h.insert(
            "x-amz-target",
            HeaderValue::from_static("secretsmanager.ListSecrets"),
        );
        h.insert("host", HeaderValue::from_static("127.0.0.1:1"));
        let h = end_to_end(h);
        let names: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["x-amz-target", "host"]);
    }

    #[test]
    fn service_prefixes_are_stripped() {
        assert_eq!(strip_service("secretsmanager.ListSecrets"), "ListSecrets");
        assert_eq!(strip_service("AmazonSQS.ReceiveMessage"), "ReceiveMessage");
        assert_eq!(strip_service("ListSecrets"), "ListSecrets");
        assert_eq!(
            strip_service("POST /moto-api/reset"),
            "POST /moto-api/reset"
        );
        assert_eq!(strip_service("GET /a.json"), "GET /a.json");
    }

    #[test]
    fn limited_faults_run_out() {
        let shared = Shared::default();
        *lock(&shared.fault) = FaultState {
            fault: Some(ProxyFault::Throttle),
            remaining: Some(2),
        };
        assert_eq!(shared.take_fault(), Some(ProxyFault::Throttle));
        assert_eq!(shared.take_fault(), Some(ProxyFault::Throttle));
        assert_eq!(shared.take_fault(), None);
    }
}
