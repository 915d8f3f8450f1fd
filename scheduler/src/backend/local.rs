//! The in-process backend: tasks run on this process's runtime.

use crate::backend::{AttemptFailure, StageRun, TaskFailure, run_tasks, with_retries};
use crate::progress::Progress;
use chainbatch_executor::TaskManifest;

/// The least sort memory a task gets when tasks share the process.
const MIN_TASK_MEMORY: u64 = 64 * 1024 * 1024;

struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

pub async fn run_stage(
    stage: &StageRun,
    progress: &Progress,
) -> Result<Vec<TaskManifest>, TaskFailure> {
    let cores = chainbatch_executor::effective_parallelism(0);
    let concurrent = stage.parallelism.clamp(1, stage.specs.len().max(1));
    run_tasks(stage, concurrent, |_, spec| {
        let mut spec = spec.clone();
        async move {
            // Tasks that run at once share this process. Each may stream on
            // every core (the runtime's workers are shared, so the last task
            // of a stage keeps them busy); memory is divided, so that the
            // process stays within one task's budget.
            spec.resources.parallelism = cores;
            spec.resources.memory_bytes =
                (spec.resources.memory_bytes / concurrent as u64).max(MIN_TASK_MEMORY);
            with_retries(stage, progress, spec.task_index, |attempt| {
                // A task of its own, so that the attempt's CPU work (decoding,
                // compression) runs on its own runtime worker rather than on
                // the thread that polls every task of the stage; aborted when
                // the stage stops waiting (a failed sibling, Ctrl-C).
                let job = spec.clone();
                async move {
                    let handle =
                        tokio::spawn(
                            async move { chainbatch_executor::run_task(&job, attempt).await },
                        );
                    let _abort = AbortOnDrop(handle.abort_handle());
                    let outcome = handle.await.unwrap_or_else(|e| {
                        Err(chainbatch_executor::TaskError::retryable(format!(
                            "task stopped: {e}"
                        )))
                    });
                    outcome.map_err(|e| AttemptFailure {
                        retryable: e.is_retryable(),
                        message: e.to_string(),
                    })
                }
            })
            .await
        }
    })
    .await
}
