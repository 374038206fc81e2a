//! What a cycle did, and its human-readable rendering for `plan` and `sync` (stdout).
//! Values appear only as keyed fingerprints.

use std::fmt::Write;
use std::time::{Duration, SystemTime};

use crate::failure::Failure;
use crate::plan::PropChange;
use crate::state::Pairs;

/// What happened to one service on one portal.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// The portal already holds the desired values.
    InSync,
    /// Changes found and not sent (plan mode).
    Pending(Vec<PropChange>),
    /// New values wait for an earlier rollout wave to confirm them.
    Waiting {
        changes: Vec<PropChange>,
        why: Failure,
        /// When the soak time ends (Unix seconds), if that is all that is missing.
        ready_at: Option<i64>,
    },
    /// Changes pushed and confirmed by a read-back.
    Pushed {
        changes: Vec<PropChange>,
        /// The portal had been changed behind authsync's back (values confirmed earlier).
        drift: bool,
    },
    /// Not every prop resolved; nothing was sent for this service.
    Skipped(Vec<Failure>),
    /// Could not be planned or pushed (`sent`: whether a POST went out).
    Failed {
        changes: Vec<PropChange>,
        failure: Failure,
        sent: bool,
    },
    /// The portal refused the values (a 400, or a read-back without them): an incident.
    Refused {
        changes: Vec<PropChange>,
        failure: Failure,
        restore: Restore,
    },
    /// Values this portal refused before: not pushed again until the source changes.
    Held(Failure),
    /// A new value refused in an earlier rollout wave: kept from this portal.
    Halted(Failure),
}

/// What became of the portal's previous values after a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// The refusal left the service as it was.
    NotNeeded,
    /// The service held nothing before, so there is nothing to put back.
    NothingToRestore,
    /// The previous values were posted back and read back.
    Restored,
    /// Posting them back failed too, or did not read back.
    Failed(Failure),
}

impl Outcome {
    /// Anything that leaves the service not in sync because of a problem (exit status 1
    /// for `sync`, `failed`/`held`/`halted` on the status page).
    pub fn is_error(&self) -> bool {
        matches!(
            self,
            Outcome::Skipped(_)
                | Outcome::Failed { .. }
                | Outcome::Refused { .. }
                | Outcome::Held(_)
                | Outcome::Halted(_)
                | Outcome::Waiting { .. }
        )
    }

    /// A problem that makes a `plan` fail (exit 1), as opposed to changes that wait.
    pub fn is_plan_error(&self) -> bool {
        matches!(self, Outcome::Skipped(_) | Outcome::Failed { .. })
    }

    /// Changes found but not applied now (plan, rollout, hold, halt).
    pub fn is_pending(&self) -> bool {
        matches!(
            self,
            Outcome::Pending(_) | Outcome::Waiting { .. } | Outcome::Held(_) | Outcome::Halted(_)
        )
    }

    /// The failure to show for this outcome, if any.
    pub fn failure(&self) -> Option<&Failure> {
        match self {
            Outcome::Failed { failure, .. } | Outcome::Refused { failure, .. } => Some(failure),
            Outcome::Held(f) | Outcome::Halted(f) => Some(f),
            Outcome::Waiting { why, .. } => Some(why),
            Outcome::Skipped(problems) => problems.first(),
            _ => None,
        }
    }

    pub fn changes(&self) -> &[PropChange] {
        match self {
            Outcome::Pending(c)
            | Outcome::Waiting { changes: c, .. }
            | Outcome::Pushed { changes: c, .. }
            | Outcome::Failed { changes: c, .. }
            | Outcome::Refused { changes: c, .. } => c,
            _ => &[],
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServiceReport {
    pub service: String,
    pub outcome: Outcome,
    /// `source:path` → version of what was used.
    pub versions: Pairs,
    /// prop → fingerprint of the desired value (empty when not every prop resolved).
    pub fingerprints: Pairs,
    /// `source:path` → when that version was created in the store (where it says).
    pub created: Vec<(Box<str>, SystemTime)>,
}

#[derive(Debug, Clone)]
pub struct PortalReport {
    pub portal: String,
    /// The rollout wave (0-based) the portal belongs to.
    pub wave: usize,
    /// The portal could not be read at all (every service unsynced).
    pub failure: Option<Failure>,
    pub services: Vec<ServiceReport>,
}

impl PortalReport {
    pub fn is_ok(&self) -> bool {
        self.failure.is_none() && !self.services.iter().any(|s| s.outcome.is_error())
    }
}

/// Everything one cycle did.
#[derive(Debug, Clone)]
pub struct CycleReport {
    pub portals: Vec<PortalReport>,
    /// Secret values read from stores.
    pub value_reads: usize,
    /// Secret values reused from the cache (version unchanged).
    pub cache_hits: usize,
    pub duration: Duration,
    /// More than one rollout wave is configured (shown in `plan`).
    pub staged: bool,
}

impl CycleReport {
    pub fn is_ok(&self) -> bool {
        self.portals.iter().all(PortalReport::is_ok)
    }

    pub fn services(&self) -> impl Iterator<Item = (&str, &ServiceReport)> {
        self.portals
            .iter()
            .flat_map(|p| p.services.iter().map(move |s| (p.portal.as_str(), s)))
    }

    pub fn pending(&self) -> usize {
        self.services()
            .filter(|(_, s)| s.outcome.is_pending())
            .count()
    }

    pub fn pushed(&self) -> usize {
        self.services()
            .filter(|(_, s)| matches!(s.outcome, Outcome::Pushed { .. }))
            .count()
    }

    pub fn refused(&self) -> usize {
        self.services()
            .filter(|(_, s)| matches!(s.outcome, Outcome::Refused { .. }))
            .count()
    }

    /// Whether a plan found a problem (not just pending changes).
    pub fn has_plan_errors(&self) -> bool {
        self.portals
            .iter()
            .any(|p| p.failure.is_some() || p.services.iter().any(|s| s.outcome.is_plan_error()))
    }

    /// `ok` (everything in sync), `failed` (nothing could be synced) or `partial`.
    pub fn result(&self) -> &'static str {
        let total = self.services().count()
            + self
                .portals
                .iter()
                .filter(|p| p.failure.is_some() && p.services.is_empty())
                .count();
        if self.is_ok() {
            "ok"
        } else if self.failed() >= total {
            "failed"
        } else {
            "partial"
        }
    }

    /// Problems (skipped, failed, refused services; unreadable portals), not counting
    /// services held or waiting on purpose.
    pub fn errors(&self) -> usize {
        self.services()
            .filter(|(_, s)| {
                matches!(
                    s.outcome,
                    Outcome::Skipped(_) | Outcome::Failed { .. } | Outcome::Refused { .. }
                )
            })
            .count()
            + self
                .portals
                .iter()
                .filter(|p| p.failure.is_some() && p.services.is_empty())
                .count()
    }

    pub fn failed(&self) -> usize {
        self.services()
            .filter(|(_, s)| s.outcome.is_error())
            .count()
            + self
                .portals
                .iter()
                .filter(|p| p.failure.is_some() && p.services.is_empty())
                .count()
    }
}

/// Renders a cycle report. `applied` picks the wording (plan vs. sync).
pub fn render(report: &CycleReport, applied: bool) -> String {
    let mut out = String::new();
    for p in &report.portals {
        let wave = if report.staged {
            format!(" (wave {})", p.wave + 1)
        } else {
            String::new()
        };
        if let Some(e) = &p.failure {
            let _ = writeln!(out, "portal {}{wave}: ERROR {e}", p.portal);
            continue;
        }
        let _ = writeln!(out, "portal {}{wave}", p.portal);
        for s in &p.services {
            service_lines(&mut out, s, applied);
        }
    }
    let changes: usize = report
        .services()
        .map(|(_, s)| match &s.outcome {
            Outcome::Pending(c) | Outcome::Pushed { changes: c, .. } => c.len(),
            _ => 0,
        })
        .sum();
    let in_sync = report
        .services()
        .filter(|(_, s)| matches!(s.outcome, Outcome::InSync))
        .count();
    let held = report
        .services()
        .filter(|(_, s)| matches!(s.outcome, Outcome::Held(_) | Outcome::Halted(_)))
        .count();
    let _ = writeln!(
        out,
        "\n{}: {changes} prop change(s) in {} service(s); {in_sync} in sync; {held} held or halted; {} error(s).",
        if applied { "Sync" } else { "Plan" },
        if applied {
            report.pushed()
        } else {
            report
                .services()
                .filter(|(_, s)| matches!(s.outcome, Outcome::Pending(_)))
                .count()
        },
        report.errors()
    );
    out
}

fn service_lines(out: &mut String, s: &ServiceReport, applied: bool) {
    let name = &s.service;
    match &s.outcome {
        Outcome::InSync => {
            let _ = writeln!(out, "  = {name} (in sync)");
        }
        Outcome::Pending(changes) => {
            let verb = if applied {
                "not pushed"
            } else {
                "would change"
            };
            let _ = writeln!(out, "  ~ {name} ({verb})");
            changes_block(out, changes);
        }
        Outcome::Waiting { changes, why, .. } => {
            let _ = writeln!(out, "  … {name} WAITING: {why}");
            changes_block(out, changes);
        }
        Outcome::Pushed { changes, drift } => {
            let what = if *drift {
                "pushed, verified; drift corrected"
            } else {
                "pushed, verified"
            };
            let _ = writeln!(out, "  ~ {name} ({what})");
            changes_block(out, changes);
        }
        Outcome::Skipped(problems) => {
            let _ = writeln!(out, "  ! {name} SKIPPED, nothing sent:");
            for pr in problems {
                let _ = writeln!(out, "      {pr}");
            }
        }
        Outcome::Failed {
            changes, failure, ..
        } => {
            let _ = writeln!(out, "  ! {name} FAILED: {failure}");
            changes_block(out, changes);
        }
        Outcome::Refused {
            changes,
            failure,
            restore,
        } => {
            let after = match restore {
                Restore::Restored => "; the previous values were restored".to_string(),
                Restore::NotNeeded => "; the service kept its previous values".to_string(),
                Restore::NothingToRestore => {
                    "; the service was empty before, nothing to restore".to_string()
                }
                Restore::Failed(f) => format!("; RESTORE FAILED too: {f}"),
            };
            let _ = writeln!(out, "  ! {name} REFUSED by the portal: {failure}{after}");
            changes_block(out, changes);
        }
        Outcome::Held(why) => {
            let _ = writeln!(out, "  ! {name} HELD: {why}");
        }
        Outcome::Halted(why) => {
            let _ = writeln!(out, "  ! {name} HALTED: {why}");
        }
    }
}

fn changes_block(out: &mut String, changes: &[PropChange]) {
    for c in changes {
        let old = c.old.as_deref().unwrap_or("(empty)");
        let new = c.new.as_deref().unwrap_or("(empty)");
        let _ = writeln!(
            out,
            "      {} {:<24} {old} → {new}",
            c.kind.symbol(),
            c.prop
        );
    }
}
