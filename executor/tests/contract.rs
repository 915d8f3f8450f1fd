//! The executor's contract, end to end: real files, real DataFusion, the real
//! `chainbatch-executor` binary in a child process.

mod support;

mod bad_specs;
mod bloom_pruning;
mod crash;
mod fixture_fees;
mod input_order;
mod layout_rules;
mod shuffle_and_codec;
