//! HashiCorp Vault / OpenBao, KV v1 and v2, through `vaultrs`.
//!
//! Paths are written as `vault kv get` takes them, mount first (`secret/oauth/google`).
//! Which part is the mount, and which KV version it runs, is asked once per path prefix
//! from `sys/internal/ui/mounts/PATH` (what the `vault` CLI does), unless `kv_version`
//! is set on the source.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use vaultrs::api::kv2::requests::ReadSecretRequest;
use vaultrs::api::AuthInfo;
use vaultrs::client::{VaultClient, VaultClientSettings, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;

use futures::stream::{self, StreamExt};

use super::{
    json_to_secret, metrics, Content, Secret, Source, SourceError, PER_SOURCE_CONCURRENCY,
};
use crate::config::{VaultAuth, VaultSourceConfig};
use crate::secret::{read_secret_file, ExposeSecret, SecretString};

/// A Vault or OpenBao server.
pub struct VaultSource {
    name: String,
    /// Client settings without a token; a client is built per token.
    settings: VaultClientSettings,
    /// Plain HTTP client (same CA, timeout) for the one endpoint vaultrs lacks.
    http: reqwest::Client,
    address: url::Url,
    namespace: Option<String>,
    auth: VaultAuth,
    revoke_on_shutdown: bool,
    kv_version: Option<u8>,
    /// path → (mount, kv version), learnt from the server.
    mounts: Mutex<HashMap<String, (String, u8)>>,
    /// The current token and when to renew it. A tokio mutex: logins and renewals are
    /// serialized, so concurrent reads never log in twice.
    session: tokio::sync::Mutex<Option<Session>>,
    /// When a login last failed because Vault was unreachable, and why.
    login_unavailable: Mutex<Option<(Instant, String)>>,
}

/// After a login failed because Vault was unreachable, further logins fail at once for
/// this long (one attempt per cycle rather than one timeout per secret).
const LOGIN_UNAVAILABLE_RETRY: Duration = Duration::from_secs(5);

/// A token in use, with its lifecycle.
#[derive(Clone)]
struct Session {
    client: Arc<VaultClient>,
    token: SecretString,
    /// Renew at two thirds of the TTL; `None` for tokens that never expire.
    renew_at: Option<Instant>,
    ttl: Duration,
    renewable: bool,
}

impl VaultSource {
    /// Builds the client and gets a token: the configured one, or a login (AppRole,
    /// Kubernetes). The token is then reused, renewed at two thirds of its TTL, and
    /// replaced by a new login when renewal is refused or the token is revoked.
    pub async fn connect(name: &str, cfg: &VaultSourceConfig) -> Result<VaultSource, SourceError> {
        let mut ca_certs = Vec::new();
        let mut http = reqwest::Client::builder().timeout(cfg.timeout);
        if let Some(ca) = &cfg.ca_cert {
            ca_certs.push(ca.display().to_string());
            let cert = crate::errors::load_ca(ca).map_err(SourceError::Invalid)?;
            http = http.add_root_certificate(cert);
        }
        let http = http
            .build()
            .map_err(|e| SourceError::Invalid(format!("cannot build an HTTP client: {e}")))?;
        let mut settings = VaultClientSettingsBuilder::default();
        settings
            .address(cfg.address.as_str())
            .token("")
            // Explicit, so VAULT_SKIP_VERIFY / VAULT_CACERT in the environment cannot
            // silently change how the server's certificate is checked.
            .verify(true)
            .ca_certs(ca_certs)
            .timeout(Some(cfg.timeout));
        if let Some(ns) = &cfg.namespace {
            settings.set_namespace(ns.clone());
        }
        let settings = settings
            .build()
            .map_err(|e| SourceError::Invalid(format!("invalid Vault client settings: {e}")))?;
        let source = VaultSource {
            name: name.to_string(),
            settings,
            http,
            address: cfg.address.clone(),
            namespace: cfg.namespace.clone(),
            auth: cfg.auth.clone(),
            revoke_on_shutdown: cfg.revoke_on_shutdown,
            kv_version: cfg.kv_version,
            mounts: Mutex::new(HashMap::new()),
            session: tokio::sync::Mutex::new(None),
            login_unavailable: Mutex::new(None),
        };
        // Fail early (and clearly) on bad credentials. An unreachable or sealed Vault is
        // not a configuration error: the source is kept and logs in on first use, so a
        // daemon started during a Vault outage recovers by itself once Vault is back
        // (failing here left the source unavailable until a restart or reload).
        match source.session().await {
            Ok(_) => {}
            Err(SourceError::Unavailable(why)) => {
                tracing::warn!(source = %name, error = %why, "Vault unavailable at start; logging in when it is back");
            }
            Err(e) => return Err(e),
        }
        Ok(source)
    }

    fn client_for(&self, token: &SecretString) -> Result<VaultClient, SourceError> {
        let mut settings = self.settings.clone();
        settings.token = token.expose_secret().to_string();
        VaultClient::new(settings).map_err(|e| {
            SourceError::Invalid(format!("cannot build the Vault client: {}", describe(&e)))
        })
    }

    /// True when the token comes from a login that authsync can repeat.
    fn logs_in(&self) -> bool {
        !matches!(self.auth, VaultAuth::Token { .. })
    }

    /// A login's answer as (token, TTL, renewable), counted in the metrics. A refusal
    /// becomes an `Auth` error worded by `why`; an unreachable or sealed Vault stays
    /// `Unavailable` (not a credential problem: retried later).
    fn logged_in(
        &self,
        answer: Result<AuthInfo, ClientError>,
        why: impl FnOnce(&SourceError) -> String,
    ) -> Result<(SecretString, u64, bool), SourceError> {
        let info = answer.map_err(map_error);
        metrics::source_request(&self.name, "login", &info);
        match info {
            Ok(info) => Ok((
                SecretString::from(info.client_token),
                info.lease_duration,
                info.renewable,
            )),
            Err(e @ SourceError::Unavailable(_)) => Err(e),
            Err(e) => Err(SourceError::Auth(why(&e))),
        }
    }

    /// A fresh token: the configured one (looked up for its TTL), or a new login.
    /// Secrets (secret_id, JWT) are re-read at every login: they rotate.
    async fn login(&self) -> Result<Session, SourceError> {
        let anonymous = self.client_for(&SecretString::from(String::new()))?;
        let (token, ttl, renewable) = match &self.auth {
            VaultAuth::Token { token } => {
                let token = token
                    .read()
                    .map_err(|e| SourceError::Auth(format!("cannot read the Vault token: {e}")))?;
                let client = self.client_for(&token)?;
                let info = vaultrs::token::lookup_self(&client)
                    .await
                    .map_err(map_error);
                metrics::source_request(&self.name, "lookup_self", &info);
                let info = info.map_err(|e| match e {
                    SourceError::Denied(_) => {
                        SourceError::Auth("the Vault token is invalid, expired or revoked".into())
                    }
                    other => other,
                })?;
                (token, info.ttl, info.renewable.unwrap_or(false))
            }
            VaultAuth::Approle {
                role_id,
                secret_id,
                mount,
            } => {
                let role_id = role_id
                    .read()
                    .map_err(|e| SourceError::Auth(format!("cannot read role_id: {e}")))?;
                let secret_id = secret_id
                    .read()
                    .map_err(|e| SourceError::Auth(format!("cannot read secret_id: {e}")))?;
                let info = vaultrs::auth::approle::login(
                    &anonymous,
                    mount,
                    role_id.expose_secret(),
                    secret_id.expose_secret(),
                )
                .await;
                self.logged_in(info, |e| {
                    format!(
                        "AppRole login at auth/{mount} failed ({e}); check role_id and secret_id"
                    )
                })?
            }
            VaultAuth::Kubernetes {
                role,
                mount,
                jwt_file,
            } => {
                let jwt = read_secret_file(jwt_file).map_err(|e| {
                    SourceError::Auth(format!("cannot read the service-account token: {e}"))
                })?;
                let info =
                    vaultrs::auth::kubernetes::login(&anonymous, mount, role, jwt.expose_secret())
                        .await;
                self.logged_in(info, |e| {
                    format!("Kubernetes login at auth/{mount} (role {role}) failed ({e})")
                })?
            }
        };
        if self.logs_in() {
            tracing::info!(source = %self.name, ttl_s = ttl, renewable, "logged in to Vault");
        }
        let client = Arc::new(self.client_for(&token)?);
        Ok(Session::new(client, token, ttl, renewable))
    }

    /// The session to use now: logs in the first time, renews when due, logs in again
    /// when renewal is refused or no longer extends the token.
    async fn session(&self) -> Result<Session, SourceError> {
        let mut slot = self.session.lock().await;
        let current = match slot.as_ref() {
            None => {
                // Vault could not be reached for a login a moment ago: fail at once
                // instead of queueing one more timeout per secret behind this lock.
                if let Ok(failed) = self.login_unavailable.lock() {
                    if let Some((at, why)) = failed.as_ref() {
                        if at.elapsed() < LOGIN_UNAVAILABLE_RETRY {
                            return Err(SourceError::Unavailable(why.clone()));
                        }
                    }
                }
                let s = match self.login().await {
                    Err(SourceError::Unavailable(why)) => {
                        if let Ok(mut failed) = self.login_unavailable.lock() {
                            *failed = Some((Instant::now(), why.clone()));
                        }
                        return Err(SourceError::Unavailable(why));
                    }
                    other => other?,
                };
                *slot = Some(s.clone());
                return Ok(s);
            }
            Some(s) => s.clone(),
        };
        if current.renew_at.is_none_or(|at| Instant::now() < at) {
            return Ok(current);
        }
        let renewed = if current.renewable {
            let r = vaultrs::token::renew_self(current.client.as_ref(), None)
                .await
                .map_err(map_error);
            metrics::source_request(&self.name, "renew", &r);
            match r {
                // A renewal that no longer extends the token much means max_ttl is near.
                Ok(info) if Duration::from_secs(info.lease_duration) * 2 >= current.ttl => {
                    tracing::debug!(source = %self.name, ttl_s = info.lease_duration, "Vault token renewed");
                    Some(Session::new(
                        current.client.clone(),
                        current.token.clone(),
                        info.lease_duration,
                        info.renewable,
                    ))
                }
                Ok(info) => {
                    tracing::info!(source = %self.name, ttl_s = info.lease_duration, "Vault token near its max TTL");
                    None
                }
                Err(e) => {
                    tracing::warn!(source = %self.name, error = %e, "Vault token renewal refused");
                    None
                }
            }
        } else {
            None
        };
        let next = match renewed {
            Some(s) => s,
            None if self.logs_in() => self.login().await?,
            // A configured token that cannot be renewed: keep it until Vault refuses it.
            None => Session {
                renew_at: None,
                ..current
            },
        };
        *slot = Some(next.clone());
        Ok(next)
    }

    /// Runs `op` with the current client. If Vault answers "permission denied" and the
    /// token itself turns out to be invalid (revoked, expired), logs in again once and
    /// retries; a plain policy denial is returned as it is (no login per request).
    ///
    /// With token auth "logging in again" re-reads the configured token: a token file
    /// the operator replaced is picked up, and a token that stays invalid is reported
    /// as such ("invalid, expired or revoked") rather than as a policy denial.
    async fn with_client<T, F, Fut>(&self, op: F) -> Result<T, SourceError>
    where
        F: Fn(Arc<VaultClient>) -> Fut,
        Fut: std::future::Future<Output = Result<T, SourceError>>,
    {
        let session = self.session().await?;
        match op(session.client.clone()).await {
            Err(SourceError::Denied(why)) => {
                let check = vaultrs::token::lookup_self(session.client.as_ref())
                    .await
                    .map_err(map_error);
                metrics::source_request(&self.name, "lookup_self", &check);
                if check.is_ok() {
                    return Err(SourceError::Denied(why));
                }
                if self.logs_in() {
                    tracing::warn!(source = %self.name, "Vault token no longer valid; logging in again");
                } else {
                    tracing::warn!(source = %self.name, "Vault token no longer valid; reading the configured token again");
                }
                {
                    let mut slot = self.session.lock().await;
                    if slot
                        .as_ref()
                        .is_some_and(|s| Arc::ptr_eq(&s.client, &session.client))
                    {
                        *slot = None;
                    }
                }
                let session = self.session().await?;
                op(session.client).await
            }
            other => other,
        }
    }

    /// The mount and KV version serving `path`.
    async fn mount_of(&self, path: &str) -> Result<(String, u8), SourceError> {
        if let Some(found) = self.cached_mount(path) {
            return Ok(found);
        }
        if let Some(version) = self.kv_version {
            // Configured version: the mount is the first path segment.
            let mount = path.split('/').next().unwrap_or_default().to_string();
            return Ok((mount, version));
        }
        let url = self
            .address
            .join(&format!("v1/sys/internal/ui/mounts/{path}"))
            .map_err(|e| SourceError::Invalid(format!("bad path `{path}`: {e}")))?;
        let session = self.session().await?;
        let mut req = self
            .http
            .get(url)
            .header("X-Vault-Token", session.token.expose_secret());
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        let resp = req
            .send()
            .await
            .map_err(|e| SourceError::Unavailable(reqwest_reason(&e)))?;
        let status = resp.status();
        match status.as_u16() {
            200 => {}
            403 => {
                return Err(SourceError::Denied(format!(
                    "no access to `{path}` (or the token is invalid)"
                )))
            }
            404 => return Err(SourceError::NotFound),
            503 => {
                return Err(SourceError::Unavailable(
                    "Vault is sealed or in standby (503)".into(),
                ))
            }
            code => {
                return Err(SourceError::Unavailable(format!(
                    "mount lookup answered HTTP {code}"
                )))
            }
        }
        let body: serde_json::Value = resp.json().await.map_err(|_| {
            SourceError::Invalid("mount lookup returned a body that is not JSON".into())
        })?;
        let data = &body["data"];
        let mount = data["path"]
            .as_str()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_string();
        let kind = data["type"].as_str().unwrap_or_default();
        if mount.is_empty() {
            return Err(SourceError::NotFound);
        }
        if kind != "kv" && kind != "generic" {
            return Err(SourceError::Invalid(format!(
                "`{mount}/` is a `{kind}` mount, not a KV secrets engine"
            )));
        }
        let version = match data["options"]["version"].as_str() {
            Some("2") => 2,
            _ => 1,
        };
        let found = (mount, version);
        if let Ok(mut cache) = self.mounts.lock() {
            cache.insert(found.0.clone(), found.clone());
        }
        Ok(found)
    }

    /// KV v2: `current_version` from the metadata endpoint. KV v1 has no versions.
    async fn version_of(&self, path: &str) -> Result<Option<String>, SourceError> {
        let (mount, version) = self.mount_of(path).await?;
        if version != 2 {
            return Ok(None);
        }
        let rel = relative(path, &mount)?;
        let meta = self
            .with_client(|client| {
                let mount = mount.clone();
                async move {
                    let r = vaultrs::kv2::read_metadata(client.as_ref(), &mount, rel)
                        .await
                        .map_err(map_error);
                    metrics::source_request(&self.name, "metadata", &r);
                    r
                }
            })
            .await?;
        Ok(Some(meta.current_version.to_string()))
    }

    fn cached_mount(&self, path: &str) -> Option<(String, u8)> {
        let cache = self.mounts.lock().ok()?;
        cache
            .values()
            .find(|(mount, _)| path.starts_with(&format!("{mount}/")))
            .cloned()
    }
}

#[async_trait]
impl Source for VaultSource {
    fn kind(&self) -> &'static str {
        "vault"
    }

    async fn read(&self, path: &str) -> Result<Secret, SourceError> {
        let (mount, version) = self.mount_of(path).await?;
        let rel = relative(path, &mount)?;
        tracing::debug!(source = %self.name, %mount, kv_version = version, path = rel, "reading secret");
        let (data, secret_version) = self
            .with_client(|client| {
                let mount = mount.clone();
                async move {
                    let r = if version == 2 {
                        let endpoint = ReadSecretRequest::builder()
                            .mount(mount.as_str())
                            .path(rel)
                            .build()
                            .map_err(|e| {
                                SourceError::Invalid(format!("cannot build request: {e}"))
                            })?;
                        vaultrs::api::exec_with_result(client.as_ref(), endpoint)
                            .await
                            .map(|resp| (resp.data, Some(resp.metadata.version.to_string())))
                            .map_err(map_error)
                    } else {
                        vaultrs::kv1::get_raw(client.as_ref(), &mount, rel)
                            .await
                            .map(|resp| (resp.data, None))
                            .map_err(map_error)
                    };
                    metrics::source_request(&self.name, "read", &r);
                    r
                }
            })
            .await?;
        let serde_json::Value::Object(map) = data else {
            return Err(SourceError::Invalid(
                "the secret's data is not a key/value object".into(),
            ));
        };
        let fields: BTreeMap<String, _> = map
            .iter()
            .filter_map(|(k, v)| json_to_secret(v).map(|s| (k.clone(), s)))
            .collect();
        Ok(Secret {
            version: secret_version,
            content: Content::Fields(fields),
        })
    }

    async fn versions(
        &self,
        paths: &[String],
    ) -> HashMap<String, Result<Option<String>, SourceError>> {
        stream::iter(paths.iter().cloned())
            .map(|p| async move {
                let v = self.version_of(&p).await;
                (p, v)
            })
            .buffer_unordered(PER_SOURCE_CONCURRENCY)
            .collect()
            .await
    }

    /// Logs in if needed and checks the token is still valid.
    async fn authenticate(&self) -> Result<(), SourceError> {
        let session = self.session().await?;
        let r = vaultrs::token::lookup_self(session.client.as_ref())
            .await
            .map(|_| ())
            .map_err(map_error);
        metrics::source_request(&self.name, "lookup_self", &r);
        r.map_err(|e| match e {
            SourceError::Denied(_) => {
                SourceError::Auth("the token is invalid, expired or revoked".into())
            }
            other => other,
        })
    }

    /// Revokes a token authsync obtained by logging in (unless `revoke_on_shutdown =
    /// false`), so finished runs leave no live lease behind. Configured tokens are the
    /// operator's and are left alone.
    async fn close(&self) {
        if !self.logs_in() || !self.revoke_on_shutdown {
            return;
        }
        let Some(session) = self.session.lock().await.take() else {
            return;
        };
        let r = vaultrs::token::revoke_self(session.client.as_ref())
            .await
            .map_err(map_error);
        metrics::source_request(&self.name, "revoke", &r);
        match r {
            Ok(()) => tracing::info!(source = %self.name, "Vault token revoked"),
            Err(e) => {
                tracing::warn!(source = %self.name, error = %e, "could not revoke the Vault token")
            }
        }
    }
}

impl Session {
    fn new(
        client: Arc<VaultClient>,
        token: SecretString,
        ttl_secs: u64,
        renewable: bool,
    ) -> Session {
        let ttl = Duration::from_secs(ttl_secs);
        let renew_at = (ttl_secs > 0).then(|| Instant::now() + ttl * 2 / 3);
        Session {
            client,
            token,
            renew_at,
            ttl,
            renewable,
        }
    }
}

/// `path` below its mount: `secret/oauth/google` → `oauth/google`.
fn relative<'a>(path: &'a str, mount: &str) -> Result<&'a str, SourceError> {
    path.strip_prefix(mount)
        .map(|p| p.trim_start_matches('/'))
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            SourceError::Invalid(format!(
                "`{path}` names the mount `{mount}/` itself, not a secret in it"
            ))
        })
}

/// Maps a vaultrs error to ours, without ever printing a response body (a parse error
/// of a secret's response could quote its value).
fn map_error(e: ClientError) -> SourceError {
    match &e {
        ClientError::APIError { code: 404, .. } => SourceError::NotFound,
        ClientError::APIError { code: 403, errors }
        | ClientError::APIError { code: 401, errors } => {
            SourceError::Denied(summarise(errors, "permission denied"))
        }
        ClientError::APIError { code: 503, .. } => {
            SourceError::Unavailable("Vault is sealed or in standby (503)".into())
        }
        // Vault answered and refused the request (e.g. 400 "invalid role or secret ID"):
        // not an outage, so not `Unavailable` (which a login treats as "try later").
        ClientError::APIError { code, errors } if (400..500).contains(code) && *code != 429 => {
            SourceError::Invalid(format!("HTTP {code}: {}", summarise(errors, "no message")))
        }
        ClientError::APIError { code, errors } => {
            SourceError::Unavailable(format!("HTTP {code}: {}", summarise(errors, "no message")))
        }
        _ => SourceError::Unavailable(describe(&e)),
    }
}

fn summarise(errors: &[String], default: &str) -> String {
    if errors.is_empty() {
        default.to_string()
    } else {
        errors.join("; ").chars().take(300).collect()
    }
}

/// A vaultrs error in one line: transport failures keep their cause (connection
/// refused, timeout); decoding failures do not, since they may quote the body.
fn describe(e: &ClientError) -> String {
    use rustify::errors::ClientError as Rest;
    match e {
        ClientError::RestClientError { source } => match source {
            Rest::RequestError { source, .. } => {
                format!("request failed: {}", crate::errors::chain(source.as_ref()))
            }
            Rest::ServerResponseError { code, .. } => format!("server answered HTTP {code}"),
            Rest::ResponseParseError { .. } | Rest::ResponseConversionError { .. } => {
                "the response could not be decoded".into()
            }
            other => other.to_string(),
        },
        ClientError::JsonParseError { .. } => "the response could not be decoded".into(),
        other => other.to_string(),
    }
}

fn reqwest_reason(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        format!("cannot connect: {}", crate::errors::chain(e))
    } else {
        crate::errors::chain(e)
    }
}
