//! `GET`/`POST /api/2.0/settings/authservice` over HTTP: envelopes, check order, semantics.

mod common;

use common::*;
use portal_double::{DoubleConfig, PortalDouble, ServiceSpec, Validation};
use serde_json::json;

const VALID_BOT_TOKEN: &str = "123456789:AAbbCCddEEffGGhhIIjjKKllMMnnOOpp_-";

#[tokio::test]
async fn get_lists_the_catalogue_in_the_success_envelope() {
    let portal = start().await;
    portal.set_value("google", "googleClientId", "id-1");
    let reply = get(&portal, AUTHSERVICE, Auth::Key(ADMIN_KEY)).await;
    assert!(reply.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body = reply.json();
    assert_eq!(body["status"], 0);
    assert_eq!(body["statusCode"], 200);
    assert_eq!(body["count"], 19);
    assert_eq!(
        body["links"],
        json!([{"href": format!("{}{AUTHSERVICE}", portal.url()), "action": "GET"}])
    );
    let services = body["response"].as_array().unwrap();
    let names: Vec<&str> = services
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(names[..3], ["appleID", "box", "dropbox"]);
    assert_eq!(names[18], "nextcloud");

    let google = services.iter().find(|s| s["name"] == "google").unwrap();
    assert_eq!(google["title"], "Google");
    assert_eq!(google["canSet"], true);
    assert_eq!(google["paid"], false);
    assert!(google["description"].is_string() && google["instruction"].is_string());
    let props = google["props"].as_array().unwrap();
    assert_eq!(props.len(), 2);
    assert_eq!(props[0]["name"], "googleClientId");
    assert_eq!(props[0]["value"], "id-1", "values are in clear");
    assert_eq!(props[0]["type"], "text");
    assert!(props[0]["title"].is_string());
    assert_eq!(props[1]["value"], "", "unset is empty");

    let s3 = services.iter().find(|s| s["name"] == "s3").unwrap();
    assert_eq!(s3["paid"], true);
    assert_eq!(s3["props"][0]["name"], "acesskey");
}

#[tokio::test]
async fn post_answers_with_count_one_for_true_and_false() {
    let portal = start().await;
    let body = json!({"name": "google", "props": [{"name": "googleClientId", "value": "a"}]});
    let reply = save(&portal, body.clone()).await;
    let envelope = reply.json();
    assert_eq!(envelope["response"], true);
    assert_eq!(envelope["count"], 1);
    assert_eq!(envelope["links"][0]["action"], "POST");
    let envelope = save(&portal, body).await.json();
    assert_eq!(envelope["response"], false, "unchanged");
    assert_eq!(envelope["count"], 1, "false still counts 1");
}

#[tokio::test]
async fn unauthenticated_requests_get_401_with_an_empty_body() {
    let portal = start().await;
    for auth in [
        Auth::None,
        Auth::Key("sk-nope"),
        Auth::Token("nope"),
        Auth::Cookie("nope"),
    ] {
        let reply = get(&portal, AUTHSERVICE, auth).await;
        assert_eq!(reply.status, 401, "{auth:?}");
        assert_eq!(reply.text, "", "{auth:?}");
        let reply = post(
            &portal,
            AUTHSERVICE,
            auth,
            &json!({"name": "google", "props": []}),
        )
        .await;
        assert_eq!((reply.status, reply.text.as_str()), (401, ""), "{auth:?}");
    }
    // An API key sent raw (without Bearer) is not a login token.
    assert_eq!(
        get(&portal, AUTHSERVICE, Auth::Token(ADMIN_KEY))
            .await
            .status,
        401
    );
    assert_eq!(portal.values("google")["googleClientId"], "");
}

#[tokio::test]
async fn revoked_api_key_gets_401() {
    let portal = start().await;
    assert_eq!(
        get(&portal, AUTHSERVICE, Auth::Key(ADMIN_KEY)).await.status,
        200
    );
    portal.revoke_api_key(ADMIN_KEY);
    let reply = get(&portal, AUTHSERVICE, Auth::Key(ADMIN_KEY)).await;
    assert_eq!((reply.status, reply.text.as_str()), (401, ""));
}

#[tokio::test]
async fn non_admin_gets_403_access_denied() {
    let portal = start().await;
    let reply = get(&portal, AUTHSERVICE, Auth::Key(USER_KEY)).await;
    assert_eq!(reply.error_message(403), "Access denied");
    let body = json!({"name": "google", "props": [{"name": "googleClientId", "value": "a"}]});
    let reply = post(&portal, AUTHSERVICE, Auth::Key(USER_KEY), &body).await;
    assert_eq!(reply.error_message(403), "Access denied");
    assert_eq!(portal.value("google", "googleClientId").unwrap(), "");
}

#[tokio::test]
async fn read_only_key_can_get_but_not_post() {
    let portal = start().await;
    assert_eq!(
        get(&portal, AUTHSERVICE, Auth::Key(READ_KEY)).await.status,
        200
    );
    // A key without `*:write` gets 403 with an EMPTY body (§1), not `Access denied`, and before
    // the body is even read.
    let body = json!({"name": "google", "props": [{"name": "googleClientId", "value": "a"}]});
    let reply = post(&portal, AUTHSERVICE, Auth::Key(READ_KEY), &body).await;
    reply.assert_empty(403);
    let reply = post_raw(
        &portal,
        AUTHSERVICE,
        Auth::Key(READ_KEY),
        "application/json",
        "{",
    )
    .await;
    reply.assert_empty(403);
    assert_eq!(portal.value("google", "googleClientId").unwrap(), "");
}

#[tokio::test]
async fn unknown_or_miscased_service_gets_403() {
    let portal = start().await;
    for name in [json!("nope"), json!("Google"), json!(null)] {
        let body = json!({"name": name, "props": [{"name": "googleClientId", "value": "a"}]});
        assert_eq!(
            save(&portal, body).await.error_message(403),
            "Access denied"
        );
    }
    let body = json!({"props": [{"name": "googleClientId", "value": "a"}]});
    assert_eq!(
        save(&portal, body).await.error_message(403),
        "Access denied"
    );
}

#[tokio::test]
async fn apple_is_listed_as_apple_id_but_saved_as_appleid() {
    let portal = start().await;
    let listed = services(&portal).await;
    assert_eq!(listed[0]["name"], "appleID");
    let props = json!([{"name": "appleIdTeamId", "value": "team"}]);
    let reply = save(&portal, json!({"name": "appleID", "props": props})).await;
    assert_eq!(reply.error_message(403), "Access denied");
    assert_eq!(
        save(&portal, json!({"name": "appleid", "props": props}))
            .await
            .response(),
        true
    );
    assert_eq!(portal.value("appleid", "appleIdTeamId").unwrap(), "team");
}

#[tokio::test]
async fn fixed_service_is_listed_without_props_and_cannot_be_set() {
    let mut cfg = DoubleConfig::default();
    let google = cfg
        .services
        .iter_mut()
        .find(|s| s.name == "google")
        .unwrap();
    google.can_set = false;
    google.props[0].1 = "from-config".into();
    let portal = PortalDouble::start(cfg).await.unwrap();
    let listed = services(&portal).await;
    let google = listed.iter().find(|s| s["name"] == "google").unwrap();
    assert_eq!(google["canSet"], false);
    assert!(google.get("props").is_none(), "{google}");
    let body = json!({"name": "google", "props": [{"name": "googleClientId", "value": "a"}]});
    assert_eq!(
        save(&portal, body).await.error_message(403),
        "Access denied"
    );
    assert_eq!(
        portal.value("google", "googleClientId").unwrap(),
        "from-config"
    );
}

#[tokio::test]
async fn paid_service_on_a_free_plan_gets_402() {
    let cfg = DoubleConfig {
        paid_allowed: false,
        ..DoubleConfig::default()
    };
    let portal = PortalDouble::start(cfg).await.unwrap();
    let body = json!({"name": "s3", "props": [{"name": "acesskey", "value": "a"}]});
    assert_eq!(
        save(&portal, body).await.error_message(402),
        "Your pricing plan does not support this option"
    );
    // 402 comes before the props check.
    assert_eq!(
        save(&portal, json!({"name": "googlecloud"})).await.status,
        402
    );
    assert_eq!(portal.value("s3", "acesskey").unwrap(), "");
    let body = json!({"name": "google", "props": [{"name": "googleClientId", "value": "a"}]});
    assert_eq!(save(&portal, body).await.response(), true);
}

#[tokio::test]
async fn missing_props_is_400() {
    let portal = start().await;
    for body in [
        json!({"name": "google"}),
        json!({"name": "google", "props": null}),
    ] {
        let message = save(&portal, body).await.error_message(400);
        assert!(message.contains("props"), "{message}");
    }
}

#[tokio::test]
async fn too_long_value_is_a_validation_problem_naming_the_limit() {
    let portal = start().await;
    portal.set_value("googlecloud", "json", "old");
    let long = "x".repeat(4001);
    let body = json!({"name": "googlecloud", "props": [{"name": "json", "value": long}]});
    let errors = save(&portal, body.clone()).await.validation_errors();
    let message = errors["Props[0].Value"][0].as_str().unwrap();
    assert!(message.contains("4000"), "{message}");
    assert_eq!(
        portal.value("googlecloud", "json").unwrap(),
        "old",
        "nothing written"
    );
    // Model validation runs before the permission check: a non-admin gets the 400 too.
    let reply = post(&portal, AUTHSERVICE, Auth::Key(USER_KEY), &body).await;
    reply.validation_errors();

    let exact = "x".repeat(4000);
    let body = json!({"name": "googlecloud", "props": [{"name": "json", "value": exact}]});
    assert_eq!(save(&portal, body).await.response(), true);
    // .NET counts UTF-16 code units: 2001 emoji are 4002 units.
    let emoji = "😀".repeat(2001);
    let body = json!({"name": "googlecloud", "props": [{"name": "json", "value": emoji}]});
    save(&portal, body).await.validation_errors();
}

#[tokio::test]
async fn old_portal_limit_is_configurable() {
    let cfg = DoubleConfig {
        max_value_len: 255,
        ..DoubleConfig::default()
    };
    let portal = PortalDouble::start(cfg).await.unwrap();
    let body =
        json!({"name": "google", "props": [{"name": "googleClientId", "value": "x".repeat(256)}]});
    let errors = save(&portal, body).await.validation_errors();
    let message = errors["Props[0].Value"][0].as_str().unwrap();
    assert!(message.contains("255"), "{message}");
}

#[tokio::test]
async fn a_prop_without_value_is_a_validation_problem() {
    let portal = start().await;
    set_google(&portal);
    // `value` is a required member: it may be null, not absent.
    let body = json!({"name": "google", "props": [
        {"name": "googleClientId", "value": null}, {"name": "googleClientSecret"}
    ]});
    let errors = save(&portal, body).await.validation_errors();
    assert!(
        errors["$.props[1]"][0].as_str().unwrap().contains("value"),
        "{errors}"
    );
    assert_eq!(
        portal.value("google", "googleClientSecret").unwrap(),
        "secret",
        "not cleared"
    );
}

fn set_google(portal: &PortalDouble) {
    portal.set_value("google", "googleClientId", "id");
    portal.set_value("google", "googleClientSecret", "secret");
}

#[tokio::test]
async fn all_empty_values_clear_the_whole_service() {
    let portal = start().await;
    for props in [
        json!([{"name": "googleClientId", "value": ""}]),
        json!([{"name": "googleClientId", "value": null}, {"name": "googleClientSecret", "value": null}]),
        json!([]),
        json!([{"name": "unknownProp", "value": ""}]),
    ] {
        set_google(&portal);
        let reply = save(&portal, json!({"name": "google", "props": props})).await;
        assert_eq!(reply.response(), true, "{props}");
        assert_eq!(
            portal.value("google", "googleClientId").unwrap(),
            "",
            "{props}"
        );
        assert_eq!(
            portal.value("google", "googleClientSecret").unwrap(),
            "",
            "{props}"
        );
    }
    // Clearing an already empty service still answers true.
    assert_eq!(
        save(&portal, json!({"name": "google", "props": []}))
            .await
            .response(),
        true
    );
}

#[tokio::test]
async fn partial_update_keeps_props_not_sent() {
    let portal = start().await;
    set_google(&portal);
    let body = json!({"name": "google", "props": [{"name": "googleClientSecret", "value": "new"}]});
    assert_eq!(save(&portal, body).await.response(), true);
    assert_eq!(portal.value("google", "googleClientId").unwrap(), "id");
    assert_eq!(portal.value("google", "googleClientSecret").unwrap(), "new");
}

#[tokio::test]
async fn empty_value_next_to_a_set_one_clears_only_that_prop() {
    let portal = start().await;
    set_google(&portal);
    let body = json!({"name": "google", "props": [
        {"name": "googleClientId", "value": "id2"},
        {"name": "googleClientSecret", "value": ""}
    ]});
    assert_eq!(save(&portal, body).await.response(), true);
    assert_eq!(portal.value("google", "googleClientId").unwrap(), "id2");
    assert_eq!(portal.value("google", "googleClientSecret").unwrap(), "");
}

#[tokio::test]
async fn unknown_props_are_dropped_silently() {
    let portal = start().await;
    let body = json!({"name": "google", "props": [
        {"name": "googleClientId", "value": "id"},
        {"name": "googleclientsecret", "value": "miscased"},
        {"name": "bogus", "value": "x"}
    ]});
    assert_eq!(save(&portal, body).await.response(), true);
    let values = portal.values("google");
    assert_eq!(values.len(), 2);
    assert_eq!(values["googleClientId"], "id");
    assert_eq!(
        values["googleClientSecret"], "",
        "prop names are case-sensitive"
    );
    // Only unknown props: nothing changes.
    let body = json!({"name": "google", "props": [{"name": "bogus", "value": "x"}]});
    assert_eq!(save(&portal, body).await.response(), false);
}

#[tokio::test]
async fn identical_values_answer_false() {
    let portal = start().await;
    set_google(&portal);
    let body = json!({"name": "google", "props": [
        {"name": "googleClientId", "value": "id"},
        {"name": "googleClientSecret", "value": "secret"}
    ]});
    assert_eq!(save(&portal, body).await.response(), false);
}

#[tokio::test]
async fn bad_telegram_token_clears_the_service() {
    let portal = start().await;
    let body = json!({"name": "telegram", "props": [
        {"name": "telegramBotToken", "value": VALID_BOT_TOKEN},
        {"name": "telegramBotName", "value": "acme_bot"}
    ]});
    assert_eq!(save(&portal, body).await.response(), true);
    assert_eq!(
        portal.value("telegram", "telegramBotToken").unwrap(),
        VALID_BOT_TOKEN
    );

    let body = json!({"name": "telegram", "props": [{"name": "telegramBotToken", "value": "not-a-token"}]});
    assert_eq!(save(&portal, body).await.error_message(400), "Bad keys");
    assert_eq!(portal.value("telegram", "telegramBotToken").unwrap(), "");
    assert_eq!(
        portal.value("telegram", "telegramBotName").unwrap(),
        "",
        "every prop cleared"
    );
}

#[tokio::test]
async fn ignored_validation_has_no_effect() {
    let portal = start().await;
    let body =
        json!({"name": "twilio", "props": [{"name": "twilioAccountSid", "value": "nonsense"}]});
    assert_eq!(save(&portal, body).await.response(), true);
    assert_eq!(
        portal.value("twilio", "twilioAccountSid").unwrap(),
        "nonsense"
    );
}

#[tokio::test]
async fn custom_services_follow_their_spec() {
    let mut bitly = ServiceSpec::new("bitly", "Bitly", &["bitlyToken"]);
    bitly.validated = Validation::IgnoredFailure;
    let cfg = DoubleConfig {
        services: vec![bitly],
        ..DoubleConfig::default()
    };
    let portal = PortalDouble::start(cfg).await.unwrap();
    let listed = services(&portal).await;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["name"], "bitly");
    let body = json!({"name": "bitly", "props": [{"name": "bitlyToken", "value": "t"}]});
    assert_eq!(save(&portal, body).await.response(), true);
}

#[tokio::test]
async fn request_field_names_are_case_insensitive() {
    let portal = start().await;
    let body = json!({
        "Name": "google",
        "PROPS": [{"Name": "googleClientId", "Value": "id"}],
        "title": "Google", "description": "d", "instruction": "i", "canSet": true
    });
    assert_eq!(save(&portal, body).await.response(), true);
    assert_eq!(portal.value("google", "googleClientId").unwrap(), "id");
}

#[tokio::test]
async fn malformed_json_gets_400_in_the_success_shaped_envelope() {
    let portal = start().await;
    let reply = post_raw(
        &portal,
        AUTHSERVICE,
        Auth::Key(ADMIN_KEY),
        "application/json",
        "{\"name\": \"google\", ",
    )
    .await;
    assert_eq!(reply.status, 400);
    let body = reply.json();
    assert_eq!(body["status"], 1);
    assert_eq!(body["statusCode"], 400);
    assert_eq!(body["count"], 1);
    assert!(body["links"].is_array());
    assert!(body.get("error").is_none());
    assert!(body["response"]["errors"].is_object(), "{body}");

    // A value of the wrong type is a binding error too.
    let bad_type = json!({"name": "google", "props": [{"name": "googleClientId", "value": 1}]});
    let reply = save(&portal, bad_type).await;
    assert_eq!(
        (reply.status, reply.json()["statusCode"].clone()),
        (400, json!(400))
    );
    // Binding happens after authentication.
    let reply = post_raw(&portal, AUTHSERVICE, Auth::None, "application/json", "{").await;
    assert_eq!(reply.status, 401);
    // A body that is not declared as JSON is not bound at all.
    let reply = post_raw(
        &portal,
        AUTHSERVICE,
        Auth::Key(ADMIN_KEY),
        "text/plain",
        "{}",
    )
    .await;
    assert_eq!(reply.status, 415);
    assert_eq!(portal.value("google", "googleClientId").unwrap(), "");
}

#[tokio::test]
async fn unknown_paths_404_and_other_methods_405() {
    let portal = start().await;
    assert_eq!(
        get(&portal, "/api/2.0/settings/nope", Auth::Key(ADMIN_KEY))
            .await
            .status,
        404
    );
    assert_eq!(get(&portal, "/", Auth::None).await.status, 404);
    let reply = client()
        .delete(format!("{}{AUTHSERVICE}", portal.url()))
        .header("Authorization", format!("Bearer {ADMIN_KEY}"))
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 405);
    assert_eq!(get(&portal, LOGIN, Auth::None).await.status, 405);
}

#[tokio::test]
async fn oversized_bodies_get_413() {
    let portal = start().await;
    let huge = vec![b' '; 2 * 1024 * 1024];
    let reply = post_raw(
        &portal,
        AUTHSERVICE,
        Auth::Key(ADMIN_KEY),
        "application/json",
        huge,
    )
    .await;
    assert_eq!(reply.status, 413);
    assert_eq!(portal.requests().last().unwrap().status, 413);
}

#[tokio::test]
async fn every_request_is_recorded_without_secrets() {
    let portal = start().await;
    let body = json!({"name": "google", "props": [{"name": "googleClientId", "value": "id"}]});
    save(&portal, body.clone()).await;
    get(&portal, AUTHSERVICE, Auth::None).await;
    get(&portal, "/nowhere", Auth::Key("sk-wrong")).await;
    post_raw(
        &portal,
        AUTHSERVICE,
        Auth::Key(ADMIN_KEY),
        "application/json",
        "{",
    )
    .await;

    let requests = portal.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].path, AUTHSERVICE);
    assert_eq!(requests[0].status, 200);
    assert_eq!(requests[0].body, Some(body.clone()));
    assert_eq!(requests[0].auth, portal_double::AuthKind::ApiKey);
    assert_eq!(
        (requests[1].status, requests[1].auth),
        (401, portal_double::AuthKind::None)
    );
    assert_eq!(
        (requests[2].status, requests[2].auth),
        (404, portal_double::AuthKind::Invalid)
    );
    assert_eq!((requests[3].status, requests[3].body.clone()), (400, None));
    assert!(!format!("{requests:?}").contains(ADMIN_KEY));

    assert_eq!(portal.count("POST", AUTHSERVICE), 2);
    assert_eq!(portal.count("get", AUTHSERVICE), 1);
    assert_eq!(portal.posts(), vec![body]);
    portal.clear_requests();
    assert!(portal.requests().is_empty());
    assert_eq!(portal.count("POST", AUTHSERVICE), 0);
}

#[tokio::test]
async fn set_value_is_seen_by_get() {
    let portal = start().await;
    portal.set_value("zoom", "zoomClientId", "z");
    let listed = services(&portal).await;
    let zoom = listed.iter().find(|s| s["name"] == "zoom").unwrap();
    assert_eq!(zoom["props"][0]["value"], "z");
    assert_eq!(portal.value("zoom", "nope"), None);
    assert_eq!(portal.value("nope", "zoomClientId"), None);
    assert!(portal.values("nope").is_empty());
}
