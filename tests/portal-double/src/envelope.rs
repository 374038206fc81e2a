//! The portal's response envelopes (authservice-api.md §1).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::lang::{Language, Text};

/// What the envelope's `links` entry needs to know about the request.
#[derive(Debug, Clone)]
pub(crate) struct RequestInfo {
    /// The full request URL as the client addressed it.
    pub url: String,
    pub method: String,
}

/// `count` as the portal computes it: the list length, 1 for any other non-null value
/// (including `false`), 0 for null.
pub(crate) fn count_of(value: &Value) -> usize {
    match value {
        Value::Array(items) => items.len(),
        Value::Null => 0,
        _ => 1,
    }
}

fn links(info: &RequestInfo) -> Value {
    json!([{ "href": info.url, "action": info.method }])
}

/// 200 with `{"response", "count", "links", "status": 0, "statusCode": 200}`.
pub(crate) fn success(info: &RequestInfo, response: Value) -> Response {
    let body = json!({
        "count": count_of(&response),
        "response": response,
        "links": links(info),
        "status": 0,
        "statusCode": 200,
    });
    json_response(StatusCode::OK, &body)
}

/// A body the portal's JSON binding could not read, or a model that failed validation (a value
/// too long). ASP.NET's validation problem is wrapped in the *success* envelope but with
/// `status: 1` and `statusCode: 400`, so a client must look at the HTTP status before the body's
/// shape.
pub(crate) fn validation_failure(info: &RequestInfo, key: &str, message: &str) -> Response {
    let problem = json!({
        "type": "https://tools.ietf.org/html/rfc9110#section-15.5.1",
        "title": "One or more validation errors occurred.",
        "status": 400,
        "errors": { key: [message] },
    });
    let body = json!({
        "count": count_of(&problem),
        "response": problem,
        "links": links(info),
        "status": 1,
        "statusCode": 400,
    });
    json_response(StatusCode::BAD_REQUEST, &body)
}

/// A failure the portal reports with its error envelope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub status: u16,
    pub message: String,
    /// The .NET exception type the portal names.
    pub exception: &'static str,
    pub hresult: i32,
}

/// Fixed English in every language.
const ACCESS_DENIED: &str = "Access denied";

// .NET HResults of the exception types used below.
const COR_E_ARGUMENT: i32 = -2147024809;
const COR_E_ARGUMENTNULL: i32 = -2147467261;
const COR_E_NOTSUPPORTED: i32 = -2146233067;
const COR_E_SECURITY: i32 = -2146233078;
const COR_E_EXCEPTION: i32 = -2146233088;
const COR_E_SYSTEM: i32 = -2146233087;

impl ApiError {
    /// 400 for a bad argument.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError {
            status: 400,
            message: message.into(),
            exception: "System.ArgumentException",
            hresult: COR_E_ARGUMENT,
        }
    }

    /// 400 `Bad keys`, localized: an enforced key check failed (the service has been cleared).
    pub fn bad_keys(language: Language) -> ApiError {
        ApiError::bad_request(language.text(Text::BadKeys))
    }

    /// 400: the POST had no `props` (or `null`).
    pub fn props_null(language: Language) -> ApiError {
        ApiError {
            status: 400,
            message: language.props_null(),
            exception: "System.ArgumentNullException",
            hresult: COR_E_ARGUMENTNULL,
        }
    }

    /// 415 before v3.6: clearing a service that is unknown or whose keys are fixed in the
    /// server's config file (`Consumer.Clear()` throws; the unknown service's consumer has no
    /// name). Fixed English, not a resource text.
    pub fn read_only_consumer(name: &str) -> ApiError {
        ApiError {
            status: 415,
            message: format!("Key for read only. Consumer {name}"),
            exception: "System.NotSupportedException",
            hresult: COR_E_NOTSUPPORTED,
        }
    }

    /// 415 before v3.6: changing a prop of a service whose keys are fixed in the server's
    /// config file (`Consumer`'s setter throws). Fixed English.
    pub fn read_only_key(prop: &str) -> ApiError {
        ApiError {
            message: format!("Key for read only. Key {prop}"),
            ..ApiError::read_only_consumer("")
        }
    }

    /// 403 `Access denied`: no permission, unknown service, service not settable.
    pub fn access_denied() -> ApiError {
        ApiError {
            status: 403,
            message: ACCESS_DENIED.to_owned(),
            exception: "System.Security.SecurityException",
            hresult: COR_E_SECURITY,
        }
    }

    /// 402, localized: a paid service on a plan without third-party services, or the setting
    /// hidden by the operator.
    pub fn payment_required(language: Language) -> ApiError {
        ApiError {
            status: 402,
            message: language.text(Text::PlanRestricted).to_owned(),
            exception: "ASC.Core.Billing.BillingException",
            hresult: COR_E_EXCEPTION,
        }
    }

    /// A login failure (401 wrong credentials, 403 locked out).
    pub fn authentication(status: u16, message: &str) -> ApiError {
        ApiError {
            status,
            message: message.to_owned(),
            exception: "System.Security.Authentication.AuthenticationException",
            hresult: COR_E_SYSTEM,
        }
    }

    /// What an injected `Status(code)` fault answers: the portal's error envelope with its own
    /// (localized) message where it has one, else the status's reason phrase (500 →
    /// `Internal error`); 401 is empty, as for any request the portal does not authenticate.
    pub fn fault_response(status: u16, language: Language) -> Response {
        if status == 401 {
            return empty(StatusCode::UNAUTHORIZED);
        }
        ApiError::for_status(status, language).into_response()
    }

    fn for_status(status: u16, language: Language) -> ApiError {
        match status {
            400 => ApiError::bad_request("Bad request"),
            402 => ApiError::payment_required(language),
            403 => ApiError::access_denied(),
            _ => {
                let message = match status {
                    500 => "Internal error".to_owned(),
                    _ => StatusCode::from_u16(status)
                        .ok()
                        .and_then(|s| s.canonical_reason())
                        .unwrap_or("Error")
                        .to_owned(),
                };
                ApiError {
                    status,
                    message,
                    exception: "System.Exception",
                    hresult: COR_E_EXCEPTION,
                }
            }
        }
    }

    pub fn into_response(self) -> Response {
        error(self.status, &self.message, self.exception, self.hresult)
    }
}

/// `{"error": {"message", "type", "stack", "hresult"}, "status": 1, "statusCode": N}` with
/// HTTP status N. (A request that is not authenticated gets an empty 401 instead, see
/// [`empty`]; only a failed login answers 401 with this envelope.)
pub(crate) fn error(status: u16, message: &str, exception: &str, hresult: i32) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({
        "error": {
            "message": message,
            "type": exception,
            "stack": "",
            "hresult": hresult,
        },
        "status": 1,
        "statusCode": code.as_u16(),
    });
    json_response(code, &body)
}

/// A response with a status and no body (401, 404, 405, 413, 415, 429; 402 and 403 from the
/// portal's filters).
pub(crate) fn empty(status: StatusCode) -> Response {
    status.into_response()
}

/// A status whose body is a bare JSON string (the IP-restriction 403).
pub(crate) fn json_string(status: StatusCode, text: &str) -> Response {
    json_response(status, &Value::String(text.to_owned()))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_follows_the_portal_rule() {
        assert_eq!(count_of(&json!([1, 2, 3])), 3);
        assert_eq!(count_of(&json!([])), 0);
        assert_eq!(count_of(&json!(false)), 1);
        assert_eq!(count_of(&json!({"a": 1})), 1);
        assert_eq!(count_of(&Value::Null), 0);
    }
}
