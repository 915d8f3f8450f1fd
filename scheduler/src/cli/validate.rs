//! `chainbatch validate`: the configuration and every node's SQL checked
//! against the catalog's schemas, nothing run.

use super::ProjectArgs;
use chainbatch::driver::{self, RunOptions};
use chainbatch::error::DriverError;
use clap::Args;

#[derive(Args)]
pub(super) struct ValidateArgs {
    #[command(flatten)]
    project: ProjectArgs,
    /// The pipeline to check (default: all).
    #[arg(long)]
    pipeline: Option<String>,
}

pub(super) async fn validate(a: ValidateArgs) -> Result<(), DriverError> {
    let p = a.project.load("validate")?;
    let names: Vec<String> = match &a.pipeline {
        Some(n) => vec![driver::pick_pipeline(&p, Some(n))?.name.clone()],
        None => p.pipelines.keys().cloned().collect(),
    };
    for name in &names {
        let opts = RunOptions::checking(name, "validate", None);
        let (nodes, _) = driver::checked_nodes(&p, &opts).await?;
        println!("pipeline {name}: {} node(s) ok", nodes.len());
    }
    println!(
        "{} dataset(s), {} pipeline(s): configuration is valid",
        p.catalog.len(),
        names.len()
    );
    Ok(())
}
