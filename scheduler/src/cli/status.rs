//! `chainbatch status`: each output partition from the ledger, whether it
//! is current, and the dates with none.

use super::{OutputFormat, ProjectArgs, parse_window};
use chainbatch::error::DriverError;
use clap::Args;

pub(super) const AFTER_HELP: &str = "\
States: current; stale (the reasons follow the line); unrecorded (files with no
ledger record: written before chainbatch kept one, by `import` or by another
tool); missing (a ledger record whose files are gone).
Exit codes: 0 whatever the states; 1 storage could not be read; 2 a usage or
configuration error.
Example: chainbatch status --dataset daily_summary --dates 2024-03-01..2024-03-31";

#[derive(Args)]
pub(super) struct StatusArgs {
    #[command(flatten)]
    project: ProjectArgs,
    /// The pipeline whose nodes decide staleness and whose outputs are
    /// shown (default: every pipeline).
    #[arg(long)]
    pipeline: Option<String>,
    /// Only these datasets (repeatable; default: every pipeline output).
    #[arg(long = "dataset", value_name = "NAME")]
    datasets: Vec<String>,
    /// Only partitions of these dates; the gaps are the dates of this
    /// window with no partition (default: the dates the partitions span).
    #[arg(long)]
    dates: Option<String>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

pub(super) async fn status(a: StatusArgs) -> Result<(), DriverError> {
    let p = a.project.load("status")?;
    let window = parse_window("--dates", a.dates.as_deref())?;
    let all =
        chainbatch::ledger::status::status(&p, a.pipeline.as_deref(), &a.datasets, window.as_ref())
            .await?;
    match a.format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&all).expect("statuses serialise")
        ),
        OutputFormat::Table => print!("{}", chainbatch::ledger::status::render(&all)),
    }
    Ok(())
}
