//! Inputs whose files declare the layout's sort order are written as they
//! stream in; files that lie about their order still give sorted files; and
//! writers keep their buffered row groups within the task's memory.

use crate::support::*;
use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use chainbatch_executor::layout::{Layout, PartitionColumn};
use chainbatch_executor::manifest::SortMethod;
use chainbatch_executor::spec::TaskSpec;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::WriterProperties;
use std::path::{Path, PathBuf};

fn date_layout(sort_by: &str) -> Layout {
    Layout {
        partition_by: vec![PartitionColumn::Derived {
            name: "date".into(),
            expr: "CAST(block_timestamp AS DATE)".into(),
        }],
        sort_by: vec![sort_by.into()],
        ..Layout::default()
    }
}

/// Writes `batches` declaring `block_number` ascending in every row group,
/// whether or not the rows are.
fn write_declared_sorted(path: &Path, batches: &[RecordBatch]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let props = WriterProperties::builder()
        .set_max_row_group_row_count(Some(4096))
        .set_sorting_columns(Some(vec![SortingColumn {
            column_idx: 1,
            descending: false,
            nulls_first: false,
        }]))
        .build();
    let mut w =
        ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema(), Some(props)).unwrap();
    for b in batches {
        w.write(b).unwrap();
    }
    w.close().unwrap();
}

/// `support::batch`'s rows `first..first + n`, in block order.
fn in_block_order(first: u64, n: usize) -> RecordBatch {
    let b = batch(first, n, 6);
    let idx = arrow::compute::sort_to_indices(b.column(1), None, None).unwrap();
    arrow::compute::take_record_batch(&b, &idx).unwrap()
}

/// `files` files of `rows` rows each, each sorted by block_number, the
/// files covering consecutive block ranges.
fn sorted_inputs(dir: &Path, files: usize, rows: usize) -> Vec<PathBuf> {
    (0..files)
        .map(|f| {
            // A gap between files: support::batch jitters blocks by up to 2.
            let sorted = in_block_order((f * (rows + 100)) as u64, rows);
            let p = dir.join(format!("sorted-{f}.parquet"));
            write_declared_sorted(&p, &[sorted]);
            p
        })
        .collect()
}

fn read_file(p: &Path) -> (Vec<i64>, Option<Vec<SortingColumn>>) {
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(p).unwrap()).unwrap();
    let declared = builder.metadata().row_group(0).sorting_columns().cloned();
    let blocks = builder
        .build()
        .unwrap()
        .flat_map(|b| {
            let b = b.unwrap();
            let c = b.column(b.schema().index_of("block_number").unwrap());
            c.as_primitive::<Int64Type>().values().to_vec()
        })
        .collect();
    (blocks, declared)
}

/// Asserts the file's block numbers are in order (descending or not).
fn assert_sorted(f: &Path, descending: bool) {
    let (blocks, _) = read_file(f);
    assert!(
        blocks.windows(2).all(|w| if descending {
            w[0] >= w[1]
        } else {
            w[0] <= w[1]
        }),
        "{} is not sorted",
        f.display()
    );
}

fn attempt(dir: &Path) -> PathBuf {
    dir.join("run-1/0/0/attempt-1")
}

/// `SELECT * FROM tx` over `inputs`, written by date and sorted by `sort_by`.
fn select_all_by_date(inputs: &[PathBuf], sort_by: &str, stage: &Path) -> TaskSpec {
    select_all(inputs, date_layout(sort_by), stage)
}

/// Asserts the task's date-partitioned output holds exactly the input rows.
async fn assert_same_rows(stage: &Path, input: &Path) {
    assert_eq!(
        totals(&attempt(stage), &[("date", DataType::Date32)]).await,
        totals(input, &[]).await
    );
}

const TOTALS: &str = "SELECT count(*), CAST(sum(value) AS VARCHAR), count(DISTINCT hash) FROM out";

async fn totals(dir: &Path, parts: &[(&str, DataType)]) -> Vec<String> {
    let b = read_back(dir, parts, TOTALS).await;
    (0..3)
        .map(|i| arrow::util::display::array_value_to_string(b[0].column(i), 0).unwrap())
        .collect()
}

#[tokio::test]
async fn sorted_inputs_are_written_in_input_order_without_a_sort() {
    let dir = tempfile::tempdir().unwrap();
    let mut inputs = sorted_inputs(&dir.path().join("in"), 3, 30_000);
    // Listed out of order: the scan orders files by their declared ranges.
    inputs.reverse();
    let stage = dir.path().join("stage");
    let mut spec = table_spec(
        vec![parquet_input("tx", &inputs)],
        "SELECT *, value * 2 AS doubled FROM tx",
        date_layout("block_number"),
        &stage,
    );
    spec.resources.parallelism = 2;
    let m = chainbatch_executor::run_task(&spec, 1).await.unwrap();
    assert_eq!(m.sort, Some(SortMethod::InputOrder));
    assert_eq!(m.rows, 90_000);
    let files = files_below(&attempt(&stage), ".parquet");
    assert!(!files.is_empty());
    for f in &files {
        assert_sorted(f, false);
        // The output declares its order too, for the next task to use.
        let declared = read_file(f).1.expect("sorting_columns written");
        assert_eq!(declared.len(), 1);
        assert!(!declared[0].descending);
    }
    assert_same_rows(&stage, &dir.path().join("in")).await;

    // A query that breaks the order (or another sort order) sorts instead.
    let stage = dir.path().join("desc");
    let spec = select_all_by_date(&inputs, "block_number desc", &stage);
    let m = chainbatch_executor::run_task(&spec, 1).await.unwrap();
    assert_eq!(m.sort, Some(SortMethod::Sorted));
    for f in files_below(&attempt(&stage), ".parquet") {
        assert_sorted(&f, true);
    }
}

#[tokio::test]
async fn files_that_misdeclare_their_order_still_give_sorted_files() {
    let dir = tempfile::tempdir().unwrap();
    // Rows in shuffled block order, declared ascending all the same.
    let lying = dir.path().join("in/lying.parquet");
    write_declared_sorted(&lying, &[batch(0, 20_000, 6), batch(20_000, 20_000, 6)]);
    let stage = dir.path().join("stage");
    let spec = select_all_by_date(&[lying], "block_number", &stage);
    let m = chainbatch_executor::run_task(&spec, 1).await.unwrap();
    assert_eq!(m.sort, Some(SortMethod::InputOrder));
    let files = files_below(&attempt(&stage), ".parquet");
    assert_eq!(files.len(), m.files.len());
    // Each break in the order starts a new file, so every file is sorted.
    assert!(files.len() > m.partitions.len());
    for f in &files {
        assert_sorted(f, false);
    }
    assert_same_rows(&stage, &dir.path().join("in")).await;
}

#[tokio::test]
async fn writers_cut_row_groups_to_stay_within_task_memory() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = sorted_inputs(&dir.path().join("in"), 2, 60_000);
    let layout = Layout {
        // One row group per file, were memory no object.
        row_group_rows: 10_000_000,
        row_group_bytes: u64::MAX,
        compression: "none".into(),
        target_file_bytes: None,
        ..date_layout("block_number")
    };
    let run = |name: &str, memory: u64| {
        let mut spec = select_all(&inputs, layout.clone(), &dir.path().join(name));
        spec.resources.memory_bytes = memory;
        spec.resources.parallelism = 1;
        spec
    };
    let roomy = chainbatch_executor::run_task(&run("roomy", 1 << 30), 1)
        .await
        .unwrap();
    let tight = chainbatch_executor::run_task(&run("tight", 2 << 20), 1)
        .await
        .unwrap();
    let groups = |m: &chainbatch_executor::TaskManifest| -> u32 {
        m.files.iter().map(|f| f.row_groups).sum()
    };
    assert_eq!(groups(&roomy), roomy.files.len() as u32);
    // Row groups are flushed early, and files finished early once their
    // upload buffers alone overflow the budget.
    assert!(
        groups(&tight) > 3 * groups(&roomy),
        "a 2 MiB budget cuts the data into many row groups: {} groups in {} files, {} unbounded",
        groups(&tight),
        tight.files.len(),
        groups(&roomy)
    );
    assert_eq!(roomy.rows, tight.rows);
    assert_eq!(
        totals(
            &attempt(&dir.path().join("tight")),
            &[("date", DataType::Date32)]
        )
        .await,
        totals(&dir.path().join("in"), &[]).await
    );
}

#[tokio::test]
async fn one_large_sorted_file_is_split_between_workers_by_row_groups() {
    let dir = tempfile::tempdir().unwrap();
    // One file of eight 4,096-row row groups.
    let inputs = sorted_inputs(&dir.path().join("in"), 1, 32_768);
    let stage = dir.path().join("stage");
    let mut spec = select_all_by_date(&inputs, "block_number", &stage);
    spec.resources.parallelism = 2;
    let m = chainbatch_executor::run_task(&spec, 1).await.unwrap();
    assert_eq!(m.sort, Some(SortMethod::InputOrder));
    assert_eq!(m.rows, 32_768);
    let files = files_below(&attempt(&stage), ".parquet");
    // Worker w numbers its files from w * 100,000: both workers wrote.
    let workers: std::collections::BTreeSet<bool> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().contains("-1000"))
        .collect();
    assert_eq!(workers.len(), 2, "files: {files:?}");
    for f in &files {
        assert_sorted(f, false);
    }
    assert_same_rows(&stage, &dir.path().join("in")).await;
}

#[tokio::test]
async fn a_small_pool_sorts_on_one_worker() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = sorted_inputs(&dir.path().join("in"), 2, 20_000);
    let stage = dir.path().join("stage");
    let mut spec = select_all_by_date(&inputs, "block_number desc", &stage);
    // Below 256 MiB a second sorter could not count on room to merge.
    spec.resources.parallelism = 2;
    spec.resources.memory_bytes = 128 * 1024 * 1024;
    let m = chainbatch_executor::run_task(&spec, 1).await.unwrap();
    assert_eq!(m.sort, Some(SortMethod::Sorted));
    assert_eq!(m.rows, 40_000);
    for f in files_below(&attempt(&stage), ".parquet") {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        assert!(name.starts_with("part-0-0-0"), "worker 0 wrote {name}");
        assert_sorted(&f, true);
    }
}

/// `files` files of `rows` rows each, declaring no order, covering
/// consecutive block ranges with a gap between files (as the AWS producer's
/// files do); rows in block order within each file, or shuffled.
fn undeclared_inputs(dir: &Path, files: usize, rows: usize, shuffled: bool) -> Vec<PathBuf> {
    (0..files)
        .map(|f| {
            let first = (f * (rows + 100)) as u64;
            let b = if shuffled {
                batch(first, rows, 6)
            } else {
                in_block_order(first, rows)
            };
            let p = dir.join(format!("part-{f}.parquet"));
            write_parquet(&p, &[b]);
            p
        })
        .collect()
}

#[tokio::test]
async fn undeclared_inputs_with_disjoint_ranges_are_sorted_range_by_range() {
    for shuffled in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut inputs = undeclared_inputs(&dir.path().join("in"), 4, 20_000, shuffled);
        // Listed out of order: the scan orders files by their statistics.
        inputs.reverse();
        assert!(read_file(&inputs[0]).1.is_none(), "no declared order");
        let stage = dir.path().join("stage");
        let mut spec = select_all_by_date(&inputs, "block_number", &stage);
        spec.resources.parallelism = 2;
        let m = chainbatch_executor::run_task(&spec, 1).await.unwrap();
        // Streamed to the writers in order, as declared inputs are: one
        // file per date and worker, each sorted.
        assert_eq!(m.sort, Some(SortMethod::InputOrder), "shuffled: {shuffled}");
        assert_eq!(m.rows, 80_000);
        let files = files_below(&attempt(&stage), ".parquet");
        assert!(
            files.len() <= 2 * m.partitions.len(),
            "{} files for {} dates",
            files.len(),
            m.partitions.len()
        );
        for f in &files {
            assert_sorted(f, false);
        }
        assert_same_rows(&stage, &dir.path().join("in")).await;
    }
}

#[tokio::test]
async fn undeclared_inputs_that_overlap_are_sorted_together_or_by_the_task() {
    let dir = tempfile::tempdir().unwrap();
    // Two files over the same blocks: one unit of both, sorted in memory.
    let a = dir.path().join("overlap/a.parquet");
    let b = dir.path().join("overlap/b.parquet");
    write_parquet(&a, &[batch(0, 20_000, 6)]);
    write_parquet(&b, &[batch(10_000, 20_000, 6)]);
    let stage = dir.path().join("stage-overlap");
    let spec = select_all_by_date(&[a, b], "block_number", &stage);
    let m = chainbatch_executor::run_task(&spec, 1).await.unwrap();
    assert_eq!(m.sort, Some(SortMethod::InputOrder));
    for f in files_below(&attempt(&stage), ".parquet") {
        assert_sorted(&f, false);
    }
    assert_same_rows(&stage, &dir.path().join("overlap")).await;

    // A file of two row groups far apart, and one whose rows fall within
    // the first group's range, read by one worker: no order of units
    // exists, the task sorts.
    let a = dir.path().join("interleaved/a.parquet");
    let b = dir.path().join("interleaved/b.parquet");
    write_parquet(
        &a,
        &[in_block_order(0, 8192), in_block_order(100_000, 8192)],
    );
    write_parquet(&b, &[in_block_order(4_000, 1_000)]);
    let stage = dir.path().join("stage-interleaved");
    let mut spec = select_all_by_date(&[a, b], "block_number", &stage);
    spec.resources.parallelism = 1;
    let m = chainbatch_executor::run_task(&spec, 1).await.unwrap();
    assert_eq!(m.sort, Some(SortMethod::Sorted));
    for f in files_below(&attempt(&stage), ".parquet") {
        assert_sorted(&f, false);
    }
    assert_same_rows(&stage, &dir.path().join("interleaved")).await;
}
