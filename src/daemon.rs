//! `authsync run`: the long-running service.
//!
//! One loop owns the engine and runs at most one cycle at a time. Scheduler ticks
//! (tokio-cron-scheduler: cron in UTC or a fixed interval) and `POST /trigger` requests
//! are events on channels; events that arrive during a cycle coalesce into one follow-up
//! cycle. SIGHUP reloads the config (validated first; the old one keeps running on
//! error), SIGTERM/SIGINT let the cycle in flight finish (at most [`DRAIN`]) and exit 0.
//!
//! Cheap cycles: scheduled cycles ask the stores for versions and read only values that
//! moved; the first cycle and triggered cycles read every value (version listings can
//! lag). With `drift = "ignore"` unchanged portals are not contacted at all.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, watch};
use tokio_cron_scheduler::{Job, JobScheduler};

use crate::config::{self, Config, Schedule};
use crate::mapping::Filter;
use crate::metrics::metrics;
use crate::notify;
use crate::report::CycleReport;
use crate::resolve::Freshness;
use crate::secret::SecretString;
use crate::server::{self, ServerState, TriggerRequest};
use crate::state::State;
use crate::sync::{CycleOptions, Engine, Mode};

/// Longest wait for the cycle in flight at SIGTERM.
pub const DRAIN: Duration = Duration::from_secs(10);

const OK: u8 = 0;
const FAILED: u8 = 1;

/// Work waiting for the next cycle: events that arrived meanwhile, merged.
#[derive(Debug, Default)]
struct Pending {
    scheduled: bool,
    trigger: Option<Filter>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        !self.scheduled && self.trigger.is_none()
    }

    fn add_trigger(&mut self, t: TriggerRequest) {
        let merged = match self.trigger.take() {
            None => Filter {
                portals: t.portals,
                services: t.services,
            },
            // An empty list means "all": it absorbs any narrower request.
            Some(mut f) => {
                merge(&mut f.portals, t.portals);
                merge(&mut f.services, t.services);
                f
            }
        };
        self.trigger = Some(merged);
    }
}

fn merge(into: &mut Vec<String>, more: Vec<String>) {
    if into.is_empty() || more.is_empty() {
        into.clear();
        return;
    }
    for m in more {
        if !into.contains(&m) {
            into.push(m);
        }
    }
}

/// The scheduler, and the channel its ticks arrive on.
struct Ticker {
    scheduler: JobScheduler,
}

impl Ticker {
    async fn start(schedule: &Schedule, ticks: mpsc::Sender<()>) -> Result<Ticker, String> {
        let scheduler = JobScheduler::new()
            .await
            .map_err(|e| format!("cannot start the scheduler: {e}"))?;
        let send = move |_, _| {
            let ticks = ticks.clone();
            Box::pin(async move {
                // Full: a tick is already waiting; this one coalesces into it.
                let _ = ticks.try_send(());
            }) as std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>
        };
        let job = match schedule {
            Schedule::Cron(expr) => Job::new_async(expr.as_str(), send),
            Schedule::Interval(every) => Job::new_repeated_async(*every, send),
        }
        .map_err(|e| format!("invalid schedule: {e}"))?;
        scheduler
            .add(job)
            .await
            .map_err(|e| format!("cannot schedule the job: {e}"))?;
        scheduler
            .start()
            .await
            .map_err(|e| format!("cannot start the scheduler: {e}"))?;
        Ok(Ticker { scheduler })
    }

    async fn stop(mut self) {
        let _ = self.scheduler.shutdown().await;
    }
}

/// Runs the daemon until SIGTERM/SIGINT. Returns the process exit status.
pub async fn run(config: Config, path: PathBuf) -> u8 {
    match Daemon::start(config, path).await {
        Ok(daemon) => daemon.run().await,
        Err(e) => {
            tracing::error!(error = %e, "cannot start");
            eprintln!("authsync: {e}");
            FAILED
        }
    }
}

struct Daemon {
    path: PathBuf,
    engine: Engine,
    state: State,
    server: ServerState,
    ticker: Ticker,
    ticks: mpsc::Receiver<()>,
    tick_tx: mpsc::Sender<()>,
    triggers: mpsc::Receiver<TriggerRequest>,
    stop_server: watch::Sender<bool>,
    server_task: tokio::task::JoinHandle<()>,
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Daemon {
    async fn start(config: Config, path: PathBuf) -> Result<Daemon, String> {
        let token = trigger_token(&config)?;
        let listener = tokio::net::TcpListener::bind(config.server.listen)
            .await
            .map_err(|e| {
                format!(
                    "cannot listen on {}: {e} (set [server] listen)",
                    config.server.listen
                )
            })?;
        let (trigger_tx, triggers) = mpsc::channel(16);
        let server = ServerState::new(trigger_tx, token);
        let (stop_server, mut stop_rx) = watch::channel(false);
        let shutdown = async move {
            let _ = stop_rx.wait_for(|stop| *stop).await;
        };
        let serve_state = server.clone();
        let server_task = tokio::spawn(async move {
            if let Err(e) = server::serve(listener, serve_state, shutdown).await {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        });
        let (tick_tx, ticks) = mpsc::channel(1);
        let ticker = Ticker::start(&config.sync.schedule(), tick_tx.clone()).await?;
        let sig = |kind: SignalKind| {
            signal(kind).map_err(|e| format!("cannot install signal handlers: {e}"))
        };
        let (hup, term, int) = (
            sig(SignalKind::hangup())?,
            sig(SignalKind::terminate())?,
            sig(SignalKind::interrupt())?,
        );
        let (state, _) = crate::commands::load_state(&config);
        tracing::info!(
            config = %path.display(),
            listen = %config.server.listen,
            schedule = ?config.sync.schedule(),
            drift = ?config.sync.drift,
            portals = config.portals.len(),
            "authsync daemon starting"
        );
        let engine = Engine::new(Arc::new(config)).await;
        notify::spawn_watchdog(server.alive.clone());
        Ok(Daemon {
            path,
            engine,
            state,
            server,
            ticker,
            ticks,
            tick_tx,
            triggers,
            stop_server,
            server_task,
            hup,
            term,
            int,
        })
    }

    async fn run(mut self) -> u8 {
        // The first cycle runs at once and reads every value.
        let mut pending = Pending {
            trigger: Some(Filter::default()),
            scheduled: false,
        };
        let mut first = true;
        let mut reload = false;
        'outer: loop {
            if pending.is_empty() {
                tokio::select! {
                    _ = self.term.recv() => break 'outer,
                    _ = self.int.recv() => break 'outer,
                    _ = self.hup.recv() => { self.reload().await; continue; }
                    Some(()) = self.ticks.recv() => pending.scheduled = true,
                    Some(t) = self.triggers.recv() => pending.add_trigger(t),
                }
            }
            if self.server.trigger_overflow.swap(false, Ordering::AcqRel) {
                // Some trigger's lists did not fit in the queue: cover everything.
                pending.add_trigger(TriggerRequest::default());
            }
            let work = std::mem::take(&mut pending);
            let (filter, opts) = self.plan_cycle(work, first);
            if opts.freshness == Freshness::Versioned {
                // Jitter only delays scheduled cycles, never a trigger.
                if let Some(jitter) = self.engine.config.sync.jitter.filter(|j| !j.is_zero()) {
                    let wait = Duration::from_millis(
                        rand::rng().random_range(0..=jitter.as_millis() as u64),
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.term.recv() => break 'outer,
                        _ = self.int.recv() => break 'outer,
                    }
                }
            }
            let Some(filter) = filter else { continue };

            let mut state = std::mem::take(&mut self.state);
            let mut stopping = false;
            let report: Option<CycleReport> = {
                let cycle = self.engine.cycle(&filter, opts, &mut state);
                tokio::pin!(cycle);
                loop {
                    tokio::select! {
                        report = &mut cycle => break Some(report),
                        Some(()) = self.ticks.recv() => pending.scheduled = true,
                        Some(t) = self.triggers.recv() => pending.add_trigger(t),
                        _ = self.hup.recv() => reload = true,
                        _ = self.term.recv() => { stopping = true; break tokio::time::timeout(DRAIN, &mut cycle).await.ok(); }
                        _ = self.int.recv() => { stopping = true; break tokio::time::timeout(DRAIN, &mut cycle).await.ok(); }
                    }
                }
            };
            self.state = state;
            match report {
                Some(report) => self.after_cycle(&report),
                None => tracing::warn!(
                    drain_s = DRAIN.as_secs(),
                    "the cycle in flight did not finish in time; stopping anyway"
                ),
            }
            if first {
                first = false;
                self.server.ready.store(true, Ordering::Release);
                notify::ready();
            }
            if stopping {
                break;
            }
            if std::mem::take(&mut reload) {
                self.reload().await;
            }
        }
        self.shutdown().await
    }

    /// What the next cycle covers and how it reads.
    fn plan_cycle(&self, work: Pending, first: bool) -> (Option<Filter>, CycleOptions) {
        let fresh = CycleOptions {
            mode: Mode::Apply,
            freshness: Freshness::Fresh,
            retry_refused: false,
            soak: true,
        };
        if first || work.scheduled && work.trigger.is_some() {
            return (Some(Filter::default()), fresh);
        }
        match work.trigger {
            Some(filter) => match filter.check(&self.engine.config) {
                Ok(()) => (Some(filter), fresh),
                Err(e) => {
                    tracing::error!(error = %e, "trigger ignored");
                    (None, fresh)
                }
            },
            None => (
                Some(Filter::default()),
                CycleOptions {
                    mode: Mode::Apply,
                    freshness: Freshness::Versioned,
                    retry_refused: false,
                    soak: true,
                },
            ),
        }
    }

    fn after_cycle(&mut self, report: &CycleReport) {
        metrics().sync_run(report.result(), report.duration);
        if let Err(e) = self.state.save(&self.engine.config.sync.state_file) {
            tracing::error!(error = %e, "state not saved; a restart will compare every portal afresh");
        }
    }

    /// SIGHUP: load and validate the config; swap only if it is valid.
    async fn reload(&mut self) {
        notify::reloading();
        self.reload_config().await;
        notify::ready();
    }

    async fn reload_config(&mut self) {
        tracing::info!(config = %self.path.display(), "SIGHUP: reloading the config");
        let loaded = match config::load(&self.path) {
            Ok(l) => l,
            Err(e) => {
                metrics().config_reload("failed");
                tracing::error!(error = %e, "reload rejected; the previous config keeps running");
                return;
            }
        };
        for w in &loaded.warnings {
            tracing::warn!(warning = %w, "config warning");
        }
        let config = loaded.config;
        let token = match trigger_token(&config) {
            Ok(t) => t,
            Err(e) => {
                metrics().config_reload("failed");
                tracing::error!(error = %e, "reload rejected; the previous config keeps running");
                return;
            }
        };
        let old = self.engine.config.clone();
        if config.server.listen != old.server.listen {
            tracing::warn!(old = %old.server.listen, new = %config.server.listen, "[server] listen changes take effect at restart");
        }
        if config.log.format != old.log.format || config.log.level != old.log.level {
            tracing::warn!("[log] changes take effect at restart");
        }
        if config.sync.schedule() != old.sync.schedule() {
            match Ticker::start(&config.sync.schedule(), self.tick_tx.clone()).await {
                Ok(t) => {
                    let previous = std::mem::replace(&mut self.ticker, t);
                    previous.stop().await;
                }
                Err(e) => {
                    metrics().config_reload("failed");
                    tracing::error!(error = %e, "reload rejected; the previous config keeps running");
                    return;
                }
            }
        }
        if config.sync.state_file != old.sync.state_file {
            let (state, _) = crate::commands::load_state(&config);
            self.state = state;
        }
        // Services no longer mapped stop reporting out-of-sync.
        for (portal, ps) in &self.state.portals {
            for service in ps.services.keys() {
                let still = config.portals.contains_key(portal)
                    && config
                        .maps
                        .iter()
                        .any(|m| m.service == service && m.applies_to(portal));
                if !still {
                    metrics().forget_service(portal, service);
                }
            }
        }
        let previous = std::mem::replace(&mut self.engine, Engine::new(Arc::new(config)).await);
        previous.close().await;
        self.server.set_trigger_token(token);
        metrics().config_reload("ok");
        tracing::info!("config reloaded");
    }

    async fn shutdown(self) -> u8 {
        notify::stopping();
        tracing::info!("shutting down");
        self.ticker.stop().await;
        let _ = self.stop_server.send(true);
        let _ = tokio::time::timeout(Duration::from_secs(2), self.server_task).await;
        if let Err(e) = self.state.save(&self.engine.config.sync.state_file) {
            tracing::error!(error = %e, "state not saved at shutdown");
        }
        self.engine.close().await;
        tracing::info!("stopped");
        OK
    }
}

/// The trigger token, read now so a missing env var or file fails loudly at start/reload.
fn trigger_token(config: &Config) -> Result<Option<SecretString>, String> {
    match &config.server.trigger_token {
        None => Ok(None),
        Some(setting) => setting
            .read()
            .map(Some)
            .map_err(|e| format!("[server] trigger_token ({}): {e}", setting.describe())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triggers_coalesce_and_all_absorbs_narrow() {
        let mut p = Pending::default();
        p.add_trigger(TriggerRequest {
            portals: vec!["a".into()],
            services: vec!["google".into()],
            ..TriggerRequest::default()
        });
        p.add_trigger(TriggerRequest {
            portals: vec!["b".into()],
            services: vec!["google".into()],
            ..TriggerRequest::default()
        });
        let f = p.trigger.clone().unwrap_or_default();
        assert_eq!(f.portals, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(f.services, vec!["google".to_string()]);
        p.add_trigger(TriggerRequest::default());
        let f = p.trigger.unwrap_or_default();
        assert!(f.portals.is_empty() && f.services.is_empty());
    }
}
