//! `chainbatch export step-functions`: a pipeline as an Amazon States
//! Language state machine, with AWS Batch in place of a long-lived driver.
//!
//! The machine runs `chainbatch step begin` (leases, journal), then for each
//! node `step plan` (a driver job that plans the node and writes its stage
//! specs and a plan document to S3), reads the plan document, submits each
//! stage as a `batch:submitJob.sync` job whose array size, sizing and retry
//! rules come from the document, and runs `step commit` (a driver job that
//! commits the node from the manifests). Nodes that do not read each other's
//! outputs run as branches of a `Parallel` state. `step finish` ends the
//! run; any failure runs `step finish --failed` and fails the execution.
//! The journal carries the run between steps, so `chainbatch runs`, `gc`
//! and `run --resume <execution name>` work as for any run.

use crate::pipeline::Node;
use serde_json::{Value, json};

/// What the state machine needs to know of the deployment.
#[derive(Debug, Clone)]
pub struct Deployment {
    /// The pipeline the machine runs.
    pub pipeline: String,
    /// The driver's job queue and job definition (the driver image).
    pub driver_job_queue: String,
    pub driver_job_definition: String,
    /// Where plan documents are: `s3://bucket/<prefix>/<run>/steps/<node>.json`.
    pub plan_bucket: String,
    pub plan_prefix: String,
    /// Arguments every driver step gets (`--env aws`, `--conf ...`, ...).
    pub driver_args: Vec<String>,
    /// `--since-last-success` on the begin step.
    pub since_last_success: bool,
    /// The execution's time limit (also the run's lease time to live).
    pub timeout_seconds: u64,
}

/// The state names of the end of a run.
const FINISH: &str = "Finish run";
const RECORD_FAILURE: &str = "Record failure";
const SUCCEEDED: &str = "Run succeeded";
const FAILED: &str = "Run failed";

/// Errors of the Batch API itself (throttling, a service fault): worth
/// retrying from the state machine. Task failures are retried by Batch,
/// following the jobs' retry strategies (exit code 4 and lost hosts).
const API_ERRORS: [&str; 3] = [
    "Batch.AWSBatchException",
    "Batch.ServerException",
    "Batch.TooManyRequestsException",
];

/// The state machine of `nodes` (in pipeline order) as ASL JSON.
pub fn state_machine(nodes: &[Node], d: &Deployment) -> Value {
    let levels = levels(nodes);
    let mut states = serde_json::Map::new();
    let level_name = |i: usize, level: &[&Node]| match level {
        [one] => plan_state(&one.name),
        _ => format!("Nodes, level {}", i + 1),
    };
    let mut begin_args = vec!["'--dates'".to_string(), "$.dates".to_string()];
    if d.since_last_success {
        begin_args.push(quote("--since-last-success"));
    }
    let first = levels
        .first()
        .map(|l| level_name(0, l))
        .unwrap_or_else(|| FINISH.to_string());
    states.insert(
        "Begin run".into(),
        catching(driver_task(d, "begin", None, &begin_args, &first)),
    );
    for (i, level) in levels.iter().enumerate() {
        let next = levels
            .get(i + 1)
            .map(|l| level_name(i + 1, l))
            .unwrap_or_else(|| FINISH.to_string());
        match level.as_slice() {
            [one] => {
                for (name, mut state) in node_states(one, d, Some(&next)) {
                    // Inline states catch their own failures.
                    if state["Type"] != "Choice" {
                        state = catching(state);
                    }
                    states.insert(name, state);
                }
            }
            many => {
                let branches: Vec<Value> = many
                    .iter()
                    .map(|n| {
                        let states: serde_json::Map<String, Value> =
                            node_states(n, d, None).into_iter().collect();
                        json!({ "StartAt": plan_state(&n.name), "States": states })
                    })
                    .collect();
                states.insert(
                    level_name(i, many),
                    catching(json!({
                        "Type": "Parallel",
                        "Comment": format!(
                            "nodes that do not read each other's outputs: {}",
                            many.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")
                        ),
                        "Branches": branches,
                        "ResultPath": null,
                        "Next": next,
                    })),
                );
            }
        }
    }
    states.insert(
        FINISH.into(),
        catching(driver_task(d, "finish", None, &[], SUCCEEDED)),
    );
    states.insert(SUCCEEDED.into(), json!({ "Type": "Succeed" }));
    let mut record = driver_task(
        d,
        "finish",
        None,
        &[quote("--failed"), "$.error.Error".to_string()],
        FAILED,
    );
    // Recording the failure must not hide it: whatever happens, the
    // execution fails.
    record["Catch"] =
        json!([{ "ErrorEquals": ["States.ALL"], "ResultPath": null, "Next": FAILED }]);
    states.insert(RECORD_FAILURE.into(), record);
    states.insert(
        FAILED.into(),
        json!({
            "Type": "Fail",
            "Error": "chainbatch.RunFailed",
            "Cause": "a step of the run failed; `chainbatch runs` shows the run's error, and `chainbatch run --resume <execution name> --backend batch` continues it",
        }),
    );
    json!({
        "Comment": format!(
            "chainbatch pipeline `{}`: begin, then per node plan, stages as AWS Batch jobs, commit; then finish. Generated by `chainbatch export step-functions`.",
            d.pipeline
        ),
        "StartAt": "Begin run",
        "TimeoutSeconds": d.timeout_seconds,
        "States": states,
    })
}

/// Nodes by dependency level: a node's level is one more than the highest
/// level of the nodes whose outputs it reads; each level keeps pipeline
/// order.
fn levels(nodes: &[Node]) -> Vec<Vec<&Node>> {
    let mut level_of: std::collections::HashMap<&str, usize> = Default::default();
    let mut levels: Vec<Vec<&Node>> = vec![];
    for n in nodes {
        let level = nodes
            .iter()
            .filter(|up| n.inputs.contains(&up.output) && up.name != n.name)
            .filter_map(|up| level_of.get(up.name.as_str()))
            .map(|l| l + 1)
            .max()
            .unwrap_or(0);
        level_of.insert(&n.name, level);
        if levels.len() <= level {
            levels.resize(level + 1, vec![]);
        }
        levels[level].push(n);
    }
    levels
}

fn plan_state(node: &str) -> String {
    format!("Plan {node}")
}

/// A node's states: plan, read the plan document, its stages one after
/// another, commit. `next` is the state after the commit (`None`: the end
/// of a Parallel branch).
fn node_states(n: &Node, d: &Deployment, next: Option<&str>) -> Vec<(String, Value)> {
    let (read, stages, commit) = (
        format!("Read plan {}", n.name),
        format!("Stages of {}", n.name),
        format!("Commit {}", n.name),
    );
    let mut commit_state = driver_task(d, "commit", Some(&n.name), &[], next.unwrap_or(""));
    if next.is_none() {
        end(&mut commit_state);
    }
    vec![
        (
            plan_state(&n.name),
            driver_task(d, "plan", Some(&n.name), &[], &read),
        ),
        (
            read.clone(),
            json!({
                "Type": "Task",
                "Comment": "the plan document `step plan` wrote: one entry per stage, with its Batch job",
                "Resource": "arn:aws:states:::aws-sdk:s3:getObject",
                "Parameters": {
                    "Bucket": d.plan_bucket,
                    "Key.$": format!(
                        "States.Format('{}/{{}}/steps/{}.json', $$.Execution.Name)",
                        escape(&d.plan_prefix),
                        escape(&n.name)
                    ),
                },
                "ResultSelector": { "document.$": "States.StringToJson($.Body)" },
                "ResultPath": "$.plan",
                "Retry": [{
                    "ErrorEquals": ["S3.S3Exception", "S3.SdkClientException"],
                    "IntervalSeconds": 2, "MaxAttempts": 3, "BackoffRate": 2.0,
                }],
                "Next": stages,
            }),
        ),
        (
            stages,
            json!({
                "Type": "Map",
                "Comment": "the node's stages in order: each waits for the one before",
                "ItemsPath": "$.plan.document.stages",
                "MaxConcurrency": 1,
                "Iterator": {
                    "StartAt": "Array or single job",
                    "States": {
                        "Array or single job": {
                            "Type": "Choice",
                            "Choices": [{
                                "Variable": "$.array_size",
                                "NumericGreaterThan": 1,
                                "Next": "Array job",
                            }],
                            "Default": "Single job",
                        },
                        "Array job": stage_job(true),
                        "Single job": stage_job(false),
                    },
                },
                "ResultPath": null,
                "Next": commit,
            }),
        ),
        (commit, commit_state),
    ]
}

/// One stage's tasks as a Batch job, everything from the plan document:
/// AWS Batch arrays hold 2 to 10,000 children, so one task is a plain job.
fn stage_job(array: bool) -> Value {
    let mut parameters = json!({
        "JobName.$": "$.job_name",
        "JobQueue.$": "$.job_queue",
        "JobDefinition.$": "$.job_definition",
        "ContainerOverrides.$": "$.container_overrides",
        "RetryStrategy.$": "$.retry_strategy",
        "Timeout.$": "$.timeout",
        "Tags.$": "$.tags",
    });
    if array {
        parameters["ArrayProperties"] = json!({ "Size.$": "$.array_size" });
    }
    json!({
        "Type": "Task",
        "Resource": "arn:aws:states:::batch:submitJob.sync",
        "Parameters": parameters,
        "ResultPath": null,
        "Retry": [api_retry()],
        "End": true,
    })
}

/// A driver step as a Batch job: `chainbatch step <step> --run-id <the
/// execution's name> [--node N] <args> <deployment args>`.
fn driver_task(
    d: &Deployment,
    step: &str,
    node: Option<&str>,
    args: &[String],
    next: &str,
) -> Value {
    let mut command = vec![
        quote("step"),
        quote(step),
        quote("--run-id"),
        "$$.Execution.Name".to_string(),
    ];
    if let Some(n) = node {
        command.extend([quote("--node"), quote(n)]);
    }
    command.extend(args.iter().cloned());
    command.extend(d.driver_args.iter().map(|a| quote(a)));
    let job_name = job_name(&format!(
        "chainbatch-{}-{step}{}",
        d.pipeline,
        node.map(|n| format!("-{n}")).unwrap_or_default()
    ));
    json!({
        "Type": "Task",
        "Resource": "arn:aws:states:::batch:submitJob.sync",
        "Parameters": {
            "JobName": job_name,
            "JobQueue": d.driver_job_queue,
            "JobDefinition": d.driver_job_definition,
            "ContainerOverrides": {
                "Command.$": format!("States.Array({})", command.join(", ")),
            },
            "Tags": { "chainbatch:pipeline": d.pipeline, "chainbatch:step": step },
        },
        "ResultPath": null,
        "Retry": [api_retry()],
        "Next": next,
    })
}

fn api_retry() -> Value {
    json!({
        "ErrorEquals": API_ERRORS,
        "IntervalSeconds": 5,
        "MaxAttempts": 5,
        "BackoffRate": 2.0,
    })
}

/// Any failure of `state` goes to the failure step, with the error at `$.error`.
fn catching(mut state: Value) -> Value {
    state["Catch"] = json!([{
        "ErrorEquals": ["States.ALL"],
        "ResultPath": "$.error",
        "Next": RECORD_FAILURE,
    }]);
    state
}

fn end(state: &mut Value) {
    let o = state.as_object_mut().expect("a state is an object");
    o.remove("Next");
    o.insert("End".into(), json!(true));
}

/// A string literal of an intrinsic function's arguments.
fn quote(s: &str) -> String {
    format!("'{}'", escape(s))
}

/// Intrinsic functions' reserved characters, escaped.
fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\'' | '{' | '}' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Batch job names: letters, digits, `-` and `_`, at most 128 characters.
fn job_name(raw: &str) -> String {
    let mut name: String = raw
        .chars()
        .map(
            |c| match c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                true => c,
                false => '-',
            },
        )
        .collect();
    name.truncate(128);
    name
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, inputs: &[&str]) -> Node {
        Node {
            name: name.into(),
            inputs: inputs.iter().map(|i| i.to_string()).collect(),
            output: format!("{name}_out"),
            sql: "SELECT 1".into(),
            tags: vec![],
            layout: None,
            key: name.into(),
        }
    }

    fn deployment() -> Deployment {
        Deployment {
            pipeline: "p".into(),
            driver_job_queue: "q-driver".into(),
            driver_job_definition: "d-driver".into(),
            plan_bucket: "b".into(),
            plan_prefix: "x/_chainbatch/runs".into(),
            driver_args: vec!["--env".into(), "aws".into()],
            since_last_success: true,
            timeout_seconds: 86_400,
        }
    }

    #[test]
    fn a_diamond_runs_its_middle_nodes_side_by_side_and_its_join_after_both() {
        // a -> (b, c) -> d; e reads raw input only, so it starts with a.
        let nodes = vec![
            node("a", &["raw"]),
            node("b", &["a_out"]),
            node("c", &["a_out"]),
            node("d", &["b_out", "c_out"]),
            node("e", &["raw"]),
        ];
        let names: Vec<Vec<&str>> = levels(&nodes)
            .iter()
            .map(|l| l.iter().map(|n| n.name.as_str()).collect())
            .collect();
        assert_eq!(names, vec![vec!["a", "e"], vec!["b", "c"], vec!["d"]]);
        let asl = state_machine(&nodes, &deployment());
        let states = &asl["States"];
        assert_eq!(states["Begin run"]["Next"], "Nodes, level 1");
        assert_eq!(states["Nodes, level 1"]["Next"], "Nodes, level 2");
        assert_eq!(states["Nodes, level 2"]["Next"], "Plan d");
        assert_eq!(states["Commit d"]["Next"], FINISH);
        // A branch ends with its commit; the Parallel state catches for it.
        let branch = &states["Nodes, level 2"]["Branches"][0]["States"];
        assert_eq!(branch["Commit b"]["End"], true);
        assert!(branch["Commit b"].get("Catch").is_none());
        assert_eq!(states["Nodes, level 2"]["Catch"][0]["Next"], RECORD_FAILURE);
        // The begin step takes the window from the input and widens it.
        let begin = states["Begin run"]["Parameters"]["ContainerOverrides"]["Command.$"]
            .as_str()
            .unwrap();
        assert_eq!(
            begin,
            "States.Array('step', 'begin', '--run-id', $$.Execution.Name, '--dates', $.dates, \
             '--since-last-success', '--env', 'aws')"
        );
    }

    #[test]
    fn intrinsic_arguments_are_escaped() {
        assert_eq!(quote("it's {x}\\"), "'it\\'s \\{x\\}\\\\'");
    }
}
