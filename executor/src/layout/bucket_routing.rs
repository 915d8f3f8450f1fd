//! Bucket-routed partitions: a query whose output is hash-partitioned on the
//! layout's bucket columns (a join on them, an aggregate grouped by them)
//! has its hash repartitions changed to route whole buckets instead of keys,
//! so the partitions it computes are the layout writer's and the writer
//! needs no repartition of its own. Distributed, that is one shuffle of the
//! output fewer; in one task, one pass of hashing and copying fewer.
//!
//! `Hash([k], n)` becomes `Hash([bucket_route(n, bucket_id(b, k))], n)`:
//! rows of one key still meet in one partition (the route is a function of
//! the key), the two sides of a join still agree (both route the same
//! bucket function of equal keys), and bucket `i` lands in partition
//! `i % n`, so each bucket is written by one writer.

use crate::layout::BucketBy;
use arrow::datatypes::{DataType, Schema};
use datafusion::common::config::ConfigOptions;
use datafusion::error::Result;
use datafusion::physical_expr::{PhysicalExpr, ScalarFunctionExpr};
use datafusion::physical_plan::execution_plan::replace_children_if_necessary;
use datafusion::physical_plan::expressions::{Column, Literal};
use datafusion::physical_plan::repartition::RepartitionExec;
use datafusion::physical_plan::{ExecutionPlan, ExecutionPlanProperties, Partitioning};
use datafusion::scalar::ScalarValue;
use std::sync::Arc;

/// `plan` with its key repartitions routing whole buckets of `bucket_by`, or
/// `None` when its output is not hash-partitioned on exactly the bucket
/// columns (then the writer repartitions by bucket itself). Partitions
/// beyond the bucket count would stay empty, so fewer buckets than
/// partitions also gives `None`.
pub fn route_buckets(
    plan: &Arc<dyn ExecutionPlan>,
    bucket_by: &BucketBy,
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    let Partitioning::Hash(exprs, partitions) = plan.output_partitioning() else {
        return Ok(None);
    };
    let partitions = *partitions;
    if partitions < 2
        || (bucket_by.buckets as usize) < partitions
        || exprs.len() != bucket_by.columns.len()
    {
        return Ok(None);
    }
    // The type of each bucket column, when the partitioning is exactly those columns in order.
    let schema = plan.schema();
    let key_types: Option<Vec<DataType>> = exprs
        .iter()
        .zip(&bucket_by.columns)
        .map(|(expr, name)| {
            let field = schema.field(expr.downcast_ref::<Column>()?.index());
            (field.name() == name).then(|| field.data_type().clone())
        })
        .collect();
    let Some(key_types) = key_types else {
        return Ok(None);
    };
    let Some(routed) = reroute(plan, partitions, bucket_by.buckets, &key_types)? else {
        return Ok(None);
    };
    // The output must still say it is hash-partitioned by a route (the
    // projection above may name the bucket column in it); anything else
    // and the writer repartitions as before.
    match routed.output_partitioning() {
        Partitioning::Hash(e, n) if *n == partitions && e.len() == 1 => Ok(e[0]
            .downcast_ref::<ScalarFunctionExpr>()
            .is_some_and(|f| f.name() == "bucket_route")
            .then_some(routed)),
        _ => Ok(None),
    }
}

/// Rewrites the hash repartitions `plan`'s output partitioning comes from:
/// the first `RepartitionExec` on every path down through children that are
/// hash-partitioned `partitions` ways.
fn reroute(
    plan: &Arc<dyn ExecutionPlan>,
    partitions: usize,
    buckets: u32,
    key_types: &[DataType],
) -> Result<Option<Arc<dyn ExecutionPlan>>> {
    if let Some(repartition) = plan.downcast_ref::<RepartitionExec>() {
        let Partitioning::Hash(keys, n) = repartition.partitioning() else {
            return Ok(None);
        };
        let input = repartition.input();
        let input_schema = input.schema();
        let types = keys
            .iter()
            .map(|k| k.data_type(&input_schema))
            .collect::<Result<Vec<_>>>()?;
        // bucket_id hashes a value's canonical bytes for its type: equal
        // keys of another type (a join key cast for the comparison) could
        // land in another bucket than the output column's.
        if *n != partitions || types != key_types {
            return Ok(None);
        }
        let route = route_expr(keys.clone(), partitions, buckets, &input_schema)?;
        let mut routed = RepartitionExec::try_new(
            Arc::clone(input),
            Partitioning::Hash(vec![route], partitions),
        )?;
        if repartition.preserve_order() {
            routed = routed.with_preserve_order();
        }
        return Ok(Some(Arc::new(routed)));
    }
    let children = plan.children();
    let mut rerouted_any = false;
    let mut new_children = Vec::with_capacity(children.len());
    for child in children {
        let hashed =
            matches!(child.output_partitioning(), Partitioning::Hash(_, n) if *n == partitions);
        if hashed {
            match reroute(child, partitions, buckets, key_types)? {
                Some(c) => {
                    new_children.push(c);
                    rerouted_any = true;
                }
                // A child whose keys cannot be routed would no longer meet
                // its sibling's rows: leave the whole plan as it is.
                None => return Ok(None),
            }
        } else {
            new_children.push(Arc::clone(child));
        }
    }
    if !rerouted_any {
        return Ok(None);
    }
    // Recomputed: the children now say they are partitioned by route.
    Ok(Some(replace_children_if_necessary(
        Arc::clone(plan),
        new_children,
    )?))
}

/// `bucket_route(partitions, bucket_id(buckets, keys...))` over `schema`.
fn route_expr(
    keys: Vec<Arc<dyn PhysicalExpr>>,
    partitions: usize,
    buckets: u32,
    schema: &Schema,
) -> Result<Arc<dyn PhysicalExpr>> {
    let config = Arc::new(ConfigOptions::default());
    let function = |name: &str| {
        crate::udf::all()
            .into_iter()
            .find(|u| u.name() == name)
            .expect("chainbatch functions include bucket_id and bucket_route")
    };
    let mut bucket_args: Vec<Arc<dyn PhysicalExpr>> = vec![Arc::new(Literal::new(
        ScalarValue::Int64(Some(buckets as i64)),
    ))];
    bucket_args.extend(keys);
    let bucket = ScalarFunctionExpr::try_new(
        function("bucket_id"),
        bucket_args,
        schema,
        Arc::clone(&config),
    )?;
    let route = ScalarFunctionExpr::try_new(
        function("bucket_route"),
        vec![
            Arc::new(Literal::new(ScalarValue::Int64(Some(partitions as i64)))),
            Arc::new(bucket),
        ],
        schema,
        config,
    )?;
    Ok(Arc::new(route))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray};
    use arrow::datatypes::{Field, Int32Type};
    use datafusion::datasource::MemTable;
    use datafusion::physical_plan::collect_partitioned;
    use datafusion::prelude::SessionContext;
    use std::collections::{BTreeMap, BTreeSet};

    const PARTITIONS: usize = 3;
    const BUCKETS: u32 = 8;

    /// Transactions (hash, fee) and their transfers (transaction_hash,
    /// value), in several input partitions each; a join on the hash and an
    /// aggregate by it.
    async fn context() -> SessionContext {
        let config = crate::session::config().with_target_partitions(PARTITIONS);
        let runtime = Arc::new(datafusion::execution::runtime_env::RuntimeEnv::default());
        let ctx = crate::session::context(config, runtime).unwrap();
        let table = |names: [&str; 2], rows: Vec<(String, i64)>| {
            let schema = Arc::new(Schema::new(vec![
                Field::new(names[0], DataType::Utf8, false),
                Field::new(names[1], DataType::Int64, false),
            ]));
            let parts = rows
                .chunks(37)
                .map(|chunk| {
                    let keys: StringArray = chunk.iter().map(|r| Some(r.0.as_str())).collect();
                    let values: Int64Array = chunk.iter().map(|r| Some(r.1)).collect();
                    vec![
                        RecordBatch::try_new(
                            schema.clone(),
                            vec![Arc::new(keys), Arc::new(values)],
                        )
                        .unwrap(),
                    ]
                })
                .collect();
            Arc::new(MemTable::try_new(schema, parts).unwrap())
        };
        let tx: Vec<(String, i64)> = (0..200).map(|i| (format!("0x{i:064x}"), i)).collect();
        let transfers: Vec<(String, i64)> = (0..500)
            .map(|i| (format!("0x{:064x}", (i * 7) % 230), i))
            .collect();
        ctx.register_table("tx", table(["hash", "fee"], tx))
            .unwrap();
        ctx.register_table("tt", table(["transaction_hash", "value"], transfers))
            .unwrap();
        ctx
    }

    async fn physical_plan(ctx: &SessionContext, sql: &str) -> Arc<dyn ExecutionPlan> {
        let df = ctx.sql(sql).await.unwrap();
        df.create_physical_plan().await.unwrap()
    }

    fn by_hash() -> BucketBy {
        BucketBy {
            columns: vec!["hash".into()],
            buckets: BUCKETS,
        }
    }

    /// Every row of the routed plan, and which partitions each bucket of
    /// `hash` came out of.
    async fn run(
        ctx: &SessionContext,
        plan: Arc<dyn ExecutionPlan>,
    ) -> (Vec<String>, BTreeMap<i32, BTreeSet<usize>>) {
        let partitions = collect_partitioned(plan, ctx.task_ctx()).await.unwrap();
        let mut rows = vec![];
        let mut seen: BTreeMap<i32, BTreeSet<usize>> = BTreeMap::new();
        let bucket_id = crate::udf::all()
            .into_iter()
            .find(|u| u.name() == "bucket_id")
            .unwrap();
        for (p, batches) in partitions.iter().enumerate() {
            for batch in batches {
                let hash = batch.column_by_name("hash").unwrap().clone();
                let args = datafusion::logical_expr::ScalarFunctionArgs {
                    args: vec![
                        datafusion::logical_expr::ColumnarValue::Scalar(ScalarValue::Int64(Some(
                            BUCKETS as i64,
                        ))),
                        datafusion::logical_expr::ColumnarValue::Array(hash),
                    ],
                    arg_fields: vec![
                        Arc::new(Field::new("n", DataType::Int64, false)),
                        Arc::new(Field::new("hash", DataType::Utf8, false)),
                    ],
                    number_rows: batch.num_rows(),
                    return_field: Arc::new(Field::new("b", DataType::Int32, true)),
                    config_options: Arc::new(ConfigOptions::default()),
                };
                let buckets = bucket_id
                    .invoke_with_args(args)
                    .unwrap()
                    .into_array(batch.num_rows())
                    .unwrap();
                for b in buckets.as_primitive::<Int32Type>().iter() {
                    seen.entry(b.unwrap()).or_default().insert(p);
                }
                for i in 0..batch.num_rows() {
                    let row: Vec<String> = batch
                        .columns()
                        .iter()
                        .map(|c| arrow::util::display::array_value_to_string(c, i).unwrap())
                        .collect();
                    rows.push(row.join("|"));
                }
            }
        }
        rows.sort();
        (rows, seen)
    }

    #[tokio::test]
    async fn a_join_and_an_aggregate_on_the_bucket_column_compute_whole_buckets_per_partition() {
        let ctx = context().await;
        for sql in [
            "SELECT t.hash, t.fee, tt.value FROM tx t JOIN tt ON t.hash = tt.transaction_hash",
            "SELECT transaction_hash AS hash, count(*) AS n, sum(value) AS total FROM tt GROUP BY transaction_hash",
        ] {
            let plan = physical_plan(&ctx, sql).await;
            let routed = route_buckets(&plan, &by_hash())
                .unwrap()
                .unwrap_or_else(|| panic!("not routed: {sql}"));
            let text = datafusion::physical_plan::displayable(routed.as_ref())
                .indent(true)
                .to_string();
            assert!(text.contains("bucket_route(3, bucket_id(8, "), "{text}");
            let (expected, _) = run(&ctx, plan).await;
            let (rows, buckets) = run(&ctx, routed).await;
            assert_eq!(rows, expected, "{sql}");
            assert!(!rows.is_empty());
            assert_eq!(buckets.len(), BUCKETS as usize, "{sql}");
            for (bucket, partitions) in buckets {
                let want = BTreeSet::from([bucket as usize % PARTITIONS]);
                assert_eq!(partitions, want, "bucket {bucket} of {sql}");
            }
        }
    }

    #[tokio::test]
    async fn output_not_partitioned_on_the_bucket_columns_is_left_to_the_writer() {
        let ctx = context().await;
        let cases = [
            // Partitioned on the hash, bucketed by something else.
            (
                "SELECT t.hash, t.fee FROM tx t JOIN tt ON t.hash = tt.transaction_hash",
                BucketBy {
                    columns: vec!["fee".into()],
                    buckets: BUCKETS,
                },
            ),
            // The key leaves the output under another name only through an expression.
            (
                "SELECT lower(transaction_hash) AS hash, count(*) AS n FROM tt GROUP BY transaction_hash",
                by_hash(),
            ),
            // Fewer buckets than partitions.
            (
                "SELECT t.hash, t.fee FROM tx t JOIN tt ON t.hash = tt.transaction_hash",
                BucketBy {
                    columns: vec!["hash".into()],
                    buckets: 2,
                },
            ),
        ];
        for (sql, bucket_by) in cases {
            let plan = physical_plan(&ctx, sql).await;
            assert!(
                route_buckets(&plan, &bucket_by).unwrap().is_none(),
                "{sql} by {:?}",
                bucket_by.columns
            );
        }
    }
}
