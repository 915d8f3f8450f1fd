//! The DataFusion session chainbatch SQL is planned and run in. One
//! definition serves the driver's validation and every task, so that a node
//! validates with exactly the types and functions it runs with.

use crate::udf;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::prelude::{SessionConfig, SessionContext};
use std::sync::Arc;

/// The settings every chainbatch session shares.
pub fn config() -> SessionConfig {
    with_chainbatch_settings(SessionConfig::new())
}

/// `config` with chainbatch's settings (a Ballista session starts from
/// Ballista's own).
pub fn with_chainbatch_settings(mut config: SessionConfig) -> SessionConfig {
    let opts = config.options_mut();
    // Plain strings keep output files readable by every Parquet reader.
    opts.execution.parquet.schema_force_view_types = false;
    opts.sql_parser.map_string_types_to_utf8view = false;
    // Memory is bounded by the task's pool, not by the data: a hash join
    // holds its whole build side in memory and cannot spill, a sort-merge
    // join sorts both sides and spills beyond the pool.
    opts.optimizer.prefer_hash_join = false;
    config
}

/// A session on `runtime` with chainbatch's SQL functions registered.
pub fn context(
    config: SessionConfig,
    runtime: Arc<RuntimeEnv>,
) -> datafusion::error::Result<SessionContext> {
    let state = SessionContext::new_with_config_rt(config, runtime).state();
    let mut ctx = SessionContext::new_with_state(crate::distinct_aggregate::with_rule(state));
    udf::register_all(&mut ctx)?;
    Ok(ctx)
}
