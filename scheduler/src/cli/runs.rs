//! `chainbatch runs`: past runs from their journals.

use super::{OutputFormat, ProjectArgs};
use chainbatch::driver;
use chainbatch::error::DriverError;
use chainbatch::progress::{human_bytes, human_count};
use clap::Args;

#[derive(Args)]
pub(super) struct RunsArgs {
    #[command(flatten)]
    project: ProjectArgs,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
}

pub(super) async fn runs(a: RunsArgs) -> Result<(), DriverError> {
    let p = a.project.load("runs")?;
    let root = driver::out_root(&p)?;
    let runs = chainbatch::commit::journal::list(&root)
        .await
        .map_err(DriverError::Storage)?;
    match a.format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&runs).expect("journals serialise")
        ),
        OutputFormat::Table => {
            println!(
                "{:<40} {:<12} {:>10} {:>11} {:>9}",
                "run", "status", "rows", "bytes", "seconds"
            );
            for r in runs {
                let secs = r
                    .finished_at
                    .map(|f| (f - r.started_at).to_string())
                    .unwrap_or_else(|| "-".into());
                println!(
                    "{:<40} {:<12} {:>10} {:>11} {:>9}",
                    r.run_id,
                    format!("{:?}", r.status).to_lowercase(),
                    human_count(r.rows()),
                    human_bytes(r.bytes()),
                    secs
                );
            }
        }
    }
    Ok(())
}
