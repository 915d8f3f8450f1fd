//! Resuming a failed run: a task that finished before the failure left a
//! manifest in one of its attempt directories, and is not run again.

use chainbatch_executor::storage;
use chainbatch_executor::{TaskManifest, TaskSpec};

/// The manifest of the task's highest attempt that finished, if any.
pub async fn finished(spec: &TaskSpec) -> Result<Option<TaskManifest>, String> {
    let dir = spec.task_dir();
    let loc = storage::resolve(&dir).map_err(|e| e.to_string())?;
    let listed = match loc.store.list_with_delimiter(Some(&loc.path)).await {
        Ok(l) => l.common_prefixes,
        Err(object_store::Error::NotFound { .. }) => vec![],
        Err(e) => return Err(format!("cannot list {dir}: {e}")),
    };
    let mut attempts: Vec<u32> = listed
        .iter()
        .filter_map(|p| p.filename()?.strip_prefix("attempt-")?.parse().ok())
        .collect();
    attempts.sort_unstable_by(|a, b| b.cmp(a));
    for n in attempts {
        if let Ok(m) = crate::commit::read_manifest(&spec.attempt_dir(n)).await {
            return Ok(Some(m));
        }
    }
    Ok(None)
}

/// One entry per spec: its finished manifest, or `None` to run it.
pub async fn finished_tasks(specs: &[TaskSpec]) -> Result<Vec<Option<TaskManifest>>, String> {
    let mut out = Vec::with_capacity(specs.len());
    for s in specs {
        out.push(finished(s).await?);
    }
    Ok(out)
}
