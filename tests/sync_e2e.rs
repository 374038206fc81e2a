//! End to end: the real `authsync` binary against real OpenBao and moto servers and
//! in-process portal doubles. Every run's stdout and stderr are scanned for every
//! planted secret (see `World::run`).

mod common;

use common::*;
use portal_double::{DoubleConfig, Fault, FaultKind};

fn props_of<'a>(posted: &'a [(String, Vec<String>)], service: &str) -> Vec<&'a Vec<String>> {
    posted
        .iter()
        .filter(|(s, _)| s == service)
        .map(|(_, p)| p)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sync_pushes_kv1_kv2_and_aws_secrets_to_two_portals() {
    let w = World::start().await;
    let cfg = w.write("a.toml", &w.standard_config());
    let run = w.run(&cfg, &["--log-level", "debug", "sync"]).await;
    assert_eq!(run.code, 0, "{}", run.output());

    for (double, tg) in [(&w.alpha, TG_ALPHA), (&w.beta, TG_BETA)] {
        // KV v2
        assert_eq!(
            double.value("google", "googleClientId").as_deref(),
            Some(GOOGLE_ID)
        );
        assert_eq!(
            double.value("google", "googleClientSecret").as_deref(),
            Some(GOOGLE_SECRET)
        );
        // KV v1, per-portal path through {portal}, plus a literal
        assert_eq!(
            double.value("telegram", "telegramBotToken").as_deref(),
            Some(tg)
        );
        assert_eq!(
            double.value("telegram", "telegramBotName").as_deref(),
            Some("acme_docs_bot")
        );
        // AWS JSON fields
        assert_eq!(double.value("s3", "acesskey").as_deref(), Some(S3_ACCESS));
        assert_eq!(
            double.value("s3", "secretaccesskey").as_deref(),
            Some(S3_SECRET)
        );
    }
    // AWS whole SecretString, only on the portal the block names
    assert_eq!(
        w.alpha.value("googlecloud", "json").as_deref(),
        Some(GCS_JSON)
    );
    assert_eq!(w.beta.value("googlecloud", "json").as_deref(), Some(""));
    // One POST per changed service per portal
    assert_eq!(w.alpha.count("POST", AUTHSERVICE), 4);
    assert_eq!(w.beta.count("POST", AUTHSERVICE), 3);
    assert!(run.stdout.contains("pushed, verified"), "{}", run.output());
    // The push log names portal, service and props.
    assert!(
        run.stderr.contains("pushed") && run.stderr.contains("googleClientSecret"),
        "{}",
        run.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unchanged_second_sync_sends_no_post_and_rotation_pushes_only_what_changed() {
    let w = World::start().await;
    let cfg = w.write("a.toml", &w.standard_config());
    assert_eq!(w.run(&cfg, &["sync"]).await.code, 0);

    // Nothing changed: zero POSTs, exit 0.
    w.clear_requests();
    let again = w.run(&cfg, &["sync"]).await;
    assert_eq!(again.code, 0, "{}", again.output());
    assert_eq!(w.posts(), 0, "an unchanged cycle must not POST");

    // Rotate one Vault field (new KV v2 version) and one AWS field (put_secret_value).
    w.rotate_google(GOOGLE_SECRET_2).await;
    w.moto
        .put_secret_value("docspace/backup-s3", &s3_json(S3_ACCESS, S3_SECRET_2))
        .await;
    w.clear_requests();
    let rotated = w.run(&cfg, &["sync"]).await;
    rotated.assert_no_secrets(&[]);
    assert_eq!(rotated.code, 0, "{}", rotated.output());
    for double in [&w.alpha, &w.beta] {
        let posted = posted(double);
        assert_eq!(posted.len(), 2, "only google and s3 change: {posted:?}");
        assert_eq!(
            props_of(&posted, "google"),
            vec![&vec!["googleClientSecret".to_string()]]
        );
        assert_eq!(
            props_of(&posted, "s3"),
            vec![&vec!["secretaccesskey".to_string()]]
        );
        assert_eq!(
            double.value("google", "googleClientSecret").as_deref(),
            Some(GOOGLE_SECRET_2)
        );
        assert_eq!(
            double.value("s3", "secretaccesskey").as_deref(),
            Some(S3_SECRET_2)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plan_exit_codes_and_no_posts() {
    let w = World::start().await;
    let cfg = w.write("a.toml", &w.standard_config());
    let pending = w.run(&cfg, &["plan"]).await;
    assert_eq!(pending.code, 2, "{}", pending.output());
    assert_eq!(w.posts(), 0, "plan must never POST");
    assert!(
        pending.stdout.contains("+ googleClientSecret"),
        "{}",
        pending.output()
    );
    assert!(
        pending.stdout.contains("fp:"),
        "values appear as fingerprints: {}",
        pending.output()
    );

    let dry = w.run(&cfg, &["sync", "--dry-run"]).await;
    assert_eq!(dry.code, 0, "{}", dry.output());
    assert_eq!(w.posts(), 0, "--dry-run must never POST");

    assert_eq!(w.run(&cfg, &["sync"]).await.code, 0);
    let clean = w.run(&cfg, &["plan"]).await;
    assert_eq!(clean.code, 0, "{}", clean.output());

    // A UI edit on the portal shows as a `~` change with old and new fingerprints.
    w.alpha
        .set_value("google", "googleClientId", "edited-in-the-ui");
    let drift = w.run(&cfg, &["plan", "--portal", "alpha"]).await;
    assert_eq!(drift.code, 2, "{}", drift.output());
    assert!(
        drift.stdout.contains("~ googleClientId"),
        "{}",
        drift.output()
    );
    assert!(
        !drift.stdout.contains("edited-in-the-ui"),
        "{}",
        drift.output()
    );
    assert!(
        !drift.stdout.contains("portal beta"),
        "--portal filters: {}",
        drift.output()
    );

    let broken = w.write(
        "b.toml",
        &w.standard_config().replace("#client_id", "#no_such_key"),
    );
    let error = w.run(&broken, &["plan"]).await;
    assert_eq!(error.code, 1, "{}", error.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_key_skips_only_that_service_and_exits_1() {
    let w = World::start().await;
    // The portal already holds older google values: they must stay untouched.
    w.alpha.set_value("google", "googleClientId", "old-id");
    w.alpha
        .set_value("google", "googleClientSecret", "old-secret");
    let text = w
        .standard_config()
        .replace("oauth/google#client_secret", "oauth/google#client_secretx")
        .replace("\"aws:docspace/gcs\"", "\"aws:docspace/does-not-exist\"");
    let cfg = w.write("a.toml", &text);
    let run = w.run(&cfg, &["sync"]).await;
    assert_eq!(run.code, 1, "{}", run.output());
    for double in [&w.alpha, &w.beta] {
        let posted = posted(double);
        assert!(
            props_of(&posted, "google").is_empty(),
            "no partial google push: {posted:?}"
        );
        assert!(props_of(&posted, "googlecloud").is_empty(), "{posted:?}");
        // Everything else is still synced.
        assert_eq!(props_of(&posted, "s3").len(), 1);
        assert_eq!(props_of(&posted, "telegram").len(), 1);
    }
    assert_eq!(
        w.alpha.value("google", "googleClientId").as_deref(),
        Some("old-id")
    );
    assert_eq!(
        w.alpha.value("google", "googleClientSecret").as_deref(),
        Some("old-secret")
    );
    assert!(
        run.stdout.contains("client_secretx") && run.stdout.contains("SKIPPED"),
        "{}",
        run.output()
    );
    assert!(
        run.stdout
            .contains("docspace/does-not-exist does not exist"),
        "{}",
        run.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_portal_down_does_not_stop_the_other() {
    let w = World::start().await;
    // A port with nothing listening: connection refused.
    let closed = format!("http://127.0.0.1:{}", testservers::free_port());
    let cfg = w.write(
        "a.toml",
        &w.config_with(&w.alpha.url(), &closed, STANDARD_MAPS),
    );
    let started = std::time::Instant::now();
    let run = w.run(&cfg, &["sync"]).await;
    assert_eq!(run.code, 1, "{}", run.output());
    assert_eq!(
        w.alpha.count("POST", AUTHSERVICE),
        4,
        "alpha is still synced: {}",
        run.output()
    );
    assert_eq!(
        w.alpha.value("google", "googleClientSecret").as_deref(),
        Some(GOOGLE_SECRET)
    );
    assert!(
        run.stdout.contains("portal beta: ERROR cannot connect"),
        "{}",
        run.output()
    );
    // Not a timing assertion on the happy path: a refused port must not cost a timeout.
    assert!(started.elapsed() < std::time::Duration::from_secs(30));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_and_a_persistent_failure_is_reported() {
    let w = World::start().await;
    let cfg = w.write("a.toml", &w.standard_config());
    // alpha: two 503s then fine → retried, synced. beta: 500 forever → reported.
    w.alpha.inject(Fault {
        kind: FaultKind::Status(503),
        method: Some("GET".into()),
        times: Some(2),
    });
    w.beta.inject(Fault {
        kind: FaultKind::Status(500),
        method: None,
        times: None,
    });
    let run = w.run(&cfg, &["sync"]).await;
    assert_eq!(run.code, 1, "{}", run.output());
    assert_eq!(
        w.alpha.value("s3", "acesskey").as_deref(),
        Some(S3_ACCESS),
        "{}",
        run.output()
    );
    assert!(
        run.stdout.contains("portal beta: ERROR HTTP 500"),
        "{}",
        run.output()
    );
    assert_eq!(w.beta.count("POST", AUTHSERVICE), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_keys_rejection_is_reported_as_an_incident() {
    let w = World::start().await;
    w.bao
        .kv1_put(
            "kv1",
            "telegram/alpha",
            &[("token", "not-a-telegram-token-PLANTED")],
        )
        .await;
    let cfg = w.write("a.toml", &w.standard_config());
    let run = w.run(&cfg, &["sync"]).await;
    run.assert_no_secrets(&["not-a-telegram-token-PLANTED"]);
    assert_eq!(run.code, 1, "{}", run.output());
    assert!(run.stdout.contains("Bad keys"), "{}", run.output());
    assert!(run.stderr.contains("INCIDENT"), "{}", run.output());
    // The portal cleared the service; the other portal and services are fine.
    assert_eq!(
        w.alpha.value("telegram", "telegramBotToken").as_deref(),
        Some("")
    );
    assert_eq!(
        w.beta.value("telegram", "telegramBotToken").as_deref(),
        Some(TG_BETA)
    );
    assert_eq!(
        w.alpha.value("google", "googleClientId").as_deref(),
        Some(GOOGLE_ID)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paid_service_refused_by_plan_is_a_rejection_others_pass() {
    let w = World::start_with(
        DoubleConfig {
            paid_allowed: false,
            ..double_config(ALPHA_KEY)
        },
        double_config(BETA_KEY),
    )
    .await;
    let cfg = w.write("a.toml", &w.standard_config());
    let run = w.run(&cfg, &["sync"]).await;
    assert_eq!(run.code, 1, "{}", run.output());
    assert!(run.stdout.contains("s3 FAILED: 402"), "{}", run.output());
    assert_eq!(
        w.alpha.value("google", "googleClientId").as_deref(),
        Some(GOOGLE_ID)
    );
    assert_eq!(w.beta.value("s3", "acesskey").as_deref(), Some(S3_ACCESS));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_value_is_refused_before_sending() {
    let w = World::start().await;
    let huge = format!(
        "{{\"type\":\"service_account\",\"pad\":\"{}\"}}",
        "A".repeat(4100)
    );
    w.moto.put_secret_value("docspace/gcs", &huge).await;
    let cfg = w.write("a.toml", &w.standard_config());
    let run = w.run(&cfg, &["sync"]).await;
    assert_eq!(run.code, 1, "{}", run.output());
    assert!(
        props_of(&posted(&w.alpha), "googlecloud").is_empty(),
        "nothing sent for googlecloud"
    );
    assert!(run.stdout.contains("at most 4000"), "{}", run.output());
    assert!(!run.stdout.contains("AAAAAAAAAA"), "{}", run.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_limit_the_cycle() {
    let w = World::start().await;
    let cfg = w.write("a.toml", &w.standard_config());
    let run = w
        .run(&cfg, &["sync", "--portal", "beta", "--service", "google"])
        .await;
    assert_eq!(run.code, 0, "{}", run.output());
    assert_eq!(
        w.alpha.count("POST", AUTHSERVICE) + w.alpha.count("GET", AUTHSERVICE),
        0
    );
    assert_eq!(
        posted(&w.beta),
        vec![(
            "google".to_string(),
            vec![
                "googleClientId".to_string(),
                "googleClientSecret".to_string()
            ]
        )]
    );
    let unknown = w.run(&cfg, &["sync", "--portal", "gamma"]).await;
    assert_eq!(unknown.code, 1);
    assert!(
        unknown.stderr.contains("unknown portal `gamma`"),
        "{}",
        unknown.output()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_and_services_command_never_show_values() {
    let w = World::start().await;
    let cfg = w.write("a.toml", &w.standard_config());
    let run = w
        .run(
            &cfg,
            &["--log-format", "json", "--log-level", "debug", "sync"],
        )
        .await;
    assert_eq!(run.code, 0, "{}", run.output());
    let push_lines: Vec<serde_json::Value> = run
        .stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == "pushed")
        .collect();
    assert_eq!(push_lines.len(), 7, "{}", run.output());
    assert!(push_lines
        .iter()
        .all(|l| l["portal"].is_string() && l["service"].is_string() && l["props"].is_string()));

    let services = w.run(&cfg, &["services", "--portal", "alpha"]).await;
    assert_eq!(services.code, 0, "{}", services.output());
    assert!(
        services.stdout.contains("googleClientSecret") && services.stdout.contains(" set"),
        "{}",
        services.output()
    );
    assert!(services.stdout.contains("[paid]"), "{}", services.output());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_source_and_login_auth() {
    let w = World::start_with(
        DoubleConfig {
            users: vec![portal_double::User {
                email: "admin@example.com".into(),
                password: "portal-password-PLANTED".into(),
                admin: true,
                tfa: false,
            }],
            ..double_config(ALPHA_KEY)
        },
        double_config(BETA_KEY),
    )
    .await;
    let secrets = w.dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(
        secrets.join("microsoft.json"),
        r#"{"client_id":"ms-id-PLANTED","client_secret":"ms-secret-PLANTED"}"#,
    )
    .unwrap();
    std::fs::write(secrets.join("dropbox-secret"), "dropbox-secret-PLANTED\n").unwrap();
    std::fs::write(w.dir.path().join("pw"), "portal-password-PLANTED\n").unwrap();
    let maps = format!(
        r#"
[sources.files]
kind = "files"
dir = "{}"

[[map]]
service = "microsoft"
props.microsoftClientId = "files:microsoft.json#client_id"
props.microsoftClientSecret = "files:microsoft.json#client_secret"

[[map]]
service = "dropbox"
props.dropboxClientId = {{ value = "dropbox-id" }}
props.dropboxClientSecret = "files:dropbox-secret"
"#,
        secrets.display()
    );
    let text = w.config_with(&w.alpha.url(), &w.beta.url(), &maps).replace(
        "api_key = { env = \"ALPHA_KEY\" }",
        &format!(
            "user = \"admin@example.com\"\npassword = {{ file = \"{}\" }}",
            w.dir.path().join("pw").display()
        ),
    );
    let cfg = w.write("a.toml", &text);
    let run = w.run(&cfg, &["sync"]).await;
    run.assert_no_secrets(&[
        "ms-id-PLANTED",
        "ms-secret-PLANTED",
        "dropbox-secret-PLANTED",
        "portal-password-PLANTED",
    ]);
    assert_eq!(run.code, 0, "{}", run.output());
    assert_eq!(
        w.alpha
            .value("microsoft", "microsoftClientSecret")
            .as_deref(),
        Some("ms-secret-PLANTED")
    );
    // The trailing newline of a whole-file value is trimmed.
    assert_eq!(
        w.beta.value("dropbox", "dropboxClientSecret").as_deref(),
        Some("dropbox-secret-PLANTED")
    );
    // One login, reused for GET, POSTs and the read-back.
    assert_eq!(w.alpha.login_count(), 1);
    assert!(w
        .alpha
        .requests()
        .iter()
        .all(|r| r.path != AUTHSERVICE || r.status == 200));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_reports_portal_service_prop_problems() {
    let w = World::start().await;
    let maps = format!(
        "{STANDARD_MAPS}\n[[map]]\nservice = \"bitly\"\nprops.bitlyToken = {{ value = \"x\" }}\n"
    )
    .replace("props.googleClientSecret", "props.googleClientSecrte");
    let cfg = w.write(
        "a.toml",
        &w.config_with(&w.alpha.url(), &w.beta.url(), &maps),
    );
    let offline = w.run(&cfg, &["check"]).await;
    assert_eq!(
        offline.code,
        0,
        "unknown names are warnings offline: {}",
        offline.output()
    );
    assert!(
        offline.stderr.contains("did you mean `googleClientSecret`"),
        "{}",
        offline.output()
    );

    let online = w.run(&cfg, &["check", "--online"]).await;
    assert_eq!(online.code, 1, "{}", online.output());
    assert!(
        online
            .stdout
            .contains("alpha / bitly: the portal has no service `bitly`"),
        "{}",
        online.output()
    );
    assert!(
        online.stdout.contains(
            "beta / google: service `google` on this portal has no prop(s) `googleClientSecrte`"
        ),
        "{}",
        online.output()
    );
    assert_eq!(w.posts(), 0, "check never writes");

    let good = w.write("g.toml", &w.standard_config());
    let ok = w.run(&good, &["check", "--online"]).await;
    assert_eq!(ok.code, 0, "{}", ok.output());
    let wrong_key: Vec<(String, String)> = w
        .env
        .iter()
        .map(|(k, v)| {
            if k == "BETA_KEY" {
                (k.clone(), "sk-wrong".into())
            } else {
                (k.clone(), v.clone())
            }
        })
        .collect();
    let denied = authsync(&good, &["check", "--online"], &wrong_key).await;
    denied.assert_no_secrets(&[]);
    assert_eq!(denied.code, 1, "{}", denied.output());
    assert!(
        denied.stdout.contains("portal beta: 401"),
        "{}",
        denied.output()
    );
}
