//! `chainbatch bench layouts`: write one dataset in several layouts, run a
//! query suite against each, and say which layout serves the suite best.

pub mod cost;
pub mod layouts;
pub mod measure;
pub mod queries;
pub mod report;
pub mod written;
