//! `token_transfers`: one row per ERC-20 `Transfer` event. `value` is a
//! uint256: DOUBLE in the public dataset, DECIMAL(76,0) when exact.

use super::{Column, LAST_MODIFIED, TableDef};

pub const TABLE: TableDef = TableDef {
    name: "token_transfers",
    columns: &[
        Column::required("token_address", "string"),
        Column::optional("from_address", "string"),
        Column::optional("to_address", "string"),
        Column::amount("value", "double", "decimal(76,0)"),
        Column::required("transaction_hash", "string"),
        Column::required("log_index", "bigint"),
        Column::required("block_timestamp", "timestamp"),
        Column::required("block_number", "bigint"),
        Column::required("block_hash", "string"),
        LAST_MODIFIED,
    ],
    timestamp: "block_timestamp",
    sort_by: &["block_number", "log_index"],
    ethereum_etl_file: Some("token_transfers.jsonl"),
};
