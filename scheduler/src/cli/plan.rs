//! `chainbatch plan`: the stages and tasks a run would execute, and why.

use super::OutputFormat;
use super::run::RunArgs;
use chainbatch::driver;
use chainbatch::error::DriverError;
use chainbatch::progress::human_bytes;
use clap::Args;

#[derive(Args)]
pub(super) struct PlanArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

pub(super) async fn plan(a: PlanArgs) -> Result<(), DriverError> {
    let run_id = a
        .run
        .run_id
        .clone()
        .unwrap_or_else(|| super::default_run_id(a.run.pipeline.as_deref()));
    let project = a.run.project.load(&run_id)?;
    let opts = a.run.options(run_id)?;
    let plans = driver::plan(&project, &opts).await?;
    print(&plans, a.format);
    Ok(())
}

/// Prints plans as a table or as JSON.
pub(super) fn print(plans: &[chainbatch::plan::NodePlan], format: OutputFormat) {
    match format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(plans).expect("plans serialise")
        ),
        OutputFormat::Table => {
            for p in plans {
                println!("node {} -> {} ({})", p.node, p.output, p.output_path);
                println!("  strategy: {:?}: {}", p.strategy, p.reason);
                let parts = match p.input_partitions.as_slice() {
                    [] => "none".to_string(),
                    [one] => one.clone(),
                    [first, .., last] => {
                        format!("{first} .. {last} ({})", p.input_partitions.len())
                    }
                };
                println!(
                    "  input: {} files, {}, partitions {parts}",
                    p.input_files,
                    human_bytes(p.input_bytes)
                );
                for why in &p.empty_inputs {
                    println!("  note: {why}");
                }
                println!(
                    "  output partitioned by: {}",
                    if p.output_partition_by.is_empty() {
                        "nothing".into()
                    } else {
                        p.output_partition_by.join(", ")
                    }
                );
                match &p.expected_output_partitions {
                    Some(parts) if parts.len() > 3 => println!(
                        "  expected output partitions: {} .. {} ({})",
                        parts[0],
                        parts[parts.len() - 1],
                        parts.len()
                    ),
                    Some(parts) => println!("  expected output partitions: {}", parts.join(", ")),
                    None => println!(
                        "  expected output partitions: decided by the data (derived partition columns)"
                    ),
                }
                for s in &p.stages {
                    println!(
                        "  stage {} ({}): {} task(s), {} input",
                        s.stage_id,
                        s.kind,
                        s.tasks,
                        human_bytes(s.input_bytes)
                    );
                }
                for s in p.ballista_stages.iter().flatten() {
                    println!(
                        "    ballista stage {}: {} task(s), {}: {}",
                        s.stage_id,
                        s.tasks,
                        s.output,
                        s.operators.join(" <- ")
                    );
                }
            }
        }
    }
}
