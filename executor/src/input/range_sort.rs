//! `RangeSortExec`: sorts a scan whose files declare no order, one range of
//! the first sort key at a time, in memory.
//!
//! Most writers (the AWS dataset's producer, Spark, pandas) declare no row
//! order, yet their row groups cover ranges of `block_number` that do not
//! overlap: the producer writes block by block. When the footers' statistics
//! show that, the scan reads the row groups in key order and each run of
//! overlapping row groups (a *unit*) can be sorted on its own: the units,
//! one after the other, are the whole input in order. Memory is one unit,
//! not the task's input, and input already in order costs a check, no copy.
//!
//! Statistics are trusted only for where a unit ends; every row is checked
//! against what was already emitted, so footers that are wrong stop the task
//! with an error rather than emit rows out of order. When the pool refuses a
//! unit, the rest of the partition goes through DataFusion's spilling sort.

use arrow::array::{Array, ArrayRef, BooleanArray, Scalar};
use arrow::compute::kernels::cmp::{gt, gt_eq, lt_eq};
use arrow::compute::{
    BatchCoalescer, SortColumn, concat, filter_record_batch, interleave_record_batch,
    lexsort_to_indices, not,
};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::{MemoryConsumer, MemoryReservation};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_expr::{EquivalenceProperties, LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::stream::{RecordBatchReceiverStream, RecordBatchStreamAdapter};
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};
use std::fmt;
use std::sync::Arc;
use tokio::sync::mpsc::Sender;

/// Where each unit of one scan partition ends, in the order they are read;
/// rows above the last end belong to the last unit.
pub type UnitBounds = Vec<UnitEnd>;

/// The end of one unit.
#[derive(Debug, Clone, PartialEq)]
pub struct UnitEnd {
    /// The greatest first-key value of the unit's row groups.
    pub greatest: ScalarValue,
    /// Whether the next unit starts at `greatest` (a writer that cuts files
    /// by row count splits a block between two files): rows equal to it
    /// wait and are sorted with the next unit.
    pub shared_with_next: bool,
}

/// The physical operator that sorts each unit of its scan's partitions in
/// memory and so streams every partition in the sort key's order.
///
/// The scan is held inside, not as a child: the units follow from its file
/// groups, which the optimizer would otherwise be free to regroup (it
/// splits and rebalances file scans that declare no order).
#[derive(Debug)]
pub struct RangeSortExec {
    input: Arc<dyn ExecutionPlan>,
    ordering: LexOrdering,
    /// Per input partition, where its units end.
    units: Vec<UnitBounds>,
    /// The most bytes one partition's unit may hold when the pool is short
    /// (its share of the pool, which the plan sized units for).
    unit_budget: usize,
    properties: Arc<PlanProperties>,
}

impl RangeSortExec {
    /// Sorts `input` by `ordering` (columns of the input, the first
    /// ascending), with `units[p]` the unit bounds of partition `p`; a unit
    /// holds up to `unit_budget` bytes even when the pool is short.
    pub fn new(
        input: Arc<dyn ExecutionPlan>,
        ordering: LexOrdering,
        units: Vec<UnitBounds>,
        unit_budget: usize,
    ) -> Self {
        let eq = EquivalenceProperties::new_with_orderings(input.schema(), [ordering.clone()]);
        let properties = PlanProperties::new(
            eq,
            input.output_partitioning().clone(),
            input.pipeline_behavior(),
            input.boundedness(),
        );
        Self {
            input,
            ordering,
            units,
            unit_budget,
            properties: Arc::new(properties),
        }
    }
}

impl DisplayAs for RangeSortExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let units: Vec<usize> = self.units.iter().map(|u| u.len()).collect();
        write!(
            f,
            "RangeSortExec: [{}], units per partition={units:?}, scan: {}",
            self.ordering,
            datafusion::physical_plan::displayable(self.input.as_ref()).one_line()
        )
    }
}

impl ExecutionPlan for RangeSortExec {
    fn name(&self) -> &str {
        "RangeSortExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
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
        _children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let input = self.input.execute(partition, context.clone())?;
        let mut builder = RecordBatchReceiverStream::builder(self.schema(), 2);
        let tx = builder.tx();
        let sorter = UnitSorter {
            ordering: self.ordering.clone(),
            bounds: self.units.get(partition).cloned().unwrap_or_default(),
            unit: 0,
            buffer: vec![],
            floor: None,
            reservation: MemoryConsumer::new(format!("RangeSort[{partition}]"))
                .register(context.memory_pool()),
            unit_budget: self.unit_budget,
            batch_size: context.session_config().batch_size(),
            out: out_coalescer(self.schema(), context.session_config().batch_size()),
            tx,
        };
        builder.spawn(sorter.run(input, context));
        Ok(builder.build())
    }
}

/// Sorts the units of one partition as they stream in.
struct UnitSorter {
    ordering: LexOrdering,
    bounds: UnitBounds,
    /// The unit being gathered (an index into `bounds`, or its length).
    unit: usize,
    buffer: Vec<RecordBatch>,
    /// The greatest first-key value emitted so far: no later row may be at
    /// or below it.
    floor: Option<ScalarValue>,
    reservation: MemoryReservation,
    unit_budget: usize,
    batch_size: usize,
    /// Small units (a file per block) leave as batches of `batch_size` rows,
    /// so what follows pays its per-batch cost once per batch, not per unit.
    out: BatchCoalescer,
    tx: Sender<Result<RecordBatch>>,
}

/// Joins output batches below half of `batch_size` rows into batches of
/// `batch_size`; larger ones pass as they are (after what was buffered).
fn out_coalescer(schema: SchemaRef, batch_size: usize) -> BatchCoalescer {
    let batch_size = batch_size.max(1);
    BatchCoalescer::new(schema, batch_size)
        .with_biggest_coalesce_batch_size(Some((batch_size / 2).max(1)))
}

impl UnitSorter {
    async fn run(
        mut self,
        mut input: SendableRecordBatchStream,
        ctx: Arc<TaskContext>,
    ) -> Result<()> {
        while let Some(batch) = input.try_next().await? {
            let mut rest = batch;
            while rest.num_rows() > 0 {
                let key = self.first_key(&rest)?;
                self.check_floor(&key)?;
                // The rows of this unit, and those of later units.
                let (now, later) = match self.bounds.get(self.unit) {
                    // The last unit takes everything that is left.
                    None => (Some(rest), None),
                    Some(end) => {
                        let beyond = gt(&key, &Scalar::new(end.greatest.to_array()?))?;
                        match beyond.true_count() {
                            0 => (Some(rest), None),
                            n if n == rest.num_rows() => (None, Some(rest)),
                            _ => (
                                Some(filter_record_batch(&rest, &not(&beyond)?)?),
                                Some(filter_record_batch(&rest, &beyond)?),
                            ),
                        }
                    }
                };
                if let Some(now) = now
                    && let Some(refused) = self.gather(now)
                {
                    let pending = std::iter::once(refused).chain(later).collect();
                    return self.spill(pending, input, ctx).await;
                }
                let Some(later) = later else { break };
                // A row of a later unit arrived: this one is complete.
                self.emit_unit().await?;
                self.unit += 1;
                rest = later;
            }
        }
        self.emit_unit().await?;
        self.finish().await
    }

    fn first_key(&self, batch: &RecordBatch) -> Result<ArrayRef> {
        self.ordering
            .first()
            .expr
            .evaluate(batch)?
            .into_array(batch.num_rows())
    }

    /// Fails when a row is at or below a first-key value already emitted:
    /// the footers' statistics were wrong.
    fn check_floor(&self, key: &ArrayRef) -> Result<()> {
        if key.null_count() > 0 {
            return Err(DataFusionError::Execution(format!(
                "input rows hold nulls in {}, which their files' statistics say it has none of",
                self.ordering.first().expr
            )));
        }
        let Some(floor) = &self.floor else {
            return Ok(());
        };
        let below: BooleanArray = lt_eq(key, &Scalar::new(floor.to_array()?))?;
        if below.true_count() > 0 {
            let i = below.iter().position(|b| b == Some(true)).unwrap_or(0);
            let value = ScalarValue::try_from_array(key, i)?;
            return Err(DataFusionError::Execution(format!(
                "input rows are not where their files' statistics put them: {} {value} \
                 arrived after {floor} was written; the Parquet footers' min/max of this \
                 column are wrong (rewrite the files, or declare no sort_by for this node)",
                self.ordering.first().expr
            )));
        }
        Ok(())
    }

    /// Adds `batch` to the unit; hands it back when the unit would pass its
    /// budget and the pool refuses it too. Within the budget the unit takes
    /// its memory even from a short pool: the plan sized units to the
    /// worker's share, and the writers flush or finish files to give way.
    fn gather(&mut self, batch: RecordBatch) -> Option<RecordBatch> {
        if batch.num_rows() == 0 {
            return None;
        }
        let size = batch.get_array_memory_size();
        if self.reservation.try_grow(size).is_err() {
            if self.reservation.size() + size > self.unit_budget {
                return Some(batch);
            }
            self.reservation.grow(size);
        }
        self.buffer.push(batch);
        None
    }

    /// Sorts the gathered unit and sends it on, `batch_size` rows at a time;
    /// a unit already in order is sent as it came. When the next unit starts
    /// at this one's greatest value, the rows equal to it stay gathered.
    async fn emit_unit(&mut self) -> Result<()> {
        let shared = self
            .bounds
            .get(self.unit)
            .is_some_and(|end| end.shared_with_next);
        let batches = std::mem::take(&mut self.buffer);
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if rows == 0 {
            return Ok(());
        }
        let columns = self
            .ordering
            .iter()
            .map(|e| {
                let parts = batches
                    .iter()
                    .map(|b| e.expr.evaluate(b)?.into_array(b.num_rows()))
                    .collect::<Result<Vec<_>>>()?;
                let refs: Vec<&dyn Array> = parts.iter().map(|a| a.as_ref()).collect();
                Ok(SortColumn {
                    values: concat(&refs)?,
                    options: Some(e.options),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // A unit that arrives in order (a producer's block, a file written
        // sorted) is checked in one pass and sent as it came: with a file
        // per block, sorting each unit was most of this operator's time.
        if !shared && self.in_order_by_first_key(&columns[0])? {
            self.floor = Some(ScalarValue::try_from_array(&columns[0].values, rows - 1)?);
            for b in batches {
                self.send(b).await?;
            }
            self.reservation.free();
            return Ok(());
        }
        let indices = lexsort_to_indices(&columns, None)?;
        let sorted = indices.values();
        let first_key = &columns[0].values;
        // Rows sent now: all, or those below the greatest value when the
        // next unit starts at it.
        let mut send = rows;
        if shared {
            let greatest = ScalarValue::try_from_array(first_key, sorted[rows - 1] as usize)?;
            while send > 0
                && ScalarValue::try_from_array(first_key, sorted[send - 1] as usize)? == greatest
            {
                send -= 1;
            }
        }
        if send > 0 {
            let last = ScalarValue::try_from_array(first_key, sorted[send - 1] as usize)?;
            self.floor = Some(last);
        }
        let in_order = sorted.iter().enumerate().all(|(i, &v)| i == v as usize);
        if in_order && send == rows {
            for b in batches {
                self.send(b).await?;
            }
            self.reservation.free();
            return Ok(());
        }
        let mut location = Vec::with_capacity(rows);
        for (bi, b) in batches.iter().enumerate() {
            location.extend((0..b.num_rows()).map(|r| (bi, r)));
        }
        let refs: Vec<&RecordBatch> = batches.iter().collect();
        let picks = |range: &[u32]| -> Vec<(usize, usize)> {
            range.iter().map(|&i| location[i as usize]).collect()
        };
        for chunk in sorted[..send].chunks(self.batch_size.max(1)) {
            self.send(interleave_record_batch(&refs, &picks(chunk))?)
                .await?;
        }
        let kept = if send < rows {
            Some(interleave_record_batch(&refs, &picks(&sorted[send..]))?)
        } else {
            None
        };
        drop(refs);
        drop(batches);
        self.reservation.free();
        if let Some(kept) = kept
            && let Some(refused) = self.gather(kept)
        {
            // Rows of one key value the pool cannot hold: kept all the
            // same, as one value's rows are few.
            self.buffer.push(refused);
        }
        Ok(())
    }

    /// Whether the unit's rows are in the sort's order by their first key
    /// (`key`) alone: strictly ascending, or ascending when it is the only key.
    fn in_order_by_first_key(&self, key: &SortColumn) -> Result<bool> {
        if key.options.is_some_and(|o| o.descending) {
            return Ok(false);
        }
        let n = key.values.len();
        if n < 2 {
            return Ok(true);
        }
        let (earlier, next) = (key.values.slice(0, n - 1), key.values.slice(1, n - 1));
        // Equal neighbours are in order only when no later key decides.
        let out_of_order = if self.ordering.len() == 1 {
            gt(&earlier, &next)?
        } else {
            gt_eq(&earlier, &next)?
        };
        Ok(out_of_order.true_count() == 0 && out_of_order.null_count() == 0)
    }

    async fn send(&mut self, batch: RecordBatch) -> Result<()> {
        self.out.push_batch(batch)?;
        self.send_completed().await
    }

    /// Sends what the coalescer still holds.
    async fn finish(&mut self) -> Result<()> {
        self.out.finish_buffered_batch()?;
        self.send_completed().await
    }

    async fn send_completed(&mut self) -> Result<()> {
        while let Some(batch) = self.out.next_completed_batch() {
            self.tx
                .send(Ok(batch))
                .await
                .map_err(|_| DataFusionError::Execution("range sort output dropped".into()))?;
        }
        Ok(())
    }

    /// Sorts the gathered unit, `pending` and the rest of `input` with
    /// DataFusion's external sort, which spills instead of failing.
    async fn spill(
        mut self,
        pending: Vec<RecordBatch>,
        input: SendableRecordBatchStream,
        ctx: Arc<TaskContext>,
    ) -> Result<()> {
        let schema: SchemaRef = input.schema();
        let buffered = std::mem::take(&mut self.buffer);
        self.reservation.free();
        let head = futures::stream::iter(buffered.into_iter().chain(pending).map(Ok));
        let stream = Box::pin(RecordBatchStreamAdapter::new(schema, head.chain(input)));
        let mut sorted = crate::external_sort::sort_stream(stream, self.ordering.clone(), ctx)?;
        while let Some(batch) = sorted.next().await.transpose()? {
            self.send(batch).await?;
        }
        self.finish().await
    }
}

/// The ordering over `schema` of the named columns, ascending with nulls
/// last, as far as the schema has them; `None` when it lacks the first.
pub fn ordering_of(schema: &SchemaRef, columns: &[String]) -> Option<LexOrdering> {
    let exprs = columns.iter().map_while(|c| {
        let idx = schema.index_of(c).ok()?;
        Some(PhysicalSortExpr::new(
            Arc::new(Column::new(c, idx)),
            arrow::compute::SortOptions {
                descending: false,
                nulls_first: false,
            },
        ))
    });
    LexOrdering::new(exprs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};
    use datafusion::datasource::memory::MemorySourceConfig;
    use datafusion::execution::runtime_env::RuntimeEnvBuilder;
    use datafusion::physical_plan::collect;
    use datafusion::prelude::{SessionConfig, SessionContext};

    fn batch(blocks: &[i64]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("block_number", DataType::Int64, false),
            Field::new("row", DataType::Int64, false),
        ]));
        let rows: Vec<i64> = (0..blocks.len() as i64).collect();
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(blocks.to_vec())),
                Arc::new(Int64Array::from(rows)),
            ],
        )
        .unwrap()
    }

    async fn sort(
        batches: Vec<RecordBatch>,
        bounds: &[(i64, bool)],
        pool: usize,
    ) -> Result<Vec<i64>> {
        let schema = batches[0].schema();
        let input = MemorySourceConfig::try_new_exec(&[batches], schema.clone(), None)?;
        let ordering = ordering_of(&schema, &["block_number".to_string()]).unwrap();
        let bounds = bounds
            .iter()
            .map(|&(b, shared_with_next)| UnitEnd {
                greatest: ScalarValue::Int64(Some(b)),
                shared_with_next,
            })
            .collect();
        let exec = Arc::new(RangeSortExec::new(input, ordering, vec![bounds], 0));
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_limit(pool, 1.0)
            .build_arc()?;
        let config = SessionConfig::new()
            .with_batch_size(3)
            .set_usize("datafusion.execution.sort_spill_reservation_bytes", 1024);
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        let out = collect(exec, ctx.task_ctx()).await?;
        Ok(out
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect())
    }

    #[tokio::test]
    async fn units_are_sorted_one_by_one_into_one_order() {
        // Units end at 9 and 19; a batch may hold rows of two units.
        let batches = vec![batch(&[5, 1, 9]), batch(&[3, 12, 15]), batch(&[11, 25, 20])];
        let out = sort(batches, &[(9, false), (19, false)], 1 << 20)
            .await
            .unwrap();
        assert_eq!(out, vec![1, 3, 5, 9, 11, 12, 15, 20, 25]);
    }

    #[tokio::test]
    async fn units_of_a_row_or_two_leave_in_batches_of_batch_size() {
        // Files of one block each: seven units, batch size 8.
        let batches: Vec<RecordBatch> = [[2, 1], [3, 3], [5, 4], [6, 6], [8, 7], [9, 9], [10, 10]]
            .iter()
            .map(|b| batch(b))
            .collect();
        let schema = batches[0].schema();
        let input = MemorySourceConfig::try_new_exec(&[batches], schema.clone(), None).unwrap();
        let ordering = ordering_of(&schema, &["block_number".to_string()]).unwrap();
        let ends = [2, 3, 5, 6, 8, 9, 10]
            .map(|v| UnitEnd {
                greatest: ScalarValue::Int64(Some(v)),
                shared_with_next: false,
            })
            .to_vec();
        let exec = Arc::new(RangeSortExec::new(input, ordering, vec![ends], usize::MAX));
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_batch_size(8));
        let out = collect(exec, ctx.task_ctx()).await.unwrap();
        let sizes: Vec<usize> = out.iter().map(|b| b.num_rows()).collect();
        assert_eq!(sizes, vec![8, 6]);
        let keys: Vec<i64> = out
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(keys, vec![1, 2, 3, 3, 4, 5, 6, 6, 7, 8, 9, 9, 10, 10]);
    }

    #[tokio::test]
    async fn units_in_order_pass_as_they_came_and_later_rows_are_still_checked() {
        // The first unit is in order and passes as it came; the second
        // holds a row below what the first emitted.
        let batches = vec![batch(&[1, 2, 2]), batch(&[3, 4]), batch(&[1, 5])];
        let out = sort(batches[..2].to_vec(), &[(2, false)], 1 << 20)
            .await
            .unwrap();
        assert_eq!(out, vec![1, 2, 2, 3, 4]);
        let err = sort(batches, &[(2, false)], 1 << 20).await.unwrap_err();
        assert!(err.to_string().contains("1 arrived after 2"), "{err}");
    }

    #[tokio::test]
    async fn equal_first_keys_are_ordered_by_the_second_key() {
        // Keys in order by block alone, not by (block, row): sorted.
        let schema = Arc::new(Schema::new(vec![
            Field::new("block_number", DataType::Int64, false),
            Field::new("row", DataType::Int64, false),
        ]));
        let input = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![4, 4, 5])),
                Arc::new(Int64Array::from(vec![9, 1, 0])),
            ],
        )
        .unwrap();
        let exec = MemorySourceConfig::try_new_exec(&[vec![input]], schema.clone(), None).unwrap();
        let ordering =
            ordering_of(&schema, &["block_number".to_string(), "row".to_string()]).unwrap();
        let exec = Arc::new(RangeSortExec::new(exec, ordering, vec![vec![]], usize::MAX));
        let out = collect(exec, SessionContext::new().task_ctx())
            .await
            .unwrap();
        let rows: Vec<i64> = out
            .iter()
            .flat_map(|b| b.column(1).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        assert_eq!(rows, vec![1, 9, 0]);
    }

    #[tokio::test]
    async fn a_value_shared_by_two_units_is_sorted_with_the_second() {
        // A block (7) split between two files, its rows in both units; the
        // row numbers show each 7 keeps the order of the second key.
        let batches = vec![batch(&[7, 3, 7]), batch(&[7, 9, 8])];
        let schema = batches[0].schema();
        let input = MemorySourceConfig::try_new_exec(&[batches], schema.clone(), None).unwrap();
        let ordering =
            ordering_of(&schema, &["block_number".to_string(), "row".to_string()]).unwrap();
        let end = |v, shared_with_next| UnitEnd {
            greatest: ScalarValue::Int64(Some(v)),
            shared_with_next,
        };
        let exec = Arc::new(RangeSortExec::new(
            input,
            ordering,
            vec![vec![end(7, true), end(9, false)]],
            usize::MAX,
        ));
        let ctx = SessionContext::new_with_config(SessionConfig::new().with_batch_size(2));
        let out = collect(exec, ctx.task_ctx()).await.unwrap();
        let pairs: Vec<(i64, i64)> = out
            .iter()
            .flat_map(|b| {
                let k = b.column(0).as_primitive::<Int64Type>().values().to_vec();
                let r = b.column(1).as_primitive::<Int64Type>().values().to_vec();
                k.into_iter().zip(r)
            })
            .collect();
        assert_eq!(pairs, vec![(3, 1), (7, 0), (7, 0), (7, 2), (8, 2), (9, 1)]);
    }

    #[tokio::test]
    async fn a_pool_too_small_for_a_unit_sorts_the_rest_with_spilling() {
        let batches: Vec<RecordBatch> = (0..50)
            .map(|i| batch(&[(i * 7919) % 500, (i * 104_729) % 500, (i * 31) % 500]))
            .collect();
        let mut expected: Vec<i64> = batches
            .iter()
            .flat_map(|b| b.column(0).as_primitive::<Int64Type>().values().to_vec())
            .collect();
        expected.sort();
        // One unit over everything, in a pool that cannot hold it.
        let out = sort(batches, &[], 8 * 1024).await.unwrap();
        assert_eq!(out, expected);
    }

    #[tokio::test]
    async fn rows_outside_their_statistics_fail_rather_than_come_out_of_order() {
        // The first unit claims to end at 9, but a row of 4 arrives after
        // it was sent on (a row that arrives in time is merely sorted in).
        let batches = vec![batch(&[5, 1, 9]), batch(&[12]), batch(&[4])];
        let err = sort(batches, &[(9, false), (19, false)], 1 << 20)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("block_number") && text.contains("statistics"),
            "{text}"
        );
    }
}
