//! Reading the secrets a set of targets needs: each unique (source, path) at most once
//! per cycle, however many props and portals use it, with the stores' batch APIs.
//!
//! With [`Freshness::Versioned`] (scheduled daemon cycles) the stores are first asked for
//! versions only (Vault KV v2 metadata, AWS ListSecrets, file stat), and values are read
//! only for what moved since the last cycle; unchanged values come from an in-memory
//! cache (zeroized on drop). [`Freshness::Fresh`] (one-shot commands, the first cycle,
//! triggers) reads every value, since version listings can lag (AWS ListSecrets is
//! eventually consistent).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use futures::future::join_all;

use crate::config::PropRef;
use crate::failure::{Failure, FailureKind};
use crate::mapping::Target;
use crate::secret::SecretString;
use crate::sources::{Secret, SourceError, Sources};
use crate::state::Pairs;

/// Whether values may come from the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Read every value.
    Fresh,
    /// Ask for versions; read only values whose version moved (or that have none).
    Versioned,
}

/// (source, path).
type Key = (String, String);

/// Values read in earlier cycles, by (source, path), with the version they had.
#[derive(Default)]
pub struct SecretCache {
    entries: Mutex<HashMap<Key, (String, Arc<Secret>)>>,
}

impl SecretCache {
    fn get(&self, key: &Key, version: &str) -> Option<Arc<Secret>> {
        let entries = self.entries.lock().ok()?;
        entries
            .get(key)
            .filter(|(v, _)| v == version)
            .map(|(_, s)| s.clone())
    }

    fn put(&self, key: Key, secret: &Arc<Secret>) {
        if let Ok(mut entries) = self.entries.lock() {
            match &secret.version {
                Some(v) => entries.insert(key, (v.clone(), secret.clone())),
                None => entries.remove(&key),
            };
        }
    }

    fn forget(&self, key: &Key) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.remove(key);
        }
    }

    /// Drops every cached value (config reload).
    pub fn clear(&self) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.clear();
        }
    }
}

/// The values one target should have, or why they could not all be read.
pub struct Desired {
    pub portal: String,
    pub service: String,
    /// prop → value, complete; or every problem found (the service is then skipped).
    pub values: Result<BTreeMap<String, SecretString>, Vec<Failure>>,
    /// `source:path` → store version, for the secrets this target used.
    pub versions: Pairs,
    /// `source:path` → when that version was created in the store (where it says).
    pub created: Vec<(Box<str>, std::time::SystemTime)>,
}

/// What a resolution did, for logs, metrics and tests.
pub struct Resolution {
    pub desired: Vec<Desired>,
    /// Values read from stores.
    pub value_reads: usize,
    /// Values served from the cache because their version had not moved.
    pub cache_hits: usize,
    /// Per source this resolution used: `None` when the store answered, else its first
    /// store-wide failure (login refused, unreachable), for the state file's source health.
    pub sources: Vec<(String, Option<Failure>)>,
}

/// Reads everything `targets` reference and assembles each target's values.
pub async fn resolve(
    targets: &[Target],
    sources: &Sources,
    cache: &SecretCache,
    freshness: Freshness,
) -> Resolution {
    let mut by_source: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (_, r) in targets.iter().flat_map(|t| t.props.iter()) {
        if let PropRef::Secret(s) = r {
            by_source
                .entry(s.source.clone())
                .or_default()
                .insert(s.path.clone());
        }
    }
    let per_source = join_all(by_source.into_iter().map(|(source, paths)| async {
        let name = source.clone();
        let read = read_source(
            source,
            paths.into_iter().collect(),
            sources,
            cache,
            freshness,
        )
        .await;
        (name, read)
    }))
    .await;
    let mut results: HashMap<Key, Result<Arc<Secret>, Failure>> = HashMap::new();
    let (mut value_reads, mut cache_hits) = (0, 0);
    let mut health = Vec::with_capacity(per_source.len());
    for (source, (found, reads, hits)) in per_source {
        // A missing or malformed secret shows on its services, not as a failing store.
        let first_error = found
            .iter()
            .find_map(|(_, r)| r.as_ref().err().filter(|f| f.kind.is_store_wide()).cloned());
        health.push((source, first_error));
        results.extend(found);
        value_reads += reads;
        cache_hits += hits;
    }

    let desired = targets.iter().map(|t| assemble(t, &results)).collect();
    Resolution {
        desired,
        value_reads,
        cache_hits,
        sources: health,
    }
}

/// One store's share of the cycle: versions first (if allowed), then a batched read of
/// whatever is not cached.
async fn read_source(
    source: String,
    paths: Vec<String>,
    sources: &Sources,
    cache: &SecretCache,
    freshness: Freshness,
) -> (Vec<(Key, Result<Arc<Secret>, Failure>)>, usize, usize) {
    let Some(store) = sources.get(&source) else {
        let err = Failure::new(
            FailureKind::SourceUnavailable,
            format!("source `{source}` is not available (see the error logged at start-up)"),
        );
        return (
            paths
                .into_iter()
                .map(|p| ((source.clone(), p), Err(err.clone())))
                .collect(),
            0,
            0,
        );
    };
    let mut out = Vec::new();
    let mut to_read = Vec::new();
    if freshness == Freshness::Versioned {
        let versions = store.versions(&paths).await;
        for p in paths {
            let key = (source.clone(), p.clone());
            match versions.get(&p) {
                Some(Ok(Some(v))) => match cache.get(&key, v) {
                    Some(secret) => out.push((key, Ok(secret))),
                    None => to_read.push(p),
                },
                _ => to_read.push(p),
            }
        }
    } else {
        to_read = paths;
    }
    let hits = out.len();
    let reads = to_read.len();
    if !to_read.is_empty() {
        let mut read = store.read_many(&to_read).await;
        for p in to_read {
            let key = (source.clone(), p.clone());
            let result = read.remove(&p).unwrap_or(Err(SourceError::Invalid(
                "the store returned nothing".into(),
            )));
            match result {
                Ok(secret) => {
                    let secret = Arc::new(secret);
                    cache.put(key.clone(), &secret);
                    out.push((key, Ok(secret)));
                }
                Err(e) => {
                    // Never serve an older value once the store says something else.
                    cache.forget(&key);
                    let failure = describe(&source, &p, &e);
                    tracing::warn!(source = %source, path = %p, error = %failure, "secret read failed");
                    out.push((key, Err(failure)));
                }
            }
        }
    }
    (out, reads, hits)
}

/// A target's values from the read results; every problem is collected.
fn assemble(t: &Target, results: &HashMap<Key, Result<Arc<Secret>, Failure>>) -> Desired {
    let mut values = BTreeMap::new();
    let mut problems = Vec::new();
    let mut versions: Vec<(String, Box<str>)> = Vec::new();
    let mut created: Vec<(Box<str>, std::time::SystemTime)> = Vec::new();
    for (prop, r) in &t.props {
        match r {
            PropRef::Literal(v) => {
                values.insert(prop.clone(), v.clone());
            }
            PropRef::Secret(s) => match results.get(&(s.source.clone(), s.path.clone())) {
                None => problems.push(Failure::new(
                    FailureKind::Internal,
                    format!("prop `{prop}` ← {s}: was not read"),
                )),
                Some(Err(e)) => problems.push(e.clone().context(format!("prop `{prop}` ← {s}"))),
                Some(Ok(secret)) => {
                    if let Some(v) = &secret.version {
                        versions.push((format!("{}:{}", s.source, s.path), v.as_str().into()));
                    }
                    if let Some(at) = secret.created {
                        created.push((format!("{}:{}", s.source, s.path).into(), at));
                    }
                    match secret.value(s.key.as_deref()) {
                        Ok(v) => {
                            values.insert(prop.clone(), v);
                        }
                        Err(e) => problems.push(Failure::new(
                            FailureKind::SecretInvalid,
                            format!("prop `{prop}` ← {s}: the secret {e}"),
                        )),
                    }
                }
            },
        }
    }
    Desired {
        portal: t.portal.clone(),
        service: t.service.clone(),
        values: if problems.is_empty() {
            Ok(values)
        } else {
            Err(problems)
        },
        versions: versions.into_iter().collect(),
        created,
    }
}

fn describe(source: &str, path: &str, e: &SourceError) -> Failure {
    let message = match e {
        SourceError::NotFound => {
            format!("{source}:{path} does not exist (check the path, or create the secret)")
        }
        other => format!("reading {source}:{path} failed: {other}"),
    };
    Failure::new(FailureKind::from(e), message)
}
