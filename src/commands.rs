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
        Command::Sync { dry_run, selection } => sync_cmd(config, selection, dry_run).await,
        Command::Run => crate::daemon::run(config, path).await,
        Command::Services { portal } => services(config, &portal).await,
    };
    ExitCode::from(code)
}

fn filter(config: &Config, sel: Selection) -> Result<Filter, u8> {
    let f = Filter {
        portals: sel.portals,
        services: sel.services,
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
    if !report.is_ok() || !engine.setup_errors.is_empty() {
        FAILED
    } else if report.pending() > 0 {
        CHANGES_PENDING
    } else {
        OK
    }
}

async fn sync_cmd(config: Config, sel: Selection, dry_run: bool) -> u8 {
    let filter = match filter(&config, sel) {
        Ok(f) => f,
        Err(code) => return code,
    };
    let (mut state, _) = load_state(&config);
    let state_file = config.sync.state_file.clone();
    let engine = Engine::new(Arc::new(config)).await;
    let mode = if dry_run { Mode::Plan } else { Mode::Apply };
    let report = engine
        .cycle(&filter, CycleOptions::once(mode), &mut state)
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
    for (name, source) in engine.sources.iter() {
        if let Err(e) = source.authenticate().await {
            problems.push(format!("source {name}: {e}"));
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
    for (name, client) in &engine.portals {
        let services = match client.services().await {
            Ok(s) => s,
            Err(e) => {
                problems.push(format!("portal {name}: {e}"));
                continue;
            }
        };
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
            if let Err(e) = plan::diff(&t.service, &names, &services, &engine.fingerprints) {
                problems.push(format!("{name} / {}: {e}", t.service));
            }
        }
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
    let client = match crate::portal::PortalClient::new(portal, cfg) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("authsync: portal {portal}: {e}");
            return FAILED;
        }
    };
    match client.services().await {
        Ok(services) => {
            for s in services {
                let mut flags = Vec::new();
                if !s.can_set {
                    flags.push("not settable (fixed in the server config)");
                }
                if s.paid {
                    flags.push("paid");
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
