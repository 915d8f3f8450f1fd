//! The S3 server dies mid-run: the run fails with a clear error that says
//! how to resume, keeps the tasks that finished, and `chainbatch run
//! --resume RUN_ID` finishes it after the server is back, reusing those
//! tasks, with exactly the rows of a clean run. The test runs its own
//! SeaweedFS (from the test venv), since it restarts it.

use crate::support::*;
use crate::weed::{Weed, download};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};

async fn snapshot(dir: &Path) -> Vec<Vec<Vec<String>>> {
    let mut out = vec![];
    for ds in ["clean_transactions", "daily_address_stats", "daily_summary"] {
        out.push(rows_as_text(
            &query_dir(&dir.join(ds), "SELECT * FROM t ORDER BY 1, 2, 3").await,
        ));
    }
    out
}

#[tokio::test]
async fn seaweedfs_restart_mid_run_then_resume_gives_exact_output() {
    let mut weed = Weed::start_new();
    let tmp = tempfile::tempdir().unwrap();
    let endpoint = weed.endpoint();
    let cmd = |p: &Project, args: &[&str], out: &str| {
        let mut c = p.command_on(args, "s3://restart/raw", out);
        c.env("AWS_ENDPOINT_URL", &endpoint)
            .env("CHAINBATCH_S3_MAX_RETRIES", "1")
            .env("CHAINBATCH_S3_RETRY_TIMEOUT_SECS", "5");
        c
    };
    let generated = Command::new(bin())
        .args([
            "gen",
            "--rows",
            "30000",
            "--days",
            "3",
            "--files-per-day",
            "10",
        ])
        .args(["--start", "2024-03-01", "--tables", "transactions"])
        .args(["--out", "s3://restart/raw/transactions"])
        .env("AWS_ENDPOINT_URL", &endpoint)
        .output()
        .unwrap();
    assert!(
        generated.status.success(),
        "{}",
        String::from_utf8_lossy(&generated.stderr)
    );
    let p = Project::fixture();
    let one_task_per_file = ["--globals", "target_task_bytes=1"];
    let mut args = vec!["run", "--backend", "process", "--parallelism", "1"];
    args.extend_from_slice(&one_task_per_file);
    let clean = cmd(&p, &args, "s3://restart/clean").output().unwrap();
    assert!(
        clean.status.success(),
        "{}",
        String::from_utf8_lossy(&clean.stderr)
    );

    // The run whose server dies after a few tasks.
    let mut run_args = args.clone();
    run_args.extend_from_slice(&["--run-id", "restart-run", "--max-attempts", "2"]);
    let mut child = cmd(&p, &run_args, "s3://restart/out")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        assert!(
            stderr.read_line(&mut line).unwrap() > 0,
            "run ended early: {seen}"
        );
        seen.push_str(&line);
        if line.contains("4/30 tasks") {
            break;
        }
    }
    weed.kill();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    seen.push_str(&rest);
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1), "{seen}");
    assert!(
        seen.contains("chainbatch run --resume restart-run"),
        "says how to resume: {seen}"
    );

    weed.start();
    let mut resume_args = vec!["run", "--resume", "restart-run", "--backend", "process"];
    resume_args.extend_from_slice(&one_task_per_file);
    let resumed = cmd(&p, &resume_args, "s3://restart/out").output().unwrap();
    let err = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{err}");
    let reused: usize = err
        .lines()
        .filter_map(|l| l.split("reusing ").nth(1))
        .filter_map(|r| r.split(' ').next()?.parse::<usize>().ok())
        .sum();
    assert!(reused >= 4, "finished tasks are reused: {err}");
    eprintln!("server killed after 4 of 30 tasks; the resume reused {reused} task(s)");

    let (a, b) = (tmp.path().join("clean-copy"), tmp.path().join("out-copy"));
    download(&endpoint, "clean", &a);
    download(&endpoint, "out", &b);
    let expected = snapshot(&a).await;
    assert_eq!(expected[0].len(), 30_000);
    assert_eq!(snapshot(&b).await, expected);
    // A resumed run cannot be resumed again.
    let again = cmd(&p, &resume_args, "s3://restart/out").output().unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("succeeded; there is nothing to resume")
    );
}
