//! `POST /trigger`: authorization, the body, its parsing, and the check of each trigger
//! against the running config before it is queued.
//!
//! Nothing a client sent is quoted back or logged unless it is, or is a likely typo of,
//! a name the operator wrote in the config (or, for `secrets`, a reference to a
//! configured source): a body may carry a secret pasted by mistake.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio::sync::mpsc::error::TrySendError;

use super::{PeerAddr, ServerState, BODY_TIMEOUT, MAX_TRIGGER_BODY};
use crate::catalog::did_you_mean;
use crate::config::reference::PORTAL_PLACEHOLDER;
use crate::config::{Config, PropRef, SecretRef};
use crate::mapping::Filter;

/// What `POST /trigger` asked for. Empty lists do not narrow: `{}` means everything.
///
/// Unknown fields are rejected: a typo such as `{"portal": ["prod"]}` must not silently
/// widen into a cycle over every portal.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TriggerRequest {
    /// Portal names to sync; empty = all.
    #[serde(default)]
    pub portals: Vec<String>,
    /// Service names to sync; empty = all.
    #[serde(default)]
    pub services: Vec<String>,
    /// Secret references (`SOURCE:PATH` as the config's `[[map]]` props write them; a
    /// `#KEY` is accepted and ignored): only the targets using them are synced, reading
    /// those secrets fresh. Empty = no narrowing by secret. See [`Self::secret_refs`].
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Push values held after a refusal once more (as `sync --retry-refused`).
    #[serde(default)]
    pub retry_refused: bool,
}

impl TriggerRequest {
    /// The `secrets` entries as references, without their `#KEY` (it names a field of
    /// the secret, not a secret) and without duplicates, in request order. Entries that
    /// do not parse are left out; a trigger that passed [`validate_trigger`] has none.
    pub fn secret_refs(&self) -> Vec<SecretRef> {
        let mut refs: Vec<SecretRef> = Vec::new();
        for entry in &self.secrets {
            if let Ok(mut r) = SecretRef::parse(entry) {
                r.key = None;
                if !refs.contains(&r) {
                    refs.push(r);
                }
            }
        }
        refs
    }
}

/// Checks one trigger against the running config; `Err` holds the answer's error text
/// (see [`validate_trigger`] for what it may contain). Set with
/// [`ServerState::set_validator`].
pub type TriggerValidator = Arc<dyn Fn(&TriggerRequest) -> Result<(), String> + Send + Sync>;

/// At most this many problems are spelled out in one answer; the rest are counted.
const MAX_PROBLEMS: usize = 8;

/// Longest client-sent text quoted back (and only when [`quotable`] allows it).
const MAX_QUOTED: usize = 128;

/// Longest list of configured names offered in one problem.
const MAX_LISTED: usize = 10;

/// Checks a trigger against `config`: every portal is configured, every service has a
/// `[[map]]` block, every secret reference names a configured source and a `SOURCE:PATH`
/// some `[[map]]` uses (its `{portal}` template, or the template filled in for a portal
/// the map applies to).
///
/// The error names each bad entry by position (`portals[1]`) and says what is wrong. It
/// quotes an entry only when it is a likely typo of a configured name (then with the
/// name it resembles) or, for `secrets`, a well-formed reference to a configured source
/// — anything else may be a pasted secret and is not repeated. At most eight problems
/// are listed.
pub fn validate_trigger(config: &Config, t: &TriggerRequest) -> Result<(), String> {
    let mut problems = Vec::new();
    let portal_names = || config.portals.keys().map(String::as_str);
    for (i, portal) in t.portals.iter().enumerate() {
        let one = Filter {
            portals: vec![portal.clone()],
            ..Filter::default()
        };
        if one.check(config).is_err() {
            problems.push(unknown_name(
                &format!("portals[{i}]"),
                portal,
                "is not a configured portal",
                portal_names,
            ));
        }
    }
    let service_names = || config.maps.iter().map(|m| m.service.as_str());
    for (i, service) in t.services.iter().enumerate() {
        let one = Filter {
            services: vec![service.clone()],
            ..Filter::default()
        };
        if one.check(config).is_err() {
            problems.push(unknown_name(
                &format!("services[{i}]"),
                service,
                "has no [[map]] block",
                service_names,
            ));
        }
    }
    for (i, entry) in t.secrets.iter().enumerate() {
        if let Err(problem) = check_secret(config, entry) {
            problems.push(format!("secrets[{i}] {problem}"));
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let more = problems.len().saturating_sub(MAX_PROBLEMS);
    problems.truncate(MAX_PROBLEMS);
    let mut text = problems.join("; ");
    if more > 0 {
        text.push_str(&format!("; and {more} more"));
    }
    Err(text)
}

/// "`portals[1]` `prdo` is not a configured portal; did you mean `prod`?", or without
/// the quote when the entry resembles no configured name.
fn unknown_name<'a, I>(position: &str, entry: &str, what: &str, names: impl Fn() -> I) -> String
where
    I: Iterator<Item = &'a str>,
{
    match did_you_mean(entry, names()) {
        Some(name) if quotable(entry) => {
            format!("{position} `{entry}` {what}; did you mean `{name}`?")
        }
        _ => format!("{position} {what} (configured: {})", listing(names())),
    }
}

/// Why a `secrets` entry is not usable, or `Ok`.
fn check_secret(config: &Config, entry: &str) -> Result<(), String> {
    // The parser's own messages can quote the text; only the position is reported.
    let Ok(wanted) = SecretRef::parse(entry) else {
        return Err(
            "is not a secret reference (expected \"SOURCE:PATH\", e.g. \"vault:secret/oauth/google\")"
                .into(),
        );
    };
    if !config.sources.contains_key(&wanted.source) {
        let sources = || config.sources.keys().map(String::as_str);
        return Err(match did_you_mean(&wanted.source, sources()) {
            Some(name) if quotable(&wanted.source) => format!(
                "names source `{}`, which is not configured; did you mean `{name}`?",
                wanted.source
            ),
            _ => format!(
                "names a source that is not configured (configured: {})",
                listing(sources())
            ),
        });
    }
    if uses(config, &wanted) {
        return Ok(());
    }
    let shown = format!("{}:{}", wanted.source, wanted.path);
    if !quotable(&shown) {
        return Err("is not used by any [[map]]".into());
    }
    let used = used_paths(config, &wanted.source);
    let hint = did_you_mean(&wanted.path, used.iter().map(String::as_str))
        .map(|path| format!("; did you mean `{}:{path}`?", wanted.source))
        .unwrap_or_default();
    Err(format!("`{shown}` is not used by any [[map]]{hint}"))
}

/// Whether some `[[map]]` prop reads `wanted` (source and path; the key is ignored).
fn uses(config: &Config, wanted: &SecretRef) -> bool {
    config.maps.iter().any(|map| {
        map.props.values().any(|prop| {
            let PropRef::Secret(r) = prop else {
                return false;
            };
            if r.source != wanted.source {
                return false;
            }
            if r.path == wanted.path {
                return true;
            }
            r.path.contains(PORTAL_PLACEHOLDER)
                && config
                    .portals
                    .keys()
                    .filter(|p| map.applies_to(p))
                    .any(|p| r.for_portal(p).path == wanted.path)
        })
    })
}

/// The paths `[[map]]` props read from `source`, templates as written (for hints).
fn used_paths(config: &Config, source: &str) -> Vec<String> {
    let mut paths: Vec<String> = Vec::new();
    for map in &config.maps {
        for prop in map.props.values() {
            if let PropRef::Secret(r) = prop {
                if r.source == source && !paths.contains(&r.path) {
                    paths.push(r.path.clone());
                }
            }
        }
    }
    paths
}

/// Whether client-sent text may be repeated: short, printable ASCII without spaces (no
/// log-line tricks), and — checked by the callers — recognisably a name or reference.
fn quotable(text: &str) -> bool {
    !text.is_empty() && text.len() <= MAX_QUOTED && text.bytes().all(|b| b.is_ascii_graphic())
}

/// "a, b, c" (the first [`MAX_LISTED`], then "…"), or "none".
fn listing<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut unique: Vec<&str> = Vec::new();
    for name in names {
        if !unique.contains(&name) {
            unique.push(name);
        }
    }
    let mut names = unique;
    if names.is_empty() {
        return "none".into();
    }
    let more = names.len() > MAX_LISTED;
    names.truncate(MAX_LISTED);
    let mut text = names.join(", ");
    if more {
        text.push_str(", …");
    }
    text
}

/// `POST /trigger`. The checks run in this order on purpose: disabled (404) before
/// anything, the token (401) before the body is read, then size/time limits, JSON, and
/// the config (400) before the trigger is queued.
pub(super) async fn post_trigger(
    State(state): State<ServerState>,
    request: Request,
) -> Result<(StatusCode, Json<serde_json::Value>), Rejection> {
    let peer = request.extensions().get::<PeerAddr>().map(|p| p.0);
    let Some(expected) = state.token_digest() else {
        return Err(Rejection::new(
            StatusCode::NOT_FOUND,
            "trigger is disabled (no trigger_token)",
        ));
    };
    if !bearer_matches(request.headers(), &expected) {
        tracing::warn!(?peer, "trigger rejected: missing or wrong bearer token");
        return Err(Rejection::new(
            StatusCode::UNAUTHORIZED,
            "missing or wrong bearer token",
        ));
    }
    if declared_length(request.headers()).is_some_and(|len| len > MAX_TRIGGER_BODY as u64) {
        return Err(Rejection::too_large());
    }
    let body = read_body(request.into_body()).await?;
    let scope = parse_trigger(&body)?;
    let validated = match state.validator() {
        Some(validate) => {
            if let Err(problems) = validate(&scope) {
                // The text names config entries and positions only (see validate_trigger).
                let mut message = format!("the trigger does not match the config: {problems}");
                truncate(&mut message, 1000);
                tracing::warn!(?peer, error = %message, "trigger rejected");
                return Err(Rejection::new(StatusCode::BAD_REQUEST, message));
            }
            true
        }
        None => false,
    };
    if validated {
        tracing::info!(
            ?peer,
            portals = ?scope.portals,
            services = ?scope.services,
            secrets = ?scope.secrets,
            retry_refused = scope.retry_refused,
            "sync triggered over HTTP"
        );
    } else {
        // Unchecked names may be anything a client typed; count them only.
        tracing::info!(
            ?peer,
            portals = scope.portals.len(),
            services = scope.services.len(),
            secrets = scope.secrets.len(),
            retry_refused = scope.retry_refused,
            "sync triggered over HTTP"
        );
    }
    match state.triggers.try_send(scope) {
        Ok(()) => {}
        Err(TrySendError::Full(_)) => {
            state.trigger_overflow.store(true, Ordering::Release);
            tracing::debug!("a triggered cycle is already queued; this trigger coalesces into it (the next triggered cycle covers every portal)");
        }
        Err(TrySendError::Closed(_)) => {
            tracing::warn!("trigger dropped: the scheduler is not running");
            return Err(Rejection::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "the scheduler is not running",
            ));
        }
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "accepted": true })),
    ))
}

/// A refused `/trigger`. Its answer is JSON like the success answer, so scripts parse
/// one shape; the message never contains the token.
#[derive(Debug)]
pub(super) struct Rejection {
    status: StatusCode,
    message: String,
}

impl Rejection {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Rejection {
            status,
            message: message.into(),
        }
    }

    fn too_large() -> Self {
        Rejection::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request body larger than 16 KiB",
        )
    }

    /// Whether the answer leaves (part of) the request body unread: then hyper closes
    /// the connection after answering, and says so, so that a client does not send its
    /// next request on a connection that is going away.
    fn leaves_body_unread(&self) -> bool {
        matches!(
            self.status,
            StatusCode::NOT_FOUND
                | StatusCode::UNAUTHORIZED
                | StatusCode::PAYLOAD_TOO_LARGE
                | StatusCode::REQUEST_TIMEOUT
        )
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let close = self.leaves_body_unread();
        let body = Json(serde_json::json!({ "accepted": false, "error": self.message }));
        let mut response = (self.status, body).into_response();
        let headers = response.headers_mut();
        if self.status == StatusCode::UNAUTHORIZED {
            // RFC 9110: a 401 must say which scheme would work.
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if close {
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}

/// Whether `Authorization` carries `Bearer <token>` matching `expected` (a SHA-256).
///
/// Digests are compared with [`ConstantTimeEq`]: comparing fixed-size digests leaks
/// neither where the first wrong byte is nor the token's length. The scheme is
/// case-insensitive (RFC 9110); an empty token never matches.
fn bearer_matches(headers: &HeaderMap, expected: &[u8; 32]) -> bool {
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return false;
    };
    let value = value.as_bytes().trim_ascii();
    let Some(space) = value.iter().position(|b| *b == b' ') else {
        return false;
    };
    let (scheme, token) = value.split_at(space);
    if !scheme.eq_ignore_ascii_case(b"bearer") {
        return false;
    }
    let token = token.trim_ascii();
    if token.is_empty() {
        return false;
    }
    let got: [u8; 32] = Sha256::digest(token).into();
    bool::from(got.ct_eq(expected))
}

/// `Content-Length`, when present and numeric; lets an oversized body be refused
/// without reading it.
fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(header::CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Reads the body, at most [`MAX_TRIGGER_BODY`] bytes (413 beyond, also for chunked
/// bodies without a length) within [`BODY_TIMEOUT`] (408 after).
async fn read_body(body: Body) -> Result<Vec<u8>, Rejection> {
    let mut stream = body.into_data_stream();
    let mut buf = Vec::new();
    let read = async {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| {
                Rejection::new(StatusCode::BAD_REQUEST, "cannot read the request body")
            })?;
            if buf.len() + chunk.len() > MAX_TRIGGER_BODY {
                return Err(Rejection::too_large());
            }
            buf.extend_from_slice(&chunk);
        }
        Ok(())
    };
    match tokio::time::timeout(BODY_TIMEOUT, read).await {
        Ok(Ok(())) => Ok(buf),
        Ok(Err(rejection)) => Err(rejection),
        Err(_) => Err(Rejection::new(
            StatusCode::REQUEST_TIMEOUT,
            "the request body took too long",
        )),
    }
}

/// The body's fields and what each must hold.
const FIELDS: [&str; 4] = ["portals", "services", "secrets", "retry_refused"];

/// An empty (or blank) body means "everything"; otherwise it must be the JSON object.
///
/// Fields and types are checked here rather than left to serde, whose messages quote
/// the offending value (`invalid type: string "…"`), which may be a pasted secret.
fn parse_trigger(body: &[u8]) -> Result<TriggerRequest, Rejection> {
    if body.trim_ascii().is_empty() {
        return Ok(TriggerRequest::default());
    }
    let invalid = |detail: String| {
        Rejection::new(
            StatusCode::BAD_REQUEST,
            format!(
                "invalid JSON body ({detail}); expected {{\"portals\": [...], \"services\": [...], \"secrets\": [...], \"retry_refused\": false}}, every field optional"
            ),
        )
    };
    let value: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
        invalid(format!(
            "not JSON: error at line {}, column {}",
            e.line(),
            e.column()
        ))
    })?;
    // Checked explicitly: serde would also accept a struct written as a JSON array
    // (`[]`, `[["prod"]]`), which nobody means.
    let Some(object) = value.as_object() else {
        return Err(invalid("not a JSON object".into()));
    };
    for (name, field) in object {
        let ok = match name.as_str() {
            "portals" | "services" | "secrets" => field
                .as_array()
                .is_some_and(|items| items.iter().all(serde_json::Value::is_string)),
            "retry_refused" => field.is_boolean(),
            _ => {
                let detail = match did_you_mean(name, FIELDS) {
                    Some(known) if quotable(name) => {
                        format!("unknown field `{name}`; did you mean `{known}`?")
                    }
                    _ => "an unknown field".into(),
                };
                return Err(invalid(detail));
            }
        };
        if !ok {
            let wanted = if name == "retry_refused" {
                "true or false"
            } else {
                "a list of strings"
            };
            return Err(invalid(format!("`{name}` must be {wanted}")));
        }
    }
    serde_json::from_value(value).map_err(|_| invalid("unexpected shape".into()))
}

fn truncate(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

#[cfg(test)]
mod tests;
