//! The double's shared state, behind one `std::sync::Mutex` that is never held across an await.

use std::sync::{Mutex, MutexGuard};

use crate::auth::Accounts;
use crate::catalogue::{docspace_catalogue, workspace_catalogue};
use crate::config::{DoubleConfig, Flavor};
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
    /// Fixed for the double's life, so outside the lock.
    pub flavor: Flavor,
    state: Mutex<State>,
}

impl Shared {
    pub fn new(cfg: DoubleConfig) -> Shared {
        let (services, api_keys) = match cfg.flavor {
            Flavor::DocSpace => (cfg.services, cfg.api_keys),
            // Workspace has no API keys; a catalogue left at its (DocSpace) default becomes
            // the Workspace one.
            Flavor::Workspace if cfg.services == docspace_catalogue() => {
                (workspace_catalogue(), Vec::new())
            }
            Flavor::Workspace => (cfg.services, Vec::new()),
        };
        Shared {
            flavor: cfg.flavor,
            state: Mutex::new(State {
                services: Services::new(services, cfg.paid_allowed, cfg.max_value_len),
                accounts: Accounts::new(api_keys, cfg.users),
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
