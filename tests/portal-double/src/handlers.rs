//! Routing and the endpoints. Every request goes through [`dispatch`], which records it, reads
//! its body within the size limit, applies injected faults and routes it by hand, so that even
//! rejected and unknown requests are recorded with the status they got. Which endpoints exist
//! depends on the double's [`Flavor`].

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::Value;

use crate::ajaxpro::{self, AjaxError};
use crate::auth::{Credential, Principal};
use crate::config::{Flavor, PortalState};
use crate::dto::{parse_json, AuthServiceRequest, BindError, LoginRequest};
use crate::envelope::{self, ApiError, RequestInfo};
use crate::faults::FaultKind;
use crate::lang::Text;
use crate::record::RecordedRequest;
use crate::services::Check;
use crate::state::{Settings, Shared};
use crate::workspace;

/// Request bodies above this get 413 (the portal's proxy and Kestrel both cap bodies).
const MAX_BODY: usize = 1024 * 1024;

/// The app: one fallback handler that routes by hand.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new().fallback(dispatch).with_state(shared)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Route {
    Authentication,
    /// DocSpace's `/api/2.0/settings/authservice`.
    AuthService,
    /// Workspace's AjaxPro handler of the `AuthorizationKeys` control.
    AjaxAuthKeys,
    /// Workspace's `/Management.aspx` (the keys are on `?type=10`).
    ManagementPage,
    Unknown,
}

impl Route {
    /// ASP.NET routing (and IIS) ignores letter case and a trailing slash, and decodes
    /// percent-escapes (but not `%2F`) before matching.
    fn of(path: &str) -> Route {
        let path = decode_path(path);
        let path = path.strip_suffix('/').unwrap_or(&path).to_ascii_lowercase();
        match path.as_str() {
            "/api/2.0/authentication" | "/api/2.0/authentication.json" => Route::Authentication,
            "/api/2.0/settings/authservice" => Route::AuthService,
            p if p == crate::WORKSPACE_SAVE_PATH.to_ascii_lowercase() => Route::AjaxAuthKeys,
            "/management.aspx" => Route::ManagementPage,
            _ => Route::Unknown,
        }
    }

    /// The route as a portal of this flavor has it: each product lacks the other's endpoints.
    fn on(self, flavor: Flavor) -> Route {
        match (flavor, self) {
            (Flavor::DocSpace, Route::AjaxAuthKeys | Route::ManagementPage)
            | (Flavor::Workspace, Route::AuthService) => Route::Unknown,
            (_, route) => route,
        }
    }

    /// Whether injected faults apply: the authorization-keys endpoints, not the login.
    fn takes_faults(self) -> bool {
        matches!(
            self,
            Route::AuthService | Route::AjaxAuthKeys | Route::ManagementPage
        )
    }
}

/// Whether a recorded path is Workspace's `SaveAuthKeys` handler (as routing matches it).
pub(crate) fn is_ajax_auth_keys_path(path: &str) -> bool {
    Route::of(path) == Route::AjaxAuthKeys
}

/// Percent-decodes a path, leaving `%2F` (an encoded `/`) as it is.
fn decode_path(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                let byte = (hi * 16 + lo) as u8;
                if byte != b'/' {
                    out.push(byte);
                    i += 3;
                    continue;
                }
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn dispatch(State(shared): State<Arc<Shared>>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let info = RequestInfo {
        url: request_url(&parts.headers, &parts.uri),
        method: parts.method.as_str().to_owned(),
    };
    let credential = Credential::from_headers(&parts.headers);
    let (auth, _) = shared.lock().accounts.authenticate(&credential);
    let ajax_method = parts
        .headers
        .get(ajaxpro::METHOD_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
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
        ajax_method,
        // Stamped by the log.
        seq: 0,
        at: std::time::Instant::now(),
    });

    let response = match body {
        // Over the limit (or the client went away while sending it).
        Err(_) => envelope::empty(StatusCode::PAYLOAD_TOO_LARGE),
        Ok(bytes) => {
            let call = Call {
                shared: &shared,
                flavor: shared.flavor,
                method: &parts.method,
                uri: &parts.uri,
                headers: &parts.headers,
                credential: &credential,
                body: &bytes,
                info: &info,
            };
            call.handle(Route::of(parts.uri.path()).on(shared.flavor))
                .await
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
    flavor: Flavor,
    method: &'a Method,
    uri: &'a Uri,
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
        let mut check = Check::Normal;
        if route.takes_faults() {
            let fault = self.shared.lock().faults.take(self.method.as_str());
            if let Some(kind) = fault {
                let language = self.shared.settings().language;
                match kind {
                    FaultKind::Delay(duration) => tokio::time::sleep(duration).await,
                    FaultKind::Status(status) => {
                        return match self.flavor {
                            Flavor::DocSpace => ApiError::fault_response(status, language),
                            Flavor::Workspace => workspace::fault_page(status),
                        }
                    }
                    FaultKind::RateLimited { retry_after_secs } => {
                        return rate_limited(retry_after_secs)
                    }
                    FaultKind::Garbage => return garbage(),
                    FaultKind::Hang => return std::future::pending().await,
                    FaultKind::EmptyBody(status) => {
                        let status = StatusCode::from_u16(status)
                            .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                        return envelope::empty(status);
                    }
                    FaultKind::IpRestricted => {
                        return match self.flavor {
                            Flavor::DocSpace => ip_restricted(language),
                            Flavor::Workspace => workspace::fault_page(403),
                        }
                    }
                    FaultKind::Refuse => check = Check::Fail,
                }
            }
        }
        match (route, self.method) {
            (Route::Authentication, &Method::POST) => self.login(),
            (Route::AuthService, &Method::GET) => self.list_services(),
            (Route::AuthService, &Method::POST) => self.save_service(check),
            (Route::AjaxAuthKeys, &Method::POST) => self.save_auth_keys(check),
            (Route::ManagementPage, &Method::GET) => self.settings_page(),
            _ => envelope::empty(StatusCode::METHOD_NOT_ALLOWED),
        }
    }

    /// DocSpace's filters that run on an authenticated request before its body is read, in
    /// this order: the tenant's status (404 suspended, 403 moving/restoring/encrypting, empty
    /// bodies), the IP restriction (403, a bare JSON string) and the payment filter (402,
    /// empty). `None` when the request may go on.
    fn portal_filters(&self, settings: &Settings) -> Option<Response> {
        if let Some(response) = tenant_status(settings.portal_state) {
            return Some(response);
        }
        if settings.ip_restricted {
            return Some(ip_restricted(settings.language));
        }
        if !settings.tenant_paid {
            return Some(envelope::empty(StatusCode::PAYMENT_REQUIRED));
        }
        None
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

    /// `POST /api/2.0/authentication[.json]`, answered in the flavor's API envelope (Workspace:
    /// 201 Created).
    fn login(&self) -> Response {
        // The tenant-status filter runs for anonymous requests too; the login is exempt from
        // the payment filter and, being anonymous, from the IP filter.
        if self.flavor == Flavor::DocSpace {
            if let Some(response) = tenant_status(self.shared.settings().portal_state) {
                return response;
            }
        }
        let request = match self.bind(LoginRequest::bind) {
            Ok(request) => request,
            Err(BodyError::Invalid(e)) if self.flavor == Flavor::Workspace => {
                return workspace::api_error(&ApiError::bad_request(e.message))
            }
            Err(error) => return self.reject(error),
        };
        let result = {
            let mut state = self.shared.lock();
            let language = state.settings.language;
            state.accounts.login(
                request.user_name.as_deref().unwrap_or(""),
                request.password.as_deref().unwrap_or(""),
                language,
            )
        };
        match (self.flavor, result) {
            (Flavor::DocSpace, Ok(value)) => envelope::success(self.info, value),
            (Flavor::DocSpace, Err(e)) => e.into_response(),
            (Flavor::Workspace, Ok(value)) => workspace::api_success(StatusCode::CREATED, value),
            (Flavor::Workspace, Err(e)) => workspace::api_error(&e),
        }
    }

    /// Workspace's AjaxPro `SaveAuthKeys`: always 200, the outcome in-band. Checked in this
    /// order: the `X-AjaxPro-Method` header, authentication, the body, then the rules of
    /// [`save_workspace`](crate::services::Store::save_workspace).
    fn save_auth_keys(&self, check: Check) -> Response {
        let method = self
            .headers
            .get(ajaxpro::METHOD_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if method != ajaxpro::SAVE_AUTH_KEYS {
            return ajaxpro::error(AjaxError::unknown_method(method));
        }
        let Some(principal) = self.principal() else {
            return ajaxpro::error(AjaxError::unauthorized());
        };
        // AjaxPro reads the body whatever its content type; an empty one binds no parameter.
        let value = if self.body.iter().all(u8::is_ascii_whitespace) {
            Value::Object(serde_json::Map::new())
        } else {
            match serde_json::from_slice::<Value>(self.body) {
                Ok(value) => value,
                Err(e) => return ajaxpro::error(AjaxError::bad_body(format!("Invalid JSON: {e}"))),
            }
        };
        let request = match AuthServiceRequest::bind_ajax_pro(&value) {
            Ok(request) => request,
            Err(e) => return ajaxpro::error(AjaxError::bad_body(e.message)),
        };
        let settings = self.shared.settings();
        let result = self
            .shared
            .store()
            .save_workspace(principal, &settings, &request, check);
        match result {
            Ok(changed) => ajaxpro::value(Value::Bool(changed)),
            Err(e) => ajaxpro::error(e),
        }
    }

    /// Workspace's `GET /Management.aspx[?type=10]`: an admin gets the HTML page (with the keys
    /// on `type=10`); no valid login is redirected to `/Auth.aspx`, a non-admin to `/`.
    fn settings_page(&self) -> Response {
        let Some(principal) = self.principal() else {
            let asked = self.uri.path_and_query().map_or("/", |p| p.as_str());
            return workspace::redirect_to_login(asked);
        };
        if !principal.admin {
            return workspace::redirect("/");
        }
        let auth_keys = workspace::is_auth_keys_query(self.uri.query());
        workspace::settings_page(self.shared.store().all(), auth_keys)
    }

    /// `GET settings/authservice`: 401, the portal's filters, then the store's rules.
    fn list_services(&self) -> Response {
        let Some(principal) = self.principal() else {
            return envelope::empty(StatusCode::UNAUTHORIZED);
        };
        let settings = self.shared.settings();
        if let Some(response) = self.portal_filters(&settings) {
            return response;
        }
        let result = self.shared.store().list(principal, &settings);
        match result {
            Ok(value) => envelope::success(self.info, value),
            Err(e) => e.into_response(),
        }
    }

    /// `POST settings/authservice`, checked in this order: 401; an API key without `*:write`
    /// (403, empty body); the portal's filters; 415 and model validation (400 validation
    /// problem: bad JSON, a prop without `value`, a value over the limit); then the store's
    /// rules (admin, service, plan, `props`, the key check).
    fn save_service(&self, check: Check) -> Response {
        let Some(principal) = self.principal() else {
            return envelope::empty(StatusCode::UNAUTHORIZED);
        };
        if !principal.write {
            return envelope::empty(StatusCode::FORBIDDEN);
        }
        let settings = self.shared.settings();
        if let Some(response) = self.portal_filters(&settings) {
            return response;
        }
        let request = match self.bind(AuthServiceRequest::bind) {
            Ok(request) => request,
            Err(error) => return self.reject(error),
        };
        if let Some(index) = request.first_too_long(settings.max_value_len) {
            return envelope::validation_failure(
                self.info,
                &format!("Props[{index}].Value"),
                &settings.language.value_too_long(settings.max_value_len),
            );
        }
        let result = self
            .shared
            .store()
            .save(principal, &settings, &request, check);
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

/// The tenant-status filter: 404 for a suspended portal, 403 for one being moved, restored or
/// encrypted (both with an empty body).
fn tenant_status(state: PortalState) -> Option<Response> {
    match state {
        PortalState::Active => None,
        PortalState::Suspended => Some(envelope::empty(StatusCode::NOT_FOUND)),
        PortalState::Moving | PortalState::Restoring | PortalState::Encrypting => {
            Some(envelope::empty(StatusCode::FORBIDDEN))
        }
    }
}

/// The IP filter's 403: a bare JSON string.
fn ip_restricted(language: crate::lang::Language) -> Response {
    envelope::json_string(StatusCode::FORBIDDEN, language.text(Text::IpRestricted))
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
    fn workspace_routes_decode_and_depend_on_the_flavor() {
        let save = crate::WORKSPACE_SAVE_PATH;
        assert_eq!(Route::of(save), Route::AjaxAuthKeys);
        assert_eq!(
            Route::of(&save.replace(',', "%2C").to_ascii_uppercase()),
            Route::AjaxAuthKeys
        );
        assert_eq!(Route::of("/management.aspx"), Route::ManagementPage);
        assert_eq!(Route::of("/Management%2Easpx"), Route::ManagementPage);
        assert_eq!(Route::of("/api%2F2.0/authentication"), Route::Unknown);
        assert_eq!(Route::AjaxAuthKeys.on(Flavor::DocSpace), Route::Unknown);
        assert_eq!(Route::ManagementPage.on(Flavor::DocSpace), Route::Unknown);
        assert_eq!(Route::AuthService.on(Flavor::Workspace), Route::Unknown);
        assert_eq!(Route::AuthService.on(Flavor::DocSpace), Route::AuthService);
        assert_eq!(
            Route::Authentication.on(Flavor::Workspace),
            Route::Authentication
        );
        assert_eq!(decode_path("/a%"), "/a%");
        assert_eq!(decode_path("/a%4"), "/a%4");
        assert_eq!(decode_path("/a%41"), "/aA");
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
