//! The task manifest: the only proof that a task finished. Written last, as
//! `_manifest.json` in the attempt's directory, listing only complete files.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    pub rows: u64,
    pub bytes: u64,
    pub row_groups: u32,
    /// Order-independent checksum of the file's rows (hex).
    pub checksum: String,
    /// Per-column min, max and null count from the Parquet statistics.
    #[serde(default)]
    pub stats: BTreeMap<String, ColumnStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnStats {
    pub min: Option<String>,
    pub max: Option<String>,
    pub nulls: u64,
}

/// Rows, bytes and statistics of one output partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionSummary {
    pub path: String,
    /// Column name to unescaped value (`None` for NULL).
    pub values: BTreeMap<String, Option<String>>,
    pub files: u32,
    pub rows: u64,
    pub bytes: u64,
    pub checksum: String,
    pub stats: BTreeMap<String, ColumnStats>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    Table,
    Shuffle,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskManifest {
    pub version: u32,
    pub run_id: String,
    pub stage_id: u32,
    pub task_index: u32,
    pub attempt: u32,
    pub kind: OutputKind,
    /// The attempt directory the file paths are relative to.
    pub attempt_dir: String,
    pub files: Vec<WrittenFile>,
    pub partitions: Vec<PartitionSummary>,
    pub rows: u64,
    pub bytes: u64,
    /// Order-independent checksum of all rows and their partitions (hex).
    pub checksum: String,
    pub input_files: u64,
    pub input_bytes: u64,
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
