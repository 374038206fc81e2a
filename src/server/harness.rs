//! A served [`ServerState`] on a free port, for the server's unit tests.

use std::io;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use super::serve::{serve_with, Limits};
use super::{ServerState, TriggerRequest};
use crate::secret::SecretString;

pub(super) const TOKEN: &str = "s3cr3t-trigger-token";

pub(super) struct Harness {
    pub base: String,
    pub addr: String,
    pub state: ServerState,
    pub rx: mpsc::Receiver<TriggerRequest>,
    pub client: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<io::Result<()>>,
}

impl Harness {
    pub async fn start(token: Option<&str>) -> Self {
        Self::start_with(token, 4, Limits::default()).await
    }

    pub async fn start_with(token: Option<&str>, capacity: usize, limits: Limits) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = mpsc::channel(capacity);
        let state = ServerState::new(tx, token.map(|t| SecretString::from(t.to_owned())));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let task = tokio::spawn(serve_with(
            listener,
            state.clone(),
            async {
                let _ = stop_rx.await;
            },
            limits,
        ));
        Harness {
            base: format!("http://{addr}"),
            addr: addr.to_string(),
            state,
            rx,
            client: reqwest::Client::builder().no_proxy().build().unwrap(),
            stop: Some(stop_tx),
            task,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn trigger(&self, auth: Option<&str>, body: Option<&str>) -> reqwest::Response {
        let mut req = self.client.post(self.url("/trigger"));
        if let Some(auth) = auth {
            req = req.header("authorization", auth);
        }
        if let Some(body) = body {
            req = req
                .header("content-type", "application/json")
                .body(body.to_owned());
        }
        req.send().await.unwrap()
    }

    /// Signals shutdown and expects the server to return within 5 s.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let done = tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .unwrap();
        done.unwrap().unwrap();
    }
}

pub(super) fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}
