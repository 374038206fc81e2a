//! Secret values and the settings that point at them.
//!
//! Every secret authsync holds lives in a [`SecretString`] (from `secrecy`): it is
//! zeroized on drop and its `Debug` prints `[REDACTED]`, so a stray `{:?}` in a log line
//! cannot leak it. Settings such as `api_key` or `token` are [`SecretSetting`]s: an
//! environment variable, a file, or (discouraged) a literal in the config.

use std::fmt;
use std::path::{Path, PathBuf};

pub use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Where a secret setting (`token`, `secret_id`, `api_key`, `password`, `trigger_token`)
/// comes from.
///
/// ```toml
/// api_key = { env = "PROD_PORTAL_API_KEY" }      # an environment variable
/// api_key = { file = "/run/secrets/api-key" }    # a file; one trailing newline is trimmed
/// api_key = "sk-…"                               # a literal (avoid: the config leaks it)
/// ```
#[derive(Clone, Deserialize)]
#[serde(
    untagged,
    expecting = "expected a string, { env = \"VAR\" } or { file = \"/path\" }"
)]
pub enum SecretSetting {
    /// Read from this environment variable.
    Env {
        /// Variable name.
        env: String,
    },
    /// Read from this file (e.g. a mounted Kubernetes Secret or a systemd credential).
    File {
        /// File path.
        file: PathBuf,
    },
    /// The value itself.
    Literal(SecretString),
}

impl fmt::Debug for SecretSetting {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SecretSetting::Env { env } => write!(f, "env:{env}"),
            SecretSetting::File { file } => write!(f, "file:{}", file.display()),
            SecretSetting::Literal(_) => f.write_str("literal:**REDACTED**"),
        }
    }
}

/// Why a secret setting could not be read. Never contains the value.
#[derive(Debug, thiserror::Error)]
pub enum SettingError {
    #[error("environment variable {0} is not set (export it, or point the setting at a file)")]
    EnvMissing(String),
    #[error("environment variable {0} is empty")]
    EnvEmpty(String),
    #[error("cannot read {path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0} is empty")]
    FileEmpty(PathBuf),
    #[error("{0} is not UTF-8 text")]
    FileNotUtf8(PathBuf),
}

impl SecretSetting {
    /// Reads the secret now. Env and file settings are read at every call, so a
    /// rotated file (projected token, renewed credential) is picked up without a restart.
    pub fn read(&self) -> Result<SecretString, SettingError> {
        match self {
            SecretSetting::Env { env } => match std::env::var(env) {
                Ok(v) if v.is_empty() => Err(SettingError::EnvEmpty(env.clone())),
                Ok(v) => Ok(SecretString::from(v)),
                Err(_) => Err(SettingError::EnvMissing(env.clone())),
            },
            SecretSetting::File { file } => read_secret_file(file),
            SecretSetting::Literal(s) => Ok(s.clone()),
        }
    }

    /// A short description of where the value comes from, safe to print.
    pub fn describe(&self) -> String {
        format!("{self:?}")
    }
}

/// Reads a secret from a file, trimming one trailing newline (`echo` adds it).
pub fn read_secret_file(path: &Path) -> Result<SecretString, SettingError> {
    let bytes = std::fs::read(path).map_err(|source| SettingError::File {
        path: path.to_path_buf(),
        source,
    })?;
    let mut text =
        String::from_utf8(bytes).map_err(|_| SettingError::FileNotUtf8(path.to_path_buf()))?;
    trim_one_newline(&mut text);
    if text.is_empty() {
        return Err(SettingError::FileEmpty(path.to_path_buf()));
    }
    Ok(SecretString::from(text))
}

/// Drops one trailing `\n` (or `\r\n`), the way shells and `kubectl create secret` leave it.
pub fn trim_one_newline(text: &mut String) {
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
}
