//! The AWS Batch backend: each stage of a node is one job (an array job when
//! it has more than one task) whose children run `chainbatch-executor` in
//! the executor image. A node's stages are submitted together, each
//! depending on the one before, so Batch starts a stage the moment the
//! previous one succeeds. The driver follows an array through its parent's
//! `statusSummary` and lists only the children that finished since
//! (`ListJobs`), reads each finished child's manifest from S3, and
//! terminates everything it submitted when a task fails for good or the run
//! is interrupted. A throttled or failed poll backs off and polls again.

use crate::backend::{StageOutcome, StageRun, TaskFailure};
use crate::conf::error::ConfigError;
use crate::progress::Progress;
use aws_sdk_batch::Client;
use aws_sdk_batch::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_batch::types::{
    ArrayJobDependency, ArrayProperties, ContainerOverrides, EvaluateOnExit, JobDefinition,
    JobDependency, JobDetail, JobStatus, JobTimeout, KeyValuePair, ResourceRequirement,
    ResourceType, RetryAction, RetryStrategy,
};
use chainbatch_executor::error::{EXIT_BAD_SPEC, EXIT_RETRYABLE};
use chainbatch_executor::{TaskManifest, TaskSpec};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// AWS Batch caps array jobs at this many children.
pub const MAX_ARRAY_SIZE: usize = 10_000;
/// `DescribeJobs` takes at most this many ids per call.
pub const DESCRIBE_BATCH: usize = 100;

/// `batch:` in globals.yml (conf/aws).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSettings {
    /// Job queue name or ARN.
    pub job_queue: String,
    /// Job definition: `name` (latest active revision), `name:revision` or ARN.
    pub job_definition: String,
    /// Region of the queue; default: the AWS chain's region.
    #[serde(default)]
    pub region: Option<String>,
    /// The executor image tag the job definition must run; checked before
    /// anything is submitted, so a stale definition cannot run new specs.
    #[serde(default)]
    pub image_tag: Option<String>,
    /// Where the queue runs containers: `fargate` (only certain vCPU and
    /// memory pairs are valid, so sizes round up to one) or `ec2` (whole
    /// vCPUs, any memory; nothing is rounded).
    #[serde(default)]
    pub platform: Platform,
    /// Most vCPUs per task container; a stage gets fewer when its largest
    /// task reads less than `bytes_per_vcpu` per vCPU. A whole number on EC2.
    #[serde(default = "default_vcpus")]
    pub vcpus: f64,
    /// Input bytes that keep one vCPU busy, which sizes each stage's vCPUs.
    #[serde(default = "default_bytes_per_vcpu")]
    pub bytes_per_vcpu: u64,
    /// Least memory per task container, MiB.
    #[serde(default = "default_memory_mib")]
    pub memory_mib: u64,
    /// Memory a container needs beyond the task's sort budget
    /// (`task_memory_bytes`): readers, writers, the runtime. MiB.
    #[serde(default = "default_overhead_mib")]
    pub memory_overhead_mib: u64,
    /// Attempt timeout per task, seconds (Batch's minimum is 60).
    #[serde(default = "default_timeout")]
    pub job_timeout_seconds: u64,
    /// Longest pause between status polls, seconds; polls start at 1 s.
    #[serde(default = "default_poll")]
    pub poll_seconds: u64,
    /// Tags on every job, beside chainbatch's own.
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
    /// The Ballista executor containers of distributed nodes.
    #[serde(default)]
    pub ballista: crate::backend::batch_cluster::BatchBallista,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    #[default]
    Fargate,
    Ec2,
}

fn default_vcpus() -> f64 {
    2.0
}
fn default_bytes_per_vcpu() -> u64 {
    128 * 1024 * 1024
}
fn default_memory_mib() -> u64 {
    2048
}
fn default_overhead_mib() -> u64 {
    1024
}
fn default_timeout() -> u64 {
    3600
}
fn default_poll() -> u64 {
    15
}

impl BatchSettings {
    pub fn from_globals(globals: &serde_norway::Value) -> Result<Self, ConfigError> {
        let v = crate::conf::interpolate::lookup(globals, "batch").ok_or_else(|| {
            ConfigError::new(
                "batch",
                "is required in globals.yml for --backend batch: job_queue and \
                 job_definition at least (see conf/aws/globals.yml)",
            )
        })?;
        let s: Self = crate::conf::typed::deserialize(v, "batch", "a mapping")?;
        if s.job_timeout_seconds < 60 {
            return Err(ConfigError::new(
                "batch.job_timeout_seconds",
                format!("is {}; AWS Batch needs at least 60", s.job_timeout_seconds),
            ));
        }
        if s.vcpus.is_nan() || s.vcpus <= 0.0 {
            return Err(ConfigError::new("batch.vcpus", "must be more than 0"));
        }
        if s.platform == Platform::Ec2 && s.vcpus.fract() != 0.0 {
            return Err(ConfigError::new(
                "batch.vcpus",
                format!(
                    "is {}; EC2 jobs take whole vCPUs (fractions are for Fargate)",
                    s.vcpus
                ),
            ));
        }
        DefinitionRef::parse(&s.job_definition)
            .map_err(|e| ConfigError::new("batch.job_definition", e))?;
        if s.poll_seconds == 0 {
            return Err(ConfigError::new("batch.poll_seconds", "must be at least 1"));
        }
        Ok(s)
    }

    /// Container memory for a stage: the largest task's sort budget plus the
    /// overhead, never below `memory_mib`.
    pub fn memory_for(&self, specs: &[TaskSpec]) -> u64 {
        let budget = specs
            .iter()
            .map(|s| s.resources.memory_bytes)
            .max()
            .unwrap_or(0)
            .div_ceil(1024 * 1024);
        (budget + self.memory_overhead_mib).max(self.memory_mib)
    }

    /// vCPUs and memory (MiB) for a stage's containers: vCPUs from the
    /// largest task's input bytes up to `vcpus`, memory from the task's sort
    /// budget; on Fargate, rounded up to a size Fargate runs; on EC2, whole
    /// vCPUs (at least 1) and the memory as computed.
    pub fn stage_size(&self, specs: &[TaskSpec], stage_bytes: u64) -> Result<(f64, u64), String> {
        let per_task = stage_bytes / specs.len().max(1) as u64;
        let largest = specs
            .iter()
            .map(|s| task_input_bytes(s).unwrap_or(per_task))
            .max()
            .unwrap_or(0);
        let wanted = largest.div_ceil(self.bytes_per_vcpu.max(1)).max(1) as f64;
        let vcpus = if self.vcpus < 1.0 {
            self.vcpus
        } else {
            wanted.min(self.vcpus)
        };
        let memory = self.memory_for(specs);
        match self.platform {
            Platform::Ec2 => Ok((wanted.min(self.vcpus.floor()).max(1.0), memory)),
            Platform::Fargate => fargate_size(vcpus, memory),
        }
    }
}

/// Bytes a task reads, when the plan listed every file's size.
fn task_input_bytes(spec: &TaskSpec) -> Option<u64> {
    let mut total = 0;
    for input in &spec.inputs {
        if input.shuffle.is_some() {
            return None;
        }
        for f in &input.files {
            total += match (&f.range, f.size) {
                (Some(r), _) => r.end.saturating_sub(r.start),
                (None, Some(s)) => s,
                (None, None) => return None,
            };
        }
    }
    Some(total)
}

/// Fargate's valid sizes: (vCPUs, least MiB, most MiB, step MiB).
const FARGATE_SIZES: [(f64, u64, u64, u64); 7] = [
    (0.25, 512, 2048, 512),
    (0.5, 1024, 4096, 1024),
    (1.0, 2048, 8192, 1024),
    (2.0, 4096, 16384, 1024),
    (4.0, 8192, 30720, 1024),
    (8.0, 16384, 61440, 4096),
    (16.0, 32768, 122880, 8192),
];

/// The smallest Fargate size with at least `vcpus` and `memory`.
pub fn fargate_size(vcpus: f64, memory: u64) -> Result<(f64, u64), String> {
    for (cpu, least, most, step) in FARGATE_SIZES {
        if cpu < vcpus || most < memory {
            continue;
        }
        let mut m = memory.max(least).div_ceil(step) * step;
        if cpu == 0.25 && m == 1536 {
            // 0.25 vCPU takes 512, 1024 or 2048 MiB only.
            m = 2048;
        }
        return Ok((cpu, m));
    }
    Err(format!(
        "a task needs {vcpus} vCPU and {memory} MiB, more than Fargate runs \
         (16 vCPU, 120 GiB): lower task_memory_bytes or use batch.platform: ec2"
    ))
}

pub(crate) fn vcpus_text(vcpus: f64) -> String {
    let v = format!("{vcpus:.2}");
    v.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// How `DescribeJobDefinitions` is asked about `batch.job_definition`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DefinitionRef {
    /// A bare name: asked by `jobDefinitionName` with `status=ACTIVE`; the
    /// latest active revision is checked and every job runs that revision.
    Name(String),
    /// `name:revision` or an ARN: asked by `jobDefinitions`, which takes no
    /// other parameter (so no status filter: the revision must be ACTIVE).
    Exact(String),
}

impl DefinitionRef {
    pub fn parse(d: &str) -> Result<Self, String> {
        // Names: up to 128 letters, digits, hyphens and underscores.
        let name = |n: &str| {
            !n.is_empty()
                && n.len() <= 128
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        let revision = |r: &str| !r.is_empty() && r.chars().all(|c| c.is_ascii_digit());
        if let Some(rest) = d.strip_prefix("arn:")
            && let Some((_, tail)) = rest.split_once(":job-definition/")
            && let Some((n, r)) = tail.split_once(':')
            && name(n)
            && revision(r)
        {
            return Ok(Self::Exact(d.to_string()));
        }
        match d.split_once(':') {
            None if name(d) => Ok(Self::Name(d.to_string())),
            Some((n, r)) if name(n) && revision(r) => Ok(Self::Exact(d.to_string())),
            _ => Err(format!(
                "`{d}` is not a job definition name, name:revision or \
                 arn:...:job-definition/name:revision"
            )),
        }
    }
}

/// How a stage's job waits for the previous stage's job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Dependency {
    /// The whole previous job must succeed.
    Whole,
    /// Child i waits for child i only (`N_TO_N`).
    OneToOne,
}

/// A stage depends one to one on the previous stage when both have the same
/// number of tasks and every task reads only what the same-numbered task of
/// the previous stage wrote.
pub fn dependency(prev: &[TaskSpec], next: &[TaskSpec]) -> Dependency {
    if prev.len() != next.len() || prev.len() < 2 {
        return Dependency::Whole;
    }
    let own_input_only = prev.iter().zip(next).all(|(p, n)| {
        let dir = format!("{}/", p.task_dir());
        let other_dirs: Vec<String> = prev
            .iter()
            .filter(|o| o.task_index != p.task_index)
            .map(|o| format!("{}/", o.task_dir()))
            .collect();
        let reads: Vec<String> = n
            .inputs
            .iter()
            .flat_map(|i| {
                i.files
                    .iter()
                    .map(|f| f.uri.clone())
                    .chain(i.shuffle.iter().flat_map(|s| s.map_outputs.clone()))
            })
            .map(|u| format!("{}/", u.trim_end_matches('/')))
            .collect();
        !reads.is_empty()
            && reads
                .iter()
                .all(|r| r.starts_with(&dir) && !other_dirs.iter().any(|o| r.starts_with(o)))
    });
    if own_input_only {
        Dependency::OneToOne
    } else {
        Dependency::Whole
    }
}

/// Everything `SubmitJob` is given for one stage: built apart from the SDK
/// so that `plan` can show it and tests can check it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct JobRequest {
    pub job_name: String,
    pub job_queue: String,
    pub job_definition: String,
    /// `None` for a single task: a plain job, not an array of one.
    pub array_size: Option<usize>,
    pub command: Vec<String>,
    pub environment: BTreeMap<String, String>,
    pub vcpus: String,
    pub memory_mib: u64,
    pub attempts: u32,
    pub timeout_seconds: u64,
    pub tags: BTreeMap<String, String>,
}

/// Batch names: letters, digits, `-` and `_`, at most 128 characters.
pub(crate) fn job_name(run_id: &str, node: &str, stage_id: u32) -> String {
    let raw = format!("chainbatch-{run_id}-{node}-s{stage_id}");
    let mut name: String = raw
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    name.truncate(128);
    name
}

pub fn job_request(settings: &BatchSettings, stage: &StageRun) -> Result<JobRequest, String> {
    let n = stage.specs.len();
    if n > MAX_ARRAY_SIZE {
        return Err(format!(
            "stage {} has {n} tasks; an AWS Batch array job holds at most {MAX_ARRAY_SIZE}: \
             raise target_task_bytes",
            stage.stage_id
        ));
    }
    let run_id = stage
        .specs
        .first()
        .map(|s| s.run_id.clone())
        .unwrap_or_default();
    let mut tags = settings.tags.clone();
    tags.insert("chainbatch:run".into(), run_id.clone());
    tags.insert("chainbatch:node".into(), stage.node.clone());
    tags.insert("chainbatch:stage".into(), stage.stage_id.to_string());
    let (vcpus, memory_mib) = settings.stage_size(&stage.specs, stage.input_bytes)?;
    let environment = BTreeMap::from([
        ("CHAINBATCH_RUN_ID".to_string(), run_id.clone()),
        ("CHAINBATCH_NODE".to_string(), stage.node.clone()),
        ("CHAINBATCH_STAGE".to_string(), stage.stage_id.to_string()),
        ("CHAINBATCH_SPEC_URI".to_string(), stage.spec_uri.clone()),
    ]);
    Ok(JobRequest {
        job_name: job_name(&run_id, &stage.node, stage.stage_id),
        job_queue: settings.job_queue.clone(),
        job_definition: settings.job_definition.clone(),
        array_size: (n > 1).then_some(n),
        command: vec!["run".into(), "--spec".into(), stage.spec_uri.clone()],
        environment,
        vcpus: vcpus_text(vcpus),
        memory_mib,
        attempts: stage.max_attempts.clamp(1, 10),
        timeout_seconds: settings.job_timeout_seconds,
        tags,
    })
}

/// Attempt status reasons Batch retries, in `evaluateOnExit` order: an EC2
/// host lost (instance terminated, Spot reclaimed), a Fargate Spot task
/// interrupted, and a task that never started (Fargate reports
/// `Task failed to start`, the container's reason says why:
/// `CannotPullContainerError: ...`, `ResourceInitializationError: ...`).
pub const RETRY_STATUS_REASONS: [&str; 3] = [
    "Host EC2*",
    "Your Spot Task was interrupted*",
    "Task failed to start",
];

/// The job's retry strategy: retry on [`RETRY_STATUS_REASONS`] (matched by
/// `onStatusReason`, the attempt's status reason) and on the executor's
/// retryable exit code; anything else (a bad spec, exit 3; a crash; an
/// out-of-memory kill) exits. AWS allows at most 5 rules; patterns may
/// only end in `*`. Batch never retries an attempt that timed out or a job
/// that was terminated.
pub fn retry_strategy(attempts: u32) -> RetryStrategy {
    let rule = |action: RetryAction| EvaluateOnExit::builder().action(action);
    let mut rules: Vec<_> = RETRY_STATUS_REASONS
        .iter()
        .map(|r| rule(RetryAction::Retry).on_status_reason(*r))
        .collect();
    rules.push(rule(RetryAction::Retry).on_exit_code(EXIT_RETRYABLE.to_string()));
    rules.push(rule(RetryAction::Exit).on_reason("*"));
    RetryStrategy::builder()
        .attempts(attempts as i32)
        .set_evaluate_on_exit(Some(rules.into_iter().map(|r| r.build()).collect()))
        .build()
}

/// [`retry_strategy`]'s rules in the API's JSON shape (`EvaluateOnExit`),
/// for jobs another service submits (the Step Functions export).
pub fn retry_strategy_rules() -> serde_json::Value {
    let mut rules: Vec<serde_json::Value> = RETRY_STATUS_REASONS
        .iter()
        .map(|r| serde_json::json!({ "OnStatusReason": r, "Action": "RETRY" }))
        .collect();
    rules.push(serde_json::json!({ "OnExitCode": EXIT_RETRYABLE.to_string(), "Action": "RETRY" }));
    rules.push(serde_json::json!({ "OnReason": "*", "Action": "EXIT" }));
    serde_json::Value::Array(rules)
}

/// A poll that failed: throttled or transient ones are retried for as long
/// as they last; others for [`POLL_GIVE_UP`] in a row.
#[derive(Debug)]
pub(crate) struct PollError {
    message: String,
    transient: bool,
}

/// How long polls may fail in a row with errors that are not throttling or
/// transient (e.g. a missing permission) before the run gives up.
const POLL_GIVE_UP: Duration = Duration::from_secs(300);

fn poll_error<E>(what: &str, e: SdkError<E>) -> PollError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let transient = match &e {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            true
        }
        SdkError::ServiceError(s) => {
            let status = s.raw().status().as_u16();
            status == 429
                || status >= 500
                || matches!(
                    e.code(),
                    Some("TooManyRequestsException" | "ThrottlingException" | "ServerException")
                )
        }
        _ => false,
    };
    PollError {
        message: sdk_error(what, e),
        transient,
    }
}

fn is_access_denied<E: ProvideErrorMetadata>(e: &SdkError<E>) -> bool {
    matches!(
        e.code(),
        Some("AccessDeniedException" | "AccessDenied" | "UnauthorizedOperation")
    ) || matches!(e, SdkError::ServiceError(s) if s.raw().status().as_u16() == 403)
}

pub struct BatchBackend {
    client: Client,
    /// Boxed: the backend lives in an enum beside data-less variants.
    settings: Box<BatchSettings>,
    /// The job definition every job runs: the checked revision.
    definition: String,
    /// Whether `ListJobs` may be called; without it, polls describe every
    /// unfinished child.
    list_jobs: bool,
    /// Said once, on the first stage run.
    notice: Mutex<Option<String>>,
}

fn sdk_error<E: std::error::Error>(what: &str, e: E) -> String {
    format!("AWS Batch {what} failed: {}", DisplayErrorContext(&e))
}

impl BatchBackend {
    /// Connects and checks, before anything is submitted, that the queue
    /// takes jobs and the job definition exists and runs the configured image.
    pub async fn connect(settings: BatchSettings) -> Result<Self, String> {
        let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
        if let Some(r) = &settings.region {
            loader = loader.region(aws_config::Region::new(r.clone()));
        }
        let client = Client::new(&loader.load().await);
        let mut this = Self {
            client,
            definition: settings.job_definition.clone(),
            settings: Box::new(settings),
            list_jobs: true,
            notice: Mutex::new(None),
        };
        this.check_queue().await?;
        this.definition = this.check_definition().await?;
        this.check_list_jobs().await?;
        Ok(this)
    }

    /// Whether the driver may call `ListJobs`. Without `batch:ListJobs` the
    /// run still works, polling every unfinished child with `DescribeJobs`.
    async fn check_list_jobs(&mut self) -> Result<(), String> {
        let out = self
            .client
            .list_jobs()
            .job_queue(&self.settings.job_queue)
            .job_status(JobStatus::Running)
            .max_results(1)
            .send()
            .await;
        match out {
            Ok(_) => Ok(()),
            Err(e) if is_access_denied(&e) => {
                self.list_jobs = false;
                *self.notice.lock().expect("notice") = Some(format!(
                    "batch:ListJobs is not allowed ({}); polls describe every unfinished \
                     child instead: grant batch:ListJobs to the driver's role",
                    e.code().unwrap_or("access denied")
                ));
                Ok(())
            }
            Err(e) => Err(sdk_error("ListJobs", e)),
        }
    }

    async fn check_queue(&self) -> Result<(), String> {
        let q = &self.settings.job_queue;
        let out = self
            .client
            .describe_job_queues()
            .job_queues(q)
            .send()
            .await
            .map_err(|e| sdk_error("DescribeJobQueues", e))?;
        let Some(queue) = out.job_queues().first() else {
            return Err(format!(
                "batch.job_queue: job queue `{q}` does not exist in this account and region"
            ));
        };
        let state = queue.state().map(|s| s.as_str()).unwrap_or("?");
        if state != "ENABLED" {
            return Err(format!(
                "batch.job_queue: job queue `{q}` is {state}; it takes no jobs"
            ));
        }
        Ok(())
    }

    /// Finds the job definition and checks its image tag; returns what jobs
    /// name: the latest ACTIVE revision (`name:revision`) for a bare name,
    /// else the revision or ARN as configured.
    async fn check_definition(&self) -> Result<String, String> {
        let d = &self.settings.job_definition;
        let wanted = DefinitionRef::parse(d).map_err(|e| format!("batch.job_definition: {e}"))?;
        let def = match &wanted {
            DefinitionRef::Name(name) => {
                let mut found: Vec<JobDefinition> = vec![];
                let mut token: Option<String> = None;
                loop {
                    let out = self
                        .client
                        .describe_job_definitions()
                        .job_definition_name(name)
                        .status("ACTIVE")
                        .set_next_token(token)
                        .send()
                        .await
                        .map_err(|e| sdk_error("DescribeJobDefinitions", e))?;
                    found.extend(out.job_definitions().iter().cloned());
                    token = out.next_token().map(str::to_string);
                    if token.is_none() {
                        break;
                    }
                }
                found
                    .into_iter()
                    .filter(|j| j.job_definition_name() == Some(name.as_str()))
                    .max_by_key(|j| j.revision().unwrap_or(0))
            }
            DefinitionRef::Exact(exact) => {
                let out = self
                    .client
                    .describe_job_definitions()
                    .job_definitions(exact)
                    .send()
                    .await
                    .map_err(|e| sdk_error("DescribeJobDefinitions", e))?;
                out.job_definitions().first().cloned()
            }
        };
        let Some(def) = def else {
            return Err(format!(
                "batch.job_definition: no active job definition `{d}`"
            ));
        };
        let name = def.job_definition_name().unwrap_or(d);
        let revision = def.revision().unwrap_or(0);
        if let Some(status) = def.status()
            && status != "ACTIVE"
        {
            return Err(format!(
                "batch.job_definition: job definition `{name}:{revision}` is {status}; \
                 name an active revision"
            ));
        }
        if let Some(tag) = &self.settings.image_tag {
            let image = def
                .container_properties()
                .and_then(|c| c.image())
                .unwrap_or_default();
            let actual = image.rsplit_once(':').map(|(_, t)| t).unwrap_or("latest");
            if actual != tag {
                return Err(format!(
                    "batch.image_tag: job definition `{name}:{revision}` runs image `{image}`, \
                     not tag `{tag}`; register a revision with the new image \
                     (terraform apply) or set batch.image_tag"
                ));
            }
        }
        Ok(match wanted {
            DefinitionRef::Name(_) => format!("{name}:{revision}"),
            DefinitionRef::Exact(exact) => exact,
        })
    }

    pub fn settings(&self) -> &BatchSettings {
        &self.settings
    }

    /// The checked job definition revision every job runs.
    pub fn definition(&self) -> &str {
        &self.definition
    }

    pub(crate) async fn submit(
        &self,
        req: &JobRequest,
        after: Option<(&str, Dependency)>,
    ) -> Result<String, String> {
        let requirement =
            |t: ResourceType, v: String| ResourceRequirement::builder().r#type(t).value(v).build();
        let overrides = ContainerOverrides::builder()
            .set_command(Some(req.command.clone()))
            .set_environment(Some(
                req.environment
                    .iter()
                    .map(|(k, v)| KeyValuePair::builder().name(k).value(v).build())
                    .collect(),
            ))
            .resource_requirements(requirement(ResourceType::Vcpu, req.vcpus.clone()))
            .resource_requirements(requirement(
                ResourceType::Memory,
                req.memory_mib.to_string(),
            ))
            .build();
        let mut call = self
            .client
            .submit_job()
            .job_name(&req.job_name)
            .job_queue(&req.job_queue)
            .job_definition(&req.job_definition)
            .container_overrides(overrides)
            .retry_strategy(retry_strategy(req.attempts))
            .timeout(
                JobTimeout::builder()
                    .attempt_duration_seconds(req.timeout_seconds as i32)
                    .build(),
            )
            .propagate_tags(true)
            .set_tags(Some(req.tags.clone().into_iter().collect()));
        if let Some(size) = req.array_size {
            call = call.array_properties(ArrayProperties::builder().size(size as i32).build());
        }
        if let Some((job_id, dep)) = after {
            let mut d = JobDependency::builder().job_id(job_id);
            if dep == Dependency::OneToOne {
                d = d.r#type(ArrayJobDependency::NToN);
            }
            call = call.depends_on(d.build());
        }
        let out = call.send().await.map_err(|e| sdk_error("SubmitJob", e))?;
        out.job_id()
            .map(str::to_string)
            .ok_or_else(|| "AWS Batch SubmitJob returned no job id".to_string())
    }

    pub(crate) async fn describe(&self, ids: &[String]) -> Result<Vec<JobDetail>, PollError> {
        let mut out = vec![];
        for chunk in ids.chunks(DESCRIBE_BATCH) {
            let r = self
                .client
                .describe_jobs()
                .set_jobs(Some(chunk.to_vec()))
                .send()
                .await
                .map_err(|e| poll_error("DescribeJobs", e))?;
            out.extend(r.jobs().iter().cloned());
        }
        Ok(out)
    }

    /// The ids of an array's children in `status`, every page.
    async fn list_children(
        &self,
        job_id: &str,
        status: JobStatus,
    ) -> Result<Vec<String>, PollError> {
        let mut ids = vec![];
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_jobs()
                .array_job_id(job_id)
                .job_status(status.clone())
                .set_next_token(token)
                .send()
                .await
                .map_err(|e| poll_error("ListJobs", e))?;
            ids.extend(
                out.job_summary_list()
                    .iter()
                    .filter_map(|j| j.job_id().map(str::to_string)),
            );
            token = out.next_token().map(str::to_string);
            if token.is_none() {
                return Ok(ids);
            }
        }
    }

    /// One poll of a stage's job: the children that are done and not yet
    /// in `known`, described. A single job is described. An array's parent
    /// is described for its `statusSummary`; when it counts more SUCCEEDED
    /// or any FAILED children than are known, those are listed
    /// (`ListJobs`) and the new ones described.
    async fn poll(
        &self,
        job_id: &str,
        is_array: bool,
        known: &HashSet<String>,
        pending: &[String],
    ) -> Result<Vec<JobDetail>, PollError> {
        let done = |d: &JobDetail| {
            matches!(
                d.status(),
                Some(JobStatus::Succeeded) | Some(JobStatus::Failed)
            )
        };
        if !is_array {
            let d = self.describe(&[job_id.to_string()]).await?;
            return Ok(d.into_iter().filter(done).collect());
        }
        if !self.list_jobs {
            let d = self.describe(pending).await?;
            return Ok(d.into_iter().filter(done).collect());
        }
        let parent = self.describe(&[job_id.to_string()]).await?;
        let Some(parent) = parent.first() else {
            return Ok(vec![]);
        };
        let summary = parent
            .array_properties()
            .and_then(|a| a.status_summary())
            .cloned()
            .unwrap_or_default();
        let count = |s: &str| summary.get(s).copied().unwrap_or(0).max(0) as usize;
        let parent_done = done(parent);
        let mut new = vec![];
        if count("FAILED") > 0 || parent.status() == Some(&JobStatus::Failed) {
            new.extend(self.list_children(job_id, JobStatus::Failed).await?);
        }
        if count("SUCCEEDED") > known.len() || parent_done {
            new.extend(self.list_children(job_id, JobStatus::Succeeded).await?);
        }
        new.retain(|id| !known.contains(id));
        if new.is_empty() {
            return Ok(vec![]);
        }
        let d = self.describe(&new).await?;
        Ok(d.into_iter().filter(done).collect())
    }

    /// Terminates every job in `ids`; Batch fails their children too.
    pub(crate) async fn terminate(&self, ids: &[String], reason: &str, progress: &Progress) {
        for id in ids {
            if let Err(e) = self
                .client
                .terminate_job()
                .job_id(id)
                .reason(reason)
                .send()
                .await
            {
                progress.note(&format!(
                    "could not terminate job {id}: {}",
                    DisplayErrorContext(&e)
                ));
            }
        }
    }

    /// Runs a node's stages: submits them all, chained by `dependsOn`, then
    /// follows them to the end. Ctrl-C or SIGTERM terminates every job.
    pub async fn run_stages(
        &self,
        stages: &[StageRun],
        progress: &Progress,
    ) -> Result<Vec<StageOutcome>, TaskFailure> {
        if let Some(n) = self.notice.lock().expect("notice").take() {
            progress.note(&n);
        }
        let mut submitted: Vec<String> = vec![];
        let distributed = matches!(stages, [s] if s.kind == crate::plan::DISTRIBUTED_STAGE);
        let work = async {
            if distributed {
                crate::backend::batch_cluster::run_distributed(
                    self,
                    &stages[0],
                    progress,
                    &mut submitted,
                )
                .await
            } else {
                self.submit_and_follow(stages, progress, &mut submitted)
                    .await
            }
        };
        let result = tokio::select! {
            r = work => r,
            why = shutdown_signal() => Err(TaskFailure::of_stage(format!("interrupted by {why}"))),
        };
        if let Err(f) = &result
            && !submitted.is_empty()
        {
            progress.note(&format!(
                "terminating {} submitted job(s): {}",
                submitted.len(),
                submitted.join(", ")
            ));
            let reason = format!("chainbatch: {f}");
            let reason: String = reason.chars().take(200).collect();
            self.terminate(&submitted, &reason, progress).await;
        }
        result
    }

    async fn submit_and_follow(
        &self,
        stages: &[StageRun],
        progress: &Progress,
        submitted: &mut Vec<String>,
    ) -> Result<Vec<StageOutcome>, TaskFailure> {
        let fail = TaskFailure::of_stage;
        let mut jobs = vec![];
        for (i, stage) in stages.iter().enumerate() {
            let mut req = job_request(&self.settings, stage).map_err(fail)?;
            req.job_definition = self.definition.clone();
            let after = match i {
                0 => None,
                _ => Some((
                    submitted[i - 1].as_str(),
                    dependency(&stages[i - 1].specs, &stage.specs),
                )),
            };
            let id = self.submit(&req, after).await.map_err(fail)?;
            progress.note(&format!(
                "submitted {} as job {id} ({} task(s), {} vCPU, {} MiB)",
                req.job_name,
                stage.specs.len(),
                req.vcpus,
                req.memory_mib
            ));
            submitted.push(id.clone());
            jobs.push((id, req.array_size.is_some()));
        }
        let mut outcomes = vec![];
        for (stage, (job_id, is_array)) in stages.iter().zip(&jobs) {
            progress.stage(&stage.label(), stage.specs.len());
            let started = Instant::now();
            let manifests = self.follow(stage, job_id, *is_array, progress).await?;
            progress.stage_finished();
            outcomes.push(StageOutcome {
                manifests,
                seconds: started.elapsed().as_secs_f64(),
            });
        }
        Ok(outcomes)
    }

    /// Polls one stage's job until every child succeeded or one failed for
    /// good. A poll that fails (throttled, a network error) backs off and
    /// polls again; only errors that are neither throttling nor transient
    /// and persist for [`POLL_GIVE_UP`] fail the stage.
    async fn follow(
        &self,
        stage: &StageRun,
        job_id: &str,
        is_array: bool,
        progress: &Progress,
    ) -> Result<Vec<TaskManifest>, TaskFailure> {
        let child_id = |i: usize| match is_array {
            true => format!("{job_id}:{i}"),
            false => job_id.to_string(),
        };
        let index_of = |id: &str| -> Option<usize> {
            match is_array {
                true => id.rsplit_once(':')?.1.parse().ok(),
                false => (id == job_id).then_some(0),
            }
        };
        let mut manifests: Vec<Option<TaskManifest>> = vec![None; stage.specs.len()];
        let mut known: HashSet<String> = HashSet::new();
        let mut pause = Duration::from_secs(1);
        let max_pause = Duration::from_secs(self.settings.poll_seconds);
        let mut failing_since: Option<Instant> = None;
        loop {
            let pending: Vec<String> = (0..manifests.len())
                .filter(|&i| manifests[i].is_none())
                .map(child_id)
                .collect();
            if pending.is_empty() {
                return Ok(manifests
                    .into_iter()
                    .map(|m| m.expect("all done"))
                    .collect());
            }
            let finished = match self.poll(job_id, is_array, &known, &pending).await {
                Ok(f) => {
                    failing_since = None;
                    f
                }
                Err(e) => {
                    let since = *failing_since.get_or_insert_with(Instant::now);
                    if !e.transient && since.elapsed() >= POLL_GIVE_UP {
                        return Err(TaskFailure {
                            task_index: 0,
                            attempts: 0,
                            message: format!(
                                "polling job {job_id} failed for {} s: {}",
                                since.elapsed().as_secs(),
                                e.message
                            ),
                            retryable: true,
                        });
                    }
                    // Back off harder than a quiet poll: the API asked for it.
                    pause = (pause * 2).min(max_pause.max(Duration::from_secs(60)));
                    progress.note(&format!(
                        "polling job {job_id} failed, polling again in {} s: {}",
                        pause.as_secs(),
                        e.message
                    ));
                    tokio::time::sleep(pause).await;
                    continue;
                }
            };
            let mut progressed = false;
            for d in &finished {
                let Some(id) = d.job_id() else { continue };
                let Some(i) = index_of(id).filter(|&i| i < manifests.len()) else {
                    continue;
                };
                if manifests[i].is_some() {
                    continue;
                }
                let attempts = d.attempts().len();
                for (n, a) in d
                    .attempts()
                    .iter()
                    .enumerate()
                    .take(attempts.saturating_sub(1))
                {
                    progress.note(&format!(
                        "task {i} attempt {} failed, Batch retried it: {}",
                        n + 1,
                        attempt_reason(a)
                    ));
                }
                match d.status() {
                    Some(JobStatus::Succeeded) => {
                        let m = read_child_manifest(&stage.specs[i], attempts as u32).await?;
                        progress.task_done(m.rows, m.bytes);
                        manifests[i] = Some(m);
                        known.insert(id.to_string());
                        progressed = true;
                    }
                    Some(JobStatus::Failed) => {
                        return Err(TaskFailure {
                            task_index: i as u32,
                            attempts: attempts as u32,
                            message: failure_reason(d),
                            retryable: last_exit_code(d) != Some(EXIT_BAD_SPEC),
                        });
                    }
                    _ => {}
                }
            }
            if progressed {
                pause = Duration::from_secs(1);
            } else {
                tokio::time::sleep(pause).await;
                pause = (pause * 3 / 2).min(max_pause);
            }
        }
    }
}

/// The manifest of a child that succeeded: in the attempt Batch reports, or
/// failing that the highest attempt holding one.
async fn read_child_manifest(spec: &TaskSpec, attempts: u32) -> Result<TaskManifest, TaskFailure> {
    let reported = crate::commit::read_manifest(&spec.attempt_dir(attempts.max(1))).await;
    let found = match reported {
        Ok(m) => Ok(Some(m)),
        Err(_) => crate::backend::resume::finished(spec).await,
    };
    match found {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err("no attempt holds a manifest".to_string()),
        Err(e) => Err(e),
    }
    .map_err(|e| TaskFailure {
        task_index: spec.task_index,
        attempts,
        message: format!("Batch reports success but no manifest was found: {e}"),
        retryable: true,
    })
}

fn attempt_reason(a: &aws_sdk_batch::types::AttemptDetail) -> String {
    let mut parts = vec![];
    if let Some(r) = a.status_reason() {
        parts.push(r.to_string());
    }
    if let Some(c) = a.container() {
        if let Some(code) = c.exit_code() {
            parts.push(format!("exit code {code}"));
        }
        if let Some(r) = c.reason() {
            parts.push(r.to_string());
        }
        if let Some(l) = c.log_stream_name() {
            parts.push(format!("log stream {l}"));
        }
    }
    if parts.is_empty() {
        "no reason given".into()
    } else {
        parts.join("; ")
    }
}

/// The exit code of a child's last attempt, if its container ran.
fn last_exit_code(d: &JobDetail) -> Option<i32> {
    d.attempts()
        .last()
        .and_then(|a| a.container())
        .and_then(|c| c.exit_code())
        .or_else(|| d.container().and_then(|c| c.exit_code()))
}

/// Why a child failed for good: its status reason, and its last attempt's
/// exit code and log stream.
pub(crate) fn failure_reason(d: &JobDetail) -> String {
    let mut parts = vec![format!(
        "job {} FAILED: {}",
        d.job_id().unwrap_or("?"),
        d.status_reason().unwrap_or("no reason given")
    )];
    if let Some(last) = d.attempts().last() {
        parts.push(attempt_reason(last));
    } else if let Some(c) = d.container() {
        if let Some(code) = c.exit_code() {
            parts.push(format!("exit code {code}"));
        }
        if let Some(r) = c.reason() {
            parts.push(r.to_string());
        }
    }
    parts.join("; ")
}

/// Resolves on Ctrl-C or SIGTERM, naming which.
async fn shutdown_signal() -> &'static str {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => "Ctrl-C",
        _ = term.recv() => "SIGTERM",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> BatchSettings {
        serde_norway::from_str("job_queue: q\njob_definition: d\n").unwrap()
    }

    #[test]
    fn memory_follows_the_task_budget_with_a_floor() {
        let s = settings();
        let mut spec: TaskSpec = serde_json::from_value(serde_json::json!({
            "version": 1, "run_id": "r", "stage_id": 0, "task_index": 0,
            "inputs": [], "sql": "SELECT 1",
            "output": {"kind": "table", "table_uri": "/t", "staging_uri": "/s",
                       "layout": {}}
        }))
        .unwrap();
        spec.resources.memory_bytes = 512 << 20;
        assert_eq!(s.memory_for(std::slice::from_ref(&spec)), 2048);
        spec.resources.memory_bytes = 4096 << 20;
        assert_eq!(s.memory_for(&[spec]), 4096 + 1024);
    }

    #[test]
    fn job_names_are_what_batch_accepts() {
        let n = job_name("2024-05-01.daily", "clean tx", 3);
        assert_eq!(n, "chainbatch-2024-05-01-daily-clean-tx-s3");
        assert!(job_name(&"x".repeat(300), "n", 0).len() <= 128);
    }

    #[test]
    fn vcpus_print_as_batch_wants_them() {
        assert_eq!(vcpus_text(2.0), "2");
        assert_eq!(vcpus_text(0.25), "0.25");
        assert_eq!(vcpus_text(0.5), "0.5");
    }

    fn task(stage: u32, index: u32, reads: &[String]) -> TaskSpec {
        let files: Vec<serde_json::Value> = reads
            .iter()
            .map(|u| serde_json::json!({"uri": u}))
            .collect();
        serde_json::from_value(serde_json::json!({
            "version": 1, "run_id": "r", "stage_id": stage, "task_index": index,
            "inputs": [{"name": "t", "format": "parquet", "files": files}],
            "sql": "SELECT 1",
            "output": {"kind": "table", "table_uri": "/t", "staging_uri": "/s", "layout": {}}
        }))
        .unwrap()
    }

    #[test]
    fn a_stage_reading_only_its_twin_tasks_output_depends_n_to_n() {
        let prev = vec![task(0, 0, &[]), task(0, 1, &[])];
        let own = |i: u32| format!("{}/attempt-1/part-0.parquet", prev[i as usize].task_dir());
        let twin = vec![task(1, 0, &[own(0)]), task(1, 1, &[own(1)])];
        assert_eq!(dependency(&prev, &twin), Dependency::OneToOne);
        let crossed = vec![task(1, 0, &[own(0), own(1)]), task(1, 1, &[own(1)])];
        assert_eq!(dependency(&prev, &crossed), Dependency::Whole);
        let elsewhere = vec![
            task(1, 0, &["/raw/a.parquet".into()]),
            task(1, 1, &[own(1)]),
        ];
        assert_eq!(dependency(&prev, &elsewhere), Dependency::Whole);
        assert_eq!(dependency(&prev, &twin[..1]), Dependency::Whole);
    }

    #[test]
    fn fargate_sizes_round_up_to_valid_pairs() {
        assert_eq!(fargate_size(1.0, 1536), Ok((1.0, 2048)));
        assert_eq!(fargate_size(2.0, 2048), Ok((2.0, 4096)));
        assert_eq!(fargate_size(2.0, 5000), Ok((2.0, 5120)));
        // More memory than 2 vCPUs can have: 4 vCPUs.
        assert_eq!(fargate_size(2.0, 20000), Ok((4.0, 20480)));
        assert_eq!(fargate_size(0.25, 1100), Ok((0.25, 2048)));
        assert_eq!(fargate_size(8.0, 40000), Ok((8.0, 40960)));
        assert!(
            fargate_size(16.0, 200_000)
                .unwrap_err()
                .contains("batch.platform: ec2")
        );
    }

    #[test]
    fn stage_vcpus_follow_the_largest_tasks_bytes() {
        let mut s = settings();
        s.vcpus = 4.0;
        let spec = |bytes: u64| -> TaskSpec {
            serde_json::from_value(serde_json::json!({
                "version": 1, "run_id": "r", "stage_id": 0, "task_index": 0,
                "inputs": [{"name": "t", "format": "parquet",
                            "files": [{"uri": "/a.parquet", "size": bytes}]}],
                "sql": "SELECT 1",
                "output": {"kind": "table", "table_uri": "/t", "staging_uri": "/s",
                           "layout": {}}
            }))
            .unwrap()
        };
        let mib = 1024 * 1024;
        assert_eq!(s.stage_size(&[spec(10 * mib)], 0), Ok((1.0, 2048)));
        assert_eq!(
            s.stage_size(&[spec(10 * mib), spec(200 * mib)], 0),
            Ok((2.0, 4096))
        );
        assert_eq!(s.stage_size(&[spec(4000 * mib)], 0), Ok((4.0, 8192)));
        s.platform = Platform::Ec2;
        assert_eq!(s.stage_size(&[spec(200 * mib)], 0), Ok((2.0, 2048)));
    }

    #[test]
    fn retry_strategy_retries_lost_hosts_start_failures_and_retryable_codes_only() {
        let r = retry_strategy(3);
        assert_eq!(r.attempts(), Some(3));
        let rules: Vec<(String, String)> = r
            .evaluate_on_exit()
            .iter()
            .map(|e| {
                let on = e
                    .on_status_reason()
                    .map(|s| format!("status:{s}"))
                    .or(e.on_exit_code().map(|s| format!("exit:{s}")))
                    .or(e.on_reason().map(|s| format!("reason:{s}")))
                    .unwrap();
                (on, e.action().unwrap().as_str().to_string())
            })
            .collect();
        assert_eq!(
            rules,
            vec![
                ("status:Host EC2*".into(), "RETRY".into()),
                (
                    "status:Your Spot Task was interrupted*".into(),
                    "RETRY".into()
                ),
                ("status:Task failed to start".into(), "RETRY".into()),
                ("exit:4".into(), "RETRY".into()),
                ("reason:*".into(), "EXIT".into()),
            ]
        );
    }

    /// AWS: at most 5 rules; onExitCode digits, onReason and onStatusReason
    /// letters, digits, periods, colons and white space; at most 512
    /// characters; a `*` only at the end.
    #[test]
    fn retry_rules_are_what_batch_accepts() {
        let r = retry_strategy(10);
        assert!(r.evaluate_on_exit().len() <= 5);
        let valid = |p: &str, ok: fn(char) -> bool| {
            let body = p.strip_suffix('*').unwrap_or(p);
            p.len() <= 512 && body.chars().all(ok)
        };
        for e in r.evaluate_on_exit() {
            for p in [e.on_status_reason(), e.on_reason()].into_iter().flatten() {
                assert!(
                    valid(p, |c| c.is_ascii_alphanumeric()
                        || c == '.'
                        || c == ':'
                        || c.is_whitespace()),
                    "{p}"
                );
            }
            if let Some(p) = e.on_exit_code() {
                assert!(valid(p, |c| c.is_ascii_digit()), "{p}");
            }
        }
    }

    #[test]
    fn job_definitions_are_asked_for_as_the_api_documents() {
        let name = |d: &str| DefinitionRef::parse(d);
        assert_eq!(
            name("chainbatch-executor"),
            Ok(DefinitionRef::Name("chainbatch-executor".into()))
        );
        assert_eq!(
            name("chainbatch-executor:7"),
            Ok(DefinitionRef::Exact("chainbatch-executor:7".into()))
        );
        let arn = "arn:aws:batch:us-east-2:123456789012:job-definition/chainbatch-executor:7";
        assert_eq!(name(arn), Ok(DefinitionRef::Exact(arn.into())));
        for bad in ["", "a:b", "a:", "x y", "arn:aws:batch:x:1:job-queue/q"] {
            assert!(name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ec2_stages_take_whole_vcpus_and_unrounded_memory() {
        let mut s = settings();
        s.platform = Platform::Ec2;
        s.vcpus = 4.0;
        s.memory_mib = 3000;
        let spec: TaskSpec = serde_json::from_value(serde_json::json!({
            "version": 1, "run_id": "r", "stage_id": 0, "task_index": 0,
            "inputs": [{"name": "t", "format": "parquet",
                        "files": [{"uri": "/a.parquet", "size": 10}]}],
            "sql": "SELECT 1",
            "output": {"kind": "table", "table_uri": "/t", "staging_uri": "/s", "layout": {}}
        }))
        .unwrap();
        assert_eq!(
            s.stage_size(std::slice::from_ref(&spec), 0),
            Ok((1.0, 3000))
        );
        s.vcpus = 0.5;
        assert_eq!(s.stage_size(&[spec], 0), Ok((1.0, 3000)));
    }
}
