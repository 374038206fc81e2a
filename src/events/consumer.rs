//! The SQS consumer: long-polls one queue and hands the daemon the configured paths that
//! rotation events name.
//!
//! One receive (up to 10 messages) becomes at most one [`EventBatch`]: every matching
//! message's paths merged, so duplicates collapse. Messages that trigger nothing (other
//! secrets, other events, garbage) are deleted at once; matching ones only after the
//! daemon answers [`EventBatch::done`], so an event is never lost to a crash or a cycle
//! that did not happen: left on the queue, it becomes visible again after the queue's
//! visibility timeout. Scheduled polling stays the safety net either way.

use std::collections::BTreeSet;
use std::time::Duration;

use aws_config::timeout::TimeoutConfig;
use aws_config::{Region, SdkConfig};
use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, Message};
use aws_sdk_sqs::Client;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::config::EventsConfig;
use super::matching::matching_paths;
use super::parse::{parse, Parsed};
use crate::config::{AwsSourceConfig, Config, PropRef};
use crate::mapping::{targets, Filter};

/// The paths rotation events named, for one source. The daemon runs a cycle for the
/// targets that use them, reading them fresh, then sends `()` on `done`; only then are
/// the messages deleted. Dropping `done` leaves them on the queue (they come back after
/// its visibility timeout).
#[derive(Debug)]
pub struct EventBatch {
    /// The `[sources.NAME]` the queue belongs to.
    pub source: String,
    /// Configured paths (as the config spells them) that changed.
    pub paths: BTreeSet<String>,
    /// Answer once the cycle for these paths has run.
    pub done: oneshot::Sender<()>,
}

/// Most messages one ReceiveMessage call returns (an SQS limit).
const MAX_MESSAGES: i32 = 10;
/// The first delay after a failed receive; it doubles up to [`BACKOFF_MAX`].
const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

/// Long-polls one SQS queue for one source's rotation events.
pub struct EventConsumer {
    source: String,
    queue_url: String,
    wait: Duration,
    paths: BTreeSet<String>,
    client: Client,
}

/// Starts an [`EventConsumer`] on the current runtime: it runs until `shutdown` is
/// cancelled (promptly, also in the middle of a long poll) or `tx`'s receiver is dropped.
///
/// `sdk` carries the source's region, credentials and role; `paths` are the source's
/// configured paths ([`referenced_paths`]). Restart it (new token) when the config changes.
pub fn spawn(
    source: String,
    sdk: &SdkConfig,
    cfg: &EventsConfig,
    paths: BTreeSet<String>,
    tx: mpsc::Sender<EventBatch>,
    shutdown: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    let consumer = EventConsumer::new(source, sdk, cfg, paths);
    tokio::spawn(consumer.run(tx, shutdown))
}

/// Each AWS source with `events = { … }`: its name, settings and queue.
pub fn queues(config: &Config) -> impl Iterator<Item = (&String, &AwsSourceConfig, &EventsConfig)> {
    config.sources.iter().filter_map(|(name, source)| {
        let aws = source.get::<AwsSourceConfig>()?;
        Some((name, aws, aws.events.as_ref()?))
    })
}

/// Every AWS path a `[[map]]` reads from `source`, `{portal}` expanded for each portal the
/// block applies to.
pub fn referenced_paths(config: &Config, source: &str) -> BTreeSet<String> {
    targets(config, &Filter::default())
        .into_iter()
        .flat_map(|t| t.props.into_iter())
        .filter_map(|(_, r)| match r {
            PropRef::Secret(s) if s.source == source => Some(s.path),
            _ => None,
        })
        .collect()
}

impl EventConsumer {
    /// Builds the SQS client; nothing is sent until [`EventConsumer::run`].
    pub fn new(
        source: String,
        sdk: &SdkConfig,
        cfg: &EventsConfig,
        paths: BTreeSet<String>,
    ) -> EventConsumer {
        EventConsumer {
            source,
            queue_url: cfg.queue_url.to_string(),
            wait: cfg.wait_time,
            paths,
            client: client(sdk, cfg),
        }
    }

    /// The receive loop; see [`spawn`].
    pub async fn run(self, tx: mpsc::Sender<EventBatch>, shutdown: CancellationToken) {
        let (source, queue) = (self.source.as_str(), self.queue_url.as_str());
        tracing::info!(
            source,
            queue,
            secrets = self.paths.len(),
            "listening for rotation events"
        );
        let mut backoff = Backoff::default();
        // The problem last reported at ERROR, while receives keep failing.
        let mut failing: Option<Problem> = None;
        let mut failures = 0u32;
        loop {
            let receive = self
                .client
                .receive_message()
                .queue_url(queue)
                .max_number_of_messages(MAX_MESSAGES)
                .wait_time_seconds(i32::try_from(self.wait.as_secs()).unwrap_or(20))
                .send();
            let received = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                r = receive => r,
            };
            let messages = match received {
                Ok(out) => {
                    crate::metrics::metrics().source_request(source, "ReceiveMessage", "ok");
                    if failing.take().is_some() {
                        tracing::info!(source, queue, failures, "receiving rotation events again");
                    }
                    failures = 0;
                    backoff.reset();
                    out.messages.unwrap_or_default()
                }
                Err(e) => {
                    crate::metrics::metrics().source_request(source, "ReceiveMessage", "error");
                    let problem = Problem::of(&e);
                    failures += 1;
                    let delay = backoff.next_delay();
                    if failing != Some(problem) {
                        tracing::error!(
                            source,
                            queue,
                            error = %detail(&e),
                            retry_in = ?delay,
                            "cannot receive rotation events: {}; polling on the schedule \
                             still works, and receiving is retried with backoff",
                            problem.advice()
                        );
                        failing = Some(problem);
                    } else {
                        tracing::debug!(
                            source,
                            queue,
                            error = %detail(&e),
                            retry_in = ?delay,
                            "receive failed again"
                        );
                    }
                    tokio::select! {
                        biased;
                        () = shutdown.cancelled() => break,
                        () = tokio::time::sleep(delay) => continue,
                    }
                }
            };
            if messages.is_empty() {
                continue;
            }
            let triage = triage(source, &self.paths, &messages);
            self.delete(&triage.drop).await;
            if triage.matched.is_empty() {
                continue;
            }
            tracing::info!(
                source,
                messages = triage.keep.len(),
                paths = ?triage.matched,
                "rotation event: starting a cycle for the targets that use these secrets"
            );
            let (done_tx, done_rx) = oneshot::channel();
            let batch = EventBatch {
                source: self.source.clone(),
                paths: triage.matched,
                done: done_tx,
            };
            let sent = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                r = tx.send(batch) => r,
            };
            if sent.is_err() {
                tracing::debug!(source, "the daemon stopped taking rotation events");
                break;
            }
            let answered = tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                r = done_rx => r,
            };
            match answered {
                Ok(()) => self.delete(&triage.keep).await,
                Err(_) => tracing::debug!(
                    source,
                    messages = triage.keep.len(),
                    "the cycle for rotation events did not confirm; the messages stay on \
                     the queue and come back after its visibility timeout"
                ),
            }
        }
        tracing::debug!(source, queue, "rotation-event consumer stopped");
    }

    /// Deletes messages by receipt handle (one DeleteMessageBatch call per 10). A failure
    /// only means they are received, and handled, once more.
    async fn delete(&self, handles: &[String]) {
        let (source, queue) = (self.source.as_str(), self.queue_url.as_str());
        for chunk in handles.chunks(MAX_MESSAGES as usize) {
            let entries: Vec<DeleteMessageBatchRequestEntry> = chunk
                .iter()
                .enumerate()
                .filter_map(|(i, handle)| {
                    DeleteMessageBatchRequestEntry::builder()
                        .id(i.to_string())
                        .receipt_handle(handle)
                        .build()
                        .ok()
                })
                .collect();
            let result = self
                .client
                .delete_message_batch()
                .queue_url(queue)
                .set_entries(Some(entries))
                .send()
                .await;
            match result {
                Ok(out) => {
                    crate::metrics::metrics().source_request(source, "DeleteMessageBatch", "ok");
                    if !out.failed.is_empty() {
                        let codes: BTreeSet<&str> = out.failed.iter().map(|f| f.code()).collect();
                        tracing::warn!(
                            source,
                            queue,
                            failed = out.failed.len(),
                            codes = ?codes,
                            "could not delete some handled messages; they will be received \
                             again after the visibility timeout"
                        );
                    }
                }
                Err(e) => {
                    crate::metrics::metrics().source_request(source, "DeleteMessageBatch", "error");
                    tracing::warn!(
                        source,
                        queue,
                        error = %detail(&e),
                        "could not delete handled messages ({}); they will be received again \
                         after the visibility timeout",
                        Problem::of(&e).advice()
                    );
                }
            }
        }
    }
}

/// An SQS client for `cfg`'s queue over the source's SDK settings.
fn client(sdk: &SdkConfig, cfg: &EventsConfig) -> Client {
    let wait = cfg.wait_time;
    // A long poll legitimately takes `wait`: the source's request timeouts (seconds)
    // would cut every quiet poll short.
    let attempt = wait + Duration::from_secs(10);
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(attempt)
        .operation_attempt_timeout(attempt)
        .operation_timeout(attempt * 3)
        .build();
    let mut conf = aws_sdk_sqs::config::Builder::from(sdk).timeout_config(timeouts);
    // SQS requests must go to the queue's region, which may not be the source's.
    if let Some(region) = cfg.queue_region() {
        conf = conf.region(Region::new(region));
    }
    if let Some(endpoint) = &cfg.endpoint_url {
        conf = conf.endpoint_url(endpoint.as_str().trim_end_matches('/'));
    }
    Client::from_conf(conf.build())
}

/// What [`check_queue`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueStatus {
    /// Messages waiting (`ApproximateNumberOfMessages`).
    pub waiting: u64,
    /// Messages received and not yet deleted (`ApproximateNumberOfMessagesNotVisible`).
    pub in_flight: u64,
}

/// One GetQueueAttributes call on the queue, for `check --online` and status pages:
/// proves the queue exists and the credentials may use it. The error says what to check
/// (it names the queue, never a message).
pub async fn check_queue(sdk: &SdkConfig, cfg: &EventsConfig) -> Result<QueueStatus, String> {
    use aws_sdk_sqs::types::QueueAttributeName;
    let out = client(sdk, cfg)
        .get_queue_attributes()
        .queue_url(cfg.queue_url.as_str())
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
        .map_err(|e| {
            format!(
                "events queue {}: {} ({})",
                cfg.queue_url,
                Problem::of(&e).advice(),
                detail(&e)
            )
        })?;
    let number = |name: QueueAttributeName| -> u64 {
        out.attributes()
            .and_then(|a| a.get(&name))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Ok(QueueStatus {
        waiting: number(QueueAttributeName::ApproximateNumberOfMessages),
        in_flight: number(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
    })
}

/// What one receive's messages ask for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Triage {
    /// Configured paths the matching messages name.
    matched: BTreeSet<String>,
    /// Receipt handles to delete once the daemon is done.
    keep: Vec<String>,
    /// Receipt handles to delete now.
    drop: Vec<String>,
}

/// Sorts messages into matched / to delete, counting each in `authsync_events_total`.
fn triage(source: &str, paths: &BTreeSet<String>, messages: &[Message]) -> Triage {
    let metrics = crate::metrics::metrics();
    let mut t = Triage::default();
    for msg in messages {
        // Without a receipt handle a message cannot be deleted; SQS always sends one.
        let Some(handle) = msg.receipt_handle() else {
            continue;
        };
        let message_id = msg.message_id().unwrap_or("");
        let body = msg.body().unwrap_or("");
        match parse(body) {
            Parsed::Secrets(ids) => {
                let matched = matching_paths(paths, &ids);
                if matched.is_empty() {
                    // The ids are not logged: they need not be anything the config shows.
                    metrics.event(source, "unmapped");
                    tracing::debug!(
                        source,
                        message_id,
                        "event about a secret no [[map]] uses; deleted"
                    );
                    t.drop.push(handle.to_string());
                } else {
                    metrics.event(source, "matched");
                    tracing::debug!(source, message_id, paths = ?matched, "rotation event matched");
                    t.matched.extend(matched);
                    t.keep.push(handle.to_string());
                }
            }
            Parsed::Unrelated => {
                metrics.event(source, "unmapped");
                tracing::debug!(
                    source,
                    message_id,
                    "event that changes no secret value; deleted"
                );
                t.drop.push(handle.to_string());
            }
            Parsed::Malformed(reason) => {
                metrics.event(source, "malformed");
                tracing::warn!(
                    source,
                    message_id,
                    bytes = body.len(),
                    reason = %reason,
                    "malformed message on the rotation-event queue; deleted (expected \
                     EventBridge events from aws.secretsmanager, directly or through SNS)"
                );
                t.drop.push(handle.to_string());
            }
        }
    }
    t
}

/// An SQS failure in one line: the service's error code, HTTP status and message, or the
/// transport error's chain.
fn detail<E>(e: &SdkError<E, HttpResponse>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match e {
        SdkError::ServiceError(se) => format!(
            "{} (HTTP {}): {}",
            se.err().code().unwrap_or("unknown error"),
            se.raw().status().as_u16(),
            se.err().message().unwrap_or("no message")
        ),
        other => DisplayErrorContext(other).to_string(),
    }
}

/// Why SQS calls fail, by what the operator should check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Problem {
    QueueMissing,
    Denied,
    Unreachable,
    Throttled,
    Other,
}

impl Problem {
    fn of<E: ProvideErrorMetadata>(e: &SdkError<E, HttpResponse>) -> Problem {
        match e {
            SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) => Problem::Unreachable,
            SdkError::ServiceError(se) => {
                let status = se.raw().status().as_u16();
                match se.err().code() {
                    Some(
                        "AWS.SimpleQueueService.NonExistentQueue"
                        | "QueueDoesNotExist"
                        | "AWS.SimpleQueueService.QueueDeletedRecently",
                    ) => Problem::QueueMissing,
                    Some(
                        "AccessDenied"
                        | "AccessDeniedException"
                        | "InvalidClientTokenId"
                        | "UnrecognizedClientException"
                        | "SignatureDoesNotMatch"
                        | "ExpiredToken"
                        | "InvalidSecurity"
                        | "KMS.AccessDeniedException",
                    ) => Problem::Denied,
                    Some("RequestThrottled" | "ThrottlingException" | "OverLimit") => {
                        Problem::Throttled
                    }
                    _ if status == 401 || status == 403 => Problem::Denied,
                    _ => Problem::Other,
                }
            }
            _ => Problem::Other,
        }
    }

    fn advice(self) -> &'static str {
        match self {
            Problem::QueueMissing => {
                "the queue does not exist: check `queue_url` (and that the queue is in the \
                 region its URL names)"
            }
            Problem::Denied => {
                "access denied: check the source's AWS credentials and role, and that they \
                 allow sqs:ReceiveMessage, sqs:DeleteMessage and sqs:GetQueueAttributes on the \
                 queue (and kms:Decrypt on its key if it is encrypted with a customer key); \
                 see deploy/aws/authsync-iam-policy.json"
            }
            Problem::Unreachable => {
                "the SQS endpoint cannot be reached: check the network, proxies and \
                 `endpoint_url`"
            }
            Problem::Throttled => "SQS is throttling requests",
            Problem::Other => "SQS refused the request",
        }
    }
}

/// Exponential backoff: 1 s doubling to 60 s, each delay jittered to 50–100 % of its step
/// so a fleet that lost the same queue does not retry in lockstep.
#[derive(Debug)]
struct Backoff {
    step: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            step: BACKOFF_FIRST,
        }
    }
}

impl Backoff {
    fn next_delay(&mut self) -> Duration {
        let step = self.step;
        self.step = (step * 2).min(BACKOFF_MAX);
        let half = step / 2;
        half + half.mul_f64(rand::random::<f64>())
    }

    fn reset(&mut self) {
        self.step = BACKOFF_FIRST;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(id: &str, handle: Option<&str>, body: &str) -> Message {
        Message::builder()
            .message_id(id)
            .set_receipt_handle(handle.map(str::to_string))
            .body(body)
            .build()
    }

    fn event(secret_id: &str) -> String {
        serde_json::json!({
            "source": "aws.secretsmanager",
            "detail-type": "AWS API Call via CloudTrail",
            "detail": {"eventName": "PutSecretValue", "requestParameters": {"secretId": secret_id}}
        })
        .to_string()
    }

    fn count(source: &str, result: &str) -> f64 {
        crate::metrics::metrics()
            .counter_value(
                "authsync_events_total",
                &[("source", source), ("result", result)],
            )
            .unwrap_or(0.0)
    }

    #[test]
    fn triage_merges_matches_and_drops_the_rest() {
        let source = "triage-test";
        let paths: BTreeSet<String> = ["docspace/backup-s3".into(), "oauth/google".into()].into();
        let arn = "arn:aws:secretsmanager:eu-west-1:1:secret:docspace/backup-s3-AbCdEf";
        let messages = vec![
            message("m1", Some("h1"), &event("docspace/backup-s3")),
            message("m2", Some("h2"), &event(arn)),
            message("m3", Some("h3"), &event("oauth/google")),
            message("m4", Some("h4"), &event("someone/else")),
            message("m5", Some("h5"), "{not json"),
            message(
                "m6",
                Some("h6"),
                r#"{"source":"aws.ec2","detail-type":"x","detail":{}}"#,
            ),
            message("m7", None, &event("oauth/google")),
        ];
        let t = triage(source, &paths, &messages);
        assert_eq!(t.matched, paths);
        assert_eq!(t.keep, ["h1", "h2", "h3"]);
        assert_eq!(t.drop, ["h4", "h5", "h6"]);
        assert_eq!(count(source, "matched"), 3.0);
        assert_eq!(count(source, "unmapped"), 2.0);
        assert_eq!(count(source, "malformed"), 1.0);
    }

    #[test]
    fn referenced_paths_expand_portals_per_source() {
        let text = r#"
[sources.aws]
kind = "aws"
region = "eu-west-1"

[sources.aws2]
kind = "aws"

[sources.vault]
kind = "vault"
address = "http://127.0.0.1:8200"

[portals.alpha]
url = "http://127.0.0.1:1"
api_key = "sk-a"

[portals.beta]
url = "http://127.0.0.1:2"
api_key = "sk-b"

[[map]]
service = "s3"
portals = ["alpha"]
props.acesskey = "aws:docspace/backup-s3#access_key_id"
props.secretaccesskey = "aws:docspace/backup-s3#secret_access_key"

[[map]]
service = "telegram"
props.telegramBotToken = "aws:portals/{portal}/telegram#token"
props.telegramBotName = { value = "bot" }

[[map]]
service = "google"
props.googleClientId = "vault:secret/oauth/google#client_id"
props.googleClientSecret = { source = "aws2", path = "arn:aws:secretsmanager:eu-west-1:1:secret:g-AbCdEf", key = "s" }
"#;
        let config = crate::config::parse_valid(text);
        let aws: Vec<String> = referenced_paths(&config, "aws").into_iter().collect();
        assert_eq!(
            aws,
            [
                "docspace/backup-s3",
                "portals/alpha/telegram",
                "portals/beta/telegram"
            ]
        );
        let aws2: Vec<String> = referenced_paths(&config, "aws2").into_iter().collect();
        assert_eq!(aws2, ["arn:aws:secretsmanager:eu-west-1:1:secret:g-AbCdEf"]);
        assert_eq!(referenced_paths(&config, "vault").len(), 1);
        assert!(referenced_paths(&config, "nope").is_empty());
    }

    #[test]
    fn backoff_doubles_to_a_minute_with_jitter_and_resets() {
        let mut b = Backoff::default();
        let mut steps = Vec::new();
        for _ in 0..9 {
            let step = b.step;
            let d = b.next_delay();
            assert!(d >= step / 2 && d <= step, "{d:?} outside {step:?}");
            steps.push(step.as_secs());
        }
        assert_eq!(steps, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        b.reset();
        assert!(b.next_delay() <= Duration::from_secs(1));
    }
}
