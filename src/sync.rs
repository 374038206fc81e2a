//! One cycle: resolve secrets → read each portal → plan → push what differs → read back
//! → record state.
//!
//! Portals are worked on concurrently (bounded by `concurrency`), each with its own
//! timeouts and retries, so one failing portal never stops or delays the others. A
//! service is pushed only when every one of its props resolved (guarantee 1), only the
//! differing props are sent (2), and every push is verified by a read-back (3). With
//! `drift = "ignore"`, a portal is not even read unless a source value changed since
//! the push recorded in the state file.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};

use crate::config::{Config, Drift};
use crate::fingerprint::Fingerprinter;
use crate::mapping::{self, Filter};
use crate::metrics::metrics;
use crate::plan;
use crate::portal::{PortalClient, PortalError, PortalService};
use crate::report::{CycleReport, Outcome, PortalReport, ServiceReport};
use crate::resolve::{self, Desired, Freshness, SecretCache};
use crate::secret::{ExposeSecret, SecretString};
use crate::sources::Sources;
use crate::state::{Interner, LastResult, Pairs, State};

/// Whether a cycle only looks or also writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Read sources and portals, compute the changes, send nothing.
    Plan,
    /// Also push the changes, verify them and record state.
    Apply,
}

/// How to run one cycle.
#[derive(Debug, Clone, Copy)]
pub struct CycleOptions {
    pub mode: Mode,
    pub freshness: Freshness,
    /// Skip portals that are backed off after repeated failures (scheduled cycles).
    pub respect_backoff: bool,
}

impl CycleOptions {
    /// A one-shot command: fresh reads, no backoff.
    pub fn once(mode: Mode) -> CycleOptions {
        CycleOptions {
            mode,
            freshness: Freshness::Fresh,
            respect_backoff: false,
        }
    }
}

/// Consecutive failures of one portal and when it may be tried again.
#[derive(Debug, Clone, Copy)]
struct Health {
    failures: u32,
    next_try: Instant,
}

/// Pushes in flight to one portal at once.
const PUSH_CONCURRENCY: usize = 4;

/// Longest a failing portal is left alone between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(15 * 60);
const BASE_BACKOFF: Duration = Duration::from_secs(15);

/// Long-lived pieces a cycle needs: the config, connected sources, portal clients,
/// the secret cache and per-portal health.
pub struct Engine {
    pub config: Arc<Config>,
    pub sources: Sources,
    pub portals: BTreeMap<String, Arc<PortalClient>>,
    pub fingerprints: Fingerprinter,
    /// Problems met while building the engine (reported by every cycle).
    pub setup_errors: Vec<(String, String)>,
    cache: SecretCache,
    health: Mutex<HashMap<String, Health>>,
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
            cache: SecretCache::default(),
            health: Mutex::new(HashMap::new()),
        }
    }

    /// Runs one cycle over the targets `filter` selects. In [`Mode::Apply`] the outcome
    /// is recorded in `state` (the caller saves it).
    pub async fn cycle(
        &self,
        filter: &Filter,
        opts: CycleOptions,
        state: &mut State,
    ) -> CycleReport {
        let started = Instant::now();
        tracing::debug!(freshness = ?opts.freshness, "cycle started");
        let targets = mapping::targets(&self.config, filter);
        let resolution =
            resolve::resolve(&targets, &self.sources, &self.cache, opts.freshness).await;

        // Group per portal, keeping the config's order.
        let mut per_portal: BTreeMap<String, Vec<Desired>> = BTreeMap::new();
        for d in resolution.desired {
            per_portal.entry(d.portal.clone()).or_default().push(d);
        }
        let concurrency = self.config.sync.concurrency.max(1);
        let snapshot: &State = state;
        let mut portals: Vec<PortalReport> = stream::iter(per_portal)
            .map(|(portal, desired)| self.portal_cycle(portal, desired, opts, snapshot))
            .buffer_unordered(concurrency)
            .collect()
            .await;
        portals.sort_by(|a, b| a.portal.cmp(&b.portal));
        let report = CycleReport {
            portals,
            value_reads: resolution.value_reads,
            cache_hits: resolution.cache_hits,
            duration: started.elapsed(),
        };
        if opts.mode == Mode::Apply {
            self.record(
                &report,
                state,
                filter.portals.is_empty() && filter.services.is_empty(),
            );
        }
        tracing::info!(
            portals = report.portals.len(),
            pushed = report.pushed(),
            pending = report.pending(),
            failed = report.failed(),
            value_reads = report.value_reads,
            cache_hits = report.cache_hits,
            duration_ms = report.duration.as_millis() as u64,
            result = report.result(),
            "cycle finished"
        );
        report
    }

    /// Fingerprints of a target's desired values (empty when not every prop resolved).
    /// Computed once per target and cycle: the drift, `Bad keys` and state checks all
    /// compare against these.
    fn fingerprint(&self, d: &Desired) -> Pairs {
        d.values
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), self.fingerprints.of(v)))
            .collect()
    }

    async fn portal_cycle(
        &self,
        portal: String,
        desired: Vec<Desired>,
        opts: CycleOptions,
        state: &State,
    ) -> PortalReport {
        if opts.respect_backoff {
            if let Some(wait) = self.backoff_left(&portal) {
                let error = format!(
                    "backed off after repeated failures; next attempt in {}s",
                    wait.as_secs()
                );
                return PortalReport {
                    portal,
                    error: Some(error),
                    services: desired_reports(&desired),
                };
            }
        }
        let Some(client) = self.portals.get(&portal).cloned() else {
            return PortalReport {
                portal,
                error: Some("portal client could not be built".into()),
                services: desired_reports(&desired),
            };
        };

        // drift = "ignore": services whose values match the last confirmed push need no
        // portal request at all.
        let mut services = Vec::new();
        let mut to_check = Vec::new();
        for d in desired {
            let fingerprints = self.fingerprint(&d);
            let unchanged = self.config.sync.drift == Drift::Ignore
                && d.values.is_ok()
                && confirmed(state, &portal, &d.service).is_some_and(|c| *c == fingerprints);
            if unchanged {
                services.push(service_report(&d, &fingerprints, Outcome::InSync));
            } else {
                to_check.push((d, fingerprints));
            }
        }
        if to_check.is_empty() {
            return PortalReport {
                portal,
                error: None,
                services,
            };
        }

        let actual = match client.services().await {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(portal = %portal, error = %e, "cannot read the portal's services; skipping this portal");
                services.extend(desired_reports(to_check.iter().map(|(d, _)| d)));
                return PortalReport {
                    portal,
                    error: Some(e.to_string()),
                    services,
                };
            }
        };

        let mut to_push: Vec<(usize, plan::ServicePlan, BTreeMap<String, SecretString>)> =
            Vec::new();
        for (d, fingerprints) in to_check {
            let report = |outcome| service_report(&d, &fingerprints, outcome);
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
                Ok(p) if opts.mode == Mode::Plan => {
                    services.push(report(Outcome::Pending(p.changes)))
                }
                Ok(p) => {
                    // After `Bad keys` the portal cleared the service. Pushing the very
                    // same values again would be refused again — an incident and a
                    // POST every cycle — and could wipe a fix an admin typed into the
                    // portal meanwhile. Scheduled cycles wait until the source values
                    // change; a trigger, a restart or a one-shot `sync` tries once more.
                    if opts.respect_backoff
                        && refused_as_bad_keys(state, &portal, &d.service, &fingerprints)
                    {
                        tracing::warn!(portal = %portal, service = %d.service, "not pushed again: the portal refused these very values with `Bad keys`");
                        services.push(report(Outcome::Failed {
                            changes: vec![],
                            error: "not pushed again: the portal refused these very values with `Bad keys` and cleared the service; fix the secret in the store, or trigger a sync to retry".into(),
                            rejected: true,
                            bad_keys: true,
                        }));
                        continue;
                    }
                    services.push(report(Outcome::Pending(p.changes.clone())));
                    to_push.push((services.len() - 1, p, values.clone()));
                }
            }
        }

        // Services of one portal are independent: push a few at once (well under the
        // portal's limit of 15 concurrent writes per user).
        let sent: Vec<_> = stream::iter(to_push)
            .map(|(idx, p, values)| {
                let client = client.clone();
                let service = services[idx].service.clone();
                async move {
                    let result = client.set(&service, &p.payload).await;
                    (idx, p, values, result)
                }
            })
            .buffer_unordered(PUSH_CONCURRENCY)
            .collect()
            .await;
        let mut sent = sent;
        sent.sort_by_key(|(idx, ..)| *idx);
        let mut pushed: Vec<(usize, BTreeMap<String, SecretString>)> = Vec::new();
        for (idx, p, values, result) in sent {
            let service = services[idx].service.clone();
            let props: Vec<&str> = p.changes.iter().map(|c| c.prop.as_str()).collect();
            // A push while the sources still match the last confirmed values means the
            // portal was edited behind our back: a drift correction.
            let drift = confirmed(state, &portal, &service)
                .is_some_and(|c| *c == services[idx].fingerprints);
            match result {
                Ok(changed) => {
                    tracing::info!(portal = %portal, service = %service, props = %props.join(","), drift_correction = drift, portal_reported_change = changed, "pushed");
                    if drift {
                        metrics().drift_correction(&portal, &service);
                    }
                    services[idx].outcome = Outcome::Pushed(p.changes);
                    pushed.push((idx, values));
                }
                Err(e) => {
                    let bad_keys = matches!(e, PortalError::BadKeys);
                    if bad_keys {
                        metrics().bad_keys(&portal, &service);
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
            self.verify(&client, &portal, &mut services, pushed).await;
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

    /// Time left before a backed-off portal may be tried again.
    fn backoff_left(&self, portal: &str) -> Option<Duration> {
        let health = self.health.lock().ok()?;
        let h = health.get(portal)?;
        h.next_try
            .checked_duration_since(Instant::now())
            .filter(|d| !d.is_zero())
    }

    /// Records the cycle: state entries, metrics, per-portal health.
    fn record(&self, report: &CycleReport, state: &mut State, full: bool) {
        let now = chrono::Utc::now().timestamp();
        let mut shared = Interner::default();
        for p in &report.portals {
            let backed_off = p
                .error
                .as_deref()
                .is_some_and(|e| e.starts_with("backed off"));
            let entry = state.portals.entry(p.portal.clone()).or_default();
            for s in &p.services {
                let (result, error) = match (&p.error, &s.outcome) {
                    (Some(e), _) => (LastResult::Failed, Some(e.as_str().into())),
                    (None, Outcome::InSync) | (None, Outcome::Pushed(_)) => (LastResult::Ok, None),
                    (None, Outcome::Pending(_)) => (LastResult::Pending, None),
                    (None, Outcome::Skipped(problems)) => {
                        (LastResult::Skipped, Some(problems.join("; ").into()))
                    }
                    (
                        None,
                        Outcome::Failed {
                            rejected: true,
                            error,
                            ..
                        },
                    ) => (LastResult::Rejected, Some(error.as_str().into())),
                    (None, Outcome::Failed { error, .. }) => {
                        (LastResult::Failed, Some(error.as_str().into()))
                    }
                };
                // Updated in place, copying only what changed: in a quiet cycle over
                // thousands of services this allocates nothing.
                let slot = entry.services.entry_or_default(&s.service);
                slot.last_attempt = now;
                slot.result = result;
                slot.error = error;
                match result {
                    LastResult::Ok => {
                        replace_if_changed(&mut slot.confirmed, &s.fingerprints, &mut shared);
                        replace_if_changed(&mut slot.versions, &s.versions, &mut shared);
                        slot.bad_keys = Pairs::default();
                    }
                    // Skipped: nothing was sent, the portal keeps what it had.
                    LastResult::Skipped => {}
                    // Unknown portal state after a failure: compare afresh next time.
                    _ => slot.confirmed = Pairs::default(),
                }
                if let Outcome::Failed { bad_keys: true, .. } = &s.outcome {
                    slot.bad_keys = shared.intern(&s.fingerprints);
                }
                let push_result = match &s.outcome {
                    Outcome::Pushed(_) => Some("ok"),
                    // (A rejection without changes was not pushed: held after `Bad keys`.)
                    Outcome::Failed {
                        rejected: true,
                        changes,
                        ..
                    } if !changes.is_empty() => Some("rejected"),
                    Outcome::Failed { changes, .. } if !changes.is_empty() => Some("error"),
                    _ => None,
                };
                if let Some(r) = push_result {
                    metrics().push(&p.portal, &s.service, r);
                }
                metrics().out_of_sync(&p.portal, &s.service, result != LastResult::Ok);
            }
            entry.services.shrink_to_fit();
            if p.is_ok() {
                entry.last_success = Some(now);
                metrics().last_success(&p.portal, now as f64);
            }
            if !backed_off {
                self.note_health(&p.portal, p.error.is_none());
            }
        }
        if full {
            // Forget portals and services no longer in the config.
            let config = &self.config;
            state
                .portals
                .retain(|name, _| config.portals.contains_key(name));
            for (name, ps) in state.portals.iter_mut() {
                ps.services.retain(|svc, _| {
                    config
                        .maps
                        .iter()
                        .any(|m| m.service == svc && m.applies_to(name))
                });
            }
        }
    }

    fn note_health(&self, portal: &str, ok: bool) {
        let Ok(mut health) = self.health.lock() else {
            return;
        };
        if ok {
            health.remove(portal);
            return;
        }
        let h = health.entry(portal.to_string()).or_insert(Health {
            failures: 0,
            next_try: Instant::now(),
        });
        h.failures += 1;
        let wait = BASE_BACKOFF
            .saturating_mul(2u32.saturating_pow(h.failures.saturating_sub(1).min(10)))
            .min(MAX_BACKOFF);
        h.next_try = Instant::now() + wait;
        tracing::warn!(portal = %portal, failures = h.failures, retry_in_s = wait.as_secs(), "portal failing; backing off");
    }

    /// Releases source sessions (revokes login tokens). Call once, at the end.
    pub async fn close(&self) {
        self.sources.close().await;
    }

    /// Drops cached secret values (after a config reload).
    pub fn clear_cache(&self) {
        self.cache.clear();
    }
}

/// The confirmed fingerprints recorded for a service, if its last attempt succeeded.
fn confirmed<'a>(state: &'a State, portal: &str, service: &str) -> Option<&'a Pairs> {
    state
        .service(portal, service)
        .filter(|s| s.result == LastResult::Ok && !s.confirmed.is_empty())
        .map(|s| &s.confirmed)
}

/// Whether the portal refused exactly these values with `Bad keys` before.
fn refused_as_bad_keys(state: &State, portal: &str, service: &str, fingerprints: &Pairs) -> bool {
    state
        .service(portal, service)
        .is_some_and(|s| !s.bad_keys.is_empty() && s.bad_keys == *fingerprints)
}

/// Sets `slot` to `new` unless it already holds exactly that, sharing one copy of equal
/// maps across portals.
fn replace_if_changed(slot: &mut Pairs, new: &Pairs, shared: &mut Interner) {
    if slot != new {
        *slot = shared.intern(new);
    }
}

/// A target's report, with its fingerprints (shared, not copied).
fn service_report(d: &Desired, fingerprints: &Pairs, outcome: Outcome) -> ServiceReport {
    ServiceReport {
        service: d.service.clone(),
        outcome,
        versions: d.versions.clone(),
        fingerprints: fingerprints.clone(),
    }
}

/// Placeholder reports for targets of a portal that could not be worked on.
fn desired_reports<'a>(desired: impl IntoIterator<Item = &'a Desired>) -> Vec<ServiceReport> {
    desired
        .into_iter()
        .map(|d| ServiceReport {
            service: d.service.clone(),
            outcome: Outcome::Failed {
                changes: vec![],
                error: "portal unavailable".into(),
                rejected: false,
                bad_keys: false,
            },
            versions: d.versions.clone(),
            fingerprints: Pairs::default(),
        })
        .collect()
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
