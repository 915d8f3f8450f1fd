//! `format: delta` outputs and inputs: a node's commit is one Delta
//! transaction, read back by independent readers (the `deltalake` package
//! and Polars, through scheduler/tests/cli/peers/delta_read.py); a reader polling during
//! commits never sees a partial partition; a crash at any commit step
//! leaves the old version or the new one; runs over disjoint dates commit
//! to one table together; `gc` vacuums; a pinned version reads as it was.

use crate::support::*;
use serde_json::Value;
use std::path::Path;
use std::process::{Command, Stdio};

const OUTPUTS: &[&str] = &["clean_transactions", "daily_address_stats", "daily_summary"];

/// Makes the eth_daily outputs Delta tables.
pub(crate) fn make_delta(p: &Project) {
    let path = p.conf().join("base/catalog.yml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    for ds in OUTPUTS {
        let line = format!("  path: ${{globals:out_root}}/{ds}\n");
        assert!(text.contains(&line), "catalog.yml has no {line:?}");
        text = text.replace(&line, &format!("{line}  format: delta\n"));
    }
    std::fs::write(path, text).unwrap();
}

/// scheduler/tests/cli/peers/delta_read.py ARGS, which must succeed; its JSON.
pub(crate) fn delta_read(args: &[&str]) -> Value {
    let o = Command::new(python())
        .arg(repo().join("scheduler/tests/cli/peers/delta_read.py"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "delta_read.py {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn summary(table: &Path) -> Value {
    delta_read(&["summary", &table.display().to_string()])
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The run ids of a table's history, newest first.
fn history_runs(s: &Value) -> Vec<String> {
    s["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|h| h["run_id"].as_str().map(String::from))
        .collect()
}

fn parquet_files_on_disk(table: &Path) -> usize {
    data_files(table)
        .iter()
        .filter(|f| !f.contains("_delta_log") && !f.contains("_chainbatch"))
        .count()
}

#[test]
fn delta_output_equals_the_parquet_output_and_keeps_old_versions_until_gc() {
    let plain = Project::generated(20_000, 5, 2);
    plain.run_ok(&["run"]);
    let p = Project::generated(20_000, 5, 2);
    make_delta(&p);
    p.run_ok(&["run", "--run-id", "first"]);
    for ds in OUTPUTS {
        let s = summary(&p.out().join(ds));
        let q = delta_read(&["parquet", &plain.out().join(ds).display().to_string()]);
        assert_eq!(s["rows"], q["rows"], "{ds}: rows");
        assert_eq!(s["digest"], q["digest"], "{ds}: rows differ from Parquet");
        assert_eq!(s["columns"], q["columns"], "{ds}: columns");
        assert_eq!(s["version"], 0, "{ds}: one commit, one version");
        assert_eq!(history_runs(&s), vec!["first"], "{ds}");
        assert_eq!(s["partition_columns"], serde_json::json!(["date"]));
    }
    let before = summary(&p.out().join("clean_transactions"));
    assert_eq!(before["rows"], 20_000);

    // A second run over two dates replaces those partitions in version 1.
    p.run_ok(&[
        "run",
        "--dates",
        "2024-03-02..2024-03-03",
        "--run-id",
        "second",
    ]);
    let table = p.out().join("clean_transactions");
    let after = summary(&table);
    assert_eq!(after["version"], 1);
    assert_eq!(history_runs(&after), vec!["second", "first"]);
    assert_eq!(after["digest"], before["digest"], "same input, same rows");
    let v0 = delta_read(&["summary", &table.display().to_string(), "--version", "0"]);
    assert_eq!(v0["digest"], before["digest"], "version 0 still reads");
    // The replaced files stay for version 0 until gc vacuums them.
    let live = after["files"].as_u64().unwrap() as usize;
    assert!(parquet_files_on_disk(&table) > live);
    let gc = p.run_ok(&["gc", "--delta-retain-hours", "0"]);
    assert!(
        gc.contains("vacuumed") && gc.contains("`clean_transactions`"),
        "{gc}"
    );
    assert_eq!(parquet_files_on_disk(&table), live, "{gc}");
    assert_eq!(summary(&table)["digest"], before["digest"]);
    // The downstream nodes read clean_transactions through its log: the
    // stats match the Parquet project's although old files were there.
    for ds in ["daily_address_stats", "daily_summary"] {
        let q = delta_read(&["parquet", &plain.out().join(ds).display().to_string()]);
        assert_eq!(summary(&p.out().join(ds))["digest"], q["digest"], "{ds}");
    }
}

/// Polls `table` from a separate reader while `runs` commit to it; the
/// reader's counts of partial and failed reads.
fn poll_during(p: &Project, table: &Path, format: &str, runs: u32) -> Value {
    let expect = match format {
        "delta" => summary(table)["per_partition"].clone(),
        _ => delta_read(&["parquet", &table.display().to_string()])["per_partition"].clone(),
    };
    let stop = p.dir.path().join(format!("stop-{format}"));
    let poller = Command::new(python())
        .arg(repo().join("scheduler/tests/cli/peers/delta_read.py"))
        .args(["poll", &table.display().to_string(), "--format", format])
        .arg("--stop")
        .arg(&stop)
        .arg("--expect")
        .arg(expect.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    for i in 0..runs {
        p.run_ok(&["run", "--run-id", &format!("{format}-{i}")]);
    }
    std::fs::write(&stop, "").unwrap();
    let o = poller.wait_with_output().unwrap();
    assert!(o.status.success(), "poller: {}", stderr(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn a_reader_polling_during_ten_commits_never_sees_a_partial_delta_partition() {
    let plain = Project::generated(30_000, 5, 6);
    plain.run_ok(&["run"]);
    let parquet = poll_during(
        &plain,
        &plain.out().join("clean_transactions"),
        "parquet",
        10,
    );

    let p = Project::generated(30_000, 5, 6);
    make_delta(&p);
    p.run_ok(&["run"]);
    let delta = poll_during(&p, &p.out().join("clean_transactions"), "delta", 10);
    eprintln!("reader during 10 commits: delta {delta}, plain parquet {parquet}");
    assert!(delta["polls"].as_u64().unwrap() >= 10, "{delta}");
    assert_eq!(delta["partial"], 0, "{delta}");
    assert_eq!(delta["errors"], 0, "{delta}");
    assert_eq!(summary(&p.out().join("clean_transactions"))["version"], 10);
}

#[test]
fn a_crash_at_every_delta_commit_step_leaves_the_old_or_the_new_version() {
    // Old: seed 1; new: seed 2 with more rows, so the versions differ.
    let reference = Project::generated(6_000, 2, 1);
    let new_raw = reference.dir.path().join("raw-new");
    gen_raw(&new_raw, 2, 8_000, 2, "2024-03-01", 2);
    make_delta(&reference);
    let new_out = reference.dir.path().join("out-new");
    let o = reference
        .command_on(
            &["run"],
            &new_raw.display().to_string(),
            &new_out.display().to_string(),
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let new = summary(&new_out.join("clean_transactions"));
    assert_eq!(new["rows"], 8_000);

    for step in chainbatch::commit::DELTA_CRASH_STEPS {
        let p = Project::generated(6_000, 2, 1);
        make_delta(&p);
        p.run_ok(&["run", "--run-id", "old"]);
        let table = p.out().join("clean_transactions");
        let old = summary(&table);
        let run_new = |id: &str, crash: Option<&str>| {
            let mut c = p.command_on(
                &["run", "--run-id", id],
                &new_raw.display().to_string(),
                &p.out().display().to_string(),
            );
            if let Some(s) = crash {
                c.env("CHAINBATCH_CRASH_AT", s);
            }
            c.output().unwrap()
        };
        let o = run_new("crashed", Some(step));
        assert!(!o.status.success(), "{step}: the run should have crashed");
        let seen = summary(&table);
        assert!(
            seen["digest"] == old["digest"] || seen["digest"] == new["digest"],
            "{step}: the table is neither the old nor the new version: {} rows",
            seen["rows"]
        );
        let o = run_new("next", None);
        assert!(o.status.success(), "{step}: {}", stderr(&o));
        let end = summary(&table);
        assert_eq!(end["digest"], new["digest"], "{step}: after recovery");
        let runs = history_runs(&end);
        assert!(
            runs.iter().filter(|r| *r == "crashed").count() <= 1,
            "{step}: the crashed run committed twice: {runs:?}"
        );
    }
}

#[test]
fn runs_over_disjoint_dates_commit_to_one_delta_table_together() {
    let plain = Project::generated(20_000, 10, 2);
    plain.run_ok(&["run"]);
    let expected = delta_read(&[
        "parquet",
        &plain.out().join("clean_transactions").display().to_string(),
    ]);
    let p = Project::generated(20_000, 10, 2);
    make_delta(&p);
    let rounds = 3;
    for round in 0..rounds {
        let early = p
            .command(&[
                "run",
                "--dates",
                "2024-03-01..2024-03-05",
                "--run-id",
                &format!("early-{round}"),
            ])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let late = p.run(&[
            "run",
            "--dates",
            "2024-03-06..2024-03-10",
            "--run-id",
            &format!("late-{round}"),
        ]);
        let early = early.wait_with_output().unwrap();
        assert!(early.status.success(), "{}", stderr(&early));
        assert!(late.status.success(), "{}", stderr(&late));
    }
    let s = summary(&p.out().join("clean_transactions"));
    assert_eq!(s["rows"], expected["rows"]);
    assert_eq!(s["digest"], expected["digest"], "rows lost or duplicated");
    assert_eq!(history_runs(&s).len(), 2 * rounds, "one commit a run");
}

#[tokio::test]
async fn a_delta_input_reads_the_version_it_pins() {
    let p = Project::generated(6_000, 2, 1);
    make_delta(&p);
    p.run_ok(&["run"]);
    let v0 = summary(&p.out().join("clean_transactions"));
    let new_raw = p.dir.path().join("raw-new");
    gen_raw(&new_raw, 2, 9_000, 2, "2024-03-01", 1);
    let o = p
        .command_on(
            &["run"],
            &new_raw.display().to_string(),
            &p.out().display().to_string(),
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(summary(&p.out().join("clean_transactions"))["rows"], 9_000);

    p.append_conf(
        "base/catalog.yml",
        "\nclean_transactions_v0:\n  type: parquet\n  path: ${globals:out_root}/clean_transactions\n  \
         format: delta\n  version: 0\n  partitions:\n    date: date\n\n\
         pinned_counts:\n  type: parquet\n  path: ${globals:out_root}/pinned_counts\n  \
         partitions:\n    date: date\n  layout: ${globals:layouts.daily_stats}\n",
    );
    p.append_conf(
        "base/pipelines.yml",
        "\npinned:\n  nodes:\n    - name: pinned_counts\n      inputs: [clean_transactions_v0]\n      \
         outputs: pinned_counts\n      sql: |\n        SELECT date, count(*) AS n FROM \
         clean_transactions_v0 GROUP BY date\n",
    );

    p.run_ok(&["run", "--pipeline", "pinned"]);
    let counts = rows_as_text(
        &p.query(
            "pinned_counts",
            "SELECT CAST(date AS VARCHAR), n FROM t ORDER BY 1",
        )
        .await,
    );
    let want: Vec<Vec<String>> = v0["per_partition"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(d, n)| vec![d.clone(), n.to_string()])
        .collect();
    assert_eq!(counts, want, "the pinned input read version 0");
}

#[test]
fn delta_settings_that_cannot_work_are_refused_with_their_key() {
    let p = Project::generated(1_000, 1, 1);
    let catalog = p.conf().join("base/catalog.yml");
    let original = std::fs::read_to_string(&catalog).unwrap();
    let line = "  path: ${globals:out_root}/clean_transactions\n";
    for (extra, key, words) in [
        (
            "  format: iceberg\n",
            "clean_transactions.format",
            "unknown format `iceberg`",
        ),
        (
            "  version: 3\n",
            "clean_transactions.version",
            "only with `format: delta`",
        ),
        (
            "  format: delta\n  as_of: yesterday\n",
            "clean_transactions.as_of",
            "not an RFC 3339 time",
        ),
        (
            "  format: delta\n  version: 0\n",
            "clean_transactions.version",
            "always makes a new version",
        ),
    ] {
        std::fs::write(&catalog, original.replace(line, &format!("{line}{extra}"))).unwrap();
        let o = p.run(&["run"]);
        let e = stderr(&o);
        assert_eq!(o.status.code(), Some(2), "{extra}: {e}");
        assert!(e.contains(key) && e.contains(words), "{extra}: {e}");
        assert!(
            !p.out().join("clean_transactions").exists(),
            "{extra}: wrote output"
        );
    }
}
