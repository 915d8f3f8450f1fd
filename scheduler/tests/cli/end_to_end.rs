//! `chainbatch run` on the real fixture and on generated data, checked
//! against computations that do not go through chainbatch.

use crate::support::*;
use arrow::array::AsArray;
use arrow::datatypes::{Decimal128Type, Int64Type};
use std::collections::BTreeMap;

#[derive(Default, Debug, PartialEq)]
struct AddressStats {
    tx_count: u64,
    fee: u128,
    value: u128,
    failed: u64,
}

/// Per sender, from the fixture's JSON text, with integer arithmetic only.
fn fixture_stats() -> BTreeMap<String, AddressStats> {
    let text =
        std::fs::read_to_string(repo().join("fixtures/ethereum-etl/transactions.jsonl")).unwrap();
    let mut out: BTreeMap<String, AddressStats> = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let at = line.find("\"value\": ").unwrap() + 9;
        let value: u128 = line[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
            .parse()
            .unwrap();
        let s = out
            .entry(v["from_address"].as_str().unwrap().to_lowercase())
            .or_default();
        s.tx_count += 1;
        s.fee += v["receipt_gas_used"].as_u64().unwrap() as u128
            * v["receipt_effective_gas_price"].as_u64().unwrap() as u128;
        s.value += value;
        s.failed += u64::from(v["receipt_status"].as_u64().unwrap() == 0);
    }
    out
}

#[tokio::test]
async fn eth_daily_on_the_mainnet_fixture_is_exact() {
    let p = Project::fixture();
    let stdout = p.run_ok(&["run", "--pipeline", "eth_daily"]);
    assert!(stdout.contains("succeeded"), "{stdout}");
    let expected = fixture_stats();

    let got = p
        .query("daily_address_stats", "SELECT from_address, tx_count, CAST(total_fee_wei AS VARCHAR), CAST(total_value_wei AS VARCHAR), failed_count, date FROM t")
        .await;
    let rows = rows_as_text(&got);
    assert_eq!(rows.len(), expected.len());
    for r in rows {
        let e = &expected[&r[0]];
        assert_eq!(r[1], e.tx_count.to_string(), "tx_count of {}", r[0]);
        assert_eq!(r[2], e.fee.to_string(), "fee of {}", r[0]);
        assert_eq!(r[3], e.value.to_string(), "value of {}", r[0]);
        assert_eq!(r[4], e.failed.to_string(), "failed of {}", r[0]);
        assert_eq!(r[5], "2023-05-02");
    }

    let summary = rows_as_text(&p.query("daily_summary", "SELECT date, tx_count, senders, CAST(total_fee_wei AS VARCHAR), CAST(total_value_wei AS VARCHAR), failed_count FROM t").await);
    let total = |f: fn(&AddressStats) -> u128| expected.values().map(f).sum::<u128>().to_string();
    assert_eq!(
        summary,
        vec![vec![
            "2023-05-02".to_string(),
            "298".into(),
            expected.len().to_string(),
            total(|s| s.fee),
            total(|s| s.value),
            total(|s| s.failed as u128),
        ]]
    );

    // Rerunning replaces the partitions: same rows, no duplicates.
    let files_before = data_files(&p.out());
    p.run_ok(&["run", "--pipeline", "eth_daily"]);
    assert_eq!(data_files(&p.out()), files_before);
    let n = p
        .query(
            "clean_transactions",
            "SELECT count(*), count(DISTINCT hash) FROM t",
        )
        .await;
    assert_eq!(
        rows_as_text(&n),
        vec![vec!["298".to_string(), "298".into()]]
    );

    let runs = p.run_ok(&["runs"]);
    assert_eq!(runs.matches("succeeded").count(), 2, "{runs}");
}

#[tokio::test]
async fn process_backend_gives_the_same_output() {
    let local = Project::fixture();
    local.run_ok(&["run"]);
    let process = Project::fixture();
    let out = process.run_ok(&["run", "--backend", "process", "--parallelism", "2"]);
    assert!(out.contains("succeeded"));
    for ds in ["clean_transactions", "daily_address_stats", "daily_summary"] {
        let sql = "SELECT * FROM t ORDER BY 1, 2";
        assert_eq!(
            rows_as_text(&local.query(ds, sql).await),
            rows_as_text(&process.query(ds, sql).await),
            "{ds}"
        );
    }
}

/// Per date: transactions and total fee, read straight from the raw files.
fn raw_per_date(raw: &std::path::Path) -> BTreeMap<String, (u64, i128)> {
    let mut out: BTreeMap<String, (u64, i128)> = BTreeMap::new();
    for f in data_files(&raw.join("transactions")) {
        let date = f
            .split('/')
            .next()
            .unwrap()
            .trim_start_matches("date=")
            .to_string();
        let file = std::fs::File::open(raw.join("transactions").join(&f)).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for b in reader {
            let b = b.unwrap();
            let used = b
                .column_by_name("receipt_gas_used")
                .unwrap()
                .as_primitive::<Int64Type>()
                .clone();
            let price = b
                .column_by_name("receipt_effective_gas_price")
                .unwrap()
                .as_primitive::<Int64Type>()
                .clone();
            let e = out.entry(date.clone()).or_default();
            for i in 0..b.num_rows() {
                e.0 += 1;
                e.1 += used.value(i) as i128 * price.value(i) as i128;
            }
        }
    }
    out
}

#[tokio::test]
async fn generated_data_window_and_selection() {
    let p = Project::generated(30_000, 3, 2);
    let expected = raw_per_date(&p.raw_root);
    assert_eq!(expected.len(), 3);

    // Only the middle day.
    p.run_ok(&["run", "--dates", "2024-03-02"]);
    let clean = rows_as_text(
        &p.query("clean_transactions", "SELECT DISTINCT date FROM t")
            .await,
    );
    assert_eq!(clean, vec![vec!["2024-03-02".to_string()]]);

    // All days.
    p.run_ok(&["run", "--dates", "2024-03-01..2024-03-03"]);
    let got = p
        .query(
            "daily_summary",
            "SELECT date, tx_count, total_fee_wei FROM t ORDER BY date",
        )
        .await;
    let mut seen = BTreeMap::new();
    for b in &got {
        let fees = b.column(2).as_primitive::<Decimal128Type>();
        let counts = arrow::compute::cast(b.column(1), &arrow::datatypes::DataType::Int64).unwrap();
        for i in 0..b.num_rows() {
            let date = arrow::util::display::array_value_to_string(b.column(0), i).unwrap();
            seen.insert(
                date,
                (
                    counts.as_primitive::<Int64Type>().value(i) as u64,
                    fees.value(i),
                ),
            );
        }
    }
    assert_eq!(seen, expected);

    // --nodes runs exactly that node: the others' files stay as they were.
    let clean_files = data_files(&p.out().join("clean_transactions"));
    let mtime = |rel: &str| {
        std::fs::metadata(p.out().join("clean_transactions").join(rel))
            .unwrap()
            .modified()
            .unwrap()
    };
    let before = mtime(&clean_files[0]);
    std::thread::sleep(std::time::Duration::from_millis(20));
    let out = p.run_ok(&["run", "--nodes", "daily_summary", "--log-format", "json"]);
    assert!(
        out.contains("daily_summary") && !out.contains("clean_transactions"),
        "{out}"
    );
    assert_eq!(mtime(&clean_files[0]), before);

    // --tags and --from-nodes/--to-nodes select by the DAG.
    let plan = p.run_ok(&["plan", "--tags", "stats", "--format", "json"]);
    let nodes: Vec<String> = serde_json::from_str::<serde_json::Value>(&plan)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(nodes, vec!["daily_address_stats", "daily_summary"]);
    let plan = p.run_ok(&["plan", "--to-nodes", "daily_summary", "--format", "json"]);
    let nodes: Vec<String> = serde_json::from_str::<serde_json::Value>(&plan)
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["node"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(nodes, vec!["clean_transactions", "daily_summary"]);
    let plan = p.run_ok(&[
        "plan",
        "--from-nodes",
        "clean_transactions",
        "--nodes",
        "daily_summary,clean_transactions",
        "--format",
        "json",
    ]);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&plan)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

/// An executor that fails in a chosen way before running the real one.
fn faulty_executor(dir: &std::path::Path, name: &str, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    let script = format!(
        "#!/bin/sh\n{body}\nexec {} \"$@\"\n",
        executor_bin().display()
    );
    std::fs::write(&path, script).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path
}

#[tokio::test]
async fn process_backend_retries_what_a_retry_can_fix_and_nothing_else() {
    let reference = Project::fixture();
    reference.run_ok(&["run"]);
    let expected = rows_as_text(&reference.query("daily_summary", "SELECT * FROM t").await);

    // Attempt 1 exits 4 (I/O) or is killed: retried, and the output is exact.
    for (name, fault) in [
        (
            "io-failure",
            "if [ \"$AWS_BATCH_JOB_ATTEMPT\" = 1 ]; then echo injected >&2; exit 4; fi",
        ),
        (
            "killed",
            "if [ \"$AWS_BATCH_JOB_ATTEMPT\" = 1 ]; then kill -9 $$; fi",
        ),
    ] {
        let p = Project::fixture();
        let exe = faulty_executor(p.dir.path(), name, fault);
        let o = p
            .command(&["run", "--backend", "process"])
            .env("CHAINBATCH_EXECUTOR", &exe)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{name}: {stderr}");
        assert!(
            stderr.contains("attempt 1 failed, retrying"),
            "{name}: {stderr}"
        );
        assert_eq!(
            rows_as_text(&p.query("daily_summary", "SELECT * FROM t").await),
            expected,
            "{name}"
        );
    }

    // A bad spec (exit 3) is never retried; nothing is published.
    let p = Project::fixture();
    let exe = faulty_executor(
        p.dir.path(),
        "bad-spec",
        "echo 'bad spec: sql: injected' >&2; exit 3",
    );
    let o = p
        .command(&["run", "--backend", "process", "--max-attempts", "5"])
        .env("CHAINBATCH_EXECUTOR", &exe)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("failed after 1 attempt(s)") && stderr.contains("exit code 3"),
        "{stderr}"
    );
    assert!(data_files(&p.out().join("clean_transactions")).is_empty());

    // Retries stop at --max-attempts.
    let p = Project::fixture();
    let exe = faulty_executor(p.dir.path(), "always-io", "exit 4");
    let o = p
        .command(&["run", "--backend", "process", "--max-attempts", "2"])
        .env("CHAINBATCH_EXECUTOR", &exe)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("failed after 2 attempt(s)"));
}
