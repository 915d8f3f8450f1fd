//! chainbatch: the driver. Config, catalog, pipelines, planner, backends,
//! commit, and the tools around them.

pub mod catalog;
pub mod conf;
pub mod eth;
