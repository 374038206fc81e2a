//! `authsync run`: the long-running service.
//!
//! One loop owns the engine and runs at most one cycle at a time. Scheduler ticks
//! (tokio-cron-scheduler: cron in UTC or a fixed interval), `POST /trigger` requests and
//! the end of a rollout wave's soak time are events on channels; events that arrive
//! during a cycle coalesce into one follow-up cycle. SIGHUP reloads the config
//! (validated first; the old one keeps running on error); SIGTERM/SIGINT cancel the
//! [`Shutdown`] token every task watches, let the cycle in flight finish (at most
//! [`DRAIN`]) and exit 0.
//!
//! Cheap cycles: scheduled cycles ask the stores for versions and read only values that
//! moved; the first cycle and triggered cycles read every value they need (version
//! listings can lag). With `drift = "ignore"` unchanged portals are not contacted at all.
//!
//! Liveness: the loop beats a heartbeat ([`Liveness`]) whenever it makes progress; a
//! cycle longer than `cycle_timeout` is cancelled and reported, and `/healthz` (and the
//! systemd watchdog) fail when the loop is silent for `cycle_timeout` plus one interval.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};
use tokio_cron_scheduler::{Job, JobScheduler};
use tokio_util::sync::CancellationToken;

use crate::config::{self, Config, Schedule, SecretRef};
use crate::events::{self, EventBatch};
use crate::liveness::Liveness;
use crate::mapping::{self, Filter};
use crate::metrics::metrics;
use crate::notify;
use crate::report::{CycleReport, Outcome};
use crate::resolve::Freshness;
use crate::secret::SecretString;
use crate::server::{self, ServerState, TriggerRequest};
use crate::sources::aws::AwsSourceConfig;
use crate::state::{CycleRecord, State};
use crate::sync::{CycleOptions, Engine, Mode};

/// Longest wait for the cycle in flight at SIGTERM.
pub const DRAIN: Duration = Duration::from_secs(10);

/// How often the loop beats while it waits for work (it is responsive, so alive).
const IDLE_BEAT: Duration = Duration::from_secs(5);

const OK: u8 = 0;
const FAILED: u8 = 1;

/// The one shutdown signal every task of the daemon watches.
pub type Shutdown = CancellationToken;

/// Which targets a cycle covers.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Scope {
    All,
    /// Only these (portal, service) pairs.
    Pairs(BTreeSet<(String, String)>),
}

impl Scope {
    /// What a trigger asks for: the pairs its portals, services and secrets select
    /// together; nothing selected → everything.
    fn of(config: &Config, t: &TriggerRequest) -> Scope {
        if t.portals.is_empty() && t.services.is_empty() && t.secrets.is_empty() {
            return Scope::All;
        }
        let filter = Filter {
            portals: t.portals.clone(),
            services: t.services.clone(),
            only: (!t.secrets.is_empty()).then(|| mapping::users_of(config, &t.secret_refs())),
        };
        Scope::Pairs(
            mapping::targets(config, &filter)
                .into_iter()
                .map(|t| (t.portal, t.service))
                .collect(),
        )
    }

    /// Everything absorbs any narrower scope.
    fn merge(self, other: Scope) -> Scope {
        match (self, other) {
            (Scope::Pairs(mut a), Scope::Pairs(b)) => {
                a.extend(b);
                Scope::Pairs(a)
            }
            _ => Scope::All,
        }
    }

    fn filter(self) -> Filter {
        match self {
            Scope::All => Filter::default(),
            Scope::Pairs(pairs) => Filter {
                only: Some(pairs),
                ..Filter::default()
            },
        }
    }
}

/// Work waiting for the next cycle: events that arrived meanwhile, merged.
#[derive(Debug, Default)]
struct Pending {
    scheduled: bool,
    trigger: Option<Scope>,
    retry_refused: bool,
    /// Rotation-event batches waiting for their cycle; answered once it has run, so the
    /// consumer deletes their messages only then.
    events: Vec<oneshot::Sender<()>>,
}

impl Pending {
    fn is_empty(&self) -> bool {
        !self.scheduled && self.trigger.is_none()
    }

    fn add(&mut self, scope: Scope, retry_refused: bool) {
        self.trigger = Some(match self.trigger.take() {
            None => scope,
            Some(s) => s.merge(scope),
        });
        self.retry_refused |= retry_refused;
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

/// How long the main loop may stay silent: a whole cycle plus the longest wait for the
/// next one.
fn liveness_limit(config: &Config) -> Duration {
    config
        .sync
        .cycle_timeout
        .saturating_add(config.sync.schedule().longest_gap())
        .saturating_add(config.sync.jitter.unwrap_or_default())
        .saturating_add(IDLE_BEAT)
}

struct Daemon {
    path: PathBuf,
    engine: Engine,
    state: State,
    server: ServerState,
    liveness: Arc<Liveness>,
    ticker: Ticker,
    ticks: mpsc::Receiver<()>,
    tick_tx: mpsc::Sender<()>,
    triggers: mpsc::Receiver<TriggerRequest>,
    shutdown: Shutdown,
    server_task: tokio::task::JoinHandle<()>,
    hup: tokio::signal::unix::Signal,
    /// When a rollout wave's soak time ends: a cycle then gives the next wave its values.
    wake_at: Option<tokio::time::Instant>,
    /// Rotation events from the SQS consumers, and the consumers by source.
    events: mpsc::Receiver<EventBatch>,
    events_tx: mpsc::Sender<EventBatch>,
    consumers: Consumers,
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
        let shutdown = Shutdown::new();
        watch_signals(shutdown.clone())?;
        let (trigger_tx, triggers) = mpsc::channel(16);
        let mut server = ServerState::new(trigger_tx, token);
        let liveness = Arc::new(Liveness::new(liveness_limit(&config)));
        server.liveness = liveness.clone();
        let stop = shutdown.clone();
        let serve_state = server.clone();
        let server_task = tokio::spawn(async move {
            if let Err(e) =
                server::serve(listener, serve_state, async move { stop.cancelled().await }).await
            {
                tracing::error!(error = %e, "HTTP server stopped");
            }
        });
        let (tick_tx, ticks) = mpsc::channel(1);
        let ticker = Ticker::start(&config.sync.schedule(), tick_tx.clone()).await?;
        let hup = signal(SignalKind::hangup())
            .map_err(|e| format!("cannot install signal handlers: {e}"))?;
        let (state, _) = crate::commands::load_state(&config);
        tracing::info!(
            config = %path.display(),
            listen = %config.server.listen,
            schedule = ?config.sync.schedule(),
            drift = ?config.sync.drift,
            portals = config.portals.len(),
            waves = config.sync.waves(),
            "authsync daemon starting"
        );
        let config = Arc::new(config);
        server.set_validator(validator(&config));
        let (events_tx, events) = mpsc::channel(16);
        let mut consumers = Consumers::new();
        start_events(&config, &shutdown, &events_tx, &mut consumers).await;
        let engine = Engine::new(config).await;
        notify::spawn_watchdog(liveness.clone());
        Ok(Daemon {
            path,
            engine,
            state,
            server,
            liveness,
            ticker,
            ticks,
            tick_tx,
            triggers,
            shutdown,
            server_task,
            hup,
            wake_at: None,
            events,
            events_tx,
            consumers,
        })
    }

    async fn run(mut self) -> u8 {
        // The first cycle runs at once and reads every value.
        let mut pending = Pending {
            trigger: Some(Scope::All),
            ..Pending::default()
        };
        let mut first = true;
        let mut reload = false;
        self.publish_status();
        loop {
            self.liveness.beat();
            if pending.is_empty() {
                let wake = self.wake_at;
                tokio::select! {
                    _ = self.shutdown.cancelled() => break,
                    _ = self.hup.recv() => { self.reload().await; continue; }
                    Some(()) = self.ticks.recv() => pending.scheduled = true,
                    Some(t) = self.triggers.recv() => self.trigger(&mut pending, t),
                    Some(b) = self.events.recv() => self.event(&mut pending, b),
                    _ = sleep_until(wake), if wake.is_some() => {
                        self.wake_at = None;
                        pending.scheduled = true;
                    }
                    _ = tokio::time::sleep(IDLE_BEAT) => continue,
                }
            }
            if self.server.trigger_overflow.swap(false, Ordering::AcqRel) {
                // Some trigger's lists did not fit in the queue: cover everything.
                pending.add(Scope::All, false);
            }
            let mut work = std::mem::take(&mut pending);
            let answered = std::mem::take(&mut work.events);
            let (filter, opts) = self.plan_cycle(work, first);
            if opts.freshness == Freshness::Versioned {
                // Jitter only delays scheduled cycles, never a trigger.
                if let Some(jitter) = self.engine.config.sync.jitter.filter(|j| !j.is_zero()) {
                    let wait = Duration::from_millis(
                        rand::rng().random_range(0..=jitter.as_millis() as u64),
                    );
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = self.shutdown.cancelled() => break,
                    }
                }
            }

            let (report, stopping) = self.cycle(&filter, opts, &mut pending, &mut reload).await;
            if let Some(report) = report {
                self.after_cycle(&report);
                // The events' secrets were read fresh and pushed: their messages can go.
                for done in answered {
                    let _ = done.send(());
                }
            }
            self.publish_status();
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
        self.stop().await
    }

    /// Runs one cycle, bounded by `cycle_timeout`, while queueing the events that
    /// arrive meanwhile. Returns the report (none when cancelled) and whether the
    /// daemon is stopping.
    async fn cycle(
        &mut self,
        filter: &Filter,
        opts: CycleOptions,
        pending: &mut Pending,
        reload: &mut bool,
    ) -> (Option<CycleReport>, bool) {
        let started = std::time::Instant::now();
        let started_unix = chrono::Utc::now().timestamp();
        let limit = self.engine.config.sync.cycle_timeout;
        let state_file = self.engine.config.sync.state_file.clone();
        let liveness = self.liveness.clone();
        let mut state = std::mem::take(&mut self.state);
        let mut stopping = false;
        let mut timed_out = false;
        let report = {
            // Saved after every rollout wave: a crash mid-rollout resumes where it was.
            let cycle = self.engine.cycle_with(filter, opts, &mut state, |s| {
                liveness.beat();
                if let Err(e) = s.save(&state_file) {
                    tracing::error!(error = %e, "state not saved; a restart will compare every portal afresh");
                }
            });
            tokio::pin!(cycle);
            let deadline = tokio::time::sleep(limit);
            tokio::pin!(deadline);
            loop {
                self.liveness.beat();
                tokio::select! {
                    report = &mut cycle => break Some(report),
                    _ = &mut deadline => { timed_out = true; break None; }
                    Some(()) = self.ticks.recv() => pending.scheduled = true,
                    Some(t) = self.triggers.recv() => self.trigger(pending, t),
                    Some(b) = self.events.recv() => self.event(pending, b),
                    _ = self.hup.recv() => *reload = true,
                    _ = tokio::time::sleep(IDLE_BEAT) => {}
                    _ = self.shutdown.cancelled() => {
                        stopping = true;
                        break tokio::time::timeout(DRAIN, &mut cycle).await.ok();
                    }
                }
            }
        };
        self.state = state;
        if timed_out {
            tracing::error!(
                timeout_s = limit.as_secs(),
                kind = ?crate::failure::FailureKind::CycleTimeout,
                "the cycle ran longer than [sync] cycle_timeout and was cancelled; what finished before is recorded"
            );
            metrics().sync_run("failed", started.elapsed());
            self.state.last_cycle = Some(CycleRecord {
                started: started_unix,
                finished: chrono::Utc::now().timestamp(),
                result: "failed".into(),
            });
            self.save_state();
        } else if report.is_none() {
            tracing::warn!(
                drain_s = DRAIN.as_secs(),
                "the cycle in flight did not finish in time; stopping anyway"
            );
        }
        (report, stopping)
    }

    /// Queues a trigger's scope (already validated by the server).
    fn trigger(&self, pending: &mut Pending, t: TriggerRequest) {
        let scope = Scope::of(&self.engine.config, &t);
        pending.add(scope, t.retry_refused);
    }

    /// Queues a rotation event's targets: the pairs that use the changed secrets.
    fn event(&self, pending: &mut Pending, batch: EventBatch) {
        let refs: Vec<SecretRef> = batch
            .paths
            .iter()
            .map(|path| SecretRef {
                source: batch.source.clone(),
                path: path.clone(),
                key: None,
            })
            .collect();
        let pairs = mapping::users_of(&self.engine.config, &refs);
        if pairs.is_empty() {
            // The config changed since the consumer started: nothing uses them any more.
            let _ = batch.done.send(());
            return;
        }
        pending.add(Scope::Pairs(pairs), false);
        pending.events.push(batch.done);
    }

    /// What the next cycle covers and how it reads.
    fn plan_cycle(&self, work: Pending, first: bool) -> (Filter, CycleOptions) {
        let fresh = CycleOptions {
            mode: Mode::Apply,
            freshness: Freshness::Fresh,
            retry_refused: work.retry_refused,
            soak: true,
        };
        if first || work.scheduled && work.trigger.is_some() {
            // A scheduled cycle covers everything anyway; read it all fresh.
            return (Filter::default(), fresh);
        }
        match work.trigger {
            Some(scope) => (scope.filter(), fresh),
            None => (
                Filter::default(),
                CycleOptions {
                    freshness: Freshness::Versioned,
                    ..fresh
                },
            ),
        }
    }

    fn after_cycle(&mut self, report: &CycleReport) {
        metrics().sync_run(report.result(), report.duration);
        self.save_state();
        // New values that wait for an earlier wave's soak time: come back when it ends.
        let now = chrono::Utc::now().timestamp();
        let ready = report
            .services()
            .filter_map(|(_, s)| match &s.outcome {
                Outcome::Waiting {
                    ready_at: Some(at), ..
                } => Some(*at),
                _ => None,
            })
            .min();
        if let Some(at) = ready {
            let wait = Duration::from_secs(u64::try_from(at.saturating_sub(now)).unwrap_or(0));
            let when = tokio::time::Instant::now() + wait;
            self.wake_at = Some(self.wake_at.map_or(when, |w| w.min(when)));
            tracing::info!(
                in_s = wait.as_secs(),
                "the next rollout wave gets its values when the soak time ends"
            );
        }
    }

    fn save_state(&self) {
        if let Err(e) = self.state.save(&self.engine.config.sync.state_file) {
            tracing::error!(error = %e, "state not saved; a restart will compare every portal afresh");
        }
    }

    /// SIGHUP: load and validate the config; swap only if it is valid.
    async fn reload(&mut self) {
        notify::reloading();
        self.reload_config().await;
        self.publish_status();
        notify::ready();
    }

    /// Hands `/status` a new snapshot of the state (at start, after each cycle and each
    /// reload). Built here, once, so page loads only filter and render.
    fn publish_status(&self) {
        let config = &self.engine.config;
        let now = chrono::Utc::now().timestamp();
        let live = crate::status::DaemonStatus {
            next_cycle: crate::status::DaemonStatus::next_cycle(
                &config.sync.schedule(),
                self.state.last_cycle.as_ref().map(|c| c.started),
                now,
            )
            .map(crate::status::Timestamp::at),
            // The rotation-event queues this daemon polls (host and name only).
            events: events::queues(config)
                .map(|(name, _, q)| crate::status::EventsQueue::from_url(name, &q.queue_url))
                .collect(),
        };
        let snapshot = crate::status::Snapshot::build(config, &self.state, Some(live), now);
        self.server.set_status(snapshot);
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
        self.liveness.set_limit(liveness_limit(&config));
        let config = Arc::new(config);
        self.server.set_validator(validator(&config));
        let previous = std::mem::replace(&mut self.engine, Engine::new(config).await);
        previous.close().await;
        self.server.set_trigger_token(token);
        // Consumers whose settings or paths changed restart; the others keep polling.
        start_events(
            &self.engine.config,
            &self.shutdown,
            &self.events_tx,
            &mut self.consumers,
        )
        .await;
        metrics().config_reload("ok");
        tracing::info!("config reloaded");
    }

    async fn stop(self) -> u8 {
        notify::stopping();
        tracing::info!("shutting down");
        self.shutdown.cancel();
        self.ticker.stop().await;
        let _ = tokio::time::timeout(Duration::from_secs(6), self.server_task).await;
        if let Err(e) = self.state.save(&self.engine.config.sync.state_file) {
            tracing::error!(error = %e, "state not saved at shutdown");
        }
        self.engine.close().await;
        tracing::info!("stopped");
        OK
    }
}

/// A running rotation-event consumer: what it was started with, and its stop token (a
/// child of the daemon's shutdown token).
struct Consumer {
    settings: AwsSourceConfig,
    paths: BTreeSet<String>,
    stop: CancellationToken,
}

/// The consumers by source name.
type Consumers = std::collections::BTreeMap<String, Consumer>;

/// Makes `running` match `config`: one consumer per AWS source with `events`. A consumer
/// whose source settings and referenced paths did not change keeps running: stopping one
/// drops its long poll, and a message SQS hands to a dropped poll stays invisible until
/// the queue's visibility timeout (a delayed rotation for nothing).
async fn start_events(
    config: &Config,
    shutdown: &Shutdown,
    tx: &mpsc::Sender<EventBatch>,
    running: &mut Consumers,
) {
    let mut wanted = Consumers::new();
    for (name, aws, cfg) in events::queues(config) {
        let paths = events::referenced_paths(config, name);
        if let Some(c) = running.remove(name) {
            if c.settings == *aws && c.paths == paths {
                wanted.insert(name.clone(), c);
                continue;
            }
            c.stop.cancel();
        }
        let stop = shutdown.child_token();
        let sdk = crate::sources::aws::sdk_config(aws).await;
        events::spawn(
            name.clone(),
            &sdk,
            cfg,
            paths.clone(),
            tx.clone(),
            stop.clone(),
        );
        let settings = aws.clone();
        wanted.insert(
            name.clone(),
            Consumer {
                settings,
                paths,
                stop,
            },
        );
    }
    for c in std::mem::take(running).into_values() {
        c.stop.cancel();
    }
    *running = wanted;
}

/// Cancels `shutdown` at the first SIGTERM or SIGINT.
fn watch_signals(shutdown: Shutdown) -> Result<(), String> {
    let sig =
        |kind: SignalKind| signal(kind).map_err(|e| format!("cannot install signal handlers: {e}"));
    let (mut term, mut int) = (sig(SignalKind::terminate())?, sig(SignalKind::interrupt())?);
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        tracing::info!("signal received; finishing the cycle in flight");
        shutdown.cancel();
    });
    Ok(())
}

async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Checks each trigger against this config before the server queues it.
fn validator(config: &Arc<Config>) -> server::TriggerValidator {
    let config = config.clone();
    Arc::new(move |t| server::validate_trigger(&config, t))
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

    fn pairs(p: &[(&str, &str)]) -> Scope {
        Scope::Pairs(
            p.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect(),
        )
    }

    #[test]
    fn scopes_merge_and_everything_absorbs_narrow_ones() {
        let mut p = Pending::default();
        p.add(pairs(&[("a", "google")]), false);
        p.add(pairs(&[("b", "google")]), true);
        assert_eq!(
            p.trigger.clone(),
            Some(pairs(&[("a", "google"), ("b", "google")]))
        );
        assert!(p.retry_refused);
        p.add(Scope::All, false);
        assert_eq!(p.trigger, Some(Scope::All));
    }

    #[test]
    fn a_trigger_selects_the_pairs_its_lists_and_secrets_name_together() {
        let text = r#"
[sources.kv]
kind = "files"
dir = "/nonexistent"
[portals.a]
url = "http://127.0.0.1:1"
api_key = "sk"
[portals.b]
url = "http://127.0.0.1:2"
api_key = "sk"
[[map]]
service = "google"
props.googleClientId = "kv:google#id"
[[map]]
service = "telegram"
props.telegramBotToken = "kv:tg/{portal}#token"
"#;
        let config = crate::config::parse_valid(text);
        let t = |portals: &[&str], secrets: &[&str]| TriggerRequest {
            portals: portals.iter().map(|s| s.to_string()).collect(),
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
            ..TriggerRequest::default()
        };
        assert_eq!(Scope::of(&config, &t(&[], &[])), Scope::All);
        assert_eq!(
            Scope::of(&config, &t(&[], &["kv:google"])),
            pairs(&[("a", "google"), ("b", "google")])
        );
        assert_eq!(
            Scope::of(&config, &t(&[], &["kv:tg/b"])),
            pairs(&[("b", "telegram")])
        );
        assert_eq!(
            Scope::of(&config, &t(&["a"], &["kv:tg/{portal}"])),
            pairs(&[("a", "telegram")])
        );
    }
}
