//! Delta Lake tables (`format: delta` in the catalog).
//!
//! The executor writes a Delta dataset's files as it writes any Parquet
//! output; what differs is the commit. Instead of moving files in and out of
//! partition directories, a node's commit is one Delta transaction that
//! removes the replaced partitions' files and adds the new ones, so a reader
//! sees the old version or the new one and nothing between. Replaced files
//! stay on storage for readers of older versions until `gc` vacuums them.
//! Reading a Delta dataset lists the files of its latest (or pinned)
//! version from the log, never the directory.

pub mod commit;
pub mod read;

use crate::conf::error::ConfigError;
use crate::conf::typed::{get, optional_str};
use chainbatch_executor::storage;
use deltalake_core::DeltaTableBuilder;
use serde_norway::Value;

/// A Delta dataset's settings from the catalog.
#[derive(Debug, Clone, PartialEq)]
pub struct DeltaSettings {
    /// Which version an input reads.
    pub read_at: ReadAt,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ReadAt {
    Latest,
    /// `version: N`
    Version(u64),
    /// `as_of: 2024-03-01T00:00:00Z`: the latest version committed at or
    /// before that time.
    AsOf(String),
}

impl std::fmt::Display for ReadAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReadAt::Latest => write!(f, "the latest version"),
            ReadAt::Version(v) => write!(f, "version {v}"),
            ReadAt::AsOf(t) => write!(f, "the version as of {t}"),
        }
    }
}

impl DeltaSettings {
    /// Reads `format`, `version` and `as_of` of dataset `name`; `None` for
    /// plain Parquet files.
    pub fn parse(name: &str, m: &serde_norway::Mapping) -> Result<Option<Self>, ConfigError> {
        let format = optional_str(m, "format", name)?;
        let pinned = ["version", "as_of"]
            .into_iter()
            .find(|k| get(m, k).is_some_and(|v| !v.is_null()));
        match format.as_deref() {
            None | Some("parquet") | Some("hive") => {
                if let Some(k) = pinned {
                    return Err(ConfigError::new(
                        format!("{name}.{k}"),
                        "pins a Delta Lake version; it applies only with `format: delta`",
                    ));
                }
                return Ok(None);
            }
            Some("delta") => {}
            Some(other) => {
                return Err(ConfigError::new(
                    format!("{name}.format"),
                    format!(
                        "unknown format `{other}`; expected parquet (hive-partitioned files, \
                         the default) or delta (a Delta Lake table)"
                    ),
                ));
            }
        }
        let read_at = match (get(m, "version"), get(m, "as_of")) {
            (Some(v), Some(a)) if !v.is_null() && !a.is_null() => {
                return Err(ConfigError::new(
                    format!("{name}.as_of"),
                    "give `version` or `as_of`, not both",
                ));
            }
            (Some(Value::Number(n)), _) => match n.as_u64() {
                Some(v) => ReadAt::Version(v),
                None => {
                    return Err(ConfigError::new(
                        format!("{name}.version"),
                        format!("expected a table version (0, 1, 2, ...), found {n}"),
                    ));
                }
            },
            (Some(v), _) if !v.is_null() => {
                return Err(ConfigError::new(
                    format!("{name}.version"),
                    format!(
                        "expected a table version (0, 1, 2, ...), found {}",
                        crate::conf::typed::kind_of(v)
                    ),
                ));
            }
            _ => match optional_str(m, "as_of", name)? {
                Some(t) => {
                    // Checked now with the parser the read uses later.
                    let probe = url::Url::parse("memory:///as_of").expect("static URL");
                    DeltaTableBuilder::from_url(probe)
                        .and_then(|b| b.with_datestring(&t))
                        .map_err(|_| {
                            ConfigError::new(
                                format!("{name}.as_of"),
                                format!(
                                    "`{t}` is not an RFC 3339 time; write it like \
                                     2024-03-01T00:00:00Z"
                                ),
                            )
                        })?;
                    ReadAt::AsOf(t)
                }
                None => ReadAt::Latest,
            },
        };
        Ok(Some(DeltaSettings { read_at }))
    }
}

/// What went wrong with a Delta table; the table's URI is in every message.
#[derive(Debug, thiserror::Error)]
pub enum DeltaError {
    #[error("Delta table {table}: {source}")]
    Storage {
        table: String,
        source: storage::StorageError,
    },
    #[error("Delta table {table}: {source}")]
    Delta {
        table: String,
        source: deltalake_core::DeltaTableError,
    },
    #[error("Delta table {table}: {message}")]
    Invalid { table: String, message: String },
}

impl DeltaError {
    fn delta(table: &str) -> impl FnOnce(deltalake_core::DeltaTableError) -> Self + '_ {
        move |source| DeltaError::Delta {
            table: table.to_string(),
            source,
        }
    }
}

/// Commits to S3 tables through Delta's default log store: a commit is a
/// conditional create (`If-None-Match: *`), which S3 and SeaweedFS honour,
/// so no lock table is needed (chainbatch's run leases use the same).
#[derive(Debug)]
struct ConditionalPutLogStores;

impl deltalake_core::logstore::LogStoreFactory for ConditionalPutLogStores {
    fn with_options(
        &self,
        prefixed_store: deltalake_core::logstore::ObjectStoreRef,
        root_store: deltalake_core::logstore::ObjectStoreRef,
        location: &url::Url,
        options: &deltalake_core::logstore::StorageConfig,
    ) -> deltalake_core::DeltaResult<std::sync::Arc<dyn deltalake_core::logstore::LogStore>> {
        Ok(deltalake_core::logstore::default_logstore(
            prefixed_store,
            root_store,
            location,
            options,
        ))
    }
}

fn register_s3_log_stores() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        for scheme in ["s3://", "s3a://"] {
            deltalake_core::logstore::logstore_factories().insert(
                url::Url::parse(scheme).expect("static URL"),
                std::sync::Arc::new(ConditionalPutLogStores),
            );
        }
    });
}

/// A builder for the table at `uri` that goes through chainbatch's own
/// object stores (credentials, endpoint, retries), not a second client.
pub fn table_builder(uri: &str) -> Result<(DeltaTableBuilder, String), DeltaError> {
    register_s3_log_stores();
    let loc = storage::resolve(uri).map_err(|source| DeltaError::Storage {
        table: uri.to_string(),
        source,
    })?;
    let table = loc.uri().trim_end_matches('/').to_string();
    let url = url::Url::parse(&table).map_err(|e| DeltaError::Invalid {
        table: table.clone(),
        message: e.to_string(),
    })?;
    let builder = DeltaTableBuilder::from_url(url.clone())
        .map_err(DeltaError::delta(&table))?
        .with_storage_backend(loc.store.clone(), url);
    Ok((builder, table))
}

/// Whether `uri` holds a Delta table (a `_delta_log` with a commit).
pub async fn exists(uri: &str) -> Result<bool, DeltaError> {
    let (builder, table) = table_builder(uri)?;
    builder
        .build()
        .map_err(DeltaError::delta(&table))?
        .verify_deltatable_existence()
        .await
        .map_err(DeltaError::delta(&table))
}

/// `chainbatch gc` on a Delta table: deletes the files no version younger
/// than `retain` reads. Returns how many files went.
pub async fn vacuum(uri: &str, retain: std::time::Duration) -> Result<usize, DeltaError> {
    if !exists(uri).await? {
        return Ok(0);
    }
    let (builder, table) = table_builder(uri)?;
    let loaded = builder.load().await.map_err(DeltaError::delta(&table))?;
    let retention = chrono_duration(retain);
    let (_, metrics) = loaded
        .vacuum()
        .with_retention_period(retention)
        // The retention is the operator's choice (`gc --delta-retain`).
        .with_enforce_retention_duration(false)
        .await
        .map_err(DeltaError::delta(&table))?;
    Ok(metrics.files_deleted.len())
}

fn chrono_duration(d: std::time::Duration) -> chrono::Duration {
    chrono::Duration::seconds(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The Delta table each of the run's nodes writes, by dataset name, checked
/// before any task runs: a pinned version on an output and a column type
/// Delta cannot hold are configuration errors.
pub fn plan_targets(
    project: &crate::conf::project::Project,
    nodes: &[crate::pipeline::Node],
    shapes: &std::collections::HashMap<String, crate::pipeline::validate::SqlShape>,
) -> Result<std::collections::HashMap<String, commit::DeltaTarget>, ConfigError> {
    let mut out = std::collections::HashMap::new();
    for n in nodes {
        let ds = &project.catalog[&n.output];
        let Some(d) = &ds.delta else { continue };
        if d.read_at != ReadAt::Latest {
            return Err(ConfigError::new(
                format!("{}.version", ds.name),
                format!(
                    "pins the version node `{}` would read, but the node writes this dataset, \
                     which always makes a new version; remove `version`/`as_of`",
                    n.name
                ),
            ));
        }
        let layout = n.layout.as_ref().or(ds.layout.as_ref());
        let schema = &shapes[&n.name].output_schema;
        let keys = ds.written_partition_keys(layout, schema)?;
        let target = commit::plan_target(schema, &keys).map_err(|e| {
            ConfigError::new(format!("{}.format", ds.name), format!("is delta, but {e}"))
        })?;
        out.insert(ds.name.clone(), target);
    }
    Ok(out)
}
