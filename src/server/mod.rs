//! HTTP endpoints of `authsync run`: `/metrics`, `/healthz`, `/readyz`, `POST /trigger`,
//! `/status` and `/status.json` (see "HTTP endpoints" and "Status" in the product
//! contract).
//!
//! The server only observes and nudges the daemon: it reads flags the daemon sets
//! ([`ServerState::ready`], [`ServerState::liveness`]) and drops [`TriggerRequest`]s into
//! the daemon's bounded trigger channel. It never runs a sync itself, so a flood of
//! requests cannot multiply the load on portals or secret stores.
//!
//! Layout: this file holds the shared state and the routes; `serve` the listener and
//! connection handling; `trigger` the `/trigger` endpoint (auth, body, parsing,
//! validation); `probes` `/healthz`, `/readyz` and `/metrics`; `status` the status
//! page and its JSON, rendered from the snapshot the daemon publishes after each cycle
//! ([`ServerState::set_status`]).
//!
//! Hardening, because the listener may be reachable from a whole cluster network:
//! - the trigger token is compared in constant time, as SHA-256 digests so its length
//!   does not leak either, and it is never logged;
//! - the authorization check runs *before* the request body is read, so unauthenticated
//!   clients cannot make the daemon buffer anything;
//! - the body is capped at [`MAX_TRIGGER_BODY`] bytes and must arrive within
//!   [`BODY_TIMEOUT`]; each trigger is validated against the running config before it
//!   is queued ([`ServerState::set_validator`]), so one bad trigger cannot fail the
//!   merged cycle of every other caller;
//! - a connection must deliver each request's headers within [`HEADER_READ_TIMEOUT`]
//!   (hyper's timer, which bytes trickled in do not extend; it also closes idle
//!   keep-alive connections), each request is answered within [`REQUEST_TIMEOUT`], and
//!   a connection lives at most [`MAX_CONNECTION_AGE`] (a client that stops reading its
//!   answer). So a slow client holds one of the [`MAX_CONNECTIONS`] slots for seconds,
//!   and probes stay answerable while dozens of them trickle;
//! - `/metrics` renders run at most [`MAX_METRICS_RENDERS`] at a time, off the async
//!   threads; further scrapes wait up to [`METRICS_WAIT`], then get 503. Status
//!   renders are bounded the same way, with their own slots.

mod probes;
mod serve;
mod status;
mod trigger;

use std::net::SocketAddr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, Semaphore};
use tower_http::timeout::TimeoutLayer;

use crate::secret::{ExposeSecret, SecretString};

pub use serve::serve;
pub use trigger::{validate_trigger, TriggerRequest, TriggerValidator};

/// Largest accepted `POST /trigger` body. A scope of a few hundred names fits easily;
/// anything bigger is a mistake or an attack and gets 413.
pub const MAX_TRIGGER_BODY: usize = 16 * 1024;

/// How long a `POST /trigger` client may take to send its body before getting 408.
pub const BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a client may take to send a request's headers — from connecting, or from
/// the end of its previous answer on a keep-alive connection — before it is closed.
/// Probes and Prometheus send theirs at once; a client that trickles bytes is cut here
/// however often it sends one.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a request may take from its headers to its answer; 503 after. Longer than
/// [`BODY_TIMEOUT`], so a slow trigger body gets its own 408 first.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Connections served at once; further clients wait in the kernel's accept backlog.
/// Far more than Prometheus, probes and the odd `curl` need, and since a slow client is
/// cut after [`HEADER_READ_TIMEOUT`], holding them all takes a flood of fresh
/// connections, not a handful of slow ones.
pub const MAX_CONNECTIONS: usize = 512;

/// A connection older than this finishes its request in flight and is closed (hard
/// after [`CLOSE_GRACE`] more): the backstop for a client that sends a request and never
/// reads the answer. Clients simply reconnect.
pub const MAX_CONNECTION_AGE: Duration = Duration::from_secs(60);

/// How long a connection being closed (age, shutdown) may take to finish its request.
pub const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// `/metrics` renders at once. Rendering is CPU work on a blocking thread; the bound
/// keeps a burst of scrapes from taking the machine's cores.
pub const MAX_METRICS_RENDERS: usize = 2;

/// How long a scrape waits for a render slot before it gets 503.
pub const METRICS_WAIT: Duration = Duration::from_secs(2);

/// Why a bounded render gave no body.
pub(crate) enum RenderError {
    /// No slot freed up within [`METRICS_WAIT`]: answer 503 with `Retry-After`.
    Busy,
    /// The render failed or panicked.
    Failed(String),
}

/// Runs `render` on a blocking thread holding one of `slots`, waiting at most
/// [`METRICS_WAIT`] for one. The slot moves into the render: a request whose client went
/// away (or timed out) still counts until its render is done.
pub(crate) async fn render_bounded<T, E>(
    slots: &Arc<Semaphore>,
    render: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, RenderError>
where
    T: Send + 'static,
    E: std::fmt::Display + Send + 'static,
{
    let slot = tokio::time::timeout(METRICS_WAIT, Arc::clone(slots).acquire_owned()).await;
    let Ok(Ok(slot)) = slot else {
        return Err(RenderError::Busy);
    };
    let rendered = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        render()
    })
    .await;
    match rendered {
        Ok(Ok(body)) => Ok(body),
        Ok(Err(e)) => Err(RenderError::Failed(e.to_string())),
        Err(e) => Err(RenderError::Failed(e.to_string())),
    }
}

/// Shared with the daemon.
#[derive(Clone)]
pub struct ServerState {
    /// Set by the daemon after the first cycle; `/readyz` answers 503 until then.
    pub ready: Arc<AtomicBool>,
    /// The main loop's heartbeat: when it stops (a wedged loop), `/healthz` answers 503
    /// so the supervisor restarts the process.
    pub liveness: Arc<crate::liveness::Liveness>,
    /// Swapped on config reload; `None` → `/trigger` answers 404.
    pub trigger_token: Arc<RwLock<Option<SecretString>>>,
    /// The daemon's (bounded) trigger channel. When it is full a cycle is already
    /// queued, and the trigger coalesces into it (still 202).
    pub triggers: mpsc::Sender<TriggerRequest>,
    /// Set when a trigger did not fit in the channel: its portal/service lists are lost,
    /// so the daemon widens the next triggered cycle to everything rather than miss them.
    pub trigger_overflow: Arc<AtomicBool>,
    /// Checks each trigger against the running config before it is queued (400 when it
    /// fails); swapped on config reload. `None` → only the JSON shape is checked.
    pub validator: Arc<RwLock<Option<TriggerValidator>>>,
    /// Free `/metrics` render slots ([`MAX_METRICS_RENDERS`]).
    pub(crate) metrics_renders: Arc<Semaphore>,
    /// What `/status` and `/status.json` show; published by the daemon at start and
    /// after each cycle and reload. `None` → they answer 503.
    pub status: Arc<RwLock<Option<Arc<crate::status::Snapshot>>>>,
    /// Free status render slots ([`MAX_METRICS_RENDERS`], separate from the metrics
    /// ones so a burst of page loads cannot starve Prometheus).
    pub(crate) status_renders: Arc<Semaphore>,
}

impl ServerState {
    /// A state for a daemon that has not finished its first cycle: not ready, alive, no
    /// validator.
    pub fn new(
        triggers: mpsc::Sender<TriggerRequest>,
        trigger_token: Option<SecretString>,
    ) -> Self {
        ServerState {
            ready: Arc::new(AtomicBool::new(false)),
            // Replaced by the daemon with one sized from the schedule.
            liveness: Arc::new(crate::liveness::Liveness::new(Duration::from_secs(3600))),
            trigger_token: Arc::new(RwLock::new(trigger_token)),
            triggers,
            trigger_overflow: Arc::new(AtomicBool::new(false)),
            validator: Arc::new(RwLock::new(None)),
            metrics_renders: Arc::new(Semaphore::new(MAX_METRICS_RENDERS)),
            status: Arc::new(RwLock::new(None)),
            status_renders: Arc::new(Semaphore::new(MAX_METRICS_RENDERS)),
        }
    }

    /// Publishes a new status snapshot (the daemon, after each cycle and reload).
    pub fn set_status(&self, snapshot: crate::status::Snapshot) {
        *self.status.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(snapshot));
    }

    /// The snapshot last published; the `Arc` is cloned so no lock is held while
    /// rendering.
    fn status(&self) -> Option<Arc<crate::status::Snapshot>> {
        self.status
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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

    /// Replaces the trigger validator (start, config reload), typically a closure over
    /// the new config calling [`validate_trigger`].
    pub fn set_validator(&self, validator: TriggerValidator) {
        *self
            .validator
            .write()
            .unwrap_or_else(PoisonError::into_inner) = Some(validator);
    }

    /// The current validator; the `Arc` is cloned so the lock is not held while it runs.
    fn validator(&self) -> Option<TriggerValidator> {
        self.validator
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
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
/// with another method 405 (with `Allow`); a request not answered within
/// [`REQUEST_TIMEOUT`] gets 503.
pub fn router(state: ServerState) -> Router {
    app(state, REQUEST_TIMEOUT)
}

fn app(state: ServerState, request_timeout: Duration) -> Router {
    Router::new()
        .route("/metrics", get(probes::get_metrics))
        .route("/healthz", get(probes::get_healthz))
        .route("/readyz", get(probes::get_readyz))
        .route("/trigger", post(trigger::post_trigger))
        .route("/status", get(status::get_status_page))
        .route("/status.json", get(status::get_status_json))
        // 503, not tower-http's default 408: by the time this fires the client has sent
        // its request (a slow trigger body gets its own 408 earlier); the server is slow.
        .layer(TimeoutLayer::with_status_code(
            StatusCode::SERVICE_UNAVAILABLE,
            request_timeout,
        ))
        .with_state(state)
}

/// The client's address, put on each request by [`serve`] for the trigger log lines.
#[derive(Clone, Copy, Debug)]
struct PeerAddr(SocketAddr);

#[cfg(test)]
mod harness;
