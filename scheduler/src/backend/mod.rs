//! Backends run every task of a stage and return their manifests.
//!
//! - `local` (default): in-process, up to `--parallelism` tasks at once.
//! - `process`: each task is a `chainbatch-executor` child process with the
//!   environment AWS Batch gives a container.
//!
//! Both retry a task whose failure is retryable, with exponential backoff,
//! up to `max_attempts`; each attempt writes to its own directory.

pub mod local;
pub mod process;

use crate::progress::Progress;
use chainbatch_executor::{TaskManifest, TaskSpec};
use futures::StreamExt;
use std::future::Future;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct StageRun {
    /// The stage's spec list, already written where executors can read it.
    pub spec_uri: String,
    pub specs: Vec<TaskSpec>,
    pub parallelism: usize,
    pub max_attempts: u32,
}

/// A task that failed for good.
#[derive(Debug, Clone)]
pub struct TaskFailure {
    pub task_index: u32,
    pub attempts: u32,
    pub message: String,
}

impl std::fmt::Display for TaskFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "task {} failed after {} attempt(s): {}",
            self.task_index, self.attempts, self.message
        )
    }
}

pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64.saturating_mul(1 << attempt.min(8)).min(30_000))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Local,
    Process,
}

impl BackendKind {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "local" => Ok(Self::Local),
            "process" => Ok(Self::Process),
            "batch" | "ballista" => Err(format!(
                "backend `{s}` is not available in this build yet; use local or process"
            )),
            other => Err(format!(
                "unknown backend `{other}`; expected local or process"
            )),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Process => "process",
        }
    }
}

pub async fn run_stage(
    kind: BackendKind,
    stage: &StageRun,
    progress: &Progress,
) -> Result<Vec<TaskManifest>, TaskFailure> {
    match kind {
        BackendKind::Local => local::run_stage(stage, progress).await,
        BackendKind::Process => process::run_stage(stage, progress).await,
    }
}

/// Runs `run(index, spec)` for every task of the stage, `concurrent` at a
/// time, and returns the manifests in task order, or the first failure.
pub async fn run_tasks<'a, F, Fut>(
    stage: &'a StageRun,
    concurrent: usize,
    run: F,
) -> Result<Vec<TaskManifest>, TaskFailure>
where
    F: Fn(usize, &'a TaskSpec) -> Fut,
    Fut: Future<Output = Result<TaskManifest, TaskFailure>>,
{
    let results: Vec<Result<TaskManifest, TaskFailure>> =
        futures::stream::iter(stage.specs.iter().enumerate())
            .map(|(i, spec)| run(i, spec))
            .buffer_unordered(concurrent.max(1))
            .collect()
            .await;
    let mut out: Vec<TaskManifest> = results.into_iter().collect::<Result<_, _>>()?;
    out.sort_by_key(|m| m.task_index);
    Ok(out)
}
