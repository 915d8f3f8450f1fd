//! Test data and helpers shared by the executor tests.

use arrow::array::{
    ArrayRef, Decimal128Array, Int64Array, RecordBatch, StringArray, TimestampSecondArray,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use chainbatch_executor::layout::Layout;
use chainbatch_executor::schema::ColumnSpec;
use chainbatch_executor::spec::{
    InputFile, InputFormat, InputTable, OutputSpec, SPEC_VERSION, TaskResources, TaskSpec,
};
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use parquet::arrow::ArrowWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// 2023-05-02T00:00:00Z
pub const START_TS: i64 = 1_682_985_600;

pub fn schema() -> Arc<Schema> {
    Arc::new(Schema::new(vec![
        Field::new("hash", DataType::Utf8, false),
        Field::new("block_number", DataType::Int64, false),
        Field::new(
            "block_timestamp",
            DataType::Timestamp(TimeUnit::Second, Some("UTC".into())),
            false,
        ),
        Field::new("from_address", DataType::Utf8, false),
        Field::new("value", DataType::Decimal128(38, 0), false),
        Field::new("input", DataType::Utf8, false),
    ]))
}

pub fn columns() -> Vec<ColumnSpec> {
    schema()
        .fields()
        .iter()
        .map(|f| ColumnSpec::from_field(f))
        .collect()
}

fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// `n` rows starting at row `first`: 12 s blocks of 10 rows, 40 senders,
/// values beyond 2^53, pseudo-random hashes (incompressible, like real ones).
/// Rows arrive in shuffled block order so that sorting has work to do.
pub fn batch(first: u64, n: usize, seconds_per_row: i64) -> RecordBatch {
    let rows: Vec<u64> = (first..first + n as u64).collect();
    let hash: StringArray = rows
        .iter()
        .map(|r| {
            Some(format!(
                "0x{:016x}{:016x}{:016x}{:016x}",
                mix(r * 4),
                mix(r * 4 + 1),
                mix(r * 4 + 2),
                mix(r * 4 + 3)
            ))
        })
        .collect();
    let order: Vec<u64> = rows.iter().map(|r| mix(*r * 7) % (n as u64 * 4)).collect();
    let block: Int64Array = rows
        .iter()
        .zip(&order)
        .map(|(r, o)| Some(17_000_000 + (*r as i64 / 10) + (*o as i64 % 3)))
        .collect();
    let ts: TimestampSecondArray = rows
        .iter()
        .map(|r| Some(START_TS + *r as i64 * seconds_per_row))
        .collect::<TimestampSecondArray>()
        .with_timezone("UTC");
    let from: StringArray = rows
        .iter()
        .map(|r| Some(format!("0x{:040x}", mix(*r) % 40)))
        .collect();
    let value: Decimal128Array = rows
        .iter()
        .map(|r| Some(9_007_199_254_740_993i128 * (*r as i128 % 1000) + 1))
        .collect::<Decimal128Array>()
        .with_precision_and_scale(38, 0)
        .unwrap();
    let input: StringArray = rows
        .iter()
        .map(|r| {
            Some(format!(
                "0xa9059cbb{:016x}{:016x}",
                mix(!*r),
                mix(!*r ^ 0x55)
            ))
        })
        .collect();
    let cols: Vec<ArrayRef> = vec![
        Arc::new(hash),
        Arc::new(block),
        Arc::new(ts),
        Arc::new(from),
        Arc::new(value),
        Arc::new(input),
    ];
    RecordBatch::try_new(schema(), cols).unwrap()
}

pub fn write_parquet(path: &Path, batches: &[RecordBatch]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let file = std::fs::File::create(path).unwrap();
    let props = parquet::file::properties::WriterProperties::builder()
        .set_max_row_group_row_count(Some(8192))
        .build();
    let mut w = ArrowWriter::try_new(file, schema(), Some(props)).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

/// Writes `files` parquet files of `rows_per_file` rows each into `dir`.
pub fn input_files(
    dir: &Path,
    files: usize,
    rows_per_file: usize,
    seconds_per_row: i64,
) -> Vec<PathBuf> {
    (0..files)
        .map(|f| {
            let p = dir.join(format!("in-{f}.parquet"));
            let batches: Vec<RecordBatch> = (0..rows_per_file.div_ceil(8192))
                .map(|b| {
                    let first = (f * rows_per_file + b * 8192) as u64;
                    let n = 8192.min(rows_per_file - b * 8192);
                    batch(first, n, seconds_per_row)
                })
                .collect();
            write_parquet(&p, &batches);
            p
        })
        .collect()
}

pub fn parquet_input(name: &str, files: &[PathBuf]) -> InputTable {
    InputTable {
        name: name.into(),
        format: InputFormat::Parquet,
        files: files
            .iter()
            .map(|p| InputFile::whole(p.display().to_string()))
            .collect(),
        schema: Some(columns()),
        partition_columns: vec![],
        shuffle: None,
    }
}

/// `SELECT * FROM tx` over the Parquet `inputs`, written in `layout`.
pub fn select_all(inputs: &[PathBuf], layout: Layout, staging: &Path) -> TaskSpec {
    table_spec(
        vec![parquet_input("tx", inputs)],
        "SELECT * FROM tx",
        layout,
        staging,
    )
}

pub fn table_spec(inputs: Vec<InputTable>, sql: &str, layout: Layout, staging: &Path) -> TaskSpec {
    TaskSpec {
        version: SPEC_VERSION,
        run_id: "run-1".into(),
        stage_id: 0,
        task_index: 0,
        attempt: 1,
        inputs,
        sql: sql.into(),
        output: OutputSpec::Table {
            table_uri: staging.join("table").display().to_string(),
            staging_uri: staging.display().to_string(),
            layout,
        },
        resources: TaskResources {
            memory_bytes: 256 * 1024 * 1024,
            ..Default::default()
        },
    }
}

/// Every file below `dir` with the given ending, sorted.
pub fn files_below(dir: &Path, ending: &str) -> Vec<PathBuf> {
    let mut out = vec![];
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.to_string_lossy().ends_with(ending) {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// Reads a hive-partitioned output directory back as one table.
pub async fn read_back(
    dir: &Path,
    partition_cols: &[(&str, DataType)],
    sql: &str,
) -> Vec<RecordBatch> {
    let mut config = datafusion::prelude::SessionConfig::new();
    config
        .options_mut()
        .execution
        .parquet
        .schema_force_view_types = false;
    let ctx = SessionContext::new_with_config(config);
    let opts = ParquetReadOptions::default().table_partition_cols(
        partition_cols
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect(),
    );
    ctx.register_parquet("out", dir.display().to_string(), opts)
        .await
        .unwrap();
    ctx.sql(sql).await.unwrap().collect().await.unwrap()
}

pub fn single_i64(batches: &[RecordBatch]) -> i64 {
    use arrow::array::AsArray;
    let c = arrow::compute::cast(batches[0].column(0), &DataType::Int64).unwrap();
    c.as_primitive::<arrow::datatypes::Int64Type>().value(0)
}

pub fn single_string(batches: &[RecordBatch]) -> String {
    arrow::util::display::array_value_to_string(batches[0].column(0), 0).unwrap()
}

pub fn executor_bin() -> &'static str {
    env!("CARGO_BIN_EXE_chainbatch-executor")
}

pub fn write_spec(path: &Path, specs: &[TaskSpec]) {
    std::fs::write(path, serde_json::to_vec_pretty(specs).unwrap()).unwrap();
}
