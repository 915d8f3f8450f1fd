//! A task's input tables: explicit files (or byte and row-group ranges) with
//! their hive partition values, or one bucket of a shuffle.

pub(crate) mod files;
pub(crate) mod order;
pub(crate) mod prefetch;
pub(crate) mod range_sort;
