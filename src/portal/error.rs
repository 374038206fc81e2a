//! What a portal can answer besides success, as typed errors that tell the operator
//! what to do next.

use std::time::Duration;

/// A failed portal request. Messages never contain secret values: portal error texts
/// are cut short and scrubbed of the values that were sent.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    #[error("401 Unauthorized: the API key or token is missing, unknown, expired or revoked; issue a new key for a portal admin (scope *:write)")]
    Unauthorized,
    #[error("403 Forbidden ({0}): the key's owner must be the portal owner or an admin with scope *:write, and the service must exist on this portal and be settable")]
    Forbidden(String),
    #[error("402 Payment Required ({0}): this portal's plan does not include third-party services such as this one")]
    PaymentRequired(String),
    #[error("400 Bad keys: the portal rejected the keys and CLEARED every key of the service; fix the secret in the store, authsync pushes again on the next cycle")]
    BadKeys,
    #[error("400 Bad Request: {0}")]
    BadRequest(String),
    #[error("429 Too Many Requests (retry after {})", .retry_after.map(|d| format!("{}s", d.as_secs())).unwrap_or_else(|| "an unspecified delay".into()))]
    RateLimited { retry_after: Option<Duration> },
    #[error("HTTP {status} from the portal: {message}")]
    Server { status: u16, message: String },
    #[error("no answer within {}s (portal timeout)", .0.as_secs_f32())]
    Timeout(Duration),
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("invalid response: {0}")]
    InvalidResponse(String),
    #[error("prop `{prop}` is {len} characters long; the portal accepts at most {max} (nothing was sent)")]
    ValueTooLong {
        prop: String,
        len: usize,
        max: usize,
    },
    #[error("login failed: {0}")]
    Login(String),
    #[error("unexpected HTTP status {0}")]
    Unexpected(u16),
}

impl PortalError {
    /// Worth trying again soon (the portal may recover by itself).
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            PortalError::RateLimited { .. }
                | PortalError::Server { .. }
                | PortalError::Timeout(_)
                | PortalError::Connect(_)
        )
    }

    /// The portal refused the push on its merits (as opposed to a transport error).
    pub fn is_rejection(&self) -> bool {
        matches!(
            self,
            PortalError::Forbidden(_)
                | PortalError::PaymentRequired(_)
                | PortalError::BadKeys
                | PortalError::BadRequest(_)
                | PortalError::ValueTooLong { .. }
        )
    }
}
