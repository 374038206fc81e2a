//! Localized messages: every text the portal takes from its resources follows the double's
//! language; `Access denied` stays English.

mod common;

use common::*;
use portal_double::{DoubleConfig, Flavor, Language, PortalDouble, Text};
use serde_json::json;

/// `Bad keys` as the API doc quotes it per language.
const BAD_KEYS: [(Language, &str); 7] = [
    (Language::En, "Bad keys"),
    (Language::De, "Schlechte Tasten"),
    (Language::Ru, "Неверные ключи"),
    (Language::Fr, "Clés invalides"),
    (Language::Es, "Claves incorrectas"),
    (Language::It, "Chiavi danneggiate"),
    (Language::ZhCn, "不良秘钥"),
];

async fn start_in(language: Language) -> PortalDouble {
    PortalDouble::start(DoubleConfig {
        language,
        ..config()
    })
    .await
    .unwrap()
}

#[test]
fn bad_keys_texts_are_the_portals() {
    for (language, text) in BAD_KEYS {
        assert_eq!(language.text(Text::BadKeys), text, "{language:?}");
    }
    assert_eq!(Language::ALL.len(), BAD_KEYS.len());
}

#[tokio::test]
async fn a_refused_value_wipes_the_service_with_bad_keys_in_every_language() {
    for (language, text) in BAD_KEYS {
        let portal = start_in(language).await;
        assert_eq!(portal.language(), language);
        portal.set_value("google", "googleClientId", "good-id");
        portal.set_value("google", "googleClientSecret", "good-secret");
        portal.refuse("google", "bad-secret");
        let body = json!({"name": "google", "props": [{"name": "googleClientSecret", "value": "bad-secret"}]});
        assert_eq!(
            save(&portal, body).await.error_message(400),
            text,
            "{language:?}"
        );
        // Every key of the service is cleared, also the id that was fine and not sent.
        assert!(
            portal.values("google").values().all(String::is_empty),
            "{language:?}: {:?}",
            portal.values("google")
        );
    }
}

#[tokio::test]
async fn workspace_bad_keys_and_fill_all_fields_are_localized() {
    for (language, text) in BAD_KEYS {
        let portal = PortalDouble::start(DoubleConfig {
            flavor: Flavor::Workspace,
            language,
            ..config()
        })
        .await
        .unwrap();
        let token = ws_token(&portal, "admin@example.com").await;
        portal.refuse("Google", "bad-secret");
        let body = json!({"name": "Google", "props": [
            {"Name": "googleClientId", "Value": "id"},
            {"Name": "googleClientSecret", "Value": "bad-secret"}
        ]});
        assert_eq!(
            ws_save(&portal, &token, &body).await.ajax_error(),
            (text.to_owned(), "System.ArgumentException".to_owned()),
            "{language:?}"
        );
        assert!(portal.values("Google").values().all(String::is_empty));

        let partial =
            json!({"name": "Google", "props": [{"Name": "googleClientId", "Value": "id"}]});
        assert_eq!(
            ws_save(&portal, &token, &partial).await.ajax_error().0,
            language.text(Text::FillAllFields)
        );
        let no_props = json!({"name": "Google"});
        let (message, kind) = ws_save(&portal, &token, &no_props).await.ajax_error();
        assert!(message.ends_with(": props"), "{message}");
        assert_eq!(kind, "System.ArgumentNullException");
    }
}

#[tokio::test]
async fn login_failures_are_localized() {
    let portal = start_in(Language::Ru).await;
    let wrong = json!({"userName": "admin@example.com", "password": "nope"});
    let reply = post(&portal, LOGIN, Auth::None, &wrong).await;
    assert_eq!(
        reply.error_message(401),
        "Ошибка аутентификации пользователя"
    );
    for _ in 0..4 {
        post(&portal, LOGIN, Auth::None, &wrong).await;
    }
    let right = json!({"userName": "admin@example.com", "password": "s3cret"});
    let reply = post(&portal, LOGIN, Auth::None, &right).await;
    assert_eq!(
        reply.error_message(403),
        Language::Ru.text(Text::TooManyLoginAttempts)
    );
}

#[tokio::test]
async fn plan_props_and_length_messages_are_localized() {
    let portal = PortalDouble::start(DoubleConfig {
        language: Language::De,
        paid_allowed: false,
        ..config()
    })
    .await
    .unwrap();
    let body = json!({"name": "s3", "props": [{"name": "acesskey", "value": "a"}]});
    assert_eq!(
        save(&portal, body).await.error_message(402),
        "Ihr Preisplan unterstützt diese Option nicht"
    );
    let message = save(&portal, json!({"name": "google"}))
        .await
        .error_message(400);
    assert_eq!(
        message,
        "Der Wert darf nicht NULL sein. (Parameter 'props')"
    );
    assert_eq!(message, Language::De.props_null());
    let long =
        json!({"name": "google", "props": [{"name": "googleClientId", "value": "x".repeat(4001)}]});
    let errors = save(&portal, long).await.validation_errors();
    assert_eq!(
        errors["Props[0].Value"][0],
        Language::De.value_too_long(4000)
    );
    assert!(errors["Props[0].Value"][0]
        .as_str()
        .unwrap()
        .contains("maximalen Länge von 4000"));
}

#[tokio::test]
async fn access_denied_stays_english() {
    let portal = start_in(Language::ZhCn).await;
    let reply = get(&portal, AUTHSERVICE, Auth::Key(USER_KEY)).await;
    assert_eq!(reply.error_message(403), "Access denied");
    let body = json!({"name": "nope", "props": [{"name": "x", "value": "y"}]});
    assert_eq!(
        save(&portal, body).await.error_message(403),
        "Access denied"
    );
}

#[tokio::test]
async fn the_language_can_change_at_runtime() {
    let portal = start().await;
    assert_eq!(portal.language(), Language::En);
    let bad_token =
        json!({"name": "telegram", "props": [{"name": "telegramBotToken", "value": "no"}]});
    assert_eq!(
        save(&portal, bad_token.clone()).await.error_message(400),
        "Bad keys"
    );
    portal.set_language(Language::Fr);
    assert_eq!(portal.language(), Language::Fr);
    assert_eq!(
        save(&portal, bad_token).await.error_message(400),
        "Clés invalides"
    );
    portal.set_ip_restricted(true);
    let reply = get(&portal, AUTHSERVICE, Auth::Key(ADMIN_KEY)).await;
    assert_eq!(reply.status, 403);
    assert_eq!(
        reply.json(),
        json!("L'accès depuis votre adresse IP est restreint")
    );
}

#[tokio::test]
async fn injected_402_is_localized_too() {
    let portal = start_in(Language::Es).await;
    portal.inject(portal_double::Fault::once(
        portal_double::FaultKind::Status(402),
    ));
    assert_eq!(
        get(&portal, AUTHSERVICE, Auth::Key(ADMIN_KEY))
            .await
            .error_message(402),
        "Su plan de precios no admite esta opción"
    );
}
