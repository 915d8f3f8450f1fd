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
}
