//! `[sources.NAME] events = { … }`: the SQS queue an AWS source's rotation events arrive on.

use std::time::Duration;

use serde::{Deserialize, Deserializer};

/// SQS long polling waits at most 20 s per ReceiveMessage call.
pub const MAX_WAIT: Duration = Duration::from_secs(20);

/// `events = { queue_url = "…" }` inside `[sources.NAME]` (`kind = "aws"`): authsync
/// long-polls this SQS queue for the Secrets Manager events EventBridge routes to it and
/// runs a cycle for the targets that use a changed secret, reading it fresh. The queue is
/// reached with the source's credentials and role. Polling on the schedule stays the
/// safety net.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventsConfig {
    /// The queue's URL, e.g. `https://sqs.eu-west-1.amazonaws.com/123456789012/authsync`.
    /// For an AWS SQS URL, the queue's region is taken from it (it may differ from the
    /// source's region).
    #[serde(deserialize_with = "queue_url")]
    pub queue_url: url::Url,
    /// SQS endpoint override (VPC endpoints, LocalStack, moto). Default: the SDK's settings
    /// (`AWS_ENDPOINT_URL_SQS` works too). The source's own `endpoint_url` is for Secrets
    /// Manager only and is not used for SQS.
    #[serde(default)]
    pub endpoint_url: Option<url::Url>,
    /// How long one ReceiveMessage call waits for messages: whole seconds, `1s` to `20s`
    /// (the SQS maximum, and the default). Longer waits mean fewer calls on a quiet queue.
    #[serde(default = "default_wait", deserialize_with = "wait_time")]
    pub wait_time: Duration,
    /// Allow `http://` to a non-loopback `queue_url` / `endpoint_url` (default false:
    /// that is a `check` error).
    #[serde(default)]
    pub allow_insecure_http: bool,
}

impl EventsConfig {
    /// A config for `queue_url` with every default.
    pub fn new(queue_url: url::Url) -> EventsConfig {
        EventsConfig {
            queue_url,
            endpoint_url: None,
            wait_time: default_wait(),
            allow_insecure_http: false,
        }
    }

    /// The URLs authsync talks to for this queue, for the loader's `http://` check.
    pub fn urls(&self) -> impl Iterator<Item = &url::Url> {
        std::iter::once(&self.queue_url).chain(self.endpoint_url.as_ref())
    }

    /// The region in an AWS SQS queue URL (`https://sqs.REGION.amazonaws.com/…` or the
    /// legacy `https://REGION.queue.amazonaws.com/…`); `None` for other hosts.
    pub fn queue_region(&self) -> Option<String> {
        let host = self.queue_url.host_str()?;
        let region = host
            .strip_prefix("sqs.")
            .and_then(|rest| rest.split_once(".amazonaws.com").map(|(r, _)| r))
            .or_else(|| host.split_once(".queue.amazonaws.com").map(|(r, _)| r))?;
        let valid = !region.is_empty()
            && region
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        valid.then(|| region.to_string())
    }
}

fn default_wait() -> Duration {
    MAX_WAIT
}

fn queue_url<'de, D: Deserializer<'de>>(d: D) -> Result<url::Url, D::Error> {
    let url = url::Url::deserialize(d)?;
    if !matches!(url.scheme(), "https" | "http") {
        return Err(serde::de::Error::custom(format!(
            "queue_url must be an https:// SQS queue URL, not `{}:`",
            url.scheme()
        )));
    }
    if url.path_segments().is_none_or(|mut s| s.all(str::is_empty)) {
        return Err(serde::de::Error::custom(
            "queue_url has no queue path: expected https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE",
        ));
    }
    Ok(url)
}

fn wait_time<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let wait: Duration = humantime_serde::deserialize(d)?;
    if wait.subsec_nanos() != 0 || wait < Duration::from_secs(1) || wait > MAX_WAIT {
        return Err(serde::de::Error::custom(format!(
            "wait_time must be whole seconds from 1s to 20s (the SQS long-poll maximum), not {}",
            humantime_serde::re::humantime::format_duration(wait)
        )));
    }
    Ok(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<EventsConfig, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults() {
        let c = parse(r#"queue_url = "https://sqs.eu-west-1.amazonaws.com/123456789012/authsync""#)
            .unwrap();
        assert_eq!(c.wait_time, Duration::from_secs(20));
        assert_eq!(c.endpoint_url, None);
        assert!(!c.allow_insecure_http);
        assert_eq!(c.queue_region().as_deref(), Some("eu-west-1"));
        assert_eq!(c.urls().count(), 1);
        assert_eq!(c, EventsConfig::new(c.queue_url.clone()));
    }

    #[test]
    fn every_field() {
        let c = parse(
            r#"
            queue_url = "http://10.0.0.5:4566/000000000000/authsync"
            endpoint_url = "http://10.0.0.5:4566"
            wait_time = "5s"
            allow_insecure_http = true
            "#,
        )
        .unwrap();
        assert_eq!(c.wait_time, Duration::from_secs(5));
        assert!(c.allow_insecure_http);
        assert_eq!(c.queue_region(), None);
        assert_eq!(c.urls().count(), 2);
    }

    #[test]
    fn queue_regions() {
        for (url, want) in [
            ("https://sqs.us-east-1.amazonaws.com/1/q", Some("us-east-1")),
            (
                "https://sqs.cn-north-1.amazonaws.com.cn/1/q",
                Some("cn-north-1"),
            ),
            (
                "https://eu-west-2.queue.amazonaws.com/1/q",
                Some("eu-west-2"),
            ),
            ("https://sqs.example.com/1/q", None),
            ("http://127.0.0.1:4566/1/q", None),
        ] {
            let c = EventsConfig::new(url.parse().unwrap());
            assert_eq!(c.queue_region().as_deref(), want, "{url}");
        }
    }

    #[test]
    fn bad_values() {
        for (text, want) in [
            (r#"queue_url = "ftp://x/1/q""#, "https:// SQS queue URL"),
            (
                r#"queue_url = "https://sqs.eu-west-1.amazonaws.com/""#,
                "no queue path",
            ),
            (r#"queue_url = "not a url""#, "relative URL"),
            (
                r#"queue_url = "https://h/1/q"
                wait_time = "21s""#,
                "from 1s to 20s",
            ),
            (
                r#"queue_url = "https://h/1/q"
                wait_time = "0s""#,
                "from 1s to 20s",
            ),
            (
                r#"queue_url = "https://h/1/q"
                wait_time = "1500ms""#,
                "whole seconds",
            ),
            (
                r#"queue_url = "https://h/1/q"
                queue = "x""#,
                "unknown field `queue`",
            ),
            (r#"endpoint_url = "https://h""#, "missing field `queue_url`"),
        ] {
            let err = parse(text).unwrap_err();
            assert!(err.contains(want), "{text}: {err}");
        }
    }
}
