//! What only a Workspace (Community Server v12) double answers (authservice-api.md §6): its
//! API envelope, the settings page that is the only way to read the keys back, its redirects
//! and the error page an injected `Status` fault shows.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Value};

use crate::catalogue::prop_title;
use crate::config::ServiceSpec;
use crate::envelope::ApiError;

/// The `type` query value of `Management.aspx` that shows the authorization keys.
pub(crate) const AUTH_KEYS_PAGE_TYPE: &str = "10";
/// Where an unauthenticated visitor of a page is sent.
const LOGIN_PAGE: &str = "/Auth.aspx";

/// Community Server's API success envelope. A POST (the login) answers 201 Created, in the HTTP
/// status and in `statusCode`.
pub(crate) fn api_success(status: StatusCode, response: Value) -> Response {
    let count = crate::envelope::count_of(&response);
    let body = json!({
        "count": count,
        "startIndex": 0,
        "status": 0,
        "statusCode": status.as_u16(),
        "response": response,
    });
    with_type(
        (status, body.to_string()).into_response(),
        "application/json; charset=utf-8",
    )
}

/// Community Server's API error envelope:
/// `{"count": 0, "startIndex": 0, "status": 1, "statusCode": N, "error": {"message", "type",
/// "stack"}}` with HTTP status N.
pub(crate) fn api_error(error: &ApiError) -> Response {
    let code = StatusCode::from_u16(error.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({
        "count": 0,
        "startIndex": 0,
        "status": 1,
        "statusCode": code.as_u16(),
        "error": {
            "message": error.message,
            "type": error.exception,
            "stack": "",
        },
    });
    with_type(
        (code, body.to_string()).into_response(),
        "application/json; charset=utf-8",
    )
}

/// 302 to the login page, carrying the page asked for as `refererurl` (as
/// `Response.Redirect` with `HttpUtility.UrlEncode` writes it: lower-case hex).
pub(crate) fn redirect_to_login(path_and_query: &str) -> Response {
    let location = format!("{LOGIN_PAGE}?refererurl={}", url_encode(path_and_query));
    redirect(&location)
}

/// 302 to `location` with ASP.NET's "Object moved" body.
pub(crate) fn redirect(location: &str) -> Response {
    let body = format!(
        "<html><head><title>Object moved</title></head><body>\r\n\
         <h2>Object moved to <a href=\"{}\">here</a>.</h2>\r\n</body></html>\r\n",
        html_escape(location)
    );
    let mut response = with_type(
        (StatusCode::FOUND, body).into_response(),
        "text/html; charset=utf-8",
    );
    if let Ok(value) = HeaderValue::from_str(location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    response
}

/// What an injected `Status(code)` fault answers on Workspace: ASP.NET's error page (HTML), or
/// an empty body for 401.
pub(crate) fn fault_page(status: u16) -> Response {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if code == StatusCode::UNAUTHORIZED {
        return code.into_response();
    }
    let reason = code.canonical_reason().unwrap_or("Error");
    let body = format!(
        "<!DOCTYPE html>\n<html>\n<head>\n<title>Runtime Error</title>\n</head>\n<body>\n\
         <h1>Server Error in '/' Application.</h1>\n<h2><i>{} {reason}</i></h2>\n</body>\n</html>\n",
        code.as_u16()
    );
    with_type((code, body).into_response(), "text/html; charset=utf-8")
}

/// 200 with `Management.aspx`'s HTML. `auth_keys` selects the authorization-keys page
/// (`?type=10`); otherwise the page shows some other settings section and no keys.
///
/// The format (one element per line, attributes always in this order, every attribute value
/// escaped by [`html_escape`]):
///
/// ```text
/// <div id="authKeysContainer" class="auth-service-list">
/// <div class="auth-service-item" data-service="Google" data-can-set="true">
/// <span class="auth-service-title">Google</span>
/// <label for="googleClientId">Google Client ID</label>
/// <input type="text" class="textEdit" id="googleClientId" value="…" />
/// …
/// </div>
/// …
/// </div>
/// ```
///
/// An item has no nested `div`; a service whose keys are fixed in the server's config file
/// (`data-can-set="false"`) has no inputs. Outside the container the page has other inputs
/// (a search box with class `textEdit`, a hidden `__VIEWSTATE`) that a client must ignore.
pub(crate) fn settings_page(services: &[ServiceSpec], auth_keys: bool) -> Response {
    let mut html = String::from(
        "<!DOCTYPE html>\n<html>\n<head>\n<meta charset=\"utf-8\" />\n\
         <title>Settings - ONLYOFFICE</title>\n</head>\n<body>\n<div id=\"studioPageContent\">\n\
         <input type=\"text\" class=\"textEdit\" id=\"studioSearch\" value=\"\" />\n",
    );
    if auth_keys {
        html.push_str("<div id=\"authKeysContainer\" class=\"auth-service-list\">\n");
        for service in services {
            push_service(&mut html, service);
        }
        html.push_str("</div>\n");
    } else {
        html.push_str("<div id=\"settingsContainer\" class=\"settings-block\">\n</div>\n");
    }
    html.push_str(
        "<input type=\"hidden\" id=\"__VIEWSTATE\" value=\"/wEPDwUKLTM2NDkxNjYzMmRk\" />\n\
         </div>\n</body>\n</html>\n",
    );
    with_type(
        (StatusCode::OK, html).into_response(),
        "text/html; charset=utf-8",
    )
}

fn push_service(html: &mut String, service: &ServiceSpec) {
    html.push_str(&format!(
        "<div class=\"auth-service-item\" data-service=\"{}\" data-can-set=\"{}\">\n",
        html_escape(&service.name),
        service.can_set
    ));
    html.push_str(&format!(
        "<span class=\"auth-service-title\">{}</span>\n",
        html_escape(&service.title)
    ));
    if service.can_set {
        for (prop, value) in &service.props {
            let id = html_escape(prop);
            html.push_str(&format!(
                "<label for=\"{id}\">{}</label>\n",
                html_escape(&prop_title(prop))
            ));
            html.push_str(&format!(
                "<input type=\"text\" class=\"textEdit\" id=\"{id}\" value=\"{}\" />\n",
                html_escape(value)
            ));
        }
    }
    html.push_str("</div>\n");
}

/// Escapes text for an HTML attribute value or element content: `&` `<` `>` `"` `'` become
/// `&amp;` `&lt;` `&gt;` `&quot;` `&#39;`, and line breaks and tabs become `&#10;` `&#13;`
/// `&#9;` (so that every input stays on one line). Nothing else is escaped (the page is UTF-8).
pub(crate) fn html_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' => out.push_str("&#10;"),
            '\r' => out.push_str("&#13;"),
            '\t' => out.push_str("&#9;"),
            c => out.push(c),
        }
    }
    out
}

/// `HttpUtility.UrlEncode`: unreserved characters kept, space as `+`, the rest `%xx` in lower
/// case.
fn url_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        match b {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'-'
            | b'_'
            | b'.'
            | b'!'
            | b'*'
            | b'('
            | b')' => out.push(b as char),
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02x}")),
        }
    }
    out
}

/// Whether a query string asks for `type=10` (key matched case-insensitively, as ASP.NET's
/// `Request.QueryString` does).
pub(crate) fn is_auth_keys_query(query: Option<&str>) -> bool {
    query
        .unwrap_or("")
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .filter(|(key, _)| key.eq_ignore_ascii_case("type"))
        .map(|(_, value)| value)
        .next_back()
        == Some(AUTH_KEYS_PAGE_TYPE)
}

fn with_type(mut response: Response, content_type: &'static str) -> Response {
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_quotes_and_line_breaks() {
        assert_eq!(
            html_escape("a&b<c>\"d\" 'e'\r\n\tf é"),
            "a&amp;b&lt;c&gt;&quot;d&quot; &#39;e&#39;&#13;&#10;&#9;f é"
        );
    }

    #[test]
    fn url_encodes_like_httputility() {
        assert_eq!(
            url_encode("/Management.aspx?type=10"),
            "%2fManagement.aspx%3ftype%3d10"
        );
        assert_eq!(url_encode("a b"), "a+b");
    }

    #[test]
    fn type_10_selects_the_auth_keys_page() {
        assert!(is_auth_keys_query(Some("type=10")));
        assert!(is_auth_keys_query(Some("x=1&TYPE=10")));
        assert!(!is_auth_keys_query(Some("type=1")));
        assert!(!is_auth_keys_query(Some("type=100")));
        assert!(!is_auth_keys_query(None));
    }
}
