//! `chainbatch run --env aws` on files written the way the AWS Public
//! Blockchain Data producer writes them (`scheduler/tests/cli/peers/producer_fixture.py`, from
//! the real mainnet fixture): pandas through pyarrow, `date` and
//! `last_modified` inside, naive timestamps in every unit, DOUBLE `value`,
//! compacted and per-block days. Only `raw_root` and `out_root` are
//! redirected; results are checked against the fixture's JSON with integer
//! arithmetic.

use crate::support::*;
use std::path::Path;
use std::process::{Command, Output};

/// `scheduler/tests/cli/peers/producer_fixture.py` into `raw` (`<raw>/transactions/date=.../`).
fn producer_files(raw: &Path, args: &[&str]) {
    let out = Command::new(python())
        .arg(repo().join("scheduler/tests/cli/peers/producer_fixture.py"))
        .arg("--source")
        .arg(repo().join("fixtures/ethereum-etl"))
        .arg("--out")
        .arg(raw)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "producer_fixture.py {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs Python `code` with `args` (pyarrow available).
fn py(code: &str, args: &[&str]) {
    let out = Command::new(python())
        .arg("-c")
        .arg(code)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn run_aws(p: &Project, raw: &Path) -> Output {
    run_aws_with(p, raw, &[])
}

fn run_aws_with(p: &Project, raw: &Path, extra: &[&str]) -> Output {
    aws_command(p, raw, extra).output().unwrap()
}

/// `chainbatch run --env aws` of eth_daily on `raw`, writing below the
/// project: outputs on local disk, so no Glue catalog to register them in.
fn aws_command(p: &Project, raw: &Path, extra: &[&str]) -> Command {
    let mut args = vec![
        "run",
        "--env",
        "aws",
        "--pipeline",
        "eth_daily",
        "--globals",
        "glue=null",
    ];
    args.extend_from_slice(extra);
    p.command_on(
        &args,
        &raw.display().to_string(),
        &p.out().display().to_string(),
    )
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The day's totals from the fixture's JSON text, in integers: the count,
/// fees, values as the producer stores them (a double of the wei amount,
/// made an integer again), failures, first and last block and timestamp.
fn expected_summary() -> Vec<String> {
    let text =
        std::fs::read_to_string(repo().join("fixtures/ethereum-etl/transactions.jsonl")).unwrap();
    let (mut n, mut fee, mut value, mut failed) = (0u64, 0u128, 0u128, 0u64);
    let (mut first, mut last) = (u64::MAX, 0u64);
    let mut senders = std::collections::BTreeSet::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let at = line.find("\"value\": ").unwrap() + 9;
        let wei: u128 = line[at..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect::<String>()
            .parse()
            .unwrap();
        n += 1;
        fee += v["receipt_gas_used"].as_u64().unwrap() as u128
            * v["receipt_effective_gas_price"].as_u64().unwrap() as u128;
        // Python's float(int) and Rust's `as f64` both round to nearest.
        value += (wei as f64) as u128;
        failed += u64::from(v["receipt_status"].as_u64().unwrap() == 0);
        let b = v["block_number"].as_u64().unwrap();
        first = first.min(b);
        last = last.max(b);
        senders.insert(v["from_address"].as_str().unwrap().to_lowercase());
    }
    vec![
        "2023-05-02".into(),
        n.to_string(),
        senders.len().to_string(),
        fee.to_string(),
        value.to_string(),
        failed.to_string(),
        first.to_string(),
        last.to_string(),
    ]
}

#[tokio::test]
async fn eth_daily_reads_the_producers_files_in_every_shape_and_unit() {
    let expected = expected_summary();
    for args in [
        &[
            "--shape",
            "compacted",
            "--timestamps",
            "ms",
            "--rows-per-file",
            "100",
        ][..],
        &["--shape", "blocks", "--timestamps", "ns"],
        &["--shape", "compacted", "--timestamps", "int96"],
        &[
            "--shape",
            "blocks",
            "--timestamps",
            "us",
            "--pandas2-strings",
        ],
    ] {
        let p = Project::fixture();
        let raw = p.dir.path().join("raw");
        producer_files(&raw, args);
        let files = data_files(&raw.join("transactions"));
        let names: Vec<&str> = files
            .iter()
            .map(|f| f.strip_prefix("date=2023-05-02/").unwrap())
            .map(|f| f.strip_suffix(".snappy.parquet").unwrap())
            .collect();
        if args[1] == "blocks" {
            assert_eq!(names, ["17173049", "17173050"]);
        } else {
            let n = if args.contains(&"--rows-per-file") {
                2
            } else {
                1
            };
            assert_eq!(names.len(), n, "{names:?}");
            assert!(
                names.iter().all(|f| f.starts_with("transactions-")),
                "{names:?}"
            );
        }
        let o = run_aws(&p, &raw);
        assert!(o.status.success(), "{args:?}: {}", stderr(&o));

        let summary = rows_as_text(&p.query("daily_summary", "SELECT date, tx_count, senders, CAST(total_fee_wei AS VARCHAR), CAST(total_value_wei AS VARCHAR), failed_count, first_block, last_block FROM t").await);
        assert_eq!(summary, vec![expected.clone()], "{args:?}");

        // Naive timestamps of every unit are UTC; the one contract creation
        // has no recipient (null, or "None" from older pandas).
        let clean = rows_as_text(
            &p.query(
                "clean_transactions",
                "SELECT count(*), count(DISTINCT hash), count(to_address), \
                 CAST(to_unixtime(min(block_timestamp)) AS BIGINT), \
                 CAST(to_unixtime(max(block_timestamp)) AS BIGINT) FROM t",
            )
            .await,
        );
        assert_eq!(
            clean,
            vec![vec![
                "298".to_string(),
                "298".into(),
                "297".into(),
                "1683029999".into(),
                "1683030011".into()
            ]],
            "{args:?}"
        );
    }
}

const DROP_COLUMN: &str = r#"
import sys, pyarrow.parquet as pq
path, column = sys.argv[1], sys.argv[2]
t = pq.read_table(path)
pq.write_table(t.drop_columns([column]), path, compression="snappy")
"#;

/// The per-block files of the fixture, the first block's file and its rows.
fn per_block_day(raw: &Path) -> (String, u64) {
    producer_files(raw, &["--shape", "blocks", "--timestamps", "ns"]);
    let day = raw.join("transactions/date=2023-05-02");
    let first = "17173049.snappy.parquet".to_string();
    assert!(day.join(&first).exists());
    let text =
        std::fs::read_to_string(repo().join("fixtures/ethereum-etl/transactions.jsonl")).unwrap();
    let rows = text
        .lines()
        .filter(|l| l.contains("\"block_number\": 17173049,"))
        .count() as u64;
    (day.join(first).display().to_string(), rows)
}

#[tokio::test]
async fn a_file_without_a_nullable_column_reads_it_as_null() {
    let p = Project::fixture();
    let raw = p.dir.path().join("raw");
    let (file, rows) = per_block_day(&raw);
    py(DROP_COLUMN, &[&file, "to_address"]);
    let o = run_aws(&p, &raw);
    assert!(o.status.success(), "{}", stderr(&o));
    let got = rows_as_text(
        &p.query(
            "clean_transactions",
            "SELECT block_number, count(*), count(to_address) FROM t GROUP BY 1 ORDER BY 1",
        )
        .await,
    );
    assert_eq!(
        got[0],
        vec!["17173049".to_string(), rows.to_string(), "0".into()]
    );
    assert_eq!(got[1][0], "17173050");
    assert_eq!(
        got[1][1],
        got[1][2].parse::<u64>().map(|n| n + 1).unwrap().to_string()
    );
}

#[test]
fn a_file_without_a_required_column_fails_naming_file_and_column() {
    let p = Project::fixture();
    let raw = p.dir.path().join("raw");
    let (file, _) = per_block_day(&raw);
    py(DROP_COLUMN, &[&file, "block_hash"]);
    let o = run_aws(&p, &raw);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("\"block_hash\"") && err.contains("17173049.snappy.parquet"),
        "{err}"
    );
    assert!(err.contains("required"), "{err}");
}

#[test]
fn a_file_whose_date_disagrees_with_its_path_fails() {
    let p = Project::fixture();
    let raw = p.dir.path().join("raw");
    let (file, _) = per_block_day(&raw);
    let moved = raw.join("transactions/date=2023-05-03");
    std::fs::create_dir_all(&moved).unwrap();
    std::fs::rename(&file, moved.join("17173049.snappy.parquet")).unwrap();
    // The completeness gate refuses both days first: the block is missing
    // from one and has no blocks-table entry in the other.
    let o = run_aws(&p, &raw);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("2023-05-02: 1 block(s) in 17173049..17173049"),
        "{err}"
    );
    assert!(
        err.contains("2023-05-03: no blocks in `raw_blocks`"),
        "{err}"
    );
    // Past the gate, reading the file names the disagreement.
    let o = run_aws_with(&p, &raw, &["--allow-incomplete"]);
    assert!(!o.status.success());
    let err = stderr(&o);
    assert!(
        err.contains("date=2023-05-03") && err.contains("2023-05-02") && err.contains("17173049"),
        "{err}"
    );
}

/// The nightly compaction lands between planning and reading: the per-block
/// files a task lists are replaced by compacted ones. Every attempt fails as
/// retryable, naming the file that is gone; the run publishes nothing and
/// fails (resumable); the next run plans the compacted files and is exact.
#[tokio::test]
async fn a_compaction_between_plan_and_read_is_named_and_a_rerun_reads_the_compacted_day() {
    let p = Project::fixture();
    let raw = p.dir.path().join("raw");
    producer_files(&raw, &["--shape", "blocks", "--timestamps", "ns"]);
    let compacted = p.dir.path().join("compacted");
    producer_files(&compacted, &["--shape", "compacted", "--timestamps", "ms"]);
    let day = raw.join("transactions/date=2023-05-02");
    let compacted_day = compacted.join("transactions/date=2023-05-02");
    // An executor that first does what the compaction does: writes the
    // compacted files, then deletes the per-block ones.
    let marker = p.dir.path().join("compacted.done");
    let script = p.dir.path().join("compacting-executor");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n\
             if [ ! -e '{marker}' ]; then\n  touch '{marker}'\n  \
             cp '{from}'/* '{day}'/ && rm '{day}'/17173049.snappy.parquet '{day}'/17173050.snappy.parquet\n\
             fi\n\
             exec '{exe}' \"$@\"\n",
            marker = marker.display(),
            from = compacted_day.display(),
            day = day.display(),
            exe = executor_bin().display(),
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let o = aws_command(&p, &raw, &["--backend", "process", "--max-attempts", "2"])
        .env("CHAINBATCH_EXECUTOR", &script)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("snappy.parquet"), "names the file: {err}");
    assert!(err.contains("removed after the task was planned"), "{err}");
    assert!(err.contains("--resume"), "the failure is resumable: {err}");
    assert!(
        data_files(&p.out().join("clean_transactions")).is_empty(),
        "nothing was published"
    );

    let o = run_aws(&p, &raw);
    assert!(o.status.success(), "{}", stderr(&o));
    let summary = rows_as_text(&p.query("daily_summary", "SELECT date, tx_count, senders, CAST(total_fee_wei AS VARCHAR), CAST(total_value_wei AS VARCHAR), failed_count, first_block, last_block FROM t").await);
    assert_eq!(summary, vec![expected_summary()]);
}
