//! `kind = "files"` settings.

use std::any::Any;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use serde::Deserialize;

use super::FilesSource;
use crate::sources::{Source, SourceError, StoreConfig};

/// `kind = "files"`: a directory of files (a mounted Kubernetes Secret, systemd
/// `LoadCredential=` credentials). A prop's PATH is a file name under `dir`.
///
/// Each file must be a regular file (a symlink to one is fine) of at most 64 KiB;
/// anything else (a directory, a FIFO, a device) is an error for the props that use it.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesSourceConfig {
    #[serde(rename = "kind")]
    _kind: String,
    /// The directory. `$CREDENTIALS_DIRECTORY` is a good value under systemd.
    pub dir: PathBuf,
}

impl FilesSourceConfig {
    /// Settings for a directory (tests, examples).
    pub fn new(dir: impl Into<PathBuf>) -> FilesSourceConfig {
        FilesSourceConfig {
            _kind: "files".into(),
            dir: dir.into(),
        }
    }
}

/// Only plain names below `dir`: no `..`, no absolute paths.
pub(super) fn plain_relative(path: &str) -> bool {
    Path::new(path)
        .components()
        .all(|c| matches!(c, Component::Normal(_)))
}

#[async_trait]
impl StoreConfig for FilesSourceConfig {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn check_path(&self, path: &str) -> Result<(), String> {
        if path.contains("..") || path.starts_with('/') {
            return Err(
                "a files path is a file name under the source's dir, without `..` or a leading `/`"
                    .into(),
            );
        }
        Ok(())
    }

    async fn build(&self, name: &str) -> Result<Arc<dyn Source>, SourceError> {
        Ok(Arc::new(FilesSource::new(name, self)))
    }
}
