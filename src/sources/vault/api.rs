//! Vault's HTTP API: the few endpoints authsync uses, over one HTTP client per source.
//!
//! Every answer is read with a size bound ([`MAX_BODY`]) and decoded into typed structs;
//! errors are mapped from the status code and Vault's own `errors` list, never from a
//! body that could quote a secret.

use std::collections::HashMap;
use std::time::SystemTime;

use reqwest::header::HeaderValue;
use reqwest::Method;
use secrecy::zeroize::Zeroize;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::VaultSourceConfig;
use crate::secret::{ExposeSecret, SecretString};
use crate::sources::SourceError;

/// The largest answer authsync reads from Vault. A KV secret for a portal is a few
/// kilobytes; anything near this is a wrong path or something in front of Vault.
pub(super) const MAX_BODY: usize = 1024 * 1024;

/// A Vault server as an HTTP endpoint.
pub(super) struct Api {
    http: reqwest::Client,
    base: url::Url,
    namespace: Option<String>,
}

/// The parts of Vault's answer envelope authsync reads.
#[derive(Deserialize)]
pub(super) struct Envelope<D> {
    // Missing and `null` are both `None`.
    pub data: Option<D>,
    pub auth: Option<Auth>,
}

/// `auth` of a login or renewal answer.
#[derive(Deserialize)]
pub(super) struct Auth {
    #[serde(default = "no_token")]
    pub client_token: SecretString,
    #[serde(default)]
    pub lease_duration: u64,
    #[serde(default)]
    pub renewable: bool,
}

fn no_token() -> SecretString {
    SecretString::from(String::new())
}

/// `data` of `auth/token/lookup-self`.
#[derive(Deserialize)]
pub(super) struct TokenInfo {
    #[serde(default)]
    pub ttl: u64,
    #[serde(default)]
    pub renewable: Option<bool>,
}

/// `data` of a KV v2 read: the fields and the version's metadata.
#[derive(Deserialize)]
pub(super) struct KvV2Data {
    #[serde(default)]
    pub data: Option<serde_json::Value>,
    pub metadata: KvV2Version,
}

#[derive(Deserialize)]
pub(super) struct KvV2Version {
    pub version: u64,
    #[serde(default)]
    pub created_time: String,
}

/// `data` of a KV v2 metadata read.
#[derive(Deserialize)]
pub(super) struct KvV2Metadata {
    pub current_version: u64,
    #[serde(default)]
    pub versions: HashMap<String, KvV2VersionTimes>,
}

#[derive(Deserialize)]
pub(super) struct KvV2VersionTimes {
    #[serde(default)]
    pub created_time: String,
}

/// `data` of `sys/internal/ui/mounts/PATH`.
#[derive(Deserialize)]
pub(super) struct MountInfo {
    #[serde(default)]
    pub path: String,
    #[serde(default, rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub options: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<String>,
}

impl Api {
    pub fn new(cfg: &VaultSourceConfig) -> Result<Api, SourceError> {
        // Explicit settings only: VAULT_SKIP_VERIFY / VAULT_CACERT in the environment
        // cannot change how the server's certificate is checked.
        let mut http = reqwest::Client::builder().timeout(cfg.timeout);
        if let Some(ca) = &cfg.ca_cert {
            let cert = crate::errors::load_ca(ca).map_err(SourceError::Invalid)?;
            http = http.add_root_certificate(cert);
        }
        let http = http
            .build()
            .map_err(|e| SourceError::Invalid(format!("cannot build an HTTP client: {e}")))?;
        Ok(Api {
            http,
            base: cfg.address.clone(),
            namespace: cfg.namespace.clone(),
        })
    }

    /// `v1/PATH` under the address, each segment escaped.
    fn url(&self, path: &str) -> Result<url::Url, SourceError> {
        let mut url = self.base.clone();
        url.set_query(None);
        {
            let mut segments = url.path_segments_mut().map_err(|_| {
                SourceError::Invalid("the Vault address cannot carry a path".into())
            })?;
            segments.pop_if_empty().push("v1");
            for s in path.split('/').filter(|s| !s.is_empty()) {
                segments.push(s);
            }
        }
        Ok(url)
    }

    /// Sends one request and decodes a 2xx answer into `T` (`None`: no body, e.g. 204).
    pub async fn send<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        token: Option<&SecretString>,
        body: Option<&serde_json::Value>,
    ) -> Result<Option<T>, SourceError> {
        let mut req = self
            .http
            .request(method, self.url(path)?)
            .header("X-Vault-Request", "true");
        if let Some(token) = token {
            let mut value = HeaderValue::from_str(token.expose_secret()).map_err(|_| {
                SourceError::Auth("the Vault token has characters a header cannot carry".into())
            })?;
            value.set_sensitive(true);
            req = req.header("X-Vault-Token", value);
        }
        if let Some(ns) = &self.namespace {
            req = req.header("X-Vault-Namespace", ns);
        }
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let mut bytes = read_body(resp).await?;
        let out = if (200..300).contains(&status) {
            if bytes.iter().all(u8::is_ascii_whitespace) {
                Ok(None)
            } else {
                serde_json::from_slice(&bytes).map(Some).map_err(|_| {
                    SourceError::Unavailable("Vault's answer could not be decoded".into())
                })
            }
        } else {
            Err(status_error(status, &bytes))
        };
        // The buffer may hold secret values.
        bytes.zeroize();
        out
    }
}

/// The whole body, refused once it passes [`MAX_BODY`].
async fn read_body(mut resp: reqwest::Response) -> Result<Vec<u8>, SourceError> {
    if resp.content_length().is_some_and(|n| n > MAX_BODY as u64) {
        return Err(too_large());
    }
    let mut buf = Vec::with_capacity(resp.content_length().unwrap_or(0) as usize);
    while let Some(chunk) = resp.chunk().await.map_err(transport)? {
        if buf.len() + chunk.len() > MAX_BODY {
            buf.zeroize();
            return Err(too_large());
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf)
}

fn too_large() -> SourceError {
    SourceError::Invalid(format!(
        "Vault's answer is larger than {} MiB, more than any portal setting needs; check the path (and any proxy in front of Vault)",
        MAX_BODY / (1024 * 1024)
    ))
}

/// A non-2xx answer as an error, by status code; Vault's `errors` list is summarised.
pub(super) fn status_error(status: u16, body: &[u8]) -> SourceError {
    let errors = serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.errors)
        .unwrap_or_default();
    match status {
        404 => SourceError::NotFound,
        401 | 403 => SourceError::Denied(summarise(&errors, "permission denied")),
        503 => SourceError::Unavailable("Vault is sealed or in standby (503)".into()),
        // Vault answered and refused the request (e.g. 400 "invalid role or secret ID"):
        // not an outage, so not `Unavailable` (which a login treats as "try later").
        code if (400..500).contains(&code) && code != 429 => {
            SourceError::Invalid(format!("HTTP {code}: {}", summarise(&errors, "no message")))
        }
        code => {
            SourceError::Unavailable(format!("HTTP {code}: {}", summarise(&errors, "no message")))
        }
    }
}

fn summarise(errors: &[String], default: &str) -> String {
    if errors.is_empty() {
        default.to_string()
    } else {
        errors.join("; ").chars().take(300).collect()
    }
}

/// A transport failure in one line: the cause (connection refused, timeout) is kept.
fn transport(e: reqwest::Error) -> SourceError {
    SourceError::Unavailable(if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        format!("cannot connect: {}", crate::errors::chain(&e))
    } else {
        crate::errors::chain(&e)
    })
}

/// Vault's RFC 3339 `created_time`; `None` when absent or unreadable.
pub(super) fn parse_time(text: &str) -> Option<SystemTime> {
    chrono::DateTime::parse_from_rfc3339(text)
        .ok()
        .map(SystemTime::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds_and_bodies_are_summarised() {
        assert_eq!(status_error(404, b"{\"errors\":[]}"), SourceError::NotFound);
        assert_eq!(
            status_error(403, b"{\"errors\":[\"permission denied\"]}"),
            SourceError::Denied("permission denied".into())
        );
        assert!(matches!(status_error(400, b""), SourceError::Invalid(_)));
        assert!(matches!(
            status_error(429, b""),
            SourceError::Unavailable(_)
        ));
        assert!(
            matches!(status_error(503, b""), SourceError::Unavailable(m) if m.contains("sealed"))
        );
        // A body that is not Vault's error shape is never quoted.
        let e = status_error(502, b"<html>proxy error SECRET</html>").to_string();
        assert!(!e.contains("SECRET"), "{e}");
    }

    #[test]
    fn created_times_parse() {
        let t = parse_time("2026-01-01T00:00:00.5Z").and_then(|t| {
            t.duration_since(SystemTime::UNIX_EPOCH)
                .ok()
                .map(|d| d.as_millis())
        });
        assert_eq!(t, Some(1_767_225_600_500));
        assert_eq!(parse_time(""), None);
    }
}
