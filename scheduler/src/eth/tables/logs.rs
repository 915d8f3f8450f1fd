//! `logs`: one row per event log of a receipt.

use super::{Column, LAST_MODIFIED, TableDef};

pub const TABLE: TableDef = TableDef {
    name: "logs",
    columns: &[
        Column::required("log_index", "bigint"),
        Column::required("transaction_hash", "string"),
        Column::required("transaction_index", "bigint"),
        Column::required("address", "string"),
        Column::optional("data", "string"),
        Column::optional("topics", "list<string>"),
        Column::required("block_timestamp", "timestamp"),
        Column::required("block_number", "bigint"),
        Column::required("block_hash", "string"),
        LAST_MODIFIED,
    ],
    timestamp: "block_timestamp",
    sort_by: &["block_number", "log_index"],
    ethereum_etl_file: Some("logs.jsonl"),
};
