//! The Workspace (Community Server v12) dialect over HTTP: login, the AjaxPro `SaveAuthKeys`
//! call, the settings page, and what a Workspace portal lacks.

mod common;

use std::collections::BTreeMap;

use common::*;
use portal_double::{
    AuthKind, DoubleConfig, Fault, FaultKind, Flavor, PortalDouble, WORKSPACE_LOGIN_PATH,
    WORKSPACE_SAVE_PATH, WORKSPACE_SETTINGS_PAGE,
};
use serde_json::{json, Value};

const VALID_BOT_TOKEN: &str = "123456789:AAbbCCddEEffGGhhIIjjKKllMMnnOOpp_-";

/// The common users and keys on a Workspace portal (the keys are ignored there).
fn ws_config() -> DoubleConfig {
    DoubleConfig {
        flavor: Flavor::Workspace,
        services: portal_double::workspace_catalogue(),
        ..config()
    }
}

async fn ws_start() -> PortalDouble {
    PortalDouble::start(ws_config()).await.unwrap()
}

/// Logs in at `/api/2.0/authentication.json` and returns the token.
async fn ws_login(portal: &PortalDouble, email: &str) -> String {
    let body = json!({"userName": email, "password": "s3cret"});
    let reply = post(portal, WORKSPACE_LOGIN_PATH, Auth::None, &body).await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.json()["response"]["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// A raw AjaxPro call: `method` is the `X-AjaxPro-Method` header (none if `None`), the body is
/// sent as AjaxPro's client does, `text/plain; charset=utf-8`.
async fn ajax(
    portal: &PortalDouble,
    auth: Auth<'_>,
    method: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> Reply {
    let mut request = client()
        .post(format!("{}{WORKSPACE_SAVE_PATH}", portal.url()))
        .header("Content-Type", "text/plain; charset=utf-8")
        .body(body);
    if let Some(method) = method {
        request = request.header("X-AjaxPro-Method", method);
    }
    request = match auth {
        Auth::None => request,
        Auth::Key(key) => request.header("Authorization", format!("Bearer {key}")),
        Auth::Token(token) => request.header("Authorization", token),
        Auth::Cookie(token) => request.header("Cookie", format!("asc_auth_key={token}")),
    };
    let response = request.send().await.unwrap();
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.text().await.unwrap(),
    }
}

/// `SaveAuthKeys` with a JSON body.
async fn save_keys(portal: &PortalDouble, auth: Auth<'_>, body: &Value) -> Reply {
    ajax(portal, auth, Some("SaveAuthKeys"), body.to_string()).await
}

/// The `value` of an AjaxPro answer, after checking it is HTTP 200 without `error`.
fn ajax_value(reply: &Reply) -> Value {
    assert_eq!(reply.status, 200, "{}", reply.text);
    assert!(reply.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let body = reply.json();
    assert!(body.get("error").is_none(), "{body}");
    body["value"].clone()
}

/// `(Message, Type)` of an AjaxPro error, after checking it is HTTP 200 without `value`.
fn ajax_error(reply: &Reply) -> (String, String) {
    assert_eq!(reply.status, 200, "{}", reply.text);
    let body = reply.json();
    assert!(body.get("value").is_none(), "{body}");
    let error = body["error"].as_object().expect("an error object");
    assert_eq!(error.len(), 2, "only Message and Type: {body}");
    (
        error["Message"].as_str().unwrap().to_owned(),
        error["Type"].as_str().unwrap().to_owned(),
    )
}

fn google(id: &str, secret: &str) -> Value {
    json!({"name": "Google", "props": [
        {"Name": "googleClientId", "Value": id},
        {"Name": "googleClientSecret", "Value": secret}
    ]})
}

fn set_google(portal: &PortalDouble) {
    portal.set_value("Google", "googleClientId", "id");
    portal.set_value("Google", "googleClientSecret", "secret");
}

/// Reads the settings page the way a client would: each `auth-service-item` div up to its
/// `</div>`, its inputs' `id` and `value` (entities decoded).
fn parse_settings_page(html: &str) -> BTreeMap<String, BTreeMap<String, String>> {
    let mut services = BTreeMap::new();
    for chunk in html
        .split("<div class=\"auth-service-item\" data-service=\"")
        .skip(1)
    {
        let (name, rest) = chunk.split_once('"').unwrap();
        let item = &rest[..rest.find("</div>").unwrap()];
        let mut props = BTreeMap::new();
        for input in item
            .split("<input type=\"text\" class=\"textEdit\" id=\"")
            .skip(1)
        {
            let (id, rest) = input.split_once('"').unwrap();
            let value = rest.strip_prefix(" value=\"").unwrap();
            let value = &value[..value.find('"').unwrap()];
            props.insert(decode_entities(id), decode_entities(value));
        }
        services.insert(decode_entities(name), props);
    }
    services
}

fn decode_entities(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&#10;", "\n")
        .replace("&#13;", "\r")
        .replace("&#9;", "\t")
        .replace("&amp;", "&")
}

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

async fn get_page(portal: &PortalDouble, path: &str, auth: Auth<'_>) -> Reply {
    let mut request = no_redirects().get(format!("{}{path}", portal.url()));
    request = match auth {
        Auth::None => request,
        Auth::Key(key) => request.header("Authorization", format!("Bearer {key}")),
        Auth::Token(token) => request.header("Authorization", token),
        Auth::Cookie(token) => request.header("Cookie", format!("asc_auth_key={token}")),
    };
    let response = request.send().await.unwrap();
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.text().await.unwrap(),
    }
}

#[tokio::test]
async fn login_then_save_answers_true_then_false_when_unchanged() {
    let portal = ws_start().await;
    assert_eq!(portal.flavor(), Flavor::Workspace);
    let reply = post(
        &portal,
        WORKSPACE_LOGIN_PATH,
        Auth::None,
        &json!({"userName": "admin@example.com", "password": "s3cret"}),
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    let body = reply.json();
    assert_eq!(body["status"], 0);
    assert_eq!(body["statusCode"], 201);
    assert_eq!(body["count"], 1);
    assert_eq!(body["startIndex"], 0);
    let token = body["response"]["token"].as_str().unwrap().to_owned();
    assert!(body["response"]["expires"].as_str().unwrap().contains('T'));
    assert_eq!(body["response"]["tfa"], false);
    assert_eq!(portal.login_count(), 1);

    let reply = save_keys(&portal, Auth::Token(&token), &google("id", "secret")).await;
    assert_eq!(reply.text, r#"{"value":true}"#);
    assert_eq!(ajax_value(&reply), true);
    assert_eq!(portal.value("Google", "googleClientId").unwrap(), "id");
    assert_eq!(
        portal.value("Google", "googleClientSecret").unwrap(),
        "secret"
    );
    // The same keys again, by cookie this time: nothing changes.
    let reply = save_keys(&portal, Auth::Cookie(&token), &google("id", "secret")).await;
    assert_eq!(ajax_value(&reply), false);
    let reply = save_keys(&portal, Auth::Token(&token), &google("id", "secret2")).await;
    assert_eq!(ajax_value(&reply), true);

    // `/api/2.0/authentication` works too.
    let reply = post(
        &portal,
        LOGIN,
        Auth::None,
        &json!({"userName": "admin@example.com", "password": "s3cret"}),
    )
    .await;
    assert_eq!(reply.status, 201);

    let kinds: Vec<Option<AuthKind>> = portal
        .requests()
        .iter()
        .filter(|r| r.ajax_method.is_some())
        .map(|r| Some(r.auth))
        .collect();
    assert_eq!(
        kinds,
        [
            Some(AuthKind::Token),
            Some(AuthKind::Cookie),
            Some(AuthKind::Token)
        ]
    );
    assert_eq!(portal.posts().len(), 3);
    assert_eq!(portal.posts()[0], google("id", "secret"));
    assert_eq!(portal.count("POST", WORKSPACE_SAVE_PATH), 3);
}

#[tokio::test]
async fn partial_props_are_refused_and_nothing_is_saved() {
    let portal = ws_start().await;
    let token = ws_login(&portal, "admin@example.com").await;
    set_google(&portal);
    for props in [
        // One empty value next to a set one.
        json!([{"Name": "googleClientId", "Value": "new"}, {"Name": "googleClientSecret", "Value": ""}]),
        json!([{"Name": "googleClientId", "Value": "new"}, {"Name": "googleClientSecret", "Value": null}]),
        // A known prop not sent counts as empty.
        json!([{"Name": "googleClientId", "Value": "new"}]),
        // A non-empty unknown prop next to empty known ones.
        json!([{"Name": "googleClientld", "Value": "typo"}]),
    ] {
        let body = json!({"name": "Google", "props": props});
        let reply = save_keys(&portal, Auth::Token(&token), &body).await;
        assert_eq!(
            ajax_error(&reply),
            (
                "Please fill in all fields".to_owned(),
                "System.ArgumentException".to_owned()
            ),
            "{props}"
        );
        assert_eq!(
            portal.values("Google"),
            BTreeMap::from([
                ("googleClientId".to_owned(), "id".to_owned()),
                ("googleClientSecret".to_owned(), "secret".to_owned())
            ]),
            "nothing saved: {props}"
        );
    }
}

#[tokio::test]
async fn all_empty_clears_the_service() {
    let portal = ws_start().await;
    let token = ws_login(&portal, "admin@example.com").await;
    for props in [
        json!([{"Name": "googleClientId", "Value": ""}, {"Name": "googleClientSecret", "Value": ""}]),
        json!([{"Name": "googleClientId", "Value": null}]),
        json!([]),
        json!([{"Name": "unknownProp", "Value": ""}]),
    ] {
        set_google(&portal);
        let body = json!({"name": "Google", "props": props});
        let reply = save_keys(&portal, Auth::Token(&token), &body).await;
        assert_eq!(ajax_value(&reply), true, "{props}");
        assert_eq!(portal.value("Google", "googleClientId").unwrap(), "");
        assert_eq!(portal.value("Google", "googleClientSecret").unwrap(), "");
    }
    // Clearing an empty service still answers true.
    let reply = save_keys(&portal, Auth::Token(&token), &google("", "")).await;
    assert_eq!(ajax_value(&reply), true);
}

#[tokio::test]
async fn unknown_props_are_dropped_when_all_known_ones_are_filled() {
    let portal = ws_start().await;
    let token = ws_login(&portal, "admin@example.com").await;
    let body = json!({"name": "Google", "props": [
        {"Name": "googleClientId", "Value": "id"},
        {"Name": "googleClientSecret", "Value": "secret"},
        {"Name": "bogus", "Value": "x"},
        {"Name": "alsoBogus", "Value": ""}
    ]});
    let reply = save_keys(&portal, Auth::Token(&token), &body).await;
    assert_eq!(ajax_value(&reply), true);
    assert_eq!(portal.values("Google").len(), 2);
    assert_eq!(portal.value("Google", "bogus"), None);
    // Lower-case field names bind too.
    let body = json!({"name": "Google", "props": [
        {"name": "googleClientId", "value": "id"},
        {"name": "googleClientSecret", "value": "secret"}
    ]});
    let reply = save_keys(&portal, Auth::Token(&token), &body).await;
    assert_eq!(ajax_value(&reply), false);
}

#[tokio::test]
async fn unknown_or_lower_case_service_is_an_error() {
    let portal = ws_start().await;
    let token = ws_login(&portal, "admin@example.com").await;
    for name in ["Nope", "google", "GOOGLE"] {
        let body = json!({"name": name, "props": [
            {"Name": "googleClientId", "Value": "id"},
            {"Name": "googleClientSecret", "Value": "secret"}
        ]});
        let reply = save_keys(&portal, Auth::Token(&token), &body).await;
        assert_eq!(
            ajax_error(&reply),
            (
                format!("Unknown service '{name}'"),
                "System.ArgumentException".to_owned()
            )
        );
    }
    let body = json!({"props": []});
    let reply = save_keys(&portal, Auth::Token(&token), &body).await;
    assert_eq!(ajax_error(&reply).0, "Unknown service ''");
    assert_eq!(portal.value("Google", "googleClientId").unwrap(), "");
}

#[tokio::test]
async fn unauthenticated_gets_200_with_an_error() {
    let cfg = ws_config();
    assert!(!cfg.api_keys.is_empty(), "keys configured, yet unusable");
    let portal = PortalDouble::start(cfg).await.unwrap();
    let token = ws_login(&portal, "admin@example.com").await;
    for auth in [
        Auth::None,
        Auth::Token("nope"),
        Auth::Cookie("nope"),
        // No API keys on Workspace, and a login token is not sent as Bearer.
        Auth::Key(ADMIN_KEY),
        Auth::Key(&token),
    ] {
        let reply = save_keys(&portal, auth, &google("id", "secret")).await;
        assert_eq!(
            ajax_error(&reply),
            (
                "Attempted to perform an unauthorized operation.".to_owned(),
                "System.UnauthorizedAccessException".to_owned()
            ),
            "{auth:?}"
        );
    }
    assert!(portal
        .requests()
        .iter()
        .filter(|r| r.ajax_method.is_some())
        .all(|r| r.status == 200));
    // An expired token too.
    portal.expire_tokens();
    let reply = save_keys(&portal, Auth::Token(&token), &google("id", "secret")).await;
    assert_eq!(ajax_error(&reply).1, "System.UnauthorizedAccessException");
    assert_eq!(portal.value("Google", "googleClientId").unwrap(), "");
}

#[tokio::test]
async fn non_admin_gets_access_denied() {
    let portal = ws_start().await;
    let token = ws_login(&portal, "user@example.com").await;
    let reply = save_keys(&portal, Auth::Token(&token), &google("id", "secret")).await;
    assert_eq!(
        ajax_error(&reply),
        (
            "Access denied".to_owned(),
            "System.Security.SecurityException".to_owned()
        )
    );
    assert_eq!(portal.value("Google", "googleClientId").unwrap(), "");
}

#[tokio::test]
async fn unknown_or_missing_method_header_is_an_error() {
    let portal = ws_start().await;
    let token = ws_login(&portal, "admin@example.com").await;
    let body = google("id", "secret").to_string();
    let reply = ajax(
        &portal,
        Auth::Token(&token),
        Some("saveauthkeys"),
        body.clone(),
    )
    .await;
    assert_eq!(
        ajax_error(&reply),
        (
            "The method 'saveauthkeys' does not exist.".to_owned(),
            "System.MissingMethodException".to_owned()
        )
    );
    let reply = ajax(&portal, Auth::Token(&token), None, body.clone()).await;
    assert_eq!(
        ajax_error(&reply).0,
        "The method '' does not exist.",
        "missing header"
    );
    // The method is checked before authentication.
    let reply = ajax(&portal, Auth::None, Some("GetAuthKeys"), body).await;
    assert_eq!(ajax_error(&reply).1, "System.MissingMethodException");
    assert_eq!(portal.value("Google", "googleClientId").unwrap(), "");
    assert!(portal.posts().is_empty(), "only SaveAuthKeys calls count");
}

#[tokio::test]
async fn bad_bodies_are_errors() {
    let portal = ws_start().await;
    let token = ws_login(&portal, "admin@example.com").await;
    let auth = Auth::Token(&token);
    for body in [
        json!({"name": "Google"}),
        json!({"name": "Google", "props": null}),
    ] {
        let reply = save_keys(&portal, auth, &body).await;
        assert_eq!(
            ajax_error(&reply),
            (
                "Value cannot be null.\r\nParameter name: props".to_owned(),
                "System.ArgumentNullException".to_owned()
            )
        );
    }
    let reply = ajax(&portal, auth, Some("SaveAuthKeys"), "{\"name\": ").await;
    let (message, kind) = ajax_error(&reply);
    assert!(message.starts_with("Invalid JSON"), "{message}");
    assert_eq!(kind, "System.ArgumentException");
    let body = json!({"name": "Google", "props": [{"Name": "googleClientId", "Value": 5}]});
    let reply = save_keys(&portal, auth, &body).await;
    assert_eq!(ajax_error(&reply).1, "System.ArgumentException");
    // No body at all binds no parameter: no service.
    let reply = ajax(&portal, auth, Some("SaveAuthKeys"), "").await;
    assert_eq!(ajax_error(&reply).0, "Unknown service ''");
    // AjaxPro does not care about the content type.
    let reply = post(&portal, WORKSPACE_SAVE_PATH, auth, &google("a", "b")).await;
    assert_eq!(ajax_error(&reply).1, "System.MissingMethodException");
    let request = client()
        .post(format!("{}{WORKSPACE_SAVE_PATH}", portal.url()))
        .header("Authorization", token.as_str())
        .header("X-AjaxPro-Method", "SaveAuthKeys")
        .json(&google("a", "b"));
    let text = request.send().await.unwrap().text().await.unwrap();
    assert_eq!(text, r#"{"value":true}"#);
}

#[tokio::test]
async fn settings_page_shows_the_values_html_escaped() {
    let portal = ws_start().await;
    let token = ws_login(&portal, "admin@example.com").await;
    let tricky = "a\"b<c>&d'e\nf é";
    portal.set_value("Google", "googleClientId", tricky);
    portal.set_value("Google", "googleClientSecret", "plain");
    let reply = get_page(&portal, WORKSPACE_SETTINGS_PAGE, Auth::Cookie(&token)).await;
    assert_eq!(reply.status, 200);
    assert!(reply.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = &reply.text;
    assert!(
        html.contains(
            "<div class=\"auth-service-item\" data-service=\"Google\" data-can-set=\"true\">\n\
             <span class=\"auth-service-title\">Google</span>\n\
             <label for=\"googleClientId\">Google Client ID</label>\n\
             <input type=\"text\" class=\"textEdit\" id=\"googleClientId\" \
             value=\"a&quot;b&lt;c&gt;&amp;d&#39;e&#10;f é\" />\n\
             <label for=\"googleClientSecret\">Google Client Secret</label>\n\
             <input type=\"text\" class=\"textEdit\" id=\"googleClientSecret\" value=\"plain\" />\n\
             </div>\n"
        ),
        "{html}"
    );
    assert!(!html.contains(tricky));
    let parsed = parse_settings_page(html);
    assert_eq!(parsed.len(), 22, "every service");
    assert_eq!(parsed["Google"]["googleClientId"], tricky);
    assert_eq!(parsed["Google"]["googleClientSecret"], "plain");
    assert_eq!(parsed["S3"]["acesskey"], "");
    assert!(!parsed
        .values()
        .any(|props| props.contains_key("studioSearch")));

    // A save is visible on the page; the raw token works too.
    let body = json!({"name": "Telegram", "props": [
        {"Name": "telegramBotToken", "Value": VALID_BOT_TOKEN},
        {"Name": "telegramBotName", "Value": "acme_bot"}
    ]});
    assert_eq!(
        ajax_value(&save_keys(&portal, Auth::Token(&token), &body).await),
        true
    );
    let reply = get_page(&portal, "/management.aspx?Type=10", Auth::Token(&token)).await;
    assert_eq!(
        parse_settings_page(&reply.text)["Telegram"]["telegramBotToken"],
        VALID_BOT_TOKEN
    );

    // Other settings pages have no keys.
    let reply = get_page(&portal, "/Management.aspx?type=1", Auth::Token(&token)).await;
    assert_eq!(reply.status, 200);
    assert!(!reply.text.contains("auth-service-item"));
    assert!(!reply.text.contains(VALID_BOT_TOKEN));
}

#[tokio::test]
async fn settings_page_redirects_when_unauthenticated() {
    let portal = ws_start().await;
    portal.set_value("Google", "googleClientId", "secret-id");
    for auth in [Auth::None, Auth::Token("nope"), Auth::Key(ADMIN_KEY)] {
        let reply = get_page(&portal, WORKSPACE_SETTINGS_PAGE, auth).await;
        assert_eq!(reply.status, 302, "{auth:?}");
        assert_eq!(
            reply.headers["location"],
            "/Auth.aspx?refererurl=%2fManagement.aspx%3ftype%3d10"
        );
        assert!(!reply.text.contains("secret-id"));
    }
    let token = ws_login(&portal, "user@example.com").await;
    let reply = get_page(&portal, WORKSPACE_SETTINGS_PAGE, Auth::Token(&token)).await;
    assert_eq!(
        (reply.status, reply.headers["location"].to_str().unwrap()),
        (302, "/"),
        "a non-admin is sent home"
    );
    assert!(!reply.text.contains("secret-id"));
}

#[tokio::test]
async fn workspace_has_no_authservice_endpoint() {
    let portal = ws_start().await;
    let token = ws_login(&portal, "admin@example.com").await;
    for auth in [Auth::Token(&token), Auth::Key(ADMIN_KEY), Auth::None] {
        let reply = get(&portal, AUTHSERVICE, auth).await;
        assert_eq!((reply.status, reply.text.as_str()), (404, ""), "{auth:?}");
        let body = json!({"name": "Google", "props": [{"name": "googleClientId", "value": "a"}]});
        assert_eq!(post(&portal, AUTHSERVICE, auth, &body).await.status, 404);
    }
    assert_eq!(portal.value("Google", "googleClientId").unwrap(), "");
    assert!(portal.posts().is_empty());
    // A DocSpace double has none of Workspace's endpoints.
    let docspace = start().await;
    let reply = save_keys(&docspace, Auth::Key(ADMIN_KEY), &google("a", "b")).await;
    assert_eq!(reply.status, 404);
    let reply = get_page(&docspace, WORKSPACE_SETTINGS_PAGE, Auth::Key(ADMIN_KEY)).await;
    assert_eq!(reply.status, 404);
    assert!(docspace.posts().is_empty());
}

#[tokio::test]
async fn login_keeps_lockout_and_tfa_rules_in_workspace_envelopes() {
    let portal = ws_start().await;
    let reply = post(
        &portal,
        WORKSPACE_LOGIN_PATH,
        Auth::None,
        &json!({"userName": "tfa@example.com", "password": "s3cret"}),
    )
    .await;
    assert_eq!(reply.status, 201);
    let response = &reply.json()["response"];
    assert_eq!(response["tfa"], true);
    assert!(response.get("token").is_none());

    let bad = json!({"userName": "admin@example.com", "password": "wrong"});
    for _ in 0..5 {
        let reply = post(&portal, WORKSPACE_LOGIN_PATH, Auth::None, &bad).await;
        assert_eq!(reply.status, 401);
        let body = reply.json();
        assert_eq!(
            (body["status"].clone(), body["statusCode"].clone()),
            (json!(1), json!(401))
        );
        assert_eq!(body["error"]["message"], "User authentication failed");
        assert!(body["error"]["type"].is_string());
    }
    let good = json!({"userName": "admin@example.com", "password": "s3cret"});
    let reply = post(&portal, WORKSPACE_LOGIN_PATH, Auth::None, &good).await;
    assert_eq!(reply.status, 403);
    assert!(reply.json()["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Too many login attempts"));
    assert_eq!(portal.login_count(), 0);
    let reply = post_raw(
        &portal,
        WORKSPACE_LOGIN_PATH,
        Auth::None,
        "application/json",
        "{",
    )
    .await;
    assert_eq!(reply.status, 400);
    assert_eq!(reply.json()["statusCode"], 400);
}

#[tokio::test]
async fn faults_hit_the_ajax_call_and_the_page_not_the_login() {
    let portal = ws_start().await;
    portal.inject(Fault::new(FaultKind::Status(500)));
    let token = ws_login(&portal, "admin@example.com").await;
    let reply = save_keys(&portal, Auth::Token(&token), &google("a", "b")).await;
    assert_eq!(reply.status, 500);
    assert!(reply.headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    assert!(reply.text.contains("Runtime Error"));
    assert_eq!(
        get_page(&portal, WORKSPACE_SETTINGS_PAGE, Auth::Token(&token))
            .await
            .status,
        500
    );
    // Before authentication too.
    assert_eq!(
        get_page(&portal, WORKSPACE_SETTINGS_PAGE, Auth::None)
            .await
            .status,
        500
    );
    assert_eq!(portal.value("Google", "googleClientId").unwrap(), "");
    portal.clear_faults();

    portal.inject(Fault::once(FaultKind::Garbage).with_method("GET"));
    portal.inject(
        Fault::once(FaultKind::RateLimited {
            retry_after_secs: 3,
        })
        .with_method("POST"),
    );
    let reply = get_page(&portal, WORKSPACE_SETTINGS_PAGE, Auth::Token(&token)).await;
    assert_eq!(
        (reply.status, reply.text.as_str()),
        (200, "<html>oops</html>")
    );
    let reply = save_keys(&portal, Auth::Token(&token), &google("a", "b")).await;
    assert_eq!(reply.status, 429);
    assert_eq!(reply.headers["retry-after"], "3");
    let reply = save_keys(&portal, Auth::Token(&token), &google("a", "b")).await;
    assert_eq!(ajax_value(&reply), true);
    assert_eq!(portal.posts().len(), 3, "faulted calls are recorded too");
}

#[tokio::test]
async fn bad_telegram_token_clears_the_service() {
    let portal = ws_start().await;
    let token = ws_login(&portal, "admin@example.com").await;
    portal.set_value("Telegram", "telegramBotToken", VALID_BOT_TOKEN);
    portal.set_value("Telegram", "telegramBotName", "acme_bot");
    let body = json!({"name": "Telegram", "props": [
        {"Name": "telegramBotToken", "Value": "not-a-token"},
        {"Name": "telegramBotName", "Value": "acme_bot"}
    ]});
    let reply = save_keys(&portal, Auth::Token(&token), &body).await;
    assert_eq!(
        ajax_error(&reply),
        ("Bad keys".to_owned(), "System.ArgumentException".to_owned())
    );
    assert_eq!(portal.value("Telegram", "telegramBotToken").unwrap(), "");
    assert_eq!(portal.value("Telegram", "telegramBotName").unwrap(), "");
}

#[tokio::test]
async fn paid_and_fixed_services() {
    let mut cfg = ws_config();
    cfg.paid_allowed = false;
    let google_spec = cfg
        .services
        .iter_mut()
        .find(|s| s.name == "Google")
        .unwrap();
    google_spec.can_set = false;
    google_spec.props[0].1 = "from-config".into();
    let portal = PortalDouble::start(cfg).await.unwrap();
    let token = ws_login(&portal, "admin@example.com").await;

    let body = json!({"name": "S3", "props": [
        {"Name": "acesskey", "Value": "a"}, {"Name": "secretaccesskey", "Value": "b"}
    ]});
    assert_eq!(
        ajax_error(&save_keys(&portal, Auth::Token(&token), &body).await),
        (
            "Your pricing plan does not support this option".to_owned(),
            "ASC.Core.Billing.BillingException".to_owned()
        )
    );
    assert_eq!(portal.value("S3", "acesskey").unwrap(), "");

    assert_eq!(
        ajax_error(&save_keys(&portal, Auth::Token(&token), &google("a", "b")).await).0,
        "Access denied"
    );
    assert_eq!(
        portal.value("Google", "googleClientId").unwrap(),
        "from-config"
    );
    let page = get_page(&portal, WORKSPACE_SETTINGS_PAGE, Auth::Token(&token)).await;
    assert!(page.text.contains(
        "<div class=\"auth-service-item\" data-service=\"Google\" data-can-set=\"false\">\n\
         <span class=\"auth-service-title\">Google</span>\n</div>\n"
    ));
    assert!(!page.text.contains("from-config"));
}

#[tokio::test]
async fn configs_for_workspace() {
    // The DocSpace catalogue left at its default becomes the Workspace one.
    let cfg = DoubleConfig {
        flavor: Flavor::Workspace,
        ..DoubleConfig::default()
    };
    let portal = PortalDouble::start(cfg).await.unwrap();
    assert_eq!(portal.value("Google", "googleClientId").unwrap(), "");
    assert_eq!(portal.value("google", "googleClientId"), None);

    let cfg = DoubleConfig::workspace();
    assert_eq!(cfg.flavor, Flavor::Workspace);
    assert!(cfg.api_keys.is_empty());
    assert_eq!(cfg.services, portal_double::workspace_catalogue());

    // A custom catalogue is kept as given.
    let cfg = DoubleConfig {
        flavor: Flavor::Workspace,
        services: vec![portal_double::ServiceSpec::new(
            "Bitly",
            "Bitly",
            &["bitlyToken"],
        )],
        ..DoubleConfig::default()
    };
    let portal = PortalDouble::start(cfg).await.unwrap();
    assert_eq!(portal.values("Bitly").len(), 1);
    assert!(portal.values("Google").is_empty());
}
