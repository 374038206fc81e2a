//! Command-line interface (clap). The commands themselves live in [`crate::commands`].

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::config::{LogFormat, LogLevel};

/// Keeps ONLYOFFICE portals' authorization keys in sync with Vault/OpenBao, AWS Secrets
/// Manager and secret files.
#[derive(Debug, Parser)]
#[command(name = "authsync", version, about, long_about = None)]
pub struct Cli {
    /// Config file [default: $AUTHSYNC_CONFIG, else /etc/authsync/authsync.toml]
    #[arg(
        short,
        long,
        global = true,
        env = "AUTHSYNC_CONFIG",
        value_name = "FILE"
    )]
    pub config: Option<PathBuf>,

    /// Log format (overrides [log] format)
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,

    /// Log level (overrides [log] level; RUST_LOG wins over both)
    #[arg(long, global = true, value_enum)]
    pub log_level: Option<LogLevel>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate the config (offline); --online also logs in everywhere and reads every secret
    Check {
        /// Authenticate to every source and portal, read every referenced secret, and
        /// verify every mapped service and prop exists and is settable on every portal
        #[arg(long)]
        online: bool,
    },
    /// Show what a sync would change (values as fingerprints). Exit 0: nothing to do, 2: changes pending, 1: error
    Plan(Selection),
    /// Run one full cycle and exit. Exit 0: everything in sync, 1: something failed
    Sync {
        /// Compute and print the changes, send nothing
        #[arg(long)]
        dry_run: bool,
        /// Push values a portal refused before once more, and lift rollout halts (held
        /// values are otherwise not pushed again until the source changes)
        #[arg(long)]
        retry_refused: bool,
        #[command(flatten)]
        selection: Selection,
    },
    /// Run the daemon: cycles on the schedule, HTTP endpoints, SIGHUP reload
    Run,
    /// Show each portal and service's state from the state file (no daemon needed).
    /// Exit 0: everything in sync, 1: something failed or was skipped, 2: something
    /// pending, held or halted
    Status {
        /// Print the `/status.json` document instead of a table
        #[arg(long)]
        json: bool,
        /// Only this portal, by name or glob (repeatable)
        #[arg(long = "portal", value_name = "P")]
        portals: Vec<String>,
        /// Only services in this state: in_sync, pending, failed, skipped, held, halted
        /// (repeatable)
        #[arg(long = "state", value_name = "S")]
        states: Vec<String>,
        /// Also list portals whose services are all in sync
        #[arg(long)]
        all: bool,
    },
    /// List a portal's services and props as the portal reports them (values masked)
    Services {
        /// Portal name from the config
        #[arg(long, value_name = "P")]
        portal: String,
    },
}

/// `--portal` / `--service` filters.
#[derive(Debug, Args, Clone, Default)]
pub struct Selection {
    /// Only this portal (repeatable)
    #[arg(long = "portal", value_name = "P")]
    pub portals: Vec<String>,
    /// Only this service (repeatable)
    #[arg(long = "service", value_name = "S")]
    pub services: Vec<String>,
}
