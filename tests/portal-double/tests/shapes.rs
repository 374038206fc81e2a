//! The error shapes of authservice-api.md §1, each reproducible: lasting states set at runtime
//! and one-shot faults.

mod common;

use common::*;
use portal_double::{DoubleConfig, Fault, FaultKind, Language, PortalDouble, PortalState, Text};
use serde_json::json;

fn google_body() -> serde_json::Value {
    json!({"name": "google", "props": [{"name": "googleClientId", "value": "a"}]})
}

async fn login_reply(portal: &PortalDouble) -> Reply {
    let body = json!({"userName": "admin@example.com", "password": "s3cret"});
    post(portal, LOGIN, Auth::None, &body).await
}

#[tokio::test]
async fn read_only_key_post_is_403_with_an_empty_body() {
    let portal = start().await;
    assert_eq!(
        get(&portal, AUTHSERVICE, Auth::Key(READ_KEY)).await.status,
        200
    );
    post(&portal, AUTHSERVICE, Auth::Key(READ_KEY), &google_body())
        .await
        .assert_empty(403);
    // A non-admin key with write scope still gets the `Access denied` envelope.
    let reply = post(&portal, AUTHSERVICE, Auth::Key(USER_KEY), &google_body()).await;
    assert_eq!(reply.error_message(403), "Access denied");
    assert_eq!(portal.value("google", "googleClientId").unwrap(), "");
}

#[tokio::test]
async fn moving_restoring_encrypting_portals_answer_403_empty() {
    let portal = start().await;
    for state in [
        PortalState::Moving,
        PortalState::Restoring,
        PortalState::Encrypting,
    ] {
        portal.set_portal_state(state);
        get(&portal, AUTHSERVICE, Auth::Key(ADMIN_KEY))
            .await
            .assert_empty(403);
        save(&portal, google_body()).await.assert_empty(403);
        login_reply(&portal).await.assert_empty(403);
        // Unauthenticated requests are still 401 first.
        get(&portal, AUTHSERVICE, Auth::None)
            .await
            .assert_empty(401);
    }
    assert_eq!(portal.value("google", "googleClientId").unwrap(), "");
    portal.set_portal_state(PortalState::Active);
    assert_eq!(save(&portal, google_body()).await.response(), true);
}

#[tokio::test]
async fn suspended_portal_answers_404() {
    let portal = start().await;
    portal.set_portal_state(PortalState::Suspended);
    get(&portal, AUTHSERVICE, Auth::Key(ADMIN_KEY))
        .await
        .assert_empty(404);
    save(&portal, google_body()).await.assert_empty(404);
    login_reply(&portal).await.assert_empty(404);
    assert_eq!(portal.value("google", "googleClientId").unwrap(), "");
    portal.set_portal_state(PortalState::Active);
    assert_eq!(login_reply(&portal).await.status, 200);
}

#[tokio::test]
async fn ip_restriction_is_403_with_a_bare_json_string() {
    let portal = start().await;
    portal.set_ip_restricted(true);
    for reply in [
        get(&portal, AUTHSERVICE, Auth::Key(ADMIN_KEY)).await,
        save(&portal, google_body()).await,
    ] {
        assert_eq!(reply.status, 403);
        assert!(reply.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("application/json"));
        assert_eq!(reply.text, "\"Access from your IP address is restricted\"");
        assert_eq!(reply.json(), json!(Language::En.text(Text::IpRestricted)));
    }
    get(&portal, AUTHSERVICE, Auth::None)
        .await
        .assert_empty(401);
    // The login is anonymous, so not filtered.
    assert_eq!(login_reply(&portal).await.status, 200);
    portal.set_ip_restricted(false);
    assert_eq!(save(&portal, google_body()).await.response(), true);
}

#[tokio::test]
async fn unpaid_tenant_is_402_empty_unlike_a_plan_without_paid_services() {
    let portal = start().await;
    portal.set_tenant_paid(false);
    get(&portal, AUTHSERVICE, Auth::Key(ADMIN_KEY))
        .await
        .assert_empty(402);
    save(&portal, google_body()).await.assert_empty(402);
    // Even a malformed body: the payment filter runs before model binding.
    post_raw(
        &portal,
        AUTHSERVICE,
        Auth::Key(ADMIN_KEY),
        "application/json",
        "{",
    )
    .await
    .assert_empty(402);
    assert_eq!(login_reply(&portal).await.status, 200, "login is exempt");
    portal.set_tenant_paid(true);

    // The other 402: a paid service on a plan without third-party services has a message.
    portal.set_paid_allowed(false);
    let body = json!({"name": "s3", "props": [{"name": "acesskey", "value": "a"}]});
    assert_eq!(
        save(&portal, body).await.error_message(402),
        "Your pricing plan does not support this option"
    );
    assert_eq!(save(&portal, google_body()).await.response(), true);
    portal.set_paid_allowed(true);
    let body = json!({"name": "s3", "props": [{"name": "acesskey", "value": "a"}]});
    assert_eq!(save(&portal, body).await.response(), true);
}

#[tokio::test]
async fn hidden_setting_is_402_with_a_message_on_every_authservice_request() {
    let portal = start().await;
    portal.set_setting_hidden(true);
    let message = "Your pricing plan does not support this option";
    assert_eq!(
        get(&portal, AUTHSERVICE, Auth::Key(ADMIN_KEY))
            .await
            .error_message(402),
        message
    );
    assert_eq!(
        save(&portal, google_body()).await.error_message(402),
        message
    );
    // After model validation and the admin check.
    let long =
        json!({"name": "google", "props": [{"name": "googleClientId", "value": "x".repeat(4001)}]});
    save(&portal, long).await.validation_errors();
    let reply = post(&portal, AUTHSERVICE, Auth::Key(USER_KEY), &google_body()).await;
    assert_eq!(reply.error_message(403), "Access denied");
    assert_eq!(portal.value("google", "googleClientId").unwrap(), "");
    portal.set_setting_hidden(false);
    assert_eq!(save(&portal, google_body()).await.response(), true);
}

#[tokio::test]
async fn non_json_content_type_is_415_and_unauthenticated_401_both_empty() {
    let portal = start().await;
    post_raw(
        &portal,
        AUTHSERVICE,
        Auth::Key(ADMIN_KEY),
        "text/plain",
        google_body().to_string(),
    )
    .await
    .assert_empty(415);
    post(&portal, AUTHSERVICE, Auth::None, &google_body())
        .await
        .assert_empty(401);
    assert_eq!(portal.value("google", "googleClientId").unwrap(), "");
}

#[tokio::test]
async fn default_consumers_hide_stored_values_from_get() {
    let mut cfg = DoubleConfig {
        default_consumers: true,
        ..config()
    };
    cfg.services
        .iter_mut()
        .find(|s| s.name == "zoom")
        .unwrap()
        .props[0]
        .1 = "configured".into();
    let portal = PortalDouble::start(cfg).await.unwrap();
    assert_eq!(save(&portal, google_body()).await.response(), true);
    let body = json!({"name": "zoom", "props": [{"name": "zoomClientId", "value": "pushed"}]});
    assert_eq!(save(&portal, body).await.response(), true);
    // Stored, but a read-back never shows it.
    assert_eq!(portal.value("google", "googleClientId").unwrap(), "a");
    assert_eq!(portal.value("zoom", "zoomClientId").unwrap(), "pushed");
    let listed = services(&portal).await;
    let prop = |service: &str| {
        listed.iter().find(|s| s["name"] == service).unwrap()["props"][0]["value"].clone()
    };
    assert_eq!(prop("google"), "");
    assert_eq!(prop("zoom"), "configured");

    portal.set_default_consumers(false);
    let listed = services(&portal).await;
    let google = listed.iter().find(|s| s["name"] == "google").unwrap();
    assert_eq!(google["props"][0]["value"], "a");
}

#[tokio::test]
async fn empty_body_fault_gives_each_status_once() {
    let portal = start().await;
    for status in [402, 403, 404] {
        portal.inject(Fault::once(FaultKind::EmptyBody(status)));
        get(&portal, AUTHSERVICE, Auth::Key(ADMIN_KEY))
            .await
            .assert_empty(status);
    }
    assert_eq!(
        get(&portal, AUTHSERVICE, Auth::Key(ADMIN_KEY)).await.status,
        200
    );
    portal.inject(Fault::once(FaultKind::EmptyBody(403)).with_method("POST"));
    save(&portal, google_body()).await.assert_empty(403);
    assert_eq!(portal.value("google", "googleClientId").unwrap(), "");
    assert_eq!(save(&portal, google_body()).await.response(), true);
}

#[tokio::test]
async fn ip_restricted_fault_once() {
    let portal = start().await;
    portal.set_language(Language::It);
    portal.inject(Fault::once(FaultKind::IpRestricted));
    let reply = save(&portal, google_body()).await;
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.json(),
        json!("L'accesso dal tuo indirizzo IP è limitato")
    );
    assert_eq!(save(&portal, google_body()).await.response(), true);
}

#[tokio::test]
async fn refuse_fault_refuses_the_next_post_that_saves_values() {
    let portal = start().await;
    portal.set_value("google", "googleClientSecret", "kept-until-now");
    portal.inject(Fault::once(FaultKind::Refuse));
    // A GET does not take it.
    assert_eq!(
        get(&portal, AUTHSERVICE, Auth::Key(ADMIN_KEY)).await.status,
        200
    );
    assert_eq!(
        save(&portal, google_body()).await.error_message(400),
        "Bad keys"
    );
    assert!(portal.values("google").values().all(String::is_empty));
    // Used up.
    assert_eq!(save(&portal, google_body()).await.response(), true);
    assert_eq!(portal.value("google", "googleClientId").unwrap(), "a");

    // A clear is not checked, so not refused (but uses the fault up).
    portal.inject(Fault::once(FaultKind::Refuse));
    let clear = json!({"name": "google", "props": []});
    assert_eq!(save(&portal, clear).await.response(), true);
    assert_eq!(save(&portal, google_body()).await.response(), true);
}
