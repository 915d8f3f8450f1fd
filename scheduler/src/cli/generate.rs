//! `chainbatch gen`: deterministic synthetic `eth` tables in the AWS layout.

use super::check_tables;
use chainbatch::conf::error::ConfigError;
use chainbatch::error::DriverError;
use chainbatch::progress::{human_bytes, human_count};
use clap::Args;

#[derive(Args)]
pub(super) struct GenArgs {
    /// Transactions in all.
    #[arg(long)]
    rows: u64,
    /// Days they span.
    #[arg(long, default_value_t = 7)]
    days: u32,
    /// The first day.
    #[arg(long, default_value = "2024-01-01")]
    start: String,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Files per day (the AWS dataset has one).
    #[arg(long, default_value_t = 1)]
    files_per_day: u32,
    /// Tables to write: transactions, blocks, logs, token_transfers.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "transactions,blocks,logs,token_transfers"
    )]
    tables: Vec<String>,
    /// Where to write: `<out>/<table>/date=YYYY-MM-DD/part-NNNNN.parquet`.
    #[arg(long)]
    out: String,
}

pub(super) async fn generate(g: GenArgs) -> Result<(), DriverError> {
    if g.rows == 0 || g.days == 0 || g.files_per_day == 0 {
        return Err(
            ConfigError::new("--rows", "rows, days and files per day must be at least 1").into(),
        );
    }
    let known: Vec<&str> = chainbatch::eth::synth_write::TABLES
        .iter()
        .map(|t| t.name())
        .collect();
    check_tables(&g.tables, &known)?;
    let start = chainbatch::plan::dates::parse(&g.start, &chainbatch::plan::dates::today())
        .map_err(|e| ConfigError::new("--start", e))?;
    let start_ts =
        chainbatch::plan::dates::days_since_epoch(&start.from).expect("parsed date") * 86_400;
    let cfg = chainbatch::eth::synth::GenConfig {
        rows: g.rows,
        days: g.days,
        start_ts,
        seed: g.seed,
        files_per_day: g.files_per_day,
        batch_rows: 8192,
    };
    let started = std::time::Instant::now();
    let threads = chainbatch_executor::effective_parallelism(0);
    let total = g.days as u64 * g.files_per_day as u64;
    let done = std::sync::atomic::AtomicU64::new(0);
    let progress: chainbatch::eth::synth_write::Progress =
        std::sync::Arc::new(move |unit: &str, rows: u64| {
            let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
            eprintln!(
                "chainbatch gen: {n}/{total} · {unit} · {} transactions",
                human_count(rows)
            );
        });
    let totals =
        chainbatch::eth::synth_write::write_tables(&cfg, &g.out, &g.tables, threads, progress)
            .await
            .map_err(DriverError::Storage)?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "wrote to {} in {secs:.1}s ({:.0} transactions/s)",
        g.out,
        g.rows as f64 / secs
    );
    for (t, s) in totals.tables {
        println!(
            "{t:<16} {:>10} rows {:>5} files {:>11}  checksum {}",
            s.rows,
            s.files,
            human_bytes(s.bytes),
            s.checksum
        );
    }
    Ok(())
}
