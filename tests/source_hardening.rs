//! Hardening of the secret sources (issue 14, items 2, 3 and 9), through the real binary
//! where the operator would see it and through the library where requests are counted:
//!
//! * secret files: `/dev/zero`, a FIFO without a writer, a directory and a 65 KiB file
//!   give clear errors at once (`files` source and `{ file = … }` settings alike); a
//!   symlink to a regular file is read;
//! * Vault logins: with the AppRole secret_id destroyed and the token revoked, 20 paths
//!   cost at most one login per cycle (OpenBao's audit log); a source whose login failed
//!   at start-up logs in once the secret_id is fixed, without a reload;
//! * AWS: 25 names without a common prefix are listed 10 per ListSecrets request, by
//!   name, never the whole account; errors carry their prefix once;
//! * Vault answers are bounded (1 MiB); a huge TTL does not overflow.

mod common;

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use authsync::sources::{Source, SourceError, Sources};
use common::daemon::{daemon_config, daemon_env, Daemon};
use common::*;
use serde_json::json;
use testservers::Moto;

/// The AWS SDK reads credentials from the environment: set once, first thing in every
/// test of this file that builds a source in-process.
fn aws_env() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (k, v) in [
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ] {
            std::env::set_var(k, v);
        }
    });
}

/// Sources built from `[sources.*]` blocks, as the binary builds them.
async fn connect(sources_toml: &str) -> Sources {
    let text = format!(
        "{sources_toml}\n[portals.p]\nurl = \"https://docs.example.com\"\napi_key = \"k\"\n"
    );
    let loaded = authsync::config::parse(&text, Path::new("hardening.toml"))
        .unwrap_or_else(|e| panic!("config: {e}"));
    let (sources, failed) = Sources::connect(&loaded.config).await;
    assert!(failed.is_empty(), "{}", failed.len());
    sources
}

fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo")
        .arg(path)
        .status()
        .expect("run mkfifo");
    assert!(status.success());
}

// ------------------------------------------------------------------------------------
// Secret files
// ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn special_and_oversized_secret_files_are_clear_errors_at_once() {
    let w = World::start().await;
    let dir = w.dir.path().join("secrets");
    std::fs::create_dir_all(dir.join("adir")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", dir.join("zero")).unwrap();
    mkfifo(&dir.join("fifo"));
    std::fs::write(dir.join("big"), vec![b'x'; 65 * 1024]).unwrap();
    std::fs::write(dir.join("good.txt"), "ms-secret-PLANTED\n").unwrap();
    std::os::unix::fs::symlink(dir.join("good.txt"), dir.join("link")).unwrap();
    // A `{ file = … }` setting pointing at a FIFO: the Vault token.
    let token_fifo = w.dir.path().join("token-fifo");
    mkfifo(&token_fifo);
    let maps = format!(
        r#"
[sources.files]
kind = "files"
dir = "{dir}"

[[map]]
service = "box"
props.boxClientId = "files:zero"
props.boxClientSecret = {{ value = "x" }}

[[map]]
service = "dropbox"
props.dropboxClientId = "files:fifo"
props.dropboxClientSecret = {{ value = "x" }}

[[map]]
service = "zoom"
props.zoomClientId = "files:adir"
props.zoomClientSecret = {{ value = "x" }}

[[map]]
service = "weixin"
props.weixinClientId = "files:big"
props.weixinClientSecret = {{ value = "x" }}

[[map]]
service = "microsoft"
props.microsoftClientId = {{ value = "ms-id" }}
props.microsoftClientSecret = "files:link"

[[map]]
service = "google"
props.googleClientId = "vault:secret/oauth/google#client_id"
props.googleClientSecret = "vault:secret/oauth/google#client_secret"
"#,
        dir = dir.display()
    );
    let text = w
        .config_with(&w.alpha.url(), &w.beta.url(), &maps)
        .replacen(
            "kind = \"vault\"\n",
            &format!(
                "kind = \"vault\"\nauth = {{ method = \"token\", token = {{ file = \"{}\" }} }}\n",
                token_fifo.display()
            ),
            1,
        )
        // The other portal's API key is `/dev/zero`.
        .replace(
            "api_key = { env = \"BETA_KEY\" }",
            "api_key = { file = \"/dev/zero\" }",
        );
    let cfg = w.write("files.toml", &text);
    let started = Instant::now();
    let run = tokio::time::timeout(Duration::from_secs(30), w.run(&cfg, &["sync"]))
        .await
        .expect("a FIFO or /dev/zero must not hang the run");
    let took = started.elapsed();
    run.assert_no_secrets(&["ms-secret-PLANTED"]);
    assert_eq!(run.code, 1, "{}", run.output());
    let out = run.output();
    for (service, why) in [
        ("box", "is a character device, not a regular file"),
        ("dropbox", "is a FIFO (named pipe), not a regular file"),
        ("zoom", "is a directory, not a regular file"),
        ("weixin", "is larger than 64 KiB"),
        ("google", "token-fifo is a FIFO"),
    ] {
        assert!(
            run.stdout.contains(&format!("{service} SKIPPED")) && out.contains(why),
            "{service}: {why}\n{out}"
        );
    }
    assert!(out.contains("/dev/zero is a character device"), "{out}");
    // The symlink to a regular file works; nothing was sent for the others.
    assert_eq!(
        w.alpha
            .value("microsoft", "microsoftClientSecret")
            .as_deref(),
        Some("ms-secret-PLANTED")
    );
    for service in ["box", "dropbox", "zoom", "weixin", "google"] {
        let values = w.alpha.values(service);
        assert!(
            values.values().all(String::is_empty),
            "{service}: {values:?}"
        );
    }
    assert_eq!(w.beta.count("POST", AUTHSERVICE), 0);
    eprintln!("sync with special files took {took:?}");
    assert!(
        took < authsync::secret::SECRET_FILE_TIMEOUT * 2,
        "errors come at once, not after a timeout: {took:?}"
    );
}

// ------------------------------------------------------------------------------------
// Vault logins
// ------------------------------------------------------------------------------------

const POLICY: &str = r#"
path "secret/*" { capabilities = ["read"] }
path "sys/internal/ui/mounts/*" { capabilities = ["read"] }
"#;

/// Twenty props, each from its own KV v2 path, over ten services.
fn twenty_paths() -> String {
    let services: [(&str, &str, &str); 10] = [
        ("google", "googleClientId", "googleClientSecret"),
        ("facebook", "facebookClientId", "facebookClientSecret"),
        ("twitter", "twitterKey", "twitterSecret"),
        ("linkedin", "linkedInKey", "linkedInSecret"),
        ("box", "boxClientId", "boxClientSecret"),
        ("dropbox", "dropboxClientId", "dropboxClientSecret"),
        ("microsoft", "microsoftClientId", "microsoftClientSecret"),
        ("zoom", "zoomClientId", "zoomClientSecret"),
        ("weixin", "weixinClientId", "weixinClientSecret"),
        ("skydrive", "skydriveappkey", "skydriveappsecret"),
    ];
    services
        .iter()
        .map(|(service, a, b)| {
            format!(
                "\n[[map]]\nservice = \"{service}\"\nprops.{a} = \"vault:secret/many/{service}-a#v\"\nprops.{b} = \"vault:secret/many/{service}-b#v\"\n"
            )
        })
        .collect()
}

async fn seed_twenty(w: &World) {
    for service in [
        "google",
        "facebook",
        "twitter",
        "linkedin",
        "box",
        "dropbox",
        "microsoft",
        "zoom",
        "weixin",
        "skydrive",
    ] {
        for half in ["a", "b"] {
            w.bao
                .kv2_put(
                    "secret",
                    &format!("many/{service}-{half}"),
                    &[("v", &format!("{service}-{half}-PLANTED"))],
                )
                .await;
        }
    }
}

/// An AppRole daemon config over the twenty paths; returns (text, listen).
fn approle_daemon_config(w: &World, role_file: &Path, secret_file: &Path) -> (String, String) {
    let (text, listen) = daemon_config(w, "interval = \"1s\"", &twenty_paths());
    let text = text.replacen(
        "kind = \"vault\"\n",
        &format!(
            "kind = \"vault\"\nauth = {{ method = \"approle\", role_id = {{ file = \"{}\" }}, secret_id = {{ file = \"{}\" }} }}\n",
            role_file.display(),
            secret_file.display()
        ),
        1,
    );
    (text, listen)
}

fn approle_env(w: &World) -> Vec<(String, String)> {
    let mut env = daemon_env(w);
    env.retain(|(k, _)| k != "VAULT_TOKEN");
    env
}

/// Revokes every token but the root token.
async fn revoke_child_tokens(w: &World) {
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
        let root = info["data"]["policies"]
            .as_array()
            .is_some_and(|p| p.iter().any(|p| p == "root"));
        if !root {
            w.bao
                .root_request(
                    reqwest::Method::POST,
                    "auth/token/revoke-accessor",
                    Some(json!({ "accessor": acc })),
                )
                .await;
        }
    }
}

fn logins(audit: &testservers::AuditLog) -> usize {
    audit
        .requests()
        .iter()
        .filter(|e| !e.harness && e.path == "auth/approle/login")
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_secret_id_costs_at_most_one_login_per_cycle() {
    let w = World::start().await;
    seed_twenty(&w).await;
    let mut audit = w.bao.enable_audit().await;
    w.bao.put_policy("authsync", POLICY).await;
    w.bao.enable_approle("approle").await;
    let (role_id, secret_id) = w
        .bao
        .approle_create("approle", "authsync", &["authsync"], "1h")
        .await;
    let role_file = w.dir.path().join("role-id");
    let secret_file = w.dir.path().join("secret-id");
    std::fs::write(&role_file, &role_id).unwrap();
    std::fs::write(&secret_file, &secret_id).unwrap();
    let (text, listen) = approle_daemon_config(&w, &role_file, &secret_file);
    let cfg = w.write("storm.toml", &text);
    let mut d = Daemon::start(&cfg, &approle_env(&w), &listen, "storm").await;
    d.wait_ready().await;
    d.wait_for(
        "the twenty paths pushed",
        Duration::from_secs(15),
        || async {
            w.alpha.value("skydrive", "skydriveappsecret").as_deref() == Some("skydrive-b-PLANTED")
        },
    )
    .await;

    // The secret_id is destroyed and the daemon's token revoked: every read is refused
    // and every login fails from now on.
    w.bao
        .root_request(
            reqwest::Method::POST,
            "auth/approle/role/authsync/secret-id/destroy",
            Some(json!({ "secret_id": secret_id })),
        )
        .await;
    revoke_child_tokens(&w).await;
    audit.mark();
    let before = d.cycles().await;
    d.wait_cycles(4.0, Duration::from_secs(30)).await;
    audit.settle().await;
    let cycles = d.cycles().await - before;
    let attempts = logins(&audit);
    let reads = audit
        .requests()
        .iter()
        .filter(|e| !e.harness && e.path.starts_with("secret/"))
        .count();
    eprintln!("{cycles} cycles, {attempts} login attempts, {reads} KV requests");
    assert!(attempts >= 1, "the login is tried again");
    assert!(
        attempts as f64 <= cycles,
        "at most one login per cycle: {attempts} in {cycles} cycles"
    );
    let output = d.output();
    assert!(
        output.contains("AppRole login at auth/approle failed"),
        "{output}"
    );
    let (code, output) = d.stop().await;
    assert_eq!(code, 0, "{output}");
    for s in [&role_id, &secret_id] {
        assert!(!output.contains(s.as_str()), "AppRole credential leaked");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_whose_login_failed_at_start_logs_in_once_the_secret_id_is_fixed() {
    let w = World::start().await;
    seed_twenty(&w).await;
    w.bao.put_policy("authsync", POLICY).await;
    w.bao.enable_approle("approle").await;
    let (role_id, secret_id) = w
        .bao
        .approle_create("approle", "authsync", &["authsync"], "1h")
        .await;
    let role_file = w.dir.path().join("role-id");
    let secret_file = w.dir.path().join("secret-id");
    std::fs::write(&role_file, &role_id).unwrap();
    std::fs::write(&secret_file, "00000000-wrong-secret-id").unwrap();
    let (text, listen) = approle_daemon_config(&w, &role_file, &secret_file);
    let cfg = w.write("late.toml", &text);
    let mut d = Daemon::start(&cfg, &approle_env(&w), &listen, "late").await;
    d.wait_ready().await;
    d.wait_cycles(1.0, Duration::from_secs(10)).await;
    assert_eq!(
        w.alpha.value("google", "googleClientSecret").as_deref(),
        Some(""),
        "nothing without a login"
    );

    // The operator puts the right secret_id in place; no reload, no restart.
    std::fs::write(&secret_file, &secret_id).unwrap();
    d.wait_for(
        "the Vault services after the fix",
        Duration::from_secs(20),
        || async {
            w.alpha.value("google", "googleClientSecret").as_deref() == Some("google-b-PLANTED")
        },
    )
    .await;
    let (code, output) = d.stop().await;
    assert_eq!(code, 0, "{output}");
    assert!(!output.contains(secret_id.as_str()), "secret_id leaked");
}

// ------------------------------------------------------------------------------------
// AWS listings and error texts
// ------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_names_without_a_common_prefix_are_listed_by_name_ten_at_a_time() {
    aws_env();
    let (moto, proxy) = Moto::start_with_proxy().await;
    let words = [
        "alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india",
        "juliet", "kilo", "lima", "mike", "november", "oscar", "papa", "quebec", "romeo", "sierra",
        "tango", "uniform", "victor", "whiskey", "xray", "yankee",
    ];
    let names: Vec<String> = words.iter().map(|w| format!("{w}-key")).collect();
    for n in &names {
        moto.create_secret(n, "{\"k\":\"PLANTED-aws\"}").await;
    }
    moto.create_secret("zulu-unreferenced", "x").await;
    let sources = connect(&format!(
        "[sources.aws]\nkind = \"aws\"\nregion = \"us-east-1\"\nendpoint_url = \"{}\"\n",
        proxy.url()
    ))
    .await;
    let aws = sources.get("aws").cloned().expect("aws source");
    proxy.reset();
    let versions = aws.versions(&names).await;
    for n in &names {
        assert!(
            matches!(versions.get(n), Some(Ok(Some(_)))),
            "{n}: {:?}",
            versions.get(n).map(|r| r.as_ref().map(|v| v.is_some()))
        );
    }
    let lists: Vec<_> = proxy
        .requests()
        .into_iter()
        .filter(|r| r.action == "ListSecrets")
        .collect();
    assert_eq!(
        lists.len(),
        3,
        "25 names: three listings of at most 10 names"
    );
    let mut listed = BTreeSet::new();
    for r in &lists {
        let filters = r.body["Filters"].as_array().cloned().unwrap_or_default();
        assert_eq!(filters.len(), 1, "{}", r.body);
        assert_eq!(filters[0]["Key"], "name");
        let values = filters[0]["Values"].as_array().cloned().unwrap_or_default();
        assert!(!values.is_empty() && values.len() <= 10, "{}", r.body);
        listed.extend(values.iter().filter_map(|v| v.as_str().map(str::to_string)));
    }
    let wanted: BTreeSet<String> = names.iter().cloned().collect();
    assert_eq!(listed, wanted, "exactly the referenced names are listed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_errors_carry_their_prefix_once() {
    aws_env();
    let port = testservers::free_port();
    let sources = connect(&format!(
        r#"
[sources.aws]
kind = "aws"
region = "us-east-1"
endpoint_url = "http://127.0.0.1:{port}"
timeout = "2s"

[sources.vault]
kind = "vault"
address = "http://127.0.0.1:{port}"
timeout = "2s"
auth = {{ method = "token", token = "t" }}
"#
    ))
    .await;
    let paths = vec!["a/one".to_string(), "b/two".to_string()];
    let mut texts = Vec::new();
    for name in ["aws", "vault"] {
        let s = sources.get(name).cloned().expect("built");
        for (_, r) in s.read_many(&paths).await {
            texts.push(r.err().map(|e| e.to_string()).unwrap_or_default());
        }
        for (_, r) in s.versions(&paths).await {
            if let Err(e) = r {
                texts.push(e.to_string());
            }
        }
    }
    assert!(texts.len() >= 4, "{texts:?}");
    for t in &texts {
        assert!(t.starts_with("store unavailable: "), "{t}");
        assert_eq!(t.matches("unavailable").count(), 1, "doubled prefix: {t}");
    }
}

// ------------------------------------------------------------------------------------
// Vault answers
// ------------------------------------------------------------------------------------

/// A stand-in for Vault: a token lookup with an absurd TTL, and KV v2 reads of
/// 2 MiB (with and without a Content-Length).
async fn oversized_vault() -> String {
    use axum::routing::get;
    let big = || {
        let filler = "A".repeat(2 * 1024 * 1024);
        json!({ "data": { "data": { "v": filler }, "metadata": { "version": 1, "created_time": "" } } })
            .to_string()
    };
    let app = axum::Router::new()
        .route(
            "/v1/auth/token/lookup-self",
            get(|| async { axum::Json(json!({ "data": { "ttl": u64::MAX, "renewable": true } })) }),
        )
        .route("/v1/secret/data/sized", get(move || async move { big() }))
        .route(
            "/v1/secret/data/streamed",
            get(|| async {
                let chunk = axum::body::Bytes::from(vec![b' '; 64 * 1024]);
                let chunks = futures::stream::iter(
                    (0..64).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
                );
                axum::body::Body::from_stream(chunks)
            }),
        )
        .route(
            "/v1/secret/data/small",
            get(|| async {
                axum::Json(json!({ "data": { "data": { "v": "small-PLANTED" },
                    "metadata": { "version": 3, "created_time": "2026-01-01T00:00:00Z" } } }))
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    format!("http://{addr}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vault_answers_are_bounded_and_a_huge_ttl_does_not_overflow() {
    let addr = oversized_vault().await;
    let sources = connect(&format!(
        "[sources.vault]\nkind = \"vault\"\naddress = \"{addr}\"\nkv_version = 2\nauth = {{ method = \"token\", token = \"t\" }}\n"
    ))
    .await;
    let vault: Arc<dyn Source> = sources.get("vault").cloned().expect("built");
    for path in ["secret/sized", "secret/streamed"] {
        match vault.read(path).await {
            Err(e @ SourceError::Invalid(_)) => {
                let text = e.to_string();
                assert!(text.contains("larger than 1 MiB"), "{text}");
                assert!(!text.contains("AAAA"), "{text}");
            }
            Err(other) => panic!("{path}: {other}"),
            Ok(_) => panic!("{path}: a 4 MiB answer was read"),
        }
    }
    // The session with a TTL of u64::MAX seconds keeps working.
    let small = vault.read("secret/small").await.expect("a normal answer");
    assert_eq!(small.version.as_deref(), Some("3"));
    assert!(small.created.is_some());
    assert!(vault.authenticate().await.is_ok());
}
