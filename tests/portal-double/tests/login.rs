//! `POST /api/2.0/authentication` and login tokens.

mod common;

use common::*;
use portal_double::AuthKind;
use serde_json::json;

#[tokio::test]
async fn login_issues_a_token_usable_as_header_or_cookie() {
    let portal = start().await;
    let reply = post(
        &portal,
        LOGIN,
        Auth::None,
        &json!({"userName": "admin@example.com", "password": "s3cret"}),
    )
    .await;
    let body = reply.json();
    assert_eq!(body["count"], 1);
    assert_eq!(body["links"][0]["href"], format!("{}{LOGIN}", portal.url()));
    let response = reply.response();
    assert_eq!(response["sms"], false);
    assert_eq!(response["tfa"], false);
    let expires = response["expires"].as_str().unwrap();
    assert!(
        expires.len() >= 19 && expires.as_bytes()[10] == b'T',
        "{expires}"
    );
    let token = response["token"].as_str().unwrap().to_owned();
    assert_eq!(portal.login_count(), 1);

    assert_eq!(
        get(&portal, AUTHSERVICE, Auth::Token(&token)).await.status,
        200
    );
    assert_eq!(
        get(&portal, AUTHSERVICE, Auth::Cookie(&token)).await.status,
        200
    );
    let body = json!({"name": "google", "props": [{"name": "googleClientId", "value": "a"}]});
    assert_eq!(
        post(&portal, AUTHSERVICE, Auth::Token(&token), &body)
            .await
            .response(),
        true
    );
    // A login token is not an API key.
    assert_eq!(
        get(&portal, AUTHSERVICE, Auth::Key(&token)).await.status,
        401
    );

    let kinds: Vec<AuthKind> = portal.requests().iter().map(|r| r.auth).collect();
    assert_eq!(
        kinds,
        [
            AuthKind::None,
            AuthKind::Token,
            AuthKind::Cookie,
            AuthKind::Token,
            AuthKind::Invalid
        ]
    );
}

#[tokio::test]
async fn login_accepts_json_suffix_and_any_field_case() {
    let portal = start().await;
    let body = json!({"USERNAME": "Admin@Example.com", "Password": "s3cret"});
    let response = post(&portal, "/api/2.0/authentication.json", Auth::None, &body)
        .await
        .response();
    assert!(response["token"].is_string());
}

#[tokio::test]
async fn wrong_credentials_get_401_with_a_message() {
    let portal = start().await;
    for body in [
        json!({"userName": "admin@example.com", "password": "wrong"}),
        json!({"userName": "nobody@example.com", "password": "s3cret"}),
        json!({}),
    ] {
        let reply = post(&portal, LOGIN, Auth::None, &body).await;
        assert_eq!(reply.error_message(401), "User authentication failed");
    }
    assert_eq!(portal.login_count(), 0);
}

#[tokio::test]
async fn two_factor_users_get_no_token() {
    let portal = start().await;
    let body = json!({"userName": "tfa@example.com", "password": "s3cret"});
    let response = post(&portal, LOGIN, Auth::None, &body).await.response();
    assert_eq!(response, json!({"sms": false, "tfa": true}));
    assert_eq!(portal.login_count(), 0);
}

#[tokio::test]
async fn five_failures_lock_the_user_out() {
    let portal = start().await;
    let wrong = json!({"userName": "admin@example.com", "password": "wrong"});
    for _ in 0..5 {
        assert_eq!(post(&portal, LOGIN, Auth::None, &wrong).await.status, 401);
    }
    let right = json!({"userName": "admin@example.com", "password": "s3cret"});
    let reply = post(&portal, LOGIN, Auth::None, &right).await;
    assert_eq!(
        reply.error_message(403),
        "Too many login attempts. Please try again later"
    );
    // Other users are not affected.
    assert!(!login(&portal, "user@example.com").await.is_empty());
}

#[tokio::test]
async fn expired_tokens_get_401() {
    let portal = start().await;
    let token = login(&portal, "admin@example.com").await;
    assert_eq!(
        get(&portal, AUTHSERVICE, Auth::Token(&token)).await.status,
        200
    );
    portal.expire_tokens();
    let reply = get(&portal, AUTHSERVICE, Auth::Token(&token)).await;
    assert_eq!((reply.status, reply.text.as_str()), (401, ""));
    assert_eq!(
        get(&portal, AUTHSERVICE, Auth::Cookie(&token)).await.status,
        401
    );
    assert_eq!(portal.requests().last().unwrap().auth, AuthKind::Invalid);
    // Logging in again works.
    let fresh = login(&portal, "admin@example.com").await;
    assert_ne!(fresh, token);
    assert_eq!(
        get(&portal, AUTHSERVICE, Auth::Token(&fresh)).await.status,
        200
    );
    assert_eq!(portal.login_count(), 2);
}

#[tokio::test]
async fn non_admin_user_gets_403() {
    let portal = start().await;
    let token = login(&portal, "user@example.com").await;
    let reply = get(&portal, AUTHSERVICE, Auth::Token(&token)).await;
    assert_eq!(reply.error_message(403), "Access denied");
}
