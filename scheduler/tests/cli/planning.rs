//! `chainbatch plan` for a map-only layout and for a shuffled one, and the
//! shuffled run's output.

use crate::support::*;
use arrow::array::AsArray;

fn plan_json(p: &Project, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["plan", "--format", "json"];
    args.extend_from_slice(extra);
    serde_json::from_str(&p.run_ok(&args)).unwrap()
}

#[test]
fn map_only_plan_for_the_daily_layout() {
    let p = Project::generated(20_000, 3, 1);
    let plan = plan_json(&p, &["--nodes", "clean_transactions"]);
    let node = &plan[0];
    assert_eq!(node["strategy"], "map_only");
    assert_eq!(node["input_files"], 3);
    assert_eq!(node["input_partitions"].as_array().unwrap().len(), 3);
    assert_eq!(node["stages"].as_array().unwrap().len(), 1);
    // Derived from block_timestamp: the data decides the output partitions.
    assert!(node["expected_output_partitions"].is_null());
    let stats = plan_json(&p, &["--nodes", "daily_summary"]);
    assert_eq!(stats[0]["strategy"], "per_partition");
    assert_eq!(node["stages"][0]["kind"], "map");
    // 256 MiB per task by default: all three small days in one task.
    assert_eq!(node["stages"][0]["tasks"], 1);
    // Smaller tasks: one per day, partitions kept whole.
    let plan = plan_json(
        &p,
        &[
            "--nodes",
            "clean_transactions",
            "--globals",
            "target_task_bytes=1",
        ],
    );
    assert_eq!(plan[0]["stages"][0]["tasks"], 3);
    // Text output says the same.
    let text = p.run_ok(&["plan", "--nodes", "clean_transactions"]);
    assert!(
        text.contains("strategy: MapOnly") && text.contains("stage 0 (map): 1 task(s)"),
        "{text}"
    );
    // Dry run plans and writes nothing.
    let dry = p.run_ok(&["run", "--dry-run"]);
    assert!(dry.contains("daily_summary"));
    assert!(!p.out().exists());
}

#[tokio::test]
async fn bucketed_layout_with_split_partitions_shuffles() {
    let p = Project::generated(20_000, 2, 3);
    let bucketed = [
        "--globals",
        "layouts.daily.bucket_by={columns: [from_address], buckets: 4}",
        "--globals",
        "target_task_bytes=1",
    ];
    let mut args = vec!["--nodes", "clean_transactions"];
    args.extend_from_slice(&bucketed);
    let plan = plan_json(&p, &args);
    let node = &plan[0];
    assert_eq!(node["strategy"], "shuffle", "{node}");
    let stages = node["stages"].as_array().unwrap();
    assert_eq!(stages.len(), 2);
    assert_eq!(
        (stages[0]["kind"].as_str(), stages[0]["tasks"].as_u64()),
        (Some("shuffle_map"), Some(6))
    );
    assert_eq!(
        (stages[1]["kind"].as_str(), stages[1]["tasks"].as_u64()),
        (Some("reduce"), Some(4))
    );
    assert!(node["reason"].as_str().unwrap().contains("bucket_by"));

    let mut run = vec!["run"];
    run.extend_from_slice(&args);
    p.run_ok(&run);
    // Every row is there once, and every file holds exactly one bucket.
    let counts = rows_as_text(
        &p.query(
            "clean_transactions",
            "SELECT count(*), count(DISTINCT hash) FROM t",
        )
        .await,
    );
    assert_eq!(counts, vec![vec!["20000".to_string(), "20000".into()]]);
    let files = data_files(&p.out().join("clean_transactions"));
    assert!(
        files.len() <= 2 * 4,
        "at most 4 bucket files per date: {files:?}"
    );
    for f in files {
        let bucket: i64 = f
            .rsplit('_')
            .next()
            .unwrap()
            .split('.')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        let path = p.out().join("clean_transactions").join(&f);
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
            std::fs::File::open(path).unwrap(),
        )
        .unwrap()
        .build()
        .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let addrs = batch
                .column_by_name("from_address")
                .unwrap()
                .as_string::<i32>()
                .clone();
            for a in addrs.iter().flatten() {
                assert_eq!(
                    (chainbatch_executor::udf::murmur3_32(a.as_bytes(), 42) % 4) as i64,
                    bucket,
                    "{a} in {f}"
                );
            }
        }
    }
}
