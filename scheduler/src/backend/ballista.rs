//! The Ballista backend: every stage runs as a Ballista job on the
//! cluster's executors. A distributed node is one physical plan that
//! Ballista cuts into stages at its repartitions; any other stage (map-only,
//! per-partition, a shuffle's two sides) is a job of its task specs, one per
//! partition, each run on an executor as the local backend runs it.
//!
//! The cluster comes from one of two places, behind one code path (jobs are
//! always submitted over gRPC to a scheduler address):
//! - embedded (`--backend ballista`): the driver starts a Ballista scheduler
//!   in-process on 127.0.0.1 and `--executors N` `chainbatch-executor
//!   ballista` child processes, and stops them when the run ends, fails or
//!   is interrupted (the children die with the driver even on SIGKILL);
//! - an existing cluster (`--ballista-url df://host:50050`) whose executors
//!   run chainbatch's executor image.

use crate::backend::process::{die_with_parent, executor_binary};
use crate::backend::{AttemptFailure, StageRun, TaskFailure, retry_attempts, with_retries};
use crate::progress::Progress;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_process::{create_scheduler, start_grpc_service_with_listener};
use chainbatch_executor::TaskManifest;
use chainbatch_executor::distributed::SCHEDULING_POLICY;
use chainbatch_executor::distributed::codec::DistributedCodec;
use chainbatch_executor::distributed::executor::session_config;
use chainbatch_executor::distributed::job::{DistributedJob, SchedulerAddress};
use chainbatch_executor::distributed::net::pick_port;
use datafusion::execution::FunctionRegistry;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How the embedded cluster is sized.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    pub executors: usize,
    /// Tasks each executor runs at once.
    pub vcores: usize,
    /// Each executor's memory pool.
    pub memory_bytes: u64,
}

/// Fewest partitions a distributed plan gets, even on one executor slot
/// (Ballista queues the extra tasks): with one partition DataFusion joins
/// with a hash join whose build side must fit in memory; with two or more
/// joins sort-merge and spill within the pool.
pub const MIN_PARTITIONS: usize = 2;

/// A cluster ready to take jobs.
pub struct Cluster {
    pub scheduler: SchedulerAddress,
    /// Partitions of a distributed node's stages.
    pub partitions: usize,
    /// What one task slot of an embedded executor has: a task spec run
    /// there gets its cores and memory. `None` on an existing cluster,
    /// whose tasks keep the spec's settings.
    slot: Option<TaskSlot>,
    embedded: Option<Embedded>,
}

/// One task slot of an executor.
#[derive(Debug, Clone, Copy)]
struct TaskSlot {
    parallelism: usize,
    memory_bytes: u64,
}

struct Embedded {
    server: tokio::task::JoinHandle<()>,
    executor_timeout: Duration,
    state: Arc<ballista_scheduler::state::SchedulerState<LogicalPlanNode, PhysicalPlanNode>>,
    executors: Vec<tokio::process::Child>,
    /// Each executor's standard error, for errors.
    logs: Vec<std::path::PathBuf>,
    work_dir: tempfile::TempDir,
}

impl Embedded {
    /// SIGTERM lets each executor deregister (and a containerised one
    /// remove its container); SIGKILL follows for any still running.
    async fn stop(&mut self) {
        self.server.abort();
        for child in &self.executors {
            if let Some(pid) = child.id() {
                // SAFETY: signalling a child process this driver started.
                unsafe {
                    libc::kill(pid as i32, libc::SIGTERM);
                }
            }
        }
        let deadline = Instant::now() + Duration::from_secs(3);
        for child in &mut self.executors {
            let left = deadline.saturating_duration_since(Instant::now());
            if tokio::time::timeout(left, child.wait()).await.is_err() {
                let _ = child.start_kill();
            }
        }
    }
}

impl Drop for Embedded {
    /// A run that ended early (an error before `shutdown`): no waiting.
    fn drop(&mut self) {
        self.server.abort();
        for child in &mut self.executors {
            let _ = child.start_kill();
        }
    }
}

/// Why a cluster could not be started or reached.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("--ballista-url: {0}")]
    BadUrl(String),
    #[error("cannot start the embedded Ballista scheduler: {0}")]
    Scheduler(String),
    #[error("cannot start Ballista executor {index} ({exe}): {reason}")]
    Executor {
        index: usize,
        exe: String,
        reason: String,
    },
    #[error(
        "the Ballista executors did not all register with the scheduler ({registered} of {expected}: {why}); their last output:\n{output}"
    )]
    ExecutorsMissing {
        why: String,
        registered: usize,
        expected: usize,
        output: String,
    },
    #[error("cannot reach the Ballista scheduler at {url}: {reason}")]
    Unreachable { url: String, reason: String },
}

impl Cluster {
    /// An existing cluster: checks that its scheduler answers.
    pub async fn connect(url: &str, partitions: usize) -> Result<Self, ClusterError> {
        let scheduler = SchedulerAddress::parse(url).map_err(ClusterError::BadUrl)?;
        let addr = format!("{}:{}", scheduler.host, scheduler.port);
        match tokio::time::timeout(
            Duration::from_secs(10),
            tokio::net::TcpStream::connect(&addr),
        )
        .await
        {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(ClusterError::Unreachable {
                    url: scheduler.to_string(),
                    reason: e.to_string(),
                });
            }
            Err(_) => {
                return Err(ClusterError::Unreachable {
                    url: scheduler.to_string(),
                    reason: "no answer within 10 s".into(),
                });
            }
        }
        Ok(Self {
            scheduler,
            partitions: partitions.max(MIN_PARTITIONS),
            slot: None,
            embedded: None,
        })
    }

    /// Starts a scheduler in this process, listening on `bind_host:port`
    /// (port 0: any free port) and known to executors as `advertised_host`.
    /// An executor not heard from in `executor_timeout` is lost: its tasks
    /// and the shuffle output they wrote are run again elsewhere.
    pub async fn start_scheduler(
        bind_host: &str,
        port: u16,
        advertised_host: &str,
        partitions: usize,
        executor_timeout: Duration,
    ) -> Result<Self, ClusterError> {
        let sched = |e: &dyn std::fmt::Display| ClusterError::Scheduler(e.to_string());
        let listener = tokio::net::TcpListener::bind((bind_host, port))
            .await
            .map_err(|e| sched(&format!("cannot listen on {bind_host}:{port}: {e}")))?;
        let port = listener.local_addr().map_err(|e| sched(&e))?.port();
        let mut config = SchedulerConfig::default()
            .with_hostname(advertised_host)
            .with_port(port)
            .with_scheduler_policy(SCHEDULING_POLICY);
        config.executor_timeout_seconds = executor_timeout.as_secs().max(1);
        config.expire_dead_executor_interval_seconds = (executor_timeout.as_secs() / 5).max(1);
        config.no_executors_grace_period_seconds = executor_timeout.as_secs().max(1);
        config.override_physical_codec = Some(Arc::new(DistributedCodec::default()));
        config.override_config_producer = Some(Arc::new(session_config));
        // The scheduler decodes plans that name chainbatch's functions and
        // the stores of their files (s3://bucket), as executors do.
        config.override_session_builder = Some(Arc::new(|cfg| {
            let state = ballista_core::utils::default_session_builder(cfg)?;
            let runtime = datafusion::execution::runtime_env::RuntimeEnvBuilder::new()
                .with_object_store_registry(Arc::new(chainbatch_executor::storage::StoreRegistry))
                .build_arc()?;
            let mut state = datafusion::execution::SessionStateBuilder::new_from_existing(state)
                .with_runtime_env(runtime)
                .build();
            for f in chainbatch_executor::udf::all() {
                state.register_udf(f)?;
            }
            Ok(state)
        }));
        let cluster = BallistaCluster::new_from_config(&config)
            .await
            .map_err(|e| sched(&e))?;
        let server =
            create_scheduler::<LogicalPlanNode, PhysicalPlanNode>(cluster, Arc::new(config))
                .await
                .map_err(|e| sched(&e))?;
        let state = server.state.clone();
        let handle = tokio::spawn(async move {
            if let Err(e) = start_grpc_service_with_listener(listener, server).await {
                eprintln!("chainbatch: the embedded Ballista scheduler stopped: {e}");
            }
        });
        let work_dir = tempfile::Builder::new()
            .prefix("chainbatch-ballista-")
            .tempdir()
            .map_err(|e| sched(&e))?;
        Ok(Self {
            scheduler: SchedulerAddress {
                host: advertised_host.to_string(),
                port,
            },
            partitions: partitions.max(MIN_PARTITIONS),
            slot: None,
            embedded: Some(Embedded {
                server: handle,
                state,
                executor_timeout,
                executors: vec![],
                logs: vec![],
                work_dir,
            }),
        })
    }

    /// Starts a scheduler on 127.0.0.1 and `opts.executors` executor
    /// processes, and waits until every executor has registered.
    pub async fn start_embedded(opts: &EmbeddedOptions) -> Result<Self, ClusterError> {
        let executors = opts.executors.max(1);
        // On one host an executor that stops answering is gone: noticed in
        // seconds, and its tasks re-run.
        let mut cluster = Self::start_scheduler(
            "127.0.0.1",
            0,
            "127.0.0.1",
            executors * opts.vcores.max(1),
            Duration::from_secs(15),
        )
        .await?;
        let port = cluster.scheduler.port;
        // Ballista gives each task an equal share of the executor's pool.
        cluster.slot = Some(TaskSlot {
            parallelism: 1,
            memory_bytes: opts.memory_bytes / opts.vcores.max(1) as u64,
        });
        let embedded = cluster.embedded.as_mut().expect("just started");
        let exe = executor_binary();
        for index in 0..executors {
            let spawn_err = |reason: String| ClusterError::Executor {
                index,
                exe: exe.display().to_string(),
                reason,
            };
            let dir = embedded.work_dir.path().join(format!("executor-{index}"));
            let log_path = embedded
                .work_dir
                .path()
                .join(format!("executor-{index}.log"));
            let log = std::fs::File::create(&log_path).map_err(|e| spawn_err(e.to_string()))?;
            let flight = pick_port(0).map_err(|e| spawn_err(e.to_string()))?;
            let grpc = pick_port(0).map_err(|e| spawn_err(e.to_string()))?;
            let mut command = tokio::process::Command::new(&exe);
            command
                .arg("ballista")
                .args(["--scheduler", &format!("127.0.0.1:{port}")])
                .args(["--bind-host", "127.0.0.1", "--external-host", "127.0.0.1"])
                .args(["--flight-port", &flight.to_string()])
                .args(["--grpc-port", &grpc.to_string()])
                .args(["--vcores", &opts.vcores.max(1).to_string()])
                .args([
                    "--memory-mib",
                    &(opts.memory_bytes / (1024 * 1024)).max(64).to_string(),
                ])
                .arg("--work-dir")
                .arg(&dir)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .kill_on_drop(true);
            die_with_parent(&mut command);
            let child = command.spawn().map_err(|e| spawn_err(e.to_string()))?;
            embedded.executors.push(child);
            embedded.logs.push(log_path);
        }
        cluster
            .wait_for_executors(executors, Duration::from_secs(60))
            .await?;
        Ok(cluster)
    }

    /// Waits until `expected` executors have registered with the embedded
    /// scheduler, or fails naming what the executors said.
    pub async fn wait_for_executors(
        &mut self,
        expected: usize,
        timeout: Duration,
    ) -> Result<(), ClusterError> {
        let embedded = self.embedded.as_mut().expect("an embedded scheduler");
        let deadline = Instant::now() + timeout;
        loop {
            let registered = embedded
                .state
                .executor_manager
                .get_executors_state()
                .await
                .map(|s| s.len())
                .unwrap_or(0);
            if registered >= expected {
                return Ok(());
            }
            let exited = embedded
                .executors
                .iter_mut()
                .any(|c| matches!(c.try_wait(), Ok(Some(_))));
            if exited || Instant::now() > deadline {
                let output = embedded
                    .logs
                    .iter()
                    .map(|p| {
                        let text = std::fs::read_to_string(p).unwrap_or_default();
                        let tail: Vec<&str> = text.lines().rev().take(5).collect();
                        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                    })
                    .collect::<Vec<_>>()
                    .join("\n");
                return Err(ClusterError::ExecutorsMissing {
                    why: if exited {
                        "an executor exited".into()
                    } else {
                        format!("waited {} s", timeout.as_secs())
                    },
                    registered,
                    expected,
                    output,
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Stops the embedded scheduler and executors, if any.
    pub async fn shutdown(mut self) {
        if let Some(e) = self.embedded.as_mut() {
            e.stop().await;
        }
    }

    /// Fails when the embedded scheduler has no live executor: a job would
    /// wait for one forever.
    async fn check_executors_alive(&self) -> Result<(), String> {
        let Some(e) = &self.embedded else {
            return Ok(());
        };
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        let states = e
            .state
            .executor_manager
            .get_executors_state()
            .await
            .map_err(|err| err.to_string())?;
        let alive = states
            .iter()
            .filter(|(_, heartbeat, _)| {
                heartbeat.is_some_and(|h| now.saturating_sub(h) < e.executor_timeout)
            })
            .count();
        if alive == 0 {
            return Err(format!(
                "no Ballista executor of the scheduler {} is alive ({} registered, none heard from in {} s)",
                self.scheduler,
                states.len(),
                e.executor_timeout.as_secs()
            ));
        }
        Ok(())
    }

    /// The embedded executors' process ids (for tests and progress).
    pub fn executor_pids(&self) -> Vec<u32> {
        self.embedded
            .as_ref()
            .map(|e| e.executors.iter().filter_map(|c| c.id()).collect())
            .unwrap_or_default()
    }

    /// Runs a distributed stage (one spec) as a Ballista job, retrying it as
    /// a whole when it fails in a way another attempt may mend.
    pub async fn run_stage(
        &self,
        stage: &StageRun,
        progress: &Progress,
    ) -> Result<Vec<TaskManifest>, TaskFailure> {
        let mut out = vec![];
        for spec in &stage.specs {
            let job = DistributedJob {
                scheduler: self.scheduler.clone(),
                partitions: self.partitions,
                name: format!("chainbatch {} {}", spec.run_id, stage.node),
            };
            let m = with_retries(stage, progress, spec.task_index, |attempt| {
                let job = job.clone();
                async move {
                    self.check_executors_alive()
                        .await
                        .map_err(|message| AttemptFailure {
                            retryable: false,
                            message,
                        })?;
                    chainbatch_executor::distributed::job::run(spec, attempt, &job)
                        .await
                        .map_err(|e| AttemptFailure {
                            retryable: e.is_retryable(),
                            message: e.to_string(),
                        })
                }
            })
            .await?;
            out.push(m);
        }
        Ok(out)
    }

    /// Runs a stage of task specs (map-only, per-partition, a shuffle's
    /// map or reduce side) on the executors as one Ballista job, a spec per
    /// partition. A job that fails in a way another attempt may mend is
    /// submitted again with the tasks that left no manifest.
    pub async fn run_task_stage(
        &self,
        stage: &StageRun,
        progress: &Progress,
    ) -> Result<Vec<TaskManifest>, TaskFailure> {
        let specs: Vec<_> = stage
            .specs
            .iter()
            .map(|s| {
                let mut s = s.clone();
                if let Some(slot) = self.slot {
                    s.resources.parallelism = slot.parallelism;
                    s.resources.memory_bytes = slot.memory_bytes;
                }
                s
            })
            .collect();
        let job = DistributedJob {
            scheduler: self.scheduler.clone(),
            partitions: self.partitions,
            name: format!(
                "chainbatch {} {} stage {}",
                specs.first().map(|s| s.run_id.as_str()).unwrap_or(""),
                stage.node,
                stage.stage_id
            ),
        };
        progress.note(&format!(
            "{}: {} task(s) as Ballista job {:?}",
            stage.label(),
            specs.len(),
            job.name
        ));
        let what = format!("the Ballista job of {}", stage.label());
        let manifests = retry_attempts(stage, progress, &what, 0, |attempt| {
            let (job, specs) = (job.clone(), &specs);
            async move {
                let fail =
                    |retryable: bool| move |message: String| AttemptFailure { retryable, message };
                self.check_executors_alive().await.map_err(fail(false))?;
                // Tasks an earlier attempt of the job finished are not run again.
                let mut done = Vec::with_capacity(specs.len());
                let mut left = vec![];
                for spec in specs {
                    let finished = match attempt {
                        1 => None,
                        _ => crate::backend::resume::finished(spec)
                            .await
                            .map_err(fail(true))?,
                    };
                    match finished {
                        Some(m) => done.push(m),
                        None => left.push(spec.clone()),
                    }
                }
                let ran = chainbatch_executor::distributed::tasks::run(&left, attempt, &job)
                    .await
                    .map_err(|e| AttemptFailure {
                        retryable: e.is_retryable(),
                        message: e.to_string(),
                    })?;
                done.extend(ran);
                done.sort_by_key(|m| m.task_index);
                Ok(done)
            }
        })
        .await?;
        for m in &manifests {
            progress.task_done(m.rows, m.bytes);
        }
        Ok(manifests)
    }
}

/// One stage of a distributed node as Ballista will run it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BallistaStage {
    pub stage_id: usize,
    /// Tasks of the stage (its input partitions).
    pub tasks: usize,
    /// How the stage's output is shuffled to the next: `hash(cols) into N`,
    /// or `writes the output` for the final stage.
    pub output: String,
    /// The stage's operators, root first.
    pub operators: Vec<String>,
}

/// Cuts a distributed spec's plan into Ballista's stages, as the scheduler
/// will, without running or writing anything.
pub async fn describe_stages(
    spec: &chainbatch_executor::TaskSpec,
    partitions: usize,
) -> Result<Vec<BallistaStage>, String> {
    use ballista_scheduler::planner::{DefaultDistributedPlanner, DistributedPlanner};
    use datafusion::physical_plan::ExecutionPlan;
    let plan = chainbatch_executor::distributed::job::physical_plan(spec, partitions)
        .await
        .map_err(|e| e.to_string())?;
    let config = session_config().with_target_partitions(partitions.max(1));
    let job_id = ballista_core::JobId::from("plan".to_string());
    let stages = DefaultDistributedPlanner::new()
        .plan_query_stages(&job_id, plan, config.options())
        .map_err(|e| e.to_string())?;
    Ok(stages
        .into_iter()
        .map(|w| {
            let mut operators = vec![];
            let mut stack: Vec<Arc<dyn ExecutionPlan>> =
                w.children().into_iter().cloned().collect();
            while let Some(p) = stack.pop() {
                operators.push(p.name().to_string());
                stack.extend(p.children().into_iter().cloned());
            }
            BallistaStage {
                stage_id: w.stage_id(),
                tasks: w.input_partition_count(),
                output: match w.shuffle_output_partitioning() {
                    Some(p) => format!("{p}"),
                    None => "writes the output".into(),
                },
                operators,
            }
        })
        .collect())
}
