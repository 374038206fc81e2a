//! Staged rollout: waves of portals (`[sync] rollout`), the gate a new value passes
//! between waves, and halts.
//!
//! A *new* value of a prop on a portal of wave k (one not already confirmed on that
//! portal — drift corrections are not staged) is sent only once every portal of the
//! earlier waves that takes the *same* value (the same reference after `{portal}`
//! expansion, or the same literal) has confirmed it by a read-back — and, in the daemon,
//! kept it for `rollout_soak`. A refusal of a new value in wave k halts the service for
//! the waves after k until the refusing portal's source value changes, or a retry is
//! asked for. The gate reads only the state file, so it works the same for a full cycle,
//! a targeted one and across restarts.

use std::collections::{BTreeMap, HashMap};

use crate::config::{Config, PropRef};
use crate::failure::{Failure, FailureKind};
use crate::fingerprint::Fingerprinter;
use crate::state::{Halt, LastResult, Pairs, State};

/// What the gate says about new values for one service on one portal.
#[derive(Debug)]
pub(crate) enum Gate {
    Open,
    Halted(Failure),
    Waiting {
        why: Failure,
        /// When the soak time of the earlier waves ends (Unix seconds), if that is all
        /// that is missing.
        ready_at: Option<i64>,
    },
}

/// The rollout plan of a config.
pub(crate) struct Rollout {
    waves: usize,
    soak_secs: i64,
    /// (service, prop, value identity) → (wave, portal) of every portal that takes it.
    users: HashMap<(String, String, String), Vec<(usize, String)>>,
    /// (portal, service, prop) → value identity.
    identity: HashMap<(String, String, String), String>,
}

impl Rollout {
    pub fn new(config: &Config, fp: &Fingerprinter) -> Rollout {
        let waves = config.sync.waves();
        let mut users: HashMap<(String, String, String), Vec<(usize, String)>> = HashMap::new();
        let mut identity = HashMap::new();
        // One wave: nothing to gate, and no index to keep (it would cost memory at
        // thousands of portals for nothing).
        if waves > 1 {
            for portal in config.portals.keys() {
                let wave = config.sync.wave_of(portal);
                for map in config.maps.iter().filter(|m| m.applies_to(portal)) {
                    for (prop, r) in &map.props {
                        let id = match r {
                            PropRef::Secret(s) => format!("ref:{}", s.for_portal(portal)),
                            PropRef::Literal(v) => format!("literal:{}", fp.of(v)),
                        };
                        users
                            .entry((map.service.clone(), prop.clone(), id.clone()))
                            .or_default()
                            .push((wave, portal.clone()));
                        identity.insert((portal.clone(), map.service.clone(), prop.clone()), id);
                    }
                }
            }
        }
        Rollout {
            waves,
            soak_secs: i64::try_from(config.sync.soak().as_secs()).unwrap_or(i64::MAX),
            users,
            identity,
        }
    }

    /// The halts that still hold: not lifted by a retry, and the refusing portal's
    /// desired values (when this cycle resolved them) are still the refused ones.
    pub fn active_halts(
        &self,
        state: &State,
        desired: &BTreeMap<(&str, &str), &Pairs>,
        retry: bool,
    ) -> BTreeMap<String, Halt> {
        if retry {
            return BTreeMap::new();
        }
        state
            .halts
            .iter()
            .filter(|(service, h)| {
                desired
                    .get(&(h.portal.as_str(), *service))
                    .is_none_or(|now| **now == h.refused)
            })
            .map(|(s, h)| (s.to_string(), h.clone()))
            .collect()
    }

    /// Whether new values of `props` may go to `portal` (in `wave`) now.
    #[allow(clippy::too_many_arguments)]
    pub fn gate(
        &self,
        portal: &str,
        wave: usize,
        service: &str,
        props: &[&str],
        fps: &Pairs,
        state: &State,
        halts: &BTreeMap<String, Halt>,
        now: i64,
        soak: bool,
    ) -> Gate {
        if wave == 0 || self.waves <= 1 || props.is_empty() {
            return Gate::Open;
        }
        if let Some(h) = halts.get(service).filter(|h| h.wave < wave) {
            return Gate::Halted(Failure::new(
                FailureKind::Halted,
                format!(
                    "rollout halted: portal {} (wave {}) refused the new values of `{service}`; later waves do not get them until the source changes (or run `authsync sync --retry-refused`)",
                    h.portal,
                    h.wave + 1
                ),
            ));
        }
        let mut ready_at: Option<i64> = None;
        for prop in props {
            let Some(id) =
                self.identity
                    .get(&(portal.to_string(), service.to_string(), prop.to_string()))
            else {
                continue;
            };
            let want = fps.get(prop);
            let users = self
                .users
                .get(&(service.to_string(), prop.to_string(), id.clone()))
                .map(Vec::as_slice)
                .unwrap_or_default();
            for (q_wave, q) in users.iter().filter(|(w, _)| *w < wave) {
                let confirmed = state
                    .service(q, service)
                    .filter(|st| st.result == LastResult::Ok && st.confirmed.get(prop) == want);
                let Some(st) = confirmed else {
                    return Gate::Waiting {
                        why: Failure::new(
                            FailureKind::Waiting,
                            format!(
                                "the new value of `{prop}` waits for portal {q} (wave {}) to confirm it",
                                q_wave + 1
                            ),
                        ),
                        ready_at: None,
                    };
                };
                if soak {
                    let since = st.confirmed_at.unwrap_or(st.last_attempt);
                    let at = since.saturating_add(self.soak_secs);
                    if at > now {
                        ready_at = Some(ready_at.map_or(at, |r| r.max(at)));
                    }
                }
            }
        }
        match ready_at {
            Some(at) => Gate::Waiting {
                why: Failure::new(
                    FailureKind::Waiting,
                    format!(
                        "the earlier waves confirmed the new values; they soak for another {}s before this wave gets them",
                        at - now
                    ),
                ),
                ready_at: Some(at),
            },
            None => Gate::Open,
        }
    }

    /// Whether a refusal in `wave` halts later waves.
    pub fn has_later_waves(&self, wave: usize) -> bool {
        wave + 1 < self.waves
    }
}
