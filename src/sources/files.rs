//! A directory of files: a mounted Kubernetes Secret, or systemd `LoadCredential=`
//! credentials (`$CREDENTIALS_DIRECTORY`). PATH is a file name under `dir`; `#KEY`
//! reads the file as a JSON object.

use std::path::{Component, Path, PathBuf};

use std::collections::HashMap;

use async_trait::async_trait;

use super::{Content, Secret, Source, SourceError};
use crate::config::FilesSourceConfig;
use crate::secret::{trim_one_newline, SecretString};

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
        let rel = Path::new(path);
        // Only plain names below `dir`: no `..`, no absolute paths.
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(SourceError::Invalid(format!(
                "`{path}` must be a file name under {} (no `..`, no leading `/`)",
                self.dir.display()
            )));
        }
        Ok(self.dir.join(rel))
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
        let bytes = match tokio::fs::read(&file).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SourceError::NotFound)
            }
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                return Err(SourceError::Denied(format!(
                    "cannot read {}",
                    file.display()
                )))
            }
            Err(e) => {
                return Err(SourceError::Unavailable(format!(
                    "cannot read {}: {e}",
                    file.display()
                )))
            }
        };
        let mut text = String::from_utf8(bytes)
            .map_err(|_| SourceError::Invalid(format!("{} is not UTF-8 text", file.display())))?;
        trim_one_newline(&mut text);
        let version = stat_version(&file).await;
        Ok(Secret {
            version,
            content: Content::Text(SecretString::from(text)),
        })
    }

    async fn versions(
        &self,
        paths: &[String],
    ) -> HashMap<String, Result<Option<String>, SourceError>> {
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

/// A file's version: its mtime and size (a Kubernetes Secret update swaps the `..data`
/// symlink, which changes both).
async fn stat_version(file: &Path) -> Option<String> {
    let m = tokio::fs::metadata(file).await.ok()?;
    let mtime = m
        .modified()
        .ok()?
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?;
    Some(format!(
        "{}.{:09}-{}",
        mtime.as_secs(),
        mtime.subsec_nanos(),
        m.len()
    ))
}
