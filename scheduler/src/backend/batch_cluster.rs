//! Distributed nodes on `--backend batch`: the driver embeds the Ballista
//! scheduler and submits an executor array job whose containers join it
//! (they get the scheduler's address in their environment). The cluster
//! lives for the node's job and is terminated with it: when the job ends,
//! fails, or the driver gets Ctrl-C or SIGTERM. Ballista then never has to
//! cancel a running job's tasks on executors that outlive it.

use crate::backend::ballista::Cluster;
use crate::backend::batch::{
    BatchBackend, BatchSettings, JobRequest, Platform, fargate_size, job_name,
};
use crate::backend::{StageOutcome, StageRun, TaskFailure};
use crate::progress::Progress;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// `batch.ballista` in globals.yml: the executor containers of distributed
/// nodes.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct BatchBallista {
    /// Executor containers (the array job's size).
    pub executors: usize,
    /// vCPUs per executor container; each runs this many tasks at once.
    pub vcpus: f64,
    /// Memory per executor container, MiB. Its Ballista memory pool is this
    /// less `batch.memory_overhead_mib`; beyond the pool, joins, aggregates
    /// and sorts spill to the container's ephemeral storage.
    pub memory_mib: u64,
    /// The address executor containers reach the driver at; default: the
    /// address of the driver's own route out (its ENI on Batch).
    pub scheduler_host: Option<String>,
    /// The embedded scheduler's gRPC port (the security group allows it
    /// within the group).
    pub scheduler_port: u16,
    /// Executors' Arrow Flight port, fetched by the other executors and the
    /// driver (0: any free port, for executors sharing one host).
    pub flight_port: u16,
    /// Executors' gRPC port (0: any free port).
    pub grpc_port: u16,
    /// How long executors may take to start and register: Batch may need to
    /// scale the compute environment up first.
    pub register_timeout_seconds: u64,
}

impl Default for BatchBallista {
    fn default() -> Self {
        Self {
            executors: 4,
            vcpus: 2.0,
            memory_mib: 8192,
            scheduler_host: None,
            scheduler_port: 50050,
            flight_port: 50051,
            grpc_port: 50052,
            register_timeout_seconds: 900,
        }
    }
}

/// vCPUs and memory (MiB) of an executor container, as the platform runs them.
pub fn executor_size(s: &BatchSettings) -> Result<(f64, u64), String> {
    let b = &s.ballista;
    match s.platform {
        Platform::Ec2 => Ok((b.vcpus.ceil().max(1.0), b.memory_mib)),
        Platform::Fargate => fargate_size(b.vcpus, b.memory_mib),
    }
}

/// The executor array job for a distributed stage whose scheduler listens at
/// `scheduler` (host:port), of containers of `size` (see [`executor_size`]).
pub fn executor_job_request(
    backend: &BatchBackend,
    stage: &StageRun,
    scheduler: &str,
    (vcpus, memory_mib): (f64, u64),
) -> JobRequest {
    let s = backend.settings();
    let b = &s.ballista;
    let run_id = stage
        .specs
        .first()
        .map(|s| s.run_id.clone())
        .unwrap_or_default();
    let pool_mib = memory_mib.saturating_sub(s.memory_overhead_mib).max(256);
    let mut tags = s.tags.clone();
    tags.insert("chainbatch:run".into(), run_id.clone());
    tags.insert("chainbatch:node".into(), stage.node.clone());
    tags.insert("chainbatch:stage".into(), stage.stage_id.to_string());
    tags.insert("chainbatch:role".into(), "ballista-executor".into());
    let environment = BTreeMap::from([
        ("CHAINBATCH_RUN_ID".to_string(), run_id.clone()),
        ("CHAINBATCH_NODE".to_string(), stage.node.clone()),
        ("CHAINBATCH_STAGE".to_string(), stage.stage_id.to_string()),
        (
            "CHAINBATCH_BALLISTA_SCHEDULER".to_string(),
            scheduler.to_string(),
        ),
        (
            "CHAINBATCH_BALLISTA_VCORES".to_string(),
            whole_vcores(vcpus).to_string(),
        ),
        (
            "CHAINBATCH_BALLISTA_MEMORY_MIB".to_string(),
            pool_mib.to_string(),
        ),
        (
            "CHAINBATCH_BALLISTA_FLIGHT_PORT".to_string(),
            b.flight_port.to_string(),
        ),
        (
            "CHAINBATCH_BALLISTA_GRPC_PORT".to_string(),
            b.grpc_port.to_string(),
        ),
        (
            "CHAINBATCH_BALLISTA_WORK_DIR".to_string(),
            "/tmp/chainbatch-ballista".to_string(),
        ),
    ]);
    JobRequest {
        job_name: job_name(
            &run_id,
            &format!("{}-executors", stage.node),
            stage.stage_id,
        ),
        job_queue: s.job_queue.clone(),
        job_definition: backend.definition().to_string(),
        array_size: (b.executors > 1).then_some(b.executors),
        command: vec!["ballista".into()],
        environment,
        vcpus: crate::backend::batch::vcpus_text(vcpus),
        memory_mib,
        attempts: stage.max_attempts.clamp(1, 10),
        timeout_seconds: s.job_timeout_seconds,
        tags,
    }
}

/// Tasks an executor container of `vcpus` runs at once.
fn whole_vcores(vcpus: f64) -> usize {
    (vcpus.ceil() as usize).max(1)
}

/// Runs a distributed stage: scheduler here, executors on Batch.
pub async fn run_distributed(
    backend: &BatchBackend,
    stage: &StageRun,
    progress: &Progress,
    submitted: &mut Vec<String>,
) -> Result<Vec<StageOutcome>, TaskFailure> {
    let fail = TaskFailure::of_stage;
    let b = backend.settings().ballista.clone();
    let host = match &b.scheduler_host {
        Some(h) => h.clone(),
        // Any address outside this host picks the route (nothing is sent).
        None => chainbatch_executor::distributed::net::route_address("192.0.2.1", 9).map_err(|e| {
            fail(format!(
                "cannot tell the driver's address for the executor containers ({e}); set batch.ballista.scheduler_host"
            ))
        })?,
    };
    if backend.settings().platform == Platform::Ec2 {
        // EC2 containers share their instance's network: executors on one
        // instance would collide on their ports and advertise its bridge.
        return Err(TaskFailure {
            retryable: false,
            ..fail(format!(
                "node `{}` is distributed: its Ballista executors need a network interface each, which batch.platform: ec2 does not give; run it on a fargate queue or with --backend ballista --ballista-url",
                stage.node
            ))
        });
    }
    // Sized first: a bad size fails before anything starts.
    let size = executor_size(backend.settings()).map_err(|message| TaskFailure {
        retryable: false,
        ..fail(message)
    })?;
    let vcores = whole_vcores(size.0);
    // Executors poll every few seconds when busy, across a VPC: a minute
    // without a poll means a lost container.
    let mut cluster = Cluster::start_scheduler(
        "0.0.0.0",
        b.scheduler_port,
        &host,
        b.executors * vcores,
        Duration::from_secs(60),
    )
    .await
    .map_err(|e| fail(e.to_string()))?;
    let scheduler = format!("{host}:{}", cluster.scheduler.port);
    let req = executor_job_request(backend, stage, &scheduler, size);
    let id = backend.submit(&req, None).await.map_err(fail)?;
    submitted.push(id.clone());
    progress.note(&format!(
        "submitted {} as job {id}: {} Ballista executor(s) of {} vCPU, {} MiB joining {scheduler}",
        req.job_name, b.executors, req.vcpus, req.memory_mib
    ));
    progress.stage(&stage.label(), stage.specs.len());
    let started = Instant::now();
    // Executors register once Batch has started them; a job that failed
    // first (no capacity, a bad image) ends the wait.
    let deadline = Instant::now() + Duration::from_secs(b.register_timeout_seconds);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = left.min(Duration::from_secs(5));
        match cluster.wait_for_executors(b.executors, wait).await {
            Ok(()) => break,
            Err(e) if left <= wait => return Err(fail(format!("executor job {id}: {e}"))),
            Err(_) => {}
        }
        if let Ok(details) = backend.describe(std::slice::from_ref(&id)).await
            && let Some(d) = details
                .iter()
                .find(|d| d.status() == Some(&aws_sdk_batch::types::JobStatus::Failed))
        {
            return Err(fail(format!(
                "the Ballista executors never joined: {}",
                crate::backend::batch::failure_reason(d)
            )));
        }
    }
    let manifests = cluster.run_stage(stage, progress).await?;
    progress.stage_finished();
    backend
        .terminate(
            std::slice::from_ref(&id),
            "chainbatch: the distributed stage finished",
            progress,
        )
        .await;
    submitted.retain(|s| *s != id);
    Ok(vec![StageOutcome {
        manifests,
        seconds: started.elapsed().as_secs_f64(),
    }])
}
