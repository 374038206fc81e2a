//! The one place a cycle's outcome is written down: the state file's entries, the
//! metrics and the log lines, per portal and service. Logs carry names, kinds and
//! fingerprints, never values.

use std::time::SystemTime;

use super::Engine;
use crate::failure::FailureKind;
use crate::metrics::metrics;
use crate::report::{Outcome, PortalReport, Restore, ServiceReport};
use crate::state::{Halt, Interner, LastResult, Pairs, ServiceState, State};

impl Engine {
    /// Records one wave's reports into `state`, the metrics and the logs.
    pub(super) fn record(&self, reports: &[PortalReport], state: &mut State, now: i64) {
        let mut shared = Interner::default();
        for p in reports {
            self.health.note(&p.portal, p.failure.as_ref());
            let mut halted = Vec::new();
            let mut lifted = Vec::new();
            let entry = state.portals.entry(p.portal.clone()).or_default();
            for s in &p.services {
                if p.failure.is_none() {
                    log(&p.portal, p.wave, s);
                }
                count(&p.portal, s);
                let slot = entry.services.entry_or_default(&s.service);
                if let Outcome::Pushed { .. } = &s.outcome {
                    observe_propagation(&s.versions, &slot.versions, &s.created);
                }
                update(slot, s, now, &mut shared);
                metrics().out_of_sync(&p.portal, &s.service, slot.result != LastResult::Ok);
                metrics().held(&p.portal, &s.service, slot.result == LastResult::Held);
                match &s.outcome {
                    Outcome::Refused { .. } if self.rollout.has_later_waves(p.wave) => {
                        halted.push((s.service.clone(), s.fingerprints.clone()));
                    }
                    // The refusing portal took new values: its halt is over.
                    Outcome::Pushed { .. } | Outcome::InSync => lifted.push(s.service.clone()),
                    _ => {}
                }
            }
            entry.services.shrink_to_fit();
            if p.is_ok() {
                entry.last_success = Some(now);
                metrics().last_success(&p.portal, now as f64);
            }
            for service in lifted {
                if state
                    .halts
                    .get(&service)
                    .is_some_and(|h| h.portal == p.portal)
                {
                    state.halts.remove(&service);
                    metrics().rollout_halted(&service, false);
                    tracing::info!(service = %service, portal = %p.portal, "rollout halt lifted: the refusing portal took new values");
                }
            }
            for (service, refused) in halted {
                let earlier = state.halts.get(&service).is_some_and(|h| h.wave <= p.wave);
                if !earlier {
                    tracing::error!(service = %service, portal = %p.portal, wave = p.wave + 1, "rollout halted: later waves do not get the refused values of this service until the source changes");
                    *state.halts.entry_or_default(&service) = Halt {
                        wave: p.wave,
                        portal: p.portal.clone(),
                        refused,
                        since: now,
                    };
                    metrics().rollout_halted(&service, true);
                }
            }
        }
    }
}

/// Updates one service's state entry from its outcome. In place, copying only what
/// changed: in a quiet cycle over thousands of services this allocates nothing.
fn update(slot: &mut ServiceState, s: &ServiceReport, now: i64, shared: &mut Interner) {
    let (result, failure) = match &s.outcome {
        Outcome::InSync | Outcome::Pushed { .. } => (LastResult::Ok, None),
        Outcome::Pending(_) => (LastResult::Pending, None),
        Outcome::Waiting { why, .. } => (LastResult::Waiting, Some(why)),
        Outcome::Skipped(problems) => (LastResult::Skipped, problems.first()),
        Outcome::Failed { failure, .. } => (LastResult::Failed, Some(failure)),
        Outcome::Refused { failure, .. } => (LastResult::Held, Some(failure)),
        Outcome::Held(why) => (LastResult::Held, Some(why)),
        Outcome::Halted(why) => (LastResult::Halted, Some(why)),
    };
    slot.last_attempt = now;
    slot.result = result;
    slot.error = match &s.outcome {
        Outcome::Skipped(problems) => Some(
            problems
                .iter()
                .map(|p| p.message.as_str())
                .collect::<Vec<_>>()
                .join("; ")
                .into(),
        ),
        _ => failure.map(|f| f.message.as_str().into()),
    };
    slot.error_kind = failure.map(|f| f.kind);
    match &s.outcome {
        Outcome::InSync | Outcome::Pushed { .. } => {
            if slot.confirmed != s.fingerprints {
                slot.confirmed = shared.intern(&s.fingerprints);
                slot.confirmed_at = Some(now);
            }
            if slot.versions != s.versions {
                slot.versions = shared.intern(&s.versions);
            }
            slot.held = Pairs::default();
            if matches!(s.outcome, Outcome::Pushed { .. }) {
                slot.pushed_at = Some(now);
            }
        }
        Outcome::Refused { restore, .. } => {
            slot.held = shared.intern(&s.fingerprints);
            // Still confirmed only if the portal holds what it held before.
            if !matches!(restore, Restore::Restored | Restore::NotNeeded) {
                slot.confirmed = Pairs::default();
                slot.confirmed_at = None;
            }
        }
        // Nothing was sent: the portal keeps what it had.
        Outcome::Skipped(_)
        | Outcome::Held(_)
        | Outcome::Halted(_)
        | Outcome::Waiting { .. }
        | Outcome::Pending(_) => {}
        // Unknown portal state after a failure: compare afresh next time.
        Outcome::Failed { .. } => {
            slot.confirmed = Pairs::default();
            slot.confirmed_at = None;
        }
    }
}

/// The counters of one outcome.
fn count(portal: &str, s: &ServiceReport) {
    let m = metrics();
    match &s.outcome {
        Outcome::Pushed { drift, .. } => {
            m.push(portal, &s.service, "ok");
            if *drift {
                m.drift_correction(portal, &s.service);
            }
        }
        Outcome::Refused { restore, .. } => {
            m.push(portal, &s.service, "rejected");
            m.refusal(portal, &s.service);
            match restore {
                Restore::Restored => m.restore(portal, &s.service, true),
                Restore::Failed(_) => m.restore(portal, &s.service, false),
                Restore::NotNeeded | Restore::NothingToRestore => {}
            }
            // Kept for alerts written against earlier releases: every refusal is one.
            m.bad_keys(portal, &s.service);
        }
        Outcome::Failed {
            sent: true,
            failure,
            ..
        } => m.push(
            portal,
            &s.service,
            if is_rejection(failure.kind) {
                "rejected"
            } else {
                "error"
            },
        ),
        _ => {}
    }
}

/// A portal answer that refused the request on its merits (as opposed to a transport
/// problem).
fn is_rejection(kind: FailureKind) -> bool {
    matches!(
        kind,
        FailureKind::PortalAccessDenied
            | FailureKind::PortalScopeOrState
            | FailureKind::PortalIpRestricted
            | FailureKind::PortalPaymentRequired
            | FailureKind::PortalNotPaid
            | FailureKind::PortalNotFound
            | FailureKind::PortalUnsupported
            | FailureKind::Refused
    )
}

/// The log line of one outcome.
fn log(portal: &str, wave: usize, s: &ServiceReport) {
    let service = &s.service;
    let props = || {
        s.outcome
            .changes()
            .iter()
            .map(|c| c.prop.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    match &s.outcome {
        Outcome::InSync | Outcome::Pending(_) => {}
        Outcome::Pushed { drift, .. } => {
            tracing::info!(portal = %portal, service = %service, props = %props(), drift_correction = drift, "pushed");
        }
        Outcome::Refused {
            failure, restore, ..
        } => {
            let (restored, restore_error) = match restore {
                Restore::Restored => ("restored the previous values", None),
                Restore::NotNeeded => ("the service kept its previous values", None),
                Restore::NothingToRestore => ("the service was empty before", None),
                Restore::Failed(f) => (
                    "the restore FAILED too: the service is left changed",
                    Some(f),
                ),
            };
            tracing::error!(
                portal = %portal,
                service = %service,
                wave = wave + 1,
                props = %props(),
                error = %failure,
                outcome = restored,
                restore_error = restore_error.map(|f| f.message.as_str()),
                "INCIDENT: the portal refused the values; they are held until the source changes"
            );
        }
        Outcome::Failed { failure, sent, .. } => {
            let what = if *sent {
                "push failed"
            } else {
                "service cannot be synced"
            };
            tracing::error!(portal = %portal, service = %service, props = %props(), error = %failure, kind = ?failure.kind, "{what}");
        }
        Outcome::Skipped(problems) => {
            for p in problems {
                tracing::error!(portal = %portal, service = %service, problem = %p, "service skipped: not every prop resolved; nothing sent");
            }
        }
        Outcome::Held(why) => {
            tracing::debug!(portal = %portal, service = %service, reason = %why, "held");
        }
        Outcome::Halted(why) | Outcome::Waiting { why, .. } => {
            tracing::info!(portal = %portal, service = %service, wave = wave + 1, reason = %why, "not pushed yet (rollout)");
        }
    }
}

/// `authsync_propagation_seconds`: from the creation of each source version this push
/// brought to the portal to now (the read-back that confirmed it).
fn observe_propagation(versions: &Pairs, before: &Pairs, created: &[(Box<str>, SystemTime)]) {
    let now = SystemTime::now();
    for (key, version) in versions.iter() {
        if before.get(key) == Some(version) {
            continue;
        }
        let Some((_, at)) = created.iter().find(|(k, _)| **k == *key) else {
            continue;
        };
        let Ok(age) = now.duration_since(*at) else {
            continue;
        };
        let source = key.split_once(':').map_or(key, |(s, _)| s);
        metrics().propagation(source, age.as_secs_f64());
    }
}
