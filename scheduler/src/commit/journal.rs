//! The run journal: one JSON document per run at
//! `<out_root>/_chainbatch/runs/<run_id>/journal.json`, rewritten (atomically:
//! one PUT) at every step, so a rerun knows exactly where a crash left off.

use chainbatch_executor::storage;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    /// Superseded by a rerun that rolled its unpublished work back.
    RolledBack,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CommitState {
    /// The publish plan is durable; nothing is moved yet, or some is.
    Publishing,
    /// Every new file is in place and every replaced file is gone.
    Published,
}

/// One file move of a publish: staging to table, or table to trash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Move {
    pub from: String,
    pub to: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommitRecord {
    pub node: String,
    pub dataset: String,
    pub table_uri: String,
    pub state: CommitState,
    /// Replaced files, moved out of the table first.
    pub retire: Vec<Move>,
    /// New files, moved in second.
    pub publish: Vec<Move>,
    pub partitions: Vec<String>,
    pub rows: u64,
    pub bytes: u64,
    /// The Glue table to register the partitions in, once published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registration: Option<Registration>,
    /// A Delta table's commit: made as one transaction once the new files
    /// are in place (`retire` is then empty: the log removes old files).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delta: Option<crate::delta::commit::DeltaCommit>,
    /// The partition ledger's records, written once the partitions are
    /// published (empty in journals written before the ledger).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ledger: Vec<crate::ledger::PartitionRecord>,
}

/// A commit's Glue registration: pending until the catalog has the table and
/// every published partition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Registration {
    pub table: crate::glue::table::TableDef,
    pub done: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    pub node: String,
    pub stage_id: u32,
    pub kind: String,
    pub tasks: usize,
    pub rows: u64,
    pub bytes: u64,
    pub seconds: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    pub run_id: String,
    pub pipeline: String,
    pub nodes: Vec<String>,
    /// Datasets the run writes.
    pub outputs: Vec<String>,
    pub dates: Option<String>,
    pub backend: String,
    pub status: RunStatus,
    pub started_at: u64,
    pub finished_at: Option<u64>,
    pub stages: Vec<StageRecord>,
    pub commits: Vec<CommitRecord>,
    pub error: Option<String>,
    /// A failed run whose finished tasks are kept for `run --resume`.
    #[serde(default)]
    pub resumable: bool,
    /// Stage ids given to each node when it was planned, so that a resumed
    /// run finds the tasks it already finished under the same ids.
    #[serde(default)]
    pub planned: Vec<PlannedNode>,
    /// The partitions of each output the run holds a lease on (empty in
    /// journals written before leases: all partitions).
    #[serde(default)]
    pub claims: Vec<crate::commit::lease::Claim>,
    /// Input dates published although the completeness gate found them
    /// incomplete (`--allow-incomplete`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub incomplete: Vec<String>,
    /// UNLOAD targets of Athena inputs already written, not queried again
    /// on `--resume`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unloads: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedNode {
    pub node: String,
    pub first_stage: u32,
    pub stages: u32,
}

/// What a new run's journal records before anything runs.
#[derive(Debug, Clone)]
pub struct RunStart {
    pub run_id: String,
    pub pipeline: String,
    pub nodes: Vec<String>,
    pub outputs: Vec<String>,
    /// The window, `FROM..TO`.
    pub dates: Option<String>,
    pub backend: String,
    pub claims: Vec<crate::commit::lease::Claim>,
}

impl Journal {
    /// The journal of a run that starts now.
    pub fn start(r: RunStart) -> Self {
        Self {
            run_id: r.run_id,
            pipeline: r.pipeline,
            nodes: r.nodes,
            outputs: r.outputs,
            dates: r.dates,
            backend: r.backend,
            status: RunStatus::Running,
            started_at: now_secs(),
            finished_at: None,
            stages: vec![],
            commits: vec![],
            error: None,
            resumable: false,
            planned: vec![],
            claims: r.claims,
            incomplete: vec![],
            unloads: vec![],
        }
    }

    pub fn rows(&self) -> u64 {
        self.commits.iter().map(|c| c.rows).sum()
    }

    pub fn bytes(&self) -> u64 {
        self.commits.iter().map(|c| c.bytes).sum()
    }
}

pub use crate::time::now_secs;

pub use crate::paths::runs_root;

fn journal_uri(out_root: &str, run_id: &str) -> String {
    format!("{}/{run_id}/journal.json", runs_root(out_root))
}

pub async fn save(out_root: &str, j: &Journal) -> Result<(), String> {
    crate::json_object::put(&journal_uri(out_root, &j.run_id), j, "run journal").await
}

/// The journal of one run, if it has one: a single read, no listing.
pub async fn load(out_root: &str, run_id: &str) -> Result<Option<Journal>, String> {
    crate::json_object::get(&journal_uri(out_root, run_id), "run journal").await
}

/// Every run journal under `out_root`, oldest first.
pub async fn list(out_root: &str) -> Result<Vec<Journal>, String> {
    let root = storage::resolve(&runs_root(out_root)).map_err(|e| e.to_string())?;
    let metas: Vec<object_store::ObjectMeta> =
        match root.store.list(Some(&root.path)).try_collect().await {
            Ok(v) => v,
            Err(object_store::Error::NotFound { .. }) => vec![],
            Err(e) => return Err(format!("cannot list runs under {}: {e}", root.uri())),
        };
    let mut out = vec![];
    for m in metas
        .iter()
        .filter(|m| m.location.as_ref().ends_with("/journal.json"))
    {
        let bytes = root
            .store
            .get(&m.location)
            .await
            .map_err(|e| e.to_string())?
            .bytes()
            .await
            .map_err(|e| e.to_string())?;
        match serde_json::from_slice::<Journal>(&bytes) {
            Ok(j) => out.push(j),
            Err(e) => return Err(format!("corrupt run journal {}: {e}", m.location)),
        }
    }
    out.sort_by(|a, b| {
        a.started_at
            .cmp(&b.started_at)
            .then(a.run_id.cmp(&b.run_id))
    });
    Ok(out)
}
