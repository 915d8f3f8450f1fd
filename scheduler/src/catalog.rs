//! The data catalog: datasets by name, with type, path, hive partitions,
//! schema, layout and save mode.

use crate::conf::error::ConfigError;
use crate::conf::typed::{
    check_keys, deserialize, get, kind_of, mapping, optional_str, required_str,
};
use chainbatch_executor::layout::Layout;
use chainbatch_executor::schema::{ColumnSpec, parse_type};
use serde_norway::Value;
use std::collections::BTreeMap;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetType {
    Parquet,
    Jsonl,
    Csv,
}

/// What a write does to data already there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SaveMode {
    /// Replace the partitions present in the output; leave the others.
    #[default]
    OverwritePartitions,
    /// Add files next to what is there.
    Append,
    /// Refuse to write when the dataset already has data.
    ErrorIfExists,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Dataset {
    pub name: String,
    pub kind: DatasetType,
    pub path: String,
    /// Hive partition columns, in directory order.
    pub partitions: Vec<ColumnSpec>,
    /// Declared file schema (without partition columns).
    pub schema: Option<Vec<ColumnSpec>>,
    pub layout: Option<Layout>,
    pub save_mode: SaveMode,
    /// The partition column that holds the date, for `--dates` pruning.
    pub date_column: Option<String>,
    /// Inputs only: the completeness gate (see `completeness`).
    pub completeness: Option<crate::completeness::Completeness>,
    /// Outputs only: the Glue table Athena reads the dataset through.
    pub glue: Option<crate::glue::settings::DatasetGlue>,
    /// Inputs only: the Athena query whose UNLOADed result the dataset is
    /// (`type: athena`); its path is the run's staging prefix.
    pub athena: Option<crate::athena::unload::AthenaSource>,
    /// `format: delta`: a Delta Lake table (the files plus a transaction
    /// log), read at its latest or a pinned version.
    pub delta: Option<crate::delta::DeltaSettings>,
}

impl Dataset {
    /// Parquet files under `path`, partitioned by a `date` directory and
    /// each date replaced whole: the shape of the public dataset's tables.
    pub fn parquet_by_date(name: &str, path: &str) -> Self {
        Self {
            name: name.to_string(),
            kind: DatasetType::Parquet,
            path: path.to_string(),
            partitions: vec![ColumnSpec::new("date", "string")],
            schema: None,
            layout: None,
            save_mode: SaveMode::OverwritePartitions,
            date_column: Some("date".into()),
            completeness: None,
            glue: None,
            athena: None,
            delta: None,
        }
    }

    /// The partition keys of the files a node writes here with `layout`
    /// (the layout's keys, else the catalog's partitions), each with its
    /// Arrow type: declared in the catalog, else the node output's, else
    /// a string (a bucket number, for one, is not an output column).
    pub fn written_partition_keys(
        &self,
        layout: Option<&Layout>,
        output: &arrow::datatypes::Schema,
    ) -> Result<Vec<(String, arrow::datatypes::DataType)>, ConfigError> {
        let names: Vec<String> = match layout {
            Some(l) if !l.partition_by.is_empty() => l
                .partition_by
                .iter()
                .map(|p| p.name().to_string())
                .collect(),
            _ => self.partitions.iter().map(|p| p.name.clone()).collect(),
        };
        names
            .into_iter()
            .map(|name| {
                let declared = self.partitions.iter().find(|p| p.name == name);
                let arrow = match declared {
                    Some(p) => parse_type(&p.data_type).map_err(|e| {
                        ConfigError::new(format!("{}.partitions.{name}", self.name), e)
                    })?,
                    None => output
                        .field_with_name(&name)
                        .map(|f| f.data_type().clone())
                        .unwrap_or(arrow::datatypes::DataType::Utf8),
                };
                Ok((name, arrow))
            })
            .collect()
    }
}

pub type Catalog = BTreeMap<String, Dataset>;

const DATASET_KEYS: &[&str] = &[
    "type",
    "path",
    "partitions",
    "schema",
    "layout",
    "save_mode",
    "date_column",
    "completeness",
    "glue",
    "query",
    "sql_file",
    "database",
    "format",
    "version",
    "as_of",
];

/// `conf_dir` is where `sql_file` of an Athena dataset is read from.
pub fn parse_catalog(root: &Value, conf_dir: &std::path::Path) -> Result<Catalog, ConfigError> {
    let mut out = Catalog::new();
    for (name, v) in mapping(root, "")? {
        let name = name.as_str().unwrap_or_default().to_string();
        out.insert(name.clone(), parse_dataset(&name, v, conf_dir)?);
    }
    for ds in out.values() {
        if let Some(b) = ds.completeness.as_ref().and_then(|c| c.blocks.as_ref())
            && !out.contains_key(b)
        {
            let hint = crate::conf::error::suggest(b, out.keys().map(String::as_str))
                .map(|s| format!("; did you mean `{s}`?"))
                .unwrap_or_default();
            return Err(ConfigError::new(
                format!("{}.completeness.blocks", ds.name),
                format!("no dataset `{b}` in the catalog{hint}"),
            ));
        }
    }
    Ok(out)
}

fn parse_dataset(
    name: &str,
    v: &Value,
    conf_dir: &std::path::Path,
) -> Result<Dataset, ConfigError> {
    let m = mapping(v, name)?;
    check_keys(m, DATASET_KEYS, name)?;
    let kind_name = required_str(m, "type", name)?;
    let athena = match kind_name.as_str() {
        "athena" => Some(parse_athena(name, m, conf_dir)?),
        _ => {
            for k in ["query", "sql_file", "database"] {
                if get(m, k).is_some() {
                    return Err(ConfigError::new(
                        format!("{name}.{k}"),
                        "applies only to `type: athena` datasets",
                    ));
                }
            }
            None
        }
    };
    let kind = match kind_name.as_str() {
        "parquet" | "athena" => DatasetType::Parquet,
        "jsonl" | "json" => DatasetType::Jsonl,
        "csv" => DatasetType::Csv,
        other => {
            return Err(ConfigError::new(
                format!("{name}.type"),
                format!("unknown dataset type `{other}`; expected parquet, jsonl, csv or athena"),
            ));
        }
    };
    let path = match &athena {
        Some(_) => crate::athena::unload::UNSTAGED_PATH.to_string(),
        None => required_str(m, "path", name)?,
    };
    if path.trim().is_empty() {
        return Err(ConfigError::new(
            format!("{name}.path"),
            "must not be empty",
        ));
    }
    let partitions = parse_partitions(get(m, "partitions"), &format!("{name}.partitions"))?;
    let schema = match get(m, "schema") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(crate::eth::schema::named_columns(s).ok_or_else(|| {
            ConfigError::new(
                format!("{name}.schema"),
                format!(
                    "unknown schema `{s}`; expected a list of {{name, type}} or one of: {}",
                    crate::eth::schema::names().join(", ")
                ),
            )
        })?),
        Some(other) => {
            let cols: Vec<ColumnSpec> = deserialize(
                other,
                &format!("{name}.schema"),
                "a list of {name, type} columns",
            )?;
            for (i, c) in cols.iter().enumerate() {
                parse_type(&c.data_type)
                    .map_err(|e| ConfigError::new(format!("{name}.schema[{i}].type"), e))?;
            }
            Some(cols)
        }
    };
    let layout = match get(m, "layout") {
        None | Some(Value::Null) => None,
        Some(l) => Some(parse_layout(l, &format!("{name}.layout"))?),
    };
    let save_mode = match optional_str(m, "save_mode", name)?.as_deref() {
        None | Some("overwrite_partitions") | Some("overwrite") => SaveMode::OverwritePartitions,
        Some("append") => SaveMode::Append,
        Some("error_if_exists") | Some("error") => SaveMode::ErrorIfExists,
        Some(other) => {
            return Err(ConfigError::new(
                format!("{name}.save_mode"),
                format!(
                    "unknown save mode `{other}`; expected overwrite_partitions, append or error_if_exists"
                ),
            ));
        }
    };
    if kind != DatasetType::Parquet && layout.is_some() {
        return Err(ConfigError::new(
            format!("{name}.layout"),
            "only parquet datasets can be written with a layout",
        ));
    }
    let date_column = optional_str(m, "date_column", name)?.or_else(|| {
        partitions
            .iter()
            .find(|p| p.name == "date")
            .map(|p| p.name.clone())
    });
    let completeness = match get(m, "completeness") {
        None | Some(Value::Null) => None,
        Some(v) => Some(deserialize(
            v,
            &format!("{name}.completeness"),
            "{block_column, blocks, count_column, blocks_number_column}",
        )?),
    };
    let glue = match get(m, "glue") {
        None => None,
        Some(v) => crate::glue::settings::DatasetGlue::parse(name, v)?,
    };
    if glue.is_some() && kind != DatasetType::Parquet {
        return Err(ConfigError::new(
            format!("{name}.glue"),
            "only parquet datasets are registered in Glue",
        ));
    }
    let delta = crate::delta::DeltaSettings::parse(name, m)?;
    if delta.is_some() && (kind != DatasetType::Parquet || athena.is_some()) {
        return Err(ConfigError::new(
            format!("{name}.format"),
            "a Delta Lake table holds Parquet files: use it with `type: parquet`",
        ));
    }
    Ok(Dataset {
        name: name.to_string(),
        kind,
        path,
        partitions,
        schema,
        layout,
        save_mode,
        date_column,
        completeness,
        glue,
        athena,
        delta,
    })
}

/// `type: athena`: `query` or `sql_file` (relative to the conf folder), and
/// `database`; no `path` (the run unloads the result below its staging).
fn parse_athena(
    name: &str,
    m: &serde_norway::Mapping,
    conf_dir: &std::path::Path,
) -> Result<crate::athena::unload::AthenaSource, ConfigError> {
    if get(m, "path").is_some() {
        return Err(ConfigError::new(
            format!("{name}.path"),
            "an Athena dataset has no path: each run UNLOADs the query's result below \
             <out_root>/_chainbatch/athena/",
        ));
    }
    let query = crate::conf::typed::text_or_file(m, "query", "sql_file", name, conf_dir)?;
    Ok(crate::athena::unload::AthenaSource {
        query,
        database: optional_str(m, "database", name)?,
    })
}

/// `partitions: {date: date}` or `[{name: date, type: date}]` or `[date]` (strings).
fn parse_partitions(v: Option<&Value>, key: &str) -> Result<Vec<ColumnSpec>, ConfigError> {
    let cols = match v {
        None | Some(Value::Null) => vec![],
        Some(Value::Mapping(m)) => m
            .iter()
            .map(|(k, t)| {
                let name = k.as_str().unwrap_or_default();
                let t = t.as_str().ok_or_else(|| {
                    ConfigError::new(
                        format!("{key}.{name}"),
                        format!("expected a type name, found {}", kind_of(t)),
                    )
                })?;
                Ok(ColumnSpec::new(name, t))
            })
            .collect::<Result<Vec<_>, ConfigError>>()?,
        Some(Value::Sequence(items)) => items
            .iter()
            .enumerate()
            .map(|(i, item)| match item {
                Value::String(s) => Ok(ColumnSpec::new(s, "string")),
                other => deserialize(
                    other,
                    &format!("{key}[{i}]"),
                    "a column name or {name, type}",
                ),
            })
            .collect::<Result<Vec<_>, ConfigError>>()?,
        Some(other) => {
            return Err(ConfigError::new(
                key,
                format!(
                    "expected a mapping of column: type, found {}",
                    kind_of(other)
                ),
            ));
        }
    };
    for (i, c) in cols.iter().enumerate() {
        parse_type(&c.data_type).map_err(|e| ConfigError::new(format!("{key}[{i}]"), e))?;
    }
    Ok(cols)
}

pub fn parse_layout(v: &Value, key: &str) -> Result<Layout, ConfigError> {
    let layout: Layout = deserialize(
        v,
        key,
        "a layout (partition_by, bucket_by, sort_by, target_file_bytes, ...)",
    )?;
    layout.validate(key).map_err(|e| match e.kind {
        chainbatch_executor::error::ErrorKind::BadSpec { field } => {
            ConfigError::new(field, e.message)
        }
        _ => ConfigError::new(key, e.message),
    })?;
    Ok(layout)
}
