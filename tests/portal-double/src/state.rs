//! The double's shared state, behind one `std::sync::Mutex` that is never held across an await.

use std::sync::{Mutex, MutexGuard};

use crate::auth::Accounts;
use crate::config::DoubleConfig;
use crate::faults::Faults;
use crate::record::RequestLog;
use crate::services::Services;

#[derive(Debug)]
pub(crate) struct State {
    pub services: Services,
    pub accounts: Accounts,
    pub faults: Faults,
    pub log: RequestLog,
}

/// What the server task and the [`PortalDouble`](crate::PortalDouble) handle share.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<State>,
}

impl Shared {
    pub fn new(cfg: DoubleConfig) -> Shared {
        Shared {
            state: Mutex::new(State {
                services: Services::new(cfg.services, cfg.paid_allowed, cfg.max_value_len),
                accounts: Accounts::new(cfg.api_keys, cfg.users),
                faults: Faults::default(),
                log: RequestLog::default(),
            }),
        }
    }

    /// Locks the state. A test that panicked while holding the lock must not turn every
    /// later request into a panic too, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}
