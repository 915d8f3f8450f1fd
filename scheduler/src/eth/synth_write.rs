//! Writes generated tables in the AWS layout,
//! `<out>/<table>/date=YYYY-MM-DD/part-NNNNN.parquet`, one file per day by
//! default, days and files in parallel, each file streamed batch by batch.

use crate::eth::synth::{GenConfig, blocks_batch, generate_batch, table_schema};
use crate::eth::tables::EthTable;
use chainbatch_executor::layout::row_checksum;
use chainbatch_executor::storage;
use futures::StreamExt;
use object_store::buffered::BufWriter;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::{Compression, Encoding};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, Default)]
pub struct GenSummary {
    pub rows: u64,
    pub files: u64,
    pub bytes: u64,
    /// Order-independent checksum of all rows (hex): equal for equal seeds.
    pub checksum: String,
}

/// The order rows are generated in, declared in every row group so that a
/// task sorting by it can stream instead of sort. Generated events are one
/// per transaction, so they declare their block only.
fn sort_order(table: EthTable) -> &'static [&'static str] {
    match table {
        EthTable::Logs | EthTable::TokenTransfers => &["block_number"],
        t => t.def().sort_by,
    }
}

fn sorting_columns(schema: &arrow::datatypes::Schema, table: EthTable) -> Vec<SortingColumn> {
    let keys: Vec<(&str, bool)> = sort_order(table).iter().map(|c| (*c, false)).collect();
    let declared = chainbatch_executor::parquet_file::sorting_columns(schema, &keys)
        .expect("generated schemas convert to Parquet");
    assert_eq!(
        declared.len(),
        keys.len(),
        "sort columns are top-level columns"
    );
    declared
}

/// Hashes of every table: random hex, unique per row.
const HASHES: [&str; 7] = [
    "hash",
    "transaction_hash",
    "logs_bloom",
    "transactions_root",
    "state_root",
    "receipts_root",
    "parent_hash",
];

/// Calldata and log data: hex, (nearly) unique per row.
const CALLDATA: [&str; 2] = ["input", "data"];

/// Addresses and block hashes: random hex that repeats across rows.
const ADDRESSES: [&str; 6] = [
    "from_address",
    "to_address",
    "receipt_contract_address",
    "block_hash",
    "token_address",
    "address",
];

fn writer_props(schema: &arrow::datatypes::Schema, table: EthTable) -> WriterProperties {
    // Like the public dataset: snappy, row groups of 128k rows.
    // Hashes, calldata and amounts are (nearly) unique per row: dictionary
    // encoding only costs there. Addresses, blocks and small counts keep it.
    let mut b = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(128 * 1024))
        .set_sorting_columns(Some(sorting_columns(schema, table)));
    for col in HASHES.iter().chain(&CALLDATA).chain(&["value"]) {
        b = b.set_column_dictionary_enabled(ColumnPath::from(*col), false);
    }
    // Prices and gas are random integers of 17 to 36 bits: delta packing
    // stores them in about that many bits, smaller than snappy makes their
    // plain 64, and at a fraction of its cost.
    for col in [
        "nonce",
        "gas",
        "gas_price",
        "max_fee_per_gas",
        "max_priority_fee_per_gas",
        "receipt_gas_used",
        "receipt_cumulative_gas_used",
        "receipt_effective_gas_price",
        "base_fee_per_gas",
        "gas_used",
    ] {
        // Only where the column is an integer: blocks' `nonce` is hex text.
        let is_integer = schema
            .field_with_name(col)
            .is_ok_and(|f| f.data_type().is_integer());
        if !is_integer {
            continue;
        }
        let col = ColumnPath::from(col);
        b = b
            .set_column_dictionary_enabled(col.clone(), false)
            .set_column_encoding(col.clone(), Encoding::DELTA_BINARY_PACKED)
            .set_column_compression(col, Compression::UNCOMPRESSED);
    }
    // Hashes are random hex: snappy finds only short, scattered matches in
    // them, spent a fifth of the generator's time and saved under 10%.
    for col in HASHES {
        b = b.set_column_compression(ColumnPath::from(col), Compression::UNCOMPRESSED);
    }
    // Addresses keep their dictionary for a whole row group (recipients
    // overflow 1 MiB and fell back to plain), and skip snappy: the
    // dictionary is random hex and the indices are bit-packed already.
    b = b.set_dictionary_page_size_limit(8 << 20);
    for col in ADDRESSES {
        b = b.set_column_compression(ColumnPath::from(col), Compression::UNCOMPRESSED);
    }
    // Min/max of random hex prunes nothing (every row group spans nearly
    // the whole range) and comparing every value was a tenth of the work.
    // Ordered columns (blocks, timestamps) keep their statistics.
    for col in HASHES.iter().chain(&CALLDATA).chain(&ADDRESSES) {
        b = b.set_column_statistics_enabled(ColumnPath::from(*col), EnabledStatistics::None);
    }
    b.build()
}

/// Called after each day file with its name and transactions.
pub type Progress = Arc<dyn Fn(&str, u64) + Send + Sync>;

/// The tables `chainbatch gen` writes (traces and contracts it does not).
pub const TABLES: [EthTable; 4] = [
    EthTable::Transactions,
    EthTable::Blocks,
    EthTable::Logs,
    EthTable::TokenTransfers,
];

/// Totals per table, in `TABLES` order.
#[derive(Debug, Clone, Default)]
pub struct GenTotals {
    pub tables: Vec<(String, GenSummary)>,
}

struct TableSink {
    table: EthTable,
    writer: AsyncArrowWriter<BufWriter>,
    /// The schema files store (timestamps in microseconds).
    file_schema: arrow::datatypes::SchemaRef,
    uri: String,
    rows: u64,
}

impl TableSink {
    async fn write(&mut self, batch: &arrow::array::RecordBatch) -> Result<(), String> {
        let batch = chainbatch_executor::parquet_file::to_file_batch(batch, &self.file_schema)
            .map_err(|e| format!("{}: {e}", self.uri))?;
        self.writer
            .write(&batch)
            .await
            .map_err(|e| format!("{}: {e}", self.uri))
    }
}

async fn open_sink(
    root: &storage::Location,
    table: EthTable,
    date: &str,
    f: u32,
) -> Result<TableSink, String> {
    let rel = format!("{}/date={date}/part-{f:05}.parquet", table.name());
    let loc = root.join(&rel);
    let sink = BufWriter::with_capacity(loc.store.clone(), loc.path.clone(), 16 * 1024 * 1024);
    let schema = table_schema(&table.schema_name(true));
    let file_schema = chainbatch_executor::parquet_file::file_schema(&schema);
    let writer = AsyncArrowWriter::try_new(
        sink,
        file_schema.clone(),
        Some(writer_props(&file_schema, table)),
    )
    .map_err(|e| e.to_string())?;
    Ok(TableSink {
        table,
        writer,
        file_schema,
        uri: loc.uri(),
        rows: 0,
    })
}

#[derive(Default)]
struct Counters {
    rows: AtomicU64,
    bytes: AtomicU64,
    files: AtomicU64,
    checksum: AtomicU64,
}

/// Writes the chosen tables; `progress` is called after each day-file unit.
/// Memory per unit is one batch and one row group per table, whatever `rows`.
pub async fn write_tables(
    cfg: &GenConfig,
    out: &str,
    tables: &[String],
    parallelism: usize,
    progress: Progress,
) -> Result<GenTotals, String> {
    if let Some(bad) = tables
        .iter()
        .find(|t| !TABLES.iter().any(|x| x.name() == t.as_str()))
    {
        let known: Vec<&str> = TABLES.iter().map(|t| t.name()).collect();
        return Err(format!(
            "unknown table `{bad}`; expected some of: {}",
            known.join(", ")
        ));
    }
    let tables: Arc<Vec<String>> = Arc::new(tables.to_vec());
    let want = |tables: &[String], t: EthTable| tables.iter().any(|x| x == t.name());
    let root = storage::resolve(out).map_err(|e| e.to_string())?;
    let per_day = cfg.rows_per_day();
    let mut units = vec![];
    for (d, rows) in per_day.iter().enumerate() {
        let k = cfg.files_per_day.max(1) as u64;
        for f in 0..k {
            units.push((d as u32, *rows, rows * f / k, rows * (f + 1) / k, f as u32));
        }
    }
    // Largest units first: the small days fill in at the end instead of
    // leaving cores idle behind one big day.
    units.sort_by_key(|u| std::cmp::Reverse(u.3 - u.2));
    let counters: Arc<Vec<Counters>> =
        Arc::new(TABLES.iter().map(|_| Counters::default()).collect());
    let idx = |t: EthTable| TABLES.iter().position(|x| *x == t).expect("known table");
    // Each unit is its own task, so Parquet encoding runs on every core.
    let results: Vec<Result<Result<(), String>, tokio::task::JoinError>> =
        futures::stream::iter(units)
            .map(|(d, day_rows, first, last, f)| {
                let root = root.clone();
                let cfg = cfg.clone();
                let counters = counters.clone();
                let tables = tables.clone();
                let progress = progress.clone();
                let want = move |t: EthTable| want(&tables, t);
                tokio::spawn(async move {
                    let date = crate::time::date_of(cfg.day_start(d));
                    let mut sinks = vec![];
                    for t in [
                        EthTable::Transactions,
                        EthTable::Logs,
                        EthTable::TokenTransfers,
                    ] {
                        if want(t) {
                            sinks.push(open_sink(&root, t, &date, f).await?);
                        }
                    }
                    // The next batch is generated on the blocking pool while
                    // this one is encoded, so both kinds of work overlap.
                    let events = want(EthTable::Logs) || want(EthTable::TokenTransfers);
                    let spawn_batch = |row: u64| {
                        let n = (cfg.batch_rows as u64).min(last - row) as usize;
                        let c = cfg.clone();
                        let handle = tokio::task::spawn_blocking(move || {
                            generate_batch(&c, d, day_rows, row, n, events)
                        });
                        (handle, n as u64)
                    };
                    let mut row = first;
                    let mut next = (row < last && !sinks.is_empty()).then(|| spawn_batch(row));
                    while let Some((handle, n)) = next.take() {
                        let batches = handle.await.map_err(|e| e.to_string())?;
                        row += n;
                        if row < last {
                            next = Some(spawn_batch(row));
                        }
                        for s in sinks.iter_mut() {
                            let b = match s.table {
                                EthTable::Logs => &batches.logs,
                                EthTable::TokenTransfers => &batches.token_transfers,
                                _ => &batches.transactions,
                            };
                            counters[idx(s.table)].checksum.fetch_add(
                                row_checksum(b).map_err(|e| e.to_string())?,
                                Ordering::Relaxed,
                            );
                            s.write(b).await?;
                            s.rows += b.num_rows() as u64;
                        }
                    }
                    if want(EthTable::Blocks) && f == 0 {
                        let mut s = open_sink(&root, EthTable::Blocks, &date, 0).await?;
                        let b = blocks_batch(&cfg, d, day_rows);
                        counters[idx(EthTable::Blocks)].checksum.fetch_add(
                            row_checksum(&b).map_err(|e| e.to_string())?,
                            Ordering::Relaxed,
                        );
                        s.write(&b).await?;
                        s.rows += b.num_rows() as u64;
                        sinks.push(s);
                    }
                    for mut s in sinks {
                        s.writer
                            .finish()
                            .await
                            .map_err(|e| format!("{}: {e}", s.uri))?;
                        let c = &counters[idx(s.table)];
                        c.rows.fetch_add(s.rows, Ordering::Relaxed);
                        c.bytes
                            .fetch_add(s.writer.bytes_written() as u64, Ordering::Relaxed);
                        c.files.fetch_add(1, Ordering::Relaxed);
                    }
                    progress(&format!("date={date}/part-{f:05}"), last - first);
                    Ok(())
                })
            })
            .buffer_unordered(parallelism.max(1))
            .collect()
            .await;
    for r in results {
        r.map_err(|e| format!("generator task failed: {e}"))??;
    }
    Ok(GenTotals {
        tables: TABLES
            .iter()
            .zip(counters.iter())
            .filter(|(t, _)| want(&tables, **t))
            .map(|(t, c)| {
                (
                    t.name().to_string(),
                    GenSummary {
                        rows: c.rows.load(Ordering::Relaxed),
                        files: c.files.load(Ordering::Relaxed),
                        bytes: c.bytes.load(Ordering::Relaxed),
                        checksum: format!("{:016x}", c.checksum.load(Ordering::Relaxed)),
                    },
                )
            })
            .collect(),
    })
}

/// Writes the transactions table only.
pub async fn write_transactions(
    cfg: &GenConfig,
    out: &str,
    parallelism: usize,
    progress: Progress,
) -> Result<GenSummary, String> {
    let t = write_tables(
        cfg,
        out,
        &["transactions".to_string()],
        parallelism,
        progress,
    )
    .await?;
    Ok(t.tables
        .into_iter()
        .next()
        .map(|(_, s)| s)
        .unwrap_or_default())
}
