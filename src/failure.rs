//! One failure type for the whole engine: what went wrong, as a [`FailureKind`] the code
//! decides on, and a scrubbed message for people.
//!
//! Sources and portals report their own typed errors; at the boundary of the engine they
//! become a [`Failure`], which travels unchanged through the report, the state file, the
//! metrics and the logs. Nothing downstream looks inside the message: every decision
//! (retry, hold, restore, exit status, status-page state) is made on the kind.

use std::fmt;

use serde::{Deserialize, Serialize};

/// What kind of problem a [`Failure`] is. Serialized in the state file and in
/// `/status.json` as `snake_case`; new kinds may be added, so readers must accept
/// unknown ones ([`FailureKind::Other`] is what an unknown kind reads back as).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FailureKind {
    // --- secret sources ---
    /// The secret (or the source itself) does not exist.
    SecretNotFound,
    /// The store refused access (policy / IAM).
    SourceDenied,
    /// authsync could not log in to the store.
    SourceAuth,
    /// The store could not be reached, or answered with an error that may pass.
    SourceUnavailable,
    /// The secret was read but its content does not fit the reference (no such key, not
    /// JSON, empty, …).
    SecretInvalid,

    // --- the map against the portal's own list ---
    /// The portal has no such service.
    NoService,
    /// The service's keys are fixed in the server's config file (`canSet: false`).
    NotSettable,
    /// A mapped prop does not exist on the portal (it would be dropped silently).
    UnknownProps,
    /// Sending would clear every key of the service.
    WouldClearAll,
    /// A value is longer than the portal accepts.
    ValueTooLong,

    // --- the portal's answers ---
    /// 401: the API key or token is missing, unknown, expired or revoked.
    PortalUnauthorized,
    /// 403 `Access denied`: not an admin, or the service is unknown / not settable.
    PortalAccessDenied,
    /// 403 with an empty body: the API key lacks the `*:write` scope, or the portal is
    /// being moved, restored or encrypted.
    PortalScopeOrState,
    /// 403 with a bare JSON string: the portal's IP restriction refuses authsync's address.
    PortalIpRestricted,
    /// 402 with a message: a paid service on a plan without third-party services, or the
    /// setting is hidden by the operator.
    PortalPaymentRequired,
    /// 402 with an empty body: the tenant is not paid at all.
    PortalNotPaid,
    /// 404: the portal is suspended or the URL is wrong.
    PortalNotFound,
    /// 415: the portal refused the request's format (or a read-only key on old portals).
    PortalUnsupported,
    /// 429 after every retry.
    PortalRateLimited,
    /// 5xx after every retry.
    PortalServer,
    /// No answer within the portal's timeout.
    PortalTimeout,
    /// No connection (DNS, TCP, TLS).
    PortalConnect,
    /// An answer authsync cannot read.
    PortalInvalidResponse,
    /// Logging in to the portal failed.
    PortalLogin,
    /// Any other HTTP status.
    PortalUnexpected,

    // --- decisions about a push ---
    /// The portal refused the values: a 400 to the POST, or a read-back without them.
    Refused,
    /// The push went out but the read-back failed, so nothing is confirmed.
    Unconfirmed,
    /// Values this portal refused before are held back until the source changes.
    Held,
    /// A new value refused in an earlier rollout wave is kept from this portal.
    Halted,
    /// New values wait for an earlier rollout wave to confirm them (or to soak).
    Waiting,
    /// This portal shares its keys with another one (same installation) and the maps
    /// give them different values.
    SharedKeys,
    /// The cycle ran longer than `[sync] cycle_timeout` and was cancelled.
    CycleTimeout,
    /// Something authsync itself got wrong (a bug): please report it.
    Internal,
    /// A kind this version does not know (read from a newer state file).
    #[serde(other)]
    Other,
}

impl FailureKind {
    /// The portal (or the network to it) is the problem, not one service: the status page
    /// shows the whole portal as failing, and the next cycle probes it once.
    pub fn is_portal_wide(self) -> bool {
        matches!(
            self,
            FailureKind::PortalUnauthorized
                | FailureKind::PortalScopeOrState
                | FailureKind::PortalIpRestricted
                | FailureKind::PortalNotPaid
                | FailureKind::PortalNotFound
                | FailureKind::PortalRateLimited
                | FailureKind::PortalServer
                | FailureKind::PortalTimeout
                | FailureKind::PortalConnect
                | FailureKind::PortalInvalidResponse
                | FailureKind::PortalLogin
                | FailureKind::PortalUnexpected
        )
    }

    /// The store itself is failing (login refused, unreachable): every secret it holds
    /// is affected, unlike a missing or malformed secret, which is one service's problem.
    pub fn is_store_wide(self) -> bool {
        matches!(
            self,
            FailureKind::SourceAuth | FailureKind::SourceUnavailable
        )
    }

    /// A problem with reading a secret: the service is skipped, nothing is sent.
    pub fn is_source(self) -> bool {
        matches!(
            self,
            FailureKind::SecretNotFound
                | FailureKind::SourceDenied
                | FailureKind::SourceAuth
                | FailureKind::SourceUnavailable
                | FailureKind::SecretInvalid
        )
    }
}

/// A problem, typed, with a message safe to show (no secret value in it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub kind: FailureKind,
    pub message: String,
}

impl Failure {
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Failure {
        Failure {
            kind,
            message: message.into(),
        }
    }

    /// The same failure with `context: ` in front of its message.
    pub fn context(self, context: impl fmt::Display) -> Failure {
        Failure {
            kind: self.kind,
            message: format!("{context}: {}", self.message),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<&crate::sources::SourceError> for FailureKind {
    fn from(e: &crate::sources::SourceError) -> FailureKind {
        use crate::sources::SourceError;
        match e {
            SourceError::NotFound => FailureKind::SecretNotFound,
            SourceError::Denied(_) => FailureKind::SourceDenied,
            SourceError::Auth(_) => FailureKind::SourceAuth,
            SourceError::Unavailable(_) => FailureKind::SourceUnavailable,
            SourceError::Invalid(_) => FailureKind::SecretInvalid,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_round_trip_and_unknown_ones_read_as_other() {
        let json = serde_json::to_string(&FailureKind::PortalScopeOrState).unwrap_or_default();
        assert_eq!(json, "\"portal_scope_or_state\"");
        let back: FailureKind = serde_json::from_str(&json).unwrap_or(FailureKind::Internal);
        assert_eq!(back, FailureKind::PortalScopeOrState);
        let newer: FailureKind =
            serde_json::from_str("\"something_new\"").unwrap_or(FailureKind::Internal);
        assert_eq!(newer, FailureKind::Other);
    }

    #[test]
    fn context_keeps_the_kind() {
        let f = Failure::new(FailureKind::Refused, "no").context("portal p / google");
        assert_eq!(f.kind, FailureKind::Refused);
        assert_eq!(f.to_string(), "portal p / google: no");
    }
}
