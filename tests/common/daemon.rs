//! `authsync run` as a real child process: readiness by polling /readyz, metrics read
//! from /metrics, signals by `kill`, output captured to files for leak scans.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

pub struct Daemon {
    child: tokio::process::Child,
    pub http: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Daemon {
    /// Starts `authsync -c CONFIG --log-format json run`; `listen` must match the config.
    pub async fn start(config: &Path, env: &[(String, String)], listen: &str, tag: &str) -> Daemon {
        let dir = config.parent().expect("config has a directory");
        let stdout = dir.join(format!("daemon-{tag}.stdout"));
        let stderr = dir.join(format!("daemon-{tag}.stderr"));
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_authsync"))
            .arg("-c")
            .arg(config)
            .args(["--log-format", "json", "run"])
            .env_remove("RUST_LOG")
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .kill_on_drop(true)
            .spawn()
            .expect("spawn authsync run");
        Daemon {
            child,
            http: format!("http://{listen}"),
            stdout,
            stderr,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("daemon running")
    }

    /// Everything the daemon printed so far.
    pub fn output(&self) -> String {
        let out = std::fs::read_to_string(&self.stdout).unwrap_or_default();
        let err = std::fs::read_to_string(&self.stderr).unwrap_or_default();
        format!("--- stdout\n{out}\n--- stderr\n{err}")
    }

    async fn get(&self, path: &str) -> Option<(u16, String)> {
        let resp = reqwest::Client::new()
            .get(format!("{}{path}", self.http))
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.text().await.unwrap_or_default()))
    }

    /// Polls /readyz until it answers 200.
    pub async fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some((200, _)) = self.get("/readyz").await {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "daemon exited with {status} before it was ready:\n{}",
                    self.output()
                );
            }
            assert!(
                Instant::now() < deadline,
                "daemon not ready within 30 s:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The /metrics text.
    pub async fn metrics_text(&self) -> String {
        self.get("/metrics")
            .await
            .map(|(_, t)| t)
            .unwrap_or_default()
    }

    /// Sum of every sample of `name` whose labels include all of `labels`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        parse_metric(&self.metrics_text().await, name, labels)
    }

    /// Completed cycles so far.
    pub async fn cycles(&self) -> f64 {
        self.metric("authsync_sync_runs_total", &[]).await
    }

    /// Waits until `cond` holds (polling every 50 ms), up to `within`.
    pub async fn wait_for<F, Fut>(&self, what: &str, within: Duration, mut cond: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let deadline = Instant::now() + within;
        while !cond().await {
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}:\n{}",
                self.output()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Waits until `n` more cycles have completed.
    pub async fn wait_cycles(&self, n: f64, within: Duration) {
        let start = self.cycles().await;
        self.wait_for("cycles", within, || async {
            self.cycles().await >= start + n
        })
        .await;
    }

    pub fn signal(&self, sig: &str) {
        let status = std::process::Command::new("kill")
            .args([format!("-{sig}"), self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success());
    }

    /// SIGKILL (no drain, no state save: a crash), then the full output.
    pub async fn kill(mut self) -> String {
        let _ = self.child.start_kill();
        tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .expect("daemon dies within 10 s after SIGKILL")
            .expect("wait for daemon");
        self.output()
    }

    /// Whether the process is still running.
    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then the exit code and the full output.
    pub async fn stop(mut self) -> (i32, String) {
        self.signal("TERM");
        let status = tokio::time::timeout(Duration::from_secs(20), self.child.wait())
            .await
            .expect("daemon stops within 20 s after SIGTERM")
            .expect("wait for daemon");
        (status.code().unwrap_or(-1), self.output())
    }

    /// POST /trigger with an optional bearer token and JSON body.
    pub async fn trigger(&self, token: Option<&str>, body: Option<&str>) -> u16 {
        let mut req = reqwest::Client::new().post(format!("{}/trigger", self.http));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req
                .header("content-type", "application/json")
                .body(b.to_string());
        }
        req.send().await.map(|r| r.status().as_u16()).unwrap_or(0)
    }
}

/// Sum of the samples of `name` (exact metric name, before `{`) matching `labels`.
pub fn parse_metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric, rest) = match series.split_once('{') {
                Some((m, r)) => (m, r),
                None => (series, ""),
            };
            if metric != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            all.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

/// Number of JSON log lines with this message.
pub fn log_count(output: &str, message: &str) -> usize {
    output
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["message"] == message)
        .count()
}

/// The trigger token the daemon tests configure (planted: it must never be printed).
pub const TRIGGER_TOKEN: &str = "trigger-token-PLANTED-0000";

/// A daemon config: the world's standard sources and portals with `maps`, `sync`
/// settings added to `[sync]`, and a `[server]` block on a free port with a trigger
/// token. Returns the text and the listen address.
pub fn daemon_config(w: &super::World, sync: &str, maps: &str) -> (String, String) {
    let listen = format!("127.0.0.1:{}", testservers::free_port());
    let text = w.config_with(&w.alpha.url(), &w.beta.url(), maps).replacen(
        "[sync]\n",
        &format!("[sync]\n{sync}\n"),
        1,
    ) + &format!(
        "\n[server]\nlisten = \"{listen}\"\ntrigger_token = {{ env = \"TRIGGER_TOKEN\" }}\n"
    );
    (text, listen)
}

/// The world's environment plus the trigger token.
pub fn daemon_env(w: &super::World) -> Vec<(String, String)> {
    let mut env = w.env.clone();
    env.push(("TRIGGER_TOKEN".into(), TRIGGER_TOKEN.into()));
    env
}
