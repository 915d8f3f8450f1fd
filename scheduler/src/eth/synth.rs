//! Deterministic synthetic `eth` data in the AWS layout and exact schema.
//!
//! The data looks like mainnet where it matters to a layout or a query:
//! Zipf-skewed senders and contracts, daily volume that varies threefold,
//! 12-second blocks with consistent numbers, timestamps and hashes, type-0
//! and type-2 transactions, about 2% failed receipts, values with heavy
//! tails beyond 2^53 wei, and calldata from a small set of popular methods.
//! Every value depends only on the seed and its position, so any day or file
//! can be generated alone, in parallel, with memory bounded by one batch.

use arrow::array::{
    ArrayRef, Decimal128Builder, Decimal256Builder, Int64Builder, ListBuilder, RecordBatch,
    StringBuilder, TimestampSecondArray, TimestampSecondBuilder,
};
use arrow::datatypes::SchemaRef;
use arrow::datatypes::TimestampMillisecondType;
use arrow::datatypes::i256;
use chainbatch_executor::schema::to_schema;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

pub const SECONDS_PER_BLOCK: i64 = 12;
pub const BLOCKS_PER_DAY: i64 = 86_400 / SECONDS_PER_BLOCK;
/// Block 17,000,000 was mined on 2023-04-13 around 22:00 UTC; blocks before
/// and after are numbered from it at 12 s.
const ANCHOR_BLOCK: i64 = 17_000_000;
const ANCHOR_TS: i64 = 1_681_423_200;

/// Popular method ids and their share of contract calls (per mille).
const METHODS: &[(&str, u64)] = &[
    ("a9059cbb", 300), // transfer
    ("095ea7b3", 120), // approve
    ("3593564c", 150), // execute (Universal Router)
    ("23b872dd", 80),  // transferFrom
    ("38ed1739", 60),  // swapExactTokensForTokens
    ("7ff36ab5", 60),  // swapExactETHForTokens
    ("ac9650d8", 70),  // multicall
    ("d0e30db0", 50),  // deposit
    ("2e1a7d4d", 40),  // withdraw
    ("5ae401dc", 70),  // multicall(deadline)
];

#[derive(Debug, Clone)]
pub struct GenConfig {
    pub rows: u64,
    pub days: u32,
    /// Unix seconds of the first day's midnight.
    pub start_ts: i64,
    pub seed: u64,
    pub files_per_day: u32,
    pub batch_rows: usize,
}

/// SplitMix64: fast, and any position can be jumped to.
#[inline]
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

struct Rng(u64);

impl Rng {
    #[inline]
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix(self.0)
    }
    #[inline]
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    #[inline]
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() as u128 * n as u128) >> 64) as u64
    }
}

/// Zipf-like ranks in `0..n` with exponent `s` (> 1), by inverting the
/// continuous power law: rank 0 is the most frequent.
///
/// The inverse is tabulated at `ZIPF_STEPS` even steps of `u` and
/// interpolated between them: a draw costs a multiply and a lookup, not a
/// `powf`. Cells are so narrow that ranks are exact at the head, where the
/// probability mass is; in the tail a cell spans a few hundred rare ranks
/// and draws spread evenly over them.
struct Zipf {
    n: u64,
    /// `x(u) = ((n^(1-s) - 1) u + 1)^(1/(1-s))` at `u = i / ZIPF_STEPS`.
    inverse: Vec<f64>,
}

const ZIPF_STEPS: usize = 4096;

impl Zipf {
    fn new(n: u64, s: f64) -> Self {
        let a = 1.0 - s;
        let span = (n as f64).powf(a) - 1.0;
        let inverse = (0..=ZIPF_STEPS)
            .map(|i| (span * (i as f64 / ZIPF_STEPS as f64) + 1.0).powf(1.0 / a))
            .collect();
        Self { n, inverse }
    }

    /// The table for `(n, s)`, built once per process: every batch of a
    /// run draws from the same distributions.
    fn shared(n: u64, s: f64) -> Arc<Zipf> {
        /// By `(n, s)` as bits.
        type Tables = Mutex<HashMap<(u64, u64), Arc<Zipf>>>;
        static TABLES: OnceLock<Tables> = OnceLock::new();
        let mut tables = TABLES
            .get_or_init(Default::default)
            .lock()
            .expect("Zipf table cache lock");
        tables
            .entry((n, s.to_bits()))
            .or_insert_with(|| Arc::new(Zipf::new(n, s)))
            .clone()
    }

    #[inline]
    fn rank(&self, u: f64) -> u64 {
        let t = u * ZIPF_STEPS as f64;
        let i = (t as usize).min(ZIPF_STEPS - 1);
        let (lo, hi) = (self.inverse[i], self.inverse[i + 1]);
        let x = lo + (hi - lo) * (t - i as f64);
        (x as u64).saturating_sub(1).min(self.n - 1)
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// The two hex digits of every byte.
const HEX_PAIRS: [[u8; 2]; 256] = {
    let mut t = [[0u8; 2]; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = [HEX[i >> 4], HEX[i & 15]];
        i += 1;
    }
    t
};

/// Appends `0x` and the hex of `words` 64-bit values derived from `key`.
#[inline]
fn push_hex(buf: &mut String, key: u64, words: usize) {
    buf.push_str("0x");
    push_hex_digits(buf, key, words);
}

#[inline]
fn push_hex_digits(buf: &mut String, key: u64, words: usize) {
    let mut k = key;
    for _ in 0..words {
        k = mix(k);
        // Sixteen digits at once, two per table lookup.
        let mut digits = [0u8; 16];
        for (pair, b) in digits.chunks_exact_mut(2).zip(k.to_be_bytes()) {
            pair.copy_from_slice(&HEX_PAIRS[b as usize]);
        }
        // SAFETY: every byte comes from HEX, so the digits are ASCII.
        buf.push_str(unsafe { std::str::from_utf8_unchecked(&digits) });
    }
}

/// One ABI word holding an address: 24 zero digits, then its 40.
#[inline]
fn push_address_word(buf: &mut String, address: &str) {
    buf.push_str("000000000000000000000000");
    buf.push_str(&address[2..]);
}

/// One ABI word holding an unsigned integer: 64 hex digits, zero-padded.
#[inline]
fn push_amount_word(buf: &mut String, v: u128) {
    let mut digits = [b'0'; 64];
    let (mut x, mut i) = (v, 64);
    while x > 0 {
        i -= 1;
        digits[i] = HEX[(x & 15) as usize];
        x >>= 4;
    }
    // SAFETY: every byte is '0' or comes from HEX, so the digits are ASCII.
    buf.push_str(unsafe { std::str::from_utf8_unchecked(&digits) });
}

/// `10^(12 + 10u)` wei, log-uniform from 1e12 to 1e22: a power of ten from
/// a table times one `exp` of the fraction, cheaper than `powf`.
#[inline]
fn log_uniform_wei(u: f64) -> i128 {
    const POW10: [f64; 10] = [1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21];
    let t = 10.0 * u;
    let whole = (t as usize).min(9);
    (POW10[whole] * ((t - whole as f64) * std::f64::consts::LN_10).exp()) as i128
}

/// A token amount: log-uniform from 1e6 to 1e30 base units.
#[inline]
fn token_amount(rng: &mut Rng) -> i128 {
    10f64.powf(6.0 + 24.0 * rng.unit()) as i128 + rng.below(1000) as i128
}

fn address(buf: &mut String, kind: u64, id: u64, seed: u64) {
    buf.clear();
    push_hex(buf, mix(seed ^ kind.rotate_left(32) ^ id), 3);
    buf.truncate(42);
}

pub fn block_number_at(ts: i64) -> i64 {
    ANCHOR_BLOCK + (ts - ANCHOR_TS).div_euclid(SECONDS_PER_BLOCK)
}

pub fn block_timestamp(number: i64) -> i64 {
    ANCHOR_TS + (number - ANCHOR_BLOCK) * SECONDS_PER_BLOCK
}

/// The hash of block `number`, shared by every table.
pub fn block_hash(buf: &mut String, seed: u64, number: i64) {
    buf.clear();
    push_hex(
        buf,
        seed ^ 0xb10c ^ (number as u64).wrapping_mul(0x2545_f491_4f6c_dd1d),
        4,
    );
}

/// The hash of the transaction at `(block, index)`, shared by every table.
pub fn tx_hash(buf: &mut String, seed: u64, block: i64, index: u64) {
    buf.clear();
    push_hex(
        buf,
        seed ^ 0x7a11 ^ mix(block as u64) ^ index.wrapping_mul(0x9e37_79b9),
        4,
    );
}

impl GenConfig {
    /// Relative volume of day `d`: a weekly cycle plus noise, from 0.8 to 3.2.
    fn day_weight(&self, d: u32) -> f64 {
        let weekly = [3.0, 2.7, 2.5, 2.6, 2.9, 1.0, 0.8];
        let noise = (mix(self.seed ^ 0xda7 ^ d as u64) % 1000) as f64 / 5000.0;
        weekly[(d % 7) as usize] + noise
    }

    /// Rows of each day, summing to `rows`.
    pub fn rows_per_day(&self) -> Vec<u64> {
        let weights: Vec<f64> = (0..self.days).map(|d| self.day_weight(d)).collect();
        let total: f64 = weights.iter().sum();
        let mut out: Vec<u64> = weights
            .iter()
            .map(|w| (self.rows as f64 * w / total) as u64)
            .collect();
        let short = self.rows - out.iter().sum::<u64>();
        for i in 0..short as usize {
            let n = out.len();
            out[i % n] += 1;
        }
        out
    }

    pub fn day_start(&self, d: u32) -> i64 {
        self.start_ts + d as i64 * 86_400
    }

    fn senders(&self) -> u64 {
        (self.rows / 40).max(1_000)
    }
}

pub fn transactions_schema() -> SchemaRef {
    table_schema("eth.transactions.exact")
}

/// Generates rows `first..first+n` of day `d` (rows of a day are spread over
/// its blocks in order), as one batch.
/// One batch of generated transactions with the token transfers and logs
/// that the successful `transfer` calls among them emit.
pub struct TxBatches {
    pub transactions: RecordBatch,
    pub token_transfers: RecordBatch,
    pub logs: RecordBatch,
}

/// The ERC-20 `Transfer(address,address,uint256)` event topic.
pub const TRANSFER_TOPIC: &str =
    "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef";

/// Collects the events of a batch.
struct Events {
    token: StringBuilder,
    from: StringBuilder,
    to: StringBuilder,
    value: Decimal256Builder,
    tx_hash: StringBuilder,
    tx_index: Int64Builder,
    log_index: Int64Builder,
    ts: TimestampSecondBuilder,
    block: Int64Builder,
    block_hash: StringBuilder,
    data: StringBuilder,
    topics: ListBuilder<StringBuilder>,
    /// Reused for each event's data and topics.
    word: String,
}

impl Events {
    fn new(n: usize) -> Self {
        Self {
            token: StringBuilder::with_capacity(n, n * 42),
            from: StringBuilder::with_capacity(n, n * 42),
            to: StringBuilder::with_capacity(n, n * 42),
            value: Decimal256Builder::with_capacity(n),
            tx_hash: StringBuilder::with_capacity(n, n * 66),
            tx_index: Int64Builder::with_capacity(n),
            log_index: Int64Builder::with_capacity(n),
            ts: TimestampSecondBuilder::with_capacity(n),
            block: Int64Builder::with_capacity(n),
            block_hash: StringBuilder::with_capacity(n, n * 66),
            data: StringBuilder::with_capacity(n, n * 66),
            topics: ListBuilder::new(StringBuilder::new()),
            word: String::with_capacity(66),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        token: &str,
        from: &str,
        to: &str,
        value: i128,
        tx_hash: &str,
        tx_index: i64,
        ts: i64,
        block: i64,
        block_hash: &str,
    ) {
        self.token.append_value(token);
        self.from.append_value(from);
        self.to.append_value(to);
        self.value.append_value(i256::from_i128(value));
        self.tx_hash.append_value(tx_hash);
        self.tx_index.append_value(tx_index);
        self.log_index.append_value(0);
        self.ts.append_value(ts);
        self.block.append_value(block);
        self.block_hash.append_value(block_hash);
        self.word.clear();
        self.word.push_str("0x");
        push_amount_word(&mut self.word, value as u128);
        self.data.append_value(&self.word);
        self.topics.values().append_value(TRANSFER_TOPIC);
        // The indexed addresses, each as one ABI word.
        for address in [from, to] {
            self.word.truncate(2);
            push_address_word(&mut self.word, address);
            self.topics.values().append_value(&self.word);
        }
        self.topics.append(true);
    }

    fn finish(mut self) -> (RecordBatch, RecordBatch) {
        let token: ArrayRef = Arc::new(self.token.finish());
        let tx_hash: ArrayRef = Arc::new(self.tx_hash.finish());
        let tx_index: ArrayRef = Arc::new(self.tx_index.finish());
        let log_index: ArrayRef = Arc::new(self.log_index.finish());
        let ts = self.ts.finish().with_timezone("UTC");
        let modified = last_modified(&ts);
        let ts: ArrayRef = Arc::new(ts);
        let block: ArrayRef = Arc::new(self.block.finish());
        let block_hash: ArrayRef = Arc::new(self.block_hash.finish());
        let transfers = RecordBatch::try_new(
            table_schema("eth.token_transfers.exact"),
            vec![
                token.clone(),
                Arc::new(self.from.finish()),
                Arc::new(self.to.finish()),
                Arc::new(
                    self.value
                        .finish()
                        .with_precision_and_scale(76, 0)
                        .expect("valid decimal"),
                ),
                tx_hash.clone(),
                log_index.clone(),
                ts.clone(),
                block.clone(),
                block_hash.clone(),
                modified.clone(),
            ],
        )
        .expect("transfers match their schema");
        let logs = RecordBatch::try_new(
            table_schema("eth.logs"),
            vec![
                log_index,
                tx_hash,
                tx_index,
                token,
                Arc::new(self.data.finish()),
                Arc::new(self.topics.finish()),
                ts,
                block,
                block_hash,
                modified,
            ],
        )
        .expect("logs match their schema");
        (transfers, logs)
    }
}

/// How long after its block the producer wrote a row: `last_modified` is
/// the block's timestamp plus this.
pub const WRITE_DELAY_MS: i64 = 4_000;

/// `last_modified` of rows in blocks of these timestamps.
fn last_modified(ts: &TimestampSecondArray) -> ArrayRef {
    Arc::new(
        ts.unary::<_, TimestampMillisecondType>(|s| s * 1000 + WRITE_DELAY_MS)
            .with_timezone("UTC"),
    )
}

pub fn table_schema(name: &str) -> SchemaRef {
    let cols = crate::eth::schema::named_columns(name).expect("built-in schema");
    to_schema(&cols, name).expect("built-in schema parses")
}

/// The builders of one batch of transactions, in the table's column order.
struct TxColumns {
    hash: StringBuilder,
    nonce: Int64Builder,
    tx_index: Int64Builder,
    from: StringBuilder,
    to: StringBuilder,
    value: Decimal128Builder,
    gas: Int64Builder,
    gas_price: Int64Builder,
    input: StringBuilder,
    cumulative: Int64Builder,
    gas_used: Int64Builder,
    contract_address: StringBuilder,
    status: Int64Builder,
    ts: TimestampSecondBuilder,
    block_number: Int64Builder,
    block_hash: StringBuilder,
    max_fee: Int64Builder,
    max_priority_fee: Int64Builder,
    tx_type: Int64Builder,
    effective_gas_price: Int64Builder,
}

impl TxColumns {
    fn with_capacity(n: usize) -> Self {
        Self {
            hash: StringBuilder::with_capacity(n, n * 66),
            nonce: Int64Builder::with_capacity(n),
            tx_index: Int64Builder::with_capacity(n),
            from: StringBuilder::with_capacity(n, n * 42),
            to: StringBuilder::with_capacity(n, n * 42),
            value: Decimal128Builder::with_capacity(n),
            gas: Int64Builder::with_capacity(n),
            gas_price: Int64Builder::with_capacity(n),
            input: StringBuilder::with_capacity(n, n * 90),
            cumulative: Int64Builder::with_capacity(n),
            gas_used: Int64Builder::with_capacity(n),
            contract_address: StringBuilder::with_capacity(n, 0),
            status: Int64Builder::with_capacity(n),
            ts: TimestampSecondBuilder::with_capacity(n),
            block_number: Int64Builder::with_capacity(n),
            block_hash: StringBuilder::with_capacity(n, n * 66),
            max_fee: Int64Builder::with_capacity(n),
            max_priority_fee: Int64Builder::with_capacity(n),
            tx_type: Int64Builder::with_capacity(n),
            effective_gas_price: Int64Builder::with_capacity(n),
        }
    }

    /// Legacy (type 0, 22%) or EIP-1559 (type 2) fees over the day's base fee.
    fn append_fees(&mut self, rng: &mut Rng, base_fee: i64) {
        let typ = if rng.below(100) < 22 { 0 } else { 2 };
        let tip = 100_000_000 + rng.below(3_000_000_000) as i64;
        self.tx_type.append_value(typ);
        if typ == 0 {
            let price = base_fee + tip;
            self.gas_price.append_value(price);
            self.max_fee.append_null();
            self.max_priority_fee.append_null();
            self.effective_gas_price.append_value(price);
        } else {
            let cap = base_fee * 2 + tip;
            self.gas_price.append_value(cap);
            self.max_fee.append_value(cap);
            self.max_priority_fee.append_value(tip);
            self.effective_gas_price.append_value(base_fee + tip);
        }
    }

    fn finish(mut self) -> RecordBatch {
        let ts = self.ts.finish().with_timezone("UTC");
        let modified = last_modified(&ts);
        let cols: Vec<ArrayRef> = vec![
            Arc::new(self.hash.finish()),
            Arc::new(self.nonce.finish()),
            Arc::new(self.tx_index.finish()),
            Arc::new(self.from.finish()),
            Arc::new(self.to.finish()),
            Arc::new(
                self.value
                    .finish()
                    .with_precision_and_scale(38, 0)
                    .expect("valid decimal"),
            ),
            Arc::new(self.gas.finish()),
            Arc::new(self.gas_price.finish()),
            Arc::new(self.input.finish()),
            Arc::new(self.cumulative.finish()),
            Arc::new(self.gas_used.finish()),
            Arc::new(self.contract_address.finish()),
            Arc::new(self.status.finish()),
            Arc::new(ts),
            Arc::new(self.block_number.finish()),
            Arc::new(self.block_hash.finish()),
            Arc::new(self.max_fee.finish()),
            Arc::new(self.max_priority_fee.finish()),
            Arc::new(self.tx_type.finish()),
            Arc::new(self.effective_gas_price.finish()),
            modified,
        ];
        RecordBatch::try_new(transactions_schema(), cols).expect("generator matches its schema")
    }
}

/// Who sends and what is called on a day: the senders and contracts and
/// their Zipf popularity.
struct Population {
    seed: u64,
    senders: u64,
    sender_rank: Arc<Zipf>,
    contract_rank: Arc<Zipf>,
}

/// Text buffers reused row after row.
#[derive(Default)]
struct Scratch {
    tx_hash: String,
    from: String,
    to: String,
    block_hash: String,
    calldata: String,
    recipient: String,
    arg: String,
}

impl Population {
    /// Calldata ABI-encoded like mainnet's into `s.calldata`: a method id,
    /// then 32-byte words holding zero-padded addresses and amounts. A token
    /// call names the recipient (`s.recipient`) and returns the amount its
    /// Transfer event reports.
    fn calldata(&self, rng: &mut Rng, creation: bool, block: i64, s: &mut Scratch) -> Option<i128> {
        let buf = &mut s.calldata;
        let mut pick = rng.below(1000);
        let mut id = METHODS[0].0;
        for (m, share) in METHODS {
            if pick < *share {
                id = m;
                break;
            }
            pick -= share;
        }
        if creation {
            id = "60806040";
        }
        buf.push_str(id);
        match id {
            "60806040" => {
                let words = 1 + rng.below(4) as usize;
                push_hex_digits(buf, rng.next(), words * 4);
                None
            }
            "a9059cbb" | "23b872dd" => {
                if id == "23b872dd" {
                    push_address_word(buf, &s.from);
                }
                address(&mut s.recipient, 1, rng.below(self.senders * 4), self.seed);
                push_address_word(buf, &s.recipient);
                let amount = token_amount(rng);
                push_amount_word(buf, amount as u128);
                Some(amount)
            }
            "095ea7b3" => {
                address(
                    &mut s.arg,
                    2,
                    self.contract_rank.rank(rng.unit()),
                    self.seed,
                );
                push_address_word(buf, &s.arg);
                // Half of all approvals are unlimited.
                let allowance = if rng.below(2) == 0 {
                    u128::MAX
                } else {
                    token_amount(rng) as u128
                };
                push_amount_word(buf, allowance);
                None
            }
            _ => {
                for _ in 0..1 + rng.below(4) {
                    match rng.below(8) {
                        0..=2 => {
                            address(
                                &mut s.arg,
                                2,
                                self.contract_rank.rank(rng.unit()),
                                self.seed,
                            );
                            push_address_word(buf, &s.arg);
                        }
                        3 | 4 => push_amount_word(buf, token_amount(rng) as u128),
                        // A deadline a few minutes after the block.
                        5 => push_amount_word(
                            buf,
                            (block_timestamp(block) as u64 + rng.below(1800)) as u128,
                        ),
                        // An offset into the dynamic part.
                        6 => push_amount_word(buf, 32 * (1 + rng.below(8)) as u128),
                        _ => push_hex_digits(buf, rng.next(), 4),
                    }
                }
                None
            }
        }
    }
}

/// Rows `first..first+n` of day `d`, and, with `events`, the token
/// transfers and logs they emit (else those batches are empty).
pub fn generate_batch(
    cfg: &GenConfig,
    d: u32,
    day_rows: u64,
    first: u64,
    n: usize,
    with_events: bool,
) -> TxBatches {
    let seed = cfg.seed;
    let day_start = cfg.day_start(d);
    let first_block = block_number_at(day_start + SECONDS_PER_BLOCK - 1);
    let blocks = BLOCKS_PER_DAY as u64;
    let senders = cfg.senders();
    let contracts = (senders / 20).max(100);
    let pop = Population {
        seed,
        senders,
        sender_rank: Zipf::shared(senders, 1.07),
        contract_rank: Zipf::shared(contracts, 1.2),
    };
    // Base fee drifts by day between 8 and 60 gwei.
    let base_fee = 8_000_000_000 + (mix(seed ^ 0xbf ^ d as u64) % 52_000_000_000) as i64;

    let mut c = TxColumns::with_capacity(n);
    let mut events = Events::new(if with_events { n / 4 } else { 0 });
    let mut s = Scratch::default();
    let mut cum_block = -1i64;
    let mut hashed_block = i64::MIN;
    let mut cum = 0i64;
    for row in first..first + n as u64 {
        let block_in_day = row * blocks / day_rows.max(1);
        let block = first_block + block_in_day as i64;
        // Index within the block: rows of one block are consecutive.
        let block_first_row = (block_in_day * day_rows).div_ceil(blocks);
        let index = row - block_first_row;
        let mut rng = Rng(mix(seed ^ mix(block as u64) ^ index));

        tx_hash(&mut s.tx_hash, seed, block, index);
        c.hash.append_value(&s.tx_hash);
        let sender = pop.sender_rank.rank(rng.unit());
        address(&mut s.from, 1, sender, seed);
        c.from.append_value(&s.from);
        c.nonce
            .append_value((mix(sender ^ block as u64) % 50_000) as i64);
        c.tx_index.append_value(index as i64);

        let kind = rng.below(1000);
        let creation = kind < 3;
        let plain_transfer = (3..300).contains(&kind);
        if creation {
            c.to.append_null();
        } else if plain_transfer {
            address(&mut s.to, 1, rng.below(senders * 4), seed);
            c.to.append_value(&s.to);
        } else {
            address(&mut s.to, 2, pop.contract_rank.rank(rng.unit()), seed);
            c.to.append_value(&s.to);
        }
        // Heavy-tailed value: zero for most calls, else log-uniform 1e12..1e22 wei.
        let v: i128 = if !plain_transfer && rng.below(10) < 8 {
            0
        } else {
            log_uniform_wei(rng.unit()) + rng.below(1_000_000) as i128
        };
        c.value.append_value(v);

        s.calldata.clear();
        s.calldata.push_str("0x");
        let token_amount = match plain_transfer {
            true => None,
            false => pop.calldata(&mut rng, creation, block, &mut s),
        };
        c.input.append_value(&s.calldata);

        let g = if plain_transfer {
            21_000
        } else {
            50_000 + rng.below(450_000) as i64
        };
        c.gas.append_value(g);
        let used = if plain_transfer {
            21_000
        } else {
            g * (40 + rng.below(60) as i64) / 100
        };
        c.gas_used.append_value(used);
        if block != cum_block {
            cum_block = block;
            cum = 0;
        }
        cum += used;
        c.cumulative.append_value(cum);
        c.append_fees(&mut rng, base_fee);
        if creation {
            address(&mut s.calldata, 3, row ^ block as u64, seed);
            c.contract_address.append_value(&s.calldata);
        } else {
            c.contract_address.append_null();
        }
        let ok = rng.below(1000) >= 20;
        c.status.append_value(i64::from(ok));
        c.ts.append_value(block_timestamp(block));
        c.block_number.append_value(block);
        // Rows of a block are consecutive: hash each block once.
        if block != hashed_block {
            block_hash(&mut s.block_hash, seed, block);
            hashed_block = block;
        }
        c.block_hash.append_value(&s.block_hash);
        // Successful token transfers emit a Transfer event: a log and a transfer row.
        if let Some(amount) = token_amount.filter(|_| with_events && ok) {
            events.push(
                &s.to,
                &s.from,
                &s.recipient,
                amount,
                &s.tx_hash,
                index as i64,
                block_timestamp(block),
                block,
                &s.block_hash,
            );
        }
    }
    let (token_transfers, logs) = events.finish();
    TxBatches {
        transactions: c.finish(),
        token_transfers,
        logs,
    }
}

/// The rows of a day that fall in block `b` (counted from the day's first block).
pub fn rows_in_block(day_rows: u64, b: u64) -> u64 {
    let blocks = BLOCKS_PER_DAY as u64;
    let first = (b * day_rows).div_ceil(blocks);
    let next = ((b + 1) * day_rows).div_ceil(blocks);
    next - first
}

/// Every block of day `d`, with hashes and transaction counts that match
/// the transactions generated for that day.
pub fn blocks_batch(cfg: &GenConfig, d: u32, day_rows: u64) -> RecordBatch {
    let seed = cfg.seed;
    let first_block = block_number_at(cfg.day_start(d) + SECONDS_PER_BLOCK - 1);
    let n = BLOCKS_PER_DAY as usize;
    let base_fee = 8_000_000_000 + (mix(seed ^ 0xbf ^ d as u64) % 52_000_000_000) as i64;
    let mut b = arrow::array::StringBuilder::new();
    let mut cols: Vec<ArrayRef> = vec![];
    let numbers: Vec<i64> = (0..n as i64).map(|i| first_block + i).collect();
    let timestamps = TimestampSecondArray::from(
        numbers
            .iter()
            .map(|x| block_timestamp(*x))
            .collect::<Vec<_>>(),
    )
    .with_timezone("UTC");
    let modified = last_modified(&timestamps);
    cols.push(Arc::new(timestamps));
    cols.push(Arc::new(arrow::array::Int64Array::from(numbers.clone())));
    let mut buf = String::new();
    for x in &numbers {
        block_hash(&mut buf, seed, *x);
        b.append_value(&buf);
    }
    cols.push(Arc::new(b.finish()));
    for x in &numbers {
        block_hash(&mut buf, seed, *x - 1);
        b.append_value(&buf);
    }
    cols.push(Arc::new(b.finish()));
    let constant = |v: &str| -> ArrayRef { Arc::new(arrow::array::StringArray::from(vec![v; n])) };
    cols.push(constant("0x0000000000000000"));
    cols.push(constant(
        "0x1dcc4de8dec75d7aab85b567b6ccd41ad312451b948a7413f0a142fd40d49347",
    ));
    for key in [0x10u64, 0x20, 0x30, 0x40] {
        for x in &numbers {
            buf.clear();
            push_hex(
                &mut buf,
                seed ^ key ^ (*x as u64).wrapping_mul(0x9e37),
                if key == 0x10 { 8 } else { 4 },
            );
            b.append_value(&buf);
        }
        cols.push(Arc::new(b.finish()));
    }
    for x in &numbers {
        address(&mut buf, 4, mix(seed ^ *x as u64) % 60, seed);
        b.append_value(&buf);
    }
    cols.push(Arc::new(b.finish()));
    let dec = |v: i128| -> ArrayRef {
        Arc::new(
            arrow::array::Decimal128Array::from(vec![v; n])
                .with_precision_and_scale(38, 0)
                .expect("valid decimal"),
        )
    };
    cols.push(dec(0));
    cols.push(dec(58_750_003_716_598_352_816_469));
    cols.push(Arc::new(arrow::array::Int64Array::from(
        (0..n as u64)
            .map(|i| 20_000 + (mix(seed ^ i) % 100_000) as i64)
            .collect::<Vec<_>>(),
    )));
    cols.push(constant("0x"));
    cols.push(Arc::new(arrow::array::Int64Array::from(vec![
        30_000_000i64;
        n
    ])));
    let counts: Vec<i64> = (0..n as u64)
        .map(|i| rows_in_block(day_rows, i) as i64)
        .collect();
    cols.push(Arc::new(arrow::array::Int64Array::from(
        counts
            .iter()
            .map(|c| (c * 90_000).min(30_000_000))
            .collect::<Vec<_>>(),
    )));
    cols.push(Arc::new(arrow::array::Int64Array::from(counts)));
    cols.push(Arc::new(arrow::array::Int64Array::from(vec![base_fee; n])));
    cols.push(modified);
    RecordBatch::try_new(table_schema("eth.blocks.exact"), cols).expect("blocks match their schema")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rank the continuous inverse gives without the table.
    fn exact_rank(n: u64, s: f64, u: f64) -> u64 {
        let a = 1.0 - s;
        let x = (((n as f64).powf(a) - 1.0) * u + 1.0).powf(1.0 / a);
        (x as u64).saturating_sub(1).min(n - 1)
    }

    #[test]
    fn tabulated_zipf_matches_the_power_law() {
        let (n, s) = (100_000, 1.07);
        let zipf = Zipf::new(n, s);
        let mut rng = Rng(7);
        let mut head_draws = 0;
        for _ in 0..200_000 {
            let u = rng.unit();
            let (got, want) = (zipf.rank(u), exact_rank(n, s, u));
            assert!(got < n);
            if want < 1_000 {
                // The head, where the mass is: at most one rank off, at a
                // cell boundary.
                head_draws += 1;
                assert!(got.abs_diff(want) <= 1, "u={u}: rank {got}, exact {want}");
            } else {
                assert!(
                    got.abs_diff(want) <= want / 100 + 300,
                    "u={u}: {got} vs {want}"
                );
            }
        }
        assert!(head_draws > 100_000, "most draws fall in the head");
        assert_eq!(zipf.rank(0.0), 0);
        assert!(
            zipf.rank(1.0 - f64::EPSILON) >= n - 2,
            "the last cell reaches rank n"
        );
    }

    #[test]
    fn log_uniform_wei_spans_1e12_to_1e22() {
        assert_eq!(log_uniform_wei(0.0), 1_000_000_000_000);
        assert!(log_uniform_wei(0.999_999) > 99 * 10i128.pow(20));
        assert!(log_uniform_wei(0.999_999) < 10i128.pow(22));
        let mid = log_uniform_wei(0.55);
        assert!(
            (10i128.pow(17) * 3..10i128.pow(17) * 4).contains(&mid),
            "{mid}"
        );
    }
}
