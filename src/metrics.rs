//! Prometheus metrics: the names listed under "Metrics" in the product contract.
//!
//! There is one process-global [`Metrics`] (see [`metrics`]) because the sync engine, the
//! sources, the portal client and the HTTP server all record into the same exposition and
//! threading a handle through every layer would buy nothing: a process serves exactly
//! one `/metrics`.
//!
//! The exposition is OpenMetrics text (what `prometheus-client` emits, ending in `# EOF`);
//! Prometheus scrapes it natively. `prometheus-client` derives sample names from the
//! registered name: counters get `_total`, a unit gets `_seconds`, histograms get
//! `_bucket`/`_sum`/`_count`. The names below are registered *without* those suffixes so
//! the exposed names are exactly the contract's; `tests::contract_names_are_exact` pins it.
//!
//! Label values are whatever the caller passes. Callers must pass only names the config
//! shows (portal, service, source names, operations, HTTP methods and statuses): never a
//! secret value, and never a secret path that the config does not already show.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock, Mutex, RwLock};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

/// Content type of [`Metrics::render`]'s output. It must say OpenMetrics: the body ends
/// in `# EOF` and carries `# UNIT` lines, which a scraper expecting the classic text
/// format (0.0.4) would not accept.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Upper bounds (seconds) of the propagation histogram: an event-driven rotation lands in
/// about a second, a polled one within the schedule (minutes), a stalled one much later.
const PROPAGATION_BUCKETS: [f64; 16] = [
    0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0,
    86400.0,
];

/// Upper bounds (seconds) of the cycle-duration histogram. A cycle that touches nothing
/// takes tens of milliseconds; one with slow portals runs into their timeouts (15 s by
/// default, retried), so the buckets reach two minutes.
const DURATION_BUCKETS: [f64; 13] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0, 90.0, 120.0,
];

/// The process-global metrics. Created (and `authsync_build_info` set) on first use.
pub fn metrics() -> &'static Metrics {
    static METRICS: LazyLock<Metrics> = LazyLock::new(Metrics::new);
    &METRICS
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabels {
    result: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceRequestLabels {
    source: Label,
    operation: Label,
    result: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PortalRequestLabels {
    portal: Label,
    method: Label,
    status: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PortalLabels {
    portal: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SourceLabels {
    source: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    source: Label,
    result: Label,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct VersionLabels {
    version: Label,
}

/// Every metric authsync exports. Handles are cheap to update from any thread.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    sync_runs: Family<ResultLabels, Counter>,
    sync_duration: Histogram,
    /// `authsync_pushes`, `authsync_drift_corrections`, `authsync_out_of_sync` and
    /// `authsync_bad_keys`: one series per (portal, service), kept compactly.
    services: Arc<ServiceSeries>,
    source_requests: Family<SourceRequestLabels, Counter>,
    portal_requests: Family<PortalRequestLabels, Counter>,
    last_success: Family<PortalLabels, Gauge<f64, AtomicU64>>,
    config_reloads: Family<ResultLabels, Counter>,
    build_info: Family<VersionLabels, Gauge>,
    rollout_halted: Family<ServiceLabels, Gauge>,
    events: Family<EventLabels, Counter>,
    propagation: Family<SourceLabels, Histogram>,
}

impl Metrics {
    /// Builds and registers everything. Private: the process has exactly one instance
    /// ([`metrics`]); tests in this module build their own to stay independent.
    fn new() -> Self {
        let mut registry = Registry::default();
        let m = Metrics {
            registry: Registry::default(),
            sync_runs: Family::default(),
            sync_duration: Histogram::new(DURATION_BUCKETS),
            services: Arc::default(),
            source_requests: Family::default(),
            portal_requests: Family::default(),
            last_success: Family::default(),
            config_reloads: Family::default(),
            build_info: Family::default(),
            rollout_halted: Family::default(),
            events: Family::default(),
            propagation: Family::new_with_constructor(|| Histogram::new(PROPAGATION_BUCKETS)),
        };
        // Counters: registered without `_total` (the encoder appends it).
        registry.register(
            "authsync_sync_runs",
            "Sync cycles by outcome (ok, partial, failed)",
            m.sync_runs.clone(),
        );
        // Histogram: the unit appends `_seconds`, the encoder `_bucket`/`_sum`/`_count`.
        registry.register_with_unit(
            "authsync_sync_duration",
            "Duration of sync cycles",
            Unit::Seconds,
            m.sync_duration.clone(),
        );
        registry.register(
            "authsync_source_requests",
            "Requests to secret sources",
            m.source_requests.clone(),
        );
        registry.register(
            "authsync_portal_requests",
            "HTTP requests to portals, by method and status",
            m.portal_requests.clone(),
        );
        registry.register_with_unit(
            "authsync_last_success_timestamp",
            "Unix time of the last cycle that left the portal fully in sync",
            Unit::Seconds,
            m.last_success.clone(),
        );
        registry.register(
            "authsync_config_reloads",
            "Config reloads by outcome (ok, failed)",
            m.config_reloads.clone(),
        );
        registry.register(
            "authsync_rollout_halted",
            "1 while a refused new value of the service is kept from later rollout waves",
            m.rollout_halted.clone(),
        );
        registry.register(
            "authsync_events",
            "Rotation events received from a source's queue (matched, unmapped, malformed)",
            m.events.clone(),
        );
        registry.register_with_unit(
            "authsync_propagation",
            "From the creation of a source version to the read-back that confirmed it on a portal",
            Unit::Seconds,
            m.propagation.clone(),
        );
        registry.register_collector(Box::new(m.services.clone()));
        // A gauge rather than an OpenMetrics `info` metric: the exposed sample is the
        // conventional `*_build_info{version} 1`, which every PromQL join recipe expects.
        registry.register(
            "authsync_build_info",
            "Build information; always 1",
            m.build_info.clone(),
        );
        m.build_info
            .get_or_create(&VersionLabels {
                version: label(env!("CARGO_PKG_VERSION")),
            })
            .set(1);
        Metrics { registry, ..m }
    }

    /// Counts a finished cycle (`result`: `ok`, `partial` or `failed`) and records how
    /// long it took.
    pub fn sync_run(&self, result: &str, duration: Duration) {
        self.sync_runs
            .get_or_create(&ResultLabels {
                result: label(result),
            })
            .inc();
        self.sync_duration.observe(duration.as_secs_f64());
    }

    /// Counts one push of a service to a portal (`result`: `ok`, `rejected` or `error`).
    pub fn push(&self, portal: &str, service: &str, result: &str) {
        let i = PUSH_RESULTS
            .iter()
            .position(|r| *r == result)
            .unwrap_or(PUSH_RESULTS.len() - 1);
        self.services.update(portal, service, |s| s.pushes[i] += 1);
    }

    /// Counts a push that restored values someone changed on the portal.
    pub fn drift_correction(&self, portal: &str, service: &str) {
        self.services
            .update(portal, service, |s| s.drift_corrections += 1);
    }

    /// Counts one request to a secret source. `operation` is e.g. `read`, `login`;
    /// `result` e.g. `ok`, `not_found`, `denied`, `error` (never the secret path).
    pub fn source_request(&self, source: &str, operation: &str, result: &str) {
        self.source_requests
            .get_or_create(&SourceRequestLabels {
                source: label(source),
                operation: label(operation),
                result: label(result),
            })
            .inc();
    }

    /// Counts one HTTP request to a portal. `status` is the HTTP status code, or a word
    /// such as `timeout` / `error` when no response came.
    pub fn portal_request(&self, portal: &str, method: &str, status: &str) {
        self.portal_requests
            .get_or_create(&PortalRequestLabels {
                portal: label(portal),
                method: label(method),
                status: label(status),
            })
            .inc();
    }

    /// Sets `authsync_out_of_sync{portal,service}` to 1 (`out`) or 0. Set it after every
    /// attempt, so an alert on `== 1` fires only while the problem lasts.
    pub fn out_of_sync(&self, portal: &str, service: &str, out: bool) {
        self.services
            .update(portal, service, |s| s.out_of_sync = Some(out));
    }

    /// Drops the `authsync_out_of_sync` series of a (portal, service) no longer mapped
    /// (after a config reload), so a stale 1 cannot keep an alert firing forever.
    pub fn forget_service(&self, portal: &str, service: &str) {
        self.services.update(portal, service, |s| {
            s.out_of_sync = None;
            s.held = None;
        });
    }

    /// Drops the `authsync_last_success_timestamp_seconds` series of a portal removed
    /// from the config, so a staleness alert does not fire for a portal that is gone.
    /// Call [`Metrics::forget_service`] for its services as well.
    pub fn forget_portal(&self, portal: &str) {
        self.last_success.remove(&PortalLabels {
            portal: label(portal),
        });
    }

    /// Records when the portal was last left fully in sync (Unix seconds).
    pub fn last_success(&self, portal: &str, unix_seconds: f64) {
        self.last_success
            .get_or_create(&PortalLabels {
                portal: label(portal),
            })
            .set(unix_seconds);
    }

    /// Counts a config reload (`result`: `ok` or `failed`).
    pub fn config_reload(&self, result: &str) {
        self.config_reloads
            .get_or_create(&ResultLabels {
                result: label(result),
            })
            .inc();
    }

    /// Counts an incident where a portal rejected the keys ("Bad keys") and wiped the
    /// service: users lose that integration until someone fixes the source.
    pub fn bad_keys(&self, portal: &str, service: &str) {
        self.services.update(portal, service, |s| s.bad_keys += 1);
    }

    /// Counts a refusal: the portal answered 400 to a push, or the read-back did not hold
    /// what was sent (whatever the portal's message said).
    pub fn refusal(&self, portal: &str, service: &str) {
        self.services.update(portal, service, |s| s.refusals += 1);
    }

    /// Counts an attempt to put back the values a refusal wiped (`result`: `ok`/`failed`).
    pub fn restore(&self, portal: &str, service: &str, ok: bool) {
        self.services.update(portal, service, |s| {
            if ok {
                s.restores[0] += 1
            } else {
                s.restores[1] += 1
            }
        });
    }

    /// Sets `authsync_held{portal,service}`: 1 while refused values are held back.
    pub fn held(&self, portal: &str, service: &str, held: bool) {
        self.services
            .update(portal, service, |s| s.held = Some(held));
    }

    /// Sets `authsync_rollout_halted{service}`.
    pub fn rollout_halted(&self, service: &str, halted: bool) {
        self.rollout_halted
            .get_or_create(&ServiceLabels {
                service: label(service),
            })
            .set(i64::from(halted));
    }

    /// Counts one rotation event (`result`: `matched`, `unmapped` or `malformed`).
    pub fn event(&self, source: &str, result: &str) {
        self.events
            .get_or_create(&EventLabels {
                source: label(source),
                result: label(result),
            })
            .inc();
    }

    /// Observes how long a source version took to be confirmed on a portal.
    pub fn propagation(&self, source: &str, seconds: f64) {
        self.propagation
            .get_or_create(&SourceLabels {
                source: label(source),
            })
            .observe(seconds.max(0.0));
    }

    /// The whole exposition in OpenMetrics text, ending in `# EOF`; serve it as
    /// [`CONTENT_TYPE`].
    ///
    /// Encoding into a `String` cannot fail for these metric types; should it ever, the
    /// error is logged and the output lacks `# EOF`, so the scraper rejects the partial
    /// scrape instead of recording half of it.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(err) = prometheus_client::encoding::text::encode(&mut out, &self.registry) {
            tracing::error!(error = %err, "cannot encode metrics");
        }
        out
    }

    /// Reads one sample as exposed by [`Metrics::render`] (for tests and diagnostics).
    ///
    /// `name` is the sample name exactly as it appears in `/metrics`, suffixes included:
    /// `authsync_sync_runs_total`, `authsync_out_of_sync`,
    /// `authsync_last_success_timestamp_seconds`, `authsync_sync_duration_seconds_count`,
    /// `authsync_sync_duration_seconds_bucket` (with an `le` label), …
    /// `labels` must be the sample's complete label set, in any order. `None` when no
    /// such sample exists (e.g. a counter never incremented for those labels).
    pub fn counter_value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), escape(v)))
            .collect();
        want.sort();
        self.render().lines().find_map(|line| {
            let (series, value) = parse_sample(line)?;
            let (sample_name, mut got) = series;
            if sample_name != name {
                return None;
            }
            got.sort();
            (got == want).then(|| value.parse().ok()).flatten()
        })
    }
}

/// `result` values of `authsync_pushes`, in [`ServiceStats::pushes`] order.
const PUSH_RESULTS: [&str; 3] = ["ok", "rejected", "error"];

/// `result` values of `authsync_restores`, in [`ServiceStats::restores`] order.
const RESTORE_RESULTS: [&str; 2] = ["ok", "failed"];

/// The per-(portal, service) series, in one table written out at scrape time.
///
/// With 1 000 portals × 20 services these are 40 000+ series. As `Family` maps (a hash
/// entry, a label set and an `Arc`'d atomic per series) they took ~4 MiB of a daemon
/// meant to idle in 25; here a series is a few bytes in a per-portal vector.
#[derive(Debug, Default)]
struct ServiceSeries(RwLock<BTreeMap<Label, Vec<(Label, ServiceStats)>>>);

/// Everything recorded about one service of one portal.
#[derive(Debug, Default, Clone, Copy)]
struct ServiceStats {
    /// `authsync_pushes_total` per [`PUSH_RESULTS`]; 0 = no such series yet.
    pushes: [u64; 3],
    drift_corrections: u64,
    bad_keys: u64,
    refusals: u64,
    /// `authsync_restores_total` per [`RESTORE_RESULTS`].
    restores: [u64; 2],
    /// `authsync_out_of_sync`; `None` = not exported (never set, or forgotten).
    out_of_sync: Option<bool>,
    /// `authsync_held`; `None` = not exported.
    held: Option<bool>,
}

impl ServiceSeries {
    fn update(&self, portal: &str, service: &str, change: impl FnOnce(&mut ServiceStats)) {
        let Ok(mut table) = self.0.write() else {
            return;
        };
        let services = match table.get_mut(portal) {
            Some(s) => s,
            None => table.entry(label(portal)).or_default(),
        };
        let i = match services.iter().position(|(s, _)| **s == *service) {
            Some(i) => i,
            None => {
                // Services are added once; exact growth keeps no spare slots around.
                services.reserve_exact(1);
                services.push((label(service), ServiceStats::default()));
                services.len() - 1
            }
        };
        change(&mut services[i].1);
    }
}

/// Reads one counter out of a [`ServiceStats`].
type StatField = fn(&ServiceStats) -> u64;

impl Collector for ServiceSeries {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Ok(table) = self.0.read() else {
            return Ok(());
        };
        let series = || {
            table
                .iter()
                .flat_map(|(p, services)| services.iter().map(move |(s, st)| (&**p, &**s, st)))
        };
        let mut pushes = encoder.encode_descriptor(
            "authsync_pushes",
            "Service updates sent to portals, by outcome (ok, rejected, error)",
            None,
            MetricType::Counter,
        )?;
        for (portal, service, st) in series() {
            for (result, n) in PUSH_RESULTS.iter().zip(st.pushes) {
                if n > 0 {
                    let labels = [("portal", portal), ("service", service), ("result", result)];
                    ConstCounter::new(n).encode(pushes.encode_family(&labels)?)?;
                }
            }
        }
        let mut restores = encoder.encode_descriptor(
            "authsync_restores",
            "Refused pushes after which the previous values were put back, by outcome (ok, failed)",
            None,
            MetricType::Counter,
        )?;
        for (portal, service, st) in series() {
            for (result, n) in RESTORE_RESULTS.iter().zip(st.restores) {
                if n > 0 {
                    let labels = [("portal", portal), ("service", service), ("result", result)];
                    ConstCounter::new(n).encode(restores.encode_family(&labels)?)?;
                }
            }
        }
        let counters: [(&str, &str, StatField); 3] = [
            (
                "authsync_drift_corrections",
                "Portal values changed outside authsync and put back",
                |st| st.drift_corrections,
            ),
            (
                "authsync_bad_keys",
                "Times a portal rejected keys and wiped the service (needs a human)",
                |st| st.bad_keys,
            ),
            (
                "authsync_refusals",
                "Pushes the portal refused (400, or a read-back without the sent values)",
                |st| st.refusals,
            ),
        ];
        for (name, help, value) in counters {
            let mut family = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for (portal, service, st) in series() {
                let n = value(st);
                if n > 0 {
                    let labels = [("portal", portal), ("service", service)];
                    ConstCounter::new(n).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        let mut out_of_sync = encoder.encode_descriptor(
            "authsync_out_of_sync",
            "1 while the last attempt left the portal service unsynced",
            None,
            MetricType::Gauge,
        )?;
        for (portal, service, st) in series() {
            if let Some(out) = st.out_of_sync {
                let labels = [("portal", portal), ("service", service)];
                ConstGauge::new(i64::from(out)).encode(out_of_sync.encode_family(&labels)?)?;
            }
        }
        let mut held = encoder.encode_descriptor(
            "authsync_held",
            "1 while values the portal refused are held back until the source changes",
            None,
            MetricType::Gauge,
        )?;
        for (portal, service, st) in series() {
            if let Some(h) = st.held {
                let labels = [("portal", portal), ("service", service)];
                ConstGauge::new(i64::from(h)).encode(held.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// A label value, shared: with 1 000 portals × 20 services the per-service families
/// hold 20 000 series each, and one copy of each portal and service name serves them
/// all (instead of two strings per series).
type Label = Arc<str>;

/// The shared copy of a label value, escaped (see [`escape`]).
fn label(value: &str) -> Label {
    static NAMES: LazyLock<Mutex<HashSet<Label>>> = LazyLock::new(Default::default);
    let escaped = escape(value);
    let Ok(mut names) = NAMES.lock() else {
        return Arc::from(escaped);
    };
    if let Some(known) = names.get(escaped.as_str()) {
        return known.clone();
    }
    let new: Label = Arc::from(escaped);
    names.insert(new.clone());
    new
}

/// Escapes a label value for the text exposition. `prometheus-client` 0.24 writes label
/// values verbatim, so a `"`, `\` or newline in a name would corrupt the whole scrape.
fn escape(value: &str) -> String {
    if !value.contains(['\\', '"', '\n']) {
        return value.to_owned();
    }
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out
}

/// A sample's name and its labels (values still escaped).
type Series = (String, Vec<(String, String)>);

/// Splits a sample line `name{k="v",…} value` into its parts; `None` for comments and
/// anything malformed. Label values are kept in their escaped form.
fn parse_sample(line: &str) -> Option<(Series, &str)> {
    if line.starts_with('#') {
        return None;
    }
    let (series, value) = line.rsplit_once(' ')?;
    let Some(open) = series.find('{') else {
        return Some(((series.to_owned(), Vec::new()), value));
    };
    let name = series[..open].to_owned();
    let body = series[open + 1..].strip_suffix('}')?;
    let mut labels = Vec::new();
    let mut rest = body;
    while !rest.is_empty() {
        let (key, after) = rest.split_once("=\"")?;
        let mut end = None;
        let mut escaped = false;
        for (i, c) in after.char_indices() {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => {
                    end = Some(i);
                    break;
                }
                _ => {}
            }
        }
        let end = end?;
        labels.push((key.to_owned(), after[..end].to_owned()));
        rest = after[end + 1..]
            .strip_prefix(',')
            .unwrap_or(&after[end + 1..]);
    }
    Some(((name, labels), value))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records one of everything into a fresh instance.
    fn recorded() -> Metrics {
        let m = Metrics::new();
        m.sync_run("ok", Duration::from_millis(300));
        m.push("prod", "google", "ok");
        m.drift_correction("prod", "google");
        m.source_request("vault", "read", "ok");
        m.portal_request("prod", "POST", "200");
        m.out_of_sync("prod", "s3", true);
        m.last_success("prod", 1_700_000_000.0);
        m.config_reload("ok");
        m.bad_keys("prod", "s3");
        m.refusal("prod", "s3");
        m.restore("prod", "s3", true);
        m.held("prod", "s3", true);
        m.rollout_halted("s3", true);
        m.event("aws", "matched");
        m.propagation("aws", 0.7);
        m
    }

    /// Sample names (before `{` or the value) and metadata names present in `text`.
    fn sample_names(text: &str) -> Vec<String> {
        text.lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split([' ', '{']).next())
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn contract_names_are_exact() {
        let text = recorded().render();
        let names = sample_names(&text);
        for expected in [
            "authsync_sync_runs_total",
            "authsync_sync_duration_seconds_bucket",
            "authsync_sync_duration_seconds_sum",
            "authsync_sync_duration_seconds_count",
            "authsync_pushes_total",
            "authsync_drift_corrections_total",
            "authsync_source_requests_total",
            "authsync_portal_requests_total",
            "authsync_out_of_sync",
            "authsync_last_success_timestamp_seconds",
            "authsync_config_reloads_total",
            "authsync_build_info",
            "authsync_bad_keys_total",
            "authsync_refusals_total",
            "authsync_restores_total",
            "authsync_held",
            "authsync_rollout_halted",
            "authsync_events_total",
            "authsync_propagation_seconds_bucket",
            "authsync_propagation_seconds_count",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} missing from:\n{text}"
            );
        }
        // Nothing doubled up by the encoder's suffix handling.
        for n in &names {
            assert!(!n.contains("_total_total"), "{n}");
            assert!(!n.contains("_seconds_seconds"), "{n}");
            assert!(n.starts_with("authsync_"), "{n}");
        }
        for family in [
            "# TYPE authsync_sync_runs counter",
            "# TYPE authsync_sync_duration_seconds histogram",
            "# TYPE authsync_out_of_sync gauge",
            "# TYPE authsync_last_success_timestamp_seconds gauge",
            "# TYPE authsync_build_info gauge",
        ] {
            assert!(text.lines().any(|l| l == family), "{family} in:\n{text}");
        }
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn labels_are_exactly_the_contract_ones() {
        let text = recorded().render();
        for expected in [
            "authsync_sync_runs_total{result=\"ok\"} 1".into(),
            "authsync_pushes_total{portal=\"prod\",service=\"google\",result=\"ok\"} 1".into(),
            "authsync_drift_corrections_total{portal=\"prod\",service=\"google\"} 1".into(),
            "authsync_source_requests_total{source=\"vault\",operation=\"read\",result=\"ok\"} 1"
                .into(),
            "authsync_portal_requests_total{portal=\"prod\",method=\"POST\",status=\"200\"} 1"
                .into(),
            "authsync_out_of_sync{portal=\"prod\",service=\"s3\"} 1".into(),
            "authsync_config_reloads_total{result=\"ok\"} 1".into(),
            "authsync_bad_keys_total{portal=\"prod\",service=\"s3\"} 1".into(),
            "authsync_refusals_total{portal=\"prod\",service=\"s3\"} 1".into(),
            "authsync_restores_total{portal=\"prod\",service=\"s3\",result=\"ok\"} 1".into(),
            "authsync_held{portal=\"prod\",service=\"s3\"} 1".into(),
            "authsync_rollout_halted{service=\"s3\"} 1".into(),
            "authsync_events_total{source=\"aws\",result=\"matched\"} 1".into(),
            "authsync_propagation_seconds_count{source=\"aws\"} 1".into(),
            format!(
                "authsync_build_info{{version=\"{}\"}} 1",
                env!("CARGO_PKG_VERSION")
            ),
        ] {
            assert!(
                text.lines().any(|l| l == expected),
                "{expected} in:\n{text}"
            );
        }
    }

    #[test]
    fn counter_value_reads_samples() {
        let m = recorded();
        let v = |name: &str, labels: &[(&str, &str)]| m.counter_value(name, labels);
        assert_eq!(
            v("authsync_sync_runs_total", &[("result", "ok")]),
            Some(1.0)
        );
        assert_eq!(v("authsync_sync_runs_total", &[("result", "failed")]), None);
        assert_eq!(
            v(
                "authsync_pushes_total",
                &[("result", "ok"), ("service", "google"), ("portal", "prod")]
            ),
            Some(1.0)
        );
        // An incomplete label set does not match.
        assert_eq!(v("authsync_pushes_total", &[("portal", "prod")]), None);
        assert_eq!(
            v(
                "authsync_last_success_timestamp_seconds",
                &[("portal", "prod")]
            ),
            Some(1_700_000_000.0)
        );
        assert_eq!(v("authsync_sync_duration_seconds_count", &[]), Some(1.0));
        assert_eq!(
            v("authsync_sync_duration_seconds_bucket", &[("le", "0.5")]),
            Some(1.0)
        );
        assert_eq!(
            v("authsync_sync_duration_seconds_bucket", &[("le", "0.25")]),
            Some(0.0)
        );
        assert_eq!(
            v("authsync_sync_duration_seconds_bucket", &[("le", "+Inf")]),
            Some(1.0)
        );
        m.sync_run("ok", Duration::from_secs(200));
        assert_eq!(
            v("authsync_sync_runs_total", &[("result", "ok")]),
            Some(2.0)
        );
        assert_eq!(
            v("authsync_sync_duration_seconds_bucket", &[("le", "120.0")]),
            Some(1.0)
        );
    }

    #[test]
    fn out_of_sync_flips_and_forget_removes_it() {
        let m = Metrics::new();
        let key = [("portal", "prod"), ("service", "s3")];
        m.out_of_sync("prod", "s3", true);
        assert_eq!(m.counter_value("authsync_out_of_sync", &key), Some(1.0));
        m.out_of_sync("prod", "s3", false);
        assert_eq!(m.counter_value("authsync_out_of_sync", &key), Some(0.0));
        m.out_of_sync("prod", "s3", true);
        m.forget_service("prod", "s3");
        assert_eq!(m.counter_value("authsync_out_of_sync", &key), None);
        m.last_success("prod", 5.0);
        m.forget_portal("prod");
        assert_eq!(
            m.counter_value(
                "authsync_last_success_timestamp_seconds",
                &[("portal", "prod")]
            ),
            None
        );
    }

    #[test]
    fn per_service_series_appear_once_counted_and_forget_keeps_counters() {
        let m = Metrics::new();
        for p in ["a", "b"] {
            for s in ["google", "s3", "twilio"] {
                m.out_of_sync(p, s, false);
            }
        }
        m.push("b", "s3", "ok");
        m.push("b", "s3", "ok");
        m.push("b", "s3", "rejected");
        m.drift_correction("a", "twilio");
        let text = m.render();
        let samples = |name: &str| {
            text.lines()
                .filter(|l| l.starts_with(&format!("{name}{{")))
                .count()
        };
        assert_eq!(samples("authsync_out_of_sync"), 6, "{text}");
        // Only the (series, result) pairs that happened: no zero-valued counters.
        assert_eq!(samples("authsync_pushes_total"), 2, "{text}");
        assert_eq!(samples("authsync_drift_corrections_total"), 1, "{text}");
        assert_eq!(samples("authsync_bad_keys_total"), 0, "{text}");
        let push = |result| {
            m.counter_value(
                "authsync_pushes_total",
                &[("portal", "b"), ("service", "s3"), ("result", result)],
            )
        };
        assert_eq!(
            (push("ok"), push("rejected"), push("error")),
            (Some(2.0), Some(1.0), None)
        );
        m.forget_service("b", "s3");
        let key = [("portal", "b"), ("service", "s3")];
        assert_eq!(m.counter_value("authsync_out_of_sync", &key), None);
        assert_eq!(push("ok"), Some(2.0));
    }

    #[test]
    fn awkward_label_values_are_escaped() {
        let m = Metrics::new();
        m.push("we\"ird\\por\ntal", "google", "ok");
        let text = m.render();
        assert!(
            text.contains(r#"portal="we\"ird\\por\ntal""#),
            "escaped in:\n{text}"
        );
        // Every sample still parses, so the scrape as a whole stays valid.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(parse_sample(l).is_some(), "{l}");
        }
        assert_eq!(
            m.counter_value(
                "authsync_pushes_total",
                &[
                    ("portal", "we\"ird\\por\ntal"),
                    ("service", "google"),
                    ("result", "ok")
                ]
            ),
            Some(1.0)
        );
    }

    #[test]
    fn global_instance_is_shared() {
        let before = metrics()
            .counter_value("authsync_config_reloads_total", &[("result", "failed")])
            .unwrap_or(0.0);
        metrics().config_reload("failed");
        let after = metrics()
            .counter_value("authsync_config_reloads_total", &[("result", "failed")])
            .unwrap_or(0.0);
        assert!(after >= before + 1.0);
        assert!(std::ptr::eq(metrics(), metrics()));
    }
}
