//! The log of every request the double received.

use serde_json::Value;

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
    /// Records an arriving request; the id lets [`finish`](Self::finish) find it again.
    pub fn start(&mut self, request: RecordedRequest) -> u64 {
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
