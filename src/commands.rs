//! The commands: load the config, set up logging, do the work, map the result to the
//! contract's exit statuses.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::cli::{Cli, Command, Selection};
use crate::config::{self, Config, ConfigError, PortalAuth};
use crate::mapping::{self, Filter};
use crate::secret::{ExposeSecret, SecretSetting};
use crate::state::State;
use crate::sync::{CycleOptions, Engine, Mode};
use crate::{logging, plan, report, resolve};

const OK: u8 = 0;
const FAILED: u8 = 1;
const CHANGES_PENDING: u8 = 2;

/// Runs the command line.
pub async fn run(cli: Cli) -> ExitCode {
    let path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_PATH));
    let loaded = match config::load(&path) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("authsync: {e}");
            if let ConfigError::Invalid { .. } = e {
                eprintln!("authsync: fix the errors above; nothing was sent anywhere");
            }
            return ExitCode::from(FAILED);
        }
    };
    for w in &loaded.warnings {
        eprintln!("{w}");
    }
    let config = loaded.config;
    logging::init(
        cli.log_format.unwrap_or(config.log.format),
        cli.log_level.unwrap_or(config.log.level),
    );
    let code = match cli.command {
        Command::Check { online } => check(config, loaded.warnings.len(), online).await,
        Command::Plan(sel) => plan_cmd(config, sel).await,
        Command::Sync {
            dry_run,
            retry_refused,
            selection,
        } => sync_cmd(config, selection, dry_run, retry_refused).await,
        Command::Run => crate::daemon::run(config, path).await,
        Command::Services { portal } => services(config, &portal).await,
        Command::Status {
            json,
            portals,
            states,
            all,
        } => status_cmd(&config, json, portals, &states, all),
    };
    ExitCode::from(code)
}

fn filter(config: &Config, sel: Selection) -> Result<Filter, u8> {
    let f = Filter {
        portals: sel.portals,
        services: sel.services,
        only: None,
    };
    f.check(config).map_err(|e| {
        eprintln!("authsync: {e}");
        FAILED
    })?;
    Ok(f)
}

async fn plan_cmd(config: Config, sel: Selection) -> u8 {
    let filter = match filter(&config, sel) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let (mut state, _) = load_state(&config);
    let engine = Engine::new(Arc::new(config)).await;
    let report = engine
        .cycle(&filter, CycleOptions::once(Mode::Plan), &mut state)
        .await;
    print!("{}", report::render(&report, false));
    if report.has_plan_errors() || !engine.setup_errors.is_empty() {
        FAILED
    } else if report.pending() > 0 {
        CHANGES_PENDING
    } else {
        OK
    }
}

async fn sync_cmd(config: Config, sel: Selection, dry_run: bool, retry_refused: bool) -> u8 {
    let filter = match filter(&config, sel) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let (mut state, _) = load_state(&config);
    let state_file = config.sync.state_file.clone();
    let engine = Engine::new(Arc::new(config)).await;
    let mode = if dry_run { Mode::Plan } else { Mode::Apply };
    let opts = CycleOptions {
        retry_refused,
        ..CycleOptions::once(mode)
    };
    // The state is saved after each rollout wave: a sync killed mid-rollout resumes
    // where it stopped.
    let report = engine
        .cycle_with(&filter, opts, &mut state, |s| {
            if !dry_run {
                if let Err(e) = s.save(&state_file) {
                    tracing::error!(error = %e, "state not saved");
                }
            }
        })
        .await;
    print!("{}", report::render(&report, !dry_run));
    let mut code = if report.is_ok() && engine.setup_errors.is_empty() {
        OK
    } else {
        FAILED
    };
    if !dry_run {
        if let Err(e) = state.save(&state_file) {
            tracing::error!(error = %e, "state not saved; the next run compares every portal afresh");
            code = FAILED;
        }
    }
    code
}

/// `authsync status`: the status page's model from the state file and the config.
/// The exit status covers every service of the selected portals, whatever `--state`
/// shows.
fn status_cmd(
    config: &Config,
    json: bool,
    portals: Vec<String>,
    states: &[String],
    all: bool,
) -> u8 {
    let mut filter = crate::status::Filter {
        portals,
        all,
        ..crate::status::Filter::default()
    };
    for s in states.iter().flat_map(|s| s.split(',')).map(str::trim) {
        match crate::status::CellState::parse(s) {
            Some(state) => filter.states.push(state),
            None => {
                eprintln!("authsync: {}", crate::status::FilterError::State(s.into()));
                return FAILED;
            }
        }
    }
    let (state, _) = load_state(config);
    let now = chrono::Utc::now().timestamp();
    let snapshot = crate::status::Snapshot::build(config, &state, None, now);
    let view = snapshot.view(&filter);
    if json {
        match serde_json::to_string_pretty(&view) {
            Ok(text) => println!("{text}"),
            Err(e) => {
                eprintln!("authsync: cannot write the status as JSON: {e}");
                return FAILED;
            }
        }
    } else {
        print!("{}", crate::status::text::render(&view));
    }
    view.summary.exit_code()
}

/// The state file, or an empty state with a warning when it cannot be used.
pub fn load_state(config: &Config) -> (State, bool) {
    let (state, problem) = State::load(&config.sync.state_file);
    if let Some(e) = &problem {
        tracing::warn!(error = %e, "state file unusable");
    }
    (state, problem.is_none())
}

/// Every secret setting in the config, with a label saying where it is.
fn secret_settings(config: &Config) -> Vec<(String, &SecretSetting)> {
    let mut out = Vec::new();
    if let Some(t) = &config.server.trigger_token {
        out.push(("[server] trigger_token".to_string(), t));
    }
    for (name, s) in &config.sources {
        for (key, setting) in s.secret_settings() {
            out.push((format!("[sources.{name}] {key}"), setting));
        }
    }
    for (name, p) in &config.portals {
        match &p.auth {
            PortalAuth::ApiKey(k) => out.push((format!("[portals.{name}] api_key"), k)),
            PortalAuth::Login { password, .. } => {
                out.push((format!("[portals.{name}] password"), password))
            }
        }
    }
    out
}

async fn check(config: Config, warnings: usize, online: bool) -> u8 {
    let mut problems: Vec<String> = Vec::new();
    let mut notes: Vec<String> = Vec::new();
    for (label, setting) in secret_settings(&config) {
        if let Err(e) = setting.read() {
            let msg = format!("{label} ({}): {e}", setting.describe());
            if online {
                problems.push(msg);
            } else {
                notes.push(msg);
            }
        }
    }
    if online {
        problems.extend(check_online(config.clone()).await);
    }
    for n in &notes {
        println!("warning: {n} (needed at run time)");
    }
    for p in &problems {
        println!("error: {p}");
    }
    let summary = format!(
        "{}: {} source(s), {} portal(s), {} map block(s); {} warning(s), {} error(s){}",
        config.file.display(),
        config.sources.len(),
        config.portals.len(),
        config.maps.len(),
        warnings + notes.len(),
        problems.len(),
        if online { " (online)" } else { "" }
    );
    println!("{summary}");
    if problems.is_empty() {
        OK
    } else {
        FAILED
    }
}

/// Logs in everywhere, reads every referenced secret and checks every mapped service and
/// prop against each portal's own list.
async fn check_online(config: Config) -> Vec<String> {
    let mut problems = Vec::new();
    let engine = Engine::new(Arc::new(config)).await;
    for (what, e) in &engine.setup_errors {
        problems.push(format!("{what}: {e}"));
    }
    let mut notes = Vec::new();
    for (name, source) in engine.sources.iter() {
        if let Err(e) = source.authenticate().await {
            problems.push(format!("source {name}: {e}"));
        }
    }
    // Rotation-event queues: reachable and allowed, with the source's credentials.
    for (name, aws, events) in crate::events::queues(&engine.config) {
        let sdk = crate::sources::aws::sdk_config(aws).await;
        match crate::events::check_queue(&sdk, events).await {
            Ok(q) => notes.push(format!(
                "source {name}: events queue reachable ({} waiting, {} in flight)",
                q.waiting, q.in_flight
            )),
            Err(e) => problems.push(format!("source {name}: {e}")),
        }
    }
    let targets = mapping::targets(&engine.config, &Filter::default());
    let resolution = resolve::resolve(
        &targets,
        &engine.sources,
        &resolve::SecretCache::default(),
        resolve::Freshness::Fresh,
    )
    .await;
    for d in &resolution.desired {
        if let Err(errs) = &d.values {
            for e in errs {
                problems.push(format!("{} / {}: {e}", d.portal, d.service));
            }
        }
    }
    let mut holdings: Vec<(String, crate::state::Pairs)> = Vec::new();
    for (name, client) in &engine.portals {
        let listing = match client.services(crate::portal::Retry::Normal).await {
            Ok(l) => l,
            Err(e) => {
                problems.push(format!("portal {name}: {e}"));
                continue;
            }
        };
        notes.push(format!(
            "portal {name}: {}; longest value it stores: {}",
            listing.version_hint.as_deref().unwrap_or("unknown version"),
            listing
                .value_limit
                .map_or("no limit".to_string(), |l| format!("{l} characters"))
        ));
        for s in &listing.services {
            if s.listed_as != s.name {
                notes.push(format!(
                    "portal {name}: service `{}` is listed as `{}`; authsync writes `{}`",
                    s.name, s.listed_as, s.key
                ));
            }
        }
        for t in targets.iter().filter(|t| &t.portal == name) {
            // Check the names only: a placeholder value stands in for each prop.
            let names = t
                .props
                .iter()
                .map(|(p, _)| {
                    (
                        p.clone(),
                        crate::secret::SecretString::from("x".to_string()),
                    )
                })
                .collect();
            if let Err(e) = plan::diff(&t.service, &names, &listing, &engine.fingerprints) {
                problems.push(format!("{name} / {}: {e}", t.service));
            }
        }
        // Values longer than this portal stores.
        for d in resolution.desired.iter().filter(|d| &d.portal == name) {
            let (Ok(values), Some(limit)) = (&d.values, listing.value_limit) else {
                continue;
            };
            for (prop, v) in values {
                let len = v.expose_secret().encode_utf16().count();
                if len > limit {
                    problems.push(format!(
                        "{name} / {} / {prop}: the value is {len} characters long; this portal stores at most {limit}",
                        d.service
                    ));
                }
            }
        }
        // What the portal holds, to spot portals that share one key store.
        let fp = &engine.fingerprints;
        let held: crate::state::Pairs = listing
            .services
            .iter()
            .flat_map(|s| {
                s.props
                    .iter()
                    .filter(|p| !p.value.expose_secret().is_empty())
                    .map(move |p| (format!("{}/{}", s.name, p.name), fp.of(&p.value)))
            })
            .collect();
        if !held.is_empty() {
            holdings.push((name.clone(), held));
        }
    }
    for (i, (a, held_a)) in holdings.iter().enumerate() {
        for (b, held_b) in &holdings[i + 1..] {
            if held_a == held_b {
                notes.push(format!("portals {a} and {b} hold exactly the same keys: if they are one self-hosted installation they share them, and the maps must give both the same values (else they flip-flop)"));
            }
        }
    }
    for n in notes {
        println!("note: {n}");
    }
    engine.close().await;
    problems
}

async fn services(config: Config, portal: &str) -> u8 {
    let Some(cfg) = config.portals.get(portal) else {
        let hint = crate::catalog::hint(portal, config.portals.keys().map(String::as_str));
        eprintln!("authsync: unknown portal `{portal}`{hint}");
        return FAILED;
    };
    let client = match crate::portal::connect(portal, cfg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("authsync: portal {portal}: {e}");
            return FAILED;
        }
    };
    match client.services(crate::portal::Retry::Normal).await {
        Ok(listing) => {
            for s in listing.services {
                let mut flags = Vec::new();
                if !s.can_set {
                    flags.push("not settable (fixed in the server config)".to_string());
                }
                if s.paid {
                    flags.push("paid".to_string());
                }
                if s.listed_as != s.name {
                    flags.push(format!("listed as {}", s.listed_as));
                }
                let flags = if flags.is_empty() {
                    String::new()
                } else {
                    format!("  [{}]", flags.join(", "))
                };
                println!("{}  ({}){flags}", s.name, s.title);
                for p in &s.props {
                    let state = if p.value.expose_secret().is_empty() {
                        "empty"
                    } else {
                        "set"
                    };
                    println!("    {:<28} {state}", p.name);
                }
            }
            OK
        }
        Err(e) => {
            eprintln!("authsync: portal {portal}: {e}");
            FAILED
        }
    }
}
