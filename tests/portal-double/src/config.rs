//! What a double is started with: its dialect, services, credentials and plan limits.

use std::net::SocketAddr;

use crate::catalogue::{docspace_catalogue, docspace_catalogue_for, workspace_catalogue};
use crate::lang::Language;

/// Which ONLYOFFICE product the double plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Flavor {
    /// DocSpace: the REST endpoint `GET`/`POST /api/2.0/settings/authservice`
    /// (authservice-api.md §1–§5).
    #[default]
    DocSpace,
    /// Workspace (Community Server v12, authservice-api.md §6): no REST endpoint for the keys
    /// (it answers 404); they are saved through the AjaxPro call
    /// [`WORKSPACE_SAVE_PATH`](crate::WORKSPACE_SAVE_PATH) (`X-AjaxPro-Method: SaveAuthKeys`)
    /// and read back only from the settings page
    /// [`WORKSPACE_SETTINGS_PAGE`](crate::WORKSPACE_SETTINGS_PAGE). No API keys: only login
    /// tokens authenticate (raw `Authorization: <token>` or the `asc_auth_key` cookie).
    Workspace,
}

/// Which DocSpace release the double plays (authservice-api.md §3–§5). Workspace doubles ignore
/// it.
///
/// | | GET fields | value limit | catalogue | unknown service / `canSet: false` on POST |
/// |---|---|---|---|---|
/// | `V3_5` | no `paid`, no prop `type` | 255 | no `externaldb`, `nextcloud` | 200 `true`, nothing stored; all-empty → 415 `Key for read only…` |
/// | `V3_6` | `paid`, no prop `type` | 255 | no `externaldb`, `nextcloud` | 403 `Access denied` |
/// | `V3_7` | `paid` and prop `type` (`externaldb` adds `options`, `dependsOn`, `dependsOnValue`) | 4000 | every service of §5 | 403 `Access denied` |
///
/// Every version lists `appleid` as `appleID` and accepts a POST only to `appleid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum Version {
    /// DocSpace v3.5.x (before the v3.6 check of the service name).
    V3_5,
    /// DocSpace v3.6.x.
    V3_6,
    /// DocSpace v3.7.1 and later (the default).
    #[default]
    V3_7,
}

impl Version {
    /// The longest accepted prop value in UTF-16 code units: 4000 from v3.7.1, 255 before.
    pub fn max_value_len(self) -> usize {
        match self {
            Version::V3_5 | Version::V3_6 => 255,
            Version::V3_7 => 4000,
        }
    }
}

/// The tenant's status, which the portal checks on every API request after authentication
/// (authservice-api.md §1). Set with
/// [`PortalDouble::set_portal_state`](crate::PortalDouble::set_portal_state). DocSpace only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PortalState {
    /// Normal operation.
    #[default]
    Active,
    /// Being moved to another region: 403 with an empty body.
    Moving,
    /// Being restored from a backup: 403 with an empty body.
    Restoring,
    /// Its storage being encrypted: 403 with an empty body.
    Encrypting,
    /// Suspended (or pending removal): 404 with an empty body.
    Suspended,
}

/// How a [`PortalDouble`](crate::PortalDouble) is set up. `Default` is a fresh DocSpace v3.7
/// portal in English on a plan that allows paid services, with one admin API key
/// `sk-test-admin`; [`DoubleConfig::docspace`] is the same for another DocSpace version and
/// [`DoubleConfig::workspace`] for a Workspace portal.
#[derive(Debug, Clone)]
pub struct DoubleConfig {
    /// The product the double plays; default [`Flavor::DocSpace`].
    pub flavor: Flavor,
    /// The DocSpace release; default [`Version::V3_7`]. Decides GET's fields, the value limit
    /// (unless [`max_value_len`](Self::max_value_len) overrides it), the default catalogue and
    /// what a POST to an unknown or fixed service gets.
    pub version: Version,
    /// The language of every localized message; default [`Language::En`]. Changeable at runtime
    /// with [`PortalDouble::set_language`](crate::PortalDouble::set_language).
    pub language: Language,
    /// The services the portal has, in the order `GET settings/authservice` lists them (and
    /// the Workspace settings page shows them). Services left at exactly
    /// [`docspace_catalogue()`] (the default) become the catalogue of the flavor and version:
    /// [`workspace_catalogue()`] on Workspace, [`docspace_catalogue_for`]`(version)` on
    /// DocSpace.
    pub services: Vec<ServiceSpec>,
    /// API keys (`Authorization: Bearer <key>`). Ignored by a Workspace double, which has none:
    /// a Bearer credential is unauthenticated there.
    pub api_keys: Vec<ApiKey>,
    /// Users who can log in with `POST /api/2.0/authentication`.
    pub users: Vec<User>,
    /// `false` models a plan without third-party services: a POST to a paid service gets 402
    /// (on Workspace, `SaveAuthKeys` answers a `BillingException` error).
    pub paid_allowed: bool,
    /// The longest accepted prop value, in UTF-16 code units as .NET counts string length;
    /// longer gets the 400 validation problem. `0` (the default) takes the version's limit
    /// ([`Version::max_value_len`]: 4000 since DocSpace v3.7.1, 255 in v3.1–v3.6); any other
    /// value overrides it. DocSpace only: Workspace has no limit (beyond the double's 1 MiB body
    /// limit).
    pub max_value_len: usize,
    /// The server option `core:default-consumers=true`: GET ignores stored values and shows
    /// every prop as the service was configured when the double started, so a pushed value
    /// never reads back (POST still stores it: see [`PortalDouble::value`](crate::PortalDouble::value)).
    /// Changeable at runtime with
    /// [`PortalDouble::set_default_consumers`](crate::PortalDouble::set_default_consumers).
    /// DocSpace only.
    pub default_consumers: bool,
    /// Where to listen; `None` means `127.0.0.1:0` (any free port).
    pub listen: Option<SocketAddr>,
}

impl Default for DoubleConfig {
    fn default() -> Self {
        DoubleConfig {
            flavor: Flavor::DocSpace,
            services: docspace_catalogue(),
            api_keys: vec![ApiKey {
                key: "sk-test-admin".to_owned(),
                write: true,
                admin: true,
            }],
            users: Vec::new(),
            paid_allowed: true,
            max_value_len: 0,
            default_consumers: false,
            listen: None,
            version: Version::default(),
            language: Language::default(),
        }
    }
}

impl DoubleConfig {
    /// A fresh DocSpace portal of this version: [`docspace_catalogue_for`]`(version)`, one admin
    /// API key `sk-test-admin`, paid services allowed, English.
    pub fn docspace(version: Version) -> DoubleConfig {
        DoubleConfig {
            version,
            services: docspace_catalogue_for(version),
            ..DoubleConfig::default()
        }
    }

    /// The value limit in effect: [`max_value_len`](Self::max_value_len) if set, else the
    /// version's.
    pub fn effective_max_value_len(&self) -> usize {
        if self.max_value_len == 0 {
            self.version.max_value_len()
        } else {
            self.max_value_len
        }
    }

    /// A fresh Workspace (Community Server v12) portal: [`workspace_catalogue()`], no API keys,
    /// no users (add some: on Workspace only a login authenticates), paid services allowed.
    pub fn workspace() -> DoubleConfig {
        DoubleConfig {
            flavor: Flavor::Workspace,
            services: workspace_catalogue(),
            api_keys: Vec::new(),
            ..DoubleConfig::default()
        }
    }
}

/// One authorization-keys service of the portal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceSpec {
    /// The name POST finds it by (exact, case-sensitive), e.g. `google` (DocSpace) or `Google`
    /// (Workspace).
    pub name: String,
    /// The human title GET shows, e.g. `Google`.
    pub title: String,
    /// `false` when the installer fixed the keys in the server's config file: GET then lists
    /// the service without props and POST answers 403 (Workspace: the settings page shows it
    /// without inputs and `SaveAuthKeys` answers `Access denied`).
    pub can_set: bool,
    /// Needs a plan with third-party services (see [`DoubleConfig::paid_allowed`]).
    pub paid: bool,
    /// `(prop name, initial value)` in portal order; `""` is unset.
    pub props: Vec<(String, String)>,
    /// Whether saving checks the keys with the third party.
    pub validated: Validation,
}

impl ServiceSpec {
    /// A settable, free, unvalidated service whose props all start unset.
    pub fn new(name: &str, title: &str, props: &[&str]) -> ServiceSpec {
        ServiceSpec {
            name: name.to_owned(),
            title: title.to_owned(),
            can_set: true,
            paid: false,
            props: props
                .iter()
                .map(|p| ((*p).to_owned(), String::new()))
                .collect(),
            validated: Validation::None,
        }
    }
}

/// Whether the portal checks a service's keys with the third party on every save. Independently
/// of this, [`PortalDouble::refuse`](crate::PortalDouble::refuse) makes any service refuse chosen
/// values as an enforced check would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Validation {
    /// No check.
    #[default]
    None,
    /// `telegram`: a bot token that Telegram would reject makes the portal clear every prop of
    /// the service and answer 400 `Bad keys`. The double "asks Telegram" by checking the token's
    /// shape, `^[0-9]{5,}:[A-Za-z0-9_-]{30,}$`.
    TelegramEnforced,
    /// `twilio`, `externaldb`: the check runs but its failure is ignored, so it has no effect.
    IgnoredFailure,
}

/// A personal access token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// The secret sent as `Authorization: Bearer <key>`, e.g. `sk-…`.
    pub key: String,
    /// Scope `*:write`; `false` is `*:read` only (GET works, POST gets 403).
    pub write: bool,
    /// Whether the key's owner is the portal Owner or a DocSpace admin.
    pub admin: bool,
}

/// A portal user who can log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    /// The login name (matched case-insensitively).
    pub email: String,
    pub password: String,
    /// Owner or DocSpace admin.
    pub admin: bool,
    /// Two-factor authentication on: a correct login issues no token.
    pub tfa: bool,
}
