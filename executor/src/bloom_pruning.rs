//! Row groups skipped by bloom filters for disjunctions across columns.
//!
//! DataFusion prunes row groups with bloom filters only through literal
//! guarantees, and a disjunction over different columns has none:
//! `from_address = X OR to_address = X` reads every row group, though both
//! columns carry bloom filters. [`BloomPrunedTable`] wraps a Parquet table
//! and, for each such disjunction among a scan's filters, reads the terms'
//! bloom filters and gives every file a `ParquetAccessPlan` that skips the
//! row groups where no term can hold. Row groups without a bloom filter for
//! a term's column are read, as are files whose filters cannot be fetched.

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::datasource::TableProvider;
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::physical_plan::{FileGroup, FileScanConfig, FileScanConfigBuilder};
use datafusion::datasource::source::DataSourceExec;
use datafusion::error::Result;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::logical_expr::{BinaryExpr, Expr, Operator, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStore;
use parquet::basic::Type as PhysicalType;
use parquet::bloom_filter::Sbbf;
use parquet::file::metadata::ParquetMetaData;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Files whose bloom filters are read at once.
const FETCH_CONCURRENCY: usize = 16;

/// What the bloom pass of the scans so far read and skipped.
#[derive(Debug, Default)]
pub struct BloomPruningStats {
    bytes_read: AtomicU64,
    row_groups_checked: AtomicU64,
    row_groups_pruned: AtomicU64,
}

impl BloomPruningStats {
    /// Bloom filter bytes fetched.
    pub fn bytes_read(&self) -> u64 {
        self.bytes_read.load(Ordering::Relaxed)
    }

    /// Row groups whose bloom filters were checked.
    pub fn row_groups_checked(&self) -> u64 {
        self.row_groups_checked.load(Ordering::Relaxed)
    }

    /// Row groups skipped because no term of a disjunction can hold in them.
    pub fn row_groups_pruned(&self) -> u64 {
        self.row_groups_pruned.load(Ordering::Relaxed)
    }

    /// Starts counting again (before a query whose scans are measured).
    pub fn reset(&self) {
        self.bytes_read.store(0, Ordering::Relaxed);
        self.row_groups_checked.store(0, Ordering::Relaxed);
        self.row_groups_pruned.store(0, Ordering::Relaxed);
    }
}

/// A Parquet table (a `ListingTable`, say) whose scans also skip row groups
/// by bloom filters for disjunctions across columns.
#[derive(Debug)]
pub struct BloomPrunedTable {
    inner: Arc<dyn TableProvider>,
    stats: Arc<BloomPruningStats>,
}

impl BloomPrunedTable {
    /// Wraps `inner`, whose scans must be Parquet `DataSourceExec`s to be pruned.
    pub fn new(inner: Arc<dyn TableProvider>) -> Self {
        Self {
            inner,
            stats: Arc::default(),
        }
    }

    /// What this table's bloom pass read and skipped.
    pub fn stats(&self) -> Arc<BloomPruningStats> {
        self.stats.clone()
    }
}

/// One term of a disjunction: `column` equals one of `values`.
#[derive(Debug, Clone, PartialEq)]
struct Term {
    column: String,
    values: Vec<ScalarValue>,
}

/// The terms of `expr` when it is a disjunction of `column = literal` (or
/// `column IN (literals)`) over at least two columns; DataFusion handles
/// those over one column itself.
fn cross_column_terms(expr: &Expr) -> Option<Vec<Term>> {
    let mut terms = vec![];
    collect_terms(expr, &mut terms)?;
    let first = &terms.first()?.column;
    terms.iter().any(|t| &t.column != first).then_some(terms)
}

fn collect_terms(expr: &Expr, out: &mut Vec<Term>) -> Option<()> {
    match expr {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Or,
            right,
        }) => {
            collect_terms(left, out)?;
            collect_terms(right, out)
        }
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::Eq,
            right,
        }) => {
            let (column, value) = match (left.as_ref(), right.as_ref()) {
                (Expr::Column(c), Expr::Literal(v, _)) | (Expr::Literal(v, _), Expr::Column(c)) => {
                    (c, v)
                }
                _ => return None,
            };
            out.push(Term {
                column: column.name.clone(),
                values: vec![value.clone()],
            });
            Some(())
        }
        Expr::InList(list) if !list.negated => {
            let Expr::Column(c) = list.expr.as_ref() else {
                return None;
            };
            let values = list
                .list
                .iter()
                .map(|e| match e {
                    Expr::Literal(v, _) => Some(v.clone()),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            out.push(Term {
                column: c.name.clone(),
                values,
            });
            Some(())
        }
        _ => None,
    }
}

/// Whether `sbbf` may hold `value`, for a column stored as `physical`:
/// `None` when the value's bytes cannot be told (the row group is read).
fn may_contain(sbbf: &Sbbf, physical: PhysicalType, value: &ScalarValue) -> Option<bool> {
    Some(match (physical, value) {
        (
            PhysicalType::BYTE_ARRAY,
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
        ) => sbbf.check(s.as_str()),
        (
            PhysicalType::BYTE_ARRAY,
            ScalarValue::Binary(Some(b))
            | ScalarValue::BinaryView(Some(b))
            | ScalarValue::LargeBinary(Some(b)),
        ) => sbbf.check(b.as_slice()),
        (PhysicalType::INT64, ScalarValue::Int64(Some(v))) => sbbf.check(v),
        (PhysicalType::INT32, ScalarValue::Int32(Some(v))) => sbbf.check(v),
        // `= NULL` holds nowhere.
        (_, v) if v.is_null() => false,
        _ => return None,
    })
}

/// The access plan for `file` that skips its row groups where some
/// disjunction has no term that can hold, or `None` when none is skipped.
async fn file_plan(
    store: &dyn ObjectStore,
    cache: &Arc<FileMetadataCache>,
    file: &PartitionedFile,
    disjunctions: &[Vec<Term>],
    stats: &BloomPruningStats,
) -> Result<Option<ParquetAccessPlan>> {
    let md: Arc<ParquetMetaData> = DFParquetMetadata::new(store, &file.object_meta)
        .with_metadata_size_hint(file.metadata_size_hint)
        .with_file_metadata_cache(Some(cache.clone()))
        .fetch_metadata()
        .await?;
    let groups = md.row_groups();
    let mut plan = file
        .extension::<ParquetAccessPlan>()
        .cloned()
        .filter(|p| p.len() == groups.len())
        .unwrap_or_else(|| ParquetAccessPlan::new_all(groups.len()));
    // Leaf index and physical type of each top-level column a term names.
    let descr = md.file_metadata().schema_descr();
    let mut leaves: HashMap<&str, (usize, PhysicalType)> = HashMap::new();
    for term in disjunctions.iter().flatten() {
        if let Some(i) = (0..descr.num_columns()).find(|&i| {
            let c = descr.column(i);
            c.path().parts().len() == 1 && c.path().parts()[0] == term.column
        }) {
            leaves.insert(term.column.as_str(), (i, descr.column(i).physical_type()));
        }
    }
    // The row groups this file range reads, as DataFusion assigns them.
    let in_range = |g: usize| {
        file.range.as_ref().is_none_or(|r| {
            let c = groups[g].column(0);
            r.contains(
                c.dictionary_page_offset()
                    .unwrap_or_else(|| c.data_page_offset()),
            )
        })
    };
    let candidates: Vec<usize> = (0..groups.len())
        .filter(|&g| plan.should_scan(g) && in_range(g))
        .collect();
    let mut wanted: Vec<(usize, usize)> = vec![];
    let mut ranges = vec![];
    for &g in &candidates {
        for &(leaf, _) in leaves.values() {
            let c = groups[g].column(leaf);
            if let (Some(offset), Some(len)) = (c.bloom_filter_offset(), c.bloom_filter_length())
                && offset >= 0
                && len > 0
            {
                wanted.push((g, leaf));
                ranges.push(offset as u64..offset as u64 + len as u64);
            }
        }
    }
    if ranges.is_empty() {
        return Ok(None);
    }
    let bytes = store
        .get_ranges(&file.object_meta.location, &ranges)
        .await?;
    stats.bytes_read.fetch_add(
        ranges.iter().map(|r| r.end - r.start).sum(),
        Ordering::Relaxed,
    );
    let mut filters: HashMap<(usize, usize), Sbbf> = HashMap::new();
    for (key, b) in wanted.into_iter().zip(bytes) {
        // A filter that does not parse is as good as none: the group is read.
        if let Ok(sbbf) = Sbbf::from_bytes(&b) {
            filters.insert(key, sbbf);
        }
    }
    let mut pruned = 0;
    for &g in &candidates {
        let term_may_hold = |t: &Term| {
            let Some(&(leaf, physical)) = leaves.get(t.column.as_str()) else {
                return true;
            };
            let Some(sbbf) = filters.get(&(g, leaf)) else {
                return true;
            };
            t.values
                .iter()
                .any(|v| may_contain(sbbf, physical, v).unwrap_or(true))
        };
        if disjunctions
            .iter()
            .any(|terms| !terms.iter().any(term_may_hold))
        {
            plan.skip(g);
            pruned += 1;
        }
    }
    stats
        .row_groups_checked
        .fetch_add(candidates.len() as u64, Ordering::Relaxed);
    stats.row_groups_pruned.fetch_add(pruned, Ordering::Relaxed);
    Ok((pruned > 0).then_some(plan))
}

#[async_trait]
impl TableProvider for BloomPrunedTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let plan = self.inner.scan(state, projection, filters, limit).await?;
        let disjunctions: Vec<Vec<Term>> = filters.iter().filter_map(cross_column_terms).collect();
        if disjunctions.is_empty() {
            return Ok(plan);
        }
        let Some(config) = plan
            .downcast_ref::<DataSourceExec>()
            .and_then(|exec| exec.data_source().downcast_ref::<FileScanConfig>())
        else {
            return Ok(plan);
        };
        let store = state.runtime_env().object_store(&config.object_store_url)?;
        let cache = state.runtime_env().cache_manager.get_file_metadata_cache();
        let mut groups = vec![];
        for group in &config.file_groups {
            let files: Vec<PartitionedFile> = futures::stream::iter(group.iter().cloned())
                .map(|file| {
                    let (store, cache, disjunctions) = (&store, &cache, &disjunctions);
                    async move {
                        let plan =
                            file_plan(store.as_ref(), cache, &file, disjunctions, &self.stats)
                                .await?;
                        Ok::<_, datafusion::error::DataFusionError>(match plan {
                            Some(p) => file.with_extension(p),
                            None => file,
                        })
                    }
                })
                .buffered(FETCH_CONCURRENCY)
                .try_collect()
                .await?;
            groups.push(FileGroup::new(files));
        }
        let config = FileScanConfigBuilder::from(config.clone())
            .with_file_groups(groups)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::{col, lit};

    #[test]
    fn disjunctions_over_two_columns_are_split_into_terms() {
        let e = col("from_address")
            .eq(lit("0xa"))
            .or(lit("0xa").eq(col("to_address")));
        let terms = cross_column_terms(&e).unwrap();
        assert_eq!(terms.len(), 2);
        assert_eq!(terms[0].column, "from_address");
        assert_eq!(terms[1].column, "to_address");
        let inlist = col("hash")
            .in_list(vec![lit("0x1"), lit("0x2")], false)
            .or(col("to_address").eq(lit("0xb")));
        assert_eq!(cross_column_terms(&inlist).unwrap()[0].values.len(), 2);
    }

    #[test]
    fn other_predicates_are_left_to_datafusion() {
        // One column: DataFusion's own guarantees cover it.
        assert!(cross_column_terms(&col("a").eq(lit(1)).or(col("a").eq(lit(2)))).is_none());
        // A range term could hold anywhere.
        assert!(cross_column_terms(&col("a").eq(lit(1)).or(col("b").gt(lit(2)))).is_none());
        assert!(cross_column_terms(&col("a").eq(lit(1)).and(col("b").eq(lit(2)))).is_none());
        assert!(
            cross_column_terms(&col("a").in_list(vec![lit(1)], true).or(col("b").eq(lit(2))))
                .is_none()
        );
    }

    #[test]
    fn values_are_checked_as_the_column_stores_them() {
        let mut sbbf = Sbbf::new_with_ndv_fpp(100, 0.01).unwrap();
        sbbf.insert("0xabc");
        sbbf.insert(&7i64);
        let s = |v: &str| ScalarValue::Utf8View(Some(v.into()));
        assert_eq!(
            may_contain(&sbbf, PhysicalType::BYTE_ARRAY, &s("0xabc")),
            Some(true)
        );
        assert_eq!(
            may_contain(&sbbf, PhysicalType::BYTE_ARRAY, &s("0xdef")),
            Some(false)
        );
        assert_eq!(
            may_contain(&sbbf, PhysicalType::INT64, &ScalarValue::Int64(Some(7))),
            Some(true)
        );
        // An Int64 literal against an INT32 column: not told, so read.
        assert_eq!(
            may_contain(&sbbf, PhysicalType::INT32, &ScalarValue::Int64(Some(7))),
            None
        );
        assert_eq!(
            may_contain(&sbbf, PhysicalType::BYTE_ARRAY, &ScalarValue::Utf8(None)),
            Some(false)
        );
    }
}
