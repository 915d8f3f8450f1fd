//! Reading many small Parquet files: each in one GET, fetched ahead of the
//! scan, so that latency, not the files' count, is what the scan waits for.
//!
//! DataFusion reads a scan partition's files one after the other, and each
//! file with its own requests: the footer's tail, the metadata, the page
//! index, then the column chunks. A day of the public dataset's per-block
//! files is ~7,200 files of ~40 KB, where those round trips are the cost.
//! Files up to [`SMALL_FILE_BYTES`] are instead fetched whole, [`AHEAD`]
//! files ahead of the one being read, and served from memory: metadata,
//! page index and data. Memory is at most `AHEAD` small files per scan
//! partition. Larger files are read as DataFusion reads them.

use bytes::Bytes;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::{
    DefaultParquetFileReaderFactory, ParquetFileMetrics, ParquetFileReaderFactory,
};
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use futures::future::{BoxFuture, FutureExt, Shared};
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use parquet::arrow::arrow_reader::ArrowReaderOptions;
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::errors::ParquetError;
use parquet::file::metadata::{
    ParquetMetaData, ParquetMetaDataOptions, ParquetMetaDataReader, ParquetStatisticsPolicy,
};
use parquet::schema::types::SchemaDescPtr;
use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};

/// Files up to this size are fetched whole, in one GET.
pub const SMALL_FILE_BYTES: u64 = 1024 * 1024;
/// How many small files each scan partition fetches ahead of the one it reads.
pub const AHEAD: usize = 16;

type Fetch = Shared<BoxFuture<'static, Result<Bytes, String>>>;

/// A reader factory that fetches a scan partition's small files ahead.
pub struct PrefetchReaderFactory {
    store: Arc<dyn ObjectStore>,
    /// Per scan partition, its files in the order the scan reads them.
    groups: Vec<Vec<(Path, u64)>>,
    /// Where each file is in `groups`: (partition, position). A partition
    /// that takes a file from another's group (DataFusion lets idle
    /// partitions steal files) prefetches along that group.
    positions: HashMap<Path, (usize, usize)>,
    /// Each file's Parquet schema, as read when the task opened it: its
    /// metadata is then decoded without the schema, which for a file of a
    /// few blocks is a good part of it.
    schemas: HashMap<Path, SchemaDescPtr>,
    /// Fetches started and not yet handed to a reader, with their position.
    started: Mutex<HashMap<(usize, Path), (usize, Fetch)>>,
    /// Set when the files are on local disk: each is then read in one call
    /// on the blocking pool (object_store's local GET takes two, and with
    /// thousands of files the thread wake-ups were a tenth of the time).
    local: Option<LocalFileSystem>,
    fallback: DefaultParquetFileReaderFactory,
}

impl fmt::Debug for PrefetchReaderFactory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrefetchReaderFactory")
            .field("partitions", &self.groups.len())
            .finish()
    }
}

impl PrefetchReaderFactory {
    /// A factory for a scan whose partition `p` reads `groups[p]` in order;
    /// `local` when `store` is the local file system; `schemas` the files'
    /// Parquet schemas, where known.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        local: bool,
        groups: Vec<Vec<&PartitionedFile>>,
        schemas: HashMap<Path, SchemaDescPtr>,
    ) -> Self {
        let groups: Vec<Vec<(Path, u64)>> = groups
            .into_iter()
            .map(|g| {
                g.into_iter()
                    .map(|f| (f.object_meta.location.clone(), f.object_meta.size))
                    .collect()
            })
            .collect();
        let mut positions = HashMap::new();
        for (p, g) in groups.iter().enumerate() {
            for (i, (path, _)) in g.iter().enumerate() {
                positions.entry(path.clone()).or_insert((p, i));
            }
        }
        Self {
            fallback: DefaultParquetFileReaderFactory::new(store.clone()),
            store,
            groups,
            positions,
            schemas,
            started: Mutex::new(HashMap::new()),
            local: local.then(LocalFileSystem::new),
        }
    }

    /// Starts fetching the small files of partition `p` from position `from`
    /// on, up to [`AHEAD`] of them, that are not started yet, and returns
    /// the fetch of `path` (at `from`). Fetches of files before `from` that
    /// no reader took (the scan skipped them) are dropped.
    fn fetch(&self, p: usize, path: &Path, from: usize) -> Fetch {
        let mut started = self.started.lock().expect("prefetch lock");
        started.retain(|(q, _), (i, _)| *q != p || *i >= from);
        for (offset, (next, size)) in self.groups[p].iter().enumerate().skip(from).take(AHEAD) {
            let key = (p, next.clone());
            if *size <= SMALL_FILE_BYTES && !started.contains_key(&key) {
                started.insert(key, (offset, self.start(next.clone())));
            }
        }
        match started.remove(&(p, path.clone())) {
            Some((_, fetch)) => fetch,
            None => self.start(path.clone()),
        }
    }

    /// Fetches `location` whole, in the background.
    fn start(&self, location: Path) -> Fetch {
        let task = match &self.local {
            Some(fs) => {
                let path = fs.path_to_filesystem(&location).map_err(|e| e.to_string());
                tokio::task::spawn_blocking(move || {
                    std::fs::read(path?)
                        .map(Bytes::from)
                        .map_err(|e| e.to_string())
                })
            }
            None => {
                let store = self.store.clone();
                tokio::spawn(async move {
                    let got = store.get(&location).await.map_err(|e| e.to_string())?;
                    got.bytes().await.map_err(|e| e.to_string())
                })
            }
        };
        async move {
            task.await
                .map_err(|e| format!("prefetch stopped: {e}"))
                .and_then(|r| r)
        }
        .boxed()
        .shared()
    }
}

impl ParquetFileReaderFactory for PrefetchReaderFactory {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> datafusion::common::Result<Box<dyn AsyncFileReader + Send>> {
        let path = file.object_meta.location.clone();
        match self.positions.get(&path) {
            Some(&(group, i)) if file.object_meta.size <= SMALL_FILE_BYTES => {
                let fetch = self.fetch(group, &path, i);
                let file_metrics = ParquetFileMetrics::new(partition_index, path.as_ref(), metrics);
                Ok(Box::new(WholeFileReader {
                    schema: self.schemas.get(&path).cloned(),
                    path,
                    fetch,
                    bytes: None,
                    metrics: file_metrics,
                }))
            }
            _ => self
                .fallback
                .create_reader(partition_index, file, metadata_size_hint, metrics),
        }
    }
}

/// Serves one small file's reads from its bytes, fetched once.
struct WholeFileReader {
    path: Path,
    /// The file's Parquet schema, when the task already read it.
    schema: Option<SchemaDescPtr>,
    fetch: Fetch,
    bytes: Option<Bytes>,
    metrics: ParquetFileMetrics,
}

impl WholeFileReader {
    async fn bytes(&mut self) -> parquet::errors::Result<Bytes> {
        if let Some(b) = &self.bytes {
            return Ok(b.clone());
        }
        let b = self
            .fetch
            .clone()
            .await
            .map_err(|e| ParquetError::General(format!("cannot read {}: {e}", self.path)))?;
        self.bytes = Some(b.clone());
        Ok(b)
    }

    fn slice(&self, bytes: &Bytes, range: Range<u64>) -> parquet::errors::Result<Bytes> {
        if range.end > bytes.len() as u64 || range.start > range.end {
            return Err(ParquetError::EOF(format!(
                "{}: range {range:?} beyond its {} bytes",
                self.path,
                bytes.len()
            )));
        }
        self.metrics
            .bytes_scanned
            .add((range.end - range.start) as usize);
        Ok(bytes.slice(range.start as usize..range.end as usize))
    }
}

impl AsyncFileReader for WholeFileReader {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            let bytes = self.bytes().await?;
            self.slice(&bytes, range)
        }
        .boxed()
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            let bytes = self.bytes().await?;
            ranges.into_iter().map(|r| self.slice(&bytes, r)).collect()
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let bytes = self.bytes().await?;
            // Pages' size statistics serve the page index, which a small
            // file's scan does not read.
            let mut decode = ParquetMetaDataOptions::new()
                .with_size_stats_policy(ParquetStatisticsPolicy::SkipAll);
            if let Some(schema) = &self.schema {
                decode = decode.with_schema(schema.clone());
            }
            let mut reader = ParquetMetaDataReader::new().with_metadata_options(Some(decode));
            if let Some(o) = options {
                reader = reader
                    .with_column_index_policy(o.column_index_policy())
                    .with_offset_index_policy(o.offset_index_policy());
            }
            let metadata = reader.parse_and_finish(&bytes)?;
            Ok(Arc::new(metadata))
        }
        .boxed()
    }
}
