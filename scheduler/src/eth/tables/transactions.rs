//! `transactions`: one row per transaction, with its receipt.
//!
//! The producer writes `to_address` null for contract creations and
//! `receipt_contract_address` as "" when the receipt has none; type-0
//! transactions have `max_fee_per_gas` and `max_priority_fee_per_gas` 0.
//! It never writes `receipt_root` (ethereum-etl's pre-Byzantium field).

use super::{Column, LAST_MODIFIED, TableDef};

pub const TABLE: TableDef = TableDef {
    name: "transactions",
    columns: &[
        Column::required("hash", "string"),
        Column::optional("nonce", "bigint"),
        Column::required("transaction_index", "bigint"),
        Column::required("from_address", "string"),
        Column::optional("to_address", "string"),
        Column::amount("value", "double", "decimal(38,0)"),
        Column::optional("gas", "bigint"),
        Column::optional("gas_price", "bigint"),
        Column::optional("input", "string"),
        Column::optional("receipt_cumulative_gas_used", "bigint"),
        Column::optional("receipt_gas_used", "bigint"),
        Column::optional("receipt_contract_address", "string"),
        Column::optional("receipt_status", "bigint"),
        Column::required("block_timestamp", "timestamp"),
        Column::required("block_number", "bigint"),
        Column::required("block_hash", "string"),
        Column::optional("max_fee_per_gas", "bigint"),
        Column::optional("max_priority_fee_per_gas", "bigint"),
        Column::optional("transaction_type", "bigint"),
        Column::optional("receipt_effective_gas_price", "bigint"),
        LAST_MODIFIED,
    ],
    timestamp: "block_timestamp",
    sort_by: &["block_number", "transaction_index"],
    ethereum_etl_file: Some("transactions.jsonl"),
};
