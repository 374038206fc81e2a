//! An in-memory store, for tests and examples: the engine's decisions (cache by
//! version, partial resolution, failures) can be exercised without servers.
//!
//! ```
//! use std::sync::Arc;
//! use authsync::sources::{fake::FakeSource, Source, SourceError, Sources};
//!
//! let vault = Arc::new(FakeSource::new("vault"));
//! let v1 = vault.put("secret/oauth/google", &[("client_id", "id"), ("client_secret", "s")]);
//! vault.fail_next("secret/oauth/google", SourceError::Unavailable("injected".into()));
//! let sources = Sources::from_iter([("vault", vault.clone() as Arc<dyn Source>)]);
//! # let _ = (v1, sources);
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use async_trait::async_trait;

use super::{Content, Secret, Source, SourceError, Version};
use crate::secret::SecretString;

/// An in-memory secret store. Every `put` is a new version (`"1"`, `"2"`, … per
/// store), created "now"; failures can be injected per path, once or until cleared.
pub struct FakeSource {
    kind: &'static str,
    versioned: bool,
    state: Mutex<State>,
    reads: AtomicUsize,
    version_checks: AtomicUsize,
}

#[derive(Default)]
struct State {
    secrets: BTreeMap<String, Entry>,
    last_version: u64,
    /// Errors for the next operations on a path (read or version check), in order.
    next_failures: HashMap<String, VecDeque<SourceError>>,
    /// An error for every operation on a path until cleared.
    failing_paths: HashMap<String, SourceError>,
    /// An error for every operation (the store is down / refuses us) until cleared.
    failing: Option<SourceError>,
}

struct Entry {
    version: u64,
    created: SystemTime,
    content: Content,
}

impl FakeSource {
    /// An empty store that answers as `kind` (`"vault"`, `"aws"`, …), with versions.
    pub fn new(kind: &'static str) -> FakeSource {
        FakeSource {
            kind,
            versioned: true,
            state: Mutex::new(State::default()),
            reads: AtomicUsize::new(0),
            version_checks: AtomicUsize::new(0),
        }
    }

    /// A store without cheap versions (like KV v1): `versions` answers `Ok(None)` and
    /// reads carry no version.
    pub fn without_versions(mut self) -> FakeSource {
        self.versioned = false;
        self
    }

    fn state(&self) -> MutexGuard<'_, State> {
        // A panic in another test thread must not hide this store's state.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn store(&self, path: &str, content: Content) -> String {
        let mut st = self.state();
        st.last_version += 1;
        let version = st.last_version;
        st.secrets.insert(
            path.to_string(),
            Entry {
                version,
                created: SystemTime::now(),
                content,
            },
        );
        version.to_string()
    }

    /// Writes a secret with named fields (a Vault secret); returns its new version.
    pub fn put(&self, path: &str, fields: &[(&str, &str)]) -> String {
        let fields = fields
            .iter()
            .map(|(k, v)| (k.to_string(), SecretString::from(v.to_string())))
            .collect();
        self.store(path, Content::Fields(fields))
    }

    /// Writes a secret with one text value (an AWS SecretString, a file); returns its
    /// new version.
    pub fn put_text(&self, path: &str, text: &str) -> String {
        self.store(path, Content::Text(SecretString::from(text.to_string())))
    }

    /// Deletes a secret: reads answer `NotFound`.
    pub fn remove(&self, path: &str) {
        self.state().secrets.remove(path);
    }

    /// The next operation on `path` (a read or a version check) fails with `error`.
    /// Several calls queue up, one failure per operation.
    pub fn fail_next(&self, path: &str, error: SourceError) {
        self.state()
            .next_failures
            .entry(path.to_string())
            .or_default()
            .push_back(error);
    }

    /// Every operation on `path` fails with `error` until `fail_path(path, None)`.
    pub fn fail_path(&self, path: &str, error: Option<SourceError>) {
        let mut st = self.state();
        match error {
            Some(e) => st.failing_paths.insert(path.to_string(), e),
            None => st.failing_paths.remove(path),
        };
    }

    /// Every operation (reads, version checks, `authenticate`) fails with `error` until
    /// `fail(None)`: the store is down, or refuses authsync.
    pub fn fail(&self, error: Option<SourceError>) {
        self.state().failing = error;
    }

    /// Paths read so far (each path of a `read_many` counts once).
    pub fn reads(&self) -> usize {
        self.reads.load(Ordering::Relaxed)
    }

    /// Paths whose version was asked so far.
    pub fn version_checks(&self) -> usize {
        self.version_checks.load(Ordering::Relaxed)
    }

    /// Sets both counters back to zero.
    pub fn reset_counters(&self) {
        self.reads.store(0, Ordering::Relaxed);
        self.version_checks.store(0, Ordering::Relaxed);
    }

    /// The injected failure for an operation on `path`, if any (uses up a `fail_next`).
    fn injected(st: &mut State, path: &str) -> Option<SourceError> {
        if let Some(e) = &st.failing {
            return Some(e.clone());
        }
        if let Some(e) = st.next_failures.get_mut(path).and_then(VecDeque::pop_front) {
            return Some(e);
        }
        st.failing_paths.get(path).cloned()
    }
}

#[async_trait]
impl Source for FakeSource {
    fn kind(&self) -> &'static str {
        self.kind
    }

    async fn read(&self, path: &str) -> Result<Secret, SourceError> {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let mut st = self.state();
        if let Some(e) = Self::injected(&mut st, path) {
            return Err(e);
        }
        let entry = st.secrets.get(path).ok_or(SourceError::NotFound)?;
        Ok(Secret {
            version: self.versioned.then(|| entry.version.to_string()),
            created: self.versioned.then_some(entry.created),
            content: entry.content.clone(),
        })
    }

    async fn authenticate(&self) -> Result<(), SourceError> {
        match &self.state().failing {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    async fn version_info(
        &self,
        paths: &[String],
    ) -> HashMap<String, Result<Option<Version>, SourceError>> {
        self.version_checks
            .fetch_add(paths.len(), Ordering::Relaxed);
        let mut st = self.state();
        paths
            .iter()
            .map(|p| {
                let v = match Self::injected(&mut st, p) {
                    Some(e) => Err(e),
                    None if !self.versioned => Ok(None),
                    // A missing secret has no version: the caller reads it and gets
                    // `NotFound` from the read.
                    None => Ok(st.secrets.get(p).map(|e| Version {
                        id: e.version.to_string(),
                        created: Some(e.created),
                    })),
                };
                (p.clone(), v)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::ExposeSecret;

    #[tokio::test]
    async fn versions_failures_and_counters() {
        let f = FakeSource::new("vault");
        let v1 = f.put("a", &[("k", "v1")]);
        let v2 = f.put("a", &[("k", "v2")]);
        assert_ne!(v1, v2);
        let s = f.read("a").await.unwrap();
        assert_eq!(s.version.as_deref(), Some(v2.as_str()));
        assert_eq!(s.value(Some("k")).unwrap().expose_secret(), "v2");
        assert!(s.created.is_some());
        f.fail_next("a", SourceError::Unavailable("down".into()));
        assert!(matches!(
            f.read("a").await,
            Err(SourceError::Unavailable(_))
        ));
        assert!(
            f.read("a").await.is_ok(),
            "a failure injected once is used once"
        );
        f.fail(Some(SourceError::Denied("no".into())));
        assert!(f.authenticate().await.is_err());
        f.fail(None);
        f.remove("a");
        assert_eq!(f.read("a").await.err(), Some(SourceError::NotFound));
        assert_eq!(f.reads(), 4);
        let paths = vec!["a".to_string(), "b".to_string()];
        let v = f.versions(&paths).await;
        assert_eq!(f.version_checks(), 2);
        assert!(matches!(v.get("b"), Some(Ok(None))));
        let plain = FakeSource::new("vault").without_versions();
        plain.put_text("t", "x");
        assert_eq!(plain.read("t").await.unwrap().version, None);
    }
}
