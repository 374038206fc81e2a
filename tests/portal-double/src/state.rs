//! The double's shared state. Two `std::sync::Mutex`es, never held across an await and never
//! one inside the other: the portal's own state, and the key store, which doubles of one
//! installation share.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::auth::Accounts;
use crate::catalogue::{docspace_catalogue, docspace_catalogue_for, workspace_catalogue};
use crate::config::{DoubleConfig, Flavor, PortalState, Version};
use crate::faults::Faults;
use crate::lang::Language;
use crate::record::RequestLog;
use crate::services::Store;

/// A portal's settings that the rules read; some change at runtime through
/// [`PortalDouble`](crate::PortalDouble)'s setters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Settings {
    pub version: Version,
    pub language: Language,
    pub paid_allowed: bool,
    /// The limit in effect (the config's override or the version's).
    pub max_value_len: usize,
    pub default_consumers: bool,
    pub portal_state: PortalState,
    pub ip_restricted: bool,
    /// `false`: the payment filter answers 402 with an empty body.
    pub tenant_paid: bool,
    /// The operator hid the authorization-keys setting: 402 with the plan message.
    pub setting_hidden: bool,
}

#[derive(Debug)]
pub(crate) struct State {
    pub settings: Settings,
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
    /// The installation's keys, shared with the other doubles of the installation.
    store: Arc<Mutex<Store>>,
}

impl Shared {
    /// A double with its own key store, filled from `cfg.services`.
    pub fn new(cfg: DoubleConfig) -> Shared {
        let services = match cfg.flavor {
            // A catalogue left at its (DocSpace v3.7) default becomes the flavor's and version's.
            Flavor::DocSpace if cfg.services == docspace_catalogue() => {
                docspace_catalogue_for(cfg.version)
            }
            Flavor::Workspace if cfg.services == docspace_catalogue() => workspace_catalogue(),
            _ => cfg.services.clone(),
        };
        let store = Arc::new(Mutex::new(Store::new(services)));
        Shared::with_store(cfg, store)
    }

    /// A double whose keys are `other`'s (`cfg.services` is ignored).
    pub fn sharing(cfg: DoubleConfig, other: &Shared) -> Shared {
        Shared::with_store(cfg, Arc::clone(&other.store))
    }

    fn with_store(cfg: DoubleConfig, store: Arc<Mutex<Store>>) -> Shared {
        let settings = Settings {
            version: cfg.version,
            language: cfg.language,
            paid_allowed: cfg.paid_allowed,
            max_value_len: cfg.effective_max_value_len(),
            default_consumers: cfg.default_consumers,
            portal_state: PortalState::Active,
            ip_restricted: false,
            tenant_paid: true,
            setting_hidden: false,
        };
        // Workspace has no API keys.
        let api_keys = match cfg.flavor {
            Flavor::DocSpace => cfg.api_keys,
            Flavor::Workspace => Vec::new(),
        };
        Shared {
            flavor: cfg.flavor,
            state: Mutex::new(State {
                settings,
                accounts: Accounts::new(api_keys, cfg.users),
                faults: Faults::default(),
                log: RequestLog::default(),
            }),
            store,
        }
    }

    /// Locks the portal's state. A test that panicked while holding the lock must not turn
    /// every later request into a panic too, so poisoning is ignored (here and in
    /// [`store`](Self::store)).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Locks the key store. Never while holding [`lock`](Self::lock)'s guard.
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the portal's current settings.
    pub fn settings(&self) -> Settings {
        self.lock().settings
    }

    /// Whether two doubles share one key store.
    pub fn shares_store_with(&self, other: &Shared) -> bool {
        Arc::ptr_eq(&self.store, &other.store)
    }
}
