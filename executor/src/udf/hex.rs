//! Hex strings as bytes, and the method id at the start of calldata.

use super::RowFunction;
use super::function::map_strings;
use arrow::array::{BinaryArray, StringArray};
use arrow::datatypes::DataType;
use datafusion::logical_expr::ScalarUDF;
use std::sync::Arc;

fn strip_0x(s: &str) -> &str {
    s.strip_prefix("0x")
        .or_else(|| s.strip_prefix("0X"))
        .unwrap_or(s)
}

/// The `hex_to_bytes(s)` function: the bytes of a hex string, with or without
/// `0x`; NULL when not hex.
pub fn hex_to_bytes() -> Arc<ScalarUDF> {
    RowFunction::udf(
        "hex_to_bytes",
        RowFunction::any_args(1),
        |_| Ok(DataType::Binary),
        |a, _| map_strings::<BinaryArray, _>(&a[0], |v| hex::decode(strip_0x(v)).ok()),
    )
}

/// `0x` + the first 4 bytes of the calldata, lower-case; NULL for a plain
/// transfer (no calldata) or malformed input.
pub fn method_id_of(input: &str) -> Option<String> {
    let h = strip_0x(input);
    let id = h.get(..8)?;
    id.bytes()
        .all(|b| b.is_ascii_hexdigit())
        .then(|| format!("0x{}", id.to_ascii_lowercase()))
}

/// The `method_id(input)` function: calldata's method id, as [`method_id_of`] gives it.
pub fn method_id() -> Arc<ScalarUDF> {
    RowFunction::udf(
        "method_id",
        RowFunction::any_args(1),
        |_| Ok(DataType::Utf8),
        |a, _| map_strings::<StringArray, _>(&a[0], method_id_of),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_ids() {
        assert_eq!(
            method_id_of("0xA9059CBB000000").as_deref(),
            Some("0xa9059cbb")
        );
        assert_eq!(method_id_of("0x"), None);
        assert_eq!(method_id_of("0x12"), None);
    }
}
