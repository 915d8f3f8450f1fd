//! The layout writer: partition, bucket, sort and size output files.

pub mod codec;
pub mod file_writer;
pub mod hive;
pub mod plan;
pub mod sink;
pub mod spec;
pub mod stats;

pub use spec::{BucketBy, ColumnOptions, Layout, PartitionColumn};
