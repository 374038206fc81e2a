//! Scale and cost benchmark: `cargo bench --bench scale` (options after `--`).
//!
//! Starts real OpenBao (with an audit log, to count what Vault is asked) and moto (behind
//! a counting proxy), N in-process portal doubles answering with injected latency, seeds
//! the secrets, and runs the real `authsync run` binary (release build) against them. It
//! then measures, from the servers' side:
//! - the initial push of every (portal, service),
//! - a quiet scheduled cycle with `drift = "enforce"` and with `drift = "ignore"`,
//! - a rotation cycle (one Vault and one AWS secret changed),
//! - the docs' example approach (sequential GET + POST per service per portal) on a sample
//!   of the same doubles, extrapolated linearly to all portals,
//! - the daemon's RSS (idle and peak), startup-to-first-cycle time and binary size,
//!
//! and prints each figure next to its target. Options: `--portals N` (1000),
//! `--services S` (20, even), `--latency-ms L` (20), `--naive-sample K` (10),
//! `--concurrency C` (unset: the default, 16).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use portal_double::{ApiKey, DoubleConfig, PortalDouble, ServiceSpec};
use serde_json::Value;
use testservers::{CountingProxy, Moto, OpenBao};

const KEY: &str = "sk-bench-admin";
const AUTHSERVICE: &str = "/api/2.0/settings/authservice";

struct Args {
    portals: usize,
    services: usize,
    latency: Duration,
    naive_sample: usize,
    concurrency: Option<usize>,
}

fn args() -> Args {
    let mut a = Args {
        portals: 1000,
        services: 20,
        latency: Duration::from_millis(20),
        naive_sample: 10,
        concurrency: None,
    };
    let argv: Vec<String> = std::env::args().collect();
    let mut i = 1;
    while i < argv.len() {
        let next = argv.get(i + 1).and_then(|v| v.parse::<u64>().ok());
        match (argv[i].as_str(), next) {
            ("--portals", Some(v)) => a.portals = v as usize,
            ("--services", Some(v)) => a.services = (v as usize).max(2) / 2 * 2,
            ("--latency-ms", Some(v)) => a.latency = Duration::from_millis(v),
            ("--naive-sample", Some(v)) => a.naive_sample = v as usize,
            ("--concurrency", Some(v)) => a.concurrency = Some(v as usize),
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

/// The daemon as a child process, its JSON log lines arriving on a channel.
struct Daemon {
    child: Child,
    lines: mpsc::Receiver<(Instant, Value)>,
    started: Instant,
}

impl Daemon {
    fn start(config: &Path, env: &[(String, String)]) -> Daemon {
        let started = Instant::now();
        // AUTHSYNC_BENCH_WRAP="valgrind --tool=massif --pages-as-heap=yes …" runs the
        // daemon under a profiler (jemalloc's entry points are not malloc's, so massif
        // sees its pages, not its objects).
        // AUTHSYNC_BENCH_BIN=path runs another build (e.g. one with symbols for it).
        let wrap = std::env::var("AUTHSYNC_BENCH_WRAP").unwrap_or_default();
        let bin = std::env::var("AUTHSYNC_BENCH_BIN")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_authsync").to_string());
        let mut words = wrap.split_whitespace();
        let mut cmd = match words.next() {
            Some(tool) => {
                let mut c = Command::new(tool);
                c.args(words).arg(&bin);
                c
            }
            None => Command::new(&bin),
        };
        let mut child = cmd
            .arg("-c")
            .arg(config)
            .args(["--log-format", "json", "run"])
            .env(
                "RUST_LOG",
                "info,authsync::sync=debug,authsync::portal=info",
            )
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start authsync run");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            // AUTHSYNC_BENCH_LOG=path keeps the daemon's log.
            let mut keep = std::env::var("AUTHSYNC_BENCH_LOG")
                .ok()
                .and_then(|p| std::fs::File::create(p).ok());
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(f) = keep.as_mut() {
                    use std::io::Write;
                    let _ = writeln!(f, "{line}");
                }
                if let Ok(v) = serde_json::from_str::<Value>(&line) {
                    if tx.send((Instant::now(), v)).is_err() {
                        break;
                    }
                }
            }
        });
        Daemon {
            child,
            lines,
            started,
        }
    }

    /// Waits for the next log line with this message.
    fn next(&self, message: &str, within: Duration) -> (Instant, Value) {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok((at, v)) if v["message"] == message => return (at, v),
                Ok((_, v)) if v["level"] == "ERROR" => eprintln!("daemon error: {v}"),
                Ok(_) => {}
                Err(_) => panic!("no `{message}` log line within {within:?}"),
            }
        }
    }

    fn status(&self, field: &str) -> u64 {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        text.lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

/// Counts seen by every server since the last reset.
struct Counts {
    gets: usize,
    posts: usize,
    vault: BTreeMap<String, usize>,
    aws: BTreeMap<String, usize>,
    aws_batch_ids: Vec<usize>,
}

fn counts(
    doubles: &[PortalDouble],
    audit: &testservers::AuditLog,
    proxy: &CountingProxy,
) -> Counts {
    let mut vault = BTreeMap::new();
    for e in audit.requests().into_iter().filter(|e| !e.harness) {
        let kind = if e.path.contains("/metadata/") {
            "metadata read"
        } else if e.path.contains("/data/") {
            "value read"
        } else if e.path.starts_with("sys/internal/ui/mounts") {
            "mount lookup"
        } else {
            "other"
        };
        *vault.entry(kind.to_string()).or_insert(0) += 1;
    }
    let aws_batch_ids = proxy
        .requests()
        .iter()
        .filter(|r| r.action == "BatchGetSecretValue")
        .map(|r| r.body["SecretIdList"].as_array().map_or(0, Vec::len))
        .collect();
    Counts {
        gets: doubles.iter().map(|d| d.count("GET", AUTHSERVICE)).sum(),
        posts: doubles.iter().map(|d| d.count("POST", AUTHSERVICE)).sum(),
        vault,
        aws: proxy.counts(),
        aws_batch_ids,
    }
}

fn reset(doubles: &[PortalDouble], audit: &mut testservers::AuditLog, proxy: &CountingProxy) {
    for d in doubles {
        d.clear_requests();
    }
    audit.mark();
    proxy.reset();
}

fn show(label: &str, c: &Counts, cycle: &Value) {
    println!(
        "  {label:<28} wall {:>6} ms | portals: {:>5} GET {:>6} POST | vault {:?} | aws {:?} batches {:?}",
        cycle["duration_ms"], c.gets, c.posts, c.vault, c.aws, c.aws_batch_ids
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "PASS"
    } else {
        "MISS"
    }
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

/// The portal's real services (DocSpace v3.7.1, `appleid` first: GET lists it as
/// `appleID`, POST takes `appleid`), then synthetic ones past its 19. Validation with the
/// third party is off: this measures scale, not Telegram's token check.
fn catalogue(n: usize) -> Vec<ServiceSpec> {
    let mut services: Vec<ServiceSpec> = portal_double::docspace_catalogue()
        .into_iter()
        .take(n)
        .map(|mut s| {
            s.validated = portal_double::Validation::None;
            s
        })
        .collect();
    for k in services.len()..n {
        services.push(ServiceSpec::new(
            &format!("svc{k:02}"),
            &format!("Service {k}"),
            &["id", "secret"],
        ));
    }
    services
}

async fn run(a: Args) {
    println!(
        "authsync scale benchmark: {} portals x {} services, {} ms portal latency",
        a.portals,
        a.services,
        a.latency.as_millis()
    );
    let (bao, moto) = tokio::join!(OpenBao::start(), Moto::start());
    let proxy = CountingProxy::start(&moto.endpoint()).await;
    let mut audit = bao.enable_audit().await;

    // Half the services read Vault KV v2, half AWS; every portal uses the same secrets.
    let half = a.services / 2;
    for k in 0..half {
        bao.kv2_put(
            "secret",
            &format!("bench/svc{k:02}"),
            &[("id", &format!("id-{k}")), ("secret", &format!("v1-{k}"))],
        )
        .await;
        moto.create_secret(
            &format!("bench/svc{:02}", k + half),
            &format!(r#"{{"id":"id-{k}","secret":"v1-{k}"}}"#),
        )
        .await;
    }
    let services = catalogue(a.services);
    let mut doubles = Vec::with_capacity(a.portals);
    for _ in 0..a.portals {
        let config = DoubleConfig {
            services: services.clone(),
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
    let mut text = format!(
        "[sync]\ninterval = \"20s\"\ndrift = \"enforce\"\nstate_file = \"{}\"\n{}\n[server]\nlisten = \"127.0.0.1:{}\"\n\n[sources.vault]\nkind = \"vault\"\naddress = \"{}\"\n\n[sources.aws]\nkind = \"aws\"\nendpoint_url = \"{}\"\nregion = \"us-east-1\"\n",
        dir.path().join("state.json").display(),
        a.concurrency.map(|c| format!("concurrency = {c}")).unwrap_or_default(),
        testservers::free_port(),
        bao.addr(),
        proxy.url(),
    );
    for (i, d) in doubles.iter().enumerate() {
        text.push_str(&format!("\n[portals.p{i:04}]\nurl = \"{}\"\napi_key = {{ env = \"BENCH_KEY\" }}\ntimeout = \"10s\"\n", d.url()));
    }
    for (k, spec) in services.iter().enumerate() {
        let src = if k < half { "vault:secret" } else { "aws:" };
        let path = if k < half {
            format!("{src}/bench/svc{k:02}")
        } else {
            format!("{src}bench/svc{k:02}")
        };
        // The service's first prop reads `#id`, every other one `#secret`.
        text.push_str(&format!("\n[[map]]\nservice = \"{}\"\n", spec.name));
        for (i, (prop, _)) in spec.props.iter().enumerate() {
            let key = if i == 0 { "id" } else { "secret" };
            text.push_str(&format!("props.{prop} = \"{path}#{key}\"\n"));
        }
    }
    let cfg = dir.path().join("bench.toml");
    std::fs::write(&cfg, &text).expect("write config");
    let mut env = moto.env();
    env.retain(|(k, _)| k != "AWS_ENDPOINT_URL_SECRETS_MANAGER");
    env.push(("VAULT_TOKEN".into(), bao.root_token().to_string()));
    env.push(("BENCH_KEY".into(), KEY.into()));

    // 1. Start-up and the initial push of everything.
    reset(&doubles, &mut audit, &proxy);
    let d = Daemon::start(&cfg, &env);
    let (first_start, _) = d.next("cycle started", Duration::from_secs(60));
    let startup = first_start.duration_since(d.started);
    let (_, first) = d.next("cycle finished", Duration::from_secs(1800));
    let c = counts(&doubles, &audit, &proxy);
    println!("\ncycles (daemon-measured wall time; requests counted by the servers):");
    show("initial push (fresh reads)", &c, &first);

    // 2. A quiet scheduled cycle, drift = enforce.
    reset(&doubles, &mut audit, &proxy);
    let (_, quiet) = d.next("cycle finished", Duration::from_secs(120));
    audit.settle().await;
    let qe = counts(&doubles, &audit, &proxy);
    show("quiet, enforce", &qe, &quiet);
    let rss_busy = d.status("VmRSS:");
    // Idle: 12 s after the cycle (the interval is 20 s), before the next one.
    tokio::time::sleep(Duration::from_secs(12)).await;
    let rss_idle = d.status("VmRSS:");
    let (rss_anon, rss_file) = (d.status("RssAnon:"), d.status("RssFile:"));

    // 3. Rotation: one Vault secret and one AWS secret.
    bao.kv2_put(
        "secret",
        "bench/svc00",
        &[("id", "id-0"), ("secret", "v2-0")],
    )
    .await;
    moto.put_secret_value(
        &format!("bench/svc{half:02}"),
        r#"{"id":"id-0","secret":"v2-0"}"#,
    )
    .await;
    reset(&doubles, &mut audit, &proxy);
    let (_, rot) = d.next("cycle finished", Duration::from_secs(300));
    audit.settle().await;
    let rc = counts(&doubles, &audit, &proxy);
    show("rotation (1 vault + 1 aws)", &rc, &rot);
    let rss_peak = d.status("VmHWM:");
    let rss_after = d.status("VmRSS:");
    d.stop();

    // 4. drift = ignore: restart (state file in place), then a quiet scheduled cycle.
    std::fs::write(
        &cfg,
        text.replace("drift = \"enforce\"", "drift = \"ignore\""),
    )
    .expect("write config");
    let d = Daemon::start(&cfg, &env);
    let (_, restart) = d.next("cycle finished", Duration::from_secs(300));
    reset(&doubles, &mut audit, &proxy);
    let (_, quiet_ignore) = d.next("cycle finished", Duration::from_secs(120));
    audit.settle().await;
    let qi = counts(&doubles, &audit, &proxy);
    println!(
        "  {:<28} wall {:>6} ms (fresh reads, nothing pushed)",
        "restart, drift = ignore", restart["duration_ms"]
    );
    show("quiet, ignore", &qi, &quiet_ignore);
    d.stop();

    // 5. The docs' example approach on a sample of the same doubles.
    let sample = a.naive_sample.min(a.portals).max(1);
    let http = reqwest::Client::new();
    let t = Instant::now();
    for dbl in doubles.iter().take(sample) {
        for (k, spec) in services.iter().enumerate() {
            let url = format!("{}{AUTHSERVICE}", dbl.url());
            let _ = http
                .get(&url)
                .bearer_auth(KEY)
                .send()
                .await
                .and_then(|r| r.error_for_status())
                .map(|_| ());
            let props: Vec<Value> = spec
                .props
                .iter()
                .enumerate()
                .map(|(i, (prop, _))| {
                    let value = if i == 0 {
                        format!("id-{k}")
                    } else {
                        format!("naive-{k}")
                    };
                    serde_json::json!({ "name": prop, "value": value })
                })
                .collect();
            let body = serde_json::json!({ "name": spec.name, "props": props });
            let _ = http.post(&url).bearer_auth(KEY).json(&body).send().await;
        }
    }
    let naive_sample = t.elapsed();
    let naive_total = naive_sample.as_secs_f64() * a.portals as f64 / sample as f64;

    // Figures against the targets.
    let dur = |v: &Value| v["duration_ms"].as_f64().unwrap_or(f64::NAN) / 1000.0;
    let enforce_wall = dur(&quiet);
    let pages = a.services.div_ceil(2).div_ceil(100);
    let aws_quiet: usize = qe.aws.values().sum();
    let kv2_paths = half;
    println!("\nfigures vs targets:");
    let row = |what: &str, got: String, target: &str, ok: bool| {
        println!("  {:<4} {what:<48} {got:<28} target {target}", verdict(ok))
    };
    row(
        "quiet ignore: portal requests",
        format!("{}", qi.gets + qi.posts),
        "0",
        qi.gets + qi.posts == 0,
    );
    let vault_quiet_ok = |c: &Counts| {
        c.vault.get("metadata read").copied().unwrap_or(0) == kv2_paths
            && c.vault.get("value read").copied().unwrap_or(0) == 0
    };
    row(
        "quiet ignore: vault",
        format!("{:?}", qi.vault),
        &format!("{kv2_paths} metadata reads, 0 value reads"),
        vault_quiet_ok(&qi),
    );
    row(
        "quiet ignore: aws",
        format!("{:?}", qi.aws),
        &format!("{pages} ListSecrets, 0 value reads"),
        qi.aws.get("ListSecrets").copied().unwrap_or(0) == pages
            && qi.aws.values().sum::<usize>() == pages,
    );
    row(
        "quiet enforce: portal requests",
        format!("{} GET, {} POST", qe.gets, qe.posts),
        &format!("{} GET (1 per portal), 0 POST", a.portals),
        qe.gets == a.portals && qe.posts == 0,
    );
    row(
        "quiet enforce: vault",
        format!("{:?}", qe.vault),
        &format!("{kv2_paths} metadata reads"),
        vault_quiet_ok(&qe),
    );
    row(
        "quiet enforce: aws",
        format!("{aws_quiet} requests"),
        &format!("{pages} ListSecrets"),
        aws_quiet == pages,
    );
    row(
        "rotation: value reads",
        format!(
            "vault {} / aws batches {:?}",
            rc.vault.get("value read").copied().unwrap_or(0),
            rc.aws_batch_ids
        ),
        "1 / [1] (only what changed, <= 20 per batch)",
        rc.vault.get("value read").copied().unwrap_or(0) == 1
            && rc.aws_batch_ids.iter().sum::<usize>()
                + rc.aws.get("GetSecretValue").copied().unwrap_or(0)
                == 1,
    );
    row(
        "rotation: POSTs",
        format!("{}", rc.posts),
        &format!("{} (changed pairs only)", 2 * a.portals),
        rc.posts == 2 * a.portals,
    );
    row(
        "enforce cycle wall time",
        format!("{enforce_wall:.2} s"),
        "<= 3 s",
        enforce_wall <= 3.0,
    );
    row(
        "docs' approach (extrapolated)",
        format!(
            "{naive_total:.1} s ({sample} portals took {:.1} s)",
            naive_sample.as_secs_f64()
        ),
        ">= 20x the enforce cycle",
        naive_total >= 20.0 * enforce_wall,
    );
    println!(
        "  {:<4} {:<48} {:.0}x",
        "",
        "speed-up over the docs' approach",
        naive_total / enforce_wall
    );
    row(
        "RSS idle after the quiet cycle",
        format!("{:.1} MiB", rss_idle as f64 / 1024.0),
        "<= 25 MiB",
        rss_idle <= 25 * 1024,
    );
    println!(
        "  {:<4} {:<48} {:.1} MiB heap and stacks, {:.1} MiB mapped files (the binary)",
        "",
        "  of which",
        rss_anon as f64 / 1024.0,
        rss_file as f64 / 1024.0
    );
    println!(
        "  {:<4} {:<48} {:.1} MiB",
        "",
        "RSS right after the quiet cycle",
        rss_busy as f64 / 1024.0
    );
    println!(
        "  {:<4} {:<48} {:.1} MiB peak (VmHWM), {:.1} MiB after the rotation",
        "",
        "RSS peak",
        rss_peak as f64 / 1024.0,
        rss_after as f64 / 1024.0
    );
    row(
        "startup to first cycle",
        format!("{:.0} ms", startup.as_secs_f64() * 1000.0),
        "<= 100 ms",
        startup <= Duration::from_millis(100),
    );
    let size = std::fs::metadata(env!("CARGO_BIN_EXE_authsync"))
        .map(|m| m.len())
        .unwrap_or(0);
    println!(
        "  {:<4} {:<48} {:.1} MiB",
        "",
        "release binary size",
        size as f64 / 1024.0 / 1024.0
    );
    println!(
        "  {:<4} {:<48} {:.2} s",
        "",
        "initial push of every (portal, service)",
        dur(&first)
    );
}
