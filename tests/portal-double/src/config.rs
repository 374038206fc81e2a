//! What a double is started with: its dialect, services, credentials and plan limits.

use std::net::SocketAddr;

use crate::catalogue::{docspace_catalogue, workspace_catalogue};

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

/// How a [`PortalDouble`](crate::PortalDouble) is set up. `Default` is a fresh DocSpace v3.7
/// portal on a plan that allows paid services, with one admin API key `sk-test-admin`;
/// [`DoubleConfig::workspace`] is the same for a Workspace portal.
#[derive(Debug, Clone)]
pub struct DoubleConfig {
    /// The product the double plays; default [`Flavor::DocSpace`].
    pub flavor: Flavor,
    /// The services the portal has, in the order `GET settings/authservice` lists them (and
    /// the Workspace settings page shows them). A Workspace double whose `services` is still
    /// exactly [`docspace_catalogue()`] (i.e. left at its default) gets
    /// [`workspace_catalogue()`] instead.
    pub services: Vec<ServiceSpec>,
    /// API keys (`Authorization: Bearer <key>`). Ignored by a Workspace double, which has none:
    /// a Bearer credential is unauthenticated there.
    pub api_keys: Vec<ApiKey>,
    /// Users who can log in with `POST /api/2.0/authentication`.
    pub users: Vec<User>,
    /// `false` models a plan without third-party services: a POST to a paid service gets 402
    /// (on Workspace, `SaveAuthKeys` answers a `BillingException` error).
    pub paid_allowed: bool,
    /// The longest accepted prop value, in UTF-16 code units as .NET counts string length
    /// (4000 since DocSpace v3.7.1; 255 in v3.1–v3.6). DocSpace only: Workspace has no limit
    /// (beyond the double's 1 MiB body limit).
    pub max_value_len: usize,
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
            max_value_len: 4000,
            listen: None,
        }
    }
}

impl DoubleConfig {
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

/// Whether the portal checks a service's keys with the third party on every save.
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
