//! Arrow types as Glue (Hive DDL) types, the ones Athena reads Parquet with.
//! A type Athena cannot declare is refused with the column and the choices,
//! never silently narrowed.

use arrow::datatypes::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};

/// Athena's widest decimal.
pub const MAX_DECIMAL_PRECISION: u8 = 38;

/// One column of a Glue table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GlueColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub glue_type: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("column `{column}` is {arrow_type}, which Athena cannot declare: {choices}")]
pub struct UnsupportedType {
    pub column: String,
    pub arrow_type: String,
    pub choices: String,
}

/// The Glue type of one Arrow field.
pub fn glue_type(column: &str, t: &DataType) -> Result<String, UnsupportedType> {
    let refuse = |choices: &str| UnsupportedType {
        column: column.to_string(),
        arrow_type: t.to_string(),
        choices: choices.to_string(),
    };
    Ok(match t {
        DataType::Boolean => "boolean".into(),
        DataType::Int8 => "tinyint".into(),
        DataType::Int16 | DataType::UInt8 => "smallint".into(),
        DataType::Int32 | DataType::UInt16 => "int".into(),
        DataType::Int64 | DataType::UInt32 => "bigint".into(),
        DataType::UInt64 => {
            return Err(refuse(
                "Parquet stores it as an unsigned INT64 that Athena reads as a signed bigint; \
                 CAST it to BIGINT (values below 2^63) or DECIMAL(20,0) in the node's SQL",
            ));
        }
        DataType::Float32 => "float".into(),
        DataType::Float64 => "double".into(),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => "string".into(),
        DataType::Binary
        | DataType::LargeBinary
        | DataType::BinaryView
        | DataType::FixedSizeBinary(_) => "binary".into(),
        DataType::Date32 | DataType::Date64 => "date".into(),
        DataType::Timestamp(_, _) => "timestamp".into(),
        DataType::Decimal32(p, s) | DataType::Decimal64(p, s) | DataType::Decimal128(p, s)
            if *p <= MAX_DECIMAL_PRECISION =>
        {
            format!("decimal({p},{s})")
        }
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            return Err(refuse(&format!(
                "Athena's decimals hold at most {MAX_DECIMAL_PRECISION} digits and this one \
                 {p} (scale {s}); store it as a string (CAST({column} AS VARCHAR)) or as \
                 DECIMAL(38,{s}) (CAST({column} AS DECIMAL(38,{s})): a value that does not fit \
                 fails the run, none is rounded)"
            )));
        }
        DataType::List(f) | DataType::LargeList(f) | DataType::FixedSizeList(f, _) => {
            format!(
                "array<{}>",
                glue_type(&format!("{column}[]"), f.data_type())?
            )
        }
        DataType::ListView(f) | DataType::LargeListView(f) => {
            format!(
                "array<{}>",
                glue_type(&format!("{column}[]"), f.data_type())?
            )
        }
        DataType::Struct(fields) => {
            let members = fields
                .iter()
                .map(|f| {
                    let inner = glue_type(&format!("{column}.{}", f.name()), f.data_type())?;
                    Ok(format!("{}:{inner}", f.name()))
                })
                .collect::<Result<Vec<_>, UnsupportedType>>()?;
            format!("struct<{}>", members.join(","))
        }
        DataType::Map(entries, _) => match entries.data_type() {
            DataType::Struct(kv) if kv.len() == 2 => format!(
                "map<{},{}>",
                glue_type(&format!("{column}.key"), kv[0].data_type())?,
                glue_type(&format!("{column}.value"), kv[1].data_type())?
            ),
            _ => return Err(refuse("a map must have a key and a value")),
        },
        DataType::Dictionary(_, value) => glue_type(column, value)?,
        _ => {
            return Err(refuse(
                "CAST it in the node's SQL to a string, number, date, timestamp or decimal",
            ));
        }
    })
}

/// The data columns of a table whose files have `schema`: every field but
/// the partition columns, which live in paths.
pub fn data_columns(
    schema: &Schema,
    partition_keys: &[&str],
) -> Result<Vec<GlueColumn>, UnsupportedType> {
    schema
        .fields()
        .iter()
        .filter(|f| !partition_keys.contains(&f.name().as_str()))
        .map(|f| column(f))
        .collect()
}

fn column(f: &Field) -> Result<GlueColumn, UnsupportedType> {
    Ok(GlueColumn {
        name: f.name().to_ascii_lowercase(),
        glue_type: glue_type(f.name(), f.data_type())?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::datatypes::TimeUnit;
    use std::sync::Arc;

    #[test]
    fn maps_what_athena_declares() {
        let list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
        let cases = [
            (DataType::Int64, "bigint"),
            (DataType::Utf8View, "string"),
            (DataType::Decimal128(38, 0), "decimal(38,0)"),
            (DataType::Decimal128(18, 9), "decimal(18,9)"),
            (
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                "timestamp",
            ),
            (DataType::Date32, "date"),
            (list, "array<string>"),
        ];
        for (t, want) in cases {
            assert_eq!(glue_type("c", &t).unwrap(), want, "{t}");
        }
    }

    #[test]
    fn every_eth_schema_maps_but_the_exact_uint256_amounts() {
        for name in crate::eth::schema::names() {
            for c in crate::eth::schema::named_columns(&name).unwrap() {
                let t = chainbatch_executor::schema::parse_type(&c.data_type).unwrap();
                match glue_type(&c.name, &t) {
                    Ok(g) => assert!(!g.is_empty()),
                    Err(e) => {
                        // uint256 amounts kept exact: wider than Athena's decimals.
                        assert!(
                            name.ends_with(".exact") && c.data_type.contains("76"),
                            "{name}.{}: {e}",
                            c.name
                        );
                    }
                }
            }
        }
        let column = |schema: &str, col: &str| {
            let c = crate::eth::schema::named_columns(schema)
                .unwrap()
                .into_iter()
                .find(|c| c.name == col)
                .unwrap();
            glue_type(
                col,
                &chainbatch_executor::schema::parse_type(&c.data_type).unwrap(),
            )
        };
        assert_eq!(column("eth.transactions", "value").unwrap(), "double");
        assert_eq!(
            column("eth.transactions.exact", "value").unwrap(),
            "decimal(38,0)"
        );
        assert_eq!(column("eth.blocks", "timestamp").unwrap(), "timestamp");
        assert_eq!(column("eth.blocks", "number").unwrap(), "bigint");
        assert!(column("eth.token_transfers.exact", "value").is_err());
        assert_eq!(column("eth.token_transfers", "value").unwrap(), "double");
    }

    #[test]
    fn refuses_wei_wider_than_athena_with_the_choices() {
        let e = glue_type("value", &DataType::Decimal256(76, 0)).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("column `value` is Decimal256(76, 0)"),
            "{text}"
        );
        assert!(text.contains("CAST(value AS VARCHAR)"), "{text}");
        assert!(text.contains("DECIMAL(38,0)"), "{text}");
    }
}
