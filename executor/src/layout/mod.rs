//! The layout writer: partition, bucket, sort and size output files.

mod bucket_routing;
mod codec_memory;
mod dictionary;
mod file_writer;
pub mod hive;
pub(crate) mod plan;
pub(crate) mod plan_codec;
pub(crate) mod sink;
mod spec;
pub(crate) mod stats;

pub(crate) use dictionary::Dictionary;
pub use file_writer::row_checksum;
pub use spec::{BucketBy, ColumnOptions, Layout, PartitionColumn};
