//! The accept loop. axum's own `serve` spawns connection tasks that outlive it, so a dropped
//! double would keep answering on pooled keep-alive connections and keep hung requests open.
//! Here every connection task lives in a `JoinSet` owned by the loop: aborting the loop's task
//! closes every connection at once, as a portal that goes down would.

use std::convert::Infallible;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

/// Serves `app` on `listener` until the task running this is aborted.
pub(crate) async fn serve(listener: TcpListener, app: Router) -> Infallible {
    let mut connections = JoinSet::new();
    loop {
        // Reap finished connections so the set does not grow without bound.
        while connections.try_join_next().is_some() {}
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            // E.g. too many open files: back off briefly instead of spinning.
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        let service = TowerToHyperService::new(app.clone());
        connections.spawn(async move {
            // A connection error (client gone, bad request line) only ends that connection.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
