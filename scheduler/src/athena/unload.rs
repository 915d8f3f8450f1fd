//! Athena as a source: a catalog dataset of `type: athena` is its query's
//! result, UNLOADed as Parquet below the run's staging prefix and then read
//! like any Parquet dataset. The window is split so that no UNLOAD writes
//! more than 100 partitions (Athena's limit); each UNLOAD gets an empty
//! prefix of its own (Athena's rule), recorded in the journal once done, so
//! a resumed run does not query again. The prefix goes with the run.

use crate::athena::{Athena, AthenaError};
use crate::catalog::Dataset;
use crate::conf::error::ConfigError;
use crate::plan::dates::{DateRange, each_day};
use chainbatch_executor::storage;
use futures::TryStreamExt;
use serde::Deserialize;

/// Partitions one UNLOAD may write (Athena: 100 open writers).
pub const PARTITIONS_PER_UNLOAD: usize = 100;

/// Path of an Athena dataset before a run gives it its staging prefix: it
/// resolves to nothing, so nothing reads it by mistake.
pub const UNSTAGED_PATH: &str = "athena:unstaged";

/// A dataset's Athena query (`type: athena` in catalog.yml).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct AthenaSource {
    /// Athena SQL whose rows are the dataset; its partition columns are
    /// columns of the result.
    pub query: String,
    /// The database unqualified table names resolve in; default:
    /// `glue.database` of globals.yml.
    pub database: Option<String>,
}

/// One UNLOAD: a chunk of the window into a prefix of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct Unload {
    pub dataset: String,
    /// `s3://.../_chainbatch/athena/<run>/<dataset>/u000/`
    pub target: String,
    pub query: String,
    pub database: Option<String>,
}

/// The UNLOADs that bring `ds` (already staged at its prefix) for `dates`.
pub fn plan_unloads(ds: &Dataset, dates: Option<&DateRange>) -> Result<Vec<Unload>, ConfigError> {
    let source = ds.athena.as_ref().expect("an Athena dataset");
    let key = format!("{}.query", ds.name);
    let Some(dates) = dates else {
        return Err(ConfigError::new(
            "--dates",
            format!(
                "dataset `{}` is an Athena query, which chainbatch UNLOADs a window of dates at a \
                 time (Athena writes at most {PARTITIONS_PER_UNLOAD} partitions a query): give \
                 --dates",
                ds.name
            ),
        ));
    };
    let [partition] = ds.partitions.as_slice() else {
        return Err(ConfigError::new(
            format!("{}.partitions", ds.name),
            "an Athena dataset is partitioned by exactly one date column",
        ));
    };
    let schema = ds.schema.as_ref().ok_or_else(|| {
        ConfigError::new(
            format!("{}.schema", ds.name),
            "is required for an Athena dataset: the query's columns (without the partition \
             column), so its nodes can be checked before anything is queried",
        )
    })?;
    if !ds.path.starts_with("s3://") {
        return Err(ConfigError::new(
            "out_root",
            format!(
                "is {}; Athena UNLOADs only to S3, so a run with Athena inputs needs an s3:// \
                 out_root",
                ds.path
            ),
        ));
    }
    let quote = |c: &str| format!("\"{}\"", c.replace('"', "\"\""));
    let mut columns: Vec<String> = schema.iter().map(|c| quote(&c.name)).collect();
    // UNLOAD's partitioned_by columns come last.
    columns.push(quote(&partition.name));
    let literal = |d: &str| match partition.data_type.as_str() {
        "date" | "date32" => format!("DATE '{d}'"),
        _ => format!("'{d}'"),
    };
    let days = each_day(dates);
    if days.is_empty() {
        return Err(ConfigError::new(key, "the --dates window holds no day"));
    }
    Ok(days
        .chunks(PARTITIONS_PER_UNLOAD)
        .enumerate()
        .map(|(i, chunk)| {
            let (first, last) = (&chunk[0], &chunk[chunk.len() - 1]);
            let target = format!("{}/u{i:03}/", ds.path.trim_end_matches('/'));
            let query = format!(
                "UNLOAD (SELECT {} FROM ({}) AS source WHERE {} BETWEEN {} AND {}) TO '{target}' \
                 WITH (format = 'PARQUET', compression = 'ZSTD', partitioned_by = ARRAY['{}'])",
                columns.join(", "),
                source.query.trim().trim_end_matches(';'),
                quote(&partition.name),
                literal(first),
                literal(last),
                partition.name
            );
            Unload {
                dataset: ds.name.clone(),
                target,
                query,
                database: source.database.clone(),
            }
        })
        .collect())
}

#[derive(Debug, thiserror::Error)]
pub enum UnloadError {
    #[error(
        "the UNLOAD target {target} of dataset `{dataset}` is not empty, and Athena writes only \
         to an empty prefix: it holds what an earlier attempt of this run left there; `chainbatch \
         gc` removes it once the run is over, or resume the run with `--resume`"
    )]
    TargetNotEmpty { dataset: String, target: String },
    #[error("dataset `{dataset}`: {source}")]
    Query {
        dataset: String,
        #[source]
        source: AthenaError,
    },
    #[error("{0}")]
    Storage(String),
}

/// Runs the UNLOADs not in `done`; returns each target as it is finished
/// (through `finished`, so the journal records it at once).
pub async fn run_unloads(
    athena: &Athena,
    unloads: &[Unload],
    done: &[String],
    default_database: &str,
    mut finished: impl AsyncFnMut(&Unload, u64) -> Result<(), String>,
) -> Result<(), UnloadError> {
    for u in unloads.iter().filter(|u| !done.contains(&u.target)) {
        if !is_empty(&u.target).await? {
            return Err(UnloadError::TargetNotEmpty {
                dataset: u.dataset.clone(),
                target: u.target.clone(),
            });
        }
        let database = u.database.as_deref().unwrap_or(default_database);
        let (_, scanned) = athena
            .run_query(&u.query, database)
            .await
            .map_err(|source| UnloadError::Query {
                dataset: u.dataset.clone(),
                source,
            })?;
        finished(u, scanned).await.map_err(UnloadError::Storage)?;
    }
    Ok(())
}

async fn is_empty(prefix: &str) -> Result<bool, UnloadError> {
    let loc = storage::resolve(prefix).map_err(|e| UnloadError::Storage(e.to_string()))?;
    let mut listing = loc.store.list(Some(&loc.path));
    match listing.try_next().await {
        Ok(first) => Ok(first.is_none()),
        Err(object_store::Error::NotFound { .. }) => Ok(true),
        Err(e) => Err(UnloadError::Storage(format!("cannot list {prefix}: {e}"))),
    }
}

/// The project with every Athena dataset pointed at its prefix below the
/// run's staging (`<out_root>/_chainbatch/athena/<run>/<dataset>`).
pub fn staged(
    project: &crate::conf::project::Project,
    out_root: &str,
    run_id: &str,
) -> crate::conf::project::Project {
    let mut p = project.clone();
    for ds in p.catalog.values_mut().filter(|d| d.athena.is_some()) {
        ds.path = format!("{}/{}", crate::paths::run_athena(out_root, run_id), ds.name);
    }
    p
}

/// The Athena inputs of a run: the client and the UNLOADs, planned and
/// checked before anything runs. `None` when no selected node reads one.
pub struct Sources {
    pub athena: Athena,
    pub unloads: Vec<Unload>,
    pub default_database: String,
}

pub async fn prepare(
    project: &crate::conf::project::Project,
    nodes: &[crate::pipeline::Node],
    dates: Option<&DateRange>,
) -> Result<Option<Sources>, crate::error::DriverError> {
    use crate::error::DriverError;
    let mut names: Vec<&String> = nodes.iter().flat_map(|n| &n.inputs).collect();
    names.sort();
    names.dedup();
    let mut unloads = vec![];
    let mut own_database = true;
    for name in names {
        let ds = &project.catalog[name];
        if let Some(src) = &ds.athena {
            own_database &= src.database.is_some();
            unloads.extend(
                plan_unloads(ds, dates)
                    .map_err(|e| e.at(Some(project.conf_dir.join("base/catalog.yml")), None))?,
            );
        }
    }
    if unloads.is_empty() {
        return Ok(None);
    }
    let locate = |e: ConfigError| project.globals_origin.locate(e);
    let glue =
        crate::glue::settings::GlueSettings::from_globals(&project.globals).map_err(locate)?;
    let default_database = match (&glue, own_database) {
        (Some(g), _) => g.database.clone(),
        (None, true) => String::new(),
        (None, false) => {
            return Err(locate(ConfigError::new(
                "glue.database",
                "an Athena dataset without its own `database` runs its query in the Glue \
                 database of globals.yml, and there is none",
            ))
            .into());
        }
    };
    let settings =
        crate::glue::settings::AthenaSettings::from_globals(&project.globals).map_err(locate)?;
    let athena = Athena::connect(&settings, glue.as_ref().and_then(|g| g.region.as_deref())).await;
    athena.check_workgroup().await.map_err(|e| match e {
        AthenaError::MissingWorkgroup(_) => {
            DriverError::Config(locate(ConfigError::new("athena.workgroup", e.to_string())))
        }
        e => DriverError::Service(e.to_string()),
    })?;
    Ok(Some(Sources {
        athena,
        unloads,
        default_database,
    }))
}
