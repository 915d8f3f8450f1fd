//! Commit: check the tasks' manifests, then publish the output partitions
//! (dynamic partition overwrite), recorded step by step in the run journal.
//!
//! Publishing a partition first moves its old files to the run's trash, then
//! moves the new files in; the plan of moves is made durable in the journal
//! before the first one, and every move is idempotent. A crash at any point
//! is finished by the next run (roll forward); a run that crashed before its
//! plan was durable had published nothing, and its staging is removed (roll
//! back). Either way no partition ends with duplicate or missing rows.

pub mod journal;
pub mod lease;

use crate::catalog::{Dataset, SaveMode};
use crate::commit::journal::{CommitRecord, CommitState, Journal, Move};
use crate::commit::lease::{Claim, LeaseError, LeaseOptions};
use crate::delta::commit::{DeltaCommit, DeltaFile, DeltaTarget};
use chainbatch_executor::TaskManifest;
use chainbatch_executor::manifest::MANIFEST_FILE;
use chainbatch_executor::storage;
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use std::collections::BTreeSet;

/// Aborts the driver at a named commit step when `CHAINBATCH_CRASH_AT`
/// names it: the crash tests use it to stop at every step in turn. With
/// `CHAINBATCH_PAUSE_AT` naming it, the driver instead sleeps there for
/// `CHAINBATCH_PAUSE_MS` (default 1000): the concurrency tests use it to
/// hold a run in a known phase.
pub fn crash_point(step: &str) {
    if std::env::var("CHAINBATCH_CRASH_AT").is_ok_and(|s| s == step) {
        eprintln!("chainbatch: CHAINBATCH_CRASH_AT={step}: aborting");
        std::process::abort();
    }
    if std::env::var("CHAINBATCH_PAUSE_AT").is_ok_and(|s| s == step) {
        let ms = std::env::var("CHAINBATCH_PAUSE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(1000);
        eprintln!("chainbatch: CHAINBATCH_PAUSE_AT={step}: pausing {ms} ms");
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// The commit steps, in order, for crash injection.
pub const CRASH_STEPS: &[&str] = &["after_tasks", "after_plan", "mid_publish", "after_publish"];

/// The steps of a Delta table's commit, in order: the new files are in
/// place, then the transaction is made.
pub const DELTA_CRASH_STEPS: &[&str] = &[
    "after_tasks",
    "after_plan",
    "mid_publish",
    "before_delta_commit",
    "after_publish",
];

/// Reads a task's manifest; the only proof it finished.
pub async fn read_manifest(attempt_dir: &str) -> Result<TaskManifest, String> {
    let loc =
        storage::resolve(&format!("{attempt_dir}/{MANIFEST_FILE}")).map_err(|e| e.to_string())?;
    let bytes = loc
        .store
        .get(&loc.path)
        .await
        .map_err(|e| format!("task output {attempt_dir} has no manifest: {e}"))?
        .bytes()
        .await
        .map_err(|e| e.to_string())?;
    serde_json::from_slice(&bytes).map_err(|e| format!("corrupt manifest in {attempt_dir}: {e}"))
}

async fn exists(uri: &str) -> Result<bool, String> {
    let loc = storage::resolve(uri).map_err(|e| e.to_string())?;
    match loc.store.head(&loc.path).await {
        Ok(_) => Ok(true),
        Err(object_store::Error::NotFound { .. }) => Ok(false),
        Err(e) => Err(format!("{uri}: {e}")),
    }
}

/// Moves one file; done already if the source is gone and the target is there.
async fn move_file(m: &Move) -> Result<(), String> {
    let from = storage::resolve(&m.from).map_err(|e| e.to_string())?;
    let to = storage::resolve(&m.to).map_err(|e| e.to_string())?;
    match from.store.rename(&from.path, &to.path).await {
        Ok(()) => Ok(()),
        Err(object_store::Error::NotFound { .. }) if exists(&m.to).await? => Ok(()),
        Err(e) => Err(format!("cannot move {} to {}: {e}", m.from, m.to)),
    }
}

/// Files currently in a partition directory of the table (not recursing into
/// deeper partitions).
async fn partition_files(table_uri: &str, partition: &str) -> Result<Vec<String>, String> {
    let dir = if partition.is_empty() {
        table_uri.trim_end_matches('/').to_string()
    } else {
        format!("{}/{partition}", table_uri.trim_end_matches('/'))
    };
    let loc = storage::resolve(&dir).map_err(|e| e.to_string())?;
    let listed = match loc.store.list_with_delimiter(Some(&loc.path)).await {
        Ok(l) => l.objects,
        Err(object_store::Error::NotFound { .. }) => vec![],
        Err(e) => return Err(format!("cannot list {dir}: {e}")),
    };
    Ok(listed
        .into_iter()
        .filter(|m| {
            let name = m.location.filename().unwrap_or_default();
            name.ends_with(".parquet") && !name.starts_with('_') && !name.starts_with('.')
        })
        .map(|m| format!("{}{}", loc.store_url.as_str(), m.location))
        .collect())
}

/// Builds the publish plan for a node's final stage from its manifests.
/// `delta` is the table a `format: delta` dataset is written as: its new
/// files get names of their own and its old files stay for the log to
/// remove.
pub async fn plan_commit(
    node: &str,
    ds: &Dataset,
    run_id: &str,
    trash_root: &str,
    manifests: &[TaskManifest],
    delta: Option<&DeltaTarget>,
) -> Result<CommitRecord, String> {
    // One spelling of the table's URI, so moves and listings compare equal.
    let table_loc = storage::resolve(&ds.path).map_err(|e| e.to_string())?;
    let table_uri = table_loc.uri();
    let table = table_uri.trim_end_matches('/');
    let partitions: BTreeSet<String> = manifests
        .iter()
        .flat_map(|m| m.partitions.iter().map(|p| p.path.clone()))
        .collect();
    if ds.save_mode == SaveMode::ErrorIfExists && delta.is_none() {
        let any = storage::resolve(table).map_err(|e| e.to_string())?;
        let mut listing = any.store.list(Some(&any.path));
        while let Some(m) = listing.try_next().await.map_err(|e| e.to_string())? {
            if !crate::paths::is_state(m.location.as_ref()) {
                return Err(format!(
                    "dataset `{}` already has data at {table} and its save_mode is error_if_exists",
                    ds.name
                ));
            }
        }
    }
    let mut retire = vec![];
    if ds.save_mode == SaveMode::OverwritePartitions && delta.is_none() {
        for p in &partitions {
            for f in partition_files(table, p).await? {
                let rel = f.rsplit('/').next().unwrap_or_default();
                let to = format!(
                    "{trash_root}/{}/{}",
                    if p.is_empty() { "_root" } else { p },
                    rel
                );
                retire.push(Move { from: f, to });
            }
        }
    }
    let mut publish = vec![];
    let mut delta_files = vec![];
    let (mut rows, mut bytes) = (0, 0);
    for m in manifests {
        for f in m.files.iter().filter(|f| f.path.ends_with(".parquet")) {
            // Appends keep earlier runs' files, and a Delta table keeps
            // the files older versions read: names carry the run.
            let name = if delta.is_some() || ds.save_mode == SaveMode::Append {
                run_file_name(run_id, &f.path)
            } else {
                f.path.clone()
            };
            if delta.is_some() {
                delta_files.push(DeltaFile {
                    path: name.clone(),
                    size: f.bytes,
                    rows: f.rows,
                });
            }
            publish.push(Move {
                from: format!("{}/{}", m.attempt_dir, f.path),
                to: format!("{table}/{name}"),
            });
            rows += f.rows;
            bytes += f.bytes;
        }
    }
    Ok(CommitRecord {
        node: node.to_string(),
        dataset: ds.name.clone(),
        table_uri: table.to_string(),
        state: CommitState::Publishing,
        retire,
        publish,
        partitions: partitions.into_iter().collect(),
        rows,
        bytes,
        registration: None,
        ledger: vec![],
        delta: delta.map(|target| DeltaCommit {
            target: target.clone(),
            app_id: format!("chainbatch/{run_id}/{node}"),
            run_id: run_id.to_string(),
            node: node.to_string(),
            files: delta_files,
            save_mode: ds.save_mode,
            version: None,
        }),
    })
}

/// `date=x/part-0.parquet` as `date=x/<run>-part-0.parquet`.
fn run_file_name(run_id: &str, path: &str) -> String {
    match path.rsplit_once('/') {
        Some((dir, file)) => format!("{dir}/{run_id}-{file}"),
        None => format!("{run_id}-{path}"),
    }
}

/// Carries out (or finishes) a durable publish plan, partition by partition:
/// old files out to the trash, then new files in. A partition whose new
/// files have started to move already had its old files retired, which
/// matters when old and new files share a name. A Delta table's new files
/// are invisible until its transaction, made once they are all in place;
/// returns the table version that holds it.
pub async fn publish(record: &CommitRecord) -> Result<Option<u64>, String> {
    let table = record.table_uri.trim_end_matches('/');
    let partition_of = |uri: &str| -> String {
        let rel = uri
            .strip_prefix(table)
            .unwrap_or(uri)
            .trim_start_matches('/');
        rel.rsplit_once('/')
            .map(|(dir, _)| dir.to_string())
            .unwrap_or_default()
    };
    for (i, p) in record.partitions.iter().enumerate() {
        let new: Vec<&Move> = record
            .publish
            .iter()
            .filter(|m| partition_of(&m.to) == *p)
            .collect();
        let mut started = false;
        for m in &new {
            if !exists(&m.from).await? {
                started = true;
                break;
            }
        }
        if !started {
            for m in record.retire.iter().filter(|m| partition_of(&m.from) == *p) {
                move_file(m).await?;
            }
        }
        for m in new {
            move_file(m).await?;
        }
        if i == 0 {
            crash_point("mid_publish");
        }
    }
    let version = match &record.delta {
        None => None,
        Some(d) => {
            crash_point("before_delta_commit");
            let v = crate::delta::commit::commit(d, table, &record.partitions)
                .await
                .map_err(|e| e.to_string())?;
            Some(v)
        }
    };
    crate::ledger::write(table, &record.ledger).await?;
    Ok(version)
}

/// Deletes everything below a URI prefix (staging, shuffle, trash).
pub async fn remove_prefix(uri: &str) -> Result<u64, String> {
    let loc = storage::resolve(uri).map_err(|e| e.to_string())?;
    let metas: Vec<object_store::ObjectMeta> =
        match loc.store.list(Some(&loc.path)).try_collect().await {
            Ok(v) => v,
            Err(object_store::Error::NotFound { .. }) => vec![],
            Err(e) => return Err(format!("cannot list {uri}: {e}")),
        };
    let mut n = 0;
    for m in metas {
        match loc.store.delete(&m.location).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => n += 1,
            Err(e) => return Err(format!("cannot delete {}: {e}", m.location)),
        }
    }
    if loc.store_url.as_str().starts_with("file") {
        let _ = std::fs::remove_dir_all(format!("/{}", loc.path));
    }
    Ok(n)
}

/// Finishes or rolls back every unfinished run found under `out_root` whose
/// holder is gone: its leases expired, or its process died on this host.
/// Live runs are left alone. Each recovery holds a lease on the crashed
/// run's partitions while it works, so two runs never recover one run at
/// once, and a run never recovers partitions another live run holds.
/// Returns one line per run it touched.
/// `resuming` names a run being resumed (by this process, which holds its
/// lease): its recorded publishes are finished, but its staging is kept for
/// the resume to reuse.
pub async fn recover(
    out_root: &str,
    catalog: &crate::catalog::Catalog,
    resuming: Option<&str>,
    lease_opts: &LeaseOptions,
) -> Result<Vec<String>, String> {
    let mut notes = vec![];
    let journals = journal::list(out_root).await?;
    sweep_stale_leases(&journals, catalog, &mut notes).await?;
    for j in journals {
        if !unfinished(&j) {
            continue;
        }
        if resuming == Some(j.run_id.as_str()) {
            let mut j = j;
            if roll_forward(&mut j).await? {
                journal::save(out_root, &j).await?;
                notes.push(format!("finished the recorded publish of run {}", j.run_id));
            }
            continue;
        }
        if j.run_id == lease_opts.run_id {
            continue;
        }
        let claims = claims_of(&j, catalog);
        if holder_is_live(&j.run_id, &claims).await? {
            continue;
        }
        let recovery = LeaseOptions {
            purpose: format!("recovery of {}", j.run_id),
            wait: std::time::Duration::ZERO,
            detached: false,
            ..lease_opts.clone()
        };
        let held = match lease::acquire(&claims, &recovery, |_| {}).await {
            Ok(h) => h,
            Err(LeaseError::Conflict { holder }) => {
                notes.push(format!(
                    "left run {} to its current holder: {holder}",
                    j.run_id
                ));
                continue;
            }
            Err(e) => return Err(e.to_string()),
        };
        let result = recover_run(out_root, catalog, &j.run_id, &claims).await;
        held.release().await;
        if let Some(note) = result? {
            notes.push(note);
        }
    }
    Ok(notes)
}

/// Removes the leftover leases of runs that ended, on every dataset a run
/// wrote (one listing each).
async fn sweep_stale_leases(
    journals: &[Journal],
    catalog: &crate::catalog::Catalog,
    notes: &mut Vec<String>,
) -> Result<(), String> {
    let ended: std::collections::HashMap<&str, bool> = journals
        .iter()
        .map(|j| (j.run_id.as_str(), j.status != journal::RunStatus::Running))
        .collect();
    let written: BTreeSet<&str> = journals
        .iter()
        .flat_map(|j| j.outputs.iter().map(String::as_str))
        .collect();
    for ds in written.into_iter().filter_map(|d| catalog.get(d)) {
        // A run with no journal died before it wrote one: nothing to recover.
        let n = lease::remove_stale(&ds.path, |run| ended.get(run).copied().unwrap_or(true))
            .await
            .map_err(|e| e.to_string())?;
        if n > 0 {
            notes.push(format!(
                "removed {n} lease(s) on `{}` left by runs that ended",
                ds.name
            ));
        }
    }
    Ok(())
}

/// What a journal's run claimed; journals from before leases claimed all.
fn claims_of(j: &Journal, catalog: &crate::catalog::Catalog) -> Vec<Claim> {
    if !j.claims.is_empty() {
        return j.claims.clone();
    }
    j.outputs
        .iter()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .filter_map(|ds| catalog.get(ds))
        .map(|d| Claim {
            dataset: d.name.clone(),
            path: d.path.clone(),
            scope: lease::Scope::All,
        })
        .collect()
}

async fn holder_is_live(run_id: &str, claims: &[Claim]) -> Result<bool, String> {
    for c in claims {
        let live = lease::live_leases_of(&c.path, run_id)
            .await
            .map_err(|e| e.to_string())?;
        if live.iter().any(|l| l.record.purpose == "run") {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A run that may have left work half done: it is still recorded as
/// running, or a publish it recorded never finished (a run that failed
/// mid-publish, as journals written before such runs stayed `running` say).
pub fn unfinished(j: &Journal) -> bool {
    j.status == journal::RunStatus::Running
        || j.commits.iter().any(|c| c.state == CommitState::Publishing)
}

/// Finishes every recorded publish of a journal; true if there was one.
pub async fn roll_forward(j: &mut Journal) -> Result<bool, String> {
    let mut rolled_forward = false;
    for c in j.commits.iter_mut() {
        if c.state == CommitState::Publishing {
            let version = publish(c).await?;
            if let Some(d) = c.delta.as_mut() {
                d.version = version;
            }
            c.state = CommitState::Published;
            rolled_forward = true;
        }
    }
    Ok(rolled_forward)
}

/// Recovers one crashed run, under a recovery lease on its partitions.
async fn recover_run(
    out_root: &str,
    catalog: &crate::catalog::Catalog,
    run_id: &str,
    claims: &[Claim],
) -> Result<Option<String>, String> {
    // Read again under the lease: another run may have recovered it since.
    let Some(mut j) = journal::load(out_root, run_id).await?.filter(unfinished) else {
        return Ok(None);
    };
    let rolled_forward = roll_forward(&mut j).await?;
    // Unpublished task output of the crashed run is never published.
    for ds in j.outputs.iter().cloned().collect::<BTreeSet<_>>() {
        if let Some(d) = catalog.get(&ds) {
            remove_prefix(&crate::paths::run_staging(d, &j.run_id)).await?;
            remove_prefix(&crate::paths::run_shuffle(&d.path, &j.run_id)).await?;
        }
    }
    remove_prefix(&crate::paths::run_trash(out_root, &j.run_id)).await?;
    j.status = if rolled_forward {
        journal::RunStatus::Failed
    } else {
        journal::RunStatus::RolledBack
    };
    let what = match rolled_forward {
        true => "a later run finished its publish",
        false => "a later run removed its staging",
    };
    j.error = Some(match j.error.take() {
        // A run that failed mid-publish said why; that stays.
        Some(e) => format!("{e}; {what}"),
        None if rolled_forward => format!("the driver stopped during publish; {what}"),
        None => format!("the driver stopped before publishing; {what}"),
    });
    j.finished_at = Some(journal::now_secs());
    journal::save(out_root, &j).await?;
    for c in claims {
        lease::remove_leases_of(&c.path, &j.run_id)
            .await
            .map_err(|e| e.to_string())?;
    }
    Ok(Some(format!(
        "recovered run {}: {}",
        j.run_id,
        j.error.clone().unwrap_or_default()
    )))
}

/// Records the plan, publishes, and records success; crash points between.
pub async fn commit(
    out_root: &str,
    journal: &mut Journal,
    record: CommitRecord,
) -> Result<(), String> {
    journal.commits.push(record);
    if let Err(e) = journal::save(out_root, journal).await {
        // Not durable, so never to be carried out: nothing was moved.
        journal.commits.pop();
        return Err(e);
    }
    crash_point("after_plan");
    let idx = journal.commits.len() - 1;
    let version = publish(&journal.commits[idx]).await?;
    crash_point("after_publish");
    if let Some(d) = journal.commits[idx].delta.as_mut() {
        d.version = version;
    }
    journal.commits[idx].state = CommitState::Published;
    journal::save(out_root, journal).await?;
    Ok(())
}

/// `chainbatch gc`: finishes or rolls back unfinished runs, then removes
/// what finished runs left below `_chainbatch/` (staging, shuffle, trash).
/// Returns one line per thing removed.
pub async fn collect_garbage(
    out_root: &str,
    catalog: &crate::catalog::Catalog,
    lease_opts: &LeaseOptions,
) -> Result<Vec<String>, String> {
    let mut notes = recover(out_root, catalog, None, lease_opts).await?;
    let runs = journal::list(out_root).await?;
    let running: BTreeSet<&str> = runs
        .iter()
        .filter(|j| j.status == journal::RunStatus::Running)
        .map(|j| j.run_id.as_str())
        .collect();
    let mut roots: Vec<String> = vec![
        format!("{}/", crate::paths::runs_root(out_root)),
        format!("{}/", crate::paths::athena_root(out_root)),
    ];
    for ds in catalog.values() {
        roots.push(format!("{}/", crate::paths::staging_root(ds)));
        roots.push(format!("{}/", crate::paths::shuffle_root(&ds.path)));
    }
    for root in roots {
        let loc = storage::resolve(&root).map_err(|e| e.to_string())?;
        let listed = match loc.store.list_with_delimiter(Some(&loc.path)).await {
            Ok(l) => l.common_prefixes,
            Err(object_store::Error::NotFound { .. }) => vec![],
            Err(e) => return Err(format!("cannot list {root}: {e}")),
        };
        for prefix in listed {
            let run = prefix.filename().unwrap_or_default().to_string();
            if running.contains(run.as_str()) {
                continue;
            }
            // In the runs folder only the trash goes; journals and specs stay.
            let target = if root.ends_with("/_chainbatch/runs/") {
                format!("{root}{run}/trash")
            } else {
                format!("{root}{run}")
            };
            let n = remove_prefix(&target).await?;
            if n > 0 {
                notes.push(format!("removed {n} object(s) under {target}"));
            }
        }
    }
    Ok(notes)
}
