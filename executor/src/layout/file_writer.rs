//! Writes one partition's rows as a run of Parquet files, rolling to a new
//! file when `target_file_bytes` or `max_rows_per_file` is reached.
//!
//! File size is steered by the compressed bytes per row that flushed row
//! groups showed: batches are cut so the open row group brings the file to
//! its target, the group is flushed, and the exact size decides whether the
//! file is full or takes a few more rows.

use crate::layout::Layout;
use crate::layout::codec_memory::CodecMemory;
use crate::manifest::WrittenFile;
use crate::storage::Location;
use arrow::array::{Array, AsArray};
use arrow::datatypes::{DataType, SchemaRef};
use arrow::record_batch::RecordBatch;
use datafusion::common::hash_utils::create_hashes;
use datafusion::error::{DataFusionError, Result};
use object_store::buffered::BufWriter;
use parquet::arrow::AsyncArrowWriter;
use parquet::file::properties::WriterProperties;
use std::sync::Arc;

/// Bytes per upload part: also the most a file holds in memory before upload.
const UPLOAD_BUFFER_BYTES: usize = 16 * 1024 * 1024;

/// State shared by all files one worker writes.
pub struct WriterContext {
    /// The attempt directory; files are written below it.
    pub attempt_dir: Location,
    /// The schema of the rows written (the data columns, without the key
    /// columns) as files store it (see `parquet_types`).
    pub file_schema: SchemaRef,
    /// Parquet writer settings of every file the worker writes.
    pub props: Arc<WriterProperties>,
    /// The layout whose row-group and file-size limits the files follow.
    pub layout: Layout,
    /// Compression name in file names (`zstd` in `part-0-3-000001.zstd.parquet`).
    pub codec_suffix: &'static str,
    /// Stage id: the first number in file names.
    pub stage_id: u32,
    /// Task index: the second number in file names.
    pub task_index: u32,
    /// The writing worker (input partition); its files are numbered from `worker * 100000`.
    pub worker: usize,
    /// The Ballista task attempt writing, when there is one (see
    /// `distributed::attempt_tag`): part of every file name.
    pub attempt_tag: Option<String>,
    next_seq: usize,
    /// Compressed bytes per row, learned from flushed row groups.
    bytes_per_row: Option<f64>,
    /// The memory of the files' codec, whose contexts a row group in progress holds.
    codec: CodecMemory,
    /// Leaf columns of each field of `file_schema`.
    leaves_per_field: Vec<usize>,
    /// Bytes per row of each field's values, learned from the rows written:
    /// with the page limits, the size of the pages the codec compresses.
    field_bytes_per_row: Vec<f64>,
}

impl WriterContext {
    /// The context of worker `worker`'s files, with no attempt tag;
    /// `file_schema` is derived from `schema`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        attempt_dir: Location,
        schema: SchemaRef,
        props: Arc<WriterProperties>,
        layout: Layout,
        codec_suffix: &'static str,
        stage_id: u32,
        task_index: u32,
        worker: usize,
    ) -> Self {
        let file_schema = crate::parquet_types::file_schema(&schema);
        let fields = file_schema.fields().len();
        let mut leaves_per_field = vec![0; fields];
        match parquet::arrow::ArrowSchemaConverter::new().convert(&file_schema) {
            Ok(d) => {
                (0..d.num_columns()).for_each(|c| leaves_per_field[d.get_column_root_idx(c)] += 1)
            }
            Err(_) => leaves_per_field.fill(1),
        }
        let codec =
            CodecMemory::new(props.compression(&parquet::schema::types::ColumnPath::from("")));
        Self {
            attempt_dir,
            file_schema,
            props,
            layout,
            codec_suffix,
            stage_id,
            task_index,
            worker,
            attempt_tag: None,
            next_seq: 0,
            bytes_per_row: None,
            codec,
            leaves_per_field,
            field_bytes_per_row: vec![0.0; fields],
        }
    }

    /// Learns the bytes per row of each field from `batch` (of the file's fields).
    fn learn_field_widths(&mut self, batch: &RecordBatch) {
        if batch.num_rows() == 0 {
            return;
        }
        for (width, column) in self.field_bytes_per_row.iter_mut().zip(batch.columns()) {
            let seen = bytes_per_value(column.as_ref());
            *width = if *width == 0.0 {
                seen
            } else {
                0.5 * *width + 0.5 * seen
            };
        }
    }

    /// The compression contexts of a row group in progress of `rows` rows:
    /// each leaf column's codec, sized to the column's pages (cut at the
    /// page byte and row limits).
    fn codec_bytes(&self, rows: usize) -> usize {
        let page_rows = rows.min(self.props.data_page_row_count_limit()) as f64;
        let page_limit = self.props.data_page_size_limit();
        self.leaves_per_field
            .iter()
            .zip(&self.field_bytes_per_row)
            .filter(|(leaves, _)| **leaves > 0)
            .map(|(&leaves, &width)| {
                let page = ((page_rows * width / leaves as f64) as usize).min(page_limit);
                leaves * self.codec.column_bytes(page)
            })
            .sum()
    }

    /// Deterministic per task, attempt and worker: a rerun overwrites, never adds.
    /// Bucketed files carry their bucket as Spark does: `part-0-3-000001_00007.zstd.parquet`.
    /// On Ballista the task attempt follows the task: `part-0-0-s2.0-t5.1-9f3a61c0-000001.zstd.parquet`.
    fn next_file_name(&mut self, bucket: Option<i32>) -> String {
        let seq = self.worker * 100_000 + self.next_seq;
        self.next_seq += 1;
        let bucket = bucket.map(|b| format!("_{b:05}")).unwrap_or_default();
        let tag = self
            .attempt_tag
            .as_deref()
            .map(|t| format!("-{t}"))
            .unwrap_or_default();
        format!(
            "part-{}-{}{tag}-{:06}{bucket}.{}.parquet",
            self.stage_id, self.task_index, seq, self.codec_suffix
        )
    }
}

struct OpenFile {
    writer: AsyncArrowWriter<BufWriter>,
    relative_path: String,
    rows: u64,
    group_rows: usize,
    checksum: u64,
}

/// The files of one partition (hive path) written by one worker.
pub struct PartitionWriter {
    partition_path: String,
    bucket: Option<i32>,
    open: Option<OpenFile>,
    /// Files finished so far, as manifest entries.
    pub finished: Vec<WrittenFile>,
}

impl PartitionWriter {
    /// A writer for partition directory `partition_path` (`""` when unpartitioned) and,
    /// in a bucketed layout, bucket `bucket`; no file is opened before the first write.
    pub fn new(partition_path: String, bucket: Option<i32>) -> Self {
        Self {
            partition_path,
            bucket,
            open: None,
            finished: vec![],
        }
    }

    /// Appends `batch`, opening files as needed, flushing row groups at the layout's
    /// limits and finishing a file once it reaches its size or row limit.
    pub async fn write(&mut self, ctx: &mut WriterContext, batch: &RecordBatch) -> Result<()> {
        ctx.learn_field_widths(batch);
        let mut offset = 0;
        while offset < batch.num_rows() {
            if self.open.is_none() {
                self.open = Some(self.open_file(ctx)?);
            }
            let n = self.rows_that_fit(ctx, batch.num_rows() - offset);
            let slice = batch.slice(offset, n);
            let file = self.open.as_mut().expect("file is open");
            file.checksum = file.checksum.wrapping_add(row_checksum(&slice)?);
            file.writer
                .write(&crate::parquet_types::to_file_batch(
                    &slice,
                    &ctx.file_schema,
                )?)
                .await?;
            file.rows += n as u64;
            file.group_rows += n;
            offset += n;
            self.maybe_flush_group(ctx).await?;
            if self.file_is_full(ctx) {
                self.close(ctx).await?;
            }
        }
        Ok(())
    }

    fn open_file(&self, ctx: &mut WriterContext) -> Result<OpenFile> {
        let name = ctx.next_file_name(self.bucket);
        let relative_path = if self.partition_path.is_empty() {
            name
        } else {
            format!("{}/{name}", self.partition_path)
        };
        let loc = ctx.attempt_dir.join(&relative_path);
        let sink =
            BufWriter::with_capacity(loc.store.clone(), loc.path.clone(), UPLOAD_BUFFER_BYTES);
        let writer =
            AsyncArrowWriter::try_new(sink, ctx.file_schema.clone(), Some((*ctx.props).clone()))?;
        Ok(OpenFile {
            writer,
            relative_path,
            rows: 0,
            group_rows: 0,
            checksum: 0,
        })
    }

    /// Bytes the open file will have once its open row group is flushed,
    /// estimated from the compressed bytes per row seen so far.
    fn estimated_bytes(&self, ctx: &WriterContext) -> Option<f64> {
        let f = self.open.as_ref()?;
        let per_row = ctx.bytes_per_row?;
        Some(f.writer.bytes_written() as f64 + f.group_rows as f64 * per_row)
    }

    /// How many of `available` rows to write next so that the file stops near
    /// its limits and row groups stay within `row_group_rows`.
    fn rows_that_fit(&self, ctx: &WriterContext, available: usize) -> usize {
        let f = self.open.as_ref().expect("file is open");
        let layout = &ctx.layout;
        let mut n = available.min(layout.row_group_rows.saturating_sub(f.group_rows).max(1));
        if let Some(max) = layout.max_rows_per_file {
            n = n.min((max - f.rows) as usize);
        }
        if let Some(target) = layout.target_file_bytes {
            n = match (ctx.bytes_per_row, self.estimated_bytes(ctx)) {
                (Some(per_row), Some(est)) => {
                    let left = (target as f64 - est).max(0.0);
                    n.min(((left / per_row).ceil() as usize).max(1))
                }
                // Nothing learned yet: small steps until a row group is flushed.
                _ => n.min(1024),
            };
        }
        n.max(1)
    }

    async fn maybe_flush_group(&mut self, ctx: &mut WriterContext) -> Result<()> {
        let layout = &ctx.layout;
        let estimate = self.estimated_bytes(ctx);
        let f = self.open.as_mut().expect("file is open");
        if f.group_rows == 0 {
            return Ok(());
        }
        let in_progress = f.writer.in_progress_size() as u64;
        let mut flush =
            f.group_rows >= layout.row_group_rows || in_progress >= layout.row_group_bytes;
        if let Some(target) = layout.target_file_bytes {
            flush |= match estimate {
                // The file is about full: flush to learn its exact size.
                Some(est) => est >= target as f64,
                // Calibrate on an early, smaller row group.
                None => in_progress >= (target / 8).max(64 * 1024),
            };
        }
        if flush {
            self.flush_group(ctx).await?;
        }
        Ok(())
    }

    /// Ends the open row group, if it has rows, and learns its bytes per row.
    pub async fn flush_group(&mut self, ctx: &mut WriterContext) -> Result<()> {
        let Some(f) = self.open.as_mut().filter(|f| f.group_rows > 0) else {
            return Ok(());
        };
        let before = f.writer.bytes_written();
        f.writer.flush().await?;
        let per_row = (f.writer.bytes_written() - before) as f64 / f.group_rows as f64;
        ctx.bytes_per_row = Some(match ctx.bytes_per_row {
            Some(old) => 0.5 * old + 0.5 * per_row,
            None => per_row,
        });
        f.group_rows = 0;
        Ok(())
    }

    /// Memory the open file holds: its row group in progress (column
    /// writers with their dictionaries, hash tables and pages, as the Parquet
    /// writer counts them, and their compression contexts), the group's
    /// encoded bytes twice more (a flush copies the pages into one growing
    /// buffer, which may reach twice their size before it goes to upload),
    /// and the upload buffer.
    pub fn buffered_bytes(&self, ctx: &WriterContext) -> usize {
        self.open.as_ref().map_or(0, |f| {
            self.flushable_bytes(ctx)
                + 2 * f.writer.in_progress_size()
                + f.writer.bytes_written().min(UPLOAD_BUFFER_BYTES)
        })
    }

    /// The bytes a flush would free: the memory of the open file's row
    /// group in progress (none once flushed).
    pub fn flushable_bytes(&self, ctx: &WriterContext) -> usize {
        self.open
            .as_ref()
            .filter(|f| f.writer.in_progress_rows() > 0)
            .map_or(0, |f| {
                f.writer.memory_size() + ctx.codec_bytes(f.writer.in_progress_rows())
            })
    }

    fn file_is_full(&self, ctx: &WriterContext) -> bool {
        let f = self.open.as_ref().expect("file is open");
        let layout = &ctx.layout;
        // Flushed bytes are exact; stop within 3% of the target.
        layout.max_rows_per_file.is_some_and(|m| f.rows >= m)
            || layout.target_file_bytes.is_some_and(|t| {
                f.group_rows == 0 && f.writer.bytes_written() as f64 >= t as f64 * 0.97
            })
    }

    /// Finishes the open file, if any, and records it.
    pub async fn close(&mut self, ctx: &WriterContext) -> Result<()> {
        let Some(mut f) = self.open.take() else {
            return Ok(());
        };
        let metadata = f.writer.finish().await?;
        let bytes = f.writer.bytes_written() as u64;
        let stats = crate::layout::stats::file_stats(&metadata, &ctx.file_schema)?;
        self.finished.push(WrittenFile {
            path: f.relative_path,
            partition: self.partition_path.clone(),
            bucket: self.bucket,
            rows: f.rows,
            bytes,
            row_groups: metadata.num_row_groups() as u32,
            checksum: format!("{:016x}", f.checksum),
            stats,
        });
        Ok(())
    }
}

/// The bytes a value of `array` takes on average, from its buffers' extent
/// (not their capacity: a slice shares its parent's buffers).
fn bytes_per_value(array: &dyn Array) -> f64 {
    let len = array.len().max(1) as f64;
    if let Some(width) = array.data_type().primitive_width() {
        return width as f64;
    }
    match array.data_type() {
        DataType::Boolean => 0.125,
        DataType::Utf8 => string_bytes(array.as_string::<i32>().offsets().as_ref()) / len + 4.0,
        DataType::LargeUtf8 => {
            string_bytes(array.as_string::<i64>().offsets().as_ref()) / len + 4.0
        }
        DataType::Binary => string_bytes(array.as_binary::<i32>().offsets().as_ref()) / len + 4.0,
        DataType::LargeBinary => {
            string_bytes(array.as_binary::<i64>().offsets().as_ref()) / len + 4.0
        }
        DataType::FixedSizeBinary(w) => *w as f64,
        _ => array.get_array_memory_size() as f64 / len,
    }
}

/// The value bytes between the first and last of `offsets`.
fn string_bytes<O: arrow::array::OffsetSizeTrait>(offsets: &[O]) -> f64 {
    match (offsets.first(), offsets.last()) {
        (Some(a), Some(b)) => (b.as_usize() - a.as_usize()) as f64,
        _ => 0.0,
    }
}

/// Order-independent checksum of a batch's rows: the wrapping sum of a fixed
/// hash of each row. Equal row multisets give equal sums, however the rows
/// are split into files or ordered.
pub fn row_checksum(batch: &RecordBatch) -> Result<u64> {
    let mut hashes = vec![0u64; batch.num_rows()];
    let state = ahash_state();
    create_hashes(batch.columns(), &state, &mut hashes)
        .map_err(|e| DataFusionError::Execution(format!("checksum: {e}")))?;
    Ok(hashes.iter().fold(0u64, |a, h| a.wrapping_add(*h)))
}

fn ahash_state() -> datafusion::common::hash_utils::RandomState {
    datafusion::common::hash_utils::RandomState::with_seed(0x6368_6169_6e62_6174)
}
