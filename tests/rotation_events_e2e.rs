//! Rotation in about a second, end to end through the daemon: an AWS Secrets Manager
//! event on a real (moto) SQS queue, and a targeted trigger after `bao kv put`, each
//! reaching the portal doubles without waiting for the (hour-long) schedule.

mod common;

use std::time::Duration;

use common::daemon::{daemon_config, daemon_env, log_count, Daemon, TRIGGER_TOKEN};
use common::*;
use serde_json::json;

const NEW_ACCESS: &str = "AKIAROTATED-PLANTED-4545";
const NEW_SECRET: &str = "s3-secret-ROTATED-PLANTED-4646";
const NEW_GOOGLE: &str = "google-client-secret-ROTATED-PLANTED-4747";

fn extra() -> [&'static str; 4] {
    [NEW_ACCESS, NEW_SECRET, NEW_GOOGLE, TRIGGER_TOKEN]
}

/// A `PutSecretValue` event for `secret_id`, carrying the new value where CloudTrail
/// records request data (it must never reach a log).
fn put_secret_value_event(secret_id: &str) -> String {
    let mut event = testservers::put_secret_value_event(secret_id, 1);
    event["detail"]["requestParameters"]["secretString"] = NEW_SECRET.into();
    event.to_string()
}

/// The world's daemon config with `events` on the AWS source and an hour-long schedule,
/// so only an event (or a trigger) can move a value.
fn config_with_events(w: &World, queue_url: &str) -> (String, String) {
    let (text, listen) = daemon_config(w, "interval = \"1h\"", STANDARD_MAPS);
    let events = format!(
        "region = \"us-east-1\"\nevents = {{ queue_url = \"{queue_url}\", endpoint_url = \"{}\", wait_time = \"1s\" }}\n",
        w.moto.endpoint()
    );
    (
        text.replacen("region = \"us-east-1\"\n", &events, 1),
        listen,
    )
}

fn s3_posts(d: &portal_double::PortalDouble) -> usize {
    posted(d).iter().filter(|(s, _)| s == "s3").count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_aws_rotation_event_reaches_every_portal_without_waiting_for_the_schedule() {
    let w = World::start().await;
    let queue = w.moto.create_queue("authsync-rotation").await;
    let (text, listen) = config_with_events(&w, &queue);
    let cfg = w.write("events.toml", &text);
    let mut d = Daemon::start(&cfg, &daemon_env(&w), &listen, "events").await;
    d.wait_ready().await;
    let cycles = d.cycles().await;
    let (s3_alpha, s3_beta) = (s3_posts(&w.alpha), s3_posts(&w.beta));
    let google = posted(&w.alpha).len() - s3_alpha;

    // Rotate, then tell the queue (by ARN, as EventBridge does).
    w.moto
        .put_secret_value("docspace/backup-s3", &s3_json(NEW_ACCESS, NEW_SECRET))
        .await;
    let described = w
        .moto
        .call(
            "DescribeSecret",
            json!({ "SecretId": "docspace/backup-s3" }),
        )
        .await;
    let arn = described["ARN"].as_str().expect("an ARN").to_string();
    w.moto
        .send_message(&queue, &put_secret_value_event(&arn))
        .await;
    d.wait_for(
        "the new key on both portals",
        Duration::from_secs(20),
        || async {
            w.alpha.value("s3", "acesskey").as_deref() == Some(NEW_ACCESS)
                && w.beta.value("s3", "acesskey").as_deref() == Some(NEW_ACCESS)
        },
    )
    .await;
    assert_eq!(
        w.beta.value("s3", "secretaccesskey").as_deref(),
        Some(NEW_SECRET)
    );
    // One targeted cycle: only s3 was pushed, once per portal.
    assert_eq!(s3_posts(&w.alpha), s3_alpha + 1);
    assert_eq!(s3_posts(&w.beta), s3_beta + 1);
    assert_eq!(posted(&w.alpha).len() - s3_posts(&w.alpha), google);
    d.wait_for("the message deleted", Duration::from_secs(20), || async {
        w.moto.queue_counts(&queue).await.total() == 0
    })
    .await;
    assert_eq!(d.cycles().await, cycles + 1.0, "one cycle for the event");
    assert_eq!(
        d.metric(
            "authsync_events_total",
            &[("source", "aws"), ("result", "matched")]
        )
        .await,
        1.0
    );
    // Propagation: one observation per confirmed portal/service from the first cycle
    // (s3 and gcs on alpha, s3 on beta) and two more for the event.
    let observed = d
        .metric("authsync_propagation_seconds_count", &[("source", "aws")])
        .await;
    assert!(observed >= 5.0, "propagation observations: {observed}");

    // The status page names the queue (host and name; no account id).
    let status: serde_json::Value = reqwest::get(format!("http://{listen}/status.json"))
        .await
        .expect("GET /status.json")
        .json()
        .await
        .expect("status JSON");
    assert_eq!(
        status["daemon"]["events"][0]["queue"], "authsync-rotation",
        "{status}"
    );
    assert!(!status.to_string().contains("123456789012"), "{status}");

    let output = d.stop().await.1;
    assert_no_planted(&output, "the daemon's output", &extra());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_targeted_trigger_after_bao_kv_put_reaches_only_the_users_of_that_secret() {
    let w = World::start().await;
    let (text, listen) = daemon_config(&w, "interval = \"1h\"", STANDARD_MAPS);
    let cfg = w.write("trigger.toml", &text);
    let mut d = Daemon::start(&cfg, &daemon_env(&w), &listen, "targeted").await;
    d.wait_ready().await;
    w.alpha.clear_requests();
    w.beta.clear_requests();

    w.rotate_google(NEW_GOOGLE).await;
    // A reference no map uses is refused, naming it; nothing is queued.
    assert_eq!(
        d.trigger(
            Some(TRIGGER_TOKEN),
            Some(r#"{"secrets": ["vault:secret/oauth/nope"]}"#)
        )
        .await,
        400
    );
    assert_eq!(
        d.trigger(
            Some(TRIGGER_TOKEN),
            Some(r#"{"secrets": ["vault:secret/oauth/google"]}"#)
        )
        .await,
        202
    );
    d.wait_for(
        "the new secret on both portals",
        Duration::from_secs(20),
        || async {
            w.alpha.value("google", "googleClientSecret").as_deref() == Some(NEW_GOOGLE)
                && w.beta.value("google", "googleClientSecret").as_deref() == Some(NEW_GOOGLE)
        },
    )
    .await;
    // Read fresh, pushed once, and nothing else was pushed.
    for p in [&w.alpha, &w.beta] {
        let services: Vec<String> = posted(p).into_iter().map(|(s, _)| s).collect();
        assert_eq!(services, vec!["google".to_string()]);
    }
    assert!(
        d.metric("authsync_propagation_seconds_count", &[("source", "vault")])
            .await
            >= 4.0,
        "google on both portals at start and after the trigger"
    );
    let output = d.stop().await.1;
    assert_no_planted(&output, "the daemon's output", &extra());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_probes_the_events_queue() {
    let w = World::start().await;
    let queue = w.moto.create_queue("authsync-check").await;
    let no_trigger = |t: String| t.replace("trigger_token = { env = \"TRIGGER_TOKEN\" }\n", "");
    let (text, _) = config_with_events(&w, &queue);
    let cfg = w.write("ok.toml", &no_trigger(text));
    let run = w.run(&cfg, &["check", "--online"]).await;
    assert_eq!(run.code, 0, "{}", run.output());
    assert!(
        run.stdout
            .contains("source aws: events queue reachable (0 waiting"),
        "{}",
        run.output()
    );

    let gone = queue.replace("authsync-check", "authsync-no-such-queue");
    let (text, _) = config_with_events(&w, &gone);
    let cfg = w.write("gone.toml", &no_trigger(text));
    let run = w.run(&cfg, &["check", "--online"]).await;
    assert_eq!(run.code, 1, "{}", run.output());
    assert!(
        run.stdout.contains("error: source aws: events queue")
            && run.stdout.contains("authsync-no-such-queue"),
        "{}",
        run.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_keeps_an_unchanged_consumer_restarts_a_changed_one_and_sigterm_stops_it() {
    let w = World::start().await;
    // A message SQS hands to a poll that was dropped (a restarted consumer) comes back
    // after the visibility timeout: 1 s here.
    let queue = w
        .moto
        .create_queue_with("authsync-reload", &[("VisibilityTimeout", "1")])
        .await;
    let (text, listen) = config_with_events(&w, &queue);
    // Long polls of 20 s: shutdown must not wait for one to end.
    let text = text.replace("wait_time = \"1s\"", "wait_time = \"20s\"");
    let cfg = w.write("reload.toml", &text);
    let mut d = Daemon::start(&cfg, &daemon_env(&w), &listen, "reload").await;
    d.wait_ready().await;
    let (listening, reloaded) = ("listening for rotation events", "config reloaded");

    // Unchanged: the consumer keeps its long poll.
    d.signal("HUP");
    d.wait_for("the reload", Duration::from_secs(20), || async {
        log_count(&d.output(), reloaded) == 1
    })
    .await;
    assert_eq!(log_count(&d.output(), listening), 1, "{}", d.output());

    // Changed (another wait time): a new consumer, and it delivers.
    let changed = text.replace("wait_time = \"20s\"", "wait_time = \"19s\"");
    std::fs::write(&cfg, changed).expect("rewrite config");
    d.signal("HUP");
    d.wait_for(
        "the consumer restarted",
        Duration::from_secs(20),
        || async { log_count(&d.output(), listening) == 2 },
    )
    .await;
    w.moto
        .put_secret_value("docspace/backup-s3", &s3_json(NEW_ACCESS, NEW_SECRET))
        .await;
    w.moto
        .send_message(&queue, &put_secret_value_event("docspace/backup-s3"))
        .await;
    d.wait_for(
        "the new key on both portals",
        Duration::from_secs(30),
        || async {
            w.alpha.value("s3", "acesskey").as_deref() == Some(NEW_ACCESS)
                && w.beta.value("s3", "acesskey").as_deref() == Some(NEW_ACCESS)
        },
    )
    .await;

    // SIGTERM in the middle of a long poll: the daemon does not wait for it.
    let started = std::time::Instant::now();
    let (code, output) = d.stop().await;
    assert_eq!(code, 0, "{output}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "stopping waited for the long poll: {:?}",
        started.elapsed()
    );
    assert_no_planted(&output, "the daemon's output", &extra());
}
