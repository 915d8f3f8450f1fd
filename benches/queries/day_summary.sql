-- One day's summary: volume, senders, fees, value, failures.
SELECT count(*) AS tx_count,
       count(DISTINCT from_address) AS senders,
       sum(fee_wei) AS total_fee_wei,
       sum(value) AS total_value_wei,
       sum(CASE WHEN receipt_status = 0 THEN 1 ELSE 0 END) AS failed
FROM transactions
WHERE block_timestamp >= TIMESTAMP '{{day}}'
  AND block_timestamp < TIMESTAMP '{{day_end}}'
