//! The log of every request the double received.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use serde_json::Value;

/// The last sequence number handed out, shared by every double of the process.
static LAST_SEQ: AtomicU64 = AtomicU64::new(0);

/// The sequence number of the last request any double of this process recorded (0 before the
/// first). Every later request, to any double, gets a greater
/// [`RecordedRequest::seq`]: take it as a mark between two phases of a test.
pub fn last_seq() -> u64 {
    LAST_SEQ.load(Ordering::SeqCst)
}

/// One request as the double saw it. Header values (credentials) are never recorded, only
/// which kind of credential was presented.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// The path without the query string, as sent.
    pub path: String,
    /// The HTTP status answered; 0 while the request is still being answered (a `Delay`
    /// fault) or will never be (a `Hang` fault).
    pub status: u16,
    /// The request body if it parsed as JSON.
    pub body: Option<Value>,
    pub auth: AuthKind,
    /// The `X-AjaxPro-Method` header (Workspace's AjaxPro calls, e.g. `SaveAuthKeys`), if
    /// the request had one.
    pub ajax_method: Option<String>,
    /// Process-wide arrival order: unique and strictly increasing across every double of the
    /// process (starting at 1), assigned when the request (with its body) has arrived. So
    /// `a.seq < b.seq` means `a` reached its double before `b` reached its own, even when they
    /// are different doubles.
    pub seq: u64,
    /// When the request (with its body) had arrived.
    pub at: Instant,
}

/// Which credential a request presented.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthKind {
    /// None at all.
    None,
    /// A valid API key (`Authorization: Bearer …`).
    ApiKey,
    /// A valid login token in the `Authorization` header.
    Token,
    /// A valid login token in the `asc_auth_key` cookie.
    Cookie,
    /// A credential that is unknown, expired or revoked.
    Invalid,
}

/// Requests in arrival order; each gets its status once answered.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    entries: Vec<(u64, RecordedRequest)>,
    next_id: u64,
}

impl RequestLog {
    /// Records an arriving request, stamping its [`seq`](RecordedRequest::seq) and
    /// [`at`](RecordedRequest::at); the id lets [`finish`](Self::finish) find it again. Called
    /// under the double's lock, so a double's log is in `seq` order.
    pub fn start(&mut self, mut request: RecordedRequest) -> u64 {
        request.seq = LAST_SEQ.fetch_add(1, Ordering::SeqCst) + 1;
        request.at = Instant::now();
        let id = self.next_id;
        self.next_id += 1;
        self.entries.push((id, request));
        id
    }

    /// Sets the answered status (a no-op if the log was cleared meanwhile).
    pub fn finish(&mut self, id: u64, status: u16) {
        if let Some((_, request)) = self.entries.iter_mut().find(|(i, _)| *i == id) {
            request.status = status;
        }
    }

    pub fn all(&self) -> Vec<RecordedRequest> {
        self.entries.iter().map(|(_, r)| r.clone()).collect()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
    }
}
