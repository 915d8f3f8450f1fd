//! The AWS Public Blockchain Data `eth` tables: their columns, schemas,
//! import and synthetic data.

pub mod import;
pub mod schema;
pub mod synth;
pub mod synth_write;
pub mod tables;
