//! Running chainbatch plans on a Ballista cluster.
//!
//! A distributed node's SQL becomes one DataFusion physical plan whose root is
//! a [`LayoutSinkExec`](crate::layout::sink::LayoutSinkExec) with many
//! partitions. Ballista cuts it into stages at its repartitions and runs the
//! stages on its executors; each final-stage task writes its share of the
//! output files. Both sides of the wire need the same two things: the
//! [`codec::DistributedCodec`] (chainbatch operators plus Ballista's own) and
//! chainbatch's SQL functions. [`executor`] runs a Ballista executor with
//! both, reading and writing through chainbatch's storage.

pub mod codec;
pub mod executor;
pub mod job;
pub mod net;

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
    use super::attempt_tag;

    #[test]
    fn attempt_tags_carry_stage_and_task_attempts_and_the_process() {
        let tag = attempt_tag("TID aBc12/3.1/17.2").unwrap();
        assert!(tag.starts_with("s3.1-t17.2-"), "{tag}");
        assert_eq!(tag.len(), "s3.1-t17.2-".len() + 8, "{tag}");
        assert_eq!(attempt_tag("task-7"), None);
        assert_eq!(attempt_tag("TID j/3/17.2"), None);
    }
}
