//! The diff between what a service should hold (sources) and what it holds (portal GET),
//! and the POST body that fixes it.

use std::collections::BTreeMap;

use crate::failure::{Failure, FailureKind};
use crate::fingerprint::Fingerprinter;
use crate::portal::{Listing, PortalService};
use crate::secret::{ExposeSecret, SecretString};

/// How one prop changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    /// `+`: empty on the portal, set now.
    Set,
    /// `~`: a different value replaces the current one.
    Change,
    /// `-`: cleared (only from an explicit `{ value = "" }`).
    Clear,
}

impl ChangeKind {
    pub fn symbol(self) -> char {
        match self {
            ChangeKind::Set => '+',
            ChangeKind::Change => '~',
            ChangeKind::Clear => '-',
        }
    }
}

/// One prop to change, with fingerprints (never values) of before and after.
#[derive(Debug, Clone)]
pub struct PropChange {
    pub prop: String,
    pub kind: ChangeKind,
    pub old: Option<String>,
    pub new: Option<String>,
}

/// What to send to one service of one portal.
pub struct ServicePlan {
    pub changes: Vec<PropChange>,
    /// The props to POST: the changed ones, plus (only when every changed value is
    /// empty) the unchanged non-empty ones, because a POST of nothing but empty values
    /// clears the whole service.
    pub payload: Vec<(String, SecretString)>,
}

/// Why a service cannot be planned on a portal.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the portal has no service `{0}`{1} (its GET lists: {2})")]
    NoService(String, String, String),
    #[error("service `{0}` cannot be set over the API on this portal (canSet: false — its keys are fixed in the server's config file)")]
    NotSettable(String),
    #[error("service `{service}` on this portal has no prop(s) {props}; the portal would silently drop them")]
    UnknownProps { service: String, props: String },
    #[error("service `{0}`: every desired value is empty; sending that would clear every key of the service")]
    WouldClearAll(String),
}

impl PlanError {
    pub fn failure(&self) -> Failure {
        let kind = match self {
            PlanError::NoService(..) => FailureKind::NoService,
            PlanError::NotSettable(_) => FailureKind::NotSettable,
            PlanError::UnknownProps { .. } => FailureKind::UnknownProps,
            PlanError::WouldClearAll(..) => FailureKind::WouldClearAll,
        };
        Failure::new(kind, self.to_string())
    }
}

/// The portal's own service for a mapped name, or why there is none.
pub fn find<'a>(service: &str, listing: &'a Listing) -> Result<&'a PortalService, PlanError> {
    let Some(actual) = listing.service(service) else {
        let names: Vec<&str> = listing.services.iter().map(|s| s.name.as_str()).collect();
        let hint = crate::catalog::hint(service, names.iter().copied());
        let listed: Vec<String> = listing
            .services
            .iter()
            .map(|s| {
                if s.listed_as == s.name {
                    s.name.clone()
                } else {
                    format!("{} (listed as {})", s.name, s.listed_as)
                }
            })
            .collect();
        return Err(PlanError::NoService(
            service.to_string(),
            hint,
            listed.join(", "),
        ));
    };
    if !actual.can_set {
        return Err(PlanError::NotSettable(service.to_string()));
    }
    Ok(actual)
}

/// Compares desired values with the portal's service.
pub fn diff(
    service: &str,
    desired: &BTreeMap<String, SecretString>,
    listing: &Listing,
    fp: &Fingerprinter,
) -> Result<ServicePlan, PlanError> {
    let actual = find(service, listing)?;
    let unknown: Vec<String> = desired
        .keys()
        .filter(|p| actual.prop(p).is_none())
        .map(|p| {
            let hint = crate::catalog::hint(p, actual.props.iter().map(|x| x.name.as_str()));
            format!("`{p}`{hint}")
        })
        .collect();
    if !unknown.is_empty() {
        return Err(PlanError::UnknownProps {
            service: service.to_string(),
            props: unknown.join(", "),
        });
    }

    let mut changes = Vec::new();
    let mut payload = Vec::new();
    for (prop, want) in desired {
        let have = actual.value(prop);
        let want_str = want.expose_secret();
        if have == want_str {
            continue;
        }
        let kind = match (have.is_empty(), want_str.is_empty()) {
            (_, true) => ChangeKind::Clear,
            (true, false) => ChangeKind::Set,
            (false, false) => ChangeKind::Change,
        };
        changes.push(PropChange {
            prop: prop.clone(),
            kind,
            old: (!have.is_empty()).then(|| fp.of_str(have)),
            new: (!want_str.is_empty()).then(|| fp.of_str(want_str)),
        });
        payload.push((prop.clone(), want.clone()));
    }
    if !payload.is_empty() && payload.iter().all(|(_, v)| v.expose_secret().is_empty()) {
        // Carry the unchanged non-empty values so the POST is a partial update, not a wipe.
        let carried: Vec<(String, SecretString)> = desired
            .iter()
            .filter(|(_, v)| !v.expose_secret().is_empty())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        // (The config refuses a map of nothing but empty literals; this guards the rule
        // whatever the map.)
        if carried.is_empty() {
            return Err(PlanError::WouldClearAll(service.to_string()));
        }
        payload.extend(carried);
    }
    Ok(ServicePlan { changes, payload })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portal::PortalProp;

    fn s(v: &str) -> SecretString {
        SecretString::from(v.to_string())
    }

    fn svc(props: &[(&str, &str)]) -> Listing {
        Listing {
            services: vec![PortalService {
                name: "google".into(),
                listed_as: "google".into(),
                key: "google".into(),
                title: "Google".into(),
                can_set: true,
                paid: false,
                props: props
                    .iter()
                    .map(|(n, v)| PortalProp {
                        name: n.to_string(),
                        value: s(v),
                    })
                    .collect(),
            }],
            ..Listing::default()
        }
    }

    #[test]
    fn only_differences_are_sent() {
        let fp = Fingerprinter::ephemeral();
        let desired = BTreeMap::from([("a".to_string(), s("1")), ("b".to_string(), s("2"))]);
        let plan = diff("google", &desired, &svc(&[("a", "1"), ("b", "old")]), &fp).unwrap();
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(plan.changes[0].kind, ChangeKind::Change);
        assert_eq!(plan.payload.len(), 1);
        let none = diff("google", &desired, &svc(&[("a", "1"), ("b", "2")]), &fp).unwrap();
        assert!(none.changes.is_empty() && none.payload.is_empty());
    }

    #[test]
    fn clearing_one_prop_never_becomes_an_all_empty_post() {
        let fp = Fingerprinter::ephemeral();
        let desired = BTreeMap::from([("a".to_string(), s("")), ("b".to_string(), s("keep"))]);
        let plan = diff("google", &desired, &svc(&[("a", "x"), ("b", "keep")]), &fp).unwrap();
        assert_eq!(plan.changes.len(), 1);
        assert_eq!(plan.changes[0].kind, ChangeKind::Clear);
        assert!(plan
            .payload
            .iter()
            .any(|(_, v)| !v.expose_secret().is_empty()));
        let only_empty = BTreeMap::from([("a".to_string(), s(""))]);
        assert!(matches!(
            diff("google", &only_empty, &svc(&[("a", "x"), ("b", "y")]), &fp),
            Err(PlanError::WouldClearAll(_))
        ));
        // A prop cleared on purpose that is empty already: nothing to send (a clear is
        // never repeated).
        let plan = diff("google", &only_empty, &svc(&[("a", ""), ("b", "y")]), &fp).unwrap();
        assert!(plan.changes.is_empty() && plan.payload.is_empty());
    }

    #[test]
    fn unknown_service_or_prop_is_an_error() {
        let fp = Fingerprinter::ephemeral();
        let desired = BTreeMap::from([("googleClientld".to_string(), s("1"))]);
        let err = diff("google", &desired, &svc(&[("googleClientId", "")]), &fp)
            .err()
            .unwrap();
        assert!(
            err.to_string().contains("did you mean `googleClientId`"),
            "{err}"
        );
        assert!(matches!(
            diff("gogle", &desired, &svc(&[]), &fp),
            Err(PlanError::NoService(..))
        ));
    }
}
