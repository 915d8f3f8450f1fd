//! The `_chainbatch/` layout: where chainbatch keeps its own state beside
//! the data. One place, so that every module agrees on it.
//!
//! ```text
//! <out_root>/_chainbatch/runs/<run>/journal.json     run journal
//! <out_root>/_chainbatch/runs/<run>/stage-<n>.json   stage specs
//! <out_root>/_chainbatch/runs/<run>/trash/           replaced files
//! <out_root>/_chainbatch/athena/<run>/<dataset>/u<n>/ Athena inputs, UNLOADed
//! <dataset>/_chainbatch/staging/<run>/<stage>/...    task output
//! <dataset>/_chainbatch/shuffle/<run>/...            shuffle files
//! <dataset>/_chainbatch/leases/<run>.json            run leases
//! <dataset>/_chainbatch/partitions/<partition>.json  partition ledger
//! <out_root>/_chainbatch/backfills/<id>/backfill.json backfill progress
//! <dataset>/_chainbatch/import/                      import staging
//! ```

use crate::catalog::Dataset;

fn under(root: &str, rest: &str) -> String {
    format!("{}/_chainbatch/{rest}", root.trim_end_matches('/'))
}

/// The folder of every run's journal and specs.
pub fn runs_root(out_root: &str) -> String {
    under(out_root, "runs")
}

/// Where a run keeps the files its publishes replaced until it ends.
pub fn run_trash(out_root: &str, run_id: &str) -> String {
    format!("{}/{run_id}/trash", runs_root(out_root))
}

/// Where every run UNLOADs its Athena inputs.
pub fn athena_root(out_root: &str) -> String {
    under(out_root, "athena")
}

/// One run's Athena inputs.
pub fn run_athena(out_root: &str, run_id: &str) -> String {
    format!("{}/{run_id}", athena_root(out_root))
}

/// The staging folder of a dataset, for every run.
pub fn staging_root(ds: &Dataset) -> String {
    under(&ds.path, "staging")
}

/// One run's task output for a dataset.
pub fn run_staging(ds: &Dataset, run_id: &str) -> String {
    format!("{}/{run_id}", staging_root(ds))
}

/// The shuffle folder of a dataset, for every run.
pub fn shuffle_root(dataset_path: &str) -> String {
    under(dataset_path, "shuffle")
}

/// One run's shuffle files for a dataset.
pub fn run_shuffle(dataset_path: &str, run_id: &str) -> String {
    format!("{}/{run_id}", shuffle_root(dataset_path))
}

/// The lease folder of a dataset.
pub fn leases(dataset_path: &str) -> String {
    under(dataset_path, "leases")
}

/// The partition ledger of a dataset (see `ledger`).
pub fn partition_records(dataset_path: &str) -> String {
    under(dataset_path, "partitions")
}

/// Where a backfill records its chunks.
pub fn backfill(out_root: &str, id: &str) -> String {
    format!("{}/{id}", under(out_root, "backfills"))
}

/// Import's staging folder below an output root.
pub fn import_staging(out_root: &str) -> String {
    under(out_root, "import")
}

/// True for keys of chainbatch's own state rather than data.
pub fn is_state(key: &str) -> bool {
    key.contains("/_chainbatch/") || key.starts_with("_chainbatch/")
}
