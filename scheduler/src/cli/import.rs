//! `chainbatch import`: data exported by other tools, into the AWS layout.

use super::check_tables;
use chainbatch::error::DriverError;
use chainbatch::progress::{LogFormat, Progress};
use clap::Subcommand;
use std::path::PathBuf;

#[derive(Subcommand)]
pub(super) enum ImportSource {
    /// ethereum-etl JSON exports (blocks, transactions, logs, token_transfers
    /// .jsonl) to `<out>/<table>/date=YYYY-MM-DD/part-NNNNN.parquet`, exact.
    EthereumEtl {
        /// The folder holding the .jsonl files.
        dir: PathBuf,
        /// Where to write (a path, file:// or s3://).
        #[arg(long)]
        out: String,
        /// Only these tables (default: every file found).
        #[arg(long, value_delimiter = ',')]
        tables: Vec<String>,
    },
}

pub(super) async fn import(source: ImportSource) -> Result<(), DriverError> {
    let ImportSource::EthereumEtl { dir, out, tables } = source;
    let known: Vec<&str> = chainbatch::eth::import::tables()
        .iter()
        .map(|t| t.table)
        .collect();
    check_tables(&tables, &known)?;
    let progress = Progress::new(LogFormat::Text);
    let done = chainbatch::eth::import::import_ethereum_etl(&dir, &out, &tables, &progress)
        .await
        .map_err(DriverError::Storage)?;
    for t in done {
        println!(
            "{:<16} {:>8} rows  {}",
            t.table,
            t.rows,
            t.partitions.join(", ")
        );
    }
    Ok(())
}
