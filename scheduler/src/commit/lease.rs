//! Run leases: who may publish which partitions of a dataset right now.
//!
//! A run holds one lease per output dataset: an object at
//! `<dataset>/_chainbatch/leases/<holder>.json` naming the run, its host and
//! process, and the partitions it may publish (its `--dates` window, or the
//! whole dataset). The object is created with a conditional write (S3
//! `If-None-Match: *`, an exclusive create locally) and rewritten by a
//! heartbeat. A lease is live while its holder's heartbeat is younger than
//! the lease's time to live, and while its process exists when the holder
//! ran on this host (so a crashed local run is recovered at once). The
//! heartbeat is a second object beside the lease (`<holder>.json.beat`), so
//! the lease object keeps the time the store created it.
//!
//! Two runs whose live leases overlap never both proceed: after creating its
//! lease a run lists the others, and it backs off when an overlapping live
//! lease was created no later than its own (by the store's clock). Whichever
//! of two overlapping leases the store wrote second always sees the first,
//! so at least one of them backs off; on a tie both do, and retry.

use chainbatch_executor::storage::{self, Location};
use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutMode, PutOptions};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::paths::leases as leases_uri;

/// The partitions a lease covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Every partition of the dataset.
    All,
    /// Date partitions `from..=to` (`YYYY-MM-DD`).
    Dates { from: String, to: String },
}

impl Scope {
    pub fn overlaps(&self, other: &Scope) -> bool {
        match (self, other) {
            (Scope::Dates { from: a, to: b }, Scope::Dates { from: c, to: d }) => a <= d && c <= b,
            _ => true,
        }
    }

    /// Whether a partition path (`date=2024-03-01/hour=3`) is inside.
    pub fn covers(&self, partition: &str) -> bool {
        match self {
            Scope::All => true,
            Scope::Dates { from, to } => partition
                .split('/')
                .find_map(|seg| seg.strip_prefix("date="))
                .is_some_and(|d| from.as_str() <= d && d <= to.as_str()),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::All => write!(f, "all partitions"),
            Scope::Dates { from, to } if from == to => write!(f, "date {from}"),
            Scope::Dates { from, to } => write!(f, "dates {from}..{to}"),
        }
    }
}

/// What a run claims: a dataset (by name and path) and the partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claim {
    pub dataset: String,
    pub path: String,
    pub scope: Scope,
}

/// The content of a lease object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// The run that holds the lease.
    pub run_id: String,
    /// Why it is held: `run`, or `recovery of <run>`.
    pub purpose: String,
    pub dataset: String,
    pub scope: Scope,
    pub host: String,
    pub pid: u32,
    /// The process's start time (clock ticks since boot), so that a reused
    /// pid is not taken for the holder.
    pub pid_start: Option<u64>,
    pub acquired_at: u64,
    pub ttl_seconds: u64,
}

/// A lease found in a dataset's lease folder, as the store has it.
#[derive(Debug, Clone)]
pub struct FoundLease {
    pub uri: String,
    pub record: LeaseRecord,
    /// When the store created it (its clock), in nanoseconds since the epoch.
    pub created_nanos: i128,
    /// The latest sign of life: the heartbeat object's time, else creation,
    /// in seconds since the epoch.
    pub beat_at: i64,
}

impl FoundLease {
    /// Live: the holder's process exists (same host) and its heartbeat is
    /// younger than the time to live.
    pub fn is_live(&self, now: i64) -> bool {
        let r = &self.record;
        if r.host == this_host() && !process_alive(r.pid, r.pid_start) {
            return false;
        }
        now - self.beat_at < r.ttl_seconds as i64
    }

    fn describe(&self, now: i64) -> String {
        let r = &self.record;
        format!(
            "run `{}` ({}) holds {} of dataset `{}` since {} (pid {} on {}, heartbeat {} s ago)",
            r.run_id,
            r.purpose,
            r.scope,
            r.dataset,
            crate::time::utc_time(r.acquired_at),
            r.pid,
            r.host,
            (now - self.beat_at).max(0)
        )
    }
}

/// Why leases could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    /// Another live run holds overlapping partitions.
    #[error(
        "{holder}; runs over the same partitions never overlap: wait for it (`--wait SECONDS`) or pick other dates"
    )]
    Conflict { holder: String },
    /// The same, after waiting as long as allowed.
    #[error("waited {waited_s} s and {holder}")]
    Timeout { waited_s: u64, holder: String },
    /// The lease folder could not be read or written.
    #[error("lease {uri}: {message}")]
    Storage { uri: String, message: String },
}

impl LeaseError {
    fn storage(uri: &str, e: impl std::fmt::Display) -> Self {
        Self::Storage {
            uri: uri.to_string(),
            message: e.to_string(),
        }
    }
}

/// Leases held by this process, kept alive by a heartbeat until released.
pub struct LeaseSet {
    held: Vec<(Location, LeaseRecord)>,
    lost: Arc<AtomicBool>,
    heartbeat: Option<tokio::task::JoinHandle<()>>,
}

impl LeaseSet {
    /// True when a heartbeat found a lease gone: another run took it as
    /// expired, so this run must not publish.
    pub fn lost(&self) -> bool {
        self.lost.load(Ordering::SeqCst)
    }

    /// The claim of a dataset, if held.
    pub fn scope_of(&self, dataset: &str) -> Option<&Scope> {
        self.held
            .iter()
            .find(|(_, r)| r.dataset == dataset)
            .map(|(_, r)| &r.scope)
    }

    /// Stops the heartbeat and deletes the lease objects.
    pub async fn release(mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
        release_all(&self.held).await;
    }
}

/// The leases `run_id` took on `claims` in an earlier step of the same
/// run, renewed now. A lease that is gone (expired and taken, or removed)
/// leaves the set `lost`, so the run publishes nothing more.
pub async fn renew_detached(claims: &[Claim], run_id: &str) -> Result<LeaseSet, LeaseError> {
    let file = lease_file_name(run_id, "run");
    let mut held = vec![];
    let mut lost = false;
    let now = now_i64();
    for c in claims {
        let uri = format!("{}/{file}", leases_uri(&c.path));
        let loc = storage::resolve(&uri).map_err(|e| LeaseError::storage(&uri, e))?;
        let found = list(&leases_uri(&c.path))
            .await?
            .into_iter()
            .find(|f| f.uri == loc.uri());
        // Gone, or expired (another run may be taking it over): not renewed.
        let Some(found) = found.filter(|f| f.is_live(now)) else {
            lost = true;
            continue;
        };
        let record = found.record;
        let beat = beat_of(&loc);
        beat.store
            .put(
                &beat.path,
                crate::time::now_secs().to_string().into_bytes().into(),
            )
            .await
            .map_err(|e| LeaseError::storage(&uri, e))?;
        held.push((loc, record));
    }
    Ok(LeaseSet {
        held,
        lost: Arc::new(AtomicBool::new(lost)),
        heartbeat: None,
    })
}

impl Drop for LeaseSet {
    fn drop(&mut self) {
        if let Some(h) = self.heartbeat.take() {
            h.abort();
        }
    }
}

/// How to take leases.
#[derive(Debug, Clone)]
pub struct LeaseOptions {
    /// The holder's run id.
    pub run_id: String,
    /// `run`, or `recovery of <run>`.
    pub purpose: String,
    /// Seconds a lease lives without a heartbeat.
    pub ttl_seconds: u64,
    /// How long to wait for overlapping runs to finish (zero: fail at once).
    pub wait: Duration,
    /// The holder is a run carried by an orchestrator's steps, not by this
    /// process: its leases name no process, so they live by their time to
    /// live alone, and each step renews them.
    pub detached: bool,
}

/// The host a detached lease names: no process on any host holds it.
pub const DETACHED_HOST: &str = "steps";

/// Takes a lease for every claim, all or none: on a conflict the leases
/// taken so far are released, and after `wait` the conflict is returned.
pub async fn acquire(
    claims: &[Claim],
    opts: &LeaseOptions,
    mut on_wait: impl FnMut(&str),
) -> Result<LeaseSet, LeaseError> {
    let started = Instant::now();
    let mut attempt = 0u32;
    loop {
        match try_acquire(claims, opts).await? {
            Ok(held) => {
                let lost = Arc::new(AtomicBool::new(false));
                let heartbeat = tokio::spawn(heartbeat(
                    held.clone(),
                    Duration::from_secs((opts.ttl_seconds / 4).max(1)),
                    lost.clone(),
                ));
                return Ok(LeaseSet {
                    held,
                    lost,
                    heartbeat: Some(heartbeat),
                });
            }
            Err(Blocked { holder, tie }) => {
                let waited = started.elapsed();
                // Two leases the store dated alike both back off; they try
                // again at different moments before giving up.
                let patience = match tie {
                    true => opts.wait.max(TIE_PATIENCE),
                    false => opts.wait,
                };
                if waited >= patience {
                    return Err(if opts.wait.is_zero() {
                        LeaseError::Conflict { holder }
                    } else {
                        LeaseError::Timeout {
                            waited_s: waited.as_secs(),
                            holder,
                        }
                    });
                }
                if attempt == 0 && !tie {
                    on_wait(&holder);
                }
                attempt += 1;
                // Jitter, so that two runs that tied do not tie again.
                let nanos = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.subsec_nanos())
                    .unwrap_or(0);
                let jitter = (nanos as u64 ^ std::process::id() as u64) % 1_000;
                let pause = Duration::from_millis(500 + jitter).min(patience - waited);
                tokio::time::sleep(pause).await;
            }
        }
    }
}

/// How long runs whose leases the store dated alike keep trying.
const TIE_PATIENCE: Duration = Duration::from_secs(8);

/// Why a round did not take its leases.
struct Blocked {
    /// The live run in the way.
    holder: String,
    /// Its lease and ours were dated alike (stores that keep seconds only),
    /// or it was taken while this run was taking its own (a crossing).
    tie: bool,
}

/// One round: create every lease, then check the others. `Ok(Err(..))` is a
/// conflict; on a conflict or a failure nothing is left held.
async fn try_acquire(
    claims: &[Claim],
    opts: &LeaseOptions,
) -> Result<Result<Vec<(Location, LeaseRecord)>, Blocked>, LeaseError> {
    let mut held: Vec<(Location, LeaseRecord)> = vec![];
    let outcome = create_and_check(claims, opts, &mut held).await;
    if !matches!(outcome, Ok(None)) {
        release_all(&held).await;
    }
    outcome.map(|blocked| match blocked {
        None => Ok(held),
        Some(b) => Err(b),
    })
}

/// Creates the leases of `claims` into `held`, then looks for an overlapping
/// live lease created no later than each; `Some` names the first found.
async fn create_and_check(
    claims: &[Claim],
    opts: &LeaseOptions,
    held: &mut Vec<(Location, LeaseRecord)>,
) -> Result<Option<Blocked>, LeaseError> {
    let file = lease_file_name(&opts.run_id, &opts.purpose);
    for c in claims {
        let uri = format!("{}/{file}", leases_uri(&c.path));
        let loc = storage::resolve(&uri).map_err(|e| LeaseError::storage(&uri, e))?;
        let record = LeaseRecord {
            run_id: opts.run_id.clone(),
            purpose: opts.purpose.clone(),
            dataset: c.dataset.clone(),
            scope: c.scope.clone(),
            host: match opts.detached {
                true => DETACHED_HOST.to_string(),
                false => this_host(),
            },
            pid: match opts.detached {
                true => 0,
                false => std::process::id(),
            },
            pid_start: match opts.detached {
                true => None,
                false => process_start(std::process::id()),
            },
            acquired_at: crate::time::now_secs(),
            ttl_seconds: opts.ttl_seconds,
        };
        if let Some(holder) = create(&loc, &record).await? {
            return Ok(Some(Blocked { holder, tie: false }));
        }
        held.push((loc, record));
    }
    let mut listed = vec![];
    for (loc, _) in held.iter() {
        let found = list(&leases_dir_of(loc)).await?;
        let my_time = found
            .iter()
            .find(|f| f.uri == loc.uri())
            .map(|f| f.created_nanos)
            .unwrap_or(i128::MAX);
        listed.push((found, my_time));
    }
    // When this run created its first lease: a holder whose lease is not
    // older than that started while this run was taking its leases.
    let my_first = listed.iter().map(|(_, t)| *t).min().unwrap_or(i128::MAX);
    let now = now_i64();
    for ((loc, mine), (found, my_time)) in held.iter().zip(&listed) {
        let blocker = found.iter().find(|f| {
            f.uri != loc.uri()
                && f.record.run_id != mine.run_id
                && f.record.scope.overlaps(&mine.scope)
                && f.created_nanos <= *my_time
                && f.is_live(now)
        });
        if let Some(b) = blocker {
            // Two runs that took their leases at the same time can each be
            // first on some dataset and both be refused: such a crossing
            // backs off and tries again, like a tie.
            return Ok(Some(Blocked {
                holder: b.describe(now),
                tie: b.created_nanos >= my_first,
            }));
        }
    }
    Ok(None)
}

/// Creates a lease object unless one exists. A leftover of the same run (a
/// driver that died, now resumed) is replaced once it is no longer live;
/// `Ok(Some(holder))` when it still is.
async fn create(loc: &Location, record: &LeaseRecord) -> Result<Option<String>, LeaseError> {
    let uri = loc.uri();
    let body = serde_json::to_vec_pretty(record).expect("lease serialises");
    for _ in 0..2 {
        let put = loc
            .store
            .put_opts(
                &loc.path,
                body.clone().into(),
                PutOptions::from(PutMode::Create),
            )
            .await;
        match put {
            Ok(_) => return Ok(None),
            Err(object_store::Error::AlreadyExists { .. }) => {
                let now = now_i64();
                let dir = leases_dir_of(loc);
                let found = list(&dir).await?.into_iter().find(|f| f.uri == uri);
                // A detached lease of this same run is its own (a retried
                // step that took it before it died): kept, not refused.
                if let Some(f) = &found
                    && record.host == DETACHED_HOST
                    && f.record.host == DETACHED_HOST
                    && f.record.run_id == record.run_id
                    && f.record.purpose == record.purpose
                {
                    return Ok(None);
                }
                if let Some(f) = found
                    && f.is_live(now)
                {
                    return Ok(Some(f.describe(now)));
                }
                match loc.store.delete(&loc.path).await {
                    Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                    Err(e) => return Err(LeaseError::storage(&uri, e)),
                }
            }
            Err(e) => return Err(LeaseError::storage(&uri, e)),
        }
    }
    Err(LeaseError::storage(
        &uri,
        "another process keeps creating this lease",
    ))
}

async fn release_all(held: &[(Location, LeaseRecord)]) {
    for (loc, _) in held {
        delete_lease(loc).await.ok();
    }
}

/// The heartbeat object of a lease.
fn beat_of(lease: &Location) -> Location {
    let uri = format!("{}.beat", lease.uri());
    storage::resolve(&uri).expect("a lease's sibling resolves")
}

/// Deletes a lease and its heartbeat (the heartbeat first: a lease never
/// outlives its last sign of life by looking younger).
async fn delete_lease(loc: &Location) -> Result<(), object_store::Error> {
    let beat = beat_of(loc);
    for l in [&beat, loc] {
        match l.store.delete(&l.path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn lease_file_name(run_id: &str, purpose: &str) -> String {
    match purpose.strip_prefix("recovery of ") {
        Some(other) => format!("{run_id}.recovers.{other}.json"),
        None => format!("{run_id}.json"),
    }
}

fn leases_dir_of(lease: &Location) -> String {
    let uri = lease.uri();
    uri.rsplit_once('/')
        .map(|(d, _)| d.to_string())
        .unwrap_or(uri)
}

/// Every lease in a lease folder, with its heartbeat (leftovers that do not
/// parse are skipped).
pub async fn list(dir_uri: &str) -> Result<Vec<FoundLease>, LeaseError> {
    let dir = storage::resolve(dir_uri).map_err(|e| LeaseError::storage(dir_uri, e))?;
    let metas: Vec<object_store::ObjectMeta> =
        match dir.store.list(Some(&dir.path)).try_collect().await {
            Ok(v) => v,
            Err(object_store::Error::NotFound { .. }) => vec![],
            Err(e) => return Err(LeaseError::storage(dir_uri, e)),
        };
    let beats: std::collections::HashMap<String, i64> = metas
        .iter()
        .filter_map(|m| {
            let key = m.location.as_ref().strip_suffix(".beat")?;
            Some((key.to_string(), m.last_modified.timestamp()))
        })
        .collect();
    let mut out = vec![];
    for m in metas
        .iter()
        .filter(|m| m.location.as_ref().ends_with(".json"))
    {
        let bytes = match dir.store.get(&m.location).await {
            Ok(r) => r.bytes().await,
            Err(e) => Err(e),
        };
        let bytes = match bytes {
            Ok(b) => b,
            // Released between the listing and the read.
            Err(object_store::Error::NotFound { .. }) => continue,
            Err(e) => return Err(LeaseError::storage(dir_uri, e)),
        };
        let Ok(record) = serde_json::from_slice::<LeaseRecord>(&bytes) else {
            continue;
        };
        let created = m.last_modified.timestamp();
        let beat = beats.get(m.location.as_ref()).copied().unwrap_or(created);
        out.push(FoundLease {
            uri: format!("{}{}", dir.store_url.as_str(), m.location),
            record,
            created_nanos: m.last_modified.timestamp_nanos_opt().unwrap_or(0) as i128,
            beat_at: beat.max(created),
        });
    }
    Ok(out)
}

/// The live leases a run holds on a dataset (empty: the run is not alive
/// there).
pub async fn live_leases_of(
    dataset_path: &str,
    run_id: &str,
) -> Result<Vec<FoundLease>, LeaseError> {
    let now = now_i64();
    Ok(list(&leases_uri(dataset_path))
        .await?
        .into_iter()
        .filter(|f| f.record.run_id == run_id && f.is_live(now))
        .collect())
}

/// Deletes a run's leftover leases on a dataset (after recovering it).
pub async fn remove_leases_of(dataset_path: &str, run_id: &str) -> Result<(), LeaseError> {
    for f in list(&leases_uri(dataset_path)).await? {
        if f.record.run_id == run_id && f.record.purpose == "run" {
            let loc = storage::resolve(&f.uri).map_err(|e| LeaseError::storage(&f.uri, e))?;
            delete_lease(&loc)
                .await
                .map_err(|e| LeaseError::storage(&f.uri, e))?;
        }
    }
    Ok(())
}

/// Deletes the leases on a dataset that no process holds any more and
/// whose run has ended (`ended` says, from its journal): a run that could
/// not release them, say because the store was down as it finished, leaves
/// them behind. They block nobody, but they are litter. Returns how many.
pub async fn remove_stale(
    dataset_path: &str,
    ended: impl Fn(&str) -> bool,
) -> Result<usize, LeaseError> {
    let now = now_i64();
    let mut n = 0;
    for f in list(&leases_uri(dataset_path)).await? {
        if f.record.purpose == "run" && !f.is_live(now) && ended(&f.record.run_id) {
            let loc = storage::resolve(&f.uri).map_err(|e| LeaseError::storage(&f.uri, e))?;
            delete_lease(&loc)
                .await
                .map_err(|e| LeaseError::storage(&f.uri, e))?;
            n += 1;
        }
    }
    Ok(n)
}

/// Writes every held lease's heartbeat each `every`; a lease found gone
/// (taken over as expired by another run) is lost.
async fn heartbeat(held: Vec<(Location, LeaseRecord)>, every: Duration, lost: Arc<AtomicBool>) {
    let beats: Vec<Location> = held.iter().map(|(l, _)| beat_of(l)).collect();
    loop {
        tokio::time::sleep(every).await;
        for ((loc, _), beat) in held.iter().zip(&beats) {
            match loc.store.head(&loc.path).await {
                Ok(_) => {}
                Err(object_store::Error::NotFound { .. }) => {
                    lost.store(true, Ordering::SeqCst);
                    continue;
                }
                // A storage hiccup: try again next beat.
                Err(_) => continue,
            }
            let now = crate::time::now_secs().to_string();
            let _ = beat.store.put(&beat.path, now.into_bytes().into()).await;
        }
    }
}

fn now_i64() -> i64 {
    crate::time::now_secs() as i64
}

/// This machine's name (a container's hostname in a container).
pub fn this_host() -> String {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "unknown-host".into())
    })
    .clone()
}

/// When a process started, in clock ticks since boot (`/proc/PID/stat`).
fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces; fields resume after its `)`.
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(19)?.parse().ok()
}

fn process_alive(pid: u32, start: Option<u64>) -> bool {
    if !std::path::Path::new("/proc/self").exists() {
        // No way to tell here: trust the heartbeat.
        return true;
    }
    match (process_start(pid), start) {
        (None, _) => false,
        (Some(now), Some(then)) => now == then,
        (Some(_), None) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_scopes_overlap_when_they_share_a_day() {
        let d = |a: &str, b: &str| Scope::Dates {
            from: a.into(),
            to: b.into(),
        };
        assert!(d("2024-03-01", "2024-03-10").overlaps(&d("2024-03-10", "2024-03-12")));
        assert!(!d("2024-03-01", "2024-03-09").overlaps(&d("2024-03-10", "2024-03-12")));
        assert!(Scope::All.overlaps(&d("2024-03-01", "2024-03-01")));
        assert!(d("2024-03-01", "2024-03-02").covers("date=2024-03-02/hour=3"));
        assert!(!d("2024-03-01", "2024-03-02").covers("date=2024-03-03"));
        assert!(!d("2024-03-01", "2024-03-02").covers("block_chunk=3"));
    }

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = std::process::id();
        let start = process_start(me);
        assert!(start.is_some());
        assert!(process_alive(me, start));
        assert!(!process_alive(me, start.map(|s| s + 1)));
        assert!(!process_alive(u32::MAX - 1, None));
    }
}
