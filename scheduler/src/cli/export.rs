//! `chainbatch export`: a pipeline in another system's terms.

use super::ProjectArgs;
use chainbatch::conf::error::ConfigError;
use chainbatch::driver;
use chainbatch::error::DriverError;
use chainbatch::export::step_functions::{Deployment, state_machine};
use clap::{Args, Subcommand};

#[derive(Subcommand)]
pub(super) enum ExportWhat {
    /// Print the pipeline as an Amazon States Language state machine: a
    /// `step begin` job, per node a `step plan` job, its stages as AWS Batch
    /// jobs sized from the plan document, a `step commit` job; nodes that do
    /// not read each other's outputs as branches of a Parallel state; then
    /// `step finish` (or `step finish --failed` on any failure).
    #[command(after_help = "\
The execution's input names the window: {\"dates\": \"yesterday\"}; its name is
the run id. Settings (globals.yml): batch.job_queue and batch.job_definition
(stages), step_functions.driver_job_queue and step_functions.driver_job_definition
(the steps; default for both: <batch.job_queue>-driver, as terraform names them),
out_root on s3:// (plan documents), step_lease_seconds (default 86400, also
the execution's time limit).
Example: chainbatch export step-functions --env aws --since-last-success > eth_daily.asl.json")]
    StepFunctions(StepFunctionsArgs),
}

#[derive(Args)]
pub(super) struct StepFunctionsArgs {
    #[command(flatten)]
    project: ProjectArgs,
    /// The pipeline (default: the only one, or `default_pipeline`).
    #[arg(long)]
    pipeline: Option<String>,
    /// The begin step widens the window back to the day after the last
    /// date a successful run covered (for schedules).
    #[arg(long)]
    since_last_success: bool,
}

pub(super) async fn export(what: ExportWhat) -> Result<(), DriverError> {
    let ExportWhat::StepFunctions(a) = what;
    let project = a.project.load("export")?;
    let pipeline = driver::pick_pipeline(&project, a.pipeline.as_deref())?;
    let opts = driver::RunOptions::checking(&pipeline.name, "export", None);
    let (nodes, _) = driver::checked_nodes(&project, &opts).await?;
    // State names are at most 80 characters; the longest is `Stages of <node>`.
    if let Some(n) = nodes.iter().find(|n| n.name.len() > 70) {
        return Err(ConfigError::new(
            "--pipeline",
            format!(
                "node `{}` has a name of {} characters: a state machine's state names hold \
                 at most 80, so node names at most 70",
                n.name,
                n.name.len()
            ),
        )
        .into());
    }
    let out_root = driver::out_root(&project)?;
    let runs_root = chainbatch::commit::journal::runs_root(&out_root);
    let Some((plan_bucket, plan_prefix)) = runs_root
        .strip_prefix("s3://")
        .and_then(|rest| rest.split_once('/'))
    else {
        return Err(project
            .globals_origin
            .locate(ConfigError::new(
                "out_root",
                format!(
                    "is `{out_root}`; a state machine reads its plan documents from S3: \
                     out_root must be on s3://"
                ),
            ))
            .into());
    };
    let batch = chainbatch::backend::batch::BatchSettings::from_globals(&project.globals)
        .map_err(|e| project.globals_origin.locate(e))?;
    let setting = |key: &str, default: String| {
        project
            .global_str(&format!("step_functions.{key}"))
            .unwrap_or(default)
    };
    let mut driver_args = vec!["--env".to_string(), project.env.clone()];
    if chainbatch::conf::remote::is_remote(&a.project.conf) {
        driver_args.extend(["--conf".to_string(), a.project.conf.display().to_string()]);
    }
    for g in &a.project.globals {
        driver_args.extend(["--globals".to_string(), g.clone()]);
    }
    for p in &a.project.params {
        driver_args.extend(["--params".to_string(), p.clone()]);
    }
    let deployment = Deployment {
        pipeline: pipeline.name.clone(),
        driver_job_queue: setting("driver_job_queue", format!("{}-driver", batch.job_queue)),
        driver_job_definition: setting(
            "driver_job_definition",
            format!("{}-driver", batch.job_queue),
        ),
        plan_bucket: plan_bucket.to_string(),
        plan_prefix: plan_prefix.to_string(),
        driver_args,
        since_last_success: a.since_last_success,
        timeout_seconds: project
            .global_u64("step_lease_seconds")?
            .unwrap_or(driver::steps::DEFAULT_STEP_LEASE_SECONDS),
    };
    let asl = state_machine(&nodes, &deployment);
    println!(
        "{}",
        serde_json::to_string_pretty(&asl).expect("a state machine serialises")
    );
    Ok(())
}
