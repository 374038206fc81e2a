//! `kind = "vault"` settings.

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::VaultSource;
use crate::config::Checks;
use crate::secret::SecretSetting;
use crate::sources::{Source, SourceError, StoreConfig};

/// `kind = "vault"`: HashiCorp Vault or OpenBao, KV v1 or v2.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSourceConfig {
    #[serde(rename = "kind")]
    _kind: String,
    /// Server address, e.g. `https://vault.example.com:8200`.
    pub address: url::Url,
    /// Vault Enterprise / OpenBao namespace, sent on every request.
    #[serde(default)]
    pub namespace: Option<String>,
    /// PEM file with the CA that signed the server's certificate (private CAs).
    #[serde(default)]
    pub ca_cert: Option<PathBuf>,
    /// How to log in; default `{ method = "token", token = { env = "VAULT_TOKEN" } }`.
    #[serde(default)]
    pub auth: VaultAuth,
    /// Revoke the token authsync got by logging in (AppRole, Kubernetes) when it exits,
    /// so no live lease is left behind. Default true; configured tokens are never revoked.
    #[serde(default = "default_true")]
    pub revoke_on_shutdown: bool,
    /// `1` or `2`; absent → detected per mount (`sys/internal/ui/mounts`, as `vault kv` does).
    #[serde(default)]
    pub kv_version: Option<u8>,
    /// Per-request timeout.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Allow a plain `http://` `address` to a host other than this machine (127.0.0.0/8,
    /// `::1` and `localhost` are always allowed). Without it such an address is a config
    /// error: tokens, login credentials and every secret value would cross the network in
    /// clear text. Default false.
    // Last, so the "expected one of" list of an unknown field reads as it always did.
    #[serde(default)]
    pub allow_insecure_http: bool,
}

/// Vault authentication methods.
///
/// A login that Vault refuses (or cannot answer) is not repeated for 5 seconds: every
/// request in that time gets the same error, so a revoked `secret_id` costs at most one
/// login attempt per cycle, not one per secret (Vault's lockout counts them). A token
/// that is still valid is kept in use meanwhile.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "method", rename_all = "lowercase", deny_unknown_fields)]
pub enum VaultAuth {
    /// A token (`VAULT_TOKEN`, a file, …).
    Token { token: SecretSetting },
    /// AppRole: `role_id` and `secret_id`, at `mount` (default `approle`).
    Approle {
        role_id: SecretSetting,
        secret_id: SecretSetting,
        #[serde(default = "default_approle_mount")]
        mount: String,
    },
    /// Kubernetes service-account auth: `role` at `mount` (default `kubernetes`); the JWT
    /// is re-read from `jwt_file` at every login (projected tokens rotate).
    Kubernetes {
        role: String,
        #[serde(default = "default_k8s_mount")]
        mount: String,
        #[serde(default = "default_k8s_jwt")]
        jwt_file: PathBuf,
    },
}

impl Default for VaultAuth {
    fn default() -> Self {
        VaultAuth::Token {
            token: SecretSetting::Env {
                env: "VAULT_TOKEN".into(),
            },
        }
    }
}

impl VaultSourceConfig {
    /// Settings for `address` with the default auth (tests, examples).
    pub fn new(address: url::Url) -> VaultSourceConfig {
        VaultSourceConfig {
            _kind: "vault".into(),
            address,
            namespace: None,
            ca_cert: None,
            auth: VaultAuth::default(),
            revoke_on_shutdown: true,
            kv_version: None,
            timeout: default_timeout(),
            allow_insecure_http: false,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_approle_mount() -> String {
    "approle".into()
}
fn default_k8s_mount() -> String {
    "kubernetes".into()
}
fn default_k8s_jwt() -> PathBuf {
    PathBuf::from("/var/run/secrets/kubernetes.io/serviceaccount/token")
}
fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

#[async_trait]
impl StoreConfig for VaultSourceConfig {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn check(&self, checks: &mut Checks<'_>) {
        if let Some(version) = self.kv_version {
            if version != 1 && version != 2 {
                let msg = format!(
                    "{}: kv_version must be 1 or 2, not {version}",
                    checks.what()
                );
                checks.error(msg);
                return;
            }
        }
        checks.store_url(
            &self.address,
            "address",
            "https://vault.example.com:8200",
            self.allow_insecure_http,
        );
    }

    fn secret_settings(&self) -> Vec<(&'static str, &SecretSetting)> {
        match &self.auth {
            VaultAuth::Token { token } => vec![("auth.token", token)],
            VaultAuth::Approle {
                role_id, secret_id, ..
            } => vec![("auth.role_id", role_id), ("auth.secret_id", secret_id)],
            VaultAuth::Kubernetes { .. } => Vec::new(),
        }
    }

    async fn build(&self, name: &str) -> Result<Arc<dyn Source>, SourceError> {
        Ok(Arc::new(VaultSource::connect(name, self).await?))
    }
}
