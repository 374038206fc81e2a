//! One cycle: resolve secrets → read each portal → plan → push what differs → read back.
//!
//! Portals are worked on concurrently (bounded by `concurrency`), each with its own
//! timeouts and retries, so one failing portal never stops or delays the others. A
//! service is pushed only when every one of its props resolved (guarantee 1), only the
//! differing props are sent (2), and every push is verified by a read-back (3).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};

use crate::config::Config;
use crate::fingerprint::Fingerprinter;
use crate::mapping::{self, Filter};
use crate::plan::{self, PropChange};
use crate::portal::{PortalClient, PortalError, PortalService};
use crate::resolve::{self, Desired};
use crate::secret::{ExposeSecret, SecretString};
use crate::sources::Sources;

/// Whether a cycle only looks or also writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read sources and portals, compute the changes, send nothing.
    Plan,
    /// Also push the changes and verify them.
    Apply,
}

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
    pub versions: BTreeMap<String, String>,
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
    /// Secret reads sent to stores.
    pub reads: usize,
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

    pub fn failed(&self) -> usize {
        self.services()
            .filter(|(_, s)| s.outcome.is_error())
            .count()
            + self.portals.iter().filter(|p| p.error.is_some()).count()
    }
}

/// Long-lived pieces a cycle needs: the config, connected sources, portal clients.
pub struct Engine {
    pub config: Arc<Config>,
    pub sources: Sources,
    pub portals: BTreeMap<String, Arc<PortalClient>>,
    pub fingerprints: Fingerprinter,
    /// Problems met while building the engine (reported by every cycle).
    pub setup_errors: Vec<(String, String)>,
}

impl Engine {
    /// Connects sources and builds portal clients. Failures are kept per name, so the
    /// rest of the config still works.
    pub async fn new(config: Arc<Config>) -> Engine {
        let (sources, source_errors) = Sources::connect(&config).await;
        let mut setup_errors: Vec<(String, String)> = source_errors
            .into_iter()
            .map(|(name, e)| {
                tracing::error!(source = %name, error = %e, "source unavailable");
                (format!("source {name}"), e.to_string())
            })
            .collect();
        let mut portals = BTreeMap::new();
        for (name, cfg) in &config.portals {
            match PortalClient::new(name, cfg) {
                Ok(c) => {
                    portals.insert(name.clone(), Arc::new(c));
                }
                Err(e) => {
                    tracing::error!(portal = %name, error = %e, "portal client unavailable");
                    setup_errors.push((format!("portal {name}"), e.to_string()));
                }
            }
        }
        let fingerprints = Fingerprinter::for_state_file(&config.sync.state_file);
        Engine {
            config,
            sources,
            portals,
            fingerprints,
            setup_errors,
        }
    }

    /// Runs one cycle over the targets `filter` selects.
    pub async fn cycle(&self, filter: &Filter, mode: Mode) -> CycleReport {
        let started = Instant::now();
        let targets = mapping::targets(&self.config, filter);
        let resolution = resolve::resolve(&targets, &self.sources).await;

        // Group the desired values per portal, keeping the config's order.
        let mut per_portal: BTreeMap<String, Vec<Desired>> = BTreeMap::new();
        for d in resolution.desired {
            per_portal.entry(d.portal.clone()).or_default().push(d);
        }
        let concurrency = self.config.sync.concurrency.max(1);
        let mut portals: Vec<PortalReport> = stream::iter(per_portal)
            .map(|(portal, desired)| self.portal_cycle(portal, desired, mode))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        portals.sort_by(|a, b| a.portal.cmp(&b.portal));
        let report = CycleReport {
            portals,
            reads: resolution.reads,
            duration: started.elapsed(),
        };
        tracing::info!(
            portals = report.portals.len(),
            pushed = report.pushed(),
            pending = report.pending(),
            failed = report.failed(),
            secret_reads = report.reads,
            duration_ms = report.duration.as_millis() as u64,
            result = if report.is_ok() { "ok" } else { "partial" },
            "cycle finished"
        );
        report
    }

    async fn portal_cycle(
        &self,
        portal: String,
        desired: Vec<Desired>,
        mode: Mode,
    ) -> PortalReport {
        let Some(client) = self.portals.get(&portal) else {
            return PortalReport {
                portal,
                error: Some("portal client could not be built".into()),
                services: vec![],
            };
        };
        let actual = match client.services().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(portal = %portal, error = %e, "cannot read the portal's services; skipping this portal");
                return PortalReport {
                    portal,
                    error: Some(e.to_string()),
                    services: vec![],
                };
            }
        };

        let mut services = Vec::new();
        let mut to_push: Vec<(usize, plan::ServicePlan, BTreeMap<String, SecretString>)> =
            Vec::new();
        for d in desired {
            let report = |outcome| ServiceReport {
                service: d.service.clone(),
                outcome,
                versions: d.versions.clone(),
            };
            let values = match &d.values {
                Ok(v) => v,
                Err(problems) => {
                    for p in problems {
                        tracing::error!(portal = %portal, service = %d.service, problem = %p, "service skipped: not every prop resolved; nothing sent");
                    }
                    services.push(report(Outcome::Skipped(problems.clone())));
                    continue;
                }
            };
            match plan::diff(&d.service, values, &actual, &self.fingerprints) {
                Err(e) => {
                    tracing::error!(portal = %portal, service = %d.service, error = %e, "service cannot be synced");
                    services.push(report(Outcome::Failed {
                        changes: vec![],
                        error: e.to_string(),
                        rejected: false,
                        bad_keys: false,
                    }));
                }
                Ok(p) if p.changes.is_empty() => services.push(report(Outcome::InSync)),
                Ok(p) if mode == Mode::Plan => services.push(report(Outcome::Pending(p.changes))),
                Ok(p) => {
                    services.push(report(Outcome::Pending(p.changes.clone())));
                    to_push.push((services.len() - 1, p, values.clone()));
                }
            }
        }

        let mut pushed: Vec<(usize, BTreeMap<String, SecretString>)> = Vec::new();
        for (idx, p, values) in to_push {
            let service = services[idx].service.clone();
            let props: Vec<&str> = p.changes.iter().map(|c| c.prop.as_str()).collect();
            match client.set(&service, &p.payload).await {
                Ok(changed) => {
                    tracing::info!(portal = %portal, service = %service, props = %props.join(","), portal_reported_change = changed, "pushed");
                    services[idx].outcome = Outcome::Pushed(p.changes);
                    pushed.push((idx, values));
                }
                Err(e) => {
                    let bad_keys = matches!(e, PortalError::BadKeys);
                    if bad_keys {
                        tracing::error!(portal = %portal, service = %service, props = %props.join(","), error = %e, "INCIDENT: the portal rejected the keys and cleared the service");
                    } else {
                        tracing::error!(portal = %portal, service = %service, props = %props.join(","), error = %e, "push failed");
                    }
                    services[idx].outcome = Outcome::Failed {
                        changes: p.changes,
                        error: e.to_string(),
                        rejected: e.is_rejection(),
                        bad_keys,
                    };
                }
            }
        }

        if !pushed.is_empty() {
            self.verify(client, &portal, &mut services, pushed).await;
        }
        PortalReport {
            portal,
            error: None,
            services,
        }
    }

    /// Reads the portal again and checks that every pushed value stuck (a portal drops
    /// unknown props silently and may answer `true` anyway).
    async fn verify(
        &self,
        client: &PortalClient,
        portal: &str,
        services: &mut [ServiceReport],
        pushed: Vec<(usize, BTreeMap<String, SecretString>)>,
    ) {
        let after = client.services().await;
        for (idx, values) in pushed {
            let service = services[idx].service.clone();
            let problem = match &after {
                Err(e) => Some(format!("pushed, but the read-back failed: {e}")),
                Ok(after) => mismatch(&service, &values, after, &self.fingerprints),
            };
            if let Some(problem) = problem {
                tracing::error!(portal = %portal, service = %service, problem = %problem, "read-back does not match what was pushed");
                let changes = match &services[idx].outcome {
                    Outcome::Pushed(c) => c.clone(),
                    _ => vec![],
                };
                services[idx].outcome = Outcome::Failed {
                    changes,
                    error: problem,
                    rejected: false,
                    bad_keys: false,
                };
            }
        }
    }
}

/// The first prop whose read-back value differs from what was pushed.
fn mismatch(
    service: &str,
    values: &BTreeMap<String, SecretString>,
    after: &[PortalService],
    fp: &Fingerprinter,
) -> Option<String> {
    let Some(svc) = after.iter().find(|s| s.name == service) else {
        return Some(format!("service `{service}` is missing from the read-back"));
    };
    for (prop, want) in values {
        let have = svc
            .prop(prop)
            .map(|p| p.value.expose_secret())
            .unwrap_or("");
        if have != want.expose_secret() {
            return Some(format!(
                "prop `{prop}` did not stick: the portal holds {} instead of {}",
                if have.is_empty() {
                    "an empty value".to_string()
                } else {
                    fp.of_str(have)
                },
                fp.of(want)
            ));
        }
    }
    None
}
