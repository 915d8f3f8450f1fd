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
///
/// `partition` is the stage's output partition the task writes (see
/// [`shuffle_partition`]): Ballista 55 numbers tasks in the order it binds
/// them, so a partition it runs again (its executor was lost) gets another
/// task number, and only the partition tells two runs of it apart.
pub fn attempt_tag(task_id: &str, partition: Option<usize>) -> Option<String> {
    task_attempt(task_id).map(|t| match partition {
        Some(p) => format!("{t}-p{p}-{}", process_tag()),
        None => format!("{t}-{}", process_tag()),
    })
}

/// The stage-wide index of local partition `partition` of `plan` in a
/// Ballista task: the reduce partition its shuffle readers read, found
/// through operators that keep their input's partitions (a sort, a
/// projection, a join of co-partitioned inputs, whose readers must then all
/// read the same partition). `None` when no such reader feeds it (the task
/// reads files, or its input is merged on the way).
pub fn shuffle_partition(
    plan: &std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>,
    partition: usize,
) -> Option<usize> {
    use datafusion::physical_plan::ExecutionPlanProperties;
    if let Some(reader) = (plan.as_ref() as &dyn std::any::Any)
        .downcast_ref::<ballista_core::execution_plans::ShuffleReaderExec>()
    {
        if reader.broadcast || reader.coalesce.is_some() {
            return None;
        }
        let ids: std::collections::BTreeSet<usize> = reader
            .partition
            .get(partition)?
            .iter()
            .map(|l| l.partition_id.partition_id)
            .collect();
        return match ids.len() {
            1 => ids.into_iter().next(),
            _ => None,
        };
    }
    let children = plan.children();
    if children.is_empty() {
        return None;
    }
    let mut found = None;
    for child in children {
        if child.output_partitioning().partition_count()
            != plan.output_partitioning().partition_count()
        {
            return None;
        }
        let id = shuffle_partition(child, partition)?;
        if found.is_some_and(|f| f != id) {
            return None;
        }
        found = Some(id);
    }
    found
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
    /// The stage's output partition the task wrote, when its name says.
    pub partition: Option<u32>,
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
    parts.windows(2).enumerate().find_map(|(i, w)| {
        let (stage, stage_attempt) = pair(w[0].strip_prefix('s')?)?;
        let (task, task_attempt) = pair(w[1].strip_prefix('t')?)?;
        let partition = parts
            .get(i + 2)
            .and_then(|p| p.strip_prefix('p'))
            .and_then(|p| p.parse().ok());
        Some(FileAttempt {
            stage,
            stage_attempt,
            task,
            task_attempt,
            partition,
        })
    })
}

/// The files of the latest attempt of each output partition (of each
/// task, for names without a partition). When Ballista rolls a stage back
/// (an executor holding its input was lost) or re-runs a lost executor's
/// tasks, the job may report a partition's files of the earlier run beside
/// those of the new one: the same rows twice. The later run (higher stage
/// attempt, then later task, then higher task attempt) is kept. Returns
/// what is kept and how many files were superseded.
pub fn latest_attempts(
    files: Vec<crate::manifest::WrittenFile>,
) -> (Vec<crate::manifest::WrittenFile>, usize) {
    use std::collections::HashMap;
    // What a run wrote for, and how late the run was.
    let key = |a: &FileAttempt| match a.partition {
        Some(p) => (
            (a.stage, true, p),
            (a.stage_attempt, a.task, a.task_attempt),
        ),
        None => (
            (a.stage, false, a.task),
            (a.stage_attempt, 0, a.task_attempt),
        ),
    };
    let mut latest: HashMap<(u32, bool, u32), (u32, u32, u32)> = HashMap::new();
    for a in files.iter().filter_map(|f| file_attempt(&f.path)) {
        let (what, when) = key(&a);
        let e = latest.entry(what).or_insert(when);
        *e = (*e).max(when);
    }
    let before = files.len();
    let kept: Vec<_> = files
        .into_iter()
        .filter(|f| match file_attempt(&f.path) {
            Some(a) => {
                let (what, when) = key(&a);
                latest[&what] == when
            }
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
            // Partition 1 run as task 1, then again as task 4 (its executor
            // was lost); partition 0 once, as task 0.
            file("part-0-0-s4.0-t1.0-p1-3cbec02f-000000_00003.zstd.parquet"),
            file("part-0-0-s4.0-t1.0-p1-3cbec02f-000001_00005.zstd.parquet"),
            file("part-0-0-s4.0-t4.0-p1-099d2a76-000000_00003.zstd.parquet"),
            file("part-0-0-s4.0-t4.0-p1-099d2a76-000001_00005.zstd.parquet"),
            file("part-0-0-s4.0-t0.0-p0-099d2a76-000000_00002.zstd.parquet"),
        ];
        let (kept, dropped) = latest_attempts(files);
        assert_eq!(dropped, 5);
        let names: Vec<&str> = kept.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            names,
            [
                "date=2024-03-01/part-0-0-s2.1-t0.0-099d2a76-000000.zstd.parquet",
                "date=2024-03-02/part-0-0-s2.1-t1.0-3cbec02f-000000.zstd.parquet",
                "date=2024-03-04/part-0-0-s2.1-t0.0-099d2a76-000001.zstd.parquet",
                "part-0-0-s2.0-t3.2-77777777-000000_00001.zstd.parquet",
                "part-0-0-s4.0-t4.0-p1-099d2a76-000000_00003.zstd.parquet",
                "part-0-0-s4.0-t4.0-p1-099d2a76-000001_00005.zstd.parquet",
                "part-0-0-s4.0-t0.0-p0-099d2a76-000000_00002.zstd.parquet",
            ]
        );
    }

    #[test]
    fn attempt_tags_carry_stage_and_task_attempts_and_the_process() {
        let tag = attempt_tag("TID aBc12/3.1/17.2", None).unwrap();
        assert!(tag.starts_with("s3.1-t17.2-"), "{tag}");
        assert_eq!(tag.len(), "s3.1-t17.2-".len() + 8, "{tag}");
        let tag = attempt_tag("TID aBc12/3.1/17.2", Some(5)).unwrap();
        assert!(tag.starts_with("s3.1-t17.2-p5-"), "{tag}");
        let a = super::file_attempt(&format!("part-0-0-{tag}-000000_00001.zstd.parquet")).unwrap();
        assert_eq!((a.stage, a.task, a.partition), (3, 17, Some(5)));
        assert_eq!(attempt_tag("task-7", None), None);
        assert_eq!(attempt_tag("TID j/3/17.2", None), None);
    }
}
