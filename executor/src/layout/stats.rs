//! Min, max and null counts per column, read back from the Parquet footer
//! that the writer just produced: no second pass over the data.

use crate::manifest::ColumnStats;
use arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion_functions_aggregate_common::min_max::{max_batch, min_batch};
use parquet::arrow::arrow_reader::statistics::StatisticsConverter;
use parquet::file::metadata::ParquetMetaData;
use std::cmp::Ordering;
use std::collections::BTreeMap;

/// Types whose statistics are worth carrying in a manifest.
fn has_useful_stats(dt: &DataType) -> bool {
    dt.is_numeric()
        || dt.is_temporal()
        || matches!(
            dt,
            DataType::Boolean | DataType::Utf8 | DataType::Utf8View | DataType::LargeUtf8
        )
}

/// Min and max (as text) and null count over all row groups of a written file, for
/// each column whose type has useful statistics (numbers, times, booleans, strings).
pub fn file_stats(
    metadata: &ParquetMetaData,
    schema: &SchemaRef,
) -> Result<BTreeMap<String, ColumnStats>> {
    let mut out = BTreeMap::new();
    let parquet_schema = metadata.file_metadata().schema_descr();
    for field in schema.fields() {
        if !has_useful_stats(field.data_type()) {
            continue;
        }
        let Ok(conv) = StatisticsConverter::try_new(field.name(), schema, parquet_schema) else {
            continue;
        };
        let groups = metadata.row_groups();
        let mins = conv.row_group_mins(groups.iter())?;
        let maxes = conv.row_group_maxes(groups.iter())?;
        let nulls = conv.row_group_null_counts(groups.iter())?;
        let min = min_batch(&mins)?;
        let max = max_batch(&maxes)?;
        out.insert(
            field.name().clone(),
            ColumnStats {
                min: (!min.is_null()).then(|| min.to_string()),
                max: (!max.is_null()).then(|| max.to_string()),
                nulls: nulls.iter().flatten().sum(),
            },
        );
    }
    Ok(out)
}

/// Folds `other` into `acc`, comparing values as their column type.
pub fn merge_stats(
    acc: &mut BTreeMap<String, ColumnStats>,
    other: &BTreeMap<String, ColumnStats>,
    schema: &SchemaRef,
) {
    for (col, s) in other {
        let Ok(field) = schema.field_with_name(col) else {
            continue;
        };
        let dt = field.data_type();
        match acc.get_mut(col) {
            None => {
                acc.insert(col.clone(), s.clone());
            }
            Some(a) => {
                a.nulls += s.nulls;
                a.min = pick(a.min.take(), s.min.clone(), dt, Ordering::Less);
                a.max = pick(a.max.take(), s.max.clone(), dt, Ordering::Greater);
            }
        }
    }
}

fn pick(a: Option<String>, b: Option<String>, dt: &DataType, want: Ordering) -> Option<String> {
    match (a, b) {
        (Some(a), Some(b)) => {
            let (sa, sb) = (
                ScalarValue::try_from_string(a.clone(), dt),
                ScalarValue::try_from_string(b.clone(), dt),
            );
            let ord = match (sa, sb) {
                (Ok(x), Ok(y)) => x.partial_cmp(&y),
                _ => Some(a.cmp(&b)),
            };
            if ord == Some(want) { Some(a) } else { Some(b) }
        }
        (a, b) => a.or(b),
    }
}
