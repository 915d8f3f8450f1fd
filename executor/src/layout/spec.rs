//! The layout: how a dataset is partitioned, bucketed, sorted and cut into files.

use crate::error::{TaskError, TaskResult};
use parquet::basic::{Compression, GzipLevel, ZstdLevel};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// How a table output is partitioned, bucketed, sorted and cut into Parquet
/// files: the spec's `output.layout`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Layout {
    /// Hive partition columns, in directory order.
    pub partition_by: Vec<PartitionColumn>,
    /// Hash these columns into a fixed number of files per partition.
    pub bucket_by: Option<BucketBy>,
    /// Rows are sorted by these within each file: `col` or `col desc`.
    pub sort_by: Vec<String>,
    /// Roll to a new file when a file reaches about this many bytes.
    pub target_file_bytes: Option<u64>,
    /// Roll to a new file when a file reaches this many rows.
    pub max_rows_per_file: Option<u64>,
    /// Rows per Parquet row group (at most).
    pub row_group_rows: usize,
    /// Encoded bytes per row group (at most); bounds writer memory.
    pub row_group_bytes: u64,
    /// `zstd(LEVEL)`, `zstd`, `snappy`, `lz4`, `gzip` or `none`.
    pub compression: String,
    /// Dictionary encoding for columns not listed in `columns`: `auto`
    /// (columns whose first rows are mostly distinct go without), `true`, `false`.
    pub dictionary: crate::layout::Dictionary,
    /// Per-column settings: dictionary, statistics, bloom filters.
    pub columns: BTreeMap<String, ColumnOptions>,
    /// Writers open at once in a task; past this the writer sorts the rest
    /// by partition (spilling to disk) and writes one partition at a time.
    pub max_open_writers: usize,
}

impl Default for Layout {
    fn default() -> Self {
        Self {
            partition_by: vec![],
            bucket_by: None,
            sort_by: vec![],
            target_file_bytes: Some(128 * 1024 * 1024),
            max_rows_per_file: None,
            row_group_rows: 1024 * 1024,
            row_group_bytes: 128 * 1024 * 1024,
            compression: "zstd(1)".into(),
            dictionary: crate::layout::Dictionary::Auto,
            columns: BTreeMap::new(),
            max_open_writers: 64,
        }
    }
}

/// A hive partition column: a plain column, or a name and an SQL expression
/// (`CAST(block_timestamp AS DATE)`, `block_chunk(block_number, 100000)`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PartitionColumn {
    /// A column of the query, used as it is.
    Column(String),
    /// A new column: a name and the SQL expression that computes it.
    Derived {
        /// The partition column's name in paths.
        name: String,
        /// The SQL expression over the query's columns that gives its value.
        expr: String,
    },
}

impl PartitionColumn {
    /// The partition column's name, as it appears in paths (`name=value`).
    pub fn name(&self) -> &str {
        match self {
            PartitionColumn::Column(c) => c,
            PartitionColumn::Derived { name, .. } => name,
        }
    }

    /// The SQL expression that gives the value: the column name itself for a plain column.
    pub fn expr(&self) -> &str {
        match self {
            PartitionColumn::Column(c) => c,
            PartitionColumn::Derived { expr, .. } => expr,
        }
    }
}

/// Rows hashed with `bucket_id` into a fixed number of buckets, one file each
/// per partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BucketBy {
    /// The columns hashed, in order.
    pub columns: Vec<String>,
    /// How many buckets; at least 1.
    pub buckets: u32,
}

/// Parquet settings of one column; a `None` keeps the layout's default.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ColumnOptions {
    /// Dictionary encoding on or off, overriding the layout's `dictionary`.
    pub dictionary: Option<bool>,
    /// Page-level statistics on (the default) or off.
    pub statistics: Option<bool>,
    /// Whether the column gets a bloom filter (only when `true`).
    pub bloom_filter: Option<bool>,
    /// False-positive probability of the bloom filter.
    pub bloom_filter_fpp: Option<f64>,
    /// Expected distinct values per row group, sizing the bloom filter.
    pub bloom_filter_ndv: Option<u64>,
}

/// One `sort_by` entry, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// The column sorted by.
    pub column: String,
    /// Whether the order descends (`col desc`); nulls come last ascending and
    /// first descending.
    pub descending: bool,
}

impl Layout {
    /// The `sort_by` entries, split into column and direction.
    pub fn sort_keys(&self) -> Vec<SortKey> {
        self.sort_by
            .iter()
            .map(|s| {
                let mut parts = s.split_whitespace();
                let column = parts.next().unwrap_or_default().to_string();
                let descending = parts.next().is_some_and(|d| d.eq_ignore_ascii_case("desc"));
                SortKey { column, descending }
            })
            .collect()
    }

    /// Whether rows are routed by key: the layout partitions or buckets.
    pub fn has_keys(&self) -> bool {
        !self.partition_by.is_empty() || self.bucket_by.is_some()
    }

    /// The `compression` setting as a Parquet codec, or why it is invalid.
    pub fn parquet_compression(&self) -> Result<Compression, String> {
        parse_compression(&self.compression)
    }

    /// Checks the layout on its own; column names are checked against the
    /// data's schema when the task is planned.
    pub fn validate(&self, field: &str) -> TaskResult<()> {
        self.parquet_compression()
            .map_err(|e| TaskError::bad_spec(format!("{field}.compression"), e))?;
        if self.row_group_rows == 0 {
            return Err(TaskError::bad_spec(
                format!("{field}.row_group_rows"),
                "must be at least 1",
            ));
        }
        if self.max_open_writers == 0 {
            return Err(TaskError::bad_spec(
                format!("{field}.max_open_writers"),
                "must be at least 1",
            ));
        }
        for (key, limit) in [
            ("target_file_bytes", self.target_file_bytes),
            ("max_rows_per_file", self.max_rows_per_file),
        ] {
            if limit == Some(0) {
                return Err(TaskError::bad_spec(
                    format!("{field}.{key}"),
                    "must be positive (leave it out for no limit)",
                ));
            }
        }
        if let Some(b) = &self.bucket_by
            && (b.buckets == 0 || b.columns.is_empty())
        {
            return Err(TaskError::bad_spec(
                format!("{field}.bucket_by"),
                "needs at least one column and one bucket",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, p) in self.partition_by.iter().enumerate() {
            let name = p.name();
            let valid =
                !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !valid || !seen.insert(name.to_string()) {
                return Err(TaskError::bad_spec(
                    format!("{field}.partition_by[{i}]"),
                    format!("partition column name {name:?} must be unique letters, digits or '_'"),
                ));
            }
        }
        for (i, s) in self.sort_by.iter().enumerate() {
            let parts: Vec<&str> = s.split_whitespace().collect();
            let ok = match parts.as_slice() {
                [_] => true,
                [_, dir] => dir.eq_ignore_ascii_case("asc") || dir.eq_ignore_ascii_case("desc"),
                _ => false,
            };
            if !ok {
                return Err(TaskError::bad_spec(
                    format!("{field}.sort_by[{i}]"),
                    format!("expected `column` or `column asc|desc`, got {s:?}"),
                ));
            }
        }
        Ok(())
    }
}

/// Parses `zstd(LEVEL)`, `zstd` (level 1), `gzip(LEVEL)`, `gzip` (level 6), `snappy`,
/// `lz4` or `none`/`uncompressed`, in any case; the error says what was expected.
pub fn parse_compression(text: &str) -> Result<Compression, String> {
    let t = text.trim().to_ascii_lowercase();
    let (codec, level) = match t.split_once('(') {
        Some((c, rest)) => (
            c.to_string(),
            Some(
                rest.trim_end_matches(')')
                    .parse::<i32>()
                    .map_err(|_| format!("bad compression level in {text:?}"))?,
            ),
        ),
        None => (t.clone(), None),
    };
    let bad_level = |e: parquet::errors::ParquetError| format!("{text:?}: {e}");
    Ok(match codec.as_str() {
        "zstd" => Compression::ZSTD(ZstdLevel::try_new(level.unwrap_or(1)).map_err(bad_level)?),
        "gzip" => {
            Compression::GZIP(GzipLevel::try_new(level.unwrap_or(6) as u32).map_err(bad_level)?)
        }
        "snappy" => Compression::SNAPPY,
        "lz4" => Compression::LZ4_RAW,
        "none" | "uncompressed" => Compression::UNCOMPRESSED,
        _ => {
            return Err(format!(
                "unknown compression {text:?}; expected zstd(LEVEL), snappy, lz4, gzip or none"
            ));
        }
    })
}

/// The short codec name used in file names: `part-0-3-00001.zstd.parquet`.
pub fn codec_suffix(c: Compression) -> &'static str {
    match c {
        Compression::ZSTD(_) => "zstd",
        Compression::SNAPPY => "snappy",
        Compression::GZIP(_) => "gz",
        Compression::LZ4_RAW | Compression::LZ4 => "lz4",
        Compression::UNCOMPRESSED => "none",
        _ => "parquet",
    }
}
