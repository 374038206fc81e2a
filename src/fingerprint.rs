//! Short keyed fingerprints: how values appear in plans, logs and the state file.
//!
//! HMAC-SHA256 under a per-installation key, cut to 12 hex characters. Equal values
//! have equal fingerprints, so a plan shows *that* something changed and an operator can
//! compare runs, while the key stops anyone who sees a fingerprint from testing guesses
//! (a short OAuth client id is easy to brute-force through a plain hash). The key lives
//! next to the state file (`<state_file>.key`, mode 0600).
//!
//! The key file is written atomically (temporary file, fsync, rename, fsync of the
//! directory), so a crash leaves either no key or a whole one. Anything else found there
//! is reported as a warning saying what happens next:
//! - a file of the wrong length (a crash during a non-atomic write by an older version,
//!   a truncated copy) holds no usable key, and its key cannot be recovered: it is
//!   **replaced** by a new key, so fingerprints agree across runs again from now on
//!   (the state file's no longer match: every service is compared afresh once);
//! - a file that cannot be read (permissions, not a regular file) is left alone for
//!   the operator: this run uses a per-run key;
//! - no key file and no way to create one: a per-run key.
//!
//! With a per-run key, fingerprints only compare within one run: every run compares
//! every service afresh, and holds and drift checks never match across restarts.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::Sha256;

use crate::secret::{ExposeSecret, SecretString};

const KEY_LEN: usize = 32;

/// Computes fingerprints under one key.
#[derive(Clone)]
pub struct Fingerprinter {
    key: [u8; KEY_LEN],
    persistent: bool,
}

impl std::fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fingerprinter")
            .field("persistent", &self.persistent)
            .finish_non_exhaustive()
    }
}

impl Fingerprinter {
    /// A key that lasts for this process only.
    pub fn ephemeral() -> Fingerprinter {
        Fingerprinter {
            key: new_key(),
            persistent: false,
        }
    }

    /// The installation's key, created on first use next to the state file. Problems
    /// with the key file are logged as warnings (see the module documentation).
    pub fn for_state_file(state_file: &Path) -> Fingerprinter {
        let path = key_path(state_file);
        match load_or_create(&path) {
            Ok((key, outcome)) => {
                match outcome {
                    KeyFile::Loaded => {}
                    KeyFile::Created => {
                        tracing::debug!(path = %path.display(), "created the fingerprint key");
                    }
                    KeyFile::Replaced { len } => tracing::warn!(
                        path = %path.display(),
                        bytes = len,
                        "the fingerprint key file held {len} bytes instead of {KEY_LEN} (interrupted write?) and was replaced by a new key: fingerprints in the state file no longer match, so every service is compared afresh once"
                    ),
                }
                Fingerprinter {
                    key,
                    persistent: true,
                }
            }
            Err(KeyError::Unreadable(e)) => {
                tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "cannot read the fingerprint key file; using a per-run key: fingerprints will not match the state file's, so every run compares every service afresh. Make the file readable, or delete it to create a new key"
                );
                Fingerprinter::ephemeral()
            }
            Err(KeyError::Create(e)) => {
                tracing::warn!(
                    path = %path.display(),
                    error = %e,
                    "cannot create the fingerprint key file; using a per-run key: fingerprints will not match across runs, so every run compares every service afresh. Make the state file's directory writable"
                );
                Fingerprinter::ephemeral()
            }
        }
    }

    /// Whether fingerprints are comparable across runs.
    pub fn is_persistent(&self) -> bool {
        self.persistent
    }

    /// `fp:` and 12 hex characters.
    pub fn of(&self, value: &SecretString) -> String {
        self.of_str(value.expose_secret())
    }

    pub fn of_str(&self, value: &str) -> String {
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.key) {
            Ok(m) => m,
            // HMAC takes keys of any length; this arm cannot be reached.
            Err(_) => return "fp:????????????".into(),
        };
        mac.update(value.as_bytes());
        let digest = mac.finalize().into_bytes();
        let hex: String = digest.iter().take(6).map(|b| format!("{b:02x}")).collect();
        format!("fp:{hex}")
    }
}

fn new_key() -> [u8; KEY_LEN] {
    let mut key = [0u8; KEY_LEN];
    rand::rng().fill_bytes(&mut key);
    key
}

fn key_path(state_file: &Path) -> PathBuf {
    let mut name = state_file
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "state.json".into());
    name.push(".key");
    state_file.with_file_name(name)
}

/// How the key was obtained.
#[derive(Debug, PartialEq, Eq)]
enum KeyFile {
    Loaded,
    Created,
    /// The file held `len` bytes, not a key, and now holds a new key.
    Replaced {
        len: u64,
    },
}

#[derive(Debug)]
enum KeyError {
    /// The file exists but cannot be read; it is left alone.
    Unreadable(std::io::Error),
    /// No usable file and none could be written.
    Create(std::io::Error),
}

/// What is at the key path.
enum Found {
    Key([u8; KEY_LEN]),
    Missing,
    WrongLength(u64),
}

fn load_or_create(path: &Path) -> Result<([u8; KEY_LEN], KeyFile), KeyError> {
    match read_key(path).map_err(KeyError::Unreadable)? {
        Found::Key(key) => Ok((key, KeyFile::Loaded)),
        Found::Missing => match write_key(path, &new_key(), false) {
            Ok(()) => settle(path, KeyFile::Created),
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                settle(path, KeyFile::Loaded)
            }
            Err(e) => Err(KeyError::Create(e)),
        },
        Found::WrongLength(len) => {
            write_key(path, &new_key(), true).map_err(KeyError::Create)?;
            settle(path, KeyFile::Replaced { len })
        }
    }
}

/// Reads back the key just written (or found written by another process). Racing
/// creators thus share the first one's key (the others' links fail); racing replacers
/// almost always share the last rename's.
fn settle(path: &Path, outcome: KeyFile) -> Result<([u8; KEY_LEN], KeyFile), KeyError> {
    match read_key(path).map_err(KeyError::Unreadable)? {
        Found::Key(key) => Ok((key, outcome)),
        Found::Missing => Err(KeyError::Unreadable(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            "the key file vanished right after it was written",
        ))),
        Found::WrongLength(len) => Err(KeyError::Unreadable(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("the key file holds {len} bytes right after it was written"),
        ))),
    }
}

/// Reads at most a key's worth: a regular file of exactly [`KEY_LEN`] bytes is a key.
/// Checked before opening, so a FIFO or device at the path cannot block or flood us.
fn read_key(path: &Path) -> std::io::Result<Found> {
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Found::Missing),
        Err(e) => return Err(e),
    };
    if !meta.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    let mut file = std::fs::File::open(path)?;
    let mut bytes = Vec::with_capacity(KEY_LEN + 1);
    (&mut file)
        .take(KEY_LEN as u64 + 1)
        .read_to_end(&mut bytes)?;
    match <[u8; KEY_LEN]>::try_from(bytes.as_slice()) {
        Ok(key) => Ok(Found::Key(key)),
        Err(_) => Ok(Found::WrongLength(file.metadata()?.len())),
    }
}

/// Writes `key` to `path` atomically, mode 0600: a temporary file in the same
/// directory, fsync, rename (`replace`) or link-if-absent (not `replace`, so a racing
/// creator's key is never overwritten: `AlreadyExists`), fsync of the directory.
fn write_key(path: &Path, key: &[u8; KEY_LEN], replace: bool) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix(".authsync-key-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o600));
    }
    let mut tmp = builder.tempfile_in(dir)?;
    tmp.write_all(key)?;
    tmp.as_file().sync_all()?;
    if replace {
        tmp.persist(path).map_err(|e| e.error)?;
    } else {
        tmp.persist_noclobber(path).map_err(|e| e.error)?;
    }
    if let Ok(d) = std::fs::File::open(dir) {
        // Make the rename itself durable.
        let _ = d.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_keyed_and_short() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        let a = Fingerprinter::for_state_file(&state);
        let b = Fingerprinter::for_state_file(&state);
        assert!(a.is_persistent());
        assert_eq!(a.of_str("secret"), b.of_str("secret"));
        assert_ne!(a.of_str("secret"), a.of_str("secret2"));
        assert_ne!(
            a.of_str("secret"),
            Fingerprinter::ephemeral().of_str("secret")
        );
        assert_eq!(a.of_str("x").len(), 15);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("state.json.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn a_short_key_file_is_replaced_and_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("state.json.key");
        for broken in [&b""[..], &[7u8; 16][..], &[7u8; 33][..]] {
            std::fs::write(&key, broken).unwrap();
            let (first, outcome) = load_or_create(&key).unwrap();
            assert_eq!(
                outcome,
                KeyFile::Replaced {
                    len: broken.len() as u64
                }
            );
            assert_eq!(std::fs::read(&key).unwrap(), first);
            let (again, outcome) = load_or_create(&key).unwrap();
            assert_eq!((again, outcome), (first, KeyFile::Loaded));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&key).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        // No temporary files are left behind.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, ["state.json.key"]);
    }

    #[test]
    fn an_unreadable_key_file_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state.json");
        // A directory where the key belongs: not a regular file, nothing to replace.
        std::fs::create_dir(dir.path().join("state.json.key")).unwrap();
        let err = load_or_create(&key_path(&state)).unwrap_err();
        assert!(matches!(err, KeyError::Unreadable(_)), "{err:?}");
        assert!(dir.path().join("state.json.key").is_dir());
        let f = Fingerprinter::for_state_file(&state);
        assert!(!f.is_persistent());
    }

    #[test]
    fn racing_creators_agree() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("state.json.key");
        let keys: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4)
                .map(|_| s.spawn(|| load_or_create(&key).unwrap().0))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(keys.iter().all(|k| *k == keys[0]));
        assert_eq!(std::fs::read(&key).unwrap(), keys[0]);
    }
}
