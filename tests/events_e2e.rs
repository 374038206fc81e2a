//! The rotation-event consumer against real SQS (moto's server), through a counting proxy:
//! batches, deletion only after `done`, unmapped / malformed messages, SNS wrapping, a
//! queue that disappears and comes back, faults, shutdown, and what a quiet queue costs.
//!
//! Every message carries planted secret values in fields authsync does not use; the logs
//! of the whole test binary are captured and scanned for them.

use std::collections::BTreeSet;
use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use authsync::events::{self, EventBatch, EventsConfig};
use serde_json::{json, Value};
use testservers::{CountingProxy, Moto, ProxyFault};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Values that must never appear in a log line.
const PLANTED: &[&str] = &[
    "rotated-PLANTED-secret-value-0001",
    "request-PLANTED-secret-string-0002",
    "garbage-PLANTED-secret-value-0003",
    "unmapped-PLANTED-secret-value-0004",
    "sns-PLANTED-secret-value-0005",
];

// ---------------------------------------------------------------------------------------------
// Shared fixtures: one moto server and one log capture for the whole binary
// ---------------------------------------------------------------------------------------------

/// One moto server for every test (each test has its own queue and proxy). Started on its
/// own thread's runtime: the handle's HTTP client is not tied to any test's runtime.
fn moto() -> &'static Moto {
    static MOTO: OnceLock<Moto> = OnceLock::new();
    MOTO.get_or_init(|| {
        std::thread::spawn(|| {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(Moto::start())
        })
        .join()
        .unwrap()
    })
}

#[derive(Clone)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Installs (once) a global subscriber that keeps every log line of this test binary, at
/// the levels `authsync run --log-level debug` uses.
fn capture() -> &'static Capture {
    static CAPTURE: OnceLock<Capture> = OnceLock::new();
    CAPTURE.get_or_init(|| {
        let cap = Capture(Arc::new(Mutex::new(Vec::new())));
        let writer = cap.clone();
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,rustify=off,vaultrs=warn,aws_config=warn,aws_smithy_runtime=warn,\
                 hyper=warn,hyper_util=warn,reqwest=warn,h2=warn,rustls=warn,aws_runtime=warn,\
                 aws_smithy_runtime_api=warn,aws_sdk_sqs=warn,tower=warn",
            ))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .init();
        cap
    })
}

fn logs() -> String {
    String::from_utf8_lossy(&capture().0.lock().unwrap()).into_owned()
}

/// Log lines about `source` (every consumer line names its source).
fn lines_of(source: &str) -> Vec<String> {
    let needle = format!("source=\"{source}\"");
    let bare = format!("source={source} ");
    logs()
        .lines()
        .filter(|l| l.contains(&needle) || l.contains(&bare))
        .map(str::to_string)
        .collect()
}

fn assert_no_planted() {
    let all = logs();
    for (i, planted) in PLANTED.iter().enumerate() {
        assert!(
            !all.contains(planted),
            "planted value #{i} appears in the logs"
        );
    }
}

/// Polls `cond` every 25 ms until it holds; panics with `what` after `within`.
async fn wait_until<F, Fut>(what: &str, within: Duration, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(start.elapsed() < within, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn count(source: &str, result: &str) -> f64 {
    authsync::metrics::metrics()
        .counter_value(
            "authsync_events_total",
            &[("source", source), ("result", result)],
        )
        .unwrap_or(0.0)
}

// ---------------------------------------------------------------------------------------------
// Events as AWS sends them
// ---------------------------------------------------------------------------------------------

/// A CloudTrail `eventName` record for `secret_id` (and `arn`, when given), with planted
/// values where real events carry request data.
fn api_call(event_name: &str, secret_id: &str, arn: Option<&str>, time: &str) -> String {
    let mut response = json!({ "name": secret_id, "versionId": "e2e-version" });
    if let Some(arn) = arn {
        response["arn"] = Value::String(arn.to_string());
    }
    json!({
        "version": "0",
        "id": "79f04f06-924c-7a00-b3f8-e532167d23e0",
        "detail-type": "AWS API Call via CloudTrail",
        "source": "aws.secretsmanager",
        "account": "123456789012",
        "time": time,
        "region": "us-east-1",
        "resources": [],
        "detail": {
            "eventVersion": "1.09",
            "userIdentity": {
                "type": "AssumedRole",
                "sessionContext": { "note": PLANTED[1] }
            },
            "eventTime": time,
            "eventSource": "secretsmanager.amazonaws.com",
            "eventName": event_name,
            "awsRegion": "us-east-1",
            "userAgent": "aws-cli/2.15.0",
            "requestParameters": {
                "secretId": secret_id,
                "secretString": PLANTED[1],
                "clientRequestToken": "4d383ea9-084a-49c9-8722-cbfb0f25c456"
            },
            "responseElements": response,
            "eventID": "12345678-1234-1234-1234-123456789012",
            "readOnly": false,
            "eventType": "AwsApiCall",
            "managementEvent": true,
            "recipientAccountId": "123456789012",
            "eventCategory": "Management"
        }
    })
    .to_string()
}

fn put_secret_value(secret_id: &str, arn: Option<&str>) -> String {
    api_call("PutSecretValue", secret_id, arn, "2026-12-01T10:00:00Z")
}

/// `event` as SNS delivers it to an SQS subscription without raw message delivery.
fn sns(event: &str) -> String {
    json!({
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": "arn:aws:sns:us-east-1:123456789012:secret-changes",
        "Subject": PLANTED[4],
        "Message": event,
        "Timestamp": "2026-12-01T10:00:01.000Z",
        "SignatureVersion": "1",
        "Signature": "EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N858fiTDN6bkkOxYDVrY0Ad8L10Hs3zH81mtnPk5uvvolIC1CXGu43obcgFxeL3khZl8IKvO61GWB6jI9b5+gLPoBc1Q=",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-f3ecfb7224c7233fe7bb5f59f96de52f.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-east-1:123456789012:secret-changes:c9135db0-26c4-47ec-8998-413945fb5a96"
    })
    .to_string()
}

// ---------------------------------------------------------------------------------------------
// The harness: a queue, a counting proxy in front of moto, a consumer
// ---------------------------------------------------------------------------------------------

struct Harness {
    source: String,
    queue: String,
    proxy: CountingProxy,
    rx: mpsc::Receiver<EventBatch>,
    tx: Option<mpsc::Sender<EventBatch>>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Harness {
    /// A fresh queue named after `source` (SQS `attributes`, e.g. the visibility timeout)
    /// and a proxy; the consumer is not started yet.
    async fn new(source: &str, attributes: &[(&str, &str)]) -> Harness {
        capture();
        let moto = moto();
        let queue = moto.create_queue_with(source, attributes).await;
        let proxy = CountingProxy::start(&moto.endpoint()).await;
        let (tx, rx) = mpsc::channel(4);
        Harness {
            source: source.to_string(),
            queue,
            proxy,
            rx,
            tx: Some(tx),
            shutdown: CancellationToken::new(),
            task: None,
        }
    }

    async fn send(&self, body: &str) {
        moto().send_message(&self.queue, body).await;
    }

    /// Starts the consumer for `paths`, long-polling `wait` seconds, through the proxy.
    /// The consumer's config: this queue, through the proxy.
    fn config(&self, wait: u64) -> EventsConfig {
        let mut cfg = EventsConfig::new(self.queue.parse().unwrap());
        cfg.endpoint_url = Some(self.proxy.url().parse().unwrap());
        cfg.wait_time = Duration::from_secs(wait);
        cfg
    }

    async fn start(&mut self, paths: &[&str], wait: u64) {
        let sdk = sdk().await;
        let cfg = self.config(wait);
        let paths: BTreeSet<String> = paths.iter().map(|p| p.to_string()).collect();
        self.task = Some(events::spawn(
            self.source.clone(),
            &sdk,
            &cfg,
            paths,
            self.tx.take().expect("started once"),
            self.shutdown.clone(),
        ));
    }

    async fn next_batch(&mut self, within: Duration) -> EventBatch {
        match tokio::time::timeout(within, self.rx.recv()).await {
            Ok(Some(batch)) => batch,
            Ok(None) => panic!("the consumer ended"),
            Err(_) => panic!(
                "no batch within {within:?}; SQS calls {:?}; logs:\n{}",
                self.proxy.counts(),
                lines_of(&self.source).join("\n")
            ),
        }
    }

    async fn total(&self) -> u64 {
        moto().queue_counts(&self.queue).await.total()
    }

    async fn wait_empty(&self, within: Duration) {
        wait_until("the queue to be empty", within, || async {
            self.total().await == 0
        })
        .await;
    }

    /// Cancels the consumer and waits for it; returns how long it took to end.
    async fn stop(&mut self) -> Duration {
        let started = Instant::now();
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .expect("the consumer ends after cancellation")
                .expect("the consumer task does not panic");
        }
        started.elapsed()
    }
}

/// SDK settings as the daemon builds them for a source: region and credentials.
async fn sdk() -> aws_config::SdkConfig {
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_credential_types::Credentials::new(
            "testing", "testing", None, None, "test",
        ))
        .load()
        .await
}

fn set(paths: &[&str]) -> BTreeSet<String> {
    paths.iter().map(|p| p.to_string()).collect()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_matching_event_becomes_one_batch_and_is_deleted_only_after_done() {
    let mut h = Harness::new("ev-match", &[("VisibilityTimeout", "30")]).await;
    let moto = moto();
    let arn = moto.create_secret("ev-match/backup-s3", PLANTED[0]).await;
    moto.put_secret_value("ev-match/backup-s3", PLANTED[0])
        .await;
    h.start(&["ev-match/backup-s3", "ev-match/other"], 1).await;
    // Only the ARN (with moto's random suffix) names the secret in this event.
    h.send(&api_call(
        "RotateSecret",
        &arn,
        Some(&arn),
        "2026-12-01T10:00:00Z",
    ))
    .await;

    let batch = h.next_batch(Duration::from_secs(10)).await;
    assert_eq!(batch.source, "ev-match");
    assert_eq!(batch.paths, set(&["ev-match/backup-s3"]));
    // Not deleted while the daemon works on it: received, in flight.
    let counts = moto.queue_counts(&h.queue).await;
    assert_eq!((counts.visible, counts.in_flight), (0, 1));
    assert_eq!(h.proxy.count("DeleteMessageBatch"), 0);

    batch.done.send(()).unwrap();
    h.wait_empty(Duration::from_secs(5)).await;
    assert_eq!(count("ev-match", "matched"), 1.0);
    assert_eq!(
        count("ev-match", "unmapped") + count("ev-match", "malformed"),
        0.0
    );
    h.stop().await;
    assert!(
        lines_of("ev-match")
            .iter()
            .any(|l| l.contains("rotation event: starting a cycle")),
        "{}",
        lines_of("ev-match").join("\n")
    );
    assert_no_planted();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_in_one_receive_become_one_batch_with_one_path() {
    let mut h = Harness::new("ev-dups", &[]).await;
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:ev-dups/oauth-AbCdEf";
    // Three spellings of the same change, plus the RotationSucceeded that follows a
    // rotation, all waiting before the consumer starts: one receive gets them all.
    h.send(&put_secret_value("ev-dups/oauth", None)).await;
    h.send(&put_secret_value(arn, Some(arn))).await;
    h.send(&api_call(
        "UpdateSecret",
        "ev-dups/oauth",
        None,
        "2026-12-01T10:00:02Z",
    ))
    .await;
    h.send(
        &json!({
            "source": "aws.secretsmanager",
            "detail-type": "AWS Service Event via CloudTrail",
            "detail": {
                "eventSource": "secretsmanager.amazonaws.com",
                "eventName": "RotationSucceeded",
                "requestParameters": null,
                "responseElements": null,
                "additionalEventData": { "SecretId": arn }
            }
        })
        .to_string(),
    )
    .await;
    h.start(&["ev-dups/oauth"], 1).await;

    let batch = h.next_batch(Duration::from_secs(10)).await;
    assert_eq!(batch.paths, set(&["ev-dups/oauth"]));
    batch.done.send(()).unwrap();
    h.wait_empty(Duration::from_secs(5)).await;
    assert_eq!(count("ev-dups", "matched"), 4.0);
    // Everything was in that one batch: nothing else comes.
    assert!(h.rx.try_recv().is_err());
    h.stop().await;
    assert_no_planted();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unmapped_and_unrelated_events_are_deleted_and_counted_without_a_batch() {
    let mut h = Harness::new("ev-unmapped", &[("VisibilityTimeout", "30")]).await;
    h.start(&["ev-unmapped/mine"], 1).await;
    h.send(&put_secret_value(PLANTED[3], None)).await;
    h.send(&api_call(
        "GetSecretValue",
        "ev-unmapped/mine",
        None,
        "2026-12-01T10:00:00Z",
    ))
    .await;
    wait_until("both messages counted", Duration::from_secs(10), || async {
        count("ev-unmapped", "unmapped") >= 2.0
    })
    .await;
    h.wait_empty(Duration::from_secs(5)).await;
    assert_eq!(count("ev-unmapped", "unmapped"), 2.0);
    assert_eq!(count("ev-unmapped", "matched"), 0.0);
    assert!(h.rx.try_recv().is_err(), "no batch for unmapped events");
    h.stop().await;
    assert_no_planted();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_body_is_deleted_counted_and_never_logged() {
    let mut h = Harness::new("ev-malformed", &[("VisibilityTimeout", "30")]).await;
    h.start(&["ev-malformed/mine"], 1).await;
    let garbage = format!("{{\"secretString\": \"{}\", \"source\": ", PLANTED[2]);
    h.send(&garbage).await;
    wait_until(
        "the malformed message counted",
        Duration::from_secs(10),
        || async { count("ev-malformed", "malformed") >= 1.0 },
    )
    .await;
    h.wait_empty(Duration::from_secs(5)).await;
    assert_eq!(count("ev-malformed", "malformed"), 1.0);
    assert!(h.rx.try_recv().is_err());
    h.stop().await;
    let lines = lines_of("ev-malformed");
    let warn = lines
        .iter()
        .find(|l| l.contains("malformed message"))
        .unwrap_or_else(|| panic!("no malformed-message log:\n{}", lines.join("\n")));
    // Size and reason only.
    assert!(
        warn.contains(&format!("bytes={}", garbage.len())) && warn.contains("truncated JSON"),
        "{warn}"
    );
    assert_no_planted();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sns_wrapped_event_works() {
    let mut h = Harness::new("ev-sns", &[]).await;
    h.start(&["ev-sns/telegram"], 1).await;
    h.send(&sns(&put_secret_value("ev-sns/telegram", None)))
        .await;
    let batch = h.next_batch(Duration::from_secs(10)).await;
    assert_eq!(batch.paths, set(&["ev-sns/telegram"]));
    batch.done.send(()).unwrap();
    h.wait_empty(Duration::from_secs(5)).await;
    h.stop().await;
    assert_no_planted();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_older_event_after_a_newer_one_is_still_just_a_trigger() {
    let mut h = Harness::new("ev-order", &[]).await;
    h.start(&["ev-order/s3"], 1).await;
    h.send(&api_call(
        "PutSecretValue",
        "ev-order/s3",
        None,
        "2026-12-01T12:00:00Z",
    ))
    .await;
    let newer = h.next_batch(Duration::from_secs(10)).await;
    newer.done.send(()).unwrap();
    h.wait_empty(Duration::from_secs(5)).await;
    // Delivered late, from an hour earlier: values are read fresh, so it triggers the same.
    h.send(&api_call(
        "PutSecretValue",
        "ev-order/s3",
        None,
        "2026-12-01T11:00:00Z",
    ))
    .await;
    let older = h.next_batch(Duration::from_secs(10)).await;
    assert_eq!(older.paths, newer.paths);
    older.done.send(()).unwrap();
    h.wait_empty(Duration::from_secs(5)).await;
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_done_leaves_the_message_to_come_back() {
    let mut h = Harness::new("ev-redeliver", &[("VisibilityTimeout", "1")]).await;
    h.start(&["ev-redeliver/s3"], 1).await;
    h.send(&put_secret_value("ev-redeliver/s3", None)).await;
    let first = h.next_batch(Duration::from_secs(10)).await;
    drop(first.done);
    // After the visibility timeout the same message is received again.
    let second = h.next_batch(Duration::from_secs(10)).await;
    assert_eq!(second.paths, set(&["ev-redeliver/s3"]));
    assert_eq!(h.total().await, 1, "not deleted before done");
    second.done.send(()).unwrap();
    h.wait_empty(Duration::from_secs(5)).await;
    assert_eq!(count("ev-redeliver", "matched"), 2.0);
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_queue_is_reported_once_backs_off_and_recovers_when_recreated() {
    let mut h = Harness::new("ev-deleted", &[]).await;
    h.start(&["ev-deleted/s3"], 1).await;
    h.send(&put_secret_value("ev-deleted/s3", None)).await;
    h.next_batch(Duration::from_secs(10))
        .await
        .done
        .send(())
        .unwrap();
    h.wait_empty(Duration::from_secs(5)).await;

    moto().delete_queue(&h.queue).await;
    let failed = |h: &Harness| {
        h.proxy
            .requests()
            .iter()
            .filter(|r| r.action == "ReceiveMessage")
            .count()
    };
    let before = failed(&h);
    // The receive in flight when the queue went away may still succeed (empty); count
    // from the first one after it.
    wait_until("a failed receive", Duration::from_secs(10), || async {
        lines_of("ev-deleted")
            .iter()
            .any(|l| l.contains("cannot receive rotation events"))
    })
    .await;
    let first_failure = Instant::now();
    // The failed receive may be the one that was in flight (already counted) or a later one.
    let at_first = failed(&h);
    assert!(at_first >= before && at_first > 0);
    wait_until("two more receives", Duration::from_secs(15), || async {
        failed(&h) >= at_first + 2
    })
    .await;
    // Backoff: at least 0.5 s + 1 s between them (1 s then 2 s, jittered to 50–100 %).
    assert!(
        first_failure.elapsed() >= Duration::from_millis(1400),
        "no backoff: {:?}",
        first_failure.elapsed()
    );

    let errors: Vec<String> = lines_of("ev-deleted")
        .into_iter()
        .filter(|l| l.contains("cannot receive rotation events"))
        .collect();
    assert_eq!(
        errors.len(),
        1,
        "one error per outage:\n{}",
        errors.join("\n")
    );
    let error = &errors[0];
    assert!(error.contains("ERROR"), "{error}");
    assert!(error.contains(&h.queue), "names the queue: {error}");
    assert!(error.contains("the queue does not exist"), "{error}");
    assert!(error.contains("check `queue_url`"), "{error}");

    // Recreated (same URL): the next receive after the backoff works again.
    moto().create_queue("ev-deleted").await;
    h.send(&put_secret_value("ev-deleted/s3", None)).await;
    let batch = h.next_batch(Duration::from_secs(20)).await;
    assert_eq!(batch.paths, set(&["ev-deleted/s3"]));
    batch.done.send(()).unwrap();
    h.wait_empty(Duration::from_secs(5)).await;
    let recovered = lines_of("ev-deleted")
        .iter()
        .filter(|l| l.contains("receiving rotation events again"))
        .count();
    assert_eq!(recovered, 1);
    assert!(authsync::metrics::metrics()
        .counter_value(
            "authsync_source_requests_total",
            &[
                ("source", "ev-deleted"),
                ("operation", "ReceiveMessage"),
                ("result", "error")
            ],
        )
        .is_some_and(|n| n >= 3.0));
    h.stop().await;
    assert_no_planted();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_and_denied_are_reported_with_what_to_check() {
    let mut h = Harness::new("ev-faults", &[]).await;
    h.proxy.set_fault(Some(ProxyFault::Down));
    h.start(&["ev-faults/s3"], 1).await;
    let logged = |what: &'static str| async move {
        lines_of("ev-faults")
            .iter()
            .any(|l| l.contains("cannot receive rotation events") && l.contains(what))
    };
    wait_until("the unreachable error", Duration::from_secs(20), || {
        logged("cannot be reached")
    })
    .await;
    // Another problem is reported again, with its own advice.
    h.proxy.set_fault(Some(ProxyFault::Status(403)));
    wait_until("the access-denied error", Duration::from_secs(30), || {
        logged("access denied")
    })
    .await;
    let denied = lines_of("ev-faults")
        .into_iter()
        .find(|l| l.contains("access denied"))
        .unwrap();
    assert!(denied.contains("sqs:ReceiveMessage"), "{denied}");

    h.proxy.set_fault(None);
    h.send(&put_secret_value("ev-faults/s3", None)).await;
    let batch = h.next_batch(Duration::from_secs(70)).await;
    batch.done.send(()).unwrap();
    assert!(lines_of("ev-faults")
        .iter()
        .any(|l| l.contains("receiving rotation events again")));
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_the_consumer_promptly_in_the_middle_of_a_long_poll() {
    let mut h = Harness::new("ev-shutdown", &[]).await;
    h.start(&["ev-shutdown/s3"], 20).await;
    wait_until("a long poll in flight", Duration::from_secs(10), || async {
        h.proxy.count("ReceiveMessage") >= 1
    })
    .await;
    let took = h.stop().await;
    assert!(took < Duration::from_secs(1), "shutdown took {took:?}");
    assert_eq!(h.proxy.count("ReceiveMessage"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consumer_stops_when_the_daemon_is_gone() {
    let mut h = Harness::new("ev-gone", &[]).await;
    h.start(&["ev-gone/s3"], 1).await;
    h.rx.close();
    h.send(&put_secret_value("ev-gone/s3", None)).await;
    let task = h.task.take().unwrap();
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("the consumer ends once its batch cannot be delivered")
        .unwrap();
    // Undelivered, so not deleted.
    assert_eq!(h.total().await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_queue_costs_only_long_poll_receives() {
    let mut h = Harness::new("ev-quiet", &[]).await;
    let started = Instant::now();
    h.start(&["ev-quiet/s3"], 1).await;
    wait_until("three receives", Duration::from_secs(15), || async {
        h.proxy.count("ReceiveMessage") >= 3
    })
    .await;
    // Each call waited its second on the server: long polling, not a busy loop.
    assert!(started.elapsed() >= Duration::from_secs(2));
    h.stop().await;
    let counts = h.proxy.counts();
    assert_eq!(
        counts.keys().collect::<Vec<_>>(),
        ["ReceiveMessage"],
        "{counts:?}"
    );
    for r in h.proxy.requests() {
        assert_eq!(r.body["WaitTimeSeconds"], 1, "{:?}", r.body);
        assert_eq!(r.body["MaxNumberOfMessages"], 10, "{:?}", r.body);
        assert_eq!(r.body["QueueUrl"], h.queue.as_str(), "{:?}", r.body);
    }
    assert!(h.rx.try_recv().is_err());
    assert_eq!(
        count("ev-quiet", "matched") + count("ev-quiet", "unmapped"),
        0.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_queue_reports_counts_or_what_to_fix() {
    let h = Harness::new("ev-check", &[]).await;
    let sdk = sdk().await;
    h.send(&put_secret_value("ev-check/s3", None)).await;
    let status = events::check_queue(&sdk, &h.config(1)).await.unwrap();
    assert_eq!((status.waiting, status.in_flight), (1, 0));
    assert_eq!(h.proxy.count("GetQueueAttributes"), 1);

    moto().delete_queue(&h.queue).await;
    let err = events::check_queue(&sdk, &h.config(1)).await.unwrap_err();
    assert!(err.contains(&h.queue), "{err}");
    assert!(err.contains("the queue does not exist"), "{err}");
    h.proxy.set_fault(Some(ProxyFault::Status(403)));
    let err = events::check_queue(&sdk, &h.config(1)).await.unwrap_err();
    assert!(err.contains("access denied"), "{err}");
}
