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

/// The task scheduling policy of scheduler and executors: executors poll
/// the scheduler, so only the scheduler's port and the executors' Flight
/// ports need to be reachable. Both sides must use the same policy.
pub const SCHEDULING_POLICY: ballista_core::config::TaskSchedulingPolicy =
    ballista_core::config::TaskSchedulingPolicy::PullStaged;

/// The file-name tag of a Ballista task attempt, from its task context's id
/// `TID <job>/<stage>.<stage attempt>/<task>.<task attempt>`: `s<stage>.<stage
/// attempt>-t<task>.<task attempt>`. Every attempt of every task writes files
/// of its own, so a re-run task or stage never overwrites or adds to files of
/// an attempt that Ballista reported as successful.
pub fn attempt_tag(task_id: &str) -> Option<String> {
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
    fn attempt_tags_carry_stage_and_task_attempts() {
        assert_eq!(
            attempt_tag("TID aBc12/3.1/17.2").as_deref(),
            Some("s3.1-t17.2")
        );
        assert_eq!(attempt_tag("task-7"), None);
        assert_eq!(attempt_tag("TID j/3/17.2"), None);
    }
}
