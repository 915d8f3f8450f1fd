//! `chainbatch import ethereum-etl DIR --out URI`: ethereum-etl JSON exports
//! (`transactions.jsonl`, `blocks.jsonl`, `logs.jsonl`,
//! `token_transfers.jsonl`) to the AWS layout,
//! `<out>/<table>/date=YYYY-MM-DD/part-NNNNN.parquet`, in the exact schema:
//! every integer is read from the JSON text, never through a float.

use crate::catalog::{Catalog, Dataset};
use crate::commit::lease::{self, Claim, LeaseOptions, Scope};
use crate::commit::{self, journal, remove_prefix};
use crate::eth::tables::EthTable;
use crate::progress::Progress;
use chainbatch_executor::layout::{Layout, PartitionColumn};
use chainbatch_executor::schema::ColumnSpec;
use chainbatch_executor::spec::{
    InputFile, InputFormat, InputTable, OutputSpec, SPEC_VERSION, TaskResources, TaskSpec,
};
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
/// Each table is published through the journaled commit, as a node's output
/// is: its journal (`<out>/_chainbatch/runs/import-<time>/`) records the
/// publish before a file moves, so an import cut short is finished by
/// `chainbatch gc` with `out_root` at `out`, and never leaves a date half
/// replaced.
pub async fn import_ethereum_etl(
    dir: &Path,
    out: &str,
    only: &[String],
    progress: &Progress,
) -> Result<Vec<Imported>, String> {
    let out = out.trim_end_matches('/');
    // Unique per process and millisecond: two imports never share a journal.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let run_id = format!(
        "import-{}{:03}-{}",
        now.as_secs(),
        now.subsec_millis(),
        std::process::id()
    );
    let staging = crate::paths::import_staging(out);
    let known: Vec<&str> = tables().iter().map(|t| t.table).collect();
    if let Some(bad) = only.iter().find(|t| !known.contains(&t.as_str())) {
        return Err(format!(
            "unknown table `{bad}`; expected some of: {}",
            known.join(", ")
        ));
    }
    let mut found = vec![];
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
        found.push((i, t, source));
    }
    if found.is_empty() {
        let files: Vec<&str> = tables().iter().map(|t| t.file).collect();
        return Err(format!(
            "no ethereum-etl files ({}) in {}",
            files.join(", "),
            dir.display()
        ));
    }
    let mut j = import_journal(&run_id, out, found.iter().map(|(_, t, _)| t.table));
    // The tables are this import's until it ends, as a run's outputs are:
    // no other import or recovery publishes them meanwhile.
    let lease_opts = LeaseOptions {
        run_id: run_id.clone(),
        purpose: "run".into(),
        ttl_seconds: crate::driver::DEFAULT_LEASE_SECONDS,
        wait: std::time::Duration::ZERO,
        detached: false,
    };
    let leases = lease::acquire(&j.claims, &lease_opts, |_| {})
        .await
        .map_err(|e| format!("import cannot start: {e}"))?;
    let result = import_tables(
        out,
        &run_id,
        &staging,
        &found,
        &mut j,
        &lease_opts,
        progress,
    )
    .await;
    j.status = match result {
        Ok(_) => journal::RunStatus::Succeeded,
        Err(_) => journal::RunStatus::Failed,
    };
    j.error = result.as_ref().err().cloned();
    j.finished_at = Some(journal::now_secs());
    let saved = journal::save(out, &j).await;
    if saved.is_ok() {
        leases.release().await;
    }
    let done = result?;
    saved?;
    Ok(done)
}

/// Recovers imports and runs cut short under `out`, then imports `found`
/// table by table, each through the journaled commit.
async fn import_tables(
    out: &str,
    run_id: &str,
    staging: &str,
    found: &[(usize, TableImport, std::path::PathBuf)],
    j: &mut journal::Journal,
    lease_opts: &LeaseOptions,
    progress: &Progress,
) -> Result<Vec<Imported>, String> {
    for note in commit::recover(out, &Catalog::new(), None, lease_opts).await? {
        progress.note(&note);
    }
    journal::save(out, j).await?;
    let mut done = vec![];
    for (i, t, source) in found {
        let spec = spec(t, source, staging, run_id, *i as u32);
        let manifest = chainbatch_executor::run_task(&spec, 1)
            .await
            .map_err(|e| format!("{}: {e}", source.display()))?;
        // Each date's files replace whatever that date held.
        let ds = Dataset::parquet_by_date(t.table, &format!("{out}/{}", t.table));
        let trash = format!("{}/{}", crate::paths::run_trash(out, run_id), t.table);
        let mut record = commit::plan_commit(
            t.table,
            &ds,
            run_id,
            &trash,
            std::slice::from_ref(&manifest),
            None,
        )
        .await?;
        aws_file_names(&mut record);
        commit::commit(out, j, record).await?;
        remove_prefix(&trash).await?;
        done.push(Imported {
            table: t.table.to_string(),
            rows: manifest.rows,
            partitions: manifest.partitions.iter().map(|p| p.path.clone()).collect(),
        });
    }
    // Only this import's staging: another import may be writing beside it.
    remove_prefix(&format!("{staging}/{run_id}")).await?;
    Ok(done)
}

/// The journal of an import writing `tables` under `out`.
fn import_journal<'t>(
    run_id: &str,
    out: &str,
    tables: impl Iterator<Item = &'t str>,
) -> journal::Journal {
    let tables: Vec<String> = tables.map(str::to_string).collect();
    journal::Journal::start(journal::RunStart {
        run_id: run_id.to_string(),
        pipeline: "import".into(),
        nodes: tables.clone(),
        outputs: tables.clone(),
        dates: None,
        backend: "local".into(),
        // Recovery takes its lease on these paths: no catalog names them.
        claims: tables
            .iter()
            .map(|t| Claim {
                dataset: t.clone(),
                path: format!("{out}/{t}"),
                scope: Scope::All,
            })
            .collect(),
    })
}

/// The public dataset's file names: `part-00000.parquet`, `part-00001...`
/// in each date, in the order the task wrote them.
fn aws_file_names(record: &mut journal::CommitRecord) {
    let mut per_partition: BTreeMap<String, u32> = BTreeMap::new();
    for m in &mut record.publish {
        let Some((dir, _)) = m.to.rsplit_once('/') else {
            continue;
        };
        let n = per_partition.entry(dir.to_string()).or_insert(0);
        m.to = format!("{dir}/part-{n:05}.parquet");
        *n += 1;
    }
}
