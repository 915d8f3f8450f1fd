-- The address_profiles node (conf/base/pipelines.yml: the address_activity
-- subquery, then the aggregate) as one DuckDB statement, to check chainbatch's
-- output row for row. Placeholders, replaced by plain text substitution:
--   {transactions}     the raw transactions table: <dir>/date=YYYY-MM-DD/*.parquet
--   {token_transfers}  the raw token transfers table, same layout
-- The text holds no other braces, so Python's str.format works too.
--
-- Differences from chainbatch's SQL, none of which changes a result:
-- - normalize_address(x) is spelt out: lower-case when x is `0x` + 40 hex
--   digits, else NULL (the UDF checks the same).
-- - to_wei(value) is CAST(value AS DECIMAL(38,0)): exact for the
--   DECIMAL(38,0) `value` of the exact schema (and the same rounding as
--   conf/aws's to_wei(CAST(value AS DECIMAL(38,0))) for a DOUBLE one).
-- - Token transfers' `value` (DECIMAL(76,0)) is not read: DuckDB would read
--   it as DOUBLE, and profiles do not use it.
-- Rows come out ordered by address; every count is BIGINT, every amount
-- DECIMAL(38,0), first_seen and last_seen TIMESTAMP WITH TIME ZONE (UTC).
WITH
tx AS (
  SELECT
    CASE WHEN length(from_address) = 42 AND regexp_full_match(from_address, '0[xX][0-9a-fA-F]+')
         THEN lower(from_address) END AS from_address,
    coalesce(
      CASE WHEN length(to_address) = 42 AND regexp_full_match(to_address, '0[xX][0-9a-fA-F]+')
           THEN lower(to_address) END,
      CASE WHEN length(receipt_contract_address) = 42
                AND regexp_full_match(receipt_contract_address, '0[xX][0-9a-fA-F]+')
           THEN lower(receipt_contract_address) END) AS to_address,
    block_timestamp,
    block_number,
    hash,
    CASE WHEN receipt_status = 0 THEN CAST(0 AS DECIMAL(38,0))
         ELSE CAST(value AS DECIMAL(38,0)) END AS value_wei,
    CAST(receipt_gas_used AS DECIMAL(38,0)) * CAST(receipt_effective_gas_price AS DECIMAL(38,0)) AS fee_wei
  FROM read_parquet('{transactions}/**/*.parquet', hive_partitioning = true)
),
tt AS (
  SELECT
    CASE WHEN length(from_address) = 42 AND regexp_full_match(from_address, '0[xX][0-9a-fA-F]+')
         THEN lower(from_address) END AS from_address,
    CASE WHEN length(to_address) = 42 AND regexp_full_match(to_address, '0[xX][0-9a-fA-F]+')
         THEN lower(to_address) END AS to_address,
    CASE WHEN length(token_address) = 42 AND regexp_full_match(token_address, '0[xX][0-9a-fA-F]+')
         THEN lower(token_address) END AS token_address,
    block_timestamp,
    block_number,
    transaction_hash
  FROM read_parquet('{token_transfers}/**/*.parquet', hive_partitioning = true)
),
address_activity AS (
  SELECT * FROM (
    SELECT from_address AS address, block_timestamp, block_number, hash AS transaction_hash,
           'tx_sent' AS activity, value_wei, fee_wei, CAST(NULL AS VARCHAR) AS token_address
    FROM tx
    UNION ALL
    SELECT to_address, block_timestamp, block_number, hash,
           'tx_received', value_wei, CAST(NULL AS DECIMAL(38,0)), CAST(NULL AS VARCHAR)
    FROM tx
    UNION ALL
    SELECT from_address, block_timestamp, block_number, transaction_hash,
           'token_sent', CAST(NULL AS DECIMAL(38,0)), CAST(NULL AS DECIMAL(38,0)), token_address
    FROM tt
    UNION ALL
    SELECT to_address, block_timestamp, block_number, transaction_hash,
           'token_received', CAST(NULL AS DECIMAL(38,0)), CAST(NULL AS DECIMAL(38,0)), token_address
    FROM tt
  ) AS sides
  WHERE address IS NOT NULL
)
SELECT
  address,
  min(block_timestamp) AS first_seen,
  max(block_timestamp) AS last_seen,
  min(block_number) AS first_block,
  max(block_number) AS last_block,
  count(CASE WHEN activity = 'tx_sent' THEN 1 END) AS tx_sent,
  count(CASE WHEN activity = 'tx_received' THEN 1 END) AS tx_received,
  coalesce(sum(fee_wei), CAST(0 AS DECIMAL(38,0))) AS fees_paid_wei,
  coalesce(sum(CASE WHEN activity = 'tx_sent' THEN value_wei END), CAST(0 AS DECIMAL(38,0))) AS value_sent_wei,
  coalesce(sum(CASE WHEN activity = 'tx_received' THEN value_wei END), CAST(0 AS DECIMAL(38,0))) AS value_received_wei,
  count(CASE WHEN activity = 'token_sent' THEN 1 END) AS token_transfers_sent,
  count(CASE WHEN activity = 'token_received' THEN 1 END) AS token_transfers_received,
  count(DISTINCT token_address) AS distinct_tokens
FROM address_activity
GROUP BY address
ORDER BY address
