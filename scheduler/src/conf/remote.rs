//! `--conf s3://bucket/prefix`: a configuration folder kept in object
//! storage, so that a driver container reads the current config without an
//! image rebuild. The folder is copied to a local directory once per
//! process and loaded like any other; errors name the remote files.

use crate::conf::error::ConfigError;
use chainbatch_executor::storage;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use std::path::{Path, PathBuf};

/// True when `--conf` names a remote folder.
pub fn is_remote(conf: &Path) -> bool {
    conf.to_str()
        .is_some_and(|s| s.contains("://") && !s.starts_with("file://"))
}

/// Copies every file below `uri` into a fresh local folder and returns it.
pub async fn fetch(uri: &str) -> Result<PathBuf, ConfigError> {
    let fail = |message: String| ConfigError::new("--conf", message);
    let root = storage::resolve(uri).map_err(|e| fail(e.to_string()))?;
    let metas: Vec<object_store::ObjectMeta> = root
        .store
        .list(Some(&root.path))
        .try_collect()
        .await
        .map_err(|e| fail(format!("cannot list {uri}: {e}")))?;
    if metas.is_empty() {
        return Err(fail(format!(
            "{uri} holds no files; expected base/*.yml and one folder per environment"
        )));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let local =
        std::env::temp_dir().join(format!("chainbatch-conf-{}-{nanos}", std::process::id()));
    for m in metas {
        let rel = m
            .location
            .as_ref()
            .strip_prefix(root.path.as_ref())
            .unwrap_or(m.location.as_ref())
            .trim_start_matches('/')
            .to_string();
        if rel.is_empty() || rel.split('/').any(|s| s == "..") {
            continue;
        }
        let bytes = root
            .store
            .get(&m.location)
            .await
            .map_err(|e| fail(format!("cannot read {uri}/{rel}: {e}")))?
            .bytes()
            .await
            .map_err(|e| fail(format!("cannot read {uri}/{rel}: {e}")))?;
        let target = local.join(&rel);
        if let Some(dir) = target.parent() {
            std::fs::create_dir_all(dir)
                .map_err(|e| fail(format!("cannot copy {uri} to {}: {e}", dir.display())))?;
        }
        std::fs::write(&target, &bytes)
            .map_err(|e| fail(format!("cannot copy {uri} to {}: {e}", target.display())))?;
    }
    Ok(local)
}

/// `path` below `to` instead of `from` (the remote name of a file of the
/// local copy); other paths unchanged.
pub fn relocate(path: &Path, from: &Path, to: &Path) -> PathBuf {
    match path.strip_prefix(from) {
        Ok(rel) => to.join(rel),
        Err(_) => path.to_path_buf(),
    }
}

/// Names the remote file in an error about a file of the local copy.
pub fn remote_error(mut e: ConfigError, local: &Path, remote: &Path) -> ConfigError {
    e.file = e.file.map(|f| relocate(&f, local, remote));
    e
}
