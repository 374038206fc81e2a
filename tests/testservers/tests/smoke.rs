//! Starts the real servers and checks every helper against them.

use std::time::Instant;

use reqwest::Method;
use serde_json::{json, Value};
use testservers::{Moto, OpenBao};

async fn get_json(url: &str, token: &str) -> (u16, Value) {
    let resp = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(url)
        .header("X-Vault-Token", token)
        .send()
        .await
        .expect("GET");
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn openbao_kv_tokens_approle() {
    let t = Instant::now();
    let bao = OpenBao::start().await;
    eprintln!("OpenBao start: {:?} (at {})", t.elapsed(), bao.addr());
    assert!(bao.addr().starts_with("http://127.0.0.1:"));
    assert_eq!(bao.root_token(), "root");

    // KV v2 at secret/: two versions, read back over plain HTTP.
    assert_eq!(
        bao.kv2_put("secret", "portals/a", &[("key", "v1")]).await,
        1
    );
    assert_eq!(
        bao.kv2_put("secret", "portals/a", &[("key", "v2"), ("x", "y")])
            .await,
        2
    );
    let (status, body) =
        get_json(&format!("{}/v1/secret/data/portals/a", bao.addr()), "root").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["data"], json!({"key": "v2", "x": "y"}));
    assert_eq!(body["data"]["metadata"]["version"], json!(2));
    let (status, body) = get_json(
        &format!("{}/v1/secret/metadata/portals/a", bao.addr()),
        "root",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["current_version"], json!(2));
    assert_eq!(
        bao.kv2_get("secret", "portals/a").await,
        Some((json!({"key": "v2", "x": "y"}), 2))
    );

    bao.kv2_delete_metadata("secret", "portals/a").await;
    assert_eq!(bao.kv2_get("secret", "portals/a").await, None);

    // A second KV v2 mount, usable at once.
    bao.enable_kv2("kv2b").await;
    assert_eq!(bao.kv2_put("kv2b", "p", &[("k", "v")]).await, 1);

    // KV v1.
    bao.enable_kv1("kv1").await;
    bao.kv1_put("kv1", "portals/b", &[("key", "plain")]).await;
    let (status, body) = get_json(&format!("{}/v1/kv1/portals/b", bao.addr()), "root").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"], json!({"key": "plain"}));

    // Policy + AppRole login.
    bao.put_policy(
        "read-portals",
        r#"path "secret/data/portals/*" { capabilities = ["read"] }
path "secret/metadata/portals/*" { capabilities = ["read", "list"] }"#,
    )
    .await;
    bao.kv2_put("secret", "portals/c", &[("key", "c")]).await;
    bao.enable_approle("approle").await;
    let (role_id, secret_id) = bao
        .approle_create("approle", "authsync", &["read-portals"], "1h")
        .await;
    assert!(!role_id.is_empty() && !secret_id.is_empty());
    let (status, body) = bao
        .request(
            Method::POST,
            "auth/approle/login",
            None,
            Some(json!({"role_id": role_id, "secret_id": secret_id})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let approle_token = body["auth"]["client_token"].as_str().unwrap().to_string();
    assert!(body["auth"]["policies"]
        .as_array()
        .unwrap()
        .contains(&json!("read-portals")));
    assert_eq!(body["auth"]["lease_duration"], json!(3600));
    let (status, body) = get_json(
        &format!("{}/v1/secret/data/portals/c", bao.addr()),
        &approle_token,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["data"]["key"], json!("c"));
    // The policy does not allow writes.
    let (status, _) = bao
        .request(
            Method::POST,
            "secret/data/portals/c",
            Some(&approle_token),
            Some(json!({"data": {"key": "nope"}})),
        )
        .await;
    assert_eq!(status, 403);

    // Child token: works, then is revoked.
    let token = bao.create_token(&["read-portals"], "10m").await;
    assert_ne!(token, "root");
    let lookup = format!("{}/v1/auth/token/lookup-self", bao.addr());
    let (status, body) = get_json(&lookup, &token).await;
    assert_eq!(status, 200, "{body}");
    assert!(body["data"]["policies"]
        .as_array()
        .unwrap()
        .contains(&json!("read-portals")));
    let ttl = body["data"]["ttl"].as_u64().unwrap();
    assert!((590..=600).contains(&ttl), "ttl {ttl}");
    bao.revoke_token(&token).await;
    let (status, _) = get_json(&lookup, &token).await;
    assert_eq!(status, 403);

    // Seal / unseal.
    bao.seal().await;
    let (status, _) = get_json(&format!("{}/v1/secret/data/portals/c", bao.addr()), "root").await;
    assert_eq!(status, 503);
    bao.unseal().await;
    let (status, _) = get_json(&format!("{}/v1/sys/health", bao.addr()), "root").await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn openbao_stop_and_restart() {
    let mut bao = OpenBao::start().await;
    let addr = bao.addr();
    bao.kv2_put("secret", "x", &[("k", "v")]).await;
    let t = Instant::now();
    bao.stop().await;
    eprintln!("OpenBao stop: {:?}", t.elapsed());
    assert!(!bao.is_running());
    let err = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{addr}/v1/sys/health"))
        .send()
        .await
        .expect_err("server is stopped");
    assert!(err.is_connect(), "{err}");
    bao.stop().await; // idempotent

    let t = Instant::now();
    bao.restart().await;
    eprintln!("OpenBao restart: {:?}", t.elapsed());
    assert_eq!(bao.addr(), addr);
    assert_eq!(
        bao.kv2_get("secret", "x").await,
        None,
        "dev mode keeps nothing"
    );
    assert_eq!(bao.kv2_put("secret", "x", &[("k", "v")]).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_openbaos_in_parallel() {
    let t = Instant::now();
    let (a, b) = tokio::join!(OpenBao::start(), OpenBao::start());
    eprintln!("two OpenBao servers in parallel: {:?}", t.elapsed());
    assert_ne!(a.port(), b.port());
    assert_ne!(a.port() + 1, b.port());
    assert_ne!(b.port() + 1, a.port());
    assert_eq!(a.kv2_put("secret", "p", &[("k", "a")]).await, 1);
    assert_eq!(b.kv2_put("secret", "p", &[("k", "b")]).await, 1);
    assert_eq!(a.kv2_get("secret", "p").await.unwrap().0["k"], json!("a"));
    assert_eq!(b.kv2_get("secret", "p").await.unwrap().0["k"], json!("b"));
}

#[test]
fn openbao_is_killed_on_drop_even_on_panic() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let port = std::sync::Mutex::new(0u16);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        rt.block_on(async {
            let bao = OpenBao::start().await;
            *port.lock().unwrap() = bao.port();
            panic!("test failure while the server runs");
        })
    }));
    assert!(result.is_err());
    let port = *port.lock().unwrap();
    assert_ne!(port, 0);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "OpenBao still listens on {port} after the panic"
    );
}

#[tokio::test]
async fn moto_secrets_manager() {
    let t = Instant::now();
    let moto = Moto::start().await;
    eprintln!("moto start: {:?} (at {})", t.elapsed(), moto.endpoint());
    let t = Instant::now();
    let arn = moto.create_secret("authsync/portal-a", "s3cret-1").await;
    eprintln!("moto first CreateSecret: {:?}", t.elapsed());
    assert!(
        arn.starts_with("arn:aws:secretsmanager:us-east-1:")
            && arn.contains(":secret:authsync/portal-a-"),
        "{arn}"
    );
    assert_eq!(
        moto.get_secret_string("authsync/portal-a").await.as_deref(),
        Some("s3cret-1")
    );

    let v2 = moto.put_secret_value("authsync/portal-a", "s3cret-2").await;
    assert!(!v2.is_empty());
    let resp = moto
        .call("GetSecretValue", json!({"SecretId": "authsync/portal-a"}))
        .await;
    assert_eq!(resp["SecretString"], json!("s3cret-2"));
    assert_eq!(resp["VersionId"], json!(v2));
    let resp = moto
        .call(
            "GetSecretValue",
            json!({"SecretId": "authsync/portal-a", "VersionStage": "AWSPREVIOUS"}),
        )
        .await;
    assert_eq!(resp["SecretString"], json!("s3cret-1"));

    // Binary secret.
    let bytes = [0u8, 1, 2, 250, 255, b'k'];
    let bin_arn = moto.create_binary_secret("authsync/bin", &bytes).await;
    assert!(bin_arn.contains(":secret:authsync/bin-"), "{bin_arn}");
    let resp = moto
        .call("GetSecretValue", json!({"SecretId": "authsync/bin"}))
        .await;
    assert_eq!(resp["SecretBinary"], json!("AAEC+v9r"));
    assert!(
        resp.get("SecretString").is_none_or(Value::is_null),
        "{resp}"
    );

    // Deletion: scheduled, then forced.
    moto.delete_secret("authsync/bin", false).await;
    let (status, body) = moto
        .request("GetSecretValue", json!({"SecretId": "authsync/bin"}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["__type"], json!("InvalidRequestException"), "{body}");
    moto.delete_secret("authsync/portal-a", true).await;
    let (status, body) = moto
        .request("GetSecretValue", json!({"SecretId": "authsync/portal-a"}))
        .await;
    // moto answers ResourceNotFoundException with 404 (AWS: 400); the SDK goes by __type.
    assert!(status == 400 || status == 404, "{status} {body}");
    assert_eq!(body["__type"], json!("ResourceNotFoundException"), "{body}");

    // Reset clears everything.
    moto.create_secret("authsync/c", "c").await;
    moto.reset().await;
    let resp = moto.call("ListSecrets", json!({})).await;
    assert_eq!(resp["SecretList"], json!([]), "{resp}");
    // A name that was scheduled for deletion is free again after the reset.
    moto.create_secret("authsync/bin", "again").await;

    let env = moto.env();
    let get = |k: &str| {
        env.iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{k} missing"))
    };
    assert_eq!(get("AWS_ENDPOINT_URL_SECRETS_MANAGER"), moto.endpoint());
    assert_eq!(get("AWS_ENDPOINT_URL_STS"), moto.endpoint());
    assert_eq!(get("AWS_ACCESS_KEY_ID"), "testing");
    assert_eq!(get("AWS_SECRET_ACCESS_KEY"), "testing");
    assert_eq!(get("AWS_REGION"), "us-east-1");
    assert_eq!(get("AWS_EC2_METADATA_DISABLED"), "true");
}

#[tokio::test]
async fn moto_stop_and_restart() {
    let mut moto = Moto::start().await;
    moto.create_secret("s", "v").await;
    moto.stop().await;
    assert!(!moto.is_running());
    let err = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("{}/moto-api/", moto.endpoint()))
        .send()
        .await
        .expect_err("server is stopped");
    assert!(err.is_connect(), "{err}");
    let t = Instant::now();
    moto.restart().await;
    eprintln!("moto restart: {:?}", t.elapsed());
    let (_, body) = moto
        .request("GetSecretValue", json!({"SecretId": "s"}))
        .await;
    assert_eq!(
        body["__type"],
        json!("ResourceNotFoundException"),
        "a restarted moto is empty: {body}"
    );
    moto.create_secret("s", "v").await;
}

fn port_closes_within(port: u16, secs: u64) -> bool {
    let deadline = Instant::now() + std::time::Duration::from_secs(secs);
    while Instant::now() < deadline {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

/// Run only by `abort_leaves_no_server_behind`, in a child test process.
#[test]
#[ignore = "helper of abort_leaves_no_server_behind"]
fn helper_start_servers_then_abort() {
    if std::env::var_os("TESTSERVERS_ABORT_HELPER").is_none() {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let bao = OpenBao::start().await;
        let moto = Moto::start().await;
        println!("PORTS {} {}", bao.port(), moto.port());
        // No destructor runs: only PR_SET_PDEATHSIG can clean up.
        std::process::abort();
    });
}

#[cfg(target_os = "linux")]
#[test]
fn abort_leaves_no_server_behind() {
    let out = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--ignored",
            "--exact",
            "helper_start_servers_then_abort",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("TESTSERVERS_ABORT_HELPER", "1")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout
        .lines()
        .find_map(|l| l.split("PORTS ").nth(1))
        .unwrap_or_else(|| {
            panic!(
                "helper printed no ports: {stdout}\n{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let ports: Vec<u16> = line.split(' ').map(|p| p.trim().parse().unwrap()).collect();
    assert!(!out.status.success());
    for port in ports {
        assert!(
            port_closes_within(port, 5),
            "a server still listens on {port} after its test process aborted"
        );
    }
}

/// A server may be shared between tests (each with its own runtime and thread): it must
/// outlive the thread and runtime that started it.
#[test]
fn server_outlives_the_thread_and_runtime_that_started_it() {
    let bao = std::thread::spawn(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async {
                let bao = OpenBao::start().await;
                bao.kv2_put("secret", "shared", &[("k", "v")]).await;
                bao
            })
    })
    .join()
    .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(
            bao.kv2_get("secret", "shared").await,
            Some((json!({"k": "v"}), 1))
        );
    });
    let port = bao.port();
    drop(bao);
    assert!(port_closes_within(port, 1));
}

#[tokio::test]
async fn moto_sqs_queues_and_messages() {
    let moto = Moto::start().await;
    let q = moto
        .create_queue_with("events", &[("VisibilityTimeout", "1")])
        .await;
    assert!(
        q.starts_with(&moto.endpoint()) && q.ends_with("/123456789012/events"),
        "{q}"
    );
    assert_eq!(
        moto.queue_counts(&q).await,
        testservers::QueueCounts::default()
    );
    let id = moto.send_message(&q, r#"{"hello": "world"}"#).await;
    assert!(!id.is_empty());
    moto.send_message(&q, "second").await;
    let counts = moto.queue_counts(&q).await;
    assert_eq!(
        (counts.visible, counts.in_flight, counts.total()),
        (2, 0, 2)
    );

    // A received message is in flight until deleted or its visibility timeout ends.
    let got = moto
        .sqs_call(
            "ReceiveMessage",
            json!({"QueueUrl": q, "MaxNumberOfMessages": 1, "WaitTimeSeconds": 0}),
        )
        .await;
    assert_eq!(got["Messages"].as_array().map(Vec::len), Some(1), "{got}");
    let counts = moto.queue_counts(&q).await;
    assert_eq!((counts.visible, counts.in_flight), (1, 1));

    moto.delete_queue(&q).await;
    let (status, body) = moto
        .sqs_request("GetQueueAttributes", json!({"QueueUrl": q}))
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(
        body["__type"], "com.amazonaws.sqs#QueueDoesNotExist",
        "{body}"
    );
    // Recreated under the same name: the same URL, empty.
    assert_eq!(moto.create_queue("events").await, q);
    assert_eq!(moto.queue_counts(&q).await.total(), 0);
}
