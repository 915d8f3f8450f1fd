//! Resuming a failed run: a task that finished before the failure left a
//! manifest in one of its attempt directories, and is not run again.

use chainbatch_executor::storage;
use chainbatch_executor::{TaskManifest, TaskSpec};

/// The manifest of the task's highest attempt that finished, if any.
pub async fn finished(spec: &TaskSpec) -> Result<Option<TaskManifest>, String> {
    let dir = spec.task_dir();
    let loc = storage::resolve(&dir).map_err(|e| e.to_string())?;
    match chainbatch_executor::manifest::finished_attempt(&loc).await {
        Ok(Some((n, _))) => crate::commit::read_manifest(&spec.attempt_dir(n))
            .await
            .map(Some),
        Ok(None) => Ok(None),
        Err(e) => Err(format!("cannot list {dir}: {e}")),
    }
}

/// One entry per spec: its finished manifest, or `None` to run it.
pub async fn finished_tasks(specs: &[TaskSpec]) -> Result<Vec<Option<TaskManifest>>, String> {
    let mut out = Vec::with_capacity(specs.len());
    for s in specs {
        out.push(finished(s).await?);
    }
    Ok(out)
}
