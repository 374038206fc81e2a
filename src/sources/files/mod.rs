//! A directory of files: a mounted Kubernetes Secret, or systemd `LoadCredential=`
//! credentials (`$CREDENTIALS_DIRECTORY`). PATH is a file name under `dir`; `#KEY`
//! reads the file as a JSON object.
//!
//! Files are read with [`read_file_bounded_async`]: regular files only, at most 64 KiB,
//! off the async threads with a timeout; the version (mtime and size) is the opened
//! file's own.

mod config;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

pub use config::FilesSourceConfig;

use super::{Content, Secret, Source, SourceError, Version};
use crate::secret::{file_version, read_file_bounded_async, FileError, SECRET_FILE_TIMEOUT};

/// A directory of secret files.
pub struct FilesSource {
    name: String,
    dir: PathBuf,
}

impl FilesSource {
    pub fn new(name: &str, cfg: &FilesSourceConfig) -> FilesSource {
        FilesSource {
            name: name.to_string(),
            dir: cfg.dir.clone(),
        }
    }

    fn file(&self, path: &str) -> Result<PathBuf, SourceError> {
        if !config::plain_relative(path) {
            return Err(SourceError::Invalid(format!(
                "`{path}` must be a file name under {} (no `..`, no leading `/`)",
                self.dir.display()
            )));
        }
        Ok(self.dir.join(path))
    }
}

#[async_trait]
impl Source for FilesSource {
    fn kind(&self) -> &'static str {
        "files"
    }

    async fn read(&self, path: &str) -> Result<Secret, SourceError> {
        let file = self.file(path)?;
        tracing::debug!(source = %self.name, file = %file.display(), "reading secret file");
        let f = read_file_bounded_async(&file).await.map_err(|e| match e {
            FileError::NotFound(_) => SourceError::NotFound,
            FileError::Denied(_) => SourceError::Denied(format!("cannot read {}", file.display())),
            e @ (FileError::Io { .. } | FileError::TimedOut { .. }) => {
                SourceError::Unavailable(e.to_string())
            }
            e @ (FileError::NotRegular { .. }
            | FileError::TooLarge { .. }
            | FileError::NotUtf8(_)) => SourceError::Invalid(e.to_string()),
        })?;
        Ok(Secret {
            version: f.version(),
            created: f.modified,
            content: Content::Text(f.text),
        })
    }

    /// The mtime and size of each file, by path (a `stat`, no read). A file that cannot
    /// be looked at gets no version, so it is read and its own error reported.
    async fn version_info(
        &self,
        paths: &[String],
    ) -> HashMap<String, Result<Option<Version>, SourceError>> {
        let mut out = HashMap::new();
        for p in paths {
            let v = match self.file(p) {
                Ok(f) => Ok(stat_version(&f).await),
                Err(e) => Err(e),
            };
            out.insert(p.clone(), v);
        }
        out
    }

    async fn authenticate(&self) -> Result<(), SourceError> {
        match tokio::fs::read_dir(&self.dir).await {
            Ok(_) => Ok(()),
            Err(e) => Err(SourceError::Unavailable(format!(
                "cannot list {}: {e}",
                self.dir.display()
            ))),
        }
    }
}

/// A file's version by path, as [`crate::secret::SecretFile::version`] gives it for a read.
async fn stat_version(file: &Path) -> Option<Version> {
    let m = tokio::time::timeout(SECRET_FILE_TIMEOUT, tokio::fs::metadata(file))
        .await
        .ok()?
        .ok()?;
    let created = m.modified().ok();
    Some(Version {
        id: file_version(created, m.len())?,
        created,
    })
}
