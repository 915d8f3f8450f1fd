//! Shared pieces of the chainbatch benchmarks.

use chainbatch::eth::synth::GenConfig;
use chainbatch_executor::layout::Layout;
use chainbatch_executor::spec::{
    InputFile, InputFormat, InputTable, OutputSpec, SPEC_VERSION, TaskResources, TaskSpec,
};
use std::path::{Path, PathBuf};

/// The exact fee of the canonical ETL, DECIMAL(38,0).
pub const FEE_SQL: &str =
    "CAST(receipt_gas_used AS DECIMAL(38,0)) * CAST(receipt_effective_gas_price AS DECIMAL(38,0))";

/// One task of the canonical ETL: `files` of generated transactions, plus
/// the exact fee, written below `out` in `layout`.
pub fn canonical_task(
    files: &[PathBuf],
    out: &Path,
    layout: Layout,
    resources: TaskResources,
) -> TaskSpec {
    TaskSpec {
        version: SPEC_VERSION,
        run_id: "bench".into(),
        stage_id: 0,
        task_index: 0,
        attempt: 1,
        inputs: vec![InputTable {
            name: "tx".into(),
            format: InputFormat::Parquet,
            files: files
                .iter()
                .map(|p| InputFile::whole(p.display().to_string()))
                .collect(),
            schema: Some(chainbatch::eth::tables::EthTable::Transactions.columns(true)),
            partition_columns: vec![],
            shuffle: None,
        }],
        sql: format!("SELECT *, {FEE_SQL} AS fee_wei FROM tx"),
        output: OutputSpec::Table {
            table_uri: out.join("table").display().to_string(),
            staging_uri: out.display().to_string(),
            layout,
        },
        resources,
    }
}

/// Where benchmarks keep generated data between runs.
pub fn bench_dir() -> PathBuf {
    std::env::var_os("CHAINBATCH_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("chainbatch-bench"))
}

/// Peak resident set size of this process, in bytes (Linux `VmHWM`).
pub use chainbatch::bench::measure::peak_rss as peak_rss_bytes;

/// Generates `rows` transactions over `days` days into `dir` unless a
/// previous run left them there.
pub fn ensure_transactions(dir: &Path, rows: u64, days: u32) -> PathBuf {
    let marker = dir.join(format!("transactions-{rows}-{days}.done"));
    if !marker.exists() {
        let _ = std::fs::remove_dir_all(dir.join("transactions"));
        let cfg = GenConfig {
            rows,
            days,
            start_ts: 1_682_985_600,
            seed: 1,
            files_per_day: 1,
            batch_rows: 8192,
        };
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        let threads = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1);
        rt.block_on(chainbatch::eth::synth_write::write_transactions(
            &cfg,
            &dir.display().to_string(),
            threads,
            std::sync::Arc::new(|_: &str, _: u64| {}),
        ))
        .expect("generate transactions");
        std::fs::write(&marker, b"").expect("marker");
    }
    dir.join("transactions")
}

/// Every Parquet file below `dir`.
pub fn parquet_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "parquet") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}
