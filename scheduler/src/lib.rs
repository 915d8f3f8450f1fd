//! chainbatch: the driver. Config, catalog, pipelines, planner, backends,
//! commit, and the tools around them.

pub mod athena;
pub mod backend;
pub mod backfill;
pub mod bench;
pub mod bucket_check;
pub mod catalog;
pub mod commit;
pub mod completeness;
pub mod conf;
pub mod delta;
pub mod driver;
pub mod error;
pub mod eth;
pub mod export;
pub mod glue;
pub mod json_object;
pub mod ledger;
pub mod paths;
pub mod pipeline;
pub mod plan;
pub mod progress;
pub mod time;
