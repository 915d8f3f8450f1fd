//! Distributed nodes on a real Ballista cluster of processes on 127.0.0.1:
//! the embedded scheduler and `chainbatch-executor ballista` children,
//! checked against DuckDB running the same SQL on the same input.

use crate::support::*;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

/// A pipeline with a join node (transactions ⋈ token transfers on the
/// transaction hash), appended to the project's pipelines.
pub(crate) fn add_join_pipeline(p: &Project) {
    let sql = std::fs::read_to_string(repo().join("benches/peers/distributed_join.sql")).unwrap();
    let body: String = sql
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .map(|l| format!("        {l}\n"))
        .collect();
    let yml = format!(
        "\ntx_token_join:\n  nodes:\n    - name: transfers_with_fees\n      inputs: [raw_transactions, raw_token_transfers]\n      outputs: transfers_with_fees\n      sql: |\n{body}"
    );
    append_conf(p, "pipelines", &yml);
    append_conf(
        p,
        "catalog",
        "\ntransfers_with_fees:\n  type: parquet\n  path: ${globals:out_root}/transfers_with_fees\n  layout:\n    bucket_by:\n      columns: [hash]\n      buckets: 4\n",
    );
}

/// Appends `yml` to the project's `conf/base/<file>.yml`.
fn append_conf(p: &Project, file: &str, yml: &str) {
    let path = p.conf().join(format!("base/{file}.yml"));
    let mut text = std::fs::read_to_string(&path).unwrap();
    text.push_str(yml);
    std::fs::write(&path, text).unwrap();
}

/// Runs DuckDB on `sql` and returns its rows as tab-separated text, sorted.
fn duckdb_rows(sql: &str) -> Vec<String> {
    duckdb_rows_with(sql, None)
}

/// As [`duckdb_rows`], with the token transfers below `transfers` as the
/// table `token_transfers_exact`: DuckDB reads a DECIMAL(76,0) as a DOUBLE,
/// so pyarrow reads them and turns `value` into its exact decimal text.
fn duckdb_rows_with(sql: &str, transfers: Option<&Path>) -> Vec<String> {
    let python = std::env::var("CHAINBATCH_PYTHON").expect(
        "CHAINBATCH_PYTHON must name a Python with duckdb; scripts/test.sh creates one in .venv",
    );
    let script = r#"
import sys, duckdb
con = duckdb.connect()
con.execute("SET TimeZone = 'UTC'")
# A progress bar would print to stdout among the rows of a slow query.
con.execute("SET enable_progress_bar = false")
if len(sys.argv) > 1:
    import pyarrow as pa, pyarrow.compute as pc, pyarrow.dataset as ds
    t = ds.dataset(sys.argv[1], format="parquet", partitioning="hive").to_table()
    t = t.set_column(t.schema.get_field_index("value"), "value", pc.cast(t["value"], pa.string()))
    con.register("token_transfers_exact", t)
for row in con.execute(sys.stdin.read()).fetchall():
    print("\t".join("" if v is None else str(v) for v in row))
"#;
    let mut child = Command::new(python)
        .arg("-c")
        .arg(script)
        .args(transfers)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(sql.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "duckdb: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut rows: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    rows.sort();
    rows
}

/// The same rows from chainbatch's output, as DuckDB prints them.
pub(crate) fn output_rows(dir: &Path, columns: &str) -> Vec<String> {
    duckdb_rows(&format!(
        "SELECT {columns} FROM read_parquet('{}/**/*.parquet', hive_partitioning = true)",
        dir.display()
    ))
}

const PROFILE_COLUMNS: &str = "address, first_seen, last_seen, first_block, last_block, tx_sent, \
    tx_received, fees_paid_wei, value_sent_wei, value_received_wei, token_transfers_sent, \
    token_transfers_received, distinct_tokens";

fn expected_profiles(raw: &Path) -> Vec<String> {
    let sql = std::fs::read_to_string(repo().join("benches/peers/address_profiles_duckdb.sql"))
        .unwrap()
        .replace(
            "{transactions}",
            &raw.join("transactions").display().to_string(),
        )
        .replace(
            "{token_transfers}",
            &raw.join("token_transfers").display().to_string(),
        );
    duckdb_rows(&format!("SELECT {PROFILE_COLUMNS} FROM ({sql})"))
}

/// `bucket<TAB>key` for every row of a bucketed output, the bucket read from
/// its file's name (`..._00003.<codec>.parquet`), after asserting that no
/// bucket is split over files of different writers (one file each here).
fn rows_by_bucket(dir: &Path, key: &str) -> Vec<String> {
    let files = format!(
        "read_parquet('{}/**/*.parquet', filename = true)",
        dir.display()
    );
    let bucket = r"regexp_extract(filename, '_(\d{5})\.[a-z0-9]+\.parquet$', 1)";
    let split = duckdb_rows(&format!(
        "SELECT {bucket} AS b, count(DISTINCT filename) FROM {files} GROUP BY b HAVING count(DISTINCT filename) > 1"
    ));
    assert!(split.is_empty(), "buckets in several files: {split:?}");
    duckdb_rows(&format!("SELECT {bucket}, {key} FROM {files}"))
}

pub(crate) const JOIN_COLUMNS: &str =
    "hash, block_number, log_index, from_address, to_address, token_address, value, fee_wei";

fn expected_join(raw: &Path) -> Vec<String> {
    let norm = |c: &str| {
        format!(
            "CASE WHEN length({c}) = 42 AND regexp_full_match({c}, '0[xX][0-9a-fA-F]+') THEN lower({c}) END"
        )
    };
    duckdb_rows_with(
        &format!(
            "SELECT t.hash, t.block_number, tt.log_index, {} AS from_address, {} AS to_address, {} AS token_address, \
               tt.value AS value, \
               CAST(t.receipt_gas_used AS DECIMAL(38,0)) * CAST(t.receipt_effective_gas_price AS DECIMAL(38,0)) AS fee_wei \
             FROM read_parquet('{}/**/*.parquet', hive_partitioning = true) AS t \
             JOIN token_transfers_exact AS tt ON t.hash = tt.transaction_hash",
            norm("tt.from_address"),
            norm("tt.to_address"),
            norm("tt.token_address"),
            raw.join("transactions").display(),
        ),
        Some(&raw.join("token_transfers")),
    )
}

/// Whether a file was written by a re-run Ballista task or stage: its name
/// holds `-s<stage>.<stage attempt>-t<task>.<task attempt>-`.
fn is_rerun_attempt(file: &str) -> bool {
    let name = file.rsplit('/').next().unwrap_or(file);
    let attempt = |part: &str| part.split_once('.').map(|(_, a)| a != "0");
    let parts: Vec<&str> = name.split('-').collect();
    parts.windows(2).any(|w| {
        w[0].starts_with('s')
            && w[1].starts_with('t')
            && (attempt(&w[0][1..]) == Some(true) || attempt(&w[1][1..]) == Some(true))
    })
}

/// Every process whose environment carries `mark` (the driver's executors
/// inherit it).
fn processes_marked(mark: &str) -> Vec<u32> {
    let needle = format!("CHAINBATCH_TEST_MARK={mark}");
    let mut out = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(env) = std::fs::read(e.path().join("environ"))
            && env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes())
        {
            out.push(pid);
        }
    }
    out
}

/// The executors the driver started: processes carrying `mark` that run
/// `chainbatch-executor ballista`.
fn executors_marked(mark: &str) -> Vec<u32> {
    processes_marked(mark)
        .into_iter()
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| {
                    let c = String::from_utf8_lossy(&c);
                    c.contains("chainbatch-executor") && c.contains("ballista")
                })
                .unwrap_or(false)
        })
        .collect()
}

fn wait_gone(mark: &str) {
    wait_gone_within(mark, Duration::from_secs(10));
}

/// Fails unless every executor marked `mark` exits within `limit`.
fn wait_gone_within(mark: &str, limit: Duration) {
    let deadline = Instant::now() + limit;
    while !executors_marked(mark).is_empty() {
        assert!(
            Instant::now() < deadline,
            "executors still running after {limit:?}: {:?}",
            executors_marked(mark)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn generated(rows: u64, days: u32, files_per_day: u32) -> Project {
    let p = Project::generated(rows, days, files_per_day);
    add_join_pipeline(&p);
    p
}

#[test]
fn join_and_cross_date_aggregate_on_two_executors_match_duckdb_and_local() {
    let p = generated(40_000, 3, 3);
    let mark = "distributed-exact";
    let out = p
        .command(&[
            "run",
            "--pipeline",
            "address_profiles",
            "--backend",
            "ballista",
            "--executors",
            "2",
        ])
        .env("CHAINBATCH_TEST_MARK", mark)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("Ballista scheduler df://127.0.0.1:"),
        "{stderr}"
    );
    wait_gone(mark);
    let profiles = output_rows(&p.out().join("address_profiles"), PROFILE_COLUMNS);
    let expected = expected_profiles(&p.raw_root);
    assert!(expected.len() > 1000, "{} profiles", expected.len());
    assert_eq!(profiles.len(), expected.len());
    assert_eq!(profiles, expected);
    // Bucketed by address: 8 files at most, every address in one file.
    let files = data_files(&p.out().join("address_profiles"));
    assert!(files.len() <= 8 && files.len() >= 2, "{files:?}");

    p.run_ok(&[
        "run",
        "--pipeline",
        "tx_token_join",
        "--backend",
        "ballista",
        "--executors",
        "2",
    ]);
    let joined = output_rows(&p.out().join("transfers_with_fees"), JOIN_COLUMNS);
    let expected_join = expected_join(&p.raw_root);
    assert!(expected_join.len() > 1000, "{} joined", expected_join.len());
    assert_eq!(joined, expected_join);

    // The same nodes as one task on the local backend: identical output.
    let local = tempfile::tempdir().unwrap();
    for pipeline in ["address_profiles", "tx_token_join"] {
        let o = p
            .command_on(
                &["run", "--pipeline", pipeline],
                &p.raw_root.display().to_string(),
                &local.path().display().to_string(),
            )
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    assert_eq!(
        output_rows(&local.path().join("address_profiles"), PROFILE_COLUMNS),
        profiles
    );
    assert_eq!(
        output_rows(&local.path().join("transfers_with_fees"), JOIN_COLUMNS),
        joined
    );
    // Every bucket is one file, holding the same rows on both backends.
    let key = "hash, log_index";
    let buckets = rows_by_bucket(&p.out().join("transfers_with_fees"), key);
    assert_eq!(buckets.len(), joined.len());
    assert_eq!(
        rows_by_bucket(&local.path().join("transfers_with_fees"), key),
        buckets
    );
    assert_eq!(
        rows_by_bucket(&local.path().join("address_profiles"), "address"),
        rows_by_bucket(&p.out().join("address_profiles"), "address")
    );
}

#[test]
fn plan_shows_distributed_nodes_with_ballista_stages() {
    let p = generated(5_000, 2, 1);
    let out = p.run_ok(&[
        "plan",
        "--pipeline",
        "tx_token_join",
        "--backend",
        "ballista",
        "--executors",
        "2",
    ]);
    assert!(
        out.contains("strategy: Distributed: joins datasets or reads a subquery"),
        "{out}"
    );
    assert!(out.contains("stage 0 (distributed): 1 task(s)"), "{out}");
    assert!(out.contains("ballista stage"), "{out}");
    assert!(out.contains("LayoutSinkExec"), "{out}");
    // The join's two sides are shuffled by the bucket of the hash, then
    // joined and written per partition: no shuffle of the joined rows.
    assert!(
        out.contains("Hash([bucket_route(2, bucket_id(4, hash@0))], 2)"),
        "{out}"
    );
    assert!(
        out.contains("Hash([bucket_route(2, bucket_id(4, transaction_hash@4))], 2)"),
        "{out}"
    );
    assert!(out.contains("JoinExec"), "{out}");
    assert!(!out.contains("Hash([__cb_bucket"), "{out}");
    // Nothing ran: no output, no executors.
    assert!(data_files(&p.out()).is_empty());
}

/// A map-only node, appended to the project: a union of row-wise reads
/// of both inputs, one row per transaction and per token transfer with its
/// sender, written by date.
fn add_union_pipeline(p: &Project) {
    append_conf(
        p,
        "pipelines",
        "\nsenders:\n  nodes:\n    - name: senders\n      inputs: [raw_transactions, raw_token_transfers]\n      outputs: senders\n      sql: |\n        SELECT from_address AS address, block_timestamp, block_number, hash AS transaction_hash, 'tx' AS kind FROM raw_transactions\n        UNION ALL\n        SELECT from_address, block_timestamp, block_number, transaction_hash, 'token' FROM raw_token_transfers\n",
    );
    append_conf(
        p,
        "catalog",
        "\nsenders:\n  type: parquet\n  path: ${globals:out_root}/senders\n  partitions:\n    date: date\n  layout: ${globals:layouts.daily}\n",
    );
}

const SENDER_COLUMNS: &str = "address, block_number, transaction_hash, kind";

fn expected_senders(raw: &Path) -> Vec<String> {
    let read = |table: &str| {
        format!(
            "read_parquet('{}/**/*.parquet', hive_partitioning = true)",
            raw.join(table).display()
        )
    };
    duckdb_rows(&format!(
        "SELECT from_address, block_number, hash, 'tx' FROM {} \
         UNION ALL SELECT from_address, block_number, transaction_hash, 'token' FROM {}",
        read("transactions"),
        read("token_transfers")
    ))
}

#[test]
fn a_union_of_inputs_runs_as_tasks_of_whole_dates_on_local_and_on_ballista_executors() {
    let p = generated(20_000, 3, 2);
    add_union_pipeline(&p);
    // One byte a task: every input file is a task of its own, and most
    // tasks hold no file of one of the two inputs (read as empty tables).
    let small = ["--globals", "target_task_bytes=1"];
    let plan = p.run_ok(&[&["plan", "--pipeline", "senders"][..], &small].concat());
    assert!(
        plan.contains("strategy: MapOnly: a union of row-wise reads of 2 datasets"),
        "{plan}"
    );
    // 3 days of 2 transaction files and 2 token transfer files.
    assert!(plan.contains("stage 0 (map): 12 task(s)"), "{plan}");
    let expected = expected_senders(&p.raw_root);
    assert!(expected.len() > 20_000, "{} rows", expected.len());
    p.run_ok(&[&["run", "--pipeline", "senders"][..], &small].concat());
    assert_eq!(
        output_rows(&p.out().join("senders"), SENDER_COLUMNS),
        expected
    );

    // On Ballista the same 12 tasks run on the executors, as one job of
    // their specs: every file comes from an attempt the job numbered (job
    // attempt 1 times 1,000,000 plus the Ballista task's own digits).
    let out = p.dir.path().join("out-ballista");
    let mark = "distributed-union";
    let o = p
        .command_on(
            &[
                &[
                    "run",
                    "--pipeline",
                    "senders",
                    "--backend",
                    "ballista",
                    "--run-id",
                    "senders-on-ballista",
                ][..],
                &small,
            ]
            .concat(),
            &p.raw_root.display().to_string(),
            &out.display().to_string(),
        )
        .env("CHAINBATCH_TEST_MARK", mark)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("senders stage 0 map: 12 task(s) as Ballista job"),
        "{stderr}"
    );
    wait_gone(mark);
    assert_eq!(output_rows(&out.join("senders"), SENDER_COLUMNS), expected);
    let journal: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.join("_chainbatch/runs/senders-on-ballista/journal.json")).unwrap(),
    )
    .unwrap();
    let moves = journal["commits"][0]["publish"].as_array().unwrap();
    assert!(moves.len() >= 3, "{moves:?}");
    for m in moves {
        let from = m["from"].as_str().unwrap();
        let attempt: u32 = from
            .split("/attempt-")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no attempt directory in {from}"));
        assert!(
            (1_000_000..2_000_000).contains(&attempt),
            "{from}: not a Ballista task attempt"
        );
    }
    // Whole dates: with the default task size, one task reads all of them.
    let plan = p.run_ok(&["plan", "--pipeline", "senders"]);
    assert!(plan.contains("stage 0 (map): 1 task(s)"), "{plan}");
}

#[test]
fn a_killed_executor_loses_no_rows_and_publishes_no_file_twice() {
    let p = generated(1_000_000, 4, 4);
    let expected = expected_profiles(&p.raw_root);
    let mut report = vec![];
    for round in 0..3 {
        let mark = format!("distributed-kill-{round}");
        let out_dir = p.dir.path().join(format!("out-kill-{round}"));
        let child = p
            .command_on(
                &[
                    "run",
                    "--pipeline",
                    "address_profiles",
                    "--backend",
                    "ballista",
                    "--executors",
                    "3",
                    "--run-id",
                    &format!("kill-{round}"),
                ],
                &p.raw_root.display().to_string(),
                &out_dir.display().to_string(),
            )
            .env("CHAINBATCH_TEST_MARK", &mark)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // Kill one executor once the distributed stages are under way.
        let started = Instant::now();
        let mut killed_at = Duration::ZERO;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut killed = None;
        while killed.is_none() && Instant::now() < deadline {
            let execs = executors_marked(&mark);
            if execs.len() == 3 {
                std::thread::sleep(Duration::from_millis(300 + 600 * round as u64));
                let victim = execs[round % execs.len()];
                // SAFETY: signalling a process this test's driver started.
                unsafe {
                    libc::kill(victim as i32, libc::SIGKILL);
                }
                killed = Some(victim);
                killed_at = started.elapsed();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let o = child.wait_with_output().unwrap();
        let run_seconds = started.elapsed().as_secs_f64();
        let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
        let outcome = if o.status.success() {
            "completed".to_string()
        } else {
            assert!(stderr.contains("--resume"), "{stderr}");
            let r = p
                .command_on(
                    &[
                        "run",
                        "--resume",
                        &format!("kill-{round}"),
                        "--backend",
                        "ballista",
                    ],
                    &p.raw_root.display().to_string(),
                    &out_dir.display().to_string(),
                )
                .output()
                .unwrap();
            assert!(r.status.success(), "{}", String::from_utf8_lossy(&r.stderr));
            "failed, then --resume completed".to_string()
        };
        wait_gone(&mark);
        // Every address once: no file of a superseded attempt published.
        let counts = duckdb_rows(&format!(
            "SELECT count(*), count(DISTINCT address) FROM read_parquet('{}/**/*.parquet')",
            out_dir.join("address_profiles").display()
        ));
        let [counts] = counts.as_slice() else {
            panic!("{counts:?}")
        };
        let (all, distinct) = counts.split_once('\t').unwrap();
        assert_eq!(
            all, distinct,
            "round {round}: {outcome}: duplicated profiles"
        );
        let got = output_rows(&out_dir.join("address_profiles"), PROFILE_COLUMNS);
        assert_eq!(got.len(), expected.len(), "round {round}: {outcome}");
        assert_eq!(got, expected, "round {round}: {outcome}");
        // Files of re-run task or stage attempts show Ballista recovered.
        let files = data_files(&out_dir.join("address_profiles"));
        let retried: Vec<&String> = files.iter().filter(|f| is_rerun_attempt(f)).collect();
        let job_retries = stderr.matches("failed, retrying").count();
        let superseded = stderr.matches("superseded attempts").count();
        report.push(format!(
            "kill {round}: executor {killed:?} at {:.1} s of {:.1} s: {outcome}; {} of {} files from re-run Ballista attempts; {superseded} job(s) reported superseded attempts' files (not published); {job_retries} job(s) re-submitted by the driver",
            killed_at.as_secs_f64(),
            run_seconds,
            retried.len(),
            files.len()
        ));
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn an_unreachable_cluster_fails_clearly_and_publishes_nothing() {
    let p = generated(5_000, 2, 1);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let o = p.run(&[
        "run",
        "--pipeline",
        "tx_token_join",
        "--backend",
        "ballista",
        "--ballista-url",
        &format!("df://127.0.0.1:{port}"),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "cannot reach the Ballista scheduler at df://127.0.0.1:{port}"
        )),
        "{stderr}"
    );
    assert!(data_files(&p.out()).is_empty());

    let o = p.run(&[
        "run",
        "--pipeline",
        "tx_token_join",
        "--backend",
        "local",
        "--ballista-url",
        "df://127.0.0.1:50050",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("applies to --backend ballista only"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn sql_failing_on_an_executor_names_the_node_and_leaves_nothing() {
    let p = generated(5_000, 2, 1);
    // Planning succeeds; the division fails on the executors, row by row.
    append_conf(
        &p,
        "pipelines",
        "\nbad_join:\n  nodes:\n    - name: divide_by_zero\n      inputs: [raw_transactions, raw_token_transfers]\n      outputs: transfers_with_fees\n      sql: |\n        SELECT t.hash, t.block_number / (t.block_number - t.block_number) AS boom\n        FROM raw_transactions AS t JOIN raw_token_transfers AS tt ON t.hash = tt.transaction_hash\n",
    );
    let mark = "distributed-bad-sql";
    let o = p
        .command(&["run", "--pipeline", "bad_join", "--backend", "ballista"])
        .env("CHAINBATCH_TEST_MARK", mark)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("divide_by_zero"), "{stderr}");
    assert!(stderr.contains("DivideByZero"), "{stderr}");
    // Ballista retried the tasks; the driver does not run the job again.
    assert!(stderr.contains("after 1 attempt(s)"), "{stderr}");
    wait_gone(mark);
    assert!(data_files(&p.out().join("transfers_with_fees")).is_empty());
}

#[test]
fn a_map_task_failing_on_an_executor_fails_the_node_at_once_and_leaves_nothing() {
    let p = generated(5_000, 2, 1);
    // Row-wise, so planned as tasks, not as a distributed plan; the cast of
    // a `0x...` hash to a number fails on the executor, for any attempt.
    append_conf(
        &p,
        "pipelines",
        "\nbad_cast:\n  nodes:\n    - name: hash_as_number\n      inputs: [raw_transactions]\n      outputs: transfers_with_fees\n      sql: |\n        SELECT CAST(hash AS BIGINT) AS hash, block_number FROM raw_transactions\n",
    );
    let mark = "distributed-bad-cast";
    let o = p
        .command(&["run", "--pipeline", "bad_cast", "--backend", "ballista"])
        .env("CHAINBATCH_TEST_MARK", mark)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("hash_as_number"), "{stderr}");
    assert!(stderr.contains("as Ballista job"), "{stderr}");
    assert!(stderr.contains("Cannot cast string"), "{stderr}");
    // A bad spec: the driver does not submit the job again.
    assert!(stderr.contains("after 1 attempt(s)"), "{stderr}");
    assert!(!stderr.contains("failed, retrying"), "{stderr}");
    wait_gone(mark);
    assert!(data_files(&p.out().join("transfers_with_fees")).is_empty());
}

#[test]
fn executors_that_cannot_reach_s3_fail_the_node_clearly_and_leave_nothing() {
    // The driver plans against SeaweedFS; its executors are pointed at a
    // closed port, as an executor without a route to S3 would be.
    let raw = crate::s3::prefix("raw-ballista-no-s3");
    gen_transfers(&raw, 3000, 2);
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("executor-without-s3");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nexport AWS_ENDPOINT_URL=http://127.0.0.1:{closed}\n\
             export CHAINBATCH_S3_MAX_RETRIES=1 CHAINBATCH_S3_RETRY_TIMEOUT_SECS=2\n\
             exec {} \"$@\"\n",
            executor_bin().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let p = Project::fixture();
    add_join_pipeline(&p);
    let out = crate::s3::prefix("out-ballista-no-s3");
    let mark = "distributed-no-s3";
    let o = p
        .command_on(
            &[
                "run",
                "--pipeline",
                "tx_token_join",
                "--backend",
                "ballista",
            ],
            &raw,
            &out,
        )
        .env("CHAINBATCH_EXECUTOR", &wrapper)
        .env("CHAINBATCH_TEST_MARK", mark)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("node `transfers_with_fees`"), "{stderr}");
    assert!(stderr.contains(&format!("127.0.0.1:{closed}")), "{stderr}");
    // Storage may come back: the job was retried, and the run can resume.
    assert!(stderr.contains("after 3 attempt(s)"), "{stderr}");
    assert!(stderr.contains("--resume"), "{stderr}");
    wait_gone(mark);
    assert!(
        crate::s3::list_keys(&out)
            .iter()
            .all(|k| k.contains("_chainbatch/")),
        "published: {:?}",
        crate::s3::list_keys(&out)
    );
}

#[test]
fn executors_outliving_a_killed_driver_exit_once_its_scheduler_is_gone() {
    // Executors started through a wrapper are not the driver's children, as
    // containers are not: only the wrapper dies with the driver.
    let p = generated(200_000, 2, 2);
    let dir = tempfile::tempdir().unwrap();
    let wrapper = dir.path().join("detached-executor");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\nCHAINBATCH_BALLISTA_ORPHAN_TIMEOUT=3 setsid {} \"$@\" &\nwait\n",
            executor_bin().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mark = "distributed-orphans";
    let mut driver = p
        .command(&[
            "run",
            "--pipeline",
            "address_profiles",
            "--backend",
            "ballista",
        ])
        .env("CHAINBATCH_EXECUTOR", &wrapper)
        .env("CHAINBATCH_TEST_MARK", mark)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while executors_marked(mark).len() < 2 {
        assert!(Instant::now() < deadline, "executors never started");
        std::thread::sleep(Duration::from_millis(50));
    }
    driver.kill().unwrap();
    driver.wait().unwrap();
    assert_eq!(
        executors_marked(mark).len(),
        2,
        "the executors outlive the driver"
    );
    // Gone within the orphan timeout and a watchdog round or two.
    wait_gone_within(mark, Duration::from_secs(30));
}
