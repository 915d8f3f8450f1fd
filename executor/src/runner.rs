//! Runs one task: read inputs, run the SQL with DataFusion, write the output
//! in its layout (or as shuffle buckets) below the attempt directory, and
//! write the manifest last.

use crate::error::{TaskError, TaskResult};
use crate::input::files::TaskFilesTable;
use crate::layout::hive::parse_partition_path;
use crate::layout::plan::{shuffle_map_plan, table_write_plan};
use crate::layout::stats::merge_stats;
use crate::manifest::{
    MANIFEST_FILE, OutputKind, PartitionSummary, SortMethod, TaskManifest, WrittenFile,
};
use crate::schema::to_schema;
use crate::shuffle::{ShuffleBucketStream, write_map_output};
use crate::spec::{InputFormat, OutputSpec, TaskSpec};
use crate::storage::{self, Location};
use crate::udf::murmur3_32;
use arrow::array::AsArray;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::{FairSpillPool, MemoryPool, TrackConsumersPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, collect_partitioned};
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// The session every task runs in: chainbatch functions, a bounded memory
/// pool that makes sorts spill, and the task's parallelism.
pub fn task_session(spec: &TaskSpec) -> TaskResult<SessionContext> {
    let res = &spec.resources;
    let mut disk = DiskManagerBuilder::default();
    if let Some(dir) = &res.spill_dir {
        disk = disk.with_mode(DiskManagerMode::Directories(vec![dir.into()]));
    }
    crate::allocator::fit_free_heap_to_pool(res.memory_bytes);
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_pool(task_pool(res.memory_bytes as usize))
        .with_disk_manager_builder(disk)
        .build_arc()
        .map_err(|e| TaskError::bad_spec("resources", e.to_string()))?;
    session_on(spec, runtime)
}

/// A task's memory pool of `bytes`: fair between the operators that spill,
/// and when it is exhausted the error names the operators holding the most.
pub fn task_pool(bytes: usize) -> Arc<dyn MemoryPool> {
    const NAMED: std::num::NonZeroUsize = std::num::NonZeroUsize::new(3).expect("non-zero");
    Arc::new(TrackConsumersPool::new(FairSpillPool::new(bytes), NAMED))
}

/// A task's session on a runtime someone else owns (a Ballista executor's,
/// whose memory pool is the task's share of the executor's): the task's
/// parallelism and batch size, chainbatch's functions.
pub fn session_on(spec: &TaskSpec, runtime: Arc<RuntimeEnv>) -> TaskResult<SessionContext> {
    let res = &spec.resources;
    let config = crate::session::config()
        .with_target_partitions(effective_parallelism(res.parallelism))
        .with_batch_size(res.batch_rows.max(1));
    crate::session::context(config, runtime).map_err(|e| TaskError::retryable(e.to_string()))
}

/// The parallelism to use: `configured`, or for 0 the cores available (1 when unknown).
pub fn effective_parallelism(configured: usize) -> usize {
    if configured > 0 {
        configured
    } else {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    }
}

/// Runs attempt `attempt` of `spec` to completion and returns its manifest.
/// Anything a previous run of the same attempt left is removed first.
pub async fn run_task(spec: &TaskSpec, attempt: u32) -> TaskResult<TaskManifest> {
    run_task_in(spec, attempt, task_session(spec)?).await
}

/// Runs attempt `attempt` of `spec` in the session `ctx` (see
/// [`session_on`]) and returns its manifest.
pub async fn run_task_in(
    spec: &TaskSpec,
    attempt: u32,
    ctx: SessionContext,
) -> TaskResult<TaskManifest> {
    let started = Instant::now();
    spec.validate()?;
    let task = prepare_task(spec, attempt, ctx, InputSplit::RowGroups).await?;
    let df = task
        .ctx
        .sql(&spec.sql)
        .await
        .map_err(|e| TaskError::from_datafusion("sql", e))?;
    let parallelism = effective_parallelism(spec.resources.parallelism);
    let (files, kind, data_schema, sort) = match &spec.output {
        OutputSpec::Table { layout, .. } => {
            let plan = table_write_plan(
                df,
                layout,
                &task.attempt_uri,
                spec.stage_id,
                spec.task_index,
                parallelism,
            )
            .await?;
            let schema = plan
                .data_schema()
                .map_err(|e| TaskError::from_datafusion("output", e))?;
            let sort = plan.config().sort_method();
            (
                execute_sink(plan, &task.ctx).await?,
                OutputKind::Table,
                Some(schema),
                sort,
            )
        }
        OutputSpec::Shuffle {
            hash_by,
            buckets,
            sort_by,
            ..
        } => {
            let plan = shuffle_map_plan(df, hash_by, *buckets, sort_by).await?;
            (
                execute_shuffle(plan, &task.ctx, &task.attempt_dir).await?,
                OutputKind::Shuffle,
                None,
                None,
            )
        }
    };
    let written = TaskOutput {
        kind,
        files,
        schema: data_schema,
        sort,
    };
    finish_task(spec, attempt, &task, written, started).await
}

/// How input files may be cut into scan partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputSplit {
    /// Large ordered files are split by row group (a task reads them in
    /// this process).
    RowGroups,
    /// Whole files or byte ranges only: the plan is serialised for other
    /// processes, and a row-group selection does not survive that.
    WholeFiles,
}

/// A task whose attempt directory is clean and whose inputs are registered.
pub struct PreparedTask {
    /// The task's session, with its inputs registered as tables.
    pub ctx: SessionContext,
    /// URI of the attempt directory the task writes in.
    pub attempt_uri: String,
    /// The attempt directory as a store location.
    pub attempt_dir: Location,
    /// Input files (or shuffle segments) registered.
    pub input_files: u64,
    /// Bytes of those inputs.
    pub input_bytes: u64,
}

/// What a task wrote.
pub struct TaskOutput {
    /// Whether a table or shuffle map output was written.
    pub kind: OutputKind,
    /// The complete files, with paths relative to the attempt directory.
    pub files: Vec<WrittenFile>,
    /// The written rows' schema (tables only).
    pub schema: Option<arrow::datatypes::SchemaRef>,
    /// How a table output met its `sort_by`; `None` without one and for shuffles.
    pub sort: Option<SortMethod>,
}

/// Clears the attempt directory, checks it is writable and registers the
/// spec's inputs in `ctx`.
pub async fn prepare_task(
    spec: &TaskSpec,
    attempt: u32,
    ctx: SessionContext,
    split: InputSplit,
) -> TaskResult<PreparedTask> {
    let attempt_uri = spec.attempt_dir(attempt);
    let attempt_dir = storage::resolve(&attempt_uri)
        .map_err(|e| TaskError::bad_spec("output.staging_uri", e.to_string()))?;
    clear_dir(&attempt_dir).await?;
    probe_writable(&attempt_dir).await?;
    storage::register(&ctx.runtime_env(), &attempt_uri)
        .map_err(|e| TaskError::bad_spec("output.staging_uri", e.to_string()))?;
    let (input_files, input_bytes) = register_inputs(spec, &ctx, split).await?;
    Ok(PreparedTask {
        ctx,
        attempt_uri,
        attempt_dir,
        input_files,
        input_bytes,
    })
}

/// Registers the spec's inputs as tables in `ctx`; returns the files and
/// bytes they hold.
pub async fn register_inputs(
    spec: &TaskSpec,
    ctx: &SessionContext,
    split: InputSplit,
) -> TaskResult<(u64, u64)> {
    let runtime = ctx.runtime_env();
    let (mut input_files, mut input_bytes) = (0u64, 0u64);
    for (i, input) in spec.inputs.iter().enumerate() {
        let field = format!("inputs[{i}]");
        let table: Arc<dyn datafusion::datasource::TableProvider> =
            if input.format == InputFormat::Shuffle {
                let sh = input.shuffle.as_ref().expect("validated");
                let schema = to_schema(
                    input.schema.as_deref().unwrap_or_default(),
                    &format!("{field}.schema"),
                )?;
                let source = ShuffleBucketStream::locate(
                    schema.clone(),
                    sh.bucket,
                    &sh.map_outputs,
                    &format!("{field}.shuffle"),
                )
                .await?;
                input_files += source.segments.len() as u64;
                input_bytes += source.segments.iter().map(|s| s.2 - s.1).sum::<u64>();
                Arc::new(
                    datafusion::catalog::streaming::StreamingTable::try_new(
                        schema,
                        vec![Arc::new(source)],
                    )
                    .map_err(|e| TaskError::from_datafusion(&field, e))?,
                )
            } else {
                let hint = if split == InputSplit::RowGroups && spec.inputs.len() == 1 {
                    sort_hint(&spec.output)
                } else {
                    vec![]
                };
                let mut t = TaskFilesTable::open(&runtime, input, &field, &hint).await?;
                if split == InputSplit::WholeFiles {
                    t = t.whole_files();
                }
                input_files += t.file_count() as u64;
                input_bytes += t.total_bytes();
                Arc::new(t)
            };
        ctx.register_table(input.name.as_str(), table)
            .map_err(|e| TaskError::bad_spec(format!("{field}.name"), e.to_string()))?;
    }
    Ok((input_files, input_bytes))
}

/// The order a single-input task's output wants its input in: the layout's
/// ascending `sort_by` columns up to the first descending one. Files that
/// declare no order are then read in it when their statistics allow.
fn sort_hint(output: &OutputSpec) -> Vec<String> {
    match output {
        OutputSpec::Table { layout, .. } => layout
            .sort_keys()
            .into_iter()
            .take_while(|k| !k.descending)
            .map(|k| k.column)
            .collect(),
        OutputSpec::Shuffle { .. } => vec![],
    }
}

/// Writes the task's manifest, last, and returns it.
pub async fn finish_task(
    spec: &TaskSpec,
    attempt: u32,
    task: &PreparedTask,
    output: TaskOutput,
    started: Instant,
) -> TaskResult<TaskManifest> {
    let manifest = build_manifest(
        spec,
        attempt,
        &task.attempt_uri,
        output.kind,
        output.files,
        output.schema,
        task.input_files,
        task.input_bytes,
        started,
        output.sort,
    );
    let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
    let loc = task.attempt_dir.join(MANIFEST_FILE);
    loc.store
        .put(&loc.path, json.into())
        .await
        .map_err(|e| TaskError::from_store("output.staging_uri", e))?;
    Ok(manifest)
}

/// Fails early, before any work, when the output cannot be written.
async fn probe_writable(dir: &Location) -> TaskResult<()> {
    let probe = dir.join("_write_probe");
    probe
        .store
        .put(&probe.path, bytes::Bytes::from_static(b"ok").into())
        .await
        .map_err(|e| TaskError::from_store("output.staging_uri", e))?;
    let _ = probe.store.delete(&probe.path).await;
    Ok(())
}

/// Deletes everything below `dir`, so a rerun of an attempt starts clean.
async fn clear_dir(dir: &Location) -> TaskResult<()> {
    let listed: Vec<_> = match dir.store.list(Some(&dir.path)).try_collect().await {
        Ok(v) => v,
        Err(object_store::Error::NotFound { .. }) => vec![],
        Err(e) => return Err(TaskError::from_store("output.staging_uri", e)),
    };
    for meta in listed {
        match dir.store.delete(&meta.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(TaskError::from_store("output.staging_uri", e)),
        }
    }
    Ok(())
}

async fn execute_sink(
    plan: Arc<dyn ExecutionPlan>,
    ctx: &SessionContext,
) -> TaskResult<Vec<WrittenFile>> {
    let parts = collect_partitioned(plan, ctx.task_ctx())
        .await
        .map_err(|e| TaskError::from_datafusion("output", e))?;
    written_files(parts.into_iter().flatten())
}

/// The files a `LayoutSinkExec` reports, one JSON row each, sorted by path.
pub fn written_files(
    batches: impl IntoIterator<Item = arrow::record_batch::RecordBatch>,
) -> TaskResult<Vec<WrittenFile>> {
    let mut files = vec![];
    for batch in batches {
        for v in batch.column(0).as_string::<i32>().iter().flatten() {
            files.push(
                serde_json::from_str::<WrittenFile>(v)
                    .map_err(|e| TaskError::retryable(e.to_string()))?,
            );
        }
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}

async fn execute_shuffle(
    plan: Arc<dyn ExecutionPlan>,
    ctx: &SessionContext,
    attempt_dir: &Location,
) -> TaskResult<Vec<WrittenFile>> {
    let n = plan.output_partitioning().partition_count();
    let mut handles = vec![];
    for worker in 0..n {
        let stream = plan
            .execute(worker, ctx.task_ctx())
            .map_err(|e| TaskError::from_datafusion("output", e))?;
        let dir = attempt_dir.clone();
        handles.push(tokio::spawn(async move {
            write_map_output(&dir, worker, stream).await
        }));
    }
    let mut files = vec![];
    for h in handles {
        let out = h.await.map_err(|e| TaskError::retryable(e.to_string()))?;
        files.extend(out.map_err(|e| TaskError::from_datafusion("output", e))?);
    }
    Ok(files)
}

#[allow(clippy::too_many_arguments)]
fn build_manifest(
    spec: &TaskSpec,
    attempt: u32,
    attempt_uri: &str,
    kind: OutputKind,
    files: Vec<WrittenFile>,
    schema: Option<arrow::datatypes::SchemaRef>,
    input_files: u64,
    input_bytes: u64,
    started: Instant,
    sort: Option<SortMethod>,
) -> TaskManifest {
    let mut partitions: BTreeMap<String, PartitionSummary> = BTreeMap::new();
    let mut sums: BTreeMap<String, u64> = BTreeMap::new();
    for f in files.iter().filter(|f| f.path.ends_with(".parquet")) {
        let p = partitions
            .entry(f.partition.clone())
            .or_insert_with(|| PartitionSummary {
                path: f.partition.clone(),
                values: parse_partition_path(&f.partition).into_iter().collect(),
                files: 0,
                rows: 0,
                bytes: 0,
                checksum: String::new(),
                stats: BTreeMap::new(),
            });
        p.files += 1;
        p.rows += f.rows;
        p.bytes += f.bytes;
        if let Some(schema) = &schema {
            merge_stats(&mut p.stats, &f.stats, schema);
        }
        let s = sums.entry(f.partition.clone()).or_default();
        *s = s.wrapping_add(u64::from_str_radix(&f.checksum, 16).unwrap_or(0));
    }
    // A partition's rows hash together with its path, so moving rows
    // between partitions changes the task checksum.
    let mut total = 0u64;
    for (path, p) in partitions.iter_mut() {
        let sum = sums[path];
        p.checksum = format!("{sum:016x}");
        let path_hash = u64::from(murmur3_32(path.as_bytes(), 0)) << 32
            | u64::from(murmur3_32(path.as_bytes(), 1));
        total = total.wrapping_add(splitmix64(sum ^ path_hash));
    }
    if kind == OutputKind::Shuffle {
        for f in &files {
            total = total.wrapping_add(u64::from_str_radix(&f.checksum, 16).unwrap_or(0));
        }
    }
    TaskManifest {
        version: crate::spec::SPEC_VERSION,
        run_id: spec.run_id.clone(),
        stage_id: spec.stage_id,
        task_index: spec.task_index,
        attempt,
        kind,
        attempt_dir: attempt_uri.to_string(),
        rows: files
            .iter()
            .filter(|f| !f.path.ends_with(".json"))
            .map(|f| f.rows)
            .sum(),
        bytes: files.iter().map(|f| f.bytes).sum(),
        files,
        partitions: partitions.into_values().collect(),
        checksum: format!("{total:016x}"),
        input_files,
        input_bytes,
        elapsed_ms: started.elapsed().as_millis() as u64,
        sort,
    }
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}
