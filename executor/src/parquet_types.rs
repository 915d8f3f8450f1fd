//! Arrow types as they go into Parquet files. Parquet has no seconds unit
//! for timestamps: arrow-rs writes `Timestamp(Second)` as a bare INT64, which
//! DuckDB, Spark, Athena and pyarrow read as BIGINT. Files therefore store
//! such columns as microseconds (`TIMESTAMP(MICROS)`, UTC-adjusted when a
//! zone is set), the unit Spark writes; readers get real timestamps, and
//! chainbatch reads them back into its declared seconds type.

use arrow::array::RecordBatch;
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use parquet::arrow::ArrowSchemaConverter;
use parquet::errors::ParquetError;
use parquet::file::metadata::SortingColumn;
use std::sync::Arc;

fn file_type(t: &DataType) -> DataType {
    match t {
        DataType::Timestamp(TimeUnit::Second, tz) => {
            DataType::Timestamp(TimeUnit::Microsecond, tz.clone())
        }
        other => other.clone(),
    }
}

/// The schema a file is written with: `schema` with second timestamps as
/// microseconds. The same `Arc` when nothing changes.
pub fn file_schema(schema: &SchemaRef) -> SchemaRef {
    if !schema
        .fields()
        .iter()
        .any(|f| file_type(f.data_type()) != *f.data_type())
    {
        return schema.clone();
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| f.as_ref().clone().with_data_type(file_type(f.data_type())))
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// `batch` cast to `file_schema` (see [`file_schema`]).
pub fn to_file_batch(
    batch: &RecordBatch,
    file_schema: &SchemaRef,
) -> Result<RecordBatch, ArrowError> {
    if Arc::ptr_eq(&batch.schema(), file_schema) || batch.schema().fields() == file_schema.fields()
    {
        return Ok(batch.clone());
    }
    let columns = batch
        .columns()
        .iter()
        .zip(file_schema.fields())
        .map(|(c, f)| {
            if c.data_type() == f.data_type() {
                Ok(c.clone())
            } else {
                cast(c, f.data_type())
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    RecordBatch::try_new(file_schema.clone(), columns)
}

/// The footer's `sorting_columns` for `keys` (column name, descending),
/// ascending with nulls last and descending with nulls first. Keys that are
/// not top-level columns of `schema` (partition columns) are left out.
pub fn sorting_columns(
    schema: &Schema,
    keys: &[(&str, bool)],
) -> Result<Vec<SortingColumn>, ParquetError> {
    let descr = ArrowSchemaConverter::new().convert(schema)?;
    Ok(keys
        .iter()
        .filter_map(|&(name, descending)| {
            let leaf =
                (0..descr.num_columns()).find(|&i| descr.column(i).path().parts() == [name])?;
            Some(SortingColumn {
                column_idx: leaf as i32,
                descending,
                nulls_first: descending,
            })
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Int64Array, TimestampMicrosecondArray, TimestampSecondArray};

    #[test]
    fn second_timestamps_are_written_as_microseconds_with_their_zone() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("n", DataType::Int64, false),
            Field::new(
                "ts",
                DataType::Timestamp(TimeUnit::Second, Some("UTC".into())),
                true,
            ),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(Int64Array::from(vec![1])),
                Arc::new(TimestampSecondArray::from(vec![1_683_000_000]).with_timezone("UTC")),
            ],
        )
        .unwrap();
        let fs = file_schema(&schema);
        assert_eq!(
            fs.field(1).data_type(),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        );
        let out = to_file_batch(&batch, &fs).unwrap();
        let ts = out
            .column(1)
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(ts.value(0), 1_683_000_000_000_000);
        // Nothing to change: the same schema comes back.
        let plain = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        assert!(Arc::ptr_eq(&file_schema(&plain), &plain));
    }
}
