//! The planner: from selected nodes to stages of self-contained task specs.

pub mod dates;
pub mod listing;
pub mod tasks;

use crate::catalog::{Catalog, Dataset, DatasetType};
use crate::pipeline::Node;
use crate::pipeline::validate::{SqlShape, read_schema};
use crate::plan::dates::DateRange;
use crate::plan::listing::{ListedFile, list_dataset};
use crate::plan::tasks::group_by_bytes;
use chainbatch_executor::layout::Layout;
use chainbatch_executor::schema::ColumnSpec;
use chainbatch_executor::spec::{
    InputFile, InputFormat, InputTable, OutputSpec, SPEC_VERSION, ShuffleInput, TaskResources,
    TaskSpec,
};
use serde::Serialize;

pub const DEFAULT_TASK_BYTES: u64 = 256 * 1024 * 1024;

/// The kind of the one stage of a distributed node: one spec, run as a
/// Ballista job on `--backend ballista` and `batch`, as one task on `local`
/// and `process`.
pub const DISTRIBUTED_STAGE: &str = "distributed";

/// How a node's work is cut into tasks, and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Each task writes its share of the layout from its own input.
    MapOnly,
    /// Map tasks hash rows into buckets; one reduce task per bucket writes them.
    Shuffle,
    /// One task per group of whole input partitions (grouped SQL).
    PerPartition,
    /// Needs rows from many input partitions (joins, aggregates across
    /// partitions, global sorts, windows): one physical plan that Ballista
    /// cuts into stages on `--backend ballista` and `batch`; one task on
    /// `local` and `process`.
    Distributed,
}

#[derive(Debug, Clone, Serialize)]
pub struct StagePlan {
    pub stage_id: u32,
    pub kind: &'static str,
    pub input_bytes: u64,
    #[serde(skip)]
    pub specs: Vec<TaskSpec>,
    pub tasks: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodePlan {
    pub node: String,
    pub output: String,
    pub output_path: String,
    pub strategy: Strategy,
    pub reason: String,
    pub input_files: usize,
    pub input_bytes: u64,
    /// Input partitions read (dates, for a date-partitioned input).
    pub input_partitions: Vec<String>,
    /// The output's partition columns.
    pub output_partition_by: Vec<String>,
    /// Output partitions the run will write, when they follow from the input
    /// partitions (the same partition columns); `None` when the data decides.
    pub expected_output_partitions: Option<Vec<String>>,
    /// Inputs with nothing to read: a run refuses them, a plan shows them.
    pub empty_inputs: Vec<String>,
    pub stages: Vec<StagePlan>,
    /// A distributed node's stages as Ballista runs them (`plan` with
    /// `--backend ballista`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ballista_stages: Option<Vec<crate::backend::ballista::BallistaStage>>,
}

#[derive(Debug, Clone)]
pub struct PlanSettings {
    pub run_id: String,
    pub target_task_bytes: u64,
    pub memory_bytes: u64,
    pub dates: Option<DateRange>,
}

fn input_table(ds: &Dataset, files: &[ListedFile]) -> InputTable {
    InputTable {
        name: ds.name.clone(),
        format: match ds.kind {
            DatasetType::Parquet => InputFormat::Parquet,
            DatasetType::Jsonl => InputFormat::Jsonl,
            DatasetType::Csv => InputFormat::Csv,
        },
        files: files
            .iter()
            .map(|f| InputFile {
                uri: f.uri.clone(),
                size: Some(f.size),
                partition_values: f.partition_values.clone(),
                range: None,
                row_groups: None,
            })
            .collect(),
        schema: ds.schema.clone().map(|cols| {
            cols.into_iter()
                .filter(|c| !ds.partitions.iter().any(|p| p.name == c.name))
                .collect()
        }),
        partition_columns: ds.partitions.clone(),
        shuffle: None,
    }
}

fn spec(
    settings: &PlanSettings,
    stage_id: u32,
    task_index: u32,
    inputs: Vec<InputTable>,
    sql: String,
    output: OutputSpec,
) -> TaskSpec {
    TaskSpec {
        version: SPEC_VERSION,
        run_id: settings.run_id.clone(),
        stage_id,
        task_index,
        attempt: 1,
        inputs,
        sql,
        output,
        resources: TaskResources {
            memory_bytes: settings.memory_bytes,
            ..TaskResources::default()
        },
    }
}

/// A node's inputs as listed for its plan, in the node's input order.
type Listed<'c> = [(&'c Dataset, Vec<ListedFile>)];

/// Plans one node: lists its inputs (pruned), chooses a strategy, and
/// builds the task specs of its stages, numbered from `first_stage`.
/// Fails only when an input cannot be listed.
pub async fn plan_node(
    node: &Node,
    shape: &SqlShape,
    catalog: &Catalog,
    settings: &PlanSettings,
    first_stage: u32,
) -> Result<NodePlan, String> {
    let out = &catalog[&node.output];
    let layout: Layout = node
        .layout
        .clone()
        .or_else(|| out.layout.clone())
        .unwrap_or_default();
    let mut listed: Vec<(&Dataset, Vec<ListedFile>)> = vec![];
    for input in &node.inputs {
        let ds = &catalog[input];
        let files = list_dataset(ds, settings.dates.as_ref()).await?;
        listed.push((ds, files));
    }
    let input_files = listed.iter().map(|(_, f)| f.len()).sum();
    let input_bytes: u64 = listed
        .iter()
        .flat_map(|(_, f)| f.iter().map(|x| x.size))
        .sum();
    let primary = listed[0].0;
    let partitioned_input = !primary.partitions.is_empty();
    let (mut strategy, mut reason) = choose_strategy(shape, &listed);
    // A union's task may hold no file of an input: it reads that input as
    // an empty table, of the schema the input declares or its files have.
    let mut empty_schemas = vec![];
    if strategy == Strategy::MapOnly && listed.len() > 1 {
        for (ds, files) in &listed {
            empty_schemas.push(match &ds.schema {
                Some(_) => None,
                None => file_columns(ds, files).await,
            });
        }
    }
    let stage = StageBuilder {
        node,
        settings,
        first_stage,
        out,
        layout: &layout,
        empty_schemas,
    };
    // What tasks group: every input's files, by partition.
    let files = files_by_partition(&listed);
    // A union's rows come from the partitions of all its inputs; any other
    // node's from its first input's.
    let partition_source = if strategy == Strategy::MapOnly {
        &files
    } else {
        &listed[0].1
    };
    let mut input_partitions: Vec<String> = partition_source
        .iter()
        .map(ListedFile::partition_key)
        .collect();
    input_partitions.dedup();
    let mut stages = match strategy {
        Strategy::Distributed => vec![stage.single(&listed, input_bytes, DISTRIBUTED_STAGE)],
        _ => {
            let never_split = strategy == Strategy::PerPartition;
            let (groups, split) = group_by_bytes(&files, settings.target_task_bytes, never_split);
            // All rows of a bucket must reach one file: when an input
            // partition spans several tasks, they meet in a shuffle.
            let spans_tasks = !split.is_empty() || (!partitioned_input && groups.len() > 1);
            match layout.bucket_by.as_ref().filter(|_| spans_tasks) {
                Some(b) => {
                    strategy = Strategy::Shuffle;
                    reason = format!(
                        "bucket_by {:?} needs all rows of a bucket in one file, and {} input partition(s) span several tasks: map tasks hash rows into {} buckets, one reduce task per bucket writes them",
                        b.columns,
                        split.len().max(groups.len()),
                        b.buckets
                    );
                    stage.shuffle(&listed, &groups, b, shape, input_bytes)
                }
                None => {
                    if layout.bucket_by.is_some() {
                        reason = format!(
                            "{reason}; every input partition fits in one task, so each bucket file comes from one task"
                        );
                    }
                    let specs = stage.per_group(&listed, &groups, first_stage, stage.table());
                    vec![StagePlan {
                        stage_id: first_stage,
                        kind: "map",
                        input_bytes,
                        tasks: specs.len(),
                        specs,
                    }]
                }
            }
        }
    };
    // An empty window still runs one task, so the output is an empty, valid commit.
    if stages.iter().all(|s| s.specs.is_empty()) {
        stages = vec![stage.single(&listed, 0, "map")];
    }
    let output_partition_by: Vec<String> = layout
        .partition_by
        .iter()
        .map(|p| p.name().to_string())
        .collect();
    Ok(NodePlan {
        node: node.name.clone(),
        output: node.output.clone(),
        output_path: out.path.clone(),
        strategy,
        reason,
        input_files,
        input_bytes,
        expected_output_partitions: expected_output_partitions(&layout, primary, &input_partitions),
        input_partitions,
        output_partition_by,
        empty_inputs: empty_inputs(&listed, settings.dates.as_ref()),
        stages,
        ballista_stages: None,
    })
}

/// Why each input with nothing to read is empty: a plan shows these, a run
/// refuses them.
fn empty_inputs(listed: &Listed, dates: Option<&DateRange>) -> Vec<String> {
    let window = dates
        .map(|d| format!(" in the window {}..{}", d.from, d.to))
        .unwrap_or_default();
    listed
        .iter()
        .filter(|(_, files)| files.is_empty())
        .map(|(ds, _)| match ds.athena {
            Some(_) => format!(
                "input `{}` is an Athena query, UNLOADed when a run starts: a plan lists \
                 none of its files",
                ds.name
            ),
            None => format!(
                "input `{}` has no {:?} files under {}{window}",
                ds.name, ds.kind, ds.path
            ),
        })
        .collect()
}

/// The strategy the SQL's shape asks for, before the layout is considered:
/// a node whose rows meet rows of other inputs or other input partitions
/// (a join, a subquery, an aggregate or sort across them) is distributed;
/// grouping by the input partition keeps partitions whole; anything else,
/// a union of inputs partitioned alike included, is row-wise.
fn choose_strategy(shape: &SqlShape, listed: &Listed) -> (Strategy, String) {
    let primary = listed[0].0;
    let partitioned_input = !primary.partitions.is_empty();
    let grouped_by_partition = shape.has_aggregate
        && primary
            .partitions
            .iter()
            .all(|p| shape.group_columns.contains(&p.name));
    // Inputs partitioned alike: a task reads the same partitions of each,
    // so a partition's rows (and its buckets) come from one task as they
    // do for one input.
    let same_partitions = listed.iter().all(|(ds, _)| {
        ds.partitions
            .iter()
            .map(|p| &p.name)
            .eq(primary.partitions.iter().map(|p| &p.name))
    });
    let union_of_rows =
        listed.len() > 1 && same_partitions && !shape.has_aggregate && !shape.needs_all_rows;
    if shape.has_join {
        (
            Strategy::Distributed,
            "joins datasets or reads a subquery: one plan over all input, split into stages by Ballista (one task on local and process)".to_string(),
        )
    } else if union_of_rows {
        (
            Strategy::MapOnly,
            format!(
                "a union of row-wise reads of {} datasets: each task reads the same partitions of every input and writes its share of the layout",
                listed.len()
            ),
        )
    } else if listed.len() > 1 {
        (
            Strategy::Distributed,
            "aggregates, sorts or limits a union of several datasets: one plan over all input, split into stages by Ballista (one task on local and process)".to_string(),
        )
    } else if shape.needs_all_rows
        || (shape.has_aggregate && !(partitioned_input && grouped_by_partition))
    {
        (
            Strategy::Distributed,
            "sorts, limits, windows or aggregates across input partitions: one plan over all input, split into stages by Ballista (one task on local and process)"
                .to_string(),
        )
    } else if shape.has_aggregate {
        (
            Strategy::PerPartition,
            format!(
                "groups by the input partition ({}): each task takes whole partitions",
                primary
                    .partitions
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    } else {
        (
            Strategy::MapOnly,
            "row-wise SQL: each task writes its share of the layout from its own input".to_string(),
        )
    }
}

/// The output partitions a node writes when they follow from its input
/// partitions (no partition columns, or the input's own, underived);
/// `None` when the data decides.
fn expected_output_partitions(
    layout: &Layout,
    primary: &Dataset,
    input_partitions: &[String],
) -> Option<Vec<String>> {
    let output_partition_by: Vec<&str> = layout.partition_by.iter().map(|p| p.name()).collect();
    if output_partition_by.is_empty() {
        return Some(vec![String::new()]);
    }
    let input_names: Vec<&str> = primary.partitions.iter().map(|p| p.name.as_str()).collect();
    let plain = layout
        .partition_by
        .iter()
        .all(|p| matches!(p, chainbatch_executor::layout::PartitionColumn::Column(_)));
    (plain && output_partition_by == input_names).then(|| {
        input_partitions
            .iter()
            .map(|v| {
                output_partition_by
                    .iter()
                    .zip(v.split('/'))
                    .map(|(c, v)| format!("{c}={v}"))
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect()
    })
}

/// Every input's files, ordered by partition (stable, so each input's own
/// order holds within a partition): grouping them gives each task the same
/// partitions of every input.
fn files_by_partition(listed: &Listed) -> Vec<ListedFile> {
    let mut files: Vec<ListedFile> = listed.iter().flat_map(|(_, f)| f.clone()).collect();
    if listed.len() > 1 {
        files.sort_by_cached_key(ListedFile::partition_key);
    }
    files
}

/// Builds the stages of one node's plan.
struct StageBuilder<'a> {
    node: &'a Node,
    settings: &'a PlanSettings,
    first_stage: u32,
    out: &'a Dataset,
    layout: &'a Layout,
    /// Per input (in the node's order), the columns a task that holds none
    /// of its files reads it with, when the input declares no schema.
    empty_schemas: Vec<Option<Vec<ColumnSpec>>>,
}

impl StageBuilder<'_> {
    /// The node's output table, written in its layout through staging.
    fn table(&self) -> OutputSpec {
        OutputSpec::Table {
            table_uri: self.out.path.clone(),
            staging_uri: crate::paths::staging_root(self.out),
            layout: self.layout.clone(),
        }
    }

    /// All input in one task (or one distributed job).
    fn single(&self, listed: &Listed, input_bytes: u64, kind: &'static str) -> StagePlan {
        let inputs = listed.iter().map(|(ds, f)| input_table(ds, f)).collect();
        StagePlan {
            stage_id: self.first_stage,
            kind,
            input_bytes,
            specs: vec![spec(
                self.settings,
                self.first_stage,
                0,
                inputs,
                self.node.sql.clone(),
                self.table(),
            )],
            tasks: 1,
        }
    }

    /// One task per group of input files, all running the node's SQL into
    /// `output`. A task reads, of each input, the files of its group that
    /// belong to that input (every input is a table in every task; one
    /// with none of the group's files reads as empty).
    fn per_group(
        &self,
        listed: &Listed,
        groups: &[crate::plan::tasks::TaskFiles],
        stage_id: u32,
        output: OutputSpec,
    ) -> Vec<TaskSpec> {
        let owners: Vec<std::collections::HashSet<&str>> = listed
            .iter()
            .map(|(_, files)| files.iter().map(|f| f.uri.as_str()).collect())
            .collect();
        groups
            .iter()
            .enumerate()
            .map(|(i, g)| {
                let inputs = listed
                    .iter()
                    .zip(&owners)
                    .enumerate()
                    .map(|(n, ((ds, _), uris))| {
                        let files: Vec<ListedFile> = g
                            .files
                            .iter()
                            .filter(|f| uris.contains(f.uri.as_str()))
                            .cloned()
                            .collect();
                        let mut table = input_table(ds, &files);
                        if files.is_empty() && table.schema.is_none() {
                            table.schema = self.empty_schemas.get(n).cloned().flatten();
                        }
                        table
                    })
                    .collect();
                spec(
                    self.settings,
                    stage_id,
                    i as u32,
                    inputs,
                    self.node.sql.clone(),
                    output.clone(),
                )
            })
            .collect()
    }

    /// Map tasks hash the node's rows into buckets; one reduce task per
    /// bucket writes its rows in the layout.
    fn shuffle(
        &self,
        listed: &Listed,
        groups: &[crate::plan::tasks::TaskFiles],
        b: &chainbatch_executor::layout::BucketBy,
        shape: &SqlShape,
        input_bytes: u64,
    ) -> Vec<StagePlan> {
        let shuffle_root = crate::paths::shuffle_root(&self.out.path);
        let map_specs = self.per_group(
            listed,
            groups,
            self.first_stage,
            OutputSpec::Shuffle {
                staging_uri: shuffle_root,
                hash_by: b.columns.clone(),
                buckets: b.buckets,
                sort_by: vec![],
            },
        );
        let map_outputs: Vec<String> = map_specs.iter().map(|s| s.task_dir()).collect();
        let out_cols: Vec<ColumnSpec> = shape
            .output_schema
            .fields()
            .iter()
            .map(|f| ColumnSpec::from_field(f))
            .collect();
        let reduce_specs = (0..b.buckets)
            .map(|bucket| {
                let input = InputTable {
                    name: "shuffled".into(),
                    format: InputFormat::Shuffle,
                    files: vec![],
                    schema: Some(out_cols.clone()),
                    partition_columns: vec![],
                    shuffle: Some(ShuffleInput {
                        bucket,
                        map_outputs: map_outputs.clone(),
                    }),
                };
                spec(
                    self.settings,
                    self.first_stage + 1,
                    bucket,
                    vec![input],
                    "SELECT * FROM shuffled".into(),
                    self.table(),
                )
            })
            .collect::<Vec<_>>();
        vec![
            StagePlan {
                stage_id: self.first_stage,
                kind: "shuffle_map",
                input_bytes,
                tasks: map_specs.len(),
                specs: map_specs,
            },
            StagePlan {
                stage_id: self.first_stage + 1,
                kind: "reduce",
                input_bytes,
                tasks: reduce_specs.len(),
                specs: reduce_specs,
            },
        ]
    }
}

/// Reads the Arrow schema of a dataset's first Parquet file, for datasets
/// that declare none.
pub async fn infer_schema(ds: &Dataset) -> Option<arrow::datatypes::SchemaRef> {
    if ds.kind != DatasetType::Parquet || ds.schema.is_some() {
        return None;
    }
    let files = list_dataset(ds, None).await.ok()?;
    first_file_schema(ds, &files).await
}

/// The file columns (no partition columns) of the first of `files`, a
/// Parquet dataset's, as a task spec declares them.
async fn file_columns(ds: &Dataset, files: &[ListedFile]) -> Option<Vec<ColumnSpec>> {
    if ds.kind != DatasetType::Parquet {
        return None;
    }
    let schema = first_file_schema(ds, files).await?;
    Some(
        schema
            .fields()
            .iter()
            .filter(|f| !ds.partitions.iter().any(|p| &p.name == f.name()))
            .map(|f| ColumnSpec::from_field(f))
            .collect(),
    )
}

/// The read schema of `ds` from the first of its listed `files`.
async fn first_file_schema(
    ds: &Dataset,
    files: &[ListedFile],
) -> Option<arrow::datatypes::SchemaRef> {
    let first = files.first()?;
    let loc = chainbatch_executor::storage::resolve(&first.uri).ok()?;
    let md = chainbatch_executor::parquet_file::read_metadata(&loc, first.size)
        .await
        .ok()?;
    let s = chainbatch_executor::parquet_file::arrow_schema(&md).ok()?;
    read_schema(ds, Some(s)).ok()
}
