//! The query suite: SQL files over a table named `transactions`, with
//! `{{placeholders}}` filled from the data so that every query selects
//! something real; each runs several times per layout, with DataFusion's
//! scan metrics collected from the executed plan.

use chainbatch_executor::bloom_pruning::BloomPrunedTable;
use chainbatch_executor::storage;
use datafusion::arrow::datatypes::DataType;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::physical_plan::metrics::MetricValue;
use datafusion::physical_plan::{ExecutionPlan, collect};
use datafusion::prelude::SessionContext;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

/// The default suite, the same files as benches/queries/.
const DEFAULT_SUITE: [(&str, &str); 5] = [
    (
        "point_lookup",
        include_str!("../../../benches/queries/point_lookup.sql"),
    ),
    (
        "address_month",
        include_str!("../../../benches/queries/address_month.sql"),
    ),
    (
        "day_summary",
        include_str!("../../../benches/queries/day_summary.sql"),
    ),
    (
        "block_range",
        include_str!("../../../benches/queries/block_range.sql"),
    ),
    (
        "top_senders_week",
        include_str!("../../../benches/queries/top_senders_week.sql"),
    ),
];

#[derive(Debug, Clone)]
pub struct Query {
    pub name: String,
    pub sql: String,
}

/// The `.sql` files of `dir` in name order, or the default suite.
pub fn load_suite(dir: Option<&Path>) -> Result<Vec<Query>, String> {
    let Some(dir) = dir else {
        return Ok(DEFAULT_SUITE
            .iter()
            .map(|(n, s)| Query {
                name: n.to_string(),
                sql: s.to_string(),
            })
            .collect());
    };
    let entries =
        std::fs::read_dir(dir).map_err(|e| format!("--queries {}: {e}", dir.display()))?;
    let mut paths: Vec<_> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "sql"))
        .collect();
    paths.sort();
    if paths.is_empty() {
        return Err(format!(
            "--queries {}: no .sql files in this folder",
            dir.display()
        ));
    }
    paths
        .iter()
        .map(|p| {
            Ok(Query {
                name: p
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                sql: std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?,
            })
        })
        .collect()
}

/// The placeholders `placeholders` fills.
pub const PLACEHOLDERS: [&str; 10] = [
    "tx_hash",
    "address",
    "day",
    "day_end",
    "week_start",
    "week_end",
    "month_start",
    "month_end",
    "block_from",
    "block_to",
];

/// Checks that every query uses known placeholders only, before any data
/// is written.
pub fn check_placeholders(suite: &[Query]) -> Result<(), String> {
    let known: BTreeMap<String, String> = PLACEHOLDERS
        .iter()
        .map(|p| (p.to_string(), String::new()))
        .collect();
    suite.iter().try_for_each(|q| fill(q, &known).map(|_| ()))
}

/// Replaces every `{{name}}` in `sql`; an unknown name is an error that
/// names the query and lists the known ones.
pub fn fill(query: &Query, values: &BTreeMap<String, String>) -> Result<String, String> {
    let mut out = String::with_capacity(query.sql.len());
    let mut rest = query.sql.as_str();
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find("}}")
            .ok_or_else(|| format!("query {}: `{{{{` without `}}}}`", query.name))?;
        let name = after[..end].trim();
        let v = values.get(name).ok_or_else(|| {
            format!(
                "query {}: unknown placeholder {{{{{name}}}}}; known: {}",
                query.name,
                values.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        })?;
        out.push_str(v);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// A session with `transactions` registered over a written layout.
pub async fn session(
    table_uri: &str,
    partition_columns: &[String],
) -> Result<SessionContext, String> {
    // The bloom-pruned table below probes bloom filters itself, a block per
    // value; DataFusion's own pass would read every filter whole.
    let mut config = datafusion::prelude::SessionConfig::new();
    config.options_mut().execution.parquet.bloom_filter_on_read = false;
    let mut ctx = SessionContext::new_with_config(config);
    chainbatch_executor::udf::register_all(&mut ctx).map_err(|e| e.to_string())?;
    storage::register(&ctx.runtime_env(), table_uri).map_err(|e| e.to_string())?;
    let url = ListingTableUrl::parse(format!("{}/", table_uri.trim_end_matches('/')))
        .map_err(|e| e.to_string())?;
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
        .with_file_extension(".parquet")
        .with_table_partition_cols(
            partition_columns
                .iter()
                .map(|c| (c.clone(), DataType::Utf8))
                .collect(),
        );
    let schema = options
        .infer_schema(&ctx.state(), &url)
        .await
        .map_err(|e| format!("cannot read {table_uri}: {e}"))?;
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    let table = ListingTable::try_new(config).map_err(|e| e.to_string())?;
    // Equalities and disjunctions of them, across columns too (`from = X
    // OR to = X`, which DataFusion's scan alone does not prune), skip row
    // groups by bloom filters.
    let table = BloomPrunedTable::new(Arc::new(table));
    ctx.register_table("transactions", Arc::new(table))
        .map_err(|e| e.to_string())?;
    Ok(ctx)
}

/// Values for the placeholders, read from the data: a transaction in the
/// middle of the range, a busy (not the busiest) sender, the middle day,
/// the first week and month, and 1% of the block range.
pub async fn placeholders(ctx: &SessionContext) -> Result<BTreeMap<String, String>, String> {
    let one = |sql: String| async move {
        let batches = ctx
            .sql(&sql)
            .await
            .map_err(|e| e.to_string())?
            .collect()
            .await
            .map_err(|e| e.to_string())?;
        let b = batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .ok_or_else(|| format!("no rows for {sql}"))?;
        Ok::<Vec<String>, String>(
            (0..b.num_columns())
                .map(|c| {
                    datafusion::arrow::util::display::array_value_to_string(b.column(c), 0)
                        .unwrap_or_default()
                })
                .collect(),
        )
    };
    let range = one("SELECT min(block_number), max(block_number), \
         CAST(CAST(min(block_timestamp) AS DATE) AS VARCHAR), \
         CAST(CAST(max(block_timestamp) AS DATE) AS VARCHAR) FROM transactions"
        .into())
    .await?;
    let parse = |s: &str| s.parse::<i64>().map_err(|e| format!("{s}: {e}"));
    let (lo, hi) = (parse(&range[0])?, parse(&range[1])?);
    let first_day = crate::plan::dates::days_since_epoch(&range[2]).ok_or("bad date")?;
    let last_day = crate::plan::dates::days_since_epoch(&range[3]).ok_or("bad date")?;
    let day = |d: i64| crate::time::civil_date(d);
    let mid_block = lo + (hi - lo) / 2;
    let hash = one(format!(
        "SELECT hash FROM transactions WHERE block_number >= {mid_block} \
         ORDER BY block_number, transaction_index LIMIT 1"
    ))
    .await?;
    let address = match one(
        "SELECT from_address FROM transactions GROUP BY from_address \
         ORDER BY count(*) DESC, from_address LIMIT 1 OFFSET 99"
            .into(),
    )
    .await
    {
        Ok(a) => a,
        Err(_) => {
            one(
                "SELECT from_address FROM transactions GROUP BY from_address \
                 ORDER BY count(*) DESC, from_address LIMIT 1"
                    .into(),
            )
            .await?
        }
    };
    let mid_day = first_day + (last_day - first_day) / 2;
    let span = ((hi - lo) / 100).max(1);
    Ok(BTreeMap::from([
        ("tx_hash".into(), hash[0].clone()),
        ("address".into(), address[0].clone()),
        ("day".into(), day(mid_day)),
        ("day_end".into(), day(mid_day + 1)),
        ("week_start".into(), day(first_day)),
        ("week_end".into(), day(first_day + 7)),
        ("month_start".into(), day(first_day)),
        ("month_end".into(), day(first_day + 30)),
        ("block_from".into(), mid_block.to_string()),
        ("block_to".into(), (mid_block + span).to_string()),
    ]))
}

/// One query against one layout: the median of its runs, and what the
/// scans read and skipped.
#[derive(Debug, Clone, Default, Serialize)]
pub struct QueryResult {
    pub query: String,
    pub median_ms: f64,
    pub runs_ms: Vec<f64>,
    pub rows: usize,
    pub bytes_scanned: u64,
    /// `bytes_scanned` as a percentage of the layout's bytes.
    pub percent_of_dataset: f64,
    /// What Athena would bill for this scan (see `bench::cost`).
    pub athena_usd: f64,
    /// File ranges (whole files, or parts of large ones) read and skipped
    /// by statistics.
    pub file_ranges_scanned: usize,
    pub file_ranges_pruned: usize,
    pub row_groups_scanned: usize,
    pub row_groups_pruned: usize,
}

/// Sums the Parquet scan metrics over every node of an executed plan.
fn scan_metrics(plan: &Arc<dyn ExecutionPlan>, r: &mut QueryResult) {
    let bloom_pruned = add_scan_metrics(plan, r);
    // The bloom pass runs on what statistics kept: what it prunes was
    // counted as matched by statistics, and is not scanned.
    r.row_groups_scanned = r.row_groups_scanned.saturating_sub(bloom_pruned);
}

/// Adds the plan's scan metrics to `r`; returns the row groups DataFusion's
/// bloom pass pruned.
fn add_scan_metrics(plan: &Arc<dyn ExecutionPlan>, r: &mut QueryResult) -> usize {
    let mut bloom_pruned = 0;
    if let Some(m) = plan.metrics() {
        for metric in m.iter() {
            match metric.value() {
                MetricValue::Count { name, count } if name == "bytes_scanned" => {
                    r.bytes_scanned += count.value() as u64
                }
                MetricValue::PruningMetrics {
                    name,
                    pruning_metrics,
                } => match name.as_ref() {
                    "files_ranges_pruned_statistics" => {
                        r.file_ranges_pruned += pruning_metrics.pruned();
                        r.file_ranges_scanned += pruning_metrics.matched();
                    }
                    "row_groups_pruned_statistics" => {
                        r.row_groups_pruned += pruning_metrics.pruned();
                        r.row_groups_scanned += pruning_metrics.matched();
                    }
                    "row_groups_pruned_bloom_filter" => {
                        r.row_groups_pruned += pruning_metrics.pruned();
                        bloom_pruned += pruning_metrics.pruned();
                    }
                    _ => {}
                },
                _ => {}
            }
        }
    }
    for child in plan.children() {
        bloom_pruned += add_scan_metrics(child, r);
    }
    bloom_pruned
}

pub async fn run_query(
    ctx: &SessionContext,
    name: &str,
    sql: &str,
    runs: usize,
) -> Result<QueryResult, String> {
    let mut result = QueryResult {
        query: name.to_string(),
        ..Default::default()
    };
    let bloom = match ctx.table_provider("transactions").await {
        Ok(t) => t
            .downcast_ref::<BloomPrunedTable>()
            .map(BloomPrunedTable::stats),
        Err(_) => None,
    };
    // Only the first run's reads are reported.
    if let Some(b) = &bloom {
        b.reset();
    }
    for i in 0..runs.max(1) {
        let started = Instant::now();
        let df = ctx
            .sql(sql)
            .await
            .map_err(|e| format!("query {name}: {e}"))?;
        let plan = df
            .create_physical_plan()
            .await
            .map_err(|e| format!("query {name}: {e}"))?;
        let batches = collect(plan.clone(), ctx.task_ctx())
            .await
            .map_err(|e| format!("query {name}: {e}"))?;
        result
            .runs_ms
            .push(started.elapsed().as_secs_f64() * 1000.0);
        if i == 0 {
            result.rows = batches.iter().map(|b| b.num_rows()).sum();
            scan_metrics(&plan, &mut result);
            // The bloom filters read and row groups skipped before the scan.
            if let Some(b) = &bloom {
                result.bytes_scanned += b.bytes_read();
                result.row_groups_pruned += b.row_groups_pruned() as usize;
            }
        }
    }
    let mut sorted = result.runs_ms.clone();
    sorted.sort_by(f64::total_cmp);
    result.median_ms = sorted[sorted.len() / 2];
    Ok(result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_fill_and_unknown_ones_are_named() {
        let q = Query {
            name: "q".into(),
            sql: "SELECT * FROM t WHERE a = '{{x}}' AND b = {{ y }}".into(),
        };
        let v = BTreeMap::from([("x".to_string(), "1".to_string()), ("y".into(), "2".into())]);
        assert_eq!(
            fill(&q, &v).unwrap(),
            "SELECT * FROM t WHERE a = '1' AND b = 2"
        );
        let e = fill(&q, &BTreeMap::from([("x".into(), "1".into())])).unwrap_err();
        assert!(
            e.contains("unknown placeholder {{y}}") && e.contains("known: x"),
            "{e}"
        );
    }

    #[test]
    fn the_default_suite_has_the_five_queries() {
        let names: Vec<String> = load_suite(None)
            .unwrap()
            .into_iter()
            .map(|q| q.name)
            .collect();
        assert_eq!(
            names,
            [
                "point_lookup",
                "address_month",
                "day_summary",
                "block_range",
                "top_senders_week"
            ]
        );
    }
}
