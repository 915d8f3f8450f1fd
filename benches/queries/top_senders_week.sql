-- The ten senders who paid the most fees over a week.
SELECT from_address, sum(fee_wei) AS fees, count(*) AS tx_count
FROM transactions
WHERE block_timestamp >= TIMESTAMP '{{week_start}}'
  AND block_timestamp < TIMESTAMP '{{week_end}}'
GROUP BY from_address
ORDER BY fees DESC
LIMIT 10
