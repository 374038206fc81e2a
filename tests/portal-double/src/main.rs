//! `portal-double`: runs the portal double as a standalone server (for demos and manual tests).

use std::io::Write;
use std::net::SocketAddr;

use clap::{Parser, ValueEnum};
use portal_double::{ApiKey, DoubleConfig, Flavor, Language, PortalDouble, User, Version};

/// A test double of an ONLYOFFICE portal's authorization-keys API (DocSpace or Workspace).
#[derive(Debug, Parser)]
#[command(name = "portal-double", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8085")]
    listen: SocketAddr,
    /// Which product to play: DocSpace (REST `settings/authservice`) or Workspace (Community
    /// Server v12: AjaxPro `SaveAuthKeys`, settings page `/Management.aspx?type=10`, login only).
    #[arg(long, value_enum, default_value_t = FlavorArg::Docspace)]
    flavor: FlavorArg,
    /// An admin API key with write scope (repeatable); default `sk-test-admin`. DocSpace only.
    #[arg(long = "api-key", value_name = "KEY")]
    api_keys: Vec<String>,
    /// Model a plan without third-party services: POSTs to paid services get 402.
    #[arg(long)]
    no_paid: bool,
    /// Longest accepted prop value; 0 = the DocSpace version's (4000 from v3.7.1, 255 before).
    #[arg(long, default_value_t = 0)]
    max_value_len: usize,
    /// The DocSpace release to play (GET fields, value limit, catalogue, unknown-service rule).
    #[arg(long = "docspace-version", value_enum, default_value_t = VersionArg::V3_7)]
    docspace_version: VersionArg,
    /// The language of localized messages: en, de, ru, fr, es, it, zh-CN.
    #[arg(long, default_value = "en", value_parser = parse_language)]
    language: Language,
    /// An admin user who can log in (repeatable), as EMAIL:PASSWORD.
    #[arg(long = "user", value_name = "EMAIL:PASSWORD", value_parser = parse_user)]
    users: Vec<User>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum FlavorArg {
    Docspace,
    Workspace,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum VersionArg {
    #[value(name = "3.5")]
    V3_5,
    #[value(name = "3.6")]
    V3_6,
    #[value(name = "3.7")]
    V3_7,
}

fn parse_language(text: &str) -> Result<Language, String> {
    Language::from_code(text).ok_or_else(|| format!("unknown language {text:?}"))
}

fn parse_user(text: &str) -> Result<User, String> {
    let (email, password) = text
        .split_once(':')
        .ok_or_else(|| "expected EMAIL:PASSWORD".to_owned())?;
    Ok(User {
        email: email.to_owned(),
        password: password.to_owned(),
        admin: true,
        tfa: false,
    })
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let version = match args.docspace_version {
        VersionArg::V3_5 => Version::V3_5,
        VersionArg::V3_6 => Version::V3_6,
        VersionArg::V3_7 => Version::V3_7,
    };
    let base = match args.flavor {
        FlavorArg::Docspace => DoubleConfig::docspace(version),
        FlavorArg::Workspace => DoubleConfig::workspace(),
    };
    let mut cfg = DoubleConfig {
        language: args.language,
        paid_allowed: !args.no_paid,
        max_value_len: args.max_value_len,
        users: args.users,
        listen: Some(args.listen),
        ..base
    };
    if cfg.flavor == Flavor::Workspace {
        eprintln!("portal-double: playing a Workspace (Community Server v12) portal");
        if !args.api_keys.is_empty() {
            eprintln!("portal-double: --api-key is ignored: a Workspace portal has no API keys");
        }
        if cfg.users.is_empty() {
            eprintln!("portal-double: no --user given: nobody can log in to this Workspace portal");
        }
    } else if !args.api_keys.is_empty() {
        cfg.api_keys = args
            .api_keys
            .into_iter()
            .map(|key| ApiKey {
                key,
                write: true,
                admin: true,
            })
            .collect();
    }
    let portal = PortalDouble::start(cfg).await?;
    let mut stdout = std::io::stdout();
    // scripts/demo.sh parses this line: keep its format.
    writeln!(stdout, "portal-double listening on {}", portal.url())?;
    stdout.flush()?;
    shutdown_signal().await;
    drop(portal);
    Ok(())
}

/// Resolves on SIGINT (ctrl-c) or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
