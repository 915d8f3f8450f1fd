//! Disjunctions across columns skip row groups by bloom filters: a file of
//! four row groups, bloom filters on `from_address` and `to_address`, one
//! address in each.

use arrow::array::{ArrayRef, Int64Array, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::record_batch::RecordBatch;
use chainbatch_executor::bloom_pruning::BloomPrunedTable;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::{SessionConfig, SessionContext};
use parquet::arrow::ArrowWriter;
use parquet::file::properties::WriterProperties;
use std::sync::Arc;

/// Row group `g` holds rows `g*100..g*100+100`, sent by `0xf{g}` to `0xt{g}`,
/// except that `memo` (no bloom filter) is `m{g}`.
fn write_file(dir: &std::path::Path) {
    let schema = Arc::new(Schema::new(vec![
        Field::new("n", DataType::Int64, false),
        Field::new("from_address", DataType::Utf8, false),
        Field::new("to_address", DataType::Utf8, false),
        Field::new("memo", DataType::Utf8, false),
    ]));
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(100))
        .set_column_bloom_filter_enabled("from_address".into(), true)
        .set_column_bloom_filter_enabled("to_address".into(), true)
        .build();
    let file = std::fs::File::create(dir.join("part-0.parquet")).unwrap();
    let mut w = ArrowWriter::try_new(file, schema.clone(), Some(props)).unwrap();
    for g in 0..4i64 {
        let col = |prefix: &str| -> ArrayRef {
            Arc::new(StringArray::from(vec![format!("{prefix}{g}"); 100]))
        };
        let n: ArrayRef = Arc::new(Int64Array::from_iter_values(g * 100..g * 100 + 100));
        let batch = RecordBatch::try_new(schema.clone(), vec![n, col("0xf"), col("0xt"), col("m")])
            .unwrap();
        w.write(&batch).unwrap();
        w.flush().unwrap();
    }
    w.close().unwrap();
}

async fn session(dir: &std::path::Path) -> (SessionContext, Arc<BloomPrunedTable>) {
    // The table probes the filters itself; DataFusion would read them whole.
    let mut config = SessionConfig::new();
    config.options_mut().execution.parquet.bloom_filter_on_read = false;
    let ctx = SessionContext::new_with_config(config);
    let url = ListingTableUrl::parse(format!("{}/", dir.display())).unwrap();
    let options = ListingOptions::new(Arc::new(ParquetFormat::default()));
    let schema = options.infer_schema(&ctx.state(), &url).await.unwrap();
    let config = ListingTableConfig::new(url)
        .with_listing_options(options)
        .with_schema(schema);
    let table = Arc::new(BloomPrunedTable::new(Arc::new(
        ListingTable::try_new(config).unwrap(),
    )));
    ctx.register_table("t", table.clone()).unwrap();
    (ctx, table)
}

/// The bytes of every bloom filter in the file.
fn filter_lengths(dir: &std::path::Path) -> i64 {
    let file = std::fs::File::open(dir.join("part-0.parquet")).unwrap();
    let reader = parquet::file::reader::SerializedFileReader::new(file).unwrap();
    use parquet::file::reader::FileReader;
    reader
        .metadata()
        .row_groups()
        .iter()
        .flat_map(|g| g.columns())
        .filter_map(|c| c.bloom_filter_length())
        .map(i64::from)
        .sum()
}

async fn count(ctx: &SessionContext, filter: &str) -> i64 {
    let batches = ctx
        .sql(&format!("SELECT count(*), min(n) FROM t WHERE {filter}"))
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0)
}

#[tokio::test]
async fn a_sender_or_recipient_reads_only_the_row_groups_that_may_hold_it() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path());
    let (ctx, table) = session(dir.path()).await;
    let stats = table.stats();

    // Sent in group 1 or received in group 3: two of four groups read.
    assert_eq!(
        count(&ctx, "from_address = '0xf1' OR to_address = '0xt3'").await,
        200
    );
    assert_eq!(stats.row_groups_checked(), 4);
    assert_eq!(stats.row_groups_pruned(), 2);
    // Per row group and column, the filter's header and one 32-byte block
    // are read, not the whole filter.
    let filter_bytes = filter_lengths(dir.path());
    assert!(stats.bytes_read() > 0);
    assert!(
        stats.bytes_read() <= 8 * 64,
        "{} bytes read to probe filters of {filter_bytes} bytes",
        stats.bytes_read()
    );

    // One column: a point lookup skips three of four groups.
    stats.reset();
    assert_eq!(count(&ctx, "to_address = '0xt2'").await, 100);
    assert_eq!(stats.row_groups_pruned(), 3);
    // Two values of one column.
    stats.reset();
    assert_eq!(
        count(&ctx, "from_address = '0xf0' OR from_address = '0xf3'").await,
        200
    );
    assert_eq!(stats.row_groups_pruned(), 2);

    // In lists too, and an address in neither column skips every group.
    stats.reset();
    assert_eq!(
        count(
            &ctx,
            "from_address IN ('0xf0', '0xf2') OR to_address = '0xnone'"
        )
        .await,
        200
    );
    assert_eq!(stats.row_groups_pruned(), 2);
    stats.reset();
    assert_eq!(
        count(&ctx, "from_address = '0xnone' OR to_address = '0xnone'").await,
        0
    );
    assert_eq!(stats.row_groups_pruned(), 4);

    // A term on a column without bloom filters may hold anywhere: nothing
    // is skipped, and the answer is the same.
    stats.reset();
    assert_eq!(
        count(&ctx, "from_address = '0xf1' OR memo = 'm2'").await,
        200
    );
    assert_eq!(stats.row_groups_pruned(), 0);

    // Under a conjunction with a range, the disjunction still prunes.
    stats.reset();
    assert_eq!(
        count(
            &ctx,
            "(from_address = '0xf1' OR to_address = '0xt3') AND n >= 150"
        )
        .await,
        150
    );
    assert_eq!(stats.row_groups_pruned(), 2);
}
