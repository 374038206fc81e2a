//! Workspace's AjaxPro transport (authservice-api.md §6): every answer is HTTP 200 with
//! `{"value": …}` or, for any failure, `{"error": {"Message": "…", "Type": "<.NET exception>"}}`
//! (AjaxPro's exception serialisation without debug mode, which would add `Stack`,
//! `TargetSite` and `Source`), with AjaxPro's content type `text/plain; charset=utf-8`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::lang::{Language, Text};

/// The header AjaxPro reads the method name from.
pub(crate) const METHOD_HEADER: &str = "x-ajaxpro-method";
/// The only method of the `AuthorizationKeys` control the double implements.
pub(crate) const SAVE_AUTH_KEYS: &str = "SaveAuthKeys";

pub(crate) const UNAUTHORIZED_MESSAGE: &str = "Attempted to perform an unauthorized operation.";
/// Fixed English in every language.
pub(crate) const ACCESS_DENIED: &str = "Access denied";

/// An exception an AjaxPro method threw, answered in-band.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AjaxError {
    pub message: String,
    /// The .NET exception's full type name.
    pub exception: &'static str,
}

impl AjaxError {
    pub fn new(message: impl Into<String>, exception: &'static str) -> AjaxError {
        AjaxError {
            message: message.into(),
            exception,
        }
    }

    /// No valid login token: AjaxPro's method-permission check throws before the method runs.
    pub fn unauthorized() -> AjaxError {
        AjaxError::new(UNAUTHORIZED_MESSAGE, "System.UnauthorizedAccessException")
    }

    /// Not an admin, or the service's keys are fixed in the server's config file.
    pub fn access_denied() -> AjaxError {
        AjaxError::new(ACCESS_DENIED, "System.Security.SecurityException")
    }

    /// The `X-AjaxPro-Method` header is missing or names no method of the control.
    pub fn unknown_method(method: &str) -> AjaxError {
        AjaxError::new(
            format!("The method '{method}' does not exist."),
            "System.MissingMethodException",
        )
    }

    /// The service name matches no service (exact, case-sensitive).
    pub fn unknown_service(name: &str) -> AjaxError {
        AjaxError::new(
            format!("Unknown service '{name}'"),
            "System.ArgumentException",
        )
    }

    pub fn payment_required(language: Language) -> AjaxError {
        AjaxError::new(
            language.text(Text::PlanRestricted),
            "ASC.Core.Billing.BillingException",
        )
    }

    /// `props` is missing or null (.NET Framework's message format, localized).
    pub fn props_null(language: Language) -> AjaxError {
        AjaxError::new(
            language.props_null_framework(),
            "System.ArgumentNullException",
        )
    }

    /// Some props of the service are empty while others are not.
    pub fn fill_all_fields(language: Language) -> AjaxError {
        AjaxError::new(
            language.text(Text::FillAllFields),
            "System.ArgumentException",
        )
    }

    /// The third party rejected the keys; the service has been cleared.
    pub fn bad_keys(language: Language) -> AjaxError {
        AjaxError::new(language.text(Text::BadKeys), "System.ArgumentException")
    }

    /// A body AjaxPro could not deserialise into the method's parameters.
    pub fn bad_body(message: impl Into<String>) -> AjaxError {
        AjaxError::new(message, "System.ArgumentException")
    }
}

/// 200 `{"value": …}`.
pub(crate) fn value(value: Value) -> Response {
    text_plain(json!({ "value": value }))
}

/// 200 `{"error": {"Message", "Type"}}`.
pub(crate) fn error(error: AjaxError) -> Response {
    text_plain(json!({
        "error": { "Message": error.message, "Type": error.exception }
    }))
}

fn text_plain(body: Value) -> Response {
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}
