//! What a query's scan would cost on Athena, at its published price.

/// Athena's price for SQL queries in us-east-1 and us-east-2 (where the
/// public `eth` data lives): $5.00 per TB of data scanned
/// (<https://aws.amazon.com/athena/pricing/>).
pub const ATHENA_USD_PER_TB: f64 = 5.0;

/// Athena rounds each query up to the next megabyte and bills at least 10 MB.
const MIN_BILLED_BYTES: u64 = 10_000_000;
const BILLING_UNIT_BYTES: u64 = 1_000_000;

/// The price of one query that scans `bytes`.
pub fn athena_usd(bytes: u64) -> f64 {
    let billed = bytes.div_ceil(BILLING_UNIT_BYTES) * BILLING_UNIT_BYTES;
    billed.max(MIN_BILLED_BYTES) as f64 / 1e12 * ATHENA_USD_PER_TB
}

/// The share of `total` that `part` is, in percent (0 when `total` is 0).
pub fn percent(part: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        part as f64 * 100.0 / total as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_scans_pay_the_ten_megabyte_minimum_and_large_ones_round_up() {
        assert_eq!(athena_usd(0), athena_usd(10_000_000));
        assert!((athena_usd(1) - 5e-5).abs() < 1e-12);
        // 1 TB and a byte: billed as 1 TB and one MB.
        assert!((athena_usd(1_000_000_000_001) - (5.0 + 5e-6)).abs() < 1e-9);
        assert_eq!(percent(1, 0), 0.0);
        assert!((percent(25, 1000) - 2.5).abs() < 1e-12);
    }
}
