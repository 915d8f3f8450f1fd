//! The task manifest: the only proof that a task finished. Written last, as
//! `_manifest.json` in the attempt's directory, listing only complete files.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// File name of the manifest in an attempt directory; its presence marks the
/// attempt finished.
pub const MANIFEST_FILE: &str = "_manifest.json";

/// One complete file, as written by the layout writer or a shuffle map.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WrittenFile {
    /// Path relative to the attempt directory (`date=2023-05-02/part-...`).
    pub path: String,
    /// The hive partition path, `""` for an unpartitioned table.
    pub partition: String,
    /// The bucket, for a bucketed layout.
    #[serde(default)]
    pub bucket: Option<i32>,
    /// Rows in the file (0 for a shuffle index).
    pub rows: u64,
    /// Size of the file in bytes.
    pub bytes: u64,
    /// Parquet row groups in the file; for a shuffle data file, the buckets it holds.
    pub row_groups: u32,
    /// Order-independent checksum of the file's rows (hex).
    pub checksum: String,
    /// Per-column min, max and null count from the Parquet statistics.
    #[serde(default)]
    pub stats: BTreeMap<String, ColumnStats>,
}

/// One column's statistics over a file or a partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnStats {
    /// The least value, as text; `None` when unknown or every value is NULL.
    pub min: Option<String>,
    /// The greatest value, as text; `None` when unknown or every value is NULL.
    pub max: Option<String>,
    /// Number of NULL values.
    pub nulls: u64,
}

/// Rows, bytes and statistics of one output partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionSummary {
    /// The hive partition path (`date=2023-05-02`), `""` for an unpartitioned table.
    pub path: String,
    /// Column name to unescaped value (`None` for NULL).
    pub values: BTreeMap<String, Option<String>>,
    /// Files written to the partition.
    pub files: u32,
    /// Rows in the partition's files.
    pub rows: u64,
    /// Bytes of the partition's files.
    pub bytes: u64,
    /// Order-independent checksum of the partition's rows (hex): the wrapping
    /// sum of its files' checksums.
    pub checksum: String,
    /// Per-column statistics merged over the partition's files.
    pub stats: BTreeMap<String, ColumnStats>,
}

/// What a task wrote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// Parquet files in a layout, for the driver to publish to a table.
    Table,
    /// Shuffle map output: per worker, a data file of bucket streams and its index.
    Shuffle,
}

/// The record of a finished task attempt, written as [`MANIFEST_FILE`] after all its files.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskManifest {
    /// The spec and manifest format version ([`crate::spec::SPEC_VERSION`]).
    pub version: u32,
    /// The run the task belongs to.
    pub run_id: String,
    /// The task's stage.
    pub stage_id: u32,
    /// The task's index within its stage.
    pub task_index: u32,
    /// The attempt that wrote the files.
    pub attempt: u32,
    /// Whether the files are a table output or shuffle map output.
    pub kind: OutputKind,
    /// The attempt directory the file paths are relative to.
    pub attempt_dir: String,
    /// Every complete file the attempt wrote.
    pub files: Vec<WrittenFile>,
    /// Totals per hive partition, ordered by path; empty for shuffle output.
    pub partitions: Vec<PartitionSummary>,
    /// Rows written over all data files.
    pub rows: u64,
    /// Bytes written over all files.
    pub bytes: u64,
    /// Order-independent checksum of all rows and their partitions (hex).
    pub checksum: String,
    /// Input files (or shuffle segments) the task read.
    pub input_files: u64,
    /// Bytes of those inputs.
    pub input_bytes: u64,
    /// Wall-clock time of the task in milliseconds, up to writing the manifest.
    pub elapsed_ms: u64,
    /// How a table output met its `sort_by`; absent without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sort: Option<SortMethod>,
}

/// How a task put its rows in `sort_by` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortMethod {
    /// The inputs already were in order (declared by their files, kept by
    /// the query): rows were written as they streamed in.
    InputOrder,
    /// The task sorted its rows, spilling to disk beyond its memory.
    Sorted,
}

/// The highest `attempt-<n>` directory below a task directory that holds a
/// manifest: the attempt that finished. Shuffle readers and resumed runs
/// both need it, since no plan can know which attempt of a task finishes.
pub async fn finished_attempt(
    task_dir: &crate::storage::Location,
) -> object_store::Result<Option<(u32, crate::storage::Location)>> {
    use object_store::ObjectStoreExt;
    let listed = match task_dir
        .store
        .list_with_delimiter(Some(&task_dir.path))
        .await
    {
        Ok(l) => l.common_prefixes,
        Err(object_store::Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut attempts: Vec<u32> = listed
        .iter()
        .filter_map(|p| p.filename()?.strip_prefix("attempt-")?.parse().ok())
        .collect();
    attempts.sort_unstable_by(|a, b| b.cmp(a));
    for n in attempts {
        let attempt = task_dir.join(&format!("attempt-{n}"));
        let manifest = attempt.join(MANIFEST_FILE);
        match manifest.store.head(&manifest.path).await {
            Ok(_) => return Ok(Some((n, attempt))),
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(None)
}
