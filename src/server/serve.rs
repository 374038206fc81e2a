//! The listener and its connections: hyper's HTTP/1 connection driver with a
//! header-read deadline (hyper's own timer, started when a connection opens and again
//! when it goes idle between requests, never extended by trickled bytes), a cap on
//! open connections, a maximum connection age, and graceful shutdown.
//!
//! This replaces a hand-written limiter that closed a connection only after a stretch
//! with *no* traffic: a client trickling one byte per stretch held its slot forever,
//! and 64 of them starved `/healthz`.

use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower::ServiceExt;

use super::{
    PeerAddr, ServerState, CLOSE_GRACE, HEADER_READ_TIMEOUT, MAX_CONNECTIONS, MAX_CONNECTION_AGE,
    REQUEST_TIMEOUT,
};

/// The server's deadlines and bounds; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Limits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub request_timeout: Duration,
    pub max_connection_age: Duration,
    /// How long a connection being closed may take to finish its request in flight.
    pub close_grace: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: MAX_CONNECTIONS,
            header_read_timeout: HEADER_READ_TIMEOUT,
            request_timeout: REQUEST_TIMEOUT,
            max_connection_age: MAX_CONNECTION_AGE,
            close_grace: CLOSE_GRACE,
        }
    }
}

/// Serves [`router`](super::router) on `listener` until `shutdown` completes, then stops
/// accepting, lets requests in flight finish (at most [`CLOSE_GRACE`]), closes idle
/// connections and returns. Deadlines and bounds: see the module documentation of
/// [`server`](super).
pub async fn serve(
    listener: TcpListener,
    state: ServerState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> io::Result<()> {
    serve_with(listener, state, shutdown, Limits::default()).await
}

pub(super) async fn serve_with(
    listener: TcpListener,
    state: ServerState,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
) -> io::Result<()> {
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving HTTP (/metrics, /healthz, /readyz, /trigger)");
    }
    let app = super::app(state, limits.request_timeout);
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let (closing_tx, closing) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    tokio::pin!(shutdown);
    loop {
        // Finished connections leave their result here; collect it so the set stays small.
        while connections.try_join_next().is_some() {}
        let slot = tokio::select! {
            () = &mut shutdown => break,
            slot = Arc::clone(&slots).acquire_owned() => match slot {
                Ok(slot) => slot,
                // Never closed; if it were, serving unbounded beats not serving.
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    accept_failed(e).await;
                    continue;
                }
            },
        };
        let service = app
            .clone()
            .map_request(move |mut request: Request<Incoming>| {
                request.extensions_mut().insert(PeerAddr(peer));
                request
            });
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        connections.spawn(drive(conn, closing.clone(), limits, slot));
    }
    drop(listener);
    let _ = closing_tx.send(true);
    let drained = tokio::time::timeout(limits.close_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::debug!(
            connections = connections.len(),
            "closing HTTP connections whose request did not finish in time"
        );
    }
    // Dropping the set aborts what is left.
    Ok(())
}

/// Runs one connection to its end. At [`Limits::max_connection_age`] or shutdown it
/// finishes the request in flight and closes; a request that does not finish within
/// [`Limits::close_grace`] after that is dropped with the connection.
async fn drive<S>(
    conn: http1::Connection<TokioIo<tokio::net::TcpStream>, S>,
    mut closing: watch::Receiver<bool>,
    limits: Limits,
    _slot: OwnedSemaphorePermit,
) where
    S: hyper::service::HttpService<Incoming>,
    S::ResBody: 'static,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    tokio::pin!(conn);
    let deadline = tokio::time::sleep(limits.max_connection_age);
    tokio::pin!(deadline);
    let mut winding_down = false;
    let result = loop {
        tokio::select! {
            result = conn.as_mut() => break result,
            () = &mut deadline => {
                if winding_down {
                    tracing::debug!("HTTP connection closed: its request did not finish in time");
                    return;
                }
                winding_down = true;
                conn.as_mut().graceful_shutdown();
                deadline.as_mut().reset(Instant::now() + limits.close_grace);
            }
            _ = closing.wait_for(|closing| *closing), if !winding_down => {
                winding_down = true;
                conn.as_mut().graceful_shutdown();
                deadline.as_mut().reset(Instant::now() + limits.close_grace);
            }
        }
    };
    if let Err(e) = result {
        // Clients going away and slow clients being cut are routine; nothing to act on.
        if e.is_timeout() {
            tracing::debug!(
                timeout_s = limits.header_read_timeout.as_secs_f64(),
                "HTTP connection closed: no complete request headers in time"
            );
        } else {
            tracing::debug!(error = %e, "HTTP connection ended with an error");
        }
    }
}

/// An accept error. Errors about the one connection (reset before it was accepted) are
/// skipped; others (out of file descriptors) are logged and retried after a pause, as
/// axum does, rather than spinning or stopping the server.
async fn accept_failed(e: io::Error) {
    if matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "cannot accept HTTP connections; retrying in 1 s (raise the open files limit if this repeats)");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use std::time::Instant as StdInstant;

    use axum::http::StatusCode;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use super::*;
    use crate::server::harness::Harness;

    fn quick(header_read_timeout: Duration) -> Limits {
        Limits {
            header_read_timeout,
            ..Limits::default()
        }
    }

    /// Reads until the server closes the connection (or errors), up to `within`;
    /// whether it closed.
    async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
        let mut buf = [0u8; 1024];
        let read_to_end = async {
            loop {
                match stream.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
            }
        };
        tokio::time::timeout(within, read_to_end).await.is_ok()
    }

    /// One request on a raw connection; the answer's head and body as text.
    async fn exchange(stream: &mut TcpStream, path: &str) -> String {
        let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed mid-answer");
            answer.extend_from_slice(&buf[..n]);
            let text = String::from_utf8_lossy(&answer);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                if body.len() >= length {
                    return text.into_owned();
                }
            }
        }
    }

    #[tokio::test]
    async fn unknown_paths_and_wrong_methods() {
        let h = Harness::start(Some("token")).await;
        let r = h.client.get(h.url("/nope")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        let r = h.client.get(h.url("/trigger")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        let r = h.client.post(h.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::METHOD_NOT_ALLOWED);
        h.stop().await;
    }

    /// 14.4: clients trickling header bytes are cut at the header deadline however
    /// often they send, and probes answer meanwhile.
    #[tokio::test]
    async fn slow_clients_are_cut_and_probes_answer() {
        let deadline = Duration::from_millis(800);
        let h = Harness::start_with(None, 1, quick(deadline)).await;
        let mut slow = Vec::new();
        for _ in 0..64 {
            slow.push(TcpStream::connect(&h.addr).await.unwrap());
        }
        let opened = StdInstant::now();
        let trickle = tokio::spawn(async move {
            // A byte per client every 100 ms (far more often than the deadline) for
            // twice the deadline; the headers never complete. Writes fail once cut.
            for byte in b"GET /healthz HTTP/1.1\r\n" {
                for s in slow.iter_mut() {
                    let _ = s.write_all(&[*byte]).await;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            slow
        });
        let started = StdInstant::now();
        let r = h.client.get(h.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(started.elapsed() < Duration::from_secs(1));

        let mut slow = trickle.await.unwrap();
        for s in &mut slow {
            assert!(
                closed_within(s, Duration::from_secs(2)).await,
                "a trickling client outlived the header deadline"
            );
        }
        assert!(opened.elapsed() >= deadline);
        h.stop().await;
    }

    #[tokio::test]
    async fn idle_keep_alive_connections_are_closed() {
        let deadline = Duration::from_millis(300);
        let h = Harness::start_with(None, 1, quick(deadline)).await;
        let mut conn = TcpStream::connect(&h.addr).await.unwrap();
        let answer = exchange(&mut conn, "/healthz").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        // Kept alive for another request...
        let answer = exchange(&mut conn, "/readyz").await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        // ...and closed once idle past the deadline.
        let idle = StdInstant::now();
        assert!(closed_within(&mut conn, Duration::from_secs(3)).await);
        assert!(idle.elapsed() >= deadline - Duration::from_millis(50));
        h.stop().await;
    }

    #[tokio::test]
    async fn connections_are_bounded_and_idle_ones_closed() {
        let limits = Limits {
            max_connections: 1,
            header_read_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let h = Harness::start_with(None, 1, limits).await;
        // An idle client takes the only slot...
        let mut hog = TcpStream::connect(&h.addr).await.unwrap();
        let hog_opened = StdInstant::now();
        // ...so a real request waits until the idle one is cut.
        let r = h.client.get(h.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        assert!(hog_opened.elapsed() >= Duration::from_millis(250));
        assert!(closed_within(&mut hog, Duration::from_secs(2)).await);
        h.stop().await;
    }

    #[tokio::test]
    async fn old_connections_are_closed_between_requests() {
        let limits = Limits {
            max_connection_age: Duration::from_millis(500),
            ..Limits::default()
        };
        let h = Harness::start_with(None, 1, limits).await;
        let mut conn = TcpStream::connect(&h.addr).await.unwrap();
        let opened = StdInstant::now();
        // A busy keep-alive connection: never idle long enough for the header deadline.
        let mut served = 0;
        let closed = loop {
            let request = b"GET /healthz HTTP/1.1\r\nhost: test\r\n\r\n";
            if conn.write_all(request).await.is_err() {
                break opened.elapsed();
            }
            let mut buf = [0u8; 1024];
            match conn.read(&mut buf).await {
                Ok(0) | Err(_) => break opened.elapsed(),
                Ok(_) => served += 1,
            }
            assert!(opened.elapsed() < Duration::from_secs(5), "never closed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        assert!(served > 1, "kept alive before it aged");
        assert!(closed >= Duration::from_millis(500), "{closed:?}");
        h.stop().await;
    }

    #[tokio::test]
    async fn slow_requests_get_503() {
        let limits = Limits {
            request_timeout: Duration::from_millis(300),
            ..Limits::default()
        };
        let h = Harness::start_with(None, 1, limits).await;
        // Every render slot taken: /metrics waits longer than the request deadline.
        let _held = Arc::clone(&h.state.metrics_renders)
            .acquire_many_owned(crate::server::MAX_METRICS_RENDERS as u32)
            .await
            .unwrap();
        let started = StdInstant::now();
        let r = h.client.get(h.url("/metrics")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(started.elapsed() < crate::server::METRICS_WAIT);
        let body = r.text().await.unwrap();
        assert!(
            !body.contains("too many"),
            "answered by the deadline: {body}"
        );
        h.stop().await;
    }

    #[tokio::test]
    async fn graceful_shutdown_stops_serving() {
        let h = Harness::start(None).await;
        let url = h.url("/healthz");
        let client = h.client.clone();
        assert!(client.get(&url).send().await.is_ok());
        // The pooled keep-alive connection does not keep the server from stopping.
        h.stop().await;
        assert!(client.get(url).send().await.is_err());
    }

    #[tokio::test]
    async fn shutdown_lets_the_request_in_flight_finish() {
        let h = Harness::start(None).await;
        let _held = Arc::clone(&h.state.metrics_renders)
            .acquire_many_owned(crate::server::MAX_METRICS_RENDERS as u32)
            .await
            .unwrap();
        // A scrape waiting for a slot is in flight when shutdown starts.
        let mut conn = TcpStream::connect(&h.addr).await.unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\nhost: test\r\n\r\n")
            .await
            .unwrap();
        let reader = tokio::spawn(async move {
            let mut answer = Vec::new();
            let _ = conn.read_to_end(&mut answer).await;
            String::from_utf8_lossy(&answer).into_owned()
        });
        // Its request is being handled once a second connection is served: it was
        // written before, accepted first, and this runtime polls tasks in order.
        let r = h.client.get(h.url("/healthz")).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        h.stop().await;
        let answer = reader.await.unwrap();
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    }
}
