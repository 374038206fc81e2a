//! Portals: one [`Portal`] trait — list the services with their values, set some props
//! of one service — and a dialect per product over one shared [`transport`]:
//! [`docspace`] (the REST endpoint) and [`workspace`] (Community Server's settings page
//! and AjaxPro call). [`fake`] is an in-memory portal that follows the API doc's rules,
//! for tests.
//!
//! A read-back is another [`Portal::services`]: it is how every push is confirmed, since
//! a portal's `true` can mean that nothing was stored.
//!
//! What may be sent is decided before any request: a [`Payload`] cannot be built with
//! nothing but empty values (the portal would clear every key of the service), with a
//! value over the portal's limit, or with `null`s.

mod docspace;
mod error;
pub mod fake;
mod transport;
mod workspace;

use std::sync::Arc;

use async_trait::async_trait;

pub use docspace::{parse_services_response, parse_set_response, DocSpace};
pub use error::PortalError;
pub use transport::Retry;
pub use workspace::{parse_save_answer, parse_settings_page, Workspace};

use crate::config::{Flavor, PortalConfig};
use crate::secret::{ExposeSecret, SecretString};

/// Longest value DocSpace v3.7.1+ stores in one prop (UTF-16 code units).
pub const LIMIT: usize = 4000;
/// Longest value DocSpace v3.1–v3.6 stores.
pub const LIMIT_BEFORE_3_7_1: usize = 255;

/// A portal authsync can read and write authorization keys on.
#[async_trait]
pub trait Portal: Send + Sync {
    /// The portal's name in the config.
    fn name(&self) -> &str;

    /// Every service the portal has keys for, with their current values (one request).
    async fn services(&self, retry: Retry) -> Result<Listing, PortalError>;

    /// Sets the props in `payload` on `service` (as listed by [`Portal::services`]).
    /// Returns the portal's `true` (something changed) or `false` (nothing did) — which
    /// proves nothing: read back to confirm.
    async fn set(&self, service: &PortalService, payload: &Payload) -> Result<bool, PortalError>;
}

/// Builds the client for a configured portal, in its dialect.
pub fn connect(name: &str, cfg: &PortalConfig) -> Result<Arc<dyn Portal>, PortalError> {
    Ok(match cfg.flavor {
        Flavor::Docspace => Arc::new(DocSpace::new(name, cfg)?),
        Flavor::Workspace => Arc::new(Workspace::new(name, cfg)?),
    })
}

/// What a portal lists, and what its answer says about the portal.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub services: Vec<PortalService>,
    /// Longest value the portal stores, when it has a limit.
    pub value_limit: Option<usize>,
    /// Which product/version the answer's fields point at (for `check --online`).
    pub version_hint: Option<String>,
}

impl Listing {
    /// A service by its contract name (`appleid`, `google`, …).
    pub fn service(&self, name: &str) -> Option<&PortalService> {
        self.services.iter().find(|s| s.name == name)
    }
}

/// One service as the portal reports it.
#[derive(Debug, Clone)]
pub struct PortalService {
    /// The contract name used in `[[map]]` blocks (API doc §5): `appleid`.
    pub name: String,
    /// The name the portal lists it under: `appleID` (DocSpace), `Google` (Workspace).
    pub listed_as: String,
    /// The name a write must use: the configuration key `appleid` (DocSpace), the
    /// listed name on Workspace.
    pub key: String,
    pub title: String,
    /// False when the installer fixed the keys in the server's config file.
    pub can_set: bool,
    pub paid: bool,
    /// Props in the portal's order; empty when `can_set` is false.
    pub props: Vec<PortalProp>,
}

impl PortalService {
    pub fn prop(&self, name: &str) -> Option<&PortalProp> {
        self.props.iter().find(|p| p.name == name)
    }

    /// The current value of a prop (`""` when unset or unknown).
    pub fn value(&self, name: &str) -> &str {
        self.prop(name)
            .map(|p| p.value.expose_secret())
            .unwrap_or("")
    }

    /// Whether every prop is empty.
    pub fn is_empty(&self) -> bool {
        self.props
            .iter()
            .all(|p| p.value.expose_secret().is_empty())
    }

    /// Whether every prop holds the same value in both.
    pub fn same_values(&self, other: &PortalService) -> bool {
        self.props
            .iter()
            .map(|p| p.name.as_str())
            .chain(other.props.iter().map(|p| p.name.as_str()))
            .all(|n| self.value(n) == other.value(n))
    }
}

/// One prop and its current value (the portal returns values in clear).
#[derive(Debug, Clone)]
pub struct PortalProp {
    pub name: String,
    pub value: SecretString,
}

/// Props to send to one service, checked: never only empty values (unless built with
/// [`Payload::clear`]), never over the portal's value limit, never `null`.
#[derive(Debug)]
pub struct Payload {
    props: Vec<(String, SecretString)>,
}

impl Payload {
    /// A partial update of `service`. Refuses, before anything is sent, a set whose every
    /// value is empty (the portal would clear every key of the service) and a value over
    /// `limit` (counted in UTF-16 code units, as the portal counts).
    pub fn new(
        service: &str,
        props: Vec<(String, SecretString)>,
        limit: Option<usize>,
    ) -> Result<Payload, PortalError> {
        if props.iter().all(|(_, v)| v.expose_secret().is_empty()) {
            return Err(PortalError::WouldClearAll(service.to_string()));
        }
        let payload = Payload { props };
        payload.check_limit(limit)?;
        Ok(payload)
    }

    /// The values `service` held (to put them back after a refusal). `None` when they
    /// were all empty: sending that would clear the service.
    pub fn restore(service: &PortalService, limit: Option<usize>) -> Option<Payload> {
        let props = service
            .props
            .iter()
            .map(|p| (p.name.clone(), p.value.clone()))
            .collect();
        Payload::new(&service.name, props, limit).ok()
    }

    fn check_limit(&self, limit: Option<usize>) -> Result<(), PortalError> {
        let Some(max) = limit else { return Ok(()) };
        for (prop, value) in &self.props {
            let len = value.expose_secret().encode_utf16().count();
            if len > max {
                return Err(PortalError::ValueTooLong {
                    prop: prop.clone(),
                    len,
                    max,
                });
            }
        }
        Ok(())
    }

    pub fn props(&self) -> &[(String, SecretString)] {
        &self.props
    }

    /// The values, for scrubbing anything the portal says back.
    pub fn values(&self) -> Vec<&str> {
        self.props.iter().map(|(_, v)| v.expose_secret()).collect()
    }

    /// Whether `service` (read back) holds every value of this payload.
    pub fn held_by(&self, service: &PortalService) -> bool {
        self.props.iter().all(|(name, v)| {
            service.prop(name).is_some() && service.value(name) == v.expose_secret()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> SecretString {
        SecretString::from(v.to_string())
    }

    #[test]
    fn payload_refuses_all_empty_and_long_values_before_sending() {
        assert!(matches!(
            Payload::new(
                "google",
                vec![("a".into(), s("")), ("b".into(), s(""))],
                None
            ),
            Err(PortalError::WouldClearAll(_))
        ));
        assert!(matches!(
            Payload::new("google", vec![], None),
            Err(PortalError::WouldClearAll(_))
        ));
        assert!(Payload::new(
            "google",
            vec![("a".into(), s("")), ("b".into(), s("x"))],
            None
        )
        .is_ok());
        // UTF-16 code units, as the portal counts: 128 emoji are 256 units.
        let emoji = "😀".repeat(128);
        let err = Payload::new("google", vec![("a".into(), s(&emoji))], Some(255));
        assert!(matches!(
            err,
            Err(PortalError::ValueTooLong {
                len: 256,
                max: 255,
                ..
            })
        ));
        assert!(Payload::new("google", vec![("a".into(), s(&emoji))], Some(4000)).is_ok());
        let msg = err.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("at most 255") && msg.contains("before DocSpace v3.7.1"),
            "{msg}"
        );
    }

    #[test]
    fn restore_of_an_empty_service_is_nothing() {
        let svc = PortalService {
            name: "google".into(),
            listed_as: "google".into(),
            key: "google".into(),
            title: "Google".into(),
            can_set: true,
            paid: false,
            props: vec![PortalProp {
                name: "a".into(),
                value: s(""),
            }],
        };
        assert!(Payload::restore(&svc, None).is_none());
    }
}
