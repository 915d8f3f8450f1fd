//! Runs a one-task spec as a Ballista job: the driver plans the node's SQL
//! into one physical plan ending in `LayoutSinkExec` with `partitions`
//! partitions, Ballista runs its stages on the cluster's executors, and the
//! final-stage tasks report the files they wrote. The driver then writes the
//! spec's manifest, so the node commits like any other task.

use super::codec::DistributedCodec;
use super::executor::session_config;
use crate::error::{TaskError, TaskResult};
use crate::layout::plan::table_write_plan;
use crate::layout::sink::LayoutSinkExec;
use crate::manifest::{OutputKind, TaskManifest};
use crate::runner::{
    InputSplit, TaskOutput, finish_task, prepare_task, register_inputs, written_files,
};
use crate::spec::{OutputSpec, TaskSpec};
use arrow::record_batch::RecordBatch;
use ballista_core::config::BALLISTA_JOB_NAME;
use ballista_core::execution_plans::execute_physical_plan;
use ballista_core::extension::SessionConfigExt;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::physical_plan::{ExecutionPlan, displayable};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_proto::protobuf::PhysicalPlanNode;
use futures::TryStreamExt;
use std::sync::Arc;
use std::time::Instant;

/// A Ballista scheduler, as `df://host:port`, `http://host:port` or `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerAddress {
    /// Host name or IP address of the scheduler.
    pub host: String,
    /// The scheduler's gRPC port.
    pub port: u16,
}

impl SchedulerAddress {
    /// Parses `df://host:port`, `http://host:port` or `host:port` (a trailing `/` is
    /// ignored); the error message names what is missing or malformed.
    pub fn parse(s: &str) -> Result<Self, String> {
        let rest = s
            .strip_prefix("df://")
            .or_else(|| s.strip_prefix("http://"))
            .unwrap_or(s)
            .trim_end_matches('/');
        let (host, port) = rest
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?} is not df://host:port"))?;
        let port = port
            .parse::<u16>()
            .map_err(|_| format!("{s:?}: the port {port:?} is not a number"))?;
        if host.is_empty() {
            return Err(format!("{s:?} names no host"));
        }
        Ok(Self {
            host: host.to_string(),
            port,
        })
    }

    pub(crate) fn grpc_url(&self) -> String {
        format!("http://{}:{}", self.host, self.port)
    }
}

impl std::fmt::Display for SchedulerAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "df://{}:{}", self.host, self.port)
    }
}

/// A distributed job: where it runs and how wide.
#[derive(Debug, Clone)]
pub struct DistributedJob {
    /// The scheduler the job is submitted to.
    pub scheduler: SchedulerAddress,
    /// Partitions of every stage, and so the final stage's tasks.
    pub partitions: usize,
    /// Shown in Ballista's job list.
    pub name: String,
}

/// The session a distributed node is planned in: Ballista's settings with
/// chainbatch's, `partitions` wide, no memory pool (nothing runs here).
fn planning_context(spec: &TaskSpec, partitions: usize) -> TaskResult<SessionContext> {
    let config = session_config()
        .with_target_partitions(partitions.max(1))
        .with_batch_size(spec.resources.batch_rows.max(1));
    let runtime = RuntimeEnvBuilder::new()
        .build_arc()
        .map_err(|e| TaskError::retryable(e.to_string()))?;
    crate::session::context(config, runtime).map_err(|e| TaskError::retryable(e.to_string()))
}

fn table_layout(spec: &TaskSpec) -> TaskResult<&crate::layout::Layout> {
    match &spec.output {
        OutputSpec::Table { layout, .. } => Ok(layout),
        OutputSpec::Shuffle { .. } => Err(TaskError::bad_spec(
            "output",
            "a distributed node writes a table, not shuffle buckets",
        )),
    }
}

async fn write_plan(
    spec: &TaskSpec,
    ctx: &SessionContext,
    attempt_uri: &str,
    partitions: usize,
) -> TaskResult<Arc<LayoutSinkExec>> {
    let df = ctx
        .sql(&spec.sql)
        .await
        .map_err(|e| TaskError::from_datafusion("sql", e))?;
    table_write_plan(
        df,
        table_layout(spec)?,
        attempt_uri,
        spec.stage_id,
        spec.task_index,
        partitions.max(1),
    )
    .await
}

/// A distributed spec reads whole files or byte ranges: a row-group
/// selection does not survive serialisation, and the whole file would be
/// read instead.
fn check_whole_files(spec: &TaskSpec) -> TaskResult<()> {
    for (i, input) in spec.inputs.iter().enumerate() {
        if let Some(j) = input.files.iter().position(|f| f.row_groups.is_some()) {
            return Err(TaskError::bad_spec(
                format!("inputs[{i}].files[{j}].row_groups"),
                "a distributed task reads whole files or byte ranges, not row groups",
            ));
        }
    }
    Ok(())
}

/// The physical plan a distributed spec runs, without touching its output:
/// for `plan`, which shows Ballista's stages.
pub async fn physical_plan(
    spec: &TaskSpec,
    partitions: usize,
) -> TaskResult<Arc<dyn ExecutionPlan>> {
    spec.validate()?;
    table_layout(spec)?;
    check_whole_files(spec)?;
    let ctx = planning_context(spec, partitions)?;
    register_inputs(spec, &ctx, InputSplit::WholeFiles).await?;
    let plan: Arc<dyn ExecutionPlan> =
        write_plan(spec, &ctx, &spec.attempt_dir(spec.attempt), partitions).await?;
    Ok(plan)
}

/// Runs attempt `attempt` of `spec` on the cluster and writes its manifest.
pub async fn run(spec: &TaskSpec, attempt: u32, job: &DistributedJob) -> TaskResult<TaskManifest> {
    let started = Instant::now();
    spec.validate()?;
    table_layout(spec)?;
    check_whole_files(spec)?;
    let ctx = planning_context(spec, job.partitions)?;
    let task = prepare_task(spec, attempt, ctx, InputSplit::WholeFiles).await?;
    let sink = write_plan(spec, &task.ctx, &task.attempt_uri, job.partitions).await?;
    let schema = sink
        .data_schema()
        .map_err(|e| TaskError::from_datafusion("output", e))?;
    let sort = sink.config().sort_method();
    let plan: Arc<dyn ExecutionPlan> = sink;
    log_plan(&plan);
    let session_id = format!("chainbatch-{}-{}-{attempt}", spec.run_id, spec.stage_id);
    let batches = submit(plan, job, session_id, task.ctx.copied_config()).await?;
    let (files, superseded) = super::latest_attempts(written_files(batches)?);
    if superseded > 0 {
        eprintln!(
            "chainbatch: Ballista re-ran tasks of {:?}: {superseded} file(s) of superseded attempts are not published",
            job.name
        );
    }
    let output = TaskOutput {
        kind: OutputKind::Table,
        files,
        schema: Some(schema),
        sort,
    };
    finish_task(spec, attempt, &task, output, started).await
}

/// Submits `plan` as a Ballista job named `job.name`, waits for it, and
/// returns the rows of its final stage. A failure is retryable unless
/// Ballista failed the job for its SQL, its data or a task's spec.
pub(crate) async fn submit(
    plan: Arc<dyn ExecutionPlan>,
    job: &DistributedJob,
    session_id: String,
    mut config: SessionConfig,
) -> TaskResult<Vec<RecordBatch>> {
    config
        .options_mut()
        .set(BALLISTA_JOB_NAME, &job.name)
        .map_err(|e| TaskError::retryable(e.to_string()))?;
    // Connecting, submitting and waiting all happen in this call; Ballista
    // reports each failure as text, with the job's own error when it failed.
    let failed = |e: datafusion::error::DataFusionError| {
        let message = format!(
            "Ballista job {:?} on {}: {}",
            job.name,
            job.scheduler,
            e.find_root()
        );
        if failed_for_good(&message) {
            TaskError::bad_spec("ballista", message)
        } else {
            TaskError::retryable(message)
        }
    };
    let stream = execute_physical_plan::<PhysicalPlanNode>(
        job.scheduler.grpc_url(),
        &config.ballista_config(),
        plan,
        &DistributedCodec::default(),
        session_id,
        config,
    )
    .await
    .map_err(failed)?;
    stream.try_collect().await.map_err(failed)
}

/// Whether Ballista failed the job for its SQL or its data, which another
/// run of the same plan cannot mend: Ballista retried the tasks already.
/// Failures of executors, shuffle fetches, storage or the network are
/// worth a new attempt. Ballista reports the cause only as text.
fn failed_for_good(message: &str) -> bool {
    if message.contains(super::tasks::FAILED_FOR_GOOD) {
        return true;
    }
    const DATA: [&str; 6] = [
        "ArrowError",
        "SchemaError",
        "Plan(",
        "SQL(",
        "NotImplemented",
        "ParquetError",
    ];
    const INFRASTRUCTURE: [&str; 9] = [
        "FetchFailed",
        "fetch",
        "xecutor lost",
        "IoError",
        "ObjectStore",
        "object store",
        "error sending request",
        "onnection",
        "imed out",
    ];
    message.contains("Job failed due to")
        && DATA.iter().any(|d| message.contains(d))
        && !INFRASTRUCTURE.iter().any(|i| message.contains(i))
}

fn log_plan(plan: &Arc<dyn ExecutionPlan>) {
    if std::env::var_os("CHAINBATCH_LOG_PLANS").is_some() {
        eprintln!("{}", displayable(plan.as_ref()).indent(true));
    }
}

#[cfg(test)]
mod tests {
    use super::{SchedulerAddress, failed_for_good};

    #[test]
    fn data_errors_fail_for_good_and_lost_executors_or_storage_do_not() {
        let divide = "Job 1 failed: Job failed due to stage 3 failed: Task failed due to runtime execution error: DataFusionError(Shared(ArrowError(DivideByZero, Some(\"\"))))";
        assert!(failed_for_good(divide));
        let s3 = "Job 1 failed: Job failed due to stage 1 failed: Task failed due to runtime execution error: DataFusionError(ObjectStore(Generic { store: \"S3\", source: error sending request }))";
        assert!(!failed_for_good(s3));
        let fetch = "Job 1 failed: Job failed due to stage 2 failed: FetchFailed(executor 7, ArrowError(IpcError))";
        assert!(!failed_for_good(fetch));
        assert!(!failed_for_good("transport error: Connection refused"));
    }

    #[test]
    fn scheduler_addresses_parse_with_or_without_a_scheme() {
        let a = SchedulerAddress::parse("df://10.0.0.5:50050").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("10.0.0.5", 50050));
        assert_eq!(a.to_string(), "df://10.0.0.5:50050");
        assert_eq!(SchedulerAddress::parse("http://h:1/").unwrap().host, "h");
        assert_eq!(SchedulerAddress::parse("h:7").unwrap().port, 7);
        assert!(
            SchedulerAddress::parse("df://h")
                .unwrap_err()
                .contains("df://host:port")
        );
        assert!(
            SchedulerAddress::parse("df://h:x")
                .unwrap_err()
                .contains("not a number")
        );
        assert!(
            SchedulerAddress::parse(":50050")
                .unwrap_err()
                .contains("names no host")
        );
    }
}
