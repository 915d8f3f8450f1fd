//! `contracts`: one row per contract a successful `create` trace deployed.

use super::{Column, LAST_MODIFIED, TableDef};

pub const TABLE: TableDef = TableDef {
    name: "contracts",
    columns: &[
        Column::required("address", "string"),
        Column::optional("bytecode", "string"),
        Column::required("block_timestamp", "timestamp"),
        Column::required("block_number", "bigint"),
        Column::required("block_hash", "string"),
        LAST_MODIFIED,
    ],
    timestamp: "block_timestamp",
    sort_by: &["block_number"],
    ethereum_etl_file: None,
};
