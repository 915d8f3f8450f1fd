//! Task errors and the executor's documented exit codes.
//!
//! The exit code tells a scheduler (or AWS Batch's `retryStrategy`) whether a
//! retry can help: a bad spec never gets better by running it again.

use datafusion::error::DataFusionError;
use std::fmt;

/// The task finished and its manifest is written.
pub const EXIT_OK: i32 = 0;
/// Command-line usage error (unknown flag, missing `--index`).
pub const EXIT_USAGE: i32 = 2;
/// The spec is wrong: missing input, schema mismatch, SQL error, bad layout,
/// an output that cannot be written. Retrying cannot help.
pub const EXIT_BAD_SPEC: i32 = 3;
/// I/O, network or resource failure. A retry may succeed.
pub const EXIT_RETRYABLE: i32 = 4;

/// Why a task failed, and whether a retry can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The spec is wrong; `field` names the spec field (`inputs[0].files[1].uri`).
    BadSpec { field: String },
    /// I/O or resource failure worth a retry.
    Retryable,
}

#[derive(Debug, Clone)]
pub struct TaskError {
    pub kind: ErrorKind,
    pub message: String,
}

pub type TaskResult<T> = std::result::Result<T, TaskError>;

impl TaskError {
    pub fn bad_spec(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::BadSpec {
                field: field.into(),
            },
            message: message.into(),
        }
    }

    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Retryable,
            message: message.into(),
        }
    }

    pub fn exit_code(&self) -> i32 {
        match self.kind {
            ErrorKind::BadSpec { .. } => EXIT_BAD_SPEC,
            ErrorKind::Retryable => EXIT_RETRYABLE,
        }
    }

    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Retryable)
    }

    /// Classifies a DataFusion error raised while working on `field`.
    /// Planning and SQL errors are the spec's fault; I/O is worth a retry,
    /// except for failures that no retry can mend (missing object, no permission).
    pub fn from_datafusion(field: &str, err: DataFusionError) -> Self {
        let root = err.find_root();
        let message = root.to_string();
        match root {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Configuration(_) => Self::bad_spec(field, message),
            DataFusionError::ObjectStore(e) if is_permanent_store_error(e) => {
                Self::bad_spec(field, message)
            }
            DataFusionError::IoError(e) if is_permanent_io_error(e) => {
                Self::bad_spec(field, message)
            }
            DataFusionError::ArrowError(e, _) if is_data_error(e) => Self::bad_spec(field, message),
            DataFusionError::ParquetError(_) => Self::bad_spec(field, message),
            _ => Self::retryable(format!("{field}: {message}")),
        }
    }

    pub fn from_store(field: &str, err: object_store::Error) -> Self {
        if is_permanent_store_error(&err) {
            Self::bad_spec(field, err.to_string())
        } else {
            Self::retryable(format!("{field}: {err}"))
        }
    }
}

/// Errors that do not go away on retry: missing objects, denied access.
pub fn is_permanent_store_error(err: &object_store::Error) -> bool {
    use object_store::Error as E;
    match err {
        E::NotFound { .. }
        | E::PermissionDenied { .. }
        | E::Unauthenticated { .. }
        | E::InvalidPath { .. }
        | E::NotSupported { .. }
        | E::NotImplemented { .. } => true,
        E::Generic { source, .. } => {
            // Local stores wrap the OS error a few levels down.
            let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(source.as_ref());
            while let Some(e) = cur {
                if let Some(io) = e.downcast_ref::<std::io::Error>() {
                    return is_permanent_io_error(io);
                }
                cur = e.source();
            }
            false
        }
        _ => false,
    }
}

fn is_permanent_io_error(err: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        err.kind(),
        K::NotFound
            | K::PermissionDenied
            | K::ReadOnlyFilesystem
            | K::InvalidInput
            | K::NotADirectory
            | K::IsADirectory
    )
}

fn is_data_error(err: &arrow::error::ArrowError) -> bool {
    use arrow::error::ArrowError as A;
    matches!(
        err,
        A::ParseError(_)
            | A::CastError(_)
            | A::JsonError(_)
            | A::CsvError(_)
            | A::SchemaError(_)
            | A::InvalidArgumentError(_)
            | A::ComputeError(_)
    )
}

impl fmt::Display for TaskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::BadSpec { field } => write!(f, "bad spec: {field}: {}", self.message),
            ErrorKind::Retryable => write!(f, "retryable failure: {}", self.message),
        }
    }
}

impl std::error::Error for TaskError {}
