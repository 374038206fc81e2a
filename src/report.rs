//! What a cycle did, and its human-readable rendering for `plan` and `sync` (stdout).
//! Values appear only as keyed fingerprints.

use std::fmt::Write;
use std::time::Duration;

use crate::plan::PropChange;
use crate::state::Pairs;

/// What happened to one service on one portal.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Portal already holds the desired values.
    InSync,
    /// Changes found (plan mode).
    Pending(Vec<PropChange>),
    /// Changes pushed and verified.
    Pushed(Vec<PropChange>),
    /// Not every prop resolved; nothing was sent for this service.
    Skipped(Vec<String>),
    /// Could not be planned or pushed.
    Failed {
        changes: Vec<PropChange>,
        error: String,
        rejected: bool,
        bad_keys: bool,
    },
}

impl Outcome {
    pub fn is_error(&self) -> bool {
        matches!(self, Outcome::Skipped(_) | Outcome::Failed { .. })
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
}

#[derive(Debug, Clone)]
pub struct PortalReport {
    pub portal: String,
    /// The portal could not be read at all (every service unsynced).
    pub error: Option<String>,
    pub services: Vec<ServiceReport>,
}

impl PortalReport {
    pub fn is_ok(&self) -> bool {
        self.error.is_none() && !self.services.iter().any(|s| s.outcome.is_error())
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
            .filter(|(_, s)| matches!(s.outcome, Outcome::Pending(_)))
            .count()
    }

    pub fn pushed(&self) -> usize {
        self.services()
            .filter(|(_, s)| matches!(s.outcome, Outcome::Pushed(_)))
            .count()
    }

    /// `ok` (everything in sync), `failed` (nothing could be synced) or `partial`.
    pub fn result(&self) -> &'static str {
        let total = self.services().count()
            + self
                .portals
                .iter()
                .filter(|p| p.error.is_some() && p.services.is_empty())
                .count();
        if self.is_ok() {
            "ok"
        } else if self.failed() >= total {
            "failed"
        } else {
            "partial"
        }
    }

    pub fn failed(&self) -> usize {
        self.services()
            .filter(|(_, s)| s.outcome.is_error())
            .count()
            + self.portals.iter().filter(|p| p.error.is_some()).count()
    }
}

/// Renders a cycle report. `applied` picks the wording (plan vs. sync).
pub fn render(report: &CycleReport, applied: bool) -> String {
    let mut out = String::new();
    for p in &report.portals {
        if let Some(e) = &p.error {
            let _ = writeln!(out, "portal {}: ERROR {e}", p.portal);
            continue;
        }
        let _ = writeln!(out, "portal {}", p.portal);
        for s in &p.services {
            match &s.outcome {
                Outcome::InSync => {
                    let _ = writeln!(out, "  = {} (in sync)", s.service);
                }
                Outcome::Pending(changes) => {
                    let verb = if applied {
                        "not pushed"
                    } else {
                        "would change"
                    };
                    let _ = writeln!(out, "  ~ {} ({verb})", s.service);
                    changes_block(&mut out, changes);
                }
                Outcome::Pushed(changes) => {
                    let _ = writeln!(out, "  ~ {} (pushed, verified)", s.service);
                    changes_block(&mut out, changes);
                }
                Outcome::Skipped(problems) => {
                    let _ = writeln!(out, "  ! {} SKIPPED, nothing sent:", s.service);
                    for pr in problems {
                        let _ = writeln!(out, "      {pr}");
                    }
                }
                Outcome::Failed {
                    changes,
                    error,
                    bad_keys,
                    ..
                } => {
                    let what = if *bad_keys {
                        "REJECTED (Bad keys: the portal cleared this service)"
                    } else {
                        "FAILED"
                    };
                    let _ = writeln!(out, "  ! {} {what}: {error}", s.service);
                    changes_block(&mut out, changes);
                }
            }
        }
    }
    let changes: usize = report
        .services()
        .map(|(_, s)| match &s.outcome {
            Outcome::Pending(c) | Outcome::Pushed(c) => c.len(),
            _ => 0,
        })
        .sum();
    let in_sync = report
        .services()
        .filter(|(_, s)| matches!(s.outcome, Outcome::InSync))
        .count();
    let _ = writeln!(
        out,
        "\n{}: {changes} prop change(s) in {} service(s); {in_sync} in sync; {} error(s).",
        if applied { "Sync" } else { "Plan" },
        if applied {
            report.pushed()
        } else {
            report.pending()
        },
        report.failed()
    );
    out
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
