//! One task of the canonical ETL (read, exact fee, date partitioning, sort by
//! `block_number`, zstd Parquet) in chainbatch's executor, against
//! DataFusion's own `COPY ... PARTITIONED BY` on the same data in the same
//! run. Each side runs in its own child process so its peak RSS is its own.
//!
//! `cargo bench -p chainbatch-benches --bench etl_task` (rows: `ETL_ROWS`,
//! default 4,000,000).

use chainbatch_benches::{
    FEE_SQL, bench_dir, canonical_task, ensure_transactions, parquet_files, peak_rss_bytes,
};
use chainbatch_executor::layout::{Layout, PartitionColumn};
use chainbatch_executor::spec::TaskResources;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The canonical layout, or 2,000+ block-chunk partitions with 64 open writers.
fn layout(many_partitions: bool) -> Layout {
    if many_partitions {
        return Layout {
            partition_by: vec![PartitionColumn::Derived {
                name: "chunk".into(),
                expr: "block_chunk(block_number, 25)".into(),
            }],
            max_open_writers: 64,
            compression: "zstd(1)".into(),
            ..Layout::default()
        };
    }
    Layout {
        partition_by: vec![PartitionColumn::Derived {
            name: "date".into(),
            expr: "CAST(block_timestamp AS DATE)".into(),
        }],
        sort_by: vec!["block_number".into()],
        compression: "zstd(1)".into(),
        ..Layout::default()
    }
}

fn chainbatch_task(input: &Path, out: &Path, many_partitions: bool) -> serde_json::Value {
    let files = parquet_files(input);
    let spec = canonical_task(
        &files,
        out,
        layout(many_partitions),
        TaskResources {
            // `ETL_MEMORY_MB` and `ETL_PARALLELISM` explore the task's limits.
            memory_bytes: env_u64("ETL_MEMORY_MB", 512) * 1024 * 1024,
            parallelism: env_u64("ETL_PARALLELISM", 0) as usize,
            ..TaskResources::default()
        },
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let start = Instant::now();
    let m = rt
        .block_on(chainbatch_executor::run_task(&spec, 1))
        .expect("task runs");
    let secs = start.elapsed().as_secs_f64();
    serde_json::json!({"rows": m.rows, "seconds": secs, "files": m.files.len(), "bytes": m.bytes, "partitions": m.partitions.len()})
}

fn datafusion_copy(input: &Path, out: &Path) -> serde_json::Value {
    use datafusion::prelude::*;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ctx = SessionContext::new();
        ctx.register_parquet("tx", input.display().to_string(), ParquetReadOptions::default())
            .await
            .unwrap();
        let start = Instant::now();
        let sql = format!(
            "COPY (SELECT *, {FEE_SQL} AS fee_wei, CAST(block_timestamp AS DATE) AS date FROM tx ORDER BY block_number) \
             TO '{}/' STORED AS PARQUET PARTITIONED BY (date) OPTIONS ('format.compression' 'zstd(1)')",
            out.display()
        );
        let r = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
        let secs = start.elapsed().as_secs_f64();
        let rows = datafusion::arrow::util::display::array_value_to_string(r[0].column(0), 0).unwrap();
        let bytes: u64 = parquet_files(out).iter().map(|p| std::fs::metadata(p).unwrap().len()).sum();
        serde_json::json!({"rows": rows.parse::<u64>().unwrap(), "seconds": secs, "files": parquet_files(out).len(), "bytes": bytes})
    })
}

fn main() {
    if let Ok(which) = std::env::var("ETL_CHILD") {
        // chainbatch's binaries set the allocator up like this; COPY runs
        // with glibc's defaults, as a DataFusion program would.
        if which != "datafusion_copy" {
            chainbatch_executor::allocator::configure_malloc();
        }
        let input = Path::new(&std::env::var("ETL_INPUT").unwrap()).to_path_buf();
        let out = Path::new(&std::env::var("ETL_OUT").unwrap()).to_path_buf();
        let _ = std::fs::remove_dir_all(&out);
        std::fs::create_dir_all(&out).unwrap();
        let mut r = match which.as_str() {
            "chainbatch" => chainbatch_task(&input, &out, false),
            "chainbatch_2000_partitions" => chainbatch_task(&input, &out, true),
            _ => datafusion_copy(&input, &out),
        };
        r["peak_rss_bytes"] = peak_rss_bytes().into();
        println!("{r}");
        return;
    }
    let rows: u64 = std::env::var("ETL_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4_000_000);
    let dir = bench_dir().join(format!("etl-{rows}"));
    std::fs::create_dir_all(&dir).unwrap();
    let input = ensure_transactions(&dir, rows, 7);
    let exe = std::env::current_exe().unwrap();
    let mut results = vec![];
    for which in [
        "datafusion_copy",
        "chainbatch",
        "chainbatch_2000_partitions",
    ] {
        let out = Command::new(&exe)
            .env("ETL_CHILD", which)
            .env("ETL_INPUT", &input)
            .env("ETL_OUT", dir.join(format!("out-{which}")))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{which}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["rows"].as_u64(), Some(rows), "{which} wrote every row");
        results.push((which, v));
    }
    println!(
        "canonical ETL, one task, {rows} rows, {} cores",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    println!(
        "{:<28} {:>10} {:>14} {:>12} {:>8}",
        "engine", "seconds", "rows/s", "peak RSS MiB", "files"
    );
    let mut rates = vec![];
    for (which, v) in &results {
        let secs = v["seconds"].as_f64().unwrap();
        let rate = rows as f64 / secs;
        rates.push(rate);
        println!(
            "{which:<28} {secs:>10.2} {rate:>14.0} {:>12.0} {:>8}",
            v["peak_rss_bytes"].as_u64().unwrap() as f64 / 1048576.0,
            v["files"]
        );
    }
    println!(
        "chainbatch / DataFusion COPY throughput: {:.2}x",
        rates[1] / rates[0]
    );
    println!(
        "bounded writers: {} partitions with max_open_writers = 64, peak RSS {:.0} MiB",
        results[2].1["partitions"],
        results[2].1["peak_rss_bytes"].as_u64().unwrap() as f64 / 1048576.0
    );
}
