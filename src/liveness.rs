//! Liveness that means something: the daemon's main loop beats a heartbeat whenever it
//! makes progress (an event handled, a wave recorded, a periodic tick while it waits);
//! `/healthz` and the systemd watchdog report alive only while the last beat is recent.
//! A loop wedged inside a blocking call stops beating, and the supervisor restarts it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The main loop's heartbeat and how long it may stay silent.
#[derive(Debug)]
pub struct Liveness {
    start: Instant,
    /// Milliseconds since `start` of the last beat.
    last: AtomicU64,
    /// Longest silence that still counts as alive, in milliseconds.
    limit: AtomicU64,
}

impl Liveness {
    /// Alive now; silent for longer than `limit` → not alive.
    pub fn new(limit: Duration) -> Liveness {
        Liveness {
            start: Instant::now(),
            last: AtomicU64::new(0),
            limit: AtomicU64::new(millis(limit)),
        }
    }

    /// The loop made progress.
    pub fn beat(&self) {
        self.last
            .store(millis(self.start.elapsed()), Ordering::Release);
    }

    /// Changes the allowed silence (config reload).
    pub fn set_limit(&self, limit: Duration) {
        self.limit.store(millis(limit), Ordering::Release);
    }

    /// How long since the last beat.
    pub fn silent_for(&self) -> Duration {
        let now = millis(self.start.elapsed());
        Duration::from_millis(now.saturating_sub(self.last.load(Ordering::Acquire)))
    }

    pub fn is_alive(&self) -> bool {
        self.silent_for() <= Duration::from_millis(self.limit.load(Ordering::Acquire))
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn silence_beyond_the_limit_is_death_and_a_beat_revives() {
        let l = Liveness::new(Duration::from_millis(30));
        assert!(l.is_alive());
        std::thread::sleep(Duration::from_millis(60));
        assert!(!l.is_alive(), "silent for {:?}", l.silent_for());
        l.beat();
        assert!(l.is_alive());
        l.set_limit(Duration::ZERO);
        std::thread::sleep(Duration::from_millis(5));
        assert!(!l.is_alive());
    }
}
