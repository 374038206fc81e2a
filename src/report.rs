//! Human-readable output of a cycle for `plan` and `sync` (stdout). Values appear only as
//! keyed fingerprints.

use std::fmt::Write;

use crate::plan::PropChange;
use crate::sync::{CycleReport, Outcome};

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
