//! Helpers for talking to a double over real HTTP.

#![allow(dead_code)] // each test binary uses a different subset

use portal_double::{ApiKey, DoubleConfig, PortalDouble, User};
use reqwest::header::HeaderMap;
use serde_json::Value;

pub const AUTHSERVICE: &str = "/api/2.0/settings/authservice";
pub const LOGIN: &str = "/api/2.0/authentication";
pub const ADMIN_KEY: &str = "sk-test-admin";
pub const READ_KEY: &str = "sk-read";
pub const USER_KEY: &str = "sk-user";

/// A config with an admin write key, an admin read-only key, a non-admin key and three users.
pub fn config() -> DoubleConfig {
    let mut cfg = DoubleConfig::default();
    cfg.api_keys.push(ApiKey {
        key: READ_KEY.into(),
        write: false,
        admin: true,
    });
    cfg.api_keys.push(ApiKey {
        key: USER_KEY.into(),
        write: true,
        admin: false,
    });
    cfg.users = vec![
        User {
            email: "admin@example.com".into(),
            password: "s3cret".into(),
            admin: true,
            tfa: false,
        },
        User {
            email: "tfa@example.com".into(),
            password: "s3cret".into(),
            admin: true,
            tfa: true,
        },
        User {
            email: "user@example.com".into(),
            password: "s3cret".into(),
            admin: false,
            tfa: false,
        },
    ];
    cfg
}

pub async fn start() -> PortalDouble {
    PortalDouble::start(config()).await.unwrap()
}

/// How a request authenticates.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    None,
    Key(&'a str),
    Token(&'a str),
    Cookie(&'a str),
}

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?}", self.text))
    }

    /// The `response` of a success envelope, after checking the envelope.
    pub fn response(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.text);
        let body = self.json();
        assert_eq!(body["status"], 0);
        assert_eq!(body["statusCode"], 200);
        body["response"].clone()
    }

    /// The message of an error envelope, after checking the envelope.
    pub fn error_message(&self, status: u16) -> String {
        assert_eq!(self.status, status, "{}", self.text);
        let body = self.json();
        assert_eq!(body["status"], 1);
        assert_eq!(body["statusCode"], status);
        assert!(body["error"]["type"].is_string());
        assert!(body["error"]["hresult"].is_i64());
        assert!(body["error"]["stack"].is_string());
        body["error"]["message"].as_str().unwrap().to_owned()
    }
}

impl Reply {
    /// The `response.errors` of the 400 validation problem, which comes in the SUCCESS envelope
    /// with `status: 1, statusCode: 400` (authservice-api.md §1), after checking that shape.
    pub fn validation_errors(&self) -> Value {
        assert_eq!(self.status, 400, "{}", self.text);
        let body = self.json();
        assert_eq!(body["status"], 1, "{body}");
        assert_eq!(body["statusCode"], 400, "{body}");
        assert_eq!(body["count"], 1, "{body}");
        assert!(body["links"].is_array(), "{body}");
        assert!(body.get("error").is_none(), "{body}");
        assert_eq!(body["response"]["status"], 400, "{body}");
        let errors = body["response"]["errors"].clone();
        assert!(errors.is_object(), "{body}");
        errors
    }

    /// Asserts an empty body with this status.
    pub fn assert_empty(&self, status: u16) {
        assert_eq!(
            (self.status, self.text.as_str()),
            (status, ""),
            "expected an empty {status}"
        );
    }
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .unwrap()
}

fn with_auth(request: reqwest::RequestBuilder, auth: Auth<'_>) -> reqwest::RequestBuilder {
    match auth {
        Auth::None => request,
        Auth::Key(key) => request.header("Authorization", format!("Bearer {key}")),
        Auth::Token(token) => request.header("Authorization", token),
        Auth::Cookie(token) => request.header("Cookie", format!("asc_auth_key={token}")),
    }
}

async fn reply(request: reqwest::RequestBuilder) -> Reply {
    let response = request.send().await.unwrap();
    Reply {
        status: response.status().as_u16(),
        headers: response.headers().clone(),
        text: response.text().await.unwrap(),
    }
}

pub async fn get(portal: &PortalDouble, path: &str, auth: Auth<'_>) -> Reply {
    reply(with_auth(
        client().get(format!("{}{path}", portal.url())),
        auth,
    ))
    .await
}

pub async fn post(portal: &PortalDouble, path: &str, auth: Auth<'_>, body: &Value) -> Reply {
    reply(with_auth(client().post(format!("{}{path}", portal.url())), auth).json(body)).await
}

/// A POST with a raw body and content type.
pub async fn post_raw(
    portal: &PortalDouble,
    path: &str,
    auth: Auth<'_>,
    content_type: &str,
    body: impl Into<reqwest::Body>,
) -> Reply {
    let request = client()
        .post(format!("{}{path}", portal.url()))
        .header("Content-Type", content_type)
        .body(body);
    reply(with_auth(request, auth)).await
}

/// `GET settings/authservice` as the admin key: the services array.
pub async fn services(portal: &PortalDouble) -> Vec<Value> {
    get(portal, AUTHSERVICE, Auth::Key(ADMIN_KEY))
        .await
        .response()
        .as_array()
        .unwrap()
        .clone()
}

/// `POST settings/authservice` as the admin key.
pub async fn save(portal: &PortalDouble, body: Value) -> Reply {
    post(portal, AUTHSERVICE, Auth::Key(ADMIN_KEY), &body).await
}

/// Logs in and returns the token.
pub async fn login(portal: &PortalDouble, email: &str) -> String {
    let body = serde_json::json!({"userName": email, "password": "s3cret"});
    let response = post(portal, LOGIN, Auth::None, &body).await.response();
    response["token"].as_str().unwrap().to_owned()
}

/// Workspace: logs in at `/api/2.0/authentication.json` and returns the token.
pub async fn ws_token(portal: &PortalDouble, email: &str) -> String {
    let body = serde_json::json!({"userName": email, "password": "s3cret"});
    let reply = post(
        portal,
        portal_double::WORKSPACE_LOGIN_PATH,
        Auth::None,
        &body,
    )
    .await;
    assert_eq!(reply.status, 201, "{}", reply.text);
    reply.json()["response"]["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Workspace: `SaveAuthKeys` with a login token, as AjaxPro's client sends it.
pub async fn ws_save(portal: &PortalDouble, token: &str, body: &Value) -> Reply {
    let request = client()
        .post(format!(
            "{}{}",
            portal.url(),
            portal_double::WORKSPACE_SAVE_PATH
        ))
        .header("Content-Type", "text/plain; charset=utf-8")
        .header("X-AjaxPro-Method", "SaveAuthKeys")
        .body(body.to_string());
    reply(with_auth(request, Auth::Token(token))).await
}

impl Reply {
    /// Workspace: the in-band `(Message, Type)` of an AjaxPro error (HTTP 200).
    pub fn ajax_error(&self) -> (String, String) {
        assert_eq!(self.status, 200, "{}", self.text);
        let body = self.json();
        assert!(body.get("value").is_none(), "{body}");
        (
            body["error"]["Message"].as_str().unwrap().to_owned(),
            body["error"]["Type"].as_str().unwrap().to_owned(),
        )
    }

    /// Workspace: the in-band `value` of an AjaxPro answer (HTTP 200, no error).
    pub fn ajax_value(&self) -> Value {
        assert_eq!(self.status, 200, "{}", self.text);
        let body = self.json();
        assert!(body.get("error").is_none(), "{body}");
        body["value"].clone()
    }
}
