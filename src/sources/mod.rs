//! Secret stores behind one trait, one file per store.
//!
//! A [`Source`] reads one secret by path and returns it whole ([`Secret`]); picking a
//! field (`#KEY`) is done here, the same way for every store, so the stores only speak
//! their wire protocol. Errors keep "not found" distinct from "cannot reach / not
//! allowed", because the operator's next step differs.

mod aws;
mod files;
mod vault;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use futures::stream::{self, StreamExt};

use async_trait::async_trait;

use crate::config::{Config, SourceConfig};
use crate::secret::{ExposeSecret, SecretString};

pub use aws::AwsSource;
pub use files::FilesSource;
pub use vault::VaultSource;

/// One secret store.
#[async_trait]
pub trait Source: Send + Sync {
    /// `vault`, `aws` or `files`.
    fn kind(&self) -> &'static str;

    /// Reads the secret at `path` (the store's own path syntax).
    async fn read(&self, path: &str) -> Result<Secret, SourceError>;

    /// Checks credentials without reading a secret (for `check --online`).
    async fn authenticate(&self) -> Result<(), SourceError>;

    /// The current version of each path, from metadata only (no values), so a quiet
    /// cycle can skip value reads. `Ok(None)`: no cheap version (KV v1): read it.
    async fn versions(
        &self,
        paths: &[String],
    ) -> HashMap<String, Result<Option<String>, SourceError>> {
        paths.iter().map(|p| (p.clone(), Ok(None))).collect()
    }

    /// Releases what the source holds on the store (e.g. revokes a login token).
    async fn close(&self) {}

    /// Reads several secrets. Stores with a batch API override this.
    async fn read_many(&self, paths: &[String]) -> HashMap<String, Result<Secret, SourceError>> {
        stream::iter(paths.iter().cloned())
            .map(|p| async move {
                let r = self.read(&p).await;
                (p, r)
            })
            .buffer_unordered(PER_SOURCE_CONCURRENCY)
            .collect()
            .await
    }
}

/// Metric helpers shared by the stores.
mod metrics {
    /// Counts one store request as `ok`, `not_found` or `error`.
    pub fn source_request<T>(source: &str, operation: &str, r: &Result<T, super::SourceError>) {
        let result = match r {
            Ok(_) => "ok",
            Err(super::SourceError::NotFound) => "not_found",
            Err(_) => "error",
        };
        crate::metrics::metrics().source_request(source, operation, result);
    }
}

/// Requests in flight to one store at once.
pub const PER_SOURCE_CONCURRENCY: usize = 16;

/// A secret as the store returned it.
#[derive(Clone)]
pub struct Secret {
    /// The store's version of it (KV v2 version, AWS VersionId, file mtime), if it has one.
    pub version: Option<String>,
    pub content: Content,
}

/// The payload of a secret.
#[derive(Clone)]
pub enum Content {
    /// Named fields (a Vault secret).
    Fields(BTreeMap<String, SecretString>),
    /// One text value (an AWS SecretString, a file); `#KEY` reads it as a JSON object.
    Text(SecretString),
}

/// What went wrong talking to a store. Messages never contain secret values.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("not found")]
    NotFound,
    #[error("permission denied ({0}); check the policy attached to authsync's identity")]
    Denied(String),
    #[error("authentication failed: {0}")]
    Auth(String),
    #[error("store unavailable: {0}")]
    Unavailable(String),
    #[error("{0}")]
    Invalid(String),
}

/// Why a field could not be taken from a secret that was read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ValueError {
    #[error("has no key `{key}` (keys: {available})")]
    NoKey { key: String, available: String },
    #[error(
        "is not a JSON object, so `#{0}` cannot select a field; drop `#{0}` to use the whole value"
    )]
    NotJson(String),
    #[error("has {0} fields; name one with `#KEY`")]
    Ambiguous(usize),
    #[error("has no fields")]
    NoFields,
    #[error("is empty; authsync never pushes an empty value (use {{ value = \"\" }} to clear a prop on purpose)")]
    Empty,
    #[error("key `{0}` is null")]
    Null(String),
}

impl Secret {
    /// The value a prop reference asks for: field `key`, or the whole secret.
    pub fn value(&self, key: Option<&str>) -> Result<SecretString, ValueError> {
        let v = match (&self.content, key) {
            (Content::Fields(fields), Some(key)) => {
                fields.get(key).cloned().ok_or_else(|| ValueError::NoKey {
                    key: key.to_string(),
                    available: key_list(fields.keys()),
                })?
            }
            (Content::Fields(fields), None) => match fields.len() {
                0 => return Err(ValueError::NoFields),
                1 => fields
                    .values()
                    .next()
                    .cloned()
                    .ok_or(ValueError::NoFields)?,
                n => return Err(ValueError::Ambiguous(n)),
            },
            (Content::Text(text), None) => text.clone(),
            (Content::Text(text), Some(key)) => json_field(text, key)?,
        };
        if v.expose_secret().is_empty() {
            return Err(ValueError::Empty);
        }
        Ok(v)
    }
}

fn key_list<'a>(keys: impl Iterator<Item = &'a String>) -> String {
    let keys: Vec<&str> = keys.map(String::as_str).collect();
    if keys.is_empty() {
        "none".into()
    } else {
        keys.join(", ")
    }
}

/// Field `key` of a JSON object held as text.
fn json_field(text: &SecretString, key: &str) -> Result<SecretString, ValueError> {
    let map: serde_json::Map<String, serde_json::Value> =
        serde_json::from_str(text.expose_secret())
            .map_err(|_| ValueError::NotJson(key.to_string()))?;
    match map.get(key) {
        None => Err(ValueError::NoKey {
            key: key.to_string(),
            available: key_list(map.keys()),
        }),
        Some(v) => json_to_secret(v).ok_or_else(|| ValueError::Null(key.to_string())),
    }
}

/// A JSON value as the text a portal prop takes: strings as they are, numbers and
/// booleans printed, objects/arrays as compact JSON (e.g. a nested service-account key).
pub fn json_to_secret(v: &serde_json::Value) -> Option<SecretString> {
    match v {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(SecretString::from(s.clone())),
        other => Some(SecretString::from(other.to_string())),
    }
}

/// The configured sources, by name, ready to read.
#[derive(Clone, Default)]
pub struct Sources {
    by_name: BTreeMap<String, Arc<dyn Source>>,
}

impl Sources {
    /// Connects every source the config declares. A source that cannot be set up is
    /// reported by name; the others still work.
    pub async fn connect(config: &Config) -> (Sources, Vec<(String, SourceError)>) {
        let mut by_name: BTreeMap<String, Arc<dyn Source>> = BTreeMap::new();
        let mut failed = Vec::new();
        for (name, cfg) in &config.sources {
            let made: Result<Arc<dyn Source>, SourceError> = match cfg {
                SourceConfig::Vault(v) => VaultSource::connect(name, v)
                    .await
                    .map(|s| Arc::new(s) as _),
                SourceConfig::Aws(a) => Ok(Arc::new(AwsSource::connect(name, a).await)),
                SourceConfig::Files(f) => Ok(Arc::new(FilesSource::new(name, f))),
            };
            match made {
                Ok(s) => {
                    by_name.insert(name.clone(), s);
                }
                Err(e) => failed.push((name.clone(), e)),
            }
        }
        (Sources { by_name }, failed)
    }

    /// A source by name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Source>> {
        self.by_name.get(name)
    }

    /// Adds (or replaces) a source; used by tests and by `connect`.
    pub fn insert(&mut self, name: impl Into<String>, source: Arc<dyn Source>) {
        self.by_name.insert(name.into(), source);
    }

    /// Closes every source (end of a one-shot command, daemon shutdown, reload).
    pub async fn close(&self) {
        futures::future::join_all(self.by_name.values().map(|s| s.close())).await;
    }

    pub fn iter(&self) -> impl Iterator<Item = (&String, &Arc<dyn Source>)> {
        self.by_name.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Secret {
        Secret {
            version: None,
            content: Content::Text(SecretString::from(s.to_string())),
        }
    }

    #[test]
    fn extraction_rules() {
        let j = text(r#"{"a":"x","n":5,"o":{"k":1},"e":"","z":null}"#);
        assert_eq!(
            j.value(Some("a")).map(|v| v.expose_secret().to_string()),
            Ok("x".into())
        );
        assert_eq!(
            j.value(Some("n")).map(|v| v.expose_secret().to_string()),
            Ok("5".into())
        );
        assert_eq!(
            j.value(Some("o")).map(|v| v.expose_secret().to_string()),
            Ok(r#"{"k":1}"#.into())
        );
        assert_eq!(j.value(Some("e")).err(), Some(ValueError::Empty));
        assert_eq!(j.value(Some("z")).err(), Some(ValueError::Null("z".into())));
        assert!(matches!(j.value(Some("q")), Err(ValueError::NoKey { .. })));
        assert!(matches!(
            text("plain").value(Some("k")),
            Err(ValueError::NotJson(_))
        ));
        assert_eq!(text("").value(None).err(), Some(ValueError::Empty));
        let mut f = BTreeMap::new();
        f.insert("only".to_string(), SecretString::from("VALUE1".to_string()));
        let one = Secret {
            version: None,
            content: Content::Fields(f.clone()),
        };
        assert_eq!(
            one.value(None).map(|v| v.expose_secret().to_string()),
            Ok("VALUE1".into())
        );
        f.insert("two".to_string(), SecretString::from("VALUE2".to_string()));
        let two = Secret {
            version: None,
            content: Content::Fields(f),
        };
        assert_eq!(two.value(None).err(), Some(ValueError::Ambiguous(2)));
        // Key names are listed for the operator; values never are.
        let err = two
            .value(Some("nope"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("only, two") && !err.contains("VALUE"), "{err}");
    }
}
