//! Chosen values refused by any service (issue 13.5): the enforced key check clears every key of
//! the service and answers 400 `Bad keys`; restoring the previous good values works.

mod common;

use std::collections::BTreeMap;

use common::*;
use portal_double::{DoubleConfig, Flavor, PortalDouble};
use serde_json::{json, Value};

const VALID_BOT_TOKEN: &str = "123456789:AAbbCCddEEffGGhhIIjjKKllMMnnOOpp_-";

fn google(id: &str, secret: &str) -> Value {
    json!({"name": "google", "props": [
        {"name": "googleClientId", "value": id},
        {"name": "googleClientSecret", "value": secret}
    ]})
}

fn google_values(id: &str, secret: &str) -> BTreeMap<String, String> {
    [
        ("googleClientId".to_owned(), id.to_owned()),
        ("googleClientSecret".to_owned(), secret.to_owned()),
    ]
    .into()
}

fn empty_google() -> BTreeMap<String, String> {
    google_values("", "")
}

#[tokio::test]
async fn refused_value_wipes_every_key_then_a_restore_succeeds() {
    let portal = start().await;
    assert_eq!(
        save(&portal, google("id-1", "secret-1")).await.response(),
        true
    );
    portal.refuse("google", "secret-2");

    let reply = save(&portal, google("id-2", "secret-2")).await;
    assert_eq!(reply.error_message(400), "Bad keys");
    assert_eq!(
        portal.values("google"),
        empty_google(),
        "wiped, also the id"
    );

    // The values that worked a moment ago go back in.
    assert_eq!(
        save(&portal, google("id-1", "secret-1")).await.response(),
        true
    );
    assert_eq!(portal.values("google"), google_values("id-1", "secret-1"));
    // A value that is fine elsewhere is fine: only the refused one is refused.
    assert_eq!(
        save(&portal, google("id-2", "secret-1")).await.response(),
        true
    );
}

#[tokio::test]
async fn restore_fails_when_the_previous_values_are_refused_too() {
    let portal = start().await;
    save(&portal, google("id-1", "secret-1")).await.response();
    portal.refuse("google", "secret-1");
    portal.refuse("google", "secret-2");
    assert_eq!(
        save(&portal, google("id-2", "secret-2"))
            .await
            .error_message(400),
        "Bad keys"
    );
    assert_eq!(
        save(&portal, google("id-1", "secret-1"))
            .await
            .error_message(400),
        "Bad keys"
    );
    assert_eq!(portal.values("google"), empty_google());
}

#[tokio::test]
async fn a_refused_value_left_stored_fails_any_later_save() {
    let portal = start().await;
    portal.set_value("google", "googleClientSecret", "stale");
    portal.refuse("google", "stale");
    // Only the id is sent, but the stored secret is checked too.
    let body = json!({"name": "google", "props": [{"name": "googleClientId", "value": "new-id"}]});
    assert_eq!(save(&portal, body).await.error_message(400), "Bad keys");
    assert_eq!(portal.values("google"), empty_google());
    // Identical values (nothing changes) are checked as well.
    portal.set_value("google", "googleClientId", "id");
    portal.set_value("google", "googleClientSecret", "stale");
    assert_eq!(
        save(&portal, google("id", "stale"))
            .await
            .error_message(400),
        "Bad keys"
    );
    assert_eq!(portal.values("google"), empty_google());
}

#[tokio::test]
async fn refusals_are_per_service_and_can_be_lifted() {
    let portal = start().await;
    portal.refuse("google", "shared-value");
    portal.refuse("google", "");
    let zoom =
        json!({"name": "zoom", "props": [{"name": "zoomClientId", "value": "shared-value"}]});
    assert_eq!(save(&portal, zoom).await.response(), true);
    assert_eq!(
        portal.value("zoom", "zoomClientId").unwrap(),
        "shared-value"
    );
    assert_eq!(save(&portal, google("shared-value", "s")).await.status, 400);
    portal.accept_all("google");
    assert_eq!(
        save(&portal, google("shared-value", "s")).await.response(),
        true
    );
    assert_eq!(portal.values("google"), google_values("shared-value", "s"));
}

#[tokio::test]
async fn refuse_every_value_refuses_all_but_a_clear() {
    let portal = start().await;
    portal.set_value("box", "boxClientId", "old");
    portal.refuse_every_value("box");
    let body = json!({"name": "box", "props": [{"name": "boxClientSecret", "value": "anything"}]});
    assert_eq!(save(&portal, body).await.error_message(400), "Bad keys");
    assert!(portal.values("box").values().all(String::is_empty));
    // An empty service is not checked.
    let clear = json!({"name": "box", "props": []});
    assert_eq!(save(&portal, clear).await.response(), true);
    portal.accept_all("box");
    let body = json!({"name": "box", "props": [{"name": "boxClientId", "value": "ok"}]});
    assert_eq!(save(&portal, body).await.response(), true);
}

#[tokio::test]
async fn telegram_shape_check_still_applies_beside_refusals() {
    let portal = start().await;
    portal.refuse("telegram", "acme_bot");
    let body = |token: &str, name: &str| {
        json!({"name": "telegram", "props": [
            {"name": "telegramBotToken", "value": token},
            {"name": "telegramBotName", "value": name}
        ]})
    };
    assert_eq!(
        save(&portal, body(VALID_BOT_TOKEN, "other_bot"))
            .await
            .response(),
        true
    );
    assert_eq!(
        save(&portal, body(VALID_BOT_TOKEN, "acme_bot"))
            .await
            .status,
        400
    );
    assert_eq!(portal.value("telegram", "telegramBotToken").unwrap(), "");
    assert_eq!(
        save(&portal, body("not-a-token", "other_bot")).await.status,
        400
    );
    assert_eq!(portal.value("telegram", "telegramBotName").unwrap(), "");
    assert_eq!(
        save(&portal, body(VALID_BOT_TOKEN, "other_bot"))
            .await
            .response(),
        true
    );
}

#[tokio::test]
async fn workspace_refusal_is_in_band_and_wipes() {
    let portal = PortalDouble::start(DoubleConfig {
        flavor: Flavor::Workspace,
        ..config()
    })
    .await
    .unwrap();
    let token = ws_token(&portal, "admin@example.com").await;
    let body = |id: &str, secret: &str| {
        json!({"name": "Google", "props": [
            {"Name": "googleClientId", "Value": id},
            {"Name": "googleClientSecret", "Value": secret}
        ]})
    };
    assert_eq!(
        ws_save(&portal, &token, &body("id", "good"))
            .await
            .ajax_value(),
        true
    );
    portal.refuse("Google", "bad");
    assert_eq!(
        ws_save(&portal, &token, &body("id", "bad"))
            .await
            .ajax_error(),
        ("Bad keys".to_owned(), "System.ArgumentException".to_owned())
    );
    assert!(portal.values("Google").values().all(String::is_empty));
    assert_eq!(
        ws_save(&portal, &token, &body("id", "good"))
            .await
            .ajax_value(),
        true
    );
    assert_eq!(
        portal.value("Google", "googleClientSecret").unwrap(),
        "good"
    );
}
