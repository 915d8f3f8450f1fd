//! A node's commit to a Delta table: one transaction that removes the files
//! of the partitions the node replaces and adds the files it wrote.
//!
//! The transaction carries a Delta application transaction (`txn`) named
//! after the run and node, so finishing a crashed run's commit checks the
//! log first and never commits twice. A concurrent writer's commit is met by
//! Delta's conflict checking; a conflict reloads the table and computes the
//! removes again, so the partitions end up with exactly this node's files.

use super::{DeltaError, table_builder};
use crate::catalog::SaveMode;
use chainbatch_executor::layout::hive;
use deltalake_core::kernel::transaction::{
    CommitBuilder, CommitProperties, TableReference, TransactionError,
};
use deltalake_core::kernel::{Action, Add, StructField, StructType, Transaction};
use deltalake_core::protocol::{DeltaOperation, SaveMode as DeltaSaveMode};
use deltalake_core::{DeltaTableError, operations::create::CreateBuilder};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeSet, HashMap};

/// How often a commit that lost to a concurrent writer reloads and tries
/// again before the run fails (retryable: `--resume` tries once more).
const MAX_ATTEMPTS: usize = 5;

/// The table a node writes, fixed when the run starts: its Delta schema
/// (data columns, then partition columns) and partition columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeltaTarget {
    /// The Delta schema, as the log's `schemaString` spells it.
    pub schema: String,
    pub partition_columns: Vec<String>,
}

/// One new file of the commit, relative to the table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeltaFile {
    pub path: String,
    pub size: u64,
    pub rows: u64,
}

/// What the journal keeps of a Delta commit, enough to finish it after a
/// crash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeltaCommit {
    pub target: DeltaTarget,
    /// The application transaction id in the table's log.
    pub app_id: String,
    pub run_id: String,
    pub node: String,
    pub files: Vec<DeltaFile>,
    /// The dataset's save mode, applied to the log: which live files the
    /// commit removes.
    pub save_mode: SaveMode,
    /// The table version this commit made, once it is made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<u64>,
}

/// Plans the Delta table of a node's output from the node's output schema:
/// the partition key columns leave the data columns and join the schema at
/// the end with their own types. A type Delta cannot hold is refused here,
/// before any task runs, naming the column.
pub fn plan_target(
    data_schema: &arrow::datatypes::Schema,
    partition_keys: &[(String, arrow::datatypes::DataType)],
) -> Result<DeltaTarget, String> {
    use deltalake_core::kernel::engine::arrow_conversion::TryIntoKernel;
    let mut fields: Vec<StructField> = vec![];
    let keys: BTreeSet<&str> = partition_keys.iter().map(|(k, _)| k.as_str()).collect();
    let convert = |name: &str, t: &arrow::datatypes::DataType, nullable: bool| {
        let field = arrow::datatypes::Field::new(name, delta_arrow_type(t), nullable);
        let converted: Result<StructField, _> = (&field).try_into_kernel();
        converted.map_err(|e| {
            format!("column `{name}` has type {t}, which a Delta table cannot hold ({e})")
        })
    };
    for f in data_schema.fields() {
        if !keys.contains(f.name().as_str()) {
            fields.push(convert(f.name(), f.data_type(), f.is_nullable())?);
        }
    }
    for (k, t) in partition_keys {
        fields.push(convert(k, t, true)?);
    }
    let schema = StructType::try_new(fields).map_err(|e| e.to_string())?;
    Ok(DeltaTarget {
        schema: serde_json::to_string(&schema).expect("a Delta schema serialises"),
        partition_columns: partition_keys.iter().map(|(k, _)| k.clone()).collect(),
    })
}

/// The Arrow type a column is stored as in Parquet, which is what the Delta
/// schema describes: DataFusion's view types are plain strings and binaries
/// on disk, and a Delta timestamp is in microseconds (Parquet has no
/// seconds; readers widen the file's milliseconds).
fn delta_arrow_type(t: &arrow::datatypes::DataType) -> arrow::datatypes::DataType {
    use arrow::datatypes::{DataType as T, TimeUnit};
    match t {
        T::Timestamp(_, tz) => T::Timestamp(TimeUnit::Microsecond, tz.clone()),
        T::Utf8View | T::LargeUtf8 => T::Utf8,
        T::BinaryView | T::LargeBinary => T::Binary,
        T::Dictionary(_, v) => delta_arrow_type(v),
        other => other.clone(),
    }
}

/// Makes (or finds made) the commit; returns the table version that holds
/// it. `partitions` are the hive paths the node replaces.
pub async fn commit(
    c: &DeltaCommit,
    table_uri: &str,
    partitions: &[String],
) -> Result<u64, DeltaError> {
    let invalid = |message: String| DeltaError::Invalid {
        table: table_uri.to_string(),
        message,
    };
    let schema: StructType = serde_json::from_str(&c.target.schema)
        .map_err(|e| invalid(format!("the journal's schema does not parse: {e}")))?;
    let mut last_conflict = String::new();
    for _ in 0..MAX_ATTEMPTS {
        let (builder, table) = table_builder(table_uri)?;
        let delta = |source| DeltaError::Delta {
            table: table.clone(),
            source,
        };
        let mut t = builder.build().map_err(delta)?;
        let props = CommitProperties::default()
            .with_application_transaction(Transaction::new(&c.app_id, 1))
            .with_metadata([
                ("chainbatch.run_id".to_string(), c.run_id.clone().into()),
                ("chainbatch.node".to_string(), c.node.clone().into()),
            ]);
        let adds: Vec<Action> = c.files.iter().map(add_action).collect();
        if !t.verify_deltatable_existence().await.map_err(delta)? {
            let created = CreateBuilder::new()
                .with_log_store(t.log_store())
                .with_columns(schema.fields().cloned())
                .with_partition_columns(c.target.partition_columns.clone())
                .with_actions(adds)
                .with_commit_properties(props)
                .await;
            match created {
                Ok(made) => return Ok(made.version().unwrap_or(0)),
                Err(e) => {
                    // Another writer created it first: commit on top of theirs.
                    if t.verify_deltatable_existence().await.unwrap_or(false) {
                        last_conflict = e.to_string();
                        continue;
                    }
                    return Err(delta(e));
                }
            }
        }
        t.load().await.map_err(delta)?;
        let snapshot = t.snapshot().map_err(delta)?;
        let log_store = t.log_store();
        if snapshot
            .transaction_version(log_store.as_ref(), &c.app_id)
            .await
            .map_err(delta)?
            .is_some()
        {
            // Made before a crash: the version that holds it is this or older.
            return Ok(t.version().unwrap_or(0));
        }
        let existing = snapshot.metadata().partition_columns();
        if existing != c.target.partition_columns.as_slice() {
            return Err(invalid(format!(
                "is partitioned by {existing:?}; the node writes partitions {:?}",
                c.target.partition_columns
            )));
        }
        let table_schema = snapshot.schema();
        if let Some(diff) = schema_difference(&table_schema, &schema) {
            return Err(invalid(format!(
                "{diff}; a node's output must match the table it commits to (write to a new \
                 path, or change the SQL)"
            )));
        }
        let removes = files_to_remove(&t, &c.target.partition_columns, partitions, c.save_mode)
            .await
            .map_err(|e| match e {
                Removal::Delta(source) => DeltaError::Delta {
                    table: table.clone(),
                    source,
                },
                Removal::NotEmpty(n) => invalid(format!(
                    "has {n} file(s) and the dataset's save_mode is error_if_exists"
                )),
            })?;
        let overwrite = !removes.is_empty();
        let mut actions = removes;
        actions.extend(adds);
        let operation = DeltaOperation::Write {
            mode: if overwrite {
                DeltaSaveMode::Overwrite
            } else {
                DeltaSaveMode::Append
            },
            partition_by: Some(c.target.partition_columns.clone()),
            predicate: overwrite.then(|| predicate(partitions)),
        };
        let done = CommitBuilder::from(props)
            .with_actions(actions)
            .build(Some(snapshot as &dyn TableReference), log_store, operation)
            .await;
        match done {
            Ok(f) => return Ok(f.version()),
            Err(DeltaTableError::Transaction {
                source: TransactionError::CommitConflict(e),
            }) => last_conflict = e.to_string(),
            Err(DeltaTableError::Transaction {
                source: TransactionError::MaxCommitAttempts(n),
            }) => last_conflict = format!("{n} commit attempts lost to concurrent writers"),
            Err(e) => return Err(delta(e)),
        }
    }
    Err(invalid(format!(
        "the commit lost to concurrent writers {MAX_ATTEMPTS} times (last: {last_conflict}); \
         run again with --resume"
    )))
}

/// How the node's schema differs from the table's, by column name and
/// type (nullability aside); `None` when they match.
fn schema_difference(table: &StructType, node: &StructType) -> Option<String> {
    // Parquet columns are read by name: order does not matter.
    let columns = |s: &StructType| -> Vec<(String, String)> {
        let mut c: Vec<_> = s
            .fields()
            .map(|f| (f.name().to_string(), f.data_type().to_string()))
            .collect();
        c.sort();
        c
    };
    let (have, want) = (columns(table), columns(node));
    if have == want {
        return None;
    }
    let show = |c: &[(String, String)]| {
        c.iter()
            .map(|(n, t)| format!("{n} {t}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    Some(format!(
        "the table has columns ({}); the node writes ({})",
        show(&have),
        show(&want)
    ))
}

enum Removal {
    Delta(DeltaTableError),
    NotEmpty(usize),
}

/// Remove actions for the live files of the replaced partitions.
async fn files_to_remove(
    t: &deltalake_core::DeltaTable,
    columns: &[String],
    partitions: &[String],
    save_mode: SaveMode,
) -> Result<Vec<Action>, Removal> {
    let live: Vec<_> = t
        .get_active_add_actions_by_partitions(&[])
        .try_collect()
        .await
        .map_err(Removal::Delta)?;
    match save_mode {
        SaveMode::Append => Ok(vec![]),
        SaveMode::ErrorIfExists if !live.is_empty() => Err(Removal::NotEmpty(live.len())),
        SaveMode::ErrorIfExists => Ok(vec![]),
        SaveMode::OverwritePartitions => {
            let replaced: BTreeSet<&str> = partitions.iter().map(String::as_str).collect();
            Ok(live
                .into_iter()
                .filter(|f| {
                    let values = f.partition_values_map();
                    let ordered: Vec<Option<String>> = columns
                        .iter()
                        .map(|c| values.get(c).cloned().flatten())
                        .collect();
                    replaced.contains(hive::partition_path(columns, &ordered).as_str())
                })
                .map(|f| Action::Remove(f.remove_action(true)))
                .collect())
        }
    }
}

/// The replaced partitions as the commit's predicate, for the table's
/// history (`DESCRIBE HISTORY`).
fn predicate(partitions: &[String]) -> String {
    partitions
        .iter()
        .map(|p| {
            let terms: Vec<String> = hive::parse_partition_path(p)
                .into_iter()
                .map(|(k, v)| match v {
                    Some(v) => format!("{k} = '{}'", v.replace('\'', "''")),
                    None => format!("{k} IS NULL"),
                })
                .collect();
            format!("({})", terms.join(" AND "))
        })
        .collect::<Vec<_>>()
        .join(" OR ")
}

fn add_action(f: &DeltaFile) -> Action {
    let dir = f.path.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    let partition_values: HashMap<String, Option<String>> =
        hive::parse_partition_path(dir).into_iter().collect();
    Action::Add(Add {
        path: f.path.clone(),
        partition_values,
        size: i64::try_from(f.size).unwrap_or(i64::MAX),
        modification_time: now_millis(),
        data_change: true,
        stats: Some(format!("{{\"numRecords\":{}}}", f.rows)),
        tags: None,
        deletion_vector: None,
        base_row_id: None,
        default_row_commit_version: None,
        clustering_provider: None,
    })
}

fn now_millis() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
