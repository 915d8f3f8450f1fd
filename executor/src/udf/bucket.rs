//! Stable bucket ids: murmur3 (x86, 32-bit) over each value's canonical bytes,
//! chained across columns from seed 42, modulo the bucket count. The result
//! depends on nothing but the values, so it is the same on every run and machine.

use super::RowFunction;
use arrow::array::{Array, ArrayRef, AsArray, Int32Array, RecordBatch, UInt64Array};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Int32Type, Int64Type, Schema, UInt64Type};
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{ScalarUDF, Signature, Volatility};
use datafusion::physical_plan::Partitioning;
use datafusion::physical_plan::expressions::Column;
use datafusion::physical_plan::metrics::Time;
use datafusion::physical_plan::repartition::BatchPartitioner;
use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

const SEED: u32 = 42;

/// The `bucket_id(n, col, ...)` function: the stable bucket in `0..n` of the
/// columns' values; NULL when `n` is not positive.
pub fn bucket_id() -> Arc<ScalarUDF> {
    RowFunction::udf(
        "bucket_id",
        Signature::variadic_any(Volatility::Immutable),
        |_| Ok(DataType::Int32),
        |a, rows| {
            if a.len() < 2 {
                return Err(DataFusionError::Plan(
                    "bucket_id(n, col, ...) needs a bucket count and at least one column".into(),
                ));
            }
            let n = cast(&a[0], &DataType::Int64)?;
            let n = n.as_primitive::<Int64Type>();
            let mut hashes = vec![SEED; rows];
            for col in &a[1..] {
                hash_column(col, &mut hashes)?;
            }
            let out: Int32Array = (0..rows)
                .map(|i| {
                    let buckets = n.value(i);
                    (buckets > 0).then(|| (hashes[i] as u64 % buckets as u64) as i32)
                })
                .collect();
            Ok(Arc::new(out) as ArrayRef)
        },
    )
}

/// The `bucket_route(partitions, bucket)` function: a value that DataFusion's
/// hash repartitioning into `partitions` (and Ballista's shuffle, which
/// hashes the same way) sends to partition `bucket % partitions`. A
/// repartition on `bucket_route(n, bucket_id(..))` instead of on the keys
/// themselves keeps rows of one key together, as the keys would, and also
/// puts every row of a bucket in one partition: the partitions a join or an
/// aggregate computes are then already the layout writer's, and no second
/// repartition by bucket is needed.
pub fn bucket_route() -> Arc<ScalarUDF> {
    RowFunction::udf(
        "bucket_route",
        RowFunction::any_args(2),
        |_| Ok(DataType::UInt64),
        |a, rows| {
            let partitions = cast(&a[0], &DataType::Int64)?;
            let partitions = partitions.as_primitive::<Int64Type>();
            let buckets = cast(&a[1], &DataType::Int32)?;
            let buckets = buckets.as_primitive::<Int32Type>();
            if rows == 0 {
                return Ok(Arc::new(UInt64Array::from(Vec::<u64>::new())));
            }
            let n = partitions.value(0);
            if partitions.null_count() > 0 || n <= 0 {
                return Err(DataFusionError::Plan(
                    "bucket_route(partitions, bucket) needs a positive partition count".into(),
                ));
            }
            let routes = partition_routes(n as usize)?;
            let out: UInt64Array = buckets
                .iter()
                .map(|b| b.map(|b| routes[b.rem_euclid(n as i32) as usize]))
                .collect();
            Ok(Arc::new(out) as ArrayRef)
        },
    )
}

/// For each of `partitions` hash partitions, the least `u64` that DataFusion's
/// hash repartitioning sends there. Found by running DataFusion's own
/// partitioner over candidates, so it holds for whatever hash it uses.
pub fn partition_routes(partitions: usize) -> Result<Arc<Vec<u64>>> {
    static ROUTES: LazyLock<Mutex<HashMap<usize, Arc<Vec<u64>>>>> = LazyLock::new(Default::default);
    if let Some(r) = ROUTES.lock().expect("routes lock").get(&partitions) {
        return Ok(r.clone());
    }
    const CHUNK: u64 = 4096;
    let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::UInt64, false)]));
    let mut found: Vec<Option<u64>> = vec![None; partitions];
    let mut start = 0u64;
    while found.iter().any(Option::is_none) {
        if start >= (partitions as u64).saturating_mul(CHUNK) {
            return Err(DataFusionError::Internal(format!(
                "no value routes to every one of {partitions} hash partitions"
            )));
        }
        let values: UInt64Array = (start..start + CHUNK).collect();
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(values)])?;
        let hash = Partitioning::Hash(vec![Arc::new(Column::new("v", 0))], partitions);
        let mut partitioner = BatchPartitioner::try_new(hash, Time::default(), 0, 1)?;
        partitioner.partition(batch, |partition, rows| {
            let least = rows.column(0).as_primitive::<UInt64Type>().value(0);
            found[partition].get_or_insert(least);
            Ok(())
        })?;
        start += CHUNK;
    }
    let routes = Arc::new(found.into_iter().map(|v| v.expect("found")).collect());
    ROUTES
        .lock()
        .expect("routes lock")
        .insert(partitions, Arc::clone(&routes));
    Ok(routes)
}

/// Folds one column into the running per-row hashes. Integers of any width
/// hash as i64, so `5::int` and `5::bigint` land in the same bucket.
pub fn hash_column(col: &ArrayRef, hashes: &mut [u32]) -> Result<()> {
    match col.data_type() {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            let s = cast(col, &DataType::Utf8)?;
            for (h, v) in hashes.iter_mut().zip(s.as_string::<i32>().iter()) {
                if let Some(v) = v {
                    *h = murmur3_32(v.as_bytes(), *h);
                }
            }
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            let b = cast(col, &DataType::Binary)?;
            for (h, v) in hashes.iter_mut().zip(b.as_binary::<i32>().iter()) {
                if let Some(v) = v {
                    *h = murmur3_32(v, *h);
                }
            }
        }
        DataType::Decimal128(_, _) => {
            for (h, v) in hashes.iter_mut().zip(
                col.as_primitive::<arrow::datatypes::Decimal128Type>()
                    .iter(),
            ) {
                if let Some(v) = v {
                    *h = murmur3_32(&v.to_le_bytes(), *h);
                }
            }
        }
        DataType::Boolean => {
            for (h, v) in hashes.iter_mut().zip(col.as_boolean().iter()) {
                if let Some(v) = v {
                    *h = murmur3_32(&[v as u8], *h);
                }
            }
        }
        _ => {
            let ints = match col.data_type() {
                DataType::Timestamp(_, _) | DataType::Date32 | DataType::Date64 => cast(
                    &cast(col, &DataType::Int64).or_else(|_| cast(col, &DataType::Int32))?,
                    &DataType::Int64,
                )?,
                _ => cast(col, &DataType::Int64).map_err(|_| {
                    DataFusionError::Plan(format!(
                        "bucket_id cannot hash a column of type {}",
                        col.data_type()
                    ))
                })?,
            };
            let ints = ints.as_primitive::<Int64Type>();
            for (i, h) in hashes.iter_mut().enumerate() {
                if ints.is_valid(i) {
                    *h = murmur3_32(&ints.value(i).to_le_bytes(), *h);
                }
            }
        }
    }
    Ok(())
}

/// MurmurHash3 x86_32 as published by Austin Appleby.
pub fn murmur3_32(data: &[u8], seed: u32) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h = seed;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        let mut k = u32::from_le_bytes([c[0], c[1], c[2], c[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = chunks.remainder();
    if !tail.is_empty() {
        let mut k = 0u32;
        for (i, b) in tail.iter().enumerate() {
            k |= (*b as u32) << (8 * i);
        }
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_route_lands_in_its_partition_under_datafusion_hash_repartitioning() {
        for partitions in [1, 2, 3, 7, 8, 64] {
            let routes = partition_routes(partitions).unwrap();
            assert_eq!(routes.len(), partitions);
            let schema = Arc::new(Schema::new(vec![Field::new("v", DataType::UInt64, false)]));
            let values: UInt64Array = routes.iter().copied().collect();
            let batch = RecordBatch::try_new(schema, vec![Arc::new(values)]).unwrap();
            let hash = Partitioning::Hash(vec![Arc::new(Column::new("v", 0))], partitions);
            let mut partitioner = BatchPartitioner::try_new(hash, Time::default(), 0, 1).unwrap();
            partitioner
                .partition(batch, |partition, rows| {
                    let v = rows.column(0).as_primitive::<UInt64Type>().value(0);
                    assert_eq!(rows.num_rows(), 1, "two routes share partition {partition}");
                    assert_eq!(routes[partition], v);
                    Ok(())
                })
                .unwrap();
        }
    }

    #[test]
    fn murmur3_reference_vectors() {
        // Published test vectors for MurmurHash3_x86_32.
        assert_eq!(murmur3_32(b"", 0), 0);
        assert_eq!(murmur3_32(b"", 1), 0x514E_28B7);
        assert_eq!(murmur3_32(b"hello", 0), 0x248B_FA47);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog", 0),
            0x2E4F_F723
        );
    }
}
