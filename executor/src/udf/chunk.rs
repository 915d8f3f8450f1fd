//! Block-range chunks: `block_number / size`, the partition key of the
//! `block_chunks` layout.

use super::RowFunction;
use arrow::array::{Array, ArrayRef, AsArray, Int64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int64Type};
use datafusion::error::DataFusionError;
use datafusion::logical_expr::ScalarUDF;
use std::sync::Arc;

/// The `block_chunk(block_number, size)` function: `block_number / size`
/// rounded down; a size below 1 is an error.
pub fn block_chunk() -> Arc<ScalarUDF> {
    RowFunction::udf(
        "block_chunk",
        RowFunction::any_args(2),
        |_| Ok(DataType::Int64),
        |a, _| {
            let blocks = cast(&a[0], &DataType::Int64)?;
            let sizes = cast(&a[1], &DataType::Int64)?;
            let (blocks, sizes) = (
                blocks.as_primitive::<Int64Type>(),
                sizes.as_primitive::<Int64Type>(),
            );
            let mut out = Vec::with_capacity(blocks.len());
            for i in 0..blocks.len() {
                if blocks.is_null(i) || sizes.is_null(i) {
                    out.push(None);
                    continue;
                }
                let size = sizes.value(i);
                if size <= 0 {
                    return Err(DataFusionError::Execution(format!(
                        "block_chunk: chunk size must be positive, got {size}"
                    )));
                }
                out.push(Some(blocks.value(i).div_euclid(size)));
            }
            Ok(Arc::new(Int64Array::from(out)) as ArrayRef)
        },
    )
}
