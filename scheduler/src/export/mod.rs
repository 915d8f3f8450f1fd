//! `chainbatch export`: a pipeline in another system's terms.

pub mod step_functions;
