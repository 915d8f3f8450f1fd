//! The backfill document: its window, chunks and what became of each, at
//! `<out_root>/_chainbatch/backfills/<id>/backfill.json`, rewritten (one
//! PUT) whenever a chunk starts or ends, so `--resume` continues from it.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChunkState {
    /// Not started yet.
    Pending,
    /// Its run was started (and may have been cut off with the backfill).
    Running,
    /// Its run succeeded.
    Committed,
    /// Every partition of it was current: nothing to run.
    Skipped,
    /// Its run failed; `--resume` runs it again.
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Chunk {
    pub index: usize,
    pub from: String,
    pub to: String,
    pub state: ChunkState,
    /// The run of its latest attempt.
    pub run_id: Option<String>,
    /// Runs started for it (a resumed run counts again).
    pub attempts: u32,
    /// The nodes its run was started from (the rest of the pipeline was
    /// current); empty: every node.
    #[serde(default)]
    pub from_nodes: Vec<String>,
    pub rows: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Why it was skipped, or why its run failed.
    pub note: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BackfillStatus {
    Running,
    Succeeded,
    Failed,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Backfill {
    pub id: String,
    pub pipeline: String,
    /// The whole window, `FROM..TO`.
    pub dates: String,
    pub chunk_days: u32,
    /// Arguments every chunk's `chainbatch run` is given (configuration,
    /// backend, parallelism), besides its run id, dates and nodes.
    pub run_args: Vec<String>,
    /// Rerun chunks whose partitions are current.
    pub force: bool,
    pub status: BackfillStatus,
    pub started_at: u64,
    pub finished_at: Option<u64>,
    pub chunks: Vec<Chunk>,
}

impl Backfill {
    pub fn count(&self, state: ChunkState) -> usize {
        self.chunks.iter().filter(|c| c.state == state).count()
    }
}

fn uri(out_root: &str, id: &str) -> String {
    format!("{}/backfill.json", crate::paths::backfill(out_root, id))
}

pub async fn save(out_root: &str, b: &Backfill) -> Result<(), String> {
    crate::json_object::put(&uri(out_root, &b.id), b, "backfill record").await
}

pub async fn load(out_root: &str, id: &str) -> Result<Option<Backfill>, String> {
    crate::json_object::get(&uri(out_root, id), "backfill record").await
}
