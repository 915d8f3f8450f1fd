//! `LayoutSinkExec`: the physical operator that writes its input in a layout.
//!
//! Each input partition is one worker that writes its own files. The input
//! carries the data columns followed by the key columns the planner derived
//! (partition values, then the bucket id). Rows are routed to one writer per
//! partition and bucket. When the pool cannot hold the open files' buffers,
//! or `max_open_writers` are open and a new key arrives, the file written to
//! least recently is finished. When a finished key comes back, the worker
//! closes its writers and sorts the rest of its input by key (spilling to
//! disk within the task's memory pool), then writes one key at a time.
//! When the planner already sorted the input (for `sort_by`), the worker
//! writes one key at a time from the start. Output: one row per written file,
//! the file's manifest entry as JSON.

use crate::layout::dictionary::{Dictionary, mostly_distinct_columns};
use crate::layout::file_writer::{PartitionWriter, WriterContext};
use crate::layout::hive::escape_value;
use crate::layout::spec::{Layout, codec_suffix};
use crate::manifest::{SortMethod, WrittenFile};
use crate::storage;
use arrow::array::{Array, ArrayRef, AsArray, StringArray, UInt32Array};
use arrow::compute::SortOptions;
use arrow::compute::take_record_batch;
use arrow::datatypes::{DataType, Field, Int32Type, Schema, SchemaRef};
use arrow::record_batch::RecordBatch;
use arrow::row::{OwnedRow, RowConverter, SortField};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties,
};
use futures::{StreamExt, TryStreamExt};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

/// Everything the sink needs; serialised by the physical codec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayoutSinkConfig {
    /// URI of the attempt directory; files go below it.
    pub attempt_dir: String,
    /// The layout the files are written in.
    pub layout: Layout,
    /// Stage id, part of every file name.
    pub stage_id: u32,
    /// Task index, part of every file name.
    pub task_index: u32,
    /// The first `data_columns` input columns are written.
    pub data_columns: usize,
    /// Names of the partition key columns that follow the data columns.
    pub partition_columns: Vec<String>,
    /// Whether a bucket id column follows the partition keys.
    pub bucketed: bool,
    /// Whether each input partition arrives sorted by its keys.
    pub input_sorted: bool,
    /// The data columns each input partition already streams in (its
    /// `sort_by` order): rows go to per-key writers as they come, and a
    /// writer rolls to a new file wherever the order breaks.
    #[serde(default)]
    pub stream_order: Vec<OrderedColumn>,
}

/// A data column an input stream is ordered by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderedColumn {
    /// Position of the column in the sink's input (a data column).
    pub index: usize,
    /// Whether the column descends.
    pub descending: bool,
    /// Whether nulls come before the other values.
    pub nulls_first: bool,
}

impl OrderedColumn {
    /// The column's order as Arrow sort options.
    pub fn options(&self) -> SortOptions {
        SortOptions {
            descending: self.descending,
            nulls_first: self.nulls_first,
        }
    }

    fn sort_field(&self, schema: &Schema) -> SortField {
        SortField::new_with_options(schema.field(self.index).data_type().clone(), self.options())
    }
}

impl LayoutSinkConfig {
    /// How this sink's files meet `sort_by`, for the manifest.
    pub fn sort_method(&self) -> Option<SortMethod> {
        if !self.stream_order.is_empty() {
            Some(SortMethod::InputOrder)
        } else if self.input_sorted {
            Some(SortMethod::Sorted)
        } else {
            None
        }
    }

    fn key_count(&self) -> usize {
        self.partition_columns.len() + usize::from(self.bucketed)
    }
}

/// The physical operator that writes its input as Parquet files in a layout, each
/// input partition as one worker; it outputs the written files' manifest entries.
#[derive(Debug)]
pub struct LayoutSinkExec {
    input: Arc<dyn ExecutionPlan>,
    config: LayoutSinkConfig,
    properties: Arc<PlanProperties>,
}

/// The sink's output: one non-null string column `file`, one written file's
/// manifest entry as JSON per row.
pub fn output_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new("file", DataType::Utf8, false)]))
}

impl LayoutSinkExec {
    /// A sink writing `input`, with one output partition per input partition.
    pub fn new(input: Arc<dyn ExecutionPlan>, config: LayoutSinkConfig) -> Self {
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

    /// The sink's settings, as the physical codec serialises them.
    pub fn config(&self) -> &LayoutSinkConfig {
        &self.config
    }

    /// The schema of the rows written to files (the key columns dropped).
    pub fn data_schema(&self) -> Result<SchemaRef> {
        let cols: Vec<usize> = (0..self.config.data_columns).collect();
        Ok(Arc::new(self.input.schema().project(&cols)?))
    }
}

impl DisplayAs for LayoutSinkExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "LayoutSinkExec: partition_by={:?}, bucketed={}, sorted_input={}, input_order={:?}, dir={}",
            self.config.partition_columns,
            self.config.bucketed,
            self.config.input_sorted,
            self.config
                .stream_order
                .iter()
                .map(|c| c.index)
                .collect::<Vec<_>>(),
            self.config.attempt_dir
        )
    }
}

impl ExecutionPlan for LayoutSinkExec {
    fn name(&self) -> &str {
        "LayoutSinkExec"
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
        Ok(Arc::new(Self::new(
            children[0].clone(),
            self.config.clone(),
        )))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context.clone())?;
        let config = self.config.clone();
        // Only a Ballista task (it has an id) names its files after its partition.
        let stage_partition = context
            .task_id()
            .and_then(|_| crate::distributed::shuffle_partition(&self.input, partition));
        let fut = async move {
            let files = write_worker(config, input, partition, stage_partition, context).await?;
            let json: Vec<String> = files
                .iter()
                .map(|f| serde_json::to_string(f).expect("manifest entries serialise"))
                .collect();
            let array: ArrayRef = Arc::new(StringArray::from(json));
            Ok(RecordBatch::try_new(output_schema(), vec![array])?)
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            output_schema(),
            futures::stream::once(fut),
        )))
    }
}

/// The most a column chunk's dictionary grows before it falls back to plain
/// encoding (Parquet's default is 1 MiB); columns with mostly distinct values
/// skip the dictionary altogether (see `layout::dictionary`).
const DICTIONARY_PAGE_BYTES: usize = 8 * 1024 * 1024;

/// Parquet writer settings from the layout.
pub fn writer_properties(layout: &Layout, schema: &Schema) -> Result<WriterProperties> {
    let compression = layout
        .parquet_compression()
        .map_err(DataFusionError::Configuration)?;
    let mut b = WriterProperties::builder()
        .set_compression(compression)
        .set_max_row_group_row_count(None)
        .set_max_row_group_bytes(None)
        .set_dictionary_enabled(layout.dictionary != Dictionary::Off)
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_created_by(format!("chainbatch {}", env!("CARGO_PKG_VERSION")))
        // About 180k distinct addresses: the dictionary of an address column
        // then usually covers its whole row group instead of falling back.
        .set_dictionary_page_size_limit(DICTIONARY_PAGE_BYTES)
        .set_sorting_columns(sorting_columns(layout, schema)?);
    for (name, opts) in &layout.columns {
        if schema.field_with_name(name).is_err() {
            return Err(DataFusionError::Plan(format!(
                "layout.columns names {name:?}, which is not an output column"
            )));
        }
        let path = ColumnPath::from(name.as_str());
        if let Some(d) = opts.dictionary {
            b = b.set_column_dictionary_enabled(path.clone(), d);
        }
        if let Some(s) = opts.statistics {
            let level = if s {
                EnabledStatistics::Page
            } else {
                EnabledStatistics::None
            };
            b = b.set_column_statistics_enabled(path.clone(), level);
        }
        if opts.bloom_filter == Some(true) {
            b = b.set_column_bloom_filter_enabled(path.clone(), true);
            if let Some(fpp) = opts.bloom_filter_fpp {
                b = b.set_column_bloom_filter_fpp(path.clone(), fpp);
            }
            if let Some(ndv) = opts.bloom_filter_ndv {
                b = b.set_column_bloom_filter_max_ndv(path.clone(), ndv);
            }
        }
    }
    Ok(b.build())
}

/// `props` without dictionaries for the columns of `sample` that are mostly
/// distinct, except those the layout sets explicitly; such integer columns
/// are written DELTA_BINARY_PACKED.
fn skip_unique_dictionaries(
    props: &WriterProperties,
    layout: &Layout,
    sample: &RecordBatch,
) -> WriterProperties {
    let mut b = props.clone().into_builder();
    for field in mostly_distinct_columns(sample) {
        let explicit = layout.columns.get(field.name()).and_then(|c| c.dictionary);
        if explicit.is_some() {
            continue;
        }
        let path = ColumnPath::from(field.name().as_str());
        b = b.set_column_dictionary_enabled(path.clone(), false);
        // Integers without a dictionary (gas, prices, counters) delta-pack
        // to a few bytes a value, so compression has less to chew on.
        if matches!(field.data_type(), DataType::Int64 | DataType::Int32) {
            b = b.set_column_encoding(path, parquet::basic::Encoding::DELTA_BINARY_PACKED);
        }
    }
    b.build()
}

/// Every file is sorted by the layout's written `sort_by` columns; saying so
/// in the footer lets readers (and the next chainbatch task) rely on it.
fn sorting_columns(layout: &Layout, schema: &Schema) -> Result<Option<Vec<SortingColumn>>> {
    let keys = layout.sort_keys();
    let keys: Vec<(&str, bool)> = keys
        .iter()
        .map(|k| (k.column.as_str(), k.descending))
        .collect();
    let declared = crate::parquet_types::sorting_columns(schema, &keys)?;
    Ok((!declared.is_empty()).then_some(declared))
}

/// A group of rows that go to one writer: same partition and bucket.
struct KeyGroup {
    key: String,
    partition_path: String,
    bucket: Option<i32>,
    rows: RecordBatch,
}

/// Splits a batch into key groups. Sorted input is cut into runs; otherwise
/// rows are grouped by the binary row encoding of their keys.
fn group_rows(batch: &RecordBatch, cfg: &LayoutSinkConfig, sorted: bool) -> Result<Vec<KeyGroup>> {
    let nkeys = cfg.key_count();
    if nkeys == 0 {
        return Ok(vec![KeyGroup {
            key: String::new(),
            partition_path: String::new(),
            bucket: None,
            rows: batch.clone(),
        }]);
    }
    let keys: Vec<ArrayRef> = batch.columns()[cfg.data_columns..cfg.data_columns + nkeys].to_vec();
    let describe = |sub: RecordBatch| -> Result<KeyGroup> {
        let k = &sub.columns()[cfg.data_columns..];
        let mut segments = Vec::with_capacity(cfg.partition_columns.len());
        for (name, col) in cfg.partition_columns.iter().zip(k) {
            let value = if col.is_null(0) {
                None
            } else {
                let fmt = ArrayFormatter::try_new(col.as_ref(), &FormatOptions::default())?;
                Some(fmt.value(0).to_string())
            };
            segments.push(format!("{name}={}", escape_value(value.as_deref())));
        }
        let partition_path = segments.join("/");
        let bucket = cfg.bucketed.then(|| {
            k[cfg.partition_columns.len()]
                .as_primitive::<Int32Type>()
                .value(0)
        });
        let key = match bucket {
            Some(b) => format!("{partition_path}#{b}"),
            None => partition_path.clone(),
        };
        Ok(KeyGroup {
            key,
            partition_path,
            bucket,
            rows: sub,
        })
    };
    if sorted {
        let ranges = arrow::compute::partition(&keys)?;
        return ranges
            .ranges()
            .into_iter()
            .map(|r| describe(batch.slice(r.start, r.end - r.start)))
            .collect();
    }
    let fields = keys
        .iter()
        .map(|k| SortField::new(k.data_type().clone()))
        .collect();
    let converter = RowConverter::new(fields)?;
    let rows = converter.convert_columns(&keys)?;
    let mut groups: HashMap<&[u8], Vec<u32>> = HashMap::new();
    let mut order: Vec<&[u8]> = vec![];
    for i in 0..batch.num_rows() {
        let r = rows.row(i).data();
        groups
            .entry(r)
            .or_insert_with(|| {
                order.push(r);
                vec![]
            })
            .push(i as u32);
    }
    if order.len() == 1 {
        return Ok(vec![describe(batch.clone())?]);
    }
    order
        .into_iter()
        .map(|r| {
            let idx = UInt32Array::from(std::mem::take(groups.get_mut(r).expect("group exists")));
            describe(take_record_batch(batch, &idx)?)
        })
        .collect()
}

/// The open writers of one worker, by key.
struct Writers {
    open: HashMap<String, PartitionWriter>,
    finished: Vec<WrittenFile>,
    /// Keys whose file was finished early to free memory. One of them
    /// coming back means the input is not grouped by key.
    closed_early: HashSet<String>,
    /// When each open key was last written to (a counter of batches).
    last_written: HashMap<String, u64>,
    clock: u64,
}

impl Writers {
    /// Marks `key` as just written to, for `close_least_recent`.
    fn touch(&mut self, key: &str) {
        self.clock += 1;
        match self.last_written.get_mut(key) {
            Some(t) => *t = self.clock,
            None => {
                self.last_written.insert(key.to_string(), self.clock);
            }
        }
    }

    async fn close(&mut self, key: &str, ctx: &WriterContext) -> Result<()> {
        self.last_written.remove(key);
        if let Some(mut w) = self.open.remove(key) {
            w.close(ctx).await?;
            self.finished.append(&mut w.finished);
        }
        Ok(())
    }

    /// Keeps the writers' buffered bytes (checked after each key's rows) within the
    /// worker's share of the task memory pool: while the pool refuses them,
    /// the largest row group in progress is flushed early (a smaller row
    /// group, never more memory). When only upload buffers are left, the
    /// file written to least recently is finished: many open files each
    /// hold a flushed row group that no pool would otherwise see freed, and
    /// with input grouped by key the oldest key is the one that is done.
    async fn fit(
        &mut self,
        reservation: &mut MemoryReservation,
        ctx: &mut WriterContext,
    ) -> Result<()> {
        loop {
            let used: usize = self.open.values().map(|w| w.buffered_bytes(ctx)).sum();
            if reservation.try_resize(used).is_ok() {
                return Ok(());
            }
            let largest = self
                .open
                .values_mut()
                .filter(|w| w.flushable_bytes(ctx) > 0)
                .max_by_key(|w| w.flushable_bytes(ctx));
            if let Some(w) = largest {
                w.flush_group(ctx).await?;
                continue;
            }
            if self.open.len() <= 1 {
                // One file's upload buffer, bounded by the part size. Taking
                // it from the pool beyond this worker's share would starve
                // the other workers' sorts, so the reservation stays.
                return Ok(());
            }
            self.close_least_recent(ctx).await?;
        }
    }

    /// Finishes the file written to least recently: with input grouped by
    /// key, the key that is done.
    async fn close_least_recent(&mut self, ctx: &WriterContext) -> Result<()> {
        let key = self
            .open
            .keys()
            .min_by_key(|k| self.last_written.get(*k).copied().unwrap_or(0))
            .cloned()
            .expect("writers are open");
        self.close(&key, ctx).await?;
        self.closed_early.insert(key);
        Ok(())
    }

    async fn close_all(&mut self, ctx: &WriterContext) -> Result<()> {
        let keys: Vec<String> = self.open.keys().cloned().collect();
        for k in keys {
            self.close(&k, ctx).await?;
        }
        Ok(())
    }
}

async fn write_worker(
    cfg: LayoutSinkConfig,
    input: SendableRecordBatchStream,
    worker: usize,
    stage_partition: Option<usize>,
    task_ctx: Arc<TaskContext>,
) -> Result<Vec<WrittenFile>> {
    let attempt_dir = storage::resolve(&cfg.attempt_dir)
        .map_err(|e| DataFusionError::Execution(e.to_string()))?;
    let input_schema = input.schema();
    let data_schema = Arc::new(input_schema.project(&(0..cfg.data_columns).collect::<Vec<_>>())?);
    let props = Arc::new(writer_properties(&cfg.layout, &data_schema)?);
    let suffix = codec_suffix(props.compression(&ColumnPath::from("")));
    let mut ctx = WriterContext::new(
        attempt_dir,
        data_schema,
        props,
        cfg.layout.clone(),
        suffix,
        cfg.stage_id,
        cfg.task_index,
        worker,
    );
    ctx.attempt_tag = task_ctx
        .task_id()
        .as_deref()
        .and_then(|id| crate::distributed::attempt_tag(id, stage_partition));
    let mut writers = Writers {
        open: HashMap::new(),
        finished: vec![],
        closed_early: HashSet::new(),
        last_written: HashMap::new(),
        clock: 0,
    };
    let mut sorted = cfg.input_sorted;
    let mut stream = input;
    let data_idx: Vec<usize> = (0..cfg.data_columns).collect();
    let mut order = StreamOrder::new(&cfg, &input_schema)?;
    let mut reservation = MemoryConsumer::new(format!("LayoutSink[{worker}]"))
        .with_can_spill(true)
        .register(task_ctx.memory_pool());
    let mut dictionary_decided = cfg.layout.dictionary != Dictionary::Auto;
    while let Some(batch) = stream.try_next().await? {
        if !dictionary_decided && batch.num_rows() > 0 {
            // No file is open yet: every file this worker writes uses the result.
            ctx.props = Arc::new(skip_unique_dictionaries(
                &ctx.props,
                &cfg.layout,
                &batch.project(&data_idx)?,
            ));
            dictionary_decided = true;
        }
        let groups = group_rows(&batch, &cfg, sorted)?;
        let mut groups = groups.into_iter();
        while let Some(group) = groups.next() {
            if !writers.open.contains_key(&group.key) {
                if sorted {
                    // Sorted input: a new key means every open key is done.
                    writers.close_all(&ctx).await?;
                } else if writers.closed_early.contains(&group.key) {
                    // A finished key came back: the input is not grouped by key.
                    writers.close_all(&ctx).await?;
                    reservation.free();
                    let leftover: Vec<RecordBatch> = std::iter::once(group.rows)
                        .chain(groups.map(|g| g.rows))
                        .collect();
                    stream = sort_remaining(&cfg, leftover, stream, task_ctx.clone())?;
                    sorted = true;
                    break;
                } else if writers.open.len() >= cfg.layout.max_open_writers {
                    // At the limit: with input grouped by key, the key
                    // written to least recently is done.
                    writers.close_least_recent(&ctx).await?;
                }
                let writer = PartitionWriter::new(group.partition_path.clone(), group.bucket);
                writers.open.insert(group.key.clone(), writer);
                if let Some(order) = order.as_mut() {
                    order.forget(&group.key);
                }
            }
            writers.touch(&group.key);
            let writer = writers.open.get_mut(&group.key).expect("writer is open");
            let data = group.rows.project(&data_idx)?;
            match order.as_mut().filter(|_| !sorted) {
                None => writer.write(&mut ctx, &data).await?,
                Some(order) => {
                    // Each run is in order; a break starts a new file.
                    for (i, run) in order.runs(&group.key, &data)?.into_iter().enumerate() {
                        if i > 0 || run.breaks_previous {
                            writer.close(&ctx).await?;
                        }
                        writer
                            .write(&mut ctx, &data.slice(run.start, run.len))
                            .await?;
                    }
                }
            }
            // After every key, not every batch: a batch of rows in block
            // order may open dozens of files, each with its encoders.
            writers.fit(&mut reservation, &mut ctx).await?;
        }
    }
    writers.close_all(&ctx).await?;
    Ok(writers.finished)
}

/// Checks rows against the order the input declared, per writer key.
struct StreamOrder {
    columns: Vec<usize>,
    converter: RowConverter,
    /// The last row written per key, in row format.
    last: HashMap<String, OwnedRow>,
}

/// A stretch of a batch that is in order.
struct Run {
    start: usize,
    len: usize,
    /// Whether the run's first row comes before the key's last written row.
    breaks_previous: bool,
}

impl StreamOrder {
    fn new(cfg: &LayoutSinkConfig, schema: &Schema) -> Result<Option<Self>> {
        if cfg.stream_order.is_empty() {
            return Ok(None);
        }
        let fields = cfg
            .stream_order
            .iter()
            .map(|c| c.sort_field(schema))
            .collect();
        Ok(Some(Self {
            columns: cfg.stream_order.iter().map(|c| c.index).collect(),
            converter: RowConverter::new(fields)?,
            last: HashMap::new(),
        }))
    }

    fn forget(&mut self, key: &str) {
        self.last.remove(key);
    }

    /// Cuts `data` (rows of writer `key`) wherever a row sorts before the
    /// one ahead of it; normally one run.
    fn runs(&mut self, key: &str, data: &RecordBatch) -> Result<Vec<Run>> {
        let n = data.num_rows();
        if n == 0 {
            return Ok(vec![]);
        }
        let cols: Vec<ArrayRef> = self
            .columns
            .iter()
            .map(|&i| data.column(i).clone())
            .collect();
        let rows = self.converter.convert_columns(&cols)?;
        let breaks_previous = self.last.get(key).is_some_and(|l| rows.row(0) < l.row());
        let mut runs = vec![];
        let mut start = 0;
        for i in 1..n {
            if rows.row(i) < rows.row(i - 1) {
                runs.push(Run {
                    start,
                    len: i - start,
                    breaks_previous: runs.is_empty() && breaks_previous,
                });
                start = i;
            }
        }
        runs.push(Run {
            start,
            len: n - start,
            breaks_previous: runs.is_empty() && breaks_previous,
        });
        self.last.insert(key.to_string(), rows.row(n - 1).owned());
        Ok(runs)
    }
}

/// Sorts `leftover` followed by the rest of `rest` by the key columns, with
/// DataFusion's external sort: memory stays within the task's pool and the
/// overflow spills to disk.
fn sort_remaining(
    cfg: &LayoutSinkConfig,
    leftover: Vec<RecordBatch>,
    rest: SendableRecordBatchStream,
    task_ctx: Arc<TaskContext>,
) -> Result<SendableRecordBatchStream> {
    let schema = rest.schema();
    let chained = futures::stream::iter(leftover.into_iter().map(Ok)).chain(rest);
    let key_exprs = (cfg.data_columns..cfg.data_columns + cfg.key_count())
        .map(|i| PhysicalSortExpr::new_default(Arc::new(Column::new(schema.field(i).name(), i))));
    // Rows keep their sort_by order within each key.
    let order_exprs = cfg.stream_order.iter().map(|c| {
        PhysicalSortExpr::new(
            Arc::new(Column::new(schema.field(c.index).name(), c.index)),
            c.options(),
        )
    });
    let ordering = LexOrdering::new(key_exprs.chain(order_exprs))
        .ok_or_else(|| DataFusionError::Internal("sorting without keys".into()))?;
    let stream = Box::pin(RecordBatchStreamAdapter::new(schema, chained));
    crate::external_sort::sort_stream(stream, ordering, task_ctx)
}
