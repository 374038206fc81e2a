//! The HTTP transport both dialects share: authentication (API key, or a login token
//! reused until refused), retries for errors that may pass, bounded body reads, the
//! request metric, and scrubbing of sent values out of anything the portal says.
//!
//! A dialect hands [`Transport::call`] a request and an `interpret` function that turns
//! the raw [`Reply`] into bytes or a typed [`PortalError`]; the retry and re-login policy
//! then works on those types, the same for DocSpace and Workspace.

use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use tokio::sync::Mutex;

use super::PortalError;
use crate::config::{PortalAuth, PortalConfig};
use crate::metrics::metrics;
use crate::secret::{ExposeSecret, SecretString};

/// Largest response body read from a portal.
const MAX_BODY: usize = 8 * 1024 * 1024;
/// Attempts per request for errors that may pass (5xx, 429, timeouts, resets).
const ATTEMPTS: u32 = 3;
/// Longest wait authsync accepts from a `Retry-After`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// Pause after a failed login before the next attempt: the portal locks the account for
/// 60 s after 5 failures, so authsync never retries in a loop.
const LOGIN_RETRY_AFTER: Duration = Duration::from_secs(60);
/// How long an idle portal connection is kept for reuse.
const POOL_IDLE: Duration = Duration::from_secs(5);
/// Longest portal message kept (after scrubbing).
const MAX_MESSAGE: usize = 300;

/// How hard to try one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retry {
    /// Up to three attempts for errors that may pass.
    Normal,
    /// One attempt: the portal failed in earlier cycles, so it is probed once per cycle
    /// rather than hammered (and caught up as soon as it answers again).
    Once,
}

/// One request to send.
pub(crate) struct Request<'a> {
    pub method: Method,
    pub path: &'a str,
    pub body: Option<&'a serde_json::Value>,
    pub headers: &'a [(&'a str, &'a str)],
}

impl<'a> Request<'a> {
    pub fn get(path: &'a str) -> Request<'a> {
        Request {
            method: Method::GET,
            path,
            body: None,
            headers: &[],
        }
    }
}

/// An HTTP answer, before the dialect reads it.
pub(crate) struct Reply {
    pub status: StatusCode,
    pub body: Vec<u8>,
    location: Option<String>,
    retry_after: Option<Duration>,
}

/// The connection to one portal.
pub(crate) struct Transport {
    name: String,
    base: url::Url,
    http: reqwest::Client,
    auth: PortalAuth,
    timeout: Duration,
    login_path: &'static str,
    /// Login token (user + password auth), reused until the portal refuses it.
    token: Mutex<Option<SecretString>>,
    /// After a failed login, no new attempt before this instant.
    login_blocked_until: std::sync::Mutex<Option<(Instant, String)>>,
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(default)]
    response: Option<serde_json::Value>,
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
struct LoginResponse {
    #[serde(default)]
    token: Option<SecretString>,
    #[serde(default)]
    tfa: bool,
    #[serde(default)]
    sms: bool,
}

impl Transport {
    /// Builds the transport (TLS verified with the system roots, plus `ca_cert` if given).
    pub fn new(
        name: &str,
        cfg: &PortalConfig,
        login_path: &'static str,
    ) -> Result<Transport, PortalError> {
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
        Ok(Transport {
            name: name.to_string(),
            base,
            http,
            auth: cfg.auth.clone(),
            timeout: cfg.timeout,
            login_path,
            token: Mutex::new(None),
            login_blocked_until: std::sync::Mutex::new(None),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// One request, with retries for errors that may pass and one re-login when a login
    /// token is refused. `interpret` reads the reply (status first, then the body).
    pub async fn call(
        &self,
        req: &Request<'_>,
        retry: Retry,
        interpret: impl Fn(Reply) -> Result<Vec<u8>, PortalError>,
    ) -> Result<Vec<u8>, PortalError> {
        let attempts = match retry {
            Retry::Normal => ATTEMPTS,
            Retry::Once => 1,
        };
        let mut relogged = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let result = self.send_once(req).await.and_then(&interpret);
            match result {
                Err(PortalError::Unauthorized)
                    if matches!(self.auth, PortalAuth::Login { .. }) && !relogged =>
                {
                    relogged = true;
                    *self.token.lock().await = None;
                    tracing::info!(portal = %self.name, "login token refused; logging in again");
                }
                Err(e) if e.is_retryable() && attempt < attempts => {
                    let wait = backoff(attempt, &e);
                    tracing::warn!(portal = %self.name, method = %req.method, error = %e, retry_in_ms = wait.as_millis() as u64, "portal request failed; retrying");
                    tokio::time::sleep(wait).await;
                }
                other => return other,
            }
        }
    }

    async fn send_once(&self, req: &Request<'_>) -> Result<Reply, PortalError> {
        let url = self.url(req.path)?;
        let mut builder = self
            .http
            .request(req.method.clone(), url)
            .timeout(self.timeout)
            .header("Accept", "application/json")
            .header(AUTHORIZATION, self.authorization().await?);
        for (k, v) in req.headers {
            builder = builder.header(*k, *v);
        }
        if let Some(body) = req.body {
            builder = builder.json(body);
        }
        let resp = match builder.send().await {
            Ok(r) => r,
            Err(e) => {
                let err = self.transport_error(&e);
                let label = if matches!(err, PortalError::Timeout(_)) {
                    "timeout"
                } else {
                    "error"
                };
                metrics().portal_request(&self.name, req.method.as_str(), label);
                return Err(err);
            }
        };
        let status = resp.status();
        metrics().portal_request(&self.name, req.method.as_str(), status.as_str());
        let location = resp
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let retry_after = resp
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = read_bounded(resp, |e| self.transport_error(e)).await?;
        tracing::debug!(portal = %self.name, method = %req.method, path = req.path, status = status.as_u16(), "portal answered");
        Ok(Reply {
            status,
            body,
            location,
            retry_after,
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
            .post(self.url(self.login_path)?)
            .timeout(self.timeout)
            .header("Accept", "application/json")
            .json(&body)
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = resp.status();
        metrics().portal_request(&self.name, "POST", status.as_str());
        let bytes = read_bounded(resp, |e| self.transport_error(e)).await?;
        let message = error_message(&bytes, &[password.expose_secret()]);
        // Decided on the status; the (localized) message is only shown.
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
        let answer: LoginResponse = decode_response(&bytes, &[])?;
        if answer.tfa || answer.sms {
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

impl Reply {
    /// The error for a non-success answer, by the API doc's table (§1): status first,
    /// then the body's *shape* (empty, a bare string, an envelope) — never its text.
    pub fn error(&self, sent: &[&str]) -> PortalError {
        let message = || error_message(&self.body, sent);
        let empty = self.body.iter().all(u8::is_ascii_whitespace);
        match self.status {
            StatusCode::UNAUTHORIZED => PortalError::Unauthorized,
            StatusCode::FORBIDDEN if empty => PortalError::ScopeOrPortalState,
            StatusCode::FORBIDDEN if bare_string(&self.body).is_some() => {
                PortalError::IpRestricted(cut(scrub_values(
                    bare_string(&self.body).unwrap_or_default(),
                    sent,
                )))
            }
            StatusCode::FORBIDDEN => PortalError::AccessDenied(message()),
            StatusCode::PAYMENT_REQUIRED if empty => PortalError::NotPaid,
            StatusCode::PAYMENT_REQUIRED => PortalError::PaymentRequired(message()),
            StatusCode::NOT_FOUND => PortalError::NotFound,
            StatusCode::UNSUPPORTED_MEDIA_TYPE => PortalError::Unsupported(message()),
            StatusCode::BAD_REQUEST => match validation_problem(&self.body, sent) {
                Some(problem) => PortalError::Validation(problem),
                None => PortalError::BadRequest(message()),
            },
            StatusCode::TOO_MANY_REQUESTS => PortalError::RateLimited {
                retry_after: self.retry_after,
            },
            // Workspace sends an unauthenticated page request to its login page.
            s if s.is_redirection()
                && self
                    .location
                    .as_deref()
                    .is_some_and(|l| l.contains("Auth.aspx")) =>
            {
                PortalError::Unauthorized
            }
            s if s.is_server_error() => PortalError::Server {
                status: s.as_u16(),
                message: message(),
            },
            s => PortalError::Unexpected(s.as_u16()),
        }
    }
}

/// The JSON string a body consists of, if that is all it is (the IP-restriction 403).
fn bare_string(body: &[u8]) -> Option<String> {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(serde_json::Value::String(s)) => Some(s),
        _ => None,
    }
}

/// ASP.NET's validation problem, which DocSpace wraps in a *success* envelope with
/// `status: 1, statusCode: 400`: the field names and their first messages.
fn validation_problem(body: &[u8], sent: &[&str]) -> Option<String> {
    let env: Envelope = serde_json::from_slice(body).ok()?;
    let errors = env.response?.get("errors")?.as_object()?.clone();
    let mut parts = Vec::new();
    for (field, messages) in &errors {
        let first = messages
            .as_array()
            .and_then(|m| m.first())
            .and_then(|m| m.as_str())
            .unwrap_or("");
        parts.push(if first.is_empty() {
            field.clone()
        } else {
            format!("{field}: {first}")
        });
    }
    Some(cut(scrub_values(parts.join("; "), sent)))
}

/// The `response` of a success envelope; an envelope with a non-zero `status` is read as
/// the error it reports. Decoded straight into `T`, so secret values go into their
/// zeroizing types without an intermediate copy.
pub(crate) fn decode_response<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    sent: &[&str],
) -> Result<T, PortalError> {
    #[derive(Deserialize)]
    struct Typed<T> {
        #[serde(default = "none")]
        response: Option<T>,
        #[serde(default)]
        status: Option<i64>,
    }
    fn none<T>() -> Option<T> {
        None
    }
    let typed = serde_json::from_slice::<Typed<T>>(bytes);
    if let Ok(env) = &typed {
        if env.status.unwrap_or(0) == 0 {
            return match typed {
                Ok(Typed {
                    response: Some(r), ..
                }) => Ok(r),
                _ => Err(PortalError::InvalidResponse(
                    "the envelope has no `response`".into(),
                )),
            };
        }
    }
    // A success-shaped envelope carrying an error (a portal may do this even with a
    // 200): read as a refused request. Scrubbed before it is cut short.
    if let Ok(env) = serde_json::from_slice::<Envelope>(bytes) {
        if env.status.unwrap_or(0) != 0 {
            if let Some(problem) = validation_problem(bytes, sent) {
                return Err(PortalError::Validation(problem));
            }
            return Err(PortalError::BadRequest(error_message(bytes, sent)));
        }
    }
    match typed {
        Ok(_) => Err(PortalError::InvalidResponse(
            "the envelope has no `response`".into(),
        )),
        Err(e) => Err(not_json(bytes, &e)),
    }
}

fn not_json(bytes: &[u8], e: &serde_json::Error) -> PortalError {
    if e.is_syntax() || e.is_eof() {
        PortalError::InvalidResponse(format!("the body ({} bytes) is not JSON", bytes.len()))
    } else {
        PortalError::InvalidResponse(format!(
            "unexpected JSON shape at line {} column {}",
            e.line(),
            e.column()
        ))
    }
}

/// The portal's error message, scrubbed of the values that were sent, then cut short.
pub(crate) fn error_message(bytes: &[u8], sent: &[&str]) -> String {
    let parsed: Option<Envelope> = serde_json::from_slice(bytes).ok();
    let message = match parsed {
        Some(env) => env
            .error
            .and_then(|e| e.message)
            .or_else(|| env.response.and_then(|r| r.as_str().map(str::to_string)))
            .unwrap_or_default(),
        None if bytes.iter().all(u8::is_ascii_whitespace) => String::new(),
        None => format!("a {}-byte body that is not JSON", bytes.len()),
    };
    // Scrub first, then cut: cut first, a value straddling the cut would survive as a
    // fragment the scrubber no longer recognises (found by tests/faults_e2e.rs).
    let message = cut(scrub_values(message, sent));
    if message.is_empty() {
        "no message".into()
    } else {
        message
    }
}

/// Replaces any sent value that a portal echoed in a message.
pub(crate) fn scrub_values(mut message: String, sent: &[&str]) -> String {
    for value in sent.iter().filter(|v| v.len() >= 4) {
        message = message.replace(value, "**REDACTED**");
    }
    message
}

/// At most [`MAX_MESSAGE`] characters.
pub(crate) fn cut(message: String) -> String {
    if message.chars().count() <= MAX_MESSAGE {
        message
    } else {
        message.chars().take(MAX_MESSAGE).collect()
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(status: u16, body: &str) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::IM_A_TEAPOT),
            body: body.as_bytes().to_vec(),
            location: None,
            retry_after: None,
        }
    }

    #[test]
    fn every_error_shape_of_the_table_is_its_own_kind() {
        let envelope = |status: u16, msg: &str| {
            format!(r#"{{"error":{{"message":"{msg}"}},"status":1,"statusCode":{status}}}"#)
        };
        let e = |status, body: &str| reply(status, body).error(&[]);
        assert!(matches!(e(401, ""), PortalError::Unauthorized));
        assert!(matches!(e(403, ""), PortalError::ScopeOrPortalState));
        assert!(matches!(
            e(403, "\"Forbidden by IP\""),
            PortalError::IpRestricted(m) if m == "Forbidden by IP"
        ));
        assert!(matches!(
            e(403, &envelope(403, "Access denied")),
            PortalError::AccessDenied(_)
        ));
        assert!(matches!(e(402, ""), PortalError::NotPaid));
        assert!(matches!(
            e(402, &envelope(402, "Ihr Tarif unterstützt das nicht")),
            PortalError::PaymentRequired(_)
        ));
        assert!(matches!(e(404, ""), PortalError::NotFound));
        assert!(matches!(e(415, ""), PortalError::Unsupported(_)));
        // The same status, different languages: the same kind.
        for bad in [
            "Bad keys",
            "Schlechte Tasten",
            "Неверные ключи",
            "Clés invalides",
        ] {
            let err = e(400, &envelope(400, bad));
            assert!(
                matches!(&err, PortalError::BadRequest(m) if m == bad),
                "{err}"
            );
            assert!(err.is_bad_request());
        }
        let validation = r#"{"response":{"title":"One or more validation errors occurred.","status":400,"errors":{"Props[0].Value":["The field Value must be a string with a maximum length of 255."]}},"status":1,"statusCode":400}"#;
        assert!(matches!(
            e(400, validation),
            PortalError::Validation(m) if m.starts_with("Props[0].Value: The field")
        ));
        assert!(matches!(e(429, ""), PortalError::RateLimited { .. }));
        assert!(matches!(
            e(503, ""),
            PortalError::Server { status: 503, .. }
        ));
        assert!(matches!(e(418, ""), PortalError::Unexpected(418)));
        for err in [e(403, ""), e(402, ""), e(404, ""), e(415, ""), e(400, "")] {
            assert!(!err.is_retryable(), "{err}");
            assert!(err.is_client_error(), "{err}");
        }
    }

    #[test]
    fn echoed_values_are_scrubbed_before_the_cut() {
        let secret = "S3CRET-VALUE-1234";
        let long = format!("{}{secret}", "x".repeat(290));
        let body = format!(r#"{{"error":{{"message":"{long}"}},"status":1,"statusCode":400}}"#);
        let err = reply(400, &body).error(&[secret]);
        let text = err.to_string();
        assert!(!text.contains("S3CRET"), "{text}");
        let bare = reply(403, &format!("\"no {secret}\"")).error(&[secret]);
        assert!(!bare.to_string().contains(secret));
    }

    #[test]
    fn success_envelope_with_status_1_is_an_error() {
        let body = r#"{"response":null,"status":1,"error":{"message":"Claves incorrectas"}}"#;
        let got: Result<bool, _> = decode_response(body.as_bytes(), &[]);
        assert!(matches!(got, Err(PortalError::BadRequest(m)) if m == "Claves incorrectas"));
        let ok: Result<bool, _> = decode_response(br#"{"response":false,"status":0}"#, &[]);
        assert!(matches!(ok, Ok(false)));
        let garbage: Result<bool, _> = decode_response(b"<html>", &[]);
        assert!(matches!(garbage, Err(PortalError::InvalidResponse(_))));
    }
}
