//! One cycle: resolve secrets → read each portal → plan → push what differs → read back
//! (→ restore after a refusal) → record state.
//!
//! Portals are worked on concurrently (bounded by `concurrency`), each with its own
//! timeouts and retries, so one failing portal never stops or delays the others. A
//! service is pushed only when every one of its props resolved (guarantee 1), only the
//! differing props are sent (2), and every push is verified by a read-back (3).
//!
//! With a staged rollout, portals are worked on wave by wave: a wave's outcome is
//! recorded (and, in the daemon, saved) before the next wave starts, and new values go to
//! a wave only once the earlier waves confirmed them ([`rollout`]).
//!
//! | file | concern |
//! |---|---|
//! | `mod.rs` | the [`Engine`] and the cycle, wave by wave |
//! | [`push`] | one portal: read, decide, push, read back, restore |
//! | [`rollout`] | waves, the gate between them, halts |
//! | [`record`] | the outcome into the state file, metrics and logs — in one place |
//! | [`health`] | portals that keep failing: probed once per cycle, logs rate-limited |

mod health;
mod push;
mod record;
mod rollout;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use futures::stream::{self, StreamExt};

use crate::config::Config;
use crate::failure::Failure;
use crate::fingerprint::Fingerprinter;
use crate::mapping::{self, Filter};
use crate::portal::Portal;
use crate::report::{CycleReport, PortalReport};
use crate::resolve::{self, Desired, Freshness, SecretCache};
use crate::sources::Sources;
use crate::state::{CycleRecord, Halt, Pairs, SourceRecord, State};

use health::Health;
use rollout::Rollout;

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
    /// Push values a portal refused before once more (`sync --retry-refused`,
    /// `POST /trigger {"retry_refused": true}`), and lift rollout halts.
    pub retry_refused: bool,
    /// Apply `[sync] rollout_soak` between waves (the daemon; one-shot commands run the
    /// waves back to back).
    pub soak: bool,
}

impl CycleOptions {
    /// A one-shot command: fresh reads, waves back to back.
    pub fn once(mode: Mode) -> CycleOptions {
        CycleOptions {
            mode,
            freshness: Freshness::Fresh,
            retry_refused: false,
            soak: false,
        }
    }
}

/// One target of a cycle, with the fingerprints of its desired values (computed once:
/// the hold, drift, gate and state checks all compare against these).
pub(crate) struct Prepared {
    pub desired: Desired,
    /// prop → fingerprint; empty when not every prop resolved.
    pub fps: Pairs,
}

/// Long-lived pieces a cycle needs: the config, connected sources, portal clients, the
/// secret cache and per-portal health.
pub struct Engine {
    pub config: Arc<Config>,
    pub sources: Sources,
    pub portals: BTreeMap<String, Arc<dyn Portal>>,
    pub fingerprints: Fingerprinter,
    /// Problems met while building the engine (reported by every cycle).
    pub setup_errors: Vec<(String, Failure)>,
    cache: SecretCache,
    health: Health,
    rollout: Rollout,
}

impl Engine {
    /// Connects sources and builds portal clients. Failures are kept per name, so the
    /// rest of the config still works.
    pub async fn new(config: Arc<Config>) -> Engine {
        let (sources, source_errors) = Sources::connect(&config).await;
        let mut setup_errors: Vec<(String, Failure)> = source_errors
            .into_iter()
            .map(|(name, e)| {
                tracing::error!(source = %name, error = %e, "source unavailable");
                (
                    format!("source {name}"),
                    Failure::new((&e).into(), e.to_string()),
                )
            })
            .collect();
        let mut portals = BTreeMap::new();
        for (name, cfg) in &config.portals {
            match crate::portal::connect(name, cfg) {
                Ok(c) => {
                    portals.insert(name.clone(), c);
                }
                Err(e) => {
                    tracing::error!(portal = %name, error = %e, "portal client unavailable");
                    setup_errors.push((format!("portal {name}"), e.failure()));
                }
            }
        }
        let fingerprints = Fingerprinter::for_state_file(&config.sync.state_file);
        let mut engine = Engine::from_parts(config, sources, portals, fingerprints);
        engine.setup_errors = setup_errors;
        engine
    }

    /// An engine from ready-made parts (tests use in-memory sources and portals).
    pub fn from_parts(
        config: Arc<Config>,
        sources: Sources,
        portals: BTreeMap<String, Arc<dyn Portal>>,
        fingerprints: Fingerprinter,
    ) -> Engine {
        let rollout = Rollout::new(&config, &fingerprints);
        Engine {
            config,
            sources,
            portals,
            fingerprints,
            setup_errors: Vec::new(),
            cache: SecretCache::default(),
            health: Health::default(),
            rollout,
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
        self.cycle_with(filter, opts, state, |_| {}).await
    }

    /// [`Engine::cycle`], calling `after_wave` with the state once each rollout wave is
    /// recorded (the daemon saves it there, so a crash mid-rollout resumes where it was).
    pub async fn cycle_with(
        &self,
        filter: &Filter,
        opts: CycleOptions,
        state: &mut State,
        mut after_wave: impl FnMut(&State),
    ) -> CycleReport {
        let started = Instant::now();
        let started_unix = chrono::Utc::now().timestamp();
        tracing::debug!(freshness = ?opts.freshness, "cycle started");
        let targets = mapping::targets(&self.config, filter);
        let resolution =
            resolve::resolve(&targets, &self.sources, &self.cache, opts.freshness).await;
        if opts.mode == Mode::Apply {
            record_sources(state, &resolution.sources, started_unix);
        }

        // Group per portal and wave, keeping the config's order within a portal.
        let mut waves: BTreeMap<usize, BTreeMap<String, Vec<Prepared>>> = BTreeMap::new();
        for desired in resolution.desired {
            let fps = self.fingerprint(&desired);
            waves
                .entry(self.config.sync.wave_of(&desired.portal))
                .or_default()
                .entry(desired.portal.clone())
                .or_default()
                .push(Prepared { desired, fps });
        }
        let desired_fps: BTreeMap<(&str, &str), &Pairs> = waves
            .values()
            .flat_map(|w| w.values().flatten())
            .filter(|p| !p.fps.is_empty())
            .map(|p| {
                (
                    (p.desired.portal.as_str(), p.desired.service.as_str()),
                    &p.fps,
                )
            })
            .collect();
        let halts = self
            .rollout
            .active_halts(state, &desired_fps, opts.retry_refused);
        if opts.mode == Mode::Apply {
            // Halts whose source changed (or that a retry lifts) are over; the others
            // are exported (also right after a restart).
            state.halts.retain(|service, _| {
                let keep = halts.contains_key(service);
                crate::metrics::metrics().rollout_halted(service, keep);
                keep
            });
        }
        let mut desired_index = push::DesiredIndex::new();
        for ((portal, service), fps) in desired_fps {
            desired_index
                .entry(service.to_string())
                .or_default()
                .entry(fps.clone())
                .or_default()
                .push(portal.to_string());
        }

        let concurrency = self.config.sync.concurrency.max(1);
        let mut portals: Vec<PortalReport> = Vec::new();
        for (wave, members) in waves {
            let now = chrono::Utc::now().timestamp();
            // Applying, the state's halts are the live ones (earlier waves of this cycle
            // may have added one); planning, the ones that would still hold.
            let wave_halts: BTreeMap<String, Halt> = match opts.mode {
                Mode::Apply => state
                    .halts
                    .iter()
                    .map(|(s, h)| (s.to_string(), h.clone()))
                    .collect(),
                Mode::Plan => halts.clone(),
            };
            let mut reports: Vec<PortalReport> = {
                let ctx = push::Ctx {
                    engine: self,
                    opts,
                    state,
                    wave,
                    halts: &wave_halts,
                    desired: &desired_index,
                    now,
                };
                stream::iter(members)
                    .map(|(portal, prepared)| ctx.portal(portal, prepared))
                    .buffer_unordered(concurrency)
                    .collect()
                    .await
            };
            reports.sort_by(|a, b| a.portal.cmp(&b.portal));
            if opts.mode == Mode::Apply {
                self.record(&reports, state, now);
                after_wave(state);
            }
            portals.extend(reports);
        }
        let report = CycleReport {
            portals,
            value_reads: resolution.value_reads,
            cache_hits: resolution.cache_hits,
            duration: started.elapsed(),
            staged: self.config.sync.waves() > 1,
        };
        if opts.mode == Mode::Apply {
            if filter.is_everything() {
                self.forget_unmapped(state);
            }
            state.last_cycle = Some(CycleRecord {
                started: started_unix,
                finished: chrono::Utc::now().timestamp(),
                result: report.result().to_string(),
            });
        }
        tracing::info!(
            portals = report.portals.len(),
            pushed = report.pushed(),
            refused = report.refused(),
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
    fn fingerprint(&self, d: &Desired) -> Pairs {
        d.values
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str(), self.fingerprints.of(v)))
            .collect()
    }

    /// Drops state kept for portals and services the config no longer maps.
    fn forget_unmapped(&self, state: &mut State) {
        let config = &self.config;
        state
            .portals
            .retain(|name, _| config.portals.contains_key(name));
        state
            .sources
            .retain(|name, _| config.sources.contains_key(name));
        for (name, ps) in state.portals.iter_mut() {
            ps.services.retain(|svc, _| {
                config
                    .maps
                    .iter()
                    .any(|m| m.service == svc && m.applies_to(name))
            });
        }
        state.halts.retain(|svc, h| {
            let keep = config
                .maps
                .iter()
                .any(|m| m.service == svc && m.applies_to(&h.portal));
            if !keep {
                crate::metrics::metrics().rollout_halted(svc, false);
            }
            keep
        });
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

/// Source health for the status page: how each store used by this cycle answered.
fn record_sources(state: &mut State, health: &[(String, Option<Failure>)], now: i64) {
    for (name, failure) in health {
        *state.sources.entry_or_default(name) = SourceRecord {
            ok: failure.is_none(),
            error: failure.as_ref().map(|f| f.message.as_str().into()),
            error_kind: failure.as_ref().map(|f| f.kind),
            checked_at: now,
        };
    }
}
