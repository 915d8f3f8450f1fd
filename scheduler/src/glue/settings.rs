//! `glue:` and `athena:` in globals.yml, and a dataset's own `glue:` entry.

use crate::conf::error::ConfigError;
use serde::{Deserialize, Serialize};

/// `glue:` in globals.yml: the Data Catalog outputs are registered in.
/// Absent or null (as in conf/base), registration is off: a dataset's own
/// `glue:` entry then names the table it would be.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GlueSettings {
    /// The database tables are created in (terraform: `<name>_eth`).
    pub database: String,
    /// Region of the catalog; default: the AWS chain's region.
    #[serde(default)]
    pub region: Option<String>,
}

impl GlueSettings {
    pub fn from_globals(globals: &serde_norway::Value) -> Result<Option<Self>, ConfigError> {
        match crate::conf::interpolate::lookup(globals, "glue") {
            None | Some(serde_norway::Value::Null) => Ok(None),
            Some(v) => {
                let s: Self = crate::conf::typed::deserialize(v, "glue", "{database, region}")?;
                check_name(&s.database, "glue.database")?;
                Ok(Some(s))
            }
        }
    }
}

/// `athena:` in globals.yml: where `--verify-athena` queries run.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AthenaSettings {
    /// The workgroup (terraform creates one whose results stay encrypted
    /// in the data bucket).
    #[serde(default = "default_workgroup")]
    pub workgroup: String,
    /// Default: `glue.region`, then the AWS chain's region.
    #[serde(default)]
    pub region: Option<String>,
    /// Query results location, for a workgroup that does not set one.
    #[serde(default)]
    pub output_location: Option<String>,
    /// Longest wait for one query, seconds.
    #[serde(default = "default_timeout")]
    pub timeout_seconds: u64,
}

fn default_workgroup() -> String {
    "primary".into()
}

fn default_timeout() -> u64 {
    600
}

impl AthenaSettings {
    pub fn from_globals(globals: &serde_norway::Value) -> Result<Self, ConfigError> {
        match crate::conf::interpolate::lookup(globals, "athena") {
            None | Some(serde_norway::Value::Null) => Err(ConfigError::new(
                "athena",
                "is required in globals.yml for --verify-athena and for datasets of \
                 `type: athena`: {workgroup, region} (see conf/aws/globals.yml)",
            )),
            Some(v) => crate::conf::typed::deserialize(
                v,
                "athena",
                "{workgroup, region, output_location, timeout_seconds}",
            ),
        }
    }
}

/// How a table's partitions become visible to Athena.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PartitionRegistration {
    /// `BatchCreatePartition` after every commit, recorded in the journal.
    #[default]
    Register,
    /// Partition projection: Athena computes the partitions of a date
    /// range from table properties; no per-run catalog work.
    Projection,
}

/// A dataset's `glue:` entry in catalog.yml (`glue: true` takes every default).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatasetGlue {
    /// Default: `glue.database` in globals.yml.
    #[serde(default)]
    pub database: Option<String>,
    /// Default: the dataset's name.
    #[serde(default)]
    pub table: Option<String>,
    #[serde(default)]
    pub partitions: PartitionRegistration,
    /// Projection only: the dates Athena may read, `FROM,TO` (`NOW` allowed).
    #[serde(default)]
    pub projection_range: Option<String>,
}

/// The first mainnet block's day: the default start of a projected range.
pub const DEFAULT_PROJECTION_RANGE: &str = "2015-07-30,NOW";

impl DatasetGlue {
    pub fn parse(dataset: &str, v: &serde_norway::Value) -> Result<Option<Self>, ConfigError> {
        let key = format!("{dataset}.glue");
        let g = match v {
            serde_norway::Value::Null | serde_norway::Value::Bool(false) => return Ok(None),
            serde_norway::Value::Bool(true) => Self::default(),
            other => crate::conf::typed::deserialize(
                other,
                &key,
                "true or {database, table, partitions, projection_range}",
            )?,
        };
        if let Some(d) = &g.database {
            check_name(d, &format!("{key}.database"))?;
        }
        if let Some(t) = &g.table {
            check_name(t, &format!("{key}.table"))?;
        }
        if g.projection_range.is_some() && g.partitions != PartitionRegistration::Projection {
            return Err(ConfigError::new(
                format!("{key}.projection_range"),
                "applies only with `partitions: projection`",
            ));
        }
        Ok(Some(g))
    }
}

/// Glue and Athena names: lower case letters, digits and underscores (Athena
/// reads nothing else without quoting, and Glue lowercases the rest).
fn check_name(name: &str, key: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name.len() <= 255
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    match ok {
        true => Ok(()),
        false => Err(ConfigError::new(
            key,
            format!(
                "`{name}` is not a Glue name Athena can query: use lower-case letters, digits \
                 and `_` (at most 255)"
            ),
        )),
    }
}
