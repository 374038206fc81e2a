//! Never leave a portal worse than it was (issue 13): a refused push is restored at once,
//! refused values are held by `run`, `sync` and `plan` alike and across restarts, and a
//! staged rollout goes wave by wave, a refusal halting the later waves. Real OpenBao, the
//! real binary, portal doubles that refuse chosen values as DocSpace does.

mod common;

use std::time::Duration;

use common::daemon::{daemon_config, daemon_env, log_count, Daemon, TRIGGER_TOKEN};
use common::*;
use portal_double::{ApiKey, DoubleConfig, PortalDouble};
use testservers::OpenBao;

const NEW_SECRET: &str = "google-client-secret-NEW-PLANTED-5151";
const BAD_SECRET: &str = "google-client-secret-BAD-PLANTED-6161";
const FIXED_SECRET: &str = "google-client-secret-FIXED-PLANTED-7171";

fn extra() -> [&'static str; 4] {
    [NEW_SECRET, BAD_SECRET, FIXED_SECRET, TRIGGER_TOKEN]
}

fn google_posts(d: &PortalDouble) -> usize {
    posted(d).iter().filter(|(s, _)| s == "google").count()
}

async fn state_json(w: &World) -> serde_json::Value {
    let text = std::fs::read_to_string(w.dir.path().join("state.json")).unwrap_or_default();
    assert!(
        !extra().iter().any(|s| text.contains(s)),
        "a value in the state file"
    );
    serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_rotation_is_restored_and_held_by_run_and_sync_until_the_source_changes() {
    let w = World::start().await;
    let (text, listen) = daemon_config(&w, "interval = \"1s\"", STANDARD_MAPS);
    let cfg = w.write("d.toml", &text);
    let env = daemon_env(&w);
    let mut d = Daemon::start(&cfg, &env, &listen, "refused").await;
    d.wait_ready().await;
    assert_eq!(google_posts(&w.alpha), 1);

    // The third party refuses the rotated secret on alpha only.
    w.alpha.refuse("google", BAD_SECRET);
    w.rotate_google(BAD_SECRET).await;
    assert_eq!(d.trigger(Some(TRIGGER_TOKEN), None).await, 202);
    d.wait_for("the restore", Duration::from_secs(20), || async {
        d.metric(
            "authsync_restores_total",
            &[("portal", "alpha"), ("service", "google"), ("result", "ok")],
        )
        .await
            == 1.0
    })
    .await;
    // The previous values are back on alpha within the same cycle; beta took the new one.
    assert_eq!(
        w.alpha.value("google", "googleClientSecret").as_deref(),
        Some(GOOGLE_SECRET)
    );
    assert_eq!(
        w.beta.value("google", "googleClientSecret").as_deref(),
        Some(BAD_SECRET)
    );
    assert_eq!(google_posts(&w.alpha), 3, "push, refused push, restore");
    assert_eq!(
        d.metric(
            "authsync_held",
            &[("portal", "alpha"), ("service", "google")]
        )
        .await,
        1.0
    );

    // 10 more cycles: the refused values are not pushed again.
    let before = d.cycles().await;
    d.wait_cycles(before + 10.0, Duration::from_secs(40)).await;
    assert_eq!(google_posts(&w.alpha), 3, "{}", d.output());
    let output = d.output();
    assert_eq!(
        log_count(
            &output,
            "INCIDENT: the portal refused the values; they are held until the source changes"
        ),
        1,
        "one incident: {output}"
    );
    let (code, output) = d.stop().await;
    assert_eq!(code, 0);
    assert_no_planted(&output, "the daemon's output", &extra());
    assert_eq!(
        state_json(&w).await["portals"]["alpha"]["services"]["google"]["result"],
        "held"
    );

    // Nor by 3 one-shot syncs (the CronJob / timer path) nor by plan.
    let sync_cfg = w.write("s.toml", &w.standard_config());
    for _ in 0..3 {
        let run = w.run(&sync_cfg, &["sync"]).await;
        run.assert_no_secrets(&extra());
        assert_eq!(run.code, 1, "{}", run.output());
        assert!(run.stdout.contains("google HELD"), "{}", run.output());
    }
    let plan = w.run(&sync_cfg, &["plan"]).await;
    assert_eq!(plan.code, 2, "{}", plan.output());
    assert!(plan.stdout.contains("google HELD"), "{}", plan.output());
    assert_eq!(google_posts(&w.alpha), 3);

    // A fixed source value goes through.
    w.rotate_google(FIXED_SECRET).await;
    let run = w.run(&sync_cfg, &["sync"]).await;
    run.assert_no_secrets(&extra());
    assert_eq!(run.code, 0, "{}", run.output());
    assert_eq!(
        w.alpha.value("google", "googleClientSecret").as_deref(),
        Some(FIXED_SECRET)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_restore_is_one_attempt_and_a_clear_incident() {
    let w = World::start().await;
    let cfg = w.write("a.toml", &w.standard_config());
    assert_eq!(w.run(&cfg, &["sync"]).await.code, 0);
    // The previous secret is no longer valid either.
    w.alpha.refuse("google", GOOGLE_SECRET);
    w.alpha.refuse("google", BAD_SECRET);
    w.rotate_google(BAD_SECRET).await;
    let run = w.run(&cfg, &["sync"]).await;
    run.assert_no_secrets(&extra());
    assert_eq!(run.code, 1);
    assert!(
        run.stdout.contains("google REFUSED by the portal")
            && run.stdout.contains("RESTORE FAILED too"),
        "{}",
        run.output()
    );
    assert!(
        run.stderr
            .contains("the restore FAILED too: the service is left changed"),
        "{}",
        run.output()
    );
    assert_eq!(google_posts(&w.alpha), 3, "push, refused push, one restore");
    for _ in 0..2 {
        w.run(&cfg, &["sync"]).await;
    }
    assert_eq!(google_posts(&w.alpha), 3, "no loop");
}

/// 20 doubles (`p01`…`p20`) on one OpenBao, mapped to google, in three waves.
struct Fleet {
    bao: OpenBao,
    portals: Vec<(String, PortalDouble)>,
    dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

const WAVES: &str = r#"rollout = [["p01", "p02"], ["p0*"], ["*"]]"#;

fn wave_of(name: &str) -> usize {
    match name {
        "p01" | "p02" => 0,
        n if n.starts_with("p0") => 1,
        _ => 2,
    }
}

impl Fleet {
    async fn start() -> Fleet {
        let bao = OpenBao::start().await;
        bao.kv2_put(
            "secret",
            "oauth/google",
            &[("client_id", GOOGLE_ID), ("client_secret", GOOGLE_SECRET)],
        )
        .await;
        let mut portals = Vec::new();
        for i in 1..=20 {
            let name = format!("p{i:02}");
            let double = PortalDouble::start(DoubleConfig {
                api_keys: vec![ApiKey {
                    key: ALPHA_KEY.into(),
                    write: true,
                    admin: true,
                }],
                ..DoubleConfig::default()
            })
            .await
            .expect("start a double");
            portals.push((name, double));
        }
        let env = vec![
            ("VAULT_TOKEN".to_string(), bao.root_token().to_string()),
            ("ALPHA_KEY".to_string(), ALPHA_KEY.to_string()),
            ("TRIGGER_TOKEN".to_string(), TRIGGER_TOKEN.to_string()),
        ];
        Fleet {
            bao,
            portals,
            dir: tempfile::tempdir().expect("temp dir"),
            env,
        }
    }

    fn config(&self, sync: &str, listen: Option<&str>) -> std::path::PathBuf {
        let mut text = format!(
            "[sync]\nstate_file = \"{}\"\n{WAVES}\n{sync}\n[sources.vault]\nkind = \"vault\"\naddress = \"{}\"\n",
            self.dir.path().join("state.json").display(),
            self.bao.addr()
        );
        for (name, d) in &self.portals {
            text.push_str(&format!(
                "[portals.{name}]\nurl = \"{}\"\napi_key = {{ env = \"ALPHA_KEY\" }}\ntimeout = \"3s\"\n",
                d.url()
            ));
        }
        text.push_str(
            "[[map]]\nservice = \"google\"\nprops.googleClientId = \"vault:secret/oauth/google#client_id\"\nprops.googleClientSecret = \"vault:secret/oauth/google#client_secret\"\n",
        );
        if let Some(listen) = listen {
            text.push_str(&format!(
                "[server]\nlisten = \"{listen}\"\ntrigger_token = {{ env = \"TRIGGER_TOKEN\" }}\n"
            ));
        }
        let path = self.dir.path().join("fleet.toml");
        std::fs::write(&path, text).expect("write config");
        path
    }

    async fn sync(&self, cfg: &std::path::Path, args: &[&str]) -> Run {
        let run = authsync(cfg, args, &self.env).await;
        run.assert_no_secrets(&extra());
        run
    }

    async fn rotate(&self, secret: &str) {
        self.bao
            .kv2_put(
                "secret",
                "oauth/google",
                &[("client_id", GOOGLE_ID), ("client_secret", secret)],
            )
            .await;
    }

    /// The sequence numbers of the POSTs carrying `value`, per wave.
    fn post_seqs(&self, value: &str) -> Vec<Vec<u64>> {
        let mut waves = vec![Vec::new(); 3];
        for (name, d) in &self.portals {
            for r in d.requests() {
                if r.method == "POST"
                    && r.body
                        .as_ref()
                        .is_some_and(|b| b.to_string().contains(value))
                {
                    waves[wave_of(name)].push(r.seq);
                }
            }
        }
        waves
    }

    fn holding(&self, value: &str) -> usize {
        self.portals
            .iter()
            .filter(|(_, d)| d.value("google", "googleClientSecret").as_deref() == Some(value))
            .count()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_portals_in_three_waves_a_good_rotation_in_order_a_refused_one_halted() {
    let fleet = Fleet::start().await;
    let cfg = fleet.config("", None);
    let run = fleet.sync(&cfg, &["sync"]).await;
    assert_eq!(run.code, 0, "{}", run.output());

    // A good rotation: every POST of wave k before any of wave k+1.
    fleet.rotate(NEW_SECRET).await;
    let plan = fleet.sync(&cfg, &["plan"]).await;
    assert!(
        plan.stdout.contains("portal p03 (wave 2)"),
        "{}",
        plan.output()
    );
    let run = fleet.sync(&cfg, &["sync"]).await;
    assert_eq!(run.code, 0, "{}", run.output());
    let waves = fleet.post_seqs(NEW_SECRET);
    assert_eq!(
        waves.iter().map(Vec::len).collect::<Vec<_>>(),
        vec![2, 7, 11],
        "one POST per portal"
    );
    for k in 0..2 {
        let last = waves[k].iter().max().copied().unwrap_or(0);
        let first_next = waves[k + 1].iter().min().copied().unwrap_or(u64::MAX);
        assert!(last < first_next, "wave {} before wave {}", k + 1, k + 2);
    }
    assert_eq!(fleet.holding(NEW_SECRET), 20);

    // A refused one touches wave 1 only, is restored there, and no later portal gets it.
    fleet.portals[0].1.refuse("google", BAD_SECRET);
    fleet.rotate(BAD_SECRET).await;
    let run = fleet.sync(&cfg, &["sync"]).await;
    assert_eq!(run.code, 1, "{}", run.output());
    assert!(
        run.stdout.contains("p01 (wave 1)") && run.stdout.contains("google REFUSED"),
        "{}",
        run.output()
    );
    assert!(
        run.stdout
            .contains("google HALTED: rollout halted: portal p01 (wave 1) refused"),
        "{}",
        run.output()
    );
    let waves = fleet.post_seqs(BAD_SECRET);
    assert_eq!(
        waves[1].len() + waves[2].len(),
        0,
        "no later wave received it"
    );
    assert_eq!(
        fleet.portals[0]
            .1
            .value("google", "googleClientSecret")
            .as_deref(),
        Some(NEW_SECRET),
        "restored on p01"
    );
    // p02 (wave 1 too) took it: the same wave is not halted by its neighbour.
    assert_eq!(fleet.holding(BAD_SECRET), 1);
    assert_eq!(fleet.holding(NEW_SECRET), 19);
    // Still halted on the next runs.
    let run = fleet.sync(&cfg, &["sync"]).await;
    assert!(run.stdout.contains("HALTED"), "{}", run.output());
    assert_eq!(fleet.post_seqs(BAD_SECRET)[2].len(), 0);

    // The source is fixed: the halt lifts and the fix goes wave by wave.
    fleet.rotate(FIXED_SECRET).await;
    let run = fleet.sync(&cfg, &["sync"]).await;
    assert_eq!(run.code, 0, "{}", run.output());
    assert_eq!(fleet.holding(FIXED_SECRET), 20);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_rollout_resumes_where_it_stopped_and_a_halt_survives() {
    let fleet = Fleet::start().await;
    let listen = format!("127.0.0.1:{}", testservers::free_port());
    let cfg = fleet.config("interval = \"1h\"\nrollout_soak = \"4s\"", Some(&listen));
    let run = fleet.sync(&cfg, &["sync"]).await;
    assert_eq!(run.code, 0, "{}", run.output());

    let mut d = Daemon::start(&cfg, &fleet.env, &listen, "rollout-1").await;
    d.wait_ready().await;
    fleet.rotate(NEW_SECRET).await;
    assert_eq!(d.trigger(Some(TRIGGER_TOKEN), None).await, 202);
    d.wait_for("wave 1 confirmed", Duration::from_secs(20), || async {
        fleet.holding(NEW_SECRET) == 2
    })
    .await;
    // Mid-rollout: wave 1 soaks, the later waves wait. kill -9.
    let output = d.kill().await;
    assert_eq!(fleet.post_seqs(NEW_SECRET)[1].len(), 0, "{output}");

    let mut d = Daemon::start(&cfg, &fleet.env, &listen, "rollout-2").await;
    d.wait_ready().await;
    d.wait_for("the rollout resumed", Duration::from_secs(30), || async {
        fleet.holding(NEW_SECRET) == 20
    })
    .await;
    let waves = fleet.post_seqs(NEW_SECRET);
    assert_eq!(waves[0].len(), 2, "nothing confirmed was pushed twice");
    assert_eq!(waves[1].len() + waves[2].len(), 18);

    // A halt survives a restart.
    fleet.portals[0].1.refuse("google", BAD_SECRET);
    fleet.rotate(BAD_SECRET).await;
    assert_eq!(d.trigger(Some(TRIGGER_TOKEN), None).await, 202);
    d.wait_for("the halt", Duration::from_secs(20), || async {
        d.metric("authsync_rollout_halted", &[("service", "google")])
            .await
            == 1.0
    })
    .await;
    d.kill().await;
    let mut d = Daemon::start(&cfg, &fleet.env, &listen, "rollout-3").await;
    d.wait_ready().await;
    assert_eq!(
        d.metric("authsync_rollout_halted", &[("service", "google")])
            .await,
        1.0,
        "{}",
        d.output()
    );
    let waves = fleet.post_seqs(BAD_SECRET);
    assert_eq!(waves[1].len() + waves[2].len(), 0, "{}", d.output());
    let (code, output) = d.stop().await;
    assert_eq!(code, 0);
    for s in extra() {
        assert!(
            !output.contains(s),
            "a planted value in the daemon's output"
        );
    }
    let state = std::fs::read_to_string(fleet.dir.path().join("state.json")).unwrap_or_default();
    assert!(state.contains("\"halts\""), "{state}");
}
