//! Rotation-latency benchmark: `cargo bench --bench events` (options after `--`).
//!
//! Starts real OpenBao and moto (Secrets Manager and SQS), N in-process portal doubles
//! answering with injected latency, and the real `authsync run` binary with an hour-long
//! schedule, so only an event or a trigger can move a value. One AWS secret (service `s3`)
//! and one Vault KV v2 secret (service `google`) are mapped to every portal. It then
//! measures, from the outside:
//! - the AWS event path: `PutSecretValue`, then an EventBridge `PutSecretValue` event on
//!   the daemon's SQS queue; from sending the event until every portal holds the new value,
//! - the targeted trigger path: `kv put` on OpenBao, then `POST /trigger` naming the
//!   secret; from sending the trigger until every portal holds the new value,
//!
//! each rotation starting only after the previous one landed (and its cycle finished), and
//! prints the median and p99 of each next to the target, and the daemon's own
//! `authsync_propagation_seconds` per source. Options: `--portals N` (100),
//! `--latency-ms L` (20), `--rotations R` (20).

use std::path::Path;
use std::time::{Duration, Instant};

use portal_double::{ApiKey, DoubleConfig, PortalDouble};
use serde_json::json;
use testservers::{Moto, OpenBao};

const KEY: &str = "sk-bench-admin";
const TRIGGER_TOKEN: &str = "bench-trigger-token";
const AWS_SECRET: &str = "docspace/backup-s3";
const VAULT_PATH: &str = "oauth/google";
const GOOGLE_ID: &str = "google-client-id-bench";
const QUEUE: &str = "authsync-rotation-bench";
/// How often the doubles are checked for the new value.
const POLL: Duration = Duration::from_millis(5);
/// How long one rotation may take before the benchmark gives up.
const ROTATION_LIMIT: Duration = Duration::from_secs(60);
const TARGET: Duration = Duration::from_secs(1);

struct Args {
    portals: usize,
    latency: Duration,
    rotations: usize,
}

fn args() -> Args {
    let mut a = Args {
        portals: 100,
        latency: Duration::from_millis(20),
        rotations: 20,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let next = argv.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match (argv[i].as_str(), next) {
            ("--portals", Some(v)) => a.portals = (v as usize).max(1),
            ("--latency-ms", Some(v)) => a.latency = Duration::from_millis(v),
            ("--rotations", Some(v)) => a.rotations = (v as usize).max(1),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

/// `authsync run` as a child process, its output in a file (shown if it fails).
struct Daemon {
    child: tokio::process::Child,
    http: String,
    client: reqwest::Client,
    log: std::path::PathBuf,
}

impl Daemon {
    fn start(config: &Path, env: &[(String, String)], listen: &str) -> Daemon {
        let log = config.with_extension("log");
        let out = std::fs::File::create(&log).expect("create the daemon's log file");
        let err = out.try_clone().expect("clone the daemon's log file");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_authsync"))
            .arg("-c")
            .arg(config)
            .args(["--log-format", "json", "run"])
            .env_remove("RUST_LOG")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(out)
            .stderr(err)
            .kill_on_drop(true)
            .spawn()
            .expect("start authsync run");
        Daemon {
            child,
            http: format!("http://{listen}"),
            client: reqwest::Client::new(),
            log,
        }
    }

    /// The last lines the daemon printed, for a failure message.
    fn tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    fn fail(&mut self, what: &str) -> ! {
        let exited = match self.child.try_wait() {
            Ok(Some(status)) => format!(" (daemon exited: {status})"),
            _ => String::new(),
        };
        panic!("{what}{exited}; the daemon's last lines:\n{}", self.tail());
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let resp = self
            .client
            .get(format!("{}{path}", self.http))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.text().await.unwrap_or_default()))
    }

    async fn wait_ready(&mut self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            if let Some((200, _)) = self.get("/readyz").await {
                return;
            }
            if matches!(self.child.try_wait(), Ok(Some(_))) || Instant::now() > deadline {
                self.fail("the daemon did not become ready");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn metrics(&self) -> String {
        self.get("/metrics")
            .await
            .map(|(_, t)| t)
            .unwrap_or_default()
    }

    /// Completed cycles so far.
    async fn cycles(&self) -> f64 {
        metric(&self.metrics().await, "authsync_sync_runs_total", None)
    }

    /// Waits until at least `n` cycles have completed.
    async fn wait_cycles(&mut self, n: f64, within: Duration) {
        let deadline = Instant::now() + within;
        while self.cycles().await < n {
            if Instant::now() > deadline {
                self.fail(&format!(
                    "fewer than {n} cycles completed within {within:?}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// POST /trigger naming the secrets; returns the status.
    async fn trigger(&self, body: &str) -> u16 {
        self.client
            .post(format!("{}/trigger", self.http))
            .bearer_auth(TRIGGER_TOKEN)
            .header("content-type", "application/json")
            .body(body.to_string())
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = std::process::Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
        }
        let _ = tokio::time::timeout(Duration::from_secs(20), self.child.wait()).await;
    }
}

/// Sum of the samples of `name` (exact name, before `{`), with `source="…"` if given.
fn metric(text: &str, name: &str, source: Option<&str>) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, labels) = series.split_once('{').unwrap_or((series, ""));
            if metric != name {
                return None;
            }
            if let Some(s) = source {
                if !labels.contains(&format!("source=\"{s}\"")) {
                    return None;
                }
            }
            value.parse::<f64>().ok()
        })
        .sum()
}

/// `authsync_propagation_seconds` (sum, count) of one source.
fn propagation(text: &str, source: &str) -> (f64, f64) {
    (
        metric(text, "authsync_propagation_seconds_sum", Some(source)),
        metric(text, "authsync_propagation_seconds_count", Some(source)),
    )
}

/// Polls the doubles every [`POLL`] until each holds `want` in every one of `props` of
/// `service`; returns when the last one did. A double that holds it keeps it (nothing
/// else writes), so it is not checked again.
async fn all_hold(
    doubles: &[PortalDouble],
    service: &str,
    props: &[(&str, &str)],
    started: Instant,
) -> Duration {
    let mut next = 0;
    loop {
        while next < doubles.len()
            && props
                .iter()
                .all(|(prop, want)| doubles[next].value(service, prop).as_deref() == Some(*want))
        {
            next += 1;
        }
        if next == doubles.len() {
            return started.elapsed();
        }
        if started.elapsed() > ROTATION_LIMIT {
            panic!(
                "{service}: portal {next} of {} still without the new value after {ROTATION_LIMIT:?}",
                doubles.len()
            );
        }
        tokio::time::sleep(POLL).await;
    }
}

fn s3_json(i: usize) -> String {
    json!({
        "access_key_id": format!("AKIABENCH{i:06}"),
        "secret_access_key": format!("s3-bench-secret-{i:06}"),
    })
    .to_string()
}

/// Median and p99 (nearest rank: the maximum below 100 samples).
fn stats(samples: &[Duration]) -> (f64, f64) {
    let mut s: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
    s.sort_by(f64::total_cmp);
    let n = s.len();
    let median = if n % 2 == 0 {
        (s[n / 2 - 1] + s[n / 2]) / 2.0
    } else {
        s[n / 2]
    };
    let rank = (n as f64 * 0.99).ceil() as usize;
    (median, s[rank.clamp(1, n) - 1])
}

fn report(label: &str, portals: usize, samples: &[Duration]) {
    let (median, p99) = stats(samples);
    let verdict = if p99 <= TARGET.as_secs_f64() {
        "PASS"
    } else {
        "MISS"
    };
    let min = samples.iter().min().copied().unwrap_or_default();
    println!(
        "  {verdict} {label} → {portals} portals confirmed: median {median:.2} s, p99 {p99:.2} s \
         (target p99 ≤ {} s; min {:.2} s, {} rotations)",
        TARGET.as_secs(),
        min.as_secs_f64(),
        samples.len()
    );
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(run(a));
}

async fn run(a: Args) {
    println!(
        "authsync events benchmark: {} portals, {} ms portal latency, {} rotations per path, \
         interval = \"1h\"",
        a.portals,
        a.latency.as_millis(),
        a.rotations
    );
    let (bao, moto) = tokio::join!(OpenBao::start(), Moto::start());
    let queue = moto.create_queue(QUEUE).await;
    bao.kv2_put(
        "secret",
        VAULT_PATH,
        &[
            ("client_id", GOOGLE_ID),
            ("client_secret", "google-bench-0"),
        ],
    )
    .await;
    let arn = moto.create_secret(AWS_SECRET, &s3_json(0)).await;

    let mut doubles = Vec::with_capacity(a.portals);
    for _ in 0..a.portals {
        let config = DoubleConfig {
            api_keys: vec![ApiKey {
                key: KEY.into(),
                write: true,
                admin: true,
            }],
            ..Default::default()
        };
        let d = PortalDouble::start_with_latency(config, a.latency)
            .await
            .expect("portal double");
        doubles.push(d);
    }

    let dir = tempfile::tempdir().expect("temp dir");
    let listen = format!("127.0.0.1:{}", testservers::free_port());
    let mut text = format!(
        "[sync]\ninterval = \"1h\"\nstate_file = \"{state}\"\n\n\
         [server]\nlisten = \"{listen}\"\ntrigger_token = {{ env = \"TRIGGER_TOKEN\" }}\n\n\
         [sources.vault]\nkind = \"vault\"\naddress = \"{bao}\"\n\n\
         [sources.aws]\nkind = \"aws\"\nendpoint_url = \"{moto}\"\nregion = \"us-east-1\"\n\
         events = {{ queue_url = \"{queue}\", endpoint_url = \"{moto}\", wait_time = \"1s\" }}\n",
        state = dir.path().join("state.json").display(),
        bao = bao.addr(),
        moto = moto.endpoint(),
    );
    for (i, d) in doubles.iter().enumerate() {
        text.push_str(&format!(
            "\n[portals.p{i:04}]\nurl = \"{}\"\napi_key = {{ env = \"BENCH_KEY\" }}\ntimeout = \"10s\"\n",
            d.url()
        ));
    }
    text.push_str(&format!(
        "\n[[map]]\nservice = \"google\"\n\
         props.googleClientId = \"vault:secret/{VAULT_PATH}#client_id\"\n\
         props.googleClientSecret = \"vault:secret/{VAULT_PATH}#client_secret\"\n\
         \n[[map]]\nservice = \"s3\"\n\
         props.acesskey = \"aws:{AWS_SECRET}#access_key_id\"\n\
         props.secretaccesskey = \"aws:{AWS_SECRET}#secret_access_key\"\n"
    ));
    let cfg = dir.path().join("events.toml");
    std::fs::write(&cfg, &text).expect("write config");
    let mut env = moto.env();
    env.push(("VAULT_TOKEN".into(), bao.root_token().to_string()));
    env.push(("BENCH_KEY".into(), KEY.into()));
    env.push(("TRIGGER_TOKEN".into(), TRIGGER_TOKEN.into()));

    // Start-up: ready, the initial push on every portal, and its cycle finished.
    let started = Instant::now();
    let mut d = Daemon::start(&cfg, &env, &listen);
    d.wait_ready(Duration::from_secs(300)).await;
    all_hold(
        &doubles,
        "google",
        &[("googleClientSecret", "google-bench-0")],
        Instant::now(),
    )
    .await;
    all_hold(
        &doubles,
        "s3",
        &[("secretaccesskey", "s3-bench-secret-000000")],
        Instant::now(),
    )
    .await;
    d.wait_cycles(1.0, Duration::from_secs(60)).await;
    println!(
        "  initial push to {} portals done, daemon ready: {:.2} s after start",
        a.portals,
        started.elapsed().as_secs_f64()
    );
    let before = d.metrics().await;

    // 1. The AWS event path.
    let mut aws = Vec::with_capacity(a.rotations);
    for i in 1..=a.rotations {
        let cycles = d.cycles().await;
        moto.put_secret_value(AWS_SECRET, &s3_json(i)).await;
        let access = format!("AKIABENCH{i:06}");
        let secret = format!("s3-bench-secret-{i:06}");
        let sent = Instant::now();
        moto.send_message(
            &queue,
            &testservers::put_secret_value_event(&arn, i).to_string(),
        )
        .await;
        let took = all_hold(
            &doubles,
            "s3",
            &[
                ("acesskey", access.as_str()),
                ("secretaccesskey", secret.as_str()),
            ],
            sent,
        )
        .await;
        aws.push(took);
        // Landed: let its cycle finish and its message go before the next rotation.
        d.wait_cycles(cycles + 1.0, Duration::from_secs(60)).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        while moto.queue_counts(&queue).await.total() > 0 {
            if Instant::now() > deadline {
                d.fail("the event's message was not deleted within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let after_aws = d.metrics().await;

    // 2. The targeted trigger path (Vault).
    let body = format!(r#"{{"secrets":["vault:secret/{VAULT_PATH}"]}}"#);
    let mut vault = Vec::with_capacity(a.rotations);
    for i in 1..=a.rotations {
        let cycles = d.cycles().await;
        let value = format!("google-bench-{i}");
        bao.kv2_put(
            "secret",
            VAULT_PATH,
            &[("client_id", GOOGLE_ID), ("client_secret", &value)],
        )
        .await;
        let sent = Instant::now();
        let status = d.trigger(&body).await;
        if status != 202 {
            d.fail(&format!("POST /trigger answered {status}, not 202"));
        }
        let took = all_hold(
            &doubles,
            "google",
            &[("googleClientSecret", value.as_str())],
            sent,
        )
        .await;
        vault.push(took);
        d.wait_cycles(cycles + 1.0, Duration::from_secs(60)).await;
    }
    let after = d.metrics().await;
    d.stop().await;

    println!("\nfrom sending the event / trigger until every portal holds the new value (polled every {} ms):", POLL.as_millis());
    report("event", a.portals, &aws);
    report("trigger", a.portals, &vault);
    let list = |s: &[Duration]| {
        s.iter()
            .map(|d| format!("{:.2}", d.as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" ")
    };
    println!("  event samples (s):   {}", list(&aws));
    println!("  trigger samples (s): {}", list(&vault));

    println!("\nauthsync_propagation_seconds (daemon-measured: source version created → confirmed on a portal):");
    for source in ["aws", "vault"] {
        let (sum, count) = propagation(&after, source);
        let mean = if count > 0.0 { sum / count } else { f64::NAN };
        println!(
            "  source=\"{source}\": sum {sum:.3} s, count {count} (mean {mean:.3} s), whole run"
        );
    }
    for (source, from, to) in [("aws", &before, &after_aws), ("vault", &after_aws, &after)] {
        let (s0, c0) = propagation(from, source);
        let (s1, c1) = propagation(to, source);
        let (sum, count) = (s1 - s0, c1 - c0);
        let mean = if count > 0.0 { sum / count } else { f64::NAN };
        println!(
            "  source=\"{source}\": sum {sum:.3} s, count {count} (mean {mean:.3} s), its rotations only"
        );
    }
    println!(
        "  (moto stamps a version's creation in whole seconds, so aws figures carry 0–1 s extra; \
         vault's include the time from kv put to the trigger)"
    );
}
