//! Arrow schemas of the AWS Public Blockchain Data `eth` tables
//! (`s3://aws-public-blockchain/v1.0/eth/<table>/date=YYYY-MM-DD/`), by
//! name, in two variants:
//!
//! - `eth.<table>`: typed as the public dataset stores them. Its amounts
//!   are DOUBLE, which is inexact above 2^53 wei (about 0.009 ETH): such
//!   values were rounded before chainbatch ever read them.
//! - `eth.<table>.exact` (tables with amounts): what chainbatch writes: wei
//!   as DECIMAL(38,0), uint256 token amounts as DECIMAL(76,0), block
//!   difficulty as DECIMAL(38,0). No float ever touches a value.
//!
//! The columns themselves live in [`crate::eth::tables`], one file per
//! table. Every table is hive-partitioned by `date` (a string,
//! `YYYY-MM-DD`), which is not among the columns: the path holds it (the
//! public dataset's files hold a copy, checked against the path on read).

use crate::eth::tables::EthTable;
use chainbatch_executor::schema::ColumnSpec;

/// The names accepted by a catalog's `schema:` key.
pub fn names() -> Vec<String> {
    EthTable::ALL
        .into_iter()
        .flat_map(EthTable::schema_names)
        .collect()
}

/// The table and variant a schema name stands for (`eth.transactions.exact`).
pub fn parse_name(name: &str) -> Option<(EthTable, bool)> {
    let rest = name.strip_prefix("eth.")?;
    let (table, exact) = match rest.strip_suffix(".exact") {
        Some(t) => (t, true),
        None => (rest, false),
    };
    let table = EthTable::from_name(table)?;
    (!exact || table.has_exact()).then_some((table, exact))
}

/// The columns of a named schema (`eth.transactions.exact`).
pub fn named_columns(name: &str) -> Option<Vec<ColumnSpec>> {
    parse_name(name).map(|(t, exact)| t.columns(exact))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainbatch_executor::schema::{parse_type, type_name};

    #[test]
    fn every_named_schema_parses_and_round_trips() {
        for name in names() {
            for c in named_columns(&name).unwrap() {
                let dt = parse_type(&c.data_type).unwrap();
                assert_eq!(
                    parse_type(&type_name(&dt)).unwrap(),
                    dt,
                    "{name}.{}",
                    c.name
                );
            }
        }
        assert_eq!(
            names(),
            [
                "eth.blocks",
                "eth.blocks.exact",
                "eth.transactions",
                "eth.transactions.exact",
                "eth.logs",
                "eth.token_transfers",
                "eth.token_transfers.exact",
                "eth.traces",
                "eth.traces.exact",
                "eth.contracts",
            ]
        );
        assert!(named_columns("eth.logs.exact").is_none());
        assert!(named_columns("eth.receipts").is_none());
    }

    fn column(schema: &str, name: &str) -> ColumnSpec {
        named_columns(schema)
            .unwrap()
            .into_iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{schema} has no {name}"))
    }

    #[test]
    fn exact_variants_hold_wei_as_decimals() {
        assert_eq!(column("eth.transactions", "value").data_type, "double");
        assert_eq!(
            column("eth.transactions.exact", "value").data_type,
            "decimal(38,0)"
        );
        assert_eq!(
            column("eth.token_transfers.exact", "value").data_type,
            "decimal(76,0)"
        );
        assert_eq!(column("eth.traces", "gas").data_type, "double");
        assert_eq!(column("eth.traces.exact", "gas").data_type, "bigint");
    }

    #[test]
    fn schemas_match_the_producers_files() {
        let tx = named_columns("eth.transactions").unwrap();
        assert!(tx.iter().all(|c| c.name != "receipt_root"));
        assert!(tx.iter().all(|c| c.name != "date"));
        assert!(!column("eth.transactions", "hash").nullable);
        assert!(!column("eth.transactions", "block_timestamp").nullable);
        assert!(column("eth.transactions", "to_address").nullable);
        assert_eq!(
            column("eth.transactions", "last_modified").data_type,
            "timestamp(ms)"
        );
        let blocks = named_columns("eth.blocks").unwrap();
        assert!(blocks.iter().all(|c| c.name != "withdrawals_root"));
        assert!(!column("eth.blocks", "number").nullable);
        assert!(column("eth.traces", "transaction_hash").nullable);
    }
}
