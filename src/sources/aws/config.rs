//! `kind = "aws"` settings.

use std::any::Any;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::Deserialize;

use super::AwsSource;
use crate::config::Checks;
use crate::events::EventsConfig;
use crate::sources::{Source, SourceError, StoreConfig};

/// `kind = "aws"`: AWS Secrets Manager. Credentials come from the AWS default chain
/// (env, profile, web identity / IRSA, ECS, IMDS).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSourceConfig {
    #[serde(rename = "kind")]
    _kind: String,
    /// Region; default from the chain (`AWS_REGION`, profile, IMDS).
    #[serde(default)]
    pub region: Option<String>,
    /// Endpoint override (LocalStack, moto, VPC endpoints). `AWS_ENDPOINT_URL_SECRETS_MANAGER`
    /// works too.
    #[serde(default)]
    pub endpoint_url: Option<url::Url>,
    /// Assume this role (STS AssumeRole) on top of the chain's credentials.
    #[serde(default)]
    pub role_arn: Option<String>,
    /// Profile from `~/.aws/config` to use instead of the default one.
    #[serde(default)]
    pub profile: Option<String>,
    /// Per-request timeout.
    #[serde(default = "default_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Allow a plain `http://` `endpoint_url` to a host other than this machine
    /// (127.0.0.0/8, `::1` and `localhost` are always allowed). Without it such an
    /// endpoint is a config error: signed requests and every secret value would cross
    /// the network in clear text. Default false.
    #[serde(default)]
    pub allow_insecure_http: bool,
    /// Rotation events: `events = { queue_url = "https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE" }`.
    /// authsync long-polls the SQS queue that an EventBridge rule feeds with this store's
    /// Secrets Manager events, and runs a cycle for the targets that use a changed secret
    /// within about a second. Optional; scheduled polling stays the safety net.
    #[serde(default)]
    pub events: Option<EventsConfig>,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

#[async_trait]
impl StoreConfig for AwsSourceConfig {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn check(&self, checks: &mut Checks<'_>) {
        if let Some(url) = &self.endpoint_url {
            checks.store_url(
                url,
                "endpoint_url",
                "http://127.0.0.1:4566",
                self.allow_insecure_http,
            );
        }
        if let Some(events) = &self.events {
            checks.store_url(
                &events.queue_url,
                "events.queue_url",
                "https://sqs.eu-west-1.amazonaws.com/123456789012/authsync",
                events.allow_insecure_http,
            );
            if let Some(url) = &events.endpoint_url {
                checks.store_url(
                    url,
                    "events.endpoint_url",
                    "http://127.0.0.1:4566",
                    events.allow_insecure_http,
                );
            }
        }
    }

    async fn build(&self, name: &str) -> Result<Arc<dyn Source>, SourceError> {
        Ok(Arc::new(AwsSource::connect(name, self).await))
    }
}
