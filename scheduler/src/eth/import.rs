//! `chainbatch import ethereum-etl DIR --out URI`: ethereum-etl JSON exports
//! (`transactions.jsonl`, `blocks.jsonl`, `logs.jsonl`,
//! `token_transfers.jsonl`) to the AWS layout,
//! `<out>/<table>/date=YYYY-MM-DD/part-NNNNN.parquet`, in the exact schema:
//! every integer is read from the JSON text, never through a float.

use crate::commit::remove_prefix;
use crate::eth::tables::EthTable;
use chainbatch_executor::layout::{Layout, PartitionColumn};
use chainbatch_executor::schema::ColumnSpec;
use chainbatch_executor::spec::{
    InputFile, InputFormat, InputTable, OutputSpec, SPEC_VERSION, TaskResources, TaskSpec,
};
use chainbatch_executor::storage;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use std::collections::BTreeMap;
use std::path::Path;

pub struct TableImport {
    pub file: &'static str,
    pub table: &'static str,
    pub columns: Vec<ColumnSpec>,
    pub timestamp: &'static str,
    pub sort_by: &'static [&'static str],
}

/// The tables ethereum-etl exports, in the exact schemas.
pub fn tables() -> Vec<TableImport> {
    EthTable::ALL
        .into_iter()
        .filter_map(|t| {
            let d = t.def();
            Some(TableImport {
                file: d.ethereum_etl_file?,
                table: d.name,
                columns: t.columns(true),
                timestamp: d.timestamp,
                sort_by: d.sort_by,
            })
        })
        .collect()
}

#[derive(Debug, Clone)]
pub struct Imported {
    pub table: String,
    pub rows: u64,
    pub partitions: Vec<String>,
}

fn spec(t: &TableImport, source: &Path, staging: &str, run_id: &str, index: u32) -> TaskSpec {
    let cols: Vec<String> = t
        .columns
        .iter()
        .map(|c| format!("\"{}\"", c.name))
        .collect();
    TaskSpec {
        version: SPEC_VERSION,
        run_id: run_id.to_string(),
        stage_id: 0,
        task_index: index,
        attempt: 1,
        inputs: vec![InputTable {
            name: "source".into(),
            format: InputFormat::Jsonl,
            files: vec![InputFile::whole(source.display().to_string())],
            schema: Some(t.columns.clone()),
            partition_columns: vec![],
            shuffle: None,
        }],
        sql: format!(
            "SELECT {}, CAST(CAST(\"{}\" AS DATE) AS VARCHAR) AS date FROM source",
            cols.join(", "),
            t.timestamp
        ),
        output: OutputSpec::Table {
            table_uri: String::new(),
            staging_uri: staging.to_string(),
            layout: Layout {
                partition_by: vec![PartitionColumn::Column("date".into())],
                sort_by: t.sort_by.iter().map(|s| s.to_string()).collect(),
                compression: "snappy".into(),
                target_file_bytes: None,
                ..Layout::default()
            },
        },
        // One worker: one file per date, rows in block order.
        resources: TaskResources {
            parallelism: 1,
            ..TaskResources::default()
        },
    }
}

/// Imports the named tables (all four when `only` is empty) found in `dir`.
pub async fn import_ethereum_etl(
    dir: &Path,
    out: &str,
    only: &[String],
) -> Result<Vec<Imported>, String> {
    let out = out.trim_end_matches('/');
    let run_id = format!("import-{}", crate::commit::journal::now_secs());
    let staging = crate::paths::import_staging(out);
    let mut done = vec![];
    let known: Vec<&str> = tables().iter().map(|t| t.table).collect();
    if let Some(bad) = only.iter().find(|t| !known.contains(&t.as_str())) {
        return Err(format!(
            "unknown table `{bad}`; expected some of: {}",
            known.join(", ")
        ));
    }
    for (i, t) in tables().into_iter().enumerate() {
        if !only.is_empty() && !only.iter().any(|o| o == t.table) {
            continue;
        }
        let source = dir.join(t.file);
        if !source.exists() {
            if only.is_empty() {
                continue;
            }
            return Err(format!("{} not found", source.display()));
        }
        let spec = spec(&t, &source, &staging, &run_id, i as u32);
        let manifest = chainbatch_executor::run_task(&spec, 1)
            .await
            .map_err(|e| format!("{}: {e}", source.display()))?;
        // Publish: each date's file replaces whatever that date held.
        let mut per_partition: BTreeMap<String, u32> = BTreeMap::new();
        for p in &manifest.partitions {
            let dir_uri = format!("{out}/{}/{}", t.table, p.path);
            let loc = storage::resolve(&dir_uri).map_err(|e| e.to_string())?;
            let old: Vec<_> = match loc
                .store
                .list(Some(&loc.path))
                .try_collect::<Vec<_>>()
                .await
            {
                Ok(v) => v,
                Err(object_store::Error::NotFound { .. }) => vec![],
                Err(e) => return Err(format!("cannot list {dir_uri}: {e}")),
            };
            for m in old {
                loc.store
                    .delete(&m.location)
                    .await
                    .map_err(|e| e.to_string())?;
            }
        }
        for f in &manifest.files {
            let n = per_partition.entry(f.partition.clone()).or_insert(0);
            let from = storage::resolve(&format!("{}/{}", manifest.attempt_dir, f.path))
                .map_err(|e| e.to_string())?;
            let to = storage::resolve(&format!(
                "{out}/{}/{}/part-{:05}.parquet",
                t.table, f.partition, n
            ))
            .map_err(|e| e.to_string())?;
            from.store
                .rename(&from.path, &to.path)
                .await
                .map_err(|e| format!("cannot publish {}: {e}", to.uri()))?;
            *n += 1;
        }
        done.push(Imported {
            table: t.table.to_string(),
            rows: manifest.rows,
            partitions: manifest.partitions.iter().map(|p| p.path.clone()).collect(),
        });
    }
    remove_prefix(&staging).await?;
    if done.is_empty() {
        let files: Vec<&str> = tables().iter().map(|t| t.file).collect();
        return Err(format!(
            "no ethereum-etl files ({}) in {}",
            files.join(", "),
            dir.display()
        ));
    }
    Ok(done)
}
