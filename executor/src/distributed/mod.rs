//! Running chainbatch plans on a Ballista cluster.
//!
//! A distributed node's SQL becomes one DataFusion physical plan whose root is
//! a `LayoutSinkExec` (the layout writer as a plan node) with many
//! partitions. Ballista cuts it into stages at its repartitions and runs the
//! stages on its executors; each final-stage task writes its share of the
//! output files. Both sides of the wire need the same two things: the
//! [`codec::DistributedCodec`] (chainbatch operators plus Ballista's own) and
//! chainbatch's SQL functions. [`executor`] runs a Ballista executor with
//! both, reading and writing through chainbatch's storage. Stages of task
//! specs (map-only, per-partition, shuffle) run on the same executors as
//! one job each, one spec per partition ([`tasks`]).

pub mod codec;
pub mod executor;
pub mod job;
pub mod net;
pub mod tasks;

/// The task scheduling policy of scheduler and executors: executors poll
/// the scheduler, so only the scheduler's port and the executors' Flight
/// ports need to be reachable. Both sides must use the same policy.
pub const SCHEDULING_POLICY: ballista_core::config::TaskSchedulingPolicy =
    ballista_core::config::TaskSchedulingPolicy::PullStaged;

/// The file-name tag of a Ballista task attempt, from its task context's id
/// `TID <job>/<stage>.<stage attempt>/<task>.<task attempt>` and this
/// executor process: `s<stage>.<stage attempt>-t<task>.<task attempt>-<process>`.
/// Every attempt of every task writes files of its own, so a re-run task or
/// stage never overwrites or adds to files of an attempt that Ballista
/// reported as successful. The process part matters when Ballista re-runs
/// the tasks of an executor it lost under the same attempt number: if that
/// executor is not dead but cut off, it may still be writing.
pub fn attempt_tag(task_id: &str) -> Option<String> {
    task_attempt(task_id).map(|t| format!("{t}-{}", process_tag()))
}

/// 8 hex digits that differ between executor processes.
fn process_tag() -> &'static str {
    static TAG: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TAG.get_or_init(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as u64;
        let seed = nanos ^ (u64::from(std::process::id()) << 32);
        format!("{:08x}", crate::udf::murmur3_32(&seed.to_le_bytes(), 0))
    })
}

/// Where a file a Ballista task wrote came from, read back from its name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FileAttempt {
    /// The Ballista stage.
    pub stage: u32,
    /// The stage's attempt; it rises when Ballista rolls the stage back and runs it again.
    pub stage_attempt: u32,
    /// The task (partition) within the stage.
    pub task: u32,
    /// The task's attempt within its stage attempt.
    pub task_attempt: u32,
}

/// The attempt a file belongs to, from the `-s<stage>.<attempt>-t<task>.<attempt>-`
/// part of its name; `None` for a file no Ballista task wrote.
pub fn file_attempt(path: &str) -> Option<FileAttempt> {
    let name = path.rsplit('/').next().unwrap_or(path);
    let parts: Vec<&str> = name.split('-').collect();
    let pair = |p: &str| -> Option<(u32, u32)> {
        let (a, b) = p.split_once('.')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    };
    parts.windows(2).find_map(|w| {
        let (stage, stage_attempt) = pair(w[0].strip_prefix('s')?)?;
        let (task, task_attempt) = pair(w[1].strip_prefix('t')?)?;
        Some(FileAttempt {
            stage,
            stage_attempt,
            task,
            task_attempt,
        })
    })
}

/// The files of the latest attempt of each task. When Ballista rolls a
/// stage back (an executor holding its input was lost) and runs it again,
/// the job may report a task's files of the earlier stage attempt beside
/// those of the new one: the same rows twice. Returns what is kept and how
/// many files were superseded.
pub fn latest_attempts(
    files: Vec<crate::manifest::WrittenFile>,
) -> (Vec<crate::manifest::WrittenFile>, usize) {
    use std::collections::HashMap;
    let mut latest: HashMap<(u32, u32), (u32, u32)> = HashMap::new();
    for a in files.iter().filter_map(|f| file_attempt(&f.path)) {
        let e = latest
            .entry((a.stage, a.task))
            .or_insert((a.stage_attempt, a.task_attempt));
        *e = (*e).max((a.stage_attempt, a.task_attempt));
    }
    let before = files.len();
    let kept: Vec<_> = files
        .into_iter()
        .filter(|f| match file_attempt(&f.path) {
            Some(a) => latest[&(a.stage, a.task)] == (a.stage_attempt, a.task_attempt),
            None => true,
        })
        .collect();
    let dropped = before - kept.len();
    (kept, dropped)
}

fn task_attempt(task_id: &str) -> Option<String> {
    let rest = task_id.strip_prefix("TID ")?;
    let mut parts = rest.rsplitn(3, '/');
    let task = parts.next()?;
    let stage = parts.next()?;
    let _job = parts.next()?;
    let valid = |s: &str| {
        let mut it = s.split('.');
        matches!((it.next(), it.next(), it.next()), (Some(a), Some(b), None)
            if !a.is_empty() && !b.is_empty()
                && a.bytes().all(|c| c.is_ascii_digit())
                && b.bytes().all(|c| c.is_ascii_digit()))
    };
    (valid(stage) && valid(task)).then(|| format!("s{stage}-t{task}"))
}

#[cfg(test)]
mod tests {
    use super::{attempt_tag, latest_attempts};

    #[test]
    fn only_the_latest_attempt_of_each_task_is_kept() {
        use crate::manifest::WrittenFile;
        let file = |path: &str| WrittenFile {
            path: path.to_string(),
            partition: String::new(),
            bucket: None,
            rows: 1,
            bytes: 1,
            row_groups: 1,
            checksum: "0".into(),
            stats: Default::default(),
        };
        let files = vec![
            file("date=2024-03-01/part-0-0-s2.0-t0.0-3cbec02f-000000.zstd.parquet"),
            file("date=2024-03-01/part-0-0-s2.1-t0.0-099d2a76-000000.zstd.parquet"),
            file("date=2024-03-02/part-0-0-s2.1-t1.0-3cbec02f-000000.zstd.parquet"),
            file("date=2024-03-04/part-0-0-s2.0-t0.0-3cbec02f-000001.zstd.parquet"),
            file("date=2024-03-04/part-0-0-s2.1-t0.0-099d2a76-000001.zstd.parquet"),
            file("part-0-0-s2.0-t3.0-3cbec02f-000000_00001.zstd.parquet"),
            file("part-0-0-s2.0-t3.2-77777777-000000_00001.zstd.parquet"),
        ];
        let (kept, dropped) = latest_attempts(files);
        assert_eq!(dropped, 3);
        let names: Vec<&str> = kept.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            names,
            [
                "date=2024-03-01/part-0-0-s2.1-t0.0-099d2a76-000000.zstd.parquet",
                "date=2024-03-02/part-0-0-s2.1-t1.0-3cbec02f-000000.zstd.parquet",
                "date=2024-03-04/part-0-0-s2.1-t0.0-099d2a76-000001.zstd.parquet",
                "part-0-0-s2.0-t3.2-77777777-000000_00001.zstd.parquet",
            ]
        );
    }

    #[test]
    fn attempt_tags_carry_stage_and_task_attempts_and_the_process() {
        let tag = attempt_tag("TID aBc12/3.1/17.2").unwrap();
        assert!(tag.starts_with("s3.1-t17.2-"), "{tag}");
        assert_eq!(tag.len(), "s3.1-t17.2-".len() + 8, "{tag}");
        assert_eq!(attempt_tag("task-7"), None);
        assert_eq!(attempt_tag("TID j/3/17.2"), None);
    }
}
