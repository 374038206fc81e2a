//! The systemd notify protocol, for `Type=notify` units: READY when the first cycle is
//! done, RELOADING/READY around SIGHUP reloads, STOPPING at shutdown, and watchdog pings
//! at half of `WatchdogSec` while the main loop's heartbeat is recent. A no-op when `NOTIFY_SOCKET`
//! is not set (not under systemd).

use std::sync::Arc;
use std::time::Duration;

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    if let Err(e) = sd_notify::notify(false, states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// The service is up (first cycle finished).
pub fn ready() {
    send(&[NotifyState::Ready, NotifyState::Status("running")]);
}

/// A config reload has begun; call [`ready`] when it is over.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

/// Shutdown has begun.
pub fn stopping() {
    send(&[NotifyState::Stopping]);
}

/// Starts watchdog pings if systemd asked for them (`WATCHDOG_USEC`). Pings stop while
/// the main loop's heartbeat is stale, so a wedged loop gets the service restarted.
pub fn spawn_watchdog(liveness: Arc<crate::liveness::Liveness>) {
    let Some(usec) = watchdog_usec() else { return };
    let every = Duration::from_micros(usec / 2);
    tracing::info!(
        interval_ms = every.as_millis() as u64,
        "systemd watchdog enabled"
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        loop {
            tick.tick().await;
            if liveness.is_alive() {
                send(&[NotifyState::Watchdog]);
            }
        }
    });
}

/// `WATCHDOG_USEC`, if the watchdog is meant for this process. As in libsystemd, an
/// unset `WATCHDOG_PID` means "this process" (the `sd-notify` crate insists on it).
fn watchdog_usec() -> Option<u64> {
    let usec: u64 = std::env::var("WATCHDOG_USEC")
        .ok()?
        .parse()
        .ok()
        .filter(|u| *u > 0)?;
    match std::env::var("WATCHDOG_PID") {
        Ok(pid) if pid.parse::<u32>().ok() != Some(std::process::id()) => None,
        _ => Some(usec),
    }
}
