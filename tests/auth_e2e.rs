//! Authentication the way production runs it: Vault AppRole with short-lived tokens
//! (renewal, re-login after revocation, revoke on exit), a wrong secret_id, Kubernetes
//! auth against a stand-in endpoint, AWS assume-role through moto's STS, and portal
//! login (token reuse, re-login, two-factor, lockout).

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::daemon::Daemon;
use common::*;
use portal_double::{DoubleConfig, User};
use serde_json::{json, Value};
use testservers::CountingProxy;

const POLICY: &str = r#"
path "secret/*" { capabilities = ["read"] }
path "kv1/*" { capabilities = ["read"] }
"#;

/// The standard config with the vault source switched to AppRole.
fn approle_config(
    w: &World,
    role_id_file: &std::path::Path,
    secret_id_file: &std::path::Path,
    sync: &str,
) -> (String, String) {
    let listen = format!("127.0.0.1:{}", testservers::free_port());
    let text = w
        .standard_config()
        .replace(
            "kind = \"vault\"\n",
            &format!(
                "kind = \"vault\"\nauth = {{ method = \"approle\", role_id = {{ file = \"{}\" }}, secret_id = {{ file = \"{}\" }} }}\n",
                role_id_file.display(),
                secret_id_file.display()
            ),
        )
        .replacen("[sync]\n", &format!("[sync]\n{sync}\n"), 1)
        + &format!("\n[server]\nlisten = \"{listen}\"\n");
    (text, listen)
}

/// Revokes every token except the root token (what an operator's "revoke all" does).
async fn revoke_all_child_tokens(w: &World) {
    let list = w
        .bao
        .root_request(reqwest::Method::GET, "auth/token/accessors?list=true", None)
        .await;
    for acc in list["data"]["keys"].as_array().cloned().unwrap_or_default() {
        let acc = acc.as_str().unwrap_or_default().to_string();
        let info = w
            .bao
            .root_request(
                reqwest::Method::POST,
                "auth/token/lookup-accessor",
                Some(json!({ "accessor": acc })),
            )
            .await;
        let policies = info["data"]["policies"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if policies.iter().any(|p| p == "root") {
            continue;
        }
        w.bao
            .root_request(
                reqwest::Method::POST,
                "auth/token/revoke-accessor",
                Some(json!({ "accessor": acc })),
            )
            .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approle_token_is_reused_renewed_and_replaced_after_revocation() {
    let w = World::start().await;
    let mut audit = w.bao.enable_audit().await;
    w.bao.put_policy("authsync", POLICY).await;
    w.bao.enable_approle("approle").await;
    let (role_id, secret_id) = w
        .bao
        .approle_create("approle", "authsync", &["authsync"], "3s")
        .await;
    // Cap the tokens so renewal stops extending them and a new login is due.
    w.bao
        .root_request(
            reqwest::Method::POST,
            "auth/approle/role/authsync",
            Some(json!({ "token_max_ttl": "9s" })),
        )
        .await;
    let role_file = w.dir.path().join("role-id");
    let secret_file = w.dir.path().join("secret-id");
    std::fs::write(&role_file, format!("{role_id}\n")).unwrap();
    std::fs::write(&secret_file, format!("{secret_id}\n")).unwrap();
    let (text, listen) = approle_config(&w, &role_file, &secret_file, "interval = \"1s\"");
    let cfg = w.write("approle.toml", &text);
    let mut env = w.env.clone();
    env.retain(|(k, _)| k != "VAULT_TOKEN");
    let mut d = Daemon::start(&cfg, &env, &listen, "approle").await;
    d.wait_ready().await;
    audit.mark();

    // Keep syncing across several TTLs (3 s each, max 9 s): rotations keep arriving.
    for (i, secret) in [
        "rot-A-PLANTED",
        "rot-B-PLANTED",
        "rot-C-PLANTED",
        "rot-D-PLANTED",
    ]
    .iter()
    .enumerate()
    {
        w.rotate_google(secret).await;
        d.wait_for(&format!("rotation {i}"), Duration::from_secs(8), || async {
            w.alpha.value("google", "googleClientSecret").as_deref() == Some(*secret)
        })
        .await;
        tokio::time::sleep(Duration::from_millis(2500)).await; // let time (and TTLs) pass between rotations
    }
    audit.settle().await;
    let mine: Vec<_> = audit
        .requests()
        .into_iter()
        .filter(|e| !e.harness)
        .collect();
    let logins = mine
        .iter()
        .filter(|e| e.path == "auth/approle/login")
        .count();
    let renewals = mine
        .iter()
        .filter(|e| e.path == "auth/token/renew-self")
        .count();
    let cycles = d.cycles().await;
    eprintln!("approle: {cycles} cycles, {logins} logins, {renewals} renewals over ~14 s");
    assert!(
        renewals >= 1,
        "the token is renewed before it expires: {mine:?}"
    );
    assert!(
        (1..=3).contains(&logins),
        "a login per max TTL, never per cycle ({cycles} cycles): {logins}"
    );
    assert!((logins as f64) < cycles / 2.0);

    // Revoke the daemon's token behind its back: it logs in again and carries on.
    revoke_all_child_tokens(&w).await;
    audit.mark();
    w.rotate_google(GOOGLE_SECRET_2).await;
    d.wait_for(
        "the rotation after revocation",
        Duration::from_secs(8),
        || async {
            w.beta.value("google", "googleClientSecret").as_deref() == Some(GOOGLE_SECRET_2)
        },
    )
    .await;
    audit.settle().await;
    assert!(
        audit
            .requests()
            .iter()
            .any(|e| e.path == "auth/approle/login"),
        "a new login after revocation"
    );

    let metrics = d.metrics_text().await;
    let (code, output) = d.stop().await;
    assert_eq!(code, 0, "{output}");
    audit.settle().await;
    assert!(
        audit
            .requests()
            .iter()
            .any(|e| e.path == "auth/token/revoke-self"),
        "token revoked at shutdown"
    );
    for text in [&output, &metrics] {
        for secret in [&role_id, &secret_id] {
            assert!(
                !text.contains(secret.as_str()),
                "AppRole credential leaked:\n{text}"
            );
        }
        for s in PLANTED.iter().chain(&[
            "rot-A-PLANTED",
            "rot-B-PLANTED",
            "rot-C-PLANTED",
            "rot-D-PLANTED",
        ]) {
            assert!(!text.contains(s), "planted value leaked:\n{text}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_secret_id_is_a_clear_error_and_nothing_vault_backed_is_pushed() {
    let w = World::start().await;
    w.bao.put_policy("authsync", POLICY).await;
    w.bao.enable_approle("approle").await;
    let (role_id, _) = w
        .bao
        .approle_create("approle", "authsync", &["authsync"], "")
        .await;
    let role_file = w.dir.path().join("role-id");
    let secret_file = w.dir.path().join("secret-id");
    std::fs::write(&role_file, &role_id).unwrap();
    std::fs::write(&secret_file, "00000000-0000-0000-0000-wrong-PLANTED").unwrap();
    let (text, _) = approle_config(&w, &role_file, &secret_file, "");
    let cfg = w.write("bad.toml", &text);
    let run = w.run(&cfg, &["sync"]).await;
    run.assert_no_secrets(&["wrong-PLANTED", &role_id]);
    assert_eq!(run.code, 1, "{}", run.output());
    assert!(
        run.stderr.contains("AppRole login at auth/approle failed"),
        "{}",
        run.output()
    );
    for double in [&w.alpha, &w.beta] {
        let services: Vec<String> = posted(double).into_iter().map(|(s, _)| s).collect();
        assert!(
            !services.iter().any(|s| s == "google" || s == "telegram"),
            "{services:?}"
        );
        assert!(
            services.iter().any(|s| s == "s3"),
            "AWS-backed services still sync: {services:?}"
        );
    }
}

/// A stand-in for Vault's Kubernetes auth and KV v2 read endpoints, recording logins.
async fn kubernetes_stand_in() -> (String, Arc<Mutex<Vec<(String, Value)>>>) {
    use axum::routing::{get, post};
    let logins: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let rec = logins.clone();
    let app = axum::Router::new()
        .route(
            "/v1/auth/{mount}/login",
            // Vault clients send JSON without a Content-Type: parse the bytes.
            post(move |axum::extract::Path(mount): axum::extract::Path<String>, body: axum::body::Bytes| {
                let rec = rec.clone();
                async move {
                    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                    rec.lock().unwrap().push((mount, body));
                    axum::Json(json!({
                        "request_id": "1", "lease_id": "", "renewable": false, "lease_duration": 0, "data": null,
                        "wrap_info": null, "warnings": null,
                        "auth": { "client_token": "s.k8s-token-PLANTED", "accessor": "a", "policies": ["default"],
                                  "token_policies": ["default"], "metadata": {"role": "authsync"}, "lease_duration": 3600,
                                  "renewable": true, "entity_id": "e", "token_type": "service", "orphan": true }
                    }))
                }
            }),
        )
        .route(
            "/v1/sys/internal/ui/mounts/{*path}",
            get(|| async { axum::Json(json!({ "data": { "path": "secret/", "type": "kv", "options": { "version": "2" } } })) }),
        )
        .route(
            "/v1/secret/data/{*path}",
            get(|| async {
                axum::Json(json!({ "request_id": "2", "lease_id": "", "renewable": false, "lease_duration": 0,
                    "data": { "data": { "client_id": "k8s-id", "client_secret": "k8s-secret-PLANTED" },
                              "metadata": { "created_time": "2026-01-01T00:00:00Z", "custom_metadata": null,
                                            "deletion_time": "", "destroyed": false, "version": 1 } },
                    "wrap_info": null, "warnings": null, "auth": null }))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), logins)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kubernetes_auth_sends_role_and_the_current_service_account_token() {
    // No cluster here: a stand-in answers Vault's endpoints and records the login.
    let w = World::start().await;
    let (addr, logins) = kubernetes_stand_in().await;
    let jwt = w.dir.path().join("token");
    std::fs::write(&jwt, "jwt-one-PLANTED\n").unwrap();
    let maps = r#"
[[map]]
service = "google"
props.googleClientId = "vault:secret/oauth/google#client_id"
props.googleClientSecret = "vault:secret/oauth/google#client_secret"
"#;
    let text = w.config_with(&w.alpha.url(), &w.beta.url(), maps).replace(
        &format!("address = \"{}\"", w.bao.addr()),
        &format!(
            "address = \"{addr}\"\nauth = {{ method = \"kubernetes\", role = \"authsync\", mount = \"k8s\", jwt_file = \"{}\" }}",
            jwt.display()
        ),
    );
    let cfg = w.write("k8s.toml", &text);
    let run = w.run(&cfg, &["sync"]).await;
    run.assert_no_secrets(&[
        "jwt-one-PLANTED",
        "s.k8s-token-PLANTED",
        "k8s-secret-PLANTED",
    ]);
    assert_eq!(run.code, 0, "{}", run.output());
    assert_eq!(
        w.alpha.value("google", "googleClientSecret").as_deref(),
        Some("k8s-secret-PLANTED")
    );
    // The projected token rotates: the next login sends the new one.
    std::fs::write(&jwt, "jwt-two-PLANTED\n").unwrap();
    let run = w.run(&cfg, &["sync"]).await;
    run.assert_no_secrets(&[
        "jwt-one-PLANTED",
        "jwt-two-PLANTED",
        "s.k8s-token-PLANTED",
        "k8s-secret-PLANTED",
    ]);
    let logins = logins.lock().unwrap().clone();
    assert_eq!(logins.len(), 2, "{logins:?}");
    assert_eq!(logins[0].0, "k8s");
    assert_eq!(
        logins[0].1,
        json!({ "role": "authsync", "jwt": "jwt-one-PLANTED" })
    );
    assert_eq!(logins[1].1["jwt"], "jwt-two-PLANTED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aws_assume_role_credentials_are_used_for_reads() {
    let w = World::start().await;
    let sts = CountingProxy::start(&w.moto.endpoint()).await;
    let text = w.standard_config().replace(
        "region = \"us-east-1\"",
        "region = \"us-east-1\"\nrole_arn = \"arn:aws:iam::123456789012:role/authsync\"",
    );
    let cfg = w.write("role.toml", &text);
    let mut env: Vec<(String, String)> = w
        .env
        .iter()
        .filter(|(k, _)| k != "AWS_ENDPOINT_URL_STS")
        .cloned()
        .collect();
    env.push(("AWS_ENDPOINT_URL_STS".into(), sts.url()));
    let run = authsync(&cfg, &["sync"], &env).await;
    run.assert_no_secrets(&[]);
    assert_eq!(run.code, 0, "{}", run.output());
    assert_eq!(
        w.alpha.value("s3", "secretaccesskey").as_deref(),
        Some(S3_SECRET)
    );
    let sts_calls: Vec<_> = sts.requests();
    assert!(!sts_calls.is_empty(), "AssumeRole went to STS");
    assert!(
        sts_calls.iter().all(|r| r.action.contains("POST")),
        "only AssumeRole (query protocol POSTs): {:?}",
        sts.counts()
    );
}

fn portal_user(tfa: bool) -> DoubleConfig {
    DoubleConfig {
        users: vec![User {
            email: "admin@example.com".into(),
            password: "portal-pw-PLANTED".into(),
            admin: true,
            tfa,
        }],
        ..double_config(ALPHA_KEY)
    }
}

fn login_config(w: &World, password: &str, sync: &str) -> (String, String, Vec<(String, String)>) {
    let listen = format!("127.0.0.1:{}", testservers::free_port());
    let text = w
        .standard_config()
        .replace(
            "api_key = { env = \"ALPHA_KEY\" }",
            "user = \"admin@example.com\"\npassword = { env = \"ALPHA_PASSWORD\" }",
        )
        .replacen("[sync]\n", &format!("[sync]\n{sync}\n"), 1)
        + &format!("\n[server]\nlisten = \"{listen}\"\ntrigger_token = {{ env = \"TRIGGER\" }}\n");
    let mut env = w.env.clone();
    env.push(("ALPHA_PASSWORD".into(), password.into()));
    env.push(("TRIGGER".into(), "trigger-PLANTED".into()));
    (text, listen, env)
}

fn login_attempts(w: &World) -> usize {
    w.alpha
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/api/2.0/authentication"))
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn portal_login_token_is_reused_and_renewed_after_expiry() {
    let w = World::start_with(portal_user(false), double_config(BETA_KEY)).await;
    let (text, listen, env) = login_config(&w, "portal-pw-PLANTED", "interval = \"1h\"");
    let cfg = w.write("login.toml", &text);
    let mut d = Daemon::start(&cfg, &env, &listen, "login").await;
    d.wait_ready().await;
    assert_eq!(
        w.alpha.login_count(),
        1,
        "one login for the GET, the POSTs and the read-back"
    );
    assert!(w.alpha.count("POST", AUTHSERVICE) >= 3);

    // The portal expires every token: the next request gets 401, authsync logs in once
    // more and carries on.
    w.alpha.expire_tokens();
    w.rotate_google(GOOGLE_SECRET_2).await;
    assert_eq!(d.trigger(Some("trigger-PLANTED"), None).await, 202);
    d.wait_for(
        "the push after re-login",
        Duration::from_secs(5),
        || async {
            w.alpha.value("google", "googleClientSecret").as_deref() == Some(GOOGLE_SECRET_2)
        },
    )
    .await;
    assert_eq!(w.alpha.login_count(), 2);
    let (code, output) = d.stop().await;
    assert_eq!(code, 0);
    for s in PLANTED
        .iter()
        .chain(&["portal-pw-PLANTED", "trigger-PLANTED"])
    {
        assert!(!output.contains(s), "leak:\n{output}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_factor_account_gets_a_clear_error() {
    let w = World::start_with(portal_user(true), double_config(BETA_KEY)).await;
    let (text, _, env) = login_config(&w, "portal-pw-PLANTED", "");
    let cfg = w.write("tfa.toml", &text);
    let run = authsync(&cfg, &["sync"], &env).await;
    run.assert_no_secrets(&["portal-pw-PLANTED"]);
    assert_eq!(run.code, 1, "{}", run.output());
    assert!(
        run.stdout.contains("two-factor authentication") && run.stdout.contains("use an api_key"),
        "{}",
        run.output()
    );
    assert_eq!(w.alpha.count("POST", AUTHSERVICE), 0);
    assert_eq!(
        w.beta.count("POST", AUTHSERVICE),
        3,
        "the other portal is unaffected"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_password_is_not_retried_in_a_loop() {
    let w = World::start_with(portal_user(false), double_config(BETA_KEY)).await;
    let (text, listen, env) = login_config(&w, "wrong-pw-PLANTED", "interval = \"1s\"");
    let cfg = w.write("lock.toml", &text);
    let mut d = Daemon::start(&cfg, &env, &listen, "lock").await;
    d.wait_ready().await;
    d.wait_cycles(4.0, Duration::from_secs(20)).await;
    // Several cycles, but one failed login attempt: the next waits 60 s, far from the
    // portal's lockout (5 failures in 60 s).
    assert_eq!(login_attempts(&w), 1, "{}", d.output());
    assert_eq!(
        d.metric(
            "authsync_out_of_sync",
            &[("portal", "alpha"), ("service", "google")]
        )
        .await,
        1.0
    );
    let (code, output) = d.stop().await;
    assert_eq!(code, 0);
    assert!(output.contains("wrong user name or password"), "{output}");
    for s in PLANTED.iter().chain(&["wrong-pw-PLANTED"]) {
        assert!(!output.contains(s), "leak:\n{output}");
    }
}
