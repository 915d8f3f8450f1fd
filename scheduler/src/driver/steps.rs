//! A run in short steps, for an orchestrator that holds the progress (the
//! state machine of `chainbatch export step-functions`): `begin` takes the
//! run's leases and writes its journal; `plan` plans one node, writes its
//! stage specs and a plan document; the orchestrator runs each stage as an
//! AWS Batch job; `commit` commits the node from its tasks' manifests;
//! `finish` ends the run. No process lives for the whole run: the journal
//! carries it between steps, and its leases name no process (they live by
//! their time to live, renewed by each step). A step run again (a retried
//! job) does its work once.

use super::node::NodeRunner;
use super::{RunOptions, checked_nodes, claims, lease_options, out_root, settings};
use crate::backend::batch::{BatchBackend, BatchSettings, job_request, retry_strategy_rules};
use crate::backend::{Backend, BackendKind};
use crate::commit::journal::{self, Journal, RunStatus, StageRecord};
use crate::commit::lease;
use crate::conf::error::ConfigError;
use crate::conf::project::Project;
use crate::error::DriverError;
use crate::ledger::InputScope;
use crate::pipeline::{Node, Selection};
use crate::plan::Strategy;
use crate::progress::Progress;
use chainbatch_executor::{TaskManifest, TaskSpec};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Seconds a stepped run's leases live without a step renewing them
/// (globals `step_lease_seconds`): a stage's Batch job runs between two
/// steps, so this is the longest stage a run may have.
pub const DEFAULT_STEP_LEASE_SECONDS: u64 = 24 * 3600;

/// The backend a stepped run's journal names.
pub const STEPPED_BACKEND: &str = "step-functions";

/// Attempts per stage task, as `run --max-attempts` defaults to: Batch
/// retries exit code 4 and lost hosts.
const STAGE_ATTEMPTS: u32 = 3;

/// What `step plan` leaves for the orchestrator and for `step commit`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanDocument {
    pub node: String,
    /// The node ran and committed in its plan step (a distributed node:
    /// its Ballista cluster lives in that step's job).
    pub committed: bool,
    /// When the node's inputs were listed (the ledger's staleness check).
    pub inputs_listed_at: u64,
    /// How the ledger finds each output partition's input.
    pub input_scope: InputScope,
    /// The stages, in the order they run.
    pub stages: Vec<StageJob>,
}

/// One stage as an AWS Batch `SubmitJob`, in the API's own field shapes,
/// so a state machine passes them through unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageJob {
    pub stage_id: u32,
    pub job_name: String,
    pub job_queue: String,
    pub job_definition: String,
    /// Tasks in the stage: more than one runs as an array job.
    pub array_size: usize,
    /// `Command`, `Environment`, `ResourceRequirements`.
    pub container_overrides: serde_json::Value,
    /// `Attempts`, `EvaluateOnExit` (retry on exit code 4 and lost hosts).
    pub retry_strategy: serde_json::Value,
    /// `AttemptDurationSeconds`.
    pub timeout: serde_json::Value,
    pub tags: BTreeMap<String, String>,
}

/// Where the plan document of `node` in run `run_id` is.
pub fn plan_document_uri(out_root: &str, run_id: &str, node: &str) -> String {
    format!(
        "{}/{run_id}/steps/{node}.json",
        journal::runs_root(out_root)
    )
}

/// Starts the run `opts.run_id`: checks the pipeline, takes its leases for
/// the orchestrator's steps, finishes what crashed runs left, and writes
/// its journal. A journal already running under this id (the step retried)
/// is kept.
pub async fn begin(
    project: &Project,
    opts: &RunOptions,
    progress: &Progress,
) -> Result<(), DriverError> {
    let out_root = out_root(project)?;
    let dates = opts.dates.as_ref().map(|d| format!("{}..{}", d.from, d.to));
    let pipeline = super::pick_pipeline(project, opts.pipeline.as_deref())?
        .name
        .clone();
    if let Some(j) = journal::load(&out_root, &opts.run_id)
        .await
        .map_err(DriverError::Storage)?
    {
        // The same begin again (the step retried): the run goes on. Any
        // other run under this id is not this one.
        let same = j.status == RunStatus::Running
            && j.backend == STEPPED_BACKEND
            && j.pipeline == pipeline
            && j.dates == dates;
        return match same {
            true => Ok(()),
            false => Err(ConfigError::new(
                "--run-id",
                format!("run `{}` exists already; pick a new run id", opts.run_id),
            )
            .into()),
        };
    }
    let (nodes, shapes) = checked_nodes(project, opts).await?;
    if crate::athena::unload::prepare(project, &nodes, opts.dates.as_ref())
        .await?
        .is_some()
    {
        return Err(ConfigError::new(
            "--pipeline",
            "reads an Athena query (`type: athena`): run it with the driver job \
             (`chainbatch run --backend batch`), which UNLOADs it first",
        )
        .into());
    }
    batch_settings(project)?;
    crate::delta::plan_targets(project, &nodes, &shapes)
        .map_err(|e| e.at(Some(project.conf_dir.join("base/catalog.yml")), None))?;
    let claims = claims(project, &nodes, opts.dates.as_ref());
    // Recovery of crashed runs holds its leases as any run does.
    let recovery_opts = lease_options(project, &opts.run_id, opts.wait)?;
    let lease_opts = lease::LeaseOptions {
        detached: true,
        ttl_seconds: project
            .global_u64("step_lease_seconds")?
            .unwrap_or(DEFAULT_STEP_LEASE_SECONDS),
        ..recovery_opts.clone()
    };
    let leases = super::take_leases(&claims, &lease_opts, progress).await?;
    let recovered = commit_recover(&out_root, project, &recovery_opts).await;
    let j = Journal::start(journal::RunStart {
        run_id: opts.run_id.clone(),
        pipeline,
        nodes: nodes.iter().map(|n| n.name.clone()).collect(),
        outputs: nodes.iter().map(|n| n.output.clone()).collect(),
        dates,
        backend: STEPPED_BACKEND.into(),
        claims,
    });
    let saved = match recovered {
        Ok(notes) => {
            notes.iter().for_each(|n| progress.note(n));
            journal::save(&out_root, &j)
                .await
                .map_err(DriverError::Storage)
        }
        Err(e) => Err(e),
    };
    match saved {
        // The leases stay for the next steps: dropping the set stops only
        // this process's heartbeat.
        Ok(()) => {
            drop(leases);
            progress.note(&format!(
                "run {} began: nodes {}",
                j.run_id,
                j.nodes.join(", ")
            ));
            Ok(())
        }
        Err(e) => {
            leases.release().await;
            Err(e)
        }
    }
}

async fn commit_recover(
    out_root: &str,
    project: &Project,
    lease_opts: &lease::LeaseOptions,
) -> Result<Vec<String>, DriverError> {
    crate::commit::recover(out_root, &project.catalog, None, lease_opts)
        .await
        .map_err(DriverError::Storage)
}

fn batch_settings(project: &Project) -> Result<BatchSettings, DriverError> {
    let globals = project
        .conf_dir
        .join(format!("{}/globals.yml", project.env));
    BatchSettings::from_globals(&project.globals)
        .map_err(|e| DriverError::Config(e.at(Some(globals), None)))
}

/// A running stepped run, as each step finds it (its journal apart, for
/// the step to change).
struct Stepped {
    out_root: String,
    runs_root: String,
    opts: RunOptions,
}

/// Steps of one run in parallel branches (nodes that do not read each
/// other) each read, change and write the run's journal: one at a time.
/// The lock is a lease on the run's folder, kept alive while the step runs
/// and released at its end; a step that died leaves one that expires.
async fn with_journal_lock<T>(
    project: &Project,
    run_id: &str,
    step: impl Future<Output = Result<T, DriverError>>,
) -> Result<T, DriverError> {
    let out_root = out_root(project)?;
    let claim = lease::Claim {
        dataset: format!("journal of run {run_id}"),
        path: format!("{}/{run_id}", journal::runs_root(&out_root)),
        scope: lease::Scope::All,
    };
    // Each step holds the lock under a name of its own, so that steps of
    // one run exclude each other as runs do.
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let opts = lease::LeaseOptions {
        run_id: format!("{run_id}.step-{}-{}", std::process::id(), now.as_nanos()),
        purpose: "step".into(),
        ttl_seconds: super::DEFAULT_LEASE_SECONDS,
        wait: std::time::Duration::from_secs(STEP_LOCK_WAIT_SECONDS),
        detached: false,
    };
    let lock = lease::acquire(std::slice::from_ref(&claim), &opts, |_| {})
        .await
        .map_err(|e| DriverError::Storage(format!("run `{run_id}`: {e}")))?;
    let out = step.await;
    lock.release().await;
    out
}

/// How long a step waits for another step of its run to finish with the
/// journal (a distributed node's plan step runs its whole node).
const STEP_LOCK_WAIT_SECONDS: u64 = 3 * 3600;

async fn open(project: &Project, run_id: &str) -> Result<(Stepped, Journal), DriverError> {
    let out_root = out_root(project)?;
    let j = journal::load(&out_root, run_id)
        .await
        .map_err(DriverError::Storage)?
        .ok_or_else(|| {
            ConfigError::new(
                "--run-id",
                format!("no run `{run_id}` under {out_root}: `chainbatch step begin` starts it"),
            )
        })?;
    let dates = j
        .dates
        .as_deref()
        .map(|d| crate::plan::dates::parse(d, &crate::plan::dates::today()))
        .transpose()
        .map_err(|e| DriverError::Storage(format!("journal of `{run_id}`: dates: {e}")))?;
    let mut opts = RunOptions::checking(&j.pipeline, run_id, dates);
    opts.selection = Selection {
        nodes: j.nodes.clone(),
        ..Default::default()
    };
    opts.backend = BackendKind::Batch;
    opts.max_attempts = STAGE_ATTEMPTS;
    let stepped = Stepped {
        runs_root: journal::runs_root(&out_root),
        out_root,
        opts,
    };
    Ok((stepped, j))
}

fn still_running(j: &Journal) -> Result<(), DriverError> {
    match j.status {
        RunStatus::Running => Ok(()),
        other => Err(DriverError::Failed(format!(
            "run `{}` is {} already: its steps cannot go on",
            j.run_id,
            format!("{other:?}").to_lowercase()
        ))),
    }
}

/// What a step needs to plan or commit one node: its plan settings, its
/// Glue and Delta targets, and the run's leases, renewed.
struct NodeContext {
    settings: crate::plan::PlanSettings,
    glue: Option<crate::glue::GlueRun>,
    delta_targets: std::collections::HashMap<String, crate::delta::commit::DeltaTarget>,
    leases: lease::LeaseSet,
}

impl NodeContext {
    async fn load(
        project: &Project,
        s: &Stepped,
        j: &Journal,
        node: &Node,
        shapes: &std::collections::HashMap<String, crate::pipeline::validate::SqlShape>,
    ) -> Result<Self, DriverError> {
        let one = std::slice::from_ref(node);
        Ok(Self {
            settings: settings(project, &s.opts)?,
            glue: crate::glue::prepare(project, one, shapes, false).await?,
            delta_targets: crate::delta::plan_targets(project, one, shapes)
                .map_err(|e| e.at(Some(project.conf_dir.join("base/catalog.yml")), None))?,
            leases: lease::renew_detached(&j.claims, &j.run_id)
                .await
                .map_err(|e| DriverError::Storage(e.to_string()))?,
        })
    }

    fn runner<'a>(
        &'a self,
        project: &'a Project,
        s: &'a Stepped,
        progress: &'a Progress,
        backend: &'a Backend,
    ) -> NodeRunner<'a> {
        NodeRunner {
            project,
            opts: &s.opts,
            progress,
            settings: &self.settings,
            out_root: &s.out_root,
            runs_root: &s.runs_root,
            backend,
            leases: &self.leases,
            glue: self.glue.as_ref(),
            delta_targets: &self.delta_targets,
        }
    }
}

/// The node `name` of the run, checked against the catalog.
async fn run_node(
    project: &Project,
    s: &Stepped,
    j: &Journal,
    name: &str,
) -> Result<
    (
        Node,
        std::collections::HashMap<String, crate::pipeline::validate::SqlShape>,
    ),
    DriverError,
> {
    let (nodes, shapes) = checked_nodes(project, &s.opts).await?;
    let node = nodes.into_iter().find(|n| n.name == name).ok_or_else(|| {
        DriverError::from(ConfigError::new(
            "--node",
            format!(
                "`{name}` is not a node of run `{}` (its nodes: {})",
                j.run_id,
                j.nodes.join(", ")
            ),
        ))
    })?;
    Ok((node, shapes))
}

/// Plans `node` of the stepped run `run_id` and writes its plan document.
/// A distributed node runs and commits here. Planned before (the step
/// retried): the document written then is returned.
pub async fn plan(
    project: &Project,
    run_id: &str,
    node: &str,
    progress: &Progress,
) -> Result<PlanDocument, DriverError> {
    with_journal_lock(
        project,
        run_id,
        plan_node_step(project, run_id, node, progress),
    )
    .await
}

async fn plan_node_step(
    project: &Project,
    run_id: &str,
    node_name: &str,
    progress: &Progress,
) -> Result<PlanDocument, DriverError> {
    let (s, mut j) = open(project, run_id).await?;
    still_running(&j)?;
    let doc_uri = plan_document_uri(&s.out_root, run_id, node_name);
    if j.planned.iter().any(|p| p.node == node_name)
        && let Some(doc) = read_document(&doc_uri).await?
    {
        return Ok(doc);
    }
    // Committed in an earlier attempt of this step whose document was not
    // written (a distributed node): nothing is left to run.
    if j.commits.iter().any(|c| c.node == node_name) {
        let doc = PlanDocument {
            node: node_name.to_string(),
            committed: true,
            inputs_listed_at: j.started_at,
            input_scope: InputScope::Whole,
            stages: vec![],
        };
        crate::json_object::put(&doc_uri, &doc, "plan document")
            .await
            .map_err(DriverError::Storage)?;
        return Ok(doc);
    }
    let (node, shapes) = run_node(project, &s, &j, node_name).await?;
    let batch = batch_settings(project)?;
    let ctx = NodeContext::load(project, &s, &j, &node, &shapes).await?;
    let local = Backend::Local;
    let mut next_stage = super::node::next_stage(&j);
    let planned = ctx
        .runner(project, &s, progress, &local)
        .plan_stages(&node, &shapes[&node.name], &mut next_stage, &mut j)
        .await?;
    let mut doc = PlanDocument {
        node: node.name.clone(),
        committed: false,
        inputs_listed_at: planned.inputs_listed_at,
        input_scope: super::node::input_scope(&planned.plan),
        stages: vec![],
    };
    if planned.plan.strategy == Strategy::Distributed {
        // Its Ballista cluster lives in this job: executors join it as a
        // Batch array job, and the node commits before the step ends.
        let batch_backend = Backend::Batch(
            BatchBackend::connect(batch)
                .await
                .map_err(DriverError::Service)?,
        );
        let ran = ctx
            .runner(project, &s, progress, &batch_backend)
            .run_planned(&node, planned, std::time::Instant::now(), &mut j)
            .await;
        batch_backend.shutdown().await;
        ran?;
        doc.committed = true;
    } else {
        for run in &planned.work.runs {
            doc.stages.push(stage_job(&batch, run)?);
        }
    }
    crate::json_object::put(&doc_uri, &doc, "plan document")
        .await
        .map_err(DriverError::Storage)?;
    progress.note(&format!(
        "{}: {} stage(s) to run{}",
        node.name,
        doc.stages.len(),
        if doc.committed { ", committed" } else { "" }
    ));
    Ok(doc)
}

fn stage_job(
    batch: &BatchSettings,
    run: &crate::backend::StageRun,
) -> Result<StageJob, DriverError> {
    let req = job_request(batch, run).map_err(|e| {
        DriverError::Input(format!("node `{}` stage {}: {e}", run.node, run.stage_id))
    })?;
    let environment: Vec<serde_json::Value> = req
        .environment
        .iter()
        .map(|(k, v)| serde_json::json!({ "Name": k, "Value": v }))
        .collect();
    Ok(StageJob {
        stage_id: run.stage_id,
        job_name: req.job_name,
        job_queue: req.job_queue,
        job_definition: req.job_definition,
        array_size: run.specs.len(),
        container_overrides: serde_json::json!({
            "Command": req.command,
            "Environment": environment,
            "ResourceRequirements": [
                { "Type": "VCPU", "Value": req.vcpus },
                { "Type": "MEMORY", "Value": req.memory_mib.to_string() },
            ],
        }),
        retry_strategy: serde_json::json!({
            "Attempts": req.attempts,
            "EvaluateOnExit": retry_strategy_rules(),
        }),
        timeout: serde_json::json!({ "AttemptDurationSeconds": req.timeout_seconds }),
        tags: req.tags,
    })
}

async fn read_document(uri: &str) -> Result<Option<PlanDocument>, DriverError> {
    crate::json_object::get(uri, "plan document")
        .await
        .map_err(DriverError::Storage)
}

/// Commits `node` of the stepped run `run_id` from its stages' manifests
/// (every task must have a finished attempt). Committed before: nothing
/// to do; a publish cut short is finished.
pub async fn commit(
    project: &Project,
    run_id: &str,
    node: &str,
    progress: &Progress,
) -> Result<(), DriverError> {
    with_journal_lock(
        project,
        run_id,
        commit_node_step(project, run_id, node, progress),
    )
    .await
}

async fn commit_node_step(
    project: &Project,
    run_id: &str,
    node_name: &str,
    progress: &Progress,
) -> Result<(), DriverError> {
    let (s, mut j) = open(project, run_id).await?;
    still_running(&j)?;
    if j.commits.iter().any(|c| c.node == node_name) {
        if crate::commit::roll_forward(&mut j)
            .await
            .map_err(DriverError::Storage)?
        {
            journal::save(&s.out_root, &j)
                .await
                .map_err(DriverError::Storage)?;
            progress.note(&format!("{node_name}: finished its recorded publish"));
        }
        return Ok(());
    }
    let doc_uri = plan_document_uri(&s.out_root, run_id, node_name);
    let doc = read_document(&doc_uri).await?.ok_or_else(|| {
        DriverError::Failed(format!(
            "node `{node_name}` has no plan document at {doc_uri}: `chainbatch step plan` \
             plans it first"
        ))
    })?;
    if doc.committed {
        return Err(DriverError::Failed(format!(
            "node `{node_name}`: its plan step committed it, but the journal has no commit"
        )));
    }
    let (node, shapes) = run_node(project, &s, &j, node_name).await?;
    let mut first_specs = vec![];
    let mut manifests = vec![];
    for (i, stage) in doc.stages.iter().enumerate() {
        let (specs, found) = stage_tasks(&s.runs_root, run_id, stage.stage_id).await?;
        let missing = unfinished(&specs, &found);
        if !missing.is_empty() {
            return Err(DriverError::Task {
                node: node_name.to_string(),
                message: format!(
                    "stage {}: task(s) {} have no finished attempt; their Batch job did not \
                     succeed",
                    stage.stage_id,
                    missing.join(", ")
                ),
                retryable: false,
            });
        }
        manifests = found.into_iter().flatten().collect::<Vec<_>>();
        j.stages.push(StageRecord {
            node: node_name.to_string(),
            stage_id: stage.stage_id,
            kind: "batch".into(),
            tasks: specs.len(),
            rows: manifests.iter().map(|m| m.rows).sum(),
            bytes: manifests.iter().map(|m| m.bytes).sum(),
            seconds: 0.0,
        });
        if i == 0 {
            first_specs = specs;
        }
    }
    let ctx = NodeContext::load(project, &s, &j, &node, &shapes).await?;
    let local = Backend::Local;
    let summary = ctx
        .runner(project, &s, progress, &local)
        .commit_node(
            &node,
            &first_specs,
            doc.input_scope,
            &manifests,
            doc.inputs_listed_at,
            &mut j,
        )
        .await?;
    progress.note(&format!(
        "{}: committed {} partition(s), {} file(s), {} rows",
        summary.node, summary.partitions, summary.files, summary.rows
    ));
    Ok(())
}

/// Ends the stepped run `run_id`: succeeded once every node committed, or
/// failed with `failure` (what the orchestrator caught), keeping finished
/// tasks for `chainbatch run --resume`. Its leases are released.
pub async fn finish(
    project: &Project,
    run_id: &str,
    failure: Option<&str>,
    progress: &Progress,
) -> Result<(), DriverError> {
    with_journal_lock(
        project,
        run_id,
        finish_run(project, run_id, failure, progress),
    )
    .await
}

async fn finish_run(
    project: &Project,
    run_id: &str,
    failure: Option<&str>,
    progress: &Progress,
) -> Result<(), DriverError> {
    let (s, mut j) = open(project, run_id).await?;
    if j.status != RunStatus::Running {
        return match (failure, j.status) {
            // Ended before (the step retried, or a failure caught after
            // the run had finished): the journal keeps how it ended.
            (Some(_), _) | (None, RunStatus::Succeeded) => Ok(()),
            (None, _) => still_running(&j),
        };
    }
    let leases = lease::renew_detached(&j.claims, run_id)
        .await
        .map_err(|e| DriverError::Storage(e.to_string()))?;
    match failure {
        Some(caught) => {
            // A commit cut short in a branch is finished first; if it cannot
            // be, the run stays running for the next run, `gc` or `--resume`.
            if crate::commit::roll_forward(&mut j)
                .await
                .map_err(DriverError::Storage)?
            {
                progress.note("finished a publish a failed step cut short");
            }
            let stopped = where_stopped(&s, &j).await;
            j.status = RunStatus::Failed;
            j.error = Some(match stopped {
                Some(at) => format!("{}; {at}", describe_failure(caught)),
                None => describe_failure(caught),
            });
            // Finished tasks stay for `--resume`; a publish cut short is
            // finished by the next run, `gc` or `--resume`.
            j.resumable = true;
        }
        None => {
            let left: Vec<&str> = j
                .nodes
                .iter()
                .filter(|n| !j.commits.iter().any(|c| &c.node == *n))
                .map(String::as_str)
                .collect();
            if !left.is_empty() {
                return Err(DriverError::Failed(format!(
                    "run `{run_id}` cannot finish: node(s) {} did not commit",
                    left.join(", ")
                )));
            }
            j.status = RunStatus::Succeeded;
            for out in j.outputs.iter().collect::<std::collections::BTreeSet<_>>() {
                if let Some(ds) = project.catalog.get(out) {
                    crate::commit::remove_prefix(&crate::paths::run_staging(ds, run_id))
                        .await
                        .map_err(DriverError::Storage)?;
                }
            }
        }
    }
    j.finished_at = Some(journal::now_secs());
    journal::save(&s.out_root, &j)
        .await
        .map_err(DriverError::Storage)?;
    leases.release().await;
    progress.note(&format!(
        "run {run_id} {}",
        match failure {
            Some(_) => "recorded as failed",
            None => "succeeded",
        }
    ));
    Ok(())
}

/// A stage's task specs as the run recorded them, in task order, and each
/// task's finished attempt (`None`: none finished).
async fn stage_tasks(
    runs_root: &str,
    run_id: &str,
    stage_id: u32,
) -> Result<(Vec<TaskSpec>, Vec<Option<TaskManifest>>), DriverError> {
    use crate::backend::resume;
    let recorded = resume::recorded_specs(runs_root, run_id, stage_id)
        .await
        .map_err(DriverError::Storage)?;
    let specs: Vec<TaskSpec> = recorded.values().cloned().collect();
    let found = resume::finished_tasks(&specs, &recorded)
        .await
        .map_err(DriverError::Storage)?;
    Ok((specs, found))
}

/// The indexes of the tasks with no finished attempt.
fn unfinished(specs: &[TaskSpec], found: &[Option<TaskManifest>]) -> Vec<String> {
    specs
        .iter()
        .zip(found)
        .filter(|(_, f)| f.is_none())
        .map(|(t, _)| t.task_index.to_string())
        .collect()
}

/// Where a failed stepped run stopped, from its journal and its stage
/// specs: the first node not committed, and the tasks of its stages with no
/// finished attempt. The orchestrator passes only the error's name (a
/// failed job's whole description would not fit a command line).
async fn where_stopped(s: &Stepped, j: &Journal) -> Option<String> {
    let node = j
        .nodes
        .iter()
        .find(|n| !j.commits.iter().any(|c| &&c.node == n))?;
    let Some(planned) = j.planned.iter().find(|p| &p.node == node) else {
        return Some(format!("node `{node}` was not planned"));
    };
    let mut missing = vec![];
    for stage_id in planned.first_stage..planned.first_stage + planned.stages {
        let (specs, found) = stage_tasks(&s.runs_root, &j.run_id, stage_id).await.ok()?;
        let left = unfinished(&specs, &found);
        if !left.is_empty() {
            missing.push(format!("stage {stage_id} task(s) {}", left.join(", ")));
        }
    }
    Some(match missing.is_empty() {
        true => format!("node `{node}` ran its stages but did not commit"),
        false => format!(
            "node `{node}`: {} did not finish (the Batch jobs' logs say why)",
            missing.join("; ")
        ),
    })
}

/// What the orchestrator caught, in a line: Step Functions passes
/// `{"Error": ..., "Cause": ...}`, where a Batch job's cause is the job's
/// description (its name and status reason say what failed).
fn describe_failure(caught: &str) -> String {
    let v: serde_json::Value = match serde_json::from_str(caught) {
        Ok(v) => v,
        Err(_) => return caught.chars().take(2000).collect(),
    };
    let error = v["Error"].as_str().unwrap_or("error");
    let cause = v["Cause"].as_str().unwrap_or_default();
    match serde_json::from_str::<serde_json::Value>(cause) {
        Ok(job) if job.get("JobName").is_some() => format!(
            "{error}: Batch job {} ({}) {}: {}",
            job["JobName"].as_str().unwrap_or("?"),
            job["JobId"].as_str().unwrap_or("?"),
            job["Status"].as_str().unwrap_or("failed").to_lowercase(),
            job["StatusReason"].as_str().unwrap_or("no reason given")
        ),
        _ => format!("{error}: {}", cause.chars().take(2000).collect::<String>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_caught_batch_failure_is_told_in_a_line() {
        let job = serde_json::json!({
            "JobName": "chainbatch-r-clean-s0", "JobId": "j-1", "Status": "FAILED",
            "StatusReason": "Essential container in task exited"
        });
        let caught = serde_json::json!({ "Error": "States.TaskFailed", "Cause": job.to_string() });
        assert_eq!(
            describe_failure(&caught.to_string()),
            "States.TaskFailed: Batch job chainbatch-r-clean-s0 (j-1) failed: Essential container in task exited"
        );
        assert_eq!(describe_failure("plain"), "plain");
    }
}
