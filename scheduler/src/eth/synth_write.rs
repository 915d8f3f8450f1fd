//! Writes generated tables in the AWS layout,
//! `<out>/<table>/date=YYYY-MM-DD/part-NNNNN.parquet`, one file per day by
//! default, days and files in parallel, each file streamed batch by batch.

use crate::eth::synth::{GenConfig, transactions_batch, transactions_schema};
use chainbatch_executor::layout::file_writer::row_checksum;
use chainbatch_executor::storage;
use futures::StreamExt;
use object_store::buffered::BufWriter;
use parquet::arrow::AsyncArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Clone, Default)]
pub struct GenSummary {
    pub rows: u64,
    pub files: u64,
    pub bytes: u64,
    /// Order-independent checksum of all rows (hex): equal for equal seeds.
    pub checksum: String,
}

pub fn date_string(ts: i64) -> String {
    let days = ts.div_euclid(86_400);
    chrono_free_date(days)
}

/// Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
pub fn chrono_free_date(days: i64) -> String {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    format!("{:04}-{:02}-{:02}", if m <= 2 { y + 1 } else { y }, m, d)
}

fn writer_props() -> WriterProperties {
    // Like the public dataset: snappy, row groups of 128k rows.
    WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(128 * 1024))
        .build()
}

/// Writes the transactions table; `progress` is called after each file.
pub async fn write_transactions(
    cfg: &GenConfig,
    out: &str,
    parallelism: usize,
    progress: &(dyn Fn(&str, u64) + Sync),
) -> Result<GenSummary, String> {
    let root = storage::resolve(out).map_err(|e| e.to_string())?;
    let per_day = cfg.rows_per_day();
    let mut units = vec![];
    for (d, rows) in per_day.iter().enumerate() {
        let k = cfg.files_per_day.max(1) as u64;
        for f in 0..k {
            let first = rows * f / k;
            let last = rows * (f + 1) / k;
            units.push((d as u32, *rows, first, last, f));
        }
    }
    let checksum = AtomicU64::new(0);
    let bytes = AtomicU64::new(0);
    let results: Vec<Result<(), String>> = futures::stream::iter(units)
        .map(|(d, day_rows, first, last, f)| {
            let root = root.clone();
            let cfg = cfg.clone();
            let checksum = &checksum;
            let bytes = &bytes;
            async move {
                let date = date_string(cfg.day_start(d));
                let rel = format!("transactions/date={date}/part-{f:05}.parquet");
                let loc = root.join(&rel);
                let sink =
                    BufWriter::with_capacity(loc.store.clone(), loc.path.clone(), 16 * 1024 * 1024);
                let mut w =
                    AsyncArrowWriter::try_new(sink, transactions_schema(), Some(writer_props()))
                        .map_err(|e| e.to_string())?;
                let mut row = first;
                while row < last {
                    let n = (cfg.batch_rows as u64).min(last - row) as usize;
                    let c = cfg.clone();
                    let batch = tokio::task::spawn_blocking(move || {
                        transactions_batch(&c, d, day_rows, row, n)
                    })
                    .await
                    .map_err(|e| e.to_string())?;
                    checksum.fetch_add(
                        row_checksum(&batch).map_err(|e| e.to_string())?,
                        Ordering::Relaxed,
                    );
                    w.write(&batch)
                        .await
                        .map_err(|e| format!("{}: {e}", loc.uri()))?;
                    row += n as u64;
                }
                w.finish()
                    .await
                    .map_err(|e| format!("{}: {e}", loc.uri()))?;
                bytes.fetch_add(w.bytes_written() as u64, Ordering::Relaxed);
                progress(&rel, last - first);
                Ok(())
            }
        })
        .buffer_unordered(parallelism.max(1))
        .collect()
        .await;
    let files = results.len() as u64;
    results.into_iter().collect::<Result<Vec<_>, _>>()?;
    Ok(GenSummary {
        rows: cfg.rows,
        files,
        bytes: bytes.load(Ordering::Relaxed),
        checksum: format!("{:016x}", checksum.load(Ordering::Relaxed)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates() {
        assert_eq!(chrono_free_date(0), "1970-01-01");
        assert_eq!(date_string(1_683_029_999), "2023-05-02");
        assert_eq!(date_string(951_782_400), "2000-02-29");
    }
}
