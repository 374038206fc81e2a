use std::io;
use std::sync::atomic::Ordering;

use super::*;
use crate::server::harness::{bearer, Harness, TOKEN};
use crate::server::serve::Limits;

#[tokio::test]
async fn trigger_without_token_configured_is_404() {
    let mut h = Harness::start(None).await;
    let r = h.trigger(Some(&bearer(TOKEN)), None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = h.trigger(None, None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    assert!(h.rx.try_recv().is_err());
    h.stop().await;
}

#[tokio::test]
async fn trigger_rejects_wrong_or_missing_token() {
    let mut h = Harness::start(Some(TOKEN)).await;
    for auth in [
        None,
        Some(bearer("wrong")),
        Some(bearer(&format!("{TOKEN}x"))),
        Some(bearer(&TOKEN[..TOKEN.len() - 1])),
        Some(format!("Basic {TOKEN}")),
        Some(TOKEN.to_owned()),
        Some("Bearer ".to_owned()),
    ] {
        let r = h
            .trigger(auth.as_deref(), Some(r#"{"portals":["prod"]}"#))
            .await;
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{auth:?}");
        assert_eq!(
            r.headers()
                .get(header::WWW_AUTHENTICATE)
                .and_then(|v| v.to_str().ok()),
            Some("Bearer")
        );
        let body = r.text().await.unwrap();
        assert!(!body.contains(TOKEN), "token echoed: {body}");
    }
    assert!(h.rx.try_recv().is_err());
    h.stop().await;
}

#[tokio::test]
async fn trigger_with_right_token_queues_the_scope() {
    let mut h = Harness::start(Some(TOKEN)).await;
    let r = h
        .trigger(
            Some(&bearer(TOKEN)),
            Some(r#"{"portals":["prod","staging"],"services":["google"]}"#),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(body, serde_json::json!({ "accepted": true }));
    assert_eq!(
        h.rx.try_recv().unwrap(),
        TriggerRequest {
            portals: vec!["prod".into(), "staging".into()],
            services: vec!["google".into()],
            ..TriggerRequest::default()
        }
    );

    // No body, and a case-insensitive scheme: everything.
    let r = h.trigger(Some(&format!("bearer  {TOKEN}")), None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(h.rx.try_recv().unwrap(), TriggerRequest::default());

    // Only one of the lists.
    let r = h
        .trigger(Some(&bearer(TOKEN)), Some(r#"{"services":["s3"]}"#))
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        h.rx.try_recv().unwrap(),
        TriggerRequest {
            services: vec!["s3".into()],
            ..TriggerRequest::default()
        }
    );

    // The next release's fields.
    let r = h
        .trigger(
            Some(&bearer(TOKEN)),
            Some(r#"{"secrets":["vault:secret/oauth/google#client_id","aws:docspace/backup-s3"],"retry_refused":true}"#),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    let t = h.rx.try_recv().unwrap();
    assert_eq!(
        t,
        TriggerRequest {
            secrets: vec![
                "vault:secret/oauth/google#client_id".into(),
                "aws:docspace/backup-s3".into()
            ],
            retry_refused: true,
            ..TriggerRequest::default()
        }
    );
    h.stop().await;
}

#[tokio::test]
async fn trigger_rejects_bad_json_without_quoting_values() {
    const PASTED: &str = "pasted-SECRET-value-0000";
    let mut h = Harness::start(Some(TOKEN)).await;
    for body in [
        "{not json",
        r#"{"portals":"prod"}"#,
        r#"{"portal":["prod"]}"#,
        "[]",
        r#"[["prod"]]"#,
        "null",
        r#"{"retry_refused":"yes"}"#,
        r#"{"secrets":["vault:a", 1]}"#,
        &format!(r#"{{"portals":"{PASTED}"}}"#),
        &format!(r#"{{"secrets":{{"{PASTED}":1}}}}"#),
        &format!(r#"{{"{PASTED}":["prod"]}}"#),
        &format!(r#"{{"retry_refused":"{PASTED}"}}"#),
        &format!(r#"{{"portals":["{PASTED}""#),
    ] {
        let r = h.trigger(Some(&bearer(TOKEN)), Some(body)).await;
        assert_eq!(r.status(), StatusCode::BAD_REQUEST, "{body}");
        let answer: serde_json::Value = r.json().await.unwrap();
        assert_eq!(answer["accepted"], false);
        let error = answer["error"].as_str().unwrap_or_default();
        assert!(!error.is_empty() && error.len() < 400, "{error}");
        assert!(!error.contains(PASTED), "value quoted back: {error}");
    }
    // A typo of a field is named, with the field it resembles.
    let r = h
        .trigger(Some(&bearer(TOKEN)), Some(r#"{"portal":["prod"]}"#))
        .await;
    let answer: serde_json::Value = r.json().await.unwrap();
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("unknown field `portal`; did you mean `portals`?"),
        "{error}"
    );
    assert!(h.rx.try_recv().is_err());
    h.stop().await;
}

#[tokio::test]
async fn trigger_rejects_oversized_body() {
    let mut h = Harness::start(Some(TOKEN)).await;
    let names: Vec<String> = (0..2000).map(|i| format!("portal-{i}")).collect();
    let body = serde_json::json!({ "portals": names }).to_string();
    assert!(body.len() > MAX_TRIGGER_BODY);
    let r = h.trigger(Some(&bearer(TOKEN)), Some(&body)).await;
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert!(h.rx.try_recv().is_err());

    // Just under the limit is fine.
    let mut body = String::from(r#"{"portals":["p"],"services":[""#);
    body.push_str(&"s".repeat(MAX_TRIGGER_BODY - body.len() - 3));
    body.push_str(r#""]}"#);
    assert_eq!(body.len(), MAX_TRIGGER_BODY);
    let r = h.trigger(Some(&bearer(TOKEN)), Some(&body)).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    h.stop().await;
}

#[tokio::test]
async fn oversized_body_without_length_is_refused() {
    let chunks = (0..20).map(|_| Ok::<_, io::Error>(vec![b' '; 1024]));
    let body = Body::from_stream(futures::stream::iter(chunks));
    let rejection = read_body(body).await.err().unwrap();
    assert_eq!(rejection.status, StatusCode::PAYLOAD_TOO_LARGE);

    let chunks = (0..4).map(|_| Ok::<_, io::Error>(vec![b' '; 1024]));
    let body = Body::from_stream(futures::stream::iter(chunks));
    assert_eq!(read_body(body).await.ok().map(|b| b.len()), Some(4096));
}

#[tokio::test]
async fn token_swap_takes_effect() {
    let mut h = Harness::start(Some(TOKEN)).await;
    let r = h.trigger(Some(&bearer(TOKEN)), None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(h.rx.try_recv().is_ok());

    h.state
        .set_trigger_token(Some(crate::secret::SecretString::from(
            "rotated".to_owned(),
        )));
    let r = h.trigger(Some(&bearer(TOKEN)), None).await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let r = h.trigger(Some(&bearer("rotated")), None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert!(h.rx.try_recv().is_ok());

    // Direct writes through the shared lock work the same.
    *h.state.trigger_token.write().unwrap() = None;
    let r = h.trigger(Some(&bearer("rotated")), None).await;
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    h.stop().await;
}

#[tokio::test]
async fn full_queue_coalesces_and_closed_queue_is_503() {
    let mut h = Harness::start_with(Some(TOKEN), 1, Limits::default()).await;
    for _ in 0..3 {
        let r = h.trigger(Some(&bearer(TOKEN)), None).await;
        assert_eq!(r.status(), StatusCode::ACCEPTED);
    }
    assert!(h.rx.try_recv().is_ok());
    assert!(h.rx.try_recv().is_err(), "triggers coalesce into one");
    assert!(
        h.state.trigger_overflow.load(Ordering::Acquire),
        "the lost scopes are flagged, so the daemon widens the next cycle"
    );

    h.rx.close();
    let r = h.trigger(Some(&bearer(TOKEN)), None).await;
    assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
    h.stop().await;
}

const CONFIG: &str = r#"
[sources.vault]
kind = "vault"
address = "https://vault.example.com"

[sources.aws]
kind = "aws"
region = "us-east-1"

[portals.prod]
url = "https://prod.example.com"
api_key = { env = "PROD_KEY" }

[portals.staging]
url = "https://staging.example.com"
api_key = { env = "STAGING_KEY" }

[portals.lab]
url = "https://lab.example.com"
api_key = { env = "LAB_KEY" }

[[map]]
service = "google"
props.googleClientId = "vault:secret/oauth/google#client_id"
props.googleClientSecret = "vault:secret/oauth/google#client_secret"

[[map]]
service = "telegram"
portals = ["prod", "staging"]
props.telegramBotToken = "vault:kv1/telegram/{portal}#token"
props.telegramBotName = { value = "acme_docs_bot" }

[[map]]
service = "s3"
props.acesskey = "aws:docspace/backup-s3#access_key_id"
props.secretaccesskey = "aws:docspace/backup-s3#secret_access_key"
"#;

fn config() -> Config {
    crate::config::parse_valid(CONFIG)
}

fn request(portals: &[&str], services: &[&str], secrets: &[&str]) -> TriggerRequest {
    let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
    TriggerRequest {
        portals: own(portals),
        services: own(services),
        secrets: own(secrets),
        retry_refused: false,
    }
}

#[test]
fn known_names_and_used_references_pass() {
    let c = config();
    for t in [
        TriggerRequest::default(),
        request(&["prod", "lab"], &["google", "s3"], &[]),
        request(
            &[],
            &[],
            &[
                "vault:secret/oauth/google",
                // The key is ignored, whichever it is.
                "vault:secret/oauth/google#client_secret",
                "vault:secret/oauth/google#anything",
                "aws:docspace/backup-s3",
                // The template, and the template filled in for a portal it applies to.
                "vault:kv1/telegram/{portal}",
                "vault:kv1/telegram/staging#token",
            ],
        ),
    ] {
        assert_eq!(validate_trigger(&c, &t), Ok(()), "{t:?}");
    }
}

#[test]
fn unknown_entries_are_named_by_position_with_hints() {
    let c = config();
    let e = validate_trigger(&c, &request(&["prod", "prdo"], &["gogle"], &[])).unwrap_err();
    assert!(
        e.contains("portals[1] `prdo` is not a configured portal; did you mean `prod`?"),
        "{e}"
    );
    assert!(
        e.contains("services[0] `gogle` has no [[map]] block; did you mean `google`?"),
        "{e}"
    );
    assert!(!e.contains("portals[0]"), "{e}");

    let e = validate_trigger(
        &c,
        &request(
            &[],
            &[],
            &[
                "vault:secret/oauth/gogle",
                "vualt:secret/oauth/google",
                "vault:kv1/telegram/lab",
                "vault:secret/unused",
                "no-colon",
            ],
        ),
    )
    .unwrap_err();
    for want in [
        "secrets[0] `vault:secret/oauth/gogle` is not used by any [[map]]; did you mean `vault:secret/oauth/google`?",
        "secrets[1] names source `vualt`, which is not configured; did you mean `vault`?",
        // telegram's map does not apply to lab: nothing reads that path.
        "secrets[2] `vault:kv1/telegram/lab` is not used by any [[map]]",
        "secrets[3] `vault:secret/unused` is not used by any [[map]]",
        "secrets[4] is not a secret reference",
    ] {
        assert!(e.contains(want), "{want:?} missing in: {e}");
    }
}

#[test]
fn text_that_resembles_no_name_is_not_quoted() {
    let c = config();
    const PASTED: &str = "AKIAIOSFODNN7EXAMPLE/wJalrXUtnFEMI";
    let t = request(
        &[PASTED],
        &[PASTED],
        &[
            PASTED,
            &format!("{PASTED}:x"),
            &format!("vault:{PASTED} with spaces"),
            &format!("vault:{}", "x".repeat(200)),
        ],
    );
    let e = validate_trigger(&c, &t).unwrap_err();
    assert!(!e.contains(PASTED) && !e.contains("xxxx"), "quoted: {e}");
    for want in [
        "portals[0] is not a configured portal (configured: lab, prod, staging)",
        "services[0] has no [[map]] block (configured: google, telegram, s3)",
        "secrets[0] is not a secret reference",
        "secrets[1] names a source that is not configured (configured: aws, vault)",
        "secrets[2] is not used by any [[map]]",
        "secrets[3] is not used by any [[map]]",
    ] {
        assert!(e.contains(want), "{want:?} missing in: {e}");
    }
}

#[test]
fn many_problems_are_counted_not_listed() {
    let c = config();
    let names: Vec<String> = (0..50).map(|i| format!("nope-{i}")).collect();
    let t = TriggerRequest {
        portals: names,
        ..TriggerRequest::default()
    };
    let e = validate_trigger(&c, &t).unwrap_err();
    assert!(e.ends_with("; and 42 more"), "{e}");
    assert_eq!(e.matches("is not a configured portal").count(), 8);
}

#[test]
fn secret_refs_drop_keys_and_duplicates() {
    let t = request(
        &[],
        &[],
        &[
            "vault:secret/oauth/google#client_id",
            "vault:secret/oauth/google#client_secret",
            "aws:arn:aws:secretsmanager:eu-west-1:1:secret:x-AbCd",
            "not a reference",
        ],
    );
    let refs: Vec<String> = t.secret_refs().iter().map(|r| r.to_string()).collect();
    assert_eq!(
        refs,
        [
            "vault:secret/oauth/google",
            "aws:arn:aws:secretsmanager:eu-west-1:1:secret:x-AbCd"
        ]
    );
}

#[tokio::test]
async fn each_trigger_is_validated_before_it_is_queued() {
    let mut h = Harness::start(Some(TOKEN)).await;
    let c = Arc::new(config());
    h.state.set_validator({
        let c = Arc::clone(&c);
        Arc::new(move |t: &TriggerRequest| validate_trigger(&c, t))
    });

    let r = h
        .trigger(
            Some(&bearer(TOKEN)),
            Some(r#"{"portals":["prod","prdo"],"secrets":["vault:secret/unused"]}"#),
        )
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["accepted"], false);
    let error = answer["error"].as_str().unwrap_or_default();
    assert!(error.contains("portals[1] `prdo`"), "{error}");
    assert!(
        error.contains("secrets[0] `vault:secret/unused`"),
        "{error}"
    );
    assert!(h.rx.try_recv().is_err(), "a rejected trigger is not queued");

    // A good trigger after a bad one is queued on its own, unaffected.
    let r = h
        .trigger(
            Some(&bearer(TOKEN)),
            Some(r#"{"portals":["prod"],"secrets":["vault:secret/oauth/google"]}"#),
        )
        .await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    assert_eq!(
        h.rx.try_recv().unwrap(),
        request(&["prod"], &[], &["vault:secret/oauth/google"])
    );

    // Swapped on reload: the new config's names count.
    h.state
        .set_validator(Arc::new(|t: &TriggerRequest| match t.portals.is_empty() {
            true => Ok(()),
            false => Err("no portals today".into()),
        }));
    let r = h
        .trigger(Some(&bearer(TOKEN)), Some(r#"{"portals":["prod"]}"#))
        .await;
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    let r = h.trigger(Some(&bearer(TOKEN)), None).await;
    assert_eq!(r.status(), StatusCode::ACCEPTED);
    h.stop().await;
}

#[tokio::test]
async fn the_token_is_checked_before_the_validator() {
    let mut h = Harness::start(Some(TOKEN)).await;
    h.state
        .set_validator(Arc::new(|_: &TriggerRequest| Err("never valid".into())));
    let r = h
        .trigger(Some(&bearer("wrong")), Some(r#"{"portals":["x"]}"#))
        .await;
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body = r.text().await.unwrap();
    assert!(!body.contains("never valid"), "{body}");
    assert!(h.rx.try_recv().is_err());
    h.stop().await;
}

/// A client that sent a body the server did not read must not reuse the connection:
/// hyper closes it after the answer (and a pooled client would fail its next request).
#[tokio::test]
async fn answers_that_leave_the_body_unread_close_the_connection() {
    let h = Harness::start(Some(TOKEN)).await;
    let close = |r: &reqwest::Response| {
        r.headers()
            .get(header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let r = h
        .client
        .post(h.url("/trigger"))
        .bearer_auth("wrong")
        .body(vec![b'{'; 256 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(close(&r).as_deref(), Some("close"));
    let r = h
        .client
        .post(h.url("/trigger"))
        .bearer_auth(TOKEN)
        .body(vec![b' '; MAX_TRIGGER_BODY + 1])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(close(&r).as_deref(), Some("close"));
    // A body read to its end keeps the connection.
    let r = h
        .client
        .post(h.url("/trigger"))
        .bearer_auth(TOKEN)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(close(&r), None);
    h.stop().await;
}
