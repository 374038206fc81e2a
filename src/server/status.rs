//! `GET /status` (HTML) and `GET /status.json`: views of the snapshot the daemon
//! published after its last cycle, filtered by the query string (see
//! [`Filter::from_query`]).
//!
//! A request never reads the state file or the config: it filters and renders a
//! snapshot built once per cycle. Renders are CPU work on a blocking thread, bounded
//! like `/metrics` ([`MAX_METRICS_RENDERS`] at once, 503 after [`METRICS_WAIT`]).
//! Until the daemon publishes its first snapshot (at start, from the state file) the
//! endpoints answer 503.

use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[cfg(doc)]
use super::METRICS_WAIT;
use super::{render_bounded, RenderError, ServerState};
use crate::status::{html, Filter};

#[cfg(doc)]
use super::MAX_METRICS_RENDERS;

/// The page only needs inline CSS; nothing else may load or run.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[derive(Clone, Copy)]
enum Format {
    Html,
    Json,
}

pub(super) async fn get_status_page(state: State<ServerState>, query: RawQuery) -> Response {
    render(state, query, Format::Html).await
}

pub(super) async fn get_status_json(state: State<ServerState>, query: RawQuery) -> Response {
    render(state, query, Format::Json).await
}

async fn render(
    State(state): State<ServerState>,
    RawQuery(query): RawQuery,
    format: Format,
) -> Response {
    let (filter, refresh) = match Filter::from_query(query.as_deref().unwrap_or("")) {
        Ok(f) => f,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let Some(snapshot) = state.status() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, HeaderValue::from_static("5"))],
            "no status yet: the daemon has not published one\n",
        )
            .into_response();
    };
    let rendered = render_bounded(&state.status_renders, move || {
        let view = snapshot.view(&filter);
        match format {
            Format::Html => Ok(html::render(&view, &filter, refresh)),
            Format::Json => serde_json::to_string(&view),
        }
    })
    .await;
    let body = match rendered {
        Ok(body) => body,
        Err(RenderError::Busy) => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
                "too many status requests at once; retry\n",
            )
                .into_response();
        }
        Err(RenderError::Failed(e)) => {
            tracing::error!(error = %e, "rendering the status failed");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "cannot render the status\n",
            )
                .into_response();
        }
    };
    let content_type = match format {
        Format::Html => "text/html; charset=utf-8",
        Format::Json => "application/json",
    };
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            // The state changes every cycle; a cached page would lie.
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
            (
                header::CONTENT_SECURITY_POLICY,
                HeaderValue::from_static(CSP),
            ),
            (
                header::X_CONTENT_TYPE_OPTIONS,
                HeaderValue::from_static("nosniff"),
            ),
            (
                header::REFERRER_POLICY,
                HeaderValue::from_static("no-referrer"),
            ),
        ],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::server::harness::Harness;
    use crate::server::MAX_METRICS_RENDERS;
    use crate::status::{Snapshot, Timestamp};

    fn empty_snapshot() -> Snapshot {
        Snapshot {
            generated_at: Timestamp::at(1_700_000_000),
            portals: Vec::new(),
            sources: Vec::new(),
            last_cycle: None,
            daemon: None,
        }
    }

    #[tokio::test]
    async fn status_is_503_until_published_then_served_and_bad_queries_are_400() {
        let h = Harness::start(None).await;
        for path in ["/status", "/status.json"] {
            let r = h.client.get(h.url(path)).send().await.unwrap();
            assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        }
        h.state.set_status(empty_snapshot());
        let r = h.client.get(h.url("/status")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some("text/html; charset=utf-8")
        );
        assert!(r.text().await.unwrap().contains("<h1>authsync status</h1>"));
        let r = h.client.get(h.url("/status.json")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["generated_at"]["unix"], 1_700_000_000);
        let r = h
            .client
            .get(h.url("/status.json?state=nope"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        h.stop().await;
    }

    #[tokio::test]
    async fn status_renders_are_bounded() {
        let h = Harness::start(None).await;
        h.state.set_status(empty_snapshot());
        let held = Arc::clone(&h.state.status_renders)
            .acquire_many_owned(MAX_METRICS_RENDERS as u32)
            .await
            .unwrap();
        let r = h.client.get(h.url("/status")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        // Metrics have their own slots.
        let r = h.client.get(h.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        drop(held);
        let r = h.client.get(h.url("/status")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        h.stop().await;
    }
}
