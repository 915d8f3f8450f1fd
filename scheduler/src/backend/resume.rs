//! Resuming a failed run: a task that finished before the failure left a
//! manifest in one of its attempt directories, and is not run again.

use chainbatch_executor::storage;
use chainbatch_executor::{TaskManifest, TaskSpec};
use std::collections::HashMap;

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

/// The specs a run wrote for a stage, by task: its first plan's, then
/// those a resume ran in their place.
pub async fn recorded_specs(
    runs_root: &str,
    run_id: &str,
    stage_id: u32,
) -> Result<HashMap<u32, TaskSpec>, String> {
    let mut out = HashMap::new();
    for name in [
        format!("stage-{stage_id}.json"),
        format!("stage-{stage_id}-resume.json"),
    ] {
        let uri = format!("{runs_root}/{run_id}/{name}");
        let specs: Vec<TaskSpec> = crate::json_object::get(&uri, "stage specs")
            .await?
            .unwrap_or_default();
        out.extend(specs.into_iter().map(|s| (s.task_index, s)));
    }
    Ok(out)
}

/// Whether two specs do the same work: the same input, SQL and output
/// (attempts and resources aside).
pub fn same_work(a: &TaskSpec, b: &TaskSpec) -> bool {
    a.stage_id == b.stage_id && a.inputs == b.inputs && a.sql == b.sql && a.output == b.output
}

/// One entry per spec: the manifest of its finished task, or `None` to run
/// it. A task is reused only if it was planned the same way then: a resume
/// whose configuration or input changed (another `target_task_bytes`, a
/// new file) runs the tasks that differ again, never reusing a task that
/// read other files or ran other SQL.
pub async fn finished_tasks(
    specs: &[TaskSpec],
    recorded: &HashMap<u32, TaskSpec>,
) -> Result<Vec<Option<TaskManifest>>, String> {
    let mut out = Vec::with_capacity(specs.len());
    for s in specs {
        let same = recorded.get(&s.task_index).is_some_and(|r| same_work(r, s));
        out.push(match same {
            true => finished(s).await?,
            false => None,
        });
    }
    Ok(out)
}
