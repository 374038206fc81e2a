//! HTTP endpoints of `authsync run`: `/metrics`, `/healthz`, `/readyz` and `POST /trigger`
//! (see "HTTP endpoints" in the product contract).
//!
//! The server only observes and nudges the daemon: it reads flags the daemon sets
//! ([`ServerState::ready`], [`ServerState::alive`]) and drops [`TriggerRequest`]s into
//! the daemon's bounded trigger channel. It never runs a sync itself, so a flood of
//! requests cannot multiply the load on portals or secret stores.
//!
//! Hardening, because the listener may be reachable from a whole cluster network:
//! - the trigger token is compared in constant time, as SHA-256 digests so its length
//!   does not leak either, and it is never logged;
//! - the authorization check runs *before* the request body is read, so unauthenticated
//!   clients cannot make the daemon buffer anything;
//! - the body is capped at [`MAX_TRIGGER_BODY`] bytes and must arrive within
//!   [`BODY_TIMEOUT`];
//! - [`serve`] bounds concurrent connections ([`MAX_CONNECTIONS`]) and closes
//!   connections without traffic for [`IDLE_TIMEOUT`], so idle or stalled clients
//!   cannot hold the slots forever (axum sets no timer on hyper, hence no header-read
//!   timeout of its own). A client trickling a byte per timeout can still hold a slot;
//!   the cap keeps that bounded.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::serve::{IncomingStream, Listener};
use axum::{Json, Router};
use futures::StreamExt;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};

use crate::metrics::{metrics, CONTENT_TYPE};
use crate::secret::{ExposeSecret, SecretString};

/// Largest accepted `POST /trigger` body. A scope of a few hundred names fits easily;
/// anything bigger is a mistake or an attack and gets 413.
pub const MAX_TRIGGER_BODY: usize = 16 * 1024;

/// How long a `POST /trigger` client may take to send its body before getting 408.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections served at once; further clients wait in the kernel's accept backlog.
/// Prometheus, a probe or two and the odd `curl` need a handful.
pub const MAX_CONNECTIONS: usize = 64;

/// A connection that neither sends nor receives a byte for this long is closed, which
/// frees its slot (idle keep-alive, stalled or malicious clients). Prometheus and
/// probes simply reconnect.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// What `POST /trigger` asked for (empty vectors = everything).
///
/// Unknown fields are rejected: a typo such as `{"portal": ["prod"]}` must not silently
/// widen into a cycle over every portal.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    /// Portal names to sync; empty = all.
    #[serde(default)]
    pub portals: Vec<String>,
    /// Service names to sync; empty = all.
    #[serde(default)]
    pub services: Vec<String>,
}

/// Shared with the daemon.
#[derive(Clone)]
pub struct ServerState {
    /// Set by the daemon after the first cycle; `/readyz` answers 503 until then.
    pub ready: Arc<AtomicBool>,
    /// Cleared if the scheduler died; `/healthz` then answers 503 so the supervisor
    /// restarts the process.
    pub alive: Arc<AtomicBool>,
    /// Swapped on config reload; `None` → `/trigger` answers 404.
    pub trigger_token: Arc<RwLock<Option<SecretString>>>,
    /// The daemon's (bounded) trigger channel. When it is full a cycle is already
    /// queued, and the trigger coalesces into it (still 202).
    pub triggers: mpsc::Sender<TriggerRequest>,
    /// Set when a trigger did not fit in the channel: its portal/service lists are lost,
    /// so the daemon widens the next triggered cycle to everything rather than miss them.
    pub trigger_overflow: Arc<AtomicBool>,
}

impl ServerState {
    /// A state for a daemon that has not finished its first cycle: not ready, alive.
    pub fn new(
        triggers: mpsc::Sender<TriggerRequest>,
        trigger_token: Option<SecretString>,
    ) -> Self {
        ServerState {
            ready: Arc::new(AtomicBool::new(false)),
            alive: Arc::new(AtomicBool::new(true)),
            trigger_token: Arc::new(RwLock::new(trigger_token)),
            triggers,
            trigger_overflow: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Replaces the trigger token (config reload). `None` disables `/trigger`.
    ///
    /// A poisoned lock is taken over: it only guards an `Option`, which a panicking
    /// writer cannot leave half-written.
    pub fn set_trigger_token(&self, token: Option<SecretString>) {
        *self
            .trigger_token
            .write()
            .unwrap_or_else(PoisonError::into_inner) = token;
    }

    /// SHA-256 of the configured token, or `None` when `/trigger` is disabled. Only the
    /// digest leaves the lock, so the guard is never held across an `.await`.
    fn token_digest(&self) -> Option<[u8; 32]> {
        let guard = self
            .trigger_token
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        guard
            .as_ref()
            .map(|token| Sha256::digest(token.expose_secret().as_bytes()).into())
    }
}

/// The routes, for [`serve`] or for embedding. Unknown paths answer 404, known paths
/// with another method 405 (with `Allow`).
pub fn router(state: ServerState) -> Router {
    Router::new()
        .route("/metrics", get(get_metrics))
        .route("/healthz", get(get_healthz))
        .route("/readyz", get(get_readyz))
        .route("/trigger", post(post_trigger))
        .with_state(state)
}

/// Serves [`router`] on `listener` until `shutdown` completes, then stops accepting,
/// lets in-flight requests finish and closes idle connections. Bounded by
/// [`MAX_CONNECTIONS`] and [`IDLE_TIMEOUT`]; wrap the call in a timeout if shutdown
/// must not wait for a slow client.
pub async fn serve(
    listener: TcpListener,
    state: ServerState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with_limits(listener, state, shutdown, MAX_CONNECTIONS, IDLE_TIMEOUT).await
}

async fn serve_with_limits(
    listener: TcpListener,
    state: ServerState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    max_connections: usize,
    idle_timeout: Duration,
) -> io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving HTTP (/metrics, /healthz, /readyz, /trigger)");
    }
    let listener = LimitedListener {
        inner: listener,
        slots: Arc::new(Semaphore::new(max_connections)),
        idle_timeout,
    };
    let app = router(state).into_make_service_with_connect_info::<PeerAddr>();
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn get_metrics() -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
        metrics().render(),
    )
        .into_response()
}

async fn get_healthz(State(state): State<ServerState>) -> (StatusCode, &'static str) {
    if state.alive.load(Ordering::Acquire) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "scheduler stopped")
    }
}

async fn get_readyz(State(state): State<ServerState>) -> (StatusCode, &'static str) {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

/// `POST /trigger`. The checks run in this order on purpose: disabled (404) before
/// anything, the token (401) before the body is read, then size/time limits and JSON.
async fn post_trigger(
    State(state): State<ServerState>,
    request: Request,
) -> Result<(StatusCode, Json<serde_json::Value>), Rejection> {
    let peer = request
        .extensions()
        .get::<ConnectInfo<PeerAddr>>()
        .map(|info| info.0 .0);
    let Some(expected) = state.token_digest() else {
        return Err(Rejection::new(
            StatusCode::NOT_FOUND,
            "trigger is disabled (no trigger_token)",
        ));
    };
    if !bearer_matches(request.headers(), &expected) {
        tracing::warn!(?peer, "trigger rejected: missing or wrong bearer token");
        return Err(Rejection::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        ));
    }
    if declared_length(request.headers()).is_some_and(|len| len > MAX_TRIGGER_BODY as u64) {
        return Err(Rejection::too_large());
    }
    let body = read_body(request.into_body()).await?;
    let scope = parse_trigger(&body)?;
    tracing::info!(
        ?peer,
        portals = ?scope.portals,
        services = ?scope.services,
        "sync triggered over HTTP"
    );
    match state.triggers.try_send(scope) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            state.trigger_overflow.store(true, Ordering::Release);
            tracing::debug!("a triggered cycle is already queued; this trigger coalesces into it (the next triggered cycle covers every portal)");
        }
        Err(TrySendError::Closed(_)) => {
            tracing::warn!("trigger dropped: the scheduler is not running");
            return Err(Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the scheduler is not running",
            ));
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "accepted": true })),
    ))
}

/// A refused `/trigger`. Its answer is JSON like the success answer, so scripts parse
/// one shape; the message never contains the token.
#[derive(Debug)]
struct Rejection {
    status: StatusCode,
    message: String,
}

impl Rejection {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Rejection {
            status,
            message: message.into(),
        }
    }

    fn too_large() -> Self {
        Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body larger than 16 KiB",
        )
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = Json(serde_json::json!({ "accepted": false, "error": self.message }));
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 9110: a 401 must say which scheme would work.
            let challenge = [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"))];
            (self.status, challenge, body).into_response()
        } else {
            (self.status, body).into_response()
        }
    }
}

/// Whether `Authorization` carries `Bearer <token>` matching `expected` (a SHA-256).
///
/// Digests are compared with [`ConstantTimeEq`]: comparing fixed-size digests leaks
/// neither where the first wrong byte is nor the token's length. The scheme is
/// case-insensitive (RFC 9110); an empty token never matches.
fn bearer_matches(headers: &HeaderMap, expected: &[u8; 32]) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes().trim_ascii();
    let Some(space) = value.iter().position(|b| *b == b' ') else {
        return false;
    };
    let (scheme, token) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return false;
    }
    let token = token.trim_ascii();
    if token.is_empty() {
        return false;
    }
    let got: [u8; 32] = Sha256::digest(token).into();
    bool::from(got.ct_eq(expected))
}

/// `Content-Length`, when present and numeric; lets an oversized body be refused
/// without reading it.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads the body, at most [`MAX_TRIGGER_BODY`] bytes (413 beyond, also for chunked
/// bodies without a length) within [`BODY_TIMEOUT`] (408 after).
async fn read_body(body: Body) -> Result<Vec<u8>, Rejection> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let read = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| {
                Rejection::new(StatusCode::BAD_REQUEST, "cannot read the request body")
            })?;
            if buf.len() + chunk.len() > MAX_TRIGGER_BODY {
                return Err(Rejection::too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(())) => Ok(buf),
        Ok(Err(rejection)) => Err(rejection),
        Err(_) => Err(Rejection::new(
            StatusCode::REQUEST_TIMEOUT,
            "the request body took too long",
        )),
    }
}

/// An empty (or blank) body means "everything"; otherwise it must be the JSON object.
fn parse_trigger(body: &[u8]) -> Result<TriggerRequest, Rejection> {
    if body.trim_ascii().is_empty() {
        return Ok(TriggerRequest::default());
    }
    let invalid = |err: &dyn std::fmt::Display| {
        // serde's message can quote the client's input; keep the answer short.
        let mut message = format!(
            "invalid JSON body (expected {{\"portals\": [...], \"services\": [...]}}): {err}"
        );
        truncate(&mut message, 300);
        Rejection::new(StatusCode::BAD_REQUEST, message)
    };
    // Through a `Value` first: serde would otherwise also accept a struct written as a
    // JSON array (`[]`, `[["prod"]]`), which nobody means.
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|err| invalid(&err))?;
    if !value.is_object() {
        return Err(invalid(&"not an object"));
    }
    serde_json::from_value(value).map_err(|err| invalid(&err))
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

/// The client's address, for the trigger log lines (available when served by [`serve`]).
#[derive(Clone, Copy, Debug)]
struct PeerAddr(SocketAddr);

impl Connected<IncomingStream<'_, LimitedListener>> for PeerAddr {
    fn connect_info(stream: IncomingStream<'_, LimitedListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// A TCP listener that holds at most `slots` connections open and gives each an idle
/// timeout. Accepting waits for a free slot; the slot is freed when hyper drops the
/// connection.
struct LimitedListener {
    inner: TcpListener,
    slots: Arc<Semaphore>,
    idle_timeout: Duration,
}

impl Listener for LimitedListener {
    type Io = LimitedIo;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // The semaphore is never closed, so this only fails in theory; then the
        // connection simply goes unbounded rather than the server stopping.
        let permit = Arc::clone(&self.slots).acquire_owned().await.ok();
        // axum's TcpListener impl retries accept errors (e.g. EMFILE) with a backoff.
        let (io, addr) = Listener::accept(&mut self.inner).await;
        let io = LimitedIo {
            io,
            idle: Box::pin(tokio::time::sleep(self.idle_timeout)),
            idle_timeout: self.idle_timeout,
            _permit: permit,
        };
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}

/// A connection holding its slot, closed with `TimedOut` once no byte moved either way
/// for `idle_timeout`.
struct LimitedIo {
    io: TcpStream,
    idle: Pin<Box<Sleep>>,
    idle_timeout: Duration,
    _permit: Option<OwnedSemaphorePermit>,
}

impl LimitedIo {
    fn activity(&mut self) {
        let deadline = Instant::now() + self.idle_timeout;
        self.idle.as_mut().reset(deadline);
    }

    /// Turns a `Pending` from the socket into a timeout error once the deadline passed;
    /// polling the timer also registers the waker, so an idle connection is woken up.
    fn pending<T>(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<T>> {
        match self.idle.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "HTTP connection idle for too long",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for LimitedIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if result.is_ok() && buf.filled().len() > before {
                    this.activity();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.pending(cx),
        }
    }
}

impl AsyncWrite for LimitedIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write(cx, buf) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.activity();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.pending(cx),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        match Pin::new(&mut this.io).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                if matches!(result, Ok(n) if n > 0) {
                    this.activity();
                }
                Poll::Ready(result)
            }
            Poll::Pending => this.pending(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::sync::oneshot;
    use tokio::task::JoinHandle;

    const TOKEN: &str = "s3cr3t-trigger-token";

    struct Harness {
        base: String,
        state: ServerState,
        rx: mpsc::Receiver<TriggerRequest>,
        client: reqwest::Client,
        stop: Option<oneshot::Sender<()>>,
        task: JoinHandle<io::Result<()>>,
    }

    impl Harness {
        async fn start(token: Option<&str>) -> Self {
            Self::start_with(token, 4, MAX_CONNECTIONS, IDLE_TIMEOUT).await
        }

        async fn start_with(
            token: Option<&str>,
            capacity: usize,
            max_connections: usize,
            idle: Duration,
        ) -> Self {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let addr = listener.local_addr().unwrap();
            let (tx, rx) = mpsc::channel(capacity);
            let state = ServerState::new(tx, token.map(|t| SecretString::from(t.to_owned())));
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let task = tokio::spawn(serve_with_limits(
                listener,
                state.clone(),
                async {
                    let _ = stop_rx.await;
                },
                max_connections,
                idle,
            ));
            Harness {
                base: format!("http://{addr}"),
                state,
                rx,
                client: reqwest::Client::builder().no_proxy().build().unwrap(),
                stop: Some(stop_tx),
                task,
            }
        }

        fn url(&self, path: &str) -> String {
            format!("{}{path}", self.base)
        }

        async fn trigger(&self, auth: Option<&str>, body: Option<&str>) -> reqwest::Response {
            let mut req = self.client.post(self.url("/trigger"));
            if let Some(auth) = auth {
                req = req.header("authorization", auth);
            }
            if let Some(body) = body {
                req = req
                    .header("content-type", "application/json")
                    .body(body.to_owned());
            }
            req.send().await.unwrap()
        }

        async fn stop(mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            let done = tokio::time::timeout(Duration::from_secs(5), self.task)
                .await
                .unwrap();
            done.unwrap().unwrap();
        }
    }

    fn bearer(token: &str) -> String {
        format!("Bearer {token}")
    }

    #[tokio::test]
    async fn readyz_flips_to_200() {
        let h = Harness::start(None).await;
        let r = h.client.get(h.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        h.state.ready.store(true, Ordering::Release);
        let r = h.client.get(h.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.text().await.unwrap(), "ok");
        h.stop().await;
    }

    #[tokio::test]
    async fn healthz_follows_alive() {
        let h = Harness::start(None).await;
        let r = h.client.get(h.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.text().await.unwrap(), "ok");
        h.state.alive.store(false, Ordering::Release);
        let r = h.client.get(h.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        h.stop().await;
    }

    #[tokio::test]
    async fn metrics_are_served_as_openmetrics() {
        let m = metrics();
        m.sync_run("ok", Duration::from_millis(40));
        m.push("srv-test", "google", "ok");
        m.drift_correction("srv-test", "google");
        m.source_request("srv-test-vault", "read", "ok");
        m.portal_request("srv-test", "GET", "200");
        m.out_of_sync("srv-test", "google", false);
        m.last_success("srv-test", 1_700_000_000.0);
        m.config_reload("ok");
        let h = Harness::start(None).await;
        let r = h.client.get(h.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some(CONTENT_TYPE)
        );
        let text = r.text().await.unwrap();
        for name in [
            "authsync_sync_runs_total{",
            "authsync_sync_duration_seconds_bucket{",
            "authsync_sync_duration_seconds_sum ",
            "authsync_sync_duration_seconds_count ",
            "authsync_pushes_total{",
            "authsync_drift_corrections_total{",
            "authsync_source_requests_total{",
            "authsync_portal_requests_total{",
            "authsync_out_of_sync{",
            "authsync_last_success_timestamp_seconds{",
            "authsync_config_reloads_total{",
            "authsync_build_info{",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "{name} missing in:\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
        h.stop().await;
    }

    #[tokio::test]
    async fn unknown_paths_and_wrong_methods() {
        let h = Harness::start(Some(TOKEN)).await;
        let r = h.client.get(h.url("/nope")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = h.client.get(h.url("/trigger")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        let r = h.client.post(h.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        h.stop().await;
    }

    #[tokio::test]
    async fn trigger_without_token_configured_is_404() {
        let mut h = Harness::start(None).await;
        let r = h.trigger(Some(&bearer(TOKEN)), None).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = h.trigger(None, None).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(h.rx.try_recv().is_err());
        h.stop().await;
    }

    #[tokio::test]
    async fn trigger_rejects_wrong_or_missing_token() {
        let mut h = Harness::start(Some(TOKEN)).await;
        for auth in [
            None,
            Some(bearer("wrong")),
            Some(bearer(&format!("{TOKEN}x"))),
            Some(bearer(&TOKEN[..TOKEN.len() - 1])),
            Some(format!("Basic {TOKEN}")),
            Some(TOKEN.to_owned()),
            Some("Bearer ".to_owned()),
        ] {
            let r = h
                .trigger(auth.as_deref(), Some(r#"{"portals":["prod"]}"#))
                .await;
            assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
            assert_eq!(
                r.headers()
                    .get(header::WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok()),
                Some("Bearer")
            );
            let body = r.text().await.unwrap();
            assert!(!body.contains(TOKEN), "token echoed: {body}");
        }
        assert!(h.rx.try_recv().is_err());
        h.stop().await;
    }

    #[tokio::test]
    async fn trigger_with_right_token_queues_the_scope() {
        let mut h = Harness::start(Some(TOKEN)).await;
        let r = h
            .trigger(
                Some(&bearer(TOKEN)),
                Some(r#"{"portals":["prod","staging"],"services":["google"]}"#),
            )
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        let body: serde_json::Value = r.json().await.unwrap();
        assert_eq!(body, serde_json::json!({ "accepted": true }));
        assert_eq!(
            h.rx.try_recv().unwrap(),
            TriggerRequest {
                portals: vec!["prod".into(), "staging".into()],
                services: vec!["google".into()],
            }
        );

        // No body, and a case-insensitive scheme: everything.
        let r = h.trigger(Some(&format!("bearer  {TOKEN}")), None).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(h.rx.try_recv().unwrap(), TriggerRequest::default());

        // Only one of the two lists.
        let r = h
            .trigger(Some(&bearer(TOKEN)), Some(r#"{"services":["s3"]}"#))
            .await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert_eq!(
            h.rx.try_recv().unwrap(),
            TriggerRequest {
                portals: vec![],
                services: vec!["s3".into()],
            }
        );
        h.stop().await;
    }

    #[tokio::test]
    async fn trigger_rejects_bad_json() {
        let mut h = Harness::start(Some(TOKEN)).await;
        for body in [
            "{not json",
            r#"{"portals":"prod"}"#,
            r#"{"portal":["prod"]}"#,
            "[]",
            r#"[["prod"]]"#,
            "null",
        ] {
            let r = h.trigger(Some(&bearer(TOKEN)), Some(body)).await;
            assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
            let answer: serde_json::Value = r.json().await.unwrap();
            assert_eq!(answer["accepted"], false);
            assert!(answer["error"].as_str().is_some_and(|e| e.len() < 400));
        }
        assert!(h.rx.try_recv().is_err());
        h.stop().await;
    }

    #[tokio::test]
    async fn trigger_rejects_oversized_body() {
        let mut h = Harness::start(Some(TOKEN)).await;
        let names: Vec<String> = (0..2000).map(|i| format!("portal-{i}")).collect();
        let body = serde_json::json!({ "portals": names }).to_string();
        assert!(body.len() > MAX_TRIGGER_BODY);
        let r = h.trigger(Some(&bearer(TOKEN)), Some(&body)).await;
        assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert!(h.rx.try_recv().is_err());

        // Just under the limit is fine.
        let mut body = String::from(r#"{"portals":["p"],"services":[""#);
        body.push_str(&"s".repeat(MAX_TRIGGER_BODY - body.len() - 3));
        body.push_str(r#""]}"#);
        assert_eq!(body.len(), MAX_TRIGGER_BODY);
        let r = h.trigger(Some(&bearer(TOKEN)), Some(&body)).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        h.stop().await;
    }

    #[tokio::test]
    async fn oversized_body_without_length_is_refused() {
        let chunks = (0..20).map(|_| Ok::<_, io::Error>(vec![b' '; 1024]));
        let body = Body::from_stream(futures::stream::iter(chunks));
        let rejection = read_body(body).await.err().unwrap();
        assert_eq!(rejection.status, StatusCode::PAYLOAD_TOO_LARGE);

        let chunks = (0..4).map(|_| Ok::<_, io::Error>(vec![b' '; 1024]));
        let body = Body::from_stream(futures::stream::iter(chunks));
        assert_eq!(read_body(body).await.ok().map(|b| b.len()), Some(4096));
    }

    #[tokio::test]
    async fn token_swap_takes_effect() {
        let mut h = Harness::start(Some(TOKEN)).await;
        let r = h.trigger(Some(&bearer(TOKEN)), None).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert!(h.rx.try_recv().is_ok());

        h.state
            .set_trigger_token(Some(SecretString::from("rotated".to_owned())));
        let r = h.trigger(Some(&bearer(TOKEN)), None).await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        let r = h.trigger(Some(&bearer("rotated")), None).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
        assert!(h.rx.try_recv().is_ok());

        // Direct writes through the shared lock work the same.
        *h.state.trigger_token.write().unwrap() = None;
        let r = h.trigger(Some(&bearer("rotated")), None).await;
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        h.stop().await;
    }

    #[tokio::test]
    async fn full_queue_coalesces_and_closed_queue_is_503() {
        let mut h = Harness::start_with(Some(TOKEN), 1, MAX_CONNECTIONS, IDLE_TIMEOUT).await;
        for _ in 0..3 {
            let r = h.trigger(Some(&bearer(TOKEN)), None).await;
            assert_eq!(r.status(), StatusCode::ACCEPTED);
        }
        assert!(h.rx.try_recv().is_ok());
        assert!(h.rx.try_recv().is_err(), "triggers coalesce into one");
        assert!(
            h.state.trigger_overflow.load(Ordering::Acquire),
            "the lost scopes are flagged, so the daemon widens the next cycle"
        );

        h.rx.close();
        let r = h.trigger(Some(&bearer(TOKEN)), None).await;
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        h.stop().await;
    }

    #[tokio::test]
    async fn connections_are_bounded_and_idle_ones_closed() {
        let idle = Duration::from_millis(300);
        let h = Harness::start_with(None, 1, 1, idle).await;
        let addr = h.base.trim_start_matches("http://").to_owned();
        // An idle client takes the only slot...
        let mut hog = TcpStream::connect(&addr).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        // ...so a real request waits until the idle one is cut.
        let started = std::time::Instant::now();
        let r = h.client.get(h.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(started.elapsed() >= Duration::from_millis(150));
        // The hog got closed.
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(2), hog.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0);
        let _ = hog.write_all(b"GET /healthz HTTP/1.1\r\n\r\n").await;
        h.stop().await;
    }

    #[tokio::test]
    async fn graceful_shutdown_stops_serving() {
        let h = Harness::start(None).await;
        let url = h.url("/healthz");
        let client = h.client.clone();
        h.stop().await;
        assert!(client.get(url).send().await.is_err());
    }
}
