//! Turns a query and a layout into the physical plan that writes it:
//! query → key columns → hash repartition by key → sort (for `sort_by`)
//! → `LayoutSinkExec`, or the shuffle map equivalent.

use crate::error::{TaskError, TaskResult};
use crate::layout::bucket_routing::route_buckets;
use crate::layout::sink::{LayoutSinkConfig, LayoutSinkExec, OrderedColumn};
use crate::layout::{Layout, PartitionColumn};
use arrow::compute::SortOptions;
use datafusion::dataframe::DataFrame;
use datafusion::execution::memory_pool::MemoryLimit;
use datafusion::logical_expr::{Expr, col, lit};
use datafusion::physical_expr::{LexOrdering, PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::sorts::sort::SortExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, Partitioning};
use std::sync::Arc;

/// Name prefix of the derived partition key columns: `__cb_p0`, `__cb_p1`, ...
/// in `partition_by` order.
pub const PARTITION_KEY_PREFIX: &str = "__cb_p";
/// Name of the derived bucket id column, `bucket_id(...)` over the `bucket_by` columns.
pub const BUCKET_KEY: &str = "__cb_bucket";

fn find_column<'a>(df: &'a DataFrame, name: &str, field: &str) -> TaskResult<&'a str> {
    df.schema()
        .fields()
        .iter()
        .find(|f| f.name() == name)
        .map(|f| f.name().as_str())
        .ok_or_else(|| {
            let available: Vec<&str> = df
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().as_str())
                .collect();
            TaskError::bad_spec(
                field,
                format!(
                    "unknown column {name:?}; the query returns {}",
                    available.join(", ")
                ),
            )
        })
}

/// Adds the key columns: data columns first (partition columns removed, as
/// Hive stores them in the path), then one column per partition key, then
/// the bucket id.
pub fn with_key_columns(
    df: DataFrame,
    layout: &Layout,
    field: &str,
) -> TaskResult<(DataFrame, Vec<String>)> {
    let mut keys = vec![];
    for (i, p) in layout.partition_by.iter().enumerate() {
        let f = format!("{field}.partition_by[{i}]");
        let expr = match p {
            PartitionColumn::Column(c) => col(find_column(&df, c, &f)?.to_string()),
            PartitionColumn::Derived { expr, .. } => df
                .parse_sql_expr(expr)
                .map_err(|e| TaskError::bad_spec(&f, format!("{expr:?}: {}", e.find_root())))?,
        };
        keys.push(expr.alias(format!("{PARTITION_KEY_PREFIX}{i}")));
    }
    if let Some(b) = &layout.bucket_by {
        let mut args = vec![lit(b.buckets as i64)];
        for (i, c) in b.columns.iter().enumerate() {
            args.push(col(find_column(
                &df,
                c,
                &format!("{field}.bucket_by.columns[{i}]"),
            )?
            .to_string()));
        }
        let udf = crate::udf::all()
            .into_iter()
            .find(|u| u.name() == "bucket_id")
            .expect("bucket_id is registered");
        keys.push(
            Expr::ScalarFunction(datafusion::logical_expr::expr::ScalarFunction::new_udf(
                udf, args,
            ))
            .alias(BUCKET_KEY),
        );
    }
    for (i, k) in layout.sort_keys().iter().enumerate() {
        find_column(&df, &k.column, &format!("{field}.sort_by[{i}]"))?;
    }
    let partition_names: Vec<&str> = layout.partition_by.iter().map(|p| p.name()).collect();
    let data_columns: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| !partition_names.contains(&n.as_str()))
        .collect();
    let mut exprs: Vec<Expr> = data_columns
        .iter()
        .map(|n| col(format!("\"{n}\"")))
        .collect();
    exprs.extend(keys);
    let df = df
        .select(exprs)
        .map_err(|e| TaskError::bad_spec(field, e.find_root().to_string()))?;
    Ok((df, data_columns))
}

fn column_expr(plan: &Arc<dyn ExecutionPlan>, name: &str) -> TaskResult<Arc<dyn PhysicalExpr>> {
    let idx = plan
        .schema()
        .index_of(name)
        .map_err(|e| TaskError::bad_spec("output.layout", e.to_string()))?;
    Ok(Arc::new(Column::new(name, idx)))
}

/// Spark's and PostgreSQL's default: nulls last ascending, first descending.
fn sort_options(descending: bool) -> SortOptions {
    SortOptions {
        descending,
        nulls_first: descending,
    }
}

/// The least of the task's memory pool one sorting worker gets. DataFusion
/// sorts spill to disk, but a merge still asks the pool for room, which
/// workers sharing a small pool may all hold at once.
const SORT_WORKER_BYTES: usize = 256 * 1024 * 1024;

/// How many workers may sort at once within `limit`.
fn sort_workers(limit: MemoryLimit) -> usize {
    match limit {
        MemoryLimit::Finite(bytes) => (bytes / SORT_WORKER_BYTES).max(1),
        _ => usize::MAX,
    }
}

/// Builds the physical write plan for a table output.
pub async fn table_write_plan(
    df: DataFrame,
    layout: &Layout,
    attempt_dir: &str,
    stage_id: u32,
    task_index: u32,
    parallelism: usize,
) -> TaskResult<Arc<LayoutSinkExec>> {
    let field = "output.layout";
    let memory_limit = df.task_ctx().memory_pool().memory_limit();
    let (df, data_columns) = with_key_columns(df, layout, field)?;
    let (state, logical) = df.into_parts();
    let mut plan = state
        .create_physical_plan(&logical)
        .await
        .map_err(|e| TaskError::from_datafusion("sql", e))?;
    let mut key_names: Vec<String> = (0..layout.partition_by.len())
        .map(|i| format!("{PARTITION_KEY_PREFIX}{i}"))
        .collect();
    if layout.bucket_by.is_some() {
        key_names.push(BUCKET_KEY.to_string());
    }
    let key_exprs = key_names
        .iter()
        .map(|k| column_expr(&plan, k))
        .collect::<TaskResult<Vec<_>>>()?;
    let internal =
        |e: datafusion::error::DataFusionError| TaskError::from_datafusion("output.layout", e);
    let sort_keys = layout.sort_keys();
    // The sort_by columns that are written (partition columns live in paths).
    let mut written_order = vec![];
    for k in &sort_keys {
        if data_columns.contains(&k.column) {
            written_order.push(PhysicalSortExpr::new(
                column_expr(&plan, &k.column)?,
                sort_options(k.descending),
            ));
        }
    }
    // Inputs that already stream in sort_by order (declared by their files
    // and kept by the query) are written as they come: no sort, no spill,
    // no repartition. Each worker then writes its own files per key.
    let stream_order: Vec<OrderedColumn> = if !written_order.is_empty()
        && plan
            .equivalence_properties()
            .ordering_satisfy(written_order.clone())
            .map_err(internal)?
    {
        written_order
            .iter()
            .map(|e| OrderedColumn {
                index: e
                    .expr
                    .downcast_ref::<Column>()
                    .expect("sort_by entries are columns")
                    .index(),
                descending: e.options.descending,
                nulls_first: e.options.nulls_first,
            })
            .collect()
    } else {
        vec![]
    };
    let input_sorted = !sort_keys.is_empty() && stream_order.is_empty();
    let mut partitions = plan.output_partitioning().partition_count();
    // Sorting workers each need a share of the pool big enough to sort and
    // merge; streaming workers need no more than their writers.
    let workers = if input_sorted {
        parallelism.min(sort_workers(memory_limit))
    } else {
        parallelism
    };
    if input_sorted && workers < partitions {
        // Fewer sorters than scan partitions: scan with as many partitions
        // as sorters rather than buffer a faster scan in a repartition.
        let mut state = state.clone();
        state.config_mut().options_mut().execution.target_partitions = workers;
        plan = state
            .create_physical_plan(&logical)
            .await
            .map_err(|e| TaskError::from_datafusion("sql", e))?;
        partitions = plan.output_partitioning().partition_count();
    }
    // A join or aggregate on the bucket columns computes its partitions by
    // bucket instead of by key: each bucket is then in one worker already.
    let mut bucket_routed = false;
    if let Some(bucket_by) = &layout.bucket_by
        && stream_order.is_empty()
        && let Some(routed) = route_buckets(&plan, bucket_by).map_err(internal)?
    {
        plan = routed;
        bucket_routed = true;
    }
    if !key_exprs.is_empty()
        && stream_order.is_empty()
        && !bucket_routed
        && (workers > 1 || partitions > 1)
    {
        // Each key goes to exactly one worker, so a partition's files come
        // from one writer.
        plan = Arc::new(
            RepartitionExec::try_new(plan, Partitioning::Hash(key_exprs.clone(), workers))
                .map_err(internal)?,
        );
    } else if input_sorted && partitions > workers {
        plan = Arc::new(
            RepartitionExec::try_new(plan, Partitioning::RoundRobinBatch(workers))
                .map_err(internal)?,
        );
    }
    if input_sorted {
        let mut ordering: Vec<PhysicalSortExpr> = key_exprs
            .iter()
            .map(|e| PhysicalSortExpr::new_default(e.clone()))
            .collect();
        ordering.extend(written_order.iter().cloned());
        if let Some(lex) = LexOrdering::new(ordering) {
            plan = Arc::new(SortExec::new(lex, plan).with_preserve_partitioning(true));
        }
    }
    let config = LayoutSinkConfig {
        attempt_dir: attempt_dir.to_string(),
        layout: layout.clone(),
        stage_id,
        task_index,
        data_columns: data_columns.len(),
        partition_columns: layout
            .partition_by
            .iter()
            .map(|p| p.name().to_string())
            .collect(),
        bucketed: layout.bucket_by.is_some(),
        input_sorted,
        stream_order,
    };
    Ok(Arc::new(LayoutSinkExec::new(plan, config)))
}

/// Builds the map side of a shuffle: the rows plus their bucket id, sorted
/// by bucket (and `sort_by`) within each worker.
pub async fn shuffle_map_plan(
    df: DataFrame,
    hash_by: &[String],
    buckets: u32,
    sort_by: &[String],
) -> TaskResult<Arc<dyn ExecutionPlan>> {
    let layout = Layout {
        bucket_by: Some(crate::layout::BucketBy {
            columns: hash_by.to_vec(),
            buckets,
        }),
        sort_by: sort_by.to_vec(),
        ..Layout::default()
    };
    let (df, data_columns) = with_key_columns(df, &layout, "output")?;
    let plan = df
        .create_physical_plan()
        .await
        .map_err(|e| TaskError::from_datafusion("sql", e))?;
    let mut ordering = vec![PhysicalSortExpr::new_default(column_expr(
        &plan, BUCKET_KEY,
    )?)];
    for k in layout.sort_keys() {
        if data_columns.contains(&k.column) {
            ordering.push(PhysicalSortExpr::new(
                column_expr(&plan, &k.column)?,
                sort_options(k.descending),
            ));
        }
    }
    let lex = LexOrdering::new(ordering).expect("bucket ordering is not empty");
    Ok(Arc::new(
        SortExec::new(lex, plan).with_preserve_partitioning(true),
    ))
}
