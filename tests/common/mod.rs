//! Shared test harness: a world of real servers (OpenBao, moto) and in-process portal
//! doubles, a config writer, and a runner for the real `authsync` binary that checks
//! every output for planted secrets.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

pub mod daemon;

use portal_double::{ApiKey, DoubleConfig, PortalDouble};
use testservers::{Moto, OpenBao};

pub const GOOGLE_ID: &str = "google-client-id-PLANTED-1111";
pub const GOOGLE_SECRET: &str = "google-client-secret-PLANTED-2222";
pub const GOOGLE_SECRET_2: &str = "google-client-secret-ROTATED-3333";
pub const TG_ALPHA: &str = "111111111:AAalphaPLANTEDtokenXXXXXXXXXXXXXXXXXX";
pub const TG_BETA: &str = "222222222:AAbetaPLANTEDtokenYYYYYYYYYYYYYYYYYYYY";
pub const S3_ACCESS: &str = "AKIAPLANTED4444";
pub const S3_SECRET: &str = "s3-secret-access-key-PLANTED-5555";
pub const S3_SECRET_2: &str = "s3-secret-access-key-ROTATED-6666";
pub const GCS_JSON: &str =
    r#"{"type":"service_account","private_key":"-----BEGIN PRIVATE KEY-----PLANTED-7777"}"#;
pub const ALPHA_KEY: &str = "sk-alpha-PLANTED-api-key-8888";
pub const BETA_KEY: &str = "sk-beta-PLANTED-api-key-9999";

/// Every value a test plants; none may ever appear in authsync's output.
pub const PLANTED: &[&str] = &[
    GOOGLE_ID,
    GOOGLE_SECRET,
    GOOGLE_SECRET_2,
    TG_ALPHA,
    TG_BETA,
    S3_ACCESS,
    S3_SECRET,
    S3_SECRET_2,
    "PLANTED-7777",
    ALPHA_KEY,
    BETA_KEY,
];

pub const AUTHSERVICE: &str = "/api/2.0/settings/authservice";

/// The output of one authsync run.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics if any planted secret appears in stdout or stderr.
    pub fn assert_no_secrets(&self, extra: &[&str]) -> &Self {
        for secret in PLANTED.iter().chain(extra) {
            for (name, text) in [("stdout", &self.stdout), ("stderr", &self.stderr)] {
                // Reporting the secret's index, not the secret, keeps the test log clean too.
                let idx = PLANTED
                    .iter()
                    .chain(extra)
                    .position(|s| s == secret)
                    .unwrap_or(0);
                assert!(
                    !text.contains(secret),
                    "planted secret #{idx} leaked into {name}:\n{text}"
                );
            }
        }
        self
    }

    pub fn output(&self) -> String {
        format!(
            "--- exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Panics if any planted secret (or one of `extra`) appears in `text`, naming `what` and
/// the secret's index, never the secret.
pub fn assert_no_planted(text: &str, what: &str, extra: &[&str]) {
    for (i, secret) in PLANTED.iter().chain(extra).enumerate() {
        assert!(
            !text.contains(secret),
            "planted secret #{i} leaked into {what}"
        );
    }
}

/// Runs the authsync binary with `args`, the given config and environment.
pub async fn authsync(config: &Path, args: &[&str], env: &[(String, String)]) -> Run {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_authsync"))
        .arg("-c")
        .arg(config)
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("AUTHSYNC_CONFIG")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .kill_on_drop(true)
        .output()
        .await
        .expect("run the authsync binary");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Real stores, two portal doubles, a temp dir.
pub struct World {
    pub bao: OpenBao,
    pub moto: Moto,
    pub alpha: PortalDouble,
    pub beta: PortalDouble,
    pub dir: tempfile::TempDir,
    pub env: Vec<(String, String)>,
}

pub fn double_config(key: &str) -> DoubleConfig {
    DoubleConfig {
        api_keys: vec![ApiKey {
            key: key.into(),
            write: true,
            admin: true,
        }],
        ..Default::default()
    }
}

impl World {
    /// Starts everything and seeds the standard secrets.
    pub async fn start() -> World {
        Self::start_with(double_config(ALPHA_KEY), double_config(BETA_KEY)).await
    }

    pub async fn start_with(alpha: DoubleConfig, beta: DoubleConfig) -> World {
        let (bao, moto) = tokio::join!(OpenBao::start(), Moto::start());
        let alpha = PortalDouble::start(alpha)
            .await
            .expect("start portal double alpha");
        let beta = PortalDouble::start(beta)
            .await
            .expect("start portal double beta");
        Self::from_parts(bao, moto, alpha, beta).await
    }

    /// A world from servers and doubles already started; seeds the standard secrets.
    pub async fn from_parts(
        bao: OpenBao,
        moto: Moto,
        alpha: PortalDouble,
        beta: PortalDouble,
    ) -> World {
        bao.kv2_put(
            "secret",
            "oauth/google",
            &[("client_id", GOOGLE_ID), ("client_secret", GOOGLE_SECRET)],
        )
        .await;
        bao.enable_kv1("kv1").await;
        bao.kv1_put("kv1", "telegram/alpha", &[("token", TG_ALPHA)])
            .await;
        bao.kv1_put("kv1", "telegram/beta", &[("token", TG_BETA)])
            .await;
        moto.create_secret("docspace/backup-s3", &s3_json(S3_ACCESS, S3_SECRET))
            .await;
        moto.create_secret("docspace/gcs", GCS_JSON).await;
        let mut env = moto.env();
        env.push(("VAULT_TOKEN".into(), bao.root_token().to_string()));
        env.push(("ALPHA_KEY".into(), ALPHA_KEY.into()));
        env.push(("BETA_KEY".into(), BETA_KEY.into()));
        let dir = tempfile::tempdir().expect("temp dir");
        World {
            bao,
            moto,
            alpha,
            beta,
            dir,
            env,
        }
    }

    /// The standard config (sources, both portals, four services) plus `extra` TOML.
    pub fn standard_config(&self) -> String {
        self.config_with(&self.alpha.url(), &self.beta.url(), STANDARD_MAPS)
    }

    pub fn config_with(&self, alpha_url: &str, beta_url: &str, maps: &str) -> String {
        format!(
            r#"
[sync]
state_file = "{state}"

[sources.vault]
kind = "vault"
address = "{bao}"

[sources.aws]
kind = "aws"
endpoint_url = "{moto}"
region = "us-east-1"

[portals.alpha]
url = "{alpha_url}"
api_key = {{ env = "ALPHA_KEY" }}
timeout = "3s"

[portals.beta]
url = "{beta_url}"
api_key = {{ env = "BETA_KEY" }}
timeout = "3s"
{maps}
"#,
            state = self.dir.path().join("state.json").display(),
            bao = self.bao.addr(),
            moto = self.moto.endpoint(),
        )
    }

    /// Writes a config file and returns its path.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write config");
        path
    }

    pub async fn run(&self, config: &Path, args: &[&str]) -> Run {
        let run = authsync(config, args, &self.env).await;
        run.assert_no_secrets(&[]);
        run
    }

    /// A new KV v2 version of `secret/oauth/google` with a new client secret.
    pub async fn rotate_google(&self, client_secret: &str) {
        self.bao
            .kv2_put(
                "secret",
                "oauth/google",
                &[("client_id", GOOGLE_ID), ("client_secret", client_secret)],
            )
            .await;
    }

    /// POSTs to settings/authservice seen by both doubles.
    pub fn posts(&self) -> usize {
        self.alpha.count("POST", AUTHSERVICE) + self.beta.count("POST", AUTHSERVICE)
    }

    pub fn clear_requests(&self) {
        self.alpha.clear_requests();
        self.beta.clear_requests();
    }
}

pub fn s3_json(access: &str, secret: &str) -> String {
    serde_json::json!({ "access_key_id": access, "secret_access_key": secret }).to_string()
}

pub const STANDARD_MAPS: &str = r#"
[[map]]
service = "google"
props.googleClientId = "vault:secret/oauth/google#client_id"
props.googleClientSecret = "vault:secret/oauth/google#client_secret"

[[map]]
service = "telegram"
props.telegramBotToken = "vault:kv1/telegram/{portal}#token"
props.telegramBotName = { value = "acme_docs_bot" }

[[map]]
service = "s3"
props.acesskey = "aws:docspace/backup-s3#access_key_id"
props.secretaccesskey = { source = "aws", path = "docspace/backup-s3", key = "secret_access_key" }

[[map]]
service = "googlecloud"
portals = ["alpha"]
props.json = "aws:docspace/gcs"
"#;

/// The prop names of every POST body a double received, per service, in order.
pub fn posted(double: &PortalDouble) -> Vec<(String, Vec<String>)> {
    double
        .posts()
        .iter()
        .map(|b| {
            let name = b["name"].as_str().unwrap_or_default().to_string();
            let props = b["props"]
                .as_array()
                // DocSpace sends `name`, Workspace's AjaxPro call `Name`.
                .map(|a| {
                    a.iter()
                        .map(|p| {
                            p["name"]
                                .as_str()
                                .or(p["Name"].as_str())
                                .unwrap_or_default()
                                .to_string()
                        })
                        .collect()
                })
                .unwrap_or_default();
            (name, props)
        })
        .collect()
}
