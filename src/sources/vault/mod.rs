//! HashiCorp Vault / OpenBao, KV v1 and v2, over Vault's HTTP API.
//!
//! Paths are written as `vault kv get` takes them, mount first (`secret/oauth/google`).
//! Which part is the mount, and which KV version it runs, is asked once per mount from
//! `sys/internal/ui/mounts/PATH` (what the `vault` CLI does), unless `kv_version` is set
//! on the source.
//!
//! * `config.rs`: the `[sources.NAME]` settings (`kind = "vault"`).
//! * `api.rs`: the HTTP endpoints, bounded answers, status → error mapping.
//! * `session.rs`: the token: login, renewal, and the retry pause after a failed login.
//! * here: mounts and the KV reads.

mod api;
mod config;
mod session;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::AtomicU64;
use std::sync::Mutex;

use async_trait::async_trait;
use futures::stream::{self, StreamExt};
use reqwest::Method;

pub use config::{VaultAuth, VaultSourceConfig};

use super::{
    json_to_secret, metrics, Content, Secret, Source, SourceError, Version, PER_SOURCE_CONCURRENCY,
};
use api::{Api, Envelope, KvV2Data, KvV2Metadata, MountInfo};
use session::{LoginFailure, Session};

/// A Vault or OpenBao server.
pub struct VaultSource {
    name: String,
    api: Api,
    auth: VaultAuth,
    revoke_on_shutdown: bool,
    kv_version: Option<u8>,
    /// mount → (mount, kv version), learnt from the server.
    mounts: Mutex<HashMap<String, (String, u8)>>,
    /// The current token. A tokio mutex: logins and renewals are serialized, so
    /// concurrent reads never log in twice.
    session: tokio::sync::Mutex<Option<Session>>,
    next_session: AtomicU64,
    /// The last failed login, which holds back the next one (see `session.rs`).
    login_failed: Mutex<LoginFailure>,
}

impl VaultSource {
    /// Builds the client and tries to get a token: the configured one, or a login
    /// (AppRole, Kubernetes). Only settings that cannot work (an unreadable CA file) are
    /// an error here. A Vault that is down, sealed or refuses the login is reported in
    /// the log and the source is kept: it logs in on a later use, so a daemon started
    /// during an outage, or before a fixed `secret_id` is in place, recovers by itself.
    pub async fn connect(name: &str, cfg: &VaultSourceConfig) -> Result<VaultSource, SourceError> {
        let source = VaultSource {
            name: name.to_string(),
            api: Api::new(cfg)?,
            auth: cfg.auth.clone(),
            revoke_on_shutdown: cfg.revoke_on_shutdown,
            kv_version: cfg.kv_version,
            mounts: Mutex::new(HashMap::new()),
            session: tokio::sync::Mutex::new(None),
            next_session: AtomicU64::new(1),
            login_failed: Mutex::new(None),
        };
        match source.session().await {
            Ok(_) => {}
            Err(SourceError::Unavailable(why)) => {
                tracing::warn!(source = %name, error = %why, "Vault unavailable at start; logging in when it is back");
            }
            Err(e) => {
                tracing::error!(source = %name, error = %e, "Vault login failed at start; trying again on later cycles (at most once every 5 s)");
            }
        }
        Ok(source)
    }

    /// Runs `op` with the current token. If Vault answers "permission denied" and the
    /// token itself turns out to be invalid (revoked, expired), logs in again once and
    /// retries; a plain policy denial is returned as it is (no login per request).
    ///
    /// With token auth "logging in again" re-reads the configured token: a token file
    /// the operator replaced is picked up, and a token that stays invalid is reported
    /// as such ("invalid, expired or revoked") rather than as a policy denial.
    async fn with_session<T, F, Fut>(&self, op: F) -> Result<T, SourceError>
    where
        F: Fn(Session) -> Fut,
        Fut: std::future::Future<Output = Result<T, SourceError>>,
    {
        let session = self.session().await?;
        let id = session.id;
        match op(session.clone()).await {
            Err(SourceError::Denied(why)) => {
                // One lookup per token: when another request already dropped it, it is
                // known to be invalid.
                if self.is_current(id).await {
                    match self.lookup_self(&session.token).await {
                        Ok(_) => return Err(SourceError::Denied(why)),
                        Err(SourceError::Denied(_)) => {}
                        Err(other) => return Err(other),
                    }
                    if self.drop_session(id).await {
                        if self.logs_in() {
                            tracing::warn!(source = %self.name, "Vault token no longer valid; logging in again");
                        } else {
                            tracing::warn!(source = %self.name, "Vault token no longer valid; reading the configured token again");
                        }
                    }
                }
                let session = self.session().await?;
                op(session).await
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
        let info = self
            .with_session(|s| async move {
                let r = self
                    .api
                    .send::<Envelope<MountInfo>>(
                        Method::GET,
                        &format!("sys/internal/ui/mounts/{path}"),
                        Some(&s.token),
                        None,
                    )
                    .await;
                match r {
                    Err(SourceError::Denied(_)) => Err(SourceError::Denied(format!(
                        "no access to `{path}` (or the token is invalid)"
                    ))),
                    other => other,
                }
            })
            .await?
            .and_then(|e| e.data)
            .ok_or(SourceError::NotFound)?;
        let mount = info.path.trim_end_matches('/').to_string();
        if mount.is_empty() {
            return Err(SourceError::NotFound);
        }
        if info.kind != "kv" && info.kind != "generic" {
            return Err(SourceError::Invalid(format!(
                "`{mount}/` is a `{}` mount, not a KV secrets engine",
                info.kind
            )));
        }
        let version = match info
            .options
            .as_ref()
            .and_then(|o| o.get("version"))
            .and_then(|v| v.as_str())
        {
            Some("2") => 2,
            _ => 1,
        };
        let found = (mount, version);
        if let Ok(mut cache) = self.mounts.lock() {
            cache.insert(found.0.clone(), found.clone());
        }
        Ok(found)
    }

    fn cached_mount(&self, path: &str) -> Option<(String, u8)> {
        let cache = self.mounts.lock().ok()?;
        cache
            .values()
            .find(|(mount, _)| path.starts_with(&format!("{mount}/")))
            .cloned()
    }

    /// KV v2: `current_version` and its `created_time` from the metadata endpoint. KV v1
    /// has no versions.
    async fn version_of(&self, path: &str) -> Result<Option<Version>, SourceError> {
        let (mount, version) = self.mount_of(path).await?;
        if version != 2 {
            return Ok(None);
        }
        let rel = relative(path, &mount)?;
        let endpoint = format!("{mount}/metadata/{rel}");
        let meta = self
            .with_session(|s| {
                let endpoint = endpoint.as_str();
                async move {
                    let r = self
                        .api
                        .send::<Envelope<KvV2Metadata>>(Method::GET, endpoint, Some(&s.token), None)
                        .await
                        .and_then(|e| e.and_then(|e| e.data).ok_or(SourceError::NotFound));
                    metrics::source_request(&self.name, "metadata", &r);
                    r
                }
            })
            .await?;
        let created = meta
            .versions
            .get(&meta.current_version.to_string())
            .and_then(|v| api::parse_time(&v.created_time));
        Ok(Some(Version {
            id: meta.current_version.to_string(),
            created,
        }))
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
        let endpoint = if version == 2 {
            format!("{mount}/data/{rel}")
        } else {
            format!("{mount}/{rel}")
        };
        let (data, secret_version, created) = self
            .with_session(|s| {
                let endpoint = endpoint.as_str();
                async move {
                    let r = if version == 2 {
                        self.api
                            .send::<Envelope<KvV2Data>>(Method::GET, endpoint, Some(&s.token), None)
                            .await
                            .and_then(|e| e.and_then(|e| e.data).ok_or(SourceError::NotFound))
                            .map(|d| {
                                (
                                    d.data,
                                    Some(d.metadata.version.to_string()),
                                    api::parse_time(&d.metadata.created_time),
                                )
                            })
                    } else {
                        self.api
                            .send::<Envelope<serde_json::Value>>(
                                Method::GET,
                                endpoint,
                                Some(&s.token),
                                None,
                            )
                            .await
                            .and_then(|e| e.ok_or(SourceError::NotFound))
                            .map(|e| (e.data, None, None))
                    };
                    metrics::source_request(&self.name, "read", &r);
                    r
                }
            })
            .await?;
        let Some(serde_json::Value::Object(map)) = data else {
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
            created,
            content: Content::Fields(fields),
        })
    }

    async fn version_info(
        &self,
        paths: &[String],
    ) -> HashMap<String, Result<Option<Version>, SourceError>> {
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
        self.lookup_self(&session.token)
            .await
            .map(|_| ())
            .map_err(|e| match e {
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
        let r = self
            .api
            .send::<serde_json::Value>(
                Method::POST,
                "auth/token/revoke-self",
                Some(&session.token),
                None,
            )
            .await
            .map(|_| ());
        metrics::source_request(&self.name, "revoke", &r);
        match r {
            Ok(()) => tracing::info!(source = %self.name, "Vault token revoked"),
            Err(e) => {
                tracing::warn!(source = %self.name, error = %e, "could not revoke the Vault token")
            }
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
