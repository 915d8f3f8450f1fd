//! The in-process backend: tasks run on this process's runtime.

use crate::backend::{StageRun, TaskFailure, backoff, run_tasks};
use crate::progress::Progress;
use chainbatch_executor::TaskManifest;

pub async fn run_stage(
    stage: &StageRun,
    progress: &Progress,
) -> Result<Vec<TaskManifest>, TaskFailure> {
    let cores = chainbatch_executor::runner::effective_parallelism(0);
    let concurrent = stage.parallelism.clamp(1, stage.specs.len().max(1));
    run_tasks(stage, concurrent, |_, spec| {
        let mut spec = spec.clone();
        async move {
            // Share the cores between the tasks that run at once.
            spec.resources.parallelism = (cores / concurrent).max(1);
            let mut attempt = 1;
            loop {
                match chainbatch_executor::run_task(&spec, attempt).await {
                    Ok(m) => {
                        progress.task_done(m.rows, m.bytes);
                        return Ok(m);
                    }
                    Err(e) if e.is_retryable() && attempt < stage.max_attempts => {
                        progress.note(&format!(
                            "task {} attempt {attempt} failed, retrying: {e}",
                            spec.task_index
                        ));
                        tokio::time::sleep(backoff(attempt)).await;
                        attempt += 1;
                    }
                    Err(e) => {
                        return Err(TaskFailure {
                            task_index: spec.task_index,
                            attempts: attempt,
                            message: e.to_string(),
                            retryable: e.is_retryable(),
                        });
                    }
                }
            }
        }
    })
    .await
}
