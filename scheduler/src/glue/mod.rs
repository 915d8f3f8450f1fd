//! The Glue Data Catalog: after a node's commit, its output's table is
//! created or updated and the committed partitions made visible to Athena.
//!
//! The table is planned from the node's validated output schema before the
//! node runs (a type Athena cannot read stops the run first), then stored
//! with the commit in the run journal as pending. A crash between commit and
//! registration leaves it pending: the next run, or `gc`, registers it.

pub mod register;
pub mod settings;
pub mod table;
pub mod types;

use crate::commit::journal::{self, RunStatus};
use register::{GlueError, Registered, Registrar};

/// Registers one commit's partitions from its journal record.
pub async fn register_commit(
    registrar: &Registrar,
    record: &journal::CommitRecord,
) -> Result<Option<Registered>, GlueError> {
    match &record.registration {
        Some(r) if !r.done => registrar
            .register(&r.table, &record.partitions)
            .await
            .map(Some),
        _ => Ok(None),
    }
}

/// Finishes registrations that finished runs left pending (a crash after
/// the commit, or Glue unreachable then). Runs still running are theirs to
/// finish. Returns one line per registration done.
pub async fn finish_pending(out_root: &str, registrar: &Registrar) -> Result<Vec<String>, String> {
    let mut notes = vec![];
    for mut j in journal::list(out_root).await? {
        if j.status == RunStatus::Running {
            continue;
        }
        let mut changed = false;
        for c in j.commits.iter_mut() {
            if c.state != journal::CommitState::Published {
                continue;
            }
            if let Some(done) = register_commit(registrar, c)
                .await
                .map_err(|e| format!("run {}: {e}", j.run_id))?
            {
                let table = &c.registration.as_ref().expect("registered").table;
                notes.push(format!(
                    "finished run {}'s registration: {}",
                    j.run_id,
                    done.describe(table)
                ));
                c.registration.as_mut().expect("registered").done = true;
                changed = true;
            }
        }
        if changed {
            journal::save(out_root, &j).await?;
        }
    }
    Ok(notes)
}

/// A run's catalog work: the Glue client, the table of each registered
/// output (by dataset), and Athena when the run verifies counts.
pub struct GlueRun {
    pub registrar: Registrar,
    pub tables: std::collections::HashMap<String, table::TableDef>,
    pub athena: Option<crate::athena::Athena>,
}

/// Plans the Glue tables of the nodes' outputs and checks, before anything
/// runs, that their databases (and the Athena workgroup, when verifying)
/// exist. `None` when globals.yml has no `glue:`.
pub async fn prepare(
    project: &crate::conf::project::Project,
    nodes: &[crate::pipeline::Node],
    shapes: &std::collections::HashMap<String, crate::pipeline::validate::SqlShape>,
    verify_athena: bool,
) -> Result<Option<GlueRun>, crate::error::DriverError> {
    use crate::conf::error::ConfigError;
    use crate::error::DriverError;
    let locate = |e: ConfigError| project.globals_origin.locate(e);
    let Some(settings) = settings::GlueSettings::from_globals(&project.globals).map_err(locate)?
    else {
        if verify_athena {
            return Err(locate(ConfigError::new(
                "glue",
                "--verify-athena counts rows through the Glue tables a run registers, and \
                 globals.yml has no `glue:` (see conf/aws/globals.yml)",
            ))
            .into());
        }
        return Ok(None);
    };
    let mut tables = std::collections::HashMap::new();
    for n in nodes {
        let ds = &project.catalog[&n.output];
        let layout = n.layout.as_ref().or(ds.layout.as_ref());
        let planned = table::plan_table(ds, layout, &settings, &shapes[&n.name].output_schema)
            .map_err(|e| e.at(Some(project.conf_dir.join("base/catalog.yml")), None))?;
        if let Some(t) = planned {
            tables.insert(ds.name.clone(), t);
        }
    }
    let registrar = Registrar::connect(&settings).await;
    let databases: std::collections::BTreeSet<&str> =
        tables.values().map(|t| t.database.as_str()).collect();
    for db in databases {
        registrar.check_database(db).await.map_err(|e| match e {
            GlueError::MissingDatabase { .. } => {
                DriverError::Config(locate(ConfigError::new("glue.database", e.to_string())))
            }
            e => DriverError::Service(e.to_string()),
        })?;
    }
    let athena = match verify_athena {
        false => None,
        true => {
            if tables.is_empty() {
                return Err(ConfigError::new(
                    "--verify-athena",
                    "no output of the selected nodes is registered in Glue (a dataset's \
                     `glue:` in catalog.yml)",
                )
                .into());
            }
            let a_settings =
                settings::AthenaSettings::from_globals(&project.globals).map_err(locate)?;
            let athena =
                crate::athena::Athena::connect(&a_settings, settings.region.as_deref()).await;
            athena.check_workgroup().await.map_err(|e| match e {
                crate::athena::AthenaError::MissingWorkgroup(_) => {
                    DriverError::Config(locate(ConfigError::new("athena.workgroup", e.to_string())))
                }
                e => DriverError::Service(e.to_string()),
            })?;
            Some(athena)
        }
    };
    Ok(Some(GlueRun {
        registrar,
        tables,
        athena,
    }))
}

/// `chainbatch register DATASET`: registers data already in place, with
/// the columns of its first file and every partition found under its path.
pub async fn register_existing(
    project: &crate::conf::project::Project,
    dataset: &str,
) -> Result<String, crate::error::DriverError> {
    use crate::conf::error::ConfigError;
    use crate::error::DriverError;
    let locate = |e: ConfigError| project.globals_origin.locate(e);
    let settings = settings::GlueSettings::from_globals(&project.globals)
        .map_err(locate)?
        .ok_or_else(|| {
            locate(ConfigError::new(
                "glue",
                "is required in globals.yml to register tables: {database, region} \
                 (see conf/aws/globals.yml)",
            ))
        })?;
    let ds = project.catalog.get(dataset).ok_or_else(|| {
        let hint = crate::conf::error::suggest(dataset, project.catalog.keys().map(String::as_str))
            .map(|s| format!("; did you mean `{s}`?"))
            .unwrap_or_default();
        ConfigError::new(
            "DATASET",
            format!("no dataset `{dataset}` in the catalog{hint}"),
        )
    })?;
    if ds.glue.is_none() {
        return Err(ConfigError::new(
            format!("{dataset}.glue"),
            "is not set: add `glue: true` (or {table, partitions}) to the dataset in catalog.yml",
        )
        .at(Some(project.conf_dir.join("base/catalog.yml")), None)
        .into());
    }
    let files = crate::plan::listing::list_dataset(ds, None)
        .await
        .map_err(DriverError::Storage)?;
    let Some(first) = files.first() else {
        return Err(DriverError::Input(format!(
            "dataset `{dataset}` has no Parquet files at {}: nothing to register",
            ds.path
        )));
    };
    let loc = chainbatch_executor::storage::resolve(&first.uri)
        .map_err(|e| DriverError::Storage(e.to_string()))?;
    let md = chainbatch_executor::parquet_file::read_metadata(&loc, first.size)
        .await
        .map_err(|e| DriverError::Storage(format!("{}: {e}", first.uri)))?;
    let schema = chainbatch_executor::parquet_file::arrow_schema(&md)
        .map_err(|e| DriverError::Storage(format!("{}: {e}", first.uri)))?;
    let table = table::plan_table(ds, ds.layout.as_ref(), &settings, &schema)
        .map_err(|e| e.at(Some(project.conf_dir.join("base/catalog.yml")), None))?
        .expect("the dataset has glue");
    let root = chainbatch_executor::storage::resolve(&ds.path)
        .map_err(|e| DriverError::Storage(e.to_string()))?
        .uri();
    let root = root.trim_end_matches('/');
    let partitions: std::collections::BTreeSet<String> = files
        .iter()
        .filter_map(|f| f.uri.strip_prefix(root))
        .map(|rel| {
            rel.trim_start_matches('/')
                .rsplit_once('/')
                .map_or(String::new(), |(dir, _)| dir.to_string())
        })
        .collect();
    let partitions: Vec<String> = partitions.into_iter().collect();
    let registrar = Registrar::connect(&settings).await;
    registrar
        .check_database(&table.database)
        .await
        .map_err(|e| match e {
            GlueError::MissingDatabase { .. } => {
                DriverError::Config(locate(ConfigError::new("glue.database", e.to_string())))
            }
            e => DriverError::Service(e.to_string()),
        })?;
    let done = registrar
        .register(&table, &partitions)
        .await
        .map_err(|e| DriverError::Service(e.to_string()))?;
    Ok(done.describe(&table))
}
