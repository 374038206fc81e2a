//! Short keyed fingerprints: how values appear in plans, logs and the state file.
//!
//! HMAC-SHA256 under a per-installation key, cut to 12 hex characters. Equal values
//! have equal fingerprints, so a plan shows *that* something changed and an operator can
//! compare runs, while the key stops anyone who sees a fingerprint from testing guesses
//! (a short OAuth client id is easy to brute-force through a plain hash). The key lives
//! next to the state file (`<state_file>.key`, mode 0600); without a writable place an
//! ephemeral key is used and fingerprints only compare within one run.

use std::io::Write;
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
        let mut key = [0u8; KEY_LEN];
        rand::rng().fill_bytes(&mut key);
        Fingerprinter {
            key,
            persistent: false,
        }
    }

    /// The installation's key, created on first use next to the state file.
    pub fn for_state_file(state_file: &Path) -> Fingerprinter {
        let path = key_path(state_file);
        match load_or_create(&path) {
            Ok(key) => Fingerprinter {
                key,
                persistent: true,
            },
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "no persistent fingerprint key; using a per-run key");
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

fn key_path(state_file: &Path) -> PathBuf {
    let mut name = state_file
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_else(|| "state.json".into());
    name.push(".key");
    state_file.with_file_name(name)
}

fn load_or_create(path: &Path) -> std::io::Result<[u8; KEY_LEN]> {
    if let Ok(bytes) = std::fs::read(path) {
        if bytes.len() == KEY_LEN {
            let mut key = [0u8; KEY_LEN];
            key.copy_from_slice(&bytes);
            return Ok(key);
        }
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "fingerprint key has the wrong length",
        ));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut key = [0u8; KEY_LEN];
    rand::rng().fill_bytes(&mut key);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    match opts.open(path) {
        Ok(mut f) => {
            f.write_all(&key)?;
            f.sync_all()?;
            Ok(key)
        }
        // Another process created it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create(path),
        Err(e) => Err(e),
    }
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
}
