//! A mixed load, as a release soaks it: daily runs and backfill chunks over
//! overlapping and disjoint dates, all at once, writing to S3 (a SeaweedFS
//! of the test's own), on executors that are SIGKILLed mid-task, with one
//! driver SIGKILLed mid-run and the S3 server SIGKILLed and started again
//! while the runs work. Afterwards every partition must hold exactly the
//! rows of one clean run.

use crate::crash::{killing_executor, snapshot, starts_log, wait_for_line};
use crate::support::*;
use crate::weed::{Weed, download};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Run id and `--dates` of each concurrent run: three backfill chunks, a
/// chunk across two of them, and daily runs inside and between them.
const RUNS: &[(&str, &str)] = &[
    ("chunk-a", "2024-03-01..2024-03-04"),
    ("chunk-b", "2024-03-05..2024-03-08"),
    ("chunk-c", "2024-03-09..2024-03-12"),
    ("chunk-across", "2024-03-03..2024-03-06"),
    ("daily-02", "2024-03-02"),
    ("daily-07", "2024-03-07"),
    ("daily-11", "2024-03-11"),
    ("daily-12", "2024-03-12"),
];

/// The run whose driver is SIGKILLed.
const KILLED: &str = "chunk-b";

/// How long the runs may take to start their first tasks: eight drivers
/// planning at once on two cores take seconds, not the same seconds twice.
const STARTUP: Duration = Duration::from_secs(120);

/// Where the runs write, on the test's own server.
const OUT: &str = "s3://restart/soak";

/// `chainbatch ARGS` reading the local raw data and writing to [`OUT`].
fn command(p: &Project, weed: &str, executor: &std::path::Path, args: &[&str]) -> Command {
    let mut c = p.command_on(args, &p.raw_root.display().to_string(), OUT);
    // The default S3 retries: a short outage is ridden through, a longer
    // one fails the run with a resume hint.
    c.env("AWS_ENDPOINT_URL", weed)
        .env("CHAINBATCH_EXECUTOR", executor);
    c
}

/// A soak run's arguments: process executors, a task per file, waiting
/// for overlapping runs.
fn run_args<'a>(run_id: &'a str, dates: &'a str) -> [&'a str; 13] {
    [
        "run",
        "--run-id",
        run_id,
        "--dates",
        dates,
        "--backend",
        "process",
        "--parallelism",
        "2",
        "--wait",
        "600",
        "--globals",
        "target_task_bytes=1",
    ]
}

fn spawn(mut c: Command) -> Child {
    c.stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn start(p: &Project, weed: &str, run_id: &str, dates: &str, executor: &std::path::Path) -> Child {
    spawn(command(p, weed, executor, &run_args(run_id, dates)))
}

fn start_local(p: &Project, run_id: &str, dates: &str, executor: &std::path::Path) -> Child {
    let mut c = p.command(&run_args(run_id, dates));
    c.env("CHAINBATCH_EXECUTOR", executor);
    spawn(c)
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The resumes here are given no `target_task_bytes` override, as a user
/// retrying by hand might: they plan other tasks than the runs they resume,
/// and must not reuse a finished task for other work.
#[tokio::test]
async fn mixed_runs_with_executor_driver_and_s3_kills_lose_no_rows() {
    let started = Instant::now();
    let reference = Project::generated(12_000, 12, 2);
    reference.run_ok(&["run"]);
    let expected = snapshot(&reference).await;

    let mut weed = Weed::start_new();
    let endpoint = weed.endpoint();
    let p = Project::generated(12_000, 12, 2);
    let (executor, kills) = killing_executor(p.dir.path());
    let mut children: Vec<(&str, &str, Child)> = RUNS
        .iter()
        .map(|(id, dates)| (*id, *dates, start(&p, &endpoint, id, dates, &executor)))
        .collect();
    // The driver of one chunk dies mid-run, once the runs started tasks
    // (it may be running its own, or waiting for an overlapping run).
    wait_for_line(&starts_log(p.dir.path()), "/stage-", STARTUP);
    let killed = children
        .iter_mut()
        .find(|(id, _, _)| *id == KILLED)
        .unwrap();
    let driver_killed = killed.2.kill().is_ok();
    // Then the S3 server dies under the others, once an executor was
    // killed (tasks are running), and comes back.
    wait_for_line(&kills, "", STARTUP);
    weed.kill();
    std::thread::sleep(Duration::from_secs(2));
    weed.start();
    let restarts = 1;

    // The killed driver last: its executor processes, orphaned, finish
    // while the other runs do, before it is resumed.
    children.sort_by_key(|(id, _, _)| *id == KILLED);
    let (mut succeeded, mut resumed, mut rerun) = (0, 0, 0);
    let mut failures = vec![];
    let mut why_not_resumed = vec![];
    for (id, dates, child) in children {
        let o = child.wait_with_output().unwrap();
        if id == KILLED {
            std::thread::sleep(Duration::from_secs(3));
        }
        if o.status.success() {
            succeeded += 1;
            continue;
        }
        // A killed driver, a run the server outage stopped, or one whose
        // tasks failed for a retryable reason: resumed. A run that cannot
        // be resumed (it died before its journal, or another run recovered
        // it first) is started again over its window.
        let r = command(
            &p,
            &endpoint,
            &executor,
            &["run", "--resume", id, "--wait", "600"],
        )
        .output()
        .unwrap();
        if r.status.success() {
            resumed += 1;
            continue;
        }
        let why = text(&r);
        why_not_resumed.push(format!("{id}: {}", why.lines().last().unwrap_or_default()));
        let again_id = format!("{id}-again");
        let again = command(
            &p,
            &endpoint,
            &executor,
            &[
                "run", "--run-id", &again_id, "--dates", dates, "--wait", "600",
            ],
        )
        .output()
        .unwrap();
        if again.status.success() {
            rerun += 1;
        } else {
            failures.push(format!(
                "{id}: {}\n{}\n{}",
                text(&o),
                text(&r),
                text(&again)
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    // A run that ended while the server was down may have left its lease
    // behind; the next run or gc sweeps it, and leaves nothing else.
    let gc = command(&p, &endpoint, &executor, &["gc"]).output().unwrap();
    assert!(gc.status.success(), "{}", text(&gc));
    let swept = String::from_utf8_lossy(&gc.stdout).into_owned();
    let copy = p.dir.path().join("soak-copy");
    download(&endpoint, "soak", &copy);
    let out = |ds: &str| copy.join(ds);
    let mut seen = vec![];
    for ds in ["clean_transactions", "daily_address_stats", "daily_summary"] {
        seen.push(rows_as_text(
            &query_dir(&out(ds), "SELECT * FROM t ORDER BY 1, 2, 3").await,
        ));
    }
    if seen != expected {
        explain_mismatch(&copy, &seen, &expected);
    }
    assert_eq!(seen, expected, "every partition exact");
    for ds in ["clean_transactions", "daily_address_stats", "daily_summary"] {
        for state in ["staging", "leases"] {
            let left = files_below(&out(ds).join("_chainbatch").join(state), true);
            assert!(left.is_empty(), "{ds} {state} left: {left:?}");
        }
    }
    let executor_kills = std::fs::read_to_string(&kills)
        .unwrap_or_default()
        .lines()
        .count();
    let rows: usize = expected.iter().map(|rows| rows.len()).sum();
    let partitions: usize = ["clean_transactions", "daily_address_stats", "daily_summary"]
        .iter()
        .map(|ds| {
            std::fs::read_dir(out(ds))
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("date="))
                .count()
        })
        .sum();
    eprintln!(
        "soak: {} runs at once, {executor_kills} executors and {} driver SIGKILLed, \
         {restarts} S3 server restart; {succeeded} succeeded, {resumed} resumed, {rerun} started \
         again; {partitions} partitions ({rows} rows) checked, 0 rows lost or duplicated, in \
         {:?}; gc: {}",
        RUNS.len(),
        u32::from(driver_killed),
        started.elapsed(),
        swept.trim().replace('\n', "; ")
    );
    if !why_not_resumed.is_empty() {
        eprintln!("soak: not resumed: {why_not_resumed:#?}");
    }
    assert!(executor_kills > 0, "no executor kill landed");
}

/// What a failed comparison needs to be understood: per dataset, the
/// dates whose rows differ, the files each such partition holds, its ledger
/// record, and every run's journal in short.
fn explain_mismatch(
    copy: &std::path::Path,
    seen: &[Vec<Vec<String>>],
    expected: &[Vec<Vec<String>>],
) {
    let date_of = |row: &Vec<String>| {
        row.iter()
            .find(|v| v.len() == 10 && v.as_bytes()[4] == b'-' && v.as_bytes()[7] == b'-')
            .cloned()
            .unwrap_or_default()
    };
    let names = ["clean_transactions", "daily_address_stats", "daily_summary"];
    for (i, ds) in names.iter().enumerate() {
        let count = |rows: &[Vec<String>]| {
            let mut by = std::collections::BTreeMap::<String, usize>::new();
            for r in rows {
                *by.entry(date_of(r)).or_default() += 1;
            }
            by
        };
        let (a, b) = (count(&seen[i]), count(&expected[i]));
        for d in a
            .keys()
            .chain(b.keys())
            .collect::<std::collections::BTreeSet<_>>()
        {
            if a.get(d) == b.get(d) {
                continue;
            }
            let dir = copy.join(ds).join(format!("date={d}"));
            let files: Vec<String> = std::fs::read_dir(&dir)
                .map(|it| {
                    it.flatten()
                        .map(|e| format!("{:?} {} B", e.file_name(), e.metadata().unwrap().len()))
                        .collect()
                })
                .unwrap_or_default();
            let record = std::fs::read_to_string(
                copy.join(ds)
                    .join(format!("_chainbatch/partitions/date={d}.json")),
            )
            .unwrap_or_default();
            eprintln!(
                "soak mismatch: {ds} date={d}: {:?} rows, expected {:?}; files {files:?}; ledger {record}",
                a.get(d),
                b.get(d)
            );
        }
    }
    let runs = copy.join("_chainbatch/runs");
    for e in std::fs::read_dir(&runs).into_iter().flatten().flatten() {
        let j: serde_json::Value = std::fs::read(e.path().join("journal.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        let commits: Vec<String> = j["commits"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| format!("{} {} {:?}", c["node"], c["state"], c["partitions"]))
            .collect();
        eprintln!(
            "soak journal {:?}: {} {} dates {} error {} commits {commits:?}",
            e.file_name(),
            j["status"],
            j["started_at"],
            j["dates"],
            j["error"]
        );
    }
}

#[tokio::test]
async fn mixed_runs_with_executor_and_driver_kills_lose_no_rows() {
    let started = Instant::now();
    let reference = Project::generated(12_000, 12, 2);
    reference.run_ok(&["run"]);
    let expected = snapshot(&reference).await;

    let p = Project::generated(12_000, 12, 2);
    let (executor, kills) = killing_executor(p.dir.path());
    let mut children: Vec<(&str, &str, Child)> = RUNS
        .iter()
        .map(|(id, dates)| (*id, *dates, start_local(&p, id, dates, &executor)))
        .collect();
    // The driver of one chunk dies mid-run, once the runs started tasks
    // (it may be running its own, or waiting for an overlapping run).
    wait_for_line(&starts_log(p.dir.path()), "/stage-", STARTUP);
    let killed = children
        .iter_mut()
        .find(|(id, _, _)| *id == KILLED)
        .unwrap();
    let driver_killed = killed.2.kill().is_ok();

    // The killed driver last: its executor processes, orphaned, finish
    // while the other runs do, before it is resumed.
    children.sort_by_key(|(id, _, _)| *id == KILLED);
    let (mut succeeded, mut resumed, mut rerun) = (0, 0, 0);
    let mut failures = vec![];
    for (id, dates, child) in children {
        let o = child.wait_with_output().unwrap();
        if id == KILLED {
            std::thread::sleep(Duration::from_secs(3));
        }
        if o.status.success() {
            succeeded += 1;
            continue;
        }
        // A killed driver, or a run whose tasks failed for a retryable
        // reason: resumed. A run that cannot be resumed (another run
        // recovered it first) is started again over its window.
        if id != KILLED {
            assert!(text(&o).contains("--resume"), "{id}: {}", text(&o));
        }
        let r = p.run(&["run", "--resume", id, "--wait", "600"]);
        if r.status.success() {
            resumed += 1;
            continue;
        }
        let again = p.run(&["run", "--run-id", &format!("{id}-again"), "--dates", dates]);
        if again.status.success() {
            rerun += 1;
        } else {
            failures.push(format!("{id}: {}\n{}", text(&r), text(&again)));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    assert_eq!(snapshot(&p).await, expected, "every partition exact");
    for ds in ["clean_transactions", "daily_address_stats", "daily_summary"] {
        for state in ["staging", "leases"] {
            let left = files_below(&p.out().join(ds).join("_chainbatch").join(state), true);
            assert!(left.is_empty(), "{ds} {state} left: {left:?}");
        }
    }
    let executor_kills = std::fs::read_to_string(&kills)
        .unwrap_or_default()
        .lines()
        .count();
    let rows: usize = expected.iter().map(|rows| rows.len()).sum();
    let partitions: usize = ["clean_transactions", "daily_address_stats", "daily_summary"]
        .iter()
        .map(|ds| {
            std::fs::read_dir(p.out().join(ds))
                .unwrap()
                .flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("date="))
                .count()
        })
        .sum();
    eprintln!(
        "soak: {} runs at once, {executor_kills} executors and {} driver SIGKILLed; \
         {succeeded} succeeded, {resumed} resumed, {rerun} started again; \
         {partitions} partitions ({rows} rows) checked, 0 rows lost or duplicated, in {:?}",
        RUNS.len(),
        u32::from(driver_killed),
        started.elapsed()
    );
    assert!(executor_kills > 0, "no executor kill landed");
}
