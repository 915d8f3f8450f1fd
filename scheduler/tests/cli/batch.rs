//! `--backend batch` against moto server, the AWS Batch API peer started by
//! scripts/test.sh, with scheduler/tests/cli/peers/batch_peer.py in front of it playing the
//! compute environment: it runs the real executor binary for every child,
//! with the environment a Batch container gets, and injects faults. Data
//! lives on SeaweedFS. The output must equal the process backend's.

use crate::s3::{prefix, snapshot};
use crate::support::*;
use serde_json::{Value, json};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// batch_peer.py in front of the shared moto server, running children of
/// the executor binary.
fn start_peer(faults: Value) -> MotoPeer {
    let exe = executor_bin();
    MotoPeer::start(
        "batch_peer.py",
        &[
            "--entrypoint".as_ref(),
            exe.as_os_str(),
            "--slots".as_ref(),
            "2".as_ref(),
        ],
        &faults,
    )
}

/// A project whose `batchtest` environment points the batch backend at the
/// test queue and definition.
fn batch_project(extra_settings: &str) -> Project {
    let p = Project::fixture();
    let env = p.conf().join("batchtest");
    std::fs::create_dir_all(&env).unwrap();
    std::fs::write(
        env.join("globals.yml"),
        format!(
            "batch:\n  job_queue: chainbatch-test\n  job_definition: chainbatch-executor\n  \
             region: us-east-1\n  poll_seconds: 1\n  tags:\n    team: data\n{extra_settings}"
        ),
    )
    .unwrap();
    p
}

/// Generated input on S3: `files` files over two days.
fn raw_on_s3(name: &str, files_per_day: u32) -> String {
    let raw = prefix(name);
    let out = Command::new(bin())
        .args([
            "gen",
            "--rows",
            "3000",
            "--days",
            "2",
            "--start",
            "2024-03-01",
        ])
        .args(["--files-per-day", &files_per_day.to_string(), "--out"])
        .arg(format!("{raw}/transactions"))
        .args(["--tables", "transactions"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gen to S3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    raw
}

const BUCKETED: [&str; 4] = [
    "--globals",
    "layouts.daily.bucket_by={columns: [from_address], buckets: 4}",
    "--globals",
    "target_task_bytes=1",
];

fn batch_run(p: &Project, peer: &MotoPeer, raw: &str, out: &str, extra: &[&str]) -> Command {
    let mut args = vec!["run", "--env", "batchtest", "--backend", "batch"];
    args.extend_from_slice(&BUCKETED);
    args.extend_from_slice(extra);
    let mut c = p.command_on(&args, raw, out);
    c.env("AWS_ENDPOINT_URL_BATCH", &peer.url);
    c
}

fn reference(raw: &str) -> (String, Vec<Vec<Vec<String>>>) {
    let p = Project::fixture();
    let out = prefix("out-process");
    let mut args = vec!["run", "--backend", "process", "--parallelism", "2"];
    args.extend_from_slice(&BUCKETED);
    let o = p.command_on(&args, raw, &out).output().unwrap();
    assert!(
        o.status.success(),
        "process backend: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    let snap = rt.block_on(snapshot(&out));
    (out, snap)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn env_of(req: &Value) -> std::collections::BTreeMap<String, String> {
    req["containerOverrides"]["environment"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["name"].as_str().unwrap().to_string(),
                e["value"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The retry strategy every job is submitted with.
fn retry_strategy(attempts: u32) -> Value {
    json!({"attempts": attempts, "evaluateOnExit": [
        {"onStatusReason": "Host EC2*", "action": "RETRY"},
        {"onStatusReason": "Your Spot Task was interrupted*", "action": "RETRY"},
        {"onStatusReason": "Task failed to start", "action": "RETRY"},
        {"onExitCode": "4", "action": "RETRY"},
        {"onReason": "*", "action": "EXIT"},
    ]})
}

#[test]
fn batch_runs_eth_daily_with_the_exact_requests_and_the_process_backends_output() {
    // 102 input files, one map task each: more children than one
    // DescribeJobs call may name, and than one ListJobs page holds. The
    // first 8 polls are throttled (more than the SDK's own retries absorb),
    // then every 5th.
    let raw = raw_on_s3("raw-batch", 51);
    let (_, expected) = reference(&raw);

    let peer = start_peer(json!({
        "throttle": {"ops": ["DescribeJobs", "ListJobs"], "first": 8, "every": 5},
        "list_page": 40,
    }));
    let p = batch_project("");
    let out = prefix("out-batch");
    let o = batch_run(&p, &peer, &raw, &out, &["--run-id", "batch-e2e"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "batch run: {err}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(rt.block_on(snapshot(&out)), expected);

    // The definition is asked for by name and status, as the API documents
    // (`jobDefinitions` takes only name:revision or ARNs, alone), and every
    // job runs the revision that was checked.
    assert_eq!(
        peer.requests("DescribeJobDefinitions"),
        vec![json!({"jobDefinitionName": "chainbatch-executor", "status": "ACTIVE"})]
    );

    // Throttled polls backed off and polled again; nothing was terminated.
    let throttled = ["DescribeJobs", "ListJobs"]
        .iter()
        .flat_map(|op| peer.answered(op))
        .filter(|(_, status)| *status == 429)
        .count();
    assert!(throttled >= 8, "{throttled} polls throttled");
    assert!(err.contains("failed, polling again in"), "{err}");
    assert!(err.contains("TooManyRequestsException"), "{err}");
    assert!(peer.requests("TerminateJob").is_empty());

    // One job per stage: clean_transactions' shuffle map (102 tasks) and
    // reduce (4 buckets), then one per downstream node.
    let submits = peer.requests("SubmitJob");
    let sizes: Vec<Option<u64>> = submits
        .iter()
        .map(|s| s["arrayProperties"]["size"].as_u64())
        .collect();
    assert_eq!(sizes[..2], [Some(102), Some(4)], "{sizes:?}");
    assert_eq!(submits.len(), 4, "{sizes:?}");
    let runs = format!("{out}/_chainbatch/runs/batch-e2e");
    for (i, s) in submits.iter().enumerate() {
        assert_eq!(s["jobQueue"], "chainbatch-test");
        assert_eq!(s["jobDefinition"], "chainbatch-executor:1");
        assert!(
            s["jobName"]
                .as_str()
                .unwrap()
                .starts_with("chainbatch-batch-e2e-"),
            "{s}"
        );
        let cmd = &s["containerOverrides"]["command"];
        let spec_uri = cmd[2].as_str().unwrap();
        assert_eq!(
            (&cmd[0], &cmd[1]),
            (&json!("run"), &json!("--spec")),
            "{cmd}"
        );
        assert!(
            spec_uri.starts_with(&format!("{runs}/stage-")),
            "{spec_uri}"
        );
        let env = env_of(s);
        assert_eq!(env["CHAINBATCH_RUN_ID"], "batch-e2e");
        assert_eq!(env["CHAINBATCH_SPEC_URI"], spec_uri);
        assert_eq!(
            s["containerOverrides"]["resourceRequirements"],
            json!([{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "2048"}]),
            "small tasks get one vCPU, and Fargate's least memory for it"
        );
        assert_eq!(s["retryStrategy"], retry_strategy(3));
        assert_eq!(s["timeout"], json!({"attemptDurationSeconds": 3600}));
        assert_eq!(s["propagateTags"], true);
        assert_eq!(s["tags"]["team"], "data");
        assert_eq!(s["tags"]["chainbatch:run"], "batch-e2e");
        // The reduce waits for the whole map job; the first job of a node
        // waits for nothing (the node before it has committed).
        if i == 1 {
            assert!(
                s["dependsOn"].as_array().is_some_and(|d| d.len() == 1
                    && d[0].get("type").is_none()
                    && d[0]["jobId"].is_string()),
                "{s}"
            );
        } else {
            assert!(s.get("dependsOn").is_none(), "{s}");
        }
    }
    // Arrays are followed through the parent's statusSummary and ListJobs
    // of what finished (paginated); DescribeJobs names at most 100 ids and
    // each child once, when it has finished, not every child every poll.
    let children: u64 = sizes.iter().flatten().sum();
    let lists = peer.requests("ListJobs");
    assert!(
        lists.iter().any(|l| l["arrayJobId"].is_string()
            && l["jobStatus"] == "SUCCEEDED"
            && l.get("jobQueue").is_none()),
        "{lists:?}"
    );
    assert!(
        lists.iter().any(|l| l["nextToken"].is_string()),
        "102 children take more than one page of 40: {lists:?}"
    );
    let mut described: std::collections::BTreeMap<String, usize> = Default::default();
    for (d, status) in peer.answered("DescribeJobs") {
        let ids = d["jobs"].as_array().unwrap();
        assert!(ids.len() <= 100, "{}", ids.len());
        if status == 200 {
            for id in ids
                .iter()
                .filter_map(|i| i.as_str())
                .filter(|i| i.contains(':'))
            {
                *described.entry(id.to_string()).or_default() += 1;
            }
        }
    }
    assert_eq!(
        described.len() as u64,
        children,
        "every child described: {sizes:?}"
    );
    assert!(
        described.values().all(|&n| n == 1),
        "a child was described more than once: {described:?}"
    );
}

#[test]
fn batch_retries_lost_hosts_and_retryable_exits_and_reduce_reads_the_retried_map() {
    let raw = raw_on_s3("raw-batch-retry", 2);
    let (_, expected) = reference(&raw);
    // Fargate start failures as Batch reports them: the attempt's status
    // reason `Task failed to start`, the container's reason saying why.
    let peer = start_peer(json!({"rules": [
        {"job": "clean_transactions-s0", "index": 0, "attempt": 1,
         "status_reason": "Host EC2 (instance i-0123456789abcdef0) terminated."},
        {"job": "clean_transactions-s0", "index": 1, "attempt": 1,
         "start_failure": "CannotPullContainerError: pull image manifest has been retried 5 time(s): \
                           failed to resolve ref: i/o timeout"},
        {"job": "clean_transactions-s0", "index": 2, "attempt": 1, "exit_code": 4},
        {"job": "clean_transactions-s1", "index": 0, "attempt": 1,
         "start_failure": "ResourceInitializationError: unable to pull secrets or registry auth: \
                           execution resource retrieval failed"},
        {"job": "clean_transactions-s1", "index": 1, "attempt": 1,
         "status_reason": "Your Spot Task was interrupted."},
    ]}));
    let p = batch_project("");
    let out = prefix("out-batch-retry");
    let o = batch_run(&p, &peer, &raw, &out, &[]).output().unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "batch run: {err}");
    for said in [
        "task 0 attempt 1 failed, Batch retried it: Host EC2",
        "task 1 attempt 1 failed, Batch retried it: Task failed to start; CannotPullContainerError:",
        "task 2 attempt 1 failed, Batch retried it: Essential container in task exited; exit code 4",
        "task 0 attempt 1 failed, Batch retried it: Task failed to start; ResourceInitializationError:",
        "task 1 attempt 1 failed, Batch retried it: Your Spot Task was interrupted.",
    ] {
        assert!(err.contains(said), "{said}: {err}");
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(rt.block_on(snapshot(&out)), expected);

    // The executor's --help names exactly what the retry strategy retries.
    let help = Command::new(executor_bin()).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout).replace(['\n', ' '], "");
    for rule in retry_strategy(3)["evaluateOnExit"].as_array().unwrap() {
        if rule["action"] == "RETRY" {
            let on = rule
                .get("onStatusReason")
                .or(rule.get("onExitCode"))
                .unwrap()
                .as_str()
                .unwrap()
                .trim_end_matches('*')
                .replace(' ', "");
            assert!(help.contains(&on), "--help does not name {on}");
        }
    }
}

#[test]
fn batch_failures_name_the_task_terminate_every_job_and_publish_nothing() {
    let raw = raw_on_s3("raw-batch-fail", 2);
    let p = batch_project("");

    // A bad spec (exit 3) is not retried; the rest of the array succeeds.
    let peer = start_peer(json!({"rules": [
        {"job": "clean_transactions-s0", "index": 1, "exit_code": 3},
    ]}));
    let out = prefix("out-batch-fail");
    let o = batch_run(&p, &peer, &raw, &out, &[]).output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("task 1 failed after 1 attempt(s)") && err.contains("exit code 3"),
        "{err}"
    );
    assert_eq!(
        peer.requests("SubmitJob").len(),
        2,
        "map and reduce were submitted together"
    );
    let terminated = peer.requests("TerminateJob");
    assert_eq!(terminated.len(), 2, "{terminated:?}");
    assert!(terminated[0]["reason"].as_str().unwrap().contains("task 1"));
    assert!(!out_has_data(&out), "nothing published");

    // A retryable exit on every attempt exhausts --max-attempts.
    let peer = start_peer(json!({"rules": [
        {"job": "clean_transactions-s0", "index": 0, "attempt": "*", "exit_code": 4},
    ]}));
    let out = prefix("out-batch-exhausted");
    let o = batch_run(&p, &peer, &raw, &out, &["--max-attempts", "2"])
        .output()
        .unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("task 0 failed after 2 attempt(s)"), "{err}");
    assert_eq!(
        peer.requests("SubmitJob")[0]["retryStrategy"]["attempts"],
        2
    );
    assert!(!out_has_data(&out));
}

/// Whether any data file was published below `out` (not `_chainbatch/`).
fn out_has_data(out: &str) -> bool {
    crate::s3::list_keys(out)
        .iter()
        .any(|k| !k.contains("_chainbatch/"))
}

#[test]
fn interrupting_a_batch_run_terminates_every_submitted_job() {
    let raw = raw_on_s3("raw-batch-int", 1);
    let peer = start_peer(json!({"rules": [{"job": "chainbatch-", "hold": true}]}));
    let p = batch_project("");
    let out = prefix("out-batch-int");
    let child = batch_run(&p, &peer, &raw, &out, &[])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while peer.requests("DescribeJobs").is_empty() {
        assert!(Instant::now() < deadline, "no job was ever polled");
        std::thread::sleep(Duration::from_millis(100));
    }
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(err.contains("interrupted by Ctrl-C"), "{err}");
    let submitted = peer.requests("SubmitJob").len();
    let terminated = peer.requests("TerminateJob");
    assert_eq!(terminated.len(), submitted, "{terminated:?}");
    assert!(submitted >= 1);
    assert!(!out_has_data(&out));
}

#[test]
fn batch_settings_are_checked_before_anything_is_submitted() {
    let raw = prefix("raw-batch-none");
    let out = prefix("out-batch-none");
    let peer = start_peer(json!({}));
    let cases: [(&str, &[&str], i32, &str); 8] = [
        (
            "  image_tag: v9\n",
            &[],
            1,
            "batch.image_tag: job definition `chainbatch-executor:1` runs image `chainbatch-executor:test`, not tag `v9`",
        ),
        (
            "  image_tag: v9\n",
            &["--globals", "batch.job_definition=chainbatch-executor:1"],
            1,
            "batch.image_tag: job definition `chainbatch-executor:1` runs image",
        ),
        (
            "",
            &["--globals", "batch.job_definition=chainbatch-executor:9"],
            1,
            "batch.job_definition: no active job definition `chainbatch-executor:9`",
        ),
        (
            "",
            &[
                "--globals",
                "batch.job_definition=chainbatch-executor:latest",
            ],
            2,
            "batch.job_definition",
        ),
        (
            "  platform: ec2\n",
            &["--globals", "batch.vcpus=1.5"],
            2,
            "EC2 jobs take whole vCPUs",
        ),
        (
            "",
            &["--globals", "batch.job_queue=nope"],
            1,
            "batch.job_queue: job queue `nope` does not exist",
        ),
        ("", &["--globals", "batch.vcpus=0"], 2, "batch.vcpus"),
        (
            "",
            &[],
            2,
            "out_root: is `data/out`; --backend batch needs it on s3://",
        ),
    ];
    for (settings, extra, code, message) in cases {
        let p = batch_project(settings);
        let out = if message.starts_with("out_root") {
            "data/out"
        } else {
            &out
        };
        let o = batch_run(&p, &peer, &raw, out, extra).output().unwrap();
        let err = stderr(&o);
        assert_eq!(o.status.code(), Some(code), "{extra:?}: {err}");
        assert!(err.contains(message), "{extra:?}: {err}");
    }
    assert!(peer.requests("SubmitJob").is_empty());
    // Without a batch section at all.
    let p = Project::fixture();
    let mut args = vec!["run", "--backend", "batch"];
    args.extend_from_slice(&BUCKETED);
    let o = p.command_on(&args, &raw, &out).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        stderr(&o).contains("batch: is required in globals.yml"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn ec2_jobs_ask_for_whole_vcpus_and_unrounded_memory() {
    let raw = raw_on_s3("raw-batch-ec2", 1);
    let (_, expected) = reference(&raw);
    let p = batch_project("  platform: ec2\n  vcpus: 2\n  memory_mib: 3000\n");

    // The EC2 definition takes 1 vCPU and 3000 MiB as asked.
    let peer = start_peer(json!({}));
    let out = prefix("out-batch-ec2");
    let ec2 = ["--globals", "batch.job_definition=chainbatch-executor-ec2"];
    let o = batch_run(&p, &peer, &raw, &out, &ec2).output().unwrap();
    assert!(o.status.success(), "batch run: {}", stderr(&o));
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(rt.block_on(snapshot(&out)), expected);
    for s in peer.requests("SubmitJob") {
        assert_eq!(s["jobDefinition"], "chainbatch-executor-ec2:1");
        assert_eq!(
            s["containerOverrides"]["resourceRequirements"],
            json!([{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "3000"}]),
            "{s}"
        );
    }

    // A Fargate definition does not take that size: Batch rejects it (as
    // AWS does), and the run stops.
    let peer = start_peer(json!({}));
    let out = prefix("out-batch-ec2-on-fargate");
    let o = batch_run(&p, &peer, &raw, &out, &[]).output().unwrap();
    let err = stderr(&o);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        err.contains("Fargate resource requirements are not supported: VCPU 1, MEMORY 3000"),
        "{err}"
    );
    assert!(!out_has_data(&out));
}

#[test]
fn without_list_jobs_permission_polls_describe_the_unfinished_children() {
    let raw = raw_on_s3("raw-batch-nolist", 1);
    let (_, expected) = reference(&raw);
    let peer = start_peer(json!({"deny": ["ListJobs"]}));
    let p = batch_project("");
    let out = prefix("out-batch-nolist");
    let o = batch_run(&p, &peer, &raw, &out, &[]).output().unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "batch run: {err}");
    assert!(err.contains("batch:ListJobs is not allowed"), "{err}");
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(rt.block_on(snapshot(&out)), expected);
    assert_eq!(peer.requests("ListJobs").len(), 1, "only the preflight's");
}

#[test]
fn a_distributed_node_on_batch_runs_on_an_executor_array_job_that_joins_the_driver() {
    // Transactions and token transfers on S3, joined by a distributed node.
    let raw = prefix("raw-batch-ballista");
    gen_transfers(&raw, 4000, 2);

    let peer = start_peer(json!({}));
    // Executor containers share this host: any free ports.
    let p = batch_project(
        "  ballista:\n    executors: 2\n    vcpus: 1\n    memory_mib: 2048\n    \
         scheduler_host: 127.0.0.1\n    scheduler_port: 0\n    flight_port: 0\n    \
         grpc_port: 0\n    register_timeout_seconds: 120\n",
    );
    crate::distributed::add_join_pipeline(&p);
    let out = prefix("out-batch-ballista");
    let o = p
        .command_on(
            &[
                "run",
                "--env",
                "batchtest",
                "--backend",
                "batch",
                "--pipeline",
                "tx_token_join",
                "--run-id",
                "batch-ballista",
            ],
            &raw,
            &out,
        )
        .env("AWS_ENDPOINT_URL_BATCH", &peer.url)
        .output()
        .unwrap();
    let err = stderr(&o);
    assert!(o.status.success(), "batch run: {err}");
    assert!(err.contains("Ballista executor(s) of 1 vCPU"), "{err}");

    // One job: the executors, an array of 2 running `chainbatch-executor
    // ballista` with the scheduler's address; terminated once the node ran.
    let submits = peer.requests("SubmitJob");
    assert_eq!(submits.len(), 1, "{submits:?}");
    let s = &submits[0];
    assert_eq!(s["containerOverrides"]["command"], json!(["ballista"]));
    assert_eq!(s["arrayProperties"]["size"], 2);
    assert_eq!(
        s["containerOverrides"]["resourceRequirements"],
        json!([{"type": "VCPU", "value": "1"}, {"type": "MEMORY", "value": "2048"}])
    );
    let env = env_of(s);
    assert!(
        env["CHAINBATCH_BALLISTA_SCHEDULER"].starts_with("127.0.0.1:"),
        "{env:?}"
    );
    assert_eq!(env["CHAINBATCH_BALLISTA_VCORES"], "1");
    assert_eq!(env["CHAINBATCH_NODE"], "transfers_with_fees");
    assert_eq!(s["retryStrategy"], retry_strategy(3));
    assert!(
        s["jobName"]
            .as_str()
            .unwrap()
            .contains("transfers_with_fees-executors"),
        "{s}"
    );
    let terminated = peer.requests("TerminateJob");
    assert_eq!(terminated.len(), 1, "{terminated:?}");

    // The output is the local backend's, row for row.
    let local = tempfile::tempdir().unwrap();
    let o = p
        .command_on(
            &["run", "--pipeline", "tx_token_join"],
            &raw,
            &local.path().display().to_string(),
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    let got = tempfile::tempdir().unwrap();
    crate::s3::download(&format!("{out}/transfers_with_fees"), got.path());
    use crate::distributed::{JOIN_COLUMNS, output_rows};
    let batch_rows = output_rows(got.path(), JOIN_COLUMNS);
    let local_rows = output_rows(&local.path().join("transfers_with_fees"), JOIN_COLUMNS);
    assert!(local_rows.len() > 100, "{} rows", local_rows.len());
    assert_eq!(batch_rows, local_rows);
}
