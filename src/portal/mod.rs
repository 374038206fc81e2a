//! The portal's authorization-keys API (`GET`/`POST /api/2.0/settings/authservice`).
//!
//! HTTP status first, envelope second (a portal can wrap a 400 in a success-shaped
//! body). Bodies are read with a size bound, never echoed into errors (a GET body holds
//! every key in clear text), and JSON decoding errors are reported by position only,
//! since serde's messages can quote the offending value.

mod error;
pub mod workspace;

use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::sync::Mutex;

pub use error::PortalError;

use crate::config::{Flavor, PortalAuth, PortalConfig};
use crate::metrics::metrics;
use crate::secret::{ExposeSecret, SecretString};

/// Longest value a DocSpace portal (v3.7.1+) stores in one prop.
pub const MAX_VALUE_LEN: usize = 4000;
/// Largest response body read from a portal.
const MAX_BODY: usize = 8 * 1024 * 1024;
/// Attempts per request for errors that may pass (5xx, 429, timeouts, resets).
const ATTEMPTS: u32 = 3;
/// Longest wait authsync accepts from a `Retry-After`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

const AUTHSERVICE: &str = "api/2.0/settings/authservice";
const LOGIN: &str = "api/2.0/authentication";

/// One service as the portal reports it.
#[derive(Debug, Clone)]
pub struct PortalService {
    pub name: String,
    pub title: String,
    /// False when the installer fixed the keys in the server's config file.
    pub can_set: bool,
    pub paid: bool,
    /// Props in the portal's order; empty when `can_set` is false.
    pub props: Vec<PortalProp>,
}

impl PortalService {
    pub fn prop(&self, name: &str) -> Option<&PortalProp> {
        self.props.iter().find(|p| p.name == name)
    }
}

/// One prop and its current value (the portal returns values in clear).
#[derive(Debug, Clone)]
pub struct PortalProp {
    pub name: String,
    pub value: SecretString,
}

/// A client for one portal.
pub struct PortalClient {
    name: String,
    base: url::Url,
    http: reqwest::Client,
    auth: PortalAuth,
    timeout: Duration,
    /// Login token (user + password auth), reused until the portal refuses it.
    token: Mutex<Option<SecretString>>,
    flavor: Flavor,
    /// Workspace: DocSpace-style service name → the portal's own (`google` → `Google`).
    wire_names: std::sync::Mutex<std::collections::HashMap<String, String>>,
    /// After a failed login, no new attempt before this instant: the portal locks the
    /// account for 60 s after 5 failures, so authsync never retries in a loop.
    login_blocked_until: std::sync::Mutex<Option<(Instant, String)>>,
}

/// Pause after a failed login before the next attempt.
const LOGIN_RETRY_AFTER: Duration = Duration::from_secs(60);

#[derive(Deserialize)]
struct Envelope<T> {
    response: Option<T>,
    #[serde(default)]
    status: Option<i64>,
    #[serde(default)]
    error: Option<ErrorBody>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireService {
    name: String,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    can_set: bool,
    #[serde(default)]
    paid: bool,
    #[serde(default)]
    props: Option<Vec<WireProp>>,
}

#[derive(Deserialize)]
struct WireProp {
    name: String,
    #[serde(default)]
    value: Option<SecretString>,
}

#[derive(Deserialize)]
struct LoginResponse {
    #[serde(default)]
    token: Option<SecretString>,
    #[serde(default)]
    tfa: bool,
}

impl PortalClient {
    /// Builds the client (TLS verified with the system roots, plus `ca_cert` if given).
    pub fn new(name: &str, cfg: &PortalConfig) -> Result<PortalClient, PortalError> {
        // One HTTP client (connection pools, TLS roots) for every portal on the default
        // roots: building a client per portal costs milliseconds and megabytes each,
        // which adds up with hundreds of portals. A portal with its own CA gets its own.
        let http = match &cfg.ca_cert {
            None => shared_client()?,
            Some(ca) => {
                let cert = crate::errors::load_ca(ca).map_err(PortalError::Connect)?;
                client_builder()
                    .add_root_certificate(cert)
                    .build()
                    .map_err(|e| {
                        PortalError::Connect(format!("cannot build an HTTP client: {e}"))
                    })?
            }
        };
        let mut base = cfg.url.clone();
        if !base.path().ends_with('/') {
            base.set_path(&format!("{}/", base.path()));
        }
        Ok(PortalClient {
            name: name.to_string(),
            base,
            http,
            auth: cfg.auth.clone(),
            timeout: cfg.timeout,
            token: Mutex::new(None),
            login_blocked_until: std::sync::Mutex::new(None),
            flavor: cfg.flavor,
            wire_names: std::sync::Mutex::new(std::collections::HashMap::new()),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Every service the portal has keys for.
    pub async fn services(&self) -> Result<Vec<PortalService>, PortalError> {
        if self.flavor == Flavor::Workspace {
            let body = self
                .call(Method::GET, workspace::SETTINGS_PAGE, None, &[], &[])
                .await?;
            let listed = workspace::parse_settings_page(&String::from_utf8_lossy(&body))?;
            if let Ok(mut names) = self.wire_names.lock() {
                *names = listed
                    .iter()
                    .map(|(wire, s)| (s.name.clone(), wire.clone()))
                    .collect();
            }
            return Ok(listed.into_iter().map(|(_, s)| s).collect());
        }
        let body = self.call(Method::GET, AUTHSERVICE, None, &[], &[]).await?;
        parse_services_response(&body)
    }

    /// Sets some props of one service. Returns the portal's `true` (something changed)
    /// or `false` (all values were already equal).
    ///
    /// Refuses, without sending anything, a value over [`MAX_VALUE_LEN`] and a request
    /// whose every value is empty (the portal would clear the whole service).
    pub async fn set(
        &self,
        service: &str,
        props: &[(String, SecretString)],
    ) -> Result<bool, PortalError> {
        for (prop, value) in props {
            let len = value.expose_secret().chars().count();
            if len > MAX_VALUE_LEN {
                return Err(PortalError::ValueTooLong {
                    prop: prop.clone(),
                    len,
                    max: MAX_VALUE_LEN,
                });
            }
        }
        if props.iter().all(|(_, v)| v.expose_secret().is_empty()) {
            return Err(PortalError::BadRequest(
                "refusing to send only empty values: the portal would clear every key of the service".into(),
            ));
        }
        if self.flavor == Flavor::Workspace {
            return self.workspace_set(service, props).await;
        }
        let body = serde_json::json!({
            "name": service,
            "props": props
                .iter()
                .map(|(name, value)| serde_json::json!({ "name": name, "value": value.expose_secret() }))
                .collect::<Vec<_>>(),
        });
        let sent: Vec<&str> = props.iter().map(|(_, v)| v.expose_secret()).collect();
        let body = self
            .call(Method::POST, AUTHSERVICE, Some(&body), &sent, &[])
            .await?;
        // A success-shaped envelope can still carry an error message, which may echo
        // what was sent. Scrubbed before it is cut short: cut first, a value straddling
        // the cut would survive as a fragment the scrubber no longer recognises.
        decode_scrubbed::<bool>(&body, &sent)
    }

    /// Workspace: every prop of the service in one AjaxPro call, the unmapped ones
    /// carried over from the settings page (the portal refuses a partial set).
    async fn workspace_set(
        &self,
        service: &str,
        props: &[(String, SecretString)],
    ) -> Result<bool, PortalError> {
        let current = self.services().await?;
        let Some(svc) = current.iter().find(|s| s.name == service) else {
            return Err(PortalError::Forbidden(format!(
                "the portal has no service `{service}`"
            )));
        };
        let wire = self
            .wire_names
            .lock()
            .ok()
            .and_then(|n| n.get(service).cloned())
            .unwrap_or_else(|| service.to_string());
        let mut all: Vec<(String, SecretString)> = Vec::new();
        for p in &svc.props {
            let value = props
                .iter()
                .find(|(n, _)| n == &p.name)
                .map(|(_, v)| v.clone())
                .unwrap_or_else(|| p.value.clone());
            all.push((p.name.clone(), value));
        }
        let empty: Vec<&str> = all
            .iter()
            .filter(|(_, v)| v.expose_secret().is_empty())
            .map(|(n, _)| n.as_str())
            .collect();
        if !empty.is_empty() {
            return Err(PortalError::BadRequest(format!(
                "Workspace saves every prop of `{wire}` together and refuses empty ones; map {} too (nothing was sent)",
                empty.join(", ")
            )));
        }
        let body = serde_json::json!({
            "name": wire,
            "props": all
                .iter()
                .map(|(name, value)| serde_json::json!({ "Name": name, "Value": value.expose_secret() }))
                .collect::<Vec<_>>(),
        });
        let sent: Vec<&str> = all.iter().map(|(_, v)| v.expose_secret()).collect();
        let bytes = self
            .call(
                Method::POST,
                workspace::SAVE_PATH,
                Some(&body),
                &sent,
                &[workspace::SAVE_METHOD],
            )
            .await?;
        workspace::parse_save_answer(&bytes, |m| scrub_values(m, &sent))
    }

    /// One request with retries for errors that may pass, and one re-login when a
    /// login token is refused.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        sent: &[&str],
        headers: &[(&str, &str)],
    ) -> Result<Vec<u8>, PortalError> {
        let mut relogged = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut result = self
                .send_once(method.clone(), path, body, sent, headers)
                .await;
            // Workspace answers AjaxPro errors in-band: a refused token shows up here.
            if self.flavor == Flavor::Workspace && path == workspace::SAVE_PATH {
                if let Ok(bytes) = &result {
                    if let Err(PortalError::Unauthorized) =
                        workspace::parse_save_answer(bytes, |m| m)
                    {
                        result = Err(PortalError::Unauthorized);
                    }
                }
            }
            match result {
                Err(PortalError::Unauthorized)
                    if matches!(self.auth, PortalAuth::Login { .. }) && !relogged =>
                {
                    relogged = true;
                    *self.token.lock().await = None;
                    tracing::info!(portal = %self.name, "login token refused; logging in again");
                }
                Err(e) if e.is_retryable() && attempt < ATTEMPTS => {
                    let wait = backoff(attempt, &e);
                    tracing::warn!(portal = %self.name, %method, error = %e, retry_in_ms = wait.as_millis() as u64, "portal request failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    async fn send_once(
        &self,
        method: Method,
        path: &str,
        body: Option<&serde_json::Value>,
        sent: &[&str],
        headers: &[(&str, &str)],
    ) -> Result<Vec<u8>, PortalError> {
        let url = self.url(path)?;
        let mut req = self
            .http
            .request(method.clone(), url)
            .timeout(self.timeout)
            .header("Accept", "application/json");
        req = req.header(AUTHORIZATION, self.authorization().await?);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                let err = self.transport_error(&e);
                let label = if matches!(err, PortalError::Timeout(_)) {
                    "timeout"
                } else {
                    "error"
                };
                metrics().portal_request(&self.name, method.as_str(), label);
                return Err(err);
            }
        };
        let status = resp.status();
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        metrics().portal_request(&self.name, method.as_str(), status.as_str());
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = read_bounded(resp, |e| self.transport_error(e)).await?;
        tracing::debug!(portal = %self.name, %method, path, status = status.as_u16(), "portal answered");
        if status.is_success() {
            return Ok(bytes);
        }
        let message = error_message(&bytes, sent);
        Err(match status {
            StatusCode::UNAUTHORIZED => PortalError::Unauthorized,
            StatusCode::PAYMENT_REQUIRED => PortalError::PaymentRequired(message),
            StatusCode::FORBIDDEN => PortalError::Forbidden(message),
            StatusCode::BAD_REQUEST if message.trim() == "Bad keys" => PortalError::BadKeys,
            StatusCode::BAD_REQUEST => PortalError::BadRequest(message),
            StatusCode::TOO_MANY_REQUESTS => PortalError::RateLimited { retry_after },
            // Workspace sends an unauthenticated page request to its login page.
            s if s.is_redirection()
                && location.as_deref().is_some_and(|l| l.contains("Auth.aspx")) =>
            {
                PortalError::Unauthorized
            }
            s if s.is_server_error() => PortalError::Server {
                status: s.as_u16(),
                message,
            },
            s => PortalError::Unexpected(s.as_u16()),
        })
    }

    fn url(&self, path: &str) -> Result<url::Url, PortalError> {
        self.base
            .join(path)
            .map_err(|e| PortalError::Connect(format!("cannot build the request URL: {e}")))
    }

    fn transport_error(&self, e: &reqwest::Error) -> PortalError {
        if e.is_timeout() {
            PortalError::Timeout(self.timeout)
        } else {
            PortalError::Connect(crate::errors::chain(e))
        }
    }

    /// The `Authorization` header: `Bearer <api key>`, or the raw login token.
    async fn authorization(&self) -> Result<HeaderValue, PortalError> {
        let raw = match &self.auth {
            PortalAuth::ApiKey(key) => {
                let key = key
                    .read()
                    .map_err(|e| PortalError::Login(format!("cannot read api_key: {e}")))?;
                format!("Bearer {}", key.expose_secret())
            }
            PortalAuth::Login { user, password } => {
                let mut token = self.token.lock().await;
                if token.is_none() {
                    *token = Some(self.login(user, password).await?);
                }
                token
                    .as_ref()
                    .map(|t| t.expose_secret().to_string())
                    .unwrap_or_default()
            }
        };
        let mut value = HeaderValue::from_str(&raw).map_err(|_| {
            PortalError::Login("the credential contains characters not allowed in a header".into())
        })?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// Logs in, unless a recent login failed (then the same error, without a request).
    async fn login(
        &self,
        user: &str,
        password: &crate::secret::SecretSetting,
    ) -> Result<SecretString, PortalError> {
        if let Ok(blocked) = self.login_blocked_until.lock() {
            if let Some((until, why)) = blocked.as_ref() {
                if Instant::now() < *until {
                    let left = until.saturating_duration_since(Instant::now()).as_secs();
                    return Err(PortalError::Login(format!("{why} (not retrying for another {left}s, to stay clear of the portal's lockout)")));
                }
            }
        }
        let result = self.login_once(user, password).await;
        if let Err(PortalError::Login(why)) = &result {
            if let Ok(mut blocked) = self.login_blocked_until.lock() {
                *blocked = Some((Instant::now() + LOGIN_RETRY_AFTER, why.clone()));
            }
        }
        result
    }

    async fn login_once(
        &self,
        user: &str,
        password: &crate::secret::SecretSetting,
    ) -> Result<SecretString, PortalError> {
        let password = password
            .read()
            .map_err(|e| PortalError::Login(format!("cannot read password: {e}")))?;
        let body = serde_json::json!({ "userName": user, "password": password.expose_secret() });
        let resp = self
            .http
            .post(self.url(if self.flavor == Flavor::Workspace {
                workspace::LOGIN
            } else {
                LOGIN
            })?)
            .timeout(self.timeout)
            .header("Accept", "application/json")
            .json(&body)
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        let bytes = read_bounded(resp, |e| self.transport_error(e)).await?;
        let message = error_message(&bytes, &[password.expose_secret()]);
        match status {
            s if s.is_success() => {}
            StatusCode::UNAUTHORIZED => {
                return Err(PortalError::Login(format!("{user}: wrong user name or password ({message})")))
            }
            StatusCode::FORBIDDEN => {
                return Err(PortalError::Login(format!(
                    "{user}: the portal refused the login ({message}); after 5 failures it locks the account for 60 s"
                )))
            }
            s => return Err(PortalError::Login(format!("{user}: HTTP {} ({message})", s.as_u16()))),
        }
        let answer: LoginResponse = decode(&bytes)?;
        if answer.tfa {
            return Err(PortalError::Login(format!(
                "{user} has two-factor authentication on, so the portal issues no token; use an api_key instead"
            )));
        }
        tracing::info!(portal = %self.name, %user, "logged in");
        answer
            .token
            .filter(|t| !t.expose_secret().is_empty())
            .ok_or_else(|| PortalError::Login(format!("{user}: the portal returned no token")))
    }
}

/// How long an idle portal connection is kept for reuse.
const POOL_IDLE: Duration = Duration::from_secs(5);

/// Settings shared by every portal client. Timeouts are set per request (each portal
/// has its own), the connect timeout here bounds the TCP/TLS handshake.
fn client_builder() -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .user_agent(concat!("authsync/", env!("CARGO_PKG_VERSION")))
        // Connections are reused within a cycle (GET, the POSTs, the read-back follow
        // each other closely) but are useless between cycles minutes apart: an idle
        // connection holds buffers (~80 KiB each here) and a slot on the portal, which
        // adds up with hundreds of portals. Let them go soon after the cycle.
        .pool_idle_timeout(POOL_IDLE)
        // A redirect means "log in" (Workspace) or a misconfigured URL: never follow.
        .redirect(reqwest::redirect::Policy::none())
}

/// The client for portals on the default TLS roots, built once.
fn shared_client() -> Result<reqwest::Client, PortalError> {
    static SHARED: std::sync::OnceLock<Result<reqwest::Client, String>> =
        std::sync::OnceLock::new();
    SHARED
        .get_or_init(|| {
            client_builder()
                .build()
                .map_err(|e| format!("cannot build an HTTP client: {e}"))
        })
        .clone()
        .map_err(PortalError::Connect)
}

/// Reads a response body up to [`MAX_BODY`] bytes. A longer body is an error of its
/// own: cut short, it used to fail to parse and was reported as "not JSON", which
/// looked like a garbled answer rather than an oversized one.
async fn read_bounded(
    mut resp: reqwest::Response,
    transport: impl Fn(&reqwest::Error) -> PortalError,
) -> Result<Vec<u8>, PortalError> {
    let too_large = || {
        PortalError::InvalidResponse(format!(
            "the response body is larger than {} MiB",
            MAX_BODY / (1024 * 1024)
        ))
    };
    if resp
        .content_length()
        .is_some_and(|len| len > MAX_BODY as u64)
    {
        return Err(too_large());
    }
    let mut out = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport(&e))? {
        if out.len() + chunk.len() > MAX_BODY {
            return Err(too_large());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Decodes a `GET settings/authservice` answer (the client's parser; public so that
/// `tests/fuzz_parsers.rs` can reach it).
pub fn parse_services_response(bytes: &[u8]) -> Result<Vec<PortalService>, PortalError> {
    let services: Vec<WireService> = decode(bytes)?;
    Ok(services
        .into_iter()
        .map(|s| PortalService {
            title: s.title.unwrap_or_else(|| s.name.clone()),
            name: s.name,
            can_set: s.can_set,
            paid: s.paid,
            props: s
                .props
                .unwrap_or_default()
                .into_iter()
                .map(|p| PortalProp {
                    name: p.name,
                    value: p.value.unwrap_or_else(|| SecretString::from(String::new())),
                })
                .collect(),
        })
        .collect())
}

/// Decodes a `POST settings/authservice` answer: the portal's `true` (something
/// changed) or `false` (all values were already equal).
pub fn parse_set_response(bytes: &[u8]) -> Result<bool, PortalError> {
    decode::<bool>(bytes)
}

/// The `response` of a success envelope.
fn decode<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, PortalError> {
    decode_scrubbed(bytes, &[])
}

/// [`decode`], with the values that were sent scrubbed from an error message.
fn decode_scrubbed<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    sent: &[&str],
) -> Result<T, PortalError> {
    let env: Envelope<T> = serde_json::from_slice(bytes).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            PortalError::InvalidResponse(format!("the body ({} bytes) is not JSON", bytes.len()))
        } else {
            // Position only: serde's message may quote a value.
            PortalError::InvalidResponse(format!(
                "unexpected JSON shape at line {} column {}",
                e.line(),
                e.column()
            ))
        }
    })?;
    if env.status.unwrap_or(0) != 0 {
        let message = env
            .error
            .and_then(|e| e.message)
            .unwrap_or_else(|| "no message".into());
        let message = scrub_values(message, sent);
        return Err(PortalError::BadRequest(message.chars().take(300).collect()));
    }
    env.response
        .ok_or_else(|| PortalError::InvalidResponse("the envelope has no `response`".into()))
}

/// The portal's error message, cut short and scrubbed of the values that were sent.
fn error_message(bytes: &[u8], sent: &[&str]) -> String {
    let parsed: Option<Envelope<serde_json::Value>> = serde_json::from_slice(bytes).ok();
    let message = match parsed {
        Some(env) => env
            .error
            .and_then(|e| e.message)
            .or_else(|| env.response.and_then(|r| r.as_str().map(str::to_string)))
            .unwrap_or_default(),
        None if bytes.is_empty() => String::new(),
        None => format!("a {}-byte body that is not JSON", bytes.len()),
    };
    // Scrub first, then cut: cut first, a value straddling the cut would survive as a
    // fragment the scrubber no longer recognises (found by tests/faults_e2e.rs).
    let message: String = scrub_values(message, sent).chars().take(300).collect();
    if message.is_empty() {
        "no message".into()
    } else {
        message
    }
}

/// Replaces any sent value that a portal echoed in a message.
fn scrub_values(mut message: String, sent: &[&str]) -> String {
    for value in sent.iter().filter(|v| v.len() >= 4) {
        message = message.replace(value, "**REDACTED**");
    }
    message
}

/// Exponential backoff with full jitter, or the portal's `Retry-After` (capped).
fn backoff(attempt: u32, e: &PortalError) -> Duration {
    if let PortalError::RateLimited {
        retry_after: Some(after),
    } = e
    {
        return (*after).min(MAX_RETRY_AFTER);
    }
    let ceiling = Duration::from_millis(250 * 2u64.pow(attempt.min(6)));
    let ms = rand::rng().random_range(ceiling.as_millis() as u64 / 2..=ceiling.as_millis() as u64);
    Duration::from_millis(ms)
}
