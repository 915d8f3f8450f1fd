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
    BadSpec {
        /// The spec field at fault, as a path: `inputs[0].files[1].uri`.
        field: String,
    },
    /// I/O or resource failure worth a retry.
    Retryable,
}

/// A failed task: why, which decides the exit code, and a message for the log.
#[derive(Debug, Clone)]
pub struct TaskError {
    /// Whether the spec is at fault (and where) or a retry may help.
    pub kind: ErrorKind,
    /// What went wrong; displayed after the kind (and the spec field).
    pub message: String,
}

/// The result of anything that can fail a task.
pub type TaskResult<T> = std::result::Result<T, TaskError>;

impl TaskError {
    /// A failure no retry can mend, blamed on spec field `field`
    /// (`inputs[0].files[1].uri`); the process exits with [`EXIT_BAD_SPEC`].
    pub fn bad_spec(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::BadSpec {
                field: field.into(),
            },
            message: message.into(),
        }
    }

    /// A failure another attempt may get past (I/O, network, resources); exits
    /// with [`EXIT_RETRYABLE`].
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            kind: ErrorKind::Retryable,
            message: message.into(),
        }
    }

    /// The process exit code: [`EXIT_BAD_SPEC`] or [`EXIT_RETRYABLE`].
    pub fn exit_code(&self) -> i32 {
        match self.kind {
            ErrorKind::BadSpec { .. } => EXIT_BAD_SPEC,
            ErrorKind::Retryable => EXIT_RETRYABLE,
        }
    }

    /// Whether running the task again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(self.kind, ErrorKind::Retryable)
    }

    /// Classifies a DataFusion error raised while working on `field`.
    /// Planning and SQL errors are the spec's fault, and so is data that
    /// cannot be decoded. Storage failures anywhere in the error's chain
    /// (Parquet and DataFusion wrap them) are classified as storage:
    /// see [`TaskError::from_store`].
    pub fn from_datafusion(field: &str, err: DataFusionError) -> Self {
        let root = err.find_root();
        let message = root.to_string();
        if let Some(cause) = storage_cause(root) {
            return Self::from_storage_cause(field, cause, message);
        }
        match root {
            DataFusionError::SQL(..)
            | DataFusionError::Plan(_)
            | DataFusionError::SchemaError(..)
            | DataFusionError::NotImplemented(_)
            | DataFusionError::Configuration(_) => Self::bad_spec(field, message),
            DataFusionError::ArrowError(e, _) if is_data_error(e) => Self::bad_spec(field, message),
            // Undecodable Parquet (storage failures were caught above).
            DataFusionError::ParquetError(_) => Self::bad_spec(field, message),
            _ => Self::retryable(format!("{field}: {message}")),
        }
    }

    /// Classifies a storage error. Only what no retry can mend is the spec's
    /// fault: denied access, an invalid path, an unsupported operation. A
    /// missing object is retryable: an input listed at planning time that is
    /// gone now was replaced (the dataset's nightly compaction deletes the
    /// per-block files), and output or staging that vanished mid-write was
    /// removed under the task; a new plan or attempt can succeed.
    pub fn from_store(field: &str, err: object_store::Error) -> Self {
        let message = err.to_string();
        Self::from_storage_cause(field, StorageCause::Store(&err), message)
    }

    fn from_storage_cause(field: &str, cause: StorageCause<'_>, message: String) -> Self {
        match cause.class() {
            StorageClass::Permanent => Self::bad_spec(field, message),
            StorageClass::Missing => Self::retryable(format!(
                "{field}: {message} (the object was removed after the task was planned:                  an input replaced by a compaction or a rewrite, or output removed while                  the task wrote it; a new run plans the current files)"
            )),
            StorageClass::Transient => Self::retryable(format!("{field}: {message}")),
        }
    }
}

/// A storage error found in an error's chain.
#[derive(Clone, Copy)]
enum StorageCause<'a> {
    Store(&'a object_store::Error),
    Io(&'a std::io::Error),
}

/// What a retry can do about a storage error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StorageClass {
    /// No retry mends it (access denied, invalid path, unsupported).
    Permanent,
    /// The object is not there (any more).
    Missing,
    /// Network, throttling, aborted uploads, full disks: worth a retry.
    Transient,
}

impl StorageCause<'_> {
    fn class(self) -> StorageClass {
        use object_store::Error as E;
        match self {
            StorageCause::Io(io) => io_class(io),
            StorageCause::Store(E::NotFound { .. }) => StorageClass::Missing,
            StorageCause::Store(
                E::PermissionDenied { .. }
                | E::Unauthenticated { .. }
                | E::InvalidPath { .. }
                | E::NotSupported { .. }
                | E::NotImplemented { .. },
            ) => StorageClass::Permanent,
            // Local stores wrap the OS error a few levels down.
            StorageCause::Store(E::Generic { source, .. }) => {
                match find_in_chain::<std::io::Error>(source.as_ref()) {
                    Some(io) => io_class(io),
                    None => StorageClass::Transient,
                }
            }
            StorageCause::Store(_) => StorageClass::Transient,
        }
    }
}

/// The first object-store or I/O error in `err`'s chain of sources.
fn storage_cause(err: &DataFusionError) -> Option<StorageCause<'_>> {
    match err {
        DataFusionError::ObjectStore(e) => return Some(StorageCause::Store(e)),
        DataFusionError::IoError(e) => return Some(StorageCause::Io(e)),
        _ => {}
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(e) = cur {
        if let Some(s) = e.downcast_ref::<object_store::Error>() {
            return Some(StorageCause::Store(s));
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(StorageCause::Io(io));
        }
        cur = e.source();
    }
    None
}

fn find_in_chain<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        cur = e.source();
    }
    None
}

fn io_class(err: &std::io::Error) -> StorageClass {
    use std::io::ErrorKind as K;
    match err.kind() {
        K::NotFound => StorageClass::Missing,
        K::PermissionDenied
        | K::ReadOnlyFilesystem
        | K::InvalidInput
        | K::NotADirectory
        | K::IsADirectory => StorageClass::Permanent,
        _ => StorageClass::Transient,
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use parquet::errors::ParquetError;

    fn aborted_upload() -> object_store::Error {
        object_store::Error::Generic {
            store: "LocalFileSystem",
            source: "Upload aborted".into(),
        }
    }

    #[test]
    fn storage_failures_wrapped_by_parquet_are_retryable() {
        // What a writer reports when its staging is removed under it.
        let err = DataFusionError::ParquetError(Box::new(ParquetError::External(Box::new(
            aborted_upload(),
        ))));
        let e = TaskError::from_datafusion("output", err);
        assert!(e.is_retryable(), "{e}");
        let missing = object_store::Error::NotFound {
            path: "staging/x.parquet".into(),
            source: "gone".into(),
        };
        let err = DataFusionError::External(Box::new(missing));
        assert!(TaskError::from_datafusion("output", err).is_retryable());
        let full = std::io::Error::from(std::io::ErrorKind::StorageFull);
        let err = DataFusionError::ParquetError(Box::new(ParquetError::External(Box::new(full))));
        assert!(TaskError::from_datafusion("output", err).is_retryable());
    }

    #[test]
    fn undecodable_data_and_denied_access_are_the_specs_fault() {
        let err =
            DataFusionError::ParquetError(Box::new(ParquetError::General("corrupt footer".into())));
        assert_eq!(
            TaskError::from_datafusion("inputs[0]", err).exit_code(),
            EXIT_BAD_SPEC
        );
        let denied = object_store::Error::PermissionDenied {
            path: "out/x".into(),
            source: "403".into(),
        };
        assert_eq!(
            TaskError::from_store("output", denied).exit_code(),
            EXIT_BAD_SPEC
        );
        let err = DataFusionError::Plan("no such column".into());
        assert_eq!(
            TaskError::from_datafusion("sql", err).exit_code(),
            EXIT_BAD_SPEC
        );
    }

    #[test]
    fn an_input_gone_since_planning_is_retryable_and_says_so() {
        let gone = object_store::Error::NotFound {
            path: "raw/date=2024-03-01/19000000.snappy.parquet".into(),
            source: "404".into(),
        };
        let e = TaskError::from_store("inputs[0].files[3].uri", gone);
        assert!(e.is_retryable());
        let text = e.to_string();
        assert!(text.contains("19000000.snappy.parquet"), "{text}");
        assert!(
            text.contains("removed after the task was planned"),
            "{text}"
        );
    }
}
