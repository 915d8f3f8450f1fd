//! Synthetic data speed: rows per second per core for generating
//! transactions (with their transfers and logs) in memory on one core, and
//! for `chainbatch gen` writing Parquet with every core: per core of wall
//! time, and per CPU second the process used (steadier on a shared machine).
//!
//! `cargo bench -p chainbatch-benches --bench gen_speed` (rows: `GEN_ROWS`,
//! default 2,000,000).

use chainbatch::bench::measure::Meter;
use chainbatch::eth::synth::{GenConfig, generate_batch};
use chainbatch_benches::bench_dir;
use std::time::Instant;

fn main() {
    // As the chainbatch binary sets it up.
    chainbatch_executor::allocator::configure_malloc();
    let rows: u64 = std::env::var("GEN_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2_000_000);
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    let cfg = GenConfig {
        rows,
        days: 7,
        start_ts: 1_709_251_200,
        seed: 1,
        files_per_day: 1,
        batch_rows: 8192,
    };

    // In memory, one core.
    let per_day = cfg.rows_per_day();
    let start = Instant::now();
    let mut produced = 0u64;
    for (d, day_rows) in per_day.iter().enumerate() {
        let mut row = 0;
        while row < *day_rows {
            let n = 8192.min(day_rows - row) as usize;
            let b = generate_batch(&cfg, d as u32, *day_rows, row, n, true);
            produced += b.transactions.num_rows() as u64;
            row += n as u64;
        }
    }
    let mem_rate = produced as f64 / start.elapsed().as_secs_f64();

    // To Parquet, all cores, transactions only and all four tables.
    let dir = bench_dir().join("gen-speed");
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut write_rates = vec![];
    for tables in [
        vec!["transactions".to_string()],
        chainbatch::eth::synth_write::TABLES
            .iter()
            .map(|t| t.name().to_string())
            .collect(),
    ] {
        let _ = std::fs::remove_dir_all(&dir);
        let meter = Meter::start();
        rt.block_on(chainbatch::eth::synth_write::write_tables(
            &cfg,
            &dir.display().to_string(),
            &tables,
            cores,
            std::sync::Arc::new(|_: &str, _: u64| {}),
        ))
        .unwrap();
        let usage = meter.stop();
        write_rates.push((
            tables.len(),
            rows as f64 / usage.seconds,
            rows as f64 / usage.cpu_seconds,
        ));
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!("synthetic transactions, {rows} rows, {cores} cores");
    println!("generate in memory, 1 core:              {mem_rate:>12.0} rows/s per core");
    for (n, rate, per_cpu_second) in write_rates {
        println!(
            "gen to Parquet, {n} table(s), {cores} cores:    {rate:>12.0} rows/s ({:.0} per core; {per_cpu_second:.0} per CPU second)",
            rate / cores as f64
        );
    }
}
