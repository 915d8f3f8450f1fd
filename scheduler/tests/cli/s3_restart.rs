//! The S3 server dies mid-run: the run fails with a clear error that says
//! how to resume, keeps the tasks that finished, and `chainbatch run
//! --resume RUN_ID` finishes it after the server is back, reusing those
//! tasks, with exactly the rows of a clean run. The test runs its own
//! SeaweedFS (from the test venv), since it restarts it.

use crate::support::*;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn venv_bin(name: &str) -> PathBuf {
    let python = std::env::var("CHAINBATCH_PYTHON")
        .expect("CHAINBATCH_PYTHON must name the test venv's python: scripts/test.sh sets it");
    Path::new(&python).with_file_name(name)
}

/// A port free on 127.0.0.1 whose gRPC twin (port + 10000) is free too.
fn free_port_pair(taken: &[u16]) -> u16 {
    loop {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let p = l.local_addr().unwrap().port();
        if p < 55_000
            && !taken.contains(&p)
            && std::net::TcpListener::bind(("127.0.0.1", p + 10_000)).is_ok()
        {
            return p;
        }
    }
}

struct Weed {
    dir: PathBuf,
    ports: [u16; 4],
    child: Option<Child>,
}

impl Weed {
    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.ports[3])
    }

    fn start(&mut self) {
        let [master, volume, filer, s3] = self.ports;
        std::fs::create_dir_all(self.dir.join("data")).unwrap();
        let log = std::fs::File::create(self.dir.join("weed.log")).unwrap();
        let child = Command::new(venv_bin("weed"))
            .args([
                "server",
                "-ip=127.0.0.1",
                "-ip.bind=127.0.0.1",
                "-volume.max=0",
            ])
            .arg(format!("-dir={}", self.dir.join("data").display()))
            .arg(format!("-master.port={master}"))
            .arg(format!("-volume.port={volume}"))
            .arg(format!("-filer.port={filer}"))
            .args(["-s3", &format!("-s3.port={s3}")])
            .arg(format!("-s3.config={}", self.dir.join("s3.json").display()))
            .args([
                "-s3.port.iceberg=0",
                "-s3.port.lance=0",
                "-master.telemetry=false",
            ])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        // Ready when a signed S3 call succeeds, not when the port opens.
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            let probe = Command::new(venv_bin("python"))
                .args([
                    "-c",
                    "import boto3, os, sys\n\
                     s3 = boto3.client('s3', endpoint_url=sys.argv[1])\n\
                     names = [b['Name'] for b in s3.list_buckets()['Buckets']]\n\
                     'restart' in names or s3.create_bucket(Bucket='restart')\n\
                     s3.put_object(Bucket='restart', Key='_ready', Body=b'ok')",
                    &self.endpoint(),
                ])
                .output()
                .unwrap();
            if probe.status.success() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "SeaweedFS did not come up: {}\n{}",
                String::from_utf8_lossy(&probe.stderr),
                std::fs::read_to_string(self.dir.join("weed.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Weed {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Downloads `prefix` of the private server into `to` (boto3).
fn download(endpoint: &str, prefix: &str, to: &Path) {
    let ok = Command::new(venv_bin("python"))
        .args([
            "-c",
            "import boto3, os, sys\n\
             s3 = boto3.client('s3', endpoint_url=sys.argv[1])\n\
             for page in s3.get_paginator('list_objects_v2').paginate(Bucket='restart', Prefix=sys.argv[2]):\n\
             \x20   for o in page.get('Contents', []):\n\
             \x20       path = os.path.join(sys.argv[3], o['Key'][len(sys.argv[2]):].lstrip('/'))\n\
             \x20       os.makedirs(os.path.dirname(path), exist_ok=True)\n\
             \x20       s3.download_file('restart', o['Key'], path)",
            endpoint,
            prefix,
        ])
        .arg(to)
        .status()
        .unwrap()
        .success();
    assert!(ok, "download {prefix}");
}

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
    let tmp = tempfile::tempdir().unwrap();
    let mut ports = [0u16; 4];
    for i in 0..4 {
        ports[i] = free_port_pair(&ports[..i]);
    }
    let key = std::env::var("AWS_ACCESS_KEY_ID").expect("scripts/test.sh sets S3 credentials");
    let secret = std::env::var("AWS_SECRET_ACCESS_KEY").unwrap();
    std::fs::write(
        tmp.path().join("s3.json"),
        format!(
            r#"{{"identities": [{{"name": "t", "credentials": [{{"accessKey": "{key}", "secretKey": "{secret}"}}], "actions": ["Admin", "Read", "Write", "List", "Tagging"]}}]}}"#
        ),
    )
    .unwrap();
    let mut weed = Weed {
        dir: tmp.path().to_path_buf(),
        ports,
        child: None,
    };
    weed.start();
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
