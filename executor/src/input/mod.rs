//! A task's input tables: explicit files (or byte and row-group ranges) with
//! their hive partition values, or one bucket of a shuffle.

pub mod files;
pub mod order;
