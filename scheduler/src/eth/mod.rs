//! The AWS Public Blockchain Data `eth` tables: schemas and synthetic data.

pub mod import;
pub mod schema;
pub mod synth;
pub mod synth_write;
