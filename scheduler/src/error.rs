//! What the driver's commands fail with. Each error knows its exit code and
//! whether `chainbatch run --resume` can finish the run it stopped: the
//! place that raises it decides, not a conversion from text.

use crate::conf::error::ConfigError;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum DriverError {
    /// The configuration or the command line is wrong: nothing was run or
    /// written. Exit 2.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Storage the driver reads or writes (listings, journals, stage specs,
    /// staging, a publish) failed. A resume does that work again.
    #[error("{0}")]
    Storage(String),
    /// A node's tasks failed; `retryable` when their executor said another
    /// attempt may succeed (lost executor, storage), so a resume reruns them.
    #[error("node `{node}`: {message}")]
    Task {
        /// The node whose stage failed.
        node: String,
        /// What the backend reported.
        message: String,
        /// Whether another attempt of the same tasks may succeed.
        retryable: bool,
    },
    /// The input cannot be published as it is: nothing to read in the
    /// window, or days the completeness gate finds incomplete. A rerun once
    /// the input is there, not a resume, fixes it.
    #[error("{0}")]
    Input(String),
    /// The run does not hold the partitions it would publish: another run
    /// holds them, or took them over. Nothing of the node was published.
    #[error("{0}")]
    Lease(String),
    /// A node's output breaks what the run promised (partitions outside its
    /// window, a task without a manifest, Athena counting other rows).
    #[error("{0}")]
    Output(String),
    /// An AWS service (Glue, Athena, Batch) or the Ballista cluster refused
    /// or could not be reached.
    #[error("{0}")]
    Service(String),
    /// A run or a backfill ended failed; the message says what failed and
    /// how to continue (`--resume`, `gc`), as its journal records.
    #[error("{0}")]
    Failed(String),
}

impl DriverError {
    /// The process exit code: 2 for a usage or configuration error (nothing
    /// ran), 1 for everything else.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Config(_) => 2,
            _ => 1,
        }
    }

    /// Whether `--resume` can finish the run this error stopped: the work
    /// done so far is kept for it.
    pub fn resumable(&self) -> bool {
        match self {
            Self::Storage(_) => true,
            Self::Task { retryable, .. } => *retryable,
            _ => false,
        }
    }

    /// The prefix of the one line `chainbatch` prints on failure.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Config(_) => "config error",
            _ => "run failed",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn configuration_errors_exit_2_and_nothing_else_does() {
        let config = DriverError::from(ConfigError::new("--dates", "bad"));
        assert_eq!((config.exit_code(), config.kind()), (2, "config error"));
        for e in [
            DriverError::Storage("s3 down".into()),
            DriverError::Input("empty".into()),
            DriverError::Failed("x".into()),
        ] {
            assert_eq!((e.exit_code(), e.kind()), (1, "run failed"));
        }
    }

    #[test]
    fn only_storage_and_retryable_task_failures_are_resumable() {
        let task = |retryable| DriverError::Task {
            node: "n".into(),
            message: "m".into(),
            retryable,
        };
        assert!(DriverError::Storage("x".into()).resumable());
        assert!(task(true).resumable());
        assert!(!task(false).resumable());
        for e in [
            DriverError::Input("x".into()),
            DriverError::Lease("x".into()),
            DriverError::Output("x".into()),
            DriverError::Service("x".into()),
            DriverError::Config(ConfigError::new("k", "v")),
        ] {
            assert!(!e.resumable(), "{e}");
        }
        assert_eq!(task(true).to_string(), "node `n`: m");
    }
}
