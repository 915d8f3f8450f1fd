//! `chainbatch run`: run a pipeline (or some of its nodes) and commit its
//! outputs.

use super::{LogFormatArg, ProjectArgs, check_id, default_run_id, parse_window};
use chainbatch::backend::BackendKind;
use chainbatch::conf::error::ConfigError;
use chainbatch::driver::{self, BallistaOptions, RunOptions};
use chainbatch::error::DriverError;
use chainbatch::pipeline::Selection;
use chainbatch::progress::{Progress, human_bytes, human_count};
use clap::Args;

#[derive(Args, Clone)]
pub(super) struct RunArgs {
    #[command(flatten)]
    pub(super) project: ProjectArgs,
    /// The pipeline to run (default: the only one defined).
    #[arg(long)]
    pub(super) pipeline: Option<String>,
    /// Run only these nodes (comma-separated).
    #[arg(long, value_delimiter = ',')]
    pub(super) nodes: Vec<String>,
    /// Run these nodes and everything downstream of them.
    #[arg(long, value_delimiter = ',')]
    pub(super) from_nodes: Vec<String>,
    /// Run these nodes and everything upstream of them.
    #[arg(long, value_delimiter = ',')]
    pub(super) to_nodes: Vec<String>,
    /// Run only nodes carrying one of these tags.
    #[arg(long, value_delimiter = ',')]
    pub(super) tags: Vec<String>,
    /// Input date window, inclusive: `2024-05-01..2024-05-07`, `yesterday`, `today`.
    #[arg(long)]
    pub(super) dates: Option<String>,
    /// Where tasks run: local (in-process), process (chainbatch-executor
    /// children), batch (AWS Batch array jobs; settings under `batch:` in
    /// globals.yml, out_root on s3://; distributed nodes on Ballista
    /// executors in a Batch array job, `batch.ballista`) or ballista
    /// (every stage on the executors of an embedded cluster or
    /// --ballista-url: distributed nodes as Ballista plans, other stages as
    /// Ballista jobs of their task specs).
    #[arg(long, default_value = "local")]
    pub(super) backend: String,
    /// With --backend ballista: the scheduler of an existing cluster,
    /// df://host:50050, whose executors run `chainbatch-executor ballista`.
    /// Without it the driver starts a scheduler on 127.0.0.1 and
    /// --executors executor processes, and stops them when the run ends.
    #[arg(long, value_name = "URL")]
    pub(super) ballista_url: Option<String>,
    /// With --backend ballista: executor processes of the embedded cluster.
    #[arg(long, default_value_t = 2)]
    pub(super) executors: usize,
    /// With --backend ballista: tasks each embedded executor runs at once.
    #[arg(long, default_value_t = 1)]
    pub(super) executor_vcores: usize,
    /// With --backend ballista: each embedded executor's memory pool in MiB;
    /// joins, aggregates and sorts spill to disk beyond it.
    #[arg(long, default_value_t = 1024)]
    pub(super) executor_memory_mib: u64,
    /// With --ballista-url: partitions of a distributed node's stages
    /// (default 8; an embedded cluster uses executors x vcores).
    #[arg(long)]
    pub(super) ballista_partitions: Option<usize>,
    /// Tasks at once (default: the number of cores).
    #[arg(long)]
    pub(super) parallelism: Option<usize>,
    /// Attempts per task for retryable failures.
    #[arg(long, default_value_t = 3)]
    pub(super) max_attempts: u32,
    /// The run id (default: a UTC timestamp and the pipeline name).
    #[arg(long)]
    pub(super) run_id: Option<String>,
    /// Continue a failed run: its pipeline, nodes and dates come from its
    /// journal; committed nodes and finished tasks are not redone.
    #[arg(long, value_name = "RUN_ID", conflicts_with_all = [
        "run_id", "pipeline", "nodes", "from_nodes", "to_nodes", "tags", "dates", "dry_run"
    ])]
    pub(super) resume: Option<String>,
    /// When another live run holds some of the same output partitions, wait
    /// up to SECONDS for it to finish instead of failing at once.
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub(super) wait: u64,
    /// Publish input dates that the completeness gate finds incomplete (a
    /// day still being delivered, blocks missing), noting them in the
    /// journal; by default such a run fails and publishes nothing.
    #[arg(long)]
    pub(super) allow_incomplete: bool,
    /// After registering the outputs in Glue, count each written
    /// partition's rows through Athena (globals.yml `athena:`) and fail
    /// unless they equal the commit's; reports the bytes Athena scanned.
    #[arg(long)]
    pub(super) verify_athena: bool,
    /// Widen --dates back to the day after the last date a successful run
    /// of the pipeline covered, so a scheduled run after a failed night
    /// also covers the days it missed (`--dates yesterday
    /// --since-last-success`). Read from the run journals.
    #[arg(long, conflicts_with = "resume")]
    pub(super) since_last_success: bool,
    /// Plan and print, but run nothing.
    #[arg(long)]
    pub(super) dry_run: bool,
    /// Log lines as text (a live line per stage on a terminal) or JSON.
    #[arg(long, value_enum, default_value_t = LogFormatArg::Text)]
    pub(super) log_format: LogFormatArg,
}

impl RunArgs {
    /// The run id: `--resume`, `--run-id`, the AWS Batch job's, or a new one.
    /// With the job's id, also the attempt of that job this process is.
    fn run_id(&self) -> (String, Option<u32>) {
        // A driver running as an AWS Batch job names its run after the
        // job, so that a retried attempt continues the same run.
        let batch_job = (self.resume.is_none() && self.run_id.is_none())
            .then(batch_job_run_id)
            .flatten();
        let attempt = batch_job.as_ref().map(|(_, a)| *a);
        let id = self
            .resume
            .clone()
            .or_else(|| self.run_id.clone())
            .or_else(|| batch_job.map(|(id, _)| id))
            .unwrap_or_else(|| default_run_id(self.pipeline.as_deref()));
        (id, attempt)
    }

    /// The driver's options, every flag checked.
    pub(super) fn options(&self, run_id: String) -> Result<RunOptions, ConfigError> {
        let dates = parse_window("--dates", self.dates.as_deref())?;
        let backend =
            BackendKind::parse(&self.backend).map_err(|e| ConfigError::new("--backend", e))?;
        if self.parallelism == Some(0) {
            return Err(ConfigError::new("--parallelism", "must be at least 1"));
        }
        check_id("--run-id", &run_id)?;
        if self.max_attempts == 0 {
            return Err(ConfigError::new("--max-attempts", "must be at least 1"));
        }
        for (flag, given) in [
            ("--ballista-url", self.ballista_url.is_some()),
            ("--ballista-partitions", self.ballista_partitions.is_some()),
        ] {
            if given && backend != BackendKind::Ballista {
                return Err(ConfigError::new(flag, "applies to --backend ballista only"));
            }
        }
        if let Some(url) = &self.ballista_url {
            chainbatch_executor::distributed::job::SchedulerAddress::parse(url)
                .map_err(|e| ConfigError::new("--ballista-url", e))?;
        }
        for (flag, v) in [
            ("--executors", self.executors),
            ("--executor-vcores", self.executor_vcores),
            (
                "--ballista-partitions",
                self.ballista_partitions.unwrap_or(1),
            ),
        ] {
            if v == 0 {
                return Err(ConfigError::new(flag, "must be at least 1"));
            }
        }
        if self.executor_memory_mib < 64 {
            return Err(ConfigError::new(
                "--executor-memory-mib",
                "must be at least 64",
            ));
        }
        let defaults = BallistaOptions::default();
        Ok(RunOptions {
            pipeline: self.pipeline.clone(),
            selection: Selection {
                nodes: self.nodes.clone(),
                from_nodes: self.from_nodes.clone(),
                to_nodes: self.to_nodes.clone(),
                tags: self.tags.clone(),
            },
            dates,
            run_id,
            backend,
            parallelism: self
                .parallelism
                .unwrap_or_else(|| chainbatch_executor::effective_parallelism(0)),
            max_attempts: self.max_attempts,
            resume: self.resume.is_some(),
            wait: std::time::Duration::from_secs(self.wait),
            allow_incomplete: self.allow_incomplete,
            verify_athena: self.verify_athena,
            continue_attempt: false,
            ballista: BallistaOptions {
                url: self.ballista_url.clone(),
                executors: self.executors,
                executor_vcores: self.executor_vcores,
                executor_memory_bytes: self.executor_memory_mib * 1024 * 1024,
                partitions: self.ballista_partitions.unwrap_or(defaults.partitions),
            },
        })
    }
}

/// `batch-<job id>` and the attempt number, when this process is an AWS
/// Batch job (`AWS_BATCH_JOB_ID`, `AWS_BATCH_JOB_ATTEMPT`).
fn batch_job_run_id() -> Option<(String, u32)> {
    let id = std::env::var("AWS_BATCH_JOB_ID").ok()?;
    let id: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let attempt = std::env::var("AWS_BATCH_JOB_ATTEMPT")
        .ok()
        .and_then(|a| a.parse().ok())
        .unwrap_or(1);
    Some((format!("batch-{id}"), attempt))
}

pub(super) async fn run(a: RunArgs) -> Result<(), DriverError> {
    let (run_id, batch_attempt) = a.run_id();
    let project = a.project.load(&run_id)?;
    let mut opts = a.options(run_id.clone())?;
    opts.continue_attempt = batch_attempt.is_some_and(|attempt| attempt > 1);
    let progress = Progress::new(a.log_format.into());
    // Widened before anything else: a later attempt of a driver job
    // that continues its first attempt's run still takes that run's
    // window from its journal.
    if a.since_last_success {
        let (window, note) = driver::since_last_success(&project, &opts).await?;
        progress.note(&note);
        opts.dates = Some(window);
    }
    if a.dry_run {
        let plans = driver::plan(&project, &opts).await?;
        super::plan::print(&plans, super::OutputFormat::Table);
        return Ok(());
    }
    let started = std::time::Instant::now();
    let summary = driver::run(&project, &opts, &progress).await?;
    println!(
        "run {run_id} succeeded in {:.1}s",
        started.elapsed().as_secs_f64()
    );
    println!(
        "{:<24} {:<24} {:>6} {:>10} {:>6} {:>10} {:>11} {:>8}",
        "node", "dataset", "tasks", "partitions", "files", "rows", "bytes", "seconds"
    );
    for s in summary {
        println!(
            "{:<24} {:<24} {:>6} {:>10} {:>6} {:>10} {:>11} {:>8.1}",
            s.node,
            s.dataset,
            s.tasks,
            s.partitions,
            s.files,
            human_count(s.rows),
            human_bytes(s.bytes),
            s.seconds
        );
    }
    Ok(())
}
