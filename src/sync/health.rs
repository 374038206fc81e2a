//! Portals that keep failing. A failing portal is not left alone for minutes (it would
//! stay out of sync long after it came back): it is probed once per cycle, with a single
//! request and no in-cycle retries, so it is caught up within one interval of
//! recovering. What is rate-limited instead is the error log.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::failure::Failure;
use crate::portal::Retry;

/// After this many failed cycles in a row, a portal is probed with one request.
const PROBE_AFTER: u32 = 2;
/// While a portal keeps failing, its error is logged at most this often.
const LOG_EVERY: Duration = Duration::from_secs(300);

#[derive(Debug)]
struct Streak {
    failures: u32,
    last_logged: Instant,
    suppressed: u32,
}

/// Consecutive failed cycles per portal.
#[derive(Debug, Default)]
pub(crate) struct Health(Mutex<HashMap<String, Streak>>);

impl Health {
    /// How hard to try the portal's first request this cycle.
    pub fn retry_for(&self, portal: &str) -> Retry {
        let Ok(streaks) = self.0.lock() else {
            return Retry::Normal;
        };
        match streaks.get(portal) {
            Some(s) if s.failures >= PROBE_AFTER => Retry::Once,
            _ => Retry::Normal,
        }
    }

    /// Notes a cycle's result for a portal and logs what needs logging: the first
    /// failure, then at most one line per [`LOG_EVERY`] while it lasts, and the recovery.
    pub fn note(&self, portal: &str, failure: Option<&Failure>) {
        let Ok(mut streaks) = self.0.lock() else {
            return;
        };
        match failure {
            None => {
                if let Some(s) = streaks.remove(portal) {
                    tracing::info!(portal = %portal, failed_cycles = s.failures, "portal recovered");
                }
            }
            Some(f) => {
                let now = Instant::now();
                let s = streaks.entry(portal.to_string()).or_insert(Streak {
                    failures: 0,
                    last_logged: now,
                    suppressed: 0,
                });
                s.failures += 1;
                if s.failures == 1 {
                    tracing::error!(portal = %portal, error = %f, kind = ?f.kind, "cannot read the portal's services; skipping this portal");
                } else if now.duration_since(s.last_logged) >= LOG_EVERY {
                    tracing::error!(portal = %portal, error = %f, kind = ?f.kind, failed_cycles = s.failures, similar_errors_not_logged = s.suppressed, "portal still failing");
                    s.last_logged = now;
                    s.suppressed = 0;
                } else {
                    s.suppressed += 1;
                    tracing::debug!(portal = %portal, error = %f, failed_cycles = s.failures, "portal still failing");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureKind;

    #[test]
    fn a_portal_failing_twice_is_probed_once_and_recovers_at_once() {
        let h = Health::default();
        let f = Failure::new(FailureKind::PortalServer, "HTTP 502");
        assert_eq!(h.retry_for("p"), Retry::Normal);
        h.note("p", Some(&f));
        assert_eq!(h.retry_for("p"), Retry::Normal);
        h.note("p", Some(&f));
        assert_eq!(h.retry_for("p"), Retry::Once);
        assert_eq!(h.retry_for("other"), Retry::Normal);
        h.note("p", None);
        assert_eq!(h.retry_for("p"), Retry::Normal);
    }
}
