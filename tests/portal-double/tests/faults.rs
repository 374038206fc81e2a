//! Injected faults.

mod common;

use std::time::{Duration, Instant};

use common::*;
use portal_double::{Fault, FaultKind};
use serde_json::json;

fn google_body() -> serde_json::Value {
    json!({"name": "google", "props": [{"name": "googleClientId", "value": "a"}]})
}

#[tokio::test]
async fn status_fault_answers_with_the_error_envelope() {
    let portal = start().await;
    portal.inject(Fault::new(FaultKind::Status(500)));
    let reply = get(&portal, AUTHSERVICE, Auth::Key(ADMIN_KEY)).await;
    assert_eq!(reply.error_message(500), "Internal error");
    // Faults come before authentication.
    assert_eq!(get(&portal, AUTHSERVICE, Auth::None).await.status, 500);
    let reply = save(&portal, google_body()).await;
    assert_eq!(reply.status, 500);
    assert_eq!(portal.value("google", "googleClientId").unwrap(), "");
    // Other endpoints are not affected.
    assert_eq!(get(&portal, "/nowhere", Auth::None).await.status, 404);
    portal.clear_faults();
    assert_eq!(
        get(&portal, AUTHSERVICE, Auth::Key(ADMIN_KEY)).await.status,
        200
    );
    assert_eq!(portal.requests()[0].status, 500);
}

#[tokio::test]
async fn status_fault_401_has_an_empty_body() {
    let portal = start().await;
    portal.inject(Fault::once(FaultKind::Status(401)));
    let reply = get(&portal, AUTHSERVICE, Auth::Key(ADMIN_KEY)).await;
    assert_eq!((reply.status, reply.text.as_str()), (401, ""));
    assert_eq!(
        get(&portal, AUTHSERVICE, Auth::Key(ADMIN_KEY)).await.status,
        200
    );
}

#[tokio::test]
async fn faults_can_target_one_method_a_number_of_times() {
    let portal = start().await;
    portal.inject(
        Fault::new(FaultKind::Status(503))
            .with_method("POST")
            .with_times(2),
    );
    assert_eq!(
        get(&portal, AUTHSERVICE, Auth::Key(ADMIN_KEY)).await.status,
        200
    );
    assert_eq!(save(&portal, google_body()).await.status, 503);
    assert_eq!(save(&portal, google_body()).await.status, 503);
    assert_eq!(save(&portal, google_body()).await.response(), true);
}

#[tokio::test]
async fn rate_limit_fault_sends_retry_after() {
    let portal = start().await;
    portal.inject(Fault::once(FaultKind::RateLimited {
        retry_after_secs: 7,
    }));
    let reply = save(&portal, google_body()).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.headers["retry-after"], "7");
    assert_eq!(portal.value("google", "googleClientId").unwrap(), "");
    assert_eq!(save(&portal, google_body()).await.status, 200);
}

#[tokio::test]
async fn garbage_fault_sends_non_json_with_200() {
    let portal = start().await;
    portal.inject(Fault::once(FaultKind::Garbage));
    let reply = get(&portal, AUTHSERVICE, Auth::Key(ADMIN_KEY)).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.text, "<html>oops</html>");
    assert!(serde_json::from_str::<serde_json::Value>(&reply.text).is_err());
}

#[tokio::test]
async fn delay_once_then_normal() {
    let portal = start().await;
    let delay = Duration::from_millis(300);
    portal.inject(Fault {
        kind: FaultKind::Delay(delay),
        method: None,
        times: Some(1),
    });
    let started = Instant::now();
    assert_eq!(save(&portal, google_body()).await.response(), true);
    assert!(started.elapsed() >= delay);
    assert_eq!(portal.value("google", "googleClientId").unwrap(), "a");
    let started = Instant::now();
    assert_eq!(
        get(&portal, AUTHSERVICE, Auth::Key(ADMIN_KEY)).await.status,
        200
    );
    assert!(started.elapsed() < delay);
}

#[tokio::test]
async fn hang_fault_never_answers() {
    let portal = start().await;
    portal.inject(Fault::once(FaultKind::Hang));
    let result = reqwest::Client::new()
        .get(format!("{}{AUTHSERVICE}", portal.url()))
        .header("Authorization", format!("Bearer {ADMIN_KEY}"))
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(result.unwrap_err().is_timeout());
    assert_eq!(portal.requests()[0].status, 0, "recorded, never answered");
    assert_eq!(
        get(&portal, AUTHSERVICE, Auth::Key(ADMIN_KEY)).await.status,
        200
    );
}

#[tokio::test]
async fn dropping_the_double_closes_every_connection() {
    let portal = start().await;
    let client = client();
    let url = format!("{}{AUTHSERVICE}", portal.url());
    let ok = client
        .get(&url)
        .header("Authorization", format!("Bearer {ADMIN_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    ok.bytes().await.unwrap();
    drop(portal);
    tokio::time::sleep(Duration::from_millis(50)).await;
    // The pooled keep-alive connection is gone too.
    let result = client
        .get(&url)
        .header("Authorization", format!("Bearer {ADMIN_KEY}"))
        .send()
        .await;
    assert!(result.is_err(), "{result:?}");
}
