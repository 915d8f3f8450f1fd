//! The `chainbatch` binary end to end: real config, real files, real
//! executor, checked against independent computations.

mod support;

mod aws_dataset;
mod backfill;
mod bad_input;
mod batch;
mod bench_layouts;
mod completeness;
mod concurrent;
mod config_errors;
mod crash;
mod datasets;
mod delta;
mod deploy;
mod distributed;
mod driver_job;
mod end_to_end;
mod glue;
mod planning;
mod s3;
mod s3_faults;
mod s3_restart;
mod soak;
mod step_functions;
mod weed;
