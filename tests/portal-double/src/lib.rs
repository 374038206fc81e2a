//! A faithful test double of an ONLYOFFICE DocSpace portal's authorization-keys API
//! (`/api/2.0/settings/authservice` and `/api/2.0/authentication`), reproducing the rules of
//! `authservice-api.md` §1–§5: envelopes, authentication, check order, the clear-all and
//! silent-drop semantics, `Bad keys` validation and the `appleID` listing quirk.
//!
//! With [`Flavor::Workspace`] it plays a Community Server v12 portal instead (§6): login at
//! `/api/2.0/authentication.json`, keys saved by the AjaxPro call [`WORKSPACE_SAVE_PATH`]
//! (`X-AjaxPro-Method: SaveAuthKeys`, always HTTP 200, outcome in-band) and read back only from
//! the HTML settings page [`WORKSPACE_SETTINGS_PAGE`].
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use portal_double::{DoubleConfig, Fault, FaultKind, PortalDouble};
//! let portal = PortalDouble::start(DoubleConfig::default()).await?;
//! portal.set_value("google", "googleClientId", "id-1");
//! portal.inject(Fault::once(FaultKind::Status(500)).with_method("POST"));
//! // … point the client at portal.url() with `Authorization: Bearer sk-test-admin` …
//! assert_eq!(portal.count("POST", "/api/2.0/settings/authservice"), 0);
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

pub use catalogue::{docspace_catalogue, workspace_catalogue};
pub use config::{ApiKey, DoubleConfig, Flavor, ServiceSpec, User, Validation};
pub use faults::{Fault, FaultKind};
pub use record::{AuthKind, RecordedRequest};

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
        let listen = cfg
            .listen
            .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(cfg));
        let app = handlers::router(Arc::clone(&shared));
        let task = tokio::spawn(server::serve(listener, app));
        Ok(PortalDouble { shared, addr, task })
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

    /// Every request received so far, in arrival order.
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
    pub fn value(&self, service: &str, prop: &str) -> Option<String> {
        self.shared.lock().services.value(service, prop)
    }

    /// Every prop of a service with its value; empty if there is no such service.
    pub fn values(&self, service: &str) -> BTreeMap<String, String> {
        self.shared.lock().services.values(service)
    }

    /// Changes a value as an admin editing in the portal's UI would (no rule applies).
    ///
    /// # Panics
    /// If the service or prop does not exist.
    pub fn set_value(&self, service: &str, prop: &str, value: &str) {
        self.shared.lock().services.set_value(service, prop, value);
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

impl Drop for PortalDouble {
    fn drop(&mut self) {
        self.task.abort();
    }
}
