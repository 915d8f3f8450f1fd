//! Glue registration and the Athena check, against moto as the Glue and
//! Athena API (started by scripts/test.sh) behind scheduler/tests/cli/peers/catalog_peer.py,
//! which enforces Glue's documented limits and runs Athena's queries in
//! DuckDB over the table's files on S3 (SeaweedFS).

use crate::s3::{import_fixture, list_keys, prefix};
use crate::support::*;
use aws_sdk_glue::Client;
use serde_json::Value;
use std::collections::BTreeSet;
use std::process::{Command, Output};

const REGION: &str = "us-east-1";

/// catalog_peer.py in front of the shared moto server.
fn start_peer(faults: Value) -> MotoPeer {
    MotoPeer::start("catalog_peer.py", &[], &faults)
}

async fn glue() -> Client {
    let conf = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new(REGION))
        .endpoint_url(moto_url())
        .load()
        .await;
    Client::new(&conf)
}

/// A database of its own for each test (moto's catalog is shared).
async fn fresh_database(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let db = format!("cb_{name}_{nanos}");
    glue()
        .await
        .create_database()
        .database_input(
            aws_sdk_glue::types::DatabaseInput::builder()
                .name(&db)
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
    db
}

fn catalog_globals(db: &str, workgroup: &str) -> Vec<String> {
    vec![
        "--globals".into(),
        format!("glue={{database: {db}, region: {REGION}}}"),
        "--globals".into(),
        format!("athena={{workgroup: {workgroup}, region: {REGION}}}"),
    ]
}

/// Where a test's run reads, writes and registers.
struct Target<'a> {
    raw: &'a str,
    out: &'a str,
    db: &'a str,
    workgroup: &'a str,
}

impl<'a> Target<'a> {
    fn new(raw: &'a str, out: &'a str, db: &'a str) -> Self {
        Self {
            raw,
            out,
            db,
            workgroup: "primary",
        }
    }
}

/// `chainbatch ARGS` with the Glue and Athena APIs behind `peer`.
fn command_with(p: &Project, peer: &MotoPeer, t: &Target, args: &[&str]) -> Command {
    let globals = catalog_globals(t.db, t.workgroup);
    let mut all: Vec<&str> = args.to_vec();
    all.extend(globals.iter().map(String::as_str));
    let mut c = p.command_on(&all, t.raw, t.out);
    c.env("AWS_ENDPOINT_URL_GLUE", &peer.url)
        .env("AWS_ENDPOINT_URL_ATHENA", &peer.url);
    c
}

fn run_with(p: &Project, peer: &MotoPeer, t: &Target, args: &[&str]) -> Output {
    command_with(p, peer, t, args).output().unwrap()
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned() + &String::from_utf8_lossy(&o.stderr)
}

/// `(name, type)` of a Glue table's columns and partition keys, its
/// location, SerDe and partitions (values joined by `/`, location).
struct SeenTable {
    columns: Vec<(String, String)>,
    keys: Vec<(String, String)>,
    location: String,
    serde: String,
    parameters: std::collections::HashMap<String, String>,
    partitions: BTreeSet<(String, String)>,
}

async fn seen_table(db: &str, table: &str) -> Option<SeenTable> {
    let g = glue().await;
    let t = match g.get_table().database_name(db).name(table).send().await {
        Ok(o) => o.table.unwrap(),
        Err(e)
            if e.as_service_error()
                .is_some_and(|s| s.is_entity_not_found_exception()) =>
        {
            return None;
        }
        Err(e) => panic!("GetTable {db}.{table}: {e:?}"),
    };
    let cols = |c: &[aws_sdk_glue::types::Column]| -> Vec<(String, String)> {
        c.iter()
            .map(|c| (c.name().to_string(), c.r#type().unwrap_or_default().into()))
            .collect()
    };
    let sd = t.storage_descriptor().unwrap();
    let mut partitions = BTreeSet::new();
    let mut pages = g
        .get_partitions()
        .database_name(db)
        .table_name(table)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for p in page.unwrap().partitions() {
            partitions.insert((
                p.values().join("/"),
                p.storage_descriptor()
                    .and_then(|s| s.location())
                    .unwrap_or_default()
                    .to_string(),
            ));
        }
    }
    Some(SeenTable {
        columns: cols(sd.columns()),
        keys: cols(t.partition_keys()),
        location: sd.location().unwrap_or_default().to_string(),
        serde: sd
            .serde_info()
            .and_then(|s| s.serialization_library())
            .unwrap_or_default()
            .to_string(),
        parameters: t.parameters().cloned().unwrap_or_default(),
        partitions,
    })
}

/// The `date=` partitions a dataset has on S3, as Glue should list them.
fn written_partitions(out: &str, dataset: &str) -> BTreeSet<(String, String)> {
    list_keys(&format!("{out}/{dataset}"))
        .iter()
        .filter(|k| k.ends_with(".parquet") && !k.contains("/_chainbatch/"))
        .filter_map(|k| {
            let dir = k.rsplit_once('/')?.0;
            let seg = dir.rsplit_once('/')?.1;
            let date = seg.strip_prefix("date=")?;
            Some((date.to_string(), format!("{out}/{dataset}/date={date}/")))
        })
        .collect()
}

#[tokio::test]
async fn eth_daily_outputs_are_registered_once_and_athena_counts_the_committed_rows() {
    let peer = start_peer(serde_json::json!({}));
    let db = fresh_database("daily").await;
    let raw = prefix("raw-glue");
    import_fixture(&raw);
    let out = prefix("out-glue");
    let p = Project::fixture();
    let o = run_with(
        &p,
        &peer,
        &Target::new(&raw, &out, &db),
        &["run", "--verify-athena"],
    );
    let log = text(&o);
    assert!(o.status.success(), "{log}");
    assert_eq!(peer.answered("StartQueryExecution").len(), 3, "{log}");
    assert!(
        log.contains("clean_transactions: Athena counts the same rows"),
        "{log}"
    );

    let t = seen_table(&db, "clean_transactions").await.expect("table");
    assert_eq!(t.location, format!("{out}/clean_transactions/"));
    assert_eq!(t.keys, vec![("date".to_string(), "date".to_string())]);
    for want in [
        ("hash", "string"),
        ("block_number", "bigint"),
        ("block_timestamp", "timestamp"),
        ("value", "decimal(38,0)"),
        ("fee_wei", "decimal(38,0)"),
        ("receipt_status", "bigint"),
    ] {
        assert!(
            t.columns
                .contains(&(want.0.to_string(), want.1.to_string())),
            "{want:?} in {:?}",
            t.columns
        );
    }
    assert!(
        !t.columns.iter().any(|(n, _)| n == "date"),
        "{:?}",
        t.columns
    );
    assert_eq!(
        t.serde,
        "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    );
    assert_eq!(
        t.parameters.get("classification").map(String::as_str),
        Some("parquet")
    );
    let written = written_partitions(&out, "clean_transactions");
    assert!(!written.is_empty());
    assert_eq!(t.partitions, written);
    for ds in ["daily_address_stats", "daily_summary"] {
        let t = seen_table(&db, ds).await.expect(ds);
        assert_eq!(t.partitions, written_partitions(&out, ds), "{ds}");
    }

    // A rerun replaces files in the same partitions: the catalog is
    // unchanged, nothing is created twice.
    let creates = peer.answered("CreateTable").len();
    let o = run_with(&p, &peer, &Target::new(&raw, &out, &db), &["run"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(peer.answered("CreateTable").len(), creates);
    assert!(peer.answered("UpdateTable").is_empty());
    let again = seen_table(&db, "clean_transactions").await.unwrap();
    assert_eq!(again.partitions, written);
    assert!(
        text(&o).contains(&format!(
            "0 partition(s) registered, {} already there",
            written.len()
        )),
        "{}",
        text(&o)
    );
}

#[tokio::test]
async fn a_registration_cut_short_by_a_crash_is_finished_by_gc_and_by_the_next_run() {
    let peer = start_peer(serde_json::json!({}));
    let raw = prefix("raw-glue-crash");
    import_fixture(&raw);
    let out = prefix("out-glue-crash");
    let p = Project::fixture();
    for finisher in ["gc", "run"] {
        let db = fresh_database("crash").await;
        let crashed = command_with(&p, &peer, &Target::new(&raw, &out, &db), &["run"])
            .env("CHAINBATCH_CRASH_AT", "before_register")
            .output()
            .unwrap();
        assert!(!crashed.status.success(), "{finisher}");
        // Committed, not registered.
        assert!(!written_partitions(&out, "clean_transactions").is_empty());
        assert!(seen_table(&db, "clean_transactions").await.is_none());
        let o = run_with(&p, &peer, &Target::new(&raw, &out, &db), &[finisher]);
        assert!(o.status.success(), "{finisher}: {}", text(&o));
        assert!(
            text(&o).contains("finished run"),
            "{finisher}: {}",
            text(&o)
        );
        let t = seen_table(&db, "clean_transactions").await.expect(finisher);
        assert_eq!(
            t.partitions,
            written_partitions(&out, "clean_transactions"),
            "{finisher}"
        );
    }
}

#[tokio::test]
async fn two_hundred_fifty_partitions_take_three_batch_create_partition_calls() {
    let peer = start_peer(serde_json::json!({}));
    let db = fresh_database("many").await;
    let p = Project::generated(2_500, 250, 1);
    let out = prefix("out-glue-many");
    let o = run_with(
        &p,
        &peer,
        &Target::new(&p.raw_root.display().to_string(), &out, &db),
        &["run", "--nodes", "clean_transactions"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let calls: Vec<usize> = peer
        .answered("BatchCreatePartition")
        .iter()
        .filter(|(b, _)| b["DatabaseName"] == db.as_str())
        .map(|(b, status)| {
            assert_eq!(*status, 200);
            b["PartitionInputList"].as_array().unwrap().len()
        })
        .collect();
    assert_eq!(calls, vec![100, 100, 50]);
    let t = seen_table(&db, "clean_transactions").await.unwrap();
    assert_eq!(t.partitions.len(), 250);
    assert_eq!(t.partitions, written_partitions(&out, "clean_transactions"));
}

#[tokio::test]
async fn partition_projection_sets_properties_and_registers_no_partition() {
    let peer = start_peer(serde_json::json!({}));
    let db = fresh_database("projection").await;
    let raw = prefix("raw-glue-projection");
    import_fixture(&raw);
    let out = prefix("out-glue-projection");
    let p = Project::fixture();
    // clean_transactions is the first dataset with `glue: true`.
    p.edit_conf(
        "base/catalog.yml",
        "  glue: true\n",
        "  glue:\n    partitions: projection\n    projection_range: 2015-07-30,NOW\n",
    );
    let o = run_with(
        &p,
        &peer,
        &Target::new(&raw, &out, &db),
        &["run", "--nodes", "clean_transactions", "--verify-athena"],
    );
    assert!(o.status.success(), "{}", text(&o));
    let t = seen_table(&db, "clean_transactions").await.unwrap();
    assert!(t.partitions.is_empty());
    let param = |k: &str| t.parameters.get(k).cloned().unwrap_or_default();
    assert_eq!(param("projection.enabled"), "true");
    assert_eq!(param("projection.date.type"), "date");
    assert_eq!(param("projection.date.format"), "yyyy-MM-dd");
    assert_eq!(param("projection.date.range"), "2015-07-30,NOW");
    assert_eq!(
        param("storage.location.template"),
        format!("{out}/clean_transactions/date=${{date}}/")
    );
    assert!(peer.answered("BatchCreatePartition").is_empty());
}

#[tokio::test]
async fn missing_catalogs_and_unreadable_types_are_refused_before_anything_is_written() {
    let peer = start_peer(serde_json::json!({}));
    let raw = prefix("raw-glue-bad");
    import_fixture(&raw);
    let p = Project::fixture();

    // No such database: exit 2, nothing written, no table.
    let out = prefix("out-glue-nodb");
    let o = run_with(&p, &peer, &Target::new(&raw, &out, "cb_nowhere"), &["run"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("Glue database `cb_nowhere` does not exist in us-east-1"),
        "{}",
        text(&o)
    );
    assert!(list_keys(&out).is_empty(), "{:?}", list_keys(&out));

    // No such workgroup for --verify-athena: exit 2, nothing written.
    let db = fresh_database("bad").await;
    let out = prefix("out-glue-nowg");
    let o = run_with(
        &p,
        &peer,
        &Target {
            workgroup: "nope",
            ..Target::new(&raw, &out, &db)
        },
        &["run", "--verify-athena"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("Athena workgroup `nope` does not exist"),
        "{}",
        text(&o)
    );
    assert!(list_keys(&out).is_empty());
    assert!(seen_table(&db, "clean_transactions").await.is_none());

    // Token transfers' exact uint256 value is DECIMAL(76,0): Athena cannot
    // declare it, so the run stops before it writes anything.
    let tt = p.dir.path().join("raw-tt");
    gen_transfers(&tt.display().to_string(), 2_000, 2);
    p.append_conf(
        "base/pipelines.yml",
        "\nraw_values:\n  nodes:\n    - name: transfer_values\n      inputs: [raw_token_transfers]\n      outputs: transfer_values\n      sql: |\n        SELECT transaction_hash, block_number, value, block_timestamp FROM raw_token_transfers\n",
    );
    p.append_conf(
        "base/catalog.yml",
        "\ntransfer_values:\n  type: parquet\n  path: ${globals:out_root}/transfer_values\n  partitions:\n    date: date\n  layout: ${globals:layouts.daily}\n  glue: true\n",
    );
    let out = prefix("out-glue-wide");
    let o = run_with(
        &p,
        &peer,
        &Target::new(&tt.display().to_string(), &out, &db),
        &["run", "--pipeline", "raw_values"],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(2), "{t}");
    assert!(t.contains("transfer_values.glue"), "{t}");
    assert!(t.contains("column `value` is Decimal256(76, 0)"), "{t}");
    assert!(
        t.contains("CAST(value AS VARCHAR)") && t.contains("DECIMAL(38,0)"),
        "{t}"
    );
    assert!(list_keys(&out).is_empty());
    assert!(seen_table(&db, "transfer_values").await.is_none());
}

#[tokio::test]
async fn a_failed_athena_query_fails_the_run_with_athenas_reason_after_the_commit() {
    let peer = start_peer(serde_json::json!({
        "fail_queries": "HIVE_BAD_DATA: Field value's type DECIMAL in parquet is incompatible"
    }));
    let db = fresh_database("failedquery").await;
    let raw = prefix("raw-glue-fail");
    import_fixture(&raw);
    let out = prefix("out-glue-fail");
    let p = Project::fixture();
    let o = run_with(
        &p,
        &peer,
        &Target::new(&raw, &out, &db),
        &["run", "--nodes", "clean_transactions", "--verify-athena"],
    );
    let t = text(&o);
    assert_eq!(o.status.code(), Some(1), "{t}");
    assert!(t.contains("node `clean_transactions` is committed"), "{t}");
    assert!(
        t.contains("failed: HIVE_BAD_DATA: Field value's type"),
        "{t}"
    );
    // Committed and registered: the check is what failed.
    let seen = seen_table(&db, "clean_transactions").await.unwrap();
    assert_eq!(
        seen.partitions,
        written_partitions(&out, "clean_transactions")
    );
}

#[tokio::test]
async fn register_puts_data_already_written_in_the_catalog() {
    let peer = start_peer(serde_json::json!({}));
    let raw = prefix("raw-glue-register");
    import_fixture(&raw);
    let out = prefix("out-glue-register");
    let p = Project::fixture();
    // Written without a catalog, then registered.
    let o = p.command_on(&["run"], &raw, &out).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let db = fresh_database("register").await;
    let o = run_with(
        &p,
        &peer,
        &Target::new(&raw, &out, &db),
        &["register", "clean_transactions", "daily_summary"],
    );
    assert!(o.status.success(), "{}", text(&o));
    for ds in ["clean_transactions", "daily_summary"] {
        let t = seen_table(&db, ds).await.expect(ds);
        assert_eq!(t.partitions, written_partitions(&out, ds), "{ds}");
    }
    let o = run_with(
        &p,
        &peer,
        &Target::new(&raw, &out, &db),
        &["register", "clean_transactionz"],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(
        text(&o).contains("did you mean `clean_transactions`?"),
        "{}",
        text(&o)
    );
}

/// A Glue table over raw transactions on S3, as a user's catalog has one.
async fn raw_table(db: &str, location: &str) {
    use aws_sdk_glue::types::{Column, StorageDescriptor, TableInput};
    let key = Column::builder()
        .name("date")
        .r#type("string")
        .build()
        .unwrap();
    glue()
        .await
        .create_table()
        .database_name(db)
        .table_input(
            TableInput::builder()
                .name("eth_transactions")
                .table_type("EXTERNAL_TABLE")
                .partition_keys(key)
                .storage_descriptor(StorageDescriptor::builder().location(location).build())
                .build()
                .unwrap(),
        )
        .send()
        .await
        .unwrap();
}

/// raw_transactions becomes the result of an Athena query over that table.
fn read_raw_through_athena(p: &Project, db: &str) {
    let catalog = p.conf().join("base/catalog.yml");
    let yaml = std::fs::read_to_string(&catalog).unwrap();
    let start = yaml.find("raw_transactions:\n").unwrap();
    let end = start + yaml[start..].find("\n\n").unwrap();
    let athena = format!(
        "raw_transactions:\n  type: athena\n  query: SELECT * FROM \"{db}\".\"eth_transactions\"\n  partitions:\n    date: string\n  schema: ${{globals:raw_transactions_schema}}"
    );
    std::fs::write(
        &catalog,
        format!("{}{athena}{}", &yaml[..start], &yaml[end..]),
    )
    .unwrap();
}

#[tokio::test]
async fn an_athena_query_as_input_is_unloaded_100_days_at_a_time_and_equals_reading_the_files() {
    let peer = start_peer(serde_json::json!({}));
    let db = fresh_database("source").await;
    let raw = prefix("raw-athena");
    run_gen(&[
        "--rows",
        "2500",
        "--days",
        "250",
        "--start",
        "2024-03-01",
        "--tables",
        "transactions",
        "--out",
        &raw,
    ]);
    let window = "2024-03-01..2024-11-05";
    let direct = Project::fixture();
    let o = direct
        .command(&["run", "--nodes", "clean_transactions", "--dates", window])
        .args(["--globals", &format!("raw_root={raw}")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));

    raw_table(&db, &format!("{raw}/transactions/")).await;
    let p = Project::fixture();
    read_raw_through_athena(&p, &db);
    let out = prefix("out-athena");
    let args = [
        "run",
        "--nodes",
        "clean_transactions",
        "--dates",
        window,
        "--run-id",
        "athena-1",
    ];
    let o = run_with(&p, &peer, &Target::new(&raw, &out, &db), &args);
    assert!(o.status.success(), "{}", text(&o));
    let unloads: Vec<String> = peer
        .answered("StartQueryExecution")
        .iter()
        .map(|(b, _)| b["QueryString"].as_str().unwrap().to_string())
        .filter(|q| q.starts_with("UNLOAD"))
        .collect();
    assert_eq!(unloads.len(), 3, "{unloads:#?}");
    assert!(
        unloads[0].contains("BETWEEN '2024-03-01' AND '2024-06-08'"),
        "{}",
        unloads[0]
    );
    assert!(
        unloads[2].contains("BETWEEN '2024-09-17' AND '2024-11-05'"),
        "{}",
        unloads[2]
    );
    // The staging prefix goes with the run.
    assert!(list_keys(&format!("{out}/_chainbatch/athena")).is_empty());

    let got = tempfile::tempdir().unwrap();
    crate::s3::download(&format!("{out}/clean_transactions"), got.path());
    let sql = "SELECT hash, value, fee_wei, CAST(date AS VARCHAR) FROM t ORDER BY hash";
    let expected = rows_as_text(&direct.query("clean_transactions", sql).await);
    assert_eq!(expected.len(), 2500);
    assert_eq!(rows_as_text(&query_dir(got.path(), sql).await), expected);

    // Athena writes only to an empty prefix: what an earlier attempt left
    // there stops the run before it queries, naming the prefix.
    let left = format!("{out}/_chainbatch/athena/athena-2/raw_transactions/u000/leftover");
    crate::s3::on_s3_runtime({
        let left = left.clone();
        async move {
            use object_store::ObjectStoreExt;
            let loc = chainbatch_executor::storage::resolve(&left).unwrap();
            loc.store.put(&loc.path, "x".into()).await.unwrap();
        }
    });
    let before = peer.answered("StartQueryExecution").len();
    let mut args = args;
    args[6] = "athena-2";
    let o = run_with(&p, &peer, &Target::new(&raw, &out, &db), &args);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("is not empty"), "{}", text(&o));
    assert!(text(&o).contains("raw_transactions/u000/"), "{}", text(&o));
    assert_eq!(peer.answered("StartQueryExecution").len(), before);

    // A run that stops after its UNLOADs resumes from them: no query twice.
    args[6] = "athena-3";
    let crashed = command_with(&p, &peer, &Target::new(&raw, &out, &db), &args)
        .env("CHAINBATCH_CRASH_AT", "after_tasks")
        .output()
        .unwrap();
    assert!(!crashed.status.success());
    let unloaded = peer.answered("StartQueryExecution").len();
    assert_eq!(unloaded, before + 3);
    let resume = ["run", "--resume", "athena-3"];
    let o = run_with(&p, &peer, &Target::new(&raw, &out, &db), &resume);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        text(&o).contains("3 UNLOAD(s) of the resumed run reused"),
        "{}",
        text(&o)
    );
    assert_eq!(peer.answered("StartQueryExecution").len(), unloaded);
    assert!(list_keys(&format!("{out}/_chainbatch/athena")).is_empty());
}

/// `format: delta` on SeaweedFS: commits are conditional creates in the
/// table's `_delta_log/`; the Glue table is the kind Athena reads from the
/// log (no partitions registered), and Athena's count, through the log,
/// matches; the deltalake package reads the same rows from S3.
#[tokio::test]
async fn delta_tables_on_s3_are_registered_for_athena_and_read_back_from_their_log() {
    let peer = start_peer(serde_json::json!({}));
    let db = fresh_database("delta").await;
    let raw = prefix("raw-glue-delta");
    import_fixture(&raw);
    let out = prefix("out-glue-delta");
    let p = Project::fixture();
    crate::delta::make_delta(&p);
    let target = Target::new(&raw, &out, &db);
    for run in ["first", "second"] {
        let o = run_with(
            &p,
            &peer,
            &target,
            &["run", "--run-id", run, "--verify-athena"],
        );
        let log = text(&o);
        assert!(o.status.success(), "{log}");
        assert!(
            log.contains("clean_transactions: Athena counts the same rows"),
            "{log}"
        );
    }
    let t = seen_table(&db, "clean_transactions").await.expect("table");
    assert_eq!(
        t.parameters.get("table_type").map(String::as_str),
        Some("DELTA")
    );
    assert!(t.keys.is_empty(), "{:?}", t.keys);
    assert!(t.partitions.is_empty(), "partitions come from the log");
    assert!(
        t.columns.iter().any(|(n, _)| n == "date"),
        "{:?}",
        t.columns
    );
    let commits: Vec<String> = list_keys(&format!("{out}/clean_transactions/_delta_log"))
        .into_iter()
        .filter(|k| k.ends_with(".json"))
        .collect();
    assert_eq!(commits.len(), 2, "{commits:?}");

    let on_s3 = crate::delta::delta_read(&["summary", &format!("{out}/clean_transactions")]);
    let local = Project::fixture();
    crate::delta::make_delta(&local);
    local.run_ok(&["run"]);
    let here = crate::delta::delta_read(&[
        "summary",
        &local.out().join("clean_transactions").display().to_string(),
    ]);
    assert_eq!(on_s3["digest"], here["digest"]);
    assert_eq!(on_s3["version"], 1);
}
