//! Each layout rule alone and in combination, checked on the files written.

use crate::support::*;
use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use chainbatch_executor::layout::{BucketBy, Layout, PartitionColumn};
use chainbatch_executor::udf::murmur3_32;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;

fn date_partition() -> PartitionColumn {
    PartitionColumn::Derived {
        name: "date".into(),
        expr: "CAST(block_timestamp AS DATE)".into(),
    }
}

fn read_file(p: &Path) -> Vec<RecordBatch> {
    let f = std::fs::File::open(p).unwrap();
    ParquetRecordBatchReaderBuilder::try_new(f)
        .unwrap()
        .build()
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

fn column_i64(batches: &[RecordBatch], name: &str) -> Vec<i64> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b.column(b.schema().index_of(name).unwrap());
            c.as_primitive::<Int64Type>().values().to_vec()
        })
        .collect()
}

fn column_strings(batches: &[RecordBatch], name: &str) -> Vec<String> {
    batches
        .iter()
        .flat_map(|b| {
            let c = b.column(b.schema().index_of(name).unwrap());
            c.as_string::<i32>()
                .iter()
                .map(|v| v.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Row count, value total and distinct hashes of the input, for comparison.
const FINGERPRINT: &str = "SELECT count(*), CAST(sum(value) AS VARCHAR), count(DISTINCT hash), CAST(sum(block_number) AS BIGINT) FROM out";

async fn fingerprint(dir: &Path, parts: &[(&str, DataType)]) -> Vec<String> {
    let b = read_back(dir, parts, FINGERPRINT).await;
    (0..4)
        .map(|i| arrow::util::display::array_value_to_string(b[0].column(i), 0).unwrap())
        .collect()
}

fn attempt(dir: &Path) -> std::path::PathBuf {
    dir.join("run-1/0/0/attempt-1")
}

#[tokio::test]
async fn partition_by_date_reads_back_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = input_files(&dir.path().join("in"), 3, 30_000, 4);
    let layout = Layout {
        partition_by: vec![date_partition()],
        ..Layout::default()
    };
    let spec = select_all(&inputs, layout, &dir.path().join("stage"));
    let m = chainbatch_executor::run_task(&spec, 1).await.unwrap();
    // 90,000 rows 4 s apart span 4.2 days from midnight: 5 dates.
    assert_eq!(m.partitions.len(), 5);
    assert_eq!(m.rows, 90_000);
    let dates: Vec<&str> = m.partitions.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(dates[0], "date=2023-05-02");
    assert_eq!(dates[4], "date=2023-05-06");
    for p in &m.partitions {
        assert_eq!(p.files, 1, "one writer per partition: {}", p.path);
        assert!(p.stats.contains_key("block_number"));
    }

    let input_fp = fingerprint(&dir.path().join("in"), &[]).await;
    let output_fp = fingerprint(
        &attempt(&dir.path().join("stage")),
        &[("date", DataType::Utf8)],
    )
    .await;
    assert_eq!(input_fp, output_fp);
    assert_eq!(output_fp[0], "90000");
    // The date is in the path, not in the files.
    let f = &files_below(&attempt(&dir.path().join("stage")), ".parquet")[0];
    assert!(read_file(f)[0].schema().index_of("date").is_err());
}

#[tokio::test]
async fn files_roll_near_target_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = input_files(&dir.path().join("in"), 2, 200_000, 1);
    let target = 8 * 1024 * 1024;
    let layout = Layout {
        target_file_bytes: Some(target),
        ..Layout::default()
    };
    let mut spec = select_all(&inputs, layout, &dir.path().join("stage"));
    spec.resources.parallelism = 1;
    let m = chainbatch_executor::run_task(&spec, 1).await.unwrap();
    let mut sizes: Vec<u64> = m.files.iter().map(|f| f.bytes).collect();
    assert!(sizes.len() >= 3, "expected several files, got {sizes:?}");
    // One writer: every file but the last is a full one.
    let last = m.files.iter().max_by_key(|f| &f.path).unwrap().bytes;
    sizes.retain(|s| *s != last);
    for s in &sizes {
        let off = (*s as f64 - target as f64).abs() / target as f64;
        assert!(
            off <= 0.10,
            "file of {s} bytes is {:.1}% off the {target} target; all: {sizes:?}",
            off * 100.0
        );
    }
    for f in &m.files {
        let on_disk = std::fs::metadata(attempt(&dir.path().join("stage")).join(&f.path))
            .unwrap()
            .len();
        assert_eq!(on_disk, f.bytes, "manifest bytes of {}", f.path);
    }
    assert_eq!(m.rows, 400_000);
}

#[tokio::test]
async fn max_rows_per_file_rolls_files() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = input_files(&dir.path().join("in"), 1, 25_000, 1);
    let layout = Layout {
        max_rows_per_file: Some(10_000),
        row_group_rows: 4_000,
        ..Layout::default()
    };
    let mut spec = select_all(&inputs, layout, &dir.path().join("stage"));
    spec.resources.parallelism = 1;
    let m = chainbatch_executor::run_task(&spec, 1).await.unwrap();
    let rows: Vec<u64> = m.files.iter().map(|f| f.rows).collect();
    assert_eq!(rows, vec![10_000, 10_000, 5_000]);
    // Row groups hold at most row_group_rows: 10,000 rows make 3 groups.
    assert_eq!(m.files[0].row_groups, 3);
    assert!(m.files.iter().all(|f| f.path.ends_with(".zstd.parquet")));
}

#[tokio::test]
async fn rows_are_sorted_within_each_file() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = input_files(&dir.path().join("in"), 3, 20_000, 6);
    let layout = Layout {
        partition_by: vec![date_partition()],
        sort_by: vec!["block_number".into()],
        max_rows_per_file: Some(7_000),
        ..Layout::default()
    };
    let spec = select_all(&inputs, layout, &dir.path().join("stage"));
    let m = chainbatch_executor::run_task(&spec, 1).await.unwrap();
    let files = files_below(&attempt(&dir.path().join("stage")), ".parquet");
    assert_eq!(files.len(), m.files.len());
    assert!(
        files.len() > m.partitions.len(),
        "rolling makes several files per date"
    );
    let input_blocks: Vec<i64> = column_i64(
        &read_back(&dir.path().join("in"), &[], "SELECT block_number FROM out").await,
        "block_number",
    );
    assert!(
        input_blocks.windows(2).any(|w| w[0] > w[1]),
        "the input is not already sorted"
    );
    for f in files {
        let blocks = column_i64(&read_file(&f), "block_number");
        assert!(
            blocks.windows(2).all(|w| w[0] <= w[1]),
            "{} is not sorted",
            f.display()
        );
    }
    // Sort descending too.
    let layout = Layout {
        sort_by: vec!["block_number desc".into()],
        ..Layout::default()
    };
    let spec = select_all(&inputs, layout, &dir.path().join("desc"));
    chainbatch_executor::run_task(&spec, 1).await.unwrap();
    for f in files_below(&attempt(&dir.path().join("desc")), ".parquet") {
        let blocks = column_i64(&read_file(&f), "block_number");
        assert!(
            blocks.windows(2).all(|w| w[0] >= w[1]),
            "{} is not sorted descending",
            f.display()
        );
    }
}

/// Which addresses each bucket file holds, from a run into `stage`.
async fn bucket_map(
    inputs: &[std::path::PathBuf],
    stage: &Path,
    parallelism: usize,
) -> BTreeMap<i32, HashSet<String>> {
    let layout = Layout {
        bucket_by: Some(BucketBy {
            columns: vec!["from_address".into()],
            buckets: 8,
        }),
        ..Layout::default()
    };
    let mut spec = select_all(inputs, layout, stage);
    spec.resources.parallelism = parallelism;
    let m = chainbatch_executor::run_task(&spec, 1).await.unwrap();
    let mut out: BTreeMap<i32, HashSet<String>> = BTreeMap::new();
    for f in &m.files {
        let b = f.bucket.expect("bucketed file");
        assert!(
            f.path.contains(&format!("_{b:05}.")),
            "bucket in the file name: {}",
            f.path
        );
        let addrs = column_strings(&read_file(&attempt(stage).join(&f.path)), "from_address");
        out.entry(b).or_default().extend(addrs);
    }
    out
}

#[tokio::test]
async fn bucket_assignment_is_stable() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = input_files(&dir.path().join("in"), 2, 10_000, 1);
    let first = bucket_map(&inputs, &dir.path().join("a"), 2).await;
    let second = bucket_map(&inputs, &dir.path().join("b"), 1).await;
    assert_eq!(first, second, "same buckets whatever the parallelism");
    assert!(first.len() > 4, "40 senders spread over the 8 buckets");
    for (bucket, addrs) in &first {
        for a in addrs {
            // The documented hash: murmur3 x86_32, seed 42, over the UTF-8 bytes.
            assert_eq!((murmur3_32(a.as_bytes(), 42) % 8) as i32, *bucket, "{a}");
        }
    }
    // Every address lives in exactly one bucket.
    let total: usize = first.values().map(|s| s.len()).sum();
    assert_eq!(total, 40);
}

#[tokio::test]
async fn partition_bucket_sort_and_size_together() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = input_files(&dir.path().join("in"), 2, 30_000, 5);
    let layout = Layout {
        partition_by: vec![date_partition()],
        bucket_by: Some(BucketBy {
            columns: vec!["from_address".into()],
            buckets: 4,
        }),
        sort_by: vec!["block_number".into()],
        max_rows_per_file: Some(3_000),
        compression: "snappy".into(),
        ..Layout::default()
    };
    let spec = select_all(&inputs, layout, &dir.path().join("stage"));
    let m = chainbatch_executor::run_task(&spec, 1).await.unwrap();
    let out = attempt(&dir.path().join("stage"));
    for f in &m.files {
        assert!(f.rows <= 3_000);
        assert!(f.path.starts_with("date=") && f.path.ends_with(".snappy.parquet"));
        let batches = read_file(&out.join(&f.path));
        let blocks = column_i64(&batches, "block_number");
        assert!(blocks.windows(2).all(|w| w[0] <= w[1]));
        for a in column_strings(&batches, "from_address") {
            assert_eq!((murmur3_32(a.as_bytes(), 42) % 4) as i32, f.bucket.unwrap());
        }
    }
    let input_fp = fingerprint(&dir.path().join("in"), &[]).await;
    assert_eq!(
        input_fp,
        fingerprint(&out, &[("date", DataType::Utf8)]).await
    );
}

#[tokio::test]
async fn two_thousand_partitions_with_64_open_writers() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = input_files(&dir.path().join("in"), 2, 20_000, 1);
    let layout = Layout {
        partition_by: vec![PartitionColumn::Derived {
            name: "chunk".into(),
            expr: "block_chunk(block_number, 2)".into(),
        }],
        max_open_writers: 64,
        ..Layout::default()
    };
    let spec = select_all(&inputs, layout, &dir.path().join("stage"));
    let m = chainbatch_executor::run_task(&spec, 1).await.unwrap();
    assert!(
        m.partitions.len() >= 2_000,
        "got {} partitions",
        m.partitions.len()
    );
    let out = attempt(&dir.path().join("stage"));
    let dirs = std::fs::read_dir(&out)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().path().is_dir())
        .count();
    assert_eq!(dirs, m.partitions.len());
    let input_fp = fingerprint(&dir.path().join("in"), &[]).await;
    assert_eq!(
        input_fp,
        fingerprint(&out, &[("chunk", DataType::Int64)]).await
    );
}

/// Open files whose buffers no longer fit the pool are finished early; a key
/// coming back after that shows the input is not grouped by key, and the
/// rest is sorted. Every partition then has at most two files.
#[tokio::test]
async fn open_files_beyond_the_pool_are_finished_early() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = input_files(&dir.path().join("in"), 2, 250_000, 1);
    let layout = Layout {
        partition_by: vec![PartitionColumn::Derived {
            name: "k".into(),
            expr: "block_number % 64".into(),
        }],
        max_open_writers: 10_000,
        ..Layout::default()
    };
    let mut spec = select_all(&inputs, layout, &dir.path().join("stage"));
    // Room for the sort's 10 MiB merge reserve, not for every open file's
    // upload buffer (the output is about 29 MB).
    spec.resources.memory_bytes = 20 * 1024 * 1024;
    spec.resources.parallelism = 1;
    let m = chainbatch_executor::run_task(&spec, 1).await.unwrap();
    assert_eq!(m.partitions.len(), 64);
    let mut files_per_partition: BTreeMap<&str, usize> = BTreeMap::new();
    for f in &m.files {
        *files_per_partition
            .entry(f.path.split('/').next().unwrap())
            .or_default() += 1;
    }
    let most = files_per_partition.values().max().copied().unwrap();
    assert_eq!(
        most, 2,
        "{} bytes written; files per partition: {files_per_partition:?}",
        m.bytes
    );
    let out = attempt(&dir.path().join("stage"));
    let input_fp = fingerprint(&dir.path().join("in"), &[]).await;
    assert_eq!(input_fp, fingerprint(&out, &[("k", DataType::Int64)]).await);
}

#[tokio::test]
async fn hostile_partition_values_stay_inside_the_table() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = input_files(&dir.path().join("in"), 1, 100, 1);
    let layout = Layout {
        partition_by: vec![PartitionColumn::Derived {
            name: "k".into(),
            expr: "CASE WHEN block_number % 4 = 0 THEN '../../escaped' WHEN block_number % 4 = 1 THEN 'a/b=c' \
                   WHEN block_number % 4 = 2 THEN '..' ELSE NULL END"
                .into(),
        }],
        ..Layout::default()
    };
    let stage = dir.path().join("stage");
    let spec = select_all(&inputs, layout, &stage);
    let m = chainbatch_executor::run_task(&spec, 1).await.unwrap();
    let paths: HashSet<&str> = m.partitions.iter().map(|p| p.path.as_str()).collect();
    assert!(paths.contains("k=..%2F..%2Fescaped"), "{paths:?}");
    assert!(paths.contains("k=a%2Fb%3Dc"));
    assert!(paths.contains("k=%2E%2E"));
    assert!(paths.contains("k=__HIVE_DEFAULT_PARTITION__"));
    let values: HashSet<Option<String>> = m
        .partitions
        .iter()
        .flat_map(|p| p.values.values().cloned())
        .collect();
    assert!(values.contains(&Some("../../escaped".to_string())));
    // Nothing was written outside the attempt directory.
    let all = files_below(dir.path(), ".parquet");
    let inside = files_below(&attempt(&stage), ".parquet");
    assert_eq!(all.len(), inside.len() + 1, "only the input lies outside");
    assert_eq!(m.rows, 100);
}
