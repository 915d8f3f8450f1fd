//! Blockchain SQL functions, registered in every chainbatch session.
//!
//! | function | returns |
//! | --- | --- |
//! | `to_wei(x)` | DECIMAL(38,0) from an integer, a decimal string or `0x` hex; floats are refused |
//! | `wei_to_eth(wei)` | DECIMAL(38,18), exact: the same integer with 18 decimals |
//! | `normalize_address(s)` | lower-case `0x` + 40 hex, or NULL when not an address |
//! | `is_address(s)` | whether `s` is `0x` + 40 hex digits |
//! | `hex_to_bytes(s)` | BINARY, or NULL when not hex |
//! | `method_id(input)` | `0x` + the first 4 bytes of calldata, or NULL |
//! | `block_chunk(block_number, size)` | `block_number / size`, rounded down |
//! | `bucket_id(n, col, ...)` | the stable bucket (0..n) the layout writer uses |
//! | `bucket_route(p, bucket)` | a value hash repartitioning into `p` partitions sends to partition `bucket % p` |

mod address;
mod bucket;
mod chunk;
mod function;
mod hex;
mod wei;

pub use bucket::murmur3_32;
pub use function::RowFunction;
pub use wei::{ETH_TYPE, WEI_TYPE, parse_wei};

use datafusion::execution::FunctionRegistry;
use datafusion::logical_expr::ScalarUDF;
use std::sync::Arc;

/// All chainbatch functions.
pub fn all() -> Vec<Arc<ScalarUDF>> {
    vec![
        wei::to_wei(),
        wei::wei_to_eth(),
        address::normalize_address(),
        address::is_address(),
        hex::hex_to_bytes(),
        hex::method_id(),
        chunk::block_chunk(),
        bucket::bucket_id(),
        bucket::bucket_route(),
    ]
}

/// Registers every chainbatch function in a session.
pub fn register_all(registry: &mut dyn FunctionRegistry) -> datafusion::error::Result<()> {
    for f in all() {
        registry.register_udf(f)?;
    }
    Ok(())
}
