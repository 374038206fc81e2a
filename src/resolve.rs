//! Reading the secrets a set of targets needs: each unique (source, path) exactly once
//! per cycle, however many props and portals use it, several at a time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use futures::stream::{self, StreamExt};

use crate::config::PropRef;
use crate::mapping::Target;
use crate::secret::SecretString;
use crate::sources::{Secret, SourceError, Sources};

/// How many secret reads run at once.
const READ_CONCURRENCY: usize = 16;

/// The values one target should have, or why they could not all be read.
pub struct Desired {
    pub portal: String,
    pub service: String,
    /// prop → value, complete; or every problem found (the service is then skipped).
    pub values: Result<BTreeMap<String, SecretString>, Vec<String>>,
    /// `source:path` → store version, for the secrets this target used.
    pub versions: BTreeMap<String, String>,
}

/// What a resolution did, for logs and tests.
pub struct Resolution {
    pub desired: Vec<Desired>,
    /// Number of secret reads sent to stores.
    pub reads: usize,
}

type Key = (String, String);

/// Reads everything `targets` reference and assembles each target's values.
pub async fn resolve(targets: &[Target], sources: &Sources) -> Resolution {
    let wanted: BTreeSet<Key> = targets
        .iter()
        .flat_map(|t| t.props.iter())
        .filter_map(|(_, r)| match r {
            PropRef::Secret(s) => Some((s.source.clone(), s.path.clone())),
            PropRef::Literal(_) => None,
        })
        .collect();
    let reads = wanted.len();
    let results: HashMap<Key, Result<Arc<Secret>, String>> = stream::iter(wanted)
        .map(|(source, path)| async move {
            let result = match sources.get(&source) {
                None => Err(format!(
                    "source `{source}` is not available (see the error above)"
                )),
                Some(s) => s
                    .read(&path)
                    .await
                    .map(Arc::new)
                    .map_err(|e| describe(&source, &path, &e)),
            };
            if let Err(e) = &result {
                tracing::warn!(source = %source, path = %path, error = %e, "secret read failed");
            }
            ((source, path), result)
        })
        .buffer_unordered(READ_CONCURRENCY)
        .collect()
        .await;

    let desired = targets
        .iter()
        .map(|t| {
            let mut values = BTreeMap::new();
            let mut problems = Vec::new();
            let mut versions = BTreeMap::new();
            for (prop, r) in &t.props {
                match r {
                    PropRef::Literal(v) => {
                        values.insert(prop.clone(), v.clone());
                    }
                    PropRef::Secret(s) => match results.get(&(s.source.clone(), s.path.clone())) {
                        None => problems.push(format!("prop `{prop}` ← {s}: was not read")),
                        Some(Err(e)) => problems.push(format!("prop `{prop}` ← {s}: {e}")),
                        Some(Ok(secret)) => {
                            if let Some(v) = &secret.version {
                                versions.insert(format!("{}:{}", s.source, s.path), v.clone());
                            }
                            match secret.value(s.key.as_deref()) {
                                Ok(v) => {
                                    values.insert(prop.clone(), v);
                                }
                                Err(e) => {
                                    problems.push(format!("prop `{prop}` ← {s}: the secret {e}"))
                                }
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
                versions,
            }
        })
        .collect();
    Resolution { desired, reads }
}

fn describe(source: &str, path: &str, e: &SourceError) -> String {
    match e {
        SourceError::NotFound => {
            format!("{source}:{path} does not exist (check the path, or create the secret)")
        }
        other => format!("reading {source}:{path} failed: {other}"),
    }
}
