//! The Glue table of an output dataset, planned before its node runs: a
//! column Athena cannot declare stops the run before anything is written.
//! The plan is stored with the commit in the run journal, so a registration
//! cut short by a crash is finished from the journal alone.

use crate::catalog::Dataset;
use crate::conf::error::ConfigError;
use crate::glue::settings::{DEFAULT_PROJECTION_RANGE, GlueSettings, PartitionRegistration};
use crate::glue::types::{GlueColumn, data_columns, glue_type};
use arrow::datatypes::Schema;
use chainbatch_executor::layout::hive;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Everything a registration needs, independent of the config it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TableDef {
    pub database: String,
    pub table: String,
    /// `s3://bucket/prefix/dataset/`, with the trailing slash Glue expects.
    pub location: String,
    pub columns: Vec<GlueColumn>,
    pub partition_keys: Vec<GlueColumn>,
    /// Partition projection's table properties; empty when partitions are
    /// registered one by one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub projection: BTreeMap<String, String>,
    /// A Delta Lake table: Athena reads its files and partitions from the
    /// log, so partition keys are plain columns and nothing is registered
    /// per partition.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub delta: bool,
}

impl TableDef {
    pub fn name(&self) -> String {
        format!("{}.{}", self.database, self.table)
    }

    /// Whether partitions are registered one by one (not projected, not
    /// read from a Delta log).
    pub fn registers_partitions(&self) -> bool {
        !self.delta && !self.partition_keys.is_empty() && self.projection.is_empty()
    }

    /// The partition keys Glue holds: none for a Delta table, whose
    /// partition columns are plain columns to Athena.
    pub fn glue_partition_keys(&self) -> &[GlueColumn] {
        if self.delta {
            &[]
        } else {
            &self.partition_keys
        }
    }

    /// The columns Glue holds: with a Delta table's partition columns.
    pub fn glue_columns(&self) -> Vec<GlueColumn> {
        let mut c = self.columns.clone();
        if self.delta {
            c.extend(self.partition_keys.iter().cloned());
        }
        c
    }

    /// The partition values of a hive path (`date=2024-03-01/hour=5`), in
    /// key order, as Glue stores them.
    pub fn partition_values(&self, path: &str) -> Result<Vec<String>, String> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        if segments.len() != self.partition_keys.len() {
            return Err(format!(
                "partition `{path}` does not match the partition keys ({}) of {}",
                self.key_names().join(", "),
                self.name()
            ));
        }
        segments
            .iter()
            .zip(&self.partition_keys)
            .map(|(s, k)| match s.split_once('=') {
                Some((name, v)) if name.eq_ignore_ascii_case(&k.name) => {
                    Ok(hive::unescape_value(v).unwrap_or_else(|| hive::NULL_PARTITION.into()))
                }
                _ => Err(format!(
                    "partition `{path}`: expected `{}=...` in {}",
                    k.name,
                    self.name()
                )),
            })
            .collect()
    }

    pub fn partition_location(&self, path: &str) -> String {
        format!("{}{}/", self.location, path.trim_matches('/'))
    }

    pub fn key_names(&self) -> Vec<String> {
        self.partition_keys.iter().map(|k| k.name.clone()).collect()
    }
}

/// Plans the Glue table of `ds`, written with `layout`, whose files hold
/// `schema` (partition columns may be in it or not). `None` when the dataset
/// is not registered.
pub fn plan_table(
    ds: &Dataset,
    layout: Option<&chainbatch_executor::layout::Layout>,
    settings: &GlueSettings,
    schema: &Schema,
) -> Result<Option<TableDef>, ConfigError> {
    let Some(g) = &ds.glue else {
        return Ok(None);
    };
    let key = format!("{}.glue", ds.name);
    let table = g.table.clone().unwrap_or_else(|| ds.name.clone());
    if !table
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
    {
        return Err(ConfigError::new(
            format!("{key}.table"),
            format!("the dataset name `{table}` is not a Glue table name: set `table`"),
        ));
    }
    let location = format!("{}/", ds.path.trim_end_matches('/'));
    if !location.starts_with("s3://") {
        return Err(ConfigError::new(
            format!("{}.path", ds.name),
            format!(
                "is {}; a Glue table's files must be on S3 (s3://...); to run without \
                 registering tables, pass --globals glue=null",
                ds.path
            ),
        ));
    }
    let keys = ds.written_partition_keys(layout, schema)?;
    let partition_keys = keys
        .iter()
        .map(|(name, arrow)| {
            let glue_type = glue_type(name, arrow).map_err(|e| {
                ConfigError::new(format!("{}.partitions.{name}", ds.name), e.to_string())
            })?;
            Ok(GlueColumn {
                name: name.to_ascii_lowercase(),
                glue_type,
            })
        })
        .collect::<Result<Vec<_>, ConfigError>>()?;
    let key_names: Vec<&str> = keys.iter().map(|(k, _)| k.as_str()).collect();
    let columns = data_columns(schema, &key_names).map_err(|e| {
        ConfigError::new(
            format!("{key} (node output)"),
            format!("{e}; or take the dataset out of Glue (remove `glue:`)"),
        )
    })?;
    let projection = match g.partitions {
        PartitionRegistration::Register => BTreeMap::new(),
        PartitionRegistration::Projection => projection(
            &key,
            &location,
            &partition_keys,
            g.projection_range
                .as_deref()
                .unwrap_or(DEFAULT_PROJECTION_RANGE),
        )?,
    };
    let delta = ds.delta.is_some();
    if delta && !projection.is_empty() {
        return Err(ConfigError::new(
            format!("{key}.partitions"),
            "is `projection`, but a Delta table's partitions come from its log: remove it",
        ));
    }
    Ok(Some(TableDef {
        database: g
            .database
            .clone()
            .unwrap_or_else(|| settings.database.clone()),
        table,
        location,
        columns,
        partition_keys,
        projection,
        delta,
    }))
}

/// Partition projection over date keys: Athena derives every partition in
/// `range` from these properties instead of asking the catalog.
fn projection(
    key: &str,
    location: &str,
    keys: &[GlueColumn],
    range: &str,
) -> Result<BTreeMap<String, String>, ConfigError> {
    if keys.is_empty() {
        return Err(ConfigError::new(
            format!("{key}.partitions"),
            "is `projection`, but the dataset has no partitions to project",
        ));
    }
    let mut props = BTreeMap::from([("projection.enabled".to_string(), "true".to_string())]);
    let mut template = location.to_string();
    for k in keys {
        if k.glue_type != "date" {
            return Err(ConfigError::new(
                format!("{key}.partitions"),
                format!(
                    "is `projection`, which chainbatch sets up for date partitions; `{}` is {} \
                     (use `partitions: register`)",
                    k.name, k.glue_type
                ),
            ));
        }
        let p = format!("projection.{}", k.name);
        props.insert(format!("{p}.type"), "date".into());
        props.insert(format!("{p}.format"), "yyyy-MM-dd".into());
        props.insert(format!("{p}.range"), range.to_string());
        props.insert(format!("{p}.interval"), "1".into());
        props.insert(format!("{p}.interval.unit"), "DAYS".into());
        template.push_str(&format!("{}=${{{}}}/", k.name, k.name));
    }
    props.insert("storage.location.template".into(), template);
    Ok(props)
}
