//! Backfills in chunks, the partition ledger behind `status`, and
//! `--since-last-success`: what a user running years of data and then a
//! daily schedule checks.

use crate::crash::snapshot;
use crate::support::*;
use std::process::Stdio;
use std::time::{Duration, Instant};

const WINDOW: &str = "2024-03-01..2024-04-29";

fn backfill_doc(p: &Project, id: &str) -> serde_json::Value {
    let path = p
        .out()
        .join(format!("_chainbatch/backfills/{id}/backfill.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap_or_default())
        .unwrap_or(serde_json::Value::Null)
}

fn chunk_states(doc: &serde_json::Value) -> Vec<String> {
    doc["chunks"]
        .as_array()
        .map(|c| {
            c.iter()
                .map(|c| c["state"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn status_json(p: &Project, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["status", "--format", "json"];
    all.extend_from_slice(args);
    serde_json::from_str(&p.run_ok(&all)).expect("status --format json is JSON")
}

/// Partition path to (run, state) of one dataset's status.
fn runs_by_partition(status: &serde_json::Value, dataset: &str) -> Vec<(String, String, String)> {
    let ds = status
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["dataset"] == dataset)
        .unwrap_or_else(|| panic!("no {dataset} in {status}"));
    ds["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["partition"].as_str().unwrap().to_string(),
                p["run_id"].as_str().unwrap_or("-").to_string(),
                p["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_backfill_equals_one_run_survives_a_kill_and_reruns_only_what_changed() {
    let reference = Project::generated(12_000, 60, 1);
    reference.run_ok(&["run"]);
    let expected = snapshot(&reference).await;
    assert_eq!(expected[0].len(), 12_000);

    // 60 days in chunks of 7, two at once; the backfill is SIGKILLed once
    // two chunks are committed, with others running.
    let p = Project::generated(12_000, 60, 1);
    let mut child = p
        .command(&[
            "backfill",
            "--dates",
            WINDOW,
            "--chunk",
            "7d",
            "--concurrency",
            "2",
            "--id",
            "bf",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let states = chunk_states(&backfill_doc(&p, "bf"));
        if states.iter().filter(|s| *s == "committed").count() >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "no progress: {states:?}");
        assert!(
            child.try_wait().unwrap().is_none(),
            "finished before it was killed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let killed = chunk_states(&backfill_doc(&p, "bf"));
    assert_eq!(killed.len(), 9, "{killed:?}");
    assert!(killed.iter().any(|s| s != "committed"), "{killed:?}");

    let o = p.run(&["backfill", "--resume", "bf", "--concurrency", "2"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("backfill bf succeeded"), "{out}");
    assert!(err.contains("to run"), "{err}");
    let doc = backfill_doc(&p, "bf");
    assert_eq!(doc["status"], "succeeded");
    assert!(chunk_states(&doc).iter().all(|s| s == "committed"), "{doc}");
    assert_eq!(snapshot(&p).await, expected, "the backfill equals one run");

    // Every chunk committed once: each partition was written by its
    // chunk's one run, and each chunk has one successful run.
    let runs = p.run_ok(&["runs", "--format", "json"]);
    let runs: serde_json::Value = serde_json::from_str(&runs).unwrap();
    let status = status_json(&p, &[]);
    for (i, c) in doc["chunks"].as_array().unwrap().iter().enumerate() {
        let prefix = format!("bf-{:03}", i + 1);
        let succeeded = runs
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["run_id"].as_str().unwrap().starts_with(&prefix))
            .filter(|r| r["status"] == "succeeded")
            .count();
        assert_eq!(succeeded, 1, "chunk {prefix}: {runs}");
        let run = c["run_id"].as_str().unwrap();
        let (from, to) = (c["from"].as_str().unwrap(), c["to"].as_str().unwrap());
        for ds in ["clean_transactions", "daily_address_stats", "daily_summary"] {
            for (part, by, state) in runs_by_partition(&status, ds) {
                let date = part.trim_start_matches("date=");
                if from <= date && date <= to {
                    assert_eq!(
                        (by.as_str(), state.as_str()),
                        (run, "current"),
                        "{ds} {part}"
                    );
                }
            }
        }
    }

    // A second backfill over the same window has nothing to run.
    let o = p.run(&[
        "backfill", "--dates", WINDOW, "--chunk", "7d", "--id", "bf-again",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("0 committed, 9 current (skipped)"), "{out}");
    assert_eq!(
        chunk_states(&backfill_doc(&p, "bf-again")),
        vec!["skipped"; 9]
    );

    // One node's SQL changes (to an equal result): its partitions are stale,
    // and the next backfill reruns that node only.
    p.edit_conf(
        "base/pipelines.yml",
        "count(DISTINCT from_address) AS senders",
        "count(DISTINCT lower(from_address)) AS senders",
    );
    let before = status_json(&p, &[]);
    for (part, _, state) in runs_by_partition(&before, "daily_summary") {
        assert_eq!(state, "stale", "{part}");
    }
    for (part, _, state) in runs_by_partition(&before, "clean_transactions") {
        assert_eq!(state, "current", "{part}");
    }
    let table = p.run_ok(&["status", "--dataset", "daily_summary"]);
    assert!(
        table.contains("node `daily_summary`'s configuration changed"),
        "{table}"
    );
    assert!(
        table.contains("60 partition(s): 0 current, 60 stale"),
        "{table}"
    );

    let o = p.run(&[
        "backfill",
        "--dates",
        WINDOW,
        "--chunk",
        "7d",
        "--concurrency",
        "2",
        "--id",
        "bf-sql",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("from nodes daily_summary"), "{err}");
    let after = status_json(&p, &[]);
    assert_eq!(
        runs_by_partition(&after, "clean_transactions"),
        runs_by_partition(&before, "clean_transactions"),
        "clean_transactions was not rerun"
    );
    assert_eq!(
        runs_by_partition(&after, "daily_address_stats"),
        runs_by_partition(&before, "daily_address_stats"),
        "daily_address_stats was not rerun"
    );
    for (part, run, state) in runs_by_partition(&after, "daily_summary") {
        assert!(run.starts_with("bf-sql-"), "{part}: {run}");
        assert_eq!(state, "current");
    }
    assert_eq!(snapshot(&p).await, expected);
}

#[test]
fn status_lists_gaps_and_its_json_keeps_its_shape() {
    let p = Project::generated(3_000, 10, 1);
    // A task per input file: each output partition is known to be
    // computed from its own day's input.
    let one_day_a_task = ["--globals", "target_task_bytes=1"];
    for dates in ["2024-03-01..2024-03-03", "2024-03-06..2024-03-07"] {
        let mut args = vec!["run", "--dates", dates];
        args.extend(one_day_a_task);
        p.run_ok(&args);
    }
    let s = status_json(
        &p,
        &[
            "--dataset",
            "daily_summary",
            "--dates",
            "2024-03-01..2024-03-08",
        ],
    );
    let ds = &s[0];
    let mut keys: Vec<&str> = ds.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "config_hash",
            "dataset",
            "gaps",
            "node",
            "partitions",
            "path",
            "window"
        ]
    );
    assert_eq!(ds["window"], "2024-03-01..2024-03-08");
    assert_eq!(
        ds["gaps"],
        serde_json::json!(["2024-03-04", "2024-03-05", "2024-03-08"])
    );
    let parts = ds["partitions"].as_array().unwrap();
    assert_eq!(parts.len(), 5);
    let mut keys: Vec<&str> = parts[0]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "bytes",
            "committed_at",
            "config_hash",
            "date",
            "files",
            "node",
            "partition",
            "reasons",
            "rows",
            "run_id",
            "state"
        ]
    );
    assert!(parts.iter().all(|p| p["state"] == "current"));
    // The ledger's rows are the data's.
    let rows: u64 = parts.iter().map(|p| p["rows"].as_u64().unwrap()).sum();
    assert_eq!(rows, 5, "daily_summary has a row a day");

    let table = p.run_ok(&[
        "status",
        "--dataset",
        "daily_summary",
        "--dates",
        "2024-03-01..2024-03-08",
    ]);
    assert!(
        table.contains(
            "5 partition(s): 5 current, 0 stale, 0 unrecorded, 0 missing; 3 gap(s) in \
             2024-03-01..2024-03-08: 2024-03-04..2024-03-05, 2024-03-08"
        ),
        "{table}"
    );

    // New input for a written date makes its partitions stale, naming it.
    let day = p.raw_root.join("transactions/date=2024-03-02");
    let file = std::fs::read_dir(&day)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    std::fs::copy(&file, day.join("late-delivery.parquet")).unwrap();
    let s = status_json(&p, &["--dataset", "clean_transactions"]);
    let stale: Vec<&serde_json::Value> = s[0]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["state"] == "stale")
        .collect();
    assert_eq!(stale.len(), 1, "{s}");
    assert_eq!(stale[0]["partition"], "date=2024-03-02");
    let why = stale[0]["reasons"][0].as_str().unwrap();
    assert!(
        why.contains("input `raw_transactions` 2024-03-02 changed: 1 file(s)"),
        "{why}"
    );

    // Unknown datasets are refused by name.
    let o = p.run(&["status", "--dataset", "daily_sumary"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("did you mean `daily_summary`?"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[tokio::test]
async fn since_last_success_covers_the_days_a_failed_run_missed() {
    let reference = Project::generated(3_000, 4, 1);
    reference.run_ok(&["run", "--dates", "2024-03-01..2024-03-03"]);
    let expected = snapshot(&reference).await;

    let p = Project::generated(3_000, 4, 1);
    // No success yet: the window is as given.
    let o = p.run(&["run", "--dates", "2024-03-01", "--since-last-success"]);
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no successful run of `eth_daily` yet"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // The next night's run dies.
    let o = p
        .command(&["run", "--dates", "2024-03-02", "--run-id", "night-2"])
        .env("CHAINBATCH_CRASH_AT", "after_tasks")
        .output()
        .unwrap();
    assert!(!o.status.success());
    // The night after covers both days.
    let o = p.run(&[
        "run",
        "--dates",
        "2024-03-03",
        "--since-last-success",
        "--run-id",
        "night-3",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains("covered up to 2024-03-01; running 2024-03-02..2024-03-03"),
        "{err}"
    );
    let runs: serde_json::Value =
        serde_json::from_str(&p.run_ok(&["runs", "--format", "json"])).unwrap();
    let night3 = runs
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_id"] == "night-3")
        .unwrap();
    assert_eq!(night3["dates"], "2024-03-02..2024-03-03");
    assert_eq!(snapshot(&p).await, expected);
    // And a night with nothing missed runs its own day only.
    let o = p.run(&["run", "--dates", "2024-03-04", "--since-last-success"]);
    assert!(o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("nothing missed"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn a_backfill_refuses_appending_nodes_and_a_resume_takes_its_arguments_from_its_record() {
    let p = Project::generated(1_000, 2, 1);
    p.edit_conf(
        "base/catalog.yml",
        "daily_summary:\n",
        "daily_summary:\n  save_mode: append\n",
    );
    let o = p.run(&[
        "backfill",
        "--dates",
        "2024-03-01..2024-03-02",
        "--chunk",
        "1d",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("node `daily_summary` appends to `daily_summary`"),
        "{err}"
    );
    assert!(!p.out().join("daily_summary").exists(), "nothing written");

    let o = p.run(&["backfill", "--resume", "some-id", "--backend", "process"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("cannot be used with"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
