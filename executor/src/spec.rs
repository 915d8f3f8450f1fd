//! The task contract: a [`TaskSpec`] carries everything one task needs.
//!
//! A stage is stored as a JSON list of specs (one per task); a single spec
//! object is accepted too. Every field is checked before any data is read.

use crate::error::{TaskError, TaskResult};
use crate::layout::Layout;
use crate::schema::ColumnSpec;
use serde::{Deserialize, Serialize};

/// Bumped on any incompatible change to the spec or manifest format.
pub const SPEC_VERSION: u32 = 1;

/// Everything one task needs: who it is, its inputs, one SQL statement, its
/// output and its limits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TaskSpec {
    /// Format version; must equal [`SPEC_VERSION`].
    pub version: u32,
    /// The run, a directory name below the staging root: letters, digits, `-`, `_` or `.`.
    pub run_id: String,
    /// The stage within the run.
    pub stage_id: u32,
    /// The task's index within its stage.
    pub task_index: u32,
    /// The attempt; the runner's `--attempt` or `AWS_BATCH_JOB_ATTEMPT` overrides it.
    #[serde(default)]
    pub attempt: u32,
    /// The tables the SQL reads.
    pub inputs: Vec<InputTable>,
    /// One SQL statement over the input tables.
    pub sql: String,
    /// Where and how the result is written.
    pub output: OutputSpec,
    /// Memory, parallelism and batch limits; defaults when absent.
    #[serde(default)]
    pub resources: TaskResources,
}

/// One input table: its format, files, schema and hive partition columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputTable {
    /// The table name the SQL uses.
    pub name: String,
    /// How the files are encoded, or `shuffle` for one bucket of a previous stage.
    pub format: InputFormat,
    /// The files to read; a shuffle input reads map outputs instead.
    #[serde(default)]
    pub files: Vec<InputFile>,
    /// The expected file schema (without partition columns). Required for
    /// jsonl and csv; for parquet, files are checked against it.
    #[serde(default)]
    pub schema: Option<Vec<ColumnSpec>>,
    /// Hive partition columns whose values each file carries.
    #[serde(default)]
    pub partition_columns: Vec<ColumnSpec>,
    /// For `format: shuffle`: which bucket to read from which map outputs.
    #[serde(default)]
    pub shuffle: Option<ShuffleInput>,
}

/// The format of an input table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum InputFormat {
    /// Parquet files; without a declared schema it is read from the footers.
    Parquet,
    /// Newline-delimited JSON; needs a declared schema.
    Jsonl,
    /// CSV with a header row; needs a declared schema.
    Csv,
    /// One bucket of a previous stage's shuffle output.
    Shuffle,
}

/// One input file, and which part of it to read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputFile {
    /// The file: a path, `file://` or `s3://` URI.
    pub uri: String,
    /// Size in bytes, if the planner listed it; saves a HEAD request.
    #[serde(default)]
    pub size: Option<u64>,
    /// Values of `partition_columns`, in order, as hive strings.
    #[serde(default)]
    pub partition_values: Vec<String>,
    /// Read only the row groups whose midpoint lies in `[start, end)`.
    #[serde(default)]
    pub range: Option<ByteRange>,
    /// Parquet only: read only these row groups.
    #[serde(default)]
    pub row_groups: Option<Vec<usize>>,
}

impl InputFile {
    /// A whole file, nothing known about it beforehand.
    pub fn whole(uri: impl Into<String>) -> Self {
        Self {
            uri: uri.into(),
            size: None,
            partition_values: vec![],
            range: None,
            row_groups: None,
        }
    }
}

/// A byte range of a file, `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ByteRange {
    /// First byte of the range.
    pub start: u64,
    /// The byte after the range; greater than `start`.
    pub end: u64,
}

/// Which bucket of a shuffle a task reads, and from which map tasks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShuffleInput {
    /// The bucket to read.
    pub bucket: u32,
    /// The map tasks whose output holds the bucket: each a task directory,
    /// read from its highest attempt that has a manifest (the planner cannot
    /// know which attempt will succeed), or one `.../attempt-<n>` directory.
    pub map_outputs: Vec<String>,
}

/// Where the task's result goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum OutputSpec {
    /// Hive-partitioned Parquet in the layout, written to staging; the driver
    /// publishes it to `table_uri` after checking the manifest.
    Table {
        /// The table's URI, where the driver publishes the files.
        table_uri: String,
        /// Root of the staging area where attempt directories are created.
        staging_uri: String,
        /// The layout of the written files.
        layout: Layout,
    },
    /// Map side of a shuffle: rows hashed by `hash_by` into `buckets`.
    Shuffle {
        /// Root of the staging area where attempt directories are created.
        staging_uri: String,
        /// The columns whose values pick a row's bucket.
        hash_by: Vec<String>,
        /// How many buckets; at least 1.
        buckets: u32,
        /// Within each bucket, rows are sorted by these columns.
        #[serde(default)]
        sort_by: Vec<String>,
    },
}

impl OutputSpec {
    /// The staging root of either output, below which
    /// `<run_id>/<stage_id>/<task_index>/attempt-<n>` is written.
    pub fn staging_uri(&self) -> &str {
        match self {
            OutputSpec::Table { staging_uri, .. } | OutputSpec::Shuffle { staging_uri, .. } => {
                staging_uri
            }
        }
    }
}

/// Limits that bound the task's memory, whatever the data's size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TaskResources {
    /// Memory for sorting and buffering before spilling to disk.
    pub memory_bytes: u64,
    /// Parallel streams inside the task; 0 means the core count.
    pub parallelism: usize,
    /// Rows per record batch.
    pub batch_rows: usize,
    /// Directory for sort spill files; default is the system temp dir.
    pub spill_dir: Option<String>,
}

impl Default for TaskResources {
    fn default() -> Self {
        Self {
            memory_bytes: 512 * 1024 * 1024,
            parallelism: 0,
            batch_rows: 8192,
            spill_dir: None,
        }
    }
}

impl TaskSpec {
    /// The directory that holds every attempt of this task.
    pub fn task_dir(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.output.staging_uri().trim_end_matches('/'),
            self.run_id,
            self.stage_id,
            self.task_index,
        )
    }

    /// Path below the staging root where this attempt writes, and only there.
    pub fn attempt_dir(&self, attempt: u32) -> String {
        format!("{}/attempt-{attempt}", self.task_dir())
    }

    /// Checks what can be checked without reading data.
    pub fn validate(&self) -> TaskResult<()> {
        if self.version != SPEC_VERSION {
            return Err(TaskError::bad_spec(
                "version",
                format!(
                    "spec version {} is not supported; this executor reads version {SPEC_VERSION}",
                    self.version
                ),
            ));
        }
        check_path_segment("run_id", &self.run_id)?;
        if self.sql.trim().is_empty() {
            return Err(TaskError::bad_spec("sql", "the SQL statement is empty"));
        }
        let mut names = std::collections::HashSet::new();
        for (i, input) in self.inputs.iter().enumerate() {
            let field = format!("inputs[{i}]");
            if input.name.is_empty() || !names.insert(input.name.to_ascii_lowercase()) {
                return Err(TaskError::bad_spec(
                    format!("{field}.name"),
                    format!("table name {:?} is empty or used twice", input.name),
                ));
            }
            match input.format {
                InputFormat::Jsonl | InputFormat::Csv if input.schema.is_none() => {
                    return Err(TaskError::bad_spec(
                        format!("{field}.schema"),
                        "jsonl and csv inputs need an explicit schema",
                    ));
                }
                InputFormat::Shuffle if input.shuffle.is_none() || input.schema.is_none() => {
                    return Err(TaskError::bad_spec(
                        format!("{field}.shuffle"),
                        "a shuffle input needs `shuffle` (bucket, map_outputs) and `schema`",
                    ));
                }
                _ => {}
            }
            for (j, file) in input.files.iter().enumerate() {
                if file.partition_values.len() != input.partition_columns.len() {
                    return Err(TaskError::bad_spec(
                        format!("{field}.files[{j}].partition_values"),
                        format!(
                            "{} values given for {} partition columns",
                            file.partition_values.len(),
                            input.partition_columns.len()
                        ),
                    ));
                }
                if let Some(r) = file.range
                    && r.start >= r.end
                {
                    return Err(TaskError::bad_spec(
                        format!("{field}.files[{j}].range"),
                        format!("empty byte range {}..{}", r.start, r.end),
                    ));
                }
            }
        }
        if let OutputSpec::Shuffle { buckets, .. } = &self.output
            && *buckets == 0
        {
            return Err(TaskError::bad_spec(
                "output.buckets",
                "a shuffle needs at least one bucket",
            ));
        }
        if let OutputSpec::Table { layout, .. } = &self.output {
            layout.validate("output.layout")?;
        }
        Ok(())
    }
}

fn check_path_segment(field: &str, value: &str) -> TaskResult<()> {
    let ok = !value.is_empty()
        && value
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && value != "."
        && value != "..";
    if ok {
        Ok(())
    } else {
        Err(TaskError::bad_spec(
            field,
            format!("{value:?} must be letters, digits, '-', '_' or '.'"),
        ))
    }
}

/// Parses a stage's spec document: a JSON list of specs, or one spec.
pub fn parse_specs(json: &[u8]) -> TaskResult<Vec<TaskSpec>> {
    let value: serde_json::Value = serde_json::from_slice(json)
        .map_err(|e| TaskError::bad_spec("spec", format!("not valid JSON: {e}")))?;
    let list = match value {
        serde_json::Value::Array(items) => items,
        other => vec![other],
    };
    list.into_iter()
        .enumerate()
        .map(|(i, v)| {
            serde_json::from_value::<TaskSpec>(v)
                .map_err(|e| TaskError::bad_spec(format!("spec[{i}]"), e.to_string()))
        })
        .collect()
}
