//! A stage of task specs as one Ballista job: map-only, per-partition and
//! shuffle stages run on the cluster's executors, one spec per partition of
//! a [`TaskSpecsExec`] over an in-memory scan of the specs. Each partition
//! runs its spec as the local backend would (reading, SQL, writing below
//! its attempt directory, manifest last), on the executor's runtime: its
//! memory pool is the Ballista task's share of the executor's, and spills
//! go to the executor's work dir. The job's rows are the manifests, which
//! the driver commits as usual.

use super::job::{DistributedJob, submit};
use crate::error::{TaskError, TaskResult};
use crate::manifest::TaskManifest;
use crate::runner::{run_task_in, session_on, task_pool};
use crate::spec::TaskSpec;
use arrow::array::{ArrayRef, AsArray, StringArray, UInt32Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt32Type};
use arrow::record_batch::RecordBatch;
use datafusion::datasource::memory::MemorySourceConfig;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::MemoryLimit;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::EquivalenceProperties;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::{Arc, LazyLock};

/// Marks, in a task's error as Ballista reports it, a failure no new
/// attempt can mend (a bad spec: SQL, schema, input that does not exist).
pub(crate) const FAILED_FOR_GOOD: &str = "chainbatch task failed for good";

/// The most job attempts an attempt number can tell apart.
const MAX_JOB_ATTEMPTS: u32 = 4_000;

/// What a [`TaskSpecsExec`] carries across the wire besides its input.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct TaskSpecsConfig {
    /// The driver's attempt of the job (1, 2, ...): part of every task's attempt number.
    pub job_attempt: u32,
}

/// Runs the task specs its input holds, one per partition, and yields a
/// row per spec: the task's index, the attempt it ran as, and its manifest
/// as JSON. The input is an in-memory scan of the specs (see
/// [`TaskSpecsExec::over`]), which Ballista's scheduler cuts to each task's
/// partitions as it cuts any scan: a leaf of chainbatch's own would be sent
/// whole to every task, and every task would run every spec.
#[derive(Debug)]
pub struct TaskSpecsExec {
    input: Arc<dyn ExecutionPlan>,
    config: TaskSpecsConfig,
    properties: Arc<PlanProperties>,
}

fn output_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
        Arc::new(Schema::new(vec![
            Field::new("task_index", DataType::UInt32, false),
            Field::new("attempt", DataType::UInt32, false),
            Field::new("manifest", DataType::Utf8, false),
        ]))
    });
    SCHEMA.clone()
}

fn spec_schema() -> SchemaRef {
    static SCHEMA: LazyLock<SchemaRef> =
        LazyLock::new(|| Arc::new(Schema::new(vec![Field::new("spec", DataType::Utf8, false)])));
    SCHEMA.clone()
}

impl TaskSpecsExec {
    /// Runs the specs of `input`'s partitions (one `spec` JSON column).
    pub fn new(input: Arc<dyn ExecutionPlan>, config: TaskSpecsConfig) -> Self {
        let partitions = input.output_partitioning().partition_count();
        let properties = PlanProperties::new(
            EquivalenceProperties::new(output_schema()),
            Partitioning::UnknownPartitioning(partitions),
            EmissionType::Final,
            Boundedness::Bounded,
        );
        Self {
            input,
            config,
            properties: Arc::new(properties),
        }
    }

    /// A plan running `specs`, one per partition.
    pub fn over(specs: &[TaskSpec], config: TaskSpecsConfig) -> Result<Self> {
        let partitions = specs
            .iter()
            .map(|spec| {
                let json = serde_json::to_string(spec)
                    .map_err(|e| DataFusionError::Internal(e.to_string()))?;
                let column: ArrayRef = Arc::new(StringArray::from(vec![json]));
                Ok(vec![RecordBatch::try_new(spec_schema(), vec![column])?])
            })
            .collect::<Result<Vec<_>>>()?;
        let input = MemorySourceConfig::try_new_exec(&partitions, spec_schema(), None)?;
        Ok(Self::new(input, config))
    }

    /// The job attempt, for the codec.
    pub fn config(&self) -> &TaskSpecsConfig {
        &self.config
    }
}

impl DisplayAs for TaskSpecsExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "TaskSpecsExec: tasks={}, job_attempt={}",
            self.properties.output_partitioning().partition_count(),
            self.config.job_attempt
        )
    }
}

impl ExecutionPlan for TaskSpecsExec {
    fn name(&self) -> &str {
        "TaskSpecsExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.input]
    }

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![false]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(
            &Arc<dyn datafusion::physical_expr::PhysicalExpr>,
        ) -> Result<datafusion::common::tree_node::TreeNodeRecursion>,
    ) -> Result<datafusion::common::tree_node::TreeNodeRecursion> {
        Ok(datafusion::common::tree_node::TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let [input] = children.as_slice() else {
            return Err(DataFusionError::Internal(
                "TaskSpecsExec takes one input".into(),
            ));
        };
        Ok(Arc::new(Self::new(input.clone(), self.config)))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context.clone())?;
        let attempt = attempt_number(self.config.job_attempt, context.task_id().as_deref());
        // The partitions this Ballista task runs at once share its pool.
        let share = self
            .properties
            .output_partitioning()
            .partition_count()
            .max(1);
        let stream = input.and_then(move |batch| {
            let context = context.clone();
            async move { run_specs(&batch, attempt, &context, share).await }
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            output_schema(),
            stream,
        )))
    }
}

/// Runs the specs of one input batch, one after another.
async fn run_specs(
    batch: &RecordBatch,
    attempt: u32,
    context: &TaskContext,
    share: usize,
) -> Result<RecordBatch> {
    let json = batch.column(0).as_string::<i32>();
    let (mut indices, mut attempts, mut manifests) = (vec![], vec![], vec![]);
    for row in 0..batch.num_rows() {
        let spec: TaskSpec = serde_json::from_str(json.value(row))
            .map_err(|e| DataFusionError::Internal(format!("a task spec: {e}")))?;
        let index = spec.task_index;
        let run = async {
            let ctx = session_on(&spec, task_runtime(context, &spec, share)?)?;
            run_task_in(&spec, attempt, ctx).await
        };
        let manifest = run.await.map_err(|e| {
            // Ballista reports a task's error as text: say whether it is final.
            let verdict = if e.is_retryable() {
                "chainbatch task failed"
            } else {
                FAILED_FOR_GOOD
            };
            DataFusionError::Execution(format!("{verdict}: task {index}: {e}"))
        })?;
        indices.push(index);
        attempts.push(attempt);
        manifests.push(
            serde_json::to_string(&manifest)
                .map_err(|e| DataFusionError::Internal(e.to_string()))?,
        );
    }
    let columns: Vec<ArrayRef> = vec![
        Arc::new(UInt32Array::from(indices)),
        Arc::new(UInt32Array::from(attempts)),
        Arc::new(StringArray::from(manifests)),
    ];
    Ok(RecordBatch::try_new(output_schema(), columns)?)
}

/// The Ballista task's runtime (its object stores, spill directory and
/// memory limit: the task's share of the executor's pool) with a pool of
/// the same size, split between the `share` specs it runs at once, whose
/// exhaustion names the operators holding the most.
fn task_runtime(
    context: &TaskContext,
    spec: &TaskSpec,
    share: usize,
) -> TaskResult<Arc<RuntimeEnv>> {
    let runtime = context.runtime_env();
    let bytes = match runtime.memory_pool.memory_limit() {
        MemoryLimit::Finite(bytes) => bytes / share.max(1),
        MemoryLimit::Infinite | MemoryLimit::Unknown => spec.resources.memory_bytes as usize,
    };
    RuntimeEnvBuilder::from_runtime_env(&runtime)
        .with_memory_pool(task_pool(bytes))
        .build_arc()
        .map_err(|e| TaskError::retryable(e.to_string()))
}

/// The attempt a spec runs as on an executor: the driver's job attempt
/// times 1,000,000 plus six digits that differ between Ballista's attempts
/// of the task (stage and task attempt in `task_id`) and between executor
/// processes. Ballista re-runs the tasks of a lost executor under the same
/// attempt numbers; a cut-off executor that still runs must not share their
/// directory. Any attempt that wrote its manifest is complete: the driver
/// commits the one the job reports (a resume, the highest).
fn attempt_number(job_attempt: u32, task_id: Option<&str>) -> u32 {
    let seed = format!("{}/{}", task_id.unwrap_or("local"), super::process_tag());
    let unique = crate::udf::murmur3_32(seed.as_bytes(), 0) % 1_000_000;
    job_attempt.clamp(1, MAX_JOB_ATTEMPTS) * 1_000_000 + unique
}

/// Runs every spec as a task of one Ballista job (attempt `job_attempt` of
/// it) and returns their manifests in the specs' order.
pub async fn run(
    specs: &[TaskSpec],
    job_attempt: u32,
    job: &DistributedJob,
) -> TaskResult<Vec<TaskManifest>> {
    let Some(first) = specs.first() else {
        return Ok(vec![]);
    };
    for spec in specs {
        spec.validate()?;
    }
    let plan: Arc<dyn ExecutionPlan> = Arc::new(
        TaskSpecsExec::over(specs, TaskSpecsConfig { job_attempt })
            .map_err(|e| TaskError::retryable(e.to_string()))?,
    );
    let config = super::executor::session_config()
        .with_target_partitions(specs.len())
        .with_batch_size(first.resources.batch_rows.max(1));
    let session_id = format!(
        "chainbatch-{}-{}-tasks-{job_attempt}",
        first.run_id, first.stage_id
    );
    let batches = submit(plan, job, session_id, config).await?;
    let mut manifests: Vec<Option<TaskManifest>> = vec![None; specs.len()];
    for batch in &batches {
        let index = batch.column(0).as_primitive::<UInt32Type>();
        let json = batch.column(2).as_string::<i32>();
        for row in 0..batch.num_rows() {
            let m: TaskManifest = serde_json::from_str(json.value(row)).map_err(|e| {
                TaskError::retryable(format!("Ballista job {:?}: a manifest: {e}", job.name))
            })?;
            let slot = specs.iter().position(|s| s.task_index == index.value(row));
            if let Some(slot) = slot {
                manifests[slot] = Some(m);
            }
        }
    }
    specs
        .iter()
        .zip(manifests)
        .map(|(spec, m)| {
            m.ok_or_else(|| {
                TaskError::retryable(format!(
                    "Ballista job {:?} finished without the manifest of task {}",
                    job.name, spec.task_index
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::attempt_number;

    #[test]
    fn attempt_numbers_start_with_the_job_attempt_and_differ_by_ballista_attempt() {
        let a = attempt_number(1, Some("TID j/1.0/3.0"));
        let b = attempt_number(1, Some("TID j/1.0/3.1"));
        let c = attempt_number(2, Some("TID j/1.0/3.0"));
        assert_eq!(a / 1_000_000, 1);
        assert_eq!(c / 1_000_000, 2);
        assert_ne!(a, b);
        assert_eq!(a % 1_000_000, c % 1_000_000);
        assert_eq!(attempt_number(1, Some("TID j/1.0/3.0")), a);
    }
}
