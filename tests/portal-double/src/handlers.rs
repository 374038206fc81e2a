//! Routing and the endpoints. Every request goes through [`dispatch`], which records it, reads
//! its body within the size limit, applies injected faults and routes it by hand, so that even
//! rejected and unknown requests are recorded with the status they got.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;

use crate::auth::{Credential, Principal};
use crate::dto::{parse_json, AuthServiceRequest, BindError, LoginRequest};
use crate::envelope::{self, ApiError, RequestInfo};
use crate::faults::FaultKind;
use crate::record::RecordedRequest;
use crate::state::Shared;

/// Request bodies above this get 413 (the portal's proxy and Kestrel both cap bodies).
const MAX_BODY: usize = 1024 * 1024;

/// The app: one fallback handler that routes by hand.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(dispatch).with_state(shared)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Authentication,
    AuthService,
    Unknown,
}

impl Route {
    /// ASP.NET routing ignores letter case and a trailing slash.
    fn of(path: &str) -> Route {
        let path = path.strip_suffix('/').unwrap_or(path).to_ascii_lowercase();
        match path.as_str() {
            "/api/2.0/authentication" | "/api/2.0/authentication.json" => Route::Authentication,
            "/api/2.0/settings/authservice" => Route::AuthService,
            _ => Route::Unknown,
        }
    }
}

async fn dispatch(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let info = RequestInfo {
        url: request_url(&parts.headers, &parts.uri),
        method: parts.method.as_str().to_owned(),
    };
    let credential = Credential::from_headers(&parts.headers);
    let (auth, _) = shared.lock().accounts.authenticate(&credential);
    let body = axum::body::to_bytes(body, MAX_BODY).await;
    let recorded_body = body
        .as_ref()
        .ok()
        .and_then(|bytes| serde_json::from_slice::<Value>(bytes).ok());
    let id = shared.lock().log.start(RecordedRequest {
        method: info.method.clone(),
        path: parts.uri.path().to_owned(),
        status: 0,
        body: recorded_body,
        auth,
    });

    let response = match body {
        // Over the limit (or the client went away while sending it).
        Err(_) => envelope::empty(StatusCode::PAYLOAD_TOO_LARGE),
        Ok(bytes) => {
            let call = Call {
                shared: &shared,
                method: &parts.method,
                headers: &parts.headers,
                credential: &credential,
                body: &bytes,
                info: &info,
            };
            call.handle(Route::of(parts.uri.path())).await
        }
    };
    shared.lock().log.finish(id, response.status().as_u16());
    response
}

/// The full URL the client addressed, for the envelope's `links`.
fn request_url(headers: &HeaderMap, uri: &axum::http::Uri) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    format!("http://{host}{path}")
}

/// Why a request body could not be bound.
enum BodyError {
    NotJson,
    Invalid(BindError),
}

/// One request being handled.
struct Call<'a> {
    shared: &'a Shared,
    method: &'a Method,
    headers: &'a HeaderMap,
    credential: &'a Credential,
    body: &'a [u8],
    info: &'a RequestInfo,
}

impl Call<'_> {
    async fn handle(&self, route: Route) -> Response {
        if route == Route::Unknown {
            return envelope::empty(StatusCode::NOT_FOUND);
        }
        if route == Route::AuthService {
            let fault = self.shared.lock().faults.take(self.method.as_str());
            if let Some(kind) = fault {
                match kind {
                    FaultKind::Delay(duration) => tokio::time::sleep(duration).await,
                    FaultKind::Status(status) => return ApiError::fault_response(status),
                    FaultKind::RateLimited { retry_after_secs } => {
                        return rate_limited(retry_after_secs)
                    }
                    FaultKind::Garbage => return garbage(),
                    FaultKind::Hang => return std::future::pending().await,
                }
            }
        }
        match (route, self.method) {
            (Route::Authentication, &Method::POST) => self.login(),
            (Route::AuthService, &Method::GET) => self.list_services(),
            (Route::AuthService, &Method::POST) => self.save_service(),
            _ => envelope::empty(StatusCode::METHOD_NOT_ALLOWED),
        }
    }

    /// The caller's identity, checked now rather than on arrival: a token may expire while a
    /// delayed request waits.
    fn principal(&self) -> Option<Principal> {
        self.shared.lock().accounts.authenticate(self.credential).1
    }

    /// Reads a JSON body as ASP.NET's `[FromBody]` binding does.
    fn bind<T>(&self, bind: impl FnOnce(&Value) -> Result<T, BindError>) -> Result<T, BodyError> {
        if !has_json_content_type(self.headers) {
            return Err(BodyError::NotJson);
        }
        parse_json(self.body)
            .and_then(|value| bind(&value))
            .map_err(BodyError::Invalid)
    }

    /// 415 unless the content type is JSON, 400 (validation envelope) if the body does not
    /// parse or bind.
    fn reject(&self, error: BodyError) -> Response {
        match error {
            BodyError::NotJson => envelope::empty(StatusCode::UNSUPPORTED_MEDIA_TYPE),
            BodyError::Invalid(e) => envelope::validation_failure(self.info, &e.key, &e.message),
        }
    }

    fn login(&self) -> Response {
        let request = match self.bind(LoginRequest::bind) {
            Ok(request) => request,
            Err(error) => return self.reject(error),
        };
        let result = self.shared.lock().accounts.login(
            request.user_name.as_deref().unwrap_or(""),
            request.password.as_deref().unwrap_or(""),
        );
        match result {
            Ok(value) => envelope::success(self.info, value),
            Err(e) => e.into_response(),
        }
    }

    fn list_services(&self) -> Response {
        let Some(principal) = self.principal() else {
            return envelope::empty(StatusCode::UNAUTHORIZED);
        };
        let result = self.shared.lock().services.list(principal);
        match result {
            Ok(value) => envelope::success(self.info, value),
            Err(e) => e.into_response(),
        }
    }

    fn save_service(&self) -> Response {
        let Some(principal) = self.principal() else {
            return envelope::empty(StatusCode::UNAUTHORIZED);
        };
        let request = match self.bind(AuthServiceRequest::bind) {
            Ok(request) => request,
            Err(error) => return self.reject(error),
        };
        let result = self.shared.lock().services.save(principal, &request);
        match result {
            Ok(changed) => envelope::success(self.info, Value::Bool(changed)),
            Err(e) => e.into_response(),
        }
    }
}

/// `application/json`, `text/json` or `application/*+json`, as ASP.NET's JSON input
/// formatter accepts.
fn has_json_content_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/json"
        || essence == "text/json"
        || (essence.starts_with("application/") && essence.ends_with("+json"))
}

fn rate_limited(retry_after_secs: u64) -> Response {
    let mut response = envelope::empty(StatusCode::TOO_MANY_REQUESTS);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

fn garbage() -> Response {
    let mut response = (StatusCode::OK, Body::from("<html>oops</html>")).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_ignore_case_and_trailing_slash() {
        assert_eq!(
            Route::of("/api/2.0/settings/authservice"),
            Route::AuthService
        );
        assert_eq!(
            Route::of("/API/2.0/Settings/AuthService/"),
            Route::AuthService
        );
        assert_eq!(
            Route::of("/api/2.0/authentication.json"),
            Route::Authentication
        );
        assert_eq!(Route::of("/api/2.0/authentication"), Route::Authentication);
        assert_eq!(Route::of("/"), Route::Unknown);
        assert_eq!(Route::of("/api/2.0/settings/authservice/x"), Route::Unknown);
    }

    #[test]
    fn json_content_types() {
        let mut headers = HeaderMap::new();
        assert!(!has_json_content_type(&headers));
        for (value, ok) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("Text/JSON", true),
            ("application/problem+json", true),
            ("text/plain", false),
        ] {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(value));
            assert_eq!(has_json_content_type(&headers), ok, "{value}");
        }
    }
}
