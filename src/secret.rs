//! Secret values and the settings that point at them.
//!
//! Every secret authsync holds lives in a [`SecretString`] (from `secrecy`): it is
//! zeroized on drop and its `Debug` prints `[REDACTED]`, so a stray `{:?}` in a log line
//! cannot leak it. Settings such as `api_key` or `token` are [`SecretSetting`]s: an
//! environment variable, a file, or (discouraged) a literal in the config.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

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
    #[error(transparent)]
    File(#[from] FileError),
    #[error("{0} is empty")]
    FileEmpty(PathBuf),
}

impl SecretSetting {
    /// Reads the secret now. Env and file settings are read at every call, so a
    /// rotated file (projected token, renewed credential) is picked up without a restart.
    ///
    /// A file is read with [`read_file_bounded`]: it cannot hang or exhaust memory, but
    /// it is a blocking call; async code should prefer [`SecretSetting::read_async`].
    pub fn read(&self) -> Result<SecretString, SettingError> {
        match self {
            SecretSetting::File { file } => read_secret_file(file),
            other => other.read_inline(),
        }
    }

    /// [`SecretSetting::read`] with a file read off the async threads and bounded by
    /// [`SECRET_FILE_TIMEOUT`].
    pub async fn read_async(&self) -> Result<SecretString, SettingError> {
        match self {
            SecretSetting::File { file } => read_secret_file_async(file).await,
            other => other.read_inline(),
        }
    }

    fn read_inline(&self) -> Result<SecretString, SettingError> {
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

/// Reads a secret from a file, trimming one trailing newline (`echo` adds it). Bounded
/// like [`read_file_bounded`]; an empty file is an error.
pub fn read_secret_file(path: &Path) -> Result<SecretString, SettingError> {
    non_empty(path, read_file_bounded(path)?)
}

/// [`read_secret_file`] off the async threads, within [`SECRET_FILE_TIMEOUT`].
pub async fn read_secret_file_async(path: &Path) -> Result<SecretString, SettingError> {
    non_empty(path, read_file_bounded_async(path).await?)
}

fn non_empty(path: &Path, file: SecretFile) -> Result<SecretString, SettingError> {
    if file.text.expose_secret().is_empty() {
        return Err(SettingError::FileEmpty(path.to_path_buf()));
    }
    Ok(file.text)
}

/// Largest secret file authsync reads (the `files` source and `{ file = … }` settings).
/// Portal props are short texts; anything bigger is a mistake (or `/dev/zero`).
pub const MAX_SECRET_FILE: u64 = 64 * 1024;

/// Longest a secret file read may take before it is reported (a stuck network
/// filesystem); the cycle goes on without it.
pub const SECRET_FILE_TIMEOUT: Duration = Duration::from_secs(5);

/// A secret file's text (one trailing newline trimmed) and the file facts that were
/// current when it was read, taken from the opened file itself.
pub struct SecretFile {
    pub text: SecretString,
    /// Modification time of the file that was read.
    pub modified: Option<SystemTime>,
    /// Its size in bytes.
    pub len: u64,
}

impl SecretFile {
    /// A version string for the file: mtime and size (a Kubernetes Secret update swaps
    /// the `..data` symlink, which changes both).
    pub fn version(&self) -> Option<String> {
        file_version(self.modified, self.len)
    }
}

/// `SECONDS.NANOS-SIZE` from a file's mtime and size; `None` without an mtime.
pub fn file_version(modified: Option<SystemTime>, len: u64) -> Option<String> {
    let mtime = modified?.duration_since(std::time::UNIX_EPOCH).ok()?;
    Some(format!(
        "{}.{:09}-{len}",
        mtime.as_secs(),
        mtime.subsec_nanos()
    ))
}

/// Why a secret file could not be read. Names the file, never its content.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("{} does not exist", .0.display())]
    NotFound(PathBuf),
    #[error("cannot read {}: permission denied", .0.display())]
    Denied(PathBuf),
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is {what}, not a regular file (a secret file must be a regular file or a symlink to one)", path.display())]
    NotRegular { path: PathBuf, what: &'static str },
    #[error("{} is larger than {} KiB, the limit for a secret file (a portal setting is a short text); point the setting at the secret itself", path.display(), MAX_SECRET_FILE / 1024)]
    TooLarge { path: PathBuf },
    #[error("reading {} took longer than {}s; check the filesystem it is on", path.display(), SECRET_FILE_TIMEOUT.as_secs())]
    TimedOut { path: PathBuf },
    #[error("{} is not UTF-8 text", .0.display())]
    NotUtf8(PathBuf),
}

/// Reads a secret file safely: only a regular file (a symlink to one is fine) of at
/// most [`MAX_SECRET_FILE`] bytes. The file is opened non-blocking, so a FIFO without
/// a writer cannot hang the call, and its type, size and mtime come from the opened
/// file (`fstat`), never from a second lookup by path: a symlink swapped between the
/// two (Kubernetes `..data`) cannot pair new file facts with old content.
///
/// Blocking: call it from a blocking context, or use [`read_file_bounded_async`].
pub fn read_file_bounded(path: &Path) -> Result<SecretFile, FileError> {
    use std::io::Read;
    let mut opts = std::fs::OpenOptions::new();
    opts.read(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY);
    }
    let file = opts.open(path).map_err(|e| io_error(path, e))?;
    let meta = file.metadata().map_err(|e| io_error(path, e))?;
    if !meta.is_file() {
        return Err(FileError::NotRegular {
            path: path.to_path_buf(),
            what: file_kind(&meta.file_type()),
        });
    }
    if meta.len() > MAX_SECRET_FILE {
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    // One byte over the limit tells a file that grew since the fstat.
    file.take(MAX_SECRET_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| io_error(path, e))?;
    if bytes.len() as u64 > MAX_SECRET_FILE {
        zeroize_vec(bytes);
        return Err(FileError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let mut text = match String::from_utf8(bytes) {
        Ok(t) => t,
        Err(e) => {
            zeroize_vec(e.into_bytes());
            return Err(FileError::NotUtf8(path.to_path_buf()));
        }
    };
    trim_one_newline(&mut text);
    Ok(SecretFile {
        text: SecretString::from(text),
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

/// [`read_file_bounded`] on a blocking thread, given up after [`SECRET_FILE_TIMEOUT`].
pub async fn read_file_bounded_async(path: &Path) -> Result<SecretFile, FileError> {
    let owned = path.to_path_buf();
    let task = tokio::task::spawn_blocking(move || read_file_bounded(&owned));
    match tokio::time::timeout(SECRET_FILE_TIMEOUT, task).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(FileError::Io {
            path: path.to_path_buf(),
            source: std::io::Error::other("the read was interrupted"),
        }),
        Err(_) => Err(FileError::TimedOut {
            path: path.to_path_buf(),
        }),
    }
}

fn io_error(path: &Path, e: std::io::Error) -> FileError {
    match e.kind() {
        std::io::ErrorKind::NotFound => FileError::NotFound(path.to_path_buf()),
        std::io::ErrorKind::PermissionDenied => FileError::Denied(path.to_path_buf()),
        _ => FileError::Io {
            path: path.to_path_buf(),
            source: e,
        },
    }
}

/// What a file that is not a regular file is, in words.
fn file_kind(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if t.is_char_device() {
            return "a character device";
        }
        if t.is_block_device() {
            return "a block device";
        }
        if t.is_socket() {
            return "a socket";
        }
    }
    if t.is_dir() {
        "a directory"
    } else {
        "not a regular file"
    }
}

fn zeroize_vec(mut bytes: Vec<u8>) {
    use secrecy::zeroize::Zeroize;
    bytes.zeroize();
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn err_of(path: &Path) -> String {
        match read_file_bounded(path) {
            Ok(_) => panic!("{} was read", path.display()),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn special_files_are_refused_by_type_and_size() {
        let dir = tempfile::tempdir().unwrap();
        let started = Instant::now();
        assert!(err_of(Path::new("/dev/zero")).contains("is a character device"));
        assert!(err_of(dir.path()).contains("is a directory"));
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        // SAFETY: a valid, NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // No writer: a blocking open would hang here.
        assert!(err_of(&fifo).contains("is a FIFO"));
        let big = dir.path().join("big");
        std::fs::write(&big, vec![b'a'; 65 * 1024]).unwrap();
        let e = err_of(&big);
        assert!(e.contains("larger than 64 KiB") && e.contains("big"), "{e}");
        assert!(err_of(&dir.path().join("missing")).contains("does not exist"));
        assert!(started.elapsed() < SECRET_FILE_TIMEOUT);
    }

    #[test]
    fn a_symlink_to_a_regular_file_is_read_with_the_opened_files_facts() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("data");
        std::fs::write(&target, "value\n").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let f = read_file_bounded(&link).unwrap();
        assert_eq!(f.text.expose_secret(), "value");
        assert_eq!(f.len, 6);
        let meta = std::fs::metadata(&target).unwrap();
        assert_eq!(f.version(), file_version(meta.modified().ok(), 6));
        // Exactly at the limit is fine.
        std::fs::write(&target, vec![b'b'; MAX_SECRET_FILE as usize]).unwrap();
        assert!(read_file_bounded(&link).is_ok());
    }

    #[tokio::test]
    async fn settings_read_async_with_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").unwrap();
        let e = SecretSetting::File { file: empty }.read_async().await.err();
        assert!(e.is_some_and(|e| e.to_string().ends_with("is empty")));
        let zero = SecretSetting::File {
            file: PathBuf::from("/dev/zero"),
        };
        let e = zero.read_async().await.err().map(|e| e.to_string());
        assert!(
            e.as_deref()
                .is_some_and(|e| e.starts_with("/dev/zero is a character device")),
            "{e:?}"
        );
        let ok = dir.path().join("ok");
        std::fs::write(&ok, "s3cr3t\r\n").unwrap();
        let v = SecretSetting::File { file: ok }.read_async().await.unwrap();
        assert_eq!(v.expose_secret(), "s3cr3t");
    }
}
