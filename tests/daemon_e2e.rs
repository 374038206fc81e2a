//! `authsync run` as a real process against real OpenBao and moto servers and portal
//! doubles: schedule, triggers, change detection, drift modes, state, signals, metrics.
//! Every test ends by scanning the daemon's whole output, its state file and /metrics
//! for every planted secret.

mod common;

use std::time::{Duration, Instant};

use common::daemon::{daemon_config, daemon_env, log_count, Daemon, TRIGGER_TOKEN};
use common::*;
use portal_double::{Fault, FaultKind};
use testservers::{AuditLog, CountingProxy};

/// Scans everything the daemon left behind for planted secrets.
async fn assert_no_leaks(w: &World, output: &str, metrics: &str) {
    let state = std::fs::read_to_string(w.dir.path().join("state.json")).unwrap_or_default();
    for (what, text) in [
        ("daemon output", output),
        ("state file", state.as_str()),
        ("/metrics", metrics),
    ] {
        for (i, secret) in PLANTED.iter().chain([&TRIGGER_TOKEN]).enumerate() {
            assert!(
                !text.contains(secret),
                "planted secret #{i} leaked into the {what}:\n{text}"
            );
        }
    }
}

/// Stops the daemon with SIGTERM, expects exit 0, and scans everything it left for
/// planted secrets. Returns its output.
async fn finish(w: &World, d: Daemon) -> String {
    let metrics = d.metrics_text().await;
    let (code, output) = d.stop().await;
    assert_eq!(code, 0, "SIGTERM exits 0:\n{output}");
    assert_no_leaks(w, &output, &metrics).await;
    output
}

/// Writes a daemon config (standard maps plus `sync` settings) and starts a ready daemon.
async fn start_daemon(
    w: &World,
    sync: &str,
    tag: &str,
) -> (Daemon, std::path::PathBuf, String, String) {
    let (text, listen) = daemon_config(w, sync, STANDARD_MAPS);
    let cfg = w.write(&format!("{tag}.toml"), &text);
    let mut d = Daemon::start(&cfg, &daemon_env(w), &listen, tag).await;
    d.wait_ready().await;
    (d, cfg, text, listen)
}

async fn value_is(
    double: &portal_double::PortalDouble,
    service: &str,
    prop: &str,
    want: &str,
) -> bool {
    double.value(service, prop).as_deref() == Some(want)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotations_reach_both_portals_within_an_interval_and_metrics_move() {
    let w = World::start().await;
    let (d, _, _, _) = start_daemon(&w, "interval = \"1s\"", "a").await;
    for double in [&w.alpha, &w.beta] {
        assert_eq!(
            double.value("google", "googleClientSecret").as_deref(),
            Some(GOOGLE_SECRET),
            "{}",
            d.output()
        );
    }
    assert_eq!(
        d.metric(
            "authsync_pushes_total",
            &[("portal", "alpha"), ("service", "google"), ("result", "ok")]
        )
        .await,
        1.0
    );
    assert_eq!(
        d.metric(
            "authsync_out_of_sync",
            &[("portal", "alpha"), ("service", "google")]
        )
        .await,
        0.0
    );
    assert!(
        d.metric(
            "authsync_last_success_timestamp_seconds",
            &[("portal", "beta")]
        )
        .await
            > 1.7e9
    );
    assert_eq!(d.metric("authsync_build_info", &[]).await, 1.0);

    // Vault KV v2 rotation: within one interval (plus the cycle itself).
    w.rotate_google(GOOGLE_SECRET_2).await;
    let rotated = Instant::now();
    d.wait_for(
        "the Vault rotation on both portals",
        Duration::from_secs(5),
        || async {
            value_is(&w.alpha, "google", "googleClientSecret", GOOGLE_SECRET_2).await
                && value_is(&w.beta, "google", "googleClientSecret", GOOGLE_SECRET_2).await
        },
    )
    .await;
    eprintln!("vault rotation delivered after {:?}", rotated.elapsed());

    // AWS rotation through put_secret_value.
    w.moto
        .put_secret_value("docspace/backup-s3", &s3_json(S3_ACCESS, S3_SECRET_2))
        .await;
    d.wait_for(
        "the AWS rotation on both portals",
        Duration::from_secs(5),
        || async {
            value_is(&w.alpha, "s3", "secretaccesskey", S3_SECRET_2).await
                && value_is(&w.beta, "s3", "secretaccesskey", S3_SECRET_2).await
        },
    )
    .await;
    assert_eq!(
        d.metric(
            "authsync_pushes_total",
            &[("portal", "alpha"), ("service", "google"), ("result", "ok")]
        )
        .await,
        2.0
    );
    assert!(
        d.metric("authsync_sync_runs_total", &[("result", "ok")])
            .await
            >= 2.0
    );
    assert!(
        d.metric(
            "authsync_source_requests_total",
            &[
                ("source", "vault"),
                ("operation", "metadata"),
                ("result", "ok")
            ]
        )
        .await
            >= 1.0
    );
    assert!(
        d.metric(
            "authsync_portal_requests_total",
            &[("portal", "alpha"), ("method", "POST"), ("status", "200")]
        )
        .await
            >= 5.0
    );

    finish(&w, d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trigger_pushes_within_a_second_and_checks_its_token() {
    let w = World::start().await;
    let (d, _, _, _) = start_daemon(&w, "interval = \"1h\"", "t").await;

    assert_eq!(d.trigger(None, None).await, 401);
    assert_eq!(d.trigger(Some("wrong"), None).await, 401);
    w.rotate_google(GOOGLE_SECRET_2).await;
    let t0 = Instant::now();
    assert_eq!(
        d.trigger(
            Some(TRIGGER_TOKEN),
            Some(r#"{"portals":["alpha"],"services":["google"]}"#)
        )
        .await,
        202
    );
    d.wait_for("the triggered push", Duration::from_secs(1), || async {
        value_is(&w.alpha, "google", "googleClientSecret", GOOGLE_SECRET_2).await
    })
    .await;
    eprintln!("triggered push delivered after {:?}", t0.elapsed());
    // The trigger named alpha only: beta waits for its schedule (1 h away).
    assert_eq!(
        w.beta.value("google", "googleClientSecret").as_deref(),
        Some(GOOGLE_SECRET)
    );

    finish(&w, d).await;
}

/// Request counts of a run of quiet cycles, per server.
struct Quiet {
    cycles: usize,
    vault_metadata: usize,
    vault_data: usize,
    vault_total: usize,
    aws: std::collections::BTreeMap<String, usize>,
    portal_gets: usize,
    portal_posts: usize,
}

/// Starts a daemon (1 s interval), lets it settle, then counts what N quiet cycles cost
/// on each real server. The daemon is stopped before counting, so the cycle count from
/// its log is exact.
async fn quiet_cycles(drift: &str) -> (Quiet, World) {
    let w = World::start().await;
    let proxy = CountingProxy::start(&w.moto.endpoint()).await;
    let mut audit: AuditLog = w.bao.enable_audit().await;
    // KV v2 and AWS only: KV v1 has no versions, so it is read every cycle by design.
    let maps = STANDARD_MAPS.replace(
        "props.telegramBotToken = \"vault:kv1/telegram/{portal}#token\"\n",
        "",
    );
    let (text, listen) = daemon_config(
        &w,
        &format!("interval = \"1s\"\ndrift = \"{drift}\""),
        &maps,
    );
    let text = text.replace(&w.moto.endpoint(), &proxy.url());
    let cfg = w.write("q.toml", &text);
    let mut d = Daemon::start(&cfg, &daemon_env(&w), &listen, "q").await;
    d.wait_ready().await;
    // One scheduled cycle after the first lets the cache fill with versions.
    d.wait_cycles(1.0, Duration::from_secs(10)).await;
    let before = log_count(&d.output(), "cycle finished");
    audit.mark();
    proxy.reset();
    w.clear_requests();
    d.wait_cycles(3.0, Duration::from_secs(15)).await;
    let output = finish(&w, d).await;
    audit.settle().await;
    let mine: Vec<_> = audit
        .requests()
        .into_iter()
        .filter(|e| !e.harness)
        .collect();
    let q = Quiet {
        cycles: log_count(&output, "cycle finished") - before,
        vault_metadata: mine
            .iter()
            .filter(|e| e.path.starts_with("secret/metadata/"))
            .count(),
        vault_data: mine
            .iter()
            .filter(|e| e.path.starts_with("secret/data/") || e.path.starts_with("kv1/"))
            .count(),
        vault_total: mine.len(),
        aws: proxy.counts(),
        portal_gets: w.alpha.count("GET", AUTHSERVICE) + w.beta.count("GET", AUTHSERVICE),
        portal_posts: w.posts(),
    };
    eprintln!(
        "quiet {drift}: {} cycles; vault metadata {} data {} total {}; aws {:?}; portal GET {} POST {}",
        q.cycles, q.vault_metadata, q.vault_data, q.vault_total, q.aws, q.portal_gets, q.portal_posts
    );
    (q, w)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_cycle_in_ignore_mode_costs_only_version_checks() {
    let (q, _w) = quiet_cycles("ignore").await;
    assert!(q.cycles >= 3, "{} cycles", q.cycles);
    // One KV v2 path → one metadata read per cycle; no value reads at all.
    assert_eq!(q.vault_metadata, q.cycles);
    assert_eq!(q.vault_data, 0);
    assert_eq!(q.vault_total, q.cycles, "nothing else was asked of Vault");
    // Two AWS secrets → one ListSecrets page per cycle; no value reads.
    assert_eq!(
        q.aws.get("ListSecrets").copied().unwrap_or(0),
        q.cycles,
        "{:?}",
        q.aws
    );
    assert_eq!(
        q.aws.values().sum::<usize>(),
        q.cycles,
        "only ListSecrets: {:?}",
        q.aws
    );
    // drift = ignore: portals are not contacted at all.
    assert_eq!(q.portal_gets + q.portal_posts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quiet_cycle_in_enforce_mode_adds_one_get_per_portal() {
    let (q, _w) = quiet_cycles("enforce").await;
    assert!(q.cycles >= 3, "{} cycles", q.cycles);
    assert_eq!(q.vault_data, 0);
    assert_eq!(q.vault_metadata, q.cycles);
    assert_eq!(
        q.aws.values().sum::<usize>(),
        q.cycles,
        "only ListSecrets: {:?}",
        q.aws
    );
    assert_eq!(q.portal_gets, 2 * q.cycles, "one GET per portal per cycle");
    assert_eq!(q.portal_posts, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_cycle_reads_only_what_changed_and_batches_aws_reads() {
    let w = World::start().await;
    let proxy = CountingProxy::start(&w.moto.endpoint()).await;
    let mut audit = w.bao.enable_audit().await;
    w.moto
        .create_secret("docspace/extra-1", r#"{"id":"x1"}"#)
        .await;
    w.moto
        .create_secret("docspace/extra-2", r#"{"id":"x2"}"#)
        .await;
    let maps = format!(
        "{}\n[[map]]\nservice = \"box\"\nprops.boxClientId = \"aws:docspace/extra-1#id\"\nprops.boxClientSecret = \"aws:docspace/extra-2#id\"\n",
        STANDARD_MAPS.replace("props.telegramBotToken = \"vault:kv1/telegram/{portal}#token\"\n", "")
    );
    let (text, listen) = daemon_config(&w, "interval = \"1h\"\ndrift = \"ignore\"", &maps);
    let cfg = w.write("r.toml", &text.replace(&w.moto.endpoint(), &proxy.url()));
    let mut d = Daemon::start(&cfg, &daemon_env(&w), &listen, "r").await;
    d.wait_ready().await;
    // The first cycle reads everything, AWS in one batch (4 secrets ≤ 20).
    let first = proxy.requests();
    let batches: Vec<_> = first
        .iter()
        .filter(|r| r.action == "BatchGetSecretValue")
        .collect();
    assert_eq!(batches.len(), 1, "{:?}", proxy.counts());
    assert_eq!(
        batches[0].body["SecretIdList"].as_array().map(Vec::len),
        Some(4)
    );
    assert_eq!(proxy.count("GetSecretValue"), 0);

    // Rotate one AWS secret and one Vault secret, then let a scheduled cycle run: restart
    // the daemon with a 1 s interval so the next cycles are scheduled (versioned) ones.
    let (code, _) = d.stop().await;
    assert_eq!(code, 0);
    let cfg = w.write(
        "r.toml",
        &std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("interval = \"1h\"", "interval = \"1s\""),
    );
    let mut d = Daemon::start(&cfg, &daemon_env(&w), &listen, "r2").await;
    d.wait_ready().await;
    d.wait_cycles(1.0, Duration::from_secs(10)).await;
    audit.mark();
    proxy.reset();
    w.clear_requests();
    w.moto
        .put_secret_value("docspace/extra-1", r#"{"id":"x1-rotated"}"#)
        .await;
    w.rotate_google(GOOGLE_SECRET_2).await;
    d.wait_for("both rotations", Duration::from_secs(10), || async {
        value_is(&w.alpha, "box", "boxClientId", "x1-rotated").await
            && value_is(&w.beta, "google", "googleClientSecret", GOOGLE_SECRET_2).await
    })
    .await;
    let (code, output) = d.stop().await;
    assert_eq!(code, 0);
    audit.settle().await;
    let mine: Vec<_> = audit
        .requests()
        .into_iter()
        .filter(|e| !e.harness)
        .collect();
    // Only the rotated secrets' values were read: one KV v2 read, one AWS batch of one
    // (or one GetSecretValue), never the unchanged ones.
    assert_eq!(
        mine.iter()
            .filter(|e| e.path.starts_with("secret/data/"))
            .count(),
        1,
        "{mine:?}"
    );
    let reads: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.action.contains("GetSecretValue"))
        .collect();
    let ids: Vec<String> = reads
        .iter()
        .flat_map(|r| {
            r.body["SecretIdList"]
                .as_array()
                .cloned()
                .unwrap_or_else(|| vec![r.body["SecretId"].clone()])
        })
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    assert_eq!(
        ids,
        vec!["docspace/extra-1".to_string()],
        "{:?}",
        proxy.counts()
    );
    // POSTs only for the changed (portal, service) pairs: box and google on both portals.
    let mut posted: Vec<(String, String)> = Vec::new();
    for (name, double) in [("alpha", &w.alpha), ("beta", &w.beta)] {
        for (svc, _) in posted_services(double) {
            posted.push((name.to_string(), svc));
        }
    }
    posted.sort();
    assert_eq!(
        posted,
        vec![
            ("alpha".into(), "box".into()),
            ("alpha".into(), "google".into()),
            ("beta".into(), "box".into()),
            ("beta".into(), "google".into())
        ],
        "{output}"
    );
}

fn posted_services(double: &portal_double::PortalDouble) -> Vec<(String, Vec<String>)> {
    posted(double)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforce_reverts_portal_edits_and_ignore_leaves_them() {
    let w = World::start().await;
    let (d, _, text, listen) =
        start_daemon(&w, "interval = \"1s\"\ndrift = \"enforce\"", "e").await;
    w.alpha
        .set_value("google", "googleClientId", "edited-in-the-ui");
    d.wait_for("the edit reverted", Duration::from_secs(5), || async {
        value_is(&w.alpha, "google", "googleClientId", GOOGLE_ID).await
    })
    .await;
    d.wait_for("the drift metric", Duration::from_secs(2), || async {
        d.metric(
            "authsync_drift_corrections_total",
            &[("portal", "alpha"), ("service", "google")],
        )
        .await
            == 1.0
    })
    .await;
    let (code, output) = d.stop().await;
    assert_eq!(code, 0, "{output}");

    // Same state, now drift = ignore: an edit stays while the sources do not move.
    let cfg = w.write(
        "e.toml",
        &text.replace("drift = \"enforce\"", "drift = \"ignore\""),
    );
    let mut d = Daemon::start(&cfg, &daemon_env(&w), &listen, "i").await;
    d.wait_ready().await;
    w.alpha
        .set_value("google", "googleClientId", "edited-in-the-ui");
    d.wait_cycles(2.0, Duration::from_secs(10)).await;
    assert_eq!(
        w.alpha.value("google", "googleClientId").as_deref(),
        Some("edited-in-the-ui")
    );
    // …until the source changes: then the new values are pushed.
    w.rotate_google(GOOGLE_SECRET_2).await;
    d.wait_for(
        "the rotation in ignore mode",
        Duration::from_secs(5),
        || async { value_is(&w.alpha, "google", "googleClientSecret", GOOGLE_SECRET_2).await },
    )
    .await;
    finish(&w, d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_makes_zero_posts_and_a_corrupt_state_file_is_survived() {
    let w = World::start().await;
    let (d, cfg, _, listen) = start_daemon(&w, "interval = \"1h\"", "s1").await;
    assert_eq!(w.posts(), 7);
    let (code, _) = d.stop().await;
    assert_eq!(code, 0);
    let state = std::fs::read_to_string(w.dir.path().join("state.json")).expect("state written");
    assert!(
        state.contains("\"confirmed\"") && state.contains("fp:"),
        "{state}"
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(w.dir.path().join("state.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    w.clear_requests();
    let mut d = Daemon::start(&cfg, &daemon_env(&w), &listen, "s2").await;
    d.wait_ready().await;
    assert_eq!(w.posts(), 0, "a restart re-pushes nothing:\n{}", d.output());
    let (code, _) = d.stop().await;
    assert_eq!(code, 0);

    // A truncated state file: a warning, a fresh comparison, no crash, no needless POST.
    std::fs::write(w.dir.path().join("state.json"), &state[..state.len() / 2]).unwrap();
    w.clear_requests();
    let mut d = Daemon::start(&cfg, &daemon_env(&w), &listen, "s3").await;
    d.wait_ready().await;
    assert_eq!(w.posts(), 0);
    let metrics = d.metrics_text().await;
    let (code, output) = d.stop().await;
    assert_eq!(code, 0);
    assert!(output.contains("is corrupt"), "{output}");
    let (reloaded, err) = authsync::state::State::load(&w.dir.path().join("state.json"));
    assert!(
        err.is_none() && !reloaded.portals.is_empty(),
        "state rewritten"
    );
    assert_no_leaks(&w, &output, &metrics).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_with_a_broken_config_keeps_the_old_one_running() {
    let w = World::start().await;
    let (d, cfg, text, _) = start_daemon(&w, "interval = \"1s\"", "h").await;

    std::fs::write(
        &cfg,
        text.replace("[[map]]", "[[mapp]]")
            .replace("interval = \"1s\"", "interval = 5"),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_for("the failed reload", Duration::from_secs(5), || async {
        d.metric("authsync_config_reloads_total", &[("result", "failed")])
            .await
            == 1.0
    })
    .await;
    // Still syncing with the old config.
    w.rotate_google(GOOGLE_SECRET_2).await;
    d.wait_for(
        "a rotation after the failed reload",
        Duration::from_secs(5),
        || async { value_is(&w.beta, "google", "googleClientSecret", GOOGLE_SECRET_2).await },
    )
    .await;

    // A valid new config (telegram dropped) is taken.
    std::fs::write(
        &cfg,
        text.replace(
            "service = \"telegram\"",
            "service = \"telegram\"\nportals = [\"alpha\"]",
        ),
    )
    .unwrap();
    d.signal("HUP");
    d.wait_for("the good reload", Duration::from_secs(5), || async {
        d.metric("authsync_config_reloads_total", &[("result", "ok")])
            .await
            == 1.0
    })
    .await;
    let metrics = d.metrics_text().await;
    let (code, output) = d.stop().await;
    assert_eq!(code, 0, "{output}");
    assert!(output.contains("reload rejected"), "{output}");
    assert_no_leaks(&w, &output, &metrics).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_portal_does_not_delay_the_other() {
    let w = World::start().await;
    let (d, _, _, _) = start_daemon(&w, "interval = \"1h\"", "slow").await;
    w.beta.inject(Fault {
        kind: FaultKind::Hang,
        method: None,
        times: None,
    });
    w.rotate_google(GOOGLE_SECRET_2).await;
    let t0 = Instant::now();
    assert_eq!(d.trigger(Some(TRIGGER_TOKEN), None).await, 202);
    // beta's timeout is 3 s (three attempts): alpha must not wait for it.
    d.wait_for(
        "alpha's push while beta hangs",
        Duration::from_secs(3),
        || async { value_is(&w.alpha, "google", "googleClientSecret", GOOGLE_SECRET_2).await },
    )
    .await;
    eprintln!("alpha pushed after {:?} while beta hangs", t0.elapsed());
    // beta is reported out of sync once its attempts time out.
    d.wait_for("beta out of sync", Duration::from_secs(30), || async {
        d.metric(
            "authsync_out_of_sync",
            &[("portal", "beta"), ("service", "google")],
        )
        .await
            == 1.0
    })
    .await;
    assert!(
        d.metric("authsync_sync_runs_total", &[("result", "partial")])
            .await
            >= 1.0
    );
    w.beta.clear_faults();
    finish(&w, d).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn speaks_the_systemd_notify_protocol() {
    // A Unix datagram socket stands in for systemd.
    let w = World::start().await;
    let sock_path = w.dir.path().join("notify.sock");
    let sock = tokio::net::UnixDatagram::bind(&sock_path).expect("bind notify socket");
    let (text, listen) = daemon_config(&w, "interval = \"1h\"", STANDARD_MAPS);
    let cfg = w.write("n.toml", &text);
    let mut env = daemon_env(&w);
    env.push(("NOTIFY_SOCKET".into(), sock_path.display().to_string()));
    env.push(("WATCHDOG_USEC".into(), "200000".into()));
    let mut d = Daemon::start(&cfg, &env, &listen, "n").await;

    let mut seen: Vec<String> = Vec::new();
    let mut buf = vec![0u8; 4096];
    async fn next(sock: &tokio::net::UnixDatagram, buf: &mut [u8]) -> String {
        let n = sock.recv(buf).await.expect("recv");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }
    async fn wait_for_msg(
        sock: &tokio::net::UnixDatagram,
        buf: &mut [u8],
        seen: &mut Vec<String>,
        want: &str,
    ) {
        loop {
            let msg = match tokio::time::timeout(Duration::from_secs(20), next(sock, buf)).await {
                Ok(m) => m,
                Err(_) => panic!("no {want} after {seen:?}"),
            };
            seen.push(msg.clone());
            if msg.lines().any(|l| l == want) {
                return;
            }
        }
    }
    wait_for_msg(&sock, &mut buf, &mut seen, "READY=1").await;
    d.wait_ready().await;
    wait_for_msg(&sock, &mut buf, &mut seen, "WATCHDOG=1").await;
    wait_for_msg(&sock, &mut buf, &mut seen, "WATCHDOG=1").await;
    d.signal("HUP");
    wait_for_msg(&sock, &mut buf, &mut seen, "RELOADING=1").await;
    wait_for_msg(&sock, &mut buf, &mut seen, "READY=1").await;
    let stopping = tokio::spawn(async move { d.stop().await });
    wait_for_msg(&sock, &mut buf, &mut seen, "STOPPING=1").await;
    let (code, output) = stopping.await.expect("stop");
    assert_eq!(code, 0, "{output}");
    let reload = seen
        .iter()
        .find(|m| m.contains("RELOADING=1"))
        .cloned()
        .unwrap_or_default();
    assert!(reload.contains("MONOTONIC_USEC="), "{reload}");
}
