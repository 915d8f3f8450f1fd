//! `blocks`: one row per block. The producer keeps no `withdrawals_root`
//! (nor any field newer than London): its schema check drops every column
//! it does not list. `base_fee_per_gas` is null before London.

use super::{Column, LAST_MODIFIED, TableDef};

pub const TABLE: TableDef = TableDef {
    name: "blocks",
    columns: &[
        Column::required("timestamp", "timestamp"),
        Column::required("number", "bigint"),
        Column::required("hash", "string"),
        Column::required("parent_hash", "string"),
        Column::optional("nonce", "string"),
        Column::optional("sha3_uncles", "string"),
        Column::optional("logs_bloom", "string"),
        Column::optional("transactions_root", "string"),
        Column::optional("state_root", "string"),
        Column::optional("receipts_root", "string"),
        Column::optional("miner", "string"),
        Column::amount("difficulty", "double", "decimal(38,0)"),
        Column::amount("total_difficulty", "double", "decimal(38,0)"),
        Column::optional("size", "bigint"),
        Column::optional("extra_data", "string"),
        Column::optional("gas_limit", "bigint"),
        Column::optional("gas_used", "bigint"),
        Column::optional("transaction_count", "bigint"),
        Column::optional("base_fee_per_gas", "bigint"),
        LAST_MODIFIED,
    ],
    timestamp: "timestamp",
    sort_by: &["number"],
    ethereum_etl_file: Some("blocks.jsonl"),
};
