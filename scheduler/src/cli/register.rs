//! `chainbatch register`: Glue tables and partitions for data already written.

use super::ProjectArgs;
use chainbatch::error::DriverError;
use clap::Args;

#[derive(Args)]
pub(super) struct RegisterArgs {
    #[command(flatten)]
    project: ProjectArgs,
    /// Catalog datasets to register.
    #[arg(required = true, value_name = "DATASET")]
    datasets: Vec<String>,
}

pub(super) async fn register(a: RegisterArgs) -> Result<(), DriverError> {
    let p = a.project.load("register")?;
    for d in &a.datasets {
        println!("{}", chainbatch::glue::register_existing(&p, d).await?);
    }
    Ok(())
}
