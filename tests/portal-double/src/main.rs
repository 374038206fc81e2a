//! `portal-double`: runs the portal double as a standalone server (for demos and manual tests).

use std::io::Write;
use std::net::SocketAddr;

use clap::Parser;
use portal_double::{ApiKey, DoubleConfig, PortalDouble, User};

/// A test double of an ONLYOFFICE DocSpace portal's authorization-keys API.
#[derive(Debug, Parser)]
#[command(name = "portal-double", version)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8085")]
    listen: SocketAddr,
    /// An admin API key with write scope (repeatable); default `sk-test-admin`.
    #[arg(long = "api-key", value_name = "KEY")]
    api_keys: Vec<String>,
    /// Model a plan without third-party services: POSTs to paid services get 402.
    #[arg(long)]
    no_paid: bool,
    /// Longest accepted prop value (255 models DocSpace v3.1–v3.6).
    #[arg(long, default_value_t = 4000)]
    max_value_len: usize,
    /// An admin user who can log in (repeatable), as EMAIL:PASSWORD.
    #[arg(long = "user", value_name = "EMAIL:PASSWORD", value_parser = parse_user)]
    users: Vec<User>,
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
    let mut cfg = DoubleConfig {
        paid_allowed: !args.no_paid,
        max_value_len: args.max_value_len,
        users: args.users,
        listen: Some(args.listen),
        ..DoubleConfig::default()
    };
    if !args.api_keys.is_empty() {
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
