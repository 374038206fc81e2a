//! The configuration file: what the operator writes, validated into typed settings.
//!
//! The doc comments on these types are the user reference for every option;
//! `config/authsync.example.toml` shows them all in use. Loading (with file:line:column
//! for every problem, all reported at once) lives in [`load`]; prop references
//! (`"vault:secret/oauth/google#client_id"`) in [`reference`].

mod checks;
mod load;
pub mod reference;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

pub use checks::{insecure_http_host, Checks};
#[cfg(test)]
pub use load::parse_valid;
pub use load::{load, parse, ConfigError, Diagnostic, Loaded, Severity};
pub use reference::{PropRef, SecretRef};
// Each store's settings live with the store (`src/sources/<kind>/`); these names stay
// here for the code that reached them through `config`.
pub use crate::sources::aws::AwsSourceConfig;
pub use crate::sources::files::FilesSourceConfig;
pub use crate::sources::vault::{VaultAuth, VaultSourceConfig};
pub use crate::sources::SourceConfig;

use crate::secret::{SecretSetting, SecretString};

/// Default config path when neither `-c` nor `$AUTHSYNC_CONFIG` is given.
pub const DEFAULT_PATH: &str = "/etc/authsync/authsync.toml";

/// The whole, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from (for messages).
    pub file: PathBuf,
    pub sync: SyncConfig,
    pub server: ServerConfig,
    pub log: LogConfig,
    /// Secret stores by name; prop references name them (`vault:…`). Each kind's
    /// options are documented with the store: [`VaultSourceConfig`], [`AwsSourceConfig`],
    /// [`FilesSourceConfig`].
    pub sources: BTreeMap<String, SourceConfig>,
    /// Target portals by name.
    pub portals: BTreeMap<String, PortalConfig>,
    /// One entry per `[[map]]` block, in file order.
    pub maps: Vec<MapConfig>,
}

/// When the daemon runs a cycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Schedule {
    /// A 6-field cron expression (with seconds), evaluated in UTC.
    Cron(String),
    /// A fixed period between cycle starts.
    Interval(Duration),
}

impl Schedule {
    /// The longest time between two cycle starts (how long the daemon may wait for its
    /// next cycle; sizes the liveness check).
    pub fn longest_gap(&self) -> Duration {
        match self {
            Schedule::Interval(every) => *every,
            Schedule::Cron(expr) => {
                let Ok(cron) = cron_parser().parse(expr) else {
                    return Duration::from_secs(86_400);
                };
                let mut prev = chrono::Utc::now();
                let mut longest = Duration::ZERO;
                for next in cron.iter_after(prev).take(64) {
                    let gap = (next - prev).to_std().unwrap_or_default();
                    longest = longest.max(gap);
                    prev = next;
                }
                longest
            }
        }
    }

    /// When the schedule next fires after `after` (cron), or `after` + the interval.
    pub fn next_after(
        &self,
        after: chrono::DateTime<chrono::Utc>,
    ) -> Option<chrono::DateTime<chrono::Utc>> {
        match self {
            Schedule::Interval(every) => chrono::Duration::from_std(*every)
                .ok()
                .and_then(|d| after.checked_add_signed(d)),
            Schedule::Cron(expr) => cron_parser()
                .parse(expr)
                .ok()?
                .find_next_occurrence(&after, false)
                .ok(),
        }
    }
}

/// How authsync reads cron expressions: 6 fields with seconds, UTC.
pub fn cron_parser() -> croner::parser::CronParser {
    croner::parser::CronParser::builder()
        .seconds(croner::parser::Seconds::Required)
        .dom_and_dow(true)
        .build()
}

/// What to do with values edited on the portal (or anything else that differs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Drift {
    /// Every cycle, make the portal's values equal to the sources (reverts UI edits).
    #[default]
    Enforce,
    /// Push only when a source value changed since the last push.
    Ignore,
}

/// `[sync]`: when and how cycles run.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncConfig {
    /// Cron schedule, 6 fields with seconds, UTC: `"0 */5 * * * *"`. Exactly one of
    /// `schedule` / `interval`; neither means `interval = "5m"`.
    #[serde(default)]
    pub schedule: Option<String>,
    /// Fixed interval between cycles: `"30s"`, `"5m"`, `"1h"`; whole seconds, at least
    /// `1s` (the scheduler counts seconds).
    #[serde(default, with = "humantime_serde")]
    pub interval: Option<Duration>,
    /// Random delay (0..jitter) before each scheduled cycle, so fleets don't stampede.
    #[serde(default, with = "humantime_serde")]
    pub jitter: Option<Duration>,
    /// `enforce` (default) or `ignore`; see [`Drift`].
    #[serde(default)]
    pub drift: Drift,
    /// Where `run` and `sync` record what was pushed (fingerprints, never values).
    #[serde(default = "default_state_file")]
    pub state_file: PathBuf,
    /// Portals worked on at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Staged rollout: waves of portal names or globs (`*`, `?`), in order, e.g.
    /// `[["staging"], ["eu-*"], ["*"]]`. A portal belongs to the first wave that matches
    /// it, and every portal must match one. A new source value goes to wave 1 first; the
    /// next wave gets it only once every portal of the earlier waves confirmed it (and,
    /// in `run`, kept it for `rollout_soak`). A value refused in a wave is not sent to
    /// later waves until the source changes. Default: one wave of every portal.
    #[serde(default)]
    pub rollout: Option<Vec<Vec<String>>>,
    /// `run` only: how long the earlier waves must have kept a new value, with no
    /// refusal, before the next wave gets it. Default `0s`.
    #[serde(default, with = "humantime_serde")]
    pub rollout_soak: Option<Duration>,
    /// A cycle running longer than this is cancelled and reported as failed; `/healthz`
    /// fails when the daemon made no progress for this long plus one interval.
    /// Default `10m`.
    #[serde(default = "default_cycle_timeout", with = "humantime_serde")]
    pub cycle_timeout: Duration,
}

impl Default for SyncConfig {
    fn default() -> Self {
        SyncConfig {
            schedule: None,
            interval: None,
            jitter: None,
            drift: Drift::default(),
            state_file: default_state_file(),
            concurrency: default_concurrency(),
            rollout: None,
            rollout_soak: None,
            cycle_timeout: default_cycle_timeout(),
        }
    }
}

impl SyncConfig {
    /// The rollout wave (0-based) of a portal: the first wave with a matching name or
    /// glob. Without `rollout`, every portal is in wave 0. (Load-time validation makes
    /// sure every configured portal matches a wave.)
    pub fn wave_of(&self, portal: &str) -> usize {
        let Some(waves) = &self.rollout else { return 0 };
        waves
            .iter()
            .position(|wave| wave.iter().any(|pattern| glob_matches(pattern, portal)))
            .unwrap_or(waves.len())
    }

    /// How many rollout waves there are.
    pub fn waves(&self) -> usize {
        self.rollout.as_ref().map_or(1, |w| w.len().max(1))
    }

    /// The soak time between waves (`run` only).
    pub fn soak(&self) -> Duration {
        self.rollout_soak.unwrap_or_default()
    }

    /// The effective schedule (validated at load time).
    pub fn schedule(&self) -> Schedule {
        match (&self.schedule, self.interval) {
            (Some(cron), _) => Schedule::Cron(cron.clone()),
            (None, Some(every)) => Schedule::Interval(every),
            (None, None) => Schedule::Interval(Duration::from_secs(300)),
        }
    }
}

fn default_state_file() -> PathBuf {
    PathBuf::from("/var/lib/authsync/state.json")
}
fn default_concurrency() -> usize {
    16
}
fn default_cycle_timeout() -> Duration {
    Duration::from_secs(600)
}

/// Whether a portal name matches a rollout pattern (`*` any run, `?` one character;
/// a pattern that is not a valid glob matches only itself).
pub fn glob_matches(pattern: &str, name: &str) -> bool {
    match glob::Pattern::new(pattern) {
        Ok(p) => p.matches(name),
        Err(_) => pattern == name,
    }
}

/// `[server]`: the HTTP endpoints served by `run`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Address for `/metrics`, `/healthz`, `/readyz`, `/trigger`.
    #[serde(default = "default_listen")]
    pub listen: std::net::SocketAddr,
    /// Bearer token required by `POST /trigger`; absent → the endpoint answers 404.
    #[serde(default)]
    pub trigger_token: Option<SecretSetting>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: default_listen(),
            trigger_token: None,
        }
    }
}

fn default_listen() -> std::net::SocketAddr {
    std::net::SocketAddr::from(([127, 0, 0, 1], 9464))
}

/// `[log]`: log output. `--log-format` / `--log-level` override it; `RUST_LOG` wins over both.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// `text` (default) or `json`.
    #[serde(default)]
    pub format: LogFormat,
    /// `error`, `warn`, `info` (default), `debug` or `trace`.
    #[serde(default)]
    pub level: LogLevel,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

/// Log verbosity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    #[default]
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Error => "error",
            LogLevel::Warn => "warn",
            LogLevel::Info => "info",
            LogLevel::Debug => "debug",
            LogLevel::Trace => "trace",
        }
    }
}

/// How authsync authenticates to a portal.
#[derive(Debug, Clone)]
pub enum PortalAuth {
    /// `api_key`: a personal access token (`sk-…`) of an admin with scope `*:write`.
    ApiKey(SecretSetting),
    /// `user` + `password`: logs in through `POST /api/2.0/authentication`.
    Login {
        user: String,
        password: SecretSetting,
    },
}

/// Which kind of portal a `[portals.NAME]` block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Flavor {
    /// ONLYOFFICE DocSpace: `GET/POST /api/2.0/settings/authservice`.
    #[default]
    Docspace,
    /// ONLYOFFICE Workspace (Community Server v12): the settings page's AjaxPro call.
    /// Best effort; needs `user` + `password` (Workspace has no API keys).
    Workspace,
}

/// `[portals.NAME]`: a portal to keep in sync.
///
/// `allow_insecure_http = true` lets `url` be a plain `http://` URL to a host other than
/// this machine (127.0.0.0/8, `::1`, `localhost` are always allowed). Without it such a
/// URL is a config error: the API key or password and every pushed value would cross
/// the network in clear text. Default false.
#[derive(Debug, Clone)]
pub struct PortalConfig {
    /// Base URL, e.g. `https://docs.example.com`.
    pub url: url::Url,
    /// `docspace` (default) or `workspace`.
    pub flavor: Flavor,
    pub auth: PortalAuth,
    /// Per-request timeout (default 15 s).
    pub timeout: Duration,
    /// PEM CA file for portals behind a private CA.
    pub ca_cert: Option<PathBuf>,
}

/// `[[map]]`: which secret goes into which prop of one portal service.
#[derive(Debug, Clone)]
pub struct MapConfig {
    /// The portal's service name (exact, case-sensitive), e.g. `google`, `s3`, `telegram`.
    pub service: String,
    /// Portals this block applies to; `None` = every portal.
    pub portals: Option<Vec<String>>,
    /// prop name → where its value comes from.
    pub props: BTreeMap<String, PropRef>,
    /// Line of the block's `service =` in the file (for messages).
    pub line: usize,
}

impl MapConfig {
    pub fn applies_to(&self, portal: &str) -> bool {
        self.portals
            .as_ref()
            .is_none_or(|ps| ps.iter().any(|p| p == portal))
    }
}

/// A literal prop value (`{ value = "…" }`), kept secret like any other.
pub type Literal = SecretString;
