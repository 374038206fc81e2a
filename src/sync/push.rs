//! One portal in one cycle: read its services, decide per service (in sync, skipped,
//! held, halted, waiting, or push), push, read back, and after a refusal put the
//! previous values back once.
//!
//! Every decision is made on typed values: the HTTP status class of an answer, what was
//! sent, and what the read-back shows — never on a portal's (localized) message.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::stream::{self, StreamExt};

use super::rollout::Gate;
use super::{CycleOptions, Engine, Mode, Prepared};
use crate::config::Drift;
use crate::failure::{Failure, FailureKind};
use crate::plan::{self, PropChange};
use crate::portal::{Listing, Payload, Portal, PortalError, PortalService, Retry};
use crate::report::{Outcome, PortalReport, Restore, ServiceReport};
use crate::secret::ExposeSecret;
use crate::state::{Halt, LastResult, Pairs, State};

/// Pushes in flight to one portal at once (well under a portal's limit of 15
/// concurrent writes per user).
const PUSH_CONCURRENCY: usize = 4;

/// What one wave of a cycle shares.
pub(crate) struct Ctx<'a> {
    pub engine: &'a Engine,
    pub opts: CycleOptions,
    pub state: &'a State,
    pub wave: usize,
    pub halts: &'a BTreeMap<String, Halt>,
    /// service → desired fingerprints → the portals that want them, for every target of
    /// the cycle (to recognise portals that share one key store).
    pub desired: &'a DesiredIndex,
    pub now: i64,
}

/// service → desired fingerprints → portals.
pub(crate) type DesiredIndex = HashMap<String, HashMap<Pairs, Vec<String>>>;

/// One push on its way: the service as it was, what is sent, and the changes it makes.
struct Push {
    idx: usize,
    before: PortalService,
    payload: Payload,
    changes: Vec<PropChange>,
    drift: bool,
    /// Fingerprints of the desired values.
    fps: Pairs,
}

/// What the answer and the read-back say about a push.
enum Verdict {
    Confirmed,
    /// Refused; `changed`: the service no longer holds what it held before the POST.
    Refused {
        failure: Failure,
        changed: bool,
    },
    Failed(Failure),
}

impl Ctx<'_> {
    pub async fn portal(&self, portal: String, prepared: Vec<Prepared>) -> PortalReport {
        let mut report = PortalReport {
            portal: portal.clone(),
            wave: self.wave,
            failure: None,
            services: Vec::with_capacity(prepared.len()),
        };
        let Some(client) = self.engine.portals.get(&portal).cloned() else {
            let failure = Failure::new(
                FailureKind::Internal,
                "the portal client could not be built (see the error logged at start-up)",
            );
            for p in &prepared {
                report.services.push(unreached(p, &failure));
            }
            report.failure = Some(failure);
            return report;
        };

        // Decided without asking the portal: held values, and (drift = "ignore")
        // services whose values match the last confirmed push.
        let mut to_check = Vec::new();
        for p in prepared {
            if let Some(why) = self.held(&portal, &p) {
                report.services.push(service_report(&p, Outcome::Held(why)));
            } else if self.engine.config.sync.drift == Drift::Ignore
                && p.desired.values.is_ok()
                && confirmed(self.state, &portal, &p.desired.service) == Some(&p.fps)
            {
                report.services.push(service_report(&p, Outcome::InSync));
            } else {
                to_check.push(p);
            }
        }
        if to_check.is_empty() {
            return report;
        }

        let retry = self.engine.health.retry_for(&portal);
        let listing = match client.services(retry).await {
            Ok(l) => l,
            Err(e) => {
                let failure = e.failure();
                // What the portal holds is unknown now (it may come back empty, restored
                // from a backup): nothing stays confirmed, even what `drift = "ignore"`
                // did not need to ask about.
                for s in &mut report.services {
                    if matches!(s.outcome, Outcome::InSync) {
                        s.outcome = Outcome::Failed {
                            changes: vec![],
                            failure: failure.clone(),
                            sent: false,
                        };
                    }
                }
                for p in &to_check {
                    report.services.push(unreached(p, &failure));
                }
                report.failure = Some(failure);
                return report;
            }
        };

        let mut pushes = Vec::new();
        for p in to_check {
            let idx = report.services.len();
            match self.decide(&portal, &p, &listing, idx) {
                Ok(push) => {
                    report
                        .services
                        .push(service_report(&p, Outcome::Pending(push.changes.clone())));
                    pushes.push(push);
                }
                Err(outcome) => report.services.push(service_report(&p, outcome)),
            }
        }
        if !pushes.is_empty() {
            self.push_all(&portal, &client, &listing, pushes, &mut report.services)
                .await;
        }
        report
    }

    /// Why refused values are not pushed again, if they are held.
    fn held(&self, portal: &str, p: &Prepared) -> Option<Failure> {
        if self.opts.retry_refused || p.fps.is_empty() {
            return None;
        }
        let st = self.state.service(portal, &p.desired.service)?;
        (!st.held.is_empty() && st.held == p.fps).then(|| {
            Failure::new(
                FailureKind::Held,
                "the portal refused these very values; they are not pushed again until the source changes (fix the secret in the store, or run `authsync sync --retry-refused`)",
            )
        })
    }

    /// What to do with one service: a push, or the outcome that replaces it.
    fn decide(
        &self,
        portal: &str,
        p: &Prepared,
        listing: &Listing,
        idx: usize,
    ) -> Result<Push, Outcome> {
        let service = &p.desired.service;
        let values = p
            .desired
            .values
            .as_ref()
            .map_err(|problems| Outcome::Skipped(problems.clone()))?;
        let planned =
            plan::diff(service, values, listing, &self.engine.fingerprints).map_err(|e| {
                Outcome::Failed {
                    changes: vec![],
                    failure: e.failure(),
                    sent: false,
                }
            })?;
        if planned.changes.is_empty() {
            return Err(Outcome::InSync);
        }
        let before = plan::find(service, listing)
            .map_err(|e| Outcome::Failed {
                changes: vec![],
                failure: e.failure(),
                sent: false,
            })?
            .clone();
        let confirmed_before = confirmed_any(self.state, portal, service);
        let drift = confirmed_before == Some(&p.fps);
        if let Some(other) = self.shares_keys_with(portal, service, &before, &p.fps) {
            return Err(Outcome::Failed {
                changes: planned.changes,
                failure: shared_keys(portal, &other, service),
                sent: false,
            });
        }
        // New values (not drift corrections back to confirmed ones) pass the rollout gate.
        let new_props: Vec<&str> = planned
            .changes
            .iter()
            .map(|c| c.prop.as_str())
            .filter(|prop| confirmed_before.and_then(|c| c.get(prop)) != p.fps.get(prop))
            .collect();
        match self.engine.rollout.gate(
            portal,
            self.wave,
            service,
            &new_props,
            &p.fps,
            self.state,
            self.halts,
            self.now,
            self.opts.soak,
        ) {
            Gate::Open => {}
            Gate::Halted(why) => return Err(Outcome::Halted(why)),
            Gate::Waiting { why, ready_at } => {
                return Err(Outcome::Waiting {
                    changes: planned.changes,
                    why,
                    ready_at,
                })
            }
        }
        if self.opts.mode == Mode::Plan {
            return Err(Outcome::Pending(planned.changes));
        }
        let payload = Payload::new(service, planned.payload, listing.value_limit).map_err(|e| {
            Outcome::Failed {
                changes: planned.changes.clone(),
                failure: e.failure(),
                sent: false,
            }
        })?;
        Ok(Push {
            idx,
            before,
            payload,
            changes: planned.changes,
            drift,
            fps: p.fps.clone(),
        })
    }

    /// Sends the pushes, reads back once, and restores what refusals wiped.
    async fn push_all(
        &self,
        portal: &str,
        client: &Arc<dyn Portal>,
        listing: &Listing,
        pushes: Vec<Push>,
        services: &mut [ServiceReport],
    ) {
        let sent: Vec<(Push, Result<bool, PortalError>)> = stream::iter(pushes)
            .map(|push| {
                let client = client.clone();
                async move {
                    let result = client.set(&push.before, &push.payload).await;
                    (push, result)
                }
            })
            .buffer_unordered(PUSH_CONCURRENCY)
            .collect()
            .await;
        // One read-back for every push: a `true` proves nothing, a 4xx may have changed
        // the service (a refused key check wipes it), and a lost answer may hide a
        // success.
        let after = client.services(Retry::Normal).await;
        let mut to_restore: Vec<(usize, PortalService)> = Vec::new();
        for (push, result) in sent {
            let outcome = match self.verdict(portal, &push, result, &after) {
                Verdict::Confirmed => Outcome::Pushed {
                    changes: push.changes,
                    drift: push.drift,
                },
                Verdict::Failed(failure) => Outcome::Failed {
                    changes: push.changes,
                    failure,
                    sent: true,
                },
                Verdict::Refused { failure, changed } => {
                    let restore = if !changed {
                        Restore::NotNeeded
                    } else if push.before.is_empty() {
                        Restore::NothingToRestore
                    } else {
                        to_restore.push((push.idx, push.before));
                        Restore::Failed(Failure::new(FailureKind::Internal, "pending"))
                    };
                    Outcome::Refused {
                        changes: push.changes,
                        failure,
                        restore,
                    }
                }
            };
            services[push.idx].outcome = outcome;
        }
        if to_restore.is_empty() {
            return;
        }
        let results = self.restore(client, listing, to_restore).await;
        for (idx, result) in results {
            if let Outcome::Refused { restore, .. } = &mut services[idx].outcome {
                *restore = result;
            }
        }
    }

    /// Reads a push's answer together with the read-back.
    fn verdict(
        &self,
        portal: &str,
        push: &Push,
        result: Result<bool, PortalError>,
        after: &Result<Listing, PortalError>,
    ) -> Verdict {
        let service = &push.before.name;
        let now = match after {
            Ok(listing) => listing.service(service),
            Err(_) => None,
        };
        let changed = now.is_none_or(|n| !n.same_values(&push.before));
        match (result, after) {
            (Ok(_), Err(e)) => Verdict::Failed(Failure::new(
                FailureKind::Unconfirmed,
                format!("pushed, but the read-back failed: {e}"),
            )),
            (Ok(_), Ok(_)) => match now {
                Some(n) if push.payload.held_by(n) => Verdict::Confirmed,
                Some(_) if !changed => Verdict::Refused {
                    failure: Failure::new(
                        FailureKind::Refused,
                        format!("the portal accepted the push of `{service}` but stored nothing (older portals, before v3.6, answer `true` for a service they do not have or whose keys are fixed in their config file; a portal that shows only its configured defaults never reads back a pushed value)"),
                    ),
                    changed: false,
                },
                Some(n) => match self.shares_keys_with(portal, service, n, &push.fps) {
                    Some(other) => Verdict::Failed(shared_keys(portal, &other, service)),
                    None => Verdict::Refused {
                        failure: Failure::new(
                            FailureKind::Refused,
                            format!("the read-back of `{service}` does not hold what was sent (the portal answered success); {}", mismatch(&push.payload, n, &self.engine.fingerprints)),
                        ),
                        changed: true,
                    },
                },
                None => Verdict::Refused {
                    failure: Failure::new(
                        FailureKind::Refused,
                        format!("service `{service}` is missing from the read-back"),
                    ),
                    changed: true,
                },
            },
            // Checked locally: nothing was sent.
            (Err(e), _) if e.is_local() => Verdict::Failed(e.failure()),
            // A 400, whatever its text and language: the values were refused.
            (Err(e), _) if e.is_bad_request() => Verdict::Refused {
                failure: Failure::new(FailureKind::Refused, e.to_string()),
                changed: after.is_ok() && changed,
            },
            // Another 4xx: its own problem — unless the service changed anyway.
            (Err(e), Ok(_)) if e.is_client_error() && changed => Verdict::Refused {
                failure: Failure::new(
                    FailureKind::Refused,
                    format!("{e}; and the service changed on the portal"),
                ),
                changed: true,
            },
            // The answer was lost (timeout, reset, 5xx after retries) but the values
            // are there: the push went through.
            (Err(e), Ok(_)) if e.is_retryable() && now.is_some_and(|n| push.payload.held_by(n)) => {
                tracing::warn!(portal = %portal, service = %service, error = %e, "the push's answer was lost, but the read-back holds the values");
                Verdict::Confirmed
            }
            (Err(e), _) => Verdict::Failed(e.failure()),
        }
    }

    /// Posts the previous values of refused services back, once each, and reads back.
    async fn restore(
        &self,
        client: &Arc<dyn Portal>,
        listing: &Listing,
        services: Vec<(usize, PortalService)>,
    ) -> Vec<(usize, Restore)> {
        let sent: Vec<(usize, PortalService, Result<bool, PortalError>)> = stream::iter(services)
            .map(|(idx, before)| {
                let client = client.clone();
                async move {
                    let result = match Payload::restore(&before, listing.value_limit) {
                        Some(payload) => client.set(&before, &payload).await,
                        None => Err(PortalError::WouldClearAll(before.name.clone())),
                    };
                    (idx, before, result)
                }
            })
            .buffer_unordered(PUSH_CONCURRENCY)
            .collect()
            .await;
        let after = client.services(Retry::Normal).await;
        sent.into_iter()
            .map(|(idx, before, result)| {
                let restored = match (&result, &after) {
                    (Err(e), _) => Err(Failure::new(
                        e.kind(),
                        format!("posting the previous values back failed: {e}"),
                    )),
                    (Ok(_), Err(e)) => Err(Failure::new(
                        FailureKind::Unconfirmed,
                        format!("the previous values were posted back, but the read-back failed: {e}"),
                    )),
                    (Ok(_), Ok(l)) => match l.service(&before.name) {
                        Some(now) if now.same_values(&before) => Ok(()),
                        _ => Err(Failure::new(
                            FailureKind::Refused,
                            "the previous values were posted back but do not read back (the portal refused them too)",
                        )),
                    },
                };
                (
                    idx,
                    match restored {
                        Ok(()) => Restore::Restored,
                        Err(f) => Restore::Failed(f),
                    },
                )
            })
            .collect()
    }

    /// Another portal of the cycle whose desired values for `service` are what this
    /// portal holds, while this portal's desired values differ: the two share one key
    /// store (one self-hosted installation) and their maps disagree.
    fn shares_keys_with(
        &self,
        portal: &str,
        service: &str,
        actual: &PortalService,
        fps: &Pairs,
    ) -> Option<String> {
        let wanted = self.desired.get(service)?;
        if wanted.len() < 2 {
            // Every portal wants the same values: nothing to disagree about.
            return None;
        }
        let fp = &self.engine.fingerprints;
        let holds: Pairs = fps
            .iter()
            .map(|(prop, _)| (prop, fp.of_str(actual.value(prop))))
            .collect();
        if holds == *fps {
            return None;
        }
        wanted
            .get(&holds)?
            .iter()
            .find(|p| p.as_str() != portal)
            .cloned()
    }
}

fn shared_keys(portal: &str, other: &str, service: &str) -> Failure {
    Failure::new(
        FailureKind::SharedKeys,
        format!(
            "portals {portal} and {other} share their keys (one self-hosted installation), and the maps give `{service}` different values; not pushed, to stop the two flip-flopping every cycle — map the same values to both, or map `{service}` to only one of them"
        ),
    )
}

/// The first sent prop the read-back does not hold, by fingerprint.
fn mismatch(
    payload: &Payload,
    now: &PortalService,
    fp: &crate::fingerprint::Fingerprinter,
) -> String {
    for (prop, want) in payload.props() {
        let have = now.value(prop);
        if have != want.expose_secret() {
            return format!(
                "prop `{prop}` holds {} instead of {}",
                if have.is_empty() {
                    "an empty value".to_string()
                } else {
                    fp.of_str(have)
                },
                if want.expose_secret().is_empty() {
                    "an empty value".to_string()
                } else {
                    fp.of(want)
                }
            );
        }
    }
    "no prop differs".into()
}

/// The confirmed fingerprints recorded for a service, if its last attempt succeeded.
pub(crate) fn confirmed<'a>(state: &'a State, portal: &str, service: &str) -> Option<&'a Pairs> {
    state
        .service(portal, service)
        .filter(|s| s.result == LastResult::Ok && !s.confirmed.is_empty())
        .map(|s| &s.confirmed)
}

/// The fingerprints last confirmed on the portal, whatever happened since (a held or
/// waiting service keeps them): pushing them again is a drift correction.
fn confirmed_any<'a>(state: &'a State, portal: &str, service: &str) -> Option<&'a Pairs> {
    state
        .service(portal, service)
        .map(|s| &s.confirmed)
        .filter(|c| !c.is_empty())
}

/// A target's report, with its fingerprints (shared, not copied).
fn service_report(p: &Prepared, outcome: Outcome) -> ServiceReport {
    ServiceReport {
        service: p.desired.service.clone(),
        outcome,
        versions: p.desired.versions.clone(),
        fingerprints: p.fps.clone(),
        created: p.desired.created.clone(),
    }
}

/// The report of a target on a portal that could not be worked on.
fn unreached(p: &Prepared, failure: &Failure) -> ServiceReport {
    let outcome = match &p.desired.values {
        Err(problems) => Outcome::Skipped(problems.clone()),
        Ok(_) => Outcome::Failed {
            changes: vec![],
            failure: failure.clone(),
            sent: false,
        },
    };
    service_report(p, outcome)
}
