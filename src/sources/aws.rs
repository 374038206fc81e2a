//! AWS Secrets Manager through the official SDK.
//!
//! Credentials come from the AWS default chain (env, profile, web identity / IRSA, ECS,
//! IMDS), optionally wrapped in STS AssumeRole (`role_arn`). PATH is the secret's name
//! or ARN; `#KEY` selects a field of a JSON SecretString. A SecretBinary is used when it
//! is UTF-8 text and refused otherwise, since portal props are text.

use std::time::Duration;

use async_trait::async_trait;
use aws_config::sts::AssumeRoleProvider;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::Client;

use super::{Content, Secret, Source, SourceError};
use crate::config::AwsSourceConfig;
use crate::secret::SecretString;

/// An AWS Secrets Manager endpoint.
pub struct AwsSource {
    name: String,
    client: Client,
}

impl AwsSource {
    /// Loads the SDK configuration. Nothing is sent until the first read.
    pub async fn connect(name: &str, cfg: &AwsSourceConfig) -> AwsSource {
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
        // The endpoint override applies to Secrets Manager only, never to STS.
        let mut conf = aws_sdk_secretsmanager::config::Builder::from(&shared);
        if let Some(endpoint) = &cfg.endpoint_url {
            conf = conf.endpoint_url(endpoint.as_str().trim_end_matches('/'));
        }
        AwsSource {
            name: name.to_string(),
            client: Client::from_conf(conf.build()),
        }
    }
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
            .map_err(map_error)?;
        let version = out.version_id().map(str::to_string);
        let text = if let Some(s) = out.secret_string() {
            SecretString::from(s.to_string())
        } else if let Some(blob) = out.secret_binary() {
            let text = std::str::from_utf8(blob.as_ref()).map_err(|_| {
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
            version,
            content: Content::Text(text),
        })
    }

    async fn authenticate(&self) -> Result<(), SourceError> {
        self.client
            .list_secrets()
            .max_results(1)
            .send()
            .await
            .map(|_| ())
            .map_err(map_error)
    }
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
                SourceError::Unavailable(format!("cannot reach the endpoint: {}", chain(conn)))
            } else {
                SourceError::Unavailable("the request could not be sent".into())
            }
        }
        SdkError::ConstructionFailure(_) => SourceError::Auth(format!(
            "the request could not be built ({}); are AWS credentials and a region available?",
            chain(&e)
        )),
        SdkError::ResponseError(_) => {
            SourceError::Unavailable("the response could not be decoded".into())
        }
        _ => SourceError::Unavailable(chain(&e)),
    }
}

fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut cur = e.source();
    while let Some(inner) = cur {
        msg.push_str(": ");
        msg.push_str(&inner.to_string());
        cur = inner.source();
    }
    msg
}
