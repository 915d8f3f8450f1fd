//! `TaskFilesTable`: exactly the files a spec lists, read with DataFusion's
//! own Parquet, JSON and CSV scanners, with hive partition values attached.

use crate::error::{TaskError, TaskResult};
use crate::input::order::{FileOrder, OrderKey, common_keys};
use crate::input::prefetch::PrefetchReaderFactory;
use crate::input::range_sort::{RangeSortExec, UnitBounds, UnitEnd, ordering_of};
use crate::parquet_footer::{FileSchemas, FooterError, read_footer};
use crate::schema::{compatible, to_schema, type_name};
use crate::spec::{InputFile, InputFormat, InputTable};
use crate::storage;
use arrow::datatypes::{Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::datasource::TableProvider;
use datafusion::datasource::TableType;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::ParquetAccessPlan;
use datafusion::datasource::physical_plan::{
    CsvSource, FileGroup, FileScanConfigBuilder, JsonSource, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::memory_pool::MemoryLimit;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{LexOrdering, PhysicalSortExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::expressions::Column;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use parquet::file::metadata::ParquetMetaData;
use parquet::file::statistics::Statistics;
use parquet::schema::types::SchemaDescPtr;
use std::sync::Arc;

/// A DataFusion table over exactly the files of one spec input, with its hive
/// partition values as columns; scanned in the order its Parquet files declare, if any.
#[derive(Debug)]
pub struct TaskFilesTable {
    format: InputFormat,
    store_url: ObjectStoreUrl,
    file_schema: SchemaRef,
    partition_fields: Vec<Arc<Field>>,
    files: Vec<PartitionedFile>,
    /// Per file (same index as `files`): its Parquet schema as read when
    /// the task opened it, shared among files of one schema, so that the
    /// scan need not decode it from the footer again.
    parquet_schemas: Vec<Option<SchemaDescPtr>>,
    schema: SchemaRef,
    /// The order all files declare (empty: none); see `input::order`.
    order: Vec<OrderKey>,
    /// Per file (same index as `files`), when `order` is not empty.
    file_orders: Vec<FileOrder>,
    /// Per file: its row groups read, with their bytes and key ranges, so
    /// that a large file can be split over scan partitions (empty: whole).
    row_group_orders: Vec<Vec<RowGroupOrder>>,
    /// Per file: how many row groups it has.
    row_group_counts: Vec<usize>,
    /// Per file: its bytes once decoded (Parquet's uncompressed size).
    decoded_bytes: Vec<u64>,
    /// When the files declare no order but their statistics show ranges of
    /// these columns' first that a scan can sort one at a time (see
    /// `input::range_sort`): the columns to sort by.
    range_sort: Vec<String>,
}

/// One row group of an ordered file.
#[derive(Debug, Clone)]
struct RowGroupOrder {
    index: usize,
    bytes: u64,
    /// Bytes once decoded (Parquet's uncompressed size).
    decoded: u64,
    order: FileOrder,
}

/// A run of one file's row groups (all it reads, when `row_groups` is
/// `None`) that a scan partition reads in order.
struct Piece {
    file: usize,
    row_groups: Option<Vec<usize>>,
    bytes: u64,
    order: FileOrder,
}

/// Arrow memory of decoded rows over Parquet's uncompressed size: strings
/// stored as dictionary indices decode to full values (measured 1.5x on the
/// AWS producer's transaction files).
const DECODED_PER_UNCOMPRESSED: u64 = 2;

/// Files opened at once. Opening a Parquet file is one small ranged GET of
/// its footer, so latency, not bandwidth, bounds opening many of them: a
/// day of the public dataset's per-block files is ~7,200 files.
const OPEN_CONCURRENCY: usize = 32;

/// What opening one file learned.
struct OpenedFile {
    store_url: ObjectStoreUrl,
    file: PartitionedFile,
    /// The file's own schema, Arrow and Parquet (Parquet only).
    found: Option<(SchemaRef, SchemaDescPtr)>,
    order: Option<FileOrder>,
    group_orders: Vec<RowGroupOrder>,
    /// The range of the first `sort_hint` column (files without a declared order).
    observed: Option<FileOrder>,
    observed_groups: Vec<RowGroupOrder>,
    row_group_count: usize,
    decoded_bytes: u64,
}

impl TaskFilesTable {
    /// Checks every file exists (and, for Parquet, matches the declared
    /// schema) and builds the table. `field` names the spec's input. Files
    /// are opened concurrently, [`OPEN_CONCURRENCY`] at a time, in order.
    /// `sort_hint` is the order the task's output wants (ascending columns):
    /// files that declare no order are scanned in it, unit by unit, when
    /// their statistics allow (see `input::range_sort`).
    pub async fn open(
        runtime: &RuntimeEnv,
        input: &InputTable,
        field: &str,
        sort_hint: &[String],
    ) -> TaskResult<Self> {
        let declared = match &input.schema {
            Some(cols) => Some(to_schema(cols, &format!("{field}.schema"))?),
            None => None,
        };
        let partition_fields: Vec<Arc<Field>> = to_schema(
            &input.partition_columns,
            &format!("{field}.partition_columns"),
        )?
        .fields()
        .iter()
        .cloned()
        .collect();
        let file_schemas = FileSchemas::default();
        let opened: Vec<OpenedFile> = futures::stream::iter(0..input.files.len())
            .map(|j| {
                let f = FileToOpen {
                    input,
                    j,
                    field,
                    partition_fields: &partition_fields,
                    sort_hint,
                    schemas: &file_schemas,
                };
                open_file(runtime, f)
            })
            .buffered(OPEN_CONCURRENCY)
            .try_collect()
            .await?;
        let mut store_url: Option<ObjectStoreUrl> = None;
        let mut files = Vec::with_capacity(opened.len());
        let mut orders = Vec::with_capacity(opened.len());
        let mut row_group_orders = Vec::with_capacity(opened.len());
        let mut row_group_counts = Vec::with_capacity(opened.len());
        let mut decoded_bytes = Vec::with_capacity(opened.len());
        let mut observed = Vec::with_capacity(opened.len());
        let mut observed_groups = Vec::with_capacity(opened.len());
        let mut file_schema = declared.clone();
        let mut parquet_schemas = Vec::with_capacity(opened.len());
        for (j, mut o) in opened.into_iter().enumerate() {
            let f = &input.files[j];
            match &store_url {
                None => store_url = Some(o.store_url.clone()),
                Some(u) if u != &o.store_url => {
                    return Err(TaskError::bad_spec(
                        format!("{field}.files[{j}].uri"),
                        format!(
                            "all files of one input must be in one store; {} is not in {}",
                            f.uri,
                            u.as_str()
                        ),
                    ));
                }
                _ => {}
            }
            parquet_schemas.push(o.found.as_ref().map(|(_, p)| p.clone()));
            if let Some((found, _)) = o.found {
                // Given to the reader, which then need not decode the
                // schema again from each file's metadata: a day of per-block
                // files spent a twentieth of its time on that.
                o.file.arrow_schema = Some(found.clone());
                match &file_schema {
                    Some(expected) => {
                        check_schema(expected, &found, &f.uri, &format!("{field}.schema"))?
                    }
                    // A copy of a partition column in the files is not read:
                    // the path's value stands for it.
                    None => file_schema = Some(without(&found, &partition_fields)),
                }
            }
            files.push(o.file);
            orders.push(o.order);
            row_group_orders.push(o.group_orders);
            row_group_counts.push(o.row_group_count);
            decoded_bytes.push(o.decoded_bytes);
            observed.push(o.observed);
            observed_groups.push(o.observed_groups);
        }
        let file_schema = file_schema.ok_or_else(|| {
            TaskError::bad_spec(
                format!("{field}.schema"),
                "no files to infer a schema from and no schema declared",
            )
        })?;
        // The order every file declares, with each file's key ranges as
        // statistics so that DataFusion can check the files follow each other.
        let order = common_keys(orders.iter().map(|o| o.as_ref()));
        // No declared order: the observed ranges stand in for it, if every
        // file has them (they are read in key order and sorted unit by unit).
        let range_sort = if order.is_empty()
            && !files.is_empty()
            && observed.iter().all(|o| o.is_some())
            && sort_hint
                .first()
                .is_some_and(|c| file_schema.index_of(c).is_ok())
        {
            row_group_orders = observed_groups;
            orders = observed;
            sort_hint.to_vec()
        } else {
            vec![]
        };
        let order_len = if range_sort.is_empty() {
            order.len()
        } else {
            1
        };
        for groups in row_group_orders.iter_mut() {
            for g in groups.iter_mut() {
                g.order.truncate(order_len);
            }
            // Splitting needs every row group to hold the common order.
            if groups.iter().any(|g| g.order.keys.len() < order_len) {
                groups.clear();
            }
        }
        let file_orders: Vec<FileOrder> = if order_len == 0 {
            vec![]
        } else {
            files
                .iter_mut()
                .zip(orders)
                .map(|(pf, o)| {
                    let mut o = o.expect("every file declares the common order");
                    o.truncate(order_len);
                    pf.statistics = Some(Arc::new(o.statistics(&file_schema)));
                    o
                })
                .collect()
        };
        let mut fields: Vec<Arc<Field>> = file_schema.fields().iter().cloned().collect();
        fields.extend(partition_fields.iter().cloned());
        Ok(Self {
            order,
            file_orders,
            row_group_orders,
            row_group_counts,
            decoded_bytes,
            range_sort,
            format: input.format,
            store_url: store_url.unwrap_or_else(ObjectStoreUrl::local_filesystem),
            file_schema,
            partition_fields,
            files,
            parquet_schemas,
            schema: Arc::new(Schema::new(fields)),
        })
    }

    /// Number of files the input lists.
    pub fn file_count(&self) -> usize {
        self.files.len()
    }

    /// Total size of the listed files in bytes (whole objects, even where only
    /// a range or some row groups are read).
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.object_meta.size).sum()
    }

    /// The declared order as a DataFusion ordering over the table schema.
    fn lex_ordering(&self) -> Option<LexOrdering> {
        let exprs = self.order.iter().map(|k| {
            let idx = self
                .schema
                .index_of(&k.column)
                .expect("order keys are file columns");
            PhysicalSortExpr::new(Arc::new(Column::new(&k.column, idx)), k.options)
        });
        LexOrdering::new(exprs)
    }

    /// Files in order, cut into at most `parts` runs of about equal bytes:
    /// each scan partition reads its files one after the other, so it
    /// streams in the declared order when the files do not overlap.
    fn ordered_groups(&self, parts: usize) -> Vec<Vec<Piece>> {
        let share = self.total_bytes().max(1).div_ceil(parts as u64);
        // A file larger than a partition's share is split by row groups, so
        // that one big file (or a few uneven ones) still keeps every core busy.
        let mut pieces: Vec<Piece> = vec![];
        for (i, f) in self.files.iter().enumerate() {
            let groups = &self.row_group_orders[i];
            if f.object_meta.size > share && groups.len() > 1 {
                pieces.extend(groups.iter().map(|g| Piece {
                    file: i,
                    row_groups: Some(vec![g.index]),
                    bytes: g.bytes,
                    order: g.order.clone(),
                }));
            } else {
                pieces.push(Piece {
                    file: i,
                    row_groups: None,
                    bytes: f.object_meta.size,
                    order: self.file_orders[i].clone(),
                });
            }
        }
        pieces.sort_by(|a, b| a.order.cmp_start(&b.order));
        let per_part = pieces
            .iter()
            .map(|p| p.bytes)
            .sum::<u64>()
            .div_ceil(parts as u64);
        let mut groups: Vec<Vec<Piece>> = vec![vec![]];
        let mut bytes = 0u64;
        for piece in pieces {
            if bytes >= per_part && groups.len() < parts {
                groups.push(vec![]);
                bytes = 0;
            }
            bytes += piece.bytes;
            let group = groups.last_mut().expect("one group");
            // Consecutive row groups of one file are read as one file.
            match group.last_mut() {
                Some(Piece {
                    file,
                    row_groups: Some(run),
                    bytes: run_bytes,
                    order: run_order,
                }) if *file == piece.file => {
                    run.extend(piece.row_groups.into_iter().flatten());
                    *run_bytes += piece.bytes;
                    run_order.extend(&piece.order);
                }
                _ => group.push(piece),
            }
        }
        groups
    }

    /// A scan partition's pieces as a file group.
    fn file_group(&self, pieces: Vec<Piece>) -> FileGroup {
        FileGroup::new(pieces.into_iter().map(|p| self.piece_file(p)).collect())
    }

    /// Where the units of a scan partition's pieces end (see
    /// `input::range_sort`) and the most bytes one unit decodes to: row
    /// groups, in the order the scan reads them, are merged while their
    /// ranges overlap; a row group starting where the unit ends starts the
    /// next unit, which shares that value. `None` when a row group reaches
    /// below a unit already closed, so that no unit-by-unit order exists.
    fn units(&self, pieces: &[Piece]) -> Option<(UnitBounds, u64)> {
        let mut ranges: Vec<(&ScalarValue, &ScalarValue, u64)> = vec![];
        for p in pieces {
            let groups = &self.row_group_orders[p.file];
            let selected: Vec<&RowGroupOrder> = match &p.row_groups {
                Some(rgs) => groups.iter().filter(|g| rgs.contains(&g.index)).collect(),
                None => groups.iter().collect(),
            };
            if selected.is_empty() {
                let (lo, hi) = &p.order.ranges[0];
                ranges.push((lo, hi, self.decoded_bytes[p.file]));
            } else {
                ranges.extend(selected.iter().map(|g| {
                    let (lo, hi) = &g.order.ranges[0];
                    (lo, hi, g.decoded)
                }));
            }
        }
        let mut bounds: UnitBounds = vec![];
        let mut largest = 0u64;
        let mut current: Option<(ScalarValue, u64)> = None;
        for (lo, hi, bytes) in ranges {
            // A row group may start where a closed unit ended, not before.
            if bounds.last().is_some_and(|b| lo < &b.greatest) {
                return None;
            }
            current = Some(match current {
                // Overlapping row groups are one unit.
                Some((chi, cbytes)) if lo < &chi => {
                    let hi = if hi > &chi { hi.clone() } else { chi };
                    (hi, cbytes + bytes)
                }
                Some((chi, cbytes)) => {
                    largest = largest.max(cbytes);
                    bounds.push(UnitEnd {
                        shared_with_next: lo == &chi,
                        greatest: chi,
                    });
                    (hi.clone(), bytes)
                }
                None => (hi.clone(), bytes),
            });
        }
        if let Some((chi, cbytes)) = current {
            largest = largest.max(cbytes);
            bounds.push(UnitEnd {
                greatest: chi,
                shared_with_next: false,
            });
        }
        Some((bounds, largest))
    }

    /// The scan sorted unit by unit by `range_sort`, when every partition
    /// has units and the largest unit fits a partition's share of the
    /// task's memory pool; with that share, each unit's budget.
    fn range_sorted(
        &self,
        state: &dyn Session,
        parts: usize,
    ) -> Option<(Vec<Vec<Piece>>, Vec<UnitBounds>, usize)> {
        if self.range_sort.is_empty() {
            return None;
        }
        let groups = self.ordered_groups(parts);
        let share = match state.runtime_env().memory_pool.memory_limit() {
            MemoryLimit::Finite(bytes) => bytes as u64 / groups.len().max(1) as u64,
            _ => u64::MAX,
        };
        let mut units = Vec::with_capacity(groups.len());
        for g in &groups {
            let (bounds, largest) = self.units(g)?;
            if largest.saturating_mul(DECODED_PER_UNCOMPRESSED) > share {
                return None;
            }
            units.push(bounds);
        }
        Some((groups, units, usize::try_from(share).unwrap_or(usize::MAX)))
    }

    /// The file of a piece, reading only its row groups, with their ranges.
    fn piece_file(&self, piece: Piece) -> PartitionedFile {
        let mut pf = self.files[piece.file].clone();
        if let Some(rgs) = piece.row_groups {
            let mut plan = ParquetAccessPlan::new_none(self.row_group_counts[piece.file]);
            for g in rgs {
                plan.scan(g);
            }
            pf = pf.with_extension(plan);
            pf.statistics = Some(Arc::new(piece.order.statistics(&self.file_schema)));
        }
        pf
    }
}

/// File `j` of `input` (named `field` in errors), to open with what the
/// task's other files share.
struct FileToOpen<'a> {
    input: &'a InputTable,
    j: usize,
    field: &'a str,
    partition_fields: &'a [Arc<Field>],
    sort_hint: &'a [String],
    schemas: &'a FileSchemas,
}

/// Opens a file: its size and, for Parquet, its footer (one ranged GET, no
/// HEAD), schema, order and row groups.
async fn open_file(runtime: &RuntimeEnv, to_open: FileToOpen<'_>) -> TaskResult<OpenedFile> {
    let FileToOpen {
        input,
        j,
        field,
        partition_fields,
        sort_hint,
        schemas,
    } = to_open;
    let f = &input.files[j];
    let ffield = format!("{field}.files[{j}]");
    let loc = storage::register(runtime, &f.uri)
        .map_err(|e| TaskError::bad_spec(format!("{ffield}.uri"), e.to_string()))?;
    let mut row_group_count = 0;
    let mut order = None;
    let mut group_orders = vec![];
    let mut observed = None;
    let mut observed_groups = vec![];
    let mut decoded_bytes = 0;
    let mut found = None;
    let meta = if input.format == InputFormat::Parquet {
        let (meta, md) = read_footer(&loc).await.map_err(|e| match e {
            FooterError::Store(e) => TaskError::from_store(&format!("{ffield}.uri"), e),
            FooterError::Format(m) => {
                TaskError::bad_spec(format!("{ffield}.uri"), format!("{}: {m}", f.uri))
            }
        })?;
        let (parquet_schema, schema) = schemas
            .of(&md)
            .map_err(|e| TaskError::bad_spec(format!("{ffield}.uri"), format!("{}: {e}", f.uri)))?;
        check_partition_copies(&md, &schema, f, partition_fields, &ffield)?;
        row_group_count = md.num_row_groups();
        order = FileOrder::from_metadata(&md, &schema, f.row_groups.as_deref());
        if order.is_some() && f.range.is_none() {
            group_orders = row_group_orders_of(&md, f.row_groups.as_deref(), |g| {
                FileOrder::from_metadata(&md, &schema, Some(&[g]))
            });
        }
        if let Some(column) = sort_hint.first() {
            observed = FileOrder::observed(&md, &schema, column, f.row_groups.as_deref());
            if observed.is_some() && f.range.is_none() {
                observed_groups = row_group_orders_of(&md, f.row_groups.as_deref(), |g| {
                    FileOrder::observed(&md, &schema, column, Some(&[g]))
                });
            }
        }
        decoded_bytes = md
            .row_groups()
            .iter()
            .map(|g| g.total_byte_size().max(0) as u64)
            .sum();
        found = Some((schema, parquet_schema));
        meta
    } else {
        loc.store
            .head(&loc.path)
            .await
            .map_err(|e| TaskError::from_store(&format!("{ffield}.uri"), e))?
    };
    let mut pf = PartitionedFile::new_from_meta(meta);
    pf.partition_values = f
        .partition_values
        .iter()
        .zip(partition_fields)
        .enumerate()
        .map(|(k, (v, pfield))| {
            ScalarValue::try_from_string(v.clone(), pfield.data_type()).map_err(|e| {
                TaskError::bad_spec(
                    format!("{ffield}.partition_values[{k}]"),
                    format!("{v:?} is not a {}: {e}", type_name(pfield.data_type())),
                )
            })
        })
        .collect::<TaskResult<_>>()?;
    if let Some(r) = f.range {
        pf = pf.with_range(r.start as i64, r.end as i64);
    }
    if let Some(groups) = &f.row_groups {
        let mut plan = ParquetAccessPlan::new_none(row_group_count);
        for g in groups {
            if *g >= row_group_count {
                return Err(TaskError::bad_spec(
                    format!("{ffield}.row_groups"),
                    format!(
                        "row group {g} does not exist; {} has {row_group_count}",
                        f.uri
                    ),
                ));
            }
            plan.scan(*g);
        }
        pf = pf.with_extension(plan);
    }
    Ok(OpenedFile {
        store_url: loc.store_url,
        file: pf,
        found,
        order,
        group_orders,
        observed,
        observed_groups,
        row_group_count,
        decoded_bytes,
    })
}

/// `schema` without the columns named like partition columns.
fn without(schema: &Schema, partition_fields: &[Arc<Field>]) -> SchemaRef {
    let fields: Vec<Arc<Field>> = schema
        .fields()
        .iter()
        .filter(|f| !partition_fields.iter().any(|p| p.name() == f.name()))
        .cloned()
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// A file may hold a copy of a partition column: the public `eth` dataset
/// stores `date` in every file, equal to its `date=` directory. The path's
/// value is the one read (the copy is not); the copy must agree with it,
/// which the footer's statistics show without reading any data. A copy
/// without exact string statistics is not checked.
fn check_partition_copies(
    md: &ParquetMetaData,
    found: &Schema,
    file: &InputFile,
    partition_fields: &[Arc<Field>],
    ffield: &str,
) -> TaskResult<()> {
    let columns = md.file_metadata().schema_descr().columns();
    for (k, (pfield, value)) in partition_fields
        .iter()
        .zip(&file.partition_values)
        .enumerate()
    {
        if found.field_with_name(pfield.name()).is_err() {
            continue;
        }
        let Some(col) = columns
            .iter()
            .position(|c| c.path().parts() == [pfield.name().as_str()])
        else {
            continue;
        };
        for rg in md.row_groups() {
            let Some(Statistics::ByteArray(stats)) = rg.column(col).statistics() else {
                continue;
            };
            let bounds = [
                stats.min_opt().filter(|_| stats.min_is_exact()),
                stats.max_opt().filter(|_| stats.max_is_exact()),
            ];
            for b in bounds.into_iter().flatten() {
                if b.data() != value.as_bytes() {
                    return Err(TaskError::bad_spec(
                        format!("{ffield}.partition_values[{k}]"),
                        format!(
                            "{} is under {}={value} but its column {:?} holds {:?}",
                            file.uri,
                            pfield.name(),
                            pfield.name(),
                            String::from_utf8_lossy(b.data())
                        ),
                    ));
                }
            }
        }
    }
    Ok(())
}

/// Each selected row group's bytes and key ranges, as `order_of` finds
/// them (empty when any lacks them).
fn row_group_orders_of(
    md: &ParquetMetaData,
    selected: Option<&[usize]>,
    order_of: impl Fn(usize) -> Option<FileOrder>,
) -> Vec<RowGroupOrder> {
    let all: Vec<usize> = (0..md.num_row_groups()).collect();
    let mut out = vec![];
    for &g in selected.unwrap_or(&all) {
        let Some(order) = order_of(g) else {
            return vec![];
        };
        out.push(RowGroupOrder {
            index: g,
            bytes: md.row_group(g).compressed_size() as u64,
            decoded: md.row_group(g).total_byte_size().max(0) as u64,
            order,
        });
    }
    out
}

/// Spreads files over `parts` scan partitions, largest first.
fn spread_by_size(files: &[PartitionedFile], parts: usize) -> Vec<FileGroup> {
    let mut groups: Vec<(u64, Vec<usize>)> = vec![(0, vec![]); parts];
    let mut by_size: Vec<usize> = (0..files.len()).collect();
    by_size.sort_by_key(|&i| std::cmp::Reverse(files[i].object_meta.size));
    for i in by_size {
        let g = groups
            .iter_mut()
            .min_by_key(|g| g.0)
            .expect("at least one group");
        g.0 += files[i].object_meta.size;
        g.1.push(i);
    }
    // Each group reads its files in the input's order: listed by path,
    // which for dated or numbered files is the order of their rows, so
    // output keys (dates, block chunks) arrive one after the other and
    // writers close as they finish, rather than come back.
    groups
        .into_iter()
        .filter(|g| !g.1.is_empty())
        .map(|mut g| {
            g.1.sort_unstable();
            FileGroup::new(g.1.into_iter().map(|i| files[i].clone()).collect())
        })
        .collect()
}

/// Every declared column the file holds must have a compatible type. A
/// nullable declared column may be missing (the scan reads it as null, as
/// the public dataset's older files lack newer columns); a required
/// (non-nullable) one may not.
fn check_schema(expected: &Schema, found: &Schema, uri: &str, field: &str) -> TaskResult<()> {
    for (i, e) in expected.fields().iter().enumerate() {
        match found.field_with_name(e.name()) {
            Err(_) if e.is_nullable() => {}
            Err(_) => {
                return Err(TaskError::bad_spec(
                    format!("{field}[{i}]"),
                    format!(
                        "required column {:?} (declared not null) is missing from {uri}",
                        e.name()
                    ),
                ));
            }
            Ok(f) if !compatible(e.data_type(), f.data_type()) => {
                return Err(TaskError::bad_spec(
                    format!("{field}[{i}].type"),
                    format!(
                        "column {:?} is declared {} but {uri} holds {}",
                        e.name(),
                        type_name(e.data_type()),
                        type_name(f.data_type())
                    ),
                ));
            }
            Ok(_) => {}
        }
    }
    Ok(())
}

impl TaskFilesTable {
    /// Scans whole files (or byte ranges) in no declared order: no row-group
    /// selections, which a serialised plan would lose.
    pub fn whole_files(mut self) -> Self {
        self.order.clear();
        self.file_orders.clear();
        self.range_sort.clear();
        self
    }
}

#[async_trait]
impl TableProvider for TaskFilesTable {
    fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let parts = state.config().target_partitions().max(1);
        let mut ordering = vec![];
        let mut range_sort = None;
        let groups: Vec<FileGroup> = if !self.order.is_empty() {
            ordering = self.lex_ordering().into_iter().collect();
            let groups = self.ordered_groups(parts);
            groups.into_iter().map(|g| self.file_group(g)).collect()
        } else if let Some((groups, units, budget)) = self.range_sorted(state, parts) {
            range_sort = Some((units, budget));
            groups.into_iter().map(|g| self.file_group(g)).collect()
        } else {
            spread_by_size(&self.files, parts)
        };
        let table_schema =
            datafusion::datasource::table_schema::TableSchema::builder(self.file_schema.clone())
                .with_table_partition_cols(self.partition_fields.clone())
                .build();
        let source: Arc<dyn datafusion::datasource::physical_plan::FileSource> = match self.format {
            InputFormat::Parquet => {
                let store = state.runtime_env().object_store(&self.store_url)?;
                let files = groups.iter().map(|g| g.iter().collect()).collect();
                let schemas = self
                    .files
                    .iter()
                    .zip(&self.parquet_schemas)
                    .filter_map(|(f, s)| Some((f.object_meta.location.clone(), s.clone()?)))
                    .collect();
                Arc::new(
                    ParquetSource::new(table_schema).with_parquet_file_reader_factory(Arc::new(
                        PrefetchReaderFactory::new(
                            store,
                            self.store_url == ObjectStoreUrl::local_filesystem(),
                            files,
                            schemas,
                        ),
                    )),
                )
            }
            InputFormat::Jsonl => Arc::new(JsonSource::new(table_schema)),
            InputFormat::Csv => {
                let opts = datafusion::common::config::CsvOptions {
                    has_header: Some(true),
                    ..Default::default()
                };
                Arc::new(CsvSource::new(table_schema).with_csv_options(opts))
            }
            InputFormat::Shuffle => unreachable!("shuffle inputs use ShuffleTable"),
        };
        let config = FileScanConfigBuilder::new(self.store_url.clone(), source)
            .with_projection_indices(projection.cloned())?
            .with_limit(limit)
            .with_file_groups(groups)
            .with_output_ordering(ordering)
            // No partition may take another's files: units follow the file
            // groups, and without units each group is in listed order, so a
            // worker's keys arrive one after the other (a stolen file would
            // bring back keys its writers finished, and send it to the sort).
            .with_preserve_order(true)
            .build();
        let scan = DataSourceExec::from_data_source(config);
        if let Some((units, budget)) = range_sort
            && let Some(ordering) = ordering_of(&scan.schema(), &self.range_sort)
        {
            return Ok(Arc::new(RangeSortExec::new(scan, ordering, units, budget)));
        }
        Ok(scan)
    }
}
