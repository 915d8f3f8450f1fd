//! Ethereum addresses: `0x` followed by 40 hex digits, compared lower-case.

use super::RowFunction;
use super::function::map_strings;
use arrow::array::{BooleanArray, StringArray};
use arrow::datatypes::DataType;
use datafusion::logical_expr::ScalarUDF;
use std::sync::Arc;

/// Whether `s` is `0x` (or `0X`) followed by exactly 40 hex digits.
pub fn is_valid_address(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 42
        && b[0] == b'0'
        && (b[1] == b'x' || b[1] == b'X')
        && b[2..].iter().all(u8::is_ascii_hexdigit)
}

/// The `normalize_address(s)` function: the address in lower case, or NULL when
/// `s` is not one.
pub fn normalize_address() -> Arc<ScalarUDF> {
    RowFunction::udf(
        "normalize_address",
        RowFunction::any_args(1),
        |_| Ok(DataType::Utf8),
        |a, _| {
            map_strings::<StringArray, _>(&a[0], |v| {
                is_valid_address(v).then(|| v.to_ascii_lowercase())
            })
        },
    )
}

/// The `is_address(s)` function: whether `s` is an address (NULL for NULL).
pub fn is_address() -> Arc<ScalarUDF> {
    RowFunction::udf(
        "is_address",
        RowFunction::any_args(1),
        |_| Ok(DataType::Boolean),
        |a, _| map_strings::<BooleanArray, _>(&a[0], |v| Some(is_valid_address(v))),
    )
}
