//! Secret stores behind one trait, one folder per store.
//!
//! A [`Source`] reads one secret by path and returns it whole ([`Secret`]); picking a
//! field (`#KEY`) is done here, the same way for every store, so the stores only speak
//! their wire protocol. Errors keep "not found" distinct from "cannot reach / not
//! allowed", because the operator's next step differs.
//!
//! Each store lives in its own folder (`vault/`, `aws/`, `files/`): its config block
//! (the doc comments there are the user reference for `[sources.NAME]`), its client and
//! its `build()`. [`KINDS`] is the one registry: adding a store is a folder and a line
//! there. [`fake`] is an in-memory store for tests and examples.

pub mod aws;
pub mod fake;
pub mod files;
pub mod vault;

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::SystemTime;

use futures::stream::{self, StreamExt};

use async_trait::async_trait;

use crate::config::{Checks, Config};
use crate::secret::{ExposeSecret, SecretSetting, SecretString};

pub use aws::AwsSource;
pub use fake::FakeSource;
pub use files::FilesSource;
pub use vault::VaultSource;

/// Every kind of store, by its `kind = "…"` name. The one place a new store is added.
pub static KINDS: &[Kind] = &[
    Kind::of::<vault::VaultSourceConfig>("vault"),
    Kind::of::<aws::AwsSourceConfig>("aws"),
    Kind::of::<files::FilesSourceConfig>("files"),
];

/// One kind of store: its `kind` name and how its `[sources.NAME]` block is read.
pub struct Kind {
    pub name: &'static str,
    parse: ParseFn,
}

type ParseFn =
    for<'i> fn(toml::de::ValueDeserializer<'i>) -> Result<Arc<dyn StoreConfig>, toml::de::Error>;

fn parse_as<T: StoreConfig + serde::de::DeserializeOwned>(
    d: toml::de::ValueDeserializer<'_>,
) -> Result<Arc<dyn StoreConfig>, toml::de::Error> {
    T::deserialize(d).map(|c| Arc::new(c) as Arc<dyn StoreConfig>)
}

impl Kind {
    /// A store whose block deserializes into `T`.
    pub const fn of<T: StoreConfig + serde::de::DeserializeOwned>(name: &'static str) -> Kind {
        Kind {
            name,
            parse: parse_as::<T>,
        }
    }

    /// Deserializes a block of this kind (serde errors carry their span).
    pub fn parse(
        &self,
        value: toml::de::ValueDeserializer<'_>,
    ) -> Result<SourceConfig, toml::de::Error> {
        (self.parse)(value).map(|config| SourceConfig {
            kind: self.name,
            config,
        })
    }
}

/// The store kind named `name`.
pub fn kind(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|k| k.name == name)
}

/// The kind names for messages: `"vault", "aws" or "files"`.
pub fn kind_list() -> String {
    let quoted: Vec<String> = KINDS.iter().map(|k| format!("\"{}\"", k.name)).collect();
    match quoted.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}

/// A store's settings (one `[sources.NAME]` block), as its folder defines them.
#[async_trait]
pub trait StoreConfig: fmt::Debug + Send + Sync + 'static {
    /// For [`SourceConfig::get`].
    fn as_any(&self) -> &dyn Any;

    /// Checks serde cannot make (value ranges, URL rules); each error names its field.
    fn check(&self, _checks: &mut Checks<'_>) {}

    /// Whether `path` can name a secret in this store (checked when the config loads);
    /// the reason when not.
    fn check_path(&self, _path: &str) -> Result<(), String> {
        Ok(())
    }

    /// The secret settings of the block with their keys (`auth.token`), for `check`.
    fn secret_settings(&self) -> Vec<(&'static str, &SecretSetting)> {
        Vec::new()
    }

    /// Sets the store's client up. An error means it cannot work as configured (e.g. an
    /// unreadable CA file); a store that is merely down, or refuses a login, is built
    /// anyway and retries on use.
    async fn build(&self, name: &str) -> Result<Arc<dyn Source>, SourceError>;
}

/// `[sources.NAME]`: a secret store. `kind` picks the store ([`KINDS`]).
#[derive(Clone)]
pub struct SourceConfig {
    kind: &'static str,
    config: Arc<dyn StoreConfig>,
}

impl SourceConfig {
    /// `vault`, `aws`, `files`, …
    pub fn kind(&self) -> &'static str {
        self.kind
    }

    /// The settings as their own type, e.g. `get::<vault::VaultSourceConfig>()`.
    pub fn get<T: StoreConfig>(&self) -> Option<&T> {
        self.config.as_any().downcast_ref::<T>()
    }

    /// Builds the store's client (see [`StoreConfig::build`]).
    pub async fn build(&self, name: &str) -> Result<Arc<dyn Source>, SourceError> {
        self.config.build(name).await
    }
}

impl std::ops::Deref for SourceConfig {
    type Target = dyn StoreConfig;
    fn deref(&self) -> &Self::Target {
        self.config.as_ref()
    }
}

impl fmt::Debug for SourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.config.fmt(f)
    }
}

/// One secret store.
#[async_trait]
pub trait Source: Send + Sync {
    /// `vault`, `aws`, `files` (a fake says what it was made as).
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
        self.version_info(paths)
            .await
            .into_iter()
            .map(|(p, v)| (p, v.map(|v| v.map(|v| v.id))))
            .collect()
    }

    /// [`Source::versions`] with each version's creation time where the metadata has
    /// it (KV v2, files). Stores implement this one; `versions` is derived from it.
    async fn version_info(
        &self,
        paths: &[String],
    ) -> HashMap<String, Result<Option<Version>, SourceError>> {
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

/// A secret's version as the store's metadata tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Version {
    /// The same string as [`Secret::version`] of a read of this version.
    pub id: String,
    /// When this version was written, if the metadata says (KV v2, files).
    pub created: Option<SystemTime>,
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
    /// When that version was written: KV v2 `created_time`, AWS version `CreatedDate`,
    /// file mtime; `None` where the store does not say (KV v1).
    pub created: Option<SystemTime>,
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
///
/// The payload of each variant is the detail only, without the variant's prefix: wrap
/// another error's [`SourceError::detail`], never its `to_string()`, or the prefix is
/// doubled ("store unavailable: store unavailable: …").
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
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

impl SourceError {
    /// The message without the kind's prefix ("not found" for `NotFound`).
    pub fn detail(&self) -> &str {
        match self {
            SourceError::NotFound => "not found",
            SourceError::Denied(d)
            | SourceError::Auth(d)
            | SourceError::Unavailable(d)
            | SourceError::Invalid(d) => d,
        }
    }
}

impl Secret {
    /// A secret with no version and no creation time.
    pub fn new(content: Content) -> Secret {
        Secret {
            version: None,
            created: None,
            content,
        }
    }

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
    /// reported by name; the others still work. A store that is down or refuses the
    /// login at this point is not an error here: it is kept, and logs in again on a
    /// later use (so a daemon started during an outage recovers without a reload).
    pub async fn connect(config: &Config) -> (Sources, Vec<(String, SourceError)>) {
        let mut by_name: BTreeMap<String, Arc<dyn Source>> = BTreeMap::new();
        let mut failed = Vec::new();
        for (name, cfg) in &config.sources {
            match cfg.build(name).await {
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

    /// Adds (or replaces) a source.
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

/// Sources built from parts (tests, examples):
/// `Sources::from_iter([("vault", Arc::new(FakeSource::new("vault")) as Arc<dyn Source>)])`.
impl<N: Into<String>> FromIterator<(N, Arc<dyn Source>)> for Sources {
    fn from_iter<I: IntoIterator<Item = (N, Arc<dyn Source>)>>(iter: I) -> Sources {
        Sources {
            by_name: iter.into_iter().map(|(n, s)| (n.into(), s)).collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(s: &str) -> Secret {
        Secret::new(Content::Text(SecretString::from(s.to_string())))
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
        let one = Secret::new(Content::Fields(f.clone()));
        assert_eq!(
            one.value(None).map(|v| v.expose_secret().to_string()),
            Ok("VALUE1".into())
        );
        f.insert("two".to_string(), SecretString::from("VALUE2".to_string()));
        let two = Secret::new(Content::Fields(f));
        assert_eq!(two.value(None).err(), Some(ValueError::Ambiguous(2)));
        // Key names are listed for the operator; values never are.
        let err = two
            .value(Some("nope"))
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("only, two") && !err.contains("VALUE"), "{err}");
    }

    #[test]
    fn kinds_are_listed_from_the_registry() {
        assert_eq!(kind_list(), r#""vault", "aws" or "files""#);
        assert!(kind("aws").is_some() && kind("awss").is_none());
    }

    #[test]
    fn wrapping_uses_the_detail_so_prefixes_are_not_doubled() {
        let inner = SourceError::Unavailable("cannot reach the endpoint".into());
        let outer = SourceError::Unavailable(inner.detail().to_string());
        assert_eq!(
            outer.to_string(),
            "store unavailable: cannot reach the endpoint"
        );
        assert_eq!(SourceError::NotFound.detail(), "not found");
    }
}
