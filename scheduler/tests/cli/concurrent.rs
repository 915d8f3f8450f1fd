//! Concurrent runs on one output: run leases keep overlapping runs apart,
//! a live run is never recovered by another, and no rows are lost or
//! duplicated whatever the timing.

use crate::crash::snapshot;
use crate::support::*;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

const WINDOW: &str = "2024-03-01..2024-03-10";
const ONE_DAY: &str = "2024-03-05";

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// What pairs of overlapping runs did.
#[derive(Debug, Default)]
struct Outcomes {
    /// Both runs succeeded: one after the other, or one waited (`--wait`).
    both_succeeded: u32,
    /// Of those, how many pairs had a run say it was waiting.
    waited: u32,
    /// The second run failed at once, naming the first.
    second_refused: u32,
    /// The first run failed at once, naming the second: the second took its
    /// lease first (both started within moments).
    first_refused: u32,
}

impl Outcomes {
    /// Checks one pair: each run succeeded, or failed at once naming the
    /// other run and since when; a run given `--wait` never fails; one of
    /// them always succeeds.
    fn record(&mut self, context: &str, first: (&str, &Output), second: (&str, &Output, bool)) {
        let refused = |me: &Output, other: &str| {
            let e = stderr(me);
            assert_eq!(me.status.code(), Some(1), "{context}: {e}");
            assert!(
                e.contains(&format!("run `{other}`")) && e.contains("since"),
                "{context}: a refusal names the holder and since when: {e}"
            );
        };
        let (first_id, first) = first;
        let (second_id, second, second_waits) = second;
        match (first.status.success(), second.status.success()) {
            (true, true) => {
                self.both_succeeded += 1;
                self.waited += u32::from(stderr(second).contains("waiting up to"));
            }
            (true, false) => {
                assert!(
                    !second_waits,
                    "{context}: a waiting run failed: {}",
                    stderr(second)
                );
                refused(second, first_id);
                self.second_refused += 1;
            }
            (false, true) => {
                refused(first, second_id);
                self.first_refused += 1;
            }
            (false, false) => panic!(
                "{context}: both runs failed:\n{}\n{}",
                stderr(first),
                stderr(second)
            ),
        }
    }
}

/// The output holds no staging, shuffle or lease of any run.
fn assert_no_leftovers(p: &Project, context: &str) {
    for ds in ["clean_transactions", "daily_address_stats", "daily_summary"] {
        for state in ["staging", "shuffle", "leases"] {
            let dir = p.out().join(ds).join("_chainbatch").join(state);
            let left = files_below(&dir, true);
            assert!(left.is_empty(), "{context}: {ds} {state} left: {left:?}");
        }
    }
}

/// Starts a run over the whole window, then, `offset` later, a run over one
/// of its dates; checks both and the output.
fn overlapping_pair(p: &Project, i: u32, offset: Duration, wait: bool, seen: &mut Outcomes) {
    let first_id = format!("first-{i}");
    let second_id = format!("second-{i}");
    let mut first = p.command(&["run", "--dates", WINDOW, "--run-id", &first_id]);
    // Half the pairs (a refusing and a waiting one in every four) hold the
    // first run a second after its tasks, so they overlap on any machine.
    if i % 4 < 2 {
        first.env("CHAINBATCH_PAUSE_AT", "after_tasks");
    }
    let first = first
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(offset);
    let mut args = vec!["run", "--dates", ONE_DAY, "--run-id", &second_id];
    if wait {
        args.extend(["--wait", "300"]);
    }
    let second = p.run(&args);
    let first = first.wait_with_output().unwrap();
    let context = format!("pair {i} (offset {offset:?}, wait {wait})");
    seen.record(&context, (&first_id, &first), (&second_id, &second, wait));
}

#[tokio::test]
async fn overlapping_runs_wait_or_refuse_and_never_lose_rows() {
    let reference = Project::generated(30_000, 10, 2);
    reference.run_ok(&["run", "--dates", WINDOW]);
    let expected = snapshot(&reference).await;
    assert_eq!(expected[0].len(), 30_000);

    let p = Project::generated(30_000, 10, 2);
    let started = Instant::now();
    p.run_ok(&["run", "--dates", WINDOW, "--run-id", "warm-up"]);
    let one_run = started.elapsed();
    // Offsets from 0 to 1.25 runs: the second run lands while the first
    // plans, runs tasks, publishes, finishes, and after it ended.
    let pairs = 20;
    let mut seen = Outcomes::default();
    for i in 0..pairs {
        let offset = one_run.mul_f64(1.25 * f64::from(i) / f64::from(pairs - 1));
        overlapping_pair(&p, i, offset, i % 2 == 1, &mut seen);
        assert_eq!(snapshot(&p).await, expected, "pair {i}: output");
        assert_no_leftovers(&p, &format!("pair {i}"));
    }
    eprintln!("overlapping runs: {pairs} pairs, one run {one_run:?}: {seen:?}");
    assert!(
        seen.second_refused + seen.first_refused > 0,
        "no pair overlapped: {seen:?}"
    );
    assert!(seen.waited > 0, "no waiting run overlapped: {seen:?}");
}

#[tokio::test]
async fn runs_over_disjoint_dates_proceed_together() {
    let p = Project::generated(20_000, 10, 2);
    let first = p
        .command(&[
            "run",
            "--dates",
            "2024-03-01..2024-03-05",
            "--run-id",
            "early",
        ])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let second = p.run(&[
        "run",
        "--dates",
        "2024-03-06..2024-03-10",
        "--run-id",
        "late",
    ]);
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(second.status.success(), "{}", stderr(&second));
    assert!(!stderr(&second).contains("waiting"));
    let days = p
        .query(
            "clean_transactions",
            "SELECT count(DISTINCT date), count(*) FROM t",
        )
        .await;
    assert_eq!(
        rows_as_text(&days),
        vec![vec!["10".to_string(), "20000".to_string()]]
    );
    assert_no_leftovers(&p, "disjoint runs");
}

/// Rewrites a crashed run's leases as if it ran on another host and was
/// alive: written just now, `ttl` seconds to live.
fn pretend_alive_elsewhere(p: &Project, run_id: &str, ttl: u64) -> usize {
    let mut n = 0;
    for ds in ["clean_transactions", "daily_address_stats", "daily_summary"] {
        let path = p
            .out()
            .join(ds)
            .join("_chainbatch/leases")
            .join(format!("{run_id}.json"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let mut lease: serde_json::Value = serde_json::from_str(&text).unwrap();
        lease["host"] = "another-host".into();
        lease["ttl_seconds"] = ttl.into();
        std::fs::write(&path, serde_json::to_vec(&lease).unwrap()).unwrap();
        n += 1;
    }
    n
}

#[tokio::test]
async fn a_live_lease_is_never_broken_and_an_expired_one_is_recovered() {
    let p = Project::generated(6_000, 2, 1);
    p.run_ok(&["run", "--run-id", "good"]);
    let expected = snapshot(&p).await;

    let o = p
        .command(&["run", "--run-id", "crashed"])
        .env("CHAINBATCH_CRASH_AT", "after_tasks")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let staging = p
        .out()
        .join("clean_transactions/_chainbatch/staging/crashed");
    assert!(
        !data_files(&staging).is_empty(),
        "the crashed run left staging"
    );

    // Its holder still heartbeats (on another host): nobody touches it.
    assert_eq!(pretend_alive_elsewhere(&p, "crashed", 6), 3);
    let o = p.run(&["run", "--run-id", "blocked"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(
        e.contains("run `crashed`") && e.contains("another-host"),
        "{e}"
    );
    assert!(
        !data_files(&staging).is_empty(),
        "a live run's staging was touched"
    );
    // gc leaves a live run alone too.
    let gc = p.run_ok(&["gc"]);
    assert!(!gc.contains("crashed"), "{gc}");
    assert!(
        !data_files(&staging).is_empty(),
        "gc touched a live run's staging"
    );

    // Once the heartbeat is older than the lease's time to live, the next
    // run recovers it.
    std::thread::sleep(Duration::from_secs(7));
    let o = p.run(&["run", "--run-id", "after"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let all = format!("{}{}", stderr(&o), String::from_utf8_lossy(&o.stdout));
    assert!(all.contains("recovered run crashed"), "{all}");
    assert_eq!(snapshot(&p).await, expected);
    assert_no_leftovers(&p, "after recovery");
}

#[test]
fn a_crashed_local_run_is_recovered_at_once() {
    // Same host, process gone: no need to wait for the lease to expire.
    let p = Project::generated(3_000, 1, 1);
    let o = p
        .command(&["run", "--run-id", "crashed"])
        .env("CHAINBATCH_CRASH_AT", "after_plan")
        .output()
        .unwrap();
    assert!(!o.status.success());
    let started = Instant::now();
    let o = p.run(&["run", "--run-id", "next"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(started.elapsed() < Duration::from_secs(60));
    assert!(
        stderr(&o).contains("recovered run crashed"),
        "{}",
        stderr(&o)
    );
}

/// The same on a real S3 server: the second run (over the whole dataset)
/// starts at offsets across the first run's life; leases are conditional
/// creates on S3. A run over the small fixture is short next to process
/// start-up, so some first runs pause after their tasks (the pairs that
/// must overlap).
#[tokio::test]
async fn overlapping_runs_on_s3_wait_or_refuse_and_never_lose_rows() {
    let raw = crate::s3::prefix("raw-concurrent");
    crate::s3::import_fixture(&raw);
    let p = Project::fixture();
    let out = crate::s3::prefix("out-concurrent");
    let started = Instant::now();
    let o = p
        .command_on(&["run", "--run-id", "warm-up"], &raw, &out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let one_run = started.elapsed();
    let expected = crate::s3::snapshot(&out).await;
    let pairs = 20;
    let mut seen = Outcomes::default();
    for i in 0..pairs {
        let offset = one_run.mul_f64(1.2 * f64::from(i) / f64::from(pairs - 1));
        let first_id = format!("first-{i}");
        let second_id = format!("second-{i}");
        let mut first = p.command_on(&["run", "--run-id", &first_id], &raw, &out);
        // Every fourth first run holds its lease a second longer after its
        // tasks, so those pairs overlap however fast a run is.
        if i % 4 == 0 {
            first.env("CHAINBATCH_PAUSE_AT", "after_tasks");
        }
        let first = first
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(offset);
        let mut args = vec!["run", "--run-id", &second_id];
        if i % 2 == 1 {
            args.extend(["--wait", "300"]);
        }
        let second = p.command_on(&args, &raw, &out).output().unwrap();
        let first = first.wait_with_output().unwrap();
        let context = format!("pair {i} on S3 (offset {offset:?})");
        seen.record(
            &context,
            (&first_id, &first),
            (&second_id, &second, i % 2 == 1),
        );
        assert_eq!(
            crate::s3::snapshot(&out).await,
            expected,
            "pair {i}: output"
        );
        let state: Vec<String> = crate::s3::list_keys(&out)
            .into_iter()
            .filter(|k| k.contains("/_chainbatch/"))
            // Journals and the partition ledger stay; nothing else may.
            .filter(|k| {
                !k.contains("/_chainbatch/runs/") && !k.contains("/_chainbatch/partitions/")
            })
            .collect();
        assert!(state.is_empty(), "pair {i}: left on S3: {state:?}");
    }
    eprintln!("overlapping runs on S3: {pairs} pairs, one run {one_run:?}: {seen:?}");
    assert!(
        seen.second_refused + seen.first_refused + seen.waited > 0,
        "no pair overlapped: {seen:?}"
    );
}

/// A lease is a conditional create: the S3 server refuses a second lease
/// object under the same name while the first holder lives, and a disjoint
/// claim on the same dataset is granted alongside.
#[test]
fn leases_on_s3_are_conditional_creates() {
    use chainbatch::commit::lease::{self, Claim, LeaseError, LeaseOptions, Scope};
    let dataset = crate::s3::prefix("leased");
    crate::s3::on_s3_runtime(async move {
        let claim = |from: &str, to: &str| Claim {
            dataset: "d".into(),
            path: dataset.clone(),
            scope: Scope::Dates {
                from: from.into(),
                to: to.into(),
            },
        };
        let opts = |run: &str| LeaseOptions {
            run_id: run.into(),
            purpose: "run".into(),
            ttl_seconds: 60,
            wait: Duration::ZERO,
            detached: false,
        };
        let held = lease::acquire(&[claim("2024-03-01", "2024-03-10")], &opts("a"), |_| {})
            .await
            .expect("first lease");
        // The same lease name again: the server refuses the create.
        let again = lease::acquire(&[claim("2024-03-01", "2024-03-01")], &opts("a"), |_| {}).await;
        assert!(
            matches!(&again, Err(LeaseError::Conflict { holder }) if holder.contains("run `a`")),
            "{:?}",
            again.err()
        );
        // Another run over an overlapping date: refused, naming `a`.
        let other = lease::acquire(&[claim("2024-03-10", "2024-03-12")], &opts("b"), |_| {}).await;
        assert!(
            matches!(&other, Err(LeaseError::Conflict { holder }) if holder.contains("run `a`")),
            "{:?}",
            other.err()
        );
        // Disjoint dates: granted.
        let disjoint = lease::acquire(&[claim("2024-03-11", "2024-03-12")], &opts("c"), |_| {})
            .await
            .expect("disjoint lease");
        disjoint.release().await;
        held.release().await;
        let left = lease::list(&chainbatch::paths::leases(&dataset))
            .await
            .unwrap();
        assert!(left.is_empty(), "{left:?}");
    });
}

/// A run that could not release its lease (the store was down as it
/// finished) leaves it behind; gc (and the next run's recovery) removes it,
/// since its process is gone and its journal says it ended.
#[test]
fn a_lease_left_by_a_run_that_ended_is_swept() {
    let p = Project::generated(3_000, 1, 1);
    let mut run = p.command(&["run", "--run-id", "ended"]);
    let run = run
        .env("CHAINBATCH_PAUSE_AT", "after_tasks")
        .env("CHAINBATCH_PAUSE_MS", "3000")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lease = p
        .out()
        .join("clean_transactions/_chainbatch/leases/ended.json");
    let deadline = Instant::now() + Duration::from_secs(60);
    let held = loop {
        if let Ok(b) = std::fs::read(&lease) {
            break b;
        }
        assert!(Instant::now() < deadline, "the run took no lease");
        std::thread::sleep(Duration::from_millis(20));
    };
    let o = run.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!lease.exists(), "a finished run releases its lease");
    std::fs::write(&lease, held).unwrap();

    let gc = p.run_ok(&["gc"]);
    assert!(
        gc.contains("removed 1 lease(s) on `clean_transactions` left by runs that ended"),
        "{gc}"
    );
    assert!(!lease.exists(), "{gc}");
    assert_no_leftovers(&p, "after gc");
}
