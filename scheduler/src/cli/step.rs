//! `chainbatch step`: one step of a run an orchestrator carries (the state
//! machine of `chainbatch export step-functions`).

use super::{ProjectArgs, check_id, parse_window};
use chainbatch::conf::error::ConfigError;
use chainbatch::driver::{self, RunOptions, steps};
use chainbatch::error::DriverError;
use chainbatch::pipeline::Selection;
use chainbatch::progress::{LogFormat, Progress};
use clap::{Args, Subcommand};

pub(super) const AFTER_HELP: &str = "\
A state machine runs: step begin, then per node step plan, the node's stages
as AWS Batch jobs (from the plan document the plan step writes), step commit;
then step finish, or step finish --failed on any failure. Each step is a
short driver job; the run's journal carries it between steps, so `chainbatch
runs`, `gc` and `run --resume RUN_ID --backend batch` see it as any run.
Exit codes: 0 done (also when the step had been done before); 1 failed; 2 a
usage or configuration error; 4 failed in a way the same step may get past
when run again (storage), which the driver job definition retries.";

#[derive(Args)]
pub(super) struct StepArgs {
    #[command(subcommand)]
    step: Step,
}

#[derive(Subcommand)]
enum Step {
    /// Start the run: check the pipeline, take the run's leases for its
    /// steps, finish what crashed runs left, write the journal.
    Begin {
        #[command(flatten)]
        run: RunArg,
        /// The pipeline (default: the only one, or `default_pipeline`).
        #[arg(long)]
        pipeline: Option<String>,
        /// Input date window, inclusive: `2024-05-01..2024-05-07`, `yesterday`.
        #[arg(long)]
        dates: Option<String>,
        /// Widen --dates back to the day after the last date a successful
        /// run of the pipeline covered.
        #[arg(long)]
        since_last_success: bool,
        /// Wait up to SECONDS for live runs holding the same partitions.
        #[arg(long, value_name = "SECONDS", default_value_t = 0)]
        wait: u64,
    },
    /// Plan one node, write its stage specs and plan document (a distributed
    /// node runs and commits here).
    Plan {
        #[command(flatten)]
        run: RunArg,
        /// The node.
        #[arg(long)]
        node: String,
    },
    /// Commit one node from its tasks' manifests.
    Commit {
        #[command(flatten)]
        run: RunArg,
        /// The node.
        #[arg(long)]
        node: String,
    },
    /// End the run: succeeded once every node committed, or failed.
    Finish {
        #[command(flatten)]
        run: RunArg,
        /// Record the run as failed, with what the orchestrator caught (Step
        /// Functions' `{"Error", "Cause"}`); finished tasks stay for --resume.
        #[arg(long, value_name = "ERROR")]
        failed: Option<String>,
    },
}

#[derive(Args)]
struct RunArg {
    #[command(flatten)]
    project: ProjectArgs,
    /// The run (a state machine passes its execution's name).
    #[arg(long)]
    run_id: String,
}

impl StepArgs {
    /// Whether a failure the same step may get past exits 4 (retried by
    /// the driver job definition) rather than 1.
    pub(super) fn exit_code(e: &DriverError) -> u8 {
        match e.resumable() {
            true => chainbatch_executor::error::EXIT_RETRYABLE as u8,
            false => e.exit_code(),
        }
    }
}

pub(super) async fn step(a: StepArgs) -> Result<(), DriverError> {
    let progress = Progress::new(LogFormat::Text);
    let (Step::Begin { run, .. }
    | Step::Plan { run, .. }
    | Step::Commit { run, .. }
    | Step::Finish { run, .. }) = &a.step;
    check_id("--run-id", &run.run_id)?;
    match a.step {
        Step::Begin {
            run,
            pipeline,
            dates,
            since_last_success,
            wait,
        } => {
            let project = run.project.load(&run.run_id)?;
            let mut opts = RunOptions::checking(
                driver::pick_pipeline(&project, pipeline.as_deref())?
                    .name
                    .as_str(),
                &run.run_id,
                parse_window("--dates", dates.as_deref())?,
            );
            opts.selection = Selection::default();
            opts.wait = std::time::Duration::from_secs(wait);
            if since_last_success {
                let (window, note) = driver::since_last_success(&project, &opts).await?;
                progress.note(&note);
                opts.dates = Some(window);
            }
            steps::begin(&project, &opts, &progress).await
        }
        Step::Plan { run, node } => {
            let project = run.project.load(&run.run_id)?;
            let doc = steps::plan(&project, &run.run_id, &node, &progress).await?;
            println!(
                "{}",
                serde_json::to_string(&doc).expect("a plan document serialises")
            );
            Ok(())
        }
        Step::Commit { run, node } => {
            let project = run.project.load(&run.run_id)?;
            steps::commit(&project, &run.run_id, &node, &progress).await
        }
        Step::Finish { run, failed } => {
            let project = run.project.load(&run.run_id)?;
            if failed.as_deref() == Some("") {
                return Err(ConfigError::new("--failed", "needs what failed").into());
            }
            steps::finish(&project, &run.run_id, failed.as_deref(), &progress).await
        }
    }
}
