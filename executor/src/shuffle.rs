//! The shuffle file format, both sides.
//!
//! Map side: each worker of a map task sorts its rows by bucket (external
//! sort, spilling past the task's memory) and writes one data object,
//! `shuffle-<worker>.arrow`: for each non-empty bucket, a complete Arrow IPC
//! stream, back to back. Beside it, `shuffle-<worker>.index.json` gives each
//! bucket's byte range and rows. Reduce side: a task reads its bucket's range
//! from every map output with one ranged GET each.

use crate::error::{TaskError, TaskResult};
use crate::manifest::{MANIFEST_FILE, TaskManifest, WrittenFile};
use crate::storage::{self, Location};
use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{Int32Type, SchemaRef};
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::streaming::PartitionStream;
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::buffered::BufWriter;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use tokio::io::AsyncWriteExt;

/// The `shuffle-<worker>.index.json` beside a map worker's data file: where
/// each bucket lies in it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShuffleIndex {
    /// Name of the data object (`shuffle-<worker>.arrow`) in the same directory.
    pub data_file: String,
    /// The non-empty buckets in ascending order, each with its byte range.
    pub buckets: Vec<BucketRange>,
}

/// One bucket's Arrow IPC stream within a shuffle data file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BucketRange {
    /// The bucket id.
    pub bucket: u32,
    /// Byte offset of the stream in the data file.
    pub offset: u64,
    /// Length of the stream in bytes.
    pub length: u64,
    /// Rows in the bucket.
    pub rows: u64,
}

/// Writes one worker's bucket-sorted stream. The last column of `input` is
/// the bucket id; it is not stored.
pub async fn write_map_output(
    attempt_dir: &Location,
    worker: usize,
    mut input: SendableRecordBatchStream,
) -> Result<Vec<WrittenFile>> {
    let data_name = format!("shuffle-{worker:04}.arrow");
    let index_name = format!("shuffle-{worker:04}.index.json");
    let schema = input.schema();
    let data_cols: Vec<usize> = (0..schema.fields().len() - 1).collect();
    let data_schema: SchemaRef = Arc::new(schema.project(&data_cols)?);
    let loc = attempt_dir.join(&data_name);
    let mut upload =
        BufWriter::with_capacity(loc.store.clone(), loc.path.clone(), 16 * 1024 * 1024);
    let mut index = ShuffleIndex {
        data_file: data_name.clone(),
        buckets: vec![],
    };
    // Bytes uploaded so far: the next segment starts here.
    let mut offset = 0u64;
    let mut current: Option<Segment> = None;
    let mut total_rows = 0u64;
    let mut checksum = 0u64;

    while let Some(batch) = input.try_next().await? {
        let buckets = batch
            .column(data_cols.len())
            .as_primitive::<Int32Type>()
            .clone();
        let data = batch.project(&data_cols)?;
        checksum = checksum.wrapping_add(crate::layout::row_checksum(&data)?);
        let runs = arrow::compute::partition(&[batch.column(data_cols.len()).clone()])?;
        for r in runs.ranges() {
            let bucket = buckets.value(r.start) as u32;
            if current.as_ref().is_some_and(|c| c.bucket != bucket)
                && let Some(seg) = current.take()
            {
                index
                    .buckets
                    .push(seg.finish(&mut upload, &mut offset).await?);
            }
            if current.is_none() {
                current = Some(Segment {
                    bucket,
                    writer: StreamWriter::try_new(Vec::new(), &data_schema)?,
                    rows: 0,
                    start: offset,
                });
            }
            let seg = current.as_mut().expect("segment is open");
            seg.writer.write(&data.slice(r.start, r.end - r.start))?;
            seg.rows += (r.end - r.start) as u64;
            total_rows += (r.end - r.start) as u64;
            // Large segments go out in parts; the upload bounds memory.
            if seg.writer.get_ref().len() > 8 * 1024 * 1024 {
                let buf = std::mem::take(seg.writer.get_mut());
                upload_bytes(&mut upload, &buf, &mut offset).await?;
            }
        }
    }
    if let Some(seg) = current.take() {
        index
            .buckets
            .push(seg.finish(&mut upload, &mut offset).await?);
    }
    upload
        .shutdown()
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    let index_json = serde_json::to_vec(&index).expect("index serialises");
    let index_loc = attempt_dir.join(&index_name);
    index_loc
        .store
        .put(&index_loc.path, index_json.clone().into())
        .await?;
    Ok(vec![
        WrittenFile {
            path: data_name,
            partition: String::new(),
            bucket: None,
            rows: total_rows,
            bytes: offset,
            row_groups: index.buckets.len() as u32,
            checksum: format!("{checksum:016x}"),
            stats: Default::default(),
        },
        WrittenFile {
            path: index_name,
            partition: String::new(),
            bucket: None,
            rows: 0,
            bytes: index_json.len() as u64,
            row_groups: 0,
            checksum: String::new(),
            stats: Default::default(),
        },
    ])
}

/// One bucket's IPC stream being written; its bytes run from `start` to
/// wherever the upload stands when it finishes.
struct Segment {
    bucket: u32,
    writer: StreamWriter<Vec<u8>>,
    rows: u64,
    start: u64,
}

impl Segment {
    async fn finish(mut self, upload: &mut BufWriter, offset: &mut u64) -> Result<BucketRange> {
        self.writer.finish()?;
        let rest = self.writer.into_inner()?;
        upload_bytes(upload, &rest, offset).await?;
        Ok(BucketRange {
            bucket: self.bucket,
            offset: self.start,
            length: *offset - self.start,
            rows: self.rows,
        })
    }
}

async fn upload_bytes(upload: &mut BufWriter, bytes: &[u8], offset: &mut u64) -> Result<()> {
    upload
        .write_all(bytes)
        .await
        .map_err(|e| DataFusionError::External(Box::new(e)))?;
    *offset += bytes.len() as u64;
    Ok(())
}

/// One bucket of a shuffle, read from every map output as a stream.
#[derive(Debug)]
pub struct ShuffleBucketStream {
    /// The declared schema every batch is cast to.
    pub schema: SchemaRef,
    /// (store location of the data object, byte range) for each segment.
    pub segments: Vec<(Location, u64, u64)>,
}

impl ShuffleBucketStream {
    /// Reads the map tasks' manifests and indexes to find the bucket's ranges.
    pub async fn locate(
        schema: SchemaRef,
        bucket: u32,
        map_outputs: &[String],
        field: &str,
    ) -> TaskResult<Self> {
        let mut segments = vec![];
        for (i, dir) in map_outputs.iter().enumerate() {
            let f = format!("{field}.map_outputs[{i}]");
            let task_loc =
                storage::resolve(dir).map_err(|e| TaskError::bad_spec(&f, e.to_string()))?;
            let dir_loc = committed_attempt(task_loc, &f).await?;
            let manifest_loc = dir_loc.join(MANIFEST_FILE);
            let bytes = get_bytes(&manifest_loc, &f).await?;
            let manifest: TaskManifest = serde_json::from_slice(&bytes).map_err(|e| {
                TaskError::bad_spec(&f, format!("bad manifest {}: {e}", manifest_loc.uri()))
            })?;
            for file in manifest
                .files
                .iter()
                .filter(|w| w.path.ends_with(".index.json"))
            {
                let index_bytes = get_bytes(&dir_loc.join(&file.path), &f).await?;
                let index: ShuffleIndex = serde_json::from_slice(&index_bytes).map_err(|e| {
                    TaskError::bad_spec(&f, format!("bad shuffle index {}: {e}", file.path))
                })?;
                let data = dir_loc.join(&index.data_file);
                for r in index.buckets.iter().filter(|r| r.bucket == bucket) {
                    segments.push((data.clone(), r.offset, r.offset + r.length));
                }
            }
        }
        Ok(Self { schema, segments })
    }
}

/// The attempt directory of a map task that finished: `dir` itself when it
/// names an attempt, else its highest attempt holding a manifest.
async fn committed_attempt(dir: Location, field: &str) -> TaskResult<Location> {
    let last = dir.path.as_ref().rsplit('/').next().unwrap_or_default();
    if last.starts_with("attempt-") {
        return Ok(dir);
    }
    match crate::manifest::finished_attempt(&dir)
        .await
        .map_err(|e| TaskError::from_store(field, e))?
    {
        Some((_, attempt)) => Ok(attempt),
        None => Err(TaskError::bad_spec(
            field,
            format!(
                "map task {} has no finished attempt (no attempt-<n>/{MANIFEST_FILE})",
                dir.uri()
            ),
        )),
    }
}

async fn get_bytes(loc: &Location, field: &str) -> TaskResult<bytes::Bytes> {
    let r = loc
        .store
        .get(&loc.path)
        .await
        .map_err(|e| TaskError::from_store(field, e))?;
    r.bytes().await.map_err(|e| TaskError::from_store(field, e))
}

impl PartitionStream for ShuffleBucketStream {
    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn execute(&self, _ctx: Arc<TaskContext>) -> SendableRecordBatchStream {
        let segments = self.segments.clone();
        let schema = self.schema.clone();
        let stream = futures::stream::iter(segments)
            .then(move |(loc, start, end)| {
                let schema = schema.clone();
                async move {
                    let bytes = loc.store.get_range(&loc.path, start..end).await?;
                    let batches: Vec<Result<RecordBatch>> =
                        StreamReader::try_new(std::io::Cursor::new(bytes), None)?
                            .map(|b| cast_to(b?, &schema))
                            .collect();
                    Ok::<_, DataFusionError>(futures::stream::iter(batches))
                }
            })
            .try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(self.schema.clone(), stream))
    }
}

/// Casts a batch to the declared schema (string views to strings and the like).
fn cast_to(batch: RecordBatch, schema: &SchemaRef) -> Result<RecordBatch> {
    if batch.schema().fields() == schema.fields() {
        return Ok(batch);
    }
    let columns = schema
        .fields()
        .iter()
        .enumerate()
        .map(|(i, f)| arrow::compute::cast(batch.column(i), f.data_type()))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    Ok(RecordBatch::try_new(schema.clone(), columns)?)
}
