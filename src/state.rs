//! The state file: what authsync last confirmed on each portal, as keyed fingerprints
//! and source versions — never values.
//!
//! It lets `drift = "ignore"` skip portals whose sources did not move, lets a restart
//! avoid re-pushing what is in sync, and tells operators when each service was last
//! attempted and with what result. Written atomically (temp file, fsync, rename, fsync of
//! the directory, mode 0600). A missing, unreadable or corrupt file is never fatal: the
//! daemon starts from an empty state and compares with the portals, which is always safe.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Format version written into the file.
const FORMAT: u32 = 1;

/// The whole state file.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct State {
    pub format: u32,
    #[serde(default)]
    pub portals: BTreeMap<String, PortalState>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct PortalState {
    /// Unix time of the last cycle in which every service of this portal was in sync.
    #[serde(default)]
    pub last_success: Option<i64>,
    #[serde(default)]
    pub services: BTreeMap<String, ServiceState>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ServiceState {
    /// prop → fingerprint of the value confirmed on the portal (pushed and read back,
    /// or found equal). Only set when `result` is `ok`.
    #[serde(default)]
    pub confirmed: BTreeMap<String, String>,
    /// `source:path` → store version the confirmed values came from.
    #[serde(default)]
    pub versions: BTreeMap<String, String>,
    /// Unix time of the last attempt.
    pub last_attempt: i64,
    /// `ok`, `skipped`, `failed` or `rejected`.
    pub result: String,
    /// Why the last attempt failed (never contains values).
    #[serde(default)]
    pub error: Option<String>,
    /// prop → fingerprint of values the portal refused with `Bad keys` (it then cleared
    /// the service). While the sources still yield exactly these values, scheduled
    /// cycles do not push them again. Empty otherwise.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bad_keys: BTreeMap<String, String>,
}

/// Why the state file could not be used (the daemon then starts from empty).
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state file {path}: {source}; starting from an empty state (every portal is compared afresh)")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state file {path} is corrupt ({reason}); starting from an empty state (every portal is compared afresh) — it will be rewritten after the next cycle")]
    Corrupt { path: PathBuf, reason: String },
    #[error("cannot write state file {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

impl State {
    /// Loads the state; on any problem returns an empty state and the reason.
    pub fn load(path: &Path) -> (State, Option<StateError>) {
        let bytes = match std::fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return (State::empty(), None),
            Err(source) => {
                return (
                    State::empty(),
                    Some(StateError::Read {
                        path: path.to_path_buf(),
                        source,
                    }),
                )
            }
        };
        match serde_json::from_slice::<State>(&bytes) {
            Ok(s) if s.format == FORMAT => (s, None),
            Ok(s) => (
                State::empty(),
                Some(StateError::Corrupt {
                    path: path.to_path_buf(),
                    reason: format!("unknown format {}", s.format),
                }),
            ),
            Err(e) => (
                State::empty(),
                Some(StateError::Corrupt {
                    path: path.to_path_buf(),
                    // Valid JSON of another shape is not "invalid JSON" (a misleading hint).
                    reason: if e.is_data() {
                        format!(
                            "unexpected content at line {} column {}",
                            e.line(),
                            e.column()
                        )
                    } else {
                        format!("not valid JSON at line {} column {}", e.line(), e.column())
                    },
                }),
            ),
        }
    }

    pub fn empty() -> State {
        State {
            format: FORMAT,
            portals: BTreeMap::new(),
        }
    }

    pub fn service(&self, portal: &str, service: &str) -> Option<&ServiceState> {
        self.portals.get(portal)?.services.get(service)
    }

    /// Writes atomically: a temp file in the same directory, fsync, rename, fsync dir.
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let err = |source| StateError::Write {
            path: path.to_path_buf(),
            source,
        };
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(err)?;
        let json = serde_json::to_vec_pretty(self).map_err(|e| err(std::io::Error::other(e)))?;
        let mut builder = tempfile::Builder::new();
        builder.prefix(".authsync-state-");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o600));
        }
        let mut tmp = builder.tempfile_in(dir).map_err(err)?;
        tmp.write_all(&json).map_err(err)?;
        tmp.as_file().sync_all().map_err(err)?;
        tmp.persist(path).map_err(|e| err(e.error))?;
        if let Ok(d) = std::fs::File::open(dir) {
            // Make the rename itself durable.
            let _ = d.sync_all();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_atomic_and_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/state.json");
        let mut s = State::empty();
        s.portals.entry("p".into()).or_default().services.insert(
            "google".into(),
            ServiceState {
                result: "ok".into(),
                last_attempt: 5,
                ..Default::default()
            },
        );
        s.save(&path).unwrap();
        let (back, err) = State::load(&path);
        assert!(err.is_none());
        assert_eq!(back, s);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        // No temp files left behind.
        let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 1, "{names:?}");
    }

    #[test]
    fn corrupt_or_truncated_file_gives_empty_state_and_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        std::fs::write(&path, b"{\"format\":1,\"portals\":{\"p\":").unwrap();
        let (s, err) = State::load(&path);
        assert_eq!(s, State::empty());
        assert!(matches!(err, Some(StateError::Corrupt { .. })));
        assert!(State::load(&dir.path().join("missing.json")).1.is_none());
    }
}
