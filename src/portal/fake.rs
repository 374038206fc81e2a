//! An in-memory [`Portal`] for tests and examples, following the API doc's rules (§3, §4):
//! GET lists `appleid` as `appleID` and POST accepts only `appleid`; every value empty
//! clears the whole service; unknown props are dropped silently and still answer `true`;
//! `false` when nothing changed; values over the limit are a 400 validation problem;
//! refused values (see [`FakePortal::refuse`]) make the portal clear every key of the
//! service and answer 400, as DocSpace does when a key check fails.
//!
//! Portals made with [`FakePortal::sharing`] share one key store, as the portals of one
//! self-hosted installation do.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;

use super::{Listing, Payload, Portal, PortalError, PortalProp, PortalService, Retry};
use crate::catalog;
use crate::secret::{ExposeSecret, SecretString};

/// One service in the fake's store.
#[derive(Debug, Clone)]
struct Stored {
    can_set: bool,
    props: Vec<(String, String)>,
}

#[derive(Debug, Default)]
struct Store {
    services: BTreeMap<String, Stored>,
    refused: BTreeMap<String, BTreeSet<String>>,
}

/// What the fake recorded of one request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Get,
    /// A POST: the service key and the prop names sent.
    Post {
        service: String,
        props: Vec<String>,
    },
}

#[derive(Debug, Default)]
struct Local {
    calls: Vec<Call>,
    failures: VecDeque<PortalError>,
    /// (error, whether the values are stored before the error is answered)
    post_failures: VecDeque<(PortalError, bool)>,
}

/// An in-memory portal.
#[derive(Debug, Clone)]
pub struct FakePortal {
    name: String,
    store: Arc<Mutex<Store>>,
    local: Arc<Mutex<Local>>,
    limit: Option<usize>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FakePortal {
    /// A portal with every current DocSpace service of the catalogue, all empty, and the
    /// v3.7.1 value limit.
    pub fn new(name: &str) -> FakePortal {
        let services = catalog::SERVICES
            .iter()
            .filter(|s| !s.legacy)
            .map(|s| {
                (
                    s.name.to_string(),
                    Stored {
                        can_set: true,
                        props: s
                            .props
                            .iter()
                            .map(|p| (p.to_string(), String::new()))
                            .collect(),
                    },
                )
            })
            .collect();
        FakePortal {
            name: name.to_string(),
            store: Arc::new(Mutex::new(Store {
                services,
                refused: BTreeMap::new(),
            })),
            local: Arc::default(),
            limit: Some(super::LIMIT),
        }
    }

    /// Another portal of the same installation: same key store, own request log.
    pub fn sharing(&self, name: &str) -> FakePortal {
        FakePortal {
            name: name.to_string(),
            store: self.store.clone(),
            local: Arc::default(),
            limit: self.limit,
        }
    }

    /// Sets the value limit (255 for portals before v3.7.1, `None` for none).
    pub fn with_limit(mut self, limit: Option<usize>) -> FakePortal {
        self.limit = limit;
        self
    }

    /// Sets a value as an admin in the portal's UI would.
    pub fn set_value(&self, service: &str, prop: &str, value: &str) {
        let mut store = lock(&self.store);
        if let Some(s) = store.services.get_mut(service) {
            if let Some(slot) = s.props.iter_mut().find(|(n, _)| n == prop) {
                slot.1 = value.to_string();
            }
        }
    }

    /// A stored value (`None`: no such service or prop).
    pub fn value(&self, service: &str, prop: &str) -> Option<String> {
        let store = lock(&self.store);
        let s = store.services.get(service)?;
        s.props
            .iter()
            .find(|(n, _)| n == prop)
            .map(|(_, v)| v.clone())
    }

    /// Marks the service's keys as fixed in the server's config file.
    pub fn fix(&self, service: &str) {
        if let Some(s) = lock(&self.store).services.get_mut(service) {
            s.can_set = false;
        }
    }

    /// From now on, a save that leaves `value` in `service` is refused: the portal clears
    /// every key of the service and answers 400.
    pub fn refuse(&self, service: &str, value: &str) {
        lock(&self.store)
            .refused
            .entry(service.to_string())
            .or_default()
            .insert(value.to_string());
    }

    /// The next request (any method) fails with `e` without touching anything.
    pub fn fail_next(&self, e: PortalError) {
        lock(&self.local).failures.push_back(e);
    }

    /// The next POST fails with `e` without touching anything.
    pub fn fail_next_post(&self, e: PortalError) {
        lock(&self.local).post_failures.push_back((e, false));
    }

    /// The next POST is stored as usual, but answered with `e` (an answer lost on the
    /// way back, or a 4xx after the portal changed something).
    pub fn fail_next_post_after_storing(&self, e: PortalError) {
        lock(&self.local).post_failures.push_back((e, true));
    }

    /// Every request so far.
    pub fn calls(&self) -> Vec<Call> {
        lock(&self.local).calls.clone()
    }

    pub fn gets(&self) -> usize {
        self.calls().iter().filter(|c| **c == Call::Get).count()
    }

    pub fn posts(&self) -> usize {
        self.calls()
            .iter()
            .filter(|c| matches!(c, Call::Post { .. }))
            .count()
    }

    pub fn clear_calls(&self) {
        lock(&self.local).calls.clear();
    }

    fn listed(name: &str) -> String {
        catalog::service(name)
            .and_then(|s| s.listed_as)
            .unwrap_or(name)
            .to_string()
    }
}

#[async_trait]
impl Portal for FakePortal {
    fn name(&self) -> &str {
        &self.name
    }

    async fn services(&self, _retry: Retry) -> Result<Listing, PortalError> {
        {
            let mut local = lock(&self.local);
            local.calls.push(Call::Get);
            if let Some(e) = local.failures.pop_front() {
                return Err(e);
            }
        }
        let store = lock(&self.store);
        let services = store
            .services
            .iter()
            .map(|(name, s)| {
                let listed = Self::listed(name);
                // Parsed the way the DocSpace dialect parses GET: listed name → key.
                let key = catalog::from_listed(&listed)
                    .map(|i| i.name.to_string())
                    .unwrap_or_else(|| listed.clone());
                PortalService {
                    name: key.clone(),
                    listed_as: listed,
                    key,
                    title: name.clone(),
                    can_set: s.can_set,
                    paid: false,
                    props: if s.can_set {
                        s.props
                            .iter()
                            .map(|(n, v)| PortalProp {
                                name: n.clone(),
                                value: SecretString::from(v.clone()),
                            })
                            .collect()
                    } else {
                        Vec::new()
                    },
                }
            })
            .collect();
        Ok(Listing {
            services,
            value_limit: self.limit,
            version_hint: Some("fake".into()),
        })
    }

    async fn set(&self, service: &PortalService, payload: &Payload) -> Result<bool, PortalError> {
        let after = {
            let mut local = lock(&self.local);
            local.calls.push(Call::Post {
                service: service.key.clone(),
                props: payload.props().iter().map(|(n, _)| n.clone()).collect(),
            });
            if let Some(e) = local.failures.pop_front() {
                return Err(e);
            }
            match local.post_failures.pop_front() {
                Some((e, false)) => return Err(e),
                Some((e, true)) => Some(e),
                None => None,
            }
        };
        let result = self.store_payload(service, payload);
        match after {
            Some(e) => Err(e),
            None => result,
        }
    }
}

impl FakePortal {
    fn store_payload(
        &self,
        service: &PortalService,
        payload: &Payload,
    ) -> Result<bool, PortalError> {
        let mut store = lock(&self.store);
        if let Some(max) = self.limit {
            if let Some((prop, _)) = payload
                .props()
                .iter()
                .find(|(_, v)| v.expose_secret().encode_utf16().count() > max)
            {
                return Err(PortalError::Validation(format!(
                    "Props.Value ({prop}): too long"
                )));
            }
        }
        let refused = store.refused.get(&service.key).cloned().unwrap_or_default();
        let Some(stored) = store.services.get_mut(&service.key).filter(|s| s.can_set) else {
            return Err(PortalError::AccessDenied("Access denied".into()));
        };
        let changed = if payload.values().iter().all(|v| v.is_empty()) {
            for (_, v) in &mut stored.props {
                v.clear();
            }
            true
        } else {
            let mut changed = false;
            for (name, value) in payload.props() {
                match stored.props.iter_mut().find(|(n, _)| n == name) {
                    Some((_, v)) if v != value.expose_secret() => {
                        *v = value.expose_secret().to_string();
                        changed = true;
                    }
                    Some(_) => {}
                    // Dropped without a word, yet reported as a change.
                    None => changed = true,
                }
            }
            changed
        };
        if stored.props.iter().any(|(_, v)| refused.contains(v)) {
            for (_, v) in &mut stored.props {
                v.clear();
            }
            return Err(PortalError::BadRequest("Schlechte Tasten".into()));
        }
        Ok(changed)
    }
}
