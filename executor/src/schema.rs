//! Column declarations in specs and config, in SQL-style type names.
//!
//! Types read as a data engineer writes them: `bigint`, `decimal(38,0)`,
//! `string`, `timestamp` (UTC, seconds), `timestamp(ms)`, `date`, `binary`.

use crate::error::{TaskError, TaskResult};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// One declared column: name, SQL-style type and nullability.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    /// The column's name.
    pub name: String,
    /// SQL-style type name (`bigint`, `decimal(38,0)`, `timestamp(ms)`), written as `type`.
    #[serde(rename = "type")]
    pub data_type: String,
    /// Whether the column may hold NULL (default true); a non-null column must
    /// be in every file.
    #[serde(default = "default_true")]
    pub nullable: bool,
}

fn default_true() -> bool {
    true
}

impl ColumnSpec {
    /// A nullable column of SQL type `data_type`.
    pub fn new(name: &str, data_type: &str) -> Self {
        Self {
            name: name.to_string(),
            data_type: data_type.to_string(),
            nullable: true,
        }
    }

    /// The Arrow field; an unknown type is a bad spec at `{field_path}.type`.
    pub fn to_field(&self, field_path: &str) -> TaskResult<Field> {
        let dt = parse_type(&self.data_type).map_err(|e| {
            TaskError::bad_spec(
                format!("{field_path}.type"),
                format!("column {}: {e}", self.name),
            )
        })?;
        Ok(Field::new(&self.name, dt, self.nullable))
    }

    /// The declaration of an Arrow field, with its type's SQL-style name.
    pub fn from_field(field: &Field) -> Self {
        Self {
            name: field.name().clone(),
            data_type: type_name(field.data_type()),
            nullable: field.is_nullable(),
        }
    }
}

/// The Arrow schema of `columns`; errors name column `i` as `{field_path}[i]`.
pub fn to_schema(columns: &[ColumnSpec], field_path: &str) -> TaskResult<Arc<Schema>> {
    let fields = columns
        .iter()
        .enumerate()
        .map(|(i, c)| c.to_field(&format!("{field_path}[{i}]")))
        .collect::<TaskResult<Vec<_>>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

/// Parses a SQL-style type name into an Arrow type.
pub fn parse_type(text: &str) -> Result<DataType, String> {
    let t = text.trim().to_ascii_lowercase().replace(' ', "");
    let dt = match t.as_str() {
        "bool" | "boolean" => DataType::Boolean,
        "tinyint" | "int8" => DataType::Int8,
        "smallint" | "int16" => DataType::Int16,
        "int" | "integer" | "int32" => DataType::Int32,
        "bigint" | "long" | "int64" => DataType::Int64,
        "uint64" | "ubigint" => DataType::UInt64,
        "float" | "real" | "float32" => DataType::Float32,
        "double" | "float64" => DataType::Float64,
        "string" | "varchar" | "text" | "utf8" => DataType::Utf8,
        "largestring" | "large_utf8" => DataType::LargeUtf8,
        "binary" | "bytea" | "varbinary" => DataType::Binary,
        "date" | "date32" => DataType::Date32,
        "timestamp" | "timestamp(s)" => DataType::Timestamp(TimeUnit::Second, Some("UTC".into())),
        "timestamp(ms)" => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
        "timestamp(us)" => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        "timestamp(ns)" => DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
        other => {
            if let Some(inner) = other
                .strip_prefix("list<")
                .or_else(|| other.strip_prefix("array<"))
                .and_then(|r| r.strip_suffix('>'))
            {
                let item = parse_type(inner)?;
                return Ok(DataType::List(Arc::new(Field::new("item", item, true))));
            }
            if let Some(args) = other
                .strip_prefix("decimal(")
                .and_then(|r| r.strip_suffix(')'))
            {
                let (p, s) = args
                    .split_once(',')
                    .ok_or_else(|| format!("expected decimal(precision,scale), got {text:?}"))?;
                let p: u8 = p
                    .parse()
                    .map_err(|_| format!("bad precision in {text:?}"))?;
                let s: i8 = s.parse().map_err(|_| format!("bad scale in {text:?}"))?;
                match p {
                    1..=38 => DataType::Decimal128(p, s),
                    39..=76 => DataType::Decimal256(p, s),
                    _ => return Err(format!("decimal precision must be 1..76, got {p}")),
                }
            } else {
                return Err(format!(
                    "unknown type {text:?}; expected one of boolean, int, bigint, double, \
                     string, binary, date, timestamp, timestamp(ms|us|ns), decimal(p,s), list<type>"
                ));
            }
        }
    };
    Ok(dt)
}

/// The SQL-style name of an Arrow type, the inverse of [`parse_type`].
pub fn type_name(dt: &DataType) -> String {
    match dt {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 => "smallint".into(),
        DataType::Int32 => "int".into(),
        DataType::Int64 => "bigint".into(),
        DataType::UInt64 => "uint64".into(),
        DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Utf8 | DataType::Utf8View => "string".into(),
        DataType::LargeUtf8 => "largestring".into(),
        DataType::Binary | DataType::BinaryView => "binary".into(),
        DataType::Date32 => "date".into(),
        DataType::Timestamp(TimeUnit::Second, _) => "timestamp".into(),
        DataType::Timestamp(TimeUnit::Millisecond, _) => "timestamp(ms)".into(),
        DataType::Timestamp(TimeUnit::Microsecond, _) => "timestamp(us)".into(),
        DataType::Timestamp(TimeUnit::Nanosecond, _) => "timestamp(ns)".into(),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => format!("decimal({p},{s})"),
        DataType::List(f) | DataType::LargeList(f) => format!("list<{}>", type_name(f.data_type())),
        other => other.to_string(),
    }
}

/// True when data of type `found` can stand where `expected` is declared:
/// the same type, or a string/binary view of it.
pub fn compatible(expected: &DataType, found: &DataType) -> bool {
    use DataType::*;
    expected == found
        || matches!(
            (expected, found),
            (Utf8, Utf8View | LargeUtf8)
                | (Binary, BinaryView | LargeBinary)
                | (Timestamp(_, _), Timestamp(_, _))
        )
}
