//! Exact wei: integers in DECIMAL(38,0); no float ever touches a value.

use super::RowFunction;
use arrow::array::{Array, ArrayRef, AsArray, Decimal128Array, Decimal128Builder};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::ScalarUDF;
use std::sync::Arc;

/// The SQL type of wei amounts: DECIMAL(38,0), an exact integer.
pub const WEI_TYPE: DataType = DataType::Decimal128(38, 0);
/// The SQL type of ether amounts: DECIMAL(38,18), the wei integer with 18 decimals.
pub const ETH_TYPE: DataType = DataType::Decimal128(38, 18);
const MAX_38_DIGITS: u128 = 99_999_999_999_999_999_999_999_999_999_999_999_999;

/// The `to_wei(x)` function: `x` as exact wei, as [`as_wei`] converts it.
pub fn to_wei() -> Arc<ScalarUDF> {
    RowFunction::udf(
        "to_wei",
        RowFunction::any_args(1),
        |_| Ok(WEI_TYPE),
        |a, _| Ok(Arc::new(as_wei(&a[0], "to_wei")?)),
    )
}

/// The `wei_to_eth(wei)` function: the same wei integer read with 18 decimals,
/// as [`ETH_TYPE`].
pub fn wei_to_eth() -> Arc<ScalarUDF> {
    RowFunction::udf(
        "wei_to_eth",
        RowFunction::any_args(1),
        |_| Ok(ETH_TYPE),
        |a, _| {
            // 1 ETH = 10^18 wei: the same integer read with 18 decimals.
            let wei = as_wei(&a[0], "wei_to_eth")?;
            Ok(Arc::new(wei.with_precision_and_scale(38, 18)?) as ArrayRef)
        },
    )
}

/// Converts integers, decimals of scale 0, and decimal or `0x` strings to
/// DECIMAL(38,0) exactly; anything else is an error, never a rounding.
pub fn as_wei(array: &ArrayRef, func: &str) -> Result<Decimal128Array> {
    match array.data_type() {
        DataType::Decimal128(_, 0)
        | DataType::Int8
        | DataType::Int16
        | DataType::Int32
        | DataType::Int64
        | DataType::UInt8
        | DataType::UInt16
        | DataType::UInt32
        | DataType::UInt64
        | DataType::Null => Ok(cast(array, &WEI_TYPE)?.as_primitive().clone()),
        DataType::Decimal256(_, 0) => {
            let out = cast(array, &WEI_TYPE)?;
            if out.null_count() != array.null_count() {
                return Err(DataFusionError::Execution(format!(
                    "{func}: a value exceeds 38 digits of wei"
                )));
            }
            Ok(out.as_primitive().clone())
        }
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let strings = cast(array, &DataType::Utf8)?;
            let strings = strings.as_string::<i32>();
            let mut out = Decimal128Builder::with_capacity(strings.len());
            for v in strings.iter() {
                match v {
                    None => out.append_null(),
                    Some(s) => out.append_value(parse_wei(s).ok_or_else(|| {
                        DataFusionError::Execution(format!(
                            "{func}: {s:?} is not a decimal or 0x-hex integer of at most 38 digits"
                        ))
                    })?),
                }
            }
            Ok(out.finish().with_precision_and_scale(38, 0)?)
        }
        other => Err(DataFusionError::Plan(format!(
            "{func}: wei must be an integer, DECIMAL(p,0) or string, not {other}: \
             a float cannot hold wei exactly"
        ))),
    }
}

/// Parses `12345` or `0x3039` into an integer of at most 38 digits.
pub fn parse_wei(s: &str) -> Option<i128> {
    let s = s.trim();
    let v: u128 = if let Some(hex) = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        if hex.is_empty() {
            return Some(0);
        }
        u128::from_str_radix(hex, 16).ok()?
    } else {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse::<u128>().ok()?
    };
    (v <= MAX_38_DIGITS).then_some(v as i128)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_exactly_beyond_two_to_the_53() {
        assert_eq!(
            parse_wei("32000000000000000001"),
            Some(32_000_000_000_000_000_001)
        );
        assert_eq!(
            parse_wei("0x1bc16d674ec80000"),
            Some(2_000_000_000_000_000_000)
        );
        assert_eq!(parse_wei("1.5"), None);
        assert_eq!(parse_wei("1e18"), None);
        assert_eq!(parse_wei(&"9".repeat(39)), None);
    }

    #[test]
    fn eth_is_the_same_integer_with_18_decimals() {
        let wei: ArrayRef = Arc::new(arrow::array::Int64Array::from(vec![
            1_500_000_000_000_000_000,
        ]));
        let eth = as_wei(&wei, "t")
            .unwrap()
            .with_precision_and_scale(38, 18)
            .unwrap();
        assert_eq!(eth.value_as_string(0), "1.500000000000000000");
    }

    #[test]
    fn refuses_floats() {
        let f: ArrayRef = Arc::new(arrow::array::Float64Array::from(vec![1.0]));
        assert!(as_wei(&f, "t").is_err());
    }
}
