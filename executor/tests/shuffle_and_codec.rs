//! Shuffle map and reduce across tasks, row-group inputs, and the physical
//! codec that carries the layout writer to another process.

use crate::support::*;
use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Int64Type};
use chainbatch_executor::distributed::codec::DistributedCodec;
use chainbatch_executor::layout::{Layout, PartitionColumn};
use chainbatch_executor::schema::ColumnSpec;
use chainbatch_executor::spec::{InputFormat, InputTable, OutputSpec, ShuffleInput, TaskSpec};
use datafusion_proto::bytes::{
    physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
};
use std::collections::BTreeMap;

#[tokio::test]
async fn shuffle_map_and_reduce_group_every_key_once() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = input_files(&dir.path().join("in"), 2, 12_000, 1);
    let shuffle_root = dir.path().join("_chainbatch/shuffle");
    let mut map_outputs = vec![];
    for (t, input) in inputs.iter().enumerate() {
        let mut spec = table_spec(
            vec![parquet_input("tx", std::slice::from_ref(input))],
            "SELECT from_address, value FROM tx",
            Layout::default(),
            dir.path(),
        );
        spec.task_index = t as u32;
        spec.output = OutputSpec::Shuffle {
            staging_uri: shuffle_root.display().to_string(),
            hash_by: vec!["from_address".into()],
            buckets: 4,
            sort_by: vec![],
        };
        let m = chainbatch_executor::run_task(&spec, 1).await.unwrap();
        assert_eq!(m.rows, 12_000);
        map_outputs.push(m.attempt_dir.clone());
    }
    let mut per_address: BTreeMap<String, i64> = BTreeMap::new();
    for bucket in 0..4u32 {
        let spec = TaskSpec {
            stage_id: 1,
            task_index: bucket,
            inputs: vec![InputTable {
                name: "shuffled".into(),
                format: InputFormat::Shuffle,
                files: vec![],
                schema: Some(vec![
                    ColumnSpec::new("from_address", "string"),
                    ColumnSpec::new("value", "decimal(38,0)"),
                ]),
                partition_columns: vec![],
                shuffle: Some(ShuffleInput {
                    bucket,
                    map_outputs: map_outputs.clone(),
                }),
            }],
            ..table_spec(
                vec![],
                "SELECT from_address, count(*) AS n FROM shuffled GROUP BY from_address",
                Layout::default(),
                &dir.path().join("reduce"),
            )
        };
        let m = chainbatch_executor::run_task(&spec, 1).await.unwrap();
        let out = dir
            .path()
            .join(format!("reduce/run-1/1/{bucket}/attempt-1"));
        if m.rows == 0 {
            continue;
        }
        for b in read_back(&out, &[], "SELECT from_address, n FROM out").await {
            let addrs = b.column(0).as_string::<i32>();
            let n = arrow::compute::cast(b.column(1), &DataType::Int64).unwrap();
            let n = n.as_primitive::<Int64Type>();
            for i in 0..b.num_rows() {
                let prev = per_address.insert(addrs.value(i).to_string(), n.value(i));
                assert!(prev.is_none(), "{} reduced in two buckets", addrs.value(i));
            }
        }
    }
    assert_eq!(per_address.len(), 40);
    assert_eq!(per_address.values().sum::<i64>(), 24_000);
    let direct = read_back(
        &dir.path().join("in"),
        &[],
        "SELECT from_address, count(*) FROM out GROUP BY from_address",
    )
    .await;
    let rows: usize = direct.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(rows, 40);
    for b in direct {
        let addrs = b.column(0).as_string::<i32>();
        let n = b.column(1).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            assert_eq!(per_address[addrs.value(i)], n.value(i));
        }
    }
}

#[tokio::test]
async fn row_group_selection_reads_only_those_groups() {
    let dir = tempfile::tempdir().unwrap();
    // One file, three row groups of 8192 rows.
    let path = dir.path().join("in/three.parquet");
    write_parquet(
        &path,
        &[
            batch(0, 8192, 1),
            batch(8192, 8192, 1),
            batch(16384, 8192, 1),
        ],
    );
    let mut input = parquet_input("tx", &[path]);
    input.files[0].row_groups = Some(vec![1]);
    let spec = table_spec(
        vec![input],
        "SELECT min(block_number) AS lo, count(*) AS n FROM tx",
        Layout::default(),
        dir.path(),
    );
    let m = chainbatch_executor::run_task(&spec, 1).await.unwrap();
    assert_eq!(m.rows, 1);
    let b = read_back(
        &dir.path().join("run-1/0/0/attempt-1"),
        &[],
        "SELECT n FROM out",
    )
    .await;
    assert_eq!(single_i64(&b), 8192);
}

#[tokio::test]
async fn layout_sink_survives_the_physical_codec() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = input_files(&dir.path().join("in"), 1, 5_000, 60);
    let layout = Layout {
        partition_by: vec![PartitionColumn::Derived {
            name: "date".into(),
            expr: "CAST(block_timestamp AS DATE)".into(),
        }],
        sort_by: vec!["block_number".into()],
        ..Layout::default()
    };
    let spec = table_spec(
        vec![parquet_input("tx", &inputs)],
        "SELECT hash, block_number, block_timestamp, bucket_id(4, from_address) AS b FROM tx",
        layout,
        dir.path(),
    );
    // The plan a distributed node ships to Ballista's executors.
    let plan = chainbatch_executor::distributed::job::physical_plan(&spec, 2)
        .await
        .unwrap();
    let codec = DistributedCodec::default();
    let bytes = physical_plan_to_bytes_with_extension_codec(plan, &codec).unwrap();
    // Decode in a fresh session, as a remote executor would.
    let other = chainbatch_executor::task_session(&spec).unwrap();
    let decoded =
        physical_plan_from_bytes_with_extension_codec(&bytes, &other.task_ctx(), &codec).unwrap();
    let shown = datafusion::physical_plan::displayable(decoded.as_ref())
        .indent(false)
        .to_string();
    assert!(shown.contains("LayoutSinkExec"), "{shown}");
    datafusion::physical_plan::collect_partitioned(decoded, other.task_ctx())
        .await
        .unwrap();
    let out_dir = std::path::PathBuf::from(spec.attempt_dir(1));
    let b = read_back(
        &out_dir,
        &[("date", DataType::Utf8)],
        "SELECT count(*), count(DISTINCT date) FROM out",
    )
    .await;
    assert_eq!(single_i64(&b), 5_000);
}
