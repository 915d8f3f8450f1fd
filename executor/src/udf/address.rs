//! Ethereum addresses: `0x` followed by 40 hex digits, compared lower-case.

use super::RowFunction;
use arrow::array::{ArrayRef, AsArray, BooleanArray, StringArray};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::logical_expr::ScalarUDF;
use std::sync::Arc;

pub fn is_valid_address(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 42
        && b[0] == b'0'
        && (b[1] == b'x' || b[1] == b'X')
        && b[2..].iter().all(u8::is_ascii_hexdigit)
}

pub fn normalize_address() -> Arc<ScalarUDF> {
    RowFunction::udf(
        "normalize_address",
        RowFunction::any_args(1),
        |_| Ok(DataType::Utf8),
        |a, _| {
            let s = cast(&a[0], &DataType::Utf8)?;
            let out: StringArray = s
                .as_string::<i32>()
                .iter()
                .map(|v| {
                    v.filter(|v| is_valid_address(v))
                        .map(str::to_ascii_lowercase)
                })
                .collect();
            Ok(Arc::new(out) as ArrayRef)
        },
    )
}

pub fn is_address() -> Arc<ScalarUDF> {
    RowFunction::udf(
        "is_address",
        RowFunction::any_args(1),
        |_| Ok(DataType::Boolean),
        |a, _| {
            let s = cast(&a[0], &DataType::Utf8)?;
            let out: BooleanArray = s
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(is_valid_address))
                .collect();
            Ok(Arc::new(out) as ArrayRef)
        },
    )
}
