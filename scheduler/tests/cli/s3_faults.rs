//! S3 misbehaving under a run, through scheduler/tests/cli/peers/s3_fault_proxy.py in front of
//! SeaweedFS: throttling and 5xx answers are retried with backoff and the
//! output is exact; an S3 that keeps failing fails the run in bounded time;
//! and every object written (data, staging, specs, journals, copies made
//! by the commit) carries the configured server-side encryption.

use crate::s3::{import_fixture, prefix, snapshot};
use crate::support::*;
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};

struct Proxy {
    child: Child,
    url: String,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    fn start(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("requests.jsonl");
        let python = std::env::var("CHAINBATCH_PYTHON")
            .expect("CHAINBATCH_PYTHON must name the test venv's python: scripts/test.sh sets it");
        let upstream = std::env::var("AWS_ENDPOINT_URL")
            .expect("AWS_ENDPOINT_URL must point at SeaweedFS: scripts/test.sh sets it");
        let mut child = Command::new(python)
            .arg(repo().join("scheduler/tests/cli/peers/s3_fault_proxy.py"))
            .args(["--upstream", &upstream, "--log"])
            .arg(&log)
            .args(args)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let port = line.trim().strip_prefix("PORT ").expect("proxy started");
        Self {
            url: format!("http://127.0.0.1:{port}"),
            child,
            log,
            _dir: dir,
        }
    }

    fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_and_the_output_is_exact() {
    let raw = prefix("raw-throttle");
    import_fixture(&raw);
    let p = Project::fixture();
    let clean = prefix("out-throttle-clean");
    let o = p.command_on(&["run"], &raw, &clean).output().unwrap();
    assert!(o.status.success());
    let expected = snapshot(&clean).await;

    for backend in ["local", "process"] {
        let proxy = Proxy::start(&["--fail-every", "4"]);
        let out = prefix(&format!("out-throttle-{backend}"));
        let o = p
            .command_on(&["run", "--backend", backend], &raw, &out)
            .env("AWS_ENDPOINT_URL", &proxy.url)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{backend}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let requests = proxy.requests();
        let injected = requests
            .iter()
            .filter(|r| r["injected"].is_number())
            .count();
        eprintln!(
            "{backend}: {} S3 requests, {injected} answered 503 SlowDown or 500 InternalError, output exact",
            requests.len()
        );
        assert!(injected >= 10, "{injected} faults injected");
        assert_eq!(snapshot(&out).await, expected, "{backend}");
    }
}

#[test]
fn an_s3_that_keeps_failing_fails_the_run_in_bounded_time() {
    let raw = prefix("raw-down");
    import_fixture(&raw);
    let proxy = Proxy::start(&["--fail-all"]);
    let p = Project::fixture();
    let started = std::time::Instant::now();
    let o = p
        .command_on(&["run"], &raw, &prefix("out-down"))
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .env("CHAINBATCH_S3_MAX_RETRIES", "3")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot reach bucket") && stderr.contains("chainbatch-test"),
        "{stderr}"
    );
    assert!(started.elapsed().as_secs() < 60, "bounded retries");
    assert!(proxy.requests().len() > 1, "the request was retried");
}

#[tokio::test]
async fn every_object_written_carries_the_configured_encryption() {
    let raw = prefix("raw-sse");
    import_fixture(&raw);
    let proxy = Proxy::start(&[]);
    let p = Project::fixture();
    let out = prefix("out-sse");
    // A crash after the tasks keeps staging, shuffle and specs; the rerun
    // recovers and commits, copying staged files into the table.
    let crashed = p
        .command_on(&["run"], &raw, &out)
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .env("AWS_SERVER_SIDE_ENCRYPTION", "AES256")
        .env("CHAINBATCH_CRASH_AT", "after_tasks")
        .output()
        .unwrap();
    assert!(!crashed.status.success());
    let o = p
        .command_on(&["run", "--backend", "process"], &raw, &out)
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .env("AWS_SERVER_SIDE_ENCRYPTION", "AES256")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let requests = proxy.requests();
    // Object creation: PUT (objects, copies, multipart parts) and the POST
    // that starts a multipart upload; parts inherit the upload's setting.
    let writes: Vec<&Value> = requests
        .iter()
        .filter(|r| {
            (r["method"] == "PUT" && !r["query"].as_str().unwrap().contains("partNumber"))
                || (r["method"] == "POST" && r["query"].as_str().unwrap().contains("uploads"))
        })
        .collect();
    let kinds = |needle: &str| {
        writes
            .iter()
            .filter(|r| r["path"].as_str().unwrap().contains(needle))
            .count()
    };
    assert!(kinds("/_chainbatch/staging/") > 0, "staging written");
    assert!(
        kinds("/_chainbatch/runs/") > 0,
        "specs and journals written"
    );
    assert!(writes.iter().any(|r| r["copy"] == true), "commit copies");
    let plain: Vec<&&Value> = writes.iter().filter(|r| r["sse"] != "AES256").collect();
    assert!(plain.is_empty(), "written without encryption: {plain:?}");
}

/// The journal of `run` below `out` as `chainbatch runs` shows it.
fn run_status(p: &Project, raw: &str, out: &str, run: &str) -> Value {
    let o = p
        .command_on(&["runs", "--format", "json"], raw, out)
        .output()
        .unwrap();
    let runs: Value = serde_json::from_slice(&o.stdout).unwrap();
    runs.as_array()
        .unwrap()
        .iter()
        .find(|r| r["run_id"] == run)
        .cloned()
        .unwrap_or_else(|| panic!("no run {run} in {runs}"))
}

/// Run `run` into a new prefix through a proxy that fails file moves
/// from the second on (`faults` says how many), with one S3 retry; it
/// must fail. Returns the prefix and the run's stderr.
fn run_cut(p: &Project, raw: &str, run: &str, faults: &[&str]) -> (String, String) {
    let mut args = vec!["--fail-copies-from", "2"];
    args.extend_from_slice(faults);
    let proxy = Proxy::start(&args);
    let out = prefix(&format!("out-{run}"));
    let o = p
        .command_on(&["run", "--run-id", run], raw, &out)
        .env("AWS_ENDPOINT_URL", &proxy.url)
        .env("CHAINBATCH_S3_MAX_RETRIES", "1")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    (out, stderr)
}

#[tokio::test]
async fn a_publish_cut_by_s3_errors_is_finished_by_the_run_or_by_the_next() {
    let raw = prefix("raw-cut");
    import_fixture(&raw);
    let p = Project::fixture();
    let clean = prefix("out-cut-clean");
    let o = p.command_on(&["run"], &raw, &clean).output().unwrap();
    assert!(o.status.success());
    let expected = snapshot(&clean).await;

    // The second file move fails twice (its try and its one retry), then S3
    // answers again: the failing run finishes the recorded publish itself
    // before it exits, and a resume runs the nodes left.
    let (out, stderr) = run_cut(&p, &raw, "cut-brief", &["--fail-copies", "2"]);
    assert!(
        stderr.contains("finished the interrupted publish of"),
        "{stderr}"
    );
    let j = run_status(&p, &raw, &out, "cut-brief");
    assert_eq!(j["status"], "failed", "{j}");
    assert!(
        j["commits"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["state"] == "published"),
        "{j}"
    );
    let o = p
        .command_on(&["run", "--resume", "cut-brief"], &raw, &out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(snapshot(&out).await, expected, "cut, finished, resumed");

    // S3 keeps failing the moves: the run cannot finish the publish, says
    // so, and leaves its journal `running`; the next run finishes it.
    let (out, stderr) = run_cut(&p, &raw, "cut-long", &[]);
    assert!(
        stderr.contains("stopped half-way") && stderr.contains("`chainbatch gc`"),
        "{stderr}"
    );
    assert_eq!(run_status(&p, &raw, &out, "cut-long")["status"], "running");
    let o = p.command_on(&["run"], &raw, &out).output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    assert!(
        stderr.contains("recovered run cut-long") && stderr.contains("finished its publish"),
        "{stderr}"
    );
    assert_eq!(snapshot(&out).await, expected, "cut, then recovered");
    let j = run_status(&p, &raw, &out, "cut-long");
    assert_eq!(j["status"], "failed", "{j}");
}
