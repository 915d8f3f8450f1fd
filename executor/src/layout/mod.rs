//! The layout writer: partition, bucket, sort and size output files.

pub mod dictionary;
pub mod file_writer;
pub mod hive;
pub mod plan;
pub mod plan_codec;
pub mod sink;
pub mod spec;
pub mod stats;

pub use dictionary::Dictionary;
pub use spec::{BucketBy, ColumnOptions, Layout, PartitionColumn};
