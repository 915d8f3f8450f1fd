-- The join node of the distributed benchmark, in DataFusion SQL as a
-- chainbatch task runs it (normalize_address is chainbatch's UDF).
-- benches/peers/spark_distributed.py runs the same statement in Spark SQL.
--
-- Tables: raw_transactions (eth.transactions.exact) and raw_token_transfers
-- (eth.token_transfers.exact), both hive-partitioned by date.
-- One row per token transfer whose transaction is there: the transfer's
-- from, to, token and value (a uint256, DECIMAL(76,0), as its decimal text)
-- with its transaction's exact fee in wei (DECIMAL(38,0)).
-- The join is on the hash alone, so it needs rows of every date at once; a
-- transfer and its transaction always share a date, and adding
-- `AND t.date = tt.date` would make it a per-date join.
SELECT
  t.hash,
  t.block_number,
  tt.log_index,
  normalize_address(tt.from_address) AS from_address,
  normalize_address(tt.to_address) AS to_address,
  normalize_address(tt.token_address) AS token_address,
  CAST(tt.value AS VARCHAR) AS value,
  CAST(t.receipt_gas_used AS DECIMAL(38,0)) * CAST(t.receipt_effective_gas_price AS DECIMAL(38,0)) AS fee_wei
FROM raw_transactions AS t
JOIN raw_token_transfers AS tt ON t.hash = tt.transaction_hash
