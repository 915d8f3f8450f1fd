//! `chainbatch gc`: finish or roll back unfinished runs and registrations,
//! remove what ended runs left, vacuum Delta outputs.

use super::ProjectArgs;
use chainbatch::driver;
use chainbatch::error::DriverError;
use clap::Args;

#[derive(Args)]
pub(super) struct GcArgs {
    #[command(flatten)]
    project: ProjectArgs,
    /// How long a Delta table's replaced files stay for readers of older
    /// versions (time travel, and queries running while a run commits).
    #[arg(long, default_value_t = 168, value_name = "HOURS")]
    delta_retain_hours: u64,
}

pub(super) async fn gc(a: GcArgs) -> Result<(), DriverError> {
    let p = a.project.load("gc")?;
    let root = driver::out_root(&p)?;
    let gc_id = format!(
        "gc-{}-{}",
        chainbatch::commit::journal::now_secs(),
        std::process::id()
    );
    let lease_opts = driver::lease_options(&p, &gc_id, std::time::Duration::ZERO)?;
    let mut notes = chainbatch::commit::collect_garbage(&root, &p.catalog, &lease_opts)
        .await
        .map_err(DriverError::Storage)?;
    // Registrations a crash or an unreachable Glue left pending.
    let glue = chainbatch::glue::settings::GlueSettings::from_globals(&p.globals)
        .map_err(|e| p.globals_origin.locate(e))?;
    if let Some(g) = glue {
        let registrar = chainbatch::glue::register::Registrar::connect(&g).await;
        notes.extend(
            chainbatch::glue::finish_pending(&root, &registrar)
                .await
                .map_err(DriverError::Service)?,
        );
    }
    let retain = std::time::Duration::from_secs(a.delta_retain_hours.saturating_mul(3600));
    let written: std::collections::BTreeSet<&str> = p
        .pipelines
        .values()
        .flat_map(|pl| pl.nodes.iter().map(|n| n.output.as_str()))
        .collect();
    for ds in p.catalog.values().filter(|d| d.delta.is_some()) {
        if !written.contains(ds.name.as_str()) {
            continue;
        }
        let n = chainbatch::delta::vacuum(&ds.path, retain)
            .await
            .map_err(|e| DriverError::Storage(e.to_string()))?;
        if n > 0 {
            notes.push(format!(
                "vacuumed {n} file(s) of Delta table `{}` older than {} h",
                ds.name, a.delta_retain_hours
            ));
        }
    }
    for n in &notes {
        println!("{n}");
    }
    println!("gc: {} item(s)", notes.len());
    Ok(())
}
