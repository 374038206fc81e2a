//! `/healthz`, `/readyz` and `/metrics`.

use std::sync::atomic::Ordering;

use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

#[cfg(doc)]
use super::METRICS_WAIT;
use super::{render_bounded, RenderError, ServerState};
use crate::metrics::{metrics, CONTENT_TYPE};

/// Renders on a blocking thread holding one of the render slots; a scrape that finds no
/// free slot within [`METRICS_WAIT`] gets 503 with `Retry-After`.
pub(super) async fn get_metrics(State(state): State<ServerState>) -> Response {
    let rendered = render_bounded(&state.metrics_renders, || {
        Ok::<_, std::convert::Infallible>(metrics().render())
    })
    .await;
    match rendered {
        Ok(text) => (
            [(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE))],
            text,
        )
            .into_response(),
        Err(RenderError::Busy) => busy(),
        Err(RenderError::Failed(e)) => {
            tracing::error!(error = %e, "rendering /metrics failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "cannot render metrics").into_response()
        }
    }
}

fn busy() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, HeaderValue::from_static("1"))],
        "too many /metrics requests at once; retry",
    )
        .into_response()
}

pub(super) async fn get_healthz(State(state): State<ServerState>) -> (StatusCode, &'static str) {
    if state.liveness.is_alive() {
        (StatusCode::OK, "ok")
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "the main loop made no progress for longer than cycle_timeout plus one interval",
        )
    }
}

pub(super) async fn get_readyz(State(state): State<ServerState>) -> (StatusCode, &'static str) {
    if state.ready.load(Ordering::Acquire) {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use std::time::Duration;

    use super::*;
    use crate::server::harness::Harness;
    use crate::server::MAX_METRICS_RENDERS;

    #[tokio::test]
    async fn readyz_flips_to_200() {
        let h = Harness::start(None).await;
        let r = h.client.get(h.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        h.state.ready.store(true, Ordering::Release);
        let r = h.client.get(h.url("/readyz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.text().await.unwrap(), "ok");
        h.stop().await;
    }

    #[tokio::test]
    async fn healthz_follows_alive() {
        let h = Harness::start(None).await;
        let r = h.client.get(h.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.text().await.unwrap(), "ok");
        // A loop that stopped beating: silent beyond its limit.
        h.state.liveness.set_limit(Duration::ZERO);
        tokio::time::sleep(Duration::from_millis(5)).await;
        let r = h.client.get(h.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        h.stop().await;
    }

    #[tokio::test]
    async fn metrics_are_served_as_openmetrics() {
        let m = metrics();
        m.sync_run("ok", Duration::from_millis(40));
        m.push("srv-test", "google", "ok");
        m.drift_correction("srv-test", "google");
        m.source_request("srv-test-vault", "read", "ok");
        m.portal_request("srv-test", "GET", "200");
        m.out_of_sync("srv-test", "google", false);
        m.last_success("srv-test", 1_700_000_000.0);
        m.config_reload("ok");
        let h = Harness::start(None).await;
        let r = h.client.get(h.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            r.headers()
                .get(header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok()),
            Some(CONTENT_TYPE)
        );
        let text = r.text().await.unwrap();
        for name in [
            "authsync_sync_runs_total{",
            "authsync_sync_duration_seconds_bucket{",
            "authsync_sync_duration_seconds_sum ",
            "authsync_sync_duration_seconds_count ",
            "authsync_pushes_total{",
            "authsync_drift_corrections_total{",
            "authsync_source_requests_total{",
            "authsync_portal_requests_total{",
            "authsync_out_of_sync{",
            "authsync_last_success_timestamp_seconds{",
            "authsync_config_reloads_total{",
            "authsync_build_info{",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(name)),
                "{name} missing in:\n{text}"
            );
        }
        assert!(text.ends_with("# EOF\n"));
        h.stop().await;
    }

    #[tokio::test]
    async fn metrics_renders_are_bounded() {
        let h = Harness::start(None).await;
        // Every render slot taken (as by slow renders): a scrape waits, then gets 503,
        // while probes answer at once.
        let held = Arc::clone(&h.state.metrics_renders)
            .acquire_many_owned(MAX_METRICS_RENDERS as u32)
            .await
            .unwrap();
        let scrape = tokio::spawn({
            let (client, url) = (h.client.clone(), h.url("/metrics"));
            async move { client.get(url).send().await.unwrap() }
        });
        let r = h.client.get(h.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(!scrape.is_finished(), "the scrape waits for a slot");
        let r = scrape.await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            r.headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok()),
            Some("1")
        );

        // Slots free again: served, and every render gave its slot back.
        drop(held);
        let r = h.client.get(h.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(
            h.state.metrics_renders.available_permits(),
            MAX_METRICS_RENDERS
        );
        h.stop().await;
    }
}
