//! A faithful test double of an ONLYOFFICE DocSpace portal's authorization-keys API
//! (`/api/2.0/settings/authservice` and `/api/2.0/authentication`), reproducing the rules of
//! `authservice-api.md` §1–§5: envelopes, authentication, check order, the clear-all and
//! silent-drop semantics, `Bad keys` validation and the `appleID` listing quirk.
//!
//! What real portals differ in, each chosen per double:
//! - **Version** ([`DoubleConfig::version`], [`DoubleConfig::docspace`]): [`Version::V3_5`],
//!   [`V3_6`](Version::V3_6) or [`V3_7`](Version::V3_7) (v3.7.1+, the default) decide GET's
//!   fields (`paid`, props' `type`), the value limit (255 / 4000 UTF-16 units), the catalogue
//!   and what a POST to an unknown or config-fixed service gets (200 `true` / 415 before v3.6,
//!   403 after).
//! - **Language** ([`DoubleConfig::language`], [`PortalDouble::set_language`]): every localized
//!   message ([`Text`]: `Bad keys`, `User authentication failed`, the 402 plan text, …) in
//!   [`Language::En`], `De`, `Ru`, `Fr`, `Es`, `It` or `ZhCn`; `Access denied` stays English.
//! - **Error shapes** of §1, lasting ([`PortalDouble::set_portal_state`],
//!   [`set_ip_restricted`](PortalDouble::set_ip_restricted),
//!   [`set_tenant_paid`](PortalDouble::set_tenant_paid),
//!   [`set_paid_allowed`](PortalDouble::set_paid_allowed),
//!   [`set_setting_hidden`](PortalDouble::set_setting_hidden),
//!   [`set_default_consumers`](PortalDouble::set_default_consumers)) or one-shot
//!   ([`FaultKind::EmptyBody`], [`FaultKind::IpRestricted`], [`FaultKind::Status`]). An API key
//!   without `*:write` gets 403 with an empty body; a value over the limit and a prop without
//!   `value` get the 400 validation problem in the success envelope, before the admin check.
//! - **Refused values** ([`PortalDouble::refuse`], [`refuse_every_value`](PortalDouble::refuse_every_value),
//!   [`accept_all`](PortalDouble::accept_all), one-shot [`FaultKind::Refuse`]): an enforced key
//!   check fails, the portal clears EVERY key of the service and answers 400 `Bad keys`.
//! - **One installation** ([`PortalDouble::start_sharing`]): several doubles share one key store,
//!   each with its own accounts, settings, faults and request log.
//!
//! Every [`RecordedRequest`] has a process-wide [`seq`](RecordedRequest::seq) (see
//! [`last_seq`]) and an arrival [`Instant`](std::time::Instant), to order requests across
//! doubles (e.g. the waves of a staged rollout).
//!
//! With [`Flavor::Workspace`] it plays a Community Server v12 portal instead (§6): login at
//! `/api/2.0/authentication.json`, keys saved by the AjaxPro call [`WORKSPACE_SAVE_PATH`]
//! (`X-AjaxPro-Method: SaveAuthKeys`, always HTTP 200, outcome in-band) and read back only from
//! the HTML settings page [`WORKSPACE_SETTINGS_PAGE`]. Language, refusals, sharing and the
//! request sequence apply there too; version, portal state, IP restriction, tenant payment,
//! hidden setting and default consumers are DocSpace's.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use portal_double::{DoubleConfig, Fault, FaultKind, Language, PortalDouble, Version};
//! let portal = PortalDouble::start(DoubleConfig {
//!     language: Language::De,
//!     ..DoubleConfig::docspace(Version::V3_6)
//! })
//! .await?;
//! portal.set_value("google", "googleClientId", "id-1");
//! portal.refuse("google", "revoked-secret"); // a POST leaving it stored: wipe + 400
//! portal.inject(Fault::once(FaultKind::Status(500)).with_method("POST"));
//! let sibling = PortalDouble::start_sharing(DoubleConfig::default(), &portal).await?;
//! // … point the client at portal.url() with `Authorization: Bearer sk-test-admin` …
//! assert_eq!(portal.count("POST", "/api/2.0/settings/authservice"), 0);
//! assert_eq!(sibling.value("google", "googleClientId").as_deref(), Some("id-1"));
//! # Ok(()) }
//! ```

mod ajaxpro;
mod auth;
mod catalogue;
mod config;
mod dto;
mod envelope;
mod faults;
mod handlers;
mod lang;
mod record;
mod server;
mod services;
mod state;
mod workspace;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use catalogue::{docspace_catalogue, docspace_catalogue_for, workspace_catalogue};
pub use config::{
    ApiKey, DoubleConfig, Flavor, PortalState, ServiceSpec, User, Validation, Version,
};
pub use faults::{Fault, FaultKind};
pub use lang::{Language, Text};
pub use record::{last_seq, AuthKind, RecordedRequest};

use state::Shared;

/// The path of the authorization-keys endpoint, as recorded.
const AUTHSERVICE_PATH: &str = "/api/2.0/settings/authservice";

/// Workspace: the AjaxPro handler `SaveAuthKeys` is posted to (with the header
/// `X-AjaxPro-Method: SaveAuthKeys`). Matched case-insensitively, `%2C` for the comma accepted.
pub const WORKSPACE_SAVE_PATH: &str =
    "/ajaxpro/ASC.Web.Studio.UserControls.Management.AuthorizationKeys,ASC.Web.Studio.ashx";

/// Workspace: the settings page (path and query) that shows the authorization keys.
pub const WORKSPACE_SETTINGS_PAGE: &str = "/Management.aspx?type=10";

/// Workspace: where a login token is obtained (`/api/2.0/authentication` works too).
pub const WORKSPACE_LOGIN_PATH: &str = "/api/2.0/authentication.json";

/// A running portal double. The server runs on a tokio task of the runtime that started it;
/// dropping the handle stops it and closes every open connection.
#[derive(Debug)]
pub struct PortalDouble {
    shared: Arc<Shared>,
    addr: SocketAddr,
    task: JoinHandle<std::convert::Infallible>,
}

impl PortalDouble {
    /// Binds `cfg.listen` (default `127.0.0.1:0`) and returns once the double accepts
    /// connections.
    pub async fn start(cfg: DoubleConfig) -> std::io::Result<PortalDouble> {
        let listener = bind(&cfg).await?;
        PortalDouble::serve(listener, Shared::new(cfg))
    }

    /// Starts a double that answers every request after `latency`, as a portal across a
    /// network does (benchmarks).
    pub async fn start_with_latency(
        cfg: DoubleConfig,
        latency: std::time::Duration,
    ) -> std::io::Result<PortalDouble> {
        let double = PortalDouble::start(cfg).await?;
        double.inject(Fault {
            kind: FaultKind::Delay(latency),
            method: None,
            times: None,
        });
        Ok(double)
    }

    /// Starts another portal of `other`'s installation (authservice-api.md §3): both doubles
    /// read and write ONE key store — the same services and values, and the same refusals
    /// ([`refuse`](Self::refuse)) — as the portals of one self-hosted installation do. Everything
    /// else is this double's own, from `cfg`: accounts, version, language, plan, faults,
    /// request log. `cfg.services` is ignored.
    ///
    /// # Errors
    /// `InvalidInput` if `cfg.flavor` differs from `other`'s; otherwise as
    /// [`start`](Self::start).
    pub async fn start_sharing(
        cfg: DoubleConfig,
        other: &PortalDouble,
    ) -> std::io::Result<PortalDouble> {
        if cfg.flavor != other.flavor() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "a portal double can only share the key store of a double of the same flavor",
            ));
        }
        let listener = bind(&cfg).await?;
        PortalDouble::serve(listener, Shared::sharing(cfg, &other.shared))
    }

    fn serve(listener: TcpListener, shared: Shared) -> std::io::Result<PortalDouble> {
        let addr = listener.local_addr()?;
        let shared = Arc::new(shared);
        let app = handlers::router(Arc::clone(&shared));
        let task = tokio::spawn(server::serve(listener, app));
        Ok(PortalDouble { shared, addr, task })
    }

    /// Whether this double and `other` share one key store (one was started with
    /// [`start_sharing`](Self::start_sharing) from the other, or both from a third).
    pub fn shares_keys_with(&self, other: &PortalDouble) -> bool {
        self.shared.shares_store_with(&other.shared)
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The product this double plays.
    pub fn flavor(&self) -> Flavor {
        self.shared.flavor
    }

    /// The DocSpace version it plays (ignored by a Workspace double).
    pub fn version(&self) -> Version {
        self.shared.settings().version
    }

    /// The language its messages are in.
    pub fn language(&self) -> Language {
        self.shared.settings().language
    }

    /// Every request received so far, in arrival order (and so in
    /// [`seq`](RecordedRequest::seq) order).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().log.all()
    }

    /// How many requests with this method (case-insensitive) and exact path were received.
    pub fn count(&self, method: &str, path: &str) -> usize {
        self.requests()
            .iter()
            .filter(|r| r.method.eq_ignore_ascii_case(method) && r.path == path)
            .count()
    }

    /// The JSON bodies of every POST to `/api/2.0/settings/authservice`, in order, whatever
    /// was answered (bodies that were not JSON are left out). On a Workspace double: of every
    /// POST to [`WORKSPACE_SAVE_PATH`] with `X-AjaxPro-Method: SaveAuthKeys`.
    pub fn posts(&self) -> Vec<serde_json::Value> {
        let flavor = self.flavor();
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .filter(|r| match flavor {
                Flavor::DocSpace => r.path == AUTHSERVICE_PATH,
                Flavor::Workspace => {
                    handlers::is_ajax_auth_keys_path(&r.path)
                        && r.ajax_method.as_deref() == Some(ajaxpro::SAVE_AUTH_KEYS)
                }
            })
            .filter_map(|r| r.body)
            .collect()
    }

    /// Forgets the requests recorded so far.
    pub fn clear_requests(&self) {
        self.shared.lock().log.clear();
    }

    /// A stored value; `None` if the service (by its real name, e.g. `appleid`, or `Google` on
    /// Workspace) or prop does not exist. `Some("")` is unset.
    ///
    /// This is the stored value, also under [`set_default_consumers`](Self::set_default_consumers)
    /// (where GET shows something else).
    pub fn value(&self, service: &str, prop: &str) -> Option<String> {
        self.shared.store().value(service, prop)
    }

    /// Every prop of a service with its value; empty if there is no such service.
    pub fn values(&self, service: &str) -> BTreeMap<String, String> {
        self.shared.store().values(service)
    }

    /// Changes a value as an admin editing in the portal's UI would (no rule applies, no
    /// refusal either).
    ///
    /// # Panics
    /// If the service or prop does not exist.
    pub fn set_value(&self, service: &str, prop: &str, value: &str) {
        self.shared.store().set_value(service, prop, value);
    }

    /// From now on the key check of `service` (its real name: `appleid`, or `Google` on
    /// Workspace) fails whenever a save leaves `value` stored in any of its props, as an
    /// enforced third-party check does (issue 13.5): the portal then CLEARS EVERY KEY of the
    /// service, also those that were fine, and answers 400 with the localized `Bad keys`
    /// (Workspace: `SaveAuthKeys`' in-band error). The check runs on every save that leaves
    /// the service non-empty, also one that changed nothing. Posting the previous good values
    /// back then succeeds, unless one of them is refused too. Repeatable for more values; an
    /// empty `value` is ignored. Applies to every double sharing the key store. `telegram`'s
    /// token-shape check stays on besides.
    pub fn refuse(&self, service: &str, value: &str) {
        self.shared.store().refuse(service, value);
    }

    /// Like [`refuse`](Self::refuse) for every non-empty value (a portal whose check cannot
    /// reach the third party).
    pub fn refuse_every_value(&self, service: &str) {
        self.shared.store().refuse_every_value(service);
    }

    /// Forgets every refusal of `service` made with [`refuse`](Self::refuse) or
    /// [`refuse_every_value`](Self::refuse_every_value) (its [`Validation`] stays).
    pub fn accept_all(&self, service: &str) {
        self.shared.store().accept_all(service);
    }

    /// The language of every localized message from now on (`Access denied` stays English).
    pub fn set_language(&self, language: Language) {
        self.shared.lock().settings.language = language;
    }

    /// The tenant's status from now on. DocSpace: every authenticated API request (and every
    /// login) of a [`Moving`](PortalState::Moving), [`Restoring`](PortalState::Restoring) or
    /// [`Encrypting`](PortalState::Encrypting) portal gets 403 with an empty body, of a
    /// [`Suspended`](PortalState::Suspended) one 404 with an empty body; unauthenticated
    /// requests still get 401 first. A Workspace double ignores it.
    pub fn set_portal_state(&self, state: PortalState) {
        self.shared.lock().settings.portal_state = state;
    }

    /// `true`: the caller's IP is outside the portal's IP restrictions. DocSpace: every
    /// authenticated request to `settings/authservice` gets 403 whose body is a bare JSON
    /// string, the localized [`Text::IpRestricted`] (the login is anonymous, so not
    /// filtered). A Workspace double ignores it.
    pub fn set_ip_restricted(&self, restricted: bool) {
        self.shared.lock().settings.ip_restricted = restricted;
    }

    /// `false`: the tenant is not paid at all. DocSpace: every authenticated request to
    /// `settings/authservice` gets 402 with an EMPTY body (the login is exempt) — unlike the
    /// 402 with a message of a paid service on a plan without third-party services
    /// ([`set_paid_allowed`](Self::set_paid_allowed)). A Workspace double ignores it.
    pub fn set_tenant_paid(&self, paid: bool) {
        self.shared.lock().settings.tenant_paid = paid;
    }

    /// Whether the plan allows paid services (as [`DoubleConfig::paid_allowed`]).
    pub fn set_paid_allowed(&self, allowed: bool) {
        self.shared.lock().settings.paid_allowed = allowed;
    }

    /// `true`: the operator hid the authorization-keys setting. DocSpace: every GET and POST of
    /// `settings/authservice` by an admin gets 402 with the localized
    /// [`Text::PlanRestricted`] error envelope (after model validation and the admin check).
    /// A Workspace double ignores it.
    pub fn set_setting_hidden(&self, hidden: bool) {
        self.shared.lock().settings.setting_hidden = hidden;
    }

    /// The server option `core:default-consumers` from now on (as
    /// [`DoubleConfig::default_consumers`]): `true` makes GET show every service as configured
    /// when the double started, whatever is stored.
    pub fn set_default_consumers(&self, on: bool) {
        self.shared.lock().settings.default_consumers = on;
    }

    /// Adds a fault for requests to `/api/2.0/settings/authservice` (Workspace: to
    /// [`WORKSPACE_SAVE_PATH`] and `/Management.aspx`).
    pub fn inject(&self, fault: Fault) {
        self.shared.lock().faults.push(fault);
    }

    pub fn clear_faults(&self) {
        self.shared.lock().faults.clear();
    }

    /// From now on the key gets 401. (A Workspace double has no API keys.)
    pub fn revoke_api_key(&self, key: &str) {
        self.shared.lock().accounts.revoke_api_key(key);
    }

    /// Every login token issued so far becomes invalid (401).
    pub fn expire_tokens(&self) {
        self.shared.lock().accounts.expire_tokens();
    }

    /// How many logins issued a token.
    pub fn login_count(&self) -> usize {
        self.shared.lock().accounts.login_count()
    }
}

async fn bind(cfg: &DoubleConfig) -> std::io::Result<TcpListener> {
    let listen = cfg
        .listen
        .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    TcpListener::bind(listen).await
}

impl Drop for PortalDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}
