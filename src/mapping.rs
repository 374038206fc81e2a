//! From `[[map]]` blocks to targets: one (portal, service) pair and the references for
//! its props, with `{portal}` expanded and `--portal` / `--service` filters applied.

use std::collections::BTreeSet;

use crate::catalog;
use crate::config::{Config, PropRef, SecretRef};

/// `--portal` / `--service` selections; empty = everything.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub portals: Vec<String>,
    pub services: Vec<String>,
    /// Only these (portal, service) pairs (targeted triggers and rotation events);
    /// `None` = no such restriction.
    pub only: Option<BTreeSet<(String, String)>>,
}

impl Filter {
    /// Errors for names the config does not know, with hints.
    pub fn check(&self, config: &Config) -> Result<(), String> {
        let mut problems = Vec::new();
        for p in &self.portals {
            if !config.portals.contains_key(p) {
                let hint = catalog::hint(p, config.portals.keys().map(String::as_str));
                problems.push(format!("unknown portal `{p}`{hint}"));
            }
        }
        for s in &self.services {
            if !config.maps.iter().any(|m| &m.service == s) {
                let hint = catalog::hint(s, config.maps.iter().map(|m| m.service.as_str()));
                problems.push(format!("no [[map]] block for service `{s}`{hint}"));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("; "))
        }
    }

    pub fn portal(&self, name: &str) -> bool {
        self.portals.is_empty() || self.portals.iter().any(|p| p == name)
    }

    pub fn service(&self, name: &str) -> bool {
        self.services.is_empty() || self.services.iter().any(|s| s == name)
    }

    /// Whether nothing narrows the selection (a full cycle).
    pub fn is_everything(&self) -> bool {
        self.portals.is_empty() && self.services.is_empty() && self.only.is_none()
    }

    fn pair(&self, portal: &str, service: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|only| only.contains(&(portal.to_string(), service.to_string())))
    }
}

/// The (portal, service) pairs whose props read any of `secrets`, compared by source
/// and path (the `#KEY` ignored); a secret names either the `{portal}` template a map
/// uses or the path it expands to for one portal.
pub fn users_of(config: &Config, secrets: &[SecretRef]) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for portal in config.portals.keys() {
        for map in config.maps.iter().filter(|m| m.applies_to(portal)) {
            let used = map.props.values().any(|r| match r {
                PropRef::Secret(s) => {
                    let expanded = s.for_portal(portal);
                    secrets.iter().any(|w| {
                        w.source == s.source && (w.path == s.path || w.path == expanded.path)
                    })
                }
                PropRef::Literal(_) => false,
            });
            if used {
                out.insert((portal.clone(), map.service.clone()));
            }
        }
    }
    out
}

/// One service on one portal, and where each of its props comes from.
#[derive(Debug, Clone)]
pub struct Target {
    pub portal: String,
    pub service: String,
    /// prop → reference, `{portal}` already replaced.
    pub props: Vec<(String, PropRef)>,
}

/// Every (portal, service) pair the config maps, in portal then file order.
pub fn targets(config: &Config, filter: &Filter) -> Vec<Target> {
    let mut out = Vec::new();
    for portal in config.portals.keys().filter(|p| filter.portal(p)) {
        for map in config.maps.iter().filter(|m| {
            m.applies_to(portal) && filter.service(&m.service) && filter.pair(portal, &m.service)
        }) {
            let props = map
                .props
                .iter()
                .map(|(prop, r)| {
                    let r = match r {
                        PropRef::Secret(s) => PropRef::Secret(s.for_portal(portal)),
                        lit => lit.clone(),
                    };
                    (prop.clone(), r)
                })
                .collect();
            out.push(Target {
                portal: portal.clone(),
                service: map.service.clone(),
                props,
            });
        }
    }
    out
}
