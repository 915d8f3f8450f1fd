//! `traces`: one row per call, create, suicide or reward of a block's
//! `trace_block`. Rewards have no transaction (`transaction_hash`,
//! `transaction_index` null). The producer's schema check makes `gas` and
//! `gas_used` DOUBLE in the files (its published schema says bigint); the
//! exact variant holds them as BIGINT and `value` as DECIMAL(38,0) wei.

use super::{Column, LAST_MODIFIED, TableDef};

pub const TABLE: TableDef = TableDef {
    name: "traces",
    columns: &[
        Column::optional("transaction_hash", "string"),
        Column::optional("transaction_index", "bigint"),
        Column::optional("from_address", "string"),
        Column::optional("to_address", "string"),
        Column::amount("value", "double", "decimal(38,0)"),
        Column::optional("input", "string"),
        Column::optional("output", "string"),
        Column::required("trace_type", "string"),
        Column::optional("call_type", "string"),
        Column::optional("reward_type", "string"),
        Column::amount("gas", "double", "bigint"),
        Column::amount("gas_used", "double", "bigint"),
        Column::optional("subtraces", "bigint"),
        Column::optional("trace_address", "string"),
        Column::optional("error", "string"),
        Column::optional("status", "bigint"),
        Column::required("block_timestamp", "timestamp"),
        Column::required("block_number", "bigint"),
        Column::required("block_hash", "string"),
        Column::optional("trace_id", "string"),
        LAST_MODIFIED,
    ],
    timestamp: "block_timestamp",
    sort_by: &["block_number"],
    ethereum_etl_file: None,
};
