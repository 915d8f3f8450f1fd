//! The `eth` tables: import of real exports, and the synthetic generator's
//! determinism, realism and cross-table consistency.

use crate::support::*;
use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::process::Command;

fn read_table(dir: &Path) -> Vec<RecordBatch> {
    let mut out = vec![];
    for f in data_files(dir) {
        let file = std::fs::File::open(dir.join(f)).unwrap();
        let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        out.extend(r.map(Result::unwrap));
    }
    out
}

/// The raw JSON text of a top-level scalar `key` in an ethereum-etl line.
fn raw_json_value(line: &str, key: &str) -> String {
    let at = line
        .find(&format!("\"{key}\": "))
        .unwrap_or_else(|| panic!("{key} in {line}"))
        + key.len()
        + 4;
    let rest = &line[at..];
    if let Some(s) = rest.strip_prefix('"') {
        return s[..s.find('"').unwrap()].to_string();
    }
    rest[..rest.find([',', '}']).unwrap()].trim().to_string()
}

/// A timestamp column of any unit as epoch seconds. Files store
/// microseconds, with the timestamp logical type.
fn epoch_seconds(c: &arrow::array::ArrayRef) -> arrow::array::Int64Array {
    assert!(
        matches!(
            c.data_type(),
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some(_))
        ),
        "timestamps are stored as UTC microseconds: {}",
        c.data_type()
    );
    let secs = arrow::compute::cast(
        c,
        &DataType::Timestamp(arrow::datatypes::TimeUnit::Second, None),
    )
    .unwrap();
    arrow::compute::cast(&secs, &DataType::Int64)
        .unwrap()
        .as_primitive::<Int64Type>()
        .clone()
}

fn cell(b: &RecordBatch, col: &str, row: usize) -> String {
    let c = b
        .column_by_name(col)
        .unwrap_or_else(|| panic!("column {col}"));
    if c.is_null(row) {
        return "null".into();
    }
    match c.data_type() {
        DataType::Timestamp(_, _) => epoch_seconds(c).value(row).to_string(),
        _ => arrow::util::display::array_value_to_string(c, row).unwrap(),
    }
}

#[test]
fn importing_the_fixture_gives_exactly_the_json() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(bin())
        .args(["import", "ethereum-etl"])
        .arg(repo().join("fixtures/ethereum-etl"))
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (table, key_cols, schema) in [
        (
            "transactions",
            vec!["hash"],
            chainbatch::eth::tables::EthTable::Transactions.columns(true),
        ),
        (
            "token_transfers",
            vec!["transaction_hash", "log_index"],
            chainbatch::eth::tables::EthTable::TokenTransfers.columns(true),
        ),
        (
            "blocks",
            vec!["number"],
            chainbatch::eth::tables::EthTable::Blocks.columns(true),
        ),
    ] {
        let batches = read_table(&dir.path().join(table));
        let mut got: HashMap<Vec<String>, (usize, usize)> = HashMap::new();
        for (bi, b) in batches.iter().enumerate() {
            for r in 0..b.num_rows() {
                got.insert(key_cols.iter().map(|k| cell(b, k, r)).collect(), (bi, r));
            }
        }
        let text =
            std::fs::read_to_string(repo().join(format!("fixtures/ethereum-etl/{table}.jsonl")))
                .unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(got.len(), lines.len(), "{table}: every row imported once");
        for line in lines {
            let key: Vec<String> = key_cols.iter().map(|k| raw_json_value(line, k)).collect();
            let (bi, r) = got[&key];
            for c in &schema {
                if !line.contains(&format!("\"{}\": ", c.name)) {
                    continue;
                }
                assert_eq!(
                    cell(&batches[bi], &c.name, r),
                    raw_json_value(line, &c.name),
                    "{table} {key:?} column {}",
                    c.name
                );
            }
        }
    }
    // Topics are lists, as in the JSON.
    let logs = read_table(&dir.path().join("logs"));
    let rows: usize = logs.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 681);
    let first_line =
        std::fs::read_to_string(repo().join("fixtures/ethereum-etl/logs.jsonl")).unwrap();
    let v: serde_json::Value = serde_json::from_str(first_line.lines().next().unwrap()).unwrap();
    let topics = logs[0]
        .column_by_name("topics")
        .unwrap()
        .as_list::<i32>()
        .value(0);
    let topics: Vec<&str> = topics
        .as_string::<i32>()
        .iter()
        .map(Option::unwrap)
        .collect();
    let want: Vec<&str> = v["topics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(topics, want);
}

/// Generates into `dir` and returns the per-table checksums.
fn generate(dir: &Path, seed: u64, rows: u64, days: u32) -> String {
    gen_raw(dir, seed, rows, days, "2024-03-04", 1)
        .lines()
        .filter(|l| l.contains("checksum"))
        .map(|l| l.rsplit(' ').next().unwrap().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

#[test]
fn generator_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let a = generate(&dir.path().join("a"), 7, 20_000, 2);
    let b = generate(&dir.path().join("b"), 7, 20_000, 2);
    let c = generate(&dir.path().join("c"), 8, 20_000, 2);
    assert_eq!(a.split(',').count(), 4, "one checksum per table: {a}");
    assert_eq!(a, b);
    assert_ne!(a, c);
    // Byte for byte, too.
    for f in data_files(&dir.path().join("a")) {
        assert_eq!(
            std::fs::read(dir.path().join("a").join(&f)).unwrap(),
            std::fs::read(dir.path().join("b").join(&f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn generated_data_looks_like_mainnet() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 1, 200_000, 7);
    let tx = read_table(&dir.path().join("transactions"));
    let n: usize = tx.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(n, 200_000);

    let mut senders: HashMap<String, u64> = HashMap::new();
    let mut per_day: BTreeMap<i64, u64> = BTreeMap::new();
    let (mut type0, mut type2, mut failed, mut big_values) = (0u64, 0u64, 0u64, 0u64);
    let mut methods: HashMap<String, u64> = HashMap::new();
    let mut calls = 0u64;
    let mut per_block: HashMap<i64, (u64, String)> = HashMap::new();
    let mut ok_hashes: HashMap<String, i64> = HashMap::new();
    let mut token_calls: HashMap<String, String> = HashMap::new();
    for b in &tx {
        let from = b.column_by_name("from_address").unwrap().as_string::<i32>();
        let ts = epoch_seconds(b.column_by_name("block_timestamp").unwrap());
        let block = b
            .column_by_name("block_number")
            .unwrap()
            .as_primitive::<Int64Type>();
        let typ = b
            .column_by_name("transaction_type")
            .unwrap()
            .as_primitive::<Int64Type>();
        let status = b
            .column_by_name("receipt_status")
            .unwrap()
            .as_primitive::<Int64Type>();
        let value = b
            .column_by_name("value")
            .unwrap()
            .as_primitive::<arrow::datatypes::Decimal128Type>();
        let input = b.column_by_name("input").unwrap().as_string::<i32>();
        let hash = b.column_by_name("hash").unwrap().as_string::<i32>();
        let bhash = b.column_by_name("block_hash").unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            *senders.entry(from.value(i).to_string()).or_default() += 1;
            *per_day.entry(ts.value(i) / 86_400).or_default() += 1;
            // 12-second blocks: block number and timestamp move together.
            assert_eq!(
                ts.value(i) - block.value(i) * 12,
                1_681_423_200 - 17_000_000 * 12
            );
            match typ.value(i) {
                0 => type0 += 1,
                2 => type2 += 1,
                t => panic!("type {t}"),
            }
            failed += u64::from(status.value(i) == 0);
            big_values += u64::from(value.value(i) > 1i128 << 53);
            if input.value(i).len() >= 10 {
                calls += 1;
                *methods.entry(input.value(i)[..10].to_string()).or_default() += 1;
                // ABI-encoded: a 4-byte method id, then 32-byte words.
                assert_eq!((input.value(i).len() - 10) % 64, 0, "{}", input.value(i));
            }
            let e = per_block
                .entry(block.value(i))
                .or_insert((0, bhash.value(i).to_string()));
            e.0 += 1;
            assert_eq!(e.1, bhash.value(i), "one hash per block");
            if status.value(i) == 1 {
                ok_hashes.insert(hash.value(i).to_string(), block.value(i));
                if ["0xa9059cbb", "0x23b872dd"]
                    .contains(&&input.value(i)[..input.value(i).len().min(10)])
                {
                    token_calls.insert(hash.value(i).to_string(), input.value(i).to_string());
                }
            }
        }
    }
    let mut counts: Vec<u64> = senders.values().copied().collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    let top = counts.len().div_ceil(100);
    let top_share = counts[..top].iter().sum::<u64>() as f64 / n as f64;
    assert!(
        top_share >= 0.20,
        "top 1% of senders send {:.1}%",
        top_share * 100.0
    );
    let (lo, hi) = (
        per_day.values().min().unwrap(),
        per_day.values().max().unwrap(),
    );
    assert_eq!(per_day.len(), 7);
    assert!(
        *hi as f64 >= 3.0 * *lo as f64,
        "busiest day {hi}, quietest {lo}"
    );
    assert!(
        type0 > 0 && type2 > type0,
        "type 0: {type0}, type 2: {type2}"
    );
    let failed_share = failed as f64 / n as f64;
    assert!(
        (0.01..0.03).contains(&failed_share),
        "failed {:.2}%",
        failed_share * 100.0
    );
    assert!(
        big_values > n as u64 / 100,
        "values beyond 2^53: {big_values}"
    );
    let mut m: Vec<u64> = methods.values().copied().collect();
    m.sort_unstable_by(|a, b| b.cmp(a));
    assert!(
        m.iter().take(11).sum::<u64>() as f64 >= 0.99 * calls as f64,
        "method ids come from a small set: {} distinct",
        m.len()
    );

    // Blocks: one row per block, counts and hashes matching the transactions.
    let blocks = read_table(&dir.path().join("blocks"));
    let mut block_rows = 0;
    for b in &blocks {
        let number = b
            .column_by_name("number")
            .unwrap()
            .as_primitive::<Int64Type>();
        let hash = b.column_by_name("hash").unwrap().as_string::<i32>();
        let count = b
            .column_by_name("transaction_count")
            .unwrap()
            .as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            block_rows += 1;
            let (txs, h) = per_block
                .get(&number.value(i))
                .cloned()
                .unwrap_or((0, String::new()));
            assert_eq!(count.value(i) as u64, txs, "block {}", number.value(i));
            if txs > 0 {
                assert_eq!(hash.value(i), h);
            }
        }
    }
    assert_eq!(block_rows, 7 * 7200);

    // Every transfer and log belongs to a successful transaction of its block.
    let mut seen = HashSet::new();
    for table in ["token_transfers", "logs"] {
        let rows = read_table(&dir.path().join(table));
        let mut total = 0;
        for b in &rows {
            let h = b
                .column_by_name("transaction_hash")
                .unwrap()
                .as_string::<i32>();
            let block = b
                .column_by_name("block_number")
                .unwrap()
                .as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                total += 1;
                assert_eq!(
                    ok_hashes.get(h.value(i)),
                    Some(&block.value(i)),
                    "{table} row of {}",
                    h.value(i)
                );
                seen.insert((table, h.value(i).to_string()));
            }
        }
        assert!(total > n / 20, "{table}: {total} rows");
    }

    // A transfer's recipient and amount are the last two words of its calldata.
    for b in &read_table(&dir.path().join("token_transfers")) {
        let h = b
            .column_by_name("transaction_hash")
            .unwrap()
            .as_string::<i32>();
        let to = b.column_by_name("to_address").unwrap().as_string::<i32>();
        let value = b
            .column_by_name("value")
            .unwrap()
            .as_primitive::<arrow::datatypes::Decimal256Type>();
        for i in 0..b.num_rows() {
            let input = &token_calls[h.value(i)];
            let words = &input[input.len() - 128..];
            assert_eq!(&words[..24], "0".repeat(24), "{input}");
            assert_eq!(&words[24..64], &to.value(i)[2..], "{input}");
            let amount = u128::from_str_radix(&words[64..], 16).unwrap();
            assert_eq!(amount as i128, value.value(i).as_i128(), "{input}");
        }
    }
}

#[test]
fn duckdb_and_pyarrow_read_the_output() {
    let python = std::env::var("CHAINBATCH_PYTHON").expect(
        "CHAINBATCH_PYTHON must name a Python with duckdb and pyarrow; scripts/test.sh creates one in .venv",
    );
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 3, 10_000, 2);
    let tx = read_table(&dir.path().join("transactions"));
    let mut total: i128 = 0;
    for b in &tx {
        let v = b
            .column_by_name("value")
            .unwrap()
            .as_primitive::<arrow::datatypes::Decimal128Type>();
        total += v.iter().flatten().sum::<i128>();
    }
    let script = r#"
import sys, duckdb, pyarrow.dataset as ds
root = sys.argv[1]
con = duckdb.connect()
n, dates, total = con.execute(
    f"SELECT count(*), count(DISTINCT date), CAST(sum(value) AS VARCHAR) FROM read_parquet('{root}/transactions/*/*.parquet', hive_partitioning=true)"
).fetchone()
con.execute("SET TimeZone = 'UTC'")
ts_type, first_day = con.execute(
    f"SELECT typeof(min(block_timestamp)), CAST(min(block_timestamp) AS DATE) FROM read_parquet('{root}/transactions/*/*.parquet')"
).fetchone()
t = ds.dataset(root + "/transactions", format="parquet", partitioning="hive").to_table()
print(n, dates, total, t.num_rows, len(set(t.column("date").to_pylist())), str(t.schema.field("value").type),
      ts_type, first_day, str(t.schema.field("block_timestamp").type))
"#;
    let out = Command::new(&python)
        .arg("-c")
        .arg(script)
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The first timestamp falls on the first partition's date.
    let mut days: Vec<String> = std::fs::read_dir(dir.path().join("transactions"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().replace("date=", ""))
        .collect();
    days.sort();
    assert_eq!(
        stdout.trim(),
        format!(
            "10000 2 {total} 10000 2 decimal128(38, 0) \
             TIMESTAMP WITH TIME ZONE {} timestamp[us, tz=UTC]",
            days[0]
        )
    );
}

#[test]
fn generated_files_declare_the_order_they_are_in() {
    let dir = tempfile::tempdir().unwrap();
    generate(dir.path(), 3, 30_000, 2);
    let expected: [(&str, &[&str]); 4] = [
        ("transactions", &["block_number", "transaction_index"]),
        ("blocks", &["number"]),
        ("logs", &["block_number"]),
        ("token_transfers", &["block_number"]),
    ];
    for (table, order) in expected {
        let tdir = dir.path().join(table);
        let files = data_files(&tdir);
        assert!(!files.is_empty(), "{table} has files");
        for f in files {
            let file = std::fs::File::open(tdir.join(&f)).unwrap();
            let builder =
                parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
                    .unwrap();
            let md = builder.metadata().clone();
            let descr = md.file_metadata().schema_descr();
            for g in md.row_groups() {
                let declared: Vec<String> = g
                    .sorting_columns()
                    .unwrap_or_else(|| panic!("{table}/{f} declares no order"))
                    .iter()
                    .map(|c| {
                        assert!(!c.descending);
                        descr.column(c.column_idx as usize).name().to_string()
                    })
                    .collect();
                assert_eq!(declared, order, "{table}/{f}");
            }
            // And the rows are in that order.
            let mut last: Option<Vec<i64>> = None;
            for b in builder.build().unwrap() {
                let b = b.unwrap();
                let cols: Vec<_> = order
                    .iter()
                    .map(|c| b.column_by_name(c).unwrap().as_primitive::<Int64Type>())
                    .collect();
                for i in 0..b.num_rows() {
                    let key: Vec<i64> = cols.iter().map(|c| c.value(i)).collect();
                    if let Some(l) = &last {
                        assert!(l <= &key, "{table}/{f}: {key:?} after {l:?}");
                    }
                    last = Some(key);
                }
            }
        }
    }
}

#[test]
fn an_import_cut_short_is_finished_by_gc_and_a_second_import_replaces_its_dates() {
    let dir = tempfile::tempdir().unwrap();
    let import = |crash_at: Option<&str>| {
        let mut c = Command::new(bin());
        c.args(["import", "ethereum-etl"])
            .arg(repo().join("fixtures/ethereum-etl"))
            .arg("--out")
            .arg(dir.path())
            .args(["--tables", "transactions"]);
        if let Some(step) = crash_at {
            c.env("CHAINBATCH_CRASH_AT", step);
        }
        c.output().unwrap()
    };
    let out_root = format!("out_root={}", dir.path().display());
    let chainbatch = |args: &[&str]| {
        Command::new(bin())
            .args(args)
            .arg("--conf")
            .arg(repo().join("conf"))
            .args(["--globals", &out_root])
            .output()
            .unwrap()
    };
    let rows = || -> usize {
        read_table(&dir.path().join("transactions"))
            .iter()
            .map(RecordBatch::num_rows)
            .sum()
    };
    // Cut after its publish plan is durable, before a file moved.
    let cut = import(Some("after_plan"));
    assert!(!cut.status.success());
    assert_eq!(
        rows(),
        0,
        "nothing published before the plan is carried out"
    );
    let gc = chainbatch(&["gc"]);
    let said = String::from_utf8_lossy(&gc.stdout);
    assert!(
        gc.status.success(),
        "{}",
        String::from_utf8_lossy(&gc.stderr)
    );
    assert!(
        said.contains("recovered run import-") && said.contains("finished its publish"),
        "{said}"
    );
    assert_eq!(rows(), 298, "gc finished the import's publish");
    // A second import replaces the date's file: no duplicate rows.
    let again = import(None);
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
    assert_eq!(rows(), 298);
    assert_eq!(
        data_files(&dir.path().join("transactions")),
        vec!["date=2023-05-02/part-00000.parquet".to_string()]
    );
    let runs = chainbatch(&["runs", "--format", "json"]);
    let runs: serde_json::Value = serde_json::from_slice(&runs.stdout).unwrap();
    let states: Vec<(&str, &str)> = runs
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["pipeline"].as_str().unwrap(),
                r["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(states.len(), 2, "{runs}");
    assert!(
        states.contains(&("import", "failed")) && states.contains(&("import", "succeeded")),
        "{states:?}"
    );
}
