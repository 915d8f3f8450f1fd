//! Parquet files as chainbatch reads and writes them: a footer read in one
//! request, and the file schema that keeps wei exact (DECIMAL(38,0) in
//! Arrow, declared row order in the footer).

pub use crate::parquet_footer::{arrow_schema, read_metadata};
pub use crate::parquet_types::{file_schema, sorting_columns, to_file_batch};
