//! chainbatch executor: runs one task of a chainbatch stage.
//!
//! A [`spec::TaskSpec`] names the inputs, one SQL statement and the output;
//! [`run_task`] reads the inputs, runs the SQL with DataFusion, writes
//! the result in its [`layout::Layout`] below the attempt's staging directory
//! and writes the [`manifest::TaskManifest`] last. The executor knows nothing
//! of configuration files, catalogs or pipelines.

#![warn(missing_docs)]

pub mod allocator;
pub mod bloom_pruning;
pub mod distinct_aggregate;
pub mod distributed;
pub mod error;
mod external_sort;
mod input;
pub mod layout;
pub mod manifest;
pub mod parquet_file;
mod parquet_footer;
mod parquet_types;
mod runner;
pub mod schema;
pub mod session;
mod shuffle;
pub mod spec;
pub mod storage;
pub mod udf;

pub use error::{TaskError, TaskResult};
pub use manifest::TaskManifest;
pub use runner::{effective_parallelism, run_task, task_session};
pub use spec::TaskSpec;
