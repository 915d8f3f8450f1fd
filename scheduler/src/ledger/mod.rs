//! The partition ledger: one small record per output partition, saying
//! which run and node wrote it, when, its rows and bytes, the hash of the
//! configuration it was computed with and the input it read. It is written
//! as the last step of a publish (so a crash's roll-forward writes it too)
//! at `<dataset>/_chainbatch/partitions/<partition>.json`, and is what
//! `status` reports and `backfill` skips by.

pub mod status;

use crate::catalog::{Catalog, Dataset};
use crate::pipeline::Node;
use chainbatch_executor::spec::{InputFile, InputTable, TaskSpec};
use chainbatch_executor::storage;
use chainbatch_executor::{TaskManifest, manifest::PartitionSummary};
use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};
use sha2::Digest;
use std::collections::{BTreeMap, BTreeSet};

/// What one output partition holds and how it was made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionRecord {
    /// The partition's path below the dataset (`date=2024-03-01`).
    pub partition: String,
    /// The value of the dataset's date column, when it has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    pub node: String,
    pub run_id: String,
    /// When the commit that published it was planned (Unix seconds).
    pub committed_at: u64,
    /// When the node's input was listed (Unix seconds): an input file
    /// changed after it was not read.
    pub inputs_listed_at: u64,
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
    /// [`config_hash`] of the node when it wrote the partition.
    pub config_hash: String,
    /// What the partition was computed from, one entry per input dataset.
    pub inputs: Vec<InputSpan>,
}

/// The input partitions one output partition was computed from: the span
/// of their keys and their total files and bytes, compared with a fresh
/// listing to tell whether the input changed since.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputSpan {
    pub dataset: String,
    /// First and last input partition key read (`2024-03-01`), in the
    /// dataset's partition-column order; empty for an unpartitioned input.
    pub first: String,
    pub last: String,
    pub partitions: u64,
    pub files: u64,
    pub bytes: u64,
}

/// The hash of everything that decides a node's output besides its input
/// data: its SQL (after interpolation), the layout it writes with, the
/// output's format, save mode, partitions and schema, and each input's
/// definition. Two runs with equal hashes over equal inputs write equal
/// partitions.
pub fn config_hash(node: &Node, catalog: &Catalog) -> String {
    let out = &catalog[&node.output];
    let layout = node.layout.as_ref().or(out.layout.as_ref());
    let inputs: Vec<serde_json::Value> = node
        .inputs
        .iter()
        .filter_map(|name| catalog.get(name))
        .map(|d| {
            serde_json::json!({
                "name": d.name,
                "type": format!("{:?}", d.kind),
                "path": d.path,
                "partitions": d.partitions,
                "schema": d.schema,
                "delta": d.delta.as_ref().map(|s| format!("{:?}", s.read_at)),
            })
        })
        .collect();
    let doc = serde_json::json!({
        "sql": node.sql,
        "layout": layout,
        "output": {
            "format": if out.delta.is_some() { "delta" } else { "parquet" },
            "save_mode": out.save_mode,
            "partitions": out.partitions,
            "schema": out.schema,
        },
        "inputs": inputs,
    });
    let digest = sha2::Sha256::digest(doc.to_string().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{}", &hex[..16])
}

/// Who wrote a commit's partitions, from what configuration, and when
/// its input was listed.
pub struct Provenance<'a> {
    pub node: &'a Node,
    pub run_id: &'a str,
    pub config_hash: String,
    pub inputs_listed_at: u64,
}

/// How the input an output partition was computed from is found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InputScope {
    /// The output is partitioned as the input is (`date` in, `date` out):
    /// a partition read the input partitions with its own values.
    SamePartition,
    /// One stage: a partition read the input partitions the tasks that
    /// wrote it read.
    Tasks,
    /// Several stages (a shuffle or a distributed job): every partition
    /// read the node's whole input.
    Whole,
}

/// The ledger records of a node's commit: one per output partition of the
/// final stage's manifests, with the input `scope` says it read. Datasets written with `save_mode: append` keep
/// no records (their partitions are every appending run's).
pub fn records(
    made: &Provenance,
    ds: &Dataset,
    first_stage: &[TaskSpec],
    scope: InputScope,
    manifests: &[TaskManifest],
) -> Vec<PartitionRecord> {
    let mut parts: BTreeMap<&str, (Vec<&PartitionSummary>, BTreeSet<u32>)> = BTreeMap::new();
    for m in manifests {
        for p in &m.partitions {
            let e = parts.entry(p.path.as_str()).or_default();
            e.0.push(p);
            e.1.insert(m.task_index);
        }
    }
    // Appends add to what earlier runs wrote: no one run made the partition.
    if ds.save_mode == crate::catalog::SaveMode::Append {
        return vec![];
    }
    let whole = spans(first_stage.iter(), |_, _| true);
    parts
        .into_iter()
        .map(|(path, (summaries, tasks))| {
            let inputs = match scope {
                InputScope::Whole => whole.clone(),
                InputScope::Tasks => {
                    // Whole input partitions: when a large one is split
                    // across tasks, a partition written by some of them
                    // still counts all its files, as `status` does.
                    let keys: BTreeSet<(&str, String)> = first_stage
                        .iter()
                        .filter(|s| tasks.contains(&s.task_index))
                        .flat_map(|s| &s.inputs)
                        .flat_map(|i| {
                            i.files
                                .iter()
                                .map(move |f| (i.name.as_str(), f.partition_values.join("/")))
                        })
                        .collect();
                    spans(first_stage.iter(), |input, file| {
                        keys.contains(&(input.name.as_str(), file.partition_values.join("/")))
                    })
                }
                InputScope::SamePartition => {
                    let values = &summaries[0].values;
                    spans(first_stage.iter(), |input, file| {
                        input
                            .partition_columns
                            .iter()
                            .zip(&file.partition_values)
                            .all(|(c, v)| match values.get(&c.name) {
                                Some(Some(out)) => out == v,
                                _ => true,
                            })
                    })
                }
            };
            PartitionRecord {
                partition: path.to_string(),
                date: ds.date_column.as_ref().and_then(|c| {
                    summaries
                        .iter()
                        .find_map(|s| s.values.get(c).cloned().flatten())
                }),
                node: made.node.name.clone(),
                run_id: made.run_id.to_string(),
                committed_at: crate::time::now_secs(),
                inputs_listed_at: made.inputs_listed_at,
                files: summaries.iter().map(|s| u64::from(s.files)).sum(),
                rows: summaries.iter().map(|s| s.rows).sum(),
                bytes: summaries.iter().map(|s| s.bytes).sum(),
                config_hash: made.config_hash.clone(),
                inputs,
            }
        })
        .collect()
}

/// The input spans of some tasks: per input dataset, the partitions and
/// distinct files they read that `keep` keeps (a file split across tasks
/// counts once).
fn spans<'a>(
    specs: impl Iterator<Item = &'a TaskSpec>,
    keep: impl Fn(&InputTable, &InputFile) -> bool,
) -> Vec<InputSpan> {
    let mut by_input: BTreeMap<&str, (BTreeSet<String>, BTreeMap<&str, u64>)> = BTreeMap::new();
    for s in specs {
        for input in s.inputs.iter().filter(|i| i.shuffle.is_none()) {
            let e = by_input.entry(input.name.as_str()).or_default();
            for f in input.files.iter().filter(|f| keep(input, f)) {
                e.0.insert(f.partition_values.join("/"));
                e.1.insert(f.uri.as_str(), f.size.unwrap_or(0));
            }
        }
    }
    by_input
        .into_iter()
        .map(|(name, (keys, files))| InputSpan {
            dataset: name.to_string(),
            first: keys.first().cloned().unwrap_or_default(),
            last: keys.last().cloned().unwrap_or_default(),
            partitions: keys.len() as u64,
            files: files.len() as u64,
            bytes: files.values().sum(),
        })
        .collect()
}

/// Where a partition's record lives.
pub fn record_uri(dataset_path: &str, partition: &str) -> String {
    let name = if partition.is_empty() {
        "_root"
    } else {
        partition
    };
    format!(
        "{}/{name}.json",
        crate::paths::partition_records(dataset_path)
    )
}

/// Writes a commit's records (several at once; each is one PUT, so a
/// reader sees a record whole or the one before it).
pub async fn write(table_uri: &str, records: &[PartitionRecord]) -> Result<(), String> {
    futures::stream::iter(records)
        .map(|r| async move {
            crate::json_object::put(&record_uri(table_uri, &r.partition), r, "partition record")
                .await
        })
        .buffer_unordered(16)
        .try_collect::<Vec<()>>()
        .await
        .map(|_| ())
}

/// The records of a dataset, by partition path: those of the dates in
/// `dates` (told by their keys, so others are not read), or all.
pub async fn read(
    ds: &Dataset,
    dates: Option<&crate::plan::dates::DateRange>,
) -> Result<BTreeMap<String, PartitionRecord>, String> {
    let root = crate::paths::partition_records(&ds.path);
    let loc = storage::resolve(&root).map_err(|e| e.to_string())?;
    let listed: Vec<object_store::ObjectMeta> =
        match loc.store.list(Some(&loc.path)).try_collect().await {
            Ok(v) => v,
            Err(object_store::Error::NotFound { .. }) => vec![],
            Err(e) => return Err(format!("cannot list {root}: {e}")),
        };
    let date_prefix = ds.date_column.as_ref().map(|c| format!("{c}="));
    let wanted = |key: &str| {
        let date = date_prefix.as_ref().and_then(|p| {
            key.split('/')
                .find_map(|seg| seg.strip_prefix(p.as_str()))
                .map(|v| v.trim_end_matches(".json"))
        });
        key.ends_with(".json")
            && match (dates, date) {
                (Some(w), Some(d)) => w.contains(d),
                _ => true,
            }
    };
    let store = &loc.store;
    let read: Vec<PartitionRecord> = futures::stream::iter(listed)
        .filter(|m| std::future::ready(wanted(m.location.as_ref())))
        .map(|m| async move {
            let bytes = store
                .get(&m.location)
                .await
                .map_err(|e| format!("cannot read {}: {e}", m.location))?
                .bytes()
                .await
                .map_err(|e| format!("cannot read {}: {e}", m.location))?;
            serde_json::from_slice::<PartitionRecord>(&bytes)
                .map_err(|e| format!("corrupt partition record {}: {e}", m.location))
        })
        .buffer_unordered(32)
        .try_collect()
        .await?;
    Ok(read.into_iter().map(|r| (r.partition.clone(), r)).collect())
}
