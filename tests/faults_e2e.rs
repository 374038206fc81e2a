//! Faults, end to end: real OpenBao and moto (behind a fault-injecting proxy where a
//! store must misbehave), portal doubles with injected faults, hand-rolled HTTP servers
//! for what the double cannot play (connection resets, oversized bodies, error messages
//! that echo the request), and the real binary — `authsync run` where the scenario is
//! about the daemon, `authsync sync` where one cycle shows it.
//!
//! What every scenario proves: nothing lost (every service that could be synced is, and
//! a recovered store or portal is caught up), nothing leaked (stdout, stderr, the state
//! file and /metrics are scanned for every planted value, token, API key and password —
//! and for the `PLANTED` marker every planted value carries, which also catches a value
//! cut in half), nothing cleared by accident (a service whose secret could not be read
//! is never pushed, neither partially nor from an older cached value).
//!
//! Synchronisation is by polling (request counters, metrics, `/readyz`); the only fixed
//! waits are the "nothing more happens" windows of negative checks.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::daemon::{daemon_config, daemon_env, log_count, Daemon, TRIGGER_TOKEN};
use common::*;
use portal_double::{DoubleConfig, Fault, FaultKind, PortalDouble};
use testservers::{CountingProxy, ProxyFault};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Every value planted by these tests contains this marker, so no output may contain it
/// at all: that also catches a value cut in two by a shortened message.
const MARKER: &str = "PLANTED";
const BAD_TG: &str = "not-a-telegram-token-PLANTED";
const GOOD_TG: &str = "333333333:AAgammaPLANTEDtokenZZZZZZZZZZZZZZZZZZZZ";

// ------------------------------------------------------------------------------------
// Leak scans
// ------------------------------------------------------------------------------------

/// Panics if `text` contains any planted value, `extra` value or the marker.
fn assert_clean(what: &str, text: &str, extra: &[&str]) {
    for (i, secret) in PLANTED
        .iter()
        .chain([&TRIGGER_TOKEN, &BAD_TG, &GOOD_TG])
        .chain(extra.iter())
        .enumerate()
    {
        assert!(
            !text.contains(secret),
            "planted secret #{i} leaked into {what}:\n{text}"
        );
    }
    if let Some(at) = text.find(MARKER) {
        let line = text[..at].matches('\n').count() + 1;
        panic!("a fragment of a planted secret leaked into {what} (line {line}):\n{text}");
    }
}

fn state_text(w: &World) -> String {
    let path = w.dir.path().join("state.json");
    if path.is_dir() {
        return String::new();
    }
    std::fs::read_to_string(path).unwrap_or_default()
}

/// One-shot `authsync` run; scans its output and the state file.
async fn one_shot(w: &World, cfg: &Path, args: &[&str], extra: &[&str]) -> Run {
    let run = authsync(cfg, args, &w.env).await;
    assert_clean("stdout", &run.stdout, extra);
    assert_clean("stderr", &run.stderr, extra);
    assert_clean("the state file", &state_text(w), extra);
    run
}

/// Stops the daemon (SIGTERM → exit 0) and scans its output, the state file and
/// /metrics. Returns the output.
async fn finish(w: &World, d: Daemon, extra: &[&str]) -> String {
    let metrics = d.metrics_text().await;
    let (code, output) = d.stop().await;
    assert_eq!(code, 0, "SIGTERM exits 0:\n{output}");
    assert_clean("the daemon's output", &output, extra);
    assert_clean("/metrics", &metrics, extra);
    assert_clean("the state file", &state_text(w), extra);
    output
}

// ------------------------------------------------------------------------------------
// Configs, daemons, counters
// ------------------------------------------------------------------------------------

async fn start_daemon(w: &World, text: &str, listen: &str, tag: &str) -> Daemon {
    let cfg = w.write(&format!("{tag}.toml"), text);
    let mut d = Daemon::start(&cfg, &daemon_env(w), listen, tag).await;
    d.wait_ready().await;
    d
}

/// Portal timeouts of 1 s instead of 3 s (faults that time out stay short).
fn fast_timeouts(text: &str) -> String {
    text.replace("timeout = \"3s\"", "timeout = \"1s\"")
}

/// POSTs per service seen by a double.
fn post_counts(double: &PortalDouble) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for (service, _) in posted(double) {
        *counts.entry(service).or_insert(0) += 1;
    }
    counts
}

fn posts_for(double: &PortalDouble, service: &str) -> usize {
    post_counts(double).get(service).copied().unwrap_or(0)
}

fn gets(double: &PortalDouble) -> usize {
    double.count("GET", AUTHSERVICE)
}

async fn value_is(double: &PortalDouble, service: &str, prop: &str, want: &str) -> bool {
    double.value(service, prop).as_deref() == Some(want)
}

async fn out_of_sync(d: &Daemon, portal: &str, service: &str) -> f64 {
    d.metric(
        "authsync_out_of_sync",
        &[("portal", portal), ("service", service)],
    )
    .await
}

const GOOGLE_ONLY: &str = r#"
[[map]]
service = "google"
props.googleClientId = "vault:secret/oauth/google#client_id"
props.googleClientSecret = "vault:secret/oauth/google#client_secret"
"#;

/// Reseeds a restarted (empty) dev OpenBao with the standard Vault secrets.
async fn reseed_vault(w: &World, google_secret: &str) {
    w.rotate_google(google_secret).await;
    w.bao.enable_kv1("kv1").await;
    w.bao
        .kv1_put("kv1", "telegram/alpha", &[("token", TG_ALPHA)])
        .await;
    w.bao
        .kv1_put("kv1", "telegram/beta", &[("token", TG_BETA)])
        .await;
}

// ------------------------------------------------------------------------------------
// A hand-rolled HTTP/1.1 server for faults the portal double cannot play
// ------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Raw {
    /// Reads the request, then resets the connection (RST) without answering.
    Reset,
    /// 200 with a JSON-looking body of `len` bytes, with or without a Content-Length
    /// (without: the body ends when the connection closes).
    Huge { len: usize, declared: bool },
    /// GET: a DocSpace listing with an unset `google`; POST: an error whose message
    /// echoes the request body after padding, so that a message cut at 300 characters
    /// would cut a value in two. As HTTP 400, or (`in_envelope`) as HTTP 200 with
    /// `status: 1` in the envelope.
    Echo { in_envelope: bool },
}

struct RawServer {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl RawServer {
    async fn start(kind: Raw) -> RawServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind raw");
        let addr = listener.local_addr().expect("raw addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&hits);
        let task = tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            loop {
                while conns.try_join_next().is_some() {}
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let counter = Arc::clone(&counter);
                conns.spawn(async move {
                    let _ = serve_raw(stream, kind, counter).await;
                });
            }
        });
        RawServer { addr, hits, task }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for RawServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Reads one request: (method, body). `None` when the client closed the connection.
async fn read_request(stream: &mut TcpStream) -> Option<(String, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let method = head.split(' ').next().unwrap_or_default().to_string();
    let len = head
        .lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = buf[head_end..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Some((method, body))
}

fn json_response(status: &str, body: &str) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

async fn serve_raw(
    mut stream: TcpStream,
    kind: Raw,
    hits: Arc<AtomicUsize>,
) -> std::io::Result<()> {
    while let Some((method, body)) = read_request(&mut stream).await {
        hits.fetch_add(1, Ordering::SeqCst);
        match kind {
            Raw::Reset => {
                stream.set_zero_linger()?;
                return Ok(());
            }
            Raw::Huge { len, declared } => {
                let head = if declared {
                    format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {len}\r\n\r\n")
                } else {
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
                        .to_string()
                };
                stream.write_all(head.as_bytes()).await?;
                stream.write_all(b"{\"response\":\"").await?;
                let block = vec![b'A'; 64 * 1024];
                let mut left = len.saturating_sub(13);
                while left > 0 {
                    let n = left.min(block.len());
                    stream.write_all(&block[..n]).await?;
                    left -= n;
                }
                return Ok(());
            }
            Raw::Echo { .. } if method == "GET" => {
                let listing = serde_json::json!({
                    "response": [{
                        "name": "google", "title": "Google", "canSet": true, "paid": false,
                        "props": [
                            {"name": "googleClientId", "value": "", "title": "Client ID", "type": "text"},
                            {"name": "googleClientSecret", "value": "", "title": "Client secret", "type": "text"}
                        ]
                    }],
                    "count": 1, "status": 0, "statusCode": 200
                });
                let answer = json_response("200 OK", &listing.to_string());
                stream.write_all(answer.as_bytes()).await?;
            }
            Raw::Echo { in_envelope } => {
                let echoed = String::from_utf8_lossy(&body).to_string();
                // Cut at 300 characters, the message would end two characters after
                // the last marker: inside a value.
                let last = echoed.rfind(MARKER).unwrap_or(0) + MARKER.len() + 2;
                let pad = "x".repeat(300usize.saturating_sub(last + 20));
                let message = format!("{pad}Invalid value in: {echoed}");
                let envelope = serde_json::json!({
                    "error": {"message": message, "type": "System.ArgumentException"},
                    "status": 1, "statusCode": 400
                });
                let status = if in_envelope {
                    "200 OK"
                } else {
                    "400 Bad Request"
                };
                let answer = json_response(status, &envelope.to_string());
                stream.write_all(answer.as_bytes()).await?;
            }
        }
    }
    Ok(())
}

// ====================================================================================
// Sources
// ====================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_stopped_mid_run_skips_only_its_services_and_catches_up_when_back() {
    let mut w = World::start().await;
    let (text, listen) = daemon_config(&w, "interval = \"1s\"", STANDARD_MAPS);
    let d = start_daemon(&w, &text, &listen, "vstop").await;
    assert!(value_is(&w.alpha, "google", "googleClientSecret", GOOGLE_SECRET).await);

    w.bao.stop().await;
    d.wait_for("google out of sync", Duration::from_secs(10), || async {
        out_of_sync(&d, "alpha", "google").await == 1.0
    })
    .await;
    // AWS keeps working while Vault is down.
    w.clear_requests();
    w.moto
        .put_secret_value("docspace/backup-s3", &s3_json(S3_ACCESS, S3_SECRET_2))
        .await;
    d.wait_for("the AWS rotation", Duration::from_secs(10), || async {
        value_is(&w.alpha, "s3", "secretaccesskey", S3_SECRET_2).await
            && value_is(&w.beta, "s3", "secretaccesskey", S3_SECRET_2).await
    })
    .await;
    // Nothing was sent for the Vault services, and the portals keep their values.
    for double in [&w.alpha, &w.beta] {
        assert_eq!(posts_for(double, "google"), 0, "{}", d.output());
        assert_eq!(posts_for(double, "telegram"), 0, "{}", d.output());
    }
    assert!(value_is(&w.alpha, "google", "googleClientSecret", GOOGLE_SECRET).await);
    assert!(value_is(&w.beta, "telegram", "telegramBotToken", TG_BETA).await);
    let output = d.output();
    assert!(
        output.contains("vault:secret/oauth/google") && output.contains("unavailable"),
        "the skip names the secret and the cause:\n{output}"
    );

    // Vault returns (a fresh dev server, reseeded with a rotated secret): caught up.
    w.bao.restart().await;
    reseed_vault(&w, GOOGLE_SECRET_2).await;
    d.wait_for(
        "the Vault services after the restart",
        Duration::from_secs(15),
        || async {
            value_is(&w.alpha, "google", "googleClientSecret", GOOGLE_SECRET_2).await
                && value_is(&w.beta, "google", "googleClientSecret", GOOGLE_SECRET_2).await
                && out_of_sync(&d, "alpha", "google").await == 0.0
        },
    )
    .await;
    assert_eq!(posts_for(&w.alpha, "telegram"), 0, "telegram never changed");
    finish(&w, d, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_sealed_at_start_skips_its_services_and_the_daemon_recovers_after_unseal() {
    let w = World::start().await;
    w.bao.seal().await;

    // One-shot while sealed: AWS services synced, Vault services skipped, nothing sent.
    let cfg = w.write("s.toml", &w.standard_config());
    let run = one_shot(&w, &cfg, &["sync"], &[]).await;
    assert_eq!(run.code, 1, "{}", run.output());
    assert!(run.output().contains("sealed"), "{}", run.output());
    assert_eq!(w.alpha.value("s3", "acesskey").as_deref(), Some(S3_ACCESS));
    for double in [&w.alpha, &w.beta] {
        assert_eq!(posts_for(double, "google"), 0);
        assert_eq!(posts_for(double, "telegram"), 0);
    }

    // A daemon started while Vault is sealed must pick Vault up once it is unsealed,
    // without a restart or a reload.
    let (text, listen) = daemon_config(&w, "interval = \"1s\"", STANDARD_MAPS);
    let d = start_daemon(&w, &text, &listen, "sealed").await;
    assert_eq!(out_of_sync(&d, "alpha", "google").await, 1.0);
    w.bao.unseal().await;
    d.wait_for(
        "google after the unseal",
        Duration::from_secs(20),
        || async {
            value_is(&w.alpha, "google", "googleClientSecret", GOOGLE_SECRET).await
                && value_is(&w.beta, "telegram", "telegramBotToken", TG_BETA).await
        },
    )
    .await;
    finish(&w, d, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_vault_times_out_cleanly_and_a_merely_slow_one_still_works() {
    let w = World::start().await;
    let proxy = CountingProxy::start(&w.bao.addr()).await;
    let text = w
        .standard_config()
        .replace(&w.bao.addr(), &proxy.url())
        .replacen(
            "kind = \"vault\"\n",
            "kind = \"vault\"\ntimeout = \"1s\"\n",
            1,
        );
    let cfg = w.write("slow.toml", &text);

    // Slower than the timeout: the Vault services are skipped, the rest is synced.
    proxy.set_fault(Some(ProxyFault::Delay(Duration::from_secs(3))));
    let started = Instant::now();
    let run = one_shot(&w, &cfg, &["sync"], &[]).await;
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{}", run.output());
    assert!(run.stdout.contains("SKIPPED"), "{}", run.output());
    assert!(run.output().contains("timed out"), "{}", run.output());
    for double in [&w.alpha, &w.beta] {
        assert_eq!(posts_for(double, "google"), 0);
        assert_eq!(posts_for(double, "telegram"), 0);
        assert_eq!(double.value("s3", "acesskey").as_deref(), Some(S3_ACCESS));
    }
    eprintln!("sync with a 3 s Vault delay and a 1 s timeout took {took:?}");
    assert!(
        took < Duration::from_secs(25),
        "a slow Vault must not stall the cycle: {took:?}"
    );

    // Slow but within the timeout: everything is synced.
    proxy.set_fault(Some(ProxyFault::Delay(Duration::from_millis(200))));
    let run = one_shot(&w, &cfg, &["sync"], &[]).await;
    assert_eq!(run.code, 0, "{}", run.output());
    assert_eq!(
        w.beta.value("google", "googleClientSecret").as_deref(),
        Some(GOOGLE_SECRET)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_token_revoked_mid_run_skips_with_a_clear_error_and_a_new_token_file_recovers() {
    let w = World::start().await;
    w.bao
        .put_policy(
            "authsync",
            r#"
path "secret/*" { capabilities = ["read"] }
path "kv1/*" { capabilities = ["read"] }
path "sys/internal/ui/mounts/*" { capabilities = ["read"] }
"#,
        )
        .await;
    let token = w.bao.create_token(&["authsync"], "1h").await;
    let token_file = w.dir.path().join("vault-token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let (text, listen) = daemon_config(&w, "interval = \"1s\"", STANDARD_MAPS);
    let text = text.replacen(
        "kind = \"vault\"\n",
        &format!(
            "kind = \"vault\"\nauth = {{ method = \"token\", token = {{ file = \"{}\" }} }}\n",
            token_file.display()
        ),
        1,
    );
    let d = start_daemon(&w, &text, &listen, "revoked").await;
    assert!(value_is(&w.beta, "google", "googleClientSecret", GOOGLE_SECRET).await);

    w.bao.revoke_token(&token).await;
    w.rotate_google(GOOGLE_SECRET_2).await;
    w.clear_requests();
    d.wait_for(
        "google skipped after the revocation",
        Duration::from_secs(10),
        || async { out_of_sync(&d, "alpha", "google").await == 1.0 },
    )
    .await;
    d.wait_cycles(1.0, Duration::from_secs(10)).await;
    for double in [&w.alpha, &w.beta] {
        assert_eq!(posts_for(double, "google"), 0, "{}", d.output());
        assert_eq!(posts_for(double, "telegram"), 0, "{}", d.output());
        // Not cleared either.
        assert!(value_is(double, "google", "googleClientSecret", GOOGLE_SECRET).await);
    }
    let output = d.output();
    assert!(
        output.contains("invalid, expired or revoked"),
        "a revoked token is named as such, not as a policy problem:\n{output}"
    );

    // The operator drops a new token into the file: picked up without a restart.
    let fresh = w.bao.create_token(&["authsync"], "1h").await;
    std::fs::write(&token_file, format!("{fresh}\n")).unwrap();
    d.wait_for(
        "the rotation with the new token",
        Duration::from_secs(15),
        || async {
            value_is(&w.alpha, "google", "googleClientSecret", GOOGLE_SECRET_2).await
                && value_is(&w.beta, "google", "googleClientSecret", GOOGLE_SECRET_2).await
        },
    )
    .await;
    finish(&w, d, &[&token, &fresh]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_throttling_is_retried_by_the_sdk_and_persistent_throttling_skips_only_aws() {
    let w = World::start().await;
    let proxy = CountingProxy::start(&w.moto.endpoint()).await;
    let cfg = w.write(
        "t.toml",
        &w.standard_config()
            .replace(&w.moto.endpoint(), &proxy.url()),
    );

    // Two throttled answers, then fine: the SDK's retries absorb them.
    proxy.set_fault_for_next(ProxyFault::Throttle, 2);
    let run = one_shot(&w, &cfg, &["sync"], &[]).await;
    assert_eq!(run.code, 0, "{}", run.output());
    assert_eq!(
        proxy.count("BatchGetSecretValue"),
        3,
        "two throttled attempts and one that passed: {:?}",
        proxy.counts()
    );
    assert_eq!(w.alpha.value("s3", "acesskey").as_deref(), Some(S3_ACCESS));
    assert_eq!(
        w.alpha.value("googlecloud", "json").as_deref(),
        Some(GCS_JSON)
    );

    // Throttled throughout: bounded attempts, the AWS services are skipped (nothing
    // partial, nothing stale), the Vault ones still synced.
    proxy.set_fault(Some(ProxyFault::Throttle));
    proxy.reset();
    w.moto
        .put_secret_value("docspace/backup-s3", &s3_json(S3_ACCESS, S3_SECRET_2))
        .await;
    w.rotate_google(GOOGLE_SECRET_2).await;
    w.clear_requests();
    let run = one_shot(&w, &cfg, &["sync"], &[]).await;
    assert_eq!(run.code, 1, "{}", run.output());
    let attempts = proxy.count("BatchGetSecretValue");
    eprintln!("persistent throttling: {:?}", proxy.counts());
    assert!(
        (2..=5).contains(&attempts),
        "retried, but boundedly: {:?}",
        proxy.counts()
    );
    assert!(
        run.stdout.contains("ThrottlingException"),
        "{}",
        run.output()
    );
    for double in [&w.alpha, &w.beta] {
        assert_eq!(posts_for(double, "s3"), 0, "{}", run.output());
        assert_eq!(posts_for(double, "googlecloud"), 0);
        assert_eq!(
            double.value("s3", "secretaccesskey").as_deref(),
            Some(S3_SECRET)
        );
        assert_eq!(
            double.value("google", "googleClientSecret").as_deref(),
            Some(GOOGLE_SECRET_2)
        );
    }

    // The store is back: the next run pushes the new value.
    proxy.set_fault(None);
    let run = one_shot(&w, &cfg, &["sync"], &[]).await;
    assert_eq!(run.code, 0, "{}", run.output());
    assert_eq!(
        w.beta.value("s3", "secretaccesskey").as_deref(),
        Some(S3_SECRET_2)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_down_pushes_nothing_stale_retries_and_catches_up_when_back() {
    let w = World::start().await;
    let proxy = CountingProxy::start(&w.moto.endpoint()).await;
    let (text, listen) = daemon_config(&w, "interval = \"1s\"", STANDARD_MAPS);
    let text = text.replace(&w.moto.endpoint(), &proxy.url());
    let d = start_daemon(&w, &text, &listen, "awsdown").await;
    d.wait_cycles(1.0, Duration::from_secs(10)).await;

    // AWS goes down; meanwhile the secret rotates and someone edits alpha's s3 in the
    // portal. With drift = enforce, a cached (older) value must NOT be pushed back:
    // this cycle could not read the secret, so s3 is left alone.
    proxy.set_fault(Some(ProxyFault::Down));
    w.moto
        .put_secret_value("docspace/backup-s3", &s3_json(S3_ACCESS, S3_SECRET_2))
        .await;
    // From the first cycle that failed to read AWS on, every cycle runs without it.
    d.wait_for("s3 out of sync", Duration::from_secs(15), || async {
        out_of_sync(&d, "alpha", "s3").await == 1.0
    })
    .await;
    w.alpha
        .set_value("s3", "secretaccesskey", "edited-in-the-ui");
    w.clear_requests();
    proxy.reset();
    let before = log_count(&d.output(), "cycle finished");
    d.wait_cycles(2.0, Duration::from_secs(20)).await;
    let cycles = log_count(&d.output(), "cycle finished") - before;
    let attempts = proxy.requests().len();
    eprintln!(
        "AWS down: {cycles} cycles, {attempts} attempts: {:?}",
        proxy.counts()
    );
    assert!(
        attempts > cycles,
        "the SDK retries a dropped connection: {attempts} attempts in {cycles} cycles"
    );
    for double in [&w.alpha, &w.beta] {
        assert_eq!(posts_for(double, "s3"), 0, "{}", d.output());
        assert_eq!(posts_for(double, "googlecloud"), 0, "{}", d.output());
    }
    assert_eq!(
        w.alpha.value("s3", "secretaccesskey").as_deref(),
        Some("edited-in-the-ui"),
        "nothing pushed from the cache"
    );
    assert_eq!(
        w.beta.value("s3", "secretaccesskey").as_deref(),
        Some(S3_SECRET)
    );
    // The Vault services are unaffected.
    assert_eq!(out_of_sync(&d, "alpha", "google").await, 0.0);

    // AWS is back: the next cycle pushes the new value (not the cached old one).
    proxy.set_fault(None);
    d.wait_for("s3 after AWS is back", Duration::from_secs(15), || async {
        value_is(&w.alpha, "s3", "secretaccesskey", S3_SECRET_2).await
            && value_is(&w.beta, "s3", "secretaccesskey", S3_SECRET_2).await
            && out_of_sync(&d, "alpha", "s3").await == 0.0
    })
    .await;
    finish(&w, d, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_errors_never_quote_the_secret() {
    let w = World::start().await;
    // A JSON *string* (serde would quote it in "invalid type: string ..."), broken JSON,
    // a secret marked for deletion, a non-JSON file asked for a field, and a Vault
    // secret with two fields asked for its "whole value".
    w.moto
        .create_secret("docspace/json-string", "\"json-string-PLANTED-aaaa\"")
        .await;
    w.moto
        .create_secret("docspace/broken-json", "{\"id\": \"broken-PLANTED-bbbb")
        .await;
    w.moto
        .create_secret("docspace/deleted", "{\"id\": \"deleted-PLANTED-cccc\"}")
        .await;
    w.moto.delete_secret("docspace/deleted", false).await;
    let secrets = w.dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("broken.json"), "id=file-PLANTED-dddd\n").unwrap();
    let maps = format!(
        r#"
[sources.files]
kind = "files"
dir = "{}"

[[map]]
service = "box"
props.boxClientId = "aws:docspace/json-string#id"
props.boxClientSecret = "aws:docspace/broken-json#id"

[[map]]
service = "dropbox"
props.dropboxClientId = "files:broken.json#id"
props.dropboxClientSecret = "aws:docspace/deleted#id"

[[map]]
service = "zoom"
props.zoomClientId = "vault:secret/oauth/google"
props.zoomClientSecret = {{ value = "zoom-literal" }}
"#,
        secrets.display()
    );
    let cfg = w.write(
        "q.toml",
        &w.config_with(&w.alpha.url(), &w.beta.url(), &maps),
    );
    let run = one_shot(&w, &cfg, &["--log-level", "debug", "sync"], &[]).await;
    assert_eq!(run.code, 1, "{}", run.output());
    for (service, why) in [
        ("box", "is not a JSON object"),
        ("dropbox", "is not a JSON object"),
        ("dropbox", "docspace/deleted"),
        ("zoom", "has 2 fields"),
    ] {
        assert!(
            run.stdout.contains(&format!("{service} SKIPPED")) && run.stdout.contains(why),
            "{service}: {why}\n{}",
            run.output()
        );
    }
    assert_eq!(w.posts(), 0, "nothing sent for any of them");

    // The most verbose level, which libraries log at too: still nothing.
    let cfg = w.write("std.toml", &w.standard_config());
    let run = one_shot(&w, &cfg, &["--log-level", "trace", "sync"], &[]).await;
    assert_eq!(run.code, 0, "{}", run.output());
}

// ====================================================================================
// Portals
// ====================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_500_and_timeout_are_retried_within_the_cycle() {
    let w = World::start().await;
    let cfg = w.write("r.toml", &fast_timeouts(&w.standard_config()));
    // alpha: the first POST gets a 500; beta: the first GET answers after the 1 s timeout.
    w.alpha
        .inject(Fault::once(FaultKind::Status(500)).with_method("POST"));
    w.beta
        .inject(Fault::once(FaultKind::Delay(Duration::from_secs(3))).with_method("GET"));
    let run = one_shot(&w, &cfg, &["sync"], &[]).await;
    assert_eq!(run.code, 0, "{}", run.output());
    // 4 services + 1 retry of the POST that got the 500.
    assert_eq!(
        w.alpha.count("POST", AUTHSERVICE),
        5,
        "{:?}",
        post_counts(&w.alpha)
    );
    // The timed-out GET, its retry, the read-back.
    assert_eq!(gets(&w.beta), 3, "{}", run.output());
    for double in [&w.alpha, &w.beta] {
        assert_eq!(
            double.value("google", "googleClientSecret").as_deref(),
            Some(GOOGLE_SECRET)
        );
        assert_eq!(double.value("s3", "acesskey").as_deref(), Some(S3_ACCESS));
    }
    assert!(run.stderr.contains("retrying"), "{}", run.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_connection_reset_is_retried_boundedly_then_reported() {
    let w = World::start().await;
    let raw = RawServer::start(Raw::Reset).await;
    let cfg = w.write(
        "x.toml",
        &fast_timeouts(&w.config_with(&raw.url(), &w.beta.url(), STANDARD_MAPS)),
    );
    let run = one_shot(&w, &cfg, &["sync"], &[]).await;
    assert_eq!(run.code, 1, "{}", run.output());
    assert_eq!(raw.hits(), 3, "three attempts, then reported");
    assert!(
        run.stdout.contains("portal alpha: ERROR cannot connect"),
        "{}",
        run.output()
    );
    assert_eq!(w.beta.count("POST", AUTHSERVICE), 3, "beta is synced");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_429_retry_after_is_honoured() {
    let w = World::start().await;
    let cfg = w.write("r.toml", &w.standard_config());
    w.alpha.inject(
        Fault::once(FaultKind::RateLimited {
            retry_after_secs: 2,
        })
        .with_method("GET"),
    );
    let (cfg2, env) = (cfg.clone(), w.env.clone());
    let sync = tokio::spawn(async move { authsync(&cfg2, &["sync"], &env).await });
    // Time the gap between the rate-limited GET and its retry at the portal.
    let deadline = Instant::now() + Duration::from_secs(25);
    let mut first = None;
    let second = loop {
        let n = gets(&w.alpha);
        if n >= 1 && first.is_none() {
            first = Some(Instant::now());
        }
        if n >= 2 {
            break Instant::now();
        }
        assert!(Instant::now() < deadline, "no retry of the 429");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let gap = second - first.expect("first GET seen");
    let run = sync.await.expect("sync task");
    assert_clean("stdout", &run.stdout, &[]);
    assert_clean("stderr", &run.stderr, &[]);
    assert_clean("the state file", &state_text(&w), &[]);
    assert_eq!(run.code, 0, "{}", run.output());
    eprintln!("429 with Retry-After: 2 → retried after {gap:?}");
    assert!(
        // (Polling granularity and load blur the measurement a little; an exponential
        // backoff would retry after 0.25–0.5 s.)
        gap >= Duration::from_millis(1500),
        "Retry-After 2 s honoured: {gap:?}"
    );
    assert!(gap < Duration::from_secs(12), "not much longer: {gap:?}");
    assert_eq!(
        w.alpha.value("google", "googleClientId").as_deref(),
        Some(GOOGLE_ID)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_refusals_401_402_403_and_garbage_are_reported_once_not_retried() {
    let w = World::start_with(
        double_config(ALPHA_KEY),
        DoubleConfig {
            paid_allowed: false,
            ..double_config(BETA_KEY)
        },
    )
    .await;
    let cfg = w.write("r.toml", &w.standard_config());

    // alpha: the API key was revoked (401); beta: a plan without paid services (402).
    w.alpha.revoke_api_key(ALPHA_KEY);
    let run = one_shot(&w, &cfg, &["sync"], &[]).await;
    assert_eq!(run.code, 1, "{}", run.output());
    assert!(
        run.stdout.contains("portal alpha: ERROR 401 Unauthorized"),
        "{}",
        run.output()
    );
    assert_eq!(gets(&w.alpha), 1, "a 401 is not retried");
    assert_eq!(w.alpha.count("POST", AUTHSERVICE), 0);
    assert!(run.stdout.contains("s3 FAILED: 402"), "{}", run.output());
    assert_eq!(posts_for(&w.beta, "s3"), 1, "a 402 is not retried");
    assert_eq!(
        w.beta.value("google", "googleClientId").as_deref(),
        Some(GOOGLE_ID)
    );

    // beta: every POST refused with 403.
    w.beta
        .inject(Fault::new(FaultKind::Status(403)).with_method("POST"));
    w.rotate_google(GOOGLE_SECRET_2).await;
    w.clear_requests();
    let run = one_shot(&w, &cfg, &["sync"], &[]).await;
    assert_eq!(run.code, 1, "{}", run.output());
    assert!(run.stdout.contains("403 Forbidden"), "{}", run.output());
    assert_eq!(
        post_counts(&w.beta),
        BTreeMap::from([("google".to_string(), 1), ("s3".to_string(), 1)]),
        "one POST per refused service"
    );
    assert_eq!(
        w.beta.value("google", "googleClientSecret").as_deref(),
        Some(GOOGLE_SECRET)
    );

    // beta: a 200 whose body is not JSON.
    w.beta.clear_faults();
    w.beta
        .inject(Fault::new(FaultKind::Garbage).with_method("GET"));
    w.clear_requests();
    let run = one_shot(&w, &cfg, &["sync"], &[]).await;
    assert_eq!(run.code, 1, "{}", run.output());
    assert!(
        run.stdout
            .contains("portal beta: ERROR invalid response: the body (17 bytes) is not JSON"),
        "{}",
        run.output()
    );
    assert_eq!(gets(&w.beta), 1);
    assert_eq!(w.beta.count("POST", AUTHSERVICE), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_portal_bodies_give_a_clear_error_not_a_parse_error() {
    let w = World::start().await;
    let nine_mib = 9 * 1024 * 1024;
    let declared = RawServer::start(Raw::Huge {
        len: nine_mib,
        declared: true,
    })
    .await;
    let streamed = RawServer::start(Raw::Huge {
        len: nine_mib,
        declared: false,
    })
    .await;
    let cfg = w.write(
        "h.toml",
        &w.config_with(&declared.url(), &streamed.url(), STANDARD_MAPS),
    );
    let run = one_shot(&w, &cfg, &["sync"], &[]).await;
    assert_eq!(run.code, 1, "{}", run.output());
    for portal in ["alpha", "beta"] {
        assert!(
            run.stdout.contains(&format!(
                "portal {portal}: ERROR invalid response: the response body is larger than 8 MiB"
            )),
            "{portal}: {}",
            run.output()
        );
    }
    assert!(!run.stdout.contains("is not JSON"), "{}", run.output());
    assert_eq!(declared.hits(), 1, "not retried");
    assert_eq!(streamed.hits(), 1, "not retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_that_never_answers_times_out_and_the_other_is_synced() {
    let w = World::start().await;
    let cfg = w.write("h.toml", &fast_timeouts(&w.standard_config()));
    w.alpha.inject(Fault::new(FaultKind::Hang));
    let started = Instant::now();
    let run = one_shot(&w, &cfg, &["sync"], &[]).await;
    let took = started.elapsed();
    assert_eq!(run.code, 1, "{}", run.output());
    assert!(
        run.stdout
            .contains("portal alpha: ERROR no answer within 1s"),
        "{}",
        run.output()
    );
    let hung: Vec<_> = w
        .alpha
        .requests()
        .into_iter()
        .filter(|r| r.path == AUTHSERVICE)
        .collect();
    assert_eq!(hung.len(), 3, "three attempts: {hung:?}");
    assert!(hung.iter().all(|r| r.status == 0 && r.method == "GET"));
    assert_eq!(w.beta.count("POST", AUTHSERVICE), 3);
    eprintln!("sync with a hanging portal (1 s timeout, 3 attempts) took {took:?}");
    assert!(took < Duration::from_secs(25), "{took:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_error_messages_that_echo_the_request_are_scrubbed_whole() {
    let w = World::start().await;
    let echo = RawServer::start(Raw::Echo { in_envelope: false }).await;
    let in_envelope = RawServer::start(Raw::Echo { in_envelope: true }).await;
    let cfg = w.write(
        "e.toml",
        &w.config_with(&echo.url(), &in_envelope.url(), GOOGLE_ONLY),
    );
    let run = one_shot(&w, &cfg, &["--log-level", "debug", "sync"], &[]).await;
    assert_eq!(run.code, 1, "{}", run.output());
    assert_eq!(
        run.stdout
            .matches("google REFUSED by the portal: 400 Bad Request")
            .count(),
        2,
        "{}",
        run.output()
    );
    assert!(run.stdout.contains("**REDACTED**"), "{}", run.output());
    assert_eq!(
        echo.hits(),
        3,
        "GET, POST, read-back GET; a 400 is not retried"
    );
    assert_eq!(
        in_envelope.hits(),
        3,
        "GET, POST, read-back GET; not retried"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_is_one_incident_not_a_post_every_cycle() {
    let w = World::start().await;
    w.bao
        .kv1_put("kv1", "telegram/alpha", &[("token", BAD_TG)])
        .await;
    let (text, listen) = daemon_config(&w, "interval = \"1s\"", STANDARD_MAPS);
    let d = start_daemon(&w, &text, &listen, "badkeys").await;
    let incident =
        "INCIDENT: the portal refused the values; they are held until the source changes";
    d.wait_cycles(5.0, Duration::from_secs(25)).await;

    // The token stays bad for 5+ cycles: one POST, one incident, not one per cycle.
    let output = d.output();
    assert_eq!(
        posts_for(&w.alpha, "telegram"),
        1,
        "the same rejected values are not pushed again:\n{output}"
    );
    assert_eq!(log_count(&output, incident), 1, "{output}");
    assert_eq!(
        d.metric(
            "authsync_bad_keys_total",
            &[("portal", "alpha"), ("service", "telegram")]
        )
        .await,
        1.0
    );
    assert_eq!(out_of_sync(&d, "alpha", "telegram").await, 1.0);
    assert_eq!(out_of_sync(&d, "beta", "telegram").await, 0.0);
    assert_eq!(
        w.alpha.value("telegram", "telegramBotToken").as_deref(),
        Some("")
    );
    let state: serde_json::Value = serde_json::from_str(&state_text(&w)).expect("state JSON");
    assert_eq!(
        state["portals"]["alpha"]["services"]["telegram"]["result"], "held",
        "{state}"
    );
    // A plain trigger does not push held values again…
    assert_eq!(d.trigger(Some(TRIGGER_TOKEN), None).await, 202);
    d.wait_cycles(d.cycles().await + 1.0, Duration::from_secs(10))
        .await;
    assert_eq!(posts_for(&w.alpha, "telegram"), 1, "{}", d.output());

    // …one that asks for it tries once more (e.g. after the third party's outage).
    assert_eq!(
        d.trigger(Some(TRIGGER_TOKEN), Some(r#"{"retry_refused": true}"#))
            .await,
        202
    );
    d.wait_for("the triggered retry", Duration::from_secs(10), || async {
        posts_for(&w.alpha, "telegram") == 2
    })
    .await;
    d.wait_cycles(2.0, Duration::from_secs(15)).await;
    assert_eq!(posts_for(&w.alpha, "telegram"), 2, "{}", d.output());

    // The source is fixed: pushed on the next cycle.
    w.bao
        .kv1_put("kv1", "telegram/alpha", &[("token", GOOD_TG)])
        .await;
    d.wait_for("the fixed token", Duration::from_secs(10), || async {
        value_is(&w.alpha, "telegram", "telegramBotToken", GOOD_TG).await
            && out_of_sync(&d, "alpha", "telegram").await == 0.0
    })
    .await;
    assert_eq!(posts_for(&w.alpha, "telegram"), 3);
    assert_eq!(posts_for(&w.beta, "telegram"), 1);
    finish(&w, d, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_portal_that_goes_away_and_comes_back_empty_is_refilled() {
    let mut w = World::start().await;
    let (text, listen) = daemon_config(&w, "interval = \"1h\"\ndrift = \"ignore\"", STANDARD_MAPS);
    let d = start_daemon(&w, &text, &listen, "away").await;
    assert_eq!(posts_for(&w.beta, "google"), 1);

    // beta goes down (its connections are closed): reported, alpha unaffected.
    let beta_addr = w.beta.addr();
    let placeholder = PortalDouble::start(double_config(BETA_KEY)).await.unwrap();
    drop(std::mem::replace(&mut w.beta, placeholder));
    w.rotate_google(GOOGLE_SECRET_2).await;
    assert_eq!(d.trigger(Some(TRIGGER_TOKEN), None).await, 202);
    d.wait_for("beta out of sync", Duration::from_secs(15), || async {
        out_of_sync(&d, "beta", "google").await == 1.0
    })
    .await;
    assert!(value_is(&w.alpha, "google", "googleClientSecret", GOOGLE_SECRET_2).await);

    // beta comes back on the same address, empty (e.g. restored from an old backup):
    // even in drift = "ignore" everything is pushed again, since nothing is confirmed.
    let started = Instant::now();
    let fresh = loop {
        match PortalDouble::start(DoubleConfig {
            listen: Some(beta_addr),
            ..double_config(BETA_KEY)
        })
        .await
        {
            Ok(double) => break double,
            Err(e) => {
                assert!(started.elapsed() < Duration::from_secs(10), "rebind: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    w.beta = fresh;
    w.alpha.clear_requests();
    assert_eq!(d.trigger(Some(TRIGGER_TOKEN), None).await, 202);
    d.wait_for("beta refilled", Duration::from_secs(15), || async {
        value_is(&w.beta, "google", "googleClientSecret", GOOGLE_SECRET_2).await
            && value_is(&w.beta, "telegram", "telegramBotToken", TG_BETA).await
            && value_is(&w.beta, "s3", "secretaccesskey", S3_SECRET).await
            && out_of_sync(&d, "beta", "google").await == 0.0
    })
    .await;
    assert_eq!(w.alpha.count("POST", AUTHSERVICE), 0, "alpha was in sync");
    finish(&w, d, &[]).await;
}

// ====================================================================================
// Crash safety
// ====================================================================================

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_cycle_then_restart_pushes_exactly_what_was_not_confirmed() {
    let w = World::start().await;
    let (text, listen) = daemon_config(&w, "interval = \"1h\"\ndrift = \"ignore\"", STANDARD_MAPS);
    let cfg = w.write("k.toml", &text);
    let mut d = Daemon::start(&cfg, &daemon_env(&w), &listen, "k1").await;
    d.wait_ready().await;
    assert_eq!(w.posts(), 7);

    // Two rotations; beta's POSTs hang, so the cycle is stuck on beta once alpha is done.
    w.rotate_google(GOOGLE_SECRET_2).await;
    w.moto
        .put_secret_value("docspace/backup-s3", &s3_json(S3_ACCESS, S3_SECRET_2))
        .await;
    w.beta
        .inject(Fault::new(FaultKind::Hang).with_method("POST"));
    w.clear_requests();
    assert_eq!(d.trigger(Some(TRIGGER_TOKEN), None).await, 202);
    d.wait_for(
        "alpha pushed and verified, beta's first POST in flight",
        Duration::from_secs(15),
        || async {
            let alpha_done = posts_for(&w.alpha, "google") == 1
                && posts_for(&w.alpha, "s3") == 1
                && gets(&w.alpha) >= 2;
            alpha_done && w.beta.count("POST", AUTHSERVICE) >= 1
        },
    )
    .await;
    let killed_output = d.kill().await;
    assert_clean("the killed daemon's output", &killed_output, &[]);
    // The state file is intact (written only between cycles, atomically).
    let (state, err) = authsync::state::State::load(&w.dir.path().join("state.json"));
    assert!(err.is_none(), "{err:?}");
    assert_eq!(state.portals.len(), 2);

    // Restart: beta's unconfirmed google and s3 are pushed once; nothing that alpha
    // already holds is pushed again, nothing else is touched.
    w.beta.clear_faults();
    w.clear_requests();
    let mut d = Daemon::start(&cfg, &daemon_env(&w), &listen, "k2").await;
    d.wait_ready().await;
    assert_eq!(
        post_counts(&w.alpha),
        BTreeMap::new(),
        "alpha already holds the new values:\n{}",
        d.output()
    );
    assert_eq!(
        post_counts(&w.beta),
        BTreeMap::from([("google".to_string(), 1), ("s3".to_string(), 1)]),
        "{}",
        d.output()
    );
    for double in [&w.alpha, &w.beta] {
        assert!(value_is(double, "google", "googleClientSecret", GOOGLE_SECRET_2).await);
        assert!(value_is(double, "s3", "secretaccesskey", S3_SECRET_2).await);
    }
    // And a further cycle is quiet.
    w.clear_requests();
    let before = d.cycles().await;
    assert_eq!(d.trigger(Some(TRIGGER_TOKEN), None).await, 202);
    d.wait_for("the triggered cycle", Duration::from_secs(10), || async {
        d.cycles().await > before
    })
    .await;
    assert_eq!(w.posts(), 0, "{}", d.output());
    finish(&w, d, &[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_state_files_are_survived_without_a_crash_loop_or_needless_posts() {
    let w = World::start().await;
    let (text, listen) = daemon_config(&w, "interval = \"1s\"", STANDARD_MAPS);
    let cfg = w.write("c.toml", &text);
    assert_eq!(one_shot(&w, &cfg, &["sync"], &[]).await.code, 0);
    let state_path = w.dir.path().join("state.json");

    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let variants: [(&str, Vec<u8>, &str); 4] = [
        ("garbage bytes", garbage, "not valid JSON"),
        (
            "an unknown format",
            br#"{"format": 99, "portals": {}}"#.to_vec(),
            "unknown format 99",
        ),
        (
            "the wrong shape",
            br#"{"format": 1, "portals": {"alpha": {"services": {"google": {"confirmed": 5, "result": 1}}}}}"#
                .to_vec(),
            "unexpected content",
        ),
        ("an empty file", Vec::new(), "not valid JSON"),
    ];
    for (i, (what, bytes, reason)) in variants.into_iter().enumerate() {
        std::fs::write(&state_path, &bytes).unwrap();
        w.clear_requests();
        let mut d = Daemon::start(&cfg, &daemon_env(&w), &listen, &format!("c{i}")).await;
        d.wait_ready().await;
        d.wait_cycles(1.0, Duration::from_secs(10)).await;
        assert!(d.is_running(), "{what}: still running");
        assert_eq!(w.posts(), 0, "{what}: nothing re-pushed:\n{}", d.output());
        let output = finish(&w, d, &[]).await;
        assert_eq!(
            log_count(&output, "state file unusable"),
            1,
            "{what}:\n{output}"
        );
        assert!(
            output.contains("is corrupt") && output.contains(reason),
            "{what}: {reason}\n{output}"
        );
        let (state, err) = authsync::state::State::load(&state_path);
        assert!(
            err.is_none() && state.portals.len() == 2,
            "{what}: state rewritten"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_in_place_of_the_state_file_is_survived() {
    let w = World::start().await;
    let (text, listen) = daemon_config(&w, "interval = \"1s\"", STANDARD_MAPS);
    let cfg = w.write("dir.toml", &text);
    assert_eq!(one_shot(&w, &cfg, &["sync"], &[]).await.code, 0);
    let state_path = w.dir.path().join("state.json");
    std::fs::remove_file(&state_path).unwrap();
    std::fs::create_dir(&state_path).unwrap();
    std::fs::write(state_path.join("keep"), "x").unwrap();

    // (Tests run as root, so a chmod 000 file would still be readable; a directory is
    // unreadable as a file and cannot be replaced by a rename, whoever we are.)
    let run = one_shot(&w, &cfg, &["sync"], &[]).await;
    assert_eq!(
        run.code,
        1,
        "the state could not be saved: {}",
        run.output()
    );
    assert!(run.stderr.contains("state not saved"), "{}", run.output());

    w.clear_requests();
    let mut d = Daemon::start(&cfg, &daemon_env(&w), &listen, "dir").await;
    d.wait_ready().await;
    d.wait_cycles(2.0, Duration::from_secs(15)).await;
    assert!(d.is_running());
    assert_eq!(w.posts(), 0, "the portals are compared, not re-pushed");
    let output = finish(&w, d, &[]).await;
    assert!(output.contains("cannot read state file"), "{output}");
    assert!(
        log_count(
            &output,
            "state not saved; a restart will compare every portal afresh"
        ) >= 2,
        "{output}"
    );
    assert!(state_path.is_dir());
}

// ====================================================================================
// HTTP surface
// ====================================================================================

/// Status, headers and body of one request, as text for leak scans.
async fn http_text(req: reqwest::RequestBuilder) -> (u16, String) {
    let resp = req
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let headers = format!("{:?}", resp.headers());
    let body = resp.text().await.unwrap_or_default();
    (status, format!("{status} {headers}\n{body}"))
}

/// A raw POST /trigger with a chunked body of `len` bytes; the status line's code.
async fn chunked_trigger(addr: &str, token: &str, len: usize) -> u16 {
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let head = format!(
        "POST /trigger HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    );
    let _ = s.write_all(head.as_bytes()).await;
    let chunk = vec![b' '; 4096];
    let mut sent = 0;
    while sent < len {
        let n = chunk.len().min(len - sent);
        if s.write_all(format!("{n:x}\r\n").as_bytes()).await.is_err()
            || s.write_all(&chunk[..n]).await.is_err()
            || s.write_all(b"\r\n").await.is_err()
        {
            break;
        }
        sent += n;
    }
    let _ = s.write_all(b"0\r\n\r\n").await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut answer)).await;
    let text = String::from_utf8_lossy(&answer);
    assert_clean("a /trigger answer", &text, &[]);
    text.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_tokens_body_limits_and_no_endpoint_reveals_a_value() {
    let w = World::start().await;
    let (text, listen) = daemon_config(&w, "interval = \"1h\"", STANDARD_MAPS);
    let d = start_daemon(&w, &text, &listen, "http").await;
    let http = reqwest::Client::new();
    let url = |p: &str| format!("{}{p}", d.http);
    let mut answers = Vec::new();
    let cycles = d.cycles().await;

    // Wrong credentials: 401, whatever their shape; none starts a cycle.
    let wrong: Vec<(&str, String)> = vec![
        ("no header", String::new()),
        ("another token", "Bearer trigger-token-wrong".into()),
        (
            "a prefix",
            format!("Bearer {}", &TRIGGER_TOKEN[..TRIGGER_TOKEN.len() - 1]),
        ),
        ("a suffix", format!("Bearer {TRIGGER_TOKEN}x")),
        ("another scheme", format!("Basic {TRIGGER_TOKEN}")),
        ("no token", "Bearer".into()),
        ("an empty token", "Bearer ".into()),
        ("the raw token", TRIGGER_TOKEN.to_string()),
    ];
    for (what, header) in &wrong {
        let mut req = http.post(url("/trigger"));
        if !header.is_empty() {
            req = req.header("Authorization", header.as_str());
        }
        let (status, text) = http_text(req).await;
        assert_eq!(status, 401, "{what}: {text}");
        answers.push(text);
    }
    // A wrong token with a big body: refused before the body is read.
    let (status, text) = http_text(
        http.post(url("/trigger"))
            .bearer_auth("trigger-token-wrong")
            .body(vec![b'{'; 256 * 1024]),
    )
    .await;
    assert_eq!(status, 401);
    answers.push(text);

    // The right token: bodies over 16 KiB are refused (declared or chunked).
    let (status, text) = http_text(
        http.post(url("/trigger"))
            .bearer_auth(TRIGGER_TOKEN)
            .header("content-type", "application/json")
            .body(format!("{{\"portals\": [\"{}\"]}}", "a".repeat(20 * 1024))),
    )
    .await;
    assert_eq!(status, 413, "{text}");
    answers.push(text);
    assert_eq!(
        chunked_trigger(&listen, TRIGGER_TOKEN, 20 * 1024).await,
        413
    );
    // Invalid JSON and unknown fields: 400, the token not echoed.
    for body in [
        r#"{"portals": "alpha"}"#,
        r#"{"portal": ["alpha"]}"#,
        "[]",
        "{",
    ] {
        let (status, text) = http_text(
            http.post(url("/trigger"))
                .bearer_auth(TRIGGER_TOKEN)
                .header("content-type", "application/json")
                .body(body),
        )
        .await;
        assert_eq!(status, 400, "{body}: {text}");
        answers.push(text);
    }
    // A bearer scheme in any letter case works.
    let (status, text) = http_text(
        http.post(url("/trigger"))
            .header("Authorization", format!("bEaReR {TRIGGER_TOKEN}")),
    )
    .await;
    assert_eq!(status, 202, "{text}");
    answers.push(text);
    d.wait_for(
        "the one accepted trigger",
        Duration::from_secs(10),
        || async { d.cycles().await >= cycles + 1.0 },
    )
    .await;
    assert_eq!(
        d.cycles().await,
        cycles + 1.0,
        "only the accepted trigger ran"
    );

    for path in ["/metrics", "/healthz", "/readyz", "/nope", "/trigger"] {
        let (status, text) = http_text(http.get(url(path))).await;
        let want = match path {
            "/nope" => 404,
            "/trigger" => 405,
            _ => 200,
        };
        assert_eq!(status, want, "{path}: {text}");
        answers.push(text);
    }
    for text in &answers {
        assert_clean("an HTTP answer", text, &[]);
    }
    let output = finish(&w, d, &[]).await;
    assert_eq!(
        log_count(&output, "trigger rejected: missing or wrong bearer token"),
        wrong.len() + 1
    );
}

/// Sends `GET /healthz` (keep-alive) on `s` and reads one response; its status.
async fn healthz_on(s: &mut TcpStream) -> Option<u16> {
    s.write_all(b"GET /healthz HTTP/1.1\r\nHost: authsync\r\n\r\n")
        .await
        .ok()?;
    read_status(s).await
}

async fn read_status(s: &mut TcpStream) -> Option<u16> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_string();
            let len: usize = head
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).await.ok()?;
                if n == 0 {
                    return None;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            return head.split(' ').nth(1).and_then(|c| c.parse().ok());
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_are_bounded_extra_clients_wait_and_served_ones_keep_working() {
    let w = World::start().await;
    let (text, listen) = daemon_config(&w, "interval = \"1h\"", STANDARD_MAPS);
    let d = start_daemon(&w, &text, &listen, "conns").await;
    const MAX: usize = 512; // src/server/mod.rs MAX_CONNECTIONS
    const OPEN: usize = MAX + 6;

    let mut conns = Vec::new();
    for _ in 0..OPEN {
        conns.push(TcpStream::connect(&listen).await.expect("connect"));
    }
    // Every connection asks for /healthz at once; at most MAX are being served. (Within
    // less than the 5 s header deadline, after which idle served ones are closed.)
    let results = futures::future::join_all(conns.iter_mut().map(|s| async move {
        tokio::time::timeout(Duration::from_secs(2), healthz_on(s))
            .await
            .ok()
            .flatten()
    }))
    .await;
    let served: Vec<usize> = (0..OPEN).filter(|i| results[*i] == Some(200)).collect();
    let waiting: Vec<usize> = (0..OPEN).filter(|i| results[*i].is_none()).collect();
    eprintln!("{} served, {} waiting", served.len(), waiting.len());
    assert!(
        served.len() <= MAX && served.len() >= MAX - 8,
        "{} served",
        served.len()
    );
    assert_eq!(served.len() + waiting.len(), OPEN, "{results:?}");
    // A served connection keeps working while others wait.
    assert_eq!(healthz_on(&mut conns[served[0]]).await, Some(200));

    // Ten served clients leave: the waiting ones are served (queued, not refused).
    let mut keep = Vec::new();
    for (i, s) in conns.into_iter().enumerate() {
        if served[..10].contains(&i) {
            drop(s);
        } else {
            keep.push((i, s));
        }
    }
    for (i, s) in keep.iter_mut() {
        if waiting.contains(i) {
            let status = tokio::time::timeout(Duration::from_secs(10), read_status(s))
                .await
                .ok()
                .flatten();
            assert_eq!(status, Some(200), "connection {i} served after others left");
        }
    }
    drop(keep);
    d.wait_for("a fresh client", Duration::from_secs(10), || async {
        d.metrics_text().await.contains("authsync_build_info")
    })
    .await;
    finish(&w, d, &[]).await;
}
