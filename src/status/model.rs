//! The status model: a [`Snapshot`] of everything (built once per cycle from the state
//! file and the config), and the [`Status`] view a request's [`Filter`] selects from it.
//! [`Status`] is what `/status.json` serializes: its fields are the documented schema.
//!
//! The snapshot is built once and viewed many times: a page load only filters and
//! renders, it never touches the state or scrubs a text again.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde::Serialize;

use crate::config::{glob_matches, Config, Schedule};
use crate::failure::FailureKind;
use crate::state::{LastResult, ServiceState, State};

use super::scrub::{PortalScrubber, Scrubber};

/// The state of one (portal, service) cell, as the contract names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CellState {
    InSync,
    Pending,
    Failed,
    Skipped,
    Held,
    Halted,
}

impl CellState {
    /// Every state, in the order summaries list them.
    pub const ALL: [CellState; 6] = [
        CellState::InSync,
        CellState::Pending,
        CellState::Failed,
        CellState::Skipped,
        CellState::Held,
        CellState::Halted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            CellState::InSync => "in_sync",
            CellState::Pending => "pending",
            CellState::Failed => "failed",
            CellState::Skipped => "skipped",
            CellState::Held => "held",
            CellState::Halted => "halted",
        }
    }

    pub fn parse(s: &str) -> Option<CellState> {
        CellState::ALL.into_iter().find(|c| c.as_str() == s)
    }

    /// How urgently an operator should look: portals sort worst first.
    fn severity(self) -> u8 {
        match self {
            CellState::Failed => 5,
            CellState::Skipped => 4,
            CellState::Halted => 3,
            CellState::Held => 2,
            CellState::Pending => 1,
            CellState::InSync => 0,
        }
    }

    /// The state a service's last recorded result stands for. `waiting` (new values
    /// wait for an earlier rollout wave) is `pending`: nothing is wrong, it is on its way.
    pub fn of(result: LastResult) -> CellState {
        match result {
            LastResult::Ok => CellState::InSync,
            LastResult::Pending | LastResult::Waiting => CellState::Pending,
            LastResult::Skipped => CellState::Skipped,
            LastResult::Failed => CellState::Failed,
            LastResult::Rejected | LastResult::Held => CellState::Held,
            LastResult::Halted => CellState::Halted,
        }
    }
}

/// A point in time, serialized as `{"unix": …, "rfc3339": "…"}` (UTC). Only the number
/// is kept: a snapshot holds tens of thousands of these, and the text is made when shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamp {
    pub unix: i64,
}

impl Timestamp {
    pub fn at(unix: i64) -> Timestamp {
        Timestamp { unix }
    }

    /// RFC 3339 in UTC, whole seconds (`2026-12-02T10:14:00Z`).
    pub fn rfc3339(&self) -> String {
        chrono::DateTime::from_timestamp(self.unix, 0)
            .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
            .unwrap_or_default()
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = serializer.serialize_struct("Timestamp", 2)?;
        st.serialize_field("unix", &self.unix)?;
        st.serialize_field("rfc3339", &self.rfc3339())?;
        st.end()
    }
}

/// One (portal, service) cell.
#[derive(Debug, Clone, Serialize)]
pub struct ServiceStatus {
    /// Shared by every portal's cell of the service (20,000 cells, 20 names).
    #[serde(serialize_with = "as_str")]
    pub service: Arc<str>,
    pub state: CellState,
    /// The portal's rollout wave, 1-based as in the logs; `null` without `[sync] rollout`.
    pub wave: Option<usize>,
    /// When the values now on the portal were last confirmed there (first found equal,
    /// or pushed and read back); `null` when nothing is confirmed.
    pub last_confirmed: Option<Timestamp>,
    /// The last push confirmed by a read-back.
    pub last_push: Option<Timestamp>,
    /// The last attempt, whatever its result; `null` when never attempted.
    pub last_attempt: Option<Timestamp>,
    /// Why the last attempt did not end in sync (scrubbed: no value, secret path or
    /// fingerprint).
    pub last_error: Option<String>,
    /// What kind of problem `last_error` is (`portal_server`, `secret_not_found`, …).
    pub error_kind: Option<FailureKind>,
}

/// One portal: its cells and its worst state.
#[derive(Debug, Clone, Serialize)]
pub struct PortalStatus {
    pub name: String,
    pub wave: Option<usize>,
    /// The worst state of its services (`in_sync` when all are).
    pub state: CellState,
    /// The last cycle in which every service of this portal was in sync.
    pub last_success: Option<Timestamp>,
    pub services: Vec<ServiceStatus>,
}

/// One secret store's health, from the last cycle that read it.
#[derive(Debug, Clone, Serialize)]
pub struct SourceStatus {
    pub name: String,
    pub kind: String,
    /// `true`: the store answered in the last cycle that used it (a missing secret shows
    /// on its services instead); `null`: no cycle has used it yet.
    pub ok: Option<bool>,
    pub last_error: Option<String>,
    pub error_kind: Option<FailureKind>,
    pub checked_at: Option<Timestamp>,
}

/// The last cycle that ran to the end.
#[derive(Debug, Clone, Serialize)]
pub struct CycleStatus {
    pub started: Timestamp,
    pub finished: Timestamp,
    /// `ok`, `partial` or `failed`.
    pub result: String,
}

/// An SQS queue the daemon long-polls for rotation events (host and queue name only).
#[derive(Debug, Clone, Serialize)]
pub struct EventsQueue {
    pub source: String,
    pub host: String,
    pub queue: String,
}

impl EventsQueue {
    /// From a queue URL: its host and last path segment (the queue's name); the account
    /// id in between is left out.
    pub fn from_url(source: &str, url: &url::Url) -> EventsQueue {
        EventsQueue {
            source: source.to_string(),
            host: url.host_str().unwrap_or_default().to_string(),
            queue: url
                .path_segments()
                .and_then(|mut s| s.next_back())
                .unwrap_or_default()
                .to_string(),
        }
    }
}

/// What only a running daemon knows.
#[derive(Debug, Clone, Serialize, Default)]
pub struct DaemonStatus {
    /// When the schedule next starts a cycle (approximate for `interval`: counted from
    /// the last cycle's start; jitter not included).
    pub next_cycle: Option<Timestamp>,
    /// The rotation-event queues it polls; empty: none.
    pub events: Vec<EventsQueue>,
}

impl DaemonStatus {
    /// The next cycle of `schedule` after `now`, given when the last one started.
    pub fn next_cycle(schedule: &Schedule, last_started: Option<i64>, now: i64) -> Option<i64> {
        let base = match schedule {
            Schedule::Interval(_) => last_started.unwrap_or(now),
            Schedule::Cron(_) => now,
        };
        let at = schedule.next_after(chrono::DateTime::from_timestamp(base, 0)?)?;
        Some(at.timestamp().max(now))
    }
}

/// Everything, built once per cycle; requests view it through a [`Filter`].
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub generated_at: Timestamp,
    /// Every configured portal, by name.
    pub portals: Vec<PortalStatus>,
    pub sources: Vec<SourceStatus>,
    pub last_cycle: Option<CycleStatus>,
    /// `None` for `authsync status` (no daemon).
    pub daemon: Option<DaemonStatus>,
}

impl Snapshot {
    /// The status of every mapped (portal, service) from `state`; services the state has
    /// never seen are `pending`. Error texts are scrubbed here, once.
    pub fn build(
        config: &Config,
        state: &State,
        daemon: Option<DaemonStatus>,
        now: i64,
    ) -> Snapshot {
        let scrubber = Scrubber::new(config);
        let staged = config.sync.rollout.is_some();
        let mut portals = Vec::with_capacity(config.portals.len());
        let mut interned: BTreeMap<&str, Arc<str>> = BTreeMap::new();
        for name in config.portals.keys() {
            let wave = staged.then(|| config.sync.wave_of(name) + 1);
            let names: BTreeSet<&str> = config
                .maps
                .iter()
                .filter(|m| m.applies_to(name))
                .map(|m| m.service.as_str())
                .collect();
            let recorded = state.portals.get(name);
            let scrub = scrubber.for_portal(name);
            let services: Vec<ServiceStatus> = names
                .into_iter()
                .map(|service| {
                    let st = recorded.and_then(|p| p.services.get(service));
                    let shared = interned
                        .entry(service)
                        .or_insert_with(|| Arc::from(service))
                        .clone();
                    cell(shared, st, wave, &scrub)
                })
                .collect();
            let worst = services
                .iter()
                .map(|s| s.state)
                .max_by_key(|s| s.severity())
                .unwrap_or(CellState::InSync);
            portals.push(PortalStatus {
                name: name.clone(),
                wave,
                state: worst,
                last_success: recorded.and_then(|p| p.last_success).map(Timestamp::at),
                services,
            });
        }
        let sources = config
            .sources
            .iter()
            .map(|(name, cfg)| {
                let rec = state.sources.get(name);
                SourceStatus {
                    name: name.clone(),
                    kind: cfg.kind().to_string(),
                    ok: rec.map(|r| r.ok),
                    last_error: rec
                        .and_then(|r| r.error.as_deref())
                        .map(|e| scrubber.scrub(e, None)),
                    error_kind: rec.and_then(|r| r.error_kind),
                    checked_at: rec.map(|r| Timestamp::at(r.checked_at)),
                }
            })
            .collect();
        let last_cycle = state.last_cycle.as_ref().map(|c| CycleStatus {
            started: Timestamp::at(c.started),
            finished: Timestamp::at(c.finished),
            result: c.result.clone(),
        });
        Snapshot {
            generated_at: Timestamp::at(now),
            portals,
            sources,
            last_cycle,
            daemon,
        }
    }

    /// What `filter` selects.
    pub fn view<'a>(&'a self, filter: &'a Filter) -> Status<'a> {
        let selected: Vec<&PortalStatus> = self
            .portals
            .iter()
            .filter(|p| filter.selects_portal(&p.name))
            .collect();
        let mut summary = Summary {
            portals: selected.len(),
            ..Summary::default()
        };
        for p in &selected {
            if p.state != CellState::InSync {
                summary.portals_with_problems += 1;
            }
            for s in &p.services {
                summary.services += 1;
                summary.states.add(s.state);
            }
        }
        let mut collapsed_in_sync = 0;
        let mut shown: Vec<PortalView<'_>> = Vec::new();
        for p in selected {
            if filter.states.is_empty() {
                if !filter.all && p.state == CellState::InSync {
                    collapsed_in_sync += 1;
                    continue;
                }
                shown.push(PortalView::of(p, p.services.iter().collect()));
            } else {
                let cells: Vec<&ServiceStatus> = p
                    .services
                    .iter()
                    .filter(|s| filter.states.contains(&s.state))
                    .collect();
                if !cells.is_empty() {
                    shown.push(PortalView::of(p, cells));
                }
            }
        }
        // Problems first: worst state, then name.
        shown.sort_by(|a, b| {
            b.state
                .severity()
                .cmp(&a.state.severity())
                .then_with(|| a.name.cmp(b.name))
        });
        let matching = shown.len();
        let start = filter.offset.min(matching);
        let end = filter
            .limit
            .map_or(matching, |l| start.saturating_add(l).min(matching));
        let shown: Vec<PortalView<'_>> = shown.drain(start..end).collect();
        let services: Vec<&str> = shown
            .iter()
            .flat_map(|p| p.services.iter().map(|s| &*s.service))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        Status {
            generated_at: &self.generated_at,
            filter: FilterEcho {
                states: filter.states.iter().map(|s| s.as_str()).collect(),
                portals: &filter.portals,
                all: filter.all,
                limit: filter.limit,
                offset: filter.offset,
            },
            summary,
            portals_matching: matching,
            collapsed_in_sync,
            next_offset: (end < matching).then_some(end),
            services,
            portals: shown,
            sources: &self.sources,
            last_cycle: self.last_cycle.as_ref(),
            daemon: self.daemon.as_ref(),
        }
    }
}

fn as_str<S: serde::Serializer>(s: &Arc<str>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(s)
}

fn cell(
    service: Arc<str>,
    st: Option<&ServiceState>,
    wave: Option<usize>,
    scrub: &PortalScrubber<'_>,
) -> ServiceStatus {
    let Some(st) = st else {
        return ServiceStatus {
            service,
            state: CellState::Pending,
            wave,
            last_confirmed: None,
            last_push: None,
            last_attempt: None,
            last_error: None,
            error_kind: None,
        };
    };
    let state = CellState::of(st.result);
    let confirmed = (!st.confirmed.is_empty())
        .then(|| st.confirmed_at.max(st.pushed_at))
        .flatten();
    ServiceStatus {
        service,
        state,
        wave,
        last_confirmed: confirmed.map(Timestamp::at),
        last_push: st.pushed_at.map(Timestamp::at),
        last_attempt: (st.last_attempt > 0).then(|| Timestamp::at(st.last_attempt)),
        last_error: (state != CellState::InSync)
            .then(|| st.error.as_deref().map(|e| scrub.scrub(e)))
            .flatten(),
        error_kind: (state != CellState::InSync)
            .then_some(st.error_kind)
            .flatten(),
    }
}

/// Which cells a request wants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filter {
    /// Only cells in these states (empty: every state).
    pub states: Vec<CellState>,
    /// Only portals with these names or globs (empty: every portal).
    pub portals: Vec<String>,
    /// Also list portals whose services are all in sync (otherwise they are only
    /// counted, so a large fleet's page shows what needs attention). Ignored when
    /// `states` is given.
    pub all: bool,
    /// At most this many portals (`None`: no limit), from `offset` on.
    pub limit: Option<usize>,
    pub offset: usize,
}

/// How many portals a page shows unless `?limit=` says otherwise: keeps the page under
/// 1 MiB even when every portal of a large fleet has a problem.
pub const PAGE_LIMIT: usize = 100;

/// A query string the status endpoints cannot use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FilterError {
    #[error("unknown state `{0}` (expected in_sync, pending, failed, skipped, held or halted)")]
    State(String),
    #[error("`{0}` must be a whole number")]
    Number(&'static str),
    #[error("unknown parameter `{0}` (expected state, portal, all, limit, offset, refresh)")]
    Unknown(String),
}

impl Filter {
    /// The endpoints' filter from a query string: `state=failed&state=held` (or
    /// `state=failed,held`), `portal=eu-*`, `all=1`, `limit=N` (0: none), `offset=N`.
    /// Also returns `refresh=N` (seconds) for the page.
    pub fn from_query(query: &str) -> Result<(Filter, Option<u32>), FilterError> {
        let mut f = Filter {
            limit: Some(PAGE_LIMIT),
            ..Filter::default()
        };
        let mut refresh = None;
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            let value = value.trim();
            match &*key {
                "state" => {
                    for s in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                        let state =
                            CellState::parse(s).ok_or_else(|| FilterError::State(s.into()))?;
                        if !f.states.contains(&state) {
                            f.states.push(state);
                        }
                    }
                }
                "portal" => f.portals.extend(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(String::from),
                ),
                "all" => f.all = !matches!(value, "" | "0" | "false" | "no"),
                "limit" => {
                    let n: usize = value.parse().map_err(|_| FilterError::Number("limit"))?;
                    f.limit = (n > 0).then_some(n);
                }
                "offset" => f.offset = value.parse().map_err(|_| FilterError::Number("offset"))?,
                "refresh" if value.is_empty() => {}
                "refresh" => {
                    refresh = Some(value.parse().map_err(|_| FilterError::Number("refresh"))?)
                }
                other => return Err(FilterError::Unknown(other.to_string())),
            }
        }
        Ok((f, refresh))
    }

    fn selects_portal(&self, name: &str) -> bool {
        self.portals.is_empty()
            || self
                .portals
                .iter()
                .any(|p| p == name || glob_matches(p, name))
    }
}

/// The filter a view was made with, echoed in `/status.json`.
#[derive(Debug, Serialize)]
pub struct FilterEcho<'a> {
    pub states: Vec<&'static str>,
    pub portals: &'a [String],
    pub all: bool,
    pub limit: Option<usize>,
    pub offset: usize,
}

/// Cells per state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StateCounts {
    pub in_sync: usize,
    pub pending: usize,
    pub failed: usize,
    pub skipped: usize,
    pub held: usize,
    pub halted: usize,
}

impl StateCounts {
    fn add(&mut self, s: CellState) {
        *self.slot(s) += 1;
    }

    fn slot(&mut self, s: CellState) -> &mut usize {
        match s {
            CellState::InSync => &mut self.in_sync,
            CellState::Pending => &mut self.pending,
            CellState::Failed => &mut self.failed,
            CellState::Skipped => &mut self.skipped,
            CellState::Held => &mut self.held,
            CellState::Halted => &mut self.halted,
        }
    }

    pub fn get(&self, s: CellState) -> usize {
        let mut copy = *self;
        *copy.slot(s)
    }
}

/// Counts over every cell of the selected portals (before the state filter, the
/// collapsing of in-sync portals and the page limit).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub portals: usize,
    pub portals_with_problems: usize,
    /// (portal, service) cells.
    pub services: usize,
    pub states: StateCounts,
}

impl Summary {
    /// `authsync status`'s exit status: 1 if anything failed (a skipped service — a
    /// secret that could not be read — counts as failed, as it does for `sync`), else 2
    /// if anything is pending, held or halted, else 0.
    pub fn exit_code(&self) -> u8 {
        let s = &self.states;
        if s.failed + s.skipped > 0 {
            1
        } else if s.pending + s.held + s.halted > 0 {
            2
        } else {
            0
        }
    }
}

/// One portal's row in a view.
#[derive(Debug, Serialize)]
pub struct PortalView<'a> {
    pub name: &'a str,
    pub wave: Option<usize>,
    pub state: CellState,
    pub last_success: Option<&'a Timestamp>,
    pub services: Vec<&'a ServiceStatus>,
}

impl<'a> PortalView<'a> {
    fn of(p: &'a PortalStatus, services: Vec<&'a ServiceStatus>) -> PortalView<'a> {
        PortalView {
            name: &p.name,
            wave: p.wave,
            state: p.state,
            last_success: p.last_success.as_ref(),
            services,
        }
    }
}

/// What `/status.json` returns (and the page and `authsync status` show).
#[derive(Debug, Serialize)]
pub struct Status<'a> {
    pub generated_at: &'a Timestamp,
    pub filter: FilterEcho<'a>,
    pub summary: Summary,
    /// Portals the filter selects before the page limit (not counting collapsed ones).
    pub portals_matching: usize,
    /// Portals left out because all their services are in sync (see `all`).
    pub collapsed_in_sync: usize,
    /// The `offset` of the next page, when the limit cut the list.
    pub next_offset: Option<usize>,
    /// The service columns: every service of the portals shown.
    pub services: Vec<&'a str>,
    /// Portals with problems first (worst state, then name).
    pub portals: Vec<PortalView<'a>>,
    pub sources: &'a [SourceStatus],
    pub last_cycle: Option<&'a CycleStatus>,
    /// `null` from `authsync status` (no daemon).
    pub daemon: Option<&'a DaemonStatus>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::failure::FailureKind;
    use crate::state::{CycleRecord, SourceRecord};

    fn config(extra_sync: &str) -> Config {
        let text = format!(
            r#"
[sync]
{extra_sync}
[sources.vault]
kind = "vault"
address = "http://127.0.0.1:8200"
auth = {{ method = "token", token = "t" }}
[portals.alpha]
url = "http://127.0.0.1:1"
api_key = "sk"
[portals.beta]
url = "http://127.0.0.1:2"
api_key = "sk"
[portals.eu-1]
url = "http://127.0.0.1:3"
api_key = "sk"
[[map]]
service = "google"
props.googleClientId = "vault:secret/oauth/google#client_id"
[[map]]
service = "s3"
portals = ["alpha", "beta"]
props.acesskey = "vault:secret/s3#id"
"#
        );
        crate::config::parse_valid(&text)
    }

    fn set(state: &mut State, portal: &str, service: &str, st: ServiceState) {
        *state
            .portals
            .entry(portal.into())
            .or_default()
            .services
            .entry_or_default(service) = st;
    }

    fn state() -> State {
        let mut s = State::empty();
        set(
            &mut s,
            "alpha",
            "google",
            ServiceState {
                result: LastResult::Ok,
                last_attempt: 1_700_000_000,
                confirmed: [("googleClientId", "fp:0a1b2c3d4e5f")]
                    .into_iter()
                    .collect(),
                confirmed_at: Some(1_699_000_000),
                pushed_at: Some(1_699_000_000),
                ..Default::default()
            },
        );
        set(
            &mut s,
            "alpha",
            "s3",
            ServiceState {
                result: LastResult::Ok,
                last_attempt: 1_700_000_000,
                confirmed: [("acesskey", "fp:0a1b2c3d4e5f")].into_iter().collect(),
                confirmed_at: Some(1_699_000_000),
                ..Default::default()
            },
        );
        set(
            &mut s,
            "beta",
            "google",
            ServiceState {
                result: LastResult::Failed,
                last_attempt: 1_700_000_000,
                error: Some("portal beta: the portal answered 500 (fp:aaaaaaaaaaaa)".into()),
                error_kind: Some(FailureKind::PortalServer),
                ..Default::default()
            },
        );
        set(
            &mut s,
            "beta",
            "s3",
            ServiceState {
                result: LastResult::Rejected,
                last_attempt: 1_700_000_000,
                held: [("acesskey", "fp:bbbbbbbbbbbb")].into_iter().collect(),
                error: Some("refused".into()),
                error_kind: Some(FailureKind::Refused),
                ..Default::default()
            },
        );
        s.sources = [(
            "vault",
            SourceRecord {
                ok: false,
                error: Some("reading vault:secret/s3 failed: 403".into()),
                error_kind: Some(FailureKind::SourceDenied),
                checked_at: 1_700_000_000,
            },
        )]
        .into_iter()
        .collect();
        s.last_cycle = Some(CycleRecord {
            started: 1_700_000_000,
            finished: 1_700_000_005,
            result: "partial".into(),
        });
        s
    }

    fn snapshot(extra_sync: &str) -> Snapshot {
        Snapshot::build(&config(extra_sync), &state(), None, 1_700_000_010)
    }

    fn everything() -> Filter {
        Filter {
            all: true,
            ..Filter::default()
        }
    }

    #[test]
    fn results_map_to_the_contract_states_and_unseen_services_are_pending() {
        assert_eq!(CellState::of(LastResult::Ok), CellState::InSync);
        assert_eq!(CellState::of(LastResult::Waiting), CellState::Pending);
        assert_eq!(CellState::of(LastResult::Rejected), CellState::Held);
        assert_eq!(CellState::of(LastResult::Halted), CellState::Halted);
        assert_eq!(CellState::of(LastResult::Skipped), CellState::Skipped);
        let snap = snapshot("");
        let all = everything();
        let view = snap.view(&all);
        let states: Vec<(&str, Vec<(&str, CellState)>)> = view
            .portals
            .iter()
            .map(|p| {
                (
                    p.name,
                    p.services.iter().map(|s| (&*s.service, s.state)).collect(),
                )
            })
            .collect();
        assert_eq!(
            states,
            [
                (
                    "beta",
                    vec![("google", CellState::Failed), ("s3", CellState::Held)]
                ),
                ("eu-1", vec![("google", CellState::Pending)]),
                (
                    "alpha",
                    vec![("google", CellState::InSync), ("s3", CellState::InSync)]
                ),
            ]
        );
        assert_eq!(view.summary.states.in_sync, 2);
        assert_eq!(view.summary.states.failed, 1);
        assert_eq!(view.summary.states.held, 1);
        assert_eq!(view.summary.states.pending, 1);
        assert_eq!(view.summary.portals_with_problems, 2);
        assert_eq!(view.services, ["google", "s3"]);
        // No wave without a rollout; 1-based waves with one.
        assert_eq!(view.portals[0].wave, None);
        let staged = snapshot(r#"rollout = [["alpha"], ["*"]]"#);
        let v = staged.view(&all);
        let wave = |n: &str| v.portals.iter().find(|p| p.name == n).and_then(|p| p.wave);
        assert_eq!((wave("alpha"), wave("beta")), (Some(1), Some(2)));
        assert_eq!(v.portals[0].services[0].wave, Some(2));
    }

    #[test]
    fn the_default_filter_collapses_in_sync_portals_and_filters_select() {
        let snap = snapshot("");
        let (f, refresh) = Filter::from_query("").unwrap_or_default();
        assert_eq!(refresh, None);
        let v = snap.view(&f);
        assert_eq!(
            v.portals.iter().map(|p| p.name).collect::<Vec<_>>(),
            ["beta", "eu-1"]
        );
        assert_eq!(v.collapsed_in_sync, 1);
        // By state (repeated or comma-separated) and by portal glob.
        let (f, refresh) =
            Filter::from_query("state=held,failed&portal=b*&refresh=30").unwrap_or_default();
        assert_eq!(refresh, Some(30));
        let v = snap.view(&f);
        assert_eq!(v.portals.len(), 1);
        assert_eq!(v.portals[0].services.len(), 2);
        assert_eq!(v.summary.portals, 1);
        let (f, _) = Filter::from_query("state=in_sync").unwrap_or_default();
        let v = snap.view(&f);
        assert_eq!(v.portals.len(), 1);
        assert_eq!(v.portals[0].name, "alpha");
        // Exact names too, and paging.
        let (f, _) = Filter::from_query("portal=eu-1&portal=alpha&all=1").unwrap_or_default();
        assert_eq!(snap.view(&f).portals.len(), 2);
        let (f, _) = Filter::from_query("all=1&limit=1&offset=1").unwrap_or_default();
        let v = snap.view(&f);
        assert_eq!(v.portals[0].name, "eu-1");
        assert_eq!(v.next_offset, Some(2));
        assert_eq!(
            Filter::from_query("state=broken"),
            Err(FilterError::State("broken".into()))
        );
        assert!(Filter::from_query("limit=x").is_err());
        assert!(Filter::from_query("bogus=1").is_err());
    }

    #[test]
    fn exit_codes_follow_the_contract() {
        let counts = |f: &dyn Fn(&mut StateCounts)| {
            let mut s = Summary::default();
            f(&mut s.states);
            s.exit_code()
        };
        assert_eq!(counts(&|s| s.in_sync = 3), 0);
        assert_eq!(counts(&|s| s.pending = 1), 2);
        assert_eq!(counts(&|s| s.held = 1), 2);
        assert_eq!(counts(&|s| s.halted = 1), 2);
        assert_eq!(
            counts(&|s| {
                s.held = 1;
                s.failed = 1
            }),
            1
        );
        assert_eq!(counts(&|s| s.skipped = 1), 1);
        assert_eq!(snapshot("").view(&everything()).summary.exit_code(), 1);
    }

    #[test]
    fn no_fingerprint_or_secret_path_in_the_json() {
        let snap = snapshot("");
        let json = serde_json::to_string(&snap.view(&everything())).unwrap_or_default();
        for leak in [
            "0a1b2c3d4e5f",
            "aaaaaaaaaaaa",
            "bbbbbbbbbbbb",
            "secret/s3",
            "oauth/google",
        ] {
            assert!(!json.contains(leak), "{leak} in {json}");
        }
        assert!(json.contains(r#""error_kind":"portal_server""#), "{json}");
        assert!(
            json.contains(r#""rfc3339":"2023-11-14T22:13:20Z""#),
            "{json}"
        );
        assert!(json.contains(r#""ok":false"#), "{json}");
    }

    #[test]
    fn events_queues_show_host_and_name_only() {
        let url = url::Url::parse("https://sqs.eu-west-1.amazonaws.com/123456789012/authsync")
            .unwrap_or_else(|e| panic!("{e}"));
        let q = EventsQueue::from_url("aws", &url);
        assert_eq!(q.host, "sqs.eu-west-1.amazonaws.com");
        assert_eq!(q.queue, "authsync");
    }

    #[test]
    fn the_next_cycle_follows_the_schedule() {
        let every = Schedule::Interval(std::time::Duration::from_secs(60));
        assert_eq!(DaemonStatus::next_cycle(&every, Some(100), 110), Some(160));
        assert_eq!(DaemonStatus::next_cycle(&every, Some(0), 110), Some(110));
        let cron = Schedule::Cron("0 */5 * * * *".into());
        assert_eq!(DaemonStatus::next_cycle(&cron, None, 1), Some(300));
    }
}
