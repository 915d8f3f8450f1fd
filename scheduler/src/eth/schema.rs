//! Arrow schemas of the AWS Public Blockchain Data `eth` tables
//! (`s3://aws-public-blockchain/v1.0/eth/<table>/date=YYYY-MM-DD/`), in two
//! variants:
//!
//! - `aws`: typed as the public dataset stores them. Its `value` columns are
//!   DOUBLE, which is inexact above 2^53 wei (about 0.009 ETH): such values
//!   were rounded before chainbatch ever read them.
//! - `exact`: what chainbatch writes: wei as DECIMAL(38,0), uint256 token
//!   amounts as DECIMAL(76,0), block difficulty as DECIMAL(38,0). No float
//!   ever touches a value.
//!
//! Every table is hive-partitioned by `date` (a string, `YYYY-MM-DD`), which
//! is not stored in the files.

use chainbatch_executor::schema::ColumnSpec;

/// The names accepted by a catalog's `schema:` key.
pub const NAMES: &[&str] = &[
    "eth.transactions",
    "eth.transactions.exact",
    "eth.blocks",
    "eth.blocks.exact",
    "eth.logs",
    "eth.token_transfers",
    "eth.token_transfers.exact",
];

fn cols(spec: &[(&str, &str)]) -> Vec<ColumnSpec> {
    spec.iter().map(|(n, t)| ColumnSpec::new(n, t)).collect()
}

pub fn transactions(exact: bool) -> Vec<ColumnSpec> {
    let value = if exact { "decimal(38,0)" } else { "double" };
    cols(&[
        ("hash", "string"),
        ("nonce", "bigint"),
        ("transaction_index", "bigint"),
        ("from_address", "string"),
        ("to_address", "string"),
        ("value", value),
        ("gas", "bigint"),
        ("gas_price", "bigint"),
        ("input", "string"),
        ("receipt_cumulative_gas_used", "bigint"),
        ("receipt_gas_used", "bigint"),
        ("receipt_contract_address", "string"),
        ("receipt_root", "string"),
        ("receipt_status", "bigint"),
        ("block_timestamp", "timestamp"),
        ("block_number", "bigint"),
        ("block_hash", "string"),
        ("max_fee_per_gas", "bigint"),
        ("max_priority_fee_per_gas", "bigint"),
        ("transaction_type", "bigint"),
        ("receipt_effective_gas_price", "bigint"),
    ])
}

pub fn blocks(exact: bool) -> Vec<ColumnSpec> {
    let big = if exact { "decimal(38,0)" } else { "double" };
    let mut c = cols(&[
        ("timestamp", "timestamp"),
        ("number", "bigint"),
        ("hash", "string"),
        ("parent_hash", "string"),
        ("nonce", "string"),
        ("sha3_uncles", "string"),
        ("logs_bloom", "string"),
        ("transactions_root", "string"),
        ("state_root", "string"),
        ("receipts_root", "string"),
        ("miner", "string"),
        ("difficulty", big),
        ("total_difficulty", big),
        ("size", "bigint"),
        ("extra_data", "string"),
        ("gas_limit", "bigint"),
        ("gas_used", "bigint"),
        ("transaction_count", "bigint"),
        ("base_fee_per_gas", "bigint"),
    ]);
    c.push(ColumnSpec::new("withdrawals_root", "string"));
    c
}

pub fn logs() -> Vec<ColumnSpec> {
    cols(&[
        ("log_index", "bigint"),
        ("transaction_hash", "string"),
        ("transaction_index", "bigint"),
        ("address", "string"),
        ("data", "string"),
        ("topics", "list<string>"),
        ("block_timestamp", "timestamp"),
        ("block_number", "bigint"),
        ("block_hash", "string"),
    ])
}

pub fn token_transfers(exact: bool) -> Vec<ColumnSpec> {
    let value = if exact { "decimal(76,0)" } else { "double" };
    cols(&[
        ("token_address", "string"),
        ("from_address", "string"),
        ("to_address", "string"),
        ("value", value),
        ("transaction_hash", "string"),
        ("log_index", "bigint"),
        ("block_timestamp", "timestamp"),
        ("block_number", "bigint"),
        ("block_hash", "string"),
    ])
}

/// The columns of a named schema (`eth.transactions.exact`).
pub fn named_columns(name: &str) -> Option<Vec<ColumnSpec>> {
    Some(match name {
        "eth.transactions" => transactions(false),
        "eth.transactions.exact" => transactions(true),
        "eth.blocks" => blocks(false),
        "eth.blocks.exact" => blocks(true),
        "eth.logs" => logs(),
        "eth.token_transfers" => token_transfers(false),
        "eth.token_transfers.exact" => token_transfers(true),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chainbatch_executor::schema::{parse_type, type_name};

    #[test]
    fn every_named_schema_parses_and_round_trips() {
        for name in NAMES {
            for c in named_columns(name).unwrap() {
                let dt = parse_type(&c.data_type).unwrap();
                assert_eq!(
                    parse_type(&type_name(&dt)).unwrap(),
                    dt,
                    "{name}.{}",
                    c.name
                );
            }
        }
    }

    #[test]
    fn exact_variants_hold_wei_as_decimals() {
        let tx = transactions(true);
        assert_eq!(
            tx.iter().find(|c| c.name == "value").unwrap().data_type,
            "decimal(38,0)"
        );
        let tt = token_transfers(true);
        assert_eq!(
            tt.iter().find(|c| c.name == "value").unwrap().data_type,
            "decimal(76,0)"
        );
    }
}
