//! `chainbatch export step-functions` and the `chainbatch step` commands its
//! state machine runs. The machine is checked as ASL (every transition
//! lands, branches and iterators are well formed, every state is
//! reachable), created in moto's Step Functions, and executed there end to
//! end: a moto server of its own runs the machine and sends its Batch and
//! S3 calls to batch_peer.py, which runs `chainbatch step ...` for the
//! driver's jobs and the executor for the stages' jobs, on SeaweedFS. The
//! steps are also driven one by one, as a state machine would, to show
//! what a retried step does. Outputs must equal the process backend's.

use crate::s3::{import_fixture, prefix, snapshot};
use crate::support::*;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::process::{Command, Output};

/// The `batchtest` environment: the test queue, the executor's and the
/// driver's job definitions.
fn stepped_project() -> Project {
    let p = Project::fixture();
    let env = p.conf().join("batchtest");
    std::fs::create_dir_all(&env).unwrap();
    std::fs::write(
        env.join("globals.yml"),
        "batch:\n  job_queue: chainbatch-test\n  job_definition: chainbatch-executor\n  \
         region: us-east-1\n  poll_seconds: 1\n\
         step_functions:\n  driver_job_queue: chainbatch-test\n  \
         driver_job_definition: chainbatch-driver\n",
    )
    .unwrap();
    p
}

fn text(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned() + &String::from_utf8_lossy(&o.stdout)
}

fn export(p: &Project, raw: &str, out: &str) -> Value {
    let o = p
        .command_on(
            &["export", "step-functions", "--env", "batchtest"],
            raw,
            out,
        )
        .output()
        .unwrap();
    assert!(o.status.success(), "export: {}", text(&o));
    serde_json::from_slice(&o.stdout).expect("the export is JSON")
}

/// Checks a state machine (or a branch, or an iterator) as ASL: where it
/// starts exists, every transition lands on a state of the same machine,
/// every state is reachable and either moves on or ends. Returns the
/// state names.
fn check_asl(machine: &Value, at: &str) -> BTreeSet<String> {
    let states = machine["States"]
        .as_object()
        .unwrap_or_else(|| panic!("{at}: no States"));
    let start = machine["StartAt"].as_str().expect("StartAt");
    assert!(states.contains_key(start), "{at}: StartAt {start} missing");
    let mut reachable = BTreeSet::from([start.to_string()]);
    let mut todo = vec![start.to_string()];
    while let Some(name) = todo.pop() {
        let s = &states[&name];
        let kind = s["Type"].as_str().unwrap_or_else(|| panic!("{name}: Type"));
        let mut next: Vec<&str> = vec![];
        if let Some(n) = s["Next"].as_str() {
            next.push(n);
        }
        for c in s["Catch"].as_array().into_iter().flatten() {
            next.push(c["Next"].as_str().expect("a Catch has Next"));
        }
        match kind {
            "Choice" => {
                for c in s["Choices"].as_array().expect("Choices") {
                    next.push(c["Next"].as_str().expect("a choice has Next"));
                }
                next.push(s["Default"].as_str().expect("a Default"));
            }
            "Succeed" | "Fail" => assert!(s.get("Next").is_none(), "{name}: terminal"),
            "Task" | "Map" | "Parallel" | "Pass" | "Wait" => assert!(
                s.get("Next").is_some() != (s["End"] == json!(true)),
                "{at}/{name}: exactly one of Next and End"
            ),
            other => panic!("{name}: unknown Type {other}"),
        }
        if kind == "Map" {
            check_asl(&s["Iterator"], &format!("{at}/{name}"));
        }
        if kind == "Parallel" {
            for (i, b) in s["Branches"]
                .as_array()
                .expect("Branches")
                .iter()
                .enumerate()
            {
                check_asl(b, &format!("{at}/{name}[{i}]"));
            }
        }
        for n in next {
            assert!(states.contains_key(n), "{at}/{name}: Next {n} missing");
            if reachable.insert(n.to_string()) {
                todo.push(n.to_string());
            }
        }
    }
    let all: BTreeSet<String> = states.keys().cloned().collect();
    assert_eq!(reachable, all, "{at}: unreachable states");
    all
}

#[test]
fn the_exported_state_machine_is_valid_asl_with_parallel_independent_nodes() {
    let p = stepped_project();
    let asl = export(
        &p,
        "s3://chainbatch-test/raw",
        "s3://chainbatch-test/sfn-out",
    );
    let states = check_asl(&asl, "machine");
    // clean_transactions first; the two nodes that read it side by side.
    assert_eq!(
        asl["States"]["Begin run"]["Next"],
        "Plan clean_transactions"
    );
    assert_eq!(
        asl["States"]["Commit clean_transactions"]["Next"],
        "Nodes, level 2"
    );
    let level = &asl["States"]["Nodes, level 2"];
    assert_eq!(level["Type"], "Parallel");
    let starts: BTreeSet<&str> = level["Branches"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["StartAt"].as_str().unwrap())
        .collect();
    assert_eq!(
        starts,
        BTreeSet::from(["Plan daily_address_stats", "Plan daily_summary"])
    );
    assert!(states.contains("Record failure") && states.contains("Run failed"));
    // Every driver step is a Batch job of the driver's definition, its
    // command naming the execution as the run.
    let plan = &asl["States"]["Plan clean_transactions"]["Parameters"];
    assert_eq!(plan["JobDefinition"], "chainbatch-driver");
    let command = plan["ContainerOverrides"]["Command.$"].as_str().unwrap();
    assert!(
        command.starts_with(
            "States.Array('step', 'plan', '--run-id', $$.Execution.Name, '--node', \
             'clean_transactions', '--env', 'batchtest'"
        ),
        "{command}"
    );
    // Stages come from the plan document; one task is not an array.
    let iterator = &asl["States"]["Stages of clean_transactions"]["Iterator"]["States"];
    assert_eq!(
        iterator["Array job"]["Parameters"]["ArrayProperties"]["Size.$"],
        "$.array_size"
    );
    assert!(
        iterator["Single job"]["Parameters"]
            .get("ArrayProperties")
            .is_none()
    );
    assert_eq!(
        asl["States"]["Read plan clean_transactions"]["Parameters"]["Key.$"],
        "States.Format('sfn-out/_chainbatch/runs/{}/steps/clean_transactions.json', $$.Execution.Name)"
    );
    // moto's Step Functions takes it.
    let created = python(&format!(
        r#"
import boto3, json, os
sfn = boto3.client("stepfunctions", endpoint_url=os.environ["CHAINBATCH_MOTO_URL"], region_name="us-east-1")
arn = sfn.create_state_machine(name="chainbatch-asl-check", definition=json.dumps({asl}),
                               roleArn="arn:aws:iam::123456789012:role/chainbatch-sfn")["stateMachineArn"]
print(sfn.describe_state_machine(stateMachineArn=arn)["status"])
sfn.delete_state_machine(stateMachineArn=arn)
"#,
        asl = serde_json::to_string(&asl.to_string()).unwrap()
    ));
    assert_eq!(created.trim(), "ACTIVE");
}

/// Runs a Python snippet in the test venv; its stdout.
fn python(code: &str) -> String {
    let o = Command::new(python_bin())
        .args(["-c", code])
        .output()
        .unwrap();
    assert!(o.status.success(), "python: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn python_bin() -> String {
    std::env::var("CHAINBATCH_PYTHON")
        .expect("CHAINBATCH_PYTHON must name the test venv's python: scripts/test.sh sets it")
}

/// `chainbatch step ARGS` of run `run_id` in the `batchtest` environment.
fn run_step(p: &Project, raw: &str, out: &str, run_id: &str, args: &[&str]) -> Output {
    let mut a = vec!["step"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["--env", "batchtest", "--run-id", run_id]);
    p.command_on(&a, raw, out).output().unwrap()
}

/// The process backend's output of eth_daily over `raw`.
fn reference(raw: &str) -> Vec<Vec<Vec<String>>> {
    let p = Project::fixture();
    let out = prefix("sfn-reference");
    let o = p
        .command_on(&["run", "--backend", "process"], raw, &out)
        .output()
        .unwrap();
    assert!(o.status.success(), "process backend: {}", text(&o));
    tokio::runtime::Runtime::new()
        .unwrap()
        .block_on(snapshot(&out))
}

#[test]
fn steps_driven_one_by_one_commit_the_process_backends_output_and_a_retried_step_does_nothing_twice()
 {
    let raw = prefix("sfn-raw-steps");
    import_fixture(&raw);
    let expected = reference(&raw);
    let p = stepped_project();
    let out = prefix("sfn-out-steps");
    let step = |args: &[&str]| run_step(&p, &raw, &out, "stepped-1", args);
    let ok = |o: Output, what: &str| {
        assert!(o.status.success(), "{what}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    ok(step(&["begin", "--dates", "2023-05-02"]), "begin");
    // A retried begin keeps the run.
    ok(step(&["begin", "--dates", "2023-05-02"]), "begin again");
    for node in ["clean_transactions", "daily_address_stats", "daily_summary"] {
        let doc: Value = serde_json::from_str(&ok(step(&["plan", "--node", node]), node)).unwrap();
        // Planned again (the step retried): the same document.
        let again: Value =
            serde_json::from_str(&ok(step(&["plan", "--node", node]), node)).unwrap();
        assert_eq!(doc, again, "{node}: a retried plan step plans nothing new");
        // Committing before the stages ran finds no manifests.
        if node == "clean_transactions" {
            let early = step(&["commit", "--node", node]);
            assert_eq!(early.status.code(), Some(1), "{}", text(&early));
            assert!(
                text(&early).contains("have no finished attempt"),
                "{}",
                text(&early)
            );
        }
        // Each stage as Batch runs it: every child gets the command and
        // environment of the document's job, and its array index.
        for stage in doc["stages"].as_array().unwrap() {
            let size = stage["array_size"].as_u64().unwrap();
            let overrides = &stage["container_overrides"];
            let command: Vec<&str> = overrides["Command"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c.as_str().unwrap())
                .collect();
            for index in 0..size {
                let mut c = Command::new(executor_bin());
                c.args(&command);
                for e in overrides["Environment"].as_array().unwrap() {
                    c.env(e["Name"].as_str().unwrap(), e["Value"].as_str().unwrap());
                }
                if size > 1 {
                    c.env("AWS_BATCH_JOB_ARRAY_INDEX", index.to_string());
                }
                let o = c.output().unwrap();
                assert!(o.status.success(), "{node} task {index}: {}", text(&o));
            }
            assert_eq!(
                stage["retry_strategy"]["EvaluateOnExit"][3],
                json!({"OnExitCode": "4", "Action": "RETRY"})
            );
        }
        ok(step(&["commit", "--node", node]), "commit");
        // A retried commit publishes nothing twice.
        ok(step(&["commit", "--node", node]), "commit again");
    }
    ok(step(&["finish"]), "finish");
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(rt.block_on(snapshot(&out)), expected);
    let runs = p
        .command_on(&["runs", "--format", "json"], &raw, &out)
        .output()
        .unwrap();
    let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
    let run = &runs.as_array().unwrap()[0];
    assert_eq!(
        (
            run["run_id"].as_str(),
            run["status"].as_str(),
            run["backend"].as_str()
        ),
        (Some("stepped-1"), Some("succeeded"), Some("step-functions"))
    );
    assert_eq!(run["commits"].as_array().unwrap().len(), 3);
    // The run's leases are gone: a run over the same dates starts at once.
    let next = p
        .command_on(&["run", "--dates", "2023-05-02"], &raw, &out)
        .output()
        .unwrap();
    assert!(next.status.success(), "{}", text(&next));
}

#[test]
fn a_failed_step_is_recorded_and_the_run_resumes_with_the_driver() {
    let raw = prefix("sfn-raw-fail");
    import_fixture(&raw);
    let p = stepped_project();
    let out = prefix("sfn-out-fail");
    let step = |args: &[&str]| run_step(&p, &raw, &out, "stepped-2", args);
    assert!(step(&["begin", "--dates", "2023-05-02"]).status.success());
    // The leases hold: another run over the same dates is refused.
    let other = p
        .command_on(&["run", "--dates", "2023-05-02"], &raw, &out)
        .output()
        .unwrap();
    assert_eq!(other.status.code(), Some(1));
    assert!(text(&other).contains("stepped-2"), "{}", text(&other));
    let unknown = step(&["plan", "--node", "no_such_node"]);
    assert_eq!(unknown.status.code(), Some(2), "{}", text(&unknown));
    // The first node is planned; its stage's Batch job fails, and the state
    // machine passes the error's name to the failure step.
    let planned = step(&["plan", "--node", "clean_transactions"]);
    assert!(planned.status.success(), "{}", text(&planned));
    let failed = step(&["finish", "--failed", "States.TaskFailed"]);
    assert!(failed.status.success(), "{}", text(&failed));
    // Recorded once: a second failure step changes nothing.
    let again = step(&["finish", "--failed", "States.Timeout"]);
    assert!(again.status.success(), "{}", text(&again));
    let runs = p
        .command_on(&["runs", "--format", "json"], &raw, &out)
        .output()
        .unwrap();
    let runs: Value = serde_json::from_slice(&runs.stdout).unwrap();
    let run = &runs.as_array().unwrap()[0];
    assert_eq!(run["status"], "failed");
    assert_eq!(
        run["error"],
        "States.TaskFailed; node `clean_transactions`: stage 0 task(s) 0 did not finish (the \
         Batch jobs' logs say why)"
    );
    assert_eq!(run["resumable"], true);
    // Steps after the end refuse; the driver resumes the run.
    let late = step(&["plan", "--node", "clean_transactions"]);
    assert_eq!(late.status.code(), Some(1), "{}", text(&late));
    let resumed = p
        .command_on(&["run", "--resume", "stepped-2"], &raw, &out)
        .output()
        .unwrap();
    assert!(resumed.status.success(), "{}", text(&resumed));
}

/// sfn_engine.py: a moto server of its own whose Step Functions engine
/// executes state machines and sends every service call to `peer_port`.
struct SfnServer {
    child: std::process::Child,
    url: String,
}

impl SfnServer {
    fn start(peer_port: u16) -> Self {
        use std::io::BufRead;
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut child = Command::new(python_bin())
            .arg(repo().join("scheduler/tests/cli/peers/sfn_engine.py"))
            .args(["--port", &port.to_string()])
            .env("MOTO_PORT", peer_port.to_string())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // moto says it starts a thread first; the peer says PORT when ready.
        let mut out = std::io::BufReader::new(child.stdout.take().unwrap());
        let mut said = String::new();
        loop {
            let mut line = String::new();
            let n = out.read_line(&mut line).unwrap();
            said.push_str(&line);
            assert!(n > 0, "sfn_engine.py did not start: {said:?}");
            if line.starts_with("PORT ") {
                break;
            }
        }
        Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }
}

impl Drop for SfnServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_state_machine_runs_end_to_end_on_moto_with_the_process_backends_output() {
    let raw = prefix("sfn-raw-e2e");
    import_fixture(&raw);
    let expected = reference(&raw);
    let p = stepped_project();
    let out = prefix("sfn-out-e2e");
    let asl = export(&p, &raw, &out);
    let exe = executor_bin();
    let driver = format!("chainbatch-driver={}", bin());
    let s3 = std::env::var("AWS_ENDPOINT_URL").expect("scripts/test.sh sets AWS_ENDPOINT_URL");
    // Driver steps find the project as the driver image does: by environment.
    let conf = format!("CHAINBATCH_CONF={}", p.conf().display());
    let peer = MotoPeer::start(
        "batch_peer.py",
        &[
            "--entrypoint".as_ref(),
            exe.as_os_str(),
            "--entrypoint-for".as_ref(),
            driver.as_ref(),
            "--s3".as_ref(),
            s3.as_ref(),
            "--child-env".as_ref(),
            conf.as_ref(),
            "--slots".as_ref(),
            "4".as_ref(),
        ],
        &json!({}),
    );
    let peer_port: u16 = peer.url.rsplit(':').next().unwrap().parse().unwrap();
    let sfn = SfnServer::start(peer_port);
    let result = python(&format!(
        r#"
import boto3, json, time
url = "{url}"
sfn = boto3.client("stepfunctions", endpoint_url=url, region_name="us-east-1")
arn = sfn.create_state_machine(name="eth-daily", definition={asl},
                               roleArn="arn:aws:iam::123456789012:role/chainbatch-sfn")["stateMachineArn"]
run = sfn.start_execution(stateMachineArn=arn, name="sfn-e2e-1",
                          input=json.dumps({{"dates": "2023-05-02"}}))["executionArn"]
deadline = time.time() + 300
while True:
    d = sfn.describe_execution(executionArn=run)
    if d["status"] != "RUNNING" or time.time() > deadline:
        break
    time.sleep(1)
events = sfn.get_execution_history(executionArn=run, maxResults=1000)["events"]
failures = [e for e in events if "fail" in e["type"].lower() or "Error" in json.dumps(e, default=str)]
print(json.dumps({{"status": d["status"], "error": d.get("error"), "cause": d.get("cause"),
                  "failures": failures[:4], "events": [e["type"] for e in events][-30:]}}, default=str))
"#,
        url = sfn.url,
        asl = serde_json::to_string(&asl.to_string()).unwrap()
    ));
    let result: Value = serde_json::from_str(result.trim()).unwrap();
    if result["status"] != "SUCCEEDED" {
        // The failure step recorded what Step Functions caught.
        let runs = p
            .command_on(&["runs", "--format", "json"], &raw, &out)
            .output()
            .unwrap();
        panic!(
            "{result:#}\nruns: {}\n{}",
            String::from_utf8_lossy(&runs.stdout),
            peer.log_text()
        );
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    assert_eq!(rt.block_on(snapshot(&out)), expected);
    // The stages ran as Batch jobs sized from the plan documents, the
    // steps as jobs of the driver's definition.
    let submits = peer.requests("SubmitJob");
    let definitions: BTreeSet<&str> = submits
        .iter()
        .map(|r| r["jobDefinition"].as_str().unwrap())
        .collect();
    assert_eq!(
        definitions,
        BTreeSet::from(["chainbatch-driver", "chainbatch-executor"])
    );
    let steps = submits
        .iter()
        .filter(|r| r["jobDefinition"] == "chainbatch-driver")
        .count();
    // begin, plan and commit for three nodes, finish.
    assert_eq!(steps, 8, "{submits:#?}");
}
