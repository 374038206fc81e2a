//! What a portal can answer besides success, as typed errors that tell the operator
//! what to do next (API doc §1). Each error shape of the doc's table is its own variant:
//! an empty-bodied 403 and an `Access denied` 403 need different fixes.
//!
//! Messages never contain secret values: portal texts are scrubbed of the values that
//! were sent, then cut short. They are localized by the portal, so they are only ever
//! shown to people — no decision looks at them.

use std::time::Duration;

use crate::failure::{Failure, FailureKind};

/// A failed portal request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PortalError {
    #[error("401 Unauthorized: the API key or token is missing, unknown, expired or revoked; issue a new key for a portal admin (scope *:write)")]
    Unauthorized,
    #[error("403 Forbidden ({0}): the key's owner must be the portal owner or an admin, and the service must exist on this portal and be settable")]
    AccessDenied(String),
    #[error("403 Forbidden with an empty body: the API key lacks the *:write scope (create a key with write access), or the portal is being moved, restored or encrypted (wait for it to finish)")]
    ScopeOrPortalState,
    #[error("403 Forbidden by the portal's IP restriction ({0}): allow authsync's address under Settings → Security → IP restriction")]
    IpRestricted(String),
    #[error("402 Payment Required ({0}): this portal's plan does not include this service, or the operator hid the setting; change the plan or drop the service from the map for this portal")]
    PaymentRequired(String),
    #[error("402 Payment Required with an empty body: the portal's tenant is not paid; nothing can be changed until the subscription is renewed")]
    NotPaid,
    #[error("404 Not Found: the portal is suspended or the URL is wrong; check [portals] url")]
    NotFound,
    #[error("415 Unsupported Media Type ({0}): the portal refused the request format, or (before v3.6) a write to a service it does not have or whose keys are fixed in its config file")]
    Unsupported(String),
    #[error("400 Bad Request, validation failed ({0}): the portal refused the request before saving anything")]
    Validation(String),
    #[error("400 Bad Request ({0})")]
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
    #[error("prop `{prop}` is {len} characters long; this portal accepts at most {max} (nothing was sent){}", if *.max == super::LIMIT_BEFORE_3_7_1 { " — portals before DocSpace v3.7.1 store at most 255 characters per value" } else { "" })]
    ValueTooLong {
        prop: String,
        len: usize,
        max: usize,
    },
    #[error("service `{0}`: refusing to send only empty values, which would clear every key of the service (nothing was sent)")]
    WouldClearAll(String),
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

    /// A 400 to a POST: by the contract a refusal of the values, whatever the text says.
    pub fn is_bad_request(&self) -> bool {
        matches!(
            self,
            PortalError::Validation(_) | PortalError::BadRequest(_)
        )
    }

    /// The portal answered with a 4xx (it may have changed something before refusing, so
    /// a POST answered this way is followed by a read-back).
    pub fn is_client_error(&self) -> bool {
        matches!(
            self,
            PortalError::Unauthorized
                | PortalError::AccessDenied(_)
                | PortalError::ScopeOrPortalState
                | PortalError::IpRestricted(_)
                | PortalError::PaymentRequired(_)
                | PortalError::NotPaid
                | PortalError::NotFound
                | PortalError::Unsupported(_)
                | PortalError::Validation(_)
                | PortalError::BadRequest(_)
        )
    }

    /// Checked locally: nothing was sent.
    pub fn is_local(&self) -> bool {
        matches!(
            self,
            PortalError::ValueTooLong { .. } | PortalError::WouldClearAll(_)
        )
    }

    pub fn kind(&self) -> FailureKind {
        match self {
            PortalError::Unauthorized => FailureKind::PortalUnauthorized,
            PortalError::AccessDenied(_) => FailureKind::PortalAccessDenied,
            PortalError::ScopeOrPortalState => FailureKind::PortalScopeOrState,
            PortalError::IpRestricted(_) => FailureKind::PortalIpRestricted,
            PortalError::PaymentRequired(_) => FailureKind::PortalPaymentRequired,
            PortalError::NotPaid => FailureKind::PortalNotPaid,
            PortalError::NotFound => FailureKind::PortalNotFound,
            PortalError::Unsupported(_) => FailureKind::PortalUnsupported,
            PortalError::Validation(_) | PortalError::BadRequest(_) => FailureKind::Refused,
            PortalError::RateLimited { .. } => FailureKind::PortalRateLimited,
            PortalError::Server { .. } => FailureKind::PortalServer,
            PortalError::Timeout(_) => FailureKind::PortalTimeout,
            PortalError::Connect(_) => FailureKind::PortalConnect,
            PortalError::InvalidResponse(_) => FailureKind::PortalInvalidResponse,
            PortalError::ValueTooLong { .. } => FailureKind::ValueTooLong,
            PortalError::WouldClearAll(_) => FailureKind::WouldClearAll,
            PortalError::Login(_) => FailureKind::PortalLogin,
            PortalError::Unexpected(_) => FailureKind::PortalUnexpected,
        }
    }

    pub fn failure(&self) -> Failure {
        Failure::new(self.kind(), self.to_string())
    }
}

impl From<PortalError> for Failure {
    fn from(e: PortalError) -> Failure {
        e.failure()
    }
}
