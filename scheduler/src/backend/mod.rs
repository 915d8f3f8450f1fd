//! Backends run every task of a stage and return their manifests.
//!
//! - `local` (default): in-process, up to `--parallelism` tasks at once.
//! - `process`: each task is a `chainbatch-executor` child process with the
//!   environment AWS Batch gives a container.
//! - `batch`: each stage is an AWS Batch (array) job of executor containers.
//! - `ballista`: every stage runs on a Ballista cluster (an embedded one,
//!   or `--ballista-url`): a distributed node as one physical plan that
//!   Ballista cuts into stages, any other stage as one job of its task specs.
//!
//! Local and process retry a task whose failure is retryable, with
//! exponential backoff, up to `max_attempts`; Batch does the same through
//! the job's retry strategy. Each attempt writes to its own directory.

pub mod ballista;
pub mod batch;
pub mod batch_cluster;
pub mod local;
pub mod process;
pub mod resume;

use crate::progress::Progress;
use chainbatch_executor::{TaskManifest, TaskSpec};
use futures::{StreamExt, TryStreamExt};
use std::future::Future;
use std::time::Duration;

#[derive(Debug, Clone)]
pub struct StageRun {
    pub node: String,
    pub stage_id: u32,
    /// What the stage does: map, shuffle_map, reduce.
    pub kind: String,
    /// Bytes the stage reads in all, as planned.
    pub input_bytes: u64,
    /// The stage's spec list, already written where executors can read it.
    pub spec_uri: String,
    pub specs: Vec<TaskSpec>,
    pub parallelism: usize,
    pub max_attempts: u32,
}

impl StageRun {
    pub fn label(&self) -> String {
        format!("{} stage {} {}", self.node, self.stage_id, self.kind)
    }
}

/// What a stage produced: one manifest per task, in task order.
#[derive(Debug, Clone)]
pub struct StageOutcome {
    pub manifests: Vec<TaskManifest>,
    pub seconds: f64,
}

/// A task that failed for good.
#[derive(Debug, Clone)]
pub struct TaskFailure {
    pub task_index: u32,
    pub attempts: u32,
    pub message: String,
    /// Whether running the task again could succeed (I/O, lost hosts,
    /// interruption), so that the run is worth resuming; false for a bad spec.
    pub retryable: bool,
}

impl TaskFailure {
    /// A retryable failure of a whole stage (submitting, following or
    /// running its job), not of one task's attempts.
    pub fn of_stage(message: String) -> Self {
        Self {
            task_index: 0,
            attempts: 0,
            message,
            retryable: true,
        }
    }
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

/// Why one attempt of a task failed, and whether another may succeed.
#[derive(Debug, Clone)]
pub struct AttemptFailure {
    pub retryable: bool,
    pub message: String,
}

/// The retry policy of the local and process backends: runs `attempt(n)`
/// for n = 1, 2, ... until one succeeds, one fails for good, or the stage's
/// `max_attempts` ran, with exponential backoff between attempts.
pub async fn with_retries<F, Fut>(
    stage: &StageRun,
    progress: &Progress,
    task_index: u32,
    attempt: F,
) -> Result<TaskManifest, TaskFailure>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<TaskManifest, AttemptFailure>>,
{
    let what = format!("task {task_index}");
    let m = retry_attempts(stage, progress, &what, task_index, attempt).await?;
    progress.task_done(m.rows, m.bytes);
    Ok(m)
}

/// The retry policy of [`with_retries`] for any work that has attempts (a
/// task, or a Ballista job of a stage's tasks), `what` in progress notes.
pub async fn retry_attempts<T, F, Fut>(
    stage: &StageRun,
    progress: &Progress,
    what: &str,
    task_index: u32,
    mut attempt: F,
) -> Result<T, TaskFailure>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, AttemptFailure>>,
{
    let mut n = 1;
    loop {
        match attempt(n).await {
            Ok(done) => return Ok(done),
            Err(f) if f.retryable && n < stage.max_attempts => {
                progress.note(&format!(
                    "{what} attempt {n} failed, retrying: {}",
                    f.message
                ));
                tokio::time::sleep(backoff(n)).await;
                n += 1;
            }
            Err(f) => {
                return Err(TaskFailure {
                    task_index,
                    attempts: n,
                    message: f.message,
                    retryable: f.retryable,
                });
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackendKind {
    Local,
    Process,
    Batch,
    Ballista,
}

impl BackendKind {
    pub fn parse(s: &str) -> Result<Self, String> {
        match s {
            "local" => Ok(Self::Local),
            "process" => Ok(Self::Process),
            "batch" => Ok(Self::Batch),
            "ballista" => Ok(Self::Ballista),
            other => Err(format!(
                "unknown backend `{other}`; expected local, process, batch or ballista"
            )),
        }
    }

    pub fn name(&self) -> &'static str {
        match self {
            Self::Local => "local",
            Self::Process => "process",
            Self::Batch => "batch",
            Self::Ballista => "ballista",
        }
    }
}

/// A backend ready to run stages; Batch holds its client, Ballista its cluster.
pub enum Backend {
    Local,
    Process,
    Batch(batch::BatchBackend),
    Ballista(ballista::Cluster),
}

impl Backend {
    /// Stops what the backend started (an embedded Ballista cluster).
    pub async fn shutdown(self) {
        if let Self::Ballista(cluster) = self {
            cluster.shutdown().await;
        }
    }

    /// Runs a node's stages in order and returns what each produced.
    pub async fn run_stages(
        &self,
        stages: &[StageRun],
        progress: &Progress,
    ) -> Result<Vec<StageOutcome>, TaskFailure> {
        if let Self::Batch(b) = self {
            return b.run_stages(stages, progress).await;
        }
        let mut out = vec![];
        for stage in stages {
            progress.stage(&stage.label(), stage.specs.len());
            let started = std::time::Instant::now();
            let manifests = match self {
                Self::Ballista(cluster) if stage.kind == crate::plan::DISTRIBUTED_STAGE => {
                    cluster.run_stage(stage, progress).await?
                }
                Self::Ballista(cluster) => cluster.run_task_stage(stage, progress).await?,
                Self::Local => local::run_stage(stage, progress).await?,
                Self::Process => process::run_stage(stage, progress).await?,
                Self::Batch(_) => unreachable!("handled above"),
            };
            progress.stage_finished();
            out.push(StageOutcome {
                manifests,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        Ok(out)
    }
}

/// Runs `run(index, spec)` for every task of the stage, `concurrent` at a
/// time, and returns the manifests in task order, or the first failure: no
/// task starts after a task failed for good, and those running are dropped.
pub async fn run_tasks<'a, F, Fut>(
    stage: &'a StageRun,
    concurrent: usize,
    run: F,
) -> Result<Vec<TaskManifest>, TaskFailure>
where
    F: Fn(usize, &'a TaskSpec) -> Fut,
    Fut: Future<Output = Result<TaskManifest, TaskFailure>>,
{
    let mut out: Vec<TaskManifest> = futures::stream::iter(stage.specs.iter().enumerate())
        .map(|(i, spec)| run(i, spec))
        .buffer_unordered(concurrent.max(1))
        .try_collect()
        .await?;
    out.sort_by_key(|m| m.task_index);
    Ok(out)
}
