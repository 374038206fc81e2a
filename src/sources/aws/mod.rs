//! AWS Secrets Manager through the official SDK.
//!
//! Credentials come from the AWS default chain (env, profile, web identity / IRSA, ECS,
//! IMDS), optionally wrapped in STS AssumeRole (`role_arn`). PATH is the secret's name
//! or ARN; `#KEY` selects a field of a JSON SecretString. A SecretBinary is used when it
//! is UTF-8 text and refused otherwise, since portal props are text.

mod config;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::primitives::DateTime;
use aws_sdk_secretsmanager::Client;

use aws_sdk_secretsmanager::types::Filter;
use aws_sdk_secretsmanager::types::FilterNameStringType;

pub use config::AwsSourceConfig;

use super::{metrics, Content, Secret, Source, SourceError, Version};
use crate::secret::SecretString;

/// An AWS Secrets Manager endpoint.
pub struct AwsSource {
    name: String,
    client: Client,
    /// Set once BatchGetSecretValue is refused (older IAM policies grant only
    /// GetSecretValue): later reads go one by one.
    no_batch: AtomicBool,
}

/// AWS limits: ListSecrets pages hold at most 100 entries, a name filter at most 10
/// values, BatchGetSecretValue at most 20 ids.
const LIST_PAGE: i32 = 100;
const FILTER_VALUES: usize = 10;
const BATCH: usize = 20;

impl AwsSource {
    /// Loads the SDK configuration. Nothing is sent until the first read.
    pub async fn connect(name: &str, cfg: &AwsSourceConfig) -> AwsSource {
        let shared = sdk_config(cfg).await;
        // The endpoint override applies to Secrets Manager only, never to STS.
        let mut conf = aws_sdk_secretsmanager::config::Builder::from(&shared);
        if let Some(endpoint) = &cfg.endpoint_url {
            conf = conf.endpoint_url(endpoint.as_str().trim_end_matches('/'));
        }
        AwsSource {
            name: name.to_string(),
            client: Client::from_conf(conf.build()),
            no_batch: AtomicBool::new(false),
        }
    }
}

/// The SDK settings of a source: region, profile, credential chain, role and timeouts.
/// Shared by the Secrets Manager client and the rotation-events (SQS) consumer, so both
/// reach AWS as the same principal.
pub async fn sdk_config(cfg: &AwsSourceConfig) -> aws_config::SdkConfig {
    let timeouts = TimeoutConfig::builder()
        .operation_attempt_timeout(cfg.timeout)
        .operation_timeout(cfg.timeout.saturating_mul(3))
        .connect_timeout(cfg.timeout.min(Duration::from_secs(5)))
        .build();
    let mut loader = aws_config::defaults(BehaviorVersion::latest()).timeout_config(timeouts);
    if let Some(region) = &cfg.region {
        loader = loader.region(Region::new(region.clone()));
    }
    if let Some(profile) = &cfg.profile {
        loader = loader.profile_name(profile);
    }
    let mut shared = loader.load().await;
    if let Some(role) = &cfg.role_arn {
        let provider = AssumeRoleProvider::builder(role.clone())
            .session_name("authsync")
            .configure(&shared)
            .build()
            .await;
        shared = shared
            .into_builder()
            .credentials_provider(
                aws_credential_types::provider::SharedCredentialsProvider::new(provider),
            )
            .build();
    }
    shared
}

#[async_trait]
impl Source for AwsSource {
    fn kind(&self) -> &'static str {
        "aws"
    }

    async fn read(&self, path: &str) -> Result<Secret, SourceError> {
        tracing::debug!(source = %self.name, secret = path, "GetSecretValue");
        let out = self
            .client
            .get_secret_value()
            .secret_id(path)
            .send()
            .await
            .map_err(map_error);
        metrics::source_request(&self.name, "GetSecretValue", &out);
        let out = out?;
        to_secret(
            out.version_id(),
            out.created_date(),
            out.secret_string(),
            out.secret_binary().map(|b| b.as_ref()),
        )
    }

    /// Versions from ListSecrets (`SecretVersionsToStages`, the AWSCURRENT one), filtered
    /// by the referenced names themselves: one listing per 10 names (the most a name
    /// filter takes), so only what is referenced is listed, never the whole account.
    /// ARNs are not names: they get no version here and are read. ListSecrets has no
    /// version dates and is eventually consistent: callers read values on first cycles
    /// and triggers anyway.
    async fn version_info(
        &self,
        paths: &[String],
    ) -> HashMap<String, Result<Option<Version>, SourceError>> {
        let mut out: HashMap<String, Result<Option<Version>, SourceError>> =
            paths.iter().map(|p| (p.clone(), Ok(None))).collect();
        for chunk in name_filters(paths, FILTER_VALUES) {
            let filter = Filter::builder()
                .key(FilterNameStringType::Name)
                .set_values(Some(chunk.clone()))
                .build();
            let mut pages = self
                .client
                .list_secrets()
                .max_results(LIST_PAGE)
                .filters(filter)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(map_error);
                metrics::source_request(&self.name, "ListSecrets", &page);
                let page = match page {
                    Ok(p) => p,
                    Err(e) => {
                        // The names this listing was for; other chunks keep their answers.
                        for (path, slot) in out.iter_mut() {
                            if chunk.iter().any(|c| path.starts_with(c.as_str())) {
                                *slot = Err(e.clone());
                            }
                        }
                        break;
                    }
                };
                for entry in page.secret_list() {
                    let current = entry.secret_versions_to_stages().and_then(|m| {
                        m.iter()
                            .find(|(_, stages)| stages.iter().any(|s| s == "AWSCURRENT"))
                            .map(|(v, _)| v.clone())
                    });
                    for id in [entry.name(), entry.arn()].into_iter().flatten() {
                        if let Some(slot) = out.get_mut(id) {
                            *slot = Ok(current.clone().map(|id| Version { id, created: None }));
                        }
                    }
                }
            }
        }
        out
    }

    /// BatchGetSecretValue, 20 ids a call; falls back to GetSecretValue one by one when
    /// the batch call is not allowed.
    async fn read_many(&self, paths: &[String]) -> HashMap<String, Result<Secret, SourceError>> {
        let mut out = HashMap::new();
        for chunk in paths.chunks(BATCH) {
            if self.no_batch.load(Ordering::Relaxed) || chunk.len() == 1 {
                for p in chunk {
                    out.insert(p.clone(), self.read(p).await);
                }
                continue;
            }
            let resp = self
                .client
                .batch_get_secret_value()
                .set_secret_id_list(Some(chunk.to_vec()))
                .send()
                .await;
            let resp = resp.map_err(map_error);
            metrics::source_request(&self.name, "BatchGetSecretValue", &resp);
            let resp = match resp {
                Ok(r) => r,
                Err(SourceError::Denied(why)) => {
                    tracing::warn!(source = %self.name, reason = %why, "BatchGetSecretValue refused; reading secrets one by one (grant secretsmanager:BatchGetSecretValue to save requests)");
                    self.no_batch.store(true, Ordering::Relaxed);
                    for p in chunk {
                        out.insert(p.clone(), self.read(p).await);
                    }
                    continue;
                }
                Err(SourceError::NotFound | SourceError::Invalid(_)) => {
                    // One secret can fail the whole call (e.g. a secret without a current
                    // value): read this chunk one by one, so the others still resolve and
                    // the bad one gets its own error.
                    tracing::debug!(source = %self.name, "BatchGetSecretValue failed as a whole; reading this batch one by one");
                    for p in chunk {
                        out.insert(p.clone(), self.read(p).await);
                    }
                    continue;
                }
                Err(e) => {
                    for p in chunk {
                        out.insert(p.clone(), Err(e.clone()));
                    }
                    continue;
                }
            };
            for v in resp.secret_values() {
                let secret = to_secret(
                    v.version_id(),
                    v.created_date(),
                    v.secret_string(),
                    v.secret_binary().map(|b| b.as_ref()),
                );
                if let Some(id) = chunk
                    .iter()
                    .find(|id| Some(id.as_str()) == v.name() || Some(id.as_str()) == v.arn())
                {
                    out.insert(id.clone(), secret);
                }
            }
            for e in resp.errors() {
                let Some(id) = e.secret_id() else { continue };
                let code = e.error_code().unwrap_or("Unknown");
                let message: String = e.message().unwrap_or("").chars().take(300).collect();
                let err = match code {
                    "ResourceNotFoundException" => SourceError::NotFound,
                    "AccessDeniedException" | "DecryptionFailure" => {
                        SourceError::Denied(format!("{code}: {message}"))
                    }
                    _ => SourceError::Invalid(format!("{code}: {message}")),
                };
                if let Some(req_id) = chunk.iter().find(|c| c.as_str() == id) {
                    out.insert(req_id.clone(), Err(err));
                }
            }
            for p in chunk {
                out.entry(p.clone()).or_insert(Err(SourceError::NotFound));
            }
        }
        out
    }

    async fn authenticate(&self) -> Result<(), SourceError> {
        let r = self
            .client
            .list_secrets()
            .max_results(1)
            .send()
            .await
            .map(|_| ())
            .map_err(map_error);
        metrics::source_request(&self.name, "ListSecrets", &r);
        r
    }
}

/// A secret from a GetSecretValue / BatchGetSecretValue entry.
fn to_secret(
    version: Option<&str>,
    created: Option<&DateTime>,
    text: Option<&str>,
    binary: Option<&[u8]>,
) -> Result<Secret, SourceError> {
    let text = if let Some(s) = text {
        SecretString::from(s.to_string())
    } else if let Some(blob) = binary {
        let text = std::str::from_utf8(blob).map_err(|_| {
            SourceError::Invalid(
                "the secret is a SecretBinary that is not UTF-8 text; portal props are text: store it as a SecretString (base64 if need be)".into(),
            )
        })?;
        SecretString::from(text.to_string())
    } else {
        return Err(SourceError::Invalid(
            "the secret's current version has no value".into(),
        ));
    };
    Ok(Secret {
        version: version.map(str::to_string),
        created: created.and_then(|d| SystemTime::try_from(*d).ok()),
        content: Content::Text(text),
    })
}

/// The secret names among `paths` (ARNs are not names), without duplicates and without
/// names another one already covers (the filter is a prefix match), in chunks of at
/// most `max` (a name filter's limit). No names, no chunk: nothing is listed.
fn name_filters(paths: &[String], max: usize) -> Vec<Vec<String>> {
    let mut names: Vec<&str> = paths
        .iter()
        .map(String::as_str)
        .filter(|p| !p.starts_with("arn:"))
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut kept: Vec<String> = Vec::new();
    for n in names {
        if !kept.last().is_some_and(|k| n.starts_with(k.as_str())) {
            kept.push(n.to_string());
        }
    }
    kept.chunks(max.max(1)).map(<[String]>::to_vec).collect()
}

/// Maps an SDK error to ours: the AWS error code and message for service errors, the
/// transport cause for the rest; never the raw response.
fn map_error<E, R>(e: SdkError<E, R>) -> SourceError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug + 'static,
{
    match &e {
        SdkError::ServiceError(se) => {
            let err = se.err();
            let code = err.code().unwrap_or("Unknown");
            let message: String = err.message().unwrap_or("").chars().take(300).collect();
            match code {
                // The secret exists but has no value to read.
                "ResourceNotFoundException" if message.contains("AWSCURRENT") => {
                    SourceError::Invalid(
                        "the secret has no current value (no AWSCURRENT version); store one with PutSecretValue".into(),
                    )
                }
                "ResourceNotFoundException" => SourceError::NotFound,
                "AccessDeniedException" | "AccessDenied" | "DecryptionFailure" => {
                    SourceError::Denied(format!("{code}: {message}"))
                }
                "UnrecognizedClientException"
                | "InvalidSignatureException"
                | "ExpiredTokenException"
                | "InvalidClientTokenId" => SourceError::Auth(format!("{code}: {message}")),
                "InvalidRequestException" | "InvalidParameterException" => {
                    SourceError::Invalid(format!("{code}: {message}"))
                }
                _ => SourceError::Unavailable(format!("{code}: {message}")),
            }
        }
        SdkError::TimeoutError(_) => SourceError::Unavailable("timed out".into()),
        SdkError::DispatchFailure(d) => {
            if let Some(conn) = d.as_connector_error() {
                SourceError::Unavailable(format!(
                    "cannot reach the endpoint: {}",
                    crate::errors::chain(conn)
                ))
            } else {
                SourceError::Unavailable("the request could not be sent".into())
            }
        }
        SdkError::ConstructionFailure(_) => SourceError::Auth(format!(
            "the request could not be built ({}); are AWS credentials and a region available?",
            crate::errors::chain(&e)
        )),
        SdkError::ResponseError(_) => {
            SourceError::Unavailable("the response could not be decoded".into())
        }
        _ => SourceError::Unavailable(crate::errors::chain(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_filters_list_only_the_referenced_names_ten_at_a_time() {
        let mut paths: Vec<String> = (0..25).map(|i| format!("app{i:02}-key")).collect();
        paths.push("arn:aws:secretsmanager:us-east-1:1:secret:x".into());
        paths.push("app03-key".into());
        let chunks = name_filters(&paths, 10);
        assert_eq!(chunks.iter().map(Vec::len).collect::<Vec<_>>(), [10, 10, 5]);
        assert!(chunks.iter().flatten().all(|n| !n.starts_with("arn:")));
        // A name covered by a shorter one (prefix match) is not listed twice.
        let covered = name_filters(&["a/b".into(), "a/bc".into(), "z".into()], 10);
        assert_eq!(covered, vec![vec!["a/b".to_string(), "z".to_string()]]);
        assert!(name_filters(&["arn:aws:x".into()], 10).is_empty());
    }

    #[test]
    fn created_dates_become_system_times() {
        let d = DateTime::from_secs(1_700_000_000);
        let s = to_secret(Some("v1"), Some(&d), Some("x"), None)
            .ok()
            .and_then(|s| s.created);
        assert_eq!(
            s,
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        );
    }
}
