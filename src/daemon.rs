//! `authsync run`: the long-running service.

use std::path::PathBuf;

use crate::config::Config;

/// Runs the daemon until SIGTERM/SIGINT. Returns the process exit status.
pub async fn run(_config: Config, _path: PathBuf) -> u8 {
    eprintln!("authsync: `run` is not available in this build yet; use `authsync sync` from a timer or cron job");
    1
}
