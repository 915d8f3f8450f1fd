//! Exact fees over 298 real mainnet transactions.

use crate::support::*;
use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Decimal128Type};
use chainbatch_executor::layout::{Layout, PartitionColumn};
use chainbatch_executor::schema::ColumnSpec;
use chainbatch_executor::spec::{InputFile, InputFormat, InputTable};
use std::collections::HashMap;

pub fn fixture(name: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/ethereum-etl")
        .join(name)
}

fn transactions_input() -> InputTable {
    let c = |n: &str, t: &str| ColumnSpec::new(n, t);
    InputTable {
        name: "transactions".into(),
        format: InputFormat::Jsonl,
        files: vec![InputFile::whole(
            fixture("transactions.jsonl").display().to_string(),
        )],
        schema: Some(vec![
            c("hash", "string"),
            c("from_address", "string"),
            c("to_address", "string"),
            c("value", "decimal(38,0)"),
            c("input", "string"),
            c("block_timestamp", "timestamp"),
            c("block_number", "bigint"),
            c("receipt_gas_used", "bigint"),
            c("receipt_effective_gas_price", "bigint"),
            c("receipt_status", "bigint"),
        ]),
        partition_columns: vec![],
        shuffle: None,
    }
}

/// The fixture's numbers, read from the JSON text as integers.
fn expected() -> HashMap<String, (u128, String)> {
    let text = std::fs::read_to_string(fixture("transactions.jsonl")).unwrap();
    text.lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let gas = v["receipt_gas_used"].as_u64().unwrap() as u128;
            let price = v["receipt_effective_gas_price"].as_u64().unwrap() as u128;
            // `value` can exceed u64: take its digits from the text.
            let at = line.find("\"value\": ").unwrap() + 9;
            let digits: String = line[at..]
                .chars()
                .take_while(|c| c.is_ascii_digit())
                .collect();
            (
                v["hash"].as_str().unwrap().to_string(),
                (gas * price, digits),
            )
        })
        .collect()
}

#[tokio::test]
async fn fee_wei_is_exact_on_real_mainnet_data() {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout {
        partition_by: vec![PartitionColumn::Derived {
            name: "date".into(),
            expr: "CAST(block_timestamp AS DATE)".into(),
        }],
        sort_by: vec!["block_number".into()],
        ..Layout::default()
    };
    let sql = "SELECT hash, block_number, block_timestamp, \
               CAST(receipt_gas_used AS DECIMAL(38,0)) * CAST(receipt_effective_gas_price AS DECIMAL(38,0)) AS fee_wei, \
               value, wei_to_eth(value) AS value_eth, method_id(input) AS method_id, \
               normalize_address(from_address) AS from_address \
               FROM transactions";
    let spec = table_spec(vec![transactions_input()], sql, layout, dir.path());
    let manifest = chainbatch_executor::run_task(&spec, 1).await.unwrap();
    assert_eq!(manifest.rows, 298);
    assert_eq!(manifest.partitions.len(), 1);
    assert_eq!(manifest.partitions[0].path, "date=2023-05-02");

    let out = dir.path().join("run-1/0/0/attempt-1");
    let batches: Vec<RecordBatch> = read_back(
        &out,
        &[("date", DataType::Utf8)],
        "SELECT hash, fee_wei, value, value_eth FROM out",
    )
    .await;
    let expected = expected();
    let mut seen = 0;
    let mut total: u128 = 0;
    for b in &batches {
        let hashes = b.column(0).as_string::<i32>();
        let fees = b.column(1).as_primitive::<Decimal128Type>();
        let values = b.column(2).as_primitive::<Decimal128Type>();
        for i in 0..b.num_rows() {
            let (fee, value) = &expected[hashes.value(i)];
            assert_eq!(fees.value(i) as u128, *fee, "fee of {}", hashes.value(i));
            assert_eq!(
                values.value(i).to_string(),
                *value,
                "value of {}",
                hashes.value(i)
            );
            total += fees.value(i) as u128;
            seen += 1;
        }
    }
    assert_eq!(seen, 298);
    let expected_total: u128 = expected.values().map(|(f, _)| f).sum();
    assert_eq!(total, expected_total);

    // The largest value (3.2e19 wei) survives beyond 2^53 and reads as ETH exactly.
    let max = read_back(
        &out,
        &[("date", DataType::Utf8)],
        "SELECT CAST(max(value_eth) AS VARCHAR) FROM out",
    )
    .await;
    let max_wei = expected
        .values()
        .map(|(_, v)| v.parse::<u128>().unwrap())
        .max()
        .unwrap();
    let eth = format!(
        "{}.{:018}",
        max_wei / 10u128.pow(18),
        max_wei % 10u128.pow(18)
    );
    assert_eq!(single_string(&max), eth);
    assert!(max_wei > 1u128 << 53);
}
