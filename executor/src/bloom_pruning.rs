//! Row groups skipped by bloom filters, probed rather than read.
//!
//! DataFusion prunes row groups with bloom filters only through literal
//! guarantees, which a disjunction over different columns has none of:
//! `from_address = X OR to_address = X` reads every row group, though both
//! columns carry bloom filters. And where it does use a filter, it reads the
//! whole filter, though a lookup needs one 32-byte block of it per value.
//! [`BloomPrunedTable`] wraps a Parquet table and, for each disjunction of
//! `column = literal` / `column IN (literals)` among a scan's filters (one
//! column or several), reads each term's filter header and the blocks its
//! values hash to, and gives every file a `ParquetAccessPlan` that skips the
//! row groups where no term can hold. Row groups without a bloom filter for
//! a term's column are read, as are those whose filters do not have the
//! expected shape. The session should not also run DataFusion's bloom pass
//! (`datafusion.execution.parquet.bloom_filter_on_read = false`), which would
//! read the whole filters again.

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
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::basic::Type as PhysicalType;
use parquet::bloom_filter::Sbbf;
use parquet::file::metadata::ParquetMetaData;
use std::collections::HashMap;
use std::ops::Range;
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
/// `column IN (literals)`), a single term included.
fn bloom_terms(expr: &Expr) -> Option<Vec<Term>> {
    let mut terms = vec![];
    collect_terms(expr, &mut terms)?;
    (!terms.is_empty()).then_some(terms)
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

/// What a bloom filter is asked about `value` in a column stored as
/// `physical`.
#[derive(Debug, PartialEq)]
enum Probe {
    /// The bytes the Parquet writer hashed for it.
    Bytes(Vec<u8>),
    /// `= NULL` holds nowhere.
    Never,
    /// Its stored bytes cannot be told: the row group is read.
    Unknown,
}

fn probe(physical: PhysicalType, value: &ScalarValue) -> Probe {
    match (physical, value) {
        (
            PhysicalType::BYTE_ARRAY,
            ScalarValue::Utf8(Some(s))
            | ScalarValue::Utf8View(Some(s))
            | ScalarValue::LargeUtf8(Some(s)),
        ) => Probe::Bytes(s.as_bytes().to_vec()),
        (
            PhysicalType::BYTE_ARRAY,
            ScalarValue::Binary(Some(b))
            | ScalarValue::BinaryView(Some(b))
            | ScalarValue::LargeBinary(Some(b)),
        ) => Probe::Bytes(b.clone()),
        // Parquet hashes plain values in memory order, as `AsBytes` gives them.
        (PhysicalType::INT64, ScalarValue::Int64(Some(v))) => {
            Probe::Bytes(v.to_ne_bytes().to_vec())
        }
        (PhysicalType::INT32, ScalarValue::Int32(Some(v))) => {
            Probe::Bytes(v.to_ne_bytes().to_vec())
        }
        (_, v) if v.is_null() => Probe::Never,
        _ => Probe::Unknown,
    }
}

/// Size of one block of a split-block bloom filter.
const BLOCK_BYTES: u64 = 32;

/// Where one column chunk's bloom filter lies in its file. The filter is a
/// Thrift header of a few bytes followed by a bitset of a power-of-two
/// number of 32-byte blocks (as every Parquet writer sizes it), so the
/// bitset is the largest power of two within the filter's length.
#[derive(Debug, Clone, PartialEq)]
struct FilterLocation {
    header: Range<u64>,
    bitset_bytes: u64,
}

impl FilterLocation {
    fn new(offset: i64, length: i32) -> Option<Self> {
        let (offset, length) = (u64::try_from(offset).ok()?, u64::try_from(length).ok()?);
        if length <= BLOCK_BYTES {
            return None;
        }
        let bitset_bytes = 1u64 << (63 - length.leading_zeros());
        let header_bytes = length - bitset_bytes;
        (header_bytes > 0 && header_bytes < BLOCK_BYTES).then_some(Self {
            header: offset..offset + header_bytes,
            bitset_bytes,
        })
    }

    /// The block a value hashed to `hash` is in, as Parquet's split-block
    /// filter maps it: the top 32 bits scaled to the number of blocks.
    fn block(&self, hash: u64) -> Range<u64> {
        let blocks = self.bitset_bytes / BLOCK_BYTES;
        let index = ((hash >> 32) * blocks) >> 32;
        let start = self.header.end + index * BLOCK_BYTES;
        start..start + BLOCK_BYTES
    }

    /// Whether `header` (the filter's Thrift header) declares the bitset
    /// size this location assumed: its first field, `numBytes`, an i32.
    fn header_agrees(&self, header: &[u8]) -> bool {
        // Compact protocol: field 1, type i32, then a zigzag varint.
        let Some((&0x15, rest)) = header.split_first() else {
            return false;
        };
        let mut value: u64 = 0;
        for (i, &b) in rest.iter().take(5).enumerate() {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                let num_bytes = (value >> 1) as i64 ^ -((value & 1) as i64);
                return u64::try_from(num_bytes).is_ok_and(|n| n == self.bitset_bytes);
            }
        }
        false
    }
}

/// A term of a disjunction as one file stores it.
struct FileTerm {
    /// The column's leaf in the file; `None` when the file lacks it.
    leaf: Option<usize>,
    /// Each value's probe, with its hash when it has bytes.
    probes: Vec<(Probe, u64)>,
}

/// Parquet's bloom filter hash: xxHash64 with seed 0.
fn bloom_hash(bytes: &[u8]) -> u64 {
    twox_hash::XxHash64::oneshot(0, bytes)
}

/// The access plan for `file` that skips its row groups where some
/// disjunction has no term that can hold, or `None` when none is skipped.
///
/// A lookup needs one 32-byte block of a filter per value, so only the
/// filter's header and those blocks are read, not the whole filter: a
/// point lookup over a month of bucketed files read more bytes of bloom
/// filters (8 KiB each) than of data.
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
    // Each term as this file stores it: its column's leaf and, per value,
    // the probe and its hash, worked out once for every row group.
    let file_terms: Vec<Vec<FileTerm>> = disjunctions
        .iter()
        .map(|terms| {
            terms
                .iter()
                .map(|t| match leaves.get(t.column.as_str()) {
                    Some(&(leaf, physical)) => FileTerm {
                        leaf: Some(leaf),
                        probes: t
                            .values
                            .iter()
                            .map(|v| {
                                let p = probe(physical, v);
                                let hash = match &p {
                                    Probe::Bytes(b) => bloom_hash(b),
                                    _ => 0,
                                };
                                (p, hash)
                            })
                            .collect(),
                    },
                    None => FileTerm {
                        leaf: None,
                        probes: vec![],
                    },
                })
                .collect()
        })
        .collect();
    // The filters to probe and the byte ranges that answer the terms.
    let mut filters: HashMap<(usize, usize), FilterLocation> = HashMap::new();
    let mut ranges: Vec<Range<u64>> = vec![];
    for &g in &candidates {
        for term in file_terms.iter().flatten() {
            let Some(leaf) = term.leaf else {
                continue;
            };
            let c = groups[g].column(leaf);
            let Some(at) = c
                .bloom_filter_offset()
                .zip(c.bloom_filter_length())
                .and_then(|(offset, len)| FilterLocation::new(offset, len))
            else {
                continue;
            };
            ranges.push(at.header.clone());
            for (p, hash) in &term.probes {
                if let Probe::Bytes(_) = p {
                    ranges.push(at.block(*hash));
                }
            }
            filters.insert((g, leaf), at);
        }
    }
    if ranges.is_empty() {
        return Ok(None);
    }
    ranges.sort_by_key(|r| r.start);
    ranges.dedup();
    // One request per range: `get_ranges` would merge nearby ones and read
    // the whole filters between them.
    let location = &file.object_meta.location;
    let fetched: Vec<bytes::Bytes> = futures::stream::iter(ranges.iter().cloned())
        .map(|r| store.get_range(location, r))
        .buffered(FETCH_CONCURRENCY)
        .try_collect()
        .await?;
    stats.bytes_read.fetch_add(
        fetched.iter().map(|b| b.len() as u64).sum(),
        Ordering::Relaxed,
    );
    let read: HashMap<u64, bytes::Bytes> = ranges.iter().map(|r| r.start).zip(fetched).collect();
    let mut pruned = 0;
    for &g in &candidates {
        let term_may_hold = |t: &FileTerm| {
            let Some(at) = t.leaf.and_then(|leaf| filters.get(&(g, leaf))) else {
                return true;
            };
            // A header that says otherwise: the filter is not read.
            if !read
                .get(&at.header.start)
                .is_some_and(|h| at.header_agrees(h))
            {
                return true;
            }
            t.probes.iter().any(|(p, hash)| match p {
                Probe::Never => false,
                Probe::Unknown => true,
                Probe::Bytes(b) => read
                    .get(&at.block(*hash).start)
                    .filter(|bytes| bytes.len() as u64 == BLOCK_BYTES)
                    .is_none_or(|bytes| Sbbf::new(bytes).check(b.as_slice())),
            })
        };
        if file_terms
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
        let disjunctions: Vec<Vec<Term>> = filters.iter().filter_map(bloom_terms).collect();
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
    fn disjunctions_of_equalities_are_split_into_terms() {
        let e = col("from_address")
            .eq(lit("0xa"))
            .or(lit("0xa").eq(col("to_address")));
        let terms = bloom_terms(&e).unwrap();
        assert_eq!(terms.len(), 2);
        assert_eq!(terms[0].column, "from_address");
        assert_eq!(terms[1].column, "to_address");
        let inlist = col("hash")
            .in_list(vec![lit("0x1"), lit("0x2")], false)
            .or(col("to_address").eq(lit("0xb")));
        assert_eq!(bloom_terms(&inlist).unwrap()[0].values.len(), 2);
        // One column, one term: a point lookup.
        assert_eq!(bloom_terms(&col("hash").eq(lit("0x1"))).unwrap().len(), 1);
    }

    #[test]
    fn other_predicates_are_left_to_datafusion() {
        // A range term could hold anywhere.
        assert!(bloom_terms(&col("a").eq(lit(1)).or(col("b").gt(lit(2)))).is_none());
        // Conjunctions arrive split; a conjunction inside is not taken apart.
        assert!(bloom_terms(&col("a").eq(lit(1)).and(col("b").eq(lit(2)))).is_none());
        assert!(
            bloom_terms(&col("a").in_list(vec![lit(1)], true).or(col("b").eq(lit(2)))).is_none()
        );
    }

    #[test]
    fn values_are_probed_as_the_column_stores_them() {
        let s = |v: &str| ScalarValue::Utf8View(Some(v.into()));
        assert_eq!(
            probe(PhysicalType::BYTE_ARRAY, &s("0xabc")),
            Probe::Bytes(b"0xabc".to_vec())
        );
        assert_eq!(
            probe(PhysicalType::INT64, &ScalarValue::Int64(Some(7))),
            Probe::Bytes(7i64.to_ne_bytes().to_vec())
        );
        // An Int64 literal against an INT32 column: not told, so read.
        assert_eq!(
            probe(PhysicalType::INT32, &ScalarValue::Int64(Some(7))),
            Probe::Unknown
        );
        assert_eq!(
            probe(PhysicalType::BYTE_ARRAY, &ScalarValue::Utf8(None)),
            Probe::Never
        );
    }

    /// A filter as Parquet writes it: header, then bitset.
    fn written(values: &[&str]) -> Vec<u8> {
        let mut sbbf = Sbbf::new_with_ndv_fpp(1000, 0.01).unwrap();
        for v in values {
            sbbf.insert(*v);
        }
        let mut out = vec![];
        sbbf.write(&mut out).unwrap();
        out
    }

    #[test]
    fn one_block_answers_a_lookup_as_the_whole_filter_does() {
        let values: Vec<String> = (0..1000).map(|i| format!("0x{i:064x}")).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        let bytes = written(&refs);
        let whole = Sbbf::from_bytes(&bytes).unwrap();
        let at = FilterLocation::new(0, bytes.len() as i32).unwrap();
        assert!(at.header_agrees(&bytes[at.header.start as usize..at.header.end as usize]));
        assert_eq!(at.bitset_bytes as usize, whole.num_blocks() * 32);
        let mut absent_found = 0;
        for i in 0..5000 {
            let v = format!("0x{i:064x}");
            let block = at.block(bloom_hash(v.as_bytes()));
            let probed =
                Sbbf::new(&bytes[block.start as usize..block.end as usize]).check(v.as_bytes());
            assert_eq!(probed, whole.check(v.as_str()), "{v}");
            if i < 1000 {
                assert!(probed, "{v} was inserted");
            } else if probed {
                absent_found += 1;
            }
        }
        assert!(absent_found < 200, "{absent_found} false positives of 4000");
    }

    #[test]
    fn filters_of_another_shape_are_not_probed() {
        let bytes = written(&["0xa"]);
        let at = FilterLocation::new(100, bytes.len() as i32).unwrap();
        // A header whose size disagrees with the length.
        let mut other = bytes.clone();
        other[1] ^= 0x02;
        assert!(!at.header_agrees(&other[..at.header.end as usize - 100]));
        assert!(!at.header_agrees(&[]));
        // Too short for a header and a block.
        assert!(FilterLocation::new(0, 32).is_none());
        // A length that is a power of two leaves no room for a header.
        assert!(FilterLocation::new(0, 1024).is_none());
    }
}
