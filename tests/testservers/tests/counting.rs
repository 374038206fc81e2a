//! Counting the requests the real servers saw: OpenBao's audit log and the counting proxy in
//! front of moto (driven by the real AWS SDK).

use std::time::{Duration, Instant};

use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
use reqwest::Method;
use serde_json::{json, Value};
use testservers::{AuditEntry, CountingProxy, Moto, OpenBao, ProxyFault};

fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(20))
        .build()
        .unwrap()
}

async fn bao_call(method: &str, url: &str, token: &str) -> u16 {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let resp = http()
        .request(method, url)
        .header("X-Vault-Token", token)
        .send()
        .await
        .expect("request to OpenBao");
    resp.status().as_u16()
}

fn entry(path: &str, operation: &str) -> AuditEntry {
    AuditEntry {
        path: path.into(),
        operation: operation.into(),
        harness: false,
        error: None,
    }
}

#[tokio::test]
async fn openbao_audit_log_counts_requests_by_path_and_operation() {
    let bao = OpenBao::start().await;
    let mut audit = bao.enable_audit().await;
    assert!(audit.path().starts_with(bao.dir()));
    // The audit-enabling requests are not reported.
    assert_eq!(audit.requests(), vec![]);

    // Setup by the harness, then mark.
    bao.kv2_put("secret", "portals/a", &[("key", "v1")]).await;
    bao.kv2_put("secret", "portals/ab", &[("key", "x")]).await;
    bao.enable_kv1("kv1").await;
    bao.kv1_put("kv1", "portals/b", &[("key", "plain")]).await;
    assert!(audit.count("", None) >= 4);
    assert!(audit.requests().iter().all(|e| e.harness));
    audit.mark();
    assert_eq!(audit.count("", None), 0);

    // The "client": plain HTTP.
    let a = bao.addr();
    assert_eq!(
        bao_call("GET", &format!("{a}/v1/secret/data/portals/a"), "root").await,
        200
    );
    assert_eq!(
        bao_call(
            "GET",
            &format!("{a}/v1/secret/data/portals/a?version=1"),
            "root"
        )
        .await,
        200
    );
    assert_eq!(
        bao_call("GET", &format!("{a}/v1/secret/metadata/portals/a"), "root").await,
        200
    );
    assert_eq!(
        bao_call("LIST", &format!("{a}/v1/secret/metadata/portals"), "root").await,
        200
    );
    assert_eq!(
        bao_call(
            "GET",
            &format!("{a}/v1/secret/metadata/portals?list=true"),
            "root"
        )
        .await,
        200
    );
    assert_eq!(
        bao_call("GET", &format!("{a}/v1/kv1/portals/b"), "root").await,
        200
    );
    assert_eq!(
        bao_call(
            "GET",
            &format!("{a}/v1/sys/internal/ui/mounts/secret/portals/a"),
            "root"
        )
        .await,
        200
    );
    assert_eq!(
        bao_call("GET", &format!("{a}/v1/kv1/portals/b"), "bad-token").await,
        403
    );
    assert_eq!(
        bao_call("GET", &format!("{a}/v1/secret/data/portals/none"), "root").await,
        404
    );
    // Not audited by OpenBao at all.
    assert_eq!(
        bao_call("GET", &format!("{a}/v1/sys/health"), "root").await,
        200
    );
    let t = Instant::now();
    audit.settle().await;
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    let mut denied = entry("kv1/portals/b", "read");
    denied.error = Some("permission denied".into());
    assert_eq!(
        audit.requests(),
        vec![
            entry("secret/data/portals/a", "read"),
            // The query string is not part of the path.
            entry("secret/data/portals/a", "read"),
            entry("secret/metadata/portals/a", "read"),
            // LIST and GET ?list=true alike; the trailing slash is added.
            entry("secret/metadata/portals/", "list"),
            entry("secret/metadata/portals/", "list"),
            entry("kv1/portals/b", "read"),
            entry("sys/internal/ui/mounts/secret/portals/a", "read"),
            denied,
            entry("secret/data/portals/none", "read"),
        ]
    );
    assert_eq!(audit.count("secret/data/portals/a", Some("read")), 2);
    assert_eq!(audit.count("secret/data/", Some("read")), 3);
    assert_eq!(audit.count("secret/data/", Some("update")), 0);
    assert_eq!(audit.count("secret/metadata/portals/a", None), 1);
    assert_eq!(audit.count("secret/metadata/", Some("list")), 2);
    assert_eq!(audit.count("kv1/", Some("read")), 2);
    assert_eq!(audit.count("sys/internal/ui/mounts", None), 1);
    assert_eq!(audit.count("", None), 9);

    // The harness's own requests after the mark are reported, flagged.
    bao.kv2_put("secret", "portals/a", &[("key", "v2")]).await;
    assert_eq!(bao.kv2_get("secret", "portals/a").await.unwrap().1, 2);
    let harness: Vec<_> = audit.requests().into_iter().filter(|e| e.harness).collect();
    assert_eq!(
        harness
            .iter()
            .map(|e| (e.path.as_str(), e.operation.as_str()))
            .collect::<Vec<_>>(),
        [
            ("secret/data/portals/a", "update"),
            ("secret/data/portals/a", "read")
        ]
    );
    // A fresh KV path is "create", an existing one "update".
    bao.kv2_put("secret", "portals/new", &[("key", "n")]).await;
    assert_eq!(audit.count("secret/data/portals/new", Some("create")), 1);

    // Enabling again is harmless and returns a log marked at its end.
    let again = bao.enable_audit().await;
    assert_eq!(again.count("", None), 0);
    assert_eq!(again.path(), audit.path());
    bao_call("GET", &format!("{a}/v1/secret/metadata/portals/a"), "root").await;
    assert_eq!(again.count("secret/metadata/portals/a", Some("read")), 1);
    assert_eq!(audit.count("secret/metadata/portals/a", Some("read")), 2);
}

async fn sdk_client(endpoint: &str, max_attempts: u32) -> aws_sdk_secretsmanager::Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("testing", "testing", None, None, "test"))
        .endpoint_url(endpoint)
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(max_attempts)
                .with_initial_backoff(Duration::from_millis(10)),
        )
        .load()
        .await;
    aws_sdk_secretsmanager::Client::new(&config)
}

/// Raw Secrets Manager call: status, headers (minus the per-request and hop-by-hop ones:
/// moto answers `Connection: close`, which the proxy, like any proxy, does not pass on),
/// body.
async fn raw_call(
    endpoint: &str,
    action: &str,
    body: Value,
) -> (u16, Vec<(String, String)>, String) {
    let resp = http()
        .post(format!("{endpoint}/"))
        .header("X-Amz-Target", format!("secretsmanager.{action}"))
        .header("Content-Type", "application/x-amz-json-1.1")
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/secretsmanager/\
             aws4_request, SignedHeaders=host, Signature=0",
        )
        .body(body.to_string())
        .send()
        .await
        .expect("raw Secrets Manager call");
    let status = resp.status().as_u16();
    let mut headers: Vec<(String, String)> = resp
        .headers()
        .iter()
        .filter(|(k, _)| {
            !["date", "x-amzn-requestid", "x-amz-request-id", "connection"].contains(&k.as_str())
        })
        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("?").to_string()))
        .collect();
    headers.sort();
    (status, headers, resp.text().await.unwrap())
}

#[tokio::test]
async fn counting_proxy_counts_aws_sdk_calls_and_keeps_responses_intact() {
    let (moto, proxy) = Moto::start_with_proxy().await;
    assert_eq!(proxy.upstream(), moto.endpoint());
    assert!(proxy.url().starts_with("http://127.0.0.1:"));
    let env = moto.env_via(&proxy);
    assert!(env.contains(&("AWS_ENDPOINT_URL_SECRETS_MANAGER".into(), proxy.url())));
    assert!(env.contains(&("AWS_REGION".into(), "us-east-1".into())));
    assert_eq!(env.len(), moto.env().len());

    // Setup through moto directly: not counted.
    moto.create_secret("portals/a", "key-a").await;
    moto.create_secret("portals/b", "key-b").await;
    moto.create_binary_secret("portals/bin", b"\x00\x01bin")
        .await;
    assert!(proxy.counts().is_empty());

    let sm = sdk_client(&proxy.url(), 1).await;
    let list = sm.list_secrets().send().await.expect("ListSecrets");
    let mut names: Vec<_> = list.secret_list().iter().filter_map(|s| s.name()).collect();
    names.sort();
    assert_eq!(names, ["portals/a", "portals/b", "portals/bin"]);

    let batch = sm
        .batch_get_secret_value()
        .secret_id_list("portals/a")
        .secret_id_list("portals/b")
        .secret_id_list("portals/bin")
        .secret_id_list("portals/missing")
        .send()
        .await
        .expect("BatchGetSecretValue");
    let mut values: Vec<_> = batch
        .secret_values()
        .iter()
        .map(|v| (v.name().unwrap(), v.secret_string().map(str::to_string)))
        .collect();
    values.sort();
    assert_eq!(
        values,
        [
            ("portals/a", Some("key-a".to_string())),
            ("portals/b", Some("key-b".to_string())),
            ("portals/bin", None),
        ]
    );
    let bin = batch
        .secret_values()
        .iter()
        .find(|v| v.name() == Some("portals/bin"))
        .unwrap();
    assert_eq!(bin.secret_binary().unwrap().as_ref(), b"\x00\x01bin");
    assert_eq!(batch.errors().len(), 1);
    assert_eq!(
        batch.errors()[0].error_code(),
        Some("ResourceNotFoundException")
    );

    let got = sm
        .get_secret_value()
        .secret_id("portals/a")
        .send()
        .await
        .expect("GetSecretValue");
    assert_eq!(got.secret_string(), Some("key-a"));
    assert!(got.version_id().is_some());
    let described = sm
        .describe_secret()
        .secret_id("portals/b")
        .send()
        .await
        .expect("DescribeSecret");
    assert_eq!(described.name(), Some("portals/b"));
    assert!(!described.version_ids_to_stages().unwrap().is_empty());
    // An error passes through intact too.
    let err = sm
        .get_secret_value()
        .secret_id("portals/missing")
        .send()
        .await
        .expect_err("missing secret");
    assert_eq!(err.code(), Some("ResourceNotFoundException"));

    assert_eq!(proxy.count("ListSecrets"), 1);
    assert_eq!(proxy.count("BatchGetSecretValue"), 1);
    assert_eq!(proxy.count("secretsmanager.GetSecretValue"), 2);
    assert_eq!(proxy.count("DescribeSecret"), 1);
    assert_eq!(proxy.count("PutSecretValue"), 0);
    assert_eq!(
        proxy.counts().into_iter().collect::<Vec<_>>(),
        [
            ("BatchGetSecretValue".to_string(), 1),
            ("DescribeSecret".to_string(), 1),
            ("GetSecretValue".to_string(), 2),
            ("ListSecrets".to_string(), 1),
        ]
    );
    let requests = proxy.requests();
    assert_eq!(requests.len(), 5);
    assert!(requests.iter().all(|r| r.fault.is_none()));
    let batch_req = requests
        .iter()
        .find(|r| r.action == "BatchGetSecretValue")
        .unwrap();
    assert_eq!(batch_req.body["SecretIdList"].as_array().unwrap().len(), 4);
    assert_eq!(requests[0].action, "ListSecrets");

    proxy.reset();
    assert!(proxy.counts().is_empty() && proxy.requests().is_empty());

    // Byte for byte: the same call through the proxy and directly.
    for (action, body) in [
        ("GetSecretValue", json!({"SecretId": "portals/a"})),
        ("GetSecretValue", json!({"SecretId": "portals/missing"})),
        ("ListSecrets", json!({})),
    ] {
        let direct = raw_call(&moto.endpoint(), action, body.clone()).await;
        let proxied = raw_call(&proxy.url(), action, body.clone()).await;
        assert_eq!(proxied, direct, "{action} {body}");
    }
    // Requests without X-Amz-Target are forwarded too and named by method and path.
    let resp = http()
        .get(format!("{}/moto-api/", proxy.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(proxy.count("GET /moto-api/"), 1);
    assert_eq!(proxy.count("GetSecretValue"), 2);
}

#[tokio::test]
async fn counting_proxy_injects_faults() {
    let (mut moto, proxy) = Moto::start_with_proxy().await;
    moto.create_secret("portals/a", "key-a").await;
    let url = proxy.url();

    // Throttling, as the SDK sees it: retried, then given up.
    let sm = sdk_client(&url, 3).await;
    proxy.set_fault(Some(ProxyFault::Throttle));
    let err = sm
        .get_secret_value()
        .secret_id("portals/a")
        .send()
        .await
        .expect_err("throttled");
    assert_eq!(err.code(), Some("ThrottlingException"), "{err:?}");
    assert_eq!(err.message(), Some("Rate exceeded"));
    assert_eq!(proxy.count("GetSecretValue"), 3);
    assert!(proxy
        .requests()
        .iter()
        .all(|r| r.fault == Some(ProxyFault::Throttle)));
    let (status, _, body) = raw_call(&url, "ListSecrets", json!({})).await;
    assert_eq!(status, 400);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"__type": "ThrottlingException", "message": "Rate exceeded"})
    );

    // One throttled call, then the retry succeeds.
    proxy.set_fault(None);
    proxy.reset();
    proxy.set_fault_for_next(ProxyFault::Throttle, 1);
    let got = sm
        .get_secret_value()
        .secret_id("portals/a")
        .send()
        .await
        .expect("retried");
    assert_eq!(got.secret_string(), Some("key-a"));
    let faults: Vec<_> = proxy.requests().into_iter().map(|r| r.fault).collect();
    assert_eq!(faults, [Some(ProxyFault::Throttle), None]);

    // Any status.
    proxy.set_fault(Some(ProxyFault::Status(503)));
    let (status, _, body) =
        raw_call(&url, "GetSecretValue", json!({"SecretId": "portals/a"})).await;
    assert_eq!(status, 503);
    assert!(body.contains("InternalServiceError"), "{body}");

    // Delay, then forwarded.
    proxy.set_fault(Some(ProxyFault::Delay(Duration::from_millis(300))));
    let t = Instant::now();
    let (status, _, body) =
        raw_call(&url, "GetSecretValue", json!({"SecretId": "portals/a"})).await;
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("key-a"), "{body}");

    // Down: the connection is closed without an answer.
    proxy.set_fault(Some(ProxyFault::Down));
    let err = http()
        .post(format!("{url}/"))
        .header("X-Amz-Target", "secretsmanager.GetSecretValue")
        .body("{}")
        .send()
        .await
        .expect_err("no answer");
    assert!(!err.is_timeout(), "{err:?}");
    let sm1 = sdk_client(&url, 1).await;
    let err = sm1
        .get_secret_value()
        .secret_id("portals/a")
        .send()
        .await
        .expect_err("no answer");
    assert!(
        matches!(
            err,
            aws_sdk_secretsmanager::error::SdkError::DispatchFailure(_)
        ),
        "{err:?}"
    );

    // Back to normal.
    proxy.set_fault(None);
    let (status, _, _) = raw_call(&url, "GetSecretValue", json!({"SecretId": "portals/a"})).await;
    assert_eq!(status, 200);

    // With moto gone, the proxy hangs up like moto's closed port would fail.
    moto.stop().await;
    let before = proxy.count("ListSecrets");
    assert!(http()
        .post(format!("{url}/"))
        .header("X-Amz-Target", "secretsmanager.ListSecrets")
        .body("{}")
        .send()
        .await
        .is_err());
    assert_eq!(proxy.count("ListSecrets"), before + 1);
}

#[tokio::test]
async fn counting_proxy_outlives_the_runtime_that_started_it() {
    let moto = Moto::start().await;
    let proxy = std::thread::spawn({
        let endpoint = moto.endpoint();
        move || {
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap()
                .block_on(CountingProxy::start(&endpoint))
        }
    })
    .join()
    .unwrap();
    let (status, _, _) = raw_call(&proxy.url(), "ListSecrets", json!({})).await;
    assert_eq!(status, 200);
    assert_eq!(proxy.count("ListSecrets"), 1);
    let port = proxy.port();
    drop(proxy);
    assert!(tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err());
}
