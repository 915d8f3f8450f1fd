//! Criterion micro-benchmarks of chainbatch's hot paths: bucket hashing,
//! the layout writer (one task writing 200,000 transactions by date, sorted,
//! zstd), and the planner listing a dataset of 100,000 files.
//!
//! cargo bench -p chainbatch-benches --bench hot_paths

use chainbatch::catalog::Dataset;
use chainbatch_benches::canonical_task;
use chainbatch_executor::layout::{Layout, PartitionColumn};
use chainbatch_executor::spec::TaskResources;
use chainbatch_executor::udf::murmur3_32;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::path::{Path, PathBuf};

fn bucket_hashing(c: &mut Criterion) {
    let addresses: Vec<String> = (0..100_000u64)
        .map(|i| format!("0x{:040x}", i.wrapping_mul(0x9e37_79b9_7f4a_7c15)))
        .collect();
    let mut g = c.benchmark_group("bucket_hashing");
    g.throughput(Throughput::Elements(addresses.len() as u64));
    g.bench_function("murmur3_x86_32 of 100k addresses into 16 buckets", |b| {
        b.iter(|| {
            let mut counts = [0u32; 16];
            for a in &addresses {
                counts[(murmur3_32(a.as_bytes(), 42) % 16) as usize] += 1;
            }
            black_box(counts)
        })
    });
    g.finish();
}

/// 200,000 generated transactions over 2 days, written once.
fn input(dir: &Path) -> Vec<PathBuf> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cfg = chainbatch::eth::synth::GenConfig {
        rows: 200_000,
        days: 2,
        start_ts: 19_783 * 86_400,
        seed: 7,
        files_per_day: 1,
        batch_rows: 8192,
    };
    let quiet: chainbatch::eth::synth_write::Progress = std::sync::Arc::new(|_: &str, _| {});
    rt.block_on(chainbatch::eth::synth_write::write_tables(
        &cfg,
        &dir.display().to_string(),
        &["transactions".to_string()],
        1,
        quiet,
    ))
    .unwrap();
    let mut files = vec![];
    for day in std::fs::read_dir(dir.join("transactions"))
        .unwrap()
        .flatten()
    {
        for f in std::fs::read_dir(day.path()).unwrap().flatten() {
            files.push(f.path());
        }
    }
    files.sort();
    files
}

fn layout_writer(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let files = input(dir.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let spec = |out: &Path| {
        canonical_task(
            &files,
            out,
            Layout {
                partition_by: vec![PartitionColumn::Derived {
                    name: "date".into(),
                    expr: "CAST(block_timestamp AS DATE)".into(),
                }],
                sort_by: vec!["block_number".into()],
                compression: "zstd(3)".into(),
                ..Layout::default()
            },
            TaskResources::default(),
        )
    };
    let mut g = c.benchmark_group("layout_writer");
    g.sample_size(10);
    g.throughput(Throughput::Elements(200_000));
    g.bench_function("200k transactions, by date, sorted, zstd(3)", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |out| {
                let m = rt
                    .block_on(chainbatch_executor::run_task(&spec(out.path()), 1))
                    .unwrap();
                assert_eq!(m.rows, 200_000);
            },
            BatchSize::PerIteration,
        )
    });
    g.finish();
}

fn planner_listing(c: &mut Criterion) {
    // 100 days of 1,000 files each: empty files are enough for listing.
    let dir = tempfile::tempdir().unwrap();
    for d in 0..100 {
        let day = dir
            .path()
            .join(format!("date=2024-{:02}-{:02}", 1 + d / 28, 1 + d % 28));
        std::fs::create_dir_all(&day).unwrap();
        for f in 0..1000 {
            std::fs::File::create(day.join(format!("part-{f:05}.parquet"))).unwrap();
        }
    }
    let ds = Dataset::parquet_by_date("transactions", &dir.path().display().to_string());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut g = c.benchmark_group("planner");
    g.sample_size(10);
    g.throughput(Throughput::Elements(100_000));
    g.bench_function("list and group 100k files", |b| {
        b.iter(|| {
            let files = rt
                .block_on(chainbatch::plan::listing::list_dataset(&ds, None))
                .unwrap();
            assert_eq!(files.len(), 100_000);
            black_box(chainbatch::plan::tasks::group_by_bytes(
                &files,
                256 << 20,
                false,
            ))
        })
    });
    g.finish();
}

criterion_group!(hot_paths, bucket_hashing, layout_writer, planner_listing);
criterion_main!(hot_paths);
